//! The replica of what Fleetgate's connect and topic decisions read (device users, account
//! users, accounts' default coupling, device connections, the registry's client IDs), for doors
//! that decide away from Fleetgate's store: the native Mosquitto plugin (HOOKS.md 3).
//!
//! It owns:
//! - the feed's wire types ([`wire`]), which Fleetgate's feed route serialises and the
//!   plugin parses;
//! - the in-memory [`Replica`], which applies a snapshot and then changes, and implements
//!   [`DeviceDirectory`] so that the plugin decides with the very same
//!   `fleetgate_auth_hook::operational` and `fleetgate_acl` code as Fleetgate (HOOKS.md 1);
//! - [`SharedReplica`], the replica shared between a follower thread and deciding threads:
//!   a page is parsed and built without the lock, so a decision waits at most for an
//!   in-memory apply, never for the network.
//!
//! It must not do I/O, start threads or runtimes, or link the store: the plugin is a shared
//! library loaded into Mosquitto. No password hash reaches a `Debug` output.

pub mod wire;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;

use fleetgate_auth_hook::operational::{
    AccountUser, CouplingRule, DeviceDirectory, DeviceUser, may_connect_as,
};
use parking_lot::{RwLock, RwLockReadGuard};

use wire::{
    AccountUserRecord, Changes, ConnectionRecord, Coupling, DeviceUserRecord, Page, Position,
    Record, RecordKey, Snapshot,
};

/// Why a feed page was not applied (the replica is left as it was).
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The page is not valid JSON of the feed (for example cut off mid-way).
    #[error("malformed feed page: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A changes page that does not continue this replica's position.
    #[error("changes from {got:?} do not continue position {have:?}")]
    Discontinuous {
        /// The replica's position.
        have: Option<Position>,
        /// The page's position.
        got: Position,
    },
}

/// The records, by the keys the decisions look them up with.
#[derive(Clone, Debug, Default)]
pub struct Replica {
    position: Option<Position>,
    device_users: HashMap<String, DeviceUserRecord>,
    account_users: HashMap<String, AccountUserRecord>,
    accounts: HashMap<String, Coupling>,
    /// account -> client ID -> connection.
    connections: HashMap<String, HashMap<String, ConnectionRecord>>,
    /// account -> registry client IDs.
    devices: HashMap<String, HashSet<String>>,
}

impl Replica {
    /// A replica holding exactly a snapshot.
    pub fn from_snapshot(snapshot: Snapshot) -> Replica {
        let mut r = Replica {
            position: Some(snapshot.position),
            ..Replica::default()
        };
        for record in snapshot.records {
            r.upsert(record);
        }
        r
    }

    /// Where the feed continues from; `None` before the first snapshot.
    pub fn position(&self) -> Option<Position> {
        self.position
    }

    /// How many users (device and account) it holds.
    pub fn users(&self) -> usize {
        self.device_users.len() + self.account_users.len()
    }

    /// Every username it holds (device and account users).
    pub fn usernames(&self) -> Vec<String> {
        self.device_users
            .keys()
            .chain(self.account_users.keys())
            .cloned()
            .collect()
    }

    /// Those of `usernames` that may not connect any more on this replica (deleted, disabled,
    /// or without `broker:connect`): their open sessions must end.
    pub fn revoked(&self, usernames: impl IntoIterator<Item = String>) -> Vec<String> {
        usernames
            .into_iter()
            .filter(|u| may_connect_as(self, u).is_err())
            .collect()
    }

    /// Applies the changes after this replica's position and returns the users it revoked
    /// (see [`Replica::revoked`]); a page of another epoch, or one that goes back, is refused
    /// and changes nothing.
    pub fn apply_changes(&mut self, changes: Changes) -> Result<Vec<String>, ReplicaError> {
        let continues = self
            .position
            .is_some_and(|p| p.epoch == changes.position.epoch && p.seq <= changes.position.seq);
        if !continues {
            return Err(ReplicaError::Discontinuous {
                have: self.position,
                got: changes.position,
            });
        }
        let mut touched = Vec::new();
        for key in changes.deletes {
            if let RecordKey::DeviceUser { username } | RecordKey::AccountUser { username } = &key {
                touched.push(username.clone());
            }
            self.delete(key);
        }
        for record in changes.upserts {
            if let Record::DeviceUser(DeviceUserRecord { username, .. })
            | Record::AccountUser(AccountUserRecord { username, .. }) = &record
            {
                touched.push(username.clone());
            }
            self.upsert(record);
        }
        self.position = Some(changes.position);
        Ok(self.revoked(touched))
    }

