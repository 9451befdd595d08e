//! The persisted domain records. Every record is stored as one version byte followed by its
//! JSON encoding (see `codec`), so a later version can add fields with serde defaults or
//! migrate on read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer};

use crate::engine::{JsonReader, Keyed, text, two_parts};

/// The record types whose stored form leaves out what their key holds: `Serialize` writes
/// the stored form (serde's `remote = "Self"` derives it, and the reading, as associated
/// functions) and [`Keyed`] reads it back with the key's fields put back.
macro_rules! keyed {
    ($($t:ident: |$r:ident, $key:ident| $restore:block)*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $t::serialize(self, s)
            }
        }

        impl Keyed for $t {
            fn read_keyed($key: &[u8], json: &mut JsonReader<'_>) -> serde_json::Result<Self> {
                let mut $r = $t::deserialize(json)?;
                $restore
                Ok($r)
            }
        }
    )*};
}

keyed! {
    ProvisionRequest: |r, key| { r.id = text(key); }
    // The key is the execution id; in the layout before issue 17's second turn it was the
    // request id and the execution id.
    Execution: |e, key| { e.id = crate::engine::last_part(key).to_string(); }
    DeviceUser: |u, key| { u.username = text(key); }
    DeviceConnection: |c, key| { (c.account, c.client_id) = two_parts(key); }
    Device: |d, key| { (d.account, d.client_id) = two_parts(key); }
}

/// Timestamps are UTC everywhere.
pub type Timestamp = DateTime<Utc>;

/// Timestamp serialisation, byte for byte chrono's own (RFC 3339, `AutoSi` fractions, `Z`).
/// chrono serialises through `collect_str`, which serde_json escapes one formatted character
/// at a time: that was the largest single cost of encoding records in the writer thread
/// (every execution log line carries a timestamp). Formatting into a `String` first and
/// escaping it once gives the same text for a fraction of the work. Decoding is unchanged.
mod ts {
    use chrono::SecondsFormat;
    use serde::Serializer;

    use super::Timestamp;

    pub(super) fn ser<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

/// Timestamps of the records every enrollment writes (issue 17): nanoseconds since the Unix
/// epoch as a JSON integer, 19 digits instead of a 32-byte RFC 3339 string. Either form reads,
/// so records written before still read; a time beyond i64 nanoseconds (after 2262) is still
/// written as a string.
mod nanos {
    use chrono::{DateTime, Utc};
    use serde::de::{Error, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Timestamp;

    /// A timestamp in the compact form.
    struct Nanos(Timestamp);

    impl Serialize for Nanos {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0.timestamp_nanos_opt() {
                Some(n) => s.serialize_i64(n),
                None => super::ts::ser(&self.0, s),
            }
        }
    }

    impl<'de> Deserialize<'de> for Nanos {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Either;
            impl Visitor<'_> for Either {
                type Value = Nanos;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("nanoseconds since the epoch or an RFC 3339 time")
                }
                fn visit_i64<E: Error>(self, n: i64) -> Result<Nanos, E> {
                    Ok(Nanos(DateTime::<Utc>::from_timestamp_nanos(n)))
                }
                fn visit_u64<E: Error>(self, n: u64) -> Result<Nanos, E> {
                    i64::try_from(n)
                        .map(|n| Nanos(DateTime::<Utc>::from_timestamp_nanos(n)))
                        .map_err(E::custom)
                }
                fn visit_str<E: Error>(self, s: &str) -> Result<Nanos, E> {
                    // What chrono's own deserializer accepts.
                    s.parse::<DateTime<Utc>>().map(Nanos).map_err(E::custom)
                }
            }
            d.deserialize_any(Either)
        }
    }

    pub(super) fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        Nanos(*t).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        Nanos::deserialize(d).map(|n| n.0)
    }

    /// The same for an optional timestamp.
    pub(super) mod opt {
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        use super::{Nanos, Timestamp};

        // serde's `serialize_with` hands over `&Option<T>`.
        #[allow(clippy::ref_option)]
        pub(in super::super) fn serialize<S: Serializer>(
            t: &Option<Timestamp>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            t.map(Nanos).serialize(s)
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Timestamp>, D::Error> {
            Ok(Option::<Nanos>::deserialize(d)?.map(|n| n.0))
        }
    }
}

/// The stored form of an execution log (issue 17: the log was half of an enrollment's bytes).
/// A line is written as `"message"` when it is INFO and happened at the previous line's time
/// (most lines of an exchange share the time of its one write), else `[nanos, "message"]`
/// (INFO) or `[nanos, "message", "LEVEL"]`, with `nanos` the nanoseconds since the Unix epoch.
/// Lines written before, as `{"at", "level", "message"}` objects, still read.
mod log_form {
    use chrono::{DateTime, Utc};
    use serde::de::{Error as _, SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{LogLevel, LogLine, Timestamp};

    /// One stored line, in either form.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Same(String),
        Leveled(i64, String, LogLevel),
        Timed(i64, String),
        Full(LogLine),
    }

