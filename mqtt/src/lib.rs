//! Fleetgate's MQTT endpoints on ntex-mqtt 8.2 (3.1.1 and 5.0 on one listener): the
//! provisioning endpoint ([`provisioning`]: the hooks at CONNECT, SUBSCRIBE and PUBLISH, and the
//! glue that runs a [`fleetgate_exchange`] over the connection), and the broker behind the
//! operational endpoint and the sandbox ([`broker`]: sessions, subscriptions, retained
//! messages, wills; its own connection glue in [`broker::conn`]). This module holds what they
//! share: the error type of the ntex-mqtt services, the one mapping of hook refusals to CONNACK
//! codes, a sink that hides the protocol version and the listener settings, and the service
//! factory of the provisioning endpoint.
//!
//! All ntex-mqtt code of the workspace is here, so an upgrade touches one crate. This crate
//! must not decide: credentials and topics are the hooks' ([`fleetgate_hooks`]), the exchange
//! is [`fleetgate_exchange`]'s, persistence is the store's (the broker decides what to keep,
//! the store keeps it).

pub mod broker;
pub mod provisioning;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use fleetgate_hooks::{ConnectFacts, Protocol, Refusal};
use ntex::io::types::PeerAddr;
use ntex::service::cfg::SharedCfg;
use ntex::service::{ServiceFactory, fn_factory_with_config, fn_service};
use ntex::util::{ByteString, Bytes, Ready};
use ntex_mqtt::{Control, MqttError, MqttServer, v3, v5};

/// MQTT quality of service levels (listener settings).
pub use ntex_mqtt::QoS;

use fleetgate_app::App;
use fleetgate_metrics::Slot;

/// The error of every MQTT service. Returning it from a publish handler closes the connection
/// (the MQTT 3.1.1 reaction to a forbidden publish).
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// ntex-mqtt could not build a per-connection service.
    #[error("service initialisation failed")]
    Init,
    /// A PUBLISH payload could not be read to its end.
    #[error("payload: {0}")]
    Payload(#[from] ntex_mqtt::error::PayloadError),
    /// An MQTT 3.1.1 PUBLISH the ACL refused: 3.1.1 has no negative acknowledgement.
    #[error("publish to {topic} not authorized")]
    PublishDenied {
        /// The topic.
        topic: String,
    },
    /// An MQTT 3.1.1 PUBLISH whose retained message, or deliveries to persistent sessions,
    /// could not be stored: closing the connection is the only way 3.1.1 has to say it was
    /// not accepted.
    #[error("message not stored")]
    NotStored,
    /// A SUBSCRIBE or UNSUBSCRIBE of a persistent session whose record could not be stored:
    /// not acknowledged, the connection closes.
    #[error("session not stored")]
    SessionNotStored,
}

impl From<()> for BrokerError {
    fn from((): ()) -> Self {
        BrokerError::Init
    }
}

/// The error type of the listeners' service factories (what a TLS acceptor's error is mapped
/// into when chained in front of [`factory`]).
pub type ServiceError = MqttError<BrokerError>;

impl TryFrom<BrokerError> for v5::PublishAck {
    type Error = BrokerError;
    fn try_from(err: BrokerError) -> Result<Self, Self::Error> {
        Err(err)
    }
}

/// PROTOCOL.md section 2's table, MQTT 3.1.1 column.
pub fn refuse_v3<St>(h: v3::Handshake, r: Refusal) -> v3::HandshakeAck<St> {
    use v3::codec::ConnectAckReason as R;
    h.failed(match r {
        Refusal::InvalidClientId => R::IdentifierRejected,
        Refusal::BadCredentials => R::BadUserNameOrPassword,
        Refusal::NotAuthorized | Refusal::Banned => R::NotAuthorized,
        Refusal::ServerBusy => R::ServiceUnavailable,
    })
}

/// PROTOCOL.md section 2's table, MQTT 5.0 column.
pub fn refusal_v5(r: Refusal) -> v5::codec::ConnectAckReason {
    use v5::codec::ConnectAckReason as R;
    match r {
        Refusal::InvalidClientId => R::ClientIdentifierNotValid,
        Refusal::BadCredentials => R::BadUserNameOrPassword,
        Refusal::NotAuthorized => R::NotAuthorized,
        Refusal::Banned => R::Banned,
        Refusal::ServerBusy => R::ServerBusy,
    }
}