    fn upsert(&mut self, record: Record) {
        match record {
            Record::DeviceUser(u) => {
                self.device_users.insert(u.username.clone(), u);
            }
            Record::AccountUser(u) => {
                self.account_users.insert(u.username.clone(), u);
            }
            Record::Account(a) => {
                self.accounts.insert(a.name, a.default_coupling);
            }
            Record::DeviceConnection(c) => {
                self.connections
                    .entry(c.key.account.clone())
                    .or_default()
                    .insert(c.key.client_id.clone(), c);
            }
            Record::Device(d) => {
                self.devices
                    .entry(d.account)
                    .or_default()
                    .insert(d.client_id);
            }
        }
    }

    fn delete(&mut self, key: RecordKey) {
        match key {
            RecordKey::DeviceUser { username } => {
                self.device_users.remove(&username);
            }
            RecordKey::AccountUser { username } => {
                self.account_users.remove(&username);
            }
            RecordKey::Account { name } => {
                self.accounts.remove(&name);
            }
            RecordKey::DeviceConnection(k) => {
                if let Some(c) = self.connections.get_mut(&k.account) {
                    c.remove(&k.client_id);
                }
            }
            RecordKey::Device(k) => {
                if let Some(d) = self.devices.get_mut(&k.account) {
                    d.remove(&k.client_id);
                }
            }
        }
    }
}

impl DeviceDirectory for Replica {
    type Error = Infallible;

    fn device_user(&self, username: &str) -> Result<Option<DeviceUser>, Infallible> {
        Ok(self.device_users.get(username).map(|u| DeviceUser {
            account: u.account.clone(),
            password_hash: u.password_hash.clone(),
            permissions: u.permissions.clone(),
            reserved_for: u.reserved_for.clone(),
            enabled: u.enabled,
        }))
    }

    fn account_user(&self, username: &str) -> Result<Option<AccountUser>, Infallible> {
        Ok(self.account_users.get(username).map(|u| AccountUser {
            account: u.account.clone(),
            password_hash: u.password_hash.clone(),
            permissions: u.permissions.clone(),
            enabled: u.enabled,
        }))
    }

    fn coupling(&self, account: &str, client_id: &str) -> Result<Option<CouplingRule>, Infallible> {
        let Some(default) = self.accounts.get(account) else {
            return Ok(None);
        };
        let connection = self.connections.get(account).and_then(|c| c.get(client_id));
        let (coupling, reserved_user) = connection.map_or((Coupling::Inherited, None), |c| {
            (c.coupling, c.reserved_user.clone())
        });
        // As the store resolves it: INHERITED takes the account's default, and an inherited
        // default is LOOSE.
        let effective = match coupling {
            Coupling::Inherited => *default,
            c => c,
        };
        Ok(Some(match effective {
            Coupling::Strict => CouplingRule::Strict { reserved_user },
            Coupling::Loose | Coupling::Inherited => CouplingRule::Loose,
        }))
    }

    fn registered_device(&self, account: &str, client_id: &str) -> Result<bool, Infallible> {
        Ok(self
            .devices
            .get(account)
            .is_some_and(|d| d.contains(client_id)))
    }
}

/// A replica shared between the thread that follows the feed and the threads that decide.
#[derive(Debug, Default)]
pub struct SharedReplica {
    inner: RwLock<Replica>,
}

impl SharedReplica {
    /// The current replica, for one decision (hold the guard briefly: the follower waits for
    /// it to apply a page).
    pub fn read(&self) -> RwLockReadGuard<'_, Replica> {
        self.inner.read()
    }

    /// The position to ask the feed for.
    pub fn position(&self) -> Option<Position> {
        self.inner.read().position()
    }

    /// Applies one page and returns the users it revoked (whose open sessions must end). A
    /// snapshot is built aside and swapped in; changes are applied in place (in memory only).
    /// On error the replica is unchanged.
    pub fn apply(&self, page: Page) -> Result<Vec<String>, ReplicaError> {
        match page {
            Page::Snapshot(s) => {
                let fresh = Replica::from_snapshot(s);
                let known = self.inner.read().usernames();
                let revoked = fresh.revoked(known);
                // The old replica is dropped after the lock is released.
                let _old = std::mem::replace(&mut *self.inner.write(), fresh);
                Ok(revoked)
            }
            Page::Changes(c) => self.inner.write().apply_changes(c),
        }
    }

    /// Parses a page of the feed and applies it; a page cut off mid-way fails to parse and
    /// leaves the last good replica in place.
    pub fn apply_json(&self, body: &[u8]) -> Result<Vec<String>, ReplicaError> {
        self.apply(serde_json::from_slice(body)?)
    }
}

#[cfg(test)]
mod tests;
