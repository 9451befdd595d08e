//! A test device that behaves like Eclipse Kura's cloud stack, written from Kura's documented
//! behaviour (PROTOCOL.md 7) and its sources: it connects with its MqttDataTransport settings
//! (broker URL, account name, client ID, username, password), subscribes to
//! `$EDC/ACCOUNT/CID/#`, publishes its BIRTH, and answers CONF-V1 `GET/PUT configurations` and
//! CMD-V1 `EXEC command` on `$EDC/ACCOUNT/{requester.client.id}/{APP}/REPLY/{request.id}` at
//! QoS 0 with `response.code` and Kura's metrics. It answers only requests whose `request.id`
//! and `requester.client.id` are STRING metrics, as Kura does; apps it does not know get 404;
//! the app `SILENT-V1` is never answered (timeouts).
//!
//! A PUT that changes the MqttDataTransport configuration is applied as Kura applies one: the
//! reply goes first, and about a second later the transport disconnects, reconnects with the
//! new settings and publishes a new BIRTH (`MqttDataTransport.updated` then the data service's
//! reconnect). Like Kura's parser, it reads only the snapshot form (`esf:configuration`): the
//! plain form applies nothing. A refused CONNECT is retried, as Kura's reconnect task does.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetgate_devconfig::{Document, MQTT_TRANSPORT_PID};
use fleetgate_kura::Payload;

/// The MqttDataTransport settings the device connects with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transport {
    /// `broker-url`, as `mqtt://HOST:PORT`.
    pub broker_url: String,
    /// `topic.context.account-name`.
    pub account: String,
    /// `client-id`.
    pub client_id: String,
    /// `username`.
    pub username: String,
    /// `password`.
    pub password: String,
}

