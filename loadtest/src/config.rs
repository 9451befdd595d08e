//! Run configurations: what a scenario needs, independent of how it was asked for (CLI or a
//! test calling the library directly).

use std::fmt;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::ramp::Ramp;

/// MQTT protocol version spoken by the simulated clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.0.
    V5,
}

impl Protocol {
    /// The name used on the command line and in the report: `"3.1.1"` or `"5"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V311 => "3.1.1",
            Protocol::V5 => "5",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Payload encoding of the PROV-V1 request (the reply comes back in the same encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// A flat JSON object of string fields.
    Json,
    /// An Eclipse Kura `KuraPayload` protobuf.
    Kura,
}

impl Encoding {
    /// The name used on the command line and in the report: `"json"` or `"kura"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Kura => "kura",
        }
    }
}

/// How provision credentials are spread over the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// One provision username/password for the whole run (the common fleet case).
    Shared,
    /// A provision username/password per device (one argon2 verify per device on the server).
    Unique,
}

impl Credentials {
    /// The name used in the report: `"shared"` or `"unique"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Credentials::Shared => "shared",
            Credentials::Unique => "unique",
        }
    }
}

/// When `enroll --operational` reconnects a device with its new identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OperationalPhase {
    /// Right after the device's own enrollment, in the same device task (the reconnect rate is
    /// bounded by the enrollment rate).
    #[default]
    Inline,
    /// As a second timed phase: every device enrolls first (its operational credentials are
    /// kept in memory), then every enrolled device reconnects, under the same load model.
    Separate,
}

impl OperationalPhase {
    /// The name used on the command line and in the report: `"inline"` or `"separate"`.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationalPhase::Inline => "inline",
            OperationalPhase::Separate => "separate",
        }
    }
}

/// The arrival model.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    /// Closed model: this many devices in flight; the next starts when one finishes.
    Closed {
        /// Devices in flight.
        concurrency: usize,
    },
    /// Open model: devices arrive at this many per second, each at its scheduled time whether or
    /// not earlier devices have finished.
    Open {
        /// Arrivals per second.
        rate: f64,
    },
    /// Open model with an arrival rate that changes over time (`--ramp`).
    Ramp(Ramp),
}

impl Load {
    /// The concurrency for the report (`null` in the open model).
    pub fn concurrency(&self) -> Option<usize> {
        match self {
            Load::Closed { concurrency } => Some(*concurrency),
            Load::Open { .. } | Load::Ramp(_) => None,
        }
    }

    /// The constant arrival rate for the report (`null` in the closed model and with a ramp).
    pub fn rate(&self) -> Option<f64> {
        match self {
            Load::Closed { .. } | Load::Ramp(_) => None,
            Load::Open { rate } => Some(*rate),
        }
    }

    /// The ramp for the report (`--ramp` only).
    pub fn ramp(&self) -> Option<String> {
        match self {
            Load::Ramp(r) => Some(r.to_string()),
            Load::Closed { .. } | Load::Open { .. } => None,
        }
    }
}

/// Options shared by every scenario: load model, bounds, protocol, sockets.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Arrival model.
    pub load: Load,
    /// Upper bound of the whole run; devices not finished by then count as `timeout`.
    pub duration: Option<Duration>,
    /// Per-device, per-phase timeout (TCP+CONNECT->CONNACK, SUBACK, reply, operational CONNACK).
    pub timeout: Duration,
    /// MQTT version of the simulated clients.
    pub protocol: Protocol,
    /// When the target is an IPv4 loopback address, spread client sockets over the source
    /// addresses 127.0.0.1 ..= 127.0.0.N (each has its own ephemeral port range).
    pub source_addresses: u8,
    /// Draw the live progress line on stderr (the CLI enables it only when stderr is a TTY).
    pub progress: bool,
    /// Stop the run on Ctrl-C and still report (unfinished devices count as `timeout`). Off
    /// for library callers: installing a SIGINT handler is the binary's decision.
    pub interrupt: bool,
    /// `enroll` with `operational`: reconnect inline or as a separate phase (`cycle` ignores
    /// it). Kept here rather than in [`EnrollConfig`] so existing struct literals still build.
    pub operational_phase: OperationalPhase,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            load: Load::Closed { concurrency: 100 },
            duration: None,
            timeout: Duration::from_secs(30),
            protocol: Protocol::V5,
            source_addresses: 1,
            progress: false,
            interrupt: false,
            operational_phase: OperationalPhase::Inline,
        }
    }
}

