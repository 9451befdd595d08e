//! The hook facade: one service that decides for every door of Fleetgate - its provisioning
//! and operational MQTT endpoints today, the HTTP hook listener and the Mosquitto plugin's
//! replica (HOOKS.md) later - so that a decision never depends on which door asked.
//!
//! [`Hooks`] answers four questions:
//! - [`Hooks::authenticate`]: may this CONNECT open a session, on this kind of endpoint? The
//!   typed [`Session`] or a [`Refusal`];
//! - [`Hooks::authorize`]: may this session subscribe to a filter or publish to a topic? Doors
//!   without a connection of their own get the session with [`Hooks::identify`];
//! - [`Hooks::connected`] / [`Hooks::disconnected`]: a session began or ended (the device
//!   registry's connection status, peer and protocol, and the provisioning execution's
//!   `operationalConnectedOn`; nothing for provisioning sessions or account users);
//! - [`Hooks::published`]: a PUBLISH was accepted (a device's Kura BIRTH fills the registry's
//!   BIRTH facts; anything else costs a comparison and nothing more).
//!
//! It also carries the one signal that goes the other way: [`Hooks::revoke`] tells every
//! door that a user's open sessions must end (disabled, deleted, lost `broker:connect`), and
//! each door with live connections listens with [`Hooks::revocations`].
//!
//! It owns the I/O around the pure decisions: reading the records from the store, recording
//! rejections as PROTOCOL.md section 2 says, the status writes, and the logs. The decisions
//! themselves stay in `fleetgate-auth-hook` and `fleetgate-acl`, which do no I/O. It must not
//! know sockets, MQTT packets or reason codes: each door maps a [`Refusal`] and a [`Decision`]
//! to its own protocol.

mod store;

mod birth;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use fleetgate_acl as acl;
use fleetgate_auth_hook::limiter::FailureLimiter;
use fleetgate_auth_hook::operational::{self as operational, Admitted, Step};
use fleetgate_auth_hook::pool::{PoolError, VerifyPool};
use fleetgate_auth_hook::provisioning::{self, CredentialFailure, ProvisionCandidate};
use fleetgate_auth_hook::verifier::Verifier;
use fleetgate_auth_hook::{AuthMetrics, Clock, check_client_id};
use fleetgate_storage::ops::{self, Attempt, ConnectedSession};
use fleetgate_storage::{ConnectionStatus, Store};

pub use fleetgate_acl::{Access, Decision};
pub use fleetgate_auth_hook::limiter::LimitConfig;
pub use fleetgate_auth_hook::{
    AccountSession, ConnectFacts, DeviceSession, Protocol, ProvisioningSession, Refusal,
};

/// Which kind of endpoint a CONNECT arrived at: the decision rules differ, not the door.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    /// The provisioning endpoint (PROTOCOL.md sections 2 and 3).
    Provisioning,
    /// The operational endpoint (PROTOCOL.md section 6).
    Operational,
}

/// Who an accepted connection is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A device enrolling on the provisioning endpoint.
    Provisioning(ProvisioningSession),
    /// A provisioned device on the operational endpoint.
    Device(DeviceSession),
    /// An account user (an application) on the operational endpoint.
    Account(AccountSession),
}

/// An accepted session: its identity, the user name it connected with, the ACL identity
/// derived once at CONNECT (so that [`Hooks::authorize`] allocates nothing per packet), and
/// the connection's peer and protocol when the door has a connection (for the registry).
#[derive(Clone, Debug)]
pub struct Session {
    identity: Identity,
    username: String,
    acl: acl::Session,
    peer: Option<SocketAddr>,
    protocol: Option<Protocol>,
}

/// Two sessions are the same when they are the same identity with the same user name; where
/// the door learnt it from (a connection, or [`Hooks::identify`]) does not matter.
impl PartialEq for Session {
    fn eq(&self, other: &Session) -> bool {
        self.identity == other.identity && self.username == other.username
    }
}

impl Eq for Session {}