impl Transport {
    pub fn new(
        addr: SocketAddr,
        account: &str,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> Transport {
        Transport {
            broker_url: format!("mqtt://{addr}"),
            account: account.into(),
            client_id: client_id.into(),
            username: username.into(),
            password: password.into(),
        }
    }

    fn addr(&self) -> SocketAddr {
        let hostport = self
            .broker_url
            .split_once("://")
            .map_or(self.broker_url.as_str(), |(_, rest)| rest);
        hostport.trim_end_matches('/').parse().expect("broker-url")
    }

    /// The settings after a MqttDataTransport configuration: its properties replace ours.
    fn updated(&self, document: &Document) -> Transport {
        let mut next = self.clone();
        if let Some(c) = document.configuration(MQTT_TRANSPORT_PID) {
            let value = |name: &str| c.property(name).and_then(|p| p.value()).map(str::to_string);
            let fields = [
                ("broker-url", &mut next.broker_url),
                ("topic.context.account-name", &mut next.account),
                ("client-id", &mut next.client_id),
                ("username", &mut next.username),
                ("password", &mut next.password),
            ];
            for (name, field) in fields {
                if let Some(v) = value(name) {
                    *field = v;
                }
            }
        }
        next
    }
}

/// What the device holds and saw.
#[derive(Default)]
pub struct KuraState {
    /// The configuration snapshot it answers GET with; a PUT replaces it.
    pub configuration: String,
    /// Bodies of the PUTs it received, in order.
    pub puts: Vec<String>,
    /// Commands it ran: the command and its arguments.
    pub commands: Vec<Vec<String>>,
    /// The settings it connects with (changed by a MqttDataTransport PUT).
    pub transport: Option<Transport>,
    /// An `activation.key` metric for its BIRTH (Kura-native provisioning, PROTOCOL.md 8.1).
    pub activation_key: Option<String>,
    /// Every BIRTH it published: the account and broker URL it was connected to.
    pub births: Vec<(String, String)>,
    /// CONNECTs refused (a reconnect follows).
    pub refused: usize,
    /// Whether it answers requests at all (a device that is not Kura-capable does not).
    pub mute: bool,
    /// Answer PUTs with 500 and apply nothing (a configuration Kura could not apply).
    pub refuse_puts: bool,
}

/// A running Kura-like device.
pub struct KuraDevice {
    pub state: Arc<Mutex<KuraState>>,
    client: Arc<Mutex<Option<rumqttc::AsyncClient>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The snapshot a fresh device answers `GET configurations` with.
pub const INITIAL_SNAPSHOT: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<esf:configurations xmlns:esf="http://eurotech.com/esf/2.0" xmlns:ocd="http://www.osgi.org/xmlns/metatype/v1.2.0">"#,
    r#"<esf:configuration pid="org.eclipse.kura.clock.ClockService"><esf:properties>"#,
    r#"<esf:property array="false" encrypted="false" name="enabled" type="Boolean"><esf:value>true</esf:value></esf:property>"#,
    r#"</esf:properties></esf:configuration></esf:configurations>"#
);

/// How long after replying to a MqttDataTransport PUT the device applies it (Kura: the
/// configuration service updates the component asynchronously, about a second later).
const APPLY_AFTER: Duration = Duration::from_secs(1);

/// How long a refused device waits before it connects again.
const RECONNECT_AFTER: Duration = Duration::from_millis(300);

impl KuraDevice {
    /// Connects as `username`/`password`, subscribes to its `$EDC` tree, publishes its BIRTH
    /// and starts answering requests; returns once the first BIRTH is out.
    pub async fn start(
        addr: SocketAddr,
        account: &str,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> KuraDevice {
        let device = KuraDevice::launch(
            Transport::new(addr, account, client_id, username, password),
            None,
        );
        device
            .wait("the first BIRTH", |s| !s.births.is_empty())
            .await;
        device
    }

    /// Starts the device with `transport` (and an `activation.key` for its BIRTH) without
    /// waiting for anything: it connects, and reconnects after a refusal, until stopped.
    pub fn launch(transport: Transport, activation_key: Option<&str>) -> KuraDevice {
        let state = Arc::new(Mutex::new(KuraState {
            configuration: INITIAL_SNAPSHOT.into(),
            transport: Some(transport),
            activation_key: activation_key.map(str::to_string),
            ..KuraState::default()
        }));
        let client = Arc::new(Mutex::new(None));
        let task = tokio::spawn(run(state.clone(), client.clone()));
        KuraDevice {
            state,
            client,
            task,
        }
    }

    /// Waits until `cond` holds on the device's state (at most 30 s, then panics with `what`).
    pub async fn wait(&self, what: &str, cond: impl Fn(&KuraState) -> bool) {
        for _ in 0..600 {
            if cond(&self.state.lock().unwrap()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let s = self.state.lock().unwrap();
        panic!(
            "the Kura device never reached: {what} (births {:?}, {} PUTs, {} refused, now {:?})",
            s.births,
            s.puts.len(),
            s.refused,
            s.transport
                .as_ref()
                .map(|t| (&t.broker_url, &t.account, &t.username))
        );
    }

    /// The settings it connects with now.
    pub fn transport(&self) -> Transport {
        self.state.lock().unwrap().transport.clone().unwrap()
    }

    /// Disconnects cleanly.
    pub async fn stop(self) {
        let client = self.client.lock().unwrap().take();
        if let Some(c) = client {
            let _ = c.disconnect().await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.task.abort();
    }
}

/// The device's life: one connection after another with its current settings.
async fn run(state: Arc<Mutex<KuraState>>, current: Arc<Mutex<Option<rumqttc::AsyncClient>>>) {
    loop {
        let transport = state.lock().unwrap().transport.clone().unwrap();
        let next = connection(&state, &current, &transport).await;
        *current.lock().unwrap() = None;
        match next {
            Some(t) => state.lock().unwrap().transport = Some(t),
            None => tokio::time::sleep(RECONNECT_AFTER).await,
        }
    }
}

/// One connection: subscribe, BIRTH, answer requests. Ends with the settings to reconnect with
/// after a MqttDataTransport PUT was applied, or `None` when the connection failed.
async fn connection(
    state: &Arc<Mutex<KuraState>>,
    current: &Arc<Mutex<Option<rumqttc::AsyncClient>>>,
    t: &Transport,
) -> Option<Transport> {
    use rumqttc::{ConnectReturnCode, Event, Outgoing, Packet};
    let addr = t.addr();
    let mut o = rumqttc::MqttOptions::new(&t.client_id, addr.ip().to_string(), addr.port());
    o.set_credentials(&t.username, &t.password);
    o.set_keep_alive(Duration::from_secs(30));
    // Kura's LWT, which a provisioning session may also set (PROTOCOL.md 8.1).
    o.set_last_will(rumqttc::LastWill::new(
        format!("$EDC/{}/{}/MQTT/LWT", t.account, t.client_id),
        Payload::new().encode(),
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    let (client, mut el) = rumqttc::AsyncClient::new(o, 100);
    *current.lock().unwrap() = Some(client.clone());
    let prefix = format!("$EDC/{}/{}/", t.account, t.client_id);
    let mut apply: Option<(tokio::time::Instant, Transport)> = None;
    loop {
        let deadline = apply.as_ref().map(|(at, _)| *at);
        let event = tokio::select! {
            e = el.poll() => e,
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                // Apply the new settings: disconnect, then reconnect with them.
                let (_, next) = apply.take().unwrap();
                let _ = client.disconnect().await;
                loop {
                    match el.poll().await {
                        Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                return Some(next);
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                if ack.code != ConnectReturnCode::Success {
                    state.lock().unwrap().refused += 1;
                    return None;
                }
                client
                    .subscribe(format!("{prefix}#"), rumqttc::QoS::AtLeastOnce)
                    .await
                    .ok()?;
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                let key = state.lock().unwrap().activation_key.clone();
                let mut birth = Payload::new()
                    .with_str("display_name", &t.client_id)
                    .with_str("kura_version", "5.4.0")
                    .with_str("application_ids", "CONF-V1,CMD-V1");
                if let Some(k) = key {
                    birth.set_str("activation.key", k);
                }
                client
                    .publish(
                        format!("{prefix}MQTT/BIRTH"),
                        rumqttc::QoS::AtLeastOnce,
                        false,
                        birth.encode(),
                    )
                    .await
                    .ok()?;
                state
                    .lock()
                    .unwrap()
                    .births
                    .push((t.account.clone(), t.broker_url.clone()));
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Some(rest) = p.topic.strip_prefix(&prefix) else {
                    continue;
                };
                let levels: Vec<&str> = rest.split('/').collect();
                let Ok(request) = Payload::decode(&p.payload) else {
                    continue;
                };
                if state.lock().unwrap().mute {
                    continue;
                }
                let Some((topic, payload, applied)) = answer(state, &levels, &request, t) else {
                    continue;
                };
                // The reply first; the new settings about a second later.
                let _ = client
                    .publish(topic, rumqttc::QoS::AtMostOnce, false, payload.encode())
                    .await;
                if let Some(next) = applied.filter(|n| n != t) {
                    apply = Some((tokio::time::Instant::now() + APPLY_AFTER, next));
                }
            }
            Ok(_) => {}
            Err(e) => {
                if matches!(e, rumqttc::ConnectionError::ConnectionRefused(_)) {
                    state.lock().unwrap().refused += 1;
                }
                // A configuration accepted before the connection ended (Fleetgate closes a
                // completed provisioning session after its linger) is still applied.
                if let Some((at, next)) = apply {
                    tokio::time::sleep_until(at).await;
                    return Some(next);
                }
                return None;
            }
        }
    }
}

/// Kura's answer to a request on `{APP}/{METHOD}/{resources...}`, as (topic, payload, the
/// transport settings a PUT changed). Kura answers only requests whose `request.id` and
/// `requester.client.id` are STRING metrics.
fn answer(
    state: &Mutex<KuraState>,
    levels: &[&str],
    request: &Payload,
    t: &Transport,
) -> Option<(String, Payload, Option<Transport>)> {
    let app = *levels.first()?;
    let id = request.metric_str("request.id")?;
    let requester = request.metric_str("requester.client.id")?;
    let reply = |code| Payload::new().with_i32("response.code", code);
    let mut applied = None;
    let mut payload = match levels {
        ["CONF-V1", "GET", "configurations", ..] => {
            let body = state.lock().unwrap().configuration.clone();
            reply(200).with_body(body.into_bytes())
        }
        ["CONF-V1", "PUT", "configurations", ..] if state.lock().unwrap().refuse_puts => {
            reply(500).with_str("response.exception.message", "Error updating configuration")
        }
        ["CONF-V1", "PUT", "configurations", ..] => {
            let body = String::from_utf8(request.body().unwrap_or_default().to_vec()).ok()?;
            // Kura's parser looks up `esf:configuration` elements only.
            if body.contains("<esf:configuration ")
                && let Ok(document) = Document::parse(&body)
            {
                applied = Some(t.updated(&document));
            }
            let mut s = state.lock().unwrap();
            s.puts.push(body.clone());
            s.configuration = body;
            reply(200)
        }
        ["CMD-V1", "EXEC", "command"] => {
            let mut argv = vec![request.metric_str("command.command")?.to_string()];
            argv.extend(
                (0..)
                    .map_while(|i| request.metric_str(&format!("command.argument{i}")))
                    .map(str::to_string),
            );
            state.lock().unwrap().commands.push(argv.clone());
            if argv[0] == "false" {
                // Kura: a non-zero exit is answered 500, stderr as the message.
                reply(500)
                    .with_str("response.exception.message", "boom")
                    .with_str("command.stdout", "")
                    .with_str("command.stderr", "boom")
                    .with_i32("command.exit.code", 1)
                    .with_bool("command.timedout", false)
            } else {
                reply(200)
                    .with_str("command.stdout", argv.join(" "))
                    .with_str("command.stderr", "")
                    .with_i32("command.exit.code", 0)
                    .with_bool("command.timedout", false)
            }
        }
        ["SILENT-V1", ..] => return None,
        _ => reply(404),
    };
    payload.set_timestamp(Some(0));
    // Kura answers on the topic of the settings it had when the request came.
    Some((
        format!("$EDC/{}/{requester}/{app}/REPLY/{id}", t.account),
        payload,
        applied,
    ))
}
