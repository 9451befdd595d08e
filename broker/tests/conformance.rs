//! The Eclipse Paho MQTT interoperability suite against the real binary's sandbox listener
//! (PROTOCOL.md 6.1 and 6.2; docs/conformance.md): v3.1.1 must pass 10 of 10, v5 at least 25
//! of 27. One test per protocol version, each against its own broker, so that the v3.1.1
//! suite's `#` subscriptions never see the v5 suite's messages; `.config/nextest.toml` runs
//! each alone (the suite synchronises by fixed sleeps).
//!
//! The suite lives outside the repository: `../shared/conformance/paho-interop/` beside the
//! checkout (CI has it there), or the directory in `FLEETGATE_PAHO_INTEROP`. A missing suite
//! fails the test: a conformance claim nobody ran is not one.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::binary::Broker;

/// What the suite needs of the broker besides the defaults (DESIGN.md, "Things that bite,
/// turn 2"): the v5 server-keep-alive test asks 120 s and expects 60; the subscribe-failure
/// tests expect a refusal for `test/nosubscribe`. One network worker: v5
/// `test_subscribe_options` subscribes with one client and publishes with another without
/// waiting for the SUBACK, so with two workers the two packets race (docs/conformance.md).
const CONFIG: &str = r#"
[operational]
max_keepalive = 60

[operational.sandbox]
deny_subscribe = ["test/nosubscribe"]

[server]
workers = 1
"#;

fn suite_dir() -> PathBuf {
    match std::env::var_os("FLEETGATE_PAHO_INTEROP") {
        Some(d) => PathBuf::from(d),
        None => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/paho-interop")
        }
    }
}

/// `passed, failed` from run.sh's summary line `MODULE: N passed, N failed (...)`.
fn summary(output: &str, module: &str) -> Option<(u32, u32)> {
    let prefix = format!("{module}: ");
    let line = output.lines().find_map(|l| l.strip_prefix(&prefix))?;
    let mut words = line.split_whitespace();
    let passed = words.next()?.parse().ok()?;
    let failed = words.nth(1)?.parse().ok()?;
    Some((passed, failed))
}

/// Runs one version of the suite (`v3` / `v5`, whose module is `module`) against a fresh
/// broker and asserts at least `min_passed` of `total`.
fn run(which: &str, module: &str, min_passed: u32, total: u32) {
    let dir = suite_dir();
    let script = dir.join("run.sh");
    assert!(
        script.is_file(),
        "the Paho interoperability suite is missing: no {} (put ../shared beside the \
         checkout or set FLEETGATE_PAHO_INTEROP)",
        script.display()
    );
    let broker = Broker::start(CONFIG);
    let out = Command::new("bash")
        .arg(&script)
        .arg(broker.sandbox.ip().to_string())
        .arg(broker.sandbox.port().to_string())
        .arg(which)
        .output()
        .expect("cannot run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (passed, failed) = summary(&stdout, module).unwrap_or_else(|| {
        panic!(
            "no '{module}: N passed, N failed' line; stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // The per-test lines, shown by the test runner for a failure (and on request otherwise).
    println!("{stdout}");
    assert_eq!(passed + failed, total, "tests run (per test: stdout)");
    assert!(
        passed >= min_passed,
        "{module}: {passed} of {total} passed, at least {min_passed} required (per test: stdout)"
    );
}

#[test]
fn paho_interoperability_v3_1_1() {
    run("v3", "client_test", 10, 10);
}

#[test]
fn paho_interoperability_v5() {
    run("v5", "client_test5", 25, 27);
}

#[test]
fn summary_line_is_parsed() {
    let out = "PASS client_test5 test_basic\nclient_test5: 25 passed, 2 failed (a b)\n";
    assert_eq!(summary(out, "client_test5"), Some((25, 2)));
    assert_eq!(summary(out, "client_test"), None);
}
