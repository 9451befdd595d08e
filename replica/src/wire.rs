//! The replica feed's wire format (JSON): what `GET /hooks/replica` answers and the plugin
//! reads. Fleetgate serialises these very types, so the two sides cannot drift.
//!
//! A page is either a full [`Snapshot`] or the [`Changes`] after the follower's position.
//! Positions are `(epoch, seq)`: the epoch is drawn by each Fleetgate process, the sequence
//! counts that process's committed changes. Password hashes travel in records: the feed is as
//! secret as the store and is only served to holders of `hooks.token`.

use serde::{Deserialize, Serialize};

/// The feed's path on the hook listener; `?epoch=E&seq=N` asks for what follows that position
/// (without them, or when they cannot be continued, the answer is a snapshot).
pub const FEED_PATH: &str = "/hooks/replica";

/// The longest a feed request waits for a change before answering "nothing new".
pub const MAX_WAIT_SECS: u64 = 20;

/// A follower's position in the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The Fleetgate process's random epoch.
    pub epoch: u64,
    /// The sequence number of the last change included.
    pub seq: u64,
}

/// One answer of the feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Page {
    /// Everything the decisions read: replaces the replica.
    Snapshot(Snapshot),
    /// What changed after the asked position.
    Changes(Changes),
}

/// A full copy of the records the decisions read, as of `position`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Where a follower continues from.
    pub position: Position,
    /// Every record.
    pub records: Vec<Record>,
}

/// The records changed after the asked position, up to `position`: each key once, with its
/// state as of the answer (an upsert) or gone (a delete).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Changes {
    /// Where a follower continues from.
    pub position: Position,
    /// Records created or changed.
    #[serde(default)]
    pub upserts: Vec<Record>,
    /// Records deleted.
    #[serde(default)]
    pub deletes: Vec<RecordKey>,
}

/// How a client ID is tied to its account's users, as stored (`INHERITED` resolves to the
/// account's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Coupling {
    /// The account's default.
    Inherited,
    /// Any unreserved user of the account.
    Loose,
    /// Only the reserved user.
    Strict,
}

/// A device user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceUserRecord {
    /// `CID@ACCOUNT`.
    pub username: String,
    /// Owning account.
    pub account: String,
    /// Keyed fast hash of the generated password.
    pub password_hash: String,
    /// e.g. `broker:connect`.
    pub permissions: Vec<String>,
    /// The client ID it is reserved for.
    pub reserved_for: Option<String>,
    /// Disabled users are refused.
    pub enabled: bool,
}

impl std::fmt::Debug for DeviceUserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is a secret too.
        f.debug_struct("DeviceUserRecord")
            .field("username", &self.username)
            .field("permissions", &self.permissions)
            .field("reserved_for", &self.reserved_for)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// An account user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountUserRecord {
    /// `NAME@ACCOUNT`.
    pub username: String,
    /// Owning account.
    pub account: String,
    /// argon2id PHC string, or keyed fast hash of a generated password.
    pub password_hash: String,
    /// PROTOCOL.md 6.1's permissions.
    pub permissions: Vec<String>,
    /// Disabled users are refused.
    pub enabled: bool,
}

impl std::fmt::Debug for AccountUserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountUserRecord")
            .field("username", &self.username)
            .field("permissions", &self.permissions)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// An account: its existence and default coupling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountRecord {
    /// Account name.
    pub name: String,
    /// What `INHERITED` means for its client IDs.
    pub default_coupling: Coupling,
}

/// A client ID of an account.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceKey {
    /// Account.
    pub account: String,
    /// Client ID.
    pub client_id: String,
}

/// A device connection: how a client ID may connect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionRecord {
    /// Account and client ID.
    #[serde(flatten)]
    pub key: DeviceKey,
    /// Coupling as stored.
    pub coupling: Coupling,
    /// The user reserved for the client ID.
    pub reserved_user: Option<String>,
}

/// One record the decisions read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Record {
    /// A device user.
    DeviceUser(DeviceUserRecord),
    /// An account user.
    AccountUser(AccountUserRecord),
    /// An account.
    Account(AccountRecord),
    /// A device connection.
    DeviceConnection(ConnectionRecord),
    /// A registry entry (only its existence matters to the decisions).
    Device(DeviceKey),
}

/// The key of a deleted record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum RecordKey {
    /// A device user.
    DeviceUser {
        /// Its username.
        username: String,
    },
    /// An account user.
    AccountUser {
        /// Its username.
        username: String,
    },
    /// An account.
    Account {
        /// Its name.
        name: String,
    },
    /// A device connection.
    DeviceConnection(DeviceKey),
    /// A registry entry.
    Device(DeviceKey),
}
