//! Kura-native provisioning end to end (PROTOCOL.md 8.1): an unmodified Kura device
//! (tests/common/kura.rs) whose MqttDataTransport points at the provisioning endpoint with the
//! provision credentials connects, publishes its BIRTH, is answered with a CONF-V1 PUT of its
//! new identity and additional configuration, applies it, and reconnects to the operational
//! endpoint by itself; and each way that fails.

mod common;

use std::time::Duration;

use common::kura::{KuraDevice, Transport};
use common::*;
use serde_json::{Value, json};

const PA: &str = "provision";
const PASSWORD: &str = "provision-pw-1";

const ADDITIONAL: &str = concat!(
    r#"<configurations><configuration><id>org.eclipse.kura.clock.ClockService</id><properties>"#,
    r#"<property name="clock.ntp.host" array="false" encrypted="false" type="String"><value>ntp.acme.example</value></property>"#,
    r#"</properties></configuration>"#,
    r#"<configuration><id>org.eclipse.kura.core.data.transport.mqtt.MqttDataTransport</id><properties>"#,
    r#"<property name="keep-alive" array="false" encrypted="false" type="Integer"><value>45</value></property>"#,
    r#"</properties></configuration></configurations>"#
);

fn requests(account: &str) -> String {
    format!("/api/v1/accounts/{account}/provision-requests")
}

/// A provision request for `cid` in `account` pointing devices at `s`'s operational endpoint.
fn request(s: &TestServer, account: &str, cid: &str, extra: Value) -> Value {
    let _ = post(s, "/api/v1/accounts", &json!({ "name": account }));
    let mut body = request_body(cid, &format!("fleet-{account}"), PASSWORD);
    body["brokerUrl"] = json!(format!("mqtt://{}", s.operational_addr()));
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    create_request(s, account, body)
}

/// The device as its maker set it up: MqttDataTransport at the provisioning endpoint.
fn kura_device(s: &TestServer, account: &str, cid: &str, key: Option<&str>) -> KuraDevice {
    KuraDevice::launch(
        Transport::new(
            s.provisioning_addr(),
            PA,
            cid,
            &format!("fleet-{account}"),
            PASSWORD,
        ),
        key,
    )
}