/// An MQTT endpoint given as `mqtt://host:port` (also `tcp://`, or a bare `host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or IP literal (without IPv6 brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl BrokerAddr {
    /// Parses `mqtt://host[:port]`, `tcp://host[:port]` or `host[:port]` (default port 1883).
    /// TLS and WebSocket schemes are refused: the simulator speaks plain MQTT over TCP only.
    pub fn parse(url: &str) -> anyhow::Result<BrokerAddr> {
        let rest = match url.split_once("://") {
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "mqtt" | "tcp" => rest,
                other => bail!(
                    "unsupported broker URL scheme `{other}` in `{url}`: only mqtt:// and tcp:// (plain TCP) are simulated"
                ),
            },
            None => url,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .with_context(|| format!("unterminated IPv6 address in `{url}`"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => bail!("unexpected `{after}` after the host in `{url}`"),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            bail!("no host in broker URL `{url}`");
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .with_context(|| format!("invalid port `{p}` in `{url}`"))?,
            None => 1883,
        };
        Ok(BrokerAddr {
            host: host.to_string(),
            port,
        })
    }

    /// `host:port` for the resolver (brackets around IPv6 literals).
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mqtt://{}", self.host_port())
    }
}

/// Everything the `enroll` scenario needs.
#[derive(Debug, Clone)]
pub struct EnrollConfig {
    /// Base URL of the admin API, e.g. `http://127.0.0.1:8080`.
    pub api: String,
    /// Bearer token (admin or the account's token).
    pub token: String,
    /// Target account that receives the provision requests.
    pub account: String,
    /// The provisioning listener.
    pub provisioning: BrokerAddr,
    /// The provisioning account name (`PA` in the topics).
    pub provisioning_account: String,
    /// `brokerUrl` written into every provision request (where devices reconnect).
    pub operational_broker: String,
    /// Number of simulated devices.
    pub devices: usize,
    /// Request/reply encoding.
    pub encoding: Encoding,
    /// Shared or per-device provision credentials.
    pub credentials: Credentials,
    /// Create requests with `generateActivationKey` and send the key.
    pub activation_key: bool,
    /// Reconnect to the reply's `broker.url` with the new identity.
    pub operational: bool,
    /// Once reconnected, answer this many Kura requests as a Kura device would (0: none).
    pub kura_replies: u32,
    /// Seed of the id/password generator (same seed + run id: same ids and passwords).
    pub seed: u64,
    /// Run-unique part of client ids and usernames, `[a-z0-9]{1,16}`.
    pub run_id: String,
    /// Maximum provision requests per bulk call (the API takes at most 10,000).
    pub bulk_size: usize,
    /// Load model, bounds, protocol.
    pub run: RunOptions,
}

/// Everything the `cycle` scenario needs.
#[derive(Debug, Clone)]
pub struct CycleConfig {
    /// The broker to cycle against.
    pub broker: BrokerAddr,
    /// Optional CONNECT username.
    pub username: Option<String>,
    /// Optional CONNECT password.
    pub password: Option<String>,
    /// `--sandbox`: anonymous clients on purpose (no username, so no password either).
    pub sandbox: bool,
    /// Number of simulated clients.
    pub clients: usize,
    /// Run-unique part of the client ids.
    pub run_id: String,
    /// Topic template of each client's own topic; `{client_id}` is replaced by the client ID
    /// ([`DEFAULT_CYCLE_TOPIC`] unless `--topic`).
    pub topic: String,
    /// Optional admin API base URL, only to scrape `/metrics` before and after.
    pub api: Option<String>,
    /// `--hold`: how long each client stays connected, idle, after its round trip.
    pub hold: Option<Duration>,
    /// Load model, bounds, protocol.
    pub run: RunOptions,
}

/// The `cycle` topic template without `--topic`.
pub const DEFAULT_CYCLE_TOPIC: &str = "cycle/{client_id}";

