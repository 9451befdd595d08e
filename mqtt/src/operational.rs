//! The operational endpoint (PROTOCOL.md section 6): provisioned devices connect with their
//! generated identity, are confined to `$EDC/ACCOUNT/CID/#` and `ACCOUNT/CID/#`, and exchange
//! messages through a shared subscription tree.
//!
//! Sessions live on different worker threads and their sinks are not `Send`: the endpoint's
//! router holds, per session, a bounded channel drained by a task on the session's own worker.
//! The router belongs to the endpoint value ([`Operational`]), which the endpoint's listeners
//! share; the process-wide [`App`] knows nothing of it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fleetgate_acl as acl;
use fleetgate_hooks::{Action, ConnectFacts, EndpointKind, Refusal, Session};
use ntex::util::{ByteString, Bytes};
use ntex_mqtt::QoS;
use ntex_mqtt::v5::codec::DisconnectReasonCode;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::{Endpoint, Sink};
use fleetgate_app::App;
use fleetgate_metrics::{Metrics, Slot};

enum Cmd {
    Deliver {
        topic: ByteString,
        payload: Bytes,
        qos: QoS,
    },
    TakenOver,
}

struct Inner {
    tree: acl::SubscriptionTree<u64>,
    mailboxes: HashMap<u64, mpsc::Sender<Cmd>>,
    owners: HashMap<String, u64>,
}

/// Routes messages among operational sessions; shared by every worker.
struct Router {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    max_queue: usize,
    metrics: Arc<Metrics>,
}

impl Router {
    /// A router whose per-session queues hold `max_queue` messages.
    fn new(max_queue: usize, metrics: Arc<Metrics>) -> Router {
        Router {
            inner: Mutex::new(Inner {
                tree: acl::SubscriptionTree::new(),
                mailboxes: HashMap::new(),
                owners: HashMap::new(),
            }),
            next_id: AtomicU64::new(1),
            max_queue: max_queue.max(1),
            metrics,
        }
    }

    /// Registers a session for `client_id`; an earlier session of the same client ID is told
    /// it was taken over. `connected` (submitting the CONNECTED write) runs under the lock, so
    /// status writes are submitted in the order ownership changes.
    fn register<R>(
        &self,
        client_id: &str,
        connected: impl FnOnce() -> R,
    ) -> (u64, mpsc::Receiver<Cmd>, R) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.max_queue);
        let mut inner = self.inner.lock();
        if let Some(old) = inner.owners.insert(client_id.to_string(), id)
            && let Some(mailbox) = inner.mailboxes.get(&old)
        {
            // A full queue cannot refuse this: the old session is closed by its drain task
            // as soon as it reads the command, or by its own disconnect.
            let _ = mailbox.try_send(Cmd::TakenOver);
        }
        inner.mailboxes.insert(id, tx);
        let r = connected();
        (id, rx, r)
    }

    /// Removes a session; when it still owned its client ID (not taken over), runs
    /// `disconnected` (submitting the DISCONNECTED write) under the lock.
    fn unregister(&self, id: u64, client_id: &str, disconnected: impl FnOnce()) {
        let mut inner = self.inner.lock();
        inner.tree.remove_all(&id);
        inner.mailboxes.remove(&id);
        if inner.owners.get(client_id) == Some(&id) {
            inner.owners.remove(client_id);
            disconnected();
        }
    }

    fn subscribe(&self, id: u64, filter: &str, qos: QoS) -> bool {
        self.inner
            .lock()
            .tree
            .insert(filter, id, u8::from(qos))
            .is_ok()
    }

    fn unsubscribe(&self, id: u64, filter: &str) {
        self.inner.lock().tree.remove(filter, &id);
    }

    /// Delivers to every matching subscriber once, at the lower of the two QoS.
    fn route(&self, topic: &str, payload: &Bytes, qos: QoS) {
        let inner = self.inner.lock();
        let topic_bs = ByteString::from(topic);
        for (id, sub_qos) in inner.tree.matches(topic) {
            let Some(mailbox) = inner.mailboxes.get(&id) else {
                continue;
            };
            let qos = if sub_qos.min(u8::from(qos)) == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            };
            let cmd = Cmd::Deliver {
                topic: topic_bs.clone(),
                payload: payload.clone(),
                qos,
            };
            if mailbox.try_send(cmd).is_ok() {
                self.metrics.messages_delivered.inc();
            } else {
                self.metrics.messages_dropped.inc();
            }
        }
    }
}

