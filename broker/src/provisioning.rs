//! The provisioning endpoint (PROTOCOL.md sections 2 to 5): the auth hook at CONNECT, the ACL
//! hook on SUBSCRIBE/PUBLISH, and the PROV-V1 exchange.
//!
//! An exchange runs as a task detached from the publish handler, so a device that disconnects
//! mid-exchange cannot cancel it half-way: the task always ends the execution (COMPLETED on
//! the reply's PUBACK, FAILED on disconnect, refusal or `reply_timeout`).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use fleetgate_acl as acl;
use fleetgate_auth_hook::credentials::{fast_hash, fast_verify, generate_password};
use fleetgate_devconfig::{Document, Identity, ReservedPolicy, generated};
use fleetgate_hooks::{
    Action, ConnectFacts, EndpointKind, Protocol, ProvisioningSession, Refusal, Session,
};
use fleetgate_kura::{Encoding, ProvReply, ProvRequest, ProvSuccess, topics};
use fleetgate_storage::ops::{self, Attempt, ExchangeAction, ExchangeStart, IdentityPlan};
use fleetgate_storage::{Outcome, ProvisionRequest};
use ntex::time::Millis;
use ntex::util::{ByteString, Bytes};
use ntex_mqtt::QoS;
use ntex_mqtt::v5::codec::DisconnectReasonCode;

use crate::app::App;
use crate::metrics::Slot;
use crate::mqtt::{Endpoint, SendError, Sink};

/// The provisioning endpoint.
pub struct Provisioning;

/// One provisioning connection.
pub struct Conn {
    _slot: Slot,
    app: Arc<App>,
    session: Session,
    protocol: Protocol,
    peer: String,
    sink: Sink,
    subscriptions: RefCell<Vec<(String, QoS)>>,
}

/// Connection state: shared with the exchange tasks it spawns.
pub struct State(Rc<Conn>);

impl Endpoint for Provisioning {
    type State = State;
    const NAME: &'static str = "provisioning";

    fn max_connections(config: &crate::config::Config) -> usize {
        config.provisioning.max_connections
    }

    async fn connect(
        _endpoint: &Arc<Self>,
        app: &Arc<App>,
        facts: ConnectFacts,
        sink: Sink,
        slot: Slot,
    ) -> Result<State, Refusal> {
        let session = app
            .hooks
            .authenticate(EndpointKind::Provisioning, &facts)
            .await?;
        tracing::debug!(client_id = %session.client_id(), peer = %facts.peer, "provisioning session accepted");
        Ok(State(Rc::new(Conn {
            _slot: slot,
            app: app.clone(),
            session,
            protocol: facts.protocol,
            peer: facts.peer.to_string(),
            sink,
            subscriptions: RefCell::new(Vec::new()),
        })))
    }

    fn subscribe(state: &State, filter: &str, qos: QoS) -> Option<QoS> {
        if !state.0.may(Action::Subscribe(filter)) {
            return None;
        }
        let mut subs = state.0.subscriptions.borrow_mut();
        subs.retain(|(f, _)| f != filter);
        subs.push((filter.to_string(), qos));
        Some(qos)
    }

    fn unsubscribe(state: &State, filter: &str) {
        state
            .0
            .subscriptions
            .borrow_mut()
            .retain(|(f, _)| f != filter);
    }

    fn publish(state: &State, topic: &str, _qos: QoS, payload: Bytes) -> bool {
        if !state.0.may(Action::Publish(topic)) {
            return false;
        }
        // Retained flags are accepted and discarded: nothing of a provisioning session is kept.
        let conn = state.0.clone();
        drop(ntex::rt::spawn(
            async move { exchange(conn, payload).await },
        ));
        true
    }
}

fn millis(seconds: f64) -> Millis {
    Millis(u32::try_from((seconds * 1000.0) as u64).unwrap_or(u32::MAX))
}

impl Conn {
    /// The ACL hook's answer for this session.
    fn may(&self, action: Action<'_>) -> bool {
        self.app.hooks.authorize(&self.session, action).is_allowed()
    }

    /// Who the device is. A provisioning endpoint only ever holds provisioning sessions.
    fn ident(&self) -> &ProvisioningSession {
        self.session
            .as_provisioning()
            .expect("the provisioning endpoint accepts provisioning sessions only")
    }

    fn pa(&self) -> &str {
        &self.app.config.provisioning.account
    }

