//! The connect-time auth hook: CONNECT facts + clock -> accept with a typed session identity, or
//! refuse with a [`Refusal`] that the broker maps to MQTT reason codes in one place.
//!
//! It owns credential hashing and verification ([`credentials`]), the bounded verification
//! pool ([`pool`]), the verification cache ([`cache`]) and failed-attempt limiting
//! ([`limiter`]). It knows nothing of sockets or MQTT packets, and never logs a secret.

pub mod cache;
pub mod credentials;
pub mod limiter;
pub mod pool;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use fleetgate_storage::ops::{self, Attempt};
use fleetgate_storage::validate::valid_client_id;
use fleetgate_storage::{
    ConnectionStatus, Coupling, PERMISSION_BROKER_CONNECT, ProvisionRequest, Store,
};

pub use fleetgate_storage::Timestamp;

use cache::VerifyCache;
use limiter::{BanKey, FailureLimiter, LimitConfig};
use pool::{PoolError, VerifyPool};

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

/// What the hook needs from a CONNECT packet.
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
        f.debug_struct("ConnectFacts")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("peer", &self.peer)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// Observes the hook for metrics (implemented by the broker).
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

/// The provisioning endpoint's hook.
pub struct ProvisioningAuth {
    store: Store,
    pool: VerifyPool,
    cache: VerifyCache,
    inflight: Mutex<HashMap<InflightKey, Vec<Waiter>>>,
    limiter: FailureLimiter,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn AuthMetrics>,
}

impl ProvisioningAuth {
    /// A hook over `store`.
    pub fn new(
        store: Store,
        pool: VerifyPool,
        limits: LimitConfig,
        clock: Arc<dyn Clock>,
        metrics: Arc<dyn AuthMetrics>,
    ) -> Self {
        ProvisioningAuth {
            store,
            pool,
            cache: VerifyCache::default(),
            inflight: Mutex::new(HashMap::new()),
            limiter: FailureLimiter::new(limits),
            clock,
            metrics,
        }
    }

    /// The verification pool (shared with the admin API's password checks).
    pub fn pool(&self) -> &VerifyPool {
        &self.pool
    }

