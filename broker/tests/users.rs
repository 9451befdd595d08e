//! Account users end to end (API.md "Account users", PROTOCOL.md 6.1): the API's rules, and
//! applications on the operational endpoint with real MQTT clients (3.1.1 and 5.0) reading a
//! device's telemetry and BIRTH, managing it over Kura request/reply, and every refusal.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const USERS: &str = "/api/v1/accounts/acme/users";
const APP_PASSWORD: &str = "dashboard passphrase";

fn not_authorized(v: Version) -> u8 {
    if v == Version::V3 { 0x05 } else { 0x87 }
}

fn bad_credentials(v: Version) -> u8 {
    if v == Version::V3 { 0x04 } else { 0x86 }
}

fn refused_filter(v: Version) -> u8 {
    if v == Version::V3 { 0x80 } else { 0x87 }
}

/// Creates account user `NAME@acme`; `password: None` lets the server generate one. Returns
/// the password to connect with.
fn app_user(s: &TestServer, name: &str, permissions: &[&str], password: Option<&str>) -> String {
    let mut body = json!({"name": name, "permissions": permissions});
    if let Some(p) = password {
        body["password"] = json!(p);
    }
    let (status, created) = post(s, USERS, &body);
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["username"], format!("{name}@acme"));
    match password {
        Some(p) => {
            assert!(created.get("password").is_none(), "{created}");
            p.to_string()
        }
        None => created["password"].as_str().unwrap().to_string(),
    }
}

/// A device `dev-1` of acme, enrolled and connected.
async fn device(s: &TestServer, v: Version) -> Device {
    let password = enroll(s, "acme", "dev-1");
    operational(s, v, "dev-1", "dev-1@acme", &password)
        .await
        .expect("the device connects")
}

async fn app(s: &TestServer, v: Version, client_id: &str, name: &str, password: &str) -> Device {
    operational(s, v, client_id, &format!("{name}@acme"), password)
        .await
        .expect("the application connects")
}