/// The CONNACK refusing a 5.0 CONNECT that asks for enhanced authentication, which Fleetgate
/// does not offer (MQTT 5.0 4.12: 0x8C Bad authentication method); `None` for any other.
pub(crate) fn refuse_auth_method(pkt: &v5::codec::Connect) -> Option<v5::codec::ConnectAckReason> {
    pkt.auth_method
        .is_some()
        .then_some(v5::codec::ConnectAckReason::BadAuthenticationMethod)
}

/// A will whose topic is no valid topic name (a wildcard, NUL or empty) could never be
/// published [MQTT-3.3.2-2]: refused with Not authorized, as the broker's listeners refuse a
/// will topic their ACL does not allow, and before the credentials are verified (the answer
/// does not depend on them). A valid will is accepted and discarded (PROTOCOL.md 3). Found by
/// the malformed-packet campaign (`broker/tests/malformed.rs`): the provisioning listener
/// accepted `w/#`.
fn refuse_will<E: Endpoint>(app: &App, topic: Option<&ByteString>) -> Option<Refusal> {
    if topic.is_none_or(|t| fleetgate_acl::valid_topic_name(t)) {
        return None;
    }
    app.metrics.acl_denied(E::NAME, "will");
    app.metrics.connect(E::NAME, Refusal::NotAuthorized.label());
    Some(Refusal::NotAuthorized)
}

/// An AUTH packet on a session whose CONNECT had no authentication method (the only kind
/// Fleetgate accepts) is a protocol error: DISCONNECT 0x82 (MQTT 5.0 4.12).
pub(crate) fn refuse_auth(m: &v5::ProtocolMessage) -> v5::ProtocolMessageAck {
    m.disconnect_with(v5::codec::Disconnect::new(
        v5::codec::DisconnectReasonCode::ProtocolError,
    ))
}

/// A connection's sink, whichever the protocol version.
#[derive(Clone)]
pub enum Sink {
    /// MQTT 3.1.1.
    V3(v3::MqttSink),
    /// MQTT 5.0.
    V5(v5::MqttSink),
}

/// Why a QoS 1 delivery did not complete. (Waiting too long is the caller's business: the
/// provisioning exchange bounds it with `provisioning.reply_timeout`.)
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The connection closed first.
    Closed,
    /// The device answered with an error reason (v5).
    Refused(u8),
}

impl Sink {
    /// Publishes at QoS 0.
    pub fn publish_qos0(&self, topic: ByteString, payload: Bytes) -> Result<(), SendError> {
        match self {
            Sink::V3(s) => s.publish(topic).send_at_most_once(payload),
            Sink::V5(s) => s.publish(topic).send_at_most_once(payload),
        }
        .map_err(|_| SendError::Closed)
    }

    /// Publishes at QoS 1 and resolves when the PUBACK arrives.
    pub async fn publish_qos1(&self, topic: ByteString, payload: Bytes) -> Result<(), SendError> {
        match self {
            Sink::V3(s) => s
                .publish(topic)
                .send_at_least_once(payload)
                .await
                .map_err(|_| SendError::Closed),
            Sink::V5(s) => {
                let ack = s
                    .publish(topic)
                    .send_at_least_once(payload)
                    .await
                    .map_err(|_| SendError::Closed)?;
                let code = u8::from(ack.reason_code);
                if code < 0x80 {
                    Ok(())
                } else {
                    Err(SendError::Refused(code))
                }
            }
        }
    }

    /// Resolves when the client can take one more QoS 1 or 2 message (its receive maximum);
    /// false when the connection closed first.
    pub async fn ready(&self) -> bool {
        match self {
            Sink::V3(s) => s.ready().await,
            Sink::V5(s) => s.ready().await,
        }
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        match self {
            Sink::V3(s) => s.is_open(),
            Sink::V5(s) => s.is_open(),
        }
    }

    /// Closes the connection; v5 sends DISCONNECT with `reason` first.
    pub fn close(&self, reason: v5::codec::DisconnectReasonCode) {
        match self {
            Sink::V3(s) => s.close(),
            Sink::V5(s) => s.close_with_reason(v5::codec::Disconnect::new(reason)),
        }
    }
}

