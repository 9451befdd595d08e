//! The broker core shared by the operational endpoint and the sandbox (PROTOCOL.md 6.2):
//! sessions and their queues, subscriptions (plain and `$share`), retained messages, wills and
//! session expiry. It knows no sockets: connections ([`conn`]) attach to a session, are woken
//! through a [`Notify`] when its queue has something, and take deliveries from it on their
//! own worker thread.
//!
//! What a persistent session must not lose is written to the store as it changes ([`Keep`]):
//! its record when it starts, subscribes, unsubscribes or detaches, and each QoS 1 or 2
//! delivery given to it, durably before the publisher's acknowledgement, deleted once the
//! subscriber acknowledged it. So a SIGKILL loses no acknowledged message, and a restart
//! resumes every persistent session with its queue.
//!
//! One [`Broker`] is one topic space: the operational endpoint has one (accounts are kept
//! apart by the ACL and by session keys that carry the account), the sandbox another, so
//! nothing published in one can reach the other.

pub mod conn;
pub mod message;

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use fleetgate_acl::{SubscriptionTree, filter_matches};
use fleetgate_storage::broker::{QueuedMessage, StoredSession, StoredSubscription};
use fleetgate_storage::{Store, StoreError, Tx};
use parking_lot::Mutex;
use tokio::sync::Notify;

use fleetgate_metrics::{BrokerGauges, Metrics};
pub use message::{Delivery, Message, Properties};

/// Which door a broker serves; decides authentication and topics.
#[derive(Clone, Debug)]
pub enum Door {
    /// The operational endpoint: account users and devices, through the hooks.
    Operational,
    /// The anonymous sandbox with its list of refused subscription filters.
    Sandbox {
        /// Filters whose SUBSCRIBE is refused.
        deny_subscribe: Vec<String>,
    },
}

impl Door {
    /// The broker's space in the store, and its label in metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Door::Operational => "operational",
            Door::Sandbox { .. } => "sandbox",
        }
    }
}

/// Limits of one broker.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Messages queued per session.
    pub max_queue: usize,
    /// Retained messages per account (or in the sandbox).
    pub max_retained: usize,
    /// Session expiry of a 3.1.1 persistent session.
    pub session_expiry_v3: Duration,
    /// Largest keep alive granted (0: none).
    pub max_keepalive: u16,
}

/// Subscription options of one filter of one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubOpts {
    /// Granted QoS.
    pub qos: u8,
    /// 5.0 no local.
    pub no_local: bool,
    /// 5.0 retain as published.
    pub retain_as_published: bool,
    /// 5.0 subscription identifier.
    pub id: Option<u32>,
}

/// Why the broker asks a connection to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kick {
    /// Another connection took the client ID over (5.0: DISCONNECT 0x8E).
    TakenOver = 1,
    /// The user was disabled, deleted or lost `broker:connect` (5.0: DISCONNECT 0x87).
    Revoked = 2,
    /// The connection ended on its own: its tasks stop (each holds the connection's sink, and a
    /// task still waiting kept the connection's memory after it closed).
    Gone = 3,
}

/// How the broker asks a connection to close: a reason and a wake-up, watched by a task of
/// the connection apart from its delivery task (which may be waiting for an acknowledgement).
#[derive(Default)]
pub struct Kicker {
    why: AtomicU8,
    notify: Notify,
}

