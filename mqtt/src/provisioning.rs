//! The provisioning endpoint (PROTOCOL.md sections 2 to 5): the auth hook at CONNECT, the ACL
//! hook on SUBSCRIBE/PUBLISH, and the glue that runs a PROV-V1 exchange
//! ([`fleetgate_exchange`]) over the connection's sink, ntex's timers and the metrics.
//!
//! An exchange runs as a task detached from the publish handler, so a device that disconnects
//! mid-exchange cannot cancel it half-way: the task always ends the execution (COMPLETED on
//! the reply's PUBACK, FAILED on disconnect, refusal or `reply_timeout`).
//!
//! An unmodified Kura device (PROTOCOL.md 8.1) starts its exchange with its BIRTH and is
//! answered with a CONF-V1 PUT: the endpoint keeps its own device-management [`Requester`]
//! (the same request/reply matching as the operational endpoint's, on `$EDC/PA/...`), which
//! reaches each connection through [`Connections`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fleetgate_acl as acl;
use fleetgate_devmgmt::{Request, RequestError, Requester, Transport};
use fleetgate_exchange::{Counted, Exchange, Observer, ReplyFate, ReplySink, Settings, Timer};
use fleetgate_hooks::{
    Action, ConnectFacts, EndpointKind, Protocol, ProvisioningSession, Refusal, Session,
};
use fleetgate_kura::topics::is_birth_topic;
use fleetgate_storage::Timestamp;
use ntex::time::Millis;
use ntex::util::{ByteString, Bytes};
use ntex_mqtt::QoS;
use ntex_mqtt::v5::codec::DisconnectReasonCode;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::{Endpoint, SendError, Sink};
use fleetgate_app::App;
use fleetgate_app::tasks::TaskGuard;
use fleetgate_config::Config;
use fleetgate_metrics::{Metrics, Slot};

/// The provisioning endpoint: its connections as Kura-native exchanges reach them, and the
/// requester that sends those exchanges' CONF-V1 PUTs.
pub struct Provisioning {
    connections: Arc<Connections>,
    requester: Arc<Requester>,
}

impl Provisioning {
    /// The endpoint of `app`; its requester answers to `device_management.requester`.
    pub fn new(app: &App) -> Provisioning {
        let connections = Arc::new(Connections::default());
        let requester = Arc::new(Requester::new(
            app.config.device_management.requester.clone(),
        ));
        requester.attach(connections.clone());
        Provisioning {
            connections,
            requester,
        }
    }
}

/// The open provisioning connections by client ID, as the requester's [`Transport`]: a request
/// goes to the connection's worker through a channel (a sink is bound to its thread), and a
/// request counts as covered by the filters the device subscribed to.
#[derive(Default)]
pub struct Connections {
    by_client_id: Mutex<HashMap<String, Entry>>,
    next_id: AtomicU64,
}

struct Entry {
    id: u64,
    filters: Vec<String>,
    send: mpsc::UnboundedSender<(String, Vec<u8>)>,
}

impl Transport for Connections {
    fn subscribed(&self, _account: &str, client_id: &str, topic: &str) -> Option<bool> {
        let map = self.by_client_id.lock();
        let entry = map.get(client_id)?;
        Some(entry.filters.iter().any(|f| acl::filter_matches(f, topic)))
    }

    fn publish(&self, topic: String, payload: Vec<u8>) {
        // `$EDC/PA/CID/...`: the requester only sends to topics it built that way.
        let Some(client_id) = topic.split('/').nth(2) else {
            return;
        };
        if let Some(entry) = self.by_client_id.lock().get(client_id) {
            // A closed channel means the connection is ending: the request then fails as a
            // disconnect.
            let _ = entry.send.send((topic, payload));
        }
    }
}

impl Connections {
    /// Registers a connection (a newer one with the same client ID replaces it); returns its
    /// id and the receiver its worker drains.
    fn open(&self, client_id: &str) -> (u64, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (send, receive) = mpsc::unbounded_channel();
        self.by_client_id.lock().insert(
            client_id.to_string(),
            Entry {
                id,
                filters: Vec::new(),
                send,
            },
        );
        (id, receive)
    }

    /// Forgets connection `id`; false when a newer connection of the client ID replaced it.
    fn close(&self, client_id: &str, id: u64) -> bool {
        let mut map = self.by_client_id.lock();
        if map.get(client_id).is_some_and(|e| e.id == id) {
            map.remove(client_id);
            return true;
        }
        false
    }

    fn set_filters(&self, client_id: &str, id: u64, filters: Vec<String>) {
        if let Some(e) = self.by_client_id.lock().get_mut(client_id)
            && e.id == id
        {
            e.filters = filters;
        }
    }
}

/// What started an exchange.
#[derive(Clone, Copy)]
enum Start {
    /// A PROV-V1 request (PROTOCOL.md 4).
    Request,
    /// A Kura device's BIRTH (PROTOCOL.md 8.1).
    Birth,
}