    /// The QoS the device subscribed with for `topic` (QoS 1 when it has no matching
    /// subscription: the reply is still sent, as devices commonly subscribe late).
    fn delivery_qos(&self, topic: &str) -> QoS {
        self.subscriptions
            .borrow()
            .iter()
            .filter(|(f, _)| acl::filter_matches(f, topic))
            .map(|(_, q)| *q)
            .max_by_key(|q| u8::from(*q))
            .unwrap_or(QoS::AtLeastOnce)
    }

    /// Sends a reply that nothing waits on (failures).
    async fn send_reply(&self, level: &str, reply: &ProvReply, encoding: Encoding) {
        let topic = topics::reply_topic(self.pa(), &self.ident().client_id, level);
        let payload = Bytes::from(reply.encode(encoding));
        let sent = if self.delivery_qos(&topic) == QoS::AtMostOnce {
            self.sink.publish_qos0(ByteString::from(topic), payload)
        } else {
            let timeout = millis(self.app.config.provisioning.reply_timeout);
            ntex::time::timeout(
                timeout,
                self.sink.publish_qos1(ByteString::from(topic), payload),
            )
            .await
            .unwrap_or(Err(SendError::Timeout))
        };
        if let Err(e) = sent {
            tracing::debug!(client_id = %self.ident().client_id, ?e, "failure reply not delivered");
        }
    }

    fn attempt(&self) -> Attempt {
        Attempt {
            request_id: self.ident().request_id.clone(),
            protocol: self.protocol.as_str().into(),
            peer: self.peer.clone(),
            now: self.app.clock.now(),
        }
    }
}

/// What the snapshot says to do with a well-formed request.
struct Plan {
    action: ExchangeAction,
    reply: Option<ProvSuccess>,
}

