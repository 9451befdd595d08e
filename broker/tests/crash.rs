//! Crash safety of the real binary: `fleetgate serve` is SIGKILLed in the middle of concurrent
//! enrollments, API writes, retained publishes, QoS 1 traffic for a persistent session and job
//! steps (Kura-like devices answering the steps of jobs created during the round), restarted on
//! the same data dir, and checked for:
//!
//! - every device that received its reply can CONNECT to the operational endpoint with those
//!   credentials (its request may be FAILED if its PUBACK raced the kill, but its user exists);
//! - no request is left RUNNING after the restart;
//! - every request the API acknowledged (201) exists;
//! - every retained message acknowledged (PUBACK) is retained, or a later one on its topic;
//! - every job the API acknowledged (201) exists, no job execution is RUNNING (a step in flight
//!   at the kill ends FAILED with a log line), every execution read COMPLETED before the kill
//!   is still COMPLETED, and each attempt the kill failed is retried to completion when the
//!   job devices come back;
//! - every QoS 1 message acknowledged for a persistent session that is away is delivered when
//!   it comes back, after a SIGKILL as after the graceful restart of the last round.
//!
//! Devices that did not finish retry in the next round; a final round without a kill must
//! provision every remaining device. Rounds: `FLEETGATE_CRASH_ROUNDS` (default 3); seed of the
//! kill delays: `FLEETGATE_CRASH_SEED` (default fixed, printed). See docs/robustness.md.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::kura::KuraDevice;
use common::raw::{Client, Msg, Options, Packet, QUIET, WAIT};
use common::{Connect, Device, Version};
use fleetgate_kura::{Encoding, ProvReply, ProvRequest, decode_reply};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const TOKEN: &str = "crash-admin-token-0123456789";
const PA: &str = "provision";
const ACCOUNT: &str = "acme";
const FLEET_USER: &str = "fleet";
const FLEET_PASSWORD: &str = "fleet-password-1";
/// New devices per crash round.
const DEVICES: usize = 48;
/// Device starts are spread over this window, so that a kill at 50 to 400 ms catches some
/// before, some during and some after their exchange.
const SPREAD_MS: u64 = 500;

/// The account users of the operational traffic: a publisher and a persistent subscriber.
const APP_PASSWORD: &str = "crash-app-password-1";
const PUBLISHER: &str = "pub@acme";
const SUBSCRIBER: &str = "sub@acme";

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// One run of the real binary.
struct Server {
    child: Child,
    admin: SocketAddr,
    provisioning: SocketAddr,
    operational: SocketAddr,
}

