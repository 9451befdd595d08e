//! One broker connection on ntex-mqtt (3.1.1 and 5.0): CONNECT (the door's decision, the
//! session, the will), SUBSCRIBE / UNSUBSCRIBE, PUBLISH in (ACL, QoS 2 deduplication,
//! retained, routing) and out (a drain task on the connection's worker that takes deliveries
//! from the session queue in order, honouring the client's receive maximum and maximum packet
//! size), and the end of the connection (unacknowledged deliveries back to the queue, the will).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::num::{NonZeroU16, NonZeroU32};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use fleetgate_hooks::{Action, ConnectFacts, EndpointKind, Protocol, Refusal, Session};
use ntex::service::cfg::SharedCfg;
use ntex::service::{ServiceFactory, fn_factory_with_config, fn_service};
use ntex::util::{ByteString, Bytes, Ready};
use ntex_mqtt::v5::codec::{DisconnectReasonCode, PublishAckReason, SubscribeAckReason};
use ntex_mqtt::{Control, MqttError, MqttServer, QoS, v3, v5};
use tokio::sync::Notify;

use super::{Broker, Delivery, Door, Kick, Kicker, Message, Properties, SubOpts, split_shared};
use crate::{BrokerError, Sink, facts, refusal_v5, refuse_v3};
use fleetgate_app::App;
use fleetgate_metrics::Slot;

/// Who the connection is.
struct Who {
    /// The hooks' session (operational door); `None` in the sandbox.
    hooks: Option<Session>,
    account: String,
    username: String,
}

/// The state of one broker connection.
pub struct Conn {
    _slot: Slot,
    app: Arc<App>,
    broker: Arc<Broker>,
    who: Who,
    session: u64,
    generation: u64,
    will: RefCell<Option<(Message, Duration)>>,
    /// A normal DISCONNECT arrived (no will).
    clean_exit: Cell<bool>,
    /// Detached from its session already (see [`Conn::end`]).
    ended: Cell<bool>,
    /// Session expiry: `None` never, zero with the connection.
    expiry: Cell<Option<Duration>>,
    inflight: Rc<RefCell<BTreeMap<u64, Delivery>>>,
    /// The client's maximum packet size (5.0).
    max_packet: Option<u32>,
    /// Topic aliases the client accepts from the server (5.0).
    topic_alias_max: u16,
    /// The wake-ups of the connection's delivery and kick-watch tasks, told when it ends.
    notify: Arc<Notify>,
    kicker: Arc<Kicker>,
}

/// Topic aliases of the messages sent to one connection (MQTT 5.0 3.3.2.3.4): the first
/// message on a topic carries the topic and sets an alias, later ones only the alias, while the
/// client's topic alias maximum allows.
struct Aliases {
    max: u16,
    map: std::collections::HashMap<ByteString, NonZeroU16>,
}

impl Aliases {
    /// The topic to send and the alias property for `topic`.
    fn assign(&mut self, topic: &ByteString) -> (ByteString, Option<NonZeroU16>) {
        if let Some(a) = self.map.get(topic) {
            return (ByteString::new(), Some(*a));
        }
        let next = u16::try_from(self.map.len() + 1)
            .ok()
            .filter(|n| *n <= self.max);
        match next.and_then(NonZeroU16::new) {
            Some(a) => {
                self.map.insert(topic.clone(), a);
                (topic.clone(), Some(a))
            }
            None => (topic.clone(), None),
        }
    }
}

impl Who {
    fn may_publish(&self, app: &App, topic: &str) -> bool {
        match &self.hooks {
            Some(s) => app.hooks.authorize(s, Action::Publish(topic)).is_allowed(),
            None => fleetgate_acl::valid_topic_name(topic),
        }
    }
}

