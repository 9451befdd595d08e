//! End-to-end tests of the operational endpoint (PROTOCOL.md section 6) with real MQTT clients
//! over real sockets, for MQTT 3.1.1 and 5.0: devices provisioned over the provisioning
//! endpoint connect with their generated identity, are confined to their own topics, exchange
//! messages through the router, and are tracked in the device registry.

mod common;

use std::time::Duration;

use common::*;
use fleetgate_storage::ConnectionStatus;
use serde_json::json;

const PASSWORD: &str = "fleet-password-1";

/// A provisioned device's operational identity.
struct Identity {
    client_id: String,
    username: String,
    password: String,
}

fn ensure_account(s: &TestServer, account: &str) {
    let _ = post(s, "/api/v1/accounts", &json!({ "name": account }));
}

/// Creates a request for `cid` in `account` (provision user `fleet-ACCOUNT`), enrolls it over the
/// provisioning endpoint with `v`, and returns the identity from the reply.
async fn provision(
    s: &TestServer,
    v: Version,
    account: &str,
    cid: &str,
    extra: serde_json::Value,
) -> Identity {
    ensure_account(s, account);
    let puser = format!("fleet-{account}");
    let mut body = request_body(cid, &puser, PASSWORD);
    for (k, val) in extra.as_object().unwrap() {
        body[k] = val.clone();
    }
    create_request(s, account, body);

    let ok = prov_v1_exchange(s, v, cid, &puser, PASSWORD).await;
    assert_eq!(ok.client_id, cid);
    assert_eq!(ok.username, format!("{cid}@{account}"));
    // The device identity is committed with the exchange; wait until it is readable.
    eventually(|| {
        s.app()
            .store
            .read()
            .unwrap()
            .device_user(&ok.username)
            .unwrap()
            .map(|_| ())
    })
    .await;
    Identity {
        client_id: ok.client_id,
        username: ok.username,
        password: ok.password,
    }
}

async fn op_connect(
    s: &TestServer,
    v: Version,
    cid: &str,
    user: &str,
    pw: &str,
) -> Result<Device, u8> {
    Device::connect(Connect {
        version: v,
        addr: s.operational_addr(),
        client_id: cid,
        username: user,
        password: pw,
        manual_acks: false,
    })
    .await
}

async fn op_connect_as(s: &TestServer, v: Version, id: &Identity) -> Device {
    op_connect(s, v, &id.client_id, &id.username, &id.password)
        .await
        .expect("operational CONNECT accepted")
}

fn connection_status(s: &TestServer, account: &str, cid: &str) -> Option<ConnectionStatus> {
    s.app()
        .store
        .read()
        .unwrap()
        .device_connection(account, cid)
        .unwrap()
        .map(|c| c.status)
}

async fn wait_connection(s: &TestServer, account: &str, cid: &str, want: ConnectionStatus) {
    eventually(|| (connection_status(s, account, cid) == Some(want)).then_some(())).await;
}

fn not_authorized(v: Version) -> u8 {
    if v == Version::V3 { 0x05 } else { 0x87 }
}

fn bad_credentials(v: Version) -> u8 {
    if v == Version::V3 { 0x04 } else { 0x86 }
}

/// Waits for the next PUBACK's reason code.
async fn puback(d: &mut Device) -> u8 {
    loop {
        match d.next(Duration::from_secs(5)).await {
            Some(Seen::PubAck(c)) => return c,
            Some(Seen::Disconnected) => panic!("disconnected instead of PUBACK"),
            Some(_) => {}
            None => panic!("no PUBACK"),
        }
    }
}

/// Counts the PUBLISH packets received within `window`.
async fn publishes_within(d: &mut Device, window: Duration) -> Vec<(String, Vec<u8>)> {
    let deadline = tokio::time::Instant::now() + window;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match d.next(left).await {
            Some(Seen::Publish { topic, payload }) => out.push((topic, payload)),
            Some(_) => {}
            None => return out,
        }
    }
}

