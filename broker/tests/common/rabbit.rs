//! A two-node RabbitMQ 3.10 cluster behind HAProxy (HOOKS.md 4), as child processes on loopback
//! ports in a temporary directory: `rabbitmq_mqtt` and `rabbitmq_auth_backend_http` asking a
//! Fleetgate hook listener for every decision.
//!
//! Nothing is installed here: Debian's `rabbitmq-server` and `haproxy` come from
//! `scripts/install-test-deps.sh`, and a machine without them fails with that hint. Everything
//! started here (epmd, both nodes, HAProxy) is killed by PID on drop, the nodes by process group.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to accept MQTT connections: about 9 s on a quiet machine, up to
/// 20 s seen here with two builds running beside it.
const NODE_START: Duration = Duration::from_secs(45);

/// How long epmd and HAProxy may take to listen.
const HELPER_START: Duration = Duration::from_secs(10);

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// `program` from `PATH` or the sbin directories (not on a normal user's `PATH`), or a failure
/// that says how to install it.
fn installed(program: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{program} is not installed: run scripts/install-test-deps.sh (Debian's {package})"
            )
        })
}

/// The server script of Debian's package. Not `/usr/sbin/rabbitmq-server`: that wrapper
/// switches to the `rabbitmq` user, whose environment would replace the per-node one below.
fn rabbitmq_sbin() -> PathBuf {
    let lib = Path::new("/usr/lib/rabbitmq/lib");
    std::fs::read_dir(lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("sbin"))
        .find(|sbin| sbin.join("rabbitmq-server").is_file())
        .unwrap_or_else(|| {
            panic!(
                "RabbitMQ is not installed (no {}/rabbitmq_server-*/sbin/rabbitmq-server): run \
                 scripts/install-test-deps.sh (Debian's rabbitmq-server)",
                lib.display()
            )
        })
}

/// A child process, killed on drop: its whole process group when it leads one, because
/// `rabbitmq-server` is a shell script whose Erlang VM is its child.
struct Process {
    child: Child,
    group: bool,
}

