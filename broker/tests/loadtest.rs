//! The load tester against the in-process server: a small `enroll` run (shared credentials,
//! MQTT 5, JSON) with and without the operational reconnect. Checks counts and the report
//! contract of LOADTEST.md; asserts no throughput target.

mod common;

use std::time::Duration;

use common::{ADMIN_TOKEN, TestServer, create_account, get, post};
use fleetgate_loadtest::config::new_run_id;
use fleetgate_loadtest::{
    BrokerAddr, Credentials, Encoding, EnrollConfig, Load, Protocol, Report, RunOptions, run_enroll,
};

const DEVICES: usize = 30;

fn config(s: &TestServer, operational: bool) -> EnrollConfig {
    EnrollConfig {
        api: s.admin_url(),
        token: ADMIN_TOKEN.into(),
        account: "acme".into(),
        provisioning: BrokerAddr::parse(&format!("mqtt://{}", s.provisioning_addr())).unwrap(),
        provisioning_account: "provision".into(),
        operational_broker: format!("mqtt://{}", s.operational_addr()),
        devices: DEVICES,
        encoding: Encoding::Json,
        credentials: Credentials::Shared,
        activation_key: false,
        operational,
        kura_replies: 0,
        seed: 7,
        run_id: new_run_id(),
        bulk_size: 10_000,
        run: RunOptions {
            load: Load::Closed { concurrency: 10 },
            timeout: Duration::from_secs(20),
            protocol: Protocol::V5,
            ..RunOptions::default()
        },
    }
}

fn check(report: &Report, operational: bool) {
    let c = &report.counts;
    assert_eq!(
        (c.attempted, c.completed, c.failed),
        (DEVICES as u64, DEVICES as u64, 0),
        "failures: {:?}, first: {:?}",
        report.failures,
        report.first_failures
    );
    assert!(
        report.failures.values().all(|n| *n == 0),
        "{:?}",
        report.failures
    );

    let v: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    for key in [
        "scenario",
        "config",
        "devices",
        "failures",
        "duration_s",
        "enrollments_per_second",
        "latency_ms",
        "server",
    ] {
        assert!(v.get(key).is_some(), "report lacks `{key}`: {v}");
    }
    assert_eq!(v["scenario"], "enroll");
    for key in ["attempted", "completed", "failed"] {
        assert!(v["devices"][key].is_u64(), "devices.{key}: {v}");
    }
    assert_eq!(v["devices"]["completed"], DEVICES as u64);
    for key in [
        "devices",
        "concurrency",
        "rate",
        "protocol",
        "encoding",
        "credentials",
        "operational",
    ] {
        assert!(v["config"].get(key).is_some(), "config lacks `{key}`: {v}");
    }
    assert_eq!(v["config"]["devices"], DEVICES as u64);
    assert_eq!(v["config"]["concurrency"], 10);
    assert_eq!(v["config"]["protocol"], "5");
    assert_eq!(v["config"]["encoding"], "json");
    assert_eq!(v["config"]["credentials"], "shared");
    assert_eq!(v["config"]["operational"], operational);
    for phase in ["connect", "reply", "enrollment", "operational"] {
        assert!(
            v["latency_ms"].get(phase).is_some(),
            "latency_ms lacks `{phase}`: {v}"
        );
    }
    for phase in ["connect", "reply", "enrollment"] {
        for p in ["p50", "p90", "p99", "max"] {
            assert!(v["latency_ms"][phase][p].is_number(), "{phase}.{p}: {v}");
        }
    }
    if operational {
        assert!(v["latency_ms"]["operational"]["p50"].is_number(), "{v}");
    } else {
        assert!(v["latency_ms"]["operational"].is_null(), "{v}");
    }
    assert!(v["enrollments_per_second"].as_f64().unwrap() > 0.0, "{v}");
    for key in ["metrics_before", "metrics_after"] {
        assert!(v["server"][key].is_object(), "server.{key}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_shared_credentials_completes_every_device() {
    let s = TestServer::start();
    create_account(&s, "acme");
    let report = run_enroll(&config(&s, false)).await.unwrap();
    check(&report, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_with_operational_reconnect_completes_every_device() {
    let s = TestServer::start();
    create_account(&s, "acme");
    let report = run_enroll(&config(&s, true)).await.unwrap();
    check(&report, true);
}

/// The benchmark's flow (benches/jobs.sh) at small scale: registry entries and a DEVICE_CONNECT
/// job first, then the fleet enrolls, reconnects as Kura devices and answers the job's step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_kura_devices_complete_a_device_connect_job() {
    let s = TestServer::start();
    create_account(&s, "acme");
    let mut config = config(&s, true);
    config.kura_replies = 1;
    let targets: Vec<String> = (0..DEVICES)
        .map(|i| format!("lt-{}-{}-{i}", config.seed, config.run_id))
        .collect();
    for cid in &targets {
        let (status, d) = post(
            &s,
            "/api/v1/accounts/acme/devices",
            &serde_json::json!({"clientId": cid}),
        );
        assert_eq!(status, 201, "{d}");
    }
    let (status, job) = post(
        &s,
        "/api/v1/accounts/acme/jobs",
        &serde_json::json!({
            "name": "on connect",
            "targets": targets,
            "steps": [{"type": "command", "command": "uname"}],
            "schedule": {"trigger": "DEVICE_CONNECT"},
        }),
    );
    assert_eq!(status, 201, "{job}");
    let report = run_enroll(&config).await.unwrap();
    check(&report, true);
    // The last replies are recorded by a group commit just after the devices left.
    let path = format!("/api/v1/accounts/acme/jobs/{}", job["id"].as_str().unwrap());
    let job = common::eventually(|| {
        let (_, job) = get(&s, &path);
        (job["targetCounts"]["COMPLETED"] == DEVICES).then_some(job)
    })
    .await;
    assert_eq!(job["targetCounts"]["FAILED"], 0, "{job}");
}
