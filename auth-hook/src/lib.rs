//! The pure CONNECT decisions of Fleetgate: CONNECT facts + the records they concern + now ->
//! accept with a typed session identity, or refuse with a [`Refusal`] that every door (MQTT
//! listener, HTTP hook, Mosquitto plugin) maps to its own codes in one place.
//!
//! It owns:
//! - the decision steps of PROTOCOL.md section 2 ([`provisioning`]) and section 6.1
//!   ([`operational`]: device users and account users), over small input types of its own, so that a Mosquitto plugin can link
//!   this crate and `fleetgate-acl` without the store;
//! - credential hashing and verification ([`credentials`]), the bounded verification pool
//!   ([`pool`]), the verification cache ([`cache`]) with its single-flight front
//!   ([`verifier`]), and failed-attempt limiting ([`limiter`]): in-memory, no I/O.
//!
//! It must not read or write the store, know sockets or MQTT packets, or log anything:
//! whoever drives the decisions (the `fleetgate-hooks` facade) reads the records, records
//! rejections and logs. No secret ever reaches a `Debug` output or a refusal.

pub mod cache;
pub mod credentials;
pub mod limiter;
pub mod operational;
pub mod pool;
pub mod provisioning;
pub mod verifier;

use std::net::SocketAddr;

/// Timestamps are UTC everywhere.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The time source; tests inject a manual one.
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

/// Why a CONNECT is refused (PROTOCOL.md section 2's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Client ID empty, too long or not topic-safe.
    InvalidClientId,
    /// No request for the client ID, username differs, or password wrong.
    BadCredentials,
    /// Credentials right, but outside the window, closed, or not permitted.
    NotAuthorized,
    /// Too many recent failures for this client ID or address.
    Banned,
    /// Credentials could not be verified in time.
    ServerBusy,
}

impl Refusal {
    /// Label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::InvalidClientId => "invalid_client_id",
            Refusal::BadCredentials => "bad_credentials",
            Refusal::NotAuthorized => "not_authorized",
            Refusal::Banned => "banned",
            Refusal::ServerBusy => "server_busy",
        }
    }
}

/// The first check of every CONNECT, whatever the endpoint: a client ID that could not be one
/// topic level is refused before anything else is looked at.
pub fn check_client_id(client_id: &str) -> Result<(), Refusal> {
    if fleetgate_acl::valid_client_id(client_id) {
        Ok(())
    } else {
        Err(Refusal::InvalidClientId)
    }
}

/// MQTT protocol version of a CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 3.1.1.
    V311,
    /// MQTT 5.0.
    V5,
}

impl Protocol {
    /// `3.1.1` or `5.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V311 => "3.1.1",
            Protocol::V5 => "5.0",
        }
    }
}

/// What the decisions need from a CONNECT (an MQTT packet, or a broker's hook call).
pub struct ConnectFacts {
    /// Client identifier.
    pub client_id: String,
    /// User name, if sent.
    pub username: Option<String>,
    /// Password, if sent.
    pub password: Option<Vec<u8>>,
    /// Peer address.
    pub peer: SocketAddr,
    /// Protocol version.
    pub protocol: Protocol,
}

impl std::fmt::Debug for ConnectFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never appears.
        f.debug_struct("ConnectFacts")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("peer", &self.peer)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// Observes the verifier and the limiter for metrics (implemented by the broker).
pub trait AuthMetrics: Send + Sync {
    /// One argon2 verification took `seconds`.
    fn verify_latency(&self, seconds: f64);
    /// A verification cache lookup.
    fn cache_lookup(&self, hit: bool);
    /// A key was banned.
    fn banned(&self, kind: &'static str);
}

/// Metrics that go nowhere (tests).
#[derive(Debug, Default)]
pub struct NoMetrics;

impl AuthMetrics for NoMetrics {
    fn verify_latency(&self, _: f64) {}
    fn cache_lookup(&self, _: bool) {}
    fn banned(&self, _: &'static str) {}
}

/// An accepted provisioning session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvisioningSession {
    /// The device's client ID.
    pub client_id: String,
    /// The matched provision request.
    pub request_id: String,
    /// The request's target account.
    pub target_account: String,
}

/// An accepted operational session of a device user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSession {
    /// Account.
    pub account: String,
    /// Client ID.
    pub client_id: String,
    /// The device user.
    pub username: String,
}

/// An accepted operational session of an account user (an application).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSession {
    /// Account.
    pub account: String,
    /// The client ID it connected with.
    pub client_id: String,
    /// The account user, `NAME@ACCOUNT`.
    pub username: String,
    /// Its permissions (PROTOCOL.md 6.1), as stored.
    pub permissions: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_check_refuses_what_cannot_be_a_topic_level() {
        for (id, ok) in [
            ("dev-1", true),
            ("", false),
            ("a/b", false),
            ("+", false),
            ("#", false),
            ("$x", false),
        ] {
            let expected = if ok {
                Ok(())
            } else {
                Err(Refusal::InvalidClientId)
            };
            assert_eq!(check_client_id(id), expected, "{id:?}");
        }
    }

    #[test]
    fn connect_facts_debug_hides_the_password() {
        let f = ConnectFacts {
            client_id: "dev".into(),
            username: Some("fleet".into()),
            password: Some(b"s3cret-pass".to_vec()),
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            protocol: Protocol::V5,
        };
        let shown = format!("{f:?}");
        assert!(shown.contains("fleet"));
        assert!(!shown.contains("s3cret"));
    }
}