impl Conn {
    fn name(&self) -> &'static str {
        self.broker.door.name()
    }

    fn may_publish(&self, topic: &str) -> bool {
        self.who.may_publish(&self.app, topic)
    }

    fn may_subscribe(&self, filter: &str) -> bool {
        let plain = if filter.starts_with("$share/") {
            match split_shared(filter) {
                Some((_, f)) => f,
                None => return false,
            }
        } else {
            filter
        };
        match (&self.who.hooks, &self.broker.door) {
            (Some(s), _) => self
                .app
                .hooks
                .authorize(s, Action::Subscribe(plain))
                .is_allowed(),
            (None, Door::Sandbox { deny_subscribe }) => {
                fleetgate_acl::valid_topic_filter(plain)
                    && !deny_subscribe
                        .iter()
                        .any(|d| fleetgate_acl::filter_is_within(plain, d))
            }
            (None, Door::Operational) => false,
        }
    }

    /// One SUBSCRIBE filter: the ACL, then the subscription, whose retained messages are
    /// noted in `retained` for after the SUBACK. False when refused (counted).
    fn subscribe_one(
        &self,
        filter: String,
        opts: SubOpts,
        retain_handling: u8,
        retained: &mut Vec<(String, u64)>,
    ) -> bool {
        if !self.may_subscribe(&filter) {
            self.app.metrics.acl_denied(self.name(), "subscribe");
            return false;
        }
        let upto = self
            .broker
            .subscribe(self.session, &filter, opts, retain_handling);
        if let Some(d) = self.who.hooks.as_ref().and_then(|s| s.as_device()) {
            self.app
                .devices
                .on_subscribe(&d.account, &d.client_id, &filter);
        }
        if let Some(upto) = upto {
            retained.push((filter, upto));
        }
        true
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.end();
        // The connection's tasks end with it.
        self.kicker.kick(Kick::Gone);
        self.notify.notify_one();
    }
}

impl Conn {
    /// At a DISCONNECT: a session that ends with its connection (clean session, expiry 0) ends
    /// now, so that a client reconnecting at once does not find it still attached to the
    /// connection that is closing (and resume it). A persistent session stays attached until
    /// the connection goes away: acknowledgements read just before the DISCONNECT are still
    /// being settled, and a reconnect takes it over as it should.
    fn disconnected(&self) {
        if self.expiry.get().is_some_and(|e| e.is_zero()) {
            self.end();
        }
    }

    /// Detaches the connection from its session, once (see [`Conn::disconnected`]).
    fn end(&self) {
        if self.ended.replace(true) {
            return;
        }
        let unacked: Vec<Delivery> = std::mem::take(&mut *self.inflight.borrow_mut())
            .into_values()
            .collect();
        let will = if self.clean_exit.get() {
            None
        } else {
            self.will.borrow_mut().take()
        };
        let current = self.broker.detach(
            self.session,
            self.generation,
            unacked,
            self.expiry.get(),
            will,
        );
        if current && let Some(s) = &self.who.hooks {
            if let Some(d) = s.as_device() {
                self.app.devices.on_disconnect(&d.account, &d.client_id);
            }
            // Submitted now, committed with the next group commit.
            drop(ntex::rt::spawn(self.app.hooks.disconnected(s)));
        }
    }
}

/// What a CONNECT asks for, whichever the version.
struct Asked {
    facts: ConnectFacts,
    clean_start: bool,
    expiry: Option<Duration>,
    will: Option<(Message, Duration)>,
    max_packet: Option<u32>,
    topic_alias_max: u16,
}

fn expiry_v5(secs: u32) -> Option<Duration> {
    (secs != u32::MAX).then(|| Duration::from_secs(u64::from(secs)))
}

fn props_of(
    user: &[(ByteString, ByteString)],
    content_type: Option<&ByteString>,
    utf8: bool,
    response_topic: Option<&ByteString>,
    correlation: Option<&Bytes>,
) -> Properties {
    Properties {
        user: user.to_vec(),
        content_type: content_type.cloned(),
        utf8,
        response_topic: response_topic.cloned(),
        correlation: correlation.cloned(),
    }
}

fn expires(interval: Option<NonZeroU32>) -> Option<Instant> {
    interval.map(|s| Instant::now() + Duration::from_secs(u64::from(s.get())))
}

fn qos_u8(q: QoS) -> u8 {
    u8::from(q)
}