async fn data_read_receives_telemetry(v: Version) {
    let s = TestServer::start();
    let mut dev = device(&s, v).await;
    let pw = app_user(
        &s,
        "dash",
        &["broker:connect", "data:read"],
        Some(APP_PASSWORD),
    );
    let mut dash = app(&s, v, "dash-1", "dash", &pw).await;
    dash.subscribe("acme/#", 1).await;
    assert_eq!(dash.suback().await, vec![1]);
    dev.publish("acme/dev-1/temperature", 1, b"21.5".to_vec())
        .await;
    let (topic, payload) = dash
        .publish_received(Duration::from_secs(5))
        .await
        .expect("the application gets the telemetry");
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("acme/dev-1/temperature", b"21.5".as_slice())
    );
    // data:write reaches the device's topics; data:read alone does not.
    dev.subscribe("acme/dev-1/#", 0).await;
    assert_eq!(dev.suback().await, vec![0]);
    let pw = app_user(&s, "control", &["broker:connect", "data:write"], None);
    let control = app(&s, v, "control-1", "control", &pw).await;
    control.publish("acme/dev-1/cmd", 0, b"on".to_vec()).await;
    let (topic, payload) = dev
        .publish_received(Duration::from_secs(5))
        .await
        .expect("the device gets the command");
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("acme/dev-1/cmd", b"on".as_slice())
    );
    dash.publish("acme/dev-1/cmd", 0, b"x".to_vec()).await;
    assert!(
        dev.publish_received(Duration::from_millis(500))
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn data_read_receives_telemetry_v3() {
    data_read_receives_telemetry(Version::V3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn data_read_receives_telemetry_v5() {
    data_read_receives_telemetry(Version::V5).await;
}

async fn device_read_receives_birth(v: Version) {
    let s = TestServer::start();
    let dev = device(&s, v).await;
    let pw = app_user(&s, "fleet-view", &["broker:connect", "device:read"], None);
    let mut view = app(&s, v, "view-1", "fleet-view", &pw).await;
    view.subscribe("$EDC/acme/+/MQTT/#", 1).await;
    assert_eq!(view.suback().await, vec![1]);
    let birth = fleetgate_kura::Payload::new()
        .with_str("model_name", "Raspberry Pi 4")
        .with_str("kura_version", "5.4.0")
        .encode();
    dev.publish("$EDC/acme/dev-1/MQTT/BIRTH", 1, birth.clone())
        .await;
    let (topic, payload) = view
        .publish_received(Duration::from_secs(5))
        .await
        .expect("the application gets the BIRTH");
    assert_eq!(topic, "$EDC/acme/dev-1/MQTT/BIRTH");
    assert_eq!(payload, birth);
}

#[tokio::test(flavor = "multi_thread")]
async fn device_read_receives_birth_v3() {
    device_read_receives_birth(Version::V3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn device_read_receives_birth_v5() {
    device_read_receives_birth(Version::V5).await;
}

async fn device_manage_request_reply(v: Version) {
    let s = TestServer::start();
    let mut dev = device(&s, v).await;
    dev.subscribe("$EDC/acme/dev-1/#", 1).await;
    assert_eq!(dev.suback().await, vec![1]);
    let pw = app_user(&s, "ops", &["broker:connect", "device:manage"], None);
    let mut ops = app(&s, v, "ops-1", "ops", &pw).await;
    ops.subscribe("$EDC/acme/ops-1/#", 1).await;
    assert_eq!(ops.suback().await, vec![1]);
    let request = fleetgate_kura::Payload::new()
        .with_str("request.id", "r-1")
        .with_str("requester.client.id", "ops-1")
        .with_str("command.command", "uname")
        .encode();
    ops.publish("$EDC/acme/dev-1/CMD-V1/EXEC/command", 1, request.clone())
        .await;
    let (topic, payload) = dev
        .publish_received(Duration::from_secs(5))
        .await
        .expect("the device gets the request");
    assert_eq!(topic, "$EDC/acme/dev-1/CMD-V1/EXEC/command");
    assert_eq!(payload, request);
    // The device answers the requester, as Kura does (a topic outside its own namespace).
    let reply = fleetgate_kura::Payload::new()
        .with_i32("response.code", 200)
        .with_str("command.stdout", "Linux")
        .encode();
    dev.publish("$EDC/acme/ops-1/CMD-V1/REPLY/r-1", 0, reply.clone())
        .await;
    let (topic, payload) = ops
        .publish_received(Duration::from_secs(5))
        .await
        .expect("the application gets the reply");
    assert_eq!(topic, "$EDC/acme/ops-1/CMD-V1/REPLY/r-1");
    assert_eq!(payload, reply);
}

#[tokio::test(flavor = "multi_thread")]
async fn device_manage_request_reply_v3() {
    device_manage_request_reply(Version::V3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn device_manage_request_reply_v5() {
    device_manage_request_reply(Version::V5).await;
}

async fn refusals(v: Version) {
    let s = TestServer::start();
    let dev_pw = enroll(&s, "acme", "dev-1");
    enroll(&s, "other", "dev-9");
    let all = [
        "broker:connect",
        "data:read",
        "data:write",
        "device:read",
        "device:manage",
    ];
    let pw = app_user(&s, "root", &all, Some(APP_PASSWORD));
    app_user(&s, "mute", &["data:read"], Some(APP_PASSWORD));
    app_user(&s, "off", &["broker:connect"], Some(APP_PASSWORD));
    let (status, body) = call(
        &s,
        "PATCH",
        &format!("{USERS}/off@acme"),
        Some(&json!({"enabled": false})),
    );
    assert_eq!(status, 200, "{body}");

    // CONNECT: a device's client ID is never an application's; credentials; rules.
    for (client_id, username, password, code) in [
        ("dev-1", "root@acme", APP_PASSWORD, not_authorized(v)),
        ("app-1", "root@acme", "wrong passphrase", bad_credentials(v)),
        ("app-1", "nobody@acme", APP_PASSWORD, bad_credentials(v)),
        ("app-1", "mute@acme", APP_PASSWORD, not_authorized(v)),
        ("app-1", "off@acme", APP_PASSWORD, not_authorized(v)),
    ] {
        assert_eq!(
            operational(&s, v, client_id, username, password)
                .await
                .err(),
            Some(code),
            "{client_id} {username}"
        );
    }
    // The device itself still connects with its client ID.
    operational(&s, v, "dev-1", "dev-1@acme", &dev_pw)
        .await
        .expect("the device connects");

    // SUBSCRIBE: nothing crosses accounts, and no wildcard reaches everything.
    let mut root = app(&s, v, "app-1", "root", &pw).await;
    for filter in [
        "#",
        "+/#",
        "$EDC/#",
        "other/#",
        "$EDC/other/+/MQTT/#",
        "$EDC/acme/#",
        "$EDC/acme/app-2/#",
    ] {
        root.subscribe(filter, 1).await;
        assert_eq!(root.suback().await, vec![refused_filter(v)], "{filter}");
    }
    root.subscribe("acme/#", 1).await;
    assert_eq!(root.suback().await, vec![1]);
    // PUBLISH outside: 5.0 answers 0x87, 3.1.1 closes the connection.
    root.publish("other/dev-9/cmd", 1, b"x".to_vec()).await;
    if v == Version::V5 {
        loop {
            match root.next(Duration::from_secs(5)).await {
                Some(Seen::PubAck(code)) => {
                    assert_eq!(code, 0x87);
                    break;
                }
                Some(Seen::Disconnected) | None => panic!("no PUBACK 0x87"),
                Some(_) => {}
            }
        }
    } else {
        assert!(root.closed(Duration::from_secs(5)).await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_v3() {
    refusals(Version::V3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_v5() {
    refusals(Version::V5).await;
}

/// The broker ends the sessions `Hooks::revocations` names; the API side of it (the
/// revocation after the commit) is tested below.
#[tokio::test(flavor = "multi_thread")]
async fn disabling_a_user_closes_its_session() {
    let s = TestServer::start();
    create_account(&s, "acme");
    let pw = app_user(
        &s,
        "dash",
        &["broker:connect", "data:read"],
        Some(APP_PASSWORD),
    );
    let mut dash = app(&s, Version::V5, "dash-1", "dash", &pw).await;
    let (status, _) = call(
        &s,
        "PATCH",
        &format!("{USERS}/dash@acme"),
        Some(&json!({"enabled": false})),
    );
    assert_eq!(status, 200);
    assert!(dash.closed(Duration::from_secs(5)).await);
    assert_eq!(
        operational(&s, Version::V5, "dash-1", "dash@acme", &pw)
            .await
            .err(),
        Some(0x87)
    );
}

#[test]
fn api_rules() {
    let s = TestServer::start();
    enroll(&s, "acme", "dev-1");
    let mut revoked = s.app().hooks.revocations();

    // Create: a chosen password is never echoed; a generated one is, once, by PROTOCOL.md 4.4.
    app_user(
        &s,
        "dash",
        &["broker:connect", "data:read"],
        Some(APP_PASSWORD),
    );
    let generated = app_user(&s, "gen", &["broker:connect"], None);
    assert!(generated.len() >= 20);
    assert!(generated.bytes().any(|b| b.is_ascii_digit()));
    for (body, status, field) in [
        (json!({"name": "dash"}), 409, "name"),
        (json!({"name": "dev-1"}), 409, "name"),
        (json!({"name": "a@b"}), 422, "name"),
        (json!({"name": "x", "password": "short"}), 422, "password"),
        (
            json!({"name": "x", "permissions": ["root"]}),
            422,
            "permissions",
        ),
        (
            json!({"name": "x", "permissions": "data:read"}),
            422,
            "permissions",
        ),
    ] {
        let (got, problem) = post(&s, USERS, &body);
        assert_eq!(got, status, "{body} {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    // A later provision request whose CID@ACCOUNT is an account user's username: 409.
    let (status, problem) = post(
        &s,
        "/api/v1/accounts/acme/provision-requests",
        &request_body("dash", "fleet-acme", "fleet-password-1"),
    );
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "clientId");

    // The listing: both kinds, never a hash or a password.
    let (status, list) = get(&s, USERS);
    assert_eq!(status, 200);
    let kinds: Vec<(String, String, bool)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["username"].as_str().unwrap().to_string(),
                u["kind"].as_str().unwrap().to_string(),
                u["enabled"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("dev-1@acme".to_string(), "DEVICE".to_string(), true),
            ("dash@acme".to_string(), "ACCOUNT".to_string(), true),
            ("gen@acme".to_string(), "ACCOUNT".to_string(), true),
        ]
    );
    let text = list.to_string();
    for secret in [
        "argon2",
        "hs256",
        "passwordHash",
        APP_PASSWORD,
        generated.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let (status, one) = get(&s, &format!("{USERS}/dash%40acme"));
    assert_eq!(status, 200);
    assert_eq!(one["permissions"], json!(["broker:connect", "data:read"]));
    assert_eq!(one["reservedFor"], Value::Null);
    assert!(one.get("password").is_none());
    let _ = post(&s, "/api/v1/accounts", &json!({"name": "other"}));
    assert_eq!(get(&s, "/api/v1/accounts/other/users/dash@acme").0, 404);

    // PATCH: adding a permission keeps sessions; removing one, or disabling, ends them.
    let patch = |who: &str, body: Value| call(&s, "PATCH", &format!("{USERS}/{who}"), Some(&body));
    let (status, changed) = patch(
        "dash@acme",
        json!({"permissions": ["broker:connect", "data:read", "device:read"]}),
    );
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        changed["permissions"],
        json!(["broker:connect", "data:read", "device:read"])
    );
    assert!(revoked.try_recv().is_err(), "nothing to end");
    assert_eq!(patch("dash@acme", json!({"enabled": false})).0, 200);
    assert_eq!(revoked.try_recv().unwrap().as_ref(), "dash@acme");
    assert_eq!(patch("gen@acme", json!({"permissions": []})).0, 200);
    assert_eq!(revoked.try_recv().unwrap().as_ref(), "gen@acme");
    assert_eq!(
        patch("dash@acme", json!({"password": "another passphrase"})).0,
        200
    );
    // Device users: only enabled.
    let (status, problem) = patch("dev-1@acme", json!({"permissions": []}));
    assert_eq!(status, 422, "{problem}");
    let (status, changed) = patch("dev-1@acme", json!({"enabled": false}));
    assert_eq!((status, &changed["enabled"]), (200, &json!(false)));
    assert_eq!(revoked.try_recv().unwrap().as_ref(), "dev-1@acme");
    assert_eq!(patch("nobody@acme", json!({"enabled": false})).0, 404);

    // DELETE: account users only.
    assert_eq!(
        call(&s, "DELETE", &format!("{USERS}/dev-1@acme"), None).0,
        409
    );
    assert_eq!(
        call(&s, "DELETE", &format!("{USERS}/gen@acme"), None).0,
        204
    );
    assert_eq!(revoked.try_recv().unwrap().as_ref(), "gen@acme");
    assert_eq!(
        call(&s, "DELETE", &format!("{USERS}/gen@acme"), None).0,
        404
    );
}

#[test]
fn cli_manages_users() {
    let s = TestServer::start();
    let _ = post(&s, "/api/v1/accounts", &json!({"name": "acme"}));
    let fleetgate = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetgate"))
            .args(args)
            .args(["--api", &s.admin_url(), "--account", "acme", "--json"])
            .env("FLEETGATE_TOKEN", ADMIN_TOKEN)
            .env_remove("FLEETGATE_USER_PASSWORD")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let created = fleetgate(&[
        "user",
        "create",
        "dash",
        "--permission",
        "broker:connect",
        "--permission",
        "data:read",
    ]);
    assert_eq!(created["username"], "dash@acme");
    assert!(created["password"].as_str().unwrap().len() >= 20);
    let list = fleetgate(&["user", "list"]);
    assert_eq!(list["items"][0]["kind"], "ACCOUNT");
    let shown = fleetgate(&["user", "show", "dash@acme"]);
    assert!(shown.get("password").is_none());
    let changed = fleetgate(&["user", "update", "dash@acme", "--disable"]);
    assert_eq!(changed["enabled"], false);
    fleetgate(&["user", "delete", "dash@acme"]);
    assert_eq!(fleetgate(&["user", "list"])["items"], json!([]));
}