    // serde's `serialize_with` hands over `&Vec<T>`.
    #[allow(clippy::ptr_arg)]
    pub(super) fn ser<S: Serializer>(log: &Vec<LogLine>, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(log.len()))?;
        let mut previous: Option<Timestamp> = None;
        for line in log {
            // Out of i64 nanoseconds (beyond 2262) a line keeps its full form.
            match (line.at.timestamp_nanos_opt(), line.level) {
                _ if previous == Some(line.at) && line.level == LogLevel::Info => {
                    seq.serialize_element(&line.message)?;
                }
                (Some(nanos), LogLevel::Info) => seq.serialize_element(&(nanos, &line.message))?,
                (Some(nanos), level) => seq.serialize_element(&(nanos, &line.message, level))?,
                (None, _) => seq.serialize_element(line)?,
            }
            previous = Some(line.at);
        }
        seq.end()
    }

    pub(super) fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<LogLine>, D::Error> {
        struct Lines;
        impl<'de> Visitor<'de> for Lines {
            type Value = Vec<LogLine>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of log lines")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<LogLine> = Vec::with_capacity(seq.size_hint().unwrap_or(8));
                while let Some(stored) = seq.next_element::<Stored>()? {
                    let at = |nanos| DateTime::<Utc>::from_timestamp_nanos(nanos);
                    out.push(match stored {
                        Stored::Same(message) => LogLine {
                            at: out
                                .last()
                                .map(|l| l.at)
                                .ok_or_else(|| A::Error::custom("a first log line without time"))?,
                            level: LogLevel::Info,
                            message,
                        },
                        Stored::Leveled(nanos, message, level) => LogLine {
                            at: at(nanos),
                            level,
                            message,
                        },
                        Stored::Timed(nanos, message) => LogLine {
                            at: at(nanos),
                            level: LogLevel::Info,
                            message,
                        },
                        Stored::Full(line) => line,
                    });
                }
                Ok(out)
            }
        }
        d.deserialize_seq(Lines)
    }
}

/// How a device's client ID is tied to users of its account (Eclipse Kapua's model).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Coupling {
    /// Use the account's default coupling.
    Inherited,
    /// The client ID may connect with any user of its account not reserved to another device.
    Loose,
    /// The client ID may connect only with its reserved user.
    Strict,
}

impl Coupling {
    /// The wire name (`INHERITED`, `LOOSE`, `STRICT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Coupling::Inherited => "INHERITED",
            Coupling::Loose => "LOOSE",
            Coupling::Strict => "STRICT",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "INHERITED" => Some(Coupling::Inherited),
            "LOOSE" => Some(Coupling::Loose),
            "STRICT" => Some(Coupling::Strict),
            _ => None,
        }
    }

    /// The effective coupling: `Inherited` resolves to the account default (itself never
    /// `Inherited`; an inherited default falls back to `Loose`).
    pub fn resolve(self, account_default: Coupling) -> Coupling {
        match (self, account_default) {
            (Coupling::Inherited, Coupling::Inherited) => Coupling::Loose,
            (Coupling::Inherited, d) => d,
            (c, _) => c,
        }
    }
}

/// An account: the provisioning account or a target account of devices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// 1 to 64 of `[a-z0-9-]`.
    pub name: String,
    /// Minimum length of generated device passwords in this account.
    pub min_password_length: u16,
    /// Coupling used by device connections whose coupling is `INHERITED`.
    pub default_coupling: Coupling,
    /// True for the reserved provisioning account.
    #[serde(default)]
    pub provisioning: bool,
    /// Creation time.
    #[serde(serialize_with = "ts::ser")]
    pub created_on: Timestamp,
}

/// A provision user: the shared or per-device credential devices present at CONNECT on the
/// provisioning endpoint. Owned by exactly one account.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionUser {
    /// At least 3 of `[A-Za-z0-9_-]`, unique in the instance.
    pub username: String,
    /// The owning (target) account.
    pub account: String,
    /// argon2id PHC string of the provision password.
    pub password_hash: String,
    /// How many provision requests use this user; the user is removed when it drops to zero.
    pub request_count: u64,
    /// Creation time.
    #[serde(serialize_with = "ts::ser")]
    pub created_on: Timestamp,
}

impl std::fmt::Debug for ProvisionUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is a secret too.
        f.debug_struct("ProvisionUser")
            .field("username", &self.username)
            .field("account", &self.account)
            .field("request_count", &self.request_count)
            .finish_non_exhaustive()
    }
}

/// Status of a provision request (PROTOCOL.md section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestStatus {
    /// Never attempted.
    Created,
    /// An exchange is in progress.
    Running,
    /// The device acknowledged its reply.
    Completed,
    /// The last exchange failed; retry possible while the window is open.
    Failed,
}

impl RequestStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Created => "CREATED",
            RequestStatus::Running => "RUNNING",
            RequestStatus::Completed => "COMPLETED",
            RequestStatus::Failed => "FAILED",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CREATED" => Some(RequestStatus::Created),
            "RUNNING" => Some(RequestStatus::Running),
            "COMPLETED" => Some(RequestStatus::Completed),
            "FAILED" => Some(RequestStatus::Failed),
            _ => None,
        }
    }

    /// All statuses, in lifecycle order.
    pub const ALL: [RequestStatus; 4] = [
        RequestStatus::Created,
        RequestStatus::Running,
        RequestStatus::Completed,
        RequestStatus::Failed,
    ];
}

/// The last refused CONNECT with wrong credentials, for the request's owner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// When it happened.
    #[serde(serialize_with = "ts::ser")]
    pub at: Timestamp,
    /// Why, in words that reveal no secret.
    pub reason: String,
}