/// What an endpoint decides; the version-specific plumbing lives in [`factory`] only. A value
/// of the endpoint is its context, shared by every listener of that endpoint (TCP and TLS).
pub trait Endpoint: Send + Sync + 'static {
    /// Per-connection state, created on an accepted CONNECT; dropped when the connection ends.
    type State: 'static;
    /// Label for metrics and logs.
    const NAME: &'static str;

    /// The endpoint's connection limit.
    fn max_connections(config: &fleetgate_config::Config) -> usize;

    /// Decides a CONNECT; an accepted session keeps `slot` for as long as it lives.
    fn connect(
        endpoint: &Arc<Self>,
        app: &Arc<App>,
        facts: ConnectFacts,
        sink: Sink,
        slot: Slot,
    ) -> impl Future<Output = Result<Self::State, Refusal>>;

    /// Decides one SUBSCRIBE filter: the granted QoS, or `None` to refuse it.
    fn subscribe(state: &Self::State, filter: &str, qos: QoS) -> Option<QoS>;

    /// An UNSUBSCRIBE filter.
    fn unsubscribe(state: &Self::State, filter: &str);

    /// A PUBLISH from the client; false when the ACL refuses it.
    fn publish(state: &Self::State, topic: &str, qos: QoS, payload: Bytes) -> bool;
}

fn facts(
    client_id: &ByteString,
    username: Option<&ByteString>,
    password: Option<&Bytes>,
    io: &ntex::io::IoBoxed,
    protocol: Protocol,
) -> ConnectFacts {
    ConnectFacts {
        client_id: client_id.to_string(),
        username: username.map(ToString::to_string),
        password: password.map(|p| p.to_vec()),
        peer: io
            .query::<PeerAddr>()
            .get()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |p| p.0),
        protocol,
    }
}

/// Takes a connection slot (so that concurrent CONNECTs cannot overshoot the limit), lets the
/// endpoint decide, and counts the result.
async fn admit<E: Endpoint>(
    endpoint: &Arc<E>,
    app: &Arc<App>,
    facts: ConnectFacts,
    sink: Sink,
) -> Result<E::State, Refusal> {
    let arrived = std::time::Instant::now();
    let decided = match Slot::acquire(&app.metrics, E::NAME, E::max_connections(&app.config)) {
        Some(slot) => E::connect(endpoint, app, facts, sink, slot).await,
        None => Err(Refusal::ServerBusy),
    };
    app.metrics.connect(
        E::NAME,
        decided.as_ref().map_or_else(|r| r.label(), |_| "accepted"),
    );
    paced(arrived, app, decided).await
}

/// Holds a credential refusal (0x86 / 0x04) until `auth.refusal_time` after the CONNECT
/// arrived, so that an unknown client ID, a wrong username and a wrong password (the only one
/// of the three that costs an argon2 verification: strangers cannot make the server verify)
/// are answered after the same time. A timer, not CPU: waiting refusals cost a parked future
/// each. Other answers go at once: an acceptance or a Not authorized already tells the client
/// its credentials were right, and a ban or Server busy happens before any verification.
pub(crate) async fn paced<T>(
    arrived: std::time::Instant,
    app: &App,
    decided: Result<T, Refusal>,
) -> Result<T, Refusal> {
    if matches!(decided, Err(Refusal::BadCredentials)) {
        let at = arrived + fleetgate_config::Config::secs(app.config.auth.refusal_time);
        // ntex's timer wheel rounds a long sleep to 8 ms (over 64 ms) or 64 ms (over 512 ms),
        // and the rounding would depend on how long the decision took, i.e. on the class: the
        // last stretch is slept in short steps, which the wheel keeps to the millisecond.
        loop {
            let left = at.saturating_duration_since(std::time::Instant::now());
            let step = match left.as_millis() {
                0 => break,
                1..=50 => left,
                51..=120 => left - std::time::Duration::from_millis(40),
                _ => left - std::time::Duration::from_millis(100),
            };
            ntex::time::sleep(step).await;
        }
    }
    decided
}

async fn handshake_v3<E: Endpoint>(
    h: v3::Handshake,
    endpoint: Arc<E>,
    app: Arc<App>,
) -> Result<v3::HandshakeAck<E::State>, BrokerError> {
    let pkt = h.packet();
    if let Some(r) = refuse_will::<E>(&app, pkt.last_will.as_ref().map(|w| &w.topic)) {
        return Ok(refuse_v3(h, r));
    }
    let f = facts(
        &pkt.client_id,
        pkt.username.as_ref(),
        pkt.password.as_ref(),
        h.io(),
        Protocol::V311,
    );
    match admit(&endpoint, &app, f, Sink::V3(h.sink())).await {
        Ok(state) => Ok(h.ack(state, false)),
        Err(r) => Ok(refuse_v3(h, r)),
    }
}

