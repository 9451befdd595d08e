//! Shared harness of the broker's black-box tests: a real server on port 0 with a temporary
//! data dir and an injectable clock, and a real MQTT client (rumqttc) for both protocol
//! versions.
#![allow(dead_code, missing_docs)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use fleetgate::server::Running;
use fleetgate_app::App;
use fleetgate_auth_hook::{Clock, Timestamp};
use fleetgate_config::{Config, Overrides};
use tokio::sync::mpsc;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// The hook listener's token (HOOKS.md 2).
pub const HOOKS_TOKEN: &str = "test-hooks-token-0123456789";

/// A clock the test moves by hand.
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<Timestamp>>);

impl ManualClock {
    pub fn new() -> Self {
        ManualClock(Arc::new(Mutex::new(Utc::now())))
    }
    pub fn set(&self, t: Timestamp) {
        *self.0.lock().unwrap() = t;
    }
    pub fn now_utc(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
    pub fn advance(&self, d: chrono::Duration) {
        *self.0.lock().unwrap() += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

pub struct TestServer {
    pub running: Option<Running>,
    pub clock: ManualClock,
    pub dir: Arc<tempfile::TempDir>,
    env: Vec<(String, String)>,
}

fn base_env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("FLEETGATE_ADMIN_TOKEN", ADMIN_TOKEN),
        ("FLEETGATE_PROVISIONING_LISTEN", "127.0.0.1:0"),
        ("FLEETGATE_OPERATIONAL_LISTEN", "127.0.0.1:0"),
        ("FLEETGATE_ADMIN_LISTEN", "127.0.0.1:0"),
        ("FLEETGATE_HOOKS_LISTEN", "127.0.0.1:0"),
        ("FLEETGATE_HOOKS_TOKEN", HOOKS_TOKEN),
        ("FLEETGATE_AUTH_ARGON2_M_COST", "64"),
        ("FLEETGATE_AUTH_ARGON2_T_COST", "1"),
        ("FLEETGATE_PROVISIONING_LINGER", "0.5"),
        ("FLEETGATE_SERVER_WORKERS", "2"),
        // Every test calls from 127.0.0.1, and some make dozens of unauthenticated calls on
        // purpose: the admin bans (admin.max_failures) are tested with their own limit.
        ("FLEETGATE_ADMIN_MAX_FAILURES", "100000"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
    .collect();
    for (k, v) in extra {
        env.retain(|(x, _)| x != k);
        env.push(((*k).to_string(), (*v).to_string()));
    }
    env
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(&[])
    }

    /// Starts with extra `FLEETGATE_*` settings.
    pub fn start_with(extra: &[(&str, &str)]) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let clock = ManualClock::new();
        let env = base_env(extra);
        let mut s = TestServer {
            running: None,
            clock,
            dir,
            env,
        };
        s.boot();
        s
    }

    /// Starts with extra `FLEETGATE_*` settings on an existing data dir (a restored backup).
    pub fn start_in(dir: Arc<tempfile::TempDir>, extra: &[(&str, &str)]) -> TestServer {
        let mut s = TestServer {
            running: None,
            clock: ManualClock::new(),
            dir,
            env: base_env(extra),
        };
        s.boot();
        s
    }

    fn boot(&mut self) {
        let overrides = Overrides {
            data_dir: Some(self.dir.path().to_path_buf()),
            ..Overrides::default()
        };
        let config = Config::load(&overrides, self.env.clone()).unwrap();
        let app = App::open(config, Arc::new(self.clock.clone())).unwrap();
        self.running = Some(Running::start(app).unwrap());
    }

    /// Stops the server and starts a new one on the same data dir (new ports). `stop` closes
    /// the store, so the data dir opens again at once.
    pub fn restart(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop();
        }
        self.boot();
    }

    fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }
    pub fn app(&self) -> Arc<App> {
        self.running().app.clone()
    }
    pub fn provisioning_addr(&self) -> SocketAddr {
        self.running().addrs.provisioning
    }
    pub fn operational_addr(&self) -> SocketAddr {
        self.running().addrs.operational
    }
    /// The HTTP hook listener's base URL (`http://127.0.0.1:PORT`).
    pub fn hooks_url(&self) -> String {
        format!(
            "http://{}",
            self.running().addrs.hooks.expect("hook listener on")
        )
    }
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.running().addrs.admin)
    }
    pub fn admin_token(&self) -> &str {
        ADMIN_TOKEN
    }
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }
}

/// `POST` JSON with the admin token; returns (status, body).
pub fn post(s: &TestServer, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut r = agent
        .post(&format!("{}{path}", s.admin_url()))
        .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_json(body)
        .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// `GET` with the admin token; returns (status, body).
pub fn get(s: &TestServer, path: &str) -> (u16, serde_json::Value) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut r = agent
        .get(&format!("{}{path}", s.admin_url()))
        .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .call()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

pub fn create_account(s: &TestServer, name: &str) {
    let (status, body) = post(s, "/api/v1/accounts", &serde_json::json!({ "name": name }));
    assert_eq!(status, 201, "{body}");
}

/// Creates a provision request through the API; returns the response body.
pub fn create_request(s: &TestServer, account: &str, body: serde_json::Value) -> serde_json::Value {
    let (status, r) = post(
        s,
        &format!("/api/v1/accounts/{account}/provision-requests"),
        &body,
    );
    assert_eq!(status, 201, "{r}");
    r
}

pub fn request_body(client_id: &str, username: &str, password: &str) -> serde_json::Value {
    serde_json::json!({
        "clientId": client_id,
        "provisionUsername": username,
        "provisionPassword": password,
        "confirmProvisionPassword": password,
        "brokerUrl": "mqtt://127.0.0.1:1884",
    })
}

/// MQTT protocol version of a test device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V3,
    V5,
}

/// What a device saw.
#[derive(Debug)]
pub enum Seen {
    Publish { topic: String, payload: Vec<u8> },
    SubAck(Vec<u8>),
    PubAck(u8),
    Disconnected,
}

/// A real MQTT client driven by a background event loop.
pub struct Device {
    v3: Option<rumqttc::AsyncClient>,
    v5: Option<rumqttc::v5::AsyncClient>,
    events: mpsc::UnboundedReceiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

fn v3_code(c: rumqttc::ConnectReturnCode) -> u8 {
    use rumqttc::ConnectReturnCode as C;
    match c {
        C::Success => 0,
        C::RefusedProtocolVersion => 1,
        C::BadClientId => 2,
        C::ServiceUnavailable => 3,
        C::BadUserNamePassword => 4,
        C::NotAuthorized => 5,
    }
}

fn v5_code(c: rumqttc::v5::mqttbytes::v5::ConnectReturnCode) -> u8 {
    use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as C;
    match c {
        C::Success => 0,
        C::ClientIdentifierNotValid => 0x85,
        C::BadUserNamePassword => 0x86,
        C::NotAuthorized => 0x87,
        C::ServerUnavailable => 0x88,
        C::ServerBusy => 0x89,
        C::Banned => 0x8A,
        other => panic!("unexpected CONNACK {other:?}"),
    }
}

/// Options of a test connection.
pub struct Connect<'a> {
    pub version: Version,
    pub addr: SocketAddr,
    pub client_id: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    /// Leave PUBACKs of received QoS 1 messages to the test (it never sends them).
    pub manual_acks: bool,
}

