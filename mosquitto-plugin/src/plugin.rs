//! The decisions at Mosquitto's door, in safe Rust: what the C callbacks ask, answered from the
//! replica with Fleetgate's decision code.
//!
//! - BASIC_AUTH: `operational::authenticate`, behind the failed-attempt limiter of Fleetgate's
//!   operational endpoint (`auth.*` defaults: 5 failures per client ID or 100 per address in a
//!   minute ban it for 5 minutes). A device user (keyed fast hash) is decided
//!   inline in microseconds. An account user with a chosen password needs argon2: it is
//!   verified inline too (CPU, never the network), once, and the success is remembered in
//!   `fleetgate_auth_hook::cache::VerifyCache` (a keyed hash of username and password under a
//!   per-process random key, bound to the stored hash) so reconnects cost microseconds.
//! - ACL_CHECK: `operational::identify` on every check (so a user disabled through the API is
//!   refused at its next check once the replica has the change), then `fleetgate_acl`.
//! - DISCONNECT: reported for the devices this plugin admitted, when it was the client ID's
//!   last connection (a session taken over by a new connection with the same client ID ends
//!   after the new one began: that end must not mark the device disconnected).
//! - TICK: the connections of users the replica revoked (disabled, deleted, without
//!   `broker:connect`) are ended, as Fleetgate's own endpoint ends them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use fleetgate_acl::{may_publish, may_subscribe, plain_filter};
use fleetgate_auth_hook::cache::VerifyCache;
use fleetgate_auth_hook::credentials::argon2_verify;
use fleetgate_auth_hook::limiter::{FailureLimiter, LimitConfig};
use fleetgate_auth_hook::operational::{self, Admitted, Step};
use fleetgate_auth_hook::{Clock, ConnectFacts, Protocol, Refusal, SystemClock};
use fleetgate_replica::SharedReplica;
use parking_lot::Mutex;

use crate::Error;
use crate::events::{Kind, Reporter};
use crate::feed::{Endpoint, Follower};

/// Mosquitto's access kinds (`MOSQ_ACL_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// A message is about to be delivered to the client.
    Read,
    /// The client publishes.
    Write,
    /// The client subscribes.
    Subscribe,
    /// The client unsubscribes.
    Unsubscribe,
}

/// Logs to stderr, which Mosquitto keeps when it drops to its own user (its log functions are
/// not meant for our threads).
pub(crate) fn log(message: &str) {
    eprintln!("fleetgate-mosquitto: {message}");
}

/// A device session this plugin admitted, to report when it ends.
struct Admission {
    client_id: String,
    username: String,
    peer: String,
}

/// The device connections this plugin admitted, by Mosquitto's client pointer, and how many
/// are open per client ID.
#[derive(Default)]
struct Admissions {
    by_client: HashMap<usize, Admission>,
    open: HashMap<String, usize>,
}

impl Admissions {
    fn insert(&mut self, client: usize, admission: Admission) {
        *self.open.entry(admission.client_id.clone()).or_default() += 1;
        if let Some(old) = self.by_client.insert(client, admission) {
            // The same connection authenticated again: it is still one connection.
            self.forget(&old.client_id);
        }
    }

    /// The admission of `client`, when it was the last open connection of its client ID.
    fn remove(&mut self, client: usize) -> Option<Admission> {
        let admission = self.by_client.remove(&client)?;
        self.forget(&admission.client_id).then_some(admission)
    }

    /// One connection of `client_id` less; `true` when none is left.
    fn forget(&mut self, client_id: &str) -> bool {
        let Some(n) = self.open.get_mut(client_id) else {
            return true;
        };
        *n -= 1;
        if *n == 0 {
            self.open.remove(client_id);
            true
        } else {
            false
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_client.len()
    }
}

/// The plugin's state, shared by Mosquitto's thread (the callbacks) and ours.
pub(crate) struct Plugin {
    replica: Arc<SharedReplica>,
    cache: VerifyCache,
    limiter: FailureLimiter,
    /// Keyed by Mosquitto's client pointer, only touched on Mosquitto's thread (the lock is
    /// never contended).
    admitted: Mutex<Admissions>,
    /// Users whose open sessions must end, filled by the follower, drained on Mosquitto's
    /// thread.
    revoked: Arc<Mutex<Vec<String>>>,
    reporter: Option<Reporter>,
    follower: Option<Follower>,
}

impl Plugin {
    /// A plugin following Fleetgate's hook listener at `url` with `token`.
    pub(crate) fn start(url: &str, token: &str) -> Result<Plugin, Error> {
        let endpoint = Endpoint::new(url, token);
        let replica = Arc::new(SharedReplica::default());
        let revoked = Arc::new(Mutex::new(Vec::new()));
        let reporter = Reporter::start(endpoint.clone())?;
        let follower = Follower::start(
            endpoint,
            replica.clone(),
            revoked.clone(),
            Duration::from_secs(5),
        )?;
        let position = replica.position();
        log(&format!(
            "following {url} (replica of {} users{})",
            replica.read().users(),
            if position.is_some() { "" } else { ", none yet" }
        ));
        Ok(Plugin {
            reporter: Some(reporter),
            follower: Some(follower),
            revoked,
            ..Plugin::offline(replica)
        })
    }