/// Decides a CONNECT: the door, the will topic, the connection slot; attaches the session.
async fn admit(
    broker: &Arc<Broker>,
    app: &Arc<App>,
    asked: Asked,
    sink: Sink,
) -> Result<(Conn, bool), Refusal> {
    let name = broker.door.name();
    let arrived = std::time::Instant::now();
    let decided = async {
        let slot = Slot::acquire(&app.metrics, name, app.config.operational.max_connections)
            .ok_or(Refusal::ServerBusy)?;
        let who = match broker.door {
            Door::Operational => {
                let s = app
                    .hooks
                    .authenticate(EndpointKind::Operational, &asked.facts)
                    .await?;
                Who {
                    account: s.account().to_string(),
                    username: s.username().to_string(),
                    hooks: Some(s),
                }
            }
            Door::Sandbox { .. } => Who {
                hooks: None,
                account: String::new(),
                username: String::new(),
            },
        };
        Ok::<_, Refusal>((slot, who))
    }
    .await;
    let (slot, who) = match decided {
        Ok(v) => v,
        Err(r) => {
            app.metrics.connect(name, r.label());
            return crate::paced(arrived, app, Err(r)).await;
        }
    };
    if let Some((w, _)) = &asked.will
        && !who.may_publish(app, &w.topic)
    {
        app.metrics.acl_denied(name, "will");
        app.metrics.connect(name, Refusal::NotAuthorized.label());
        return Err(Refusal::NotAuthorized);
    }
    let notify = Arc::new(Notify::new());
    let kicker = Arc::new(Kicker::default());
    let mut conn = Conn {
        _slot: slot,
        app: app.clone(),
        broker: broker.clone(),
        who,
        session: 0,
        generation: 0,
        will: RefCell::new(asked.will),
        clean_exit: Cell::new(false),
        ended: Cell::new(false),
        expiry: Cell::new(asked.expiry),
        inflight: Rc::default(),
        max_packet: asked.max_packet,
        topic_alias_max: asked.topic_alias_max,
        notify: notify.clone(),
        kicker: kicker.clone(),
    };
    let key = (conn.who.account.clone(), asked.facts.client_id.clone());
    let (attached, connected) = broker.attach(
        key,
        &conn.who.username,
        asked.clean_start,
        asked.expiry,
        notify.clone(),
        kicker.clone(),
        || conn.who.hooks.as_ref().map(|s| app.hooks.connected(s)),
    );
    conn.session = attached.session;
    conn.generation = attached.generation;
    if let Some(write) = connected {
        drop(ntex::rt::spawn(write));
    }
    if attached.present
        && let Some(d) = conn.who.hooks.as_ref().and_then(|s| s.as_device())
    {
        // A resumed session may already hold the subscription that makes it ready.
        app.devices.on_connect(&d.account, &d.client_id);
    }
    app.metrics.connect(name, "accepted");
    spawn_kick_watch(&sink, kicker);
    spawn_drain(&conn, sink);
    Ok((conn, attached.present))
}

/// Closes the connection when the broker asks (takeover: 5.0 DISCONNECT 0x8E; revoked user:
/// 0x87). The task ends with the connection.
fn spawn_kick_watch(sink: &Sink, kicker: Arc<Kicker>) {
    let sink = sink.clone();
    drop(ntex::rt::spawn(async move {
        let why = kicker.kicked().await;
        sink.close(match why {
            Kick::Revoked => DisconnectReasonCode::NotAuthorized,
            Kick::TakenOver => DisconnectReasonCode::SessionTakenOver,
            Kick::Gone => return,
        });
    }));
}

/// Sends the session's deliveries on the connection's worker until the connection closes.
///
/// QoS 1 deliveries are pipelined up to the client's receive maximum. A QoS 2 delivery is
/// waited for to its PUBCOMP before the next QoS 1 or 2 one goes: ntex-mqtt 8.2 keeps one
/// acknowledgement queue per connection and expects every acknowledgement at its front, so a
/// PUBCOMP arriving while later PUBLISHes wait for their acknowledgements would be taken for a
/// protocol error.
fn spawn_drain(conn: &Conn, sink: Sink) {
    let (broker, session, generation) = (conn.broker.clone(), conn.session, conn.generation);
    let (notify, kicker) = (conn.notify.clone(), conn.kicker.clone());
    let inflight = conn.inflight.clone();
    let metrics = conn.app.metrics.clone();
    let max_packet = conn.max_packet;
    let endpoint = conn.name();
    let mut aliases = Aliases {
        max: conn.topic_alias_max,
        map: std::collections::HashMap::new(),
    };
    drop(ntex::rt::spawn(async move {
        let mut seq: u64 = 0;
        loop {
            notify.notified().await;
            if !sink.is_open() || kicker.gone() {
                return;
            }
            while let Some(d) = broker.next_delivery(session, generation) {
                let now = Instant::now();
                if d.msg.expired(now) {
                    broker.settle(session, &d);
                    continue;
                }
                if d.qos > 0 && !sink.ready().await {
                    broker.give_back(session, d);
                    return;
                }
                let Some(send) = send(&sink, &d, now, max_packet, &mut aliases) else {
                    // Larger than the client's maximum packet size: not sent to it.
                    metrics.dropped(endpoint);
                    broker.settle(session, &d);
                    continue;
                };
                if d.qos == 0 {
                    // Encoded already; there is nothing to wait for (nor anything stored).
                    continue;
                }
                seq += 1;
                let key = seq;
                let qos = d.qos;
                inflight.borrow_mut().insert(key, d);
                let done = {
                    let inflight = inflight.clone();
                    let broker = broker.clone();
                    async move {
                        // Delivered at PUBACK / PUBREC: a connection lost later must not
                        // resend it as a new PUBLISH.
                        let Some(release) = send.await else {
                            return false;
                        };
                        let delivered = {
                            let mut inflight = inflight.borrow_mut();
                            let d = inflight.remove(&key);
                            if inflight.is_empty() {
                                // A BTreeMap keeps its emptied node: an idle connection
                                // must not hold 700 bytes for nothing.
                                *inflight = BTreeMap::new();
                            }
                            d
                        };
                        if let Some(d) = delivered {
                            broker.settle(session, &d);
                        }
                        match release {
                            Some(r) => r.await,
                            None => true,
                        }
                    }
                };
                if qos == 2 {
                    if !done.await {
                        return;
                    }
                } else {
                    start(done).await;
                }
            }
        }
    }));
}