impl Kicker {
    fn kick(&self, why: Kick) {
        self.why.store(why as u8, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// Whether the connection has ended (see [`Kick::Gone`]).
    pub fn gone(&self) -> bool {
        self.why.load(Ordering::SeqCst) == Kick::Gone as u8
    }

    /// Resolves when the connection must close, with the reason.
    pub async fn kicked(&self) -> Kick {
        loop {
            self.notify.notified().await;
            // 0: nothing asked yet.
            match self.why.load(Ordering::SeqCst) {
                w if w == Kick::TakenOver as u8 => return Kick::TakenOver,
                w if w == Kick::Revoked as u8 => return Kick::Revoked,
                w if w == Kick::Gone as u8 => return Kick::Gone,
                _ => {}
            }
        }
    }
}

/// The link between a session and its live connection.
#[derive(Clone)]
struct Link {
    /// Connection generation (distinguishes a takeover's old connection from the new).
    generation: u64,
    /// Woken when the queue has something.
    notify: Arc<Notify>,
    /// Asks the connection to close.
    kicker: Arc<Kicker>,
    /// The user of the connection (revocations).
    username: Arc<str>,
}

/// Key of a session: account (empty in the sandbox) and client ID.
pub type SessionKey = (String, String);

struct Session {
    id: u64,
    key: SessionKey,
    subs: HashMap<String, SubOpts>,
    queue: VecDeque<Delivery>,
    link: Option<Link>,
    /// `None`: never expires; `Some(ZERO)`: ends with its connection.
    expiry: Option<Duration>,
    expires_at: Option<Instant>,
    /// QoS 2 packet ids received (PUBREC sent) and not yet released: a redelivery with DUP is
    /// acknowledged without routing it twice.
    qos2_in: HashSet<u16>,
    username: String,
    /// The store has a record of it (or messages queued for it), to delete when it ends.
    stored: bool,
}

impl Session {
    /// A session with no subscriptions and nothing queued.
    fn new(
        id: u64,
        key: SessionKey,
        username: String,
        link: Option<Link>,
        expiry: Option<Duration>,
        expires_at: Option<Instant>,
    ) -> Session {
        Session {
            id,
            key,
            subs: HashMap::new(),
            queue: VecDeque::new(),
            link,
            expiry,
            expires_at,
            qos2_in: HashSet::new(),
            username,
            stored: false,
        }
    }

    /// Whether it outlives its connection, and so is kept in the store.
    fn persistent(&self) -> bool {
        self.expiry != Some(Duration::ZERO)
    }

    /// Its record: expiry, subscriptions. While its client is connected, the record carries
    /// only the expiry interval, which counts from the next start if the broker stops first.
    fn record(&self, now: Instant, now_sys: SystemTime) -> StoredSession {
        let offline_until = self.link.is_none().then_some(self.expires_at).flatten();
        StoredSession {
            account: self.key.0.clone(),
            client_id: self.key.1.clone(),
            username: self.username.clone(),
            expires_at_ms: offline_until
                .map(|at| message::unix_ms(now_sys + at.saturating_duration_since(now))),
            expiry_ms: self
                .expiry
                .map(|e| u64::try_from(e.as_millis()).unwrap_or(u64::MAX)),
            subscriptions: self
                .subs
                .iter()
                .map(|(f, o)| StoredSubscription {
                    filter: f.clone(),
                    qos: o.qos,
                    no_local: o.no_local,
                    retain_as_published: o.retain_as_published,
                    id: o.id,
                })
                .collect(),
            queue: Vec::new(),
        }
    }
}

/// A change to what the store keeps of the persistent sessions.
enum Keep {
    /// A session's record as it is now.
    Session(StoredSession),
    /// A session ended: its record and its queue go.
    Forget(SessionKey),
    /// A delivery given to a persistent session.
    Queued(QueuedMessage),
    /// A queued delivery acknowledged, expired or not deliverable.
    Settled(SessionKey, u64),
}

impl Keep {
    fn is_of(&self, key: &SessionKey) -> bool {
        match self {
            Keep::Session(s) => s.account == key.0 && s.client_id == key.1,
            Keep::Queued(q) => q.account == key.0 && q.client_id == key.1,
            Keep::Forget(k) | Keep::Settled(k, _) => k == key,
        }
    }

    fn apply(self, tx: &mut Tx<'_, '_>, space: &str) -> Result<(), StoreError> {
        use fleetgate_storage::broker as stored;
        match self {
            Keep::Session(s) => stored::put_session(tx, space, &s),
            Keep::Forget((account, client_id)) => {
                stored::delete_session(tx, space, &account, &client_id)?;
            }
            Keep::Queued(q) => stored::put_queued(tx, space, &q),
            Keep::Settled((account, client_id), seq) => {
                stored::delete_queued(tx, space, &account, &client_id, seq);
            }
        }
        Ok(())
    }
}

/// The write of `changes` to the store of the broker `space`.
fn apply(
    space: &'static str,
    changes: Vec<Keep>,
) -> impl FnOnce(&mut Tx<'_, '_>) -> Result<(), StoreError> + Send + 'static {
    move |tx| {
        for c in changes {
            c.apply(tx, space)?;
        }
        Ok(())
    }
}

/// The changes made by one operation under the core lock, submitted to the store before the
/// lock is released ([`Broker::submit`]), so that the store sees them in the order they were
/// made: a delivery's deletion can never overtake its write.
#[derive(Default)]
struct Keeping {
    changes: Vec<Keep>,
    /// The sequence number of the next queued delivery.
    next_seq: u64,
}

impl Keeping {
    /// Writes the record of `s` (a persistent session) as it is now.
    fn session(&mut self, s: &mut Session) {
        s.stored = true;
        self.changes
            .push(Keep::Session(s.record(Instant::now(), SystemTime::now())));
    }

    /// Deletes what the store has of `s`, if anything.
    fn forget(&mut self, s: &Session) {
        if s.stored {
            // A write deletes a session's queue by its keys in the store, which do not include
            // what the same write puts: drop those here.
            self.changes.retain(|c| !c.is_of(&s.key));
            self.changes.push(Keep::Forget(s.key.clone()));
        }
    }

