//! End-to-end runs of the simulator against a small in-process stand-in for Fleetgate: an
//! HTTP API (bulk creation, `/metrics`) and MQTT listeners that follow PROTOCOL.md closely
//! enough to exercise every path of the tool. The real server's integration test lives with
//! the server; this one pins the tool's own behaviour (phases, failure keys, report, exit
//! status) without it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fleetgate_kura::{ProvReply, ProvSuccess};
use fleetgate_loadtest::cli::exit_status;
use fleetgate_loadtest::mqtt::take_frame;
use fleetgate_loadtest::{
    BrokerAddr, Credentials, CycleConfig, Encoding, EnrollConfig, Load, OperationalPhase, Protocol,
    RunOptions, Unreachable, run_cycle, run_enroll,
};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone)]
struct Req {
    username: String,
    password: String,
    activation_key: Option<String>,
}

/// How the stand-in misbehaves, by client-id suffix, to produce each failure reason.
#[derive(Default, Clone)]
struct Sabotage {
    refuse_suffix: Option<String>,
    code_403_suffix: Option<String>,
    silent_suffix: Option<String>,
    close_suffix: Option<String>,
}

#[derive(Default)]
struct Fleet {
    requests: Mutex<HashMap<String, Req>>,
    devices: Mutex<HashMap<String, String>>,
    bulk_calls: AtomicU64,
    created: AtomicU64,
    sabotage: Sabotage,
    operational_url: Mutex<String>,
    /// Topics the echo broker echoed on (`cycle`).
    echoed: Mutex<Vec<String>>,
    /// Whether each CONNECT to the echo broker carried a username (`cycle`).
    echo_logins: Mutex<Vec<bool>>,
}

// ---------------------------------------------------------------- HTTP

fn start_api(fleet: Arc<Fleet>) -> String {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let fleet = fleet.clone();
            std::thread::spawn(move || serve_http(stream, &fleet));
        }
    });
    format!("http://{addr}")
}

fn serve_http(stream: std::net::TcpStream, fleet: &Fleet) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut content_length = 0usize;
    let mut auth = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => content_length = value.trim().parse().unwrap(),
            "authorization" => auth = value.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).unwrap();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap(), parts.next().unwrap());
    let (status, content_type, text) = match (method, path) {
        ("GET", "/metrics") => (
            200,
            "text/plain",
            format!(
                "# TYPE fleetgate_fake_bulk_calls counter\nfleetgate_fake_bulk_calls_total {}\nfleetgate_fake_created_total{{account=\"acme\"}} {}\nprocess_open_fds 3\n",
                fleet.bulk_calls.load(Ordering::SeqCst),
                fleet.created.load(Ordering::SeqCst)
            ),
        ),
        ("POST", "/api/v1/accounts/acme/provision-requests/bulk") if auth == "Bearer T" => {
            assert!(body.len() <= 1_000_000, "bulk body over the API limit");
            let v: Value = serde_json::from_slice(&body).unwrap();
            let items = v["requests"].as_array().unwrap();
            assert!(items.len() <= 10_000);
            fleet.bulk_calls.fetch_add(1, Ordering::SeqCst);
            let mut created = Vec::new();
            let mut requests = fleet.requests.lock().unwrap();
            for item in items {
                let cid = item["clientId"].as_str().unwrap().to_string();
                assert_eq!(item["provisionPassword"], item["confirmProvisionPassword"]);
                assert!(item["expiresOn"].as_str().unwrap().ends_with('Z'));
                *fleet.operational_url.lock().unwrap() =
                    item["brokerUrl"].as_str().unwrap().to_string();
                let key = (item["generateActivationKey"] == true)
                    .then(|| format!("KEY{:029}", requests.len()));
                requests.insert(
                    cid.clone(),
                    Req {
                        username: item["provisionUsername"].as_str().unwrap().into(),
                        password: item["provisionPassword"].as_str().unwrap().into(),
                        activation_key: key.clone(),
                    },
                );
                // A provision request as the API shows it (API.md).
                let mut c = json!({
                    "id": format!("id-{cid}"), "account": "acme", "clientId": cid,
                    "provisionUsername": item["provisionUsername"], "brokerUrl": item["brokerUrl"],
                    "activatesOn": "2026-01-01T00:00:00Z", "expiresOn": item["expiresOn"],
                    "generateActivationKey": key.is_some(), "reserveUser": true,
                    "connectionCoupling": "INHERITED", "vpnAccess": false, "passwordLength": 20,
                    "additionalConfiguration": null, "status": "CREATED", "closed": false,
                    "createdOn": "2026-01-01T00:00:00Z", "modifiedOn": "2026-01-01T00:00:00Z",
                    "lastRejection": null, "warnings": [],
                });
                if let Some(k) = key {
                    c["activationKey"] = Value::String(k);
                }
                created.push(c);
            }
            fleet
                .created
                .fetch_add(items.len() as u64, Ordering::SeqCst);
            (
                201,
                "application/json",
                json!({ "created": created }).to_string(),
            )
        }
        ("POST", _) => (
            401,
            "application/problem+json",
            json!({"type": "about:blank", "title": "Unauthorized", "status": 401}).to_string(),
        ),
        _ => (404, "text/plain", "not found".to_string()),
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

// ---------------------------------------------------------------- MQTT

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Provisioning,
    Operational,
    Echo,
}