/// Polls `fut` once on the calling task, so that its first step happens now, and leaves the
/// rest to a task of its own. ntex-mqtt's QoS 1 send only encodes the PUBLISH and takes its
/// place in the client's receive maximum when first polled: a spawned send would let the next
/// `sink.ready()` see credit that is already spent, and break the order of deliveries.
async fn start<F: Future + 'static>(fut: F) {
    let mut fut = Box::pin(fut);
    let pending = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_pending())).await;
    if pending {
        drop(ntex::rt::spawn(fut));
    }
}

/// The rest of an outbound QoS 2 flow after PUBREC: PUBREL sent, PUBCOMP awaited; true once
/// complete.
type Release = Pin<Box<dyn Future<Output = bool>>>;

/// A delivery on its way: resolves when the client acknowledged it (QoS 0: at once; QoS 1:
/// PUBACK; QoS 2: PUBREC, with the [`Release`] still to await), `None` when the connection
/// closed first.
type Sent = Pin<Box<dyn Future<Output = Option<Option<Release>>>>>;

/// Starts sending one delivery; `None` when the packet is larger than the client accepts. QoS
/// 0 is encoded before this returns; QoS 1 and 2 when the future is first polled (see
/// [`start`]).
fn send(
    sink: &Sink,
    d: &Delivery,
    now: Instant,
    max_packet: Option<u32>,
    aliases: &mut Aliases,
) -> Option<Sent> {
    let payload = d.msg.payload.clone();
    match sink {
        Sink::V3(s) => {
            let mut b = s.publish(d.msg.topic.clone()).dup(d.dup);
            if d.retain {
                b = b.retain();
            }
            Some(match d.qos {
                0 => {
                    let _ = b.send_at_most_once(payload);
                    Box::pin(async { Some(None) })
                }
                1 => {
                    let f = b.send_at_least_once(payload);
                    Box::pin(async move { f.await.ok().map(|_| None) })
                }
                _ => {
                    let f = b.send_exactly_once(payload);
                    Box::pin(async move {
                        let rec = f.await.ok()?;
                        let release: Release = Box::pin(async move { rec.release().await.is_ok() });
                        Some(Some(release))
                    })
                }
            })
        }
        Sink::V5(s) => {
            let m = &d.msg;
            let props = |p: &mut v5::codec::PublishProperties, alias| {
                p.user_properties.clone_from(&m.props.user);
                p.content_type.clone_from(&m.props.content_type);
                p.is_utf8_payload = m.props.utf8;
                p.response_topic.clone_from(&m.props.response_topic);
                p.correlation_data.clone_from(&m.props.correlation);
                p.message_expiry_interval = m.expiry_left(now).and_then(NonZeroU32::new);
                p.subscription_ids = d
                    .sub_ids
                    .iter()
                    .filter_map(|i| NonZeroU32::new(*i))
                    .collect();
                p.topic_alias = alias;
            };
            // Measured with the whole topic and an alias, the largest form it can take, and
            // before an alias is given out: a message not sent must not set one.
            let largest = s
                .publish(m.topic.clone())
                .properties(|p| props(p, NonZeroU16::new(1)))
                .size(payload.len());
            if max_packet.is_some_and(|max| largest > max) {
                return None;
            }
            let (topic, alias) = aliases.assign(&m.topic);
            let b = s
                .publish(topic)
                .dup(d.dup)
                .retain(d.retain)
                .properties(|p| props(p, alias));
            Some(match d.qos {
                0 => {
                    let _ = b.send_at_most_once(payload);
                    Box::pin(async { Some(None) })
                }
                1 => {
                    let f = b.send_at_least_once(payload);
                    Box::pin(async move { f.await.ok().map(|_| None) })
                }
                _ => {
                    let f = b.send_exactly_once(payload);
                    Box::pin(async move {
                        let rec = f.await.ok()?;
                        let release: Release = Box::pin(async move { rec.release().await.is_ok() });
                        Some(Some(release))
                    })
                }
            })
        }
    }
}

