//! The logs of the real `fleetgate serve` binary.
//!
//! No secret in the logs: at `FLEETGATE_LOG=trace`, in text and in JSON, the server is driven
//! through a whole life (accounts, tokens, requests with activation keys, enrollments in both
//! encodings and both MQTT versions, an operational connection, failed attempts of every kind,
//! SIGTERM), then its whole log is searched for every secret it saw (docs/robustness.md).
//!
//! And the operator's view: the default log is Fleetgate's own lines without ntex internals,
//! `--log-format json` writes one JSON object per line, every admin-API response carries an
//! `X-Request-Id` found in the debug line of its request; `completions` and `man` are
//! generated from the CLI definition.

mod common;

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Connect, Device, Version};
use fleetgate_kura::{Encoding, ProvReply, ProvRequest};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "Admin-Token-Secret-3f9a8c7e1d";
const PROV_PASSWORD: &str = "Prov-Secret-Pass-42!";
const WRONG_PROV_PASSWORD: &str = "Wrong-Guess-Secret-77";
const WRONG_DEVICE_PASSWORD: &str = "Wrong-Device-Pass-88";
const WRONG_ACTIVATION_KEY: &str = "WrongActivationKey99xyzWrongKey9";
const WRONG_BEARER: &str = "Wrong-Bearer-Token-55abc";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn read_log(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        s = String::from_utf8_lossy(&bytes).into_owned();
    }
    s
}

/// A real `fleetgate serve` on free loopback ports, its stderr in a file; killed if the test
/// fails before [`Server::stop`].
struct Server {
    child: Option<Child>,
    dir: tempfile::TempDir,
    prov: SocketAddr,
    oper: SocketAddr,
    /// `http://127.0.0.1:PORT` of the admin API.
    api: String,
}