async fn start_mqtt(fleet: Arc<Fleet>, role: Role) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let fleet = fleet.clone();
            tokio::spawn(async move {
                let _ = serve_mqtt(stream, &fleet, role).await;
            });
        }
    });
    addr
}

enum In {
    Connect {
        v5: bool,
        client_id: String,
        login: Option<(String, String)>,
    },
    Subscribe {
        pkid: u16,
    },
    Publish {
        topic: String,
        payload: Bytes,
    },
    Disconnect,
    Other,
}

fn decode(v5: bool, mut frame: BytesMut) -> In {
    if frame[0] >> 4 == 1 {
        // CONNECT: the protocol level tells the version.
        let is_v5 = level_of(&frame) == 5;
        return if is_v5 {
            match v5::Packet::read(&mut frame, None).unwrap() {
                v5::Packet::Connect(c, _, l) => In::Connect {
                    v5: true,
                    client_id: c.client_id,
                    login: l.map(|l| (l.username, l.password)),
                },
                _ => unreachable!(),
            }
        } else {
            match v4::Packet::read(&mut frame, 1 << 20).unwrap() {
                v4::Packet::Connect(c) => In::Connect {
                    v5: false,
                    client_id: c.client_id,
                    login: c.login.map(|l| (l.username, l.password)),
                },
                _ => unreachable!(),
            }
        };
    }
    if frame[0] >> 4 == 14 {
        return In::Disconnect;
    }
    if v5 {
        match v5::Packet::read(&mut frame, None).unwrap() {
            v5::Packet::Subscribe(s) => In::Subscribe { pkid: s.pkid },
            v5::Packet::Publish(p) => In::Publish {
                topic: String::from_utf8(p.topic.to_vec()).unwrap(),
                payload: p.payload,
            },
            _ => In::Other,
        }
    } else {
        match v4::Packet::read(&mut frame, 1 << 20).unwrap() {
            v4::Packet::Subscribe(s) => In::Subscribe { pkid: s.pkid },
            v4::Packet::Publish(p) => In::Publish {
                topic: p.topic,
                payload: p.payload,
            },
            _ => In::Other,
        }
    }
}

fn level_of(frame: &[u8]) -> u8 {
    // fixed header (1 + 1..4 length bytes), then 0x00 0x04 "MQTT" level
    let mut i = 1;
    while frame[i] & 0x80 != 0 {
        i += 1;
    }
    frame[i + 1 + 6]
}

fn publish_bytes(v5: bool, topic: &str, pkid: u16, payload: Bytes) -> BytesMut {
    let mut buf = BytesMut::new();
    if v5 {
        let mut p = v5::Publish::new(
            topic,
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            payload,
            None,
        );
        p.pkid = pkid;
        v5::Packet::Publish(p).write(&mut buf, None).unwrap();
    } else {
        let mut p = v4::Publish::from_bytes(topic, rumqttc::mqttbytes::QoS::AtLeastOnce, payload);
        p.pkid = pkid;
        v4::Packet::Publish(p).write(&mut buf, 1 << 20).unwrap();
    }
    buf
}

fn configuration(password: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><configurations xmlns:ns0="http://www.osgi.org/xmlns/metatype/v1.2.0"><configuration><id>org.eclipse.kura.core.data.transport.mqtt.MqttDataTransport</id><properties><property name="password" array="false" encrypted="false" type="Password"><value>{password}</value></property></properties></configuration></configurations>"#
    )
}

