//! Layered configuration: embedded defaults -> TOML file (`--config`) -> `FLEETGATE_*`
//! environment -> CLI flags. Every layer is a TOML table merged over the previous one, then the
//! result is deserialised and validated before anything binds. `Debug` and [`Config::redacted`]
//! never show secrets.
//!
//! This crate owns the configuration's shape, its defaults and its validation. It must not open
//! sockets or files other than the configuration file, nor act on what it loads: the binary
//! hands each part to the crate that uses it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The embedded defaults, also the reference for every key.
pub const DEFAULTS: &str = r#"
data_dir = "./fleetgate-data"

[provisioning]
listen = "127.0.0.1:1883"
account = "provision"
reply_timeout = 30.0
linger = 5.0
vpn_client_pid = "org.eclipse.kura.net.vpn.client.VpnClient"
max_packet_size = 65536
max_connections = 50000
connect_timeout = 5.0
max_inflight = 16
strict_broker_urls = false
public_url = ""

[provisioning.tls]
listen = "127.0.0.1:8883"
cert = ""
key = ""

[operational]
listen = "127.0.0.1:1884"
max_packet_size = 262144
max_connections = 50000
connect_timeout = 5.0
max_inflight = 64
max_queue = 1000
max_keepalive = 0
max_retained = 10000
session_expiry = 7200.0
public_url = ""

[operational.sandbox]
listen = ""
deny_subscribe = []

[operational.tls]
listen = "127.0.0.1:8884"
cert = ""
key = ""

[admin]
listen = "127.0.0.1:8080"
token = ""
body_limit = 1048576
bulk_body_limit = 16777216
max_failures = 20
audit_retention = 100000

[admin.tls]
cert = ""
key = ""

[hooks]
listen = "127.0.0.1:8081"
token = ""

[device_management]
requester = "fleetgate"
timeout = 30.0
max_in_flight = 256

[auth]
max_failures = 5
max_failures_per_address = 100
failure_window = 60.0
ban = 300.0
verify_threads = 0
verify_queue = 4096
verify_deadline = 2.0
refusal_time = 0.25
argon2_m_cost = 19456
argon2_t_cost = 2
argon2_p_cost = 1

[storage]
cache_size = 67108864
durable = true

[server]
workers = 0
shutdown_timeout = 10.0
"#;

/// TLS files of a listener; both empty = no TLS listener.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Address of the TLS listener.
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

impl Tls {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        !self.cert.is_empty() && !self.key.is_empty()
    }
}

/// `[provisioning]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Provisioning {
    /// Plain TCP listener.
    pub listen: SocketAddr,
    /// The provisioning account (PA).
    pub account: String,
    /// Seconds to wait for the PUBACK of a reply.
    pub reply_timeout: f64,
    /// Seconds before an idle completed session is closed.
    pub linger: f64,
    /// PID of the generated VPN client configuration.
    pub vpn_client_pid: String,
    /// Largest MQTT packet accepted.
    pub max_packet_size: u32,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Seconds for CONNECT to arrive after accept.
    pub connect_timeout: f64,
    /// Most unacknowledged QoS 1 messages per session.
    pub max_inflight: u16,
    /// Refuse (422) a provision request whose `brokerUrl` is not a known broker endpoint,
    /// instead of answering it with a warning (API.md "Known broker endpoints").
    pub strict_broker_urls: bool,
    /// The provisioning endpoint's URL as devices reach it (`mqtt://host:port`): where a move
    /// points a device (PROTOCOL.md 8.2); empty = derived from `listen`.
    pub public_url: String,
    /// TLS listener.
    pub tls: Tls,
}