/// The operational endpoint: its router, shared by its TCP and TLS listeners.
pub struct Operational {
    router: Router,
}

impl Operational {
    /// An endpoint whose per-session queues hold `max_queue` messages.
    pub fn new(max_queue: usize, metrics: Arc<Metrics>) -> Operational {
        Operational {
            router: Router::new(max_queue, metrics),
        }
    }
}

/// One operational connection.
pub struct State {
    _slot: Slot,
    app: Arc<App>,
    endpoint: Arc<Operational>,
    session: Session,
    id: u64,
}

impl State {
    /// The ACL hook's answer for this session.
    fn may(&self, action: Action<'_>) -> bool {
        self.app.hooks.authorize(&self.session, action).is_allowed()
    }
}

impl Drop for State {
    fn drop(&mut self) {
        let (hooks, session) = (&self.app.hooks, &self.session);
        self.endpoint
            .router
            .unregister(self.id, session.client_id(), || {
                // Submitted now, committed with the next group commit.
                drop(ntex::rt::spawn(hooks.disconnected(session)));
            });
    }
}

fn drain(sink: Sink, mut rx: mpsc::Receiver<Cmd>) {
    drop(ntex::rt::spawn(async move {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Cmd::Deliver {
                    topic,
                    payload,
                    qos: QoS::AtMostOnce,
                } => {
                    let _ = sink.publish_qos0(topic, payload);
                }
                Cmd::Deliver { topic, payload, .. } => {
                    let sink = sink.clone();
                    drop(ntex::rt::spawn(async move {
                        let _ = sink.publish_qos1(topic, payload).await;
                    }));
                }
                Cmd::TakenOver => {
                    sink.close(DisconnectReasonCode::SessionTakenOver);
                    break;
                }
            }
        }
    }));
}

impl Endpoint for Operational {
    type State = State;
    const NAME: &'static str = "operational";

    fn max_connections(config: &fleetgate_config::Config) -> usize {
        config.operational.max_connections
    }

    async fn connect(
        endpoint: &Arc<Self>,
        app: &Arc<App>,
        facts: ConnectFacts,
        sink: Sink,
        slot: Slot,
    ) -> Result<State, Refusal> {
        // Inline: the keyed fast hash needs no pool, so this never waits.
        let session = app
            .hooks
            .authenticate(EndpointKind::Operational, &facts)
            .await?;
        // Take ownership of the client ID before recording CONNECTED (the write is submitted
        // under the router lock, so status writes reach the writer in the order ownership
        // changes): a taken over session ending meanwhile cannot overwrite CONNECTED. The
        // CONNACK does not wait for the commit: the registry status is bookkeeping, not a
        // security decision, and it stays durable through the next group commit. Waiting put
        // a durable commit (fsync) on every reconnect's critical path.
        let (id, rx, connected) = endpoint
            .router
            .register(session.client_id(), || app.hooks.connected(&session));
        let state = State {
            _slot: slot,
            app: app.clone(),
            endpoint: endpoint.clone(),
            session,
            id,
        };
        drain(sink, rx);
        drop(ntex::rt::spawn(connected));
        Ok(state)
    }

    fn subscribe(state: &State, filter: &str, qos: QoS) -> Option<QoS> {
        (state.may(Action::Subscribe(filter))
            && state.endpoint.router.subscribe(state.id, filter, qos))
        .then_some(qos)
    }

    fn unsubscribe(state: &State, filter: &str) {
        state.endpoint.router.unsubscribe(state.id, filter);
    }

    fn publish(state: &State, topic: &str, qos: QoS, payload: Bytes) -> bool {
        if !state.may(Action::Publish(topic)) {
            return false;
        }
        state.endpoint.router.route(topic, &payload, qos);
        true
    }
}
