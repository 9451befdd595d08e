//! End-to-end tests of the provisioning endpoint (PROTOCOL.md sections 2 to 5) with a real MQTT
//! client over a real socket, for MQTT 3.1.1 and 5.0.

mod common;

use std::time::Duration;

use common::*;
use fleetgate_kura::{Encoding, ProvReply, ProvRequest};
use fleetgate_storage::ops;
use fleetgate_storage::{ConnectionStatus, Outcome, RequestStatus};
use serde_json::json;

const PA: &str = "provision";
const PASSWORD: &str = "fleet-password-1";

fn reply_filter(cid: &str) -> String {
    format!("$EDC/{PA}/{cid}/PROV-V1/REPLY/#")
}

fn exec_topic(cid: &str) -> String {
    format!("$EDC/{PA}/{cid}/PROV-V1/EXEC/provision")
}

async fn connect(
    s: &TestServer,
    v: Version,
    cid: &str,
    user: &str,
    pw: &str,
) -> Result<Device, u8> {
    connect_at(s.provisioning_addr(), v, cid, user, pw).await
}

async fn connect_at(
    addr: std::net::SocketAddr,
    v: Version,
    cid: &str,
    user: &str,
    pw: &str,
) -> Result<Device, u8> {
    Device::connect(Connect {
        version: v,
        addr,
        client_id: cid,
        username: user,
        password: pw,
        manual_acks: false,
    })
    .await
}

fn setup(s: &TestServer, cid: &str, extra: serde_json::Value) -> serde_json::Value {
    let _ = post(s, "/api/v1/accounts", &json!({"name": "acme"}));
    let mut body = request_body(cid, "fleet", PASSWORD);
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    create_request(s, "acme", body)
}

/// Connects, subscribes, sends the request and returns the decoded reply.
async fn enroll(
    s: &TestServer,
    v: Version,
    cid: &str,
    encoding: Encoding,
    key: Option<&str>,
) -> ProvReply {
    enroll_at(s.provisioning_addr(), v, cid, encoding, key).await
}

async fn enroll_at(
    addr: std::net::SocketAddr,
    v: Version,
    cid: &str,
    encoding: Encoding,
    key: Option<&str>,
) -> ProvReply {
    let mut d = connect_at(addr, v, cid, "fleet", PASSWORD)
        .await
        .expect("CONNECT accepted");
    d.subscribe(&reply_filter(cid), 1).await;
    assert_eq!(d.suback().await, vec![1]);
    let mut req = ProvRequest::new("r-1");
    if let Some(k) = key {
        req = req.with_activation_key(k);
    }
    d.publish(&exec_topic(cid), 1, req.encode(encoding)).await;
    let (topic, payload) = d
        .publish_received(Duration::from_secs(10))
        .await
        .expect("a reply");
    assert_eq!(topic, format!("$EDC/{PA}/{cid}/PROV-V1/REPLY/r-1"));
    let (enc, reply) = fleetgate_kura::decode_reply(&payload).unwrap();
    assert_eq!(enc, encoding);
    d.disconnect().await;
    reply
}

fn status(s: &TestServer, id: &str) -> RequestStatus {
    s.app()
        .store
        .read()
        .unwrap()
        .request(id)
        .unwrap()
        .unwrap()
        .status
}

async fn wait_status(s: &TestServer, id: &str, want: RequestStatus) {
    eventually(|| (status(s, id) == want).then_some(())).await;
}

