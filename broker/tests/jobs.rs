//! Batch Jobs end to end (API.md "Jobs", PROTOCOL.md 7): jobs created through the admin API
//! run their steps on a device that behaves like Eclipse Kura (tests/common/kura.rs) over the
//! operational endpoint: the seed's "Device Connect" flow, retries, timeouts, timed triggers
//! on the server's injected clock, restart recovery, and bad input.

mod common;

use std::time::Duration;

use chrono::TimeZone;
use common::kura::KuraDevice;
use common::*;
use serde_json::{Value, json};

const JOBS: &str = "/api/v1/accounts/acme/jobs";

const CLOCK_XML: &str = r#"<configurations><configuration><id>org.eclipse.kura.clock.ClockService</id><properties><property name="clock.ntp.host" array="false" encrypted="false" type="String"><value>pool.ntp.org</value></property></properties></configuration></configurations>"#;

fn create_job(s: &TestServer, body: Value) -> Value {
    let (status, job) = post(s, JOBS, &body);
    assert_eq!(status, 201, "{job}");
    job
}

fn executions(s: &TestServer, job: &Value, query: &str) -> Vec<Value> {
    let (status, list) = get(
        s,
        &format!("{JOBS}/{}/executions{query}", job["id"].as_str().unwrap()),
    );
    assert_eq!(status, 200, "{list}");
    list["items"].as_array().unwrap().clone()
}

/// Waits until the job's executions satisfy `done`; returns them.
async fn executions_until(
    s: &TestServer,
    job: &Value,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    for _ in 0..300 {
        let e = executions(s, job, "");
        if done(&e) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "executions never got there: {:#}",
        json!(executions(s, job, ""))
    );
}

fn statuses(e: &[Value]) -> Vec<&str> {
    e.iter().map(|x| x["status"].as_str().unwrap()).collect()
}