/// The reaction to a PUBLISH.
enum Published {
    /// Routed (or a QoS 2 redelivery acknowledged again).
    Ok,
    /// The ACL refused it.
    Denied,
    /// A retained message past the quota (5.0: 0x97).
    Quota,
    /// The retained message, or a delivery to a persistent session, could not be stored.
    NotStored,
}

/// An incoming PUBLISH: ACL, QoS 2 deduplication, retained, routing, then what the hooks
/// record of it (a device's BIRTH facts: PROTOCOL.md 6.3).
async fn publish(conn: &Conn, msg: Message, packet_id: u16, dup: bool, v5: bool) -> Published {
    if !conn.may_publish(&msg.topic) {
        conn.app.metrics.acl_denied(conn.name(), "publish");
        return Published::Denied;
    }
    if msg.qos == 2 && !conn.broker.qos2_received(conn.session, packet_id, dup) {
        return Published::Ok;
    }
    // Submitted before routing (so it sees this message), awaited after: ready at once for
    // anything but a BIRTH.
    let recorded = conn.who.hooks.as_ref().map(|s| {
        if let Some(d) = s.as_device() {
            conn.app
                .devices
                .on_publish(&d.account, &d.client_id, &msg.topic, &msg.payload);
        }
        conn.app.hooks.published(s, &msg.topic, &msg.payload)
    });
    let published = route(conn, msg, v5).await;
    if let Some(recorded) = recorded {
        recorded.await;
    }
    published
}

/// Routes an accepted PUBLISH; a retained one is kept first. Acknowledged = durable
/// (PROTOCOL.md 6.2): the retained message and what persistent sessions were given are in the
/// store before the answer.
async fn route(conn: &Conn, msg: Message, v5: bool) -> Published {
    if !msg.retain {
        return durable(conn.broker.route(msg)).await;
    }
    let msg = Arc::new(msg);
    let Some(persisted) = conn.broker.publish_retained(msg.clone()) else {
        if v5 {
            return Published::Quota;
        }
        // 3.1.1 has no way to refuse it: delivered, not retained.
        return durable(conn.broker.route(Message {
            retain: false,
            ..Message::clone(&msg)
        }))
        .await;
    };
    durable(Some(persisted)).await
}

/// The reaction to a PUBLISH once what it stored, if anything, is durable (a failure was
/// logged by the store).
async fn durable(
    write: Option<impl Future<Output = Result<(), fleetgate_storage::StoreError>>>,
) -> Published {
    match write {
        None => Published::Ok,
        Some(write) => match write.await {
            Ok(()) => Published::Ok,
            Err(_) => Published::NotStored,
        },
    }
}

/// Queues the retained messages of the filters just subscribed, once the SUBACK is out.
fn send_retained_later(conn: &Conn, filters: Vec<(String, u64)>) {
    if filters.is_empty() {
        return;
    }
    let (broker, session) = (conn.broker.clone(), conn.session);
    drop(ntex::rt::spawn(async move {
        // The SUBACK is encoded when the protocol service returns; retained messages follow it.
        ntex::time::sleep(ntex::time::Millis(5)).await;
        for (f, upto) in filters {
            broker.send_retained(session, &f, upto);
        }
    }));
}

fn random_client_id() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("fleetgate-{n:016x}")
}