fn executions(s: &TestServer, account: &str, id: &str) -> Vec<Value> {
    let (status, body) = get(s, &format!("{}/{id}/executions", requests(account)));
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

fn execution_log(s: &TestServer, account: &str, id: &str, execution: &Value) -> Vec<String> {
    let path = format!(
        "{}/{id}/executions/{}",
        requests(account),
        execution["id"].as_str().unwrap()
    );
    let (status, body) = get(s, &path);
    assert_eq!(status, 200, "{body}");
    body["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect()
}

fn status_of(s: &TestServer, account: &str, id: &str) -> String {
    let (_, body) = get(s, &format!("{}/{id}", requests(account)));
    body["status"].as_str().unwrap().to_string()
}

/// Waits for the request's only execution to end; returns it with its log.
async fn ended(s: &TestServer, account: &str, id: &str) -> (Value, Vec<String>) {
    let e = eventually(|| {
        executions(s, account, id)
            .into_iter()
            .find(|e| e["outcome"] != "RUNNING")
    })
    .await;
    let log = execution_log(s, account, id, &e);
    (e, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmodified_kura_device_provisions_itself_and_reconnects_to_its_account() {
    let s = TestServer::start();
    let r = request(
        &s,
        "acme",
        "kura-1",
        json!({"generateActivationKey": true, "additionalConfiguration": ADDITIONAL}),
    );
    let id = r["id"].as_str().unwrap();
    let key = r["activationKey"].as_str().unwrap();
    let device = kura_device(&s, "acme", "kura-1", Some(key));
    let operational = format!("mqtt://{}", s.operational_addr());

    // Its BIRTH on the provisioning endpoint starts the exchange; the PUT's reply completes
    // it; a second later the device applies the settings and is back, in its account.
    device
        .wait("a BIRTH in acme on the operational endpoint", |st| {
            st.births
                .iter()
                .any(|(a, url)| a == "acme" && *url == operational)
        })
        .await;
    let (e, log) = ended(&s, "acme", id).await;
    assert_eq!(e["outcome"], "COMPLETED", "{log:?}");
    assert_eq!(e["provisioningProtocol"], "kura");
    assert_eq!(e["protocol"], "kura");
    assert_eq!(e["mqttVersion"], "3.1.1");
    assert!(
        log[0].starts_with("Kura-native exchange started on BIRTH"),
        "{log:?}"
    );
    assert_eq!(
        log.last().unwrap(),
        "the device answered the CONF-V1 PUT with 200"
    );
    assert_eq!(status_of(&s, "acme", id), "COMPLETED");
    assert_eq!(device.state.lock().unwrap().births[0].0, PA);

    // What it received: Kura's snapshot form with its identity and the additional configuration.
    let put = device.state.lock().unwrap().puts[0].clone();
    assert!(
        put.starts_with(
            r#"<?xml version="1.0" encoding="UTF-8"?><esf:configurations xmlns:esf="http://eurotech.com/esf/2.0""#
        ),
        "{put}"
    );
    for fragment in [
        r#"<esf:configuration pid="org.eclipse.kura.core.data.transport.mqtt.MqttDataTransport">"#,
        r#"<esf:property array="false" encrypted="false" name="password" type="Password">"#,
        r#"<esf:property array="false" encrypted="false" name="keep-alive" type="Integer">"#,
        "<esf:value>45</esf:value>",
        r#"<esf:configuration pid="org.eclipse.kura.clock.ClockService">"#,
        "<esf:value>ntp.acme.example</esf:value>",
        "<esf:value>kura-1@acme</esf:value>",
    ] {
        assert!(put.contains(fragment), "{fragment} in {put}");
    }
    let t = device.transport();
    assert_eq!(
        (
            t.broker_url.as_str(),
            t.account.as_str(),
            t.username.as_str()
        ),
        (operational.as_str(), "acme", "kura-1@acme")
    );
    // The execution sees the device arrive with its new identity (PROTOCOL.md 6.3).
    eventually(|| {
        executions(&s, "acme", id)[0]["operationalConnectedOn"]
            .as_str()
            .map(str::to_string)
    })
    .await;
    let (_, device_entry) = get(&s, "/api/v1/accounts/acme/devices/kura-1");
    assert_eq!(device_entry["connection"], "CONNECTED", "{device_entry}");

    // The closed request refuses the provision credentials from now on (PROTOCOL.md 2).
    let again = kura_device(&s, "acme", "kura-1", Some(key));
    again.wait("a refused CONNECT", |st| st.refused > 0).await;
    assert!(again.state.lock().unwrap().births.is_empty());
    // Recorded as a REJECTED attempt (PROTOCOL.md 2), never as another exchange.
    let all = executions(&s, "acme", id);
    assert_eq!(all[0]["outcome"], "COMPLETED");
    assert!(
        all[1..].iter().all(|e| e["outcome"] == "REJECTED"),
        "{all:?}"
    );
    again.stop().await;
    device.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_birth_without_the_right_activation_key_fails_and_nothing_is_sent() {
    let s = TestServer::start();
    for (cid, sent, reason) in [
        (
            "kura-nokey",
            None,
            "failed with 403: activation key missing",
        ),
        (
            "kura-badkey",
            Some("not-the-key"),
            "failed with 403: activation key wrong",
        ),
    ] {
        let r = request(&s, "acme", cid, json!({"generateActivationKey": true}));
        let id = r["id"].as_str().unwrap();
        let device = kura_device(&s, "acme", cid, sent);
        let (e, log) = ended(&s, "acme", id).await;
        assert_eq!(e["outcome"], "FAILED");
        assert_eq!(e["provisioningProtocol"], "kura");
        assert_eq!(e["protocol"], "kura");
        assert_eq!(log.last().unwrap(), reason);
        assert_eq!(status_of(&s, "acme", id), "FAILED");
        // Nothing was sent: no PUT, and the device stays on the provisioning endpoint.
        tokio::time::sleep(Duration::from_millis(300)).await;
        {
            let st = device.state.lock().unwrap();
            assert!(st.puts.is_empty());
            assert!(st.births.iter().all(|(a, _)| a == PA));
        }
        let (_, users) = get(&s, "/api/v1/accounts/acme/users");
        assert!(
            !users.to_string().contains(&format!("{cid}@acme")),
            "{users}"
        );
        device.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_reply_a_disconnect_or_silence_fails_and_the_device_retries_with_a_new_password() {
    let s = TestServer::start_with(&[("FLEETGATE_PROVISIONING_REPLY_TIMEOUT", "2")]);
    let r = request(&s, "acme", "kura-2", json!({}));
    let id = r["id"].as_str().unwrap();

    // An error reply: FAILED, and the device keeps its settings.
    let device = kura_device(&s, "acme", "kura-2", None);
    device.state.lock().unwrap().refuse_puts = true;
    let (e, log) = ended(&s, "acme", id).await;
    assert_eq!(e["outcome"], "FAILED");
    assert_eq!(
        log.last().unwrap(),
        "the device answered the CONF-V1 PUT with 500"
    );
    assert_eq!(device.transport().account, PA);
    device.stop().await;

    // No reply within provisioning.reply_timeout (the device's own reply to an unknown
    // request id is ignored, as is one from another client).
    let device = kura_device(&s, "acme", "kura-2", None);
    device.state.lock().unwrap().mute = true;
    let second = eventually(|| {
        let all = executions(&s, "acme", id);
        (all.len() == 2 && all[1]["outcome"] != "RUNNING").then(|| all[1].clone())
    })
    .await;
    assert_eq!(second["outcome"], "FAILED");
    assert_eq!(
        execution_log(&s, "acme", id, &second).last().unwrap(),
        "no CONF-V1 reply within provisioning.reply_timeout"
    );
    device.stop().await;

    // A disconnect before the reply.
    let device = kura_device(&s, "acme", "kura-2", None);
    device.state.lock().unwrap().mute = true;
    device.wait("a BIRTH", |st| !st.births.is_empty()).await;
    eventually(|| (executions(&s, "acme", id).len() == 3).then_some(())).await;
    device.stop().await;
    let third = eventually(|| {
        let all = executions(&s, "acme", id);
        (all[2]["outcome"] != "RUNNING").then(|| all[2].clone())
    })
    .await;
    assert_eq!(third["outcome"], "FAILED");
    assert_eq!(
        execution_log(&s, "acme", id, &third).last().unwrap(),
        "the device disconnected before acknowledging the reply"
    );

    // The window is open: the device retries, and its new password is not an old one.
    let device = kura_device(&s, "acme", "kura-2", None);
    device
        .wait("a BIRTH in acme", |st| {
            st.births.iter().any(|(a, _)| a == "acme")
        })
        .await;
    assert_eq!(status_of(&s, "acme", id), "COMPLETED");
    let puts = device.state.lock().unwrap().puts.clone();
    assert_eq!(puts.len(), 1);
    assert_eq!(executions(&s, "acme", id).len(), 4);
    device.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conf_replies_from_another_client_or_for_an_unknown_request_are_ignored() {
    let s = TestServer::start_with(&[("FLEETGATE_PROVISIONING_REPLY_TIMEOUT", "3")]);
    let r = request(&s, "acme", "kura-3", json!({}));
    let id = r["id"].as_str().unwrap();
    let _ = request(&s, "acme", "intruder", json!({}));

    let device = kura_device(&s, "acme", "kura-3", None);
    device.state.lock().unwrap().mute = true;
    device.wait("a BIRTH", |st| !st.births.is_empty()).await;
    eventually(|| (executions(&s, "acme", id).len() == 1).then_some(())).await;

    // Another provisioning session answers "200" on the requester's reply topic, for ids it
    // can guess (it cannot read the device's request topics, so not the real one).
    let intruder = Device::connect(Connect {
        version: Version::V3,
        addr: s.provisioning_addr(),
        client_id: "intruder",
        username: "fleet-acme",
        password: PASSWORD,
        manual_acks: false,
    })
    .await
    .unwrap();
    let ok = fleetgate_kura::Payload::new()
        .with_i32("response.code", 200)
        .encode();
    for rid in ["0", "1", "unknown"] {
        intruder
            .publish(
                &format!("$EDC/{PA}/fleetgate/CONF-V1/REPLY/{rid}"),
                1,
                ok.clone(),
            )
            .await;
    }
    let (e, log) = ended(&s, "acme", id).await;
    assert_eq!(e["outcome"], "FAILED", "{log:?}");
    assert_eq!(
        log.last().unwrap(),
        "no CONF-V1 reply within provisioning.reply_timeout"
    );
    assert_eq!(status_of(&s, "acme", id), "FAILED");
    intruder.disconnect().await;
    device.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Moves (PROTOCOL.md 8.2).

/// A Kura device enrolled Kura-natively into `account` of `s`, connected there.
async fn enrolled(s: &TestServer, account: &str, cid: &str) -> KuraDevice {
    request(s, account, cid, json!({}));
    let device = kura_device(s, account, cid, None);
    let operational = format!("mqtt://{}", s.operational_addr());
    device
        .wait("enrolled", |st| {
            st.births
                .iter()
                .any(|(a, url)| a == account && *url == operational)
        })
        .await;
    device
}

/// Runs the `fleetgate` CLI against `s` with the admin token; its JSON output.
fn cli(s: &TestServer, args: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetgate"))
        .env_remove("FLEETGATE_PROVISION_PASSWORD")
        .args(args)
        .args(["--api", &s.admin_url(), "--token", s.admin_token()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn move_path(account: &str, cid: &str) -> String {
    format!("/api/v1/accounts/{account}/devices/{cid}/move")
}

/// Waits for the device's move to end; returns it.
async fn move_ended(s: &TestServer, account: &str, cid: &str) -> Value {
    eventually(|| {
        let (status, m) = get(s, &move_path(account, cid));
        assert_eq!(status, 200, "{m}");
        matches!(m["status"].as_str(), Some("COMPLETED" | "FAILED")).then_some(m)
    })
    .await
}

fn users(s: &TestServer, account: &str) -> Vec<Value> {
    let (_, body) = get(s, &format!("/api/v1/accounts/{account}/users"));
    body["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_to_another_account_reprovisions_the_device_there_and_retires_the_source() {
    let s = TestServer::start();
    let device = enrolled(&s, "acme", "kura-m").await;
    let _ = post(&s, "/api/v1/accounts", &json!({ "name": "beta" }));
    // Started with the CLI, as an operator would.
    let additional = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(additional.path(), ADDITIONAL).unwrap();
    let operational_url = format!("mqtt://{}", s.operational_addr());
    let started = cli(
        &s,
        &[
            "device",
            "move",
            "kura-m",
            "--account",
            "acme",
            "--to-account",
            "beta",
            "--username",
            "fleet-beta",
            "--password",
            PASSWORD,
            "--broker-url",
            &operational_url,
            "--additional-configuration",
            additional.path().to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(started["status"], "PENDING");
    let request_id = started["provisionRequestId"].as_str().unwrap().to_string();

    // The device goes through the provisioning endpoint into beta, by itself.
    let operational = format!("mqtt://{}", s.operational_addr());
    device
        .wait("a BIRTH in beta", |st| {
            st.births
                .iter()
                .any(|(a, url)| a == "beta" && *url == operational)
        })
        .await;
    let m = move_ended(&s, "acme", "kura-m").await;
    assert_eq!(m["status"], "COMPLETED", "{m}");
    assert_eq!(m["targetAccount"], "beta");
    let log: Vec<&str> = m["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(
        log.iter()
            .any(|l| l.starts_with("the device acknowledged the CONF-V1 PUT")),
        "{log:?}"
    );
    assert!(!m.to_string().contains(PASSWORD), "no secret in a move");
    let shown = cli(
        &s,
        &[
            "device",
            "move",
            "kura-m",
            "--account",
            "acme",
            "--status",
            "--json",
        ],
    );
    assert_eq!(shown["status"], "COMPLETED");

    // Target enrolled with protocol kura; source user deleted, source entry MOVED.
    let (e, _) = ended(&s, "beta", &request_id).await;
    assert_eq!(e["outcome"], "COMPLETED");
    assert_eq!(e["provisioningProtocol"], "kura");
    assert_eq!(e["protocol"], "kura");
    assert!(
        users(&s, "acme")
            .iter()
            .all(|u| u["username"] != "kura-m@acme")
    );
    assert!(
        users(&s, "beta")
            .iter()
            .any(|u| u["username"] == "kura-m@beta")
    );
    let (_, source) = get(&s, "/api/v1/accounts/acme/devices/kura-m");
    assert_eq!(source["status"], "MOVED", "{source}");
    assert_eq!(source["movedTo"], "beta");
    let t = device.transport();
    assert_eq!(
        (t.account.as_str(), t.username.as_str()),
        ("beta", "kura-m@beta")
    );
    device.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_where_the_client_id_has_an_open_request_is_409_and_a_silent_device_stays() {
    // `device_management` has an underscore in its name, which the FLEETGATE_* environment
    // cannot reach: the timeout comes from a configuration file.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "[device_management]\ntimeout = 2.0\n").unwrap();
    let s = TestServer::start_with(&[("FLEETGATE_CONFIG", file.path().to_str().unwrap())]);
    let device = enrolled(&s, "acme", "kura-s").await;
    let _ = post(&s, "/api/v1/accounts", &json!({ "name": "beta" }));
    let mut body = request_body("kura-s", "fleet-beta", PASSWORD);
    body["targetAccount"] = json!("beta");

    // Another open request for the client ID in the instance: 409, and nothing recorded.
    let other = request(&s, "gamma", "kura-s", json!({}));
    let (status, problem) = post(&s, &move_path("acme", "kura-s"), &body);
    assert_eq!(status, 409, "{problem}");
    assert_eq!(get(&s, &move_path("acme", "kura-s")).0, 404);
    let path = format!("{}/{}", requests("gamma"), other["id"].as_str().unwrap());
    assert_eq!(call(&s, "DELETE", &path, None).0, 204);

    // A device that never answers (not Kura-capable): FAILED after the timeout; it stays.
    device.state.lock().unwrap().mute = true;
    let (status, started) = post(&s, &move_path("acme", "kura-s"), &body);
    assert_eq!(status, 202, "{started}");
    let m = move_ended(&s, "acme", "kura-s").await;
    assert_eq!(m["status"], "FAILED", "{m}");
    let last = m["log"].as_array().unwrap().last().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(last.contains("did not answer the CONF-V1 PUT"), "{last}");
    let (_, source) = get(&s, "/api/v1/accounts/acme/devices/kura-s");
    assert_eq!(source["status"], "ENABLED");
    assert_eq!(source["connection"], "CONNECTED");
    assert!(
        users(&s, "acme")
            .iter()
            .any(|u| u["username"] == "kura-s@acme")
    );
    // The request made for the failed move is gone: the client ID may be moved again.
    let (_, beta) = get(&s, &requests("beta"));
    assert!(beta["items"].as_array().unwrap().is_empty(), "{beta}");
    assert_eq!(device.transport().account, "acme");
    device.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_to_another_instance_disables_the_source_once_the_device_left() {
    let s = TestServer::start();
    let other = TestServer::start();
    let device = enrolled(&s, "acme", "kura-x").await;
    // The request waits on the other instance.
    let r = request(&other, "remote", "kura-x", json!({}));
    let (status, started) = post(
        &s,
        &move_path("acme", "kura-x"),
        &json!({"targetInstance": {
            "provisioningUrl": format!("mqtt://{}", other.provisioning_addr()),
            "provisioningAccount": PA,
            "username": "fleet-remote",
            "password": PASSWORD,
        }}),
    );
    assert_eq!(status, 202, "{started}");
    let there = format!("mqtt://{}", other.operational_addr());
    device
        .wait("a BIRTH on the other instance", |st| {
            st.births
                .iter()
                .any(|(a, url)| a == "remote" && *url == there)
        })
        .await;
    let (e, _) = ended(&other, "remote", r["id"].as_str().unwrap()).await;
    assert_eq!(e["outcome"], "COMPLETED");
    let m = move_ended(&s, "acme", "kura-x").await;
    assert_eq!(m["status"], "COMPLETED", "{m}");
    assert_eq!(m["targetInstance"]["username"], "fleet-remote");
    assert!(m["targetInstance"].get("password").is_none());
    let (_, source) = get(&s, "/api/v1/accounts/acme/devices/kura-x");
    assert_eq!(source["status"], "MOVED");
    assert_eq!(
        source["movedTo"],
        format!("mqtt://{}", other.provisioning_addr())
    );
    let user = users(&s, "acme")
        .into_iter()
        .find(|u| u["username"] == "kura-x@acme")
        .expect("disabled, not deleted");
    assert_eq!(user["enabled"], false);
    device.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_a_restart_interrupts_fails_and_its_request_goes() {
    let mut s = TestServer::start();
    let device = enrolled(&s, "acme", "kura-r").await;
    device.stop().await;
    let _ = post(&s, "/api/v1/accounts", &json!({ "name": "beta" }));
    let mut body = request_body("kura-r", "fleet-beta", PASSWORD);
    body["targetAccount"] = json!("beta");
    // The device is away: the move waits, PENDING.
    let (status, started) = post(&s, &move_path("acme", "kura-r"), &body);
    assert_eq!(status, 202, "{started}");
    s.restart();
    let (_, m) = get(&s, &move_path("acme", "kura-r"));
    assert_eq!(m["status"], "FAILED", "{m}");
    let last = m["log"].as_array().unwrap().last().unwrap()["message"].clone();
    assert_eq!(
        last,
        "Fleetgate restarted while the move was PENDING: it is not resumed, and the device stays where it is"
    );
    let (_, beta) = get(&s, &requests("beta"));
    assert!(beta["items"].as_array().unwrap().is_empty(), "{beta}");
    let (_, source) = get(&s, "/api/v1/accounts/acme/devices/kura-r");
    assert_eq!(source["status"], "ENABLED");
}