    /// Verifies a provision password against its stored hash: from the cache, else on the
    /// pool. Concurrent verifications of the same username, password and hash share one
    /// argon2 run (a fleet sharing one credential connecting at once pays one verify).
    /// `Err(Busy)` when the pool could not take it in time.
    pub async fn verify_provision_password(
        &self,
        username: &str,
        password: &[u8],
        stored_hash: &str,
    ) -> Result<bool, PoolError> {
        if self.cache.hit(username, password, stored_hash) {
            self.metrics.cache_lookup(true);
            return Ok(true);
        }
        self.metrics.cache_lookup(false);
        let key = (self.cache.slot(username, password), stored_hash.to_string());
        let follower = {
            let mut inflight = self.inflight.lock();
            match inflight.get_mut(&key) {
                Some(waiters) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    inflight.insert(key.clone(), Vec::new());
                    None
                }
            }
        };
        if let Some(rx) = follower {
            return rx.await.unwrap_or(Err(PoolError::Busy));
        }
        // Leader: whatever happens (even if this future is dropped), the waiters hear.
        let mut leader = Leader {
            inflight: &self.inflight,
            key: Some(key),
        };
        let (pw, hash) = (password.to_vec(), stored_hash.to_string());
        let started = Instant::now();
        let result = self
            .pool
            .run(move || credentials::argon2_verify(&pw, &hash))
            .await;
        if result.is_ok() {
            self.metrics.verify_latency(started.elapsed().as_secs_f64());
        }
        if result == Ok(true) {
            self.cache.insert(username, password, stored_hash);
        }
        leader.finish(result);
        result
    }

    /// Decides a CONNECT on the provisioning endpoint (PROTOCOL.md section 2), recording
    /// rejections as the protocol says.
    pub async fn decide(&self, facts: &ConnectFacts) -> Result<ProvisioningSession, Refusal> {
        if !valid_client_id(&facts.client_id) {
            return Err(Refusal::InvalidClientId);
        }
        let ip = facts.peer.ip();
        let (banned, ended) = self.limiter.check(&facts.client_id, ip, self.clock.now());
        for key in ended {
            tracing::info!(%key, "ban ended");
        }
        if banned.is_some() {
            return Err(Refusal::Banned);
        }
        let candidate = self
            .store
            .read()
            .and_then(|r| {
                let req = r.connect_candidate(&facts.client_id)?;
                let user = match &req {
                    Some(q) => r.provision_user(&q.provision_username)?,
                    None => None,
                };
                Ok((req, user))
            })
            .map_err(|e| {
                tracing::error!(error = %e, "store read failed during CONNECT");
                Refusal::ServerBusy
            })?;
        let (Some(request), Some(user)) = candidate else {
            return Err(self
                .credential_failure(facts, None, "no provision request")
                .await);
        };
        if facts.username.as_deref() != Some(request.provision_username.as_str()) {
            return Err(self
                .credential_failure(facts, Some(&request), "user name does not match")
                .await);
        }
        let password = facts.password.as_deref().unwrap_or_default();
        match self
            .verify_provision_password(&user.username, password, &user.password_hash)
            .await
        {
            Err(PoolError::Busy) => return Err(Refusal::ServerBusy),
            Ok(false) => {
                return Err(self
                    .credential_failure(facts, Some(&request), "wrong password")
                    .await);
            }
            Ok(true) => {}
        }
        let now = self.clock.now();
        let refusal = if request.is_closed(now) {
            Some(format!(
                "the request is closed ({})",
                request.status.as_str()
            ))
        } else if now < request.activates_on {
            Some("the activation window has not opened yet (activatesOn)".to_string())
        } else if !request.in_window(now) {
            Some("the activation window has closed (expiresOn)".to_string())
        } else {
            None
        };
        if let Some(reason) = refusal {
            let attempt = Attempt {
                request_id: request.id.clone(),
                protocol: facts.protocol.as_str().into(),
                peer: facts.peer.to_string(),
                now,
            };
            if let Err(e) = self
                .store
                .write_async(ops::record_rejected_connect(attempt, reason))
                .await
            {
                tracing::error!(error = %e, "could not record a rejected CONNECT");
            }
            return Err(Refusal::NotAuthorized);
        }
        Ok(ProvisioningSession {
            client_id: facts.client_id.clone(),
            request_id: request.id,
            target_account: request.account,
        })
    }

    async fn credential_failure(
        &self,
        facts: &ConnectFacts,
        request: Option<&ProvisionRequest>,
        reason: &str,
    ) -> Refusal {
        let now = self.clock.now();
        for key in self
            .limiter
            .record_failure(&facts.client_id, facts.peer.ip(), now)
        {
            self.metrics.banned(key.kind());
            tracing::warn!(%key, "banned after repeated credential failures");
        }
        if let Some(r) = request {
            let write = ops::record_rejection(
                r.id.clone(),
                format!("bad user name or password: {reason}"),
                now,
            );
            if let Err(e) = self.store.write_async(write).await {
                tracing::error!(error = %e, "could not record a rejection");
            }
        }
        Refusal::BadCredentials
    }
}

type InflightKey = ([u8; 32], String);
type Waiter = tokio::sync::oneshot::Sender<Result<bool, PoolError>>;

/// The verification in flight for one key; answers its waiters when done or dropped.
struct Leader<'a> {
    inflight: &'a Mutex<HashMap<InflightKey, Vec<Waiter>>>,
    key: Option<InflightKey>,
}

impl Leader<'_> {
    fn finish(&mut self, result: Result<bool, PoolError>) {
        if let Some(key) = self.key.take() {
            let waiters = self.inflight.lock().remove(&key).unwrap_or_default();
            for w in waiters {
                let _ = w.send(result);
            }
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.finish(Err(PoolError::Busy));
    }
}

/// An accepted operational session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSession {
    /// Account.
    pub account: String,
    /// Client ID.
    pub client_id: String,
    /// The device user.
    pub username: String,
}

/// The operational endpoint's hook: device users and device-connection rules.
pub struct OperationalAuth {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl OperationalAuth {
    /// A hook over `store`.
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        OperationalAuth { store, clock }
    }