impl Server {
    fn start(data_dir: &Path, log: &Path) -> Server {
        // Ports picked by binding port 0; retried if another process took one meanwhile.
        for _ in 0..5 {
            let (admin, provisioning, operational) = (free_addr(), free_addr(), free_addr());
            let log_file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_fleetgate"))
                .arg("serve")
                .arg("--data-dir")
                .arg(data_dir)
                .arg("--admin-listen")
                .arg(admin.to_string())
                .arg("--provisioning-listen")
                .arg(provisioning.to_string())
                .arg("--operational-listen")
                .arg(operational.to_string())
                .env("FLEETGATE_ADMIN_TOKEN", TOKEN)
                .env("FLEETGATE_HOOKS_LISTEN", "127.0.0.1:0")
                .env("FLEETGATE_AUTH_ARGON2_M_COST", "64")
                .env("FLEETGATE_AUTH_ARGON2_T_COST", "1")
                .env("FLEETGATE_PROVISIONING_LINGER", "0.5")
                .env("FLEETGATE_SERVER_WORKERS", "2")
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .spawn()
                .expect("cannot start fleetgate");
            let mut s = Server {
                child,
                admin,
                provisioning,
                operational,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = s.child.try_wait() {
                    eprintln!("fleetgate exited at start ({status}); retrying with new ports");
                    break;
                }
                if http(s.admin, "GET", "/healthz", None).0 == 200 {
                    return s;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        panic!("fleetgate did not become healthy; log:\n{text}");
    }

    /// SIGKILL: no shutdown, no store close.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait: the clean stop.
    fn stop(mut self) {
        // Through the `kill` command: the workspace denies `unsafe` (libc::kill).
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "fleetgate exited with {status} on SIGTERM"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("fleetgate did not exit within 10 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP call with the admin token; (status, JSON body or Null). Status 0: no answer.
fn http(admin: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let url = format!("http://{admin}{path}");
    let auth = format!("Bearer {TOKEN}");
    let result = match (method, body) {
        ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
        ("POST", Some(b)) => agent.post(&url).header("Authorization", &auth).send_json(b),
        _ => unreachable!(),
    };
    match result {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let text = r.body_mut().read_to_string().unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

fn request_body(cid: &str) -> Value {
    json!({
        "clientId": cid,
        "provisionUsername": FLEET_USER,
        "provisionPassword": FLEET_PASSWORD,
        "confirmProvisionPassword": FLEET_PASSWORD,
        "brokerUrl": "mqtt://127.0.0.1:1884",
    })
}

fn requests_path() -> String {
    format!("/api/v1/accounts/{ACCOUNT}/provision-requests")
}

/// Credentials from a success reply.
#[derive(Clone, Debug)]
struct Creds {
    username: String,
    password: String,
}

/// Provisioning exchange of one device: `Some` when the success reply arrived.
async fn enroll(
    addr: SocketAddr,
    cid: String,
    version: Version,
    encoding: Encoding,
) -> Option<Creds> {
    let mut d = Device::connect(Connect {
        version,
        addr,
        client_id: &cid,
        username: FLEET_USER,
        password: FLEET_PASSWORD,
        manual_acks: false,
    })
    .await
    .ok()?;
    // The server may be killed at any moment: a device whose connection went away got no
    // reply, which is what the rounds account for.
    if !d
        .try_subscribe(&format!("$EDC/{PA}/{cid}/PROV-V1/REPLY/#"), 1)
        .await
    {
        return None;
    }
    let request = ProvRequest::new(format!("r-{cid}")).encode(encoding);
    if !d
        .try_publish(
            &format!("$EDC/{PA}/{cid}/PROV-V1/EXEC/provision"),
            1,
            request,
        )
        .await
    {
        return None;
    }
    let result = match d.publish_received(Duration::from_secs(15)).await {
        Some((_, payload)) => match decode_reply(&payload) {
            Ok((_, ProvReply::Success(s))) => {
                assert_eq!(s.username, format!("{cid}@{ACCOUNT}"));
                Some(Creds {
                    username: s.username,
                    password: s.password,
                })
            }
            Ok((_, ProvReply::Failure(f))) => {
                eprintln!("{cid}: failure reply {} {}", f.code, f.message);
                None
            }
            Err(e) => panic!("{cid}: undecodable reply: {e}"),
        },
        None => None,
    };
    // Let the PUBACK leave before the socket closes.
    tokio::time::sleep(Duration::from_millis(20)).await;
    d.disconnect().await;
    result
}

/// Operational CONNECT with the device's credentials; the CONNACK code.
async fn operational_connack(addr: SocketAddr, cid: &str, c: &Creds, version: Version) -> u8 {
    match Device::connect(Connect {
        version,
        addr,
        client_id: cid,
        username: &c.username,
        password: &c.password,
        manual_acks: false,
    })
    .await
    {
        Ok(d) => {
            d.disconnect().await;
            0
        }
        Err(code) => code,
    }
}

fn version_of(i: usize) -> Version {
    if i.is_multiple_of(2) {
        Version::V3
    } else {
        Version::V5
    }
}

fn encoding_of(i: usize) -> Encoding {
    if (i / 2).is_multiple_of(2) {
        Encoding::Json
    } else {
        Encoding::Kura
    }
}

/// Messages the broker acknowledged (PUBACK success), by number.
#[derive(Default)]
struct Acked {
    /// Retained topic -> the highest number acknowledged on it.
    retained: BTreeMap<u32, u32>,
    /// Retained messages acknowledged in all.
    retained_acks: usize,
    queued: BTreeSet<u32>,
}

/// Retained messages rotate over this many topics: a SUBSCRIBE then gets at most this many,
/// well under `operational.max_queue` (a subscriber's queue would drop the rest).
const RETAINED_TOPICS: u32 = 200;

impl Acked {
    /// Adds a round's acknowledgements (numbers only grow, so a topic keeps its latest).
    fn merge(&mut self, round: Acked) {
        self.retained.extend(round.retained);
        self.retained_acks += round.retained_acks;
        self.queued.extend(round.queued);
    }
}

/// Publishes QoS 1 messages as [`PUBLISHER`] until `stop` or the connection is lost: every
/// fourth one retained on `acme/retained/{N % RETAINED_TOPICS}` with payload N, the others on
/// `acme/queue/N` for the persistent subscriber, which is away. Returns what was acknowledged
/// and the next number.
fn traffic(addr: SocketAddr, stop: Arc<AtomicBool>, first: u32) -> (Acked, u32) {
    let mut acked = Acked::default();
    let mut n = first;
    let o = Options::v5("crash-pub").login(PUBLISHER, APP_PASSWORD);
    let Ok(mut c) = Client::try_connect(addr, &o) else {
        return (acked, n);
    };
    if c.connack_code != 0 {
        return (acked, n);
    }
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let retained = n.is_multiple_of(4);
        let topic = if retained {
            format!("acme/retained/{}", n % RETAINED_TOPICS)
        } else {
            format!("acme/queue/{n}")
        };
        let mut m = Msg::new(&topic, n.to_string()).qos(1).id(c.next_id());
        if retained {
            m = m.retain();
        }
        c.send_publish(&m);
        let id = m.id;
        match c.try_expect(
            WAIT,
            |p| matches!(p, Packet::PubAck { id: i, .. } if *i == id),
        ) {
            Some(Packet::PubAck { code, .. }) if code < 0x80 => {
                if retained {
                    acked.retained.insert(n % RETAINED_TOPICS, n);
                    acked.retained_acks += 1;
                } else {
                    acked.queued.insert(n);
                }
            }
            Some(_) => {}
            // The server is gone.
            None => break,
        }
    }
    (acked, n)
}

/// The persistent subscriber comes back (subscribing again when its session is gone) and
/// takes every queued message; the numbers it received.
fn drain_subscriber(addr: SocketAddr) -> BTreeSet<u32> {
    let o = Options::v3("crash-sub")
        .persistent()
        .login(SUBSCRIBER, APP_PASSWORD);
    let mut c = Client::connect(addr, &o);
    if !c.session_present {
        assert_eq!(c.subscribe("acme/queue/#", 1), 1);
    }
    let got = c
        .drain(QUIET)
        .iter()
        .filter_map(|m| String::from_utf8_lossy(&m.payload).parse().ok())
        .collect();
    c.disconnect();
    got
}

/// The retained messages under `acme/retained/#`: topic -> number.
fn retained_now(addr: SocketAddr, round: usize) -> BTreeMap<u32, u32> {
    let o = Options::v5(&format!("crash-check-{round}")).login(PUBLISHER, APP_PASSWORD);
    let mut c = Client::connect(addr, &o);
    assert_eq!(c.subscribe("acme/retained/#", 1), 1);
    let got = c
        .drain(QUIET)
        .iter()
        .filter_map(|m| {
            let topic = m.topic.rsplit('/').next()?.parse().ok()?;
            Some((topic, String::from_utf8_lossy(&m.payload).parse().ok()?))
        })
        .collect();
    c.disconnect();
    got
}

// ---- Job steps (API.md "Jobs"): Kura-like devices answer the steps of jobs created during
// the round, so that the kill lands on steps in flight.

/// Devices that run the jobs' steps; every job targets all of them.
const JOB_DEVICES: usize = 4;
/// Jobs created per crash round, one every [`JOB_EVERY_MS`], so that they spread over the
/// window of the kill.
const JOBS_PER_ROUND: usize = 10;
const JOB_EVERY_MS: u64 = 30;
/// Attempts per target: one may be failed by a kill, and a retry completes it before the next.
const JOB_ATTEMPTS: u32 = 5;
/// A configuration that Kura's parser applies nothing of (no `esf:` form), answered 200.
const JOB_CONFIGURATION: &str = r#"<configurations><configuration><id>org.eclipse.kura.watchdog.WatchdogService</id><properties><property name="enabled" array="false" encrypted="false" type="Boolean"><value>true</value></property></properties></configuration></configurations>"#;
/// Log lines of an execution that a restart failed (storage's `fail_running_executions`).
const KILLED_STEP: &str = "was in flight when Fleetgate stopped; its outcome is unknown";
const KILLED_BEFORE: &str = "Fleetgate stopped before the first step was sent";

fn jobs_path() -> String {
    format!("/api/v1/accounts/{ACCOUNT}/jobs")
}

fn job_body(n: usize, targets: &[String]) -> Value {
    json!({
        "name": format!("crash-job-{n}"),
        "targets": targets,
        "steps": [
            {"type": "configuration", "configuration": JOB_CONFIGURATION},
            {"type": "command", "command": "echo", "arguments": ["crash", n.to_string()]},
            {"type": "command", "command": "uname", "arguments": ["-a"]},
        ],
        "schedule": {"trigger": "NOW"},
        "maxAttempts": JOB_ATTEMPTS,
        "stepTimeout": 10,
    })
}

/// A job's executions; `None` when the server did not answer.
fn job_executions(admin: SocketAddr, job: &str, query: &str) -> Option<Vec<Value>> {
    let (status, body) = http(
        admin,
        "GET",
        &format!("{}/{job}/executions{query}", jobs_path()),
        None,
    );
    match status {
        200 => Some(body["items"].as_array().unwrap().clone()),
        0 => None,
        other => panic!("executions of job {job}: {other} {body}"),
    }
}

/// What a round's job thread saw acknowledged.
#[derive(Default)]
struct JobRound {
    /// Jobs whose POST was answered 201.
    created: Vec<String>,
    /// Executions read as COMPLETED: execution id -> job id.
    completed: BTreeMap<String, String>,
    /// The next job number.
    next: usize,
}

/// Creates up to [`JOBS_PER_ROUND`] jobs on `targets` until `stop` or the server is gone,
/// reading after each one which executions of the round's jobs have COMPLETED.
fn job_load(
    admin: SocketAddr,
    stop: Arc<AtomicBool>,
    targets: Vec<String>,
    first: usize,
) -> JobRound {
    let mut round = JobRound {
        next: first,
        ..JobRound::default()
    };
    'load: while !stop.load(Ordering::Relaxed) && round.next < first + JOBS_PER_ROUND {
        let n = round.next;
        round.next += 1;
        let (status, body) = http(admin, "POST", &jobs_path(), Some(&job_body(n, &targets)));
        match status {
            201 => round.created.push(body["id"].as_str().unwrap().to_string()),
            0 => break,
            other => panic!("creating job {n}: {other} {body}"),
        }
        for job in &round.created {
            let Some(done) = job_executions(admin, job, "?status=COMPLETED") else {
                break 'load;
            };
            for e in done {
                round
                    .completed
                    .insert(e["id"].as_str().unwrap().to_string(), job.clone());
            }
        }
        std::thread::sleep(Duration::from_millis(JOB_EVERY_MS));
    }
    round
}

/// The Kura-like job devices, connected to `addr` (each has sent its BIRTH).
async fn start_job_devices(addr: SocketAddr, devices: &[(String, Creds)]) -> Vec<KuraDevice> {
    let mut running = Vec::new();
    for (cid, c) in devices {
        running.push(KuraDevice::start(addr, ACCOUNT, cid, &c.username, &c.password).await);
    }
    running
}

async fn stop_job_devices(devices: Vec<KuraDevice>) {
    for d in devices {
        d.stop().await;
    }
}

/// A target's attempt that the restart failed: (job, client ID, attempt, whether a step was in
/// flight rather than none sent yet).
type Killed = (String, String, u64, bool);

/// The job checks right after a restart, before the job devices reconnect: every acknowledged
/// job exists, no execution is RUNNING, every execution read COMPLETED is still COMPLETED.
/// Returns the attempts failed by the kill (their log says so).
fn check_jobs_after_restart(
    admin: SocketAddr,
    round: usize,
    created: &BTreeSet<String>,
    completed: &BTreeMap<String, String>,
) -> Vec<Killed> {
    let (status, list) = http(admin, "GET", &jobs_path(), None);
    assert_eq!(status, 200, "{list}");
    let jobs = list["items"].as_array().unwrap();
    let ids: BTreeSet<&str> = jobs.iter().filter_map(|j| j["id"].as_str()).collect();
    let missing: Vec<&String> = created
        .iter()
        .filter(|id| !ids.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "round {round}: acknowledged jobs missing after the restart: {missing:?}"
    );
    let mut killed = Vec::new();
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for job in jobs {
        let id = job["id"].as_str().unwrap();
        assert_eq!(
            job["targetCounts"]["RUNNING"], 0,
            "round {round}: job {id} has targets RUNNING after the restart: {job}"
        );
        for e in job_executions(admin, id, "").expect("the restarted server answers") {
            assert_ne!(
                e["status"], "RUNNING",
                "round {round}: execution RUNNING after the restart: {e}"
            );
            let log = e["log"].to_string();
            if e["status"] == "FAILED" && (log.contains(KILLED_STEP) || log.contains(KILLED_BEFORE))
            {
                killed.push((
                    id.to_string(),
                    e["clientId"].as_str().unwrap().to_string(),
                    e["attempt"].as_u64().unwrap(),
                    log.contains(KILLED_STEP),
                ));
            }
            by_id.insert(e["id"].as_str().unwrap().to_string(), e);
        }
    }
    let lost: Vec<_> = completed
        .iter()
        .filter(|(e, _)| by_id.get(*e).is_none_or(|x| x["status"] != "COMPLETED"))
        .map(|(e, job)| (job, e, by_id.get(e).map(|x| x["status"].clone())))
        .collect();
    assert!(
        lost.is_empty(),
        "round {round}: executions COMPLETED before the kill are not after the restart \
         (job, execution, status now): {lost:?}"
    );
    killed
}

/// With the job devices connected again: waits until every target of every job has
/// COMPLETED, checks that each attempt the kill failed was retried to completion, and adds
/// every COMPLETED execution to `completed`.
async fn settle_jobs(
    admin: SocketAddr,
    round: usize,
    killed: &[Killed],
    completed: &mut BTreeMap<String, String>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let jobs = loop {
        let (status, list) = http(admin, "GET", &jobs_path(), None);
        assert_eq!(status, 200, "{list}");
        let jobs = list["items"].as_array().unwrap().clone();
        let open: Vec<&Value> = jobs
            .iter()
            .filter(|j| j["targetCounts"]["COMPLETED"].as_u64() != Some(JOB_DEVICES as u64))
            .collect();
        if open.is_empty() {
            break jobs;
        }
        assert!(
            Instant::now() < deadline,
            "round {round}: jobs not completed within 60 s of the devices' return: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (job, cid, attempt, _) in killed {
        let e = job_executions(admin, job, &format!("?clientId={cid}")).unwrap();
        assert!(
            e.iter()
                .any(|x| x["status"] == "COMPLETED" && x["attempt"].as_u64() > Some(*attempt)),
            "round {round}: job {job} on {cid}: attempt {attempt}, failed by the kill, was not \
             retried to completion: {e:?}"
        );
    }
    for job in &jobs {
        let id = job["id"].as_str().unwrap();
        for e in job_executions(admin, id, "?status=COMPLETED").unwrap() {
            completed.insert(e["id"].as_str().unwrap().to_string(), id.to_string());
        }
    }
}

/// The checks after every restart.
async fn check_after_restart(
    s: &Server,
    round: usize,
    finished: &BTreeMap<String, Creds>,
    acknowledged: &BTreeSet<String>,
) {
    // No request is left RUNNING.
    let (status, body) = http(
        s.admin,
        "GET",
        &format!("{}?status=RUNNING&limit=1000", requests_path()),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let running: Vec<&Value> = body["items"].as_array().unwrap().iter().collect();
    assert!(
        running.is_empty(),
        "round {round}: requests RUNNING after restart: {running:?}"
    );

    // Every acknowledged request exists.
    for id in acknowledged {
        let (status, body) = http(s.admin, "GET", &format!("{}/{id}", requests_path()), None);
        assert_eq!(
            status, 200,
            "round {round}: acknowledged request {id} is gone: {body}"
        );
    }

    // Every device that received its reply has a user and can connect with it.
    let (status, users) = http(
        s.admin,
        "GET",
        &format!("/api/v1/accounts/{ACCOUNT}/users"),
        None,
    );
    assert_eq!(status, 200, "{users}");
    let usernames: BTreeSet<&str> = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    let mut tasks = Vec::new();
    for (i, (cid, creds)) in finished.iter().enumerate() {
        assert!(
            usernames.contains(creds.username.as_str()),
            "round {round}: {cid} got its reply but user {} does not exist",
            creds.username
        );
        let (addr, cid, creds) = (s.operational, cid.clone(), creds.clone());
        tasks.push(tokio::spawn(async move {
            let code = operational_connack(addr, &cid, &creds, version_of(i)).await;
            (cid, code)
        }));
    }
    for t in tasks {
        let (cid, code) = t.await.unwrap();
        assert_eq!(
            code, 0,
            "round {round}: {cid} got its reply but its operational CONNECT is refused ({code:#04x})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_enrollment_loses_nothing_acknowledged() {
    let rounds: usize = std::env::var("FLEETGATE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("FLEETGATE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_f1ee);
    eprintln!("crash test: {rounds} rounds, seed {seed} (FLEETGATE_CRASH_SEED)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");

    let mut server = Server::start(&data, &log);
    let (status, body) = http(
        server.admin,
        "POST",
        "/api/v1/accounts",
        Some(&json!({ "name": ACCOUNT })),
    );
    assert_eq!(status, 201, "{body}");
    for (name, permissions) in [
        ("pub", json!(["broker:connect", "data:read", "data:write"])),
        ("sub", json!(["broker:connect", "data:read"])),
    ] {
        let (status, body) = http(
            server.admin,
            "POST",
            &format!("/api/v1/accounts/{ACCOUNT}/users"),
            Some(&json!({ "name": name, "password": APP_PASSWORD, "permissions": permissions })),
        );
        assert_eq!(status, 201, "{body}");
    }
    // The subscriber's persistent session exists before the first message.
    drain_subscriber(server.operational);
    let mut acked = Acked::default();
    let mut next_message = 0u32;
    let mut queued_delivered = 0usize;

    let mut acknowledged = BTreeSet::new();
    let mut cids: Vec<String> = Vec::new();
    let mut finished: BTreeMap<String, Creds> = BTreeMap::new();
    let mut extra = 0usize;
    let mut kills = 0usize;

    // The job devices: enrolled once, connected to every run of the server until its kill.
    let mut job_devices = Vec::new();
    for i in 0..JOB_DEVICES {
        let cid = format!("crash-job-{i}");
        let (status, body) = http(
            server.admin,
            "POST",
            &requests_path(),
            Some(&request_body(&cid)),
        );
        assert_eq!(status, 201, "{body}");
        acknowledged.insert(body["id"].as_str().unwrap().to_string());
        let creds = enroll(
            server.provisioning,
            cid.clone(),
            Version::V3,
            Encoding::Json,
        )
        .await
        .unwrap_or_else(|| panic!("job device {cid} could not enroll"));
        job_devices.push((cid, creds));
    }
    let job_targets: Vec<String> = job_devices.iter().map(|(cid, _)| cid.clone()).collect();
    let mut kura = start_job_devices(server.operational, &job_devices).await;
    let mut jobs_created: BTreeSet<String> = BTreeSet::new();
    let mut jobs_completed: BTreeMap<String, String> = BTreeMap::new();
    let mut jobs_killed: BTreeSet<Killed> = BTreeSet::new();
    let mut next_job = 0usize;
    for round in 0..=rounds {
        let last = round == rounds;
        // A fresh batch of devices every crash round, so that every round interrupts some.
        if !last {
            for _ in 0..DEVICES {
                let cid = format!("crash-dev-{:04}", cids.len());
                let (status, body) = http(
                    server.admin,
                    "POST",
                    &requests_path(),
                    Some(&request_body(&cid)),
                );
                assert_eq!(status, 201, "{body}");
                acknowledged.insert(body["id"].as_str().unwrap().to_string());
                cids.push(cid);
            }
        }
        let pending: Vec<(usize, String)> = cids
            .iter()
            .enumerate()
            .filter(|(_, c)| !finished.contains_key(*c))
            .map(|(i, c)| (i, c.clone()))
            .collect();

        // API writes racing the kill, in a thread of their own.
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            let admin = server.admin;
            let first = extra;
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut n = first;
                while !stop.load(Ordering::Relaxed) && n < first + 20 {
                    let cid = format!("crash-api-{n:04}");
                    n += 1;
                    let (status, body) =
                        http(admin, "POST", &requests_path(), Some(&request_body(&cid)));
                    match status {
                        201 => acked.push(body["id"].as_str().unwrap().to_string()),
                        0 => break,
                        other => panic!("creating {cid}: {other} {body}"),
                    }
                }
                (acked, n)
            })
        };

        // Retained and queued QoS 1 messages on the operational listener.
        let publisher = {
            let (stop, addr, first) = (stop.clone(), server.operational, next_message);
            std::thread::spawn(move || traffic(addr, stop, first))
        };
        // Job steps: jobs created through the API, their steps answered by the job devices.
        let jobber = {
            let (stop, admin) = (stop.clone(), server.admin);
            let (targets, first) = (job_targets.clone(), next_job);
            std::thread::spawn(move || job_load(admin, stop, targets, first))
        };

        // Enrollments.
        let tasks: Vec<_> = pending
            .iter()
            .map(|(i, cid)| {
                let (addr, cid, i) = (server.provisioning, cid.clone(), *i);
                let offset = if last {
                    0
                } else {
                    rng.random_range(0..SPREAD_MS)
                };
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(offset)).await;
                    let r = enroll(addr, cid.clone(), version_of(i), encoding_of(i)).await;
                    (cid, r)
                })
            })
            .collect();

        if last {
            // The clean round: everything finishes, then a clean stop and restart.
            let mut results = Vec::new();
            for t in tasks {
                results.push(t.await.unwrap());
            }
            stop.store(true, Ordering::Relaxed);
            let (api_acked, n) = writer.join().unwrap();
            acknowledged.extend(api_acked);
            extra = n;
            let (round_acked, n) = publisher.join().unwrap();
            acked.merge(round_acked);
            next_message = n;
            let jobs = jobber.join().unwrap();
            next_job = jobs.next;
            jobs_created.extend(jobs.created);
            jobs_completed.extend(jobs.completed);
            // Every step done before the clean stop.
            settle_jobs(server.admin, round, &[], &mut jobs_completed).await;
            stop_job_devices(std::mem::take(&mut kura)).await;
            for (cid, r) in results {
                match r {
                    Some(c) => {
                        finished.insert(cid, c);
                    }
                    None => panic!("{cid} could not enroll in the final round without a kill"),
                }
            }
            server.stop();
        } else {
            let delay = rng.random_range(50..=400);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            server.kill();
            kills += 1;
            stop.store(true, Ordering::Relaxed);
            let (api_acked, n) = writer.join().unwrap();
            acknowledged.extend(api_acked);
            extra = n;
            let (round_acked, n) = publisher.join().unwrap();
            acked.merge(round_acked);
            next_message = n;
            let jobs = jobber.join().unwrap();
            next_job = jobs.next;
            let (jobs_acked, read_completed) = (jobs.created.len(), jobs.completed.len());
            jobs_created.extend(jobs.created);
            jobs_completed.extend(jobs.completed);
            stop_job_devices(std::mem::take(&mut kura)).await;
            let mut got = 0;
            for t in tasks {
                let (cid, r) = t.await.unwrap();
                if let Some(c) = r {
                    got += 1;
                    finished.insert(cid, c);
                }
            }
            eprintln!(
                "round {round}: killed after {delay} ms; {got} of {} pending devices got their \
                 reply; {jobs_acked} jobs acknowledged, {read_completed} executions read COMPLETED",
                pending.len()
            );
        }

        server = Server::start(&data, &log);
        check_after_restart(&server, round, &finished, &acknowledged).await;
        let killed = check_jobs_after_restart(server.admin, round, &jobs_created, &jobs_completed);
        kura = start_job_devices(server.operational, &job_devices).await;
        settle_jobs(server.admin, round, &killed, &mut jobs_completed).await;
        let new_kills = killed.iter().filter(|k| !jobs_killed.contains(*k)).count();
        jobs_killed.extend(killed);
        eprintln!(
            "round {round}: {} jobs acknowledged so far, each present; {new_kills} executions \
             failed by the {}, each retried to completion; {} executions COMPLETED, all kept",
            jobs_created.len(),
            if last { "clean stop" } else { "kill" },
            jobs_completed.len()
        );
        let retained = retained_now(server.operational, round);
        // A later message on the topic may have been stored without its PUBACK (the kill).
        let missing: Vec<_> = acked
            .retained
            .iter()
            .filter(|(topic, n)| retained.get(topic).is_none_or(|r| r < n))
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged retained messages missing after the restart: {missing:?}"
        );
        let delivered = drain_subscriber(server.operational);
        let lost: Vec<u32> = acked.queued.difference(&delivered).copied().collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged QoS 1 messages for the persistent session not delivered \
             after the restart: {lost:?}"
        );
        queued_delivered += acked.queued.len();
        eprintln!(
            "round {round}: {} retained acknowledged so far (each present, or a later one on its \
             topic), {} queued acknowledged, {} delivered after the restart",
            acked.retained_acks,
            acked.queued.len(),
            delivered.len()
        );
        acked.queued.clear();
    }

    assert_eq!(finished.len(), cids.len());
    // After the clean round every device's request is COMPLETED, or FAILED when its PUBACK
    // raced an earlier kill.
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for cid in &cids {
        let (status, body) = http(
            server.admin,
            "GET",
            &format!("{}?clientId={cid}", requests_path()),
            None,
        );
        assert_eq!(status, 200, "{body}");
        for item in body["items"].as_array().unwrap() {
            let st = item["status"].as_str().unwrap();
            *statuses.entry(st.to_string()).or_insert(0usize) += 1;
            assert!(
                st == "COMPLETED" || st == "FAILED",
                "{cid}: request status {st} after the final round"
            );
        }
    }
    stop_job_devices(kura).await;
    eprintln!(
        "crash test: {kills} kills, {} devices ({statuses:?}), {} requests acknowledged, \
         {} retained messages acknowledged, {queued_delivered} queued QoS 1 messages acknowledged \
         and delivered after their restart, {} jobs acknowledged, {} job executions RUNNING at a \
         kill ({} with a step in flight; each FAILED, then retried to completion), {} job \
         executions COMPLETED, {:.1} s",
        finished.len(),
        acknowledged.len(),
        acked.retained_acks,
        jobs_created.len(),
        jobs_killed.len(),
        jobs_killed.iter().filter(|k| k.3).count(),
        jobs_completed.len(),
        started.elapsed().as_secs_f64()
    );
    server.stop();
}