impl Process {
    fn spawn(mut cmd: Command, log: &Path, group: bool) -> Process {
        let out = std::fs::File::create(log).unwrap();
        if group {
            cmd.process_group(0);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Process { child, group }
    }

    /// Waits until `addr` accepts connections; panics with the tails of `logs` if the process
    /// exits or `limit` passes.
    fn wait_listening(&mut self, what: &str, addr: SocketAddr, limit: Duration, logs: &[PathBuf]) {
        let deadline = Instant::now() + limit;
        while !listening(addr) {
            let exited = self.child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let logs: Vec<String> = logs.iter().map(|l| tail(l)).collect();
                panic!(
                    "{what} does not listen on {addr} ({}):\n{}",
                    exited.map_or(format!("not within {limit:?}"), |s| format!("exited: {s}")),
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.group {
            // Through the `kill` command: the workspace denies `unsafe` (libc::kill).
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last lines of a log, for failure messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "---- {} ----\n{}",
        path.display(),
        lines[lines.len().saturating_sub(40)..].join("\n")
    )
}

/// One RabbitMQ node.
struct RabbitNode {
    /// `rabbitN@localhost`.
    name: String,
    /// Its MQTT listener.
    mqtt: SocketAddr,
    dir: PathBuf,
    process: Process,
}

impl RabbitNode {
    /// The node's own log.
    fn log(&self) -> PathBuf {
        self.dir.join("log").join(format!("{}.log", self.name))
    }

    /// The logs worth reading when something failed: the script's output and the node's log.
    fn logs(&self) -> Vec<PathBuf> {
        vec![self.dir.join("out.log"), self.log()]
    }
}

/// Two clustered RabbitMQ nodes and HAProxy in front of their MQTT listeners.
pub struct RabbitCluster {
    // Fields drop in order: HAProxy, the nodes, the epmd they registered with, the directory.
    proxy: Process,
    /// HAProxy's listener (TCP mode, round robin over both nodes).
    pub proxy_addr: SocketAddr,
    /// `rabbit1@localhost`, then `rabbit2@localhost` (joined to the first).
    nodes: Vec<RabbitNode>,
    epmd: Process,
    dir: tempfile::TempDir,
}

/// What every node shares: the tools, the temporary root, epmd, the hook listener.
struct Setup<'a> {
    sbin: PathBuf,
    root: &'a Path,
    epmd_port: u16,
    hooks: SocketAddr,
    token: &'a str,
}

impl Setup<'_> {
    /// Starts node `n` (its MQTT listener on a free port); `join`: the node it clusters with
    /// at boot (classic config peer discovery, no `rabbitmqctl` round trips).
    fn start_node(&self, n: u8, join: Option<&str>) -> RabbitNode {
        let name = format!("rabbit{n}@localhost");
        let dir = self.root.join(format!("rabbit{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mqtt = free_addr();
        let hook = |what: &str| {
            format!(
                "auth_http.{what}_path = http://{}/hooks/rabbitmq/{what}?token={}\n",
                self.hooks, self.token
            )
        };
        let mut config = format!(
            "listeners.tcp = none\n\
             mqtt.listeners.tcp.default = {mqtt}\n\
             mqtt.allow_anonymous = false\n\
             auth_backends.1 = http\n\
             auth_http.http_method = post\n"
        );
        for what in ["user", "vhost", "resource", "topic"] {
            config.push_str(&hook(what));
        }
        if let Some(peer) = join {
            config.push_str(&format!(
                "cluster_formation.peer_discovery_backend = classic_config\n\
                 cluster_formation.classic_config.nodes.1 = {peer}\n\
                 cluster_formation.classic_config.nodes.2 = {name}\n"
            ));
        }
        std::fs::write(dir.join("rabbitmq.conf"), config).unwrap();
        // What `rabbitmq-plugins --offline enable` writes, without starting an Erlang VM.
        std::fs::write(
            dir.join("enabled_plugins"),
            "[rabbitmq_mqtt,rabbitmq_auth_backend_http].\n",
        )
        .unwrap();
        // Debian's /etc/rabbitmq/rabbitmq-env.conf stays out of the way.
        std::fs::write(dir.join("rabbitmq-env.conf"), "").unwrap();

        let mut cmd = Command::new(self.sbin.join("rabbitmq-server"));
        cmd.env("HOME", self.root.join("home"))
            .env("RABBITMQ_NODENAME", &name)
            .env("RABBITMQ_BASE", &dir)
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            // Not RABBITMQ_NODE_PORT: the AMQP listener is off (`listeners.tcp = none`).
            .env("RABBITMQ_DIST_PORT", free_addr().port().to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("ERL_EPMD_PORT", self.epmd_port.to_string());
        let process = Process::spawn(cmd, &dir.join("out.log"), true);
        RabbitNode {
            name,
            mqtt,
            dir,
            process,
        }
    }
}

impl RabbitCluster {
    /// Starts epmd (on a port of its own, so that other Erlang programs never meet it), node 1,
    /// node 2 joining node 1, and HAProxy; the nodes ask the hook listener `hooks` with
    /// `token`. Returns once both nodes and HAProxy accept connections; panics with the logs
    /// otherwise.
    pub fn start(hooks: SocketAddr, token: &str) -> RabbitCluster {
        let sbin = rabbitmq_sbin();
        let haproxy = installed("haproxy", "haproxy");
        let epmd_bin = installed("epmd", "erlang-base, with rabbitmq-server");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();

        // One HOME for both nodes: the Erlang cookie that lets them cluster.
        let home = root.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let cookie = home.join(".erlang.cookie");
        std::fs::write(&cookie, "FLEETGATETESTCOOKIE").unwrap();
        // Erlang refuses a cookie file others may read.
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400)).unwrap();

        let epmd_addr = free_addr();
        let mut cmd = Command::new(epmd_bin);
        cmd.args(["-address", "127.0.0.1", "-port"])
            .arg(epmd_addr.port().to_string());
        let epmd_log = root.join("epmd.log");
        let mut epmd = Process::spawn(cmd, &epmd_log, false);
        epmd.wait_listening("epmd", epmd_addr, HELPER_START, &[epmd_log]);

        let setup = Setup {
            sbin,
            root,
            epmd_port: epmd_addr.port(),
            hooks,
            token,
        };
        let started = Instant::now();
        let mut nodes: Vec<RabbitNode> = Vec::new();
        // One after the other: node 2 can only join a node that is up.
        for n in 1..=2 {
            let join = nodes.first().map(|first| first.name.clone());
            let mut node = setup.start_node(n, join.as_deref());
            let (what, addr, logs) = (format!("{} (MQTT)", node.name), node.mqtt, node.logs());
            node.process.wait_listening(&what, addr, NODE_START, &logs);
            eprintln!("{} up after {:.1?}", node.name, started.elapsed());
            nodes.push(node);
        }

        let proxy_addr = free_addr();
        let mut config = format!(
            "defaults\n\
             \x20   mode tcp\n\
             \x20   timeout connect 5s\n\
             \x20   timeout client 60s\n\
             \x20   timeout server 60s\n\
             frontend mqtt\n\
             \x20   bind {proxy_addr}\n\
             \x20   default_backend rabbits\n\
             # No health checks: round robin then alternates strictly, so two connections\n\
             # through HAProxy land on both nodes.\n\
             backend rabbits\n\
             \x20   balance roundrobin\n"
        );
        for node in &nodes {
            let short = node.name.split('@').next().unwrap();
            config.push_str(&format!("    server {short} {}\n", node.mqtt));
        }
        let config_path = root.join("haproxy.cfg");
        std::fs::write(&config_path, config).unwrap();
        let mut cmd = Command::new(haproxy);
        cmd.arg("-db").arg("-f").arg(&config_path);
        let proxy_log = root.join("haproxy.log");
        let mut proxy = Process::spawn(cmd, &proxy_log, false);
        proxy.wait_listening("haproxy", proxy_addr, HELPER_START, &[proxy_log]);

        RabbitCluster {
            proxy,
            proxy_addr,
            nodes,
            epmd,
            dir,
        }
    }

    /// The cluster's URL for devices: HAProxy's, as a provision request's `brokerUrl`.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.proxy_addr)
    }

    /// The MQTT listener of node `i` (0 or 1).
    pub fn node(&self, i: usize) -> SocketAddr {
        self.nodes[i].mqtt
    }

    /// How many MQTT connections node `i` accepted so far, by its log (where each one shows
    /// as it comes, whichever door it came through).
    pub fn mqtt_connections(&self, i: usize) -> usize {
        std::fs::read_to_string(self.nodes[i].log())
            .unwrap_or_default()
            .matches("accepting MQTT connection")
            .count()
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let root = self.dir.path();
            for log in self
                .nodes
                .iter()
                .flat_map(RabbitNode::logs)
                .chain([root.join("haproxy.log"), root.join("epmd.log")])
            {
                eprintln!("{}", tail(&log));
            }
        }
    }
}