/// A provision request: one device's enrollment order. Stored under its id, which the stored
/// form leaves out ([`Keyed`]); it keeps its size from `CREATED` to its end, so that redb
/// rewrites it in place (the running exchange is kept apart, the status is one digit).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct ProvisionRequest {
    /// Opaque, time-ordered id.
    #[serde(rename = "i", alias = "id", default, skip_serializing)]
    pub id: String,
    /// Target account.
    #[serde(rename = "a", alias = "account")]
    pub account: String,
    /// The device's MQTT client ID.
    #[serde(rename = "c", alias = "clientId")]
    pub client_id: String,
    /// Provision username the device presents.
    #[serde(rename = "u", alias = "provisionUsername")]
    pub provision_username: String,
    /// Operational broker URL handed to the device.
    #[serde(rename = "b", alias = "brokerUrl")]
    pub broker_url: String,
    /// Start of the activation window.
    #[serde(rename = "ao", alias = "activatesOn", with = "nanos")]
    pub activates_on: Timestamp,
    /// End of the activation window (exclusive), if any.
    #[serde(
        rename = "eo",
        alias = "expiresOn",
        skip_serializing_if = "Option::is_none",
        default,
        with = "nanos::opt"
    )]
    pub expires_on: Option<Timestamp>,
    /// Keyed hash of the activation key, when one was generated.
    #[serde(
        rename = "k",
        alias = "activationKeyHash",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub activation_key_hash: Option<String>,
    /// Reserve the generated user for this client ID.
    #[serde(
        rename = "r",
        alias = "reserveUser",
        skip_serializing_if = "is_false",
        default
    )]
    pub reserve_user: bool,
    /// Coupling of the device connection.
    #[serde(rename = "cc", alias = "connectionCoupling")]
    pub connection_coupling: Coupling,
    /// Grant `vpn:connect` and generate the VPN configuration.
    #[serde(
        rename = "v",
        alias = "vpnAccess",
        skip_serializing_if = "is_false",
        default
    )]
    pub vpn_access: bool,
    /// Requested password length, if any (the effective one also depends on the account).
    #[serde(
        rename = "pl",
        alias = "passwordLength",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub password_length: Option<u16>,
    /// Additional device configuration (XML), validated on input.
    #[serde(
        rename = "x",
        alias = "additionalConfiguration",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub additional_configuration: Option<String>,
    /// Lifecycle status.
    #[serde(rename = "s", alias = "status", with = "status_digit")]
    pub status: RequestStatus,
    /// Creation time.
    #[serde(rename = "co", alias = "createdOn", with = "nanos")]
    pub created_on: Timestamp,
    /// Last modification time (any field or status).
    #[serde(rename = "mo", alias = "modifiedOn", with = "nanos")]
    pub modified_on: Timestamp,
    /// Last refusal with wrong credentials.
    #[serde(
        rename = "lr",
        alias = "lastRejection",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub last_rejection: Option<Rejection>,
    /// Warnings computed on input (e.g. reserved properties that will be replaced).
    #[serde(
        rename = "w",
        alias = "warnings",
        skip_serializing_if = "Vec::is_empty",
        default
    )]
    pub warnings: Vec<String>,
    /// The running exchange, while status is `RUNNING`. Stored in a table of its own
    /// (`running_exchanges`) and put back when the request is read; records written before
    /// issue 17's second turn held it here, and still read.
    #[serde(rename = "rn", alias = "running", default, skip_serializing)]
    pub running: Option<RunningExchange>,
}

/// Which exchange holds a `RUNNING` request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunningExchange {
    /// The execution recording it.
    #[serde(rename = "e", alias = "executionId")]
    pub execution_id: String,
    /// The device's `request.id`.
    #[serde(rename = "d", alias = "deviceRequestId")]
    pub device_request_id: String,
}

/// A request's status in its stored form: one digit, so that a request keeps its size as
/// its status changes (a longer value would split the packed leaf that holds it). The names
/// that records written before used still read.
mod status_digit {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    use super::RequestStatus;

    // serde's `serialize_with` hands over a reference.
    #[allow(clippy::trivially_copy_pass_by_ref)]
    pub(super) fn serialize<S: Serializer>(
        status: &RequestStatus,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let digit = RequestStatus::ALL
            .iter()
            .position(|x| x == status)
            .unwrap_or_default();
        s.serialize_u8(u8::try_from(digit).unwrap_or_default())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RequestStatus, D::Error> {
        struct Either;
        impl Visitor<'_> for Either {
            type Value = RequestStatus;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a status digit or name")
            }
            fn visit_u64<E: Error>(self, n: u64) -> Result<RequestStatus, E> {
                usize::try_from(n)
                    .ok()
                    .and_then(|n| RequestStatus::ALL.get(n).copied())
                    .ok_or_else(|| E::custom(format!("unknown status digit {n}")))
            }
            fn visit_str<E: Error>(self, s: &str) -> Result<RequestStatus, E> {
                RequestStatus::parse(s).ok_or_else(|| E::custom(format!("unknown status {s}")))
            }
        }
        d.deserialize_any(Either)
    }
}

impl ProvisionRequest {
    /// Puts back the running exchange of a `RUNNING` request, which is stored apart from it:
    /// `running_of` reads it by the request's key. A record written before that held it
    /// itself, and keeps it.
    pub(crate) fn restore_running(
        &mut self,
        running_of: impl FnOnce(&[u8]) -> Result<Option<RunningExchange>, crate::StoreError>,
    ) -> Result<(), crate::StoreError> {
        if self.status == RequestStatus::Running && self.running.is_none() {
            self.running = running_of(self.id.as_bytes())?;
        }
        Ok(())
    }

    /// PROTOCOL.md section 5: closed is `COMPLETED`, or `FAILED` with `expiresOn` passed.
    pub fn is_closed(&self, now: Timestamp) -> bool {
        match self.status {
            RequestStatus::Completed => true,
            RequestStatus::Failed => self.expires_on.is_some_and(|e| e <= now),
            RequestStatus::Created | RequestStatus::Running => false,
        }
    }

    /// Whether `now` lies in `[activatesOn, expiresOn)`.
    pub fn in_window(&self, now: Timestamp) -> bool {
        self.activates_on <= now && self.expires_on.is_none_or(|e| now < e)
    }