/// One provisioning connection.
pub struct Conn {
    _slot: Slot,
    app: Arc<App>,
    endpoint: Arc<Provisioning>,
    /// This connection's id in [`Connections`].
    id: u64,
    session: Session,
    protocol: Protocol,
    peer: String,
    sink: Sink,
    subscriptions: RefCell<Vec<(String, QoS)>>,
}

/// Connection state: shared with the exchange tasks it spawns. Dropped when the connection
/// ends (the tasks may outlive it): a Kura-native exchange waiting for its CONF-V1 reply then
/// fails at once as a disconnect.
pub struct State(Rc<Conn>);

impl Drop for State {
    fn drop(&mut self) {
        let conn = &self.0;
        let client_id = &conn.ident().client_id;
        if conn.endpoint.connections.close(client_id, conn.id) {
            conn.endpoint
                .requester
                .on_disconnect(&conn.app.config.provisioning.account, client_id);
        }
    }
}

impl Endpoint for Provisioning {
    type State = State;
    const NAME: &'static str = "provisioning";

    fn max_connections(config: &fleetgate_config::Config) -> usize {
        config.provisioning.max_connections
    }

    async fn connect(
        endpoint: &Arc<Self>,
        app: &Arc<App>,
        facts: ConnectFacts,
        sink: Sink,
        slot: Slot,
    ) -> Result<State, Refusal> {
        let session = app
            .hooks
            .authenticate(EndpointKind::Provisioning, &facts)
            .await?;
        tracing::debug!(client_id = %session.client_id(), peer = %facts.peer, "provisioning session accepted");
        let (id, requests) = endpoint.connections.open(session.client_id());
        let conn = Rc::new(Conn {
            _slot: slot,
            app: app.clone(),
            endpoint: endpoint.clone(),
            id,
            session,
            protocol: facts.protocol,
            peer: facts.peer.to_string(),
            sink,
            subscriptions: RefCell::new(Vec::new()),
        });
        drop(ntex::rt::spawn(deliver(Rc::downgrade(&conn), requests)));
        Ok(State(conn))
    }

    fn subscribe(state: &State, filter: &str, qos: QoS) -> Option<QoS> {
        if !state.0.may(Action::Subscribe(filter)) {
            return None;
        }
        let mut subs = state.0.subscriptions.borrow_mut();
        subs.retain(|(f, _)| f != filter);
        subs.push((filter.to_string(), qos));
        state.0.share_filters(&subs);
        Some(qos)
    }

    fn unsubscribe(state: &State, filter: &str) {
        let mut subs = state.0.subscriptions.borrow_mut();
        subs.retain(|(f, _)| f != filter);
        state.0.share_filters(&subs);
    }

    fn publish(state: &State, topic: &str, _qos: QoS, payload: Bytes) -> bool {
        if !state.0.may(Action::Publish(topic)) {
            return false;
        }
        // Retained flags are accepted and discarded: nothing of a provisioning session is kept.
        let conn = state.0.clone();
        let account = &conn.app.config.provisioning.account;
        let client_id = &conn.ident().client_id;
        if topic == fleetgate_kura::topics::request_topic(account, client_id) {
            let running = conn.app.tasks.track();
            drop(ntex::rt::spawn(async move {
                conn.exchange(Start::Request, &payload, running).await;
            }));
            return true;
        }
        // Kura-native (PROTOCOL.md 8.1): the BIRTH makes the device ready for the requester and
        // starts an exchange; a CONF-V1 reply answers the requester's PUT, when it is this very
        // device's reply to a pending request (anything else is ignored). DC, APPS and LWT
        // change nothing.
        conn.endpoint
            .requester
            .on_publish(account, client_id, topic, &payload);
        if is_birth_topic(topic, account, client_id) {
            let running = conn.app.tasks.track();
            drop(ntex::rt::spawn(async move {
                conn.exchange(Start::Birth, &payload, running).await;
            }));
        }
        true
    }
}

/// Delivers the requester's requests to the device on its connection's worker, each at the QoS
/// the device subscribed with (a QoS 1 delivery waits for its PUBACK in a task of its own, so
/// that one slow acknowledgement does not hold the next request). Ends with the connection.
async fn deliver(
    conn: std::rc::Weak<Conn>,
    mut requests: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) {
    while let Some((topic, payload)) = requests.recv().await {
        let Some(conn) = conn.upgrade() else { return };
        let qos0 = conn.delivery_qos(&topic) == QoS::AtMostOnce;
        let (topic, payload) = (ByteString::from(topic), Bytes::from(payload));
        if qos0 {
            let _ = conn.sink.publish_qos0(topic, payload);
        } else {
            let sink = conn.sink.clone();
            drop(ntex::rt::spawn(async move {
                // The reply, not the PUBACK, decides the exchange; a lost connection fails it
                // through the requester's disconnect.
                let _ = sink.publish_qos1(topic, payload).await;
            }));
        }
    }
}

fn millis(duration: Duration) -> Millis {
    Millis(u32::try_from(duration.as_millis()).unwrap_or(u32::MAX))
}

impl Conn {
    /// The ACL hook's answer for this session.
    fn may(&self, action: Action<'_>) -> bool {
        self.app.hooks.authorize(&self.session, action).is_allowed()
    }

