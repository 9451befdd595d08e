//! Device management end to end (PROTOCOL.md 7, API.md "Device management"): the admin API
//! sends Kura requests through the operational endpoint to a device that behaves like Eclipse
//! Kura (tests/common/kura.rs), and returns its replies. The API is called from the test's
//! thread while the device runs on the other worker of the runtime.

mod common;

use std::time::Duration;

use common::kura::{INITIAL_SNAPSHOT, KuraDevice};
use common::*;
use serde_json::{Value, json};

const DEV: &str = "/api/v1/accounts/acme/devices/dev-1";

/// A request with a raw body and content type; returns (status, content type, body).
fn raw(s: &TestServer, method: &str, path: &str, ct: &str, body: &str) -> (u16, String, String) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", s.admin_url()))
        .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("Content-Type", ct);
    let mut r = agent
        .run(req.body(body.as_bytes().to_vec()).unwrap())
        .unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        r.status().as_u16(),
        ct,
        r.body_mut().read_to_string().unwrap_or_default(),
    )
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
async fn configurations_and_commands_reach_a_kura_device() {
    let s = TestServer::start();
    let password = enroll(&s, "acme", "dev-1");
    let device = kura(&s, &password).await;

    let (status, ct, xml) = raw(
        &s,
        "GET",
        &format!("{DEV}/configurations"),
        "application/json",
        "",
    );
    assert_eq!((status, ct.as_str()), (200, "application/xml"), "{xml}");
    assert_eq!(xml, INITIAL_SNAPSHOT);

    // A seed-form document goes to Kura in its snapshot form.
    let doc = r#"<configurations><configuration><id>org.eclipse.kura.clock.ClockService</id><properties><property name="clock.ntp.host" array="false" encrypted="false" type="String"><value> pool.ntp.org</value></property></properties></configuration></configurations>"#;
    let (status, _, body) = raw(
        &s,
        "PUT",
        &format!("{DEV}/configurations"),
        "application/xml",
        doc,
    );
    assert_eq!(status, 204, "{body}");
    let put = device.state.lock().unwrap().puts[0].clone();
    assert!(
        put.contains(r#"<esf:configuration pid="org.eclipse.kura.clock.ClockService">"#),
        "{put}"
    );
    assert!(
        put.contains("<esf:value> pool.ntp.org</esf:value>"),
        "untrimmed: {put}"
    );

    // Bad XML: 422 with line and column, nothing sent.
    let (status, _, problem) = raw(
        &s,
        "PUT",
        &format!("{DEV}/configurations"),
        "application/xml",
        "<configurations>\n<oops>",
    );
    assert_eq!(status, 422, "{problem}");
    assert!(problem.contains("line 2"), "{problem}");
    assert_eq!(device.state.lock().unwrap().puts.len(), 1);
    let (status, _, _) = raw(
        &s,
        "PUT",
        &format!("{DEV}/configurations"),
        "application/json",
        "{}",
    );
    assert_eq!(status, 415);

    let (status, ran) = post(
        &s,
        &format!("{DEV}/commands"),
        &json!({"command": "uname", "arguments": ["-a"], "timeout": 10}),
    );
    assert_eq!(status, 200, "{ran}");
    assert_eq!(
        ran,
        json!({"exitCode": 0, "stdout": "uname -a", "stderr": "", "timedOut": false})
    );
    let (status, failed) = post(&s, &format!("{DEV}/commands"), &json!({"command": "false"}));
    assert_eq!(status, 200, "{failed}");
    assert_eq!(failed["exitCode"], 1);
    assert_eq!(failed["stderr"], "boom");

    // The generic request: a device error is a 200 with its responseCode.
    let (status, reply) = post(
        &s,
        &format!("{DEV}/requests"),
        &json!({"app": "DEPLOY-V2", "method": "GET", "resources": ["packages"], "metrics": {"x": 1}}),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["responseCode"], 404);
    let (status, reply) = post(
        &s,
        &format!("{DEV}/requests"),
        &json!({"app": "CONF-V1", "method": "GET", "resources": ["configurations"]}),
    );
    assert_eq!((status, reply["responseCode"].clone()), (200, json!(200)));
    assert!(
        reply["body"]
            .as_str()
            .unwrap()
            .contains("esf:configurations")
    );

    // No reply in time: 504.
    let (status, problem) = post(
        &s,
        &format!("{DEV}/requests"),
        &json!({"app": "SILENT-V1", "method": "GET", "timeout": 1}),
    );
    assert_eq!(status, 504, "{problem}");

    // Validation.
    for (body, field) in [
        (json!({"method": "GET"}), "app"),
        (json!({"app": "A/B", "method": "GET"}), "app"),
        (json!({"app": "CONF-V1", "method": "FETCH"}), "method"),
        (
            json!({"app": "CONF-V1", "method": "GET", "resources": ["a/#"]}),
            "resources",
        ),
        (
            json!({"app": "CONF-V1", "method": "GET", "metrics": {"x": 1.5}}),
            "metrics",
        ),
        (
            json!({"app": "CONF-V1", "method": "GET", "timeout": 0}),
            "timeout",
        ),
    ] {
        let (status, problem) = post(&s, &format!("{DEV}/requests"), &body);
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }

    // Once it is gone: 409; an unknown device: 404.
    device.stop().await;
    let (status, _) = eventually_status(
        &s,
        &format!("{DEV}/commands"),
        &json!({"command": "uname"}),
        409,
    );
    assert_eq!(status, 409);
    let (status, _) = post(
        &s,
        "/api/v1/accounts/acme/devices/ghost/commands",
        &json!({"command": "uname"}),
    );
    assert_eq!(status, 404);
}

/// Posts until the status is `want` (a disconnect reaches the broker a moment later).
fn eventually_status(s: &TestServer, path: &str, body: &Value, want: u16) -> (u16, Value) {
    let mut last = (0, Value::Null);
    for _ in 0..50 {
        last = post(s, path, body);
        if last.0 == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_device_that_did_not_subscribe_is_not_ready() {
    let s = TestServer::start();
    let password = enroll(&s, "acme", "dev-1");
    let quiet = operational(&s, Version::V3, "dev-1", "dev-1@acme", &password)
        .await
        .unwrap();
    let (status, problem) = post(&s, &format!("{DEV}/commands"), &json!({"command": "uname"}));
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("not ready"),
        "{problem}"
    );
    quiet.disconnect().await;
}

/// `fleetgate GROUP --api URL --token ADMIN --account acme REST...`: (exit code, stdout,
/// stderr).
fn cli(s: &TestServer, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write as _;
    // The connection options go right after the command group: `exec` takes everything after
    // its client ID as the device's command line.
    let (group, rest) = args.split_first().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fleetgate"))
        .arg(group)
        .args([
            "--api",
            &s.admin_url(),
            "--token",
            ADMIN_TOKEN,
            "--account",
            "acme",
        ])
        .args(rest)
        .env_remove("FLEETGATE_ADMIN_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_and_writes_configurations_and_runs_commands() {
    let s = TestServer::start();
    let password = enroll(&s, "acme", "dev-1");
    let device = kura(&s, &password).await;
    let (code, xml, err) = cli(&s, &["device", "config", "get", "dev-1"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(xml.trim_end(), INITIAL_SNAPSHOT);
    let doc = INITIAL_SNAPSHOT.replace(
        "<esf:value>true</esf:value>",
        "<esf:value>false</esf:value>",
    );
    let (code, _, err) = cli(&s, &["device", "config", "put", "dev-1", "-"], Some(&doc));
    assert_eq!(code, 0, "{err}");
    assert!(device.state.lock().unwrap().puts[0].contains("<esf:value>false</esf:value>"));
    let (code, stdout, err) = cli(
        &s,
        &["device", "exec", "dev-1", "--", "ls", "-l", "/tmp"],
        None,
    );
    assert_eq!((code, stdout.as_str()), (0, "ls -l /tmp"), "{err}");
    assert_eq!(
        device.state.lock().unwrap().commands.last().unwrap(),
        &["ls", "-l", "/tmp"]
    );
    let (code, _, err) = cli(&s, &["device", "exec", "dev-1", "false"], None);
    assert_ne!(code, 0);
    assert!(
        err.contains("boom") && err.contains("exited with 1"),
        "{err}"
    );
    device.stop().await;
}