async fn handshake_v5<E: Endpoint>(
    h: v5::Handshake,
    endpoint: Arc<E>,
    app: Arc<App>,
) -> Result<v5::HandshakeAck<E::State>, BrokerError> {
    let pkt = h.packet();
    if let Some(reason) = refuse_auth_method(pkt) {
        return Ok(h.failed(reason));
    }
    if let Some(r) = refuse_will::<E>(&app, pkt.last_will.as_ref().map(|w| &w.topic)) {
        return Ok(h.failed(refusal_v5(r)));
    }
    let f = facts(
        &pkt.client_id,
        pkt.username.as_ref(),
        pkt.password.as_ref(),
        h.io(),
        Protocol::V5,
    );
    match admit(&endpoint, &app, f, Sink::V5(h.sink())).await {
        Ok(state) => Ok(h.ack(state)),
        Err(r) => Ok(h.failed(refusal_v5(r))),
    }
}

fn cap_qos(qos: QoS) -> QoS {
    if qos == QoS::ExactlyOnce {
        QoS::AtLeastOnce
    } else {
        qos
    }
}

async fn protocol_v3<E: Endpoint>(
    s: v3::Session<E::State>,
    app: Arc<App>,
    msg: v3::ProtocolMessage,
) -> Result<v3::ProtocolMessageAck, BrokerError> {
    Ok(match msg {
        v3::ProtocolMessage::Subscribe(mut sub) => {
            for mut one in sub.iter_mut() {
                match E::subscribe(&s, one.topic(), cap_qos(one.qos())) {
                    Some(q) => one.confirm(q),
                    None => {
                        app.metrics.acl_denied(E::NAME, "subscribe");
                        one.fail();
                    }
                }
            }
            sub.ack()
        }
        v3::ProtocolMessage::Unsubscribe(u) => {
            for t in u.iter() {
                E::unsubscribe(&s, t);
            }
            u.ack()
        }
        v3::ProtocolMessage::Disconnect(d) => d.ack(),
        v3::ProtocolMessage::Ping(p) => p.ack(),
        v3::ProtocolMessage::PublishRelease(r) => r.ack(),
    })
}

async fn protocol_v5<E: Endpoint>(
    s: v5::Session<E::State>,
    app: Arc<App>,
    msg: v5::ProtocolMessage,
) -> Result<v5::ProtocolMessageAck, BrokerError> {
    Ok(match msg {
        v5::ProtocolMessage::Subscribe(mut sub) => {
            for mut one in sub.iter_mut() {
                match E::subscribe(&s, one.topic(), cap_qos(one.options().qos)) {
                    Some(q) => one.confirm(q),
                    None => {
                        app.metrics.acl_denied(E::NAME, "subscribe");
                        one.fail(v5::codec::SubscribeAckReason::NotAuthorized);
                    }
                }
            }
            sub.ack()
        }
        v5::ProtocolMessage::Unsubscribe(u) => {
            for t in u.iter() {
                E::unsubscribe(&s, t);
            }
            u.ack()
        }
        v5::ProtocolMessage::Disconnect(d) => d.ack(),
        v5::ProtocolMessage::Ping(p) => p.ack(),
        v5::ProtocolMessage::PublishRelease(r) => r.ack(),
        m @ v5::ProtocolMessage::Auth(_) => crate::refuse_auth(&m),
    })
}

async fn publish_v3<E: Endpoint>(
    s: v3::Session<E::State>,
    app: Arc<App>,
    p: v3::Publish,
) -> Result<(), BrokerError> {
    let topic = p.publish_topic().to_string();
    let qos = p.qos();
    let payload = p.read_all().await?;
    if E::publish(&s, &topic, qos, payload) {
        Ok(())
    } else {
        // MQTT 3.1.1 has no negative acknowledgement: close the connection.
        app.metrics.acl_denied(E::NAME, "publish");
        Err(BrokerError::PublishDenied { topic })
    }
}