impl Device {
    /// Connects; `Err(code)` is the CONNACK refusal code.
    pub async fn connect(c: Connect<'_>) -> Result<Device, u8> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (first_tx, first_rx) = tokio::sync::oneshot::channel::<Result<(), u8>>();
        let mut first = Some(first_tx);
        let host = c.addr.ip().to_string();
        match c.version {
            Version::V3 => {
                let mut o = rumqttc::MqttOptions::new(c.client_id, host, c.addr.port());
                o.set_credentials(c.username, c.password);
                o.set_keep_alive(Duration::from_secs(30));
                o.set_manual_acks(c.manual_acks);
                let (client, mut el) = rumqttc::AsyncClient::new(o, 100);
                let task = tokio::spawn(async move {
                    loop {
                        use rumqttc::{Event, Packet};
                        match el.poll().await {
                            Ok(Event::Incoming(Packet::ConnAck(a))) => {
                                if let Some(f) = first.take() {
                                    let _ =
                                        f.send(if a.code == rumqttc::ConnectReturnCode::Success {
                                            Ok(())
                                        } else {
                                            Err(v3_code(a.code))
                                        });
                                }
                            }
                            Ok(Event::Incoming(Packet::Publish(p))) => {
                                let _ = tx.send(Seen::Publish {
                                    topic: p.topic.clone(),
                                    payload: p.payload.to_vec(),
                                });
                            }
                            Ok(Event::Incoming(Packet::SubAck(s))) => {
                                let codes = s
                                    .return_codes
                                    .iter()
                                    .map(|c| match c {
                                        rumqttc::SubscribeReasonCode::Success(q) => *q as u8,
                                        rumqttc::SubscribeReasonCode::Failure => 0x80,
                                    })
                                    .collect();
                                let _ = tx.send(Seen::SubAck(codes));
                            }
                            Ok(Event::Incoming(Packet::PubAck(_))) => {
                                let _ = tx.send(Seen::PubAck(0));
                            }
                            Ok(_) => {}
                            Err(e) => {
                                if let Some(f) = first.take() {
                                    let code = match e {
                                        rumqttc::ConnectionError::ConnectionRefused(c) => {
                                            v3_code(c)
                                        }
                                        _ => 0xff,
                                    };
                                    let _ = f.send(Err(code));
                                }
                                let _ = tx.send(Seen::Disconnected);
                                break;
                            }
                        }
                    }
                });
                match first_rx.await {
                    Ok(Ok(())) => Ok(Device {
                        v3: Some(client),
                        v5: None,
                        events: rx,
                        task,
                    }),
                    Ok(Err(code)) => Err(code),
                    Err(_) => Err(0xff),
                }
            }
            Version::V5 => {
                use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet};
                use rumqttc::v5::{ConnectionError, Event};
                let mut o = rumqttc::v5::MqttOptions::new(c.client_id, host, c.addr.port());
                o.set_credentials(c.username, c.password);
                o.set_keep_alive(Duration::from_secs(30));
                o.set_manual_acks(c.manual_acks);
                let (client, mut el) = rumqttc::v5::AsyncClient::new(o, 100);
                let task = tokio::spawn(async move {
                    loop {
                        match el.poll().await {
                            Ok(Event::Incoming(Packet::ConnAck(a))) => {
                                if let Some(f) = first.take() {
                                    let _ = f.send(if a.code == ConnectReturnCode::Success {
                                        Ok(())
                                    } else {
                                        Err(v5_code(a.code))
                                    });
                                }
                            }
                            Ok(Event::Incoming(Packet::Publish(p))) => {
                                let _ = tx.send(Seen::Publish {
                                    topic: String::from_utf8_lossy(&p.topic).into_owned(),
                                    payload: p.payload.to_vec(),
                                });
                            }
                            Ok(Event::Incoming(Packet::SubAck(s))) => {
                                use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as R;
                                let codes = s
                                    .return_codes
                                    .iter()
                                    .map(|c| match c {
                                        R::Success(q) => *q as u8,
                                        R::NotAuthorized => 0x87,
                                        _ => 0x80,
                                    })
                                    .collect();
                                let _ = tx.send(Seen::SubAck(codes));
                            }
                            Ok(Event::Incoming(Packet::PubAck(a))) => {
                                use rumqttc::v5::mqttbytes::v5::PubAckReason as P;
                                let code = match a.reason {
                                    P::Success => 0x00,
                                    P::NoMatchingSubscribers => 0x10,
                                    P::UnspecifiedError => 0x80,
                                    P::ImplementationSpecificError => 0x83,
                                    P::NotAuthorized => 0x87,
                                    P::TopicNameInvalid => 0x90,
                                    P::PacketIdentifierInUse => 0x91,
                                    P::QuotaExceeded => 0x97,
                                    P::PayloadFormatInvalid => 0x99,
                                };
                                let _ = tx.send(Seen::PubAck(code));
                            }
                            Ok(Event::Incoming(Packet::Disconnect(_))) => {
                                let _ = tx.send(Seen::Disconnected);
                            }
                            Ok(_) => {}
                            Err(e) => {
                                if let Some(f) = first.take() {
                                    let code = match e {
                                        ConnectionError::ConnectionRefused(c) => v5_code(c),
                                        _ => 0xff,
                                    };
                                    let _ = f.send(Err(code));
                                }
                                let _ = tx.send(Seen::Disconnected);
                                break;
                            }
                        }
                    }
                });
                match first_rx.await {
                    Ok(Ok(())) => Ok(Device {
                        v3: None,
                        v5: Some(client),
                        events: rx,
                        task,
                    }),
                    Ok(Err(code)) => Err(code),
                    Err(_) => Err(0xff),
                }
            }
        }
    }

    pub async fn subscribe(&self, filter: &str, qos: u8) {
        assert!(
            self.try_subscribe(filter, qos).await,
            "the client's connection is gone"
        );
    }

    /// Like [`Device::subscribe`] for a server that may die meanwhile (the crash tests): false
    /// when the client's connection is gone.
    pub async fn try_subscribe(&self, filter: &str, qos: u8) -> bool {
        match (&self.v3, &self.v5) {
            (Some(c), _) => c.subscribe(filter, qos_v3(qos)).await.is_ok(),
            (None, Some(c)) => c.subscribe(filter, qos_v5(qos)).await.is_ok(),
            (None, None) => false,
        }
    }

    pub async fn publish(&self, topic: &str, qos: u8, payload: Vec<u8>) {
        assert!(
            self.try_publish(topic, qos, payload).await,
            "the client's connection is gone"
        );
    }

    /// Like [`Device::publish`] for a server that may die meanwhile: false when the client's
    /// connection is gone.
    pub async fn try_publish(&self, topic: &str, qos: u8, payload: Vec<u8>) -> bool {
        match (&self.v3, &self.v5) {
            (Some(c), _) => c.publish(topic, qos_v3(qos), false, payload).await.is_ok(),
            (None, Some(c)) => c.publish(topic, qos_v5(qos), false, payload).await.is_ok(),
            (None, None) => false,
        }
    }

    /// Next event, or `None` after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Seen> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits for a SUBACK.
    pub async fn suback(&mut self) -> Vec<u8> {
        loop {
            match self.next(Duration::from_secs(10)).await {
                Some(Seen::SubAck(c)) => return c,
                Some(_) => {}
                None => panic!("no SUBACK"),
            }
        }
    }

    /// Waits for a PUBLISH.
    pub async fn publish_received(&mut self, timeout: Duration) -> Option<(String, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Seen::Publish { topic, payload }) => return Some((topic, payload)),
                Some(Seen::Disconnected) | None => return None,
                Some(_) => {}
            }
        }
    }

    /// Waits until the connection is closed by the server.
    pub async fn closed(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Seen::Disconnected) => return true,
                None => return false,
                Some(_) => {}
            }
        }
    }

    pub async fn disconnect(self) {
        if let Some(c) = &self.v3 {
            let _ = c.disconnect().await;
        }
        if let Some(c) = &self.v5 {
            let _ = c.disconnect().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.task.abort();
    }

    /// Drops the TCP connection without DISCONNECT.
    pub fn kill(self) {
        self.task.abort();
    }
}