/// `[operational]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Operational {
    /// Plain TCP listener.
    pub listen: SocketAddr,
    /// Largest MQTT packet accepted.
    pub max_packet_size: u32,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Seconds for CONNECT to arrive after accept.
    pub connect_timeout: f64,
    /// Most unacknowledged QoS 1 messages per session.
    pub max_inflight: u16,
    /// Most messages queued per session (a slow subscriber, or a persistent session while its
    /// client is away): then the oldest QoS 0 message goes first, then new ones are refused.
    pub max_queue: usize,
    /// Largest keep-alive granted, seconds; a client asking more gets this as the 5.0 server
    /// keep alive. 0 = no limit.
    pub max_keepalive: u16,
    /// Most retained messages per account (and in the sandbox).
    pub max_retained: usize,
    /// Seconds a 3.1.1 persistent session (clean session 0) outlives its connection.
    pub session_expiry: f64,
    /// The operational endpoint's URL as devices reach it (`mqtt://host:port`), listed as the
    /// known broker endpoint `fleetgate`; empty = derived from `listen`.
    pub public_url: String,
    /// TLS listener.
    pub tls: Tls,
    /// The anonymous sandbox listener (PROTOCOL.md 6.1).
    pub sandbox: Sandbox,
}

/// `[operational.sandbox]`: anonymous clients in a topic space of their own.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sandbox {
    /// Listener address; empty = no sandbox (the default).
    pub listen: String,
    /// Filters whose SUBSCRIBE is refused.
    pub deny_subscribe: Vec<String>,
}

impl Sandbox {
    /// The listener address, when the sandbox is on (validated at load).
    pub fn address(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }
}

/// `[admin]`.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// HTTP listener.
    pub listen: SocketAddr,
    /// Instance admin token; empty = read or generate `DATA_DIR/admin.token`.
    pub token: String,
    /// Largest request body, bytes (413 above).
    pub body_limit: usize,
    /// Largest bulk-create body, bytes.
    pub bulk_body_limit: usize,
    /// Failed authentications per peer address within `auth.failure_window` before that
    /// address is refused (429) for `auth.ban`.
    pub max_failures: usize,
    /// Audit entries kept; the writer drops the oldest beyond it.
    pub audit_retention: u64,
    /// HTTPS on the admin listener itself (no second listener).
    pub tls: AdminTls,
}

/// `[admin.tls]`: both set = the admin listener serves HTTPS only.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminTls {
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

impl AdminTls {
    /// Whether HTTPS is configured.
    pub fn enabled(&self) -> bool {
        !self.cert.is_empty() && !self.key.is_empty()
    }
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("listen", &self.listen)
            .field("token", &redact(&self.token))
            .field("body_limit", &self.body_limit)
            .field("bulk_body_limit", &self.bulk_body_limit)
            .field("max_failures", &self.max_failures)
            .field("audit_retention", &self.audit_retention)
            .field("tls", &self.tls)
            .finish()
    }
}

/// `[hooks]`: the HTTP hook listener other brokers ask (HOOKS.md 2).
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Listener address; empty = no hook listener.
    pub listen: String,
    /// The token every hook request carries; empty = read or generate `DATA_DIR/hooks.token`.
    pub token: String,
}

impl Hooks {
    /// The listener address, when the hook listener is on (validated at load).
    pub fn address(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("listen", &self.listen)
            .field("token", &redact(&self.token))
            .finish()
    }
}

/// `[device_management]`: Kura request/reply (PROTOCOL.md 7).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceManagement {
    /// The requester's client ID in request metrics and reply topics.
    pub requester: String,
    /// Seconds a request waits for its reply unless it says otherwise.
    pub timeout: f64,
    /// Job executions sending steps at once; more wait for a slot (thousands of targets
    /// connecting together do not flood the broker).
    pub max_in_flight: usize,
}

