//! The store side of the decisions: the records a CONNECT needs (device users, account users,
//! coupling rules, the registry), read from one snapshot and handed to the pure decision code
//! in its own types (moved, not copied).

use std::cell::OnceCell;

use fleetgate_auth_hook::operational::{AccountUser, CouplingRule, DeviceDirectory, DeviceUser};
use fleetgate_auth_hook::{ConnectFacts, Refusal};
use fleetgate_storage::{Coupling, ProvisionRequest, ProvisionUser, Reader, Store, StoreError};

/// The provision request a provisioning CONNECT is matched against and its provision user.
pub(crate) fn provisioning_candidate(
    store: &Store,
    facts: &ConnectFacts,
) -> Result<(Option<ProvisionRequest>, Option<ProvisionUser>), Refusal> {
    store
        .read()
        .and_then(|r| {
            let request = r.connect_candidate(&facts.client_id)?;
            let user = match &request {
                Some(q) => r.provision_user(&q.provision_username)?,
                None => None,
            };
            Ok((request, user))
        })
        .map_err(|e| {
            tracing::error!(error = %e, "store read failed during CONNECT");
            Refusal::ServerBusy
        })
}

/// Device users and coupling rules from one store snapshot, taken on the first lookup (a
/// CONNECT refused before any lookup opens none).
pub(crate) struct Directory<'a> {
    store: &'a Store,
    reader: OnceCell<Reader>,
}

impl<'a> Directory<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Directory {
            store,
            reader: OnceCell::new(),
        }
    }

    fn reader(&self) -> Result<&Reader, StoreError> {
        if let Some(r) = self.reader.get() {
            return Ok(r);
        }
        let r = self.store.read()?;
        Ok(self.reader.get_or_init(|| r))
    }
}

impl DeviceDirectory for Directory<'_> {
    type Error = StoreError;

    fn device_user(&self, username: &str) -> Result<Option<DeviceUser>, StoreError> {
        Ok(self.reader()?.device_user(username)?.map(|u| DeviceUser {
            account: u.account,
            password_hash: u.password_hash,
            permissions: u.permissions,
            reserved_for: u.reserved_for,
            enabled: u.enabled,
        }))
    }

    fn account_user(&self, username: &str) -> Result<Option<AccountUser>, StoreError> {
        Ok(self.reader()?.account_user(username)?.map(|u| AccountUser {
            account: u.account,
            password_hash: u.password_hash,
            permissions: u.permissions,
            enabled: u.enabled,
        }))
    }

    fn registered_device(&self, account: &str, client_id: &str) -> Result<bool, StoreError> {
        Ok(self.reader()?.device(account, client_id)?.is_some())
    }

    fn coupling(&self, account: &str, client_id: &str) -> Result<Option<CouplingRule>, StoreError> {
        let read = self.reader()?;
        let Some(account) = read.account(account)? else {
            return Ok(None);
        };
        let connection = read.device_connection(&account.name, client_id)?;
        let (coupling, reserved_user) = connection.map_or((Coupling::Inherited, None), |c| {
            (c.coupling, c.reserved_user)
        });
        Ok(Some(match coupling.resolve(account.default_coupling) {
            Coupling::Strict => CouplingRule::Strict { reserved_user },
            Coupling::Loose | Coupling::Inherited => CouplingRule::Loose,
        }))
    }
}