async fn handshake_v3(
    h: v3::Handshake,
    broker: Arc<Broker>,
    app: Arc<App>,
) -> Result<v3::HandshakeAck<Conn>, BrokerError> {
    let pkt = h.packet();
    let mut client_id = pkt.client_id.clone();
    if client_id.is_empty() {
        if !pkt.clean_session || matches!(broker.door, Door::Operational) {
            return Ok(refuse_v3(h, Refusal::InvalidClientId));
        }
        client_id = ByteString::from(random_client_id());
    }
    let will = pkt.last_will.as_ref().map(|w| {
        let msg = Message {
            topic: w.topic.clone(),
            payload: w.message.clone(),
            qos: qos_u8(w.qos),
            retain: w.retain,
            props: Properties::default(),
            expires: None,
            from: 0,
        };
        (msg, Duration::ZERO)
    });
    let asked = Asked {
        facts: facts(
            &client_id,
            pkt.username.as_ref(),
            pkt.password.as_ref(),
            h.io(),
            Protocol::V311,
        ),
        clean_start: pkt.clean_session,
        expiry: Some(if pkt.clean_session {
            Duration::ZERO
        } else {
            broker.limits.session_expiry_v3
        }),
        will,
        max_packet: None,
        topic_alias_max: 0,
    };
    let keep_alive = pkt.keep_alive;
    match admit(&broker, &app, asked, Sink::V3(h.sink())).await {
        Ok((conn, present)) => {
            let ack = h.ack(conn, present);
            // Keep alive 0 turns the check off (MQTT 3.1.1 3.1.2.10); ntex would use 30 s.
            Ok(if keep_alive == 0 {
                ack.idle_timeout(ntex::time::Seconds::ZERO)
            } else {
                ack
            })
        }
        Err(r) => Ok(refuse_v3(h, r)),
    }
}

async fn handshake_v5(
    h: v5::Handshake,
    broker: Arc<Broker>,
    app: Arc<App>,
) -> Result<v5::HandshakeAck<Conn>, BrokerError> {
    let pkt = h.packet();
    if let Some(reason) = crate::refuse_auth_method(pkt) {
        return Ok(h.failed(reason));
    }
    let mut client_id = pkt.client_id.clone();
    let mut assigned = None;
    if client_id.is_empty() && matches!(broker.door, Door::Sandbox { .. }) {
        client_id = ByteString::from(random_client_id());
        assigned = Some(client_id.clone());
    }
    let will = pkt.last_will.as_ref().map(|w| {
        let msg = Message {
            topic: w.topic.clone(),
            payload: w.message.clone(),
            qos: qos_u8(w.qos),
            retain: w.retain,
            props: props_of(
                &w.user_properties,
                w.content_type.as_ref(),
                w.is_utf8_payload.unwrap_or(false),
                w.response_topic.as_ref(),
                w.correlation_data.as_ref(),
            ),
            expires: expires(w.message_expiry_interval),
            from: 0,
        };
        let delay = Duration::from_secs(u64::from(w.will_delay_interval_sec.unwrap_or(0)));
        (msg, delay)
    });
    let asked = Asked {
        facts: facts(
            &client_id,
            pkt.username.as_ref(),
            pkt.password.as_ref(),
            h.io(),
            Protocol::V5,
        ),
        clean_start: pkt.clean_start,
        expiry: expiry_v5(pkt.session_expiry_interval_secs),
        will,
        max_packet: pkt.max_packet_size.map(NonZeroU32::get),
        topic_alias_max: pkt.topic_alias_max,
    };
    let client_keep_alive = pkt.keep_alive;
    let max = broker.limits.max_keepalive;
    match admit(&broker, &app, asked, Sink::V5(h.sink())).await {
        Ok((conn, present)) => {
            let granted = if max > 0 && (client_keep_alive == 0 || client_keep_alive > max) {
                Some(max)
            } else {
                None
            };
            let effective = granted.unwrap_or(client_keep_alive);
            let mut ack = h.ack(conn).with(|a| {
                a.session_present = present;
                a.assigned_client_id = assigned;
                a.server_keepalive_sec = granted;
            });
            // Enforced at 1.5 times the negotiated value; 0 = no keep alive (ntex would use 30 s).
            ack = ack.keep_alive(if effective == 0 {
                u16::MAX
            } else {
                effective.saturating_add(effective / 2)
            });
            Ok(ack)
        }
        Err(r) => Ok(h.failed(refusal_v5(r))),
    }
}

fn sub_opts(qos: QoS, no_local: bool, rap: bool, id: Option<NonZeroU32>) -> SubOpts {
    SubOpts {
        qos: qos_u8(qos),
        no_local,
        retain_as_published: rap,
        id: id.map(NonZeroU32::get),
    }
}

