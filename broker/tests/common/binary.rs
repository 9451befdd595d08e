//! The real `fleetgate serve` binary as a child process, with the sandbox listener on, for the
//! tests that need what only a process gives: SIGKILL, SIGTERM and a restart on the same data
//! dir, and the conformance suite (a separate Python process talking to it).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "binary-admin-token-0123456789";

/// The hook listener's token (HOOKS.md 2).
pub const HOOKS_TOKEN: &str = "binary-hooks-token-0123456789";

/// The sandbox settings most broker tests want: a subscription refused for
/// `test/nosubscribe` (what the Paho suite expects) and otherwise the defaults.
pub const SANDBOX: &str = r#"
[operational.sandbox]
deny_subscribe = ["test/nosubscribe"]
"#;

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A running `fleetgate serve`: its ports, data dir and log. Killed on drop.
pub struct Broker {
    child: Option<Child>,
    /// Temporary directory: `data/` (the data dir), `fleetgate.toml`, `fleetgate.log`.
    dir: tempfile::TempDir,
    pub admin: SocketAddr,
    pub provisioning: SocketAddr,
    pub operational: SocketAddr,
    pub sandbox: SocketAddr,
    /// The HTTP hook listener.
    pub hooks: SocketAddr,
    /// Whether start-up waits for the sandbox listener (see [`Broker::start_operational`]).
    needs_sandbox: bool,
    /// The data dir when not `dir/data` (see [`Broker::start_on`]).
    data: Option<PathBuf>,
}

impl Broker {
    /// Starts the binary with `config` (TOML, merged over the defaults) on a new data dir, the
    /// sandbox on. Panics, with the log, unless the admin API answers and the sandbox accepts
    /// connections within 20 s.
    ///
    /// With `FLEETGATE_TEST_SANDBOX=HOST:PORT` nothing is started and the tests talk to that
    /// broker instead (e.g. Mosquitto, to check a test itself); `config` is then the other
    /// broker's business, and the tests that kill or restart the binary fail.
    pub fn start(config: &str) -> Broker {
        Broker::start_with(config, true, None)
    }

    /// Like [`Broker::start`] with the data dir at `data` (e.g. on a small filesystem the
    /// test mounted); configuration and log stay in the temporary directory.
    pub fn start_on(config: &str, data: &Path) -> Broker {
        Broker::start_with(config, true, Some(data.to_path_buf()))
    }

    /// Like [`Broker::start`] for tests of the operational listener only: start-up does not
    /// wait for the sandbox (on all the same).
    pub fn start_operational(config: &str) -> Broker {
        Broker::start_with(config, false, None)
    }