async fn serve_mqtt(mut stream: TcpStream, fleet: &Fleet, role: Role) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    let mut v5 = true;
    let mut cid = String::new();
    let mut counter = 0u32;
    loop {
        let frame = loop {
            if let Some((frame, _)) = take_frame(&mut buf).unwrap() {
                break frame;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        let sab = &fleet.sabotage;
        let has =
            |s: &Option<String>, cid: &str| s.as_ref().is_some_and(|s| cid.ends_with(s.as_str()));
        match decode(v5, frame) {
            In::Connect {
                v5: is_v5,
                client_id,
                login,
            } => {
                v5 = is_v5;
                cid = client_id;
                let ok = match role {
                    Role::Echo => {
                        fleet.echo_logins.lock().unwrap().push(login.is_some());
                        true
                    }
                    Role::Provisioning => {
                        let requests = fleet.requests.lock().unwrap();
                        requests.get(&cid).is_some_and(|r| {
                            login == Some((r.username.clone(), r.password.clone()))
                        }) && !has(&sab.refuse_suffix, &cid)
                    }
                    Role::Operational => {
                        let devices = fleet.devices.lock().unwrap();
                        login.is_some_and(|(u, p)| {
                            u == format!("{cid}@acme") && devices.get(&u) == Some(&p)
                        })
                    }
                };
                let code = match (ok, v5) {
                    (true, _) => 0,
                    (false, true) => 0x86,
                    (false, false) => 0x04,
                };
                let bytes: &[u8] = if v5 {
                    &[0x20, 3, 0, code, 0]
                } else {
                    &[0x20, 2, 0, code]
                };
                stream.write_all(bytes).await?;
                if code != 0 {
                    return Ok(());
                }
            }
            In::Subscribe { pkid } => {
                let [hi, lo] = pkid.to_be_bytes();
                let bytes: &[u8] = if v5 {
                    &[0x90, 4, hi, lo, 0, 1]
                } else {
                    &[0x90, 3, hi, lo, 1]
                };
                stream.write_all(bytes).await?;
            }
            In::Publish { topic, payload } => {
                // PUBACK for the client's pkid is not checked by the tool beyond refusals.
                if role == Role::Echo {
                    fleet.echoed.lock().unwrap().push(topic.clone());
                    counter += 1;
                    stream
                        .write_all(&publish_bytes(v5, &topic, counter as u16, payload))
                        .await?;
                    continue;
                }
                assert_eq!(
                    topic,
                    format!("$EDC/provision/{cid}/PROV-V1/EXEC/provision")
                );
                if has(&sab.silent_suffix, &cid) {
                    continue;
                }
                if has(&sab.close_suffix, &cid) {
                    return Ok(());
                }
                let (encoding, request) = fleetgate_kura::decode_request(&payload).unwrap();
                let expected_key = fleet.requests.lock().unwrap()[&cid].activation_key.clone();
                let reply =
                    if has(&sab.code_403_suffix, &cid) || request.activation_key != expected_key {
                        ProvReply::failure(403, "activation key missing or wrong")
                    } else {
                        let username = format!("{cid}@acme");
                        let password = format!("Gen-{cid}-Pw1!");
                        fleet
                            .devices
                            .lock()
                            .unwrap()
                            .insert(username.clone(), password.clone());
                        ProvReply::Success(ProvSuccess {
                            provision_status: "COMPLETED".into(),
                            broker_url: fleet.operational_url.lock().unwrap().clone(),
                            account_name: "acme".into(),
                            client_id: cid.clone(),
                            username,
                            configuration: configuration(&password),
                            password,
                        })
                    };
                let topic = format!("$EDC/provision/{cid}/PROV-V1/REPLY/{}", request.request_id);
                let payload = Bytes::from(reply.encode(encoding));
                stream
                    .write_all(&publish_bytes(v5, &topic, 1, payload))
                    .await?;
            }
            // A real broker closes after DISCONNECT; so does the stand-in.
            In::Disconnect => return Ok(()),
            In::Other => {}
        }
    }
}

// ---------------------------------------------------------------- scenarios

struct Stack {
    fleet: Arc<Fleet>,
    api: String,
    provisioning: SocketAddr,
    operational: SocketAddr,
}

async fn stack(sabotage: Sabotage) -> Stack {
    let fleet = Arc::new(Fleet {
        sabotage,
        ..Fleet::default()
    });
    let api = start_api(fleet.clone());
    let provisioning = start_mqtt(fleet.clone(), Role::Provisioning).await;
    let operational = start_mqtt(fleet.clone(), Role::Operational).await;
    Stack {
        fleet,
        api,
        provisioning,
        operational,
    }
}

fn enroll_config(
    s: &Stack,
    devices: usize,
    protocol: Protocol,
    encoding: Encoding,
) -> EnrollConfig {
    EnrollConfig {
        api: s.api.clone(),
        token: "T".into(),
        account: "acme".into(),
        provisioning: BrokerAddr::parse(&s.provisioning.to_string()).unwrap(),
        provisioning_account: "provision".into(),
        operational_broker: format!("mqtt://{}", s.operational),
        devices,
        encoding,
        credentials: Credentials::Shared,
        activation_key: false,
        operational: false,
        kura_replies: 0,
        seed: 1,
        run_id: fleetgate_loadtest::config::new_run_id(),
        bulk_size: 10_000,
        run: RunOptions {
            load: Load::Closed { concurrency: 8 },
            timeout: Duration::from_secs(5),
            protocol,
            source_addresses: 4,
            ..RunOptions::default()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_v5_json_with_activation_keys_and_operational_reconnect() {
    let s = stack(Sabotage::default()).await;
    let mut config = enroll_config(&s, 25, Protocol::V5, Encoding::Json);
    config.activation_key = true;
    config.operational = true;
    config.bulk_size = 10; // three bulk calls
    let report = run_enroll(&config).await.unwrap();
    assert_eq!(report.counts.attempted, 25);
    assert_eq!(report.counts.completed, 25, "{:?}", report.first_failures);
    assert_eq!(report.counts.failed, 0);
    assert_eq!(exit_status(&report, false), 0);
    assert_eq!(s.fleet.bulk_calls.load(Ordering::SeqCst), 3);

    let v: Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(v["scenario"], "enroll");
    assert_eq!(v["config"]["devices"], 25);
    assert_eq!(v["config"]["operational"], true);
    assert_eq!(v["config"]["credentials"], "shared");
    for phase in ["connect", "reply", "enrollment", "operational"] {
        let p = &v["latency_ms"][phase];
        assert!(p["p50"].as_f64().unwrap() > 0.0, "{phase}: {p}");
        assert!(p["p50"].as_f64() <= p["max"].as_f64(), "{phase}: {p}");
    }
    assert!(v["enrollments_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(
        v["server"]["metrics_before"]["fleetgate_fake_bulk_calls_total"],
        0.0
    );
    assert_eq!(
        v["server"]["metrics_after"]["fleetgate_fake_bulk_calls_total"],
        3.0
    );
    assert_eq!(
        v["server"]["metrics_after"]["fleetgate_fake_created_total{account=\"acme\"}"],
        25.0
    );
    assert!(
        v["server"]["metrics_after"]
            .get("process_open_fds")
            .is_none()
    );
    assert!(v["failures"].as_object().unwrap().values().all(|n| n == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_v311_kura_unique_credentials_open_model() {
    let s = stack(Sabotage::default()).await;
    let mut config = enroll_config(&s, 12, Protocol::V311, Encoding::Kura);
    config.credentials = Credentials::Unique;
    config.operational = true;
    config.run.load = Load::Open { rate: 400.0 };
    let report = run_enroll(&config).await.unwrap();
    assert_eq!(report.counts.completed, 12, "{:?}", report.first_failures);
    let v: Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(v["config"]["protocol"], "3.1.1");
    assert_eq!(v["config"]["encoding"], "kura");
    assert_eq!(v["config"]["credentials"], "unique");
    assert_eq!(v["config"]["rate"], 400.0);
    assert_eq!(v["config"]["concurrency"], Value::Null);
    assert!(v["failures"].get("connack_0x04").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_by_reason() {
    let s = stack(Sabotage {
        refuse_suffix: Some("-3".into()),
        code_403_suffix: Some("-4".into()),
        silent_suffix: Some("-5".into()),
        close_suffix: Some("-6".into()),
    })
    .await;
    let mut config = enroll_config(&s, 8, Protocol::V5, Encoding::Json);
    config.run.timeout = Duration::from_millis(400);
    let report = run_enroll(&config).await.unwrap();
    assert_eq!(report.counts.completed, 4, "{:?}", report.first_failures);
    assert_eq!(report.counts.failed, 4);
    assert_eq!(report.failures["connack_0x86"], 1);
    assert_eq!(report.failures["reply_code_403"], 1);
    assert_eq!(report.failures["timeout"], 1);
    assert_eq!(report.failures["disconnected"], 1);
    assert_eq!(report.failures["bad_reply"], 0);
    assert!(
        report.first_failures["timeout"].contains("reply"),
        "{:?}",
        report.first_failures
    );
    assert_eq!(exit_status(&report, false), 1);
    assert_eq!(exit_status(&report, true), 0);
    // A refused device never got through CONNECT; the others did.
    let v: Value = serde_json::from_str(&report.to_json()).unwrap();
    assert!(v["latency_ms"]["connect"]["p50"].is_number());
    assert_eq!(v["latency_ms"]["operational"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_with_a_separate_operational_phase() {
    let s = stack(Sabotage {
        refuse_suffix: Some("-3".into()),
        code_403_suffix: Some("-4".into()),
        ..Sabotage::default()
    })
    .await;
    let mut config = enroll_config(&s, 20, Protocol::V5, Encoding::Json);
    config.operational = true;
    config.run.operational_phase = OperationalPhase::Separate;
    let report = run_enroll(&config).await.unwrap();
    // -3 and -4 fail to enroll, so they never reconnect; the 18 others enroll, then reconnect.
    assert_eq!(report.counts.attempted, 20);
    assert_eq!(report.counts.completed, 18, "{:?}", report.first_failures);
    assert_eq!(report.counts.failed, 2);
    assert_eq!(report.failures["connack_0x86"], 1);
    assert_eq!(report.failures["reply_code_403"], 1);
    assert_eq!(report.failures["timeout"], 0);
    let v: Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(v["config"]["operational"], true);
    assert_eq!(v["config"]["operational_phase"], "separate");
    assert!(
        v["operational_connects_per_second"].as_f64().unwrap() > 0.0,
        "{v}"
    );
    assert!(v["enrollments_per_second"].as_f64().unwrap() > 0.0, "{v}");
    for phase in ["connect", "reply", "enrollment", "operational"] {
        assert!(v["latency_ms"][phase]["p50"].is_number(), "{phase}: {v}");
    }
    assert!(report.to_table().contains("connects/s (separate phase)"));

    // Inline (the default) measures no phase rate of its own.
    let mut config = enroll_config(&s, 5, Protocol::V5, Encoding::Json);
    config.operational = true;
    let report = run_enroll(&config).await.unwrap();
    let v: Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(v["config"]["operational_phase"], "inline");
    assert_eq!(v["operational_connects_per_second"], Value::Null);
    assert!(v["latency_ms"]["operational"]["p50"].is_number(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_operational_phase_is_bounded_by_duration() {
    let s = stack(Sabotage {
        silent_suffix: Some("-1".into()),
        ..Sabotage::default()
    })
    .await;
    // Device -1 never gets a reply, so the enrollment phase runs into --duration: the devices
    // that enrolled never reconnect and count as timeouts.
    let mut config = enroll_config(&s, 4, Protocol::V5, Encoding::Json);
    config.operational = true;
    config.run.operational_phase = OperationalPhase::Separate;
    config.run.duration = Some(Duration::from_millis(500));
    let report = run_enroll(&config).await.unwrap();
    assert_eq!(report.counts.completed, 0, "{:?}", report.first_failures);
    assert_eq!(report.counts.failed, 4);
    assert_eq!(report.failures["timeout"], 4);
    assert_eq!(report.operational_per_second, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_refusals_use_return_codes() {
    let s = stack(Sabotage {
        refuse_suffix: Some("-1".into()),
        ..Sabotage::default()
    })
    .await;
    let config = enroll_config(&s, 3, Protocol::V311, Encoding::Json);
    let report = run_enroll(&config).await.unwrap();
    assert_eq!(report.failures["connack_0x04"], 1);
    assert_eq!(report.counts.completed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_bounds_an_enrollment_run() {
    let s = stack(Sabotage {
        silent_suffix: Some("".into()),
        ..Sabotage::default()
    })
    .await;
    let mut config = enroll_config(&s, 30, Protocol::V5, Encoding::Json);
    config.run.load = Load::Closed { concurrency: 5 };
    config.run.duration = Some(Duration::from_millis(300));
    let report = run_enroll(&config).await.unwrap();
    assert_eq!(report.counts.attempted, 30);
    assert_eq!(report.failures["timeout"], 30);
    assert!(report.duration_s < 2.0, "{}", report.duration_s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_are_setup_errors() {
    let s = stack(Sabotage::default()).await;
    let mut config = enroll_config(&s, 1, Protocol::V5, Encoding::Json);
    config.provisioning = BrokerAddr::parse("mqtt://127.0.0.1:1").unwrap();
    let err = run_enroll(&config).await.unwrap_err();
    assert!(err.downcast_ref::<Unreachable>().is_some(), "{err:#}");

    let mut config = enroll_config(&s, 1, Protocol::V5, Encoding::Json);
    config.api = "http://127.0.0.1:1".into();
    let err = run_enroll(&config).await.unwrap_err();
    assert!(err.downcast_ref::<Unreachable>().is_some(), "{err:#}");

    let mut config = enroll_config(&s, 1, Protocol::V5, Encoding::Json);
    config.token = "wrong".into();
    let err = run_enroll(&config).await.unwrap_err();
    assert!(err.downcast_ref::<Unreachable>().is_none());
    assert!(format!("{err:#}").contains("401"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycle_against_an_echo_broker() {
    let fleet = Arc::new(Fleet::default());
    let api = start_api(fleet.clone());
    let broker = start_mqtt(fleet.clone(), Role::Echo).await;
    for (protocol, topic, sandbox) in [
        (Protocol::V5, "cycle/{client_id}", false),
        (Protocol::V311, "acme/{client_id}/cycle", false),
        (Protocol::V5, "cycle/{client_id}", true),
    ] {
        fleet.echoed.lock().unwrap().clear();
        fleet.echo_logins.lock().unwrap().clear();
        let login = |s: &str| (!sandbox).then(|| s.to_string());
        let config = CycleConfig {
            broker: BrokerAddr::parse(&broker.to_string()).unwrap(),
            username: login("u"),
            password: login("p"),
            sandbox,
            clients: 40,
            run_id: "cyc".into(),
            topic: topic.into(),
            api: Some(api.clone()),
            // The sandbox run also holds each connection (an idle-connection load).
            hold: sandbox.then_some(Duration::from_millis(300)),
            run: RunOptions {
                load: Load::Closed { concurrency: 10 },
                protocol,
                source_addresses: 3,
                ..RunOptions::default()
            },
        };
        let report = run_cycle(&config).await.unwrap();
        assert_eq!(report.counts.completed, 40, "{:?}", report.first_failures);
        let v: Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(v["scenario"], "cycle");
        assert_eq!(v["clients"]["completed"], 40);
        assert_eq!(v["config"]["topic"], topic);
        // `sandbox` is reported only when set (the key is an addition to LOADTEST.md's).
        assert_eq!(
            v["config"].get("sandbox"),
            sandbox.then_some(&Value::Bool(true))
        );
        assert_eq!(
            v["config"].get("hold_s"),
            sandbox.then_some(&Value::from(0.3))
        );
        if sandbox {
            // 40 clients, 10 at a time, each holding its connection for 0.3 s after its cycle.
            assert!(report.duration_s >= 4.0 * 0.3, "{}", report.duration_s);
        }
        // --sandbox: every CONNECT anonymous; otherwise every one with the username.
        let logins = fleet.echo_logins.lock().unwrap().clone();
        assert_eq!(logins, vec![!sandbox; 40]);
        assert!(v["cycles_per_second"].as_f64().unwrap() > 0.0);
        for phase in ["connect", "roundtrip", "total"] {
            assert!(v["latency_ms"][phase]["p99"].is_number(), "{phase}");
        }
        assert_eq!(
            v["server"]["metrics_after"]["fleetgate_fake_bulk_calls_total"],
            0.0
        );
        // Each client published once, on its own topic: the template with its client ID.
        let mut echoed = fleet.echoed.lock().unwrap().clone();
        echoed.sort();
        let mut expected: Vec<String> = (0..40)
            .map(|i| topic.replace("{client_id}", &format!("cycle-cyc-{i}")))
            .collect();
        expected.sort();
        assert_eq!(echoed, expected);
    }
}

/// Scale smoke test (sockets, source addresses, lingering disconnects):
/// `cargo test --release -p fleetgate-loadtest --test fake_fleet -- --ignored`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "scale smoke test, run explicitly in release mode"]
async fn many_devices() {
    let s = stack(Sabotage::default()).await;
    let mut config = enroll_config(&s, 30_000, Protocol::V5, Encoding::Json);
    config.operational = true;
    config.run.load = Load::Closed { concurrency: 500 };
    config.run.source_addresses = 8;
    let report = run_enroll(&config).await.unwrap();
    println!("{}", report.to_table());
    assert_eq!(
        report.counts.completed, 30_000,
        "{:?}",
        report.first_failures
    );
}

/// Runs the binary (blocking, so the in-process fleet keeps serving) and returns its exit
/// status and stdout.
async fn loadtest_bin(args: Vec<String>) -> (i32, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetgate-loadtest"))
            .args(&args)
            .env_remove("FLEETGATE_TOKEN")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// The binary end to end: two runs (constant rate and a ramp) write `--json` and `--html`,
/// then `compare` judges them both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_reports_and_compare_from_the_command_line() {
    let s = stack(Sabotage::default()).await;
    let dir = std::env::temp_dir().join(format!(
        "loadtest-report-{}",
        fleetgate_loadtest::config::new_run_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    let run = |load: [&str; 2], name: &str| {
        let mut args: Vec<String> = [
            "enroll",
            "--api",
            &s.api,
            "--token",
            "T",
            "--account",
            "acme",
            "--provisioning",
            &format!("mqtt://{}", s.provisioning),
            "--operational-broker",
            &format!("mqtt://{}", s.operational),
            "--devices",
            "60",
            "--source-addresses",
            "2",
            "--run-id",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.push(fleetgate_loadtest::config::new_run_id());
        args.extend(load.iter().map(|a| a.to_string()));
        args.extend([
            "--json".into(),
            path(&format!("{name}.json")),
            "--html".into(),
            path(&format!("{name}.html")),
        ]);
        loadtest_bin(args)
    };
    let (code, _) = run(["--rate", "200"], "base").await;
    assert_eq!(code, 0);
    let (code, _) = run(["--ramp", "0:100,0.2:300"], "ramp").await;
    assert_eq!(code, 0);

    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(path("ramp.json")).unwrap()).unwrap();
    assert_eq!(json["config"]["ramp"], "0:100,0.2:300");
    assert_eq!(json["config"]["rate"], Value::Null);
    assert_eq!(json["devices"]["completed"], 60);
    let html = std::fs::read_to_string(path("base.html")).unwrap();
    for chart in [
        "id=\"completions\"",
        "id=\"latency-enrollment\"",
        "id=\"failures\"",
        "id=\"histogram\"",
    ] {
        assert!(html.contains(chart), "{chart}");
    }
    assert!(html.contains("fleetgate_fake_created_total{account=&quot;acme&quot;}  +60"));

    // Generous limit: two runs of a fake on a shared machine vary a lot.
    let (code, table) = loadtest_bin(vec![
        "compare".into(),
        path("base.json"),
        path("ramp.json"),
        "--max-regression".into(),
        "100000".into(),
        "--html".into(),
        path("compare.html"),
    ])
    .await;
    assert_eq!(code, 0, "{table}");
    assert!(table.contains("enrollments_per_second"), "{table}");
    assert!(table.contains("no regression"), "{table}");
    assert!(
        std::fs::read_to_string(path("compare.html"))
            .unwrap()
            .contains("latency_ms.enrollment.p99")
    );

    // The same run with half the throughput is a regression.
    let mut slower = json.clone();
    slower["enrollments_per_second"] =
        (json["enrollments_per_second"].as_f64().unwrap() / 2.0).into();
    std::fs::write(path("slower.json"), slower.to_string()).unwrap();
    let (code, table) = loadtest_bin(vec![
        "compare".into(),
        path("ramp.json"),
        path("slower.json"),
    ])
    .await;
    assert_eq!(code, 1, "{table}");
    assert!(
        table.contains("REGRESSION: throughput fell by 50.0%"),
        "{table}"
    );

    std::fs::write(path("broken.json"), "{").unwrap();
    let (code, _) = loadtest_bin(vec![
        "compare".into(),
        path("broken.json"),
        path("ramp.json"),
    ])
    .await;
    assert_eq!(code, 2);
    let (code, _) = run(["--ramp", "5:100"], "bad").await;
    assert_eq!(code, 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