    /// The generated password length: `max(20, requested, account minimum)`.
    pub fn effective_password_length(&self, account_min: u16) -> u16 {
        20.max(account_min).max(self.password_length.unwrap_or(0))
    }
}

/// Outcome of an execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// In progress.
    Running,
    /// The device acknowledged its reply.
    Completed,
    /// The exchange failed.
    Failed,
    /// The CONNECT was refused although the credentials matched.
    Rejected,
}

impl Outcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "RUNNING",
            Outcome::Completed => "COMPLETED",
            Outcome::Failed => "FAILED",
            Outcome::Rejected => "REJECTED",
        }
    }
}

/// Severity of an execution log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogLevel {
    /// A step.
    Info,
    /// Something unusual that did not fail the exchange.
    Warn,
    /// The reason of a failure.
    Error,
}

/// One line of an execution log; never contains a secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// When.
    #[serde(serialize_with = "ts::ser")]
    pub at: Timestamp,
    /// Severity.
    pub level: LogLevel,
    /// What happened.
    pub message: String,
}

/// Which provisioning protocol an execution spoke with the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProvisioningProtocol {
    /// The device asked with a PROV-V1 request (PROTOCOL.md 4); executions stored before
    /// Kura-native provisioning existed are all of this kind.
    #[default]
    #[serde(rename = "PROV-V1")]
    ProvV1,
    /// An unmodified Kura device: BIRTH, then a CONF-V1 PUT (PROTOCOL.md 8.1).
    #[serde(rename = "kura")]
    Kura,
}

impl ProvisioningProtocol {
    /// `PROV-V1` or `kura`, as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProvisioningProtocol::ProvV1 => "PROV-V1",
            ProvisioningProtocol::Kura => "kura",
        }
    }
}

/// One attempt of a device to provision against a request. Stored under its id, which the
/// stored form leaves out ([`Keyed`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct Execution {
    /// Opaque, time-ordered id.
    #[serde(rename = "i", alias = "id", default, skip_serializing)]
    pub id: String,
    /// The provision request.
    #[serde(rename = "r", alias = "requestId")]
    pub request_id: String,
    /// The request's account.
    #[serde(rename = "a", alias = "account")]
    pub account: String,
    /// Start time.
    #[serde(rename = "so", alias = "startedOn", with = "nanos")]
    pub started_on: Timestamp,
    /// End time, once no longer running.
    #[serde(
        rename = "eo",
        alias = "endedOn",
        skip_serializing_if = "Option::is_none",
        default,
        with = "nanos::opt"
    )]
    pub ended_on: Option<Timestamp>,
    /// Outcome.
    #[serde(rename = "o", alias = "outcome")]
    pub outcome: Outcome,
    /// `3.1.1` or `5.0`.
    #[serde(rename = "m", alias = "protocol")]
    pub protocol: String,
    /// The provisioning protocol of the exchange (`PROV-V1`, or `kura` for a Kura-native one).
    #[serde(rename = "pp", alias = "provisioningProtocol", default)]
    pub provisioning_protocol: ProvisioningProtocol,
    /// Peer address `ip:port`.
    #[serde(rename = "p", alias = "peer")]
    pub peer: String,
    /// Every step, in order.
    #[serde(
        rename = "l",
        alias = "log",
        serialize_with = "log_form::ser",
        deserialize_with = "log_form::de"
    )]
    pub log: Vec<LogLine>,
    /// When the provisioned device first connected to the operational endpoint with the
    /// identity this execution gave it (PROTOCOL.md 6.3); `None` until then.
    #[serde(
        rename = "oc",
        alias = "operationalConnectedOn",
        skip_serializing_if = "Option::is_none",
        default,
        with = "nanos::opt"
    )]
    pub operational_connected_on: Option<Timestamp>,
}

/// A user of a target account that devices connect with on the operational endpoint. Stored
/// under its username, which the stored form leaves out ([`Keyed`]).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct DeviceUser {
    /// `CID@ACCOUNT` for generated users.
    #[serde(rename = "u", alias = "username", default, skip_serializing)]
    pub username: String,
    /// Owning account.
    #[serde(rename = "a", alias = "account")]
    pub account: String,
    /// Keyed fast hash of the generated password.
    #[serde(rename = "h", alias = "passwordHash")]
    pub password_hash: String,
    /// e.g. `broker:connect`, `vpn:connect`.
    #[serde(rename = "p", alias = "permissions")]
    pub permissions: Vec<String>,
    /// The client ID this user is reserved for, if any.
    #[serde(
        rename = "r",
        alias = "reservedFor",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub reserved_for: Option<String>,
    /// A disabled user cannot connect (API.md "Account users": only this is patchable on a
    /// device user). Records written before the field existed are enabled.
    #[serde(rename = "e", alias = "enabled", default = "enabled_by_default")]
    pub enabled: bool,
    /// Creation time.
    #[serde(rename = "co", alias = "createdOn", with = "nanos")]
    pub created_on: Timestamp,
    /// Last password change.
    #[serde(rename = "mo", alias = "modifiedOn", with = "nanos")]
    pub modified_on: Timestamp,
}

fn enabled_by_default() -> bool {
    true
}

// serde's `skip_serializing_if` hands over a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(b: &bool) -> bool {
    !*b
}

impl std::fmt::Debug for DeviceUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is a secret too.
        f.debug_struct("DeviceUser")
            .field("username", &self.username)
            .field("permissions", &self.permissions)
            .field("reserved_for", &self.reserved_for)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// An account user (`NAME@ACCOUNT`): an application, dashboard or operator on the operational