    fn start_with(config: &str, needs_sandbox: bool, data: Option<PathBuf>) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        if let Ok(other) = std::env::var("FLEETGATE_TEST_SANDBOX") {
            let addr: SocketAddr = other.parse().expect("FLEETGATE_TEST_SANDBOX=HOST:PORT");
            return Broker {
                child: None,
                dir,
                admin: addr,
                provisioning: addr,
                operational: addr,
                sandbox: addr,
                hooks: addr,
                needs_sandbox,
                data,
            };
        }
        // Two network workers, as on the machines here, unless the test's config says.
        let config = if config.contains("[server]") {
            config.to_string()
        } else {
            format!("{config}\n[server]\nworkers = 2\n")
        };
        std::fs::write(dir.path().join("fleetgate.toml"), config).unwrap();
        let mut b = Broker {
            child: None,
            dir,
            admin: free_addr(),
            provisioning: free_addr(),
            operational: free_addr(),
            sandbox: free_addr(),
            hooks: free_addr(),
            needs_sandbox,
            data,
        };
        b.boot();
        b
    }

    /// The log so far (stdout and stderr of every run).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("fleetgate.log")
    }

    /// The data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.data
            .clone()
            .unwrap_or_else(|| self.dir.path().join("data"))
    }

    fn boot(&mut self) {
        // Ports picked by binding port 0; picked again if another process took one meanwhile.
        for attempt in 0..5 {
            if attempt > 0 {
                (
                    self.admin,
                    self.provisioning,
                    self.operational,
                    self.sandbox,
                    self.hooks,
                ) = (
                    free_addr(),
                    free_addr(),
                    free_addr(),
                    free_addr(),
                    free_addr(),
                );
            }
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path())
                .unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_fleetgate"))
                .arg("serve")
                .arg("--config")
                .arg(self.dir.path().join("fleetgate.toml"))
                .arg("--data-dir")
                .arg(self.data_dir())
                .arg("--admin-listen")
                .arg(self.admin.to_string())
                .arg("--provisioning-listen")
                .arg(self.provisioning.to_string())
                .arg("--operational-listen")
                .arg(self.operational.to_string())
                .arg("--sandbox-listen")
                .arg(self.sandbox.to_string())
                .arg("--hooks-listen")
                .arg(self.hooks.to_string())
                .env("FLEETGATE_ADMIN_TOKEN", TOKEN)
                .env("FLEETGATE_HOOKS_TOKEN", HOOKS_TOKEN)
                .env("FLEETGATE_AUTH_ARGON2_M_COST", "64")
                .env("FLEETGATE_AUTH_ARGON2_T_COST", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("cannot start fleetgate");
            self.child = Some(child);
            match self.wait_ready() {
                Ok(()) => return,
                Err(Ready::Exited) => {
                    eprintln!("fleetgate exited at start; retrying with new ports");
                }
                Err(Ready::NoSandbox) => {
                    self.kill();
                    panic!(
                        "fleetgate is up but its sandbox listener {} does not accept \
                         connections (operational.sandbox not implemented?)",
                        self.sandbox
                    );
                }
            }
            self.kill();
        }
        panic!("fleetgate did not become healthy");
    }

    fn wait_ready(&mut self) -> Result<(), Ready> {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return Err(Ready::Exited);
            }
            if healthy(self.admin) && !self.needs_sandbox {
                return Ok(());
            }
            if healthy(self.admin) {
                // The listeners bind before the admin API answers; a short grace for the
                // sandbox all the same, so that a missing one fails with its own message.
                let until = Instant::now() + Duration::from_secs(3);
                while Instant::now() < until {
                    if TcpStream::connect_timeout(&self.sandbox, Duration::from_millis(200)).is_ok()
                    {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                return Err(Ready::NoSandbox);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Ready::Exited)
    }

    /// SIGKILL: no shutdown, no store close.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit (status 0) within 15 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Through the `kill` command: the workspace denies `unsafe` (libc::kill).
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(
                    status.success(),
                    "fleetgate exited with {status} on SIGTERM"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("fleetgate did not exit within 15 s of SIGTERM");
    }

    /// Starts the binary again on the same data dir and configuration, on new ports, after
    /// [`Broker::kill`] or [`Broker::stop`].
    pub fn start_again(&mut self) {
        assert!(
            std::env::var_os("FLEETGATE_TEST_SANDBOX").is_none(),
            "this test restarts the real binary: unset FLEETGATE_TEST_SANDBOX"
        );
        assert!(self.child.is_none(), "stop or kill first");
        (
            self.admin,
            self.provisioning,
            self.operational,
            self.sandbox,
        ) = (free_addr(), free_addr(), free_addr(), free_addr());
        self.boot();
    }

    /// `POST` JSON to the admin API with the admin token: (status, JSON body or Null).
    pub fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.request("POST", path, Some(body))
    }

    /// Any admin API call with the admin token: (status, JSON body or Null).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.admin))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/json");
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut r = agent
            .run(req.body(body).unwrap())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Provisions device `cid` in `account` (created here) over the provisioning listener
    /// (PROV-V1, JSON, MQTT 3.1.1) and returns its operational (username, password).
    pub fn provision(&self, account: &str, cid: &str) -> (String, String) {
        self.provision_to(account, cid, "mqtt://127.0.0.1:1884")
    }

    /// [`Broker::provision`] with the request's `brokerUrl` (where the device is sent).
    pub fn provision_to(&self, account: &str, cid: &str, broker_url: &str) -> (String, String) {
        use super::raw::{Client, Msg, Options};
        use fleetgate_kura::{Encoding, ProvReply, ProvRequest};
        const PASSWORD: &str = "fleet-password-1";
        let (status, body) = self.post("/api/v1/accounts", &serde_json::json!({ "name": account }));
        assert!(status == 201 || status == 409, "{status} {body}");
        let puser = format!("fleet-{account}");
        let (status, body) = self.post(
            &format!("/api/v1/accounts/{account}/provision-requests"),
            &serde_json::json!({
                "clientId": cid,
                "provisionUsername": puser,
                "provisionPassword": PASSWORD,
                "confirmProvisionPassword": PASSWORD,
                "brokerUrl": broker_url,
            }),
        );
        assert_eq!(status, 201, "{body}");
        let mut d = Client::connect(self.provisioning, &Options::v3(cid).login(&puser, PASSWORD));
        assert_eq!(
            d.subscribe(&format!("$EDC/provision/{cid}/PROV-V1/REPLY/#"), 1),
            1
        );
        let request = Msg::new(
            &format!("$EDC/provision/{cid}/PROV-V1/EXEC/provision"),
            ProvRequest::new("r-1").encode(Encoding::Json),
        );
        assert_eq!(d.publish(request.qos(1)), 0);
        let reply = d.receive();
        d.disconnect();
        let (_, reply) = fleetgate_kura::decode_reply(&reply.payload).unwrap();
        let ProvReply::Success(ok) = reply else {
            panic!("failure reply: {reply:?}")
        };
        (ok.username, ok.password)
    }

    /// CONNECT to the operational listener as a provisioned device, retrying while its
    /// identity's commit is on its way; the client with the CONNACK (whatever its code).
    pub fn operational_connect(&self, o: &super::raw::Options) -> super::raw::Client {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match super::raw::Client::try_connect(self.operational, o) {
                // 0x04 / 0x86: the identity is not readable yet.
                Ok(c) if ![0x04, 0x86].contains(&c.connack_code) => return c,
                other if Instant::now() > deadline => panic!(
                    "operational CONNECT of {}: {:?}",
                    o.client_id,
                    other.map(|c| c.connack_code)
                ),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The process id of the running binary (to sample its RSS and open fds in /proc).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("fleetgate is not running").id()
    }

    /// The directory of the run (configuration, data, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

enum Ready {
    Exited,
    NoSandbox,
}

fn healthy(admin: SocketAddr) -> bool {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .new_agent();
    matches!(
        agent.get(&format!("http://{admin}/healthz")).call(),
        Ok(r) if r.status().as_u16() == 200
    )
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- fleetgate log ----\n{}", self.log());
        }
    }
}