/// After a SUBSCRIBE or UNSUBSCRIBE: the record of a persistent session is durable before
/// the acknowledgement (a failure was logged by the store).
async fn kept(conn: &Conn) -> Result<(), BrokerError> {
    match conn.broker.keep_session(conn.session) {
        Some(write) => write.await.map_err(|_| BrokerError::SessionNotStored),
        None => Ok(()),
    }
}

async fn protocol_v3(
    s: v3::Session<Conn>,
    msg: v3::ProtocolMessage,
) -> Result<v3::ProtocolMessageAck, BrokerError> {
    let conn: &Conn = &s;
    Ok(match msg {
        v3::ProtocolMessage::Subscribe(mut sub) => {
            let mut retained = Vec::new();
            for mut one in sub.iter_mut() {
                let opts = sub_opts(one.qos(), false, false, None);
                if conn.subscribe_one(one.topic().to_string(), opts, 0, &mut retained) {
                    one.confirm(one.qos());
                } else {
                    one.fail();
                }
            }
            kept(conn).await?;
            send_retained_later(conn, retained);
            sub.ack()
        }
        v3::ProtocolMessage::Unsubscribe(u) => {
            for t in u.iter() {
                conn.broker.unsubscribe(conn.session, t);
            }
            kept(conn).await?;
            u.ack()
        }
        v3::ProtocolMessage::Disconnect(d) => {
            conn.clean_exit.set(true);
            conn.disconnected();
            d.ack()
        }
        v3::ProtocolMessage::Ping(p) => p.ack(),
        v3::ProtocolMessage::PublishRelease(r) => {
            conn.broker.qos2_released(conn.session, r.packet_id.get());
            r.ack()
        }
    })
}

async fn protocol_v5(
    s: v5::Session<Conn>,
    msg: v5::ProtocolMessage,
) -> Result<v5::ProtocolMessageAck, BrokerError> {
    let conn: &Conn = &s;
    Ok(match msg {
        v5::ProtocolMessage::Subscribe(mut sub) => {
            let id = sub.packet().id;
            let mut retained = Vec::new();
            for mut one in sub.iter_mut() {
                let filter = one.topic().to_string();
                let o = *one.options();
                let shared = split_shared(&filter).is_some();
                if shared && o.no_local {
                    // MQTT 5.0 3.8.3.1: no local on a shared subscription is a protocol error.
                    one.fail(SubscribeAckReason::UnspecifiedError);
                } else if conn.subscribe_one(
                    filter,
                    sub_opts(o.qos, o.no_local, o.retain_as_published, id),
                    o.retain_handling as u8,
                    &mut retained,
                ) {
                    one.confirm(o.qos);
                } else {
                    one.fail(SubscribeAckReason::NotAuthorized);
                }
            }
            kept(conn).await?;
            send_retained_later(conn, retained);
            sub.ack()
        }
        v5::ProtocolMessage::Unsubscribe(mut u) => {
            for mut one in u.iter_mut() {
                if conn.broker.unsubscribe(conn.session, one.topic()) {
                    one.success();
                } else {
                    one.fail(ntex_mqtt::v5::codec::UnsubscribeAckReason::NoSubscriptionExisted);
                }
            }
            kept(conn).await?;
            u.ack()
        }
        v5::ProtocolMessage::Disconnect(d) => {
            let pkt = d.packet();
            conn.clean_exit
                .set(pkt.reason_code != DisconnectReasonCode::DisconnectWithWillMessage);
            if let Some(secs) = pkt.session_expiry_interval_secs {
                conn.expiry.set(expiry_v5(secs));
            }
            conn.disconnected();
            d.ack()
        }
        v5::ProtocolMessage::Ping(p) => p.ack(),
        v5::ProtocolMessage::PublishRelease(r) => {
            conn.broker
                .qos2_released(conn.session, r.packet().packet_id.get());
            r.ack()
        }
        m @ v5::ProtocolMessage::Auth(_) => crate::refuse_auth(&m),
    })
}

async fn publish_v3(s: v3::Session<Conn>, p: v3::Publish) -> Result<(), BrokerError> {
    let conn: &Conn = &s;
    let topic = p.publish_topic().to_string();
    let (qos, retain, dup) = (qos_u8(p.qos()), p.retain(), p.dup());
    let id = p.id().map_or(0, NonZeroU16::get);
    let msg = Message {
        topic: p.packet().topic.clone(),
        payload: p.read_all().await?,
        qos,
        retain,
        props: Properties::default(),
        expires: None,
        from: conn.session,
    };
    match publish(conn, msg, id, dup, false).await {
        // MQTT 3.1.1 has no negative acknowledgement: close the connection.
        Published::Denied => Err(BrokerError::PublishDenied { topic }),
        Published::NotStored => Err(BrokerError::NotStored),
        Published::Ok | Published::Quota => Ok(()),
    }
}