/// endpoint, created with the API (API.md "Account users").
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountUser {
    /// `NAME@ACCOUNT`, unique in the instance (device users included).
    pub username: String,
    /// The `NAME` part.
    pub name: String,
    /// Owning account.
    pub account: String,
    /// argon2id PHC string of a chosen password, or the keyed fast hash of a generated one.
    pub password_hash: String,
    /// PROTOCOL.md 6.1's permissions.
    pub permissions: Vec<String>,
    /// A disabled user cannot connect.
    pub enabled: bool,
    /// Creation time.
    #[serde(serialize_with = "ts::ser")]
    pub created_on: Timestamp,
    /// Last change (permissions, password, enabled).
    #[serde(serialize_with = "ts::ser")]
    pub modified_on: Timestamp,
}

impl std::fmt::Debug for AccountUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountUser")
            .field("username", &self.username)
            .field("permissions", &self.permissions)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

// The connect decision reads this permission; its name belongs to the ACL crate, which the
// decision code links without the store.
pub use fleetgate_acl::PERMISSION_BROKER_CONNECT;
/// Permission to use the VPN.
pub const PERMISSION_VPN_CONNECT: &str = "vpn:connect";

/// Connection state of a device on the operational endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectionStatus {
    /// Registered, never seen on the operational endpoint.
    NeverConnected,
    /// A session is open.
    Connected,
    /// The last session ended.
    Disconnected,
}

impl ConnectionStatus {
    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "NEVER_CONNECTED" => Some(ConnectionStatus::NeverConnected),
            "CONNECTED" => Some(ConnectionStatus::Connected),
            "DISCONNECTED" => Some(ConnectionStatus::Disconnected),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::NeverConnected => "NEVER_CONNECTED",
            ConnectionStatus::Connected => "CONNECTED",
            ConnectionStatus::Disconnected => "DISCONNECTED",
        }
    }
}

/// The device-connection entry: how a client ID may connect (Kapua's device connection).
/// Stored under its account and client ID, which the stored form leaves out ([`Keyed`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct DeviceConnection {
    /// Account.
    #[serde(rename = "a", alias = "account", default, skip_serializing)]
    pub account: String,
    /// Client ID.
    #[serde(rename = "c", alias = "clientId", default, skip_serializing)]
    pub client_id: String,
    /// Coupling mode as requested (may be `INHERITED`).
    #[serde(rename = "cp", alias = "coupling")]
    pub coupling: Coupling,
    /// The user reserved for this client ID, if any.
    #[serde(
        rename = "r",
        alias = "reservedUser",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub reserved_user: Option<String>,
    /// Current connection state.
    #[serde(rename = "s", alias = "status")]
    pub status: ConnectionStatus,
    /// Last successful operational CONNECT.
    #[serde(
        rename = "lc",
        alias = "lastConnectedOn",
        skip_serializing_if = "Option::is_none",
        default,
        with = "nanos::opt"
    )]
    pub last_connected_on: Option<Timestamp>,
    /// Peer `ip:port` of the last operational session.
    #[serde(
        rename = "p",
        alias = "peer",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub peer: Option<String>,
    /// MQTT version (`3.1.1`, `5.0`) of the last operational session.
    #[serde(
        rename = "m",
        alias = "protocol",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub protocol: Option<String>,
    /// Last successful authentication by another broker's hook (HOOKS.md 2): the status that
    /// brokers without a disconnect callback (RabbitMQ) can give.
    #[serde(
        rename = "la",
        alias = "lastAuthenticatedOn",
        skip_serializing_if = "Option::is_none",
        default,
        with = "nanos::opt"
    )]
    pub last_authenticated_on: Option<Timestamp>,
}

/// The device registry entry: created by provisioning, or beforehand with the API (API.md
/// "Devices"), and completed by the device's Kura BIRTH (PROTOCOL.md 6.3). Stored under its
/// account and client ID, which the stored form leaves out ([`Keyed`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct Device {
    /// Account.
    #[serde(rename = "a", alias = "account", default, skip_serializing)]
    pub account: String,
    /// Client ID.
    #[serde(rename = "c", alias = "clientId", default, skip_serializing)]
    pub client_id: String,
    /// `ENABLED` today; `DISABLED` and `MOVED` belong to later features.
    #[serde(rename = "s", alias = "status")]
    pub status: DeviceStatus,
    /// A name given when the entry was created with the API.
    #[serde(
        rename = "d",
        alias = "displayName",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub display_name: Option<String>,
    /// When it was last provisioned; `None` for an entry created before provisioning.
    #[serde(
        rename = "po",
        alias = "provisionedOn",
        skip_serializing_if = "Option::is_none",
        default,
        with = "nanos::opt"
    )]
    pub provisioned_on: Option<Timestamp>,
    /// The request that provisioned it.
    #[serde(
        rename = "pr",
        alias = "provisionRequestId",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub provision_request_id: Option<String>,
    /// The execution that gave the device its current identity, until the device connects with
    /// it: then the execution's `operationalConnectedOn` is recorded and this is cleared.
    #[serde(
        rename = "ae",
        alias = "awaitingExecution",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub awaiting_execution: Option<String>,
    /// Where it was moved to, if it was.
    #[serde(
        rename = "mt",
        alias = "movedTo",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub moved_to: Option<String>,
    /// Facts of its latest Kura BIRTH.
    #[serde(
        rename = "b",
        alias = "birth",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub birth: Option<Birth>,
    /// When that BIRTH arrived.
    #[serde(
        rename = "bo",
        alias = "birthOn",
        skip_serializing_if = "Option::is_none",
        default,
        with = "nanos::opt"
    )]
    pub birth_on: Option<Timestamp>,
}