async fn connect_and_registry(v: Version) {
    let s = TestServer::start();
    let id = provision(&s, v, "acme", "dev-1", json!({})).await;
    assert_eq!(
        connection_status(&s, "acme", "dev-1"),
        Some(ConnectionStatus::NeverConnected)
    );
    let d = op_connect_as(&s, v, &id).await;
    wait_connection(&s, "acme", "dev-1", ConnectionStatus::Connected).await;
    let conn = s
        .app()
        .store
        .read()
        .unwrap()
        .device_connection("acme", "dev-1")
        .unwrap()
        .unwrap();
    assert!(conn.last_connected_on.is_some());
    let (code, body) = get(&s, "/api/v1/accounts/acme/devices/dev-1");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["connection"], "CONNECTED", "{body}");
    assert!(body["lastConnectedOn"].is_string(), "{body}");
    let connected_on = body["lastConnectedOn"].clone();

    d.disconnect().await;
    wait_connection(&s, "acme", "dev-1", ConnectionStatus::Disconnected).await;
    let (code, body) = get(&s, "/api/v1/accounts/acme/devices/dev-1");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["connection"], "DISCONNECTED", "{body}");
    assert_eq!(
        body["lastConnectedOn"], connected_on,
        "kept after disconnect"
    );
    eventually(|| {
        let text = s
            .app()
            .metrics
            .render(&s.app().store, &s.app().config.data_dir);
        text.contains("fleetgate_connections{endpoint=\"operational\"} 0")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_and_registry_v3() {
    connect_and_registry(Version::V3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_and_registry_v5() {
    connect_and_registry(Version::V5).await;
}

async fn connack_refusals(v: Version) {
    let s = TestServer::start();
    let a = provision(&s, v, "acme", "dev-a", json!({})).await;
    let b = provision(&s, v, "acme", "dev-b", json!({})).await;
    // STRICT: only its reserved user may connect as it. The other user is not reserved, so
    // only the coupling rule can refuse it.
    let strict = provision(
        &s,
        v,
        "acme",
        "dev-strict",
        json!({"connectionCoupling": "STRICT"}),
    )
    .await;
    let free = provision(&s, v, "acme", "dev-free", json!({"reserveUser": false})).await;

    // Wrong password.
    assert_eq!(
        op_connect(&s, v, &a.client_id, &a.username, "wrong-password-123")
            .await
            .err(),
        Some(bad_credentials(v))
    );
    // Unknown user.
    assert_eq!(
        op_connect(&s, v, &a.client_id, "nobody@acme", &a.password)
            .await
            .err(),
        Some(bad_credentials(v))
    );
    // STRICT coupling, another valid (non-reserved) user of the account.
    assert_eq!(
        op_connect(&s, v, &strict.client_id, &free.username, &free.password)
            .await
            .err(),
        Some(not_authorized(v))
    );
    // A's user is reserved for A: client ID B may not use it.
    assert_eq!(
        op_connect(&s, v, &b.client_id, &a.username, &a.password)
            .await
            .err(),
        Some(not_authorized(v))
    );
    // None of that touched the registry.
    for cid in ["dev-a", "dev-b", "dev-strict", "dev-free"] {
        assert_eq!(
            connection_status(&s, "acme", cid),
            Some(ConnectionStatus::NeverConnected),
            "{cid}"
        );
    }
    // The rightful owners still connect.
    for id in [&a, &b, &strict, &free] {
        op_connect_as(&s, v, id).await.disconnect().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connack_refusals_v3() {
    connack_refusals(Version::V3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connack_refusals_v5() {
    connack_refusals(Version::V5).await;
}

async fn loose_coupling_swaps_users(v: Version) {
    let s = TestServer::start();
    let extra = json!({"reserveUser": false, "connectionCoupling": "LOOSE"});
    let x = provision(&s, v, "acme", "dev-x", extra.clone()).await;
    let y = provision(&s, v, "acme", "dev-y", extra).await;
    let dx = op_connect(&s, v, &x.client_id, &y.username, &y.password)
        .await
        .expect("LOOSE: another non-reserved user is accepted");
    let dy = op_connect(&s, v, &y.client_id, &x.username, &x.password)
        .await
        .expect("LOOSE: another non-reserved user is accepted");
    wait_connection(&s, "acme", "dev-x", ConnectionStatus::Connected).await;
    wait_connection(&s, "acme", "dev-y", ConnectionStatus::Connected).await;
    dx.disconnect().await;
    dy.disconnect().await;
    wait_connection(&s, "acme", "dev-x", ConnectionStatus::Disconnected).await;
    wait_connection(&s, "acme", "dev-y", ConnectionStatus::Disconnected).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn loose_coupling_swaps_users_v3() {
    loose_coupling_swaps_users(Version::V3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn loose_coupling_swaps_users_v5() {
    loose_coupling_swaps_users(Version::V5).await;
}

async fn acl(v: Version) {
    let s = TestServer::start();
    let id = provision(&s, v, "acme", "dev-acl", json!({})).await;
    let mut d = op_connect_as(&s, v, &id).await;
    let deny = if v == Version::V3 { 0x80 } else { 0x87 };
    for (filter, allowed) in [
        ("$EDC/acme/dev-acl/#", true),
        ("acme/dev-acl/#", true),
        ("acme/dev-acl/+", true),
        ("$EDC/acme/other/#", false),
        ("acme/other/#", false),
        ("#", false),
        ("acme/#", false),
        ("acme/+/#", false),
        ("$EDC/other-account/dev-acl/#", false),
        ("other-account/dev-acl/#", false),
    ] {
        d.subscribe(filter, 1).await;
        assert_eq!(
            d.suback().await,
            vec![if allowed { 1 } else { deny }],
            "{filter}"
        );
    }
    // Allowed publish: the connection stays.
    d.publish("acme/dev-acl/ok", 1, b"x".to_vec()).await;
    if v == Version::V5 {
        assert_eq!(puback(&mut d).await, 0x00);
        d.publish("acme/other/x", 1, b"x".to_vec()).await;
        assert_eq!(puback(&mut d).await, 0x87);
        d.publish("$EDC/other-account/dev-acl/x", 1, b"x".to_vec())
            .await;
        assert_eq!(puback(&mut d).await, 0x87);
        // QoS 0: dropped, the connection stays.
        d.publish("acme/other/x", 0, b"x".to_vec()).await;
        assert!(!d.closed(Duration::from_millis(300)).await);
        d.disconnect().await;
    } else {
        assert_eq!(puback(&mut d).await, 0x00);
        d.publish("acme/other/x", 1, b"x".to_vec()).await;
        assert!(
            d.closed(Duration::from_secs(5)).await,
            "3.1.1 closes the connection"
        );
    }
    // Either way the session ends and the registry says so.
    wait_connection(&s, "acme", "dev-acl", ConnectionStatus::Disconnected).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acl_v3() {
    acl(Version::V3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acl_v5() {
    acl(Version::V5).await;
}

async fn routing(v: Version) {
    let s = TestServer::start();
    let a = provision(&s, v, "acme", "dev-ra", json!({})).await;
    let b = provision(&s, v, "acme", "dev-rb", json!({})).await;
    let c = provision(&s, v, "globex", "dev-rc", json!({})).await;
    let mut da = op_connect_as(&s, v, &a).await;
    let mut db = op_connect_as(&s, v, &b).await;
    let mut dc = op_connect_as(&s, v, &c).await;
    da.subscribe("acme/dev-ra/#", 1).await;
    assert_eq!(da.suback().await, vec![1]);
    db.subscribe("acme/dev-rb/#", 1).await;
    assert_eq!(db.suback().await, vec![1]);
    dc.subscribe("globex/dev-rc/#", 1).await;
    assert_eq!(dc.suback().await, vec![1]);

    da.publish("acme/dev-ra/x", 1, b"hello".to_vec()).await;
    let got = publishes_within(&mut da, Duration::from_secs(2)).await;
    assert_eq!(
        got,
        vec![("acme/dev-ra/x".to_string(), b"hello".to_vec())],
        "fan-out to the publisher's own subscription"
    );
    assert!(
        publishes_within(&mut db, Duration::from_millis(300))
            .await
            .is_empty(),
        "another device of the account gets nothing"
    );
    assert!(
        publishes_within(&mut dc, Duration::from_millis(300))
            .await
            .is_empty(),
        "a device of another account gets nothing"
    );
    // The other way round: B and C publish in their namespaces, A gets nothing.
    db.publish("acme/dev-rb/y", 1, b"b".to_vec()).await;
    dc.publish("globex/dev-rc/z", 1, b"c".to_vec()).await;
    assert_eq!(
        publishes_within(&mut db, Duration::from_secs(2)).await,
        vec![("acme/dev-rb/y".to_string(), b"b".to_vec())]
    );
    assert_eq!(
        publishes_within(&mut dc, Duration::from_secs(2)).await,
        vec![("globex/dev-rc/z".to_string(), b"c".to_vec())]
    );
    assert!(
        publishes_within(&mut da, Duration::from_millis(300))
            .await
            .is_empty()
    );
    da.disconnect().await;
    db.disconnect().await;
    dc.disconnect().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn routing_v3() {
    routing(Version::V3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn routing_v5() {
    routing(Version::V5).await;
}

async fn overlapping_subscriptions(v: Version) {
    let s = TestServer::start();
    let a = provision(&s, v, "acme", "dev-ov", json!({})).await;
    let mut d = op_connect_as(&s, v, &a).await;
    d.subscribe("acme/dev-ov/#", 1).await;
    assert_eq!(d.suback().await, vec![1]);
    d.subscribe("acme/dev-ov/+", 0).await;
    assert_eq!(d.suback().await, vec![0]);
    d.publish("acme/dev-ov/x", 1, b"once".to_vec()).await;
    // One copy per session (MQTT 5 allows one delivery for overlapping subscriptions), at the
    // highest granted QoS.
    assert_eq!(
        publishes_within(&mut d, Duration::from_secs(2)).await,
        vec![("acme/dev-ov/x".to_string(), b"once".to_vec())]
    );
    d.disconnect().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn overlapping_subscriptions_v3() {
    overlapping_subscriptions(Version::V3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn overlapping_subscriptions_v5() {
    overlapping_subscriptions(Version::V5).await;
}

async fn takeover(v: Version) {
    let s = TestServer::start();
    let a = provision(&s, v, "acme", "dev-to", json!({})).await;
    let mut first = op_connect_as(&s, v, &a).await;
    wait_connection(&s, "acme", "dev-to", ConnectionStatus::Connected).await;
    first.subscribe("acme/dev-to/#", 1).await;
    assert_eq!(first.suback().await, vec![1]);

    let mut second = op_connect_as(&s, v, &a).await;
    assert!(
        first.closed(Duration::from_secs(5)).await,
        "the first session is disconnected"
    );
    // The first session's end must not mark the device disconnected.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        connection_status(&s, "acme", "dev-to"),
        Some(ConnectionStatus::Connected)
    );
    let (_, body) = get(&s, "/api/v1/accounts/acme/devices/dev-to");
    assert_eq!(body["connection"], "CONNECTED", "{body}");

    // The first session's subscriptions are gone; the second works on its own.
    second.subscribe("acme/dev-to/#", 1).await;
    assert_eq!(second.suback().await, vec![1]);
    second.publish("acme/dev-to/x", 1, b"2".to_vec()).await;
    assert_eq!(
        publishes_within(&mut second, Duration::from_secs(2)).await,
        vec![("acme/dev-to/x".to_string(), b"2".to_vec())]
    );
    second.disconnect().await;
    wait_connection(&s, "acme", "dev-to", ConnectionStatus::Disconnected).await;
    first.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn takeover_v3() {
    takeover(Version::V3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn takeover_v5() {
    takeover(Version::V5).await;
}