    /// Who the device is. A provisioning endpoint only ever holds provisioning sessions.
    fn ident(&self) -> &ProvisioningSession {
        self.session
            .as_provisioning()
            .expect("the provisioning endpoint accepts provisioning sessions only")
    }

    /// Shares the session's filters with [`Connections`], for the requester's readiness check.
    fn share_filters(&self, subs: &[(String, QoS)]) {
        let filters = subs.iter().map(|(f, _)| f.clone()).collect();
        self.endpoint
            .connections
            .set_filters(&self.ident().client_id, self.id, filters);
    }

    /// Runs the exchange that `payload` starts (a PROV-V1 request, or a Kura device's BIRTH)
    /// to its end. `running` keeps shutdown waiting until the execution has ended durably.
    async fn exchange(&self, start: Start, payload: &[u8], running: TaskGuard) {
        let config: &Config = &self.app.config;
        let exchange = Exchange {
            store: &self.app.store,
            settings: Settings {
                account: &config.provisioning.account,
                vpn_client_pid: &config.provisioning.vpn_client_pid,
                reply_timeout: Config::secs(config.provisioning.reply_timeout),
                linger: Config::secs(config.provisioning.linger),
            },
            session: fleetgate_exchange::Session {
                request_id: &self.ident().request_id,
                client_id: &self.ident().client_id,
                protocol: self.protocol.as_str(),
                peer: &self.peer,
            },
            sink: &Tracked {
                conn: self,
                running: Cell::new(Some(running)),
            },
            timer: self,
            observer: &Meter(&self.app.metrics),
        };
        match start {
            Start::Request => exchange.run(payload).await,
            Start::Birth => exchange.run_kura(payload).await,
        }
    }

    /// The QoS the device subscribed with for `topic` (QoS 1 when it has no matching
    /// subscription: the reply is still sent, as devices commonly subscribe late).
    fn delivery_qos(&self, topic: &str) -> QoS {
        self.subscriptions
            .borrow()
            .iter()
            .filter(|(f, _)| acl::filter_matches(f, topic))
            .map(|(_, q)| *q)
            .max_by_key(|q| u8::from(*q))
            .unwrap_or(QoS::AtLeastOnce)
    }
}

/// One exchange's view of its connection: the connection's sink, and the mark that keeps a
/// shutdown waiting until the exchange has settled.
struct Tracked<'a> {
    conn: &'a Conn,
    running: Cell<Option<TaskGuard>>,
}

impl ReplySink for Tracked<'_> {
    async fn publish(&self, topic: String, payload: Vec<u8>) -> ReplyFate {
        let conn = self.conn;
        let qos0 = conn.delivery_qos(&topic) == QoS::AtMostOnce;
        let (topic, payload) = (ByteString::from(topic), Bytes::from(payload));
        let sent = if qos0 {
            conn.sink.publish_qos0(topic, payload)
        } else {
            conn.sink.publish_qos1(topic, payload).await
        };
        match sent {
            Ok(()) if qos0 => ReplyFate::Written,
            Ok(()) => ReplyFate::Acknowledged,
            Err(SendError::Closed) => ReplyFate::Disconnected,
            Err(SendError::Refused(code)) => ReplyFate::Refused(code),
        }
    }

    async fn put_configuration(&self, configuration: String, timeout: Duration) -> ReplyFate {
        let conn = self.conn;
        let request = Request::configuration_put(None, configuration, timeout);
        let account = &conn.app.config.provisioning.account;
        match conn
            .endpoint
            .requester
            .request(account, &conn.ident().client_id, request)
            .await
        {
            Ok(reply) => ReplyFate::Answered(reply.code),
            Err(RequestError::Timeout(_)) => ReplyFate::NotAnswered,
            Err(RequestError::NotConnected | RequestError::Disconnected) => ReplyFate::Disconnected,
            // An unreadable reply is no answer; the requester logged why. The rest cannot
            // happen after the BIRTH on an attached endpoint with valid levels.
            Err(
                e @ (RequestError::MalformedReply(_)
                | RequestError::NotReady
                | RequestError::InvalidLevel(_)
                | RequestError::NoBroker),
            ) => {
                tracing::warn!(client_id = %conn.ident().client_id, error = %e, "Kura-native CONF-V1 PUT got no usable reply");
                ReplyFate::NotAnswered
            }
        }
    }

    fn close(&self) {
        if self.conn.sink.is_open() {
            self.conn
                .sink
                .close(DisconnectReasonCode::NormalDisconnection);
        }
    }

    fn settled(&self) {
        drop(self.running.take());
    }
}

impl Timer for Conn {
    fn now(&self) -> Timestamp {
        self.app.clock.now()
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> {
        ntex::time::sleep(millis(duration))
    }
}

/// The exchange's observer over the broker's metrics (a local type, as both the trait and
/// [`Metrics`] live in other crates).
struct Meter<'a>(&'a Metrics);

impl Observer for Meter<'_> {
    fn outcome(&self, outcome: Counted) {
        self.0.outcome(outcome.label());
    }

    fn enrolled(&self, took: Duration) {
        self.0.enrollment_duration.observe(took.as_secs_f64());
    }
}