/// A registry entry's status (API.md "Devices").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeviceStatus {
    /// In service.
    Enabled,
    /// Taken out of service.
    Disabled,
    /// Moved to another account or instance (`movedTo`).
    Moved,
}

impl Device {
    /// A fresh, enabled entry with nothing known yet.
    pub fn new(account: String, client_id: String) -> Device {
        Device {
            account,
            client_id,
            status: DeviceStatus::Enabled,
            display_name: None,
            provisioned_on: None,
            provision_request_id: None,
            awaiting_execution: None,
            moved_to: None,
            birth: None,
            birth_on: None,
        }
    }
}

/// The metrics of a Kura BIRTH the registry keeps (PROTOCOL.md 6.3), camelCase in JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Birth {
    /// `display_name`.
    pub display_name: Option<String>,
    /// `model_name`.
    pub model_name: Option<String>,
    /// `model_id`.
    pub model_id: Option<String>,
    /// `serial_number`.
    pub serial_number: Option<String>,
    /// `firmware_version`.
    pub firmware_version: Option<String>,
    /// `os`.
    pub os: Option<String>,
    /// `os_version`.
    pub os_version: Option<String>,
    /// `jvm_version`.
    pub jvm_version: Option<String>,
    /// `kura_version`.
    pub kura_version: Option<String>,
    /// `application_framework_version`.
    pub application_framework_version: Option<String>,
    /// `connection_interface`.
    pub connection_interface: Option<String>,
    /// `connection_ip`.
    pub connection_ip: Option<String>,
    /// `application_ids`.
    pub application_ids: Option<String>,
}

