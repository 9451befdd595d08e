//! What to do with a well-formed request, decided from a store snapshot before the first
//! commit: the identity, its configuration document and the reply, or a failure.

use fleetgate_auth_hook::credentials::{fast_hash, fast_verify, generate_password};
use fleetgate_devconfig::{Document, Identity, MASK, ReservedPolicy, generated};
use fleetgate_kura::{PROVISION_STATUS_COMPLETED, ProvRequest, ProvSuccess};
use fleetgate_storage::ops::{ExchangeAction, IdentityPlan};
use fleetgate_storage::{ProvisionRequest, Store};

use crate::ExchangeError;

/// The outcome of planning an exchange. `Debug` shows neither the password nor its hash.
#[derive(Debug)]
// One plan per exchange, moved once into `split`: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Plan {
    /// Fail the exchange with this PROV-V1 code (403 activation key, 500 build error).
    Fail {
        /// PROV-V1 response code.
        code: u16,
        /// Reason for the log and the failure reply (no secret).
        reason: String,
    },
    /// Write this identity in the first commit, then send this reply.
    Provision {
        /// What the first commit writes into the target account.
        identity: IdentityPlan,
        /// The success reply, with the generated password in clear.
        reply: ProvSuccess,
        /// The reply's configuration document, for a Kura-native device's CONF-V1 PUT.
        document: Document,
    },
}

/// A planned success: the PROV-V1 reply and its configuration document.
pub(crate) type Success = (ProvSuccess, Document);

impl Plan {
    fn fail(code: u16, reason: impl Into<String>) -> Plan {
        Plan::Fail {
            code,
            reason: reason.into(),
        }
    }

    /// Splits the plan into what the first commit writes and what the reply will be. The
    /// failure's reason is kept for the reply, as the commit consumes its own copy.
    pub(crate) fn split(self) -> (ExchangeAction, Result<Success, (u16, String)>) {
        match self {
            Plan::Fail { code, reason } => (
                ExchangeAction::Fail {
                    code,
                    reason: reason.clone(),
                },
                Err((code, reason)),
            ),
            Plan::Provision {
                identity,
                reply,
                document,
            } => (ExchangeAction::Provision(identity), Ok((reply, document))),
        }
    }
}

/// Plans the exchange of `request` for provision request `request_id`, from a snapshot of
/// `store`: checks the activation key, generates the password and builds the configuration.
/// Never fails: a problem becomes [`Plan::Fail`], which the first commit records.
pub fn plan(store: &Store, request_id: &str, request: &ProvRequest, vpn_pid: &str) -> Plan {
    let read = store.read().and_then(|r| {
        let stored = r.request(request_id)?;
        let account = match &stored {
            Some(q) => r.account(&q.account)?,
            None => None,
        };
        Ok((stored, account))
    });
    let (stored, account) = match read {
        Ok((Some(r), Some(a))) => (r, a),
        Ok(_) => return Plan::fail(500, "the provision request or its account disappeared"),
        Err(e) => {
            tracing::error!(error = %e, "store read failed during an exchange");
            return Plan::fail(500, "could not read the provision request");
        }
    };
    if let Some(hash) = &stored.activation_key_hash {
        match &request.activation_key {
            None => return Plan::fail(403, "activation key missing"),
            Some(k) if !fast_verify(k, hash) => return Plan::fail(403, "activation key wrong"),
            Some(_) => {}
        }
    }
    let password = generate_password(usize::from(
        stored.effective_password_length(account.min_password_length),
    ));
    let identity = identity(&stored, password);
    let document = match configuration(vpn_pid, &stored, &identity) {
        Ok(d) => d,
        Err(e) => return Plan::fail(500, e.to_string()),
    };
    Plan::Provision {
        identity: IdentityPlan {
            username: identity.username.clone(),
            password_hash: fast_hash(&identity.password),
            configurations: document.configurations.len(),
        },
        reply: ProvSuccess {
            provision_status: PROVISION_STATUS_COMPLETED.into(),
            broker_url: identity.broker_url,
            account_name: identity.account_name,
            client_id: identity.client_id,
            username: identity.username,
            password: identity.password,
            configuration: document.to_xml(),
        },
        document,
    }
}

/// The device identity of PROTOCOL.md 4.4 for a request (username `CID@ACCOUNT`).
pub fn identity(request: &ProvisionRequest, password: String) -> Identity {
    Identity {
        broker_url: request.broker_url.clone(),
        account_name: request.account.clone(),
        client_id: request.client_id.clone(),
        username: format!("{}@{}", request.client_id, request.account),
        password,
    }
}

/// The configuration document of PROTOCOL.md 4.5: the generated configurations merged with the
/// request's additional configuration.
pub fn configuration(
    vpn_pid: &str,
    request: &ProvisionRequest,
    identity: &Identity,
) -> Result<Document, ExchangeError> {
    let vpn = request.vpn_access.then_some(vpn_pid);
    let base = generated(identity, vpn);
    match &request.additional_configuration {
        None => Ok(base),
        Some(xml) => {
            let additional = Document::parse(xml)?;
            Ok(Document::merge(base, &additional, &ReservedPolicy::for_generated(vpn)).document)
        }
    }
}

/// The configuration XML a device would receive now for `request`, passwords shown as
/// [`MASK`] (the admin API's configuration preview).
pub fn preview(vpn_pid: &str, request: &ProvisionRequest) -> Result<String, ExchangeError> {
    let identity = identity(request, MASK.to_string());
    Ok(configuration(vpn_pid, request, &identity)?.to_xml_masked())
}