    /// Keeps `d`, given to the persistent session `s`, until it is settled.
    fn queued(&mut self, s: &mut Session, d: &mut Delivery) {
        let seq = self.next_seq;
        self.next_seq += 1;
        d.stored = Some(seq);
        s.stored = true;
        self.changes.push(Keep::Queued(QueuedMessage {
            account: s.key.0.clone(),
            client_id: s.key.1.clone(),
            seq,
            message: d.to_stored(),
        }));
    }
}

struct Group {
    /// Member sessions and their options, in subscription order.
    members: Vec<(u64, SubOpts)>,
    next: usize,
}

struct PendingWill {
    due: Instant,
    session: u64,
    generation: u64,
    msg: Message,
}

#[derive(Default)]
struct Core {
    /// Boxed: a table slot the size of a whole session, in a table kept at most 7/8 full,
    /// cost every connection a few hundred bytes more (docs/benchmarks.md, "Issue 17: idle
    /// connections").
    sessions: HashMap<u64, Box<Session>>,
    by_key: HashMap<SessionKey, u64>,
    tree: SubscriptionTree<u64>,
    /// Shared subscriptions: the tree maps FILTER to group ids.
    shared_tree: SubscriptionTree<u64>,
    groups: HashMap<u64, Group>,
    group_ids: HashMap<(String, String), u64>,
    /// Retained messages by topic, each with the sequence number of the moment it was kept.
    retained: HashMap<String, (u64, Arc<Message>)>,
    retain_seq: u64,
    retained_per_account: HashMap<String, usize>,
    wills: Vec<PendingWill>,
    next_group: u64,
    keeping: Keeping,
}

/// A retained PUBLISH's fate.
#[derive(Debug, PartialEq, Eq)]
pub enum Retain {
    /// Stored (or deleted, for an empty payload); acknowledge after the store commit.
    Kept,
    /// Past `max_retained`: refused (5.0: 0x97), delivered but not retained on 3.1.1.
    QuotaExceeded,
}

/// What a CONNECT found.
pub struct Attached {
    /// Session id.
    pub session: u64,
    /// Connection generation.
    pub generation: u64,
    /// Whether an earlier session was resumed.
    pub present: bool,
}

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerOpenError {
    /// Its retained messages or sessions could not be read.
    #[error("cannot load the broker's state: {0}")]
    Store(#[from] fleetgate_storage::StoreError),
    /// Its timer thread could not start.
    #[error("cannot start the broker's timer thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// One broker (topic space); shared by every worker.
pub struct Broker {
    /// Its door.
    pub door: Door,
    /// Its limits.
    pub limits: Limits,
    core: Mutex<Core>,
    next_id: AtomicU64,
    store: Store,
    metrics: Arc<Metrics>,
    stopped: AtomicBool,
}

/// How often expiries and delayed wills are looked at.
const TICK: Duration = Duration::from_millis(100);

/// `$share/GROUP/FILTER` -> (GROUP, FILTER).
pub fn split_shared(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix("$share/")?;
    let (group, f) = rest.split_once('/')?;
    (!group.is_empty() && !group.contains(['+', '#']) && !f.is_empty()).then_some((group, f))
}

fn matches(filter: &str, topic: &str) -> bool {
    let filter = split_shared(filter).map_or(filter, |(_, f)| f);
    !(topic.starts_with('$') && filter.starts_with(['+', '#'])) && filter_matches(filter, topic)
}

impl Broker {
    /// A broker for `door`, with the retained messages and sessions kept in `store`, and a
    /// thread that expires sessions and sends delayed wills.
    pub fn open(
        door: Door,
        limits: Limits,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Broker>, BrokerOpenError> {
        let broker = Arc::new(Broker {
            door,
            limits,
            core: Mutex::new(Core::default()),
            next_id: AtomicU64::new(1),
            store,
            metrics,
            stopped: AtomicBool::new(false),
        });
        broker.load()?;
        let weak = Arc::downgrade(&broker);
        std::thread::Builder::new()
            .name(format!("fleetgate-{}-timer", broker.door.name()))
            .spawn(move || tick_loop(&weak))?;
        Ok(broker)
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn load(&self) -> Result<(), StoreError> {
        let read = self.store.read()?;
        let space = self.door.name();
        let mut guard = self.core.lock();
        let core = &mut *guard;
        for stored in read.retained(space)? {
            let account = self.quota_key(&stored.topic);
            if let Some(msg) = Message::from_stored(stored) {
                *core.retained_per_account.entry(account).or_default() += 1;
                core.retained
                    .insert(msg.topic.to_string(), (0, Arc::new(msg)));
            }
        }
        let queued = read.broker_queue(space)?;
        core.keeping.next_seq = queued.iter().map(|q| q.seq + 1).max().unwrap_or(0);
        let now_ms = message::unix_ms(SystemTime::now());
        for s in read.broker_sessions(space)? {
            let key = (s.account, s.client_id);
            let left = match (s.expires_at_ms, s.expiry_ms) {
                (Some(at), _) => Some(Duration::from_millis(at.saturating_sub(now_ms))),
                (None, Some(e)) => Some(Duration::from_millis(e)),
                (None, None) => None,
            };
            let id = self.id();
            let mut session = Session::new(
                id,
                key,
                s.username,
                None,
                s.expiry_ms.map(Duration::from_millis).or(left),
                left.map(|l| Instant::now() + l),
            );
            session.stored = true;
            if left.is_some_and(|l| l.is_zero()) {
                // Expired while the broker was down.
                core.keeping.forget(&session);
                continue;
            }
            // A queue saved inside the record by an earlier version moves to the queue table.
            let legacy = !s.queue.is_empty();
            for m in s.queue {
                if let Some(mut d) = Delivery::from_stored(m, 0) {
                    core.keeping.queued(&mut session, &mut d);
                    session.queue.push_back(d);
                }
            }
            if legacy {
                core.keeping.session(&mut session);
            }
            core.by_key.insert(session.key.clone(), id);
            core.sessions.insert(id, Box::new(session));
            for sub in s.subscriptions {
                let opts = SubOpts {
                    qos: sub.qos.min(2),
                    no_local: sub.no_local,
                    retain_as_published: sub.retain_as_published,
                    id: sub.id,
                };
                core.subscribe(id, &sub.filter, opts);
            }
        }
        for q in queued {
            let key = (q.account, q.client_id);
            let session = core
                .by_key
                .get(&key)
                .and_then(|id| core.sessions.get_mut(id));
            match session.map(|s| (Delivery::from_stored(q.message, q.seq), s)) {
                Some((Some(d), s)) => s.queue.push_back(d),
                // Expired, or its session is gone.
                _ => core.keeping.changes.push(Keep::Settled(key, q.seq)),
            }
        }
        drop(self.submit(core));
        Ok(())
    }

    /// Submits the changes collected in `core` as one write, to be durable when the returned
    /// future resolves (a failure is logged whether or not the caller waits). Called before
    /// the core lock is released (see [`Keeping`]).
    fn submit(
        &self,
        core: &mut Core,
    ) -> Option<impl Future<Output = Result<(), StoreError>> + 'static + use<>> {
        if core.keeping.changes.is_empty() {
            return None;
        }
        let changes = std::mem::take(&mut core.keeping.changes);
        Some(
            self.store
                .write_logged("persistent sessions", apply(self.door.name(), changes)),
        )
    }

    /// Writes the records of the persistent sessions as they are at a graceful shutdown, when
    /// every client has gone and so each expiry runs from now. Their queues are in the store
    /// already. Connections must be closed first, so that their unacknowledged deliveries are
    /// back in the queues.
    pub fn save(&self) -> Result<(), StoreError> {
        self.stopped.store(true, Ordering::SeqCst);
        let mut guard = self.core.lock();
        let core = &mut *guard;
        let mut count = 0;
        for s in core.sessions.values_mut().filter(|s| s.persistent()) {
            core.keeping.session(s);
            count += 1;
        }
        let changes = std::mem::take(&mut core.keeping.changes);
        drop(guard);
        self.store.write(apply(self.door.name(), changes))?;
        tracing::info!(
            broker = self.door.name(),
            sessions = count,
            "persistent sessions saved"
        );
        Ok(())
    }

    /// Attaches a connection to the session of `key`: a clean start (or a session that must
    /// not outlive it) discards what was there; an earlier connection is kicked. `connected`
    /// runs under the lock, so that status writes it submits follow the order ownership
    /// changes in (a taken over connection ending meanwhile cannot overwrite CONNECTED).
    #[allow(clippy::too_many_arguments)]
    pub fn attach<R>(
        &self,
        key: SessionKey,
        username: &str,
        clean_start: bool,
        expiry: Option<Duration>,
        notify: Arc<Notify>,
        kicker: Arc<Kicker>,
        connected: impl FnOnce() -> R,
    ) -> (Attached, R) {
        let generation = self.id();
        let link = Link {
            generation,
            notify,
            kicker,
            username: Arc::from(username),
        };
        let mut guard = self.core.lock();
        let core = &mut *guard;
        let r = connected();
        if let Some(&old) = core.by_key.get(&key) {
            if let Some(l) = core.sessions.get_mut(&old).and_then(|s| s.link.take()) {
                l.kicker.kick(Kick::TakenOver);
            }
            if clean_start {
                core.remove_session(old);
            } else if let Some(s) = core.sessions.get_mut(&old) {
                s.link = Some(link.clone());
                s.expiry = expiry;
                s.expires_at = None;
                s.username = username.to_string();
                if s.persistent() {
                    core.keeping.session(s);
                } else {
                    // It will end with this connection: nothing of it is kept any more.
                    core.keeping.forget(s);
                    s.stored = false;
                }
                drop(self.submit(core));
                link.notify.notify_one();
                let attached = Attached {
                    session: old,
                    generation,
                    present: true,
                };
                return (attached, r);
            }
        }
        let id = self.id();
        core.by_key.insert(key.clone(), id);
        let mut session = Session::new(id, key, username.to_string(), Some(link), expiry, None);
        if session.persistent() {
            core.keeping.session(&mut session);
        }
        core.sessions.insert(id, Box::new(session));
        drop(self.submit(core));
        let attached = Attached {
            session: id,
            generation,
            present: false,
        };
        (attached, r)
    }

    /// A connection ended. Its unacknowledged deliveries go back to the front of the queue;
    /// the session ends now when it must not outlive the connection, else it waits for its
    /// expiry. `will` is published now or after its delay (PROTOCOL.md 6.2) unless the
    /// connection ended with a normal DISCONNECT (the caller passes `None` then). Whether the
    /// connection still owned the session (it was not taken over).
    pub fn detach(
        &self,
        session: u64,
        generation: u64,
        unacked: Vec<Delivery>,
        expiry: Option<Duration>,
        will: Option<(Message, Duration)>,
    ) -> bool {
        let mut guard = self.core.lock();
        let core = &mut *guard;
        let mut ends = false;
        let mut current = false;
        if let Some(s) = core.sessions.get_mut(&session) {
            for d in unacked.into_iter().rev() {
                s.queue.push_front(Delivery { dup: true, ..d });
            }
            if s.link.as_ref().is_some_and(|l| l.generation == generation) {
                current = true;
                s.link = None;
                s.expiry = expiry;
                match expiry {
                    Some(e) if e.is_zero() => ends = true,
                    Some(e) => s.expires_at = Some(Instant::now() + e),
                    None => s.expires_at = None,
                }
                if !ends {
                    // Its expiry runs from now.
                    core.keeping.session(s);
                }
            }
        }
        let mut now = None;
        if let Some((msg, delay)) = will {
            // A will waits for the lower of its delay and the session's expiry, and goes at
            // once when the session ends with the connection.
            let delay = match expiry {
                _ if ends => Duration::ZERO,
                Some(e) => e.min(delay),
                None => delay,
            };
            if delay.is_zero() {
                now = Some(msg);
            } else {
                core.wills.push(PendingWill {
                    due: Instant::now() + delay,
                    session,
                    generation,
                    msg,
                });
            }
        }
        if ends {
            core.remove_session(session);
        }
        drop(self.submit(core));
        drop(guard);
        if let Some(msg) = now {
            self.publish_will(msg);
        }
        current
    }

    /// Publishes a will: routed like any message, and kept as the topic's retained message when
    /// its retain flag is set (not waited for: no client waits for a will); past
    /// `max_retained`, delivered but not kept.
    fn publish_will(&self, msg: Message) {
        // Nobody waits: the writes are submitted, and a failure is logged.
        if !msg.retain {
            drop(self.route(msg));
            return;
        }
        let msg = Arc::new(msg);
        match self.publish_retained(msg.clone()) {
            Some(write) => drop(write),
            None => drop(self.route(msg)),
        }
    }

    /// Keeps a retained PUBLISH as its topic's retained message (an empty payload deletes it),
    /// writes that to the store and routes the message; the returned write resolves once the
    /// change and the deliveries to persistent sessions are durable (PROTOCOL.md 6.2:
    /// acknowledged = durable). `None` past `max_retained`: nothing kept, written or routed,
    /// the caller decides.
    pub fn publish_retained(
        &self,
        msg: Arc<Message>,
    ) -> Option<impl Future<Output = Result<(), StoreError>> + 'static + use<>> {
        if self.retain(&msg) == Retain::QuotaExceeded {
            return None;
        }
        let (space, topic) = (self.door.name(), msg.topic.to_string());
        let stored = (!msg.payload.is_empty()).then(|| msg.to_stored());
        let retained = self.store.write_logged("a retained message", move |tx| {
            fleetgate_storage::broker::put_retained(tx, space, &topic, stored.as_ref())
        });
        let queued = self.route(msg);
        Some(async move {
            retained.await?;
            match queued {
                Some(queued) => queued.await,
                None => Ok(()),
            }
        })
    }

    /// Takes the next delivery for the connection `generation` of `session`; `None` when the
    /// queue is empty or the session belongs to another connection now.
    pub fn next_delivery(&self, session: u64, generation: u64) -> Option<Delivery> {
        let mut core = self.core.lock();
        let s = core.sessions.get_mut(&session)?;
        if s.link.as_ref()?.generation != generation {
            return None;
        }
        s.queue.pop_front()
    }

    /// A delivery taken from the queue of `session` is done with: its client acknowledged it
    /// (PUBACK, PUBREC), it expired, or it is larger than the client accepts. The store
    /// forgets it.
    pub fn settle(&self, session: u64, d: &Delivery) {
        let Some(seq) = d.stored else {
            return;
        };
        let mut guard = self.core.lock();
        let core = &mut *guard;
        if let Some(s) = core.sessions.get(&session)
            && s.stored
        {
            core.keeping.changes.push(Keep::Settled(s.key.clone(), seq));
            drop(self.submit(core));
        }
    }

    /// Puts a delivery that could not be sent back at the front of the queue.
    pub fn give_back(&self, session: u64, d: Delivery) {
        if let Some(s) = self.core.lock().sessions.get_mut(&session) {
            s.queue.push_front(d);
        }
    }

    /// Subscribes. When retained messages are to be sent (retain handling `rh`: 0 always, 1
    /// for a new subscription, 2 never; never for `$share`), returns the moment to pass to
    /// [`Broker::send_retained`].
    pub fn subscribe(&self, session: u64, filter: &str, opts: SubOpts, rh: u8) -> Option<u64> {
        let mut core = self.core.lock();
        let existed = core
            .sessions
            .get(&session)
            .is_some_and(|s| s.subs.contains_key(filter));
        core.subscribe(session, filter, opts);
        let send = match rh {
            0 => true,
            1 => !existed,
            _ => false,
        };
        // Nothing retained (the common case of device sessions): no retained delivery to
        // schedule at all.
        (send && split_shared(filter).is_none() && !core.retained.is_empty())
            .then_some(core.retain_seq)
    }

    /// Queues the retained messages matching `filter` for `session` that were retained at the
    /// moment `upto` of its subscription ([`Broker::subscribe`]). Called once the SUBACK is out;
    /// a message retained after that moment went to the subscription live already, and one
    /// replaced since is not current any more.
    pub fn send_retained(&self, session: u64, filter: &str, upto: u64) {
        let mut guard = self.core.lock();
        let core = &mut *guard;
        let Some(opts) = core
            .sessions
            .get(&session)
            .and_then(|s| s.subs.get(filter).copied())
        else {
            return;
        };
        let now = Instant::now();
        let found: Vec<Arc<Message>> = core
            .retained
            .values()
            .filter(|(seq, m)| *seq <= upto && matches(filter, &m.topic) && !m.expired(now))
            .map(|(_, m)| m.clone())
            .collect();
        let max_queue = self.limits.max_queue;
        if let Some(s) = core.sessions.get_mut(&session) {
            for msg in found {
                let qos = msg.qos.min(opts.qos);
                let d = Delivery::new(msg, qos, true, opts.id.into_iter().collect());
                enqueue(
                    s,
                    d,
                    max_queue,
                    &self.metrics,
                    self.door.name(),
                    &mut core.keeping,
                );
            }
        }
        drop(self.submit(core));
    }

    /// Unsubscribes; whether there was such a subscription.
    pub fn unsubscribe(&self, session: u64, filter: &str) -> bool {
        self.core.lock().unsubscribe(session, filter)
    }

    /// Writes the record of `session` after a SUBSCRIBE or UNSUBSCRIBE when it is persistent;
    /// the returned write resolves once the record is durable (acknowledge after it).
    pub fn keep_session(
        &self,
        session: u64,
    ) -> Option<impl Future<Output = Result<(), StoreError>> + 'static + use<>> {
        let mut guard = self.core.lock();
        let core = &mut *guard;
        let s = core.sessions.get_mut(&session)?;
        if !s.persistent() {
            return None;
        }
        core.keeping.session(s);
        self.submit(core)
    }

    /// Records a QoS 2 packet id as received; false when it was already (a redelivery).
    pub fn qos2_received(&self, session: u64, packet_id: u16, dup: bool) -> bool {
        let mut core = self.core.lock();
        let Some(s) = core.sessions.get_mut(&session) else {
            return true;
        };
        let fresh = s.qos2_in.insert(packet_id);
        fresh || !dup
    }

    /// A QoS 2 packet id was released (PUBREL).
    pub fn qos2_released(&self, session: u64, packet_id: u16) {
        if let Some(s) = self.core.lock().sessions.get_mut(&session) {
            s.qos2_in.remove(&packet_id);
        }
    }

    /// Updates the retained message of `msg.topic` in memory ([`Broker::publish_retained`]).
    fn retain(&self, msg: &Arc<Message>) -> Retain {
        let account = &self.quota_key(&msg.topic);
        let mut core = self.core.lock();
        let topic = msg.topic.to_string();
        if msg.payload.is_empty() {
            if core.retained.remove(&topic).is_some()
                && let Some(n) = core.retained_per_account.get_mut(account)
            {
                *n = n.saturating_sub(1);
            }
            return Retain::Kept;
        }
        let count = core.retained_per_account.get(account).copied().unwrap_or(0);
        if !core.retained.contains_key(&topic) {
            if count >= self.limits.max_retained {
                return Retain::QuotaExceeded;
            }
            *core
                .retained_per_account
                .entry(account.to_string())
                .or_default() += 1;
        }
        core.retain_seq += 1;
        let seq = core.retain_seq;
        core.retained.insert(topic, (seq, msg.clone()));
        Retain::Kept
    }

    /// `None` when `key` has no connected session; else whether one of its subscriptions
    /// (shared ones included) matches `topic`.
    pub fn subscribed(&self, key: &SessionKey, topic: &str) -> Option<bool> {
        let core = self.core.lock();
        let s = core.sessions.get(core.by_key.get(key)?)?;
        s.link.as_ref()?;
        Some(s.subs.keys().any(|f| matches(f, topic)))
    }

    /// Routes a message to every matching session (each once, at the highest granted QoS,
    /// with every matching subscription identifier) and to one member of each matching
    /// `$share` group. The returned write resolves once the deliveries given to persistent
    /// sessions are durable (acknowledge the PUBLISH after it); `None` when there are none.
    pub fn route<M: Into<Arc<Message>>>(
        &self,
        msg: M,
    ) -> Option<impl Future<Output = Result<(), StoreError>> + 'static + use<M>> {
        let msg = msg.into();
        let mut guard = self.core.lock();
        // Through a plain reference, so that its fields can be borrowed apart.
        let core = &mut *guard;
        let topic = msg.topic.as_str();
        let max_queue = self.limits.max_queue;
        for (id, _) in core.tree.matches(topic) {
            let Some(s) = core.sessions.get_mut(&id) else {
                continue;
            };
            let mut best: Option<(u8, bool)> = None;
            let mut ids = Vec::new();
            for (filter, o) in &s.subs {
                if split_shared(filter).is_some()
                    || !matches(filter, topic)
                    || (o.no_local && msg.from == id)
                {
                    continue;
                }
                let (q, rap) = best.unwrap_or((0, false));
                best = Some((q.max(o.qos), rap || o.retain_as_published));
                ids.extend(o.id);
            }
            let Some((qos, rap)) = best else { continue };
            let d = Delivery::new(msg.clone(), msg.qos.min(qos), rap && msg.retain, ids);
            enqueue(
                s,
                d,
                max_queue,
                &self.metrics,
                self.door.name(),
                &mut core.keeping,
            );
        }
        for (gid, _) in core.shared_tree.matches(topic) {
            let Some(group) = core.groups.get_mut(&gid) else {
                continue;
            };
            let n = group.members.len();
            // Round robin, preferring members whose client is connected.
            let pick = (0..n)
                .map(|i| (group.next + i) % n)
                .find(|&i| {
                    core.sessions
                        .get(&group.members[i].0)
                        .is_some_and(|s| s.link.is_some())
                })
                .or((n > 0).then_some(group.next % n));
            let Some(i) = pick else { continue };
            group.next = (i + 1) % n;
            let (sid, o) = group.members[i];
            if let Some(s) = core.sessions.get_mut(&sid) {
                let d = Delivery::new(
                    msg.clone(),
                    msg.qos.min(o.qos),
                    o.retain_as_published && msg.retain,
                    o.id.into_iter().collect(),
                );
                enqueue(
                    s,
                    d,
                    max_queue,
                    &self.metrics,
                    self.door.name(),
                    &mut core.keeping,
                );
            }
        }
        self.submit(core)
    }

    /// Ends the sessions of users the hooks revoke (API.md "Account users"), from a task on
    /// the current ntex runtime that runs until the runtime stops.
    pub fn follow_revocations(self: &Arc<Self>, hooks: &fleetgate_hooks::Hooks) {
        use tokio::sync::broadcast::error::RecvError;
        let mut revoked = hooks.revocations();
        let broker = Arc::downgrade(self);
        drop(ntex::rt::spawn(async move {
            loop {
                match revoked.recv().await {
                    Ok(username) => match broker.upgrade() {
                        Some(b) => b.revoke(&username),
                        None => return,
                    },
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "revocations came faster than sessions closed");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        }));
    }

    /// Closes every session of `username` (a revoked user).
    pub fn revoke(&self, username: &str) {
        let core = self.core.lock();
        for s in core.sessions.values() {
            if let Some(l) = &s.link
                && &*l.username == username
            {
                l.kicker.kick(Kick::Revoked);
            }
        }
    }

    /// Sets the session, queue and retained gauges of this broker.
    fn set_gauges(&self) {
        let mut g = BrokerGauges::default();
        {
            let core = self.core.lock();
            g.retained = core.retained.len();
            for s in core.sessions.values() {
                if s.link.is_some() {
                    g.online += 1;
                } else {
                    g.offline += 1;
                }
                g.queued += s.queue.len();
            }
        }
        self.metrics.set_broker(self.door.name(), &g);
    }

    /// Expires sessions and sends the delayed wills that are due.
    fn tick(&self) {
        let now = Instant::now();
        let mut core = self.core.lock();
        let expired: Vec<u64> = core
            .sessions
            .values()
            .filter(|s| s.link.is_none() && s.expires_at.is_some_and(|at| at <= now))
            .map(|s| s.id)
            .collect();
        for id in &expired {
            core.remove_session(*id);
        }
        drop(self.submit(&mut core));
        let wills = std::mem::take(&mut core.wills);
        let mut due = Vec::new();
        for w in wills {
            let resumed = core
                .sessions
                .get(&w.session)
                .and_then(|s| s.link.as_ref())
                .is_some_and(|l| l.generation != w.generation);
            if resumed {
                continue;
            }
            if w.due <= now
                || expired.contains(&w.session)
                || !core.sessions.contains_key(&w.session)
            {
                due.push(w.msg);
            } else {
                core.wills.push(w);
            }
        }
        drop(core);
        for msg in due {
            self.publish_will(msg);
        }
    }
}

/// Ticks per refresh of the broker gauges.
const GAUGE_TICKS: u32 = 10;

fn tick_loop(broker: &Weak<Broker>) {
    for n in 0u32.. {
        std::thread::sleep(TICK);
        match broker.upgrade() {
            Some(b) if !b.stopped.load(Ordering::SeqCst) => {
                b.tick();
                if n % GAUGE_TICKS == 0 {
                    b.set_gauges();
                }
            }
            _ => return,
        }
    }
}

impl Broker {
    /// Whose `max_retained` quota a retained topic counts against: in the operational space
    /// its account (the first level, or the second under `$EDC`: the ACL keeps every session
    /// inside its own account's topics), in the sandbox one quota for all.
    fn quota_key(&self, topic: &str) -> String {
        if matches!(self.door, Door::Sandbox { .. }) {
            return String::new();
        }
        let mut levels = topic.split('/');
        match levels.next() {
            Some("$EDC") => levels.next().unwrap_or_default().to_string(),
            Some(first) => first.to_string(),
            None => String::new(),
        }
    }
}

/// Queues a delivery. An offline session keeps only QoS 1 and 2; a full queue drops its
/// oldest QoS 0 delivery first, then refuses the new one. A QoS 1 or 2 delivery to a
/// persistent session is kept in the store too.
fn enqueue(
    s: &mut Session,
    mut d: Delivery,
    max_queue: usize,
    metrics: &Metrics,
    endpoint: &'static str,
    keeping: &mut Keeping,
) {
    if s.link.is_none() && d.qos == 0 {
        return;
    }
    if s.queue.len() >= max_queue {
        match s.queue.iter().position(|q| q.qos == 0) {
            Some(i) => {
                s.queue.remove(i);
            }
            None => {
                metrics.dropped(endpoint);
                return;
            }
        }
        metrics.dropped(endpoint);
    }
    if d.qos > 0 && s.persistent() {
        keeping.queued(s, &mut d);
    }
    s.queue.push_back(d);
    metrics.delivered(endpoint);
    if let Some(l) = &s.link {
        l.notify.notify_one();
    }
}

impl Core {
    fn subscribe(&mut self, session: u64, filter: &str, opts: SubOpts) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        s.subs.insert(filter.to_string(), opts);
        match split_shared(filter) {
            Some((group, f)) => {
                let gk = (group.to_string(), f.to_string());
                let gid = match self.group_ids.get(&gk) {
                    Some(&g) => g,
                    None => {
                        self.next_group += 1;
                        let g = self.next_group;
                        self.group_ids.insert(gk, g);
                        self.groups.insert(
                            g,
                            Group {
                                members: Vec::new(),
                                next: 0,
                            },
                        );
                        let _ = self.shared_tree.insert(f, g, 2);
                        g
                    }
                };
                if let Some(group) = self.groups.get_mut(&gid) {
                    match group.members.iter_mut().find(|(m, _)| *m == session) {
                        Some(m) => m.1 = opts,
                        None => group.members.push((session, opts)),
                    }
                }
            }
            None => {
                let _ = self.tree.insert(filter, session, opts.qos);
            }
        }
    }

    fn unsubscribe(&mut self, session: u64, filter: &str) -> bool {
        let Some(s) = self.sessions.get_mut(&session) else {
            return false;
        };
        if s.subs.remove(filter).is_none() {
            return false;
        }
        match split_shared(filter) {
            Some((group, f)) => {
                let gk = (group.to_string(), f.to_string());
                if let Some(&gid) = self.group_ids.get(&gk)
                    && let Some(g) = self.groups.get_mut(&gid)
                {
                    g.members.retain(|(m, _)| *m != session);
                    if g.members.is_empty() {
                        self.groups.remove(&gid);
                        self.group_ids.remove(&gk);
                        self.shared_tree.remove(f, &gid);
                    }
                }
            }
            None => {
                self.tree.remove(filter, &session);
            }
        }
        true
    }

    fn remove_session(&mut self, id: u64) {
        let filters: Vec<String> = self
            .sessions
            .get(&id)
            .map(|s| s.subs.keys().cloned().collect())
            .unwrap_or_default();
        for f in filters {
            self.unsubscribe(id, &f);
        }
        if let Some(s) = self.sessions.remove(&id) {
            self.keeping.forget(&s);
            if self.by_key.get(&s.key) == Some(&id) {
                self.by_key.remove(&s.key);
            }
        }
    }
}

#[cfg(test)]
mod tests;

/// The operational broker as the device-management requester's way to devices: requests are
/// routed like any PUBLISH (QoS 1, not retained, from no session).
pub struct DeviceTransport(pub Arc<Broker>);

impl fleetgate_devmgmt::Transport for DeviceTransport {
    fn subscribed(&self, account: &str, client_id: &str, topic: &str) -> Option<bool> {
        self.0
            .subscribed(&(account.to_string(), client_id.to_string()), topic)
    }

    fn publish(&self, topic: String, payload: Vec<u8>) {
        // Not waited for: devmgmt follows the request itself.
        drop(self.0.route(Message {
            topic: topic.into(),
            payload: payload.into(),
            qos: 1,
            retain: false,
            props: message::Properties::default(),
            expires: None,
            from: 0,
        }));
    }
}
