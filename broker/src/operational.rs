//! The operational endpoint (PROTOCOL.md section 6): provisioned devices connect with their
//! generated identity, are confined to `$EDC/ACCOUNT/CID/#` and `ACCOUNT/CID/#`, and exchange
//! messages through a shared subscription tree.
//!
//! Sessions live on different worker threads and their sinks are not `Send`: the [`Router`]
//! holds, per session, a bounded channel drained by a task on the session's own worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fleetgate_acl as acl;
use fleetgate_auth_hook::{ConnectFacts, DeviceSession, Refusal};
use fleetgate_storage::ConnectionStatus;
use ntex::util::{ByteString, Bytes};
use ntex_mqtt::QoS;
use ntex_mqtt::v5::codec::DisconnectReasonCode;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::app::App;
use crate::metrics::{Metrics, Slot};
use crate::mqtt::{Endpoint, Sink};

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
pub struct Router {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    max_queue: usize,
    metrics: Arc<Metrics>,
}

impl Router {
    /// A router whose per-session queues hold `max_queue` messages.
    pub fn new(max_queue: usize, metrics: Arc<Metrics>) -> Router {
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

/// The operational endpoint.
pub struct Operational;

/// One operational connection.
pub struct State {
    _slot: Slot,
    app: Arc<App>,
    device: DeviceSession,
    acl: acl::Session,
    id: u64,
}

impl Drop for State {
    fn drop(&mut self) {
        let (app, device) = (&self.app, &self.device);
        app.router.unregister(self.id, &device.client_id, || {
            // Submitted now, committed with the next group commit.
            let done = app
                .operational_auth
                .set_status(device, ConnectionStatus::Disconnected);
            drop(ntex::rt::spawn(done));
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

    fn max_connections(config: &crate::config::Config) -> usize {
        config.operational.max_connections
    }

    async fn connect(
        app: &Arc<App>,
        facts: ConnectFacts,
        sink: Sink,
        slot: Slot,
    ) -> Result<State, Refusal> {
        let device = app.operational_auth.decide(&facts)?;
        // Take ownership of the client ID before recording CONNECTED (the write is submitted
        // under the router lock, so status writes reach the writer in the order ownership
        // changes): a taken over session ending meanwhile cannot overwrite CONNECTED. The
        // CONNACK does not wait for the commit: the registry status is bookkeeping, not a
        // security decision, and it stays durable through the next group commit. Waiting put
        // a durable commit (fsync) on every reconnect's critical path.
        let (id, rx, connected) = app.router.register(&device.client_id, || {
            app.operational_auth
                .set_status(&device, ConnectionStatus::Connected)
        });
        let state = State {
            _slot: slot,
            app: app.clone(),
            acl: acl::Session::Device {
                account: device.account.clone(),
                client_id: device.client_id.clone(),
            },
            device,
            id,
        };
        drain(sink, rx);
        drop(ntex::rt::spawn(connected));
        Ok(state)
    }

    fn subscribe(state: &State, filter: &str, qos: QoS) -> Option<QoS> {
        (acl::may_subscribe(&state.acl, filter).is_allowed()
            && state.app.router.subscribe(state.id, filter, qos))
        .then_some(qos)
    }

    fn unsubscribe(state: &State, filter: &str) {
        state.app.router.unsubscribe(state.id, filter);
    }

    fn publish(state: &State, topic: &str, qos: QoS, payload: Bytes) -> bool {
        if !acl::may_publish(&state.acl, topic).is_allowed() {
            return false;
        }
        state.app.router.route(topic, &payload, qos);
        true
    }
}