/// An account API token; the secret is stored only as a keyed hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    /// Public id, also embedded in the token string.
    pub id: String,
    /// Account the token acts in.
    pub account: String,
    /// Keyed hash of the secret part.
    pub secret_hash: String,
    /// Creation time.
    #[serde(serialize_with = "ts::ser")]
    pub created_on: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{decode_keyed, encode};
    use chrono::TimeZone;

    /// Reads `json` as the record stored under `key`.
    fn read<T: Keyed>(key: &str, json: &str) -> T {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        decode_keyed(key.as_bytes(), &encode(&value)).unwrap()
    }

    /// Writes `record` and reads it back from under `key`; also returns its JSON.
    fn round_trip<T: Keyed + Serialize>(key: &str, record: &T) -> (T, String) {
        let bytes = encode(record);
        let json = String::from_utf8(bytes[1..].to_vec()).unwrap();
        (decode_keyed(key.as_bytes(), &bytes).unwrap(), json)
    }

    fn t(s: i64) -> Timestamp {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn device_user() -> DeviceUser {
        DeviceUser {
            username: "dev-1@acme".into(),
            account: "acme".into(),
            password_hash: "hs256$SALT$MAC".into(),
            permissions: vec![],
            reserved_for: None,
            enabled: true,
            created_on: t(0),
            modified_on: t(0),
        }
    }

    fn request(status: RequestStatus, expires: Option<Timestamp>) -> ProvisionRequest {
        ProvisionRequest {
            id: "r".into(),
            account: "acme".into(),
            client_id: "dev".into(),
            provision_username: "prov".into(),
            broker_url: "mqtt://h:1883".into(),
            activates_on: t(0),
            expires_on: expires,
            activation_key_hash: None,
            reserve_user: true,
            connection_coupling: Coupling::Inherited,
            vpn_access: false,
            password_length: None,
            additional_configuration: None,
            status,
            created_on: t(0),
            modified_on: t(0),
            last_rejection: None,
            warnings: vec![],
            running: None,
        }
    }

    #[test]
    fn closed_rules() {
        let now = t(100);
        assert!(!request(RequestStatus::Created, Some(t(50))).is_closed(now));
        assert!(!request(RequestStatus::Running, Some(t(50))).is_closed(now));
        assert!(request(RequestStatus::Completed, None).is_closed(now));
        assert!(!request(RequestStatus::Failed, None).is_closed(now));
        assert!(!request(RequestStatus::Failed, Some(t(101))).is_closed(now));
        assert!(request(RequestStatus::Failed, Some(t(100))).is_closed(now));
    }

    #[test]
    fn window_is_half_open() {
        let r = request(RequestStatus::Created, Some(t(10)));
        assert!(!r.in_window(t(-1)));
        assert!(r.in_window(t(0)));
        assert!(r.in_window(t(9)));
        assert!(!r.in_window(t(10)));
        assert!(request(RequestStatus::Created, None).in_window(t(1_000_000)));
    }

    #[test]
    fn password_length_is_the_largest_rule() {
        let mut r = request(RequestStatus::Created, None);
        assert_eq!(r.effective_password_length(8), 20);
        assert_eq!(r.effective_password_length(24), 24);
        r.password_length = Some(30);
        assert_eq!(r.effective_password_length(24), 30);
        assert_eq!(r.effective_password_length(40), 40);
    }

    #[test]
    fn users_debug_hides_their_hashes() {
        let device = device_user();
        let provision = ProvisionUser {
            username: "fleet".into(),
            account: "acme".into(),
            password_hash: "$argon2id$PHC".into(),
            request_count: 1,
            created_on: t(0),
        };
        let app = AccountUser {
            username: "dash@acme".into(),
            name: "dash".into(),
            account: "acme".into(),
            password_hash: "$argon2id$APP".into(),
            permissions: vec![],
            enabled: true,
            created_on: t(0),
            modified_on: t(0),
        };
        let shown = format!("{device:?} {provision:?} {app:?}");
        for secret in ["MAC", "PHC", "APP"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn coupling_resolution() {
        assert_eq!(
            Coupling::Inherited.resolve(Coupling::Strict),
            Coupling::Strict
        );
        assert_eq!(
            Coupling::Inherited.resolve(Coupling::Inherited),
            Coupling::Loose
        );
        assert_eq!(Coupling::Loose.resolve(Coupling::Strict), Coupling::Loose);
        for c in [Coupling::Inherited, Coupling::Loose, Coupling::Strict] {
            assert_eq!(Coupling::parse(c.as_str()), Some(c));
        }
        assert_eq!(Coupling::parse("loose"), None);
    }

    /// Records as every build before issue 17 wrote them (camelCase names, nulls, full log
    /// lines) must still read, and read as what they held.
    #[test]
    fn records_written_before_the_compact_form_still_read() {
        let request: ProvisionRequest = read(
            "01m8tjha1sz7hkb5ryfm2a6j62",
            r#"{"id":"01m8tjha1sz7hkb5ryfm2a6j62","account":"scale","clientId":"dev-1","provisionUsername":"fleet","brokerUrl":"mqtt://127.0.0.1:1884","activatesOn":"2026-12-02T05:09:46.655995245Z","expiresOn":"2026-12-02T06:09:46Z","activationKeyHash":null,"reserveUser":true,"connectionCoupling":"INHERITED","vpnAccess":false,"passwordLength":null,"additionalConfiguration":null,"status":"COMPLETED","createdOn":"2026-12-02T05:09:46.655995245Z","modifiedOn":"2026-12-02T05:09:47.158307064Z","lastRejection":null,"warnings":["w"],"running":null}"#,
        );
        assert_eq!(request.id, "01m8tjha1sz7hkb5ryfm2a6j62");
        assert_eq!(request.client_id, "dev-1");
        assert_eq!(request.provision_username, "fleet");
        assert_eq!(request.status, RequestStatus::Completed);
        assert!(request.reserve_user);
        assert_eq!(request.warnings, vec!["w".to_string()]);
        assert_eq!(
            request.expires_on.unwrap().to_rfc3339(),
            "2026-12-02T06:09:46+00:00"
        );
        let execution: Execution = read(
            "r1\0e1",
            r#"{"id":"e1","requestId":"r1","account":"scale","startedOn":"2026-12-02T05:09:46.900258375Z","endedOn":"2026-12-02T05:09:46.927800068Z","outcome":"COMPLETED","protocol":"5.0","peer":"127.0.0.6:40293","log":[{"at":"2026-12-02T05:09:46.900258375Z","level":"INFO","message":"exchange started"},{"at":"2026-12-02T05:09:46.927800068Z","level":"WARN","message":"PUBACK received"}],"operationalConnectedOn":null}"#,
        );
        assert_eq!(execution.id, "e1");
        assert_eq!(execution.request_id, "r1");
        assert_eq!(
            execution.provisioning_protocol,
            ProvisioningProtocol::ProvV1
        );
        assert_eq!(execution.log.len(), 2);
        assert_eq!(execution.log[1].level, LogLevel::Warn);
        assert_eq!(Some(execution.log[1].at), execution.ended_on);
        let user: DeviceUser = read(
            "dev-1@scale",
            r#"{"username":"dev-1@scale","account":"scale","passwordHash":"hs256$S$M","permissions":["broker:connect"],"reservedFor":"dev-1","createdOn":"2026-12-02T05:09:46Z","modifiedOn":"2026-12-02T05:09:46Z"}"#,
        );
        assert_eq!(user.username, "dev-1@scale");
        assert_eq!(user.reserved_for.as_deref(), Some("dev-1"));
        assert!(user.enabled);
        let connection: DeviceConnection = read(
            "scale\0dev-1",
            r#"{"account":"scale","clientId":"dev-1","coupling":"STRICT","reservedUser":"dev-1@scale","status":"CONNECTED","lastConnectedOn":"2026-12-02T05:09:46Z","peer":"127.0.0.1:1","protocol":"5.0","lastAuthenticatedOn":null}"#,
        );
        assert_eq!(
            (connection.account.as_str(), connection.client_id.as_str()),
            ("scale", "dev-1")
        );
        assert_eq!(connection.coupling, Coupling::Strict);
        assert_eq!(connection.status, ConnectionStatus::Connected);
        assert_eq!(connection.peer.as_deref(), Some("127.0.0.1:1"));
        let device: Device = read(
            "scale\0dev-1",
            r#"{"account":"scale","clientId":"dev-1","status":"ENABLED","displayName":null,"provisionedOn":"2026-12-02T05:09:46Z","provisionRequestId":"r1","awaitingExecution":"e1","movedTo":null,"birth":{"displayName":"d","modelName":null,"modelId":null,"serialNumber":null,"firmwareVersion":null,"os":null,"osVersion":null,"jvmVersion":null,"kuraVersion":null,"applicationFrameworkVersion":null,"connectionInterface":null,"connectionIp":null,"applicationIds":null},"birthOn":null}"#,
        );
        assert_eq!(
            (device.account.as_str(), device.client_id.as_str()),
            ("scale", "dev-1")
        );
        assert_eq!(device.awaiting_execution.as_deref(), Some("e1"));
        assert_eq!(device.birth.unwrap().display_name.as_deref(), Some("d"));
    }

    /// The compact form reads back as what was written, and is smaller.
    #[test]
    fn compact_records_round_trip() {
        let at = t(0) + chrono::Duration::nanoseconds(123_456_789);
        let later = at + chrono::Duration::milliseconds(27);
        let line = |at, level, message: &str| LogLine {
            at,
            level,
            message: message.into(),
        };
        let execution = Execution {
            id: "e1".into(),
            request_id: "r1".into(),
            account: "acme".into(),
            started_on: at,
            ended_on: Some(later),
            outcome: Outcome::Failed,
            protocol: "3.1.1".into(),
            provisioning_protocol: ProvisioningProtocol::Kura,
            peer: "127.0.0.1:9".into(),
            log: vec![
                line(at, LogLevel::Info, "started"),
                line(at, LogLevel::Info, "user created"),
                line(at, LogLevel::Warn, "odd"),
                line(later, LogLevel::Info, "later"),
                line(later, LogLevel::Error, "failed"),
                line(later, LogLevel::Info, "\"quoted\", [bracketed]"),
            ],
            operational_connected_on: Some(later),
        };
        let (back, json) = round_trip("e1", &execution);
        assert_eq!(back, execution);
        assert!(json.contains(r#""user created""#), "{json}");
        assert!(!json.contains(r#""e1""#), "the key holds the id: {json}");
        let mut r = request(RequestStatus::Failed, Some(t(10)));
        r.last_rejection = Some(Rejection {
            at: t(5),
            reason: "bad password".into(),
        });
        r.warnings = vec!["w".into()];
        r.running = Some(RunningExchange {
            execution_id: "e1".into(),
            device_request_id: "x".into(),
        });
        r.vpn_access = true;
        // The running exchange is stored in a table of its own.
        let (back, json) = round_trip("r", &r);
        assert_eq!(
            back,
            ProvisionRequest {
                running: None,
                ..r.clone()
            }
        );
        assert!(!json.contains(r#""e1""#), "{json}");
        for r in [r, request(RequestStatus::Created, None)] {
            let r = ProvisionRequest { running: None, ..r };
            assert_eq!(round_trip("r", &r).0, r);
        }
        let device = Device {
            display_name: Some("d".into()),
            provisioned_on: Some(t(1)),
            birth: Some(Birth::default()),
            ..Device::new("acme".into(), "dev-1".into())
        };
        for d in [device, Device::new("acme".into(), "dev-2".into())] {
            let key = format!("acme\0{}", d.client_id);
            let (back, json) = round_trip(&key, &d);
            assert_eq!(back, d);
            assert!(!json.contains("acme"), "the key holds the account: {json}");
        }
        let connection = DeviceConnection {
            account: "acme".into(),
            client_id: "dev-1".into(),
            coupling: Coupling::Loose,
            reserved_user: None,
            status: ConnectionStatus::NeverConnected,
            last_connected_on: None,
            peer: None,
            protocol: Some("5.0".into()),
            last_authenticated_on: Some(t(3)),
        };
        assert_eq!(round_trip("acme\0dev-1", &connection).0, connection);
    }

    /// A request keeps its size as its status changes (so that redb rewrites it in place),
    /// and the compact form of the last session (id, full status name, running exchange in
    /// the record) still reads.
    #[test]
    fn requests_keep_their_size_and_the_last_form_reads() {
        let mut r = request(RequestStatus::Created, None);
        let created = encode(&r).len();
        for status in RequestStatus::ALL {
            r.status = status;
            r.modified_on = t(1);
            assert_eq!(encode(&r).len(), created, "{status:?}");
            assert_eq!(round_trip("r", &r).0.status, status);
        }
        let last: ProvisionRequest = read(
            "01m8tjha1sz7hkb5ryfm2a6j62",
            r#"{"i":"01m8tjha1sz7hkb5ryfm2a6j62","a":"acme","c":"dev","u":"prov","b":"mqtt://h:1883","ao":1800000000000000000,"r":true,"cc":"INHERITED","s":"RUNNING","co":1800000000000000000,"mo":1800000000000000000,"rn":{"executionId":"e1","deviceRequestId":"x"}}"#,
        );
        assert_eq!(last.status, RequestStatus::Running);
        assert_eq!(last.running.unwrap().execution_id, "e1");
        let user = device_user();
        let (back, json) = round_trip("dev-1@acme", &user);
        assert!(back == user && !json.contains("dev-1"), "{json}");
    }

    #[test]
    fn timestamps_serialise_exactly_as_chrono_does() {
        #[derive(Serialize)]
        struct Ours {
            #[serde(serialize_with = "super::ts::ser")]
            t: Timestamp,
        }
        #[derive(Serialize)]
        struct Chrono {
            t: Timestamp,
        }
        let base = t(1_700_000_000);
        for nanos in [
            0,
            1_000_000,
            120_000_000,
            123_456_000,
            123_456_789,
            1_999_999_999,
        ] {
            let x = base + chrono::Duration::nanoseconds(nanos);
            let ours = serde_json::to_string(&Ours { t: x }).unwrap();
            let chrono = serde_json::to_string(&Chrono { t: x }).unwrap();
            assert_eq!(ours, chrono);
            // The compact form of the enrollment's records gives the same instant back.
            let (back, _) = round_trip(
                "a\0c",
                &Device {
                    provisioned_on: Some(x),
                    ..Device::new("a".into(), "c".into())
                },
            );
            assert_eq!(back.provisioned_on, Some(x));
        }
    }
}

/// A known broker endpoint (API.md "Known broker endpoints"): a broker devices are provisioned
/// to, offered in the console's drop-down and checked against a request's `brokerUrl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerEndpoint {
    /// 1 to 64 of `[a-z0-9-]`, unique; `fleetgate` is Fleetgate's own.
    pub name: String,
    /// The URL devices connect to.
    pub url: String,
    /// What runs there: `mosquitto`, `rabbitmq`, `emqx`, `vernemq` or `other`.
    pub kind: String,
    /// When it was added.
    #[serde(serialize_with = "ts::ser")]
    pub created_on: Timestamp,
}