fn log_text(e: &Value) -> String {
    e["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                l["level"].as_str().unwrap(),
                l["message"].as_str().unwrap()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An account with registry entry `dev-1` enrolled (identity `dev-1@acme`); its password.
fn enrolled_device(s: &TestServer) -> String {
    enroll(s, "acme", "dev-1")
}

/// `dev-1` connected and subscribed to its `$EDC` tree (ready), answering nothing by itself.
async fn listening_device(s: &TestServer, password: &str, version: Version) -> Device {
    let mut d = Device::connect(Connect {
        version,
        addr: s.operational_addr(),
        client_id: "dev-1",
        username: "dev-1@acme",
        password,
        manual_acks: false,
    })
    .await
    .unwrap();
    d.subscribe("$EDC/acme/dev-1/#", 1).await;
    assert_eq!(d.suback().await, vec![1]);
    d
}

async fn kura(s: &TestServer, password: &str) -> KuraDevice {
    KuraDevice::start(
        s.operational_addr(),
        "acme",
        "dev-1",
        "dev-1@acme",
        password,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_flow_a_device_connect_job_completes_on_the_first_operational_connection() {
    let s = TestServer::start();
    assert_eq!(
        post(&s, "/api/v1/accounts", &json!({"name": "acme"})).0,
        201
    );
    // The seed: create the device with its client ID, then the job, then the request.
    let (status, d) = post(
        &s,
        "/api/v1/accounts/acme/devices",
        &json!({"clientId": "dev-1", "displayName": "pump 1"}),
    );
    assert_eq!(status, 201, "{d}");
    let job = create_job(
        &s,
        json!({
            "name": "enable command service",
            "targets": ["dev-1"],
            "steps": [
                {"type": "configuration", "configuration": CLOCK_XML},
                {"type": "command", "command": "echo", "arguments": ["hello", "kura"]},
            ],
            "schedule": {"trigger": "DEVICE_CONNECT"},
            "maxAttempts": 3,
            "stepTimeout": 10,
        }),
    );
    assert_eq!(job["targetCounts"]["PENDING"], 1, "{job}");
    assert_eq!(job["steps"][1]["type"], "command");
    assert_eq!(job["schedule"], json!({"trigger": "DEVICE_CONNECT"}));
    assert!(job["nextFireOn"].is_null());
    let pending = executions(&s, &job, "");
    assert_eq!(statuses(&pending), ["PENDING"]);

    create_request(
        &s,
        "acme",
        request_body("dev-1", "fleet-acme", "fleet-password-1"),
    );
    let identity =
        prov_v1_exchange(&s, Version::V3, "dev-1", "fleet-acme", "fleet-password-1").await;
    assert_eq!(identity.username, "dev-1@acme");

    let device = kura(&s, &identity.password).await;
    let done = executions_until(&s, &job, |e| statuses(e) == ["COMPLETED"]).await;
    let log = log_text(&done[0]);
    assert!(
        log.contains("step 1 of 2: CONF-V1 PUT configurations answered 200"),
        "{log}"
    );
    assert!(
        log.contains("step 2 of 2: CMD-V1 EXEC command answered 200, exit code 0, stdout: \"echo hello kura\""),
        "{log}"
    );
    assert_eq!(done[0]["attempt"], 1);
    assert_eq!(done[0]["step"], 1);
    assert!(done[0]["startedOn"].is_string() && done[0]["endedOn"].is_string());
    {
        let st = device.state.lock().unwrap();
        assert_eq!(st.puts.len(), 1);
        assert!(
            st.puts[0].contains("esf:configuration pid=\"org.eclipse.kura.clock.ClockService\"")
        );
        assert_eq!(st.commands, vec![vec!["echo", "hello", "kura"]]);
    }
    let (_, j) = get(&s, &format!("{JOBS}/{}", job["id"].as_str().unwrap()));
    assert_eq!(j["targetCounts"]["COMPLETED"], 1, "{j}");

    // Completed once: a reconnection runs nothing more.
    device.stop().await;
    let again = kura(&s, &identity.password).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(statuses(&executions(&s, &job, "")), ["COMPLETED"]);
    assert!(again.state.lock().unwrap().commands.is_empty());
    again.stop().await;
    let metrics = ureq::get(format!("{}/metrics", s.admin_url()))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("fleetgate_job_executions_total{outcome=\"completed\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_is_retried_on_the_next_connection_until_attempts_run_out() {
    let s = TestServer::start();
    let password = enrolled_device(&s);
    // A device that subscribes (ready) and disconnects before answering: attempt 1 fails.
    let job = create_job(
        &s,
        json!({
            "name": "retry",
            "targets": ["dev-1"],
            "steps": [{"type": "command", "command": "uname", "arguments": ["-a"]}],
            "schedule": {"trigger": "DEVICE_CONNECT"},
            "maxAttempts": 2,
            "stepTimeout": 30,
        }),
    );
    let mute = listening_device(&s, &password, Version::V3).await;
    executions_until(&s, &job, |e| statuses(e) == ["RUNNING"]).await;
    mute.disconnect().await;
    let failed = executions_until(&s, &job, |e| statuses(e) == ["FAILED"]).await;
    let log = log_text(&failed[0]);
    assert!(
        log.contains("the device disconnected before replying"),
        "{log}"
    );
    assert!(
        log.contains("attempt 1 of 2, retried when the device is next ready"),
        "{log}"
    );

    // The next connection retries, as attempt 2, and the Kura device answers.
    let device = kura(&s, &password).await;
    let done = executions_until(&s, &job, |e| statuses(e) == ["FAILED", "COMPLETED"]).await;
    assert_eq!(done[1]["attempt"], 2);
    assert!(
        log_text(&done[1]).contains("exit code 0"),
        "{}",
        log_text(&done[1])
    );
    device.stop().await;

    // A step the device refuses: FAILED with its message, and no attempt beyond maxAttempts.
    let job = create_job(
        &s,
        json!({
            "name": "refused",
            "targets": ["dev-1"],
            "steps": [{"type": "command", "command": "false"}],
            "schedule": {"trigger": "DEVICE_CONNECT"},
            "maxAttempts": 2,
        }),
    );
    for n in 1..=3 {
        let device = kura(&s, &password).await;
        let want = n.min(2);
        let e = executions_until(&s, &job, |e| {
            e.len() == want && e.iter().all(|x| x["status"] == "FAILED")
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(executions(&s, &job, "").len(), want, "connection {n}");
        let log = log_text(&e[want - 1]);
        assert!(log.contains("answered 500, exit code 1"), "{log}");
        assert!(log.contains("boom"), "{log}");
        device.stop().await;
    }
    assert!(log_text(&executions(&s, &job, "")[1]).contains("no attempts left (2)"));
    let failed_only = executions(&s, &job, "?status=FAILED&clientId=dev-1");
    assert_eq!(failed_only.len(), 2);
    assert!(executions(&s, &job, "?status=COMPLETED").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_without_reply_fails_at_its_timeout_and_now_runs_on_a_connected_device() {
    let s = TestServer::start();
    let password = enrolled_device(&s);
    let device = kura(&s, &password).await;
    // NOW: the device is connected and ready, so it runs at once.
    let job = create_job(
        &s,
        json!({
            "name": "silent",
            "targets": ["dev-1"],
            "steps": [
                {"type": "request", "app": "SILENT-V1", "method": "GET", "resources": ["x"]},
                {"type": "command", "command": "never"},
            ],
            "schedule": {"trigger": "NOW"},
            "maxAttempts": 1,
            "stepTimeout": 1,
        }),
    );
    let e = executions_until(&s, &job, |e| statuses(e) == ["FAILED"]).await;
    let log = log_text(&e[0]);
    assert!(
        log.contains("step 1 of 2: SILENT-V1 GET x: no reply within 1s"),
        "{log}"
    );
    assert!(!log.contains("step 2"), "{log}");
    assert_eq!(e[0]["step"], 0);
    assert!(device.state.lock().unwrap().commands.is_empty());
    let (_, j) = get(&s, &format!("{JOBS}/{}", job["id"].as_str().unwrap()));
    assert_eq!(j["targetCounts"]["FAILED"], 1, "{j}");
    device.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_reply_fails_the_step_and_stray_replies_are_ignored_and_counted() {
    let s = TestServer::start();
    let password = enrolled_device(&s);
    let mut d = listening_device(&s, &password, Version::V5).await;
    let job = create_job(
        &s,
        json!({
            "name": "garbage",
            "targets": ["dev-1"],
            "steps": [{"type": "request", "app": "DEPLOY-V2", "method": "EXEC", "resources": ["download"], "metrics": {"dp.uri": "http://x/y.dp", "dp.install": true, "job.id": 7}}],
            "schedule": {"trigger": "NOW"},
            "maxAttempts": 1,
        }),
    );
    let (topic, payload) = d.publish_received(Duration::from_secs(10)).await.unwrap();
    assert_eq!(topic, "$EDC/acme/dev-1/DEPLOY-V2/EXEC/download");
    let request = fleetgate_kura::Payload::decode(&payload).unwrap();
    assert_eq!(request.metric_str("dp.uri"), Some("http://x/y.dp"));
    assert_eq!(request.metric_bool("dp.install"), Some(true));
    assert_eq!(request.metric_i32("job.id"), Some(7));
    let id = request.metric_str("request.id").unwrap().to_string();
    // A reply to an id nobody waits for: ignored, counted.
    let ok = fleetgate_kura::Payload::new()
        .with_i32("response.code", 200)
        .encode();
    d.publish(
        "$EDC/acme/fleetgate/DEPLOY-V2/REPLY/0123456789abcdef",
        1,
        ok,
    )
    .await;
    // The awaited reply, but not a KuraPayload.
    d.publish(
        &format!("$EDC/acme/fleetgate/DEPLOY-V2/REPLY/{id}"),
        1,
        b"\xff\xfenot protobuf".to_vec(),
    )
    .await;
    let e = executions_until(&s, &job, |e| statuses(e) == ["FAILED"]).await;
    let log = log_text(&e[0]);
    assert!(
        log.contains("DEPLOY-V2 EXEC download: malformed reply"),
        "{log}"
    );
    let metrics = ureq::get(format!("{}/metrics", s.admin_url()))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("fleetgate_device_replies_ignored_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fleetgate_job_executions_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );
    d.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_and_interval_jobs_fire_on_the_servers_clock() {
    let s = TestServer::start();
    let password = enrolled_device(&s);
    let device = kura(&s, &password).await;
    let clock = s.clock().clone();
    clock.set(chrono::Utc.with_ymd_and_hms(2026, 12, 2, 2, 59, 0).unwrap());
    let cron = create_job(
        &s,
        json!({
            "name": "nightly",
            "targets": ["dev-1"],
            "steps": [{"type": "command", "command": "nightly"}],
            "schedule": {"trigger": "CRON", "cron": "0 3 * * *"},
        }),
    );
    assert_eq!(cron["nextFireOn"], "2026-12-02T03:00:00Z", "{cron}");
    assert_eq!(cron["run"], 0);
    let interval = create_job(
        &s,
        json!({
            "name": "hourly",
            "targets": ["dev-1"],
            "steps": [{"type": "command", "command": "hourly"}],
            "schedule": {"trigger": "INTERVAL", "every": "PT1H", "startsOn": "2026-12-02T03:30:00Z"},
        }),
    );
    assert_eq!(interval["nextFireOn"], "2026-12-02T03:30:00Z", "{interval}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(executions(&s, &cron, "").is_empty(), "nothing before 03:00");

    clock.set(chrono::Utc.with_ymd_and_hms(2026, 12, 2, 3, 0, 0).unwrap());
    executions_until(&s, &cron, |e| statuses(e) == ["COMPLETED"]).await;
    assert!(executions(&s, &interval, "").is_empty());
    clock.set(chrono::Utc.with_ymd_and_hms(2026, 12, 2, 3, 30, 0).unwrap());
    executions_until(&s, &interval, |e| statuses(e) == ["COMPLETED"]).await;
    clock.set(chrono::Utc.with_ymd_and_hms(2026, 12, 2, 4, 30, 0).unwrap());
    let runs = executions_until(&s, &interval, |e| statuses(e) == ["COMPLETED", "COMPLETED"]).await;
    assert_eq!(
        (runs[0]["run"].as_u64(), runs[1]["run"].as_u64()),
        (Some(1), Some(2))
    );
    let (_, j) = get(&s, &format!("{JOBS}/{}", interval["id"].as_str().unwrap()));
    assert_eq!(j["firedOn"], "2026-12-02T04:30:00Z", "{j}");
    assert_eq!(j["nextFireOn"], "2026-12-02T05:30:00Z", "{j}");
    let (_, c) = get(&s, &format!("{JOBS}/{}", cron["id"].as_str().unwrap()));
    assert_eq!(c["run"], 1, "the cron job fired once: {c}");
    let commands = device.state.lock().unwrap().commands.clone();
    assert_eq!(
        commands,
        vec![vec!["nightly"], vec!["hourly"], vec!["hourly"]]
    );
    device.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_in_flight_at_a_restart_fails_with_a_log_line_and_is_retried() {
    let mut s = TestServer::start();
    let password = enrolled_device(&s);
    let job = create_job(
        &s,
        json!({
            "name": "long",
            "targets": ["dev-1"],
            "steps": [
                {"type": "configuration", "configuration": CLOCK_XML},
                {"type": "request", "app": "SILENT-V1", "method": "EXEC", "resources": ["wait"]},
            ],
            "schedule": {"trigger": "DEVICE_CONNECT"},
            "maxAttempts": 2,
            "stepTimeout": 3600,
        }),
    );
    let device = kura(&s, &password).await;
    executions_until(&s, &job, |e| {
        e.len() == 1 && e[0]["status"] == "RUNNING" && e[0]["step"] == 1
    })
    .await;
    // Fleetgate stops with step 2 in flight (the jobs engine stops before the connections
    // close, as a crash would leave it); the next start fails it with a log line.
    s.restart();
    drop(device);
    let e = executions(&s, &job, "");
    assert_eq!(statuses(&e), ["FAILED"], "{e:?}");
    let log = log_text(&e[0]);
    assert!(
        log.contains("step 2 was in flight when Fleetgate stopped; its outcome is unknown"),
        "{log}"
    );
    assert!(
        log.contains("step 1 of 2: CONF-V1 PUT configurations answered 200"),
        "{log}"
    );
    // Retried on the device's next connection, as attempt 2.
    let device = kura(&s, &password).await;
    let e = executions_until(&s, &job, |e| e.len() == 2 && e[1]["status"] == "RUNNING").await;
    assert_eq!(e[1]["attempt"], 2);
    device.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_jobs_are_refused_with_the_field_and_targets_can_change() {
    let s = TestServer::start();
    enrolled_device(&s);
    assert_eq!(
        post(
            &s,
            "/api/v1/accounts/acme/devices",
            &json!({"clientId": "dev-2"})
        )
        .0,
        201
    );
    let base = json!({
        "name": "j",
        "targets": ["dev-1"],
        "steps": [{"type": "command", "command": "uname"}],
        "schedule": {"trigger": "NOW"},
    });
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, field, words) in [
        (
            with("targets", json!(["nope"])),
            "targets",
            "not a registry device",
        ),
        (
            with("targets", json!(["dev-1", "dev-1"])),
            "targets",
            "twice",
        ),
        (
            with("schedule", json!({"trigger": "CRON", "cron": "0 3 * *"})),
            "schedule.cron",
            "5 fields",
        ),
        (
            with("schedule", json!({"trigger": "CRON", "cron": "99 3 * * *"})),
            "schedule.cron",
            "invalid cron",
        ),
        (
            with("schedule", json!({"trigger": "INTERVAL", "every": "P1M"})),
            "schedule.every",
            "months",
        ),
        (
            with("schedule", json!({"trigger": "INTERVAL"})),
            "schedule.every",
            "required",
        ),
        (
            with("schedule", json!({"trigger": "SOMETIMES"})),
            "schedule.trigger",
            "must be",
        ),
        (
            with(
                "steps",
                json!([{"type": "configuration", "configuration": "<configurations><configuration>"}]),
            ),
            "steps[0].configuration",
            "line",
        ),
        (
            with("steps", json!([{"type": "reboot"}])),
            "steps[0].type",
            "must be",
        ),
        (
            with(
                "steps",
                json!([{"type": "request", "app": "A/B", "method": "GET"}]),
            ),
            "steps[0].app",
            "topic level",
        ),
        (
            with(
                "steps",
                json!([{"type": "request", "app": "A", "method": "FETCH"}]),
            ),
            "steps[0].method",
            "must be",
        ),
        (with("steps", json!([])), "steps", "1 to 50"),
        (with("maxAttempts", json!(0)), "maxAttempts", "1 to 100"),
        (with("stepTimeout", json!(0)), "stepTimeout", "1 to 3600"),
        (with("name", json!("")), "name", "1 to 255"),
        (
            with(
                "targets",
                json!((0..10_001).map(|i| format!("d{i}")).collect::<Vec<_>>()),
            ),
            "targets",
            "at most 10000",
        ),
    ] {
        let (status, p) = post(&s, JOBS, &body);
        assert_eq!(status, 422, "{field}: {p}");
        let errors = p["errors"].as_array().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e["field"] == field && e["message"].as_str().unwrap().contains(words)),
            "{field} / {words}: {p}"
        );
    }
    let (list_status, list) = get(&s, JOBS);
    assert_eq!(
        (list_status, list["items"].as_array().unwrap().len()),
        (200, 0),
        "nothing created"
    );

    // Targets change: unknown ones are refused, known ones join and leave.
    let job = create_job(&s, with("schedule", json!({"trigger": "DEVICE_CONNECT"})));
    let id = job["id"].as_str().unwrap();
    let targets = format!("{JOBS}/{id}/targets");
    let (status, p) = post(&s, &targets, &json!({"add": ["ghost"]}));
    assert_eq!(status, 422, "{p}");
    let (status, j) = post(
        &s,
        &targets,
        &json!({"add": ["dev-2"], "remove": ["dev-1"]}),
    );
    assert_eq!(status, 200, "{j}");
    assert_eq!(j["targets"], json!(["dev-2"]));
    assert_eq!(j["targetCounts"]["PENDING"], 1);
    assert_eq!(executions(&s, &job, "?clientId=dev-1").len(), 0);
    assert_eq!(executions(&s, &job, "?clientId=dev-2").len(), 1);
    assert_eq!(
        get(&s, &format!("{JOBS}/{id}/executions?status=DONE")).0,
        422
    );

    // Delete: gone, with its executions.
    assert_eq!(call(&s, "DELETE", &format!("{JOBS}/{id}"), None).0, 204);
    assert_eq!(get(&s, &format!("{JOBS}/{id}")).0, 404);
    assert_eq!(get(&s, &format!("{JOBS}/{id}/executions")).0, 404);
    assert_eq!(call(&s, "DELETE", &format!("{JOBS}/{id}"), None).0, 404);
    assert_eq!(get(&s, "/api/v1/accounts/nope/jobs").0, 404);
}