impl Session {
    fn provisioning(
        session: ProvisioningSession,
        provisioning_account: &str,
        requester: &str,
        facts: &ConnectFacts,
    ) -> Session {
        Session {
            acl: acl::Session::Provisioning {
                account: provisioning_account.to_string(),
                client_id: session.client_id.clone(),
                requester: requester.to_string(),
            },
            username: facts.username.clone().unwrap_or_default(),
            identity: Identity::Provisioning(session),
            peer: Some(facts.peer),
            protocol: Some(facts.protocol),
        }
    }

    fn operational(admitted: Admitted, facts: Option<&ConnectFacts>) -> Session {
        let acl = admitted.acl_session();
        let (username, identity) = match admitted {
            Admitted::Device(d) => (d.username.clone(), Identity::Device(d)),
            Admitted::Account(a) => (a.username.clone(), Identity::Account(a)),
        };
        Session {
            identity,
            username,
            acl,
            peer: facts.map(|f| f.peer),
            protocol: facts.map(|f| f.protocol),
        }
    }

    /// Who the session is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The MQTT client identifier.
    pub fn client_id(&self) -> &str {
        self.acl.client_id()
    }

    /// The user name it connected with: `CID@ACCOUNT` or `NAME@ACCOUNT` on the operational
    /// endpoint, the provision username on the provisioning endpoint.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The account whose topics it lives in: the device's or user's account, or the
    /// provisioning account for a provisioning session.
    pub fn account(&self) -> &str {
        self.acl.account()
    }

    /// The provisioning identity, for a provisioning session.
    pub fn as_provisioning(&self) -> Option<&ProvisioningSession> {
        match &self.identity {
            Identity::Provisioning(p) => Some(p),
            Identity::Device(_) | Identity::Account(_) => None,
        }
    }

    /// The device identity, for a device's operational session.
    pub fn as_device(&self) -> Option<&DeviceSession> {
        match &self.identity {
            Identity::Device(d) => Some(d),
            Identity::Provisioning(_) | Identity::Account(_) => None,
        }
    }

    /// The session as seen at `peer`, for doors that learn the peer from an event rather than
    /// a connection (the registry's `peer`).
    pub fn at(mut self, peer: Option<SocketAddr>) -> Session {
        self.peer = peer.or(self.peer);
        self
    }

    /// The scopes this session may `access`, as topic filters (HOOKS.md 2.1: EMQX enforces
    /// them itself); the very scopes [`Hooks::authorize`] decides with.
    pub fn rules(&self, access: acl::Access) -> Vec<String> {
        acl::rules(&self.acl, access)
    }

    /// The account-user identity, for an application's operational session.
    pub fn as_account_user(&self) -> Option<&AccountSession> {
        match &self.identity {
            Identity::Account(a) => Some(a),
            Identity::Provisioning(_) | Identity::Device(_) => None,
        }
    }
}