/// `[auth]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Failures per client ID before a ban.
    pub max_failures: usize,
    /// Failures per address before a ban.
    pub max_failures_per_address: usize,
    /// Counting window, seconds.
    pub failure_window: f64,
    /// Ban length, seconds.
    pub ban: f64,
    /// argon2 threads; 0 = one per core.
    pub verify_threads: usize,
    /// Verification queue length.
    pub verify_queue: usize,
    /// Seconds a verification may wait for a thread before Server busy.
    pub verify_deadline: f64,
    /// Seconds after a CONNECT's arrival at which a credential refusal (0x86 / 0x04) is
    /// answered, whether the client ID was unknown, the username wrong or the password wrong
    /// (one argon2 verification), so that response time does not tell them apart; 0 = at once.
    pub refusal_time: f64,
    /// argon2 memory, KiB.
    pub argon2_m_cost: u32,
    /// argon2 iterations.
    pub argon2_t_cost: u32,
    /// argon2 lanes.
    pub argon2_p_cost: u32,
}

/// `[storage]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// redb cache, bytes.
    pub cache_size: usize,
    /// fsync each commit.
    pub durable: bool,
}

/// `[server]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Worker threads of the network server; 0 = one per core.
    pub workers: usize,
    /// Seconds a shutdown waits for running provisioning exchanges before closing connections.
    pub shutdown_timeout: f64,
}

/// The effective configuration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Data directory (database, generated admin token).
    pub data_dir: PathBuf,
    /// Provisioning endpoint.
    pub provisioning: Provisioning,
    /// Operational endpoint.
    pub operational: Operational,
    /// Admin API.
    pub admin: Admin,
    /// HTTP hook listener.
    pub hooks: Hooks,
    /// Device management.
    pub device_management: DeviceManagement,
    /// Auth hook limits and costs.
    pub auth: Auth,
    /// Storage.
    pub storage: Storage,
    /// Network server.
    pub server: Server,
}

fn redact(s: &str) -> &'static str {
    if s.is_empty() { "" } else { "<redacted>" }
}

/// Overrides from CLI flags (`None` = not given).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--provisioning-listen`.
    pub provisioning_listen: Option<String>,
    /// `--operational-listen`.
    pub operational_listen: Option<String>,
    /// `--admin-listen`.
    pub admin_listen: Option<String>,
    /// `--sandbox-listen`.
    pub sandbox_listen: Option<String>,
    /// `--hooks-listen`.
    pub hooks_listen: Option<String>,
    /// `--provisioning-account`.
    pub provisioning_account: Option<String>,
}

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// A layer is not valid TOML or has wrong keys/types.
    #[error("invalid configuration ({0}): {1}")]
    Invalid(String, String),
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn set_path(table: &mut toml::Table, path: &[&str], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert((*last).to_string(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry((*first).to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                set_path(t, rest, value);
            }
        }
    }
}

/// Maps `FLEETGATE_SECTION_KEY` onto the defaults' key paths (`section.key`, or `key` at the
/// top level, or `section.tls.key` for `FLEETGATE_SECTION_TLS_KEY`). Section and key names
/// hold underscores themselves (`FLEETGATE_DEVICE_MANAGEMENT_MAX_IN_FLIGHT`), so every split
/// at an underscore is tried against the defaults.
fn env_path(defaults: &toml::Table, var: &str) -> Option<Vec<String>> {
    let name = var.strip_prefix("FLEETGATE_")?.to_ascii_lowercase();
    if defaults.contains_key(&name) && !defaults[&name].is_table() {
        return Some(vec![name]);
    }
    splits(&name).find_map(|(section, rest)| {
        let toml::Value::Table(s) = defaults.get(section)? else {
            return None;
        };
        if s.contains_key(rest) && !s[rest].is_table() {
            return Some(vec![section.into(), rest.into()]);
        }
        splits(rest).find_map(|(sub, key)| match s.get(sub) {
            Some(toml::Value::Table(t)) if t.contains_key(key) && !t[key].is_table() => {
                Some(vec![section.into(), sub.into(), key.into()])
            }
            _ => None,
        })
    })
}

/// Every `(before, after)` split of `name` at one of its underscores, leftmost first.
fn splits(name: &str) -> impl Iterator<Item = (&str, &str)> {
    name.match_indices('_')
        .map(move |(i, _)| (&name[..i], &name[i + 1..]))
}