async fn full_enrollment(v: Version, encoding: Encoding) {
    let s = TestServer::start();
    let r = setup(&s, "dev-0001", json!({"vpnAccess": true}));
    let id = r["id"].as_str().unwrap().to_string();
    let reply = enroll(&s, v, "dev-0001", encoding, None).await;
    let ProvReply::Success(ok) = reply else {
        panic!("failure reply: {reply:?}")
    };
    assert_eq!(ok.username, "dev-0001@acme");
    assert_eq!(ok.account_name, "acme");
    assert_eq!(ok.client_id, "dev-0001");
    assert_eq!(ok.broker_url, "mqtt://127.0.0.1:1884");
    assert_eq!(ok.provision_status, "COMPLETED");
    assert!(ok.password.len() >= 20);
    let doc = fleetgate_devconfig::Document::parse(&ok.configuration).unwrap();
    assert_eq!(doc.configurations.len(), 2, "transport + VPN");
    wait_status(&s, &id, RequestStatus::Completed).await;
    let read = s.app().store.read().unwrap();
    let user = read.device_user("dev-0001@acme").unwrap().unwrap();
    assert!(user.permissions.contains(&"vpn:connect".to_string()));
    assert!(fleetgate_auth_hook::credentials::fast_verify(
        &ok.password,
        &user.password_hash
    ));
    let conn = read.device_connection("acme", "dev-0001").unwrap().unwrap();
    assert_eq!(conn.reserved_user.as_deref(), Some("dev-0001@acme"));
    assert_eq!(conn.status, ConnectionStatus::NeverConnected);
    assert!(read.device("acme", "dev-0001").unwrap().is_some());
    let execs = read.executions(&id).unwrap();
    assert_eq!(execs.len(), 1);
    assert_eq!(execs[0].outcome, Outcome::Completed);
    let log = serde_json::to_string(&execs[0].log).unwrap();
    assert!(!log.contains(&ok.password), "no secret in the log");
    // The session is gone: the connection gauge is back to zero.
    eventually(|| {
        let text = s
            .app()
            .metrics
            .render(&s.app().store, &s.app().config.data_dir);
        text.contains("fleetgate_connections{endpoint=\"provisioning\"} 0")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn full_enrollment_v5_json() {
    full_enrollment(Version::V5, Encoding::Json).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn full_enrollment_v5_kura() {
    full_enrollment(Version::V5, Encoding::Kura).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn full_enrollment_v3_json() {
    full_enrollment(Version::V3, Encoding::Json).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn full_enrollment_v3_kura() {
    full_enrollment(Version::V3, Encoding::Kura).await;
}

async fn activation_key(v: Version) {
    let s = TestServer::start();
    let r = setup(&s, "dev-k", json!({"generateActivationKey": true}));
    let id = r["id"].as_str().unwrap().to_string();
    let key = r["activationKey"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 32);
    let missing = enroll(&s, v, "dev-k", Encoding::Json, None).await;
    assert_eq!(missing.code(), 403);
    wait_status(&s, &id, RequestStatus::Failed).await;
    let wrong = enroll(&s, v, "dev-k", Encoding::Json, Some("WRONGKEY")).await;
    assert_eq!(wrong.code(), 403);
    let right = enroll(&s, v, "dev-k", Encoding::Json, Some(&key)).await;
    assert_eq!(right.code(), 200);
    wait_status(&s, &id, RequestStatus::Completed).await;
    let execs = s.app().store.read().unwrap().executions(&id).unwrap();
    let outcomes: Vec<_> = execs.iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Failed, Outcome::Failed, Outcome::Completed]
    );
    assert!(
        execs[0]
            .log
            .iter()
            .any(|l| l.message.contains("activation key missing"))
    );
    assert!(
        execs[1]
            .log
            .iter()
            .any(|l| l.message.contains("activation key wrong"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn activation_key_v5() {
    activation_key(Version::V5).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn activation_key_v3() {
    activation_key(Version::V3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_refusals() {
    let s = TestServer::start();
    let r = setup(&s, "dev-c", json!({}));
    let id = r["id"].as_str().unwrap().to_string();
    for (v, bad, invalid) in [(Version::V3, 0x04, 0x02), (Version::V5, 0x86, 0x85)] {
        assert_eq!(
            connect(&s, v, "dev-c", "fleet", "wrong-pass").await.err(),
            Some(bad)
        );
        assert_eq!(
            connect(&s, v, "nobody", "fleet", PASSWORD).await.err(),
            Some(bad)
        );
        assert_eq!(
            connect(&s, v, "dev-c", "other", PASSWORD).await.err(),
            Some(bad)
        );
        assert_eq!(
            connect(&s, v, "a/b", "fleet", PASSWORD).await.err(),
            Some(invalid)
        );
    }
    let read = s.app().store.read().unwrap();
    let req = read.request(&id).unwrap().unwrap();
    assert!(
        req.last_rejection.is_some(),
        "owner learns of the rejection"
    );
    assert!(
        read.executions(&id).unwrap().is_empty(),
        "no execution for wrong credentials"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn time_window_and_closed_requests() {
    let s = TestServer::start();
    let now = s.clock().now_utc();
    let r = setup(
        &s,
        "dev-w",
        json!({
            "activatesOn": (now + chrono::Duration::hours(1)).to_rfc3339(),
            "expiresOn": (now + chrono::Duration::hours(2)).to_rfc3339(),
        }),
    );
    let id = r["id"].as_str().unwrap().to_string();
    assert_eq!(
        connect(&s, Version::V5, "dev-w", "fleet", PASSWORD)
            .await
            .err(),
        Some(0x87)
    );
    assert_eq!(
        connect(&s, Version::V3, "dev-w", "fleet", PASSWORD)
            .await
            .err(),
        Some(0x05)
    );
    s.clock().advance(chrono::Duration::minutes(90));
    assert_eq!(
        enroll(&s, Version::V5, "dev-w", Encoding::Json, None)
            .await
            .code(),
        200
    );
    wait_status(&s, &id, RequestStatus::Completed).await;
    // COMPLETED is closed.
    assert_eq!(
        connect(&s, Version::V5, "dev-w", "fleet", PASSWORD)
            .await
            .err(),
        Some(0x87)
    );
    let execs = s.app().store.read().unwrap().executions(&id).unwrap();
    let rejected = execs
        .iter()
        .filter(|e| e.outcome == Outcome::Rejected)
        .count();
    assert_eq!(rejected, 3);

    let r2 = setup(
        &s,
        "dev-x",
        json!({"expiresOn": (s.clock().now_utc() + chrono::Duration::hours(1)).to_rfc3339()}),
    );
    s.clock().advance(chrono::Duration::hours(2));
    assert_eq!(
        connect(&s, Version::V5, "dev-x", "fleet", PASSWORD)
            .await
            .err(),
        Some(0x87)
    );
    let execs = s
        .app()
        .store
        .read()
        .unwrap()
        .executions(r2["id"].as_str().unwrap())
        .unwrap();
    assert!(execs[0].log.iter().any(|l| l.message.contains("expiresOn")));
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_failure_gets_a_new_password() {
    let s = TestServer::start();
    let r = setup(&s, "dev-r", json!({}));
    let id = r["id"].as_str().unwrap().to_string();
    // A device that never acknowledges its reply and drops the connection.
    let mut d = Device::connect(Connect {
        version: Version::V5,
        addr: s.provisioning_addr(),
        client_id: "dev-r",
        username: "fleet",
        password: PASSWORD,
        manual_acks: true,
    })
    .await
    .unwrap();
    d.subscribe(&reply_filter("dev-r"), 1).await;
    d.suback().await;
    d.publish(&exec_topic("dev-r"), 1, ProvRequest::new("r-1").to_json())
        .await;
    let (_, first) = d.publish_received(Duration::from_secs(10)).await.unwrap();
    d.kill();
    wait_status(&s, &id, RequestStatus::Failed).await;
    let ProvReply::Success(first) = fleetgate_kura::decode_reply(&first).unwrap().1 else {
        panic!()
    };
    let ProvReply::Success(second) = enroll(&s, Version::V5, "dev-r", Encoding::Json, None).await
    else {
        panic!()
    };
    assert_ne!(first.password, second.password);
    wait_status(&s, &id, RequestStatus::Completed).await;
    let user = s
        .app()
        .store
        .read()
        .unwrap()
        .device_user("dev-r@acme")
        .unwrap()
        .unwrap();
    assert!(!fleetgate_auth_hook::credentials::fast_verify(
        &first.password,
        &user.password_hash
    ));
}

async fn acl_table(v: Version) {
    let s = TestServer::start();
    setup(&s, "dev-a", json!({}));
    let mut d = connect(&s, v, "dev-a", "fleet", PASSWORD).await.unwrap();
    let deny = if v == Version::V3 { 0x80 } else { 0x87 };
    for (filter, allowed) in [
        (reply_filter("dev-a"), true),
        (format!("$EDC/{PA}/dev-a/PROV-V1/REPLY/+"), true),
        ("#".to_string(), false),
        ("+/+/+/+/+/+".to_string(), false),
        ("$EDC/#".to_string(), false),
        (reply_filter("dev-b"), false),
        // Inside `$EDC/PA/CID/#`, which a Kura-native device subscribes to (PROTOCOL.md 3).
        (format!("$EDC/{PA}/dev-a/PROV-V1/REPLYX/#"), true),
        (format!("$EDC/{PA}/dev-a/#"), true),
        (format!("$EDC/{PA}/dev-b/#"), false),
        (format!("$EDC/{PA}/+/PROV-V1/REPLY/#"), false),
    ] {
        d.subscribe(&filter, 1).await;
        let codes = d.suback().await;
        assert_eq!(codes, vec![if allowed { 1 } else { deny }], "{filter}");
    }
    if v == Version::V5 {
        d.publish(
            "$EDC/provision/dev-b/PROV-V1/EXEC/provision",
            1,
            b"{}".to_vec(),
        )
        .await;
        let code = loop {
            match d.next(Duration::from_secs(5)).await {
                Some(Seen::PubAck(c)) => break c,
                Some(_) => {}
                None => panic!("no PUBACK"),
            }
        };
        assert_eq!(code, 0x87);
        // QoS 0: dropped, the connection stays.
        d.publish("elsewhere", 0, b"x".to_vec()).await;
        assert!(!d.closed(Duration::from_millis(300)).await);
    } else {
        d.publish(
            "$EDC/provision/dev-b/PROV-V1/EXEC/provision",
            1,
            b"{}".to_vec(),
        )
        .await;
        assert!(
            d.closed(Duration::from_secs(5)).await,
            "3.1.1 closes the connection"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acl_v5() {
    acl_table(Version::V5).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acl_v3() {
    acl_table(Version::V3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_answer_400() {
    let s = TestServer::start();
    let r = setup(&s, "dev-m", json!({}));
    let id = r["id"].as_str().unwrap().to_string();
    let mut d = connect(&s, Version::V5, "dev-m", "fleet", PASSWORD)
        .await
        .unwrap();
    d.subscribe(&reply_filter("dev-m"), 1).await;
    d.suback().await;
    d.publish(&exec_topic("dev-m"), 1, b"{not json".to_vec())
        .await;
    let (topic, payload) = d.publish_received(Duration::from_secs(10)).await.unwrap();
    assert_eq!(topic, format!("$EDC/{PA}/dev-m/PROV-V1/REPLY/error"));
    assert_eq!(
        fleetgate_kura::decode_reply(&payload).unwrap().1.code(),
        400
    );
    wait_status(&s, &id, RequestStatus::Failed).await;
    d.disconnect().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn running_requests_fail_on_restart() {
    let mut s = TestServer::start();
    let r = setup(&s, "dev-s", json!({}));
    let id = r["id"].as_str().unwrap().to_string();
    // Leave an exchange RUNNING in the store, as a crash between reply and PUBACK would.
    let start = ops::begin_exchange(
        ops::Attempt {
            request_id: id.clone(),
            protocol: "5.0".into(),
            peer: "127.0.0.1:1".into(),
            now: s.clock().now_utc(),
        },
        "r-1".into(),
        ops::ExchangeAction::Provision(ops::IdentityPlan {
            username: "dev-s@acme".into(),
            password_hash: "unused".into(),
            configurations: 1,
        }),
        fleetgate_storage::ProvisioningProtocol::ProvV1,
    );
    s.app().store.write(start).unwrap();
    assert_eq!(status(&s, &id), RequestStatus::Running);
    s.restart();
    assert_eq!(status(&s, &id), RequestStatus::Failed);
    let execs = s.app().store.read().unwrap().executions(&id).unwrap();
    assert_eq!(execs[0].outcome, Outcome::Failed);
    assert!(execs[0].log.iter().any(|l| l.message.contains("restarted")));
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_devices_enroll_concurrently() {
    let s = TestServer::start();
    let _ = post(&s, "/api/v1/accounts", &json!({"name": "acme"}));
    let rows: Vec<_> = (0..100)
        .map(|i| request_body(&format!("bulk-{i}"), "fleet", PASSWORD))
        .collect();
    let (code, body) = post(
        &s,
        "/api/v1/accounts/acme/provision-requests/bulk",
        &json!({ "requests": rows }),
    );
    assert_eq!(code, 201, "{body}");
    let mut tasks = Vec::new();
    let addr = s.provisioning_addr();
    for i in 0..100 {
        let v = if i % 2 == 0 { Version::V5 } else { Version::V3 };
        tasks.push(tokio::spawn(async move {
            enroll_at(addr, v, &format!("bulk-{i}"), Encoding::Json, None)
                .await
                .code()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let counts = eventually(|| {
        let c = s
            .app()
            .store
            .read()
            .unwrap()
            .count_requests_by_status()
            .unwrap();
        c.iter()
            .any(|(st, n)| *st == RequestStatus::Completed && *n == 100)
            .then_some(c)
    })
    .await;
    assert!(
        counts
            .iter()
            .any(|(st, n)| *st == RequestStatus::Completed && *n == 100)
    );
}

/// Stopping the server lets a running exchange end on its own terms (here its reply timeout)
/// instead of cutting it off, and leaves the store closed so it opens again at once.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_drains_running_exchanges() {
    let mut s = TestServer::start_with(&[("FLEETGATE_PROVISIONING_REPLY_TIMEOUT", "1")]);
    let r = setup(&s, "dev-d", json!({}));
    let id = r["id"].as_str().unwrap().to_string();
    let mut d = Device::connect(Connect {
        version: Version::V5,
        addr: s.provisioning_addr(),
        client_id: "dev-d",
        username: "fleet",
        password: PASSWORD,
        manual_acks: true,
    })
    .await
    .unwrap();
    d.subscribe(&reply_filter("dev-d"), 1).await;
    d.suback().await;
    d.publish(&exec_topic("dev-d"), 1, br#"{"request.id":"r-1"}"#.to_vec())
        .await;
    // The reply arrives and is never acknowledged: the exchange waits for its PUBACK.
    d.publish_received(Duration::from_secs(10)).await.unwrap();
    assert_eq!(status(&s, &id), RequestStatus::Running);
    let running = s.running.take().unwrap();
    tokio::task::spawn_blocking(move || running.stop())
        .await
        .unwrap();
    s.restart();
    let execs = s.app().store.read().unwrap().executions(&id).unwrap();
    assert_eq!(execs[0].outcome, Outcome::Failed);
    let log: Vec<&str> = execs[0].log.iter().map(|l| l.message.as_str()).collect();
    assert!(
        log.last().unwrap().contains("reply_timeout"),
        "the exchange ended by its timeout, not by the restart: {log:?}"
    );
    assert!(!log.iter().any(|m| m.contains("restarted")), "{log:?}");
    d.disconnect().await;
}