/// What a session asks to do with a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// SUBSCRIBE to a topic filter.
    Subscribe(&'a str),
    /// PUBLISH to a topic name.
    Publish(&'a str),
}

/// The hook facade; shared by every listener (`Send + Sync`).
pub struct Hooks {
    store: Store,
    verifier: Verifier,
    limiter: FailureLimiter,
    /// The operational endpoint's own failure counts: a device that failed to provision is not
    /// banned from its operational identity, nor the other way round.
    operational_limiter: FailureLimiter,
    provisioning_account: String,
    /// Fleetgate's requester client ID, whose CONF-V1 replies a Kura-native device on the
    /// provisioning endpoint may publish (PROTOCOL.md 3).
    requester: String,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn AuthMetrics>,
    revoked: tokio::sync::broadcast::Sender<Arc<str>>,
}

/// Revocations a slow door may fall behind by before it misses some (it then closes nothing
/// for those; the next CONNECT of the user is refused anyway).
const REVOCATION_BACKLOG: usize = 1024;

/// The requester client ID until [`Hooks::with_requester`] says otherwise (the config default).
const DEFAULT_REQUESTER: &str = "fleetgate";

impl Hooks {
    /// Hooks over `store`: provision passwords and account users' chosen passwords are
    /// verified on `pool`, credential failures limited by `limits` (PROTOCOL.md 2.1; counted per
    /// endpoint), and provisioning sessions confined to `provisioning_account`.
    pub fn new(
        store: Store,
        pool: VerifyPool,
        limits: LimitConfig,
        provisioning_account: String,
        clock: Arc<dyn Clock>,
        metrics: Arc<dyn AuthMetrics>,
    ) -> Hooks {
        Hooks {
            store,
            verifier: Verifier::new(pool, metrics.clone()),
            limiter: FailureLimiter::new(limits),
            operational_limiter: FailureLimiter::new(limits),
            provisioning_account,
            requester: DEFAULT_REQUESTER.to_string(),
            clock,
            metrics,
            revoked: tokio::sync::broadcast::channel(REVOCATION_BACKLOG).0,
        }
    }

    /// Sets Fleetgate's requester client ID (config `device_management.requester`; default
    /// `fleetgate`), which the provisioning ACL names in the CONF-V1 reply topic.
    pub fn with_requester(mut self, requester: String) -> Hooks {
        self.requester = requester;
        self
    }

    /// Ends the open sessions of `username` at every door listening (API.md "Account users":
    /// disabling or deleting a user, removing `broker:connect` or another permission its
    /// sessions were admitted with, a forced device delete). Call it after the change is
    /// committed, so that the user's reconnect is refused.
    pub fn revoke(&self, username: &str) {
        // No receiver (no door with live sessions) is not an error: nothing to close.
        let _ = self.revoked.send(Arc::from(username));
    }

    /// The usernames whose sessions must end, from now on (see [`Hooks::revoke`]).
    pub fn revocations(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.revoked.subscribe()
    }

    /// The failed-attempt limits in force (`auth.*`), for doors that limit callers of their
    /// own (the HTTP hook listener's wrong tokens).
    pub fn limits(&self) -> LimitConfig {
        self.limiter.config()
    }

    /// The verification pool (the admin API hashes new provision passwords and account users'
    /// chosen passwords on it).
    pub fn pool(&self) -> &VerifyPool {
        self.verifier.pool()
    }

    /// Verifies a provision password against its stored hash, as CONNECT does (cache, else one
    /// shared argon2 run on the pool); the admin API checks a reused provision username with
    /// it. `Err(Busy)` when the pool could not take it in time.
    pub async fn verify_provision_password(
        &self,
        username: &str,
        password: &[u8],
        stored_hash: &str,
    ) -> Result<bool, PoolError> {
        self.verifier
            .verify_password(username, password, stored_hash)
            .await
    }

    /// Decides a CONNECT on an endpoint of kind `endpoint`. Provisioning (PROTOCOL.md 2):
    /// bans, the candidate request, the password on the pool, the window; it records a
    /// `REJECTED` execution or the request's `lastRejection` as the protocol says. Operational
    /// (PROTOCOL.md 6.1): bans as in 2.1 (so that wrong guesses at an account user's chosen
    /// password cannot keep the shared argon2 pool busy), device users inline (keyed fast hash,
    /// no pool), account users with a chosen password on the pool and its cache; `enabled`,
    /// `broker:connect`, reservation and coupling, a registry device's client ID refused to
    /// applications; it writes nothing (see [`Hooks::connected`]).
    pub async fn authenticate(
        &self,
        endpoint: EndpointKind,
        facts: &ConnectFacts,
    ) -> Result<Session, Refusal> {
        match endpoint {
            EndpointKind::Provisioning => self.authenticate_provisioning(facts).await,
            EndpointKind::Operational => self.authenticate_operational(facts).await,
        }
    }

    /// The operational decision: a banned client ID or address first, then the decision, and
    /// a credential failure counted toward a ban.
    async fn authenticate_operational(&self, facts: &ConnectFacts) -> Result<Session, Refusal> {
        self.check_ban(&self.operational_limiter, facts)?;
        let decided = self.decide_operational(facts).await;
        if matches!(decided, Err(Refusal::BadCredentials)) {
            self.count_failure(&self.operational_limiter, facts);
        }
        decided
    }

    /// The operational decision itself. It waits only for an account user's argon2 password
    /// (device users and generated passwords are verified inline, from one store snapshot).
    async fn decide_operational(&self, facts: &ConnectFacts) -> Result<Session, Refusal> {
        let pending = {
            let directory = store::Directory::new(&self.store);
            match operational::authenticate(&directory, facts)? {
                Step::Admitted(admitted) => {
                    return Ok(Session::operational(admitted, Some(facts)));
                }
                Step::VerifyPassword(pending) => pending,
            }
        };
        let password = facts.password.as_deref().unwrap_or_default();
        match self
            .verifier
            .verify_password(pending.username(), password, pending.password_hash())
            .await
        {
            Err(PoolError::Busy) => Err(Refusal::ServerBusy),
            Ok(false) => Err(Refusal::BadCredentials),
            // The rules after the password read the store again: a user disabled while its
            // password was verified is refused.
            Ok(true) => pending
                .admit(&store::Directory::new(&self.store))
                .map(|admitted| Session::operational(admitted, Some(facts))),
        }
    }

    /// The operational session of a client authenticated earlier, without its password, for
    /// doors that ask per topic or per event with no connection of their own (HOOKS.md: EMQX
    /// authz and events, VerneMQ `auth_on_publish`, mosquitto-go-auth `/acl`). Every rule of
    /// [`Hooks::authenticate`] but the password applies to the current records, so a user
    /// removed, disabled or re-coupled since is refused at once.
    pub fn identify(&self, client_id: &str, username: &str) -> Result<Session, Refusal> {
        let directory = store::Directory::new(&self.store);
        operational::identify(&directory, client_id, username)
            .map(|admitted| Session::operational(admitted, None))
    }

    /// Whether `username` may connect at all (exists, enabled, `broker:connect`), for doors
    /// that ask with a user name and no client ID (RabbitMQ's vhost and resource checks).
    pub fn may_connect_as(&self, username: &str) -> Result<(), Refusal> {
        operational::may_connect_as(&store::Directory::new(&self.store), username)
    }

    async fn authenticate_provisioning(&self, facts: &ConnectFacts) -> Result<Session, Refusal> {
        check_client_id(&facts.client_id)?;
        self.check_ban(&self.limiter, facts)?;
        let (Some(request), Some(user)) = store::provisioning_candidate(&self.store, facts)? else {
            return Err(self
                .credential_failure(facts, None, CredentialFailure::NoRequest)
                .await);
        };
        if let Err(f) =
            provisioning::match_username(facts.username.as_deref(), &request.provision_username)
        {
            return Err(self.credential_failure(facts, Some(&request.id), f).await);
        }
        let password = facts.password.as_deref().unwrap_or_default();
        match self
            .verifier
            .verify_password(&user.username, password, &user.password_hash)
            .await
        {
            Err(PoolError::Busy) => return Err(Refusal::ServerBusy),
            Ok(false) => {
                return Err(self
                    .credential_failure(facts, Some(&request.id), CredentialFailure::WrongPassword)
                    .await);
            }
            Ok(true) => {}
        }
        let now = self.clock.now();
        let candidate = ProvisionCandidate {
            closed: request.is_closed(now).then(|| request.status.as_str()),
            request_id: request.id,
            target_account: request.account,
            activates_on: request.activates_on,
            expires_on: request.expires_on,
        };
        match provisioning::accept(&facts.client_id, candidate, now) {
            Ok(session) => Ok(Session::provisioning(
                session,
                &self.provisioning_account,
                &self.requester,
                facts,
            )),
            Err(rejected) => {
                let attempt = Attempt {
                    request_id: rejected.request_id,
                    protocol: facts.protocol.as_str().into(),
                    peer: facts.peer.to_string(),
                    now,
                };
                let write = ops::record_rejected_connect(attempt, rejected.why.to_string());
                if let Err(e) = self.store.write_async(write).await {
                    write_failed(&e, "could not record a rejected CONNECT");
                }
                Err(rejected.why.into())
            }
        }
    }

    /// Refuses at once (before any password is verified) while the CONNECT's client ID or
    /// address is banned on `limiter` (PROTOCOL.md 2.1).
    fn check_ban(&self, limiter: &FailureLimiter, facts: &ConnectFacts) -> Result<(), Refusal> {
        let (banned, ended) = limiter.check(&facts.client_id, facts.peer.ip(), self.clock.now());
        for key in ended {
            tracing::info!(%key, "ban ended");
        }
        match banned {
            Some(_) => Err(Refusal::Banned),
            None => Ok(()),
        }
    }

    /// Counts a credential failure on `limiter`; a ban it starts is counted and logged.
    fn count_failure(&self, limiter: &FailureLimiter, facts: &ConnectFacts) {
        for key in limiter.record_failure(&facts.client_id, facts.peer.ip(), self.clock.now()) {
            self.metrics.banned(key.kind());
            tracing::warn!(%key, "banned after repeated credential failures");
        }
    }

    /// A credential failure: counts toward bans, and updates the request's `lastRejection`
    /// when there is a request (never an execution: a stranger cannot flood execution logs).
    async fn credential_failure(
        &self,
        facts: &ConnectFacts,
        request_id: Option<&str>,
        failure: CredentialFailure,
    ) -> Refusal {
        let now = self.clock.now();
        self.count_failure(&self.limiter, facts);
        if let Some(id) = request_id {
            let write = ops::record_rejection(
                id.to_string(),
                format!("bad user name or password: {}", failure.reason()),
                now,
            );
            if let Err(e) = self.store.write_async(write).await {
                write_failed(&e, "could not record a rejection");
            }
        }
        failure.into()
    }

    /// May `session` do `action`? Deny by default (PROTOCOL.md sections 3 and 6).
    pub fn authorize(&self, session: &Session, action: Action<'_>) -> Decision {
        match action {
            Action::Subscribe(filter) => acl::may_subscribe(&session.acl, filter),
            Action::Publish(topic) => acl::may_publish(&session.acl, topic),
        }
    }

    /// The session began: a device's registry status becomes CONNECTED, with
    /// `lastConnectedOn`, peer and protocol; the first time the device connects with the
    /// identity a provisioning execution gave it, that execution records
    /// `operationalConnectedOn` (PROTOCOL.md 6.3). The write is submitted before this returns
    /// (so a caller holding a lock submits status writes in the order it changes ownership);
    /// the future resolves when it is committed. Nothing for a provisioning session or an
    /// account user.
    pub fn connected(&self, session: &Session) -> impl Future<Output = ()> + 'static {
        let write = self
            .record_connected(session)
            .map(|op| self.store.write_async(op));
        logged(write, "could not record the connection status")
    }

    /// The session began and has ended already (a broker reported both in one batch): the
    /// writes of [`Hooks::connected`] then [`Hooks::disconnected`] as one store operation,
    /// submitted and resolved as [`Hooks::connected`]. Nothing for a provisioning session or
    /// an account user.
    pub fn visited(&self, session: &Session) -> impl Future<Output = ()> + 'static {
        let write = self
            .record_connected(session)
            .zip(self.record_disconnected(session))
            .map(|(connected, ended)| {
                let both: ops::Op<()> = Box::new(move |tx| {
                    connected(tx)?;
                    ended(tx)
                });
                self.store.write_async(both)
            });
        logged(write, "could not record the connection status")
    }

    fn record_connected(&self, session: &Session) -> Option<ops::Op<()>> {
        let device = session.as_device()?;
        Some(ops::record_connected(
            ConnectedSession {
                account: device.account.clone(),
                client_id: device.client_id.clone(),
                username: device.username.clone(),
                peer: session.peer.map(|p| p.to_string()),
                protocol: session.protocol.map(|p| p.as_str().to_string()),
            },
            self.clock.now(),
        ))
    }

    fn record_disconnected(&self, session: &Session) -> Option<ops::Op<()>> {
        let device = session.as_device()?;
        Some(ops::set_connection_status(
            device.account.clone(),
            device.client_id.clone(),
            ConnectionStatus::Disconnected,
            self.clock.now(),
        ))
    }

    /// Another broker's hook authenticated `session` (HOOKS.md 2): a device's registry entry
    /// records `lastAuthenticatedOn`; submitted and resolved as [`Hooks::connected`]. Nothing
    /// for an account user.
    pub fn authenticated(&self, session: &Session) -> impl Future<Output = ()> + 'static {
        let write = session.as_device().map(|device| {
            self.store.write_async(ops::record_authenticated(
                device.account.clone(),
                device.client_id.clone(),
                self.clock.now(),
            ))
        });
        logged(write, "could not record the authentication")
    }

    /// The session ended: a device's registry status becomes DISCONNECTED; submitted and
    /// resolved as [`Hooks::connected`]. Nothing for a provisioning session or an account
    /// user.
    pub fn disconnected(&self, session: &Session) -> impl Future<Output = ()> + 'static {
        let write = self
            .record_disconnected(session)
            .map(|op| self.store.write_async(op));
        logged(write, "could not record the connection status")
    }

    /// The session of device user `username` with `client_id` ended at a broker that reports
    /// it (HOOKS.md 2), when that user no longer passes [`Hooks::identify`] (disabled or
    /// revoked since, which is often why the broker closed it): the registry entry of the
    /// user's account becomes DISCONNECTED all the same. Nothing for an unknown user.
    pub fn disconnected_user(
        &self,
        client_id: &str,
        username: &str,
    ) -> impl Future<Output = ()> + 'static {
        let account = self
            .store
            .read()
            .and_then(|r| r.device_user(username))
            .map(|u| u.map(|u| u.account));
        let write = match account {
            Ok(Some(account)) => Some(self.store.write_async(ops::set_connection_status(
                account,
                client_id.to_string(),
                ConnectionStatus::Disconnected,
                self.clock.now(),
            ))),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "store read failed for a disconnect");
                None
            }
        };
        logged(write, "could not record the connection status")
    }

    /// The broker accepted `session`'s PUBLISH of `payload` to `topic`. On a device's Kura
    /// BIRTH (`$EDC/ACCOUNT/CID/MQTT/BIRTH` of that very device) the registry records its
    /// facts (PROTOCOL.md 6.3): the write is submitted before this returns and the future
    /// resolves once committed. Any other PUBLISH returns a ready future and allocates
    /// nothing; a BIRTH that is not a KuraPayload (plain or gzip) is logged and ignored.
    pub fn published(
        &self,
        session: &Session,
        topic: &str,
        payload: &[u8],
    ) -> impl Future<Output = ()> + 'static {
        let write = session
            .as_device()
            .filter(|d| birth::is_birth_topic(topic, &d.account, &d.client_id))
            .and_then(|d| match birth::decode(payload) {
                Ok(facts) => Some(self.store.write_async(ops::record_birth(
                    d.account.clone(),
                    d.client_id.clone(),
                    facts,
                    self.clock.now(),
                ))),
                Err(e) => {
                    tracing::warn!(client_id = %d.client_id, error = %e, "BIRTH ignored");
                    None
                }
            });
        logged(write, "could not record the BIRTH facts")
    }
}

/// Awaits a submitted write, if any, logging its failure (bookkeeping: the session goes on).
async fn logged<W>(write: Option<W>, what: &'static str)
where
    W: Future<Output = Result<(), fleetgate_storage::StoreError>> + 'static,
{
    if let Some(write) = write
        && let Err(e) = write.await
    {
        write_failed(&e, what);
    }
}

/// Logs a failed write, except for a full disk: the store logs that once a minute, and a line
/// per CONNECT would flood the log (often on the same disk).
fn write_failed(e: &fleetgate_storage::StoreError, what: &str) {
    if !matches!(e, fleetgate_storage::StoreError::Full) {
        tracing::error!(error = %e, "{what}");
    }
}

#[cfg(test)]
mod tests;
