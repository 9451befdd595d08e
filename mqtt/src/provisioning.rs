//! The provisioning endpoint (PROTOCOL.md sections 2 to 5): the auth hook at CONNECT, the ACL
//! hook on SUBSCRIBE/PUBLISH, and the glue that runs a PROV-V1 exchange
//! ([`fleetgate_exchange`]) over the connection's sink, ntex's timers and the metrics.
//!
//! An exchange runs as a task detached from the publish handler, so a device that disconnects
//! mid-exchange cannot cancel it half-way: the task always ends the execution (COMPLETED on
//! the reply's PUBACK, FAILED on disconnect, refusal or `reply_timeout`).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use fleetgate_acl as acl;
use fleetgate_exchange::{Counted, Exchange, Observer, ReplyFate, ReplySink, Settings, Timer};
use fleetgate_hooks::{
    Action, ConnectFacts, EndpointKind, Protocol, ProvisioningSession, Refusal, Session,
};
use fleetgate_storage::Timestamp;
use ntex::time::Millis;
use ntex::util::{ByteString, Bytes};
use ntex_mqtt::QoS;
use ntex_mqtt::v5::codec::DisconnectReasonCode;

use crate::{Endpoint, SendError, Sink};
use fleetgate_app::App;
use fleetgate_app::tasks::TaskGuard;
use fleetgate_config::Config;
use fleetgate_metrics::{Metrics, Slot};

/// The provisioning endpoint.
pub struct Provisioning;

/// One provisioning connection.
pub struct Conn {
    _slot: Slot,
    app: Arc<App>,
    session: Session,
    protocol: Protocol,
    peer: String,
    sink: Sink,
    subscriptions: RefCell<Vec<(String, QoS)>>,
}

/// Connection state: shared with the exchange tasks it spawns.
pub struct State(Rc<Conn>);

impl Endpoint for Provisioning {
    type State = State;
    const NAME: &'static str = "provisioning";

    fn max_connections(config: &fleetgate_config::Config) -> usize {
        config.provisioning.max_connections
    }

    async fn connect(
        _endpoint: &Arc<Self>,
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
        Ok(State(Rc::new(Conn {
            _slot: slot,
            app: app.clone(),
            session,
            protocol: facts.protocol,
            peer: facts.peer.to_string(),
            sink,
            subscriptions: RefCell::new(Vec::new()),
        })))
    }

    fn subscribe(state: &State, filter: &str, qos: QoS) -> Option<QoS> {
        if !state.0.may(Action::Subscribe(filter)) {
            return None;
        }
        let mut subs = state.0.subscriptions.borrow_mut();
        subs.retain(|(f, _)| f != filter);
        subs.push((filter.to_string(), qos));
        Some(qos)
    }

    fn unsubscribe(state: &State, filter: &str) {
        state
            .0
            .subscriptions
            .borrow_mut()
            .retain(|(f, _)| f != filter);
    }

    fn publish(state: &State, topic: &str, _qos: QoS, payload: Bytes) -> bool {
        if !state.0.may(Action::Publish(topic)) {
            return false;
        }
        // Retained flags are accepted and discarded: nothing of a provisioning session is kept.
        let conn = state.0.clone();
        let running = conn.app.tasks.track();
        drop(ntex::rt::spawn(async move {
            conn.exchange(&payload, running).await;
        }));
        true
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

    /// Runs the exchange of one request payload to its end.
    /// `running` keeps shutdown waiting until the execution has ended durably.
    async fn exchange(&self, payload: &[u8], running: TaskGuard) {
        let config: &Config = &self.app.config;
        Exchange {
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
        }
        .run(payload)
        .await;
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