fn qos_v3(q: u8) -> rumqttc::QoS {
    match q {
        0 => rumqttc::QoS::AtMostOnce,
        _ => rumqttc::QoS::AtLeastOnce,
    }
}

fn qos_v5(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        0 => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        _ => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
    }
}

/// Polls `f` until it returns `Some`, for up to 10 s (state written by a background commit).
pub async fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached in 10 s");
}

// ---- Added for the account-user and registry tests (users.rs, registry.rs).

/// Any method with the admin token and an optional JSON body; returns (status, body).
pub fn call(
    s: &TestServer,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", s.admin_url()))
        .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("Content-Type", "application/json");
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let mut r = agent.run(req.body(bytes).unwrap()).unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// Enrolls `client_id` in `account` (created if needed) without the MQTT exchange: a request
/// through the API, then the exchange's two commits as the provisioning endpoint makes them
/// (its identity, then COMPLETED). Returns the generated operational password of
/// `CID@ACCOUNT`.
pub fn enroll(s: &TestServer, account: &str, client_id: &str) -> String {
    use fleetgate_storage::ops;
    let _ = post(
        s,
        "/api/v1/accounts",
        &serde_json::json!({ "name": account }),
    );
    let r = create_request(
        s,
        account,
        request_body(client_id, &format!("fleet-{account}"), "fleet-password-1"),
    );
    let password = fleetgate_auth_hook::credentials::generate_password(24);
    let app = s.app();
    let start = app
        .store
        .write(ops::begin_exchange(
            ops::Attempt {
                request_id: r["id"].as_str().unwrap().into(),
                protocol: "3.1.1".into(),
                peer: "127.0.0.1:40000".into(),
                now: app.clock.now(),
            },
            "r-1".into(),
            ops::ExchangeAction::Provision(ops::IdentityPlan {
                username: format!("{client_id}@{account}"),
                password_hash: fleetgate_auth_hook::credentials::fast_hash(&password),
                configurations: 1,
            }),
            fleetgate_storage::ProvisioningProtocol::ProvV1,
        ))
        .unwrap();
    let ops::ExchangeStart::Started {
        running: Some(running),
        ..
    } = start
    else {
        panic!("exchange not started: {start:?}");
    };
    app.store
        .write(ops::finish_exchange(
            running,
            ops::ReplyFate::Acknowledged,
            app.clock.now(),
        ))
        .unwrap();
    password
}

/// Runs device `client_id`'s PROV-V1 exchange (JSON) over the provisioning endpoint with MQTT
/// `version`, as provision user `username`: subscribe to the reply topic, publish the request,
/// read the reply. The success reply; panics on a failure reply.
pub async fn prov_v1_exchange(
    s: &TestServer,
    version: Version,
    client_id: &str,
    username: &str,
    password: &str,
) -> fleetgate_kura::ProvSuccess {
    use fleetgate_kura::{Encoding, ProvReply, ProvRequest, topics};
    let pa = s.app().config.provisioning.account.clone();
    let mut d = Device::connect(Connect {
        version,
        addr: s.provisioning_addr(),
        client_id,
        username,
        password,
        manual_acks: false,
    })
    .await
    .expect("provisioning CONNECT accepted");
    d.subscribe(&topics::reply_filter(&pa, client_id), 1).await;
    assert_eq!(d.suback().await, vec![1]);
    d.publish(
        &topics::request_topic(&pa, client_id),
        1,
        ProvRequest::new("r-1").encode(Encoding::Json),
    )
    .await;
    let (_, payload) = d
        .publish_received(Duration::from_secs(10))
        .await
        .expect("a provisioning reply");
    d.disconnect().await;
    let (_, reply) = fleetgate_kura::decode_reply(&payload).unwrap();
    let ProvReply::Success(ok) = reply else {
        panic!("failure reply: {reply:?}")
    };
    ok
}

/// Connects to the operational endpoint.
pub async fn operational(
    s: &TestServer,
    version: Version,
    client_id: &str,
    username: &str,
    password: &str,
) -> Result<Device, u8> {
    Device::connect(Connect {
        version,
        addr: s.operational_addr(),
        client_id,
        username,
        password,
        manual_acks: false,
    })
    .await
}

pub mod binary;
pub mod kura;
pub mod rabbit;
pub mod raw;