async fn publish_v5<E: Endpoint>(
    s: v5::Session<E::State>,
    app: Arc<App>,
    p: v5::Publish,
) -> Result<v5::PublishAck, BrokerError> {
    let topic = p.publish_topic().to_string();
    let qos = p.qos();
    let payload = p.read_all().await?;
    if E::publish(&s, &topic, qos, payload) {
        Ok(p.ack())
    } else {
        app.metrics.acl_denied(E::NAME, "publish");
        // QoS 1: PUBACK 0x87; QoS 0: nothing is sent, the message is dropped.
        Ok(p.ack()
            .reason_code(v5::codec::PublishAckReason::NotAuthorized))
    }
}

/// One MQTT listener speaking 3.1.1 and 5.0 for `endpoint` (several listeners of one endpoint,
/// TCP and TLS, share its value).
// The return type spells out ntex-mqtt's builder; `impl Trait` cannot go in a type alias.
#[allow(clippy::type_complexity)]
pub fn factory<E: Endpoint>(
    app: Arc<App>,
    endpoint: Arc<E>,
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
    let (h3, p3, c3, h5, p5, c5) = (
        app.clone(),
        app.clone(),
        app.clone(),
        app.clone(),
        app.clone(),
        app,
    );
    let (e3, e5) = (endpoint.clone(), endpoint);
    MqttServer::new()
        .v3(
            v3::MqttServer::new(fn_service(async move |h: v3::Handshake| {
                handshake_v3(h, e3.clone(), h3.clone()).await
            }))
            .protocol(fn_factory_with_config(move |s: v3::Session<E::State>| {
                let app = p3.clone();
                Ready::Ok::<_, BrokerError>(fn_service(async move |m: v3::ProtocolMessage| {
                    protocol_v3::<E>(s.clone(), app.clone(), m).await
                }))
            }))
            .control(fn_factory_with_config(|_s: v3::Session<E::State>| {
                Ready::Ok::<_, BrokerError>(fn_service(async move |_c: Control<BrokerError>| {
                    Ok::<_, BrokerError>(None)
                }))
            }))
            .publish(fn_factory_with_config(move |s: v3::Session<E::State>| {
                let app = c3.clone();
                Ready::Ok::<_, BrokerError>(fn_service(async move |p: v3::Publish| {
                    publish_v3::<E>(s.clone(), app.clone(), p).await
                }))
            })),
        )
        .v5(
            v5::MqttServer::new(fn_service(async move |h: v5::Handshake| {
                handshake_v5(h, e5.clone(), h5.clone()).await
            }))
            .protocol(fn_factory_with_config(move |s: v5::Session<E::State>| {
                let app = p5.clone();
                Ready::Ok::<_, BrokerError>(fn_service(async move |m: v5::ProtocolMessage| {
                    protocol_v5::<E>(s.clone(), app.clone(), m).await
                }))
            }))
            .control(fn_factory_with_config(|_s: v5::Session<E::State>| {
                Ready::Ok::<_, BrokerError>(fn_service(async move |_c: Control<BrokerError>| {
                    Ok::<_, BrokerError>(None)
                }))
            }))
            .publish(fn_factory_with_config(move |s: v5::Session<E::State>| {
                let app = c5.clone();
                Ready::Ok::<_, BrokerError>(fn_service(async move |p: v5::Publish| {
                    publish_v5::<E>(s.clone(), app.clone(), p).await
                }))
            })),
        )
}

/// Topic aliases a client may set up per connection.
const MAX_TOPIC_ALIAS: u16 = 10;

/// The ntex-mqtt settings of one listener: largest packet, CONNECT timeout (also for the
/// protocol version), in-flight window both ways, highest QoS, and up to 10 topic aliases
/// from the client (PROTOCOL.md 6.2).
pub fn listener_config(
    name: &'static str,
    max_packet_size: u32,
    connect_timeout: f64,
    max_inflight: u16,
    max_qos: QoS,
) -> SharedCfg {
    let timeout = ntex::time::Seconds(
        u16::try_from(connect_timeout.ceil() as u64)
            .unwrap_or(u16::MAX)
            .max(1),
    );
    SharedCfg::new(name)
        .add(
            ntex_mqtt::MqttServiceConfig::new()
                .set_max_size(max_packet_size)
                .protocol_version_timeout(timeout)
                .set_connect_timeout(timeout)
                .set_max_receive(max_inflight)
                .set_max_send(max_inflight)
                .set_max_topic_alias(MAX_TOPIC_ALIAS)
                .set_max_qos(max_qos),
        )
        .into()
}