    /// A plugin deciding from `replica` with no threads (tests).
    fn offline(replica: Arc<SharedReplica>) -> Plugin {
        Plugin {
            replica,
            cache: VerifyCache::default(),
            limiter: FailureLimiter::new(LimitConfig::default()),
            admitted: Mutex::new(Admissions::default()),
            revoked: Arc::default(),
            reporter: None,
            follower: None,
        }
    }

    /// Stops the threads.
    pub(crate) fn stop(&mut self) {
        if let Some(mut f) = self.follower.take() {
            f.stop();
        }
        if let Some(mut r) = self.reporter.take() {
            r.stop();
        }
    }

    /// BASIC_AUTH: may this client connect? `client` identifies the connection until its
    /// DISCONNECT; `address` is the peer's IP; `protocol` Mosquitto's number (3, 4 or 5).
    pub(crate) fn basic_auth(
        &self,
        client: usize,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
        address: Option<&str>,
        protocol: i32,
    ) -> Result<(), Refusal> {
        let peer_ip = address
            .and_then(|a| a.parse::<IpAddr>().ok())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let facts = ConnectFacts {
            client_id: client_id.to_string(),
            username: username.map(str::to_string),
            password: password.map(<[u8]>::to_vec),
            peer: SocketAddr::new(peer_ip, 0),
            protocol: if protocol == 5 {
                Protocol::V5
            } else {
                Protocol::V311
            },
        };
        // As on Fleetgate's operational endpoint: a banned client ID or address is refused
        // before anything costs, and credential failures count toward a ban, so wrong guesses
        // at an argon2 password cannot keep Mosquitto's only thread busy.
        let now = SystemClock.now();
        if self.limiter.check(client_id, peer_ip, now).0.is_some() {
            return Err(Refusal::Banned);
        }
        let decided = self.decide(&facts);
        if decided == Err(Refusal::BadCredentials) {
            for key in self.limiter.record_failure(client_id, peer_ip, now) {
                log(&format!("banned after repeated credential failures: {key}"));
            }
        }
        // The registry follows devices only (as on Fleetgate's own endpoint).
        if let Admitted::Device(d) = decided? {
            let admission = Admission {
                peer: facts.peer.to_string(),
                client_id: d.client_id,
                username: d.username,
            };
            self.report(Kind::Connected, &admission);
            self.admitted.lock().insert(client, admission);
        }
        Ok(())
    }

    /// The CONNECT decision on the replica.
    fn decide(&self, facts: &ConnectFacts) -> Result<Admitted, Refusal> {
        // The read guard is released before argon2 runs: the follower may apply meanwhile.
        let step = operational::authenticate(&*self.replica.read(), facts)?;
        Ok(match step {
            Step::Admitted(a) => a,
            Step::VerifyPassword(pending) => {
                let password = facts.password.as_deref().unwrap_or_default();
                let hash = pending.password_hash().to_string();
                if !self.cache.hit(pending.username(), password, &hash) {
                    if !argon2_verify(password, &hash) {
                        return Err(Refusal::BadCredentials);
                    }
                    self.cache.insert(pending.username(), password, &hash);
                }
                pending.admit(&*self.replica.read())?
            }
        })
    }

    /// ACL_CHECK: may this client do `access` on `topic`? The client is identified again on
    /// the current replica at each check.
    pub(crate) fn acl_check(
        &self,
        client_id: &str,
        username: Option<&str>,
        access: Access,
        topic: &str,
    ) -> bool {
        if access == Access::Unsubscribe {
            // Leaving a subscription takes nothing.
            return true;
        }
        let Some(username) = username else {
            return false;
        };
        let Ok(admitted) = operational::identify(&*self.replica.read(), client_id, username) else {
            return false;
        };
        let session = admitted.acl_session();
        let decision = match access {
            Access::Write => may_publish(&session, topic),
            Access::Subscribe => may_subscribe(&session, plain_filter(topic)),
            // Delivery: what the session may subscribe to, with the topic as its own filter
            // (the subscription that matched was allowed by the same rule, and a user whose
            // rights shrank stops receiving).
            Access::Read => may_subscribe(&session, topic),
            Access::Unsubscribe => return true,
        };
        decision.is_allowed()
    }

    /// DISCONNECT: reports the end of a device session this plugin admitted, unless another
    /// connection of the same client ID is still open.
    pub(crate) fn disconnected(&self, client: usize) {
        let last = self.admitted.lock().remove(client);
        if let Some(a) = last {
            self.report(Kind::Disconnected, &a);
        }
    }

    /// The users whose open sessions must end since the last call (TICK).
    pub(crate) fn take_revoked(&self) -> Vec<String> {
        std::mem::take(&mut *self.revoked.lock())
    }

    fn report(&self, kind: Kind, a: &Admission) {
        if let Some(r) = &self.reporter {
            r.report(kind, &a.client_id, &a.username, &a.peer);
        }
    }
}

#[cfg(test)]
mod tests;