/// Types an environment string like the default at the same path.
fn typed(default: Option<&toml::Value>, raw: &str) -> toml::Value {
    match default {
        Some(toml::Value::Integer(_)) => raw
            .parse()
            .map(toml::Value::Integer)
            .unwrap_or_else(|_| toml::Value::String(raw.into())),
        Some(toml::Value::Float(_)) => raw
            .parse()
            .map(toml::Value::Float)
            .unwrap_or_else(|_| toml::Value::String(raw.into())),
        // A list from the environment is comma separated.
        Some(toml::Value::Array(_)) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.into()))
                .collect(),
        ),
        Some(toml::Value::Boolean(_)) => raw
            .parse()
            .map(toml::Value::Boolean)
            .unwrap_or_else(|_| toml::Value::String(raw.into())),
        _ => toml::Value::String(raw.into()),
    }
}

fn lookup<'a>(t: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (first, rest) = path.split_first()?;
    let v = t.get(first)?;
    if rest.is_empty() {
        return Some(v);
    }
    lookup(v.as_table()?, rest)
}

impl Config {
    /// Loads the layers; `env` is the process environment (injected for tests).
    pub fn load(
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let defaults: toml::Table = toml::from_str(DEFAULTS)
            .map_err(|e| ConfigError::Invalid("defaults".into(), e.to_string()))?;
        let mut table = defaults.clone();
        let env: Vec<(String, String)> = env.into_iter().collect();
        let file = overrides.config_file.clone().or_else(|| {
            env.iter()
                .find(|(k, _)| k == "FLEETGATE_CONFIG")
                .map(|(_, v)| PathBuf::from(v))
        });
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(&path).map_err(|e| ConfigError::Read(path.clone(), e))?;
            let over: toml::Table = toml::from_str(&text)
                .map_err(|e| ConfigError::Invalid(path.display().to_string(), e.to_string()))?;
            merge(&mut table, over);
        }
        for (k, v) in &env {
            if k == "FLEETGATE_CONFIG" {
                continue;
            }
            if let Some(path) = env_path(&defaults, k) {
                let value = typed(lookup(&defaults, &path), v);
                let path: Vec<&str> = path.iter().map(String::as_str).collect();
                set_path(&mut table, &path, value);
            }
        }
        let flags: [(&[&str], Option<String>); 7] = [
            (
                &["data_dir"],
                overrides.data_dir.as_ref().map(|p| p.display().to_string()),
            ),
            (
                &["provisioning", "listen"],
                overrides.provisioning_listen.clone(),
            ),
            (
                &["operational", "listen"],
                overrides.operational_listen.clone(),
            ),
            (&["admin", "listen"], overrides.admin_listen.clone()),
            (
                &["operational", "sandbox", "listen"],
                overrides.sandbox_listen.clone(),
            ),
            (&["hooks", "listen"], overrides.hooks_listen.clone()),
            (
                &["provisioning", "account"],
                overrides.provisioning_account.clone(),
            ),
        ];
        for (path, value) in flags {
            if let Some(v) = value {
                set_path(&mut table, path, toml::Value::String(v));
            }
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid("merged".into(), e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |k: &str, m: &str| Err(ConfigError::Invalid(k.into(), m.into()));
        if !fleetgate_storage::validate::valid_account_name(&self.provisioning.account) {
            return bad("provisioning.account", "must be 1 to 64 of a-z 0-9 -");
        }
        for (k, v) in [
            (
                "provisioning.reply_timeout",
                self.provisioning.reply_timeout,
            ),
            ("provisioning.linger", self.provisioning.linger),
            (
                "provisioning.connect_timeout",
                self.provisioning.connect_timeout,
            ),
            (
                "operational.connect_timeout",
                self.operational.connect_timeout,
            ),
            ("auth.failure_window", self.auth.failure_window),
            ("auth.ban", self.auth.ban),
            ("auth.verify_deadline", self.auth.verify_deadline),
            ("auth.refusal_time", self.auth.refusal_time),
            ("server.shutdown_timeout", self.server.shutdown_timeout),
            ("device_management.timeout", self.device_management.timeout),
            (
                "operational.session_expiry",
                self.operational.session_expiry,
            ),
        ] {
            if !(0.0..1.0e7).contains(&v) {
                return bad(k, "must be a number of seconds");
            }
        }
        for (k, tls) in [
            ("provisioning.tls", &self.provisioning.tls),
            ("operational.tls", &self.operational.tls),
        ] {
            if tls.cert.is_empty() != tls.key.is_empty() {
                return bad(k, "cert and key must be set together");
            }
        }
        if self.admin.tls.cert.is_empty() != self.admin.tls.key.is_empty() {
            return bad("admin.tls", "cert and key must be set together");
        }
        if self.admin.max_failures == 0 {
            return bad("admin.max_failures", "must be at least 1");
        }
        if self.admin.audit_retention == 0 {
            return bad("admin.audit_retention", "must be at least 1");
        }
        let sandbox = &self.operational.sandbox;
        if !sandbox.listen.is_empty() && sandbox.address().is_none() {
            return bad(
                "operational.sandbox.listen",
                "must be empty or ADDRESS:PORT",
            );
        }
        if let Some(f) = sandbox
            .deny_subscribe
            .iter()
            .find(|f| !fleetgate_acl::valid_topic_filter(f))
        {
            return Err(ConfigError::Invalid(
                "operational.sandbox.deny_subscribe".into(),
                format!("{f:?} is not a topic filter"),
            ));
        }
        if self.device_management.max_in_flight == 0 {
            return bad("device_management.max_in_flight", "must be at least 1");
        }
        if !fleetgate_acl::valid_client_id(&self.device_management.requester) {
            return bad(
                "device_management.requester",
                "must be a client ID that is one topic level",
            );
        }
        if !self.hooks.listen.is_empty() && self.hooks.address().is_none() {
            return bad("hooks.listen", "must be empty or ADDRESS:PORT");
        }
        for (key, url) in [
            ("operational.public_url", &self.operational.public_url),
            ("provisioning.public_url", &self.provisioning.public_url),
        ] {
            if !url.is_empty() && fleetgate_storage::validate::check_broker_url(url).is_err() {
                return bad(key, "must be empty or a broker URL (mqtt://HOST:PORT)");
            }
        }
        if self.auth.max_failures == 0 || self.auth.max_failures_per_address == 0 {
            return bad("auth.max_failures", "must be at least 1");
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets redacted (`fleetgate config`).
    pub fn redacted(&self) -> String {
        let mut c = self.clone();
        if !c.hooks.token.is_empty() {
            c.hooks.token = "<redacted>".into();
        }
        if !c.admin.token.is_empty() {
            c.admin.token = "<redacted>".into();
        }
        toml::to_string_pretty(&c).unwrap_or_default()
    }

    /// Seconds as a duration.
    pub fn secs(v: f64) -> Duration {
        Duration::from_secs_f64(v.max(0.0))
    }
}

/// A thread count setting: `0` means one per core (two when the core count is unknown).
pub fn threads_or_cores(setting: usize) -> usize {
    match setting {
        0 => std::thread::available_parallelism().map_or(2, usize::from),
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every dotted key path of a TOML table.
    fn key_paths(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in t {
            let path = format!("{prefix}{k}");
            match v.as_table() {
                Some(sub) => key_paths(sub, &format!("{path}."), out),
                None => out.push(path),
            }
        }
    }

    #[test]
    fn the_example_configuration_has_every_key_with_its_default() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/fleetgate.toml");
        let paths = |text: &str| {
            let mut v = Vec::new();
            key_paths(&toml::from_str(text).unwrap(), "", &mut v);
            v.sort();
            v
        };
        let text = std::fs::read_to_string(example).unwrap();
        assert_eq!(
            paths(&text),
            paths(DEFAULTS),
            "deploy/fleetgate.toml lists every key"
        );
        let from_example = Config::load(
            &Overrides {
                config_file: Some(example.into()),
                ..Overrides::default()
            },
            Vec::new(),
        )
        .unwrap();
        let defaults = Config::load(&Overrides::default(), Vec::new()).unwrap();
        assert_eq!(
            from_example, defaults,
            "deploy/fleetgate.toml shows the defaults"
        );
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_loopback() {
        let c = Config::load(&Overrides::default(), env(&[])).unwrap();
        assert_eq!(c.provisioning.listen.to_string(), "127.0.0.1:1883");
        assert_eq!(c.operational.listen.to_string(), "127.0.0.1:1884");
        assert_eq!(c.admin.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./fleetgate-data"));
        assert_eq!(c.provisioning.account, "provision");
        assert!(!c.provisioning.tls.enabled());
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from-file\"\n[auth]\nmax_failures = 7\n[provisioning]\naccount = \"file-pa\"\n",
        )
        .unwrap();
        let o = Overrides {
            config_file: Some(file),
            provisioning_account: Some("flag-pa".into()),
            ..Overrides::default()
        };
        let c = Config::load(
            &o,
            env(&[
                ("FLEETGATE_DATA_DIR", "/from-env"),
                ("FLEETGATE_AUTH_BAN", "10"),
                ("FLEETGATE_PROVISIONING_TLS_CERT", "c.pem"),
                ("FLEETGATE_PROVISIONING_TLS_KEY", "k.pem"),
                ("FLEETGATE_ADMIN_TOKEN", "tok-secret"),
                ("FLEETGATE_DEVICE_MANAGEMENT_MAX_IN_FLIGHT", "7"),
                ("FLEETGATE_DEVICE_MANAGEMENT_TIMEOUT", "12.5"),
                ("FLEETGATE_OPERATIONAL_SANDBOX_DENY_SUBSCRIBE", "a/#,b/+"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/from-env"));
        assert_eq!(c.auth.max_failures, 7);
        assert!((c.auth.ban - 10.0).abs() < f64::EPSILON);
        assert_eq!(c.provisioning.account, "flag-pa");
        assert!(c.provisioning.tls.enabled());
        assert_eq!(c.admin.token, "tok-secret");
        // Sections and keys with underscores of their own.
        assert_eq!(c.device_management.max_in_flight, 7);
        assert!((c.device_management.timeout - 12.5).abs() < f64::EPSILON);
        assert_eq!(c.operational.sandbox.deny_subscribe, ["a/#", "b/+"]);
        assert!(!c.redacted().contains("tok-secret"));
        assert!(!format!("{c:?}").contains("tok-secret"));
    }

    #[test]
    fn bad_values_are_refused() {
        let bad = |pairs: &[(&str, &str)]| Config::load(&Overrides::default(), env(pairs)).is_err();
        assert!(bad(&[("FLEETGATE_ADMIN_LISTEN", "nope")]));
        assert!(bad(&[("FLEETGATE_AUTH_MAX_FAILURES", "many")]));
        assert!(bad(&[("FLEETGATE_PROVISIONING_ACCOUNT", "Bad_Name")]));
        assert!(bad(&[("FLEETGATE_PROVISIONING_TLS_CERT", "only-cert.pem")]));
        assert!(bad(&[("FLEETGATE_PROVISIONING_PUBLIC_URL", "http://x")]));
        assert!(!bad(&[(
            "FLEETGATE_PROVISIONING_PUBLIC_URL",
            "mqtts://prov.example:8883"
        )]));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.toml");
        std::fs::write(&file, "[provisioning]\nlistn = \"typo\"\n").unwrap();
        let o = Overrides {
            config_file: Some(file),
            ..Overrides::default()
        };
        assert!(Config::load(&o, env(&[])).is_err());
    }
}
