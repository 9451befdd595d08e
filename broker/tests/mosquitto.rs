//! Mosquitto 2.0 loading Fleetgate's native plugin (HOOKS.md 3, issue 13), against the real
//! `fleetgate serve` binary: devices provisioned by Fleetgate with Mosquitto as `brokerUrl`
//! connect there with their identity and are confined there; an account user with `data:read`
//! receives their telemetry; a disabled user is refused within a second; with Fleetgate
//! stopped known devices still connect; after Fleetgate comes back (a new epoch) devices
//! provisioned since connect; the registry follows connects and disconnects.
//!
//! Needs `/usr/sbin/mosquitto` (scripts/install-test-deps.sh installs it); the plugin library
//! is built here when it is missing or older than its sources.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::binary::{Broker, HOOKS_TOKEN};
use common::raw::{Client, Msg, Options};
use serde_json::{Value, json};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const APP_PASSWORD: &str = "dashboard-passphrase-1";

/// The workspace's directory.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The newest modification time of the files under `dir`.
fn newest(dir: &Path) -> SystemTime {
    let mut t = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let m = if path.is_dir() {
            newest(&path)
        } else {
            entry.metadata().unwrap().modified().unwrap()
        };
        t = t.max(m);
    }
    t
}

/// `libfleetgate_mosquitto.so` next to the `fleetgate` binary, built when missing or older than
/// the sources it is made of (a workspace build makes it too).
fn plugin_library() -> PathBuf {
    let so = Path::new(env!("CARGO_BIN_EXE_fleetgate")).with_file_name("libfleetgate_mosquitto.so");
    let ws = workspace();
    let sources = ["mosquitto-plugin", "replica", "auth-hook", "acl"]
        .iter()
        .map(|c| newest(&ws.join(c).join("src")))
        .max()
        .unwrap();
    let fresh = std::fs::metadata(&so)
        .and_then(|m| m.modified())
        .is_ok_and(|built| built >= sources);
    if !fresh {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "fleetgate-mosquitto"])
            .current_dir(&ws)
            .status()
            .expect("cargo build -p fleetgate-mosquitto");
        assert!(status.success(), "the plugin does not build");
    }
    assert!(so.exists(), "{} missing", so.display());
    so
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Mosquitto process with the plugin, on a loopback port; killed by PID on drop.
struct Mosquitto {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Mosquitto {
    fn start(hooks: SocketAddr) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        // `user root`: started as root, Mosquitto would otherwise drop to `mosquitto`, which
        // cannot read the test's temporary directory.
        std::fs::write(
            &conf,
            format!(
                "user root\nlistener {port} 127.0.0.1\nallow_anonymous false\n\
                 log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n\
                 plugin {}\nplugin_opt_url http://{hooks}\nplugin_opt_token {HOOKS_TOKEN}\n",
                plugin_library().display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("mosquitto.log")).unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start mosquitto (scripts/install-test-deps.sh)");
        let m = Mosquitto {
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(m.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen: {}",
                m.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// The CONNACK code of a CONNECT (0: accepted); `None` when the connection failed.
    fn connack(&self, o: &Options) -> Option<u8> {
        Client::try_connect(self.addr, o)
            .ok()
            .map(|c| c.connack_code)
    }

    /// Connects, retrying until accepted within `within`; panics otherwise.
    fn connect_within(&self, o: &Options, within: Duration) -> Client {
        let deadline = Instant::now() + within;
        loop {
            match Client::try_connect(self.addr, o) {
                Ok(c) if c.connack_code == 0 => return c,
                other if Instant::now() > deadline => panic!(
                    "{} not accepted by mosquitto: {:?}\n{}",
                    o.client_id,
                    other.map(|c| c.connack_code),
                    self.log()
                ),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- mosquitto log ----\n{}", self.log());
        }
    }
}

/// The registry's connection state of `cid`, once it is `want` (within 5 s).
fn connection_becomes(fleetgate: &Broker, cid: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) =
            fleetgate.request("GET", &format!("/api/v1/accounts/acme/devices/{cid}"), None);
        assert_eq!(status, 200, "{body}");
        if body["connection"] == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{cid} is {} instead of {want}",
            body["connection"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn login(cid: &str, identity: &(String, String)) -> Options {
    Options::v3(cid).login(&identity.0, &identity.1)
}

#[test]
fn mosquitto_decides_with_fleetgate_through_the_plugin() {
    let mut fleetgate = Broker::start_operational("");
    let mosquitto = Mosquitto::start(fleetgate.hooks);

    // Provisioned by Fleetgate, sent to Mosquitto: connects there with its new identity.
    let dev1 = fleetgate.provision_to("acme", "dev-1", &mosquitto.url());
    let dev2 = fleetgate.provision_to("acme", "dev-2", &mosquitto.url());
    let mut d1 = mosquitto.connect_within(&login("dev-1", &dev1), Duration::from_secs(2));
    connection_becomes(&fleetgate, "dev-1", "CONNECTED");

    // Refused: a wrong password, an unknown user, an anonymous client, another device's user
    // on a device's client ID (STRICT reservation).
    let wrong = (dev1.0.clone(), "not-the-password".to_string());
    assert_ne!(mosquitto.connack(&login("dev-1", &wrong)), Some(0));
    let nobody = ("nobody@acme".to_string(), dev1.1.clone());
    assert_ne!(mosquitto.connack(&login("dev-1", &nobody)), Some(0));
    assert_ne!(mosquitto.connack(&Options::v3("anon")), Some(0));
    assert_ne!(mosquitto.connack(&login("dev-1", &dev2)), Some(0));

    // An account user with data:read.
    let (status, body) = fleetgate.post(
        "/api/v1/accounts/acme/users",
        &json!({"name": "dash", "password": APP_PASSWORD,
                "permissions": ["broker:connect", "data:read"]}),
    );
    assert_eq!(status, 201, "{body}");
    let dash = ("dash@acme".to_string(), APP_PASSWORD.to_string());
    let mut app = mosquitto.connect_within(&login("dash-1", &dash), Duration::from_secs(2));
    assert_eq!(app.subscribe("acme/#", 0), 0);
    assert_eq!(app.subscribe("other/#", 0), 0x80);
    // An application may not take a device's client ID; a wrong password is refused.
    assert_ne!(mosquitto.connack(&login("dev-2", &dash)), Some(0));
    let wrong_app = (dash.0.clone(), "wrong-passphrase-1".to_string());
    assert_ne!(mosquitto.connack(&login("dash-2", &wrong_app)), Some(0));

    // Confined: SUBACK refusal on a foreign filter; a foreign publish is dropped (acknowledged
    // on 3.1.1, delivered to nobody); its own telemetry reaches the application.
    assert_eq!(d1.subscribe("acme/dev-2/#", 0), 0x80);
    assert_eq!(d1.subscribe("#", 0), 0x80);
    assert_eq!(d1.subscribe("acme/dev-1/#", 0), 0);
    assert_eq!(
        d1.publish(Msg::new("acme/dev-2/telemetry", "forged").qos(1)),
        0
    );
    assert_eq!(
        d1.publish(Msg::new("acme/dev-1/telemetry", "t=21").qos(1)),
        0
    );
    let got = app.receive();
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice()),
        ("acme/dev-1/telemetry", &b"t=21"[..])
    );
    assert!(
        app.drain(Duration::from_millis(300)).is_empty(),
        "the forged message was dropped"
    );

    // The registry follows the session's end.
    d1.disconnect();
    connection_becomes(&fleetgate, "dev-1", "DISCONNECTED");

    // Disabled through the API: refused at Mosquitto within a second, and its open
    // connection ends.
    let mut d1 = mosquitto.connect_within(&login("dev-1", &dev1), Duration::from_secs(1));
    let (status, body) = fleetgate.request(
        "PATCH",
        &format!("/api/v1/accounts/acme/users/{}", dev1.0),
        Some(&json!({"enabled": false})),
    );
    assert_eq!(status, 200, "{body}");
    let disabled_at = Instant::now();
    while mosquitto.connack(&login("dev-1", &dev1)) == Some(0) {
        assert!(
            disabled_at.elapsed() < Duration::from_secs(1),
            "a disabled user still connects after 1 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(disabled_at.elapsed() < Duration::from_secs(1));
    assert!(
        d1.closed(Duration::from_secs(3)),
        "the disabled user's connection was kept"
    );

    // Fleetgate away: known devices keep connecting, from the plugin's last replica.
    fleetgate.kill();
    let d2 = mosquitto.connect_within(&login("dev-2", &dev2), Duration::from_secs(1));
    d2.disconnect();
    assert_ne!(
        mosquitto.connack(&login("dev-1", &dev1)),
        Some(0),
        "still disabled"
    );
    assert_ne!(mosquitto.connack(&login("dev-2", &wrong)), Some(0));

    // Back (a new process, a new epoch, the same data and hooks port): the plugin takes a new
    // snapshot, and a device provisioned now connects.
    fleetgate.start_again();
    let dev3 = fleetgate.provision_to("acme", "dev-3", &mosquitto.url());
    let d3 = mosquitto.connect_within(&login("dev-3", &dev3), Duration::from_secs(5));
    connection_becomes(&fleetgate, "dev-3", "CONNECTED");
    d3.disconnect();
    connection_becomes(&fleetgate, "dev-3", "DISCONNECTED");
    assert!(
        mosquitto.log().contains("deciding from the last replica"),
        "the outage is logged once: {}",
        mosquitto.log()
    );
    assert!(!mosquitto.log().contains(&dev1.1), "a password in the log");
}

#[test]
fn the_feed_needs_the_hooks_token_and_continues_from_a_position() {
    let fleetgate = Broker::start_operational("");
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent();
    let url = format!("http://{}/hooks/replica", fleetgate.hooks);
    let get = |url: &str, token: &str| -> (u16, Value) {
        let mut r = agent
            .get(url)
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    };
    assert_eq!(get(&url, "wrong-token").0, 401);
    let (status, snapshot) = get(&url, HOOKS_TOKEN);
    assert_eq!(status, 200);
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    let (epoch, seq) = (
        snapshot["position"]["epoch"].as_u64().unwrap(),
        snapshot["position"]["seq"].as_u64().unwrap(),
    );

    // Nothing new: the request waits (here 1 s) and answers an empty changes page.
    let started = Instant::now();
    let (_, idle) = get(
        &format!("{url}?epoch={epoch}&seq={seq}&wait=1"),
        HOOKS_TOKEN,
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(idle["type"], "changes", "{idle}");
    assert_eq!(idle["position"]["seq"].as_u64(), Some(seq));

    // A change answers a waiting request at once, with the changed records.
    let waiting = {
        let url = format!("{url}?epoch={epoch}&seq={seq}&wait=20");
        let agent = agent.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut r = agent
                .get(&url)
                .header("Authorization", format!("Bearer {HOOKS_TOKEN}"))
                .call()
                .unwrap();
            let text = r.body_mut().read_to_string().unwrap();
            (
                started.elapsed(),
                serde_json::from_str::<Value>(&text).unwrap(),
            )
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = fleetgate.post("/api/v1/accounts", &json!({"name": "acme"}));
    assert_eq!(status, 201);
    let (took, changes) = waiting.join().unwrap();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(changes["type"], "changes", "{changes}");
    assert!(changes["position"]["seq"].as_u64().unwrap() > seq);
    assert!(
        changes["upserts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "account" && r["name"] == "acme"),
        "{changes}"
    );

    // Another epoch (or a position out of the journal): a snapshot again.
    let (_, again) = get(&format!("{url}?epoch={}&seq=0", epoch ^ 1), HOOKS_TOKEN);
    assert_eq!(again["type"], "snapshot");
}