impl Server {
    /// Starts the binary with `args` after `serve` and `env` on top of a clean environment (no
    /// inherited `FLEETGATE_*`), and waits for its admin listener line. A port that
    /// [`free_port`] found free can be taken by a parallel test before the server binds it:
    /// then it tries again on new ports, as crash.rs does.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        for attempt in 1..=3 {
            match Server::try_start(args, env) {
                Ok(server) => return server,
                Err(log) if attempt < 3 && log.contains("Address already in use") => {
                    eprintln!("a port was taken before fleetgate bound it; retrying:\n{log}");
                }
                Err(log) => panic!("the server exited early:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// One start; `Err(stderr)` when the server exits before its admin listener line.
    fn try_start(args: &[&str], env: &[(&str, &str)]) -> Result<Server, String> {
        let dir = tempfile::tempdir().unwrap();
        let (pp, op, ap) = (free_port(), free_port(), free_port());
        let prov: SocketAddr = format!("127.0.0.1:{pp}").parse().unwrap();
        let oper: SocketAddr = format!("127.0.0.1:{op}").parse().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetgate"));
        for (k, _) in std::env::vars() {
            if k.starts_with("FLEETGATE_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--provisioning-listen", &prov.to_string()])
            .args(["--operational-listen", &oper.to_string()])
            .args(["--admin-listen", &format!("127.0.0.1:{ap}")])
            .args(args)
            .env("FLEETGATE_HOOKS_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .env("FLEETGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("FLEETGATE_AUTH_ARGON2_M_COST", "64")
            .env("FLEETGATE_AUTH_ARGON2_T_COST", "1")
            .env("FLEETGATE_PROVISIONING_LINGER", "0.5")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("fleetgate.log")).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server {
            child: Some(child),
            dir,
            prov,
            oper,
            api: format!("http://127.0.0.1:{ap}"),
        };
        let started = Instant::now();
        loop {
            let log = server.log();
            if log.contains("admin API (HTTP) accepting connections") {
                break Ok(server);
            }
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                server.child = None;
                break Err(format!("exit status {status}:\n{}", server.log()));
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no listener line in 30 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its stderr so far.
    fn log(&self) -> String {
        read_log(&self.dir.path().join("fleetgate.log"))
    }

    /// SIGTERM, then its exit status and its whole stderr and stdout.
    fn stop(mut self) -> (ExitStatus, String, String) {
        let mut child = self.child.take().unwrap();
        sigterm(child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no exit 20 s after SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = read_log(&self.dir.path().join("stdout.log"));
        (status, self.log(), stdout)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[allow(unsafe_code)]
fn sigterm(pid: u32) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill(SIGTERM) failed");
}

/// One HTTP call; (status, JSON body or Null).
fn http(method: &str, url: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let auth = format!("Bearer {token}");
    let mut r = match (method, body) {
        ("GET", _) => agent.get(url).header("Authorization", &auth).call(),
        ("POST", Some(b)) => agent.post(url).header("Authorization", &auth).send_json(b),
        _ => unreachable!(),
    }
    .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn device(
    addr: SocketAddr,
    v: Version,
    cid: &str,
    user: &str,
    pw: &str,
) -> Result<Device, u8> {
    tokio::time::timeout(
        Duration::from_secs(10),
        Device::connect(Connect {
            version: v,
            addr,
            client_id: cid,
            username: user,
            password: pw,
            manual_acks: false,
        }),
    )
    .await
    .expect("CONNACK in time")
}

/// Connects, subscribes, sends the request, returns the reply.
async fn enroll(
    addr: SocketAddr,
    v: Version,
    cid: &str,
    encoding: Encoding,
    key: Option<&str>,
) -> ProvReply {
    let mut d = device(addr, v, cid, "log-fleet", PROV_PASSWORD)
        .await
        .expect("CONNECT accepted");
    d.subscribe(&format!("$EDC/provision/{cid}/PROV-V1/REPLY/#"), 1)
        .await;
    assert_eq!(d.suback().await, vec![1]);
    let mut req = ProvRequest::new("r-1");
    if let Some(k) = key {
        req = req.with_activation_key(k);
    }
    d.publish(
        &format!("$EDC/provision/{cid}/PROV-V1/EXEC/provision"),
        1,
        req.encode(encoding),
    )
    .await;
    let (_, payload) = d
        .publish_received(Duration::from_secs(10))
        .await
        .expect("a reply");
    let (enc, reply) = fleetgate_kura::decode_reply(&payload).unwrap();
    assert_eq!(enc, encoding);
    d.disconnect().await;
    reply
}

fn success_password(reply: ProvReply) -> String {
    match reply {
        ProvReply::Success(ok) => ok.password,
        other => panic!("expected success, got {other:?}"),
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_the_log_even_at_trace() {
    let log = secrets_not_in_log(&[]).await;
    assert!(log.contains("TRACE"), "no trace line");
}

/// The same life with `--log-format json`: every line is a JSON object, and no secret appears
/// in it either (the JSON formatter also writes span fields into every line).
#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_the_json_log_even_at_trace() {
    let log = secrets_not_in_log(&["--log-format", "json"]).await;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v.is_object(), "not a JSON object: {line}");
    }
    assert!(log.contains(r#""level":"TRACE""#), "no trace line");
}

/// Drives a whole life of the server started with `serve_args` at `FLEETGATE_LOG=trace`,
/// checks that no secret it saw is in its stderr or stdout, and returns its stderr.
async fn secrets_not_in_log(serve_args: &[&str]) -> String {
    let server = Server::start(serve_args, &[("FLEETGATE_LOG", "trace")]);
    let (prov, oper) = (server.prov, server.oper);
    let api = server.api.clone();

    // Account, account token, requests with activation keys.
    let (s, _) = http(
        "POST",
        &format!("{api}/api/v1/accounts"),
        ADMIN_TOKEN,
        Some(&json!({"name": "acme"})),
    );
    assert_eq!(s, 201);
    let (s, tok) = http(
        "POST",
        &format!("{api}/api/v1/accounts/acme/tokens"),
        ADMIN_TOKEN,
        Some(&json!({})),
    );
    assert_eq!(s, 201, "{tok}");
    let api_token = tok["token"].as_str().unwrap().to_string();
    let (s, _) = http("GET", &format!("{api}/api/v1/accounts"), WRONG_BEARER, None);
    assert_eq!(s, 401);
    let mut keys = Vec::new();
    for (cid, with_key) in [
        ("log-dev-1", true),
        ("log-dev-2", true),
        ("log-dev-3", false),
        ("log-dev-4", true),
    ] {
        let (s, r) = http(
            "POST",
            &format!("{api}/api/v1/accounts/acme/provision-requests"),
            &api_token,
            Some(&json!({
                "clientId": cid,
                "provisionUsername": "log-fleet",
                "provisionPassword": PROV_PASSWORD,
                "confirmProvisionPassword": PROV_PASSWORD,
                "brokerUrl": format!("mqtt://{oper}"),
                "generateActivationKey": with_key,
            })),
        );
        assert_eq!(s, 201, "{r}");
        keys.push(r["activationKey"].as_str().map(str::to_string));
    }

    // Enrollments: both encodings, both versions.
    let mut generated = Vec::new();
    generated.push(success_password(
        enroll(
            prov,
            Version::V3,
            "log-dev-1",
            Encoding::Json,
            keys[0].as_deref(),
        )
        .await,
    ));
    generated.push(success_password(
        enroll(
            prov,
            Version::V5,
            "log-dev-2",
            Encoding::Kura,
            keys[1].as_deref(),
        )
        .await,
    ));
    generated.push(success_password(
        enroll(prov, Version::V5, "log-dev-3", Encoding::Kura, None).await,
    ));
    // A wrong activation key: a 403 reply.
    let reply = enroll(
        prov,
        Version::V3,
        "log-dev-4",
        Encoding::Json,
        Some(WRONG_ACTIVATION_KEY),
    )
    .await;
    assert!(matches!(reply, ProvReply::Failure { .. }), "{reply:?}");

    // The operational endpoint with a generated password, then a wrong one.
    let d = device(
        oper,
        Version::V5,
        "log-dev-1",
        "log-dev-1@acme",
        &generated[0],
    )
    .await
    .expect("operational CONNECT accepted");
    d.publish("acme/log-dev-1/telemetry", 1, b"hello".to_vec())
        .await;
    d.disconnect().await;
    assert_eq!(
        device(
            oper,
            Version::V3,
            "log-dev-2",
            "log-dev-2@acme",
            WRONG_DEVICE_PASSWORD
        )
        .await
        .err(),
        Some(0x04)
    );
    // Failed provisioning attempts (enough for a client-ID ban at the default 5).
    for i in 0..5 {
        let v = if i % 2 == 0 { Version::V5 } else { Version::V3 };
        assert!(
            device(prov, v, "log-dev-4", "log-fleet", WRONG_PROV_PASSWORD)
                .await
                .is_err()
        );
    }
    assert!(
        device(prov, Version::V5, "log-dev-9", "log-fleet", PROV_PASSWORD)
            .await
            .is_err()
    );

    // SIGTERM: exit status 0.
    let (status, stderr, stdout) = server.stop();
    let log = format!("{stderr}{stdout}");
    assert_eq!(status.code(), Some(0), "exit status {status}:\n{log}");

    // The log is real: the listener lines, trace events, the shutdown line.
    for line in [
        "provisioning endpoint (MQTT 3.1.1/5.0, TCP) accepting connections",
        "operational endpoint (MQTT 3.1.1/5.0, TCP) accepting connections",
        "admin API (HTTP) accepting connections",
        "stopped; store closed",
        "banned after repeated credential failures",
    ] {
        assert!(log.contains(line), "the log lacks {line:?}");
    }
    eprintln!("log: {} bytes, {} lines", log.len(), log.lines().count());

    let mut secrets: Vec<(String, String)> = vec![
        ("admin token".into(), ADMIN_TOKEN.into()),
        ("account API token".into(), api_token.clone()),
        ("wrong bearer token".into(), WRONG_BEARER.into()),
        ("provision password".into(), PROV_PASSWORD.into()),
        (
            "wrong provision password".into(),
            WRONG_PROV_PASSWORD.into(),
        ),
        ("wrong device password".into(), WRONG_DEVICE_PASSWORD.into()),
        ("wrong activation key".into(), WRONG_ACTIVATION_KEY.into()),
    ];
    for (i, k) in keys.iter().enumerate() {
        if let Some(k) = k {
            secrets.push((format!("activation key {i}"), k.clone()));
        }
    }
    for (i, p) in generated.iter().enumerate() {
        secrets.push((format!("generated device password {i}"), p.clone()));
    }
    let mut leaks = Vec::new();
    for (what, secret) in &secrets {
        assert!(secret.len() >= 8, "{what} too short to search for");
        for (form, needle) in [("clear", secret.clone()), ("hex", hex(secret))] {
            if let Some(at) = log.find(&needle) {
                let line = log[..at].rsplit('\n').next().unwrap_or_default();
                let end = log[at..].find('\n').map_or(log.len(), |e| at + e);
                leaks.push(format!(
                    "{what} ({form}): {}{}",
                    line,
                    &log[at..end].chars().take(200).collect::<String>()
                ));
            }
        }
    }
    for hash in ["$argon2id$", "hs256$"] {
        if let Some(at) = log.find(hash) {
            leaks.push(format!(
                "stored hash {hash}: {}",
                &log[at.saturating_sub(200)..(at + 100).min(log.len())]
            ));
        }
    }
    assert!(
        leaks.is_empty(),
        "{} secret(s) in the log:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    stderr
}

/// The lines every start and SIGTERM stop logs at the default level.
const LIFE_LINES: [&str; 5] = [
    "provisioning endpoint (MQTT 3.1.1/5.0, TCP) accepting connections",
    "operational endpoint (MQTT 3.1.1/5.0, TCP) accepting connections",
    "admin API (HTTP) accepting connections",
    "shutting down",
    "stopped; store closed",
];

/// Whether a text log line comes from an ntex crate (its target follows the level).
fn is_ntex_line(line: &str) -> bool {
    line.contains(" ntex_") || line.contains(" ntex::")
}

/// Starts, answers one API call, stops on SIGTERM: the stderr, after checking exit status 0.
fn start_call_stop(args: &[&str], env: &[(&str, &str)]) -> String {
    let server = Server::start(args, env);
    let (s, _) = http(
        "GET",
        &format!("{}/api/v1/accounts", server.api),
        ADMIN_TOKEN,
        None,
    );
    assert_eq!(s, 200);
    let (status, log, _) = server.stop();
    assert_eq!(status.code(), Some(0), "exit status {status}:\n{log}");
    log
}

#[test]
fn the_default_log_has_no_ntex_internals_and_fleetgate_log_overrides() {
    let log = start_call_stop(&[], &[]);
    for line in LIFE_LINES {
        assert!(log.contains(line), "the default log lacks {line:?}:\n{log}");
    }
    let ntex: Vec<&str> = log.lines().filter(|l| is_ntex_line(l)).collect();
    assert!(
        ntex.is_empty(),
        "ntex lines at the default level:\n{ntex:#?}"
    );

    // FLEETGATE_LOG replaces the default filter: plain `info` shows ntex's info lines again
    // (which also shows that the check above can see them).
    let log = start_call_stop(&[], &[("FLEETGATE_LOG", "info")]);
    assert!(
        log.lines().any(is_ntex_line),
        "FLEETGATE_LOG=info shows no ntex line:\n{log}"
    );
}

#[test]
fn json_log_lines_parse_and_carry_the_listener_lines() {
    let log = start_call_stop(&["--log-format", "json"], &[]);
    let mut messages = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["level"].is_string() && v["target"].is_string(), "{line}");
        assert!(
            !v["target"].as_str().unwrap().starts_with("ntex"),
            "an ntex line at the default level: {line}"
        );
        if let Some(m) = v["fields"]["message"].as_str() {
            messages.push(m.to_string());
        }
    }
    for line in LIFE_LINES {
        assert!(
            messages.iter().any(|m| m == line),
            "no JSON line with message {line:?}:\n{log}"
        );
    }
}

/// GET with an optional `X-Request-Id`; (status, the response's `X-Request-Id`).
fn get_with_request_id(url: &str, request_id: Option<&str>) -> (u16, Option<String>) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let mut req = agent
        .get(url)
        .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"));
    if let Some(id) = request_id {
        req = req.header("X-Request-Id", id);
    }
    let r = req.call().unwrap();
    let id = r
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), id)
}

#[test]
fn api_responses_carry_a_request_id_found_in_the_debug_log() {
    // The format through its environment variable this time.
    let server = Server::start(
        &[],
        &[
            ("FLEETGATE_LOG_FORMAT", "json"),
            ("FLEETGATE_LOG", "info,fleetgate_api=debug"),
        ],
    );
    let accounts = format!("{}/api/v1/accounts", server.api);
    // A sane client id is kept; none or an insane one gets a fresh id.
    let (s, kept) = get_with_request_id(&accounts, Some("client-req-42"));
    assert_eq!((s, kept.as_deref()), (200, Some("client-req-42")));
    let (s, fresh) = get_with_request_id(&accounts, None);
    let fresh = fresh.expect("an X-Request-Id without asking");
    assert_eq!(s, 200);
    assert!(!fresh.is_empty() && fresh != "client-req-42");
    let (s, replaced) = get_with_request_id(&accounts, Some("bad id\twith spaces"));
    assert_eq!(s, 200);
    assert!(replaced.is_some_and(|r| !r.contains(' ')));
    // Errors too: an unknown path (the catch-all) and a wrong method (405).
    let (s, missing) = get_with_request_id(&format!("{}/nowhere", server.api), None);
    assert_eq!(s, 404);
    let missing = missing.expect("an X-Request-Id on a 404");
    let (status, log, _) = server.stop();
    assert_eq!(status.code(), Some(0), "exit status {status}:\n{log}");

    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let handled = |id: &str| {
        lines.iter().find(|v| {
            v["level"] == "DEBUG"
                && v["fields"]["message"] == "request handled"
                && v["span"]["id"] == id
        })
    };
    for (id, route, status) in [
        ("client-req-42", "/api/v1/accounts", 200),
        (fresh.as_str(), "/api/v1/accounts", 200),
        (missing.as_str(), "/{tail}*", 404),
    ] {
        let line = handled(id).unwrap_or_else(|| panic!("no debug line for {id}:\n{log}"));
        assert_eq!(line["fields"]["route"], route, "{line}");
        assert_eq!(line["fields"]["status"], status, "{line}");
        assert_eq!(line["span"]["method"], "GET", "{line}");
        assert!(line["fields"]["duration_ms"].is_f64(), "{line}");
    }
    assert!(!log.contains(ADMIN_TOKEN), "the admin token is in the log");
}

/// Runs the binary with `args`; its stdout, after checking that it succeeded.
fn run_ok(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetgate"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fleetgate {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let bash = run_ok(&["completions", "bash"]);
    assert!(bash.contains("serve") && bash.contains("request"), "{bash}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = run_ok(&["completions", shell]);
        assert!(script.contains("serve"), "{shell}: {script}");
    }
    let man = run_ok(&["man"]);
    let header = man
        .lines()
        .find(|l| !l.starts_with(".ie") && !l.starts_with(".el"))
        .unwrap_or_default();
    assert!(header.starts_with(".TH fleetgate 1"), "{man}");
    assert!(man.contains("serve"), "{man}");
}
