//! The admin API's transport security, bans, audit log and backups (API.md "Audit, backup,
//! transport security"; docs/robustness.md): HTTPS with a generated self-signed certificate and
//! a real HTTPS client, per-address bans of failed authentications, the audit log (what is
//! recorded, who sees what, retention, no secret), and a backup taken while a writer creates
//! provision requests, restored offline and served again.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A self-signed certificate for `localhost` and 127.0.0.1: (cert PEM, key PEM).
fn self_signed() -> (String, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

/// An answer: status, `Retry-After`, body.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
    text: String,
}

/// Calls `url` with `token` (if any) and an optional JSON body.
fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<Answer, ureq::Error> {
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
    let mut r = match bytes {
        Some(b) => agent.run(
            req.header("Content-Type", "application/json")
                .body(b)
                .unwrap(),
        )?,
        None => agent.run(req.body(()).unwrap())?,
    };
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    Ok(Answer {
        status,
        retry_after,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    })
}

fn plain_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent()
}

/// `method path` on `s`'s plain admin listener with `token`.
fn api(
    s: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    send(
        &plain_agent(),
        method,
        &format!("{}{path}", s.admin_url()),
        token,
        body,
    )
    .unwrap()
}

/// The value of one sample line of `/metrics` (0 when absent).
fn metric(s: &TestServer, sample: &str) -> f64 {
    api(s, "GET", "/metrics", None, None)
        .text
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn fleetgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fleetgate"))
        .args(args)
        .env_remove("FLEETGATE_TOKEN")
        .env_remove("FLEETGATE_ADMIN_TOKEN")
        .env_remove("FLEETGATE_API")
        .output()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// HTTPS

#[test]
fn the_admin_listener_serves_https_with_admin_tls() {
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let cert_file = files.path().join("admin.crt");
    let key_file = files.path().join("admin.key");
    std::fs::write(&cert_file, &cert).unwrap();
    std::fs::write(&key_file, &key).unwrap();
    let s = TestServer::start_with(&[
        ("FLEETGATE_ADMIN_TLS_CERT", cert_file.to_str().unwrap()),
        ("FLEETGATE_ADMIN_TLS_KEY", key_file.to_str().unwrap()),
    ]);
    let running = s.running.as_ref().unwrap();
    assert!(running.addrs.admin_https);
    let port = running.addrs.admin.port();
    let https = format!("https://127.0.0.1:{port}");

    // The typed client over HTTPS, trusting the self-signed certificate.
    let client = fleetgate_client::Client::new(&https, Some(ADMIN_TOKEN))
        .with_ca_pem(cert.as_bytes())
        .unwrap();
    client.health().unwrap();
    assert!(client.list_accounts().unwrap().is_empty());

    // Over HTTPS too, a change is audited with the peer's address (which the bans count by).
    client
        .create_account(&fleetgate_client::types::NewAccount {
            name: "acme".into(),
            ..Default::default()
        })
        .unwrap();
    let app = s.app();
    let mut audited = Vec::new();
    for _ in 0..100 {
        audited = app
            .store
            .read()
            .unwrap()
            .audit(None, None, 10)
            .unwrap()
            .items;
        if !audited.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].entry.action, "account.create");
    assert_eq!(audited[0].entry.peer, "127.0.0.1");

    // Without the certificate as a root, the handshake is refused: nothing is sent in clear.
    let untrusting = fleetgate_client::Client::new(&https, Some(ADMIN_TOKEN));
    assert!(untrusting.health().is_err());

    // Plain HTTP to the TLS listener fails cleanly (a failed handshake, not a hang), several
    // times, and the listener keeps serving HTTPS.
    for _ in 0..3 {
        let plain = send(
            &plain_agent(),
            "GET",
            &format!("http://127.0.0.1:{port}/healthz"),
            None,
            None,
        );
        assert!(
            plain.is_err() || plain.as_ref().is_ok_and(|a| a.status != 200),
            "plain HTTP must not be served"
        );
    }
    client.health().unwrap();
    // A connection that never completes the handshake (silent, or plain HTTP) is closed by
    // the server (ntex's 5 s TLS handshake timeout; the bound here is generous) while HTTPS
    // keeps being served.
    let silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut plain, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    client.health().unwrap();
    for mut conn in [silent, plain] {
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut seen = Vec::new();
        let closed = std::io::Read::read_to_end(&mut conn, &mut seen);
        assert!(
            closed.is_ok()
                || closed
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "the server closes a connection without a handshake: {closed:?}"
        );
        assert!(!String::from_utf8_lossy(&seen).contains("HTTP/1.1 200"));
    }

    // The CLI with --ca.
    let out = fleetgate(&[
        "account",
        "list",
        "--api",
        &https,
        "--token",
        ADMIN_TOKEN,
        "--ca",
        cert_file.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A CA file without a certificate is an error, not a silent fallback to the system roots.
    let bogus = files.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let out = fleetgate(&[
        "account",
        "list",
        "--api",
        &https,
        "--token",
        ADMIN_TOKEN,
        "--ca",
        bogus.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
}

// ---------------------------------------------------------------------------------------------
// Bans

#[test]
fn failed_authentications_ban_the_address_before_any_token_check() {
    let s = TestServer::start_with(&[("FLEETGATE_ADMIN_MAX_FAILURES", "3")]);
    for token in [Some("wrong-1"), None, Some("fgt_nosuchid_secret")] {
        let a = api(&s, "GET", "/api/v1/accounts", token, None);
        assert_eq!(a.status, 401, "{}", a.text);
    }
    // Banned: even the right token is refused, with when to come back.
    let a = api(&s, "GET", "/api/v1/accounts", Some(ADMIN_TOKEN), None);
    assert_eq!(a.status, 429, "{}", a.text);
    assert_eq!(a.body["status"], 429);
    assert_eq!(a.retry_after.as_deref(), Some("300"), "auth.ban is 300 s");
    let a = api(
        &s,
        "POST",
        "/api/v1/accounts",
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "acme"})),
    );
    assert_eq!(a.status, 429);
    // Routes without a token still answer (monitoring behind the same address).
    assert_eq!(api(&s, "GET", "/healthz", None, None).status, 200);
    assert_eq!(
        metric(&s, "fleetgate_bans_total{result=\"admin_address\"}"),
        1.0
    );
    // The ban ends after auth.ban.
    s.clock().advance(chrono::Duration::seconds(200));
    let a = api(&s, "GET", "/api/v1/accounts", Some(ADMIN_TOKEN), None);
    assert_eq!(a.status, 429);
    assert_eq!(a.retry_after.as_deref(), Some("100"));
    s.clock().advance(chrono::Duration::seconds(101));
    assert_eq!(
        api(&s, "GET", "/api/v1/accounts", Some(ADMIN_TOKEN), None).status,
        200
    );
    // Failures spread beyond the window do not ban.
    for _ in 0..4 {
        assert_eq!(
            api(&s, "GET", "/api/v1/accounts", Some("wrong"), None).status,
            401
        );
        s.clock().advance(chrono::Duration::seconds(31));
    }
    assert_eq!(
        api(&s, "GET", "/api/v1/accounts", Some(ADMIN_TOKEN), None).status,
        200
    );
}

// ---------------------------------------------------------------------------------------------
// Audit

/// The whole audit log as `token` sees it, paging with `limit` (and `extra` query).
fn audit(s: &TestServer, token: &str, extra: &str, limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after = String::new();
    loop {
        let a = api(
            s,
            "GET",
            &format!("/api/v1/audit?limit={limit}{extra}{after}"),
            Some(token),
            None,
        );
        assert_eq!(a.status, 200, "{}", a.text);
        items.extend(a.body["items"].as_array().unwrap().iter().cloned());
        match a.body["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return items,
        }
    }
}

/// Waits until the audit log satisfies `done` (entries ride the next group commit, at most
/// a second after the answer when nothing else is written).
fn audit_until(s: &TestServer, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..100 {
        let items = audit(s, ADMIN_TOKEN, "", 1000);
        if done(&items) {
            return items;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the audit log never got there");
}

/// Whether `items` has an entry of `action` with `outcome`.
fn has(items: &[Value], action: &str, outcome: &str) -> bool {
    items
        .iter()
        .any(|i| i["action"] == action && i["outcome"] == outcome)
}

fn find<'a>(items: &'a [Value], action: &str, outcome: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["action"] == action && i["outcome"] == outcome)
        .unwrap_or_else(|| panic!("no {action} {outcome} in {items:#?}"))
}

#[test]
fn the_audit_log_records_every_mutation_and_device_operation_without_secrets() {
    let s = TestServer::start();
    create_account(&s, "acme");
    create_account(&s, "other");
    let (status, token) = post(&s, "/api/v1/accounts/acme/tokens", &json!({}));
    assert_eq!(status, 201);
    let acme_token = token["token"].as_str().unwrap().to_string();
    let token_id = token["id"].as_str().unwrap().to_string();
    let secret_password = "audit-secret-password-1";
    let body = request_body("dev-1", "fleet-acme", secret_password);
    let created = create_request(&s, "acme", body.clone());
    let id = created["id"].as_str().unwrap().to_string();
    // Through the account token; a refused one (422); a wrong token (401); a device operation
    // on a device that is not in the registry (404); reads that are not audited.
    let by_token = api(
        &s,
        "POST",
        "/api/v1/accounts/acme/provision-requests",
        Some(&acme_token),
        Some(&request_body("dev-2", "fleet-acme", secret_password)),
    );
    assert_eq!(by_token.status, 201, "{}", by_token.text);
    let refused = api(
        &s,
        "POST",
        "/api/v1/accounts/acme/provision-requests",
        Some(ADMIN_TOKEN),
        Some(&json!({"clientId": "dev-3", "provisionPassword": secret_password})),
    );
    assert_eq!(refused.status, 422);
    assert_eq!(
        api(
            &s,
            "DELETE",
            &format!("/api/v1/accounts/acme/provision-requests/{id}"),
            Some("wrong-token"),
            None
        )
        .status,
        401
    );
    let command = api(
        &s,
        "POST",
        "/api/v1/accounts/acme/devices/dev-1/commands",
        Some(ADMIN_TOKEN),
        Some(&json!({"command": "uname", "arguments": ["-a"]})),
    );
    assert_eq!(command.status, 404, "{}", command.text);
    assert_eq!(
        api(
            &s,
            "GET",
            &format!("/api/v1/accounts/acme/provision-requests/{id}"),
            Some(ADMIN_TOKEN),
            None
        )
        .status,
        200
    );
    // An account token acting on another account: 404, recorded as such.
    let elsewhere = api(
        &s,
        "POST",
        "/api/v1/accounts/other/provision-requests",
        Some(&acme_token),
        Some(&body),
    );
    assert_eq!(elsewhere.status, 404);

    // account x2, token, request x2, 422, 401, command 404, 404 elsewhere.
    let items = audit_until(&s, |items| items.len() >= 9);
    assert_eq!(items.len(), 9, "{items:#?}");
    let create = find(&items, "provision-request.create", "ok");
    assert_eq!(create["actor"], "admin");
    assert_eq!(create["peer"], "127.0.0.1");
    assert_eq!(create["account"], "acme");
    assert_eq!(create["target"], id.as_str());
    assert!(create["at"].as_str().unwrap().ends_with('Z'));
    let by_token = items
        .iter()
        .find(|i| i["actor"] == format!("token:{token_id}") && i["outcome"] == "ok")
        .expect("the account token's creation");
    assert_eq!(by_token["action"], "provision-request.create");
    assert_eq!(find(&items, "account.create", "ok")["target"], "acme");
    assert_eq!(
        find(&items, "token.create", "ok")["target"],
        token_id.as_str()
    );
    find(&items, "provision-request.create", "422");
    let unauth = find(&items, "provision-request.delete", "401");
    assert_eq!(unauth["actor"], "unauthenticated");
    assert_eq!(unauth["target"], id.as_str());
    let cmd = find(&items, "device.command.create", "404");
    assert_eq!(cmd["target"], "dev-1");
    assert_eq!(
        find(&items, "provision-request.create", "404")["account"],
        "other"
    );
    // Oldest first.
    let times: Vec<&str> = items.iter().map(|i| i["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_unstable();
    assert_eq!(times, sorted);

    // Never a secret: no token, password, nor body.
    let text = api(
        &s,
        "GET",
        "/api/v1/audit?limit=1000",
        Some(ADMIN_TOKEN),
        None,
    )
    .text;
    for secret in [ADMIN_TOKEN, acme_token.as_str(), secret_password, "uname"] {
        assert!(!text.contains(secret), "{secret} in the audit log");
    }

    // Paging returns the same entries, a page at a time.
    assert_eq!(audit(&s, ADMIN_TOKEN, "", 2), items);
    // The admin filters by account; an account token sees its own account only.
    let acme_only = audit(&s, ADMIN_TOKEN, "&account=acme", 3);
    assert!(acme_only.iter().all(|i| i["account"] == "acme"));
    assert_eq!(acme_only.len(), 7, "{acme_only:#?}");
    assert_eq!(audit(&s, &acme_token, "", 1000), acme_only);
    assert_eq!(audit(&s, &acme_token, "&account=acme", 1000), acme_only);
    let other = api(
        &s,
        "GET",
        "/api/v1/audit?account=other",
        Some(&acme_token),
        None,
    );
    assert_eq!(other.status, 404);
    assert_eq!(api(&s, "GET", "/api/v1/audit", None, None).status, 401);

    // Durable: the entries survive a restart.
    let mut s = s;
    s.restart();
    assert_eq!(audit(&s, ADMIN_TOKEN, "", 1000), items);
}

#[test]
fn the_audit_log_keeps_the_latest_entries_and_rides_the_group_commit() {
    let s = TestServer::start_with(&[("FLEETGATE_ADMIN_AUDIT_RETENTION", "5")]);
    create_account(&s, "acme");
    let commits = |s: &TestServer| metric(s, "fleetgate_storage_commit_batch_size_count");
    let before = commits(&s);
    const N: usize = 20;
    for i in 0..N {
        create_request(
            &s,
            "acme",
            request_body(&format!("dev-{i}"), "fleet-acme", "fleet-password-1"),
        );
    }
    let newest_id = {
        let listed = get(
            &s,
            "/api/v1/accounts/acme/provision-requests?clientId=dev-19",
        )
        .1;
        listed["items"][0]["id"].as_str().unwrap().to_string()
    };
    let items = audit_until(&s, |items| {
        items.iter().any(|i| i["target"] == newest_id.as_str())
    });
    // Only the latest 5 are kept (the oldest are pruned by later appends).
    let targets: Vec<String> = items
        .iter()
        .map(|i| i["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(targets, vec!["provision-request.create"; 5]);
    let listed = get(&s, "/api/v1/accounts/acme/provision-requests?limit=1000").1;
    let newest: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            let cid = r["clientId"].as_str().unwrap();
            cid.strip_prefix("dev-").unwrap().parse::<usize>().unwrap() >= N - 5
        })
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let mut kept: Vec<&str> = items
        .iter()
        .map(|i| i["target"].as_str().unwrap())
        .collect();
    let mut newest = newest;
    kept.sort_unstable();
    newest.sort_unstable();
    assert_eq!(kept, newest);
    // The audit entries rode the creations' commits: far fewer than one commit of their own
    // per call (each creation commits once; an entry that finds no company commits after 1 s).
    let used = commits(&s) - before;
    eprintln!("{N} creations + {N} audit entries: {used} commits");
    assert!(
        used <= (N + N / 2) as f64,
        "{used} commits for {N} creations"
    );
}

// ---------------------------------------------------------------------------------------------
// Backup and restore

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_under_load_restores_every_acknowledged_write() {
    let s = TestServer::start();
    let password = enroll(&s, "acme", "dev-enrolled");

    // A writer creating provision requests through the API, one after the other.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let url = s.admin_url();
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let agent = plain_agent();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let a = send(
                    &agent,
                    "POST",
                    &format!("{url}/api/v1/accounts/acme/provision-requests"),
                    Some(ADMIN_TOKEN),
                    Some(&request_body(
                        &format!("load-{i}"),
                        "fleet-acme",
                        "fleet-password-1",
                    )),
                )
                .unwrap();
                assert_eq!(a.status, 201, "{}", a.text);
                acked
                    .lock()
                    .unwrap()
                    .push(a.body["id"].as_str().unwrap().to_string());
                i += 1;
            }
        })
    };
    while acked.lock().unwrap().len() < 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every request whose 201 arrived before the backup request is sent must be in it.
    let before: Vec<String> = acked.lock().unwrap().clone();
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("fleetgate.backup");
    let out = fleetgate(&[
        "backup",
        "--api",
        &s.admin_url(),
        "--token",
        ADMIN_TOKEN,
        "--to",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let after = acked.lock().unwrap().len();
    assert!(
        after > before.len(),
        "the writer kept writing during the backup"
    );
    assert_eq!(mode(&file), 0o600);
    // The backup is admin-only, and audited.
    let (status, token) = post(&s, "/api/v1/accounts/acme/tokens", &json!({}));
    assert_eq!(status, 201);
    let refused = api(&s, "GET", "/api/v1/backup", token["token"].as_str(), None);
    assert_eq!(refused.status, 403);
    audit_until(&s, |items| {
        has(items, "backup.read", "ok") && has(items, "backup.read", "403")
    });
    // Nothing left behind in the data dir.
    let leftovers: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("backup"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Refusals: a non-empty dir, a file that is not a backup, a store that is not a backup.
    let busy = files.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep"), "x").unwrap();
    let out = fleetgate(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data-dir",
        busy.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);
    let garbage = files.path().join("garbage");
    std::fs::write(&garbage, vec![7u8; 10_000]).unwrap();
    let nowhere = files.path().join("nowhere");
    let out = fleetgate(&[
        "restore",
        "--from",
        garbage.to_str().unwrap(),
        "--data-dir",
        nowhere.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(!nowhere.exists(), "nothing written for a bad backup");
    let store = files.path().join("a-store.redb");
    drop(redb::Database::create(&store).unwrap());
    let out = fleetgate(&[
        "restore",
        "--from",
        store.to_str().unwrap(),
        "--data-dir",
        nowhere.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(!nowhere.exists());

    // The restore, into a new dir.
    let fresh = files.path().join("restored");
    let out = fleetgate(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data-dir",
        fresh.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = fresh.join("fleetgate.redb");
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&db), 0o600);
    let mut check = redb::Database::open(&db).unwrap();
    assert!(check.check_integrity().unwrap());
    drop(check);
    drop(s);

    // Into an empty existing dir, served by a Fleetgate started on it.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let out = fleetgate(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = TestServer::start_in(dir, &[]);
    for id in &before {
        let (status, body) = get(
            &r,
            &format!("/api/v1/accounts/acme/provision-requests/{id}"),
        );
        assert_eq!(status, 200, "{id} acknowledged before the backup: {body}");
    }
    let listed = get(&r, "/api/v1/accounts/acme/provision-requests?limit=1000").1;
    let restored = listed["items"].as_array().unwrap().len();
    assert!(
        restored > before.len() && restored <= after + 1,
        "{restored}"
    );
    // A device enrolled before the backup connects with its identity.
    let d = operational(
        &r,
        Version::V3,
        "dev-enrolled",
        "dev-enrolled@acme",
        &password,
    )
    .await
    .expect("the enrolled device connects to the restored instance");
    d.disconnect().await;
}

#[test]
fn compact_gives_a_stopped_store_its_free_pages_back_and_is_refused_while_serving() {
    use common::binary::Broker;
    let mut b = Broker::start("");
    let (status, _) = b.post("/api/v1/accounts", &json!({"name": "acme"}));
    assert_eq!(status, 201);
    let path = "/api/v1/accounts/acme/provision-requests";
    let ids: Vec<String> = (0..400)
        .map(|i| {
            let body = request_body(&format!("dev-{i}"), "fleet", "fleet-password-1");
            let (status, r) = b.post(path, &body);
            assert_eq!(status, 201, "{r}");
            r["id"].as_str().unwrap().to_string()
        })
        .collect();
    // Most of them deleted again: their pages are free inside the file.
    for id in &ids[..350] {
        let (status, _) = b.request("DELETE", &format!("{path}/{id}"), None);
        assert_eq!(status, 204);
    }
    let data = b.data_dir();
    let file = data.join("fleetgate.redb");
    let compact = || fleetgate(&["compact", "--data-dir", data.to_str().unwrap()]);

    let out = compact();
    assert!(
        !out.status.success(),
        "refused while the server has the store open"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a server running on it?"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    b.stop();
    let before = std::fs::metadata(&file).unwrap().len();
    let out = compact();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = std::fs::metadata(&file).unwrap().len();
    assert!(after < before, "{before} -> {after} bytes");
    assert_eq!(mode(&file), 0o600);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{before} -> {after} bytes")));

    // The compacted store serves what it held.
    b.start_again();
    let (status, list) = b.request("GET", &format!("{path}?limit=100"), None);
    assert_eq!(status, 200);
    let kept: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(kept.len(), 50, "{list}");
    assert!(kept.iter().all(|id| ids[350..].iter().any(|k| k == id)));
}