fn plan(conn: &Conn, req: &ProvRequest) -> Plan {
    let fail = |code: u16, reason: &str| Plan {
        action: ExchangeAction::Fail {
            code,
            reason: reason.to_string(),
        },
        reply: None,
    };
    let app = &conn.app;
    let read = app.store.read().and_then(|r| {
        let request = r.request(&conn.ident().request_id)?;
        let account = match &request {
            Some(q) => r.account(&q.account)?,
            None => None,
        };
        Ok((request, account))
    });
    let (request, account) = match read {
        Ok((Some(r), Some(a))) => (r, a),
        Ok(_) => return fail(500, "the provision request or its account disappeared"),
        Err(e) => {
            tracing::error!(error = %e, "store read failed during an exchange");
            return fail(500, "could not read the provision request");
        }
    };
    if let Some(hash) = &request.activation_key_hash {
        match &req.activation_key {
            None => return fail(403, "activation key missing"),
            Some(k) if !fast_verify(k, hash) => return fail(403, "activation key wrong"),
            Some(_) => {}
        }
    }
    let password = generate_password(usize::from(
        request.effective_password_length(account.min_password_length),
    ));
    let identity = identity(&request, password);
    let configuration =
        match configuration(&app.config.provisioning.vpn_client_pid, &request, &identity) {
            Ok(d) => d,
            Err(reason) => return fail(500, &reason),
        };
    Plan {
        action: ExchangeAction::Provision(IdentityPlan {
            username: identity.username.clone(),
            password_hash: fast_hash(&identity.password),
            configurations: configuration.configurations.len(),
        }),
        reply: Some(ProvSuccess {
            provision_status: fleetgate_kura::PROVISION_STATUS_COMPLETED.into(),
            broker_url: identity.broker_url,
            account_name: identity.account_name,
            client_id: identity.client_id,
            username: identity.username,
            password: identity.password,
            configuration: configuration.to_xml(),
        }),
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
/// request's additional configuration. Also used by the admin API's preview.
pub fn configuration(
    vpn_pid: &str,
    request: &ProvisionRequest,
    identity: &Identity,
) -> Result<Document, String> {
    let vpn = request.vpn_access.then_some(vpn_pid);
    let base = generated(identity, vpn);
    match &request.additional_configuration {
        None => Ok(base),
        Some(xml) => {
            let additional = Document::parse(xml)
                .map_err(|e| format!("the stored additional configuration is invalid: {e}"))?;
            Ok(Document::merge(base, &additional, &ReservedPolicy::for_generated(vpn)).document)
        }
    }
}

async fn exchange(conn: Rc<Conn>, payload: Bytes) {
    let app = conn.app.clone();
    let started = Instant::now();
    let (encoding, req) = match fleetgate_kura::decode_request(&payload) {
        Ok(x) => x,
        Err(e) => {
            // 400: record it when the request can still be attributed (no change while
            // another exchange runs), and answer on REPLY/{id} or REPLY/error.
            let device_request_id = e.request_id().unwrap_or("-").to_string();
            let action = ExchangeAction::Fail {
                code: 400,
                reason: e.to_string(),
            };
            let _ = app
                .store
                .write_async(ops::begin_exchange(
                    conn.attempt(),
                    device_request_id,
                    action,
                ))
                .await;
            app.metrics.outcome("reply_code_400");
            conn.send_reply(e.reply_topic_level(), &e.to_reply(), e.encoding())
                .await;
            return;
        }
    };
    let Plan { action, reply } = plan(&conn, &req);
    let fail_code = match &action {
        ExchangeAction::Fail { code, reason } => Some((*code, reason.clone())),
        ExchangeAction::Provision(_) => None,
    };
    let start = app
        .store
        .write_async(ops::begin_exchange_tracked(
            conn.attempt(),
            req.request_id.clone(),
            action,
        ))
        .await;
    let (execution_id, running) = match start {
        Ok((ExchangeStart::Started { execution_id, .. }, running)) => (execution_id, running),
        Ok((ExchangeStart::Duplicate, _)) => return,
        Ok((ExchangeStart::Busy, _)) => {
            app.metrics.outcome("reply_code_409");
            let r = ProvReply::failure(409, "another exchange for this request is running");
            conn.send_reply(&req.request_id, &r, encoding).await;
            return;
        }
        Ok((ExchangeStart::NotOpen, _)) => {
            app.metrics.outcome("reply_code_409");
            let r = ProvReply::failure(409, "the provision request is no longer open");
            conn.send_reply(&req.request_id, &r, encoding).await;
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "could not store an exchange");
            app.metrics.outcome("reply_code_500");
            let r = ProvReply::failure(500, "could not store the provisioning result");
            conn.send_reply(&req.request_id, &r, encoding).await;
            return;
        }
    };
    let (Some(success), None) = (reply, &fail_code) else {
        let (code, reason) = fail_code.unwrap_or((500, "no reply".into()));
        app.metrics.outcome(format!("reply_code_{code}"));
        conn.send_reply(&req.request_id, &ProvReply::failure(code, reason), encoding)
            .await;
        return;
    };
    let topic = topics::reply_topic(conn.pa(), &conn.ident().client_id, &req.request_id);
    let payload = Bytes::from(ProvReply::Success(success).encode(encoding));
    let delivered = if conn.delivery_qos(&topic) == QoS::AtMostOnce {
        conn.sink
            .publish_qos0(ByteString::from(topic), payload)
            .map(|()| "reply written to a QoS 0 subscription")
    } else {
        let timeout = millis(app.config.provisioning.reply_timeout);
        match ntex::time::timeout(
            timeout,
            conn.sink.publish_qos1(ByteString::from(topic), payload),
        )
        .await
        {
            Ok(r) => r.map(|()| "PUBACK received"),
            Err(()) => Err(SendError::Timeout),
        }
    };
    let (outcome, message) = match delivered {
        Ok(m) => (Outcome::Completed, m.to_string()),
        Err(SendError::Closed) => (
            Outcome::Failed,
            "the device disconnected before acknowledging the reply".to_string(),
        ),
        Err(SendError::Timeout) => (
            Outcome::Failed,
            "no PUBACK within provisioning.reply_timeout".to_string(),
        ),
        Err(SendError::Refused(code)) => (
            Outcome::Failed,
            format!("the device refused the reply (reason code 0x{code:02x})"),
        ),
    };
    let finish = match running {
        Some(running) => {
            ops::finish_exchange_tracked(running, execution_id, outcome, message, app.clock.now())
        }
        None => ops::finish_exchange(
            conn.ident().request_id.clone(),
            execution_id,
            outcome,
            message,
            app.clock.now(),
        ),
    };
    if let Err(e) = app.store.write_async(finish).await {
        tracing::error!(error = %e, "could not end an exchange");
    }
    if outcome == Outcome::Completed {
        app.metrics.outcome("completed");
        app.metrics
            .enrollment_duration
            .observe(started.elapsed().as_secs_f64());
        ntex::time::sleep(millis(app.config.provisioning.linger)).await;
        if conn.sink.is_open() {
            conn.sink.close(DisconnectReasonCode::NormalDisconnection);
        }
    } else {
        app.metrics.outcome("failed");
    }
}