    /// Decides a CONNECT on the operational endpoint (PROTOCOL.md section 6). Device passwords
    /// use the fast keyed hash, so this runs inline.
    pub fn decide(&self, facts: &ConnectFacts) -> Result<DeviceSession, Refusal> {
        if !valid_client_id(&facts.client_id) {
            return Err(Refusal::InvalidClientId);
        }
        let username = facts.username.as_deref().ok_or(Refusal::BadCredentials)?;
        let read = self.store.read().map_err(|_| Refusal::ServerBusy)?;
        let user = read
            .device_user(username)
            .map_err(|_| Refusal::ServerBusy)?
            .ok_or(Refusal::BadCredentials)?;
        let password = std::str::from_utf8(facts.password.as_deref().unwrap_or_default())
            .map_err(|_| Refusal::BadCredentials)?;
        if !credentials::fast_verify(password, &user.password_hash) {
            return Err(Refusal::BadCredentials);
        }
        if !user
            .permissions
            .iter()
            .any(|p| p == PERMISSION_BROKER_CONNECT)
        {
            return Err(Refusal::NotAuthorized);
        }
        if user
            .reserved_for
            .as_deref()
            .is_some_and(|c| c != facts.client_id)
        {
            return Err(Refusal::NotAuthorized);
        }
        let account = read
            .account(&user.account)
            .map_err(|_| Refusal::ServerBusy)?
            .ok_or(Refusal::NotAuthorized)?;
        let connection = read
            .device_connection(&account.name, &facts.client_id)
            .map_err(|_| Refusal::ServerBusy)?;
        let coupling = connection
            .as_ref()
            .map_or(Coupling::Inherited, |c| c.coupling)
            .resolve(account.default_coupling);
        if coupling == Coupling::Strict
            && connection.and_then(|c| c.reserved_user).as_deref() != Some(username)
        {
            return Err(Refusal::NotAuthorized);
        }
        Ok(DeviceSession {
            account: account.name,
            client_id: facts.client_id.clone(),
            username: username.to_string(),
        })
    }

    /// Records the device's connection status durably. The write is submitted at once; the
    /// future resolves when it is committed.
    pub fn set_status(
        &self,
        session: &DeviceSession,
        status: ConnectionStatus,
    ) -> impl std::future::Future<Output = ()> + 'static {
        let write = self.store.write_async(ops::set_connection_status(
            session.account.clone(),
            session.client_id.clone(),
            status,
            self.clock.now(),
        ));
        async move {
            if let Err(e) = write.await {
                tracing::error!(error = %e, "could not record the connection status");
            }
        }
    }
}

/// A key that can be banned, re-exported for logs.
pub type Banned = BanKey;

#[cfg(test)]
mod tests {
    use super::*;
    use credentials::Argon2Params;
    use std::sync::atomic::Ordering;

    fn auth(dir: &tempfile::TempDir) -> ProvisioningAuth {
        let store = Store::open(
            &dir.path().join("db"),
            &fleetgate_storage::StoreOptions::default(),
            None,
        )
        .unwrap();
        ProvisioningAuth::new(
            store,
            VerifyPool::new(2, 100, std::time::Duration::from_secs(10)),
            LimitConfig::default(),
            Arc::new(SystemClock),
            Arc::new(NoMetrics),
        )
    }

    #[test]
    fn concurrent_verifications_of_one_credential_share_one_argon2_run() {
        let dir = tempfile::tempdir().unwrap();
        let a = auth(&dir);
        let hash = Argon2Params::cheap_for_tests().hash("shared-pass").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let results = rt.block_on(async {
            // Polled together: all 20 are in flight before the first verification ends.
            futures::future::join_all(
                (0..20).map(|_| a.verify_provision_password("fleet", b"shared-pass", &hash)),
            )
            .await
        });
        assert!(results.iter().all(|r| *r == Ok(true)));
        assert_eq!(a.pool().stats().verified.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_changed_password_stops_matching_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = auth(&dir);
        let p = Argon2Params::cheap_for_tests();
        let old = p.hash("old-pass").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(
                a.verify_provision_password("fleet", b"old-pass", &old)
                    .await,
                Ok(true)
            );
            // Cached now; the stored hash changes with the new password.
            let new = p.hash("new-pass").unwrap();
            assert_eq!(
                a.verify_provision_password("fleet", b"old-pass", &new)
                    .await,
                Ok(false)
            );
            assert_eq!(
                a.verify_provision_password("fleet", b"new-pass", &new)
                    .await,
                Ok(true)
            );
        });
    }
}