async fn publish_v5(s: v5::Session<Conn>, p: v5::Publish) -> Result<v5::PublishAck, BrokerError> {
    let conn: &Conn = &s;
    let pkt = p.packet();
    let props = &pkt.properties;
    let msg_props = props_of(
        &props.user_properties,
        props.content_type.as_ref(),
        props.is_utf8_payload,
        props.response_topic.as_ref(),
        props.correlation_data.as_ref(),
    );
    let (qos, retain, dup) = (qos_u8(pkt.qos), pkt.retain, pkt.dup);
    let id = pkt.packet_id.map_or(0, NonZeroU16::get);
    let topic = pkt.topic.clone();
    let expiry = expires(props.message_expiry_interval);
    let payload = p.read_all().await?;
    let msg = Message {
        topic,
        payload,
        qos,
        retain,
        props: msg_props,
        expires: expiry,
        from: conn.session,
    };
    // QoS 0 gets no acknowledgement whatever the reason code (a refused one is dropped).
    Ok(match publish(conn, msg, id, dup, true).await {
        Published::Ok => p.ack(),
        Published::Denied => p.ack().reason_code(PublishAckReason::NotAuthorized),
        Published::Quota => p.ack().reason_code(PublishAckReason::QuotaExceeded),
        Published::NotStored => p.ack().reason_code(PublishAckReason::UnspecifiedError),
    })
}

/// One broker listener (3.1.1 and 5.0) for `broker`; its TCP and TLS listeners share it.
// The return type spells out ntex-mqtt's builder; `impl Trait` cannot go in a type alias.
#[allow(clippy::type_complexity)]
pub fn factory(
    app: Arc<App>,
    broker: Arc<Broker>,
) -> MqttServer<
    impl ServiceFactory<
        ntex::io::IoBoxed,
        SharedCfg,
        Response = (),
        Error = MqttError<BrokerError>,
        InitError = (),
    >,
    impl ServiceFactory<
        ntex::io::IoBoxed,
        SharedCfg,
        Response = (),
        Error = MqttError<BrokerError>,
        InitError = (),
    >,
    BrokerError,
    (),
> {
    let (a3, a5) = (app.clone(), app);
    let (b3, b5) = (broker.clone(), broker);
    MqttServer::new()
        .v3(
            v3::MqttServer::new(fn_service(async move |h: v3::Handshake| {
                handshake_v3(h, b3.clone(), a3.clone()).await
            }))
            .protocol(fn_factory_with_config(|s: v3::Session<Conn>| {
                Ready::Ok::<_, BrokerError>(fn_service(async move |m: v3::ProtocolMessage| {
                    protocol_v3(s.clone(), m).await
                }))
            }))
            .control(fn_factory_with_config(|_s: v3::Session<Conn>| {
                Ready::Ok::<_, BrokerError>(fn_service(async move |_c: Control<BrokerError>| {
                    Ok::<_, BrokerError>(None)
                }))
            }))
            .publish(fn_factory_with_config(|s: v3::Session<Conn>| {
                Ready::Ok::<_, BrokerError>(fn_service(async move |p: v3::Publish| {
                    publish_v3(s.clone(), p).await
                }))
            })),
        )
        .v5(
            v5::MqttServer::new(fn_service(async move |h: v5::Handshake| {
                handshake_v5(h, b5.clone(), a5.clone()).await
            }))
            .protocol(fn_factory_with_config(|s: v5::Session<Conn>| {
                Ready::Ok::<_, BrokerError>(fn_service(async move |m: v5::ProtocolMessage| {
                    protocol_v5(s.clone(), m).await
                }))
            }))
            .control(fn_factory_with_config(|_s: v5::Session<Conn>| {
                Ready::Ok::<_, BrokerError>(fn_service(async move |_c: Control<BrokerError>| {
                    Ok::<_, BrokerError>(None)
                }))
            }))
            .publish(fn_factory_with_config(|s: v5::Session<Conn>| {
                Ready::Ok::<_, BrokerError>(fn_service(async move |p: v5::Publish| {
                    publish_v5(s.clone(), p).await
                }))
            })),
        )
}