/// The placeholder of a `cycle` topic template.
pub const CLIENT_ID_PLACEHOLDER: &str = "{client_id}";

/// Checks a `cycle` topic template: it names a topic a client may publish to (not empty, no
/// wildcard, no NUL, at most 65,535 bytes) and contains `{client_id}` at least once, so that
/// every client has a topic of its own (the scenario expects its own message back).
pub fn validate_topic_template(template: &str) -> Result<(), String> {
    if !template.contains(CLIENT_ID_PLACEHOLDER) {
        return Err(format!(
            "the topic template must contain {CLIENT_ID_PLACEHOLDER} (each client needs its own topic)"
        ));
    }
    if template.contains(['+', '#', '\0']) {
        return Err("a topic to publish to has no wildcard (+, #) and no NUL".into());
    }
    if template.len() > 60_000 {
        return Err("the topic template is too long".into());
    }
    Ok(())
}

/// The topic of client `client_id` under `template`.
pub fn cycle_topic(template: &str, client_id: &str) -> String {
    template.replace(CLIENT_ID_PLACEHOLDER, client_id)
}

/// Checks a run id: 1 to 16 characters of `[a-z0-9]` (it ends up in client ids and usernames).
pub fn validate_run_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 16 {
        return Err("a run id has 1 to 16 characters".into());
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err("a run id uses only a-z and 0-9".into());
    }
    Ok(())
}

/// A fresh run id: the current time in milliseconds (base 36) plus 16 random bits, so two runs
/// started in the same millisecond still differ.
pub fn new_run_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let salt: u16 = rand::random();
    format!("{}{}", base36(millis), base36(u64::from(salt)))
        .chars()
        .take(16)
        .collect()
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let a = BrokerAddr::parse("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.1", 1884));
        let a = BrokerAddr::parse("tcp://broker.example").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("broker.example", 1883));
        let a = BrokerAddr::parse("localhost:1999").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("localhost", 1999));
        let a = BrokerAddr::parse("mqtt://[::1]:1883/").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 1883));
        assert_eq!(a.host_port(), "[::1]:1883");
        assert!(BrokerAddr::parse("mqtts://x:8883").is_err());
        assert!(BrokerAddr::parse("mqtt://:1883").is_err());
        assert!(BrokerAddr::parse("mqtt://x:0").is_err());
        assert!(BrokerAddr::parse("mqtt://x:port").is_err());
    }

    #[test]
    fn run_ids() {
        let id = new_run_id();
        assert!(validate_run_id(&id).is_ok(), "{id}");
        assert!(validate_run_id("").is_err());
        assert!(validate_run_id("ABC").is_err());
        assert!(validate_run_id("a-b").is_err());
        assert!(validate_run_id("01234567890123456").is_err());
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }

    #[test]
    fn operational_phase_names_and_default() {
        assert_eq!(OperationalPhase::default(), OperationalPhase::Inline);
        assert_eq!(
            RunOptions::default().operational_phase,
            OperationalPhase::Inline
        );
        assert_eq!(OperationalPhase::Inline.as_str(), "inline");
        assert_eq!(OperationalPhase::Separate.as_str(), "separate");
    }

    #[test]
    fn cycle_topic_templates() {
        assert_eq!(
            cycle_topic(DEFAULT_CYCLE_TOPIC, "cycle-r1-7"),
            "cycle/cycle-r1-7"
        );
        assert_eq!(
            cycle_topic("acme/{client_id}/cycle", "cycle-r1-7"),
            "acme/cycle-r1-7/cycle"
        );
        assert_eq!(
            cycle_topic("$EDC/acme/{client_id}/x/{client_id}", "c"),
            "$EDC/acme/c/x/c"
        );
        assert!(validate_topic_template(DEFAULT_CYCLE_TOPIC).is_ok());
        assert!(validate_topic_template("acme/{client_id}/cycle").is_ok());
        for bad in [
            "",
            "acme/cycle",
            "{clientid}/x",
            "acme/{client_id}/#",
            "acme/+/{client_id}",
            "a\0/{client_id}",
        ] {
            assert!(validate_topic_template(bad).is_err(), "{bad:?}");
        }
        assert!(validate_topic_template(&format!("{}{{client_id}}", "a".repeat(60_000))).is_err());
    }
}
