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
    assert_eq!(e["protocol"], "3.1.1");
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
