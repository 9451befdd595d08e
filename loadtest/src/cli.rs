//! The command line of LOADTEST.md, its translation into run configurations, and the exit
//! status rules (0 all completed, 1 any failed unless `--allow-failures`, 2 bad arguments or
//! a setup failure such as an unreachable server).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{
    BrokerAddr, Credentials, CycleConfig, DEFAULT_CYCLE_TOPIC, Encoding, EnrollConfig, Load,
    OperationalPhase, Protocol, RunOptions, new_run_id, validate_run_id, validate_topic_template,
};
use crate::error::Error;
use crate::ramp::Ramp;
use crate::report::Report;
use crate::{compare, html};

/// Exit status: every device completed.
pub const EXIT_OK: u8 = 0;
/// Exit status: at least one device failed (and `--allow-failures` was not given).
pub const EXIT_FAILURES: u8 = 1;
/// Exit status: bad arguments, or the run could not start (unreachable server, API refusal).
pub const EXIT_SETUP: u8 = 2;

/// Fleet simulator for Fleetgate: enrolls devices through the provisioning endpoint and
/// reports throughput, latency percentiles and failures.
#[derive(Debug, Parser)]
#[command(name = "fleetgate-loadtest", version, about)]
pub struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Scenarios.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create provision requests through the bulk API, then enroll every device over MQTT.
    Enroll(EnrollArgs),
    /// Connect, subscribe to an own topic, publish to it, receive, disconnect.
    Cycle(CycleArgs),
    /// Compare two JSON reports: exit 1 when throughput fell or p99 rose by more than the limit.
    Compare(CompareArgs),
}

/// `compare` flags.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The reference report (`--json` of an earlier run).
    #[arg(value_name = "BASELINE.json")]
    pub baseline: PathBuf,
    /// The report to judge.
    #[arg(value_name = "CURRENT.json")]
    pub current: PathBuf,
    /// Also write the comparison as a self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Allowed fall of throughput and rise of the end-to-end p99, in percent.
    #[arg(long, value_name = "PCT", default_value_t = 10.0, value_parser = parse_percent)]
    pub max_regression: f64,
}

/// MQTT protocol version on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    /// MQTT 3.1.1.
    #[value(name = "3.1.1", alias = "3", alias = "4")]
    V311,
    /// MQTT 5.0.
    #[value(name = "5", alias = "5.0")]
    V5,
}

impl From<ProtocolArg> for Protocol {
    fn from(p: ProtocolArg) -> Protocol {
        match p {
            ProtocolArg::V311 => Protocol::V311,
            ProtocolArg::V5 => Protocol::V5,
        }
    }
}

/// Request encoding on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EncodingArg {
    /// Flat JSON object.
    Json,
    /// KuraPayload protobuf.
    Kura,
}

impl From<EncodingArg> for Encoding {
    fn from(e: EncodingArg) -> Encoding {
        match e {
            EncodingArg::Json => Encoding::Json,
            EncodingArg::Kura => Encoding::Kura,
        }
    }
}

/// `--operational-phase` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OperationalPhaseArg {
    /// Each device reconnects right after its own enrollment.
    Inline,
    /// All devices enroll first, then all enrolled devices reconnect as a second timed phase.
    Separate,
}

impl From<OperationalPhaseArg> for OperationalPhase {
    fn from(p: OperationalPhaseArg) -> OperationalPhase {
        match p {
            OperationalPhaseArg::Inline => OperationalPhase::Inline,
            OperationalPhaseArg::Separate => OperationalPhase::Separate,
        }
    }
}

/// Flags shared by both scenarios.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Closed model: this many clients in flight [default: 100].
    #[arg(long, value_name = "C", conflicts_with_all = ["rate", "ramp"],
          value_parser = clap::value_parser!(u64).range(1..))]
    pub concurrency: Option<u64>,
    /// Open model: this many arrivals per second, each at its scheduled time.
    #[arg(long, value_name = "R", value_parser = parse_rate, conflicts_with = "ramp")]
    pub rate: Option<f64>,
    /// Open model with a changing rate: `seconds:rate` points, linear in between, the last
    /// rate held (e.g. `0:100,30:2000,60:2000`).
    #[arg(long, value_name = "SPEC", value_parser = Ramp::parse)]
    pub ramp: Option<Ramp>,
    /// MQTT protocol version.
    #[arg(long, value_enum, default_value = "5")]
    pub protocol: ProtocolArg,
    /// Upper bound of the whole run; unfinished clients count as `timeout`.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub duration: Option<Duration>,
    /// Per-client timeout of each phase (connect, subscribe, reply, reconnect).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Spread connections to a loopback target over source addresses 127.0.0.1..=127.0.0.N.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_addresses: u8,
    /// Write the JSON report to FILE (instead of printing the table).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write a self-contained HTML report with plots to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Exit 0 even when some clients failed.
    #[arg(long)]
    pub allow_failures: bool,
    /// Run-unique part of client ids and usernames ([a-z0-9], at most 16) [default: time-based].
    #[arg(long, value_name = "ID", value_parser = parse_run_id)]
    pub run_id: Option<String>,
}

/// `enroll` flags.
#[derive(Debug, Clone, Args)]
pub struct EnrollArgs {
    /// Admin API base URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// Bearer token (admin or the account's).
    #[arg(long, env = "FLEETGATE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Target account (must exist).
    #[arg(long)]
    pub account: String,
    /// Provisioning listener.
    #[arg(long, value_name = "URL", default_value = "mqtt://127.0.0.1:1883",
          value_parser = parse_broker)]
    pub provisioning: BrokerAddr,
    /// Provisioning account name (`PA` in the PROV-V1 topics).
    #[arg(long, value_name = "NAME", default_value = "provision")]
    pub provisioning_account: String,
    /// `brokerUrl` of the created provision requests (where devices reconnect).
    #[arg(long, value_name = "URL", default_value = "mqtt://127.0.0.1:1884",
          value_parser = parse_broker_url)]
    pub operational_broker: String,
    /// Number of devices.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub devices: u64,
    /// Request (and reply) encoding.
    #[arg(long, value_enum, default_value = "json")]
    pub encoding: EncodingArg,
    /// One provision username/password for all devices (default).
    #[arg(long, conflicts_with = "unique_credentials")]
    pub shared_credentials: bool,
    /// A provision username/password per device.
    #[arg(long)]
    pub unique_credentials: bool,
    /// Create requests with an activation key and send it.
    #[arg(long)]
    pub activation_key: bool,
    /// After enrolling, reconnect to the reply's broker.url with the new identity.
    #[arg(long)]
    pub operational: bool,
    /// With --operational: reconnect right after each enrollment (`inline`), or enroll every
    /// device first and then reconnect them all as a second timed phase (`separate`, reported
    /// as `operational_connects_per_second`).
    #[arg(
        long,
        value_enum,
        value_name = "PHASE",
        default_value = "inline",
        requires_if("separate", "operational")
    )]
    pub operational_phase: OperationalPhaseArg,
    /// With --operational: behave like an Eclipse Kura device once reconnected (subscribe to
    /// `$EDC/ACCOUNT/CID/#`, publish a BIRTH) and answer N device-management requests (a
    /// Batch Job's steps) with response code 200 before disconnecting; a device completes only
    /// then.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "operational")]
    pub kura_replies: u32,
    /// Seed of ids and passwords (same seed and run id: same fleet) [default: random].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Provision requests per bulk API call (at most 10,000; also kept under 1 MB per call).
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub bulk_size: u64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
}

/// `cycle` flags.
#[derive(Debug, Clone, Args)]
pub struct CycleArgs {
    /// The broker.
    #[arg(long, value_name = "URL", default_value = "mqtt://127.0.0.1:1883",
          value_parser = parse_broker)]
    pub broker: BrokerAddr,
    /// CONNECT username.
    #[arg(long, value_name = "U")]
    pub username: Option<String>,
    /// CONNECT password.
    #[arg(long, value_name = "P", requires = "username")]
    pub password: Option<String>,
    /// Anonymous clients, as Fleetgate's sandbox listener (PROTOCOL.md 6.1) or any anonymous
    /// broker takes them: no username or password; the report says `"sandbox": true`.
    #[arg(long, conflicts_with_all = ["username", "password"])]
    pub sandbox: bool,
    /// Number of clients.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
    /// Each client's own topic; `{client_id}` is replaced by its client ID (Fleetgate's
    /// operational endpoint: `ACCOUNT/{client_id}/cycle`).
    #[arg(long, value_name = "TEMPLATE", default_value = DEFAULT_CYCLE_TOPIC,
          value_parser = parse_topic_template)]
    pub topic: String,
    /// Admin API base URL, only to scrape /metrics before and after the run.
    #[arg(long, value_name = "URL")]
    pub api: Option<String>,
    /// After its round trip, each client keeps its connection open and idle this long before
    /// it disconnects: an idle-connection load (use it with --rate, or a --concurrency of at
    /// least --clients, as a held client keeps its slot).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub hold: Option<Duration>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err("a rate is a positive number of arrivals per second".into()),
    }
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("a percentage, 0 or more".into()),
    }
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1e9 => Ok(Duration::from_secs_f64(v)),
        _ => Err("a positive number of seconds".into()),
    }
}

fn parse_broker(s: &str) -> Result<BrokerAddr, String> {
    BrokerAddr::parse(s).map_err(|e| e.to_string())
}

fn parse_broker_url(s: &str) -> Result<String, String> {
    BrokerAddr::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

fn parse_topic_template(s: &str) -> Result<String, String> {
    validate_topic_template(s).map(|_| s.to_string())
}

fn parse_run_id(s: &str) -> Result<String, String> {
    validate_run_id(s).map(|_| s.to_string())
}

/// Where the report goes and how failures affect the exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// `--json FILE`.
    pub json: Option<PathBuf>,
    /// `--html FILE`.
    pub html: Option<PathBuf>,
    /// `--allow-failures`.
    pub allow_failures: bool,
}

impl CommonArgs {
    fn run_options(&self, progress: bool) -> RunOptions {
        let load = match (&self.ramp, self.rate, self.concurrency) {
            (Some(ramp), _, _) => Load::Ramp(ramp.clone()),
            (None, Some(rate), _) => Load::Open { rate },
            (None, None, c) => Load::Closed {
                concurrency: c.unwrap_or(100) as usize,
            },
        };
        RunOptions {
            load,
            duration: self.duration,
            timeout: self.timeout,
            protocol: self.protocol.into(),
            source_addresses: self.source_addresses,
            progress,
            interrupt: true,
            operational_phase: OperationalPhase::Inline,
        }
    }

    fn output(&self) -> Output {
        Output {
            json: self.json.clone(),
            html: self.html.clone(),
            allow_failures: self.allow_failures,
        }
    }
}

impl EnrollArgs {
    /// The run configuration and output settings of these flags.
    pub fn into_config(self, progress: bool) -> (EnrollConfig, Output) {
        let output = self.common.output();
        let mut run = self.common.run_options(progress);
        run.operational_phase = self.operational_phase.into();
        let config = EnrollConfig {
            api: self.api,
            token: self.token,
            account: self.account,
            provisioning: self.provisioning,
            provisioning_account: self.provisioning_account,
            operational_broker: self.operational_broker,
            devices: self.devices as usize,
            encoding: self.encoding.into(),
            credentials: if self.unique_credentials {
                Credentials::Unique
            } else {
                Credentials::Shared
            },
            activation_key: self.activation_key,
            operational: self.operational,
            kura_replies: self.kura_replies,
            seed: self.seed.unwrap_or_else(rand::random),
            run_id: self.common.run_id.clone().unwrap_or_else(new_run_id),
            bulk_size: self.bulk_size as usize,
            run,
        };
        (config, output)
    }
}

impl CycleArgs {
    /// The run configuration and output settings of these flags.
    pub fn into_config(self, progress: bool) -> (CycleConfig, Output) {
        let output = self.common.output();
        let config = CycleConfig {
            broker: self.broker,
            username: self.username,
            password: self.password,
            sandbox: self.sandbox,
            clients: self.clients as usize,
            run_id: self.common.run_id.clone().unwrap_or_else(new_run_id),
            topic: self.topic,
            api: self.api,
            hold: self.hold,
            run: self.common.run_options(progress),
        };
        (config, output)
    }
}

impl Output {
    /// The first output file that cannot be written, as an error message.
    fn unwritable(&self) -> Option<String> {
        [("--json", &self.json), ("--html", &self.html)]
            .into_iter()
            .find_map(|(flag, path)| {
                let path = path.as_deref()?;
                check_writable(path).err().map(|e| format!("{flag} {e}"))
            })
    }
}

/// Refuses an output path that cannot be written, before the run rather than after it.
fn check_writable(path: &Path) -> Result<(), String> {
    if path.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(|_| ())
            .map_err(|e| format!("{}: {e}", path.display()))
    } else {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if parent.is_dir() {
            Ok(())
        } else {
            Err(format!(
                "{}: directory {} does not exist",
                path.display(),
                parent.display()
            ))
        }
    }
}

/// Runs the parsed command line and returns the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    if let Command::Compare(args) = &cli.command {
        // No runtime needed: two files in, a table (and a page) out.
        return ExitCode::from(run_compare(args));
    }
    let progress = std::io::stderr().is_terminal();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let (result, output) = match cli.command {
        Command::Enroll(args) => {
            let (config, output) = args.into_config(progress);
            if let Some(e) = output.unwritable() {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_SETUP);
            }
            (runtime.block_on(crate::run_enroll(&config)), output)
        }
        Command::Cycle(args) => {
            let (config, output) = args.into_config(progress);
            if let Some(e) = output.unwritable() {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_SETUP);
            }
            (runtime.block_on(crate::run_cycle(&config)), output)
        }
        Command::Compare(_) => unreachable!("compare returned before the runtime was built"),
    };
    // Lingering disconnects are bounded; do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok(report) => ExitCode::from(finish(&report, &output)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}

/// `compare`: prints the table, writes `--html`, and returns 0 (no regression), 1
/// (regression) or 2 (unreadable or mismatched input, unwritable `--html`).
pub fn run_compare(args: &CompareArgs) -> u8 {
    let compared = compare::load(&args.baseline).and_then(|baseline| {
        let current = compare::load(&args.current)?;
        compare::compare(
            &baseline,
            &args.baseline.display().to_string(),
            &current,
            &args.current.display().to_string(),
            args.max_regression,
        )
    });
    let comparison = match compared {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_SETUP;
        }
    };
    print!("{}", comparison.to_table());
    if let Some(path) = &args.html
        && let Err(e) = write_file(path, &html::comparison(&comparison))
    {
        eprintln!("error: {e}");
        return EXIT_SETUP;
    }
    if comparison.regressions.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILURES
    }
}

fn write_file(path: &Path, content: &str) -> Result<(), Error> {
    std::fs::write(path, content).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Emits the report (JSON file or table, and the HTML page) and decides the exit status.
pub fn finish(report: &Report, output: &Output) -> u8 {
    if !report.first_failures.is_empty() {
        eprintln!("first failure of each kind:");
        for (key, detail) in &report.first_failures {
            eprintln!("  {key}: {detail}");
        }
    }
    match &output.json {
        Some(path) => {
            if let Err(e) = std::fs::write(path, report.to_json() + "\n") {
                eprintln!("error: writing {}: {e}", path.display());
                print!("{}", report.to_table());
                return EXIT_SETUP;
            }
            eprintln!("report written to {}", path.display());
        }
        None => print!("{}", report.to_table()),
    }
    if let Some(path) = &output.html {
        if let Err(e) = write_file(path, &html::report(report)) {
            eprintln!("error: {e}");
            return EXIT_SETUP;
        }
        eprintln!("HTML report written to {}", path.display());
    }
    exit_status(report, output.allow_failures)
}

/// 0 when every device completed (or `allow_failures`), else 1.
pub fn exit_status(report: &Report, allow_failures: bool) -> u8 {
    if report.counts.failed == 0 || allow_failures {
        EXIT_OK
    } else {
        EXIT_FAILURES
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("fleetgate-loadtest").chain(args.iter().copied()))
    }

    const ENROLL: &[&str] = &[
        "enroll",
        "--token",
        "T",
        "--account",
        "acme",
        "--devices",
        "10",
    ];

    fn enroll(extra: &[&str]) -> Result<(EnrollConfig, Output), clap::Error> {
        let args: Vec<&str> = ENROLL.iter().chain(extra.iter()).copied().collect();
        match parse(&args)?.command {
            Command::Enroll(a) => Ok(a.into_config(false)),
            Command::Cycle(_) | Command::Compare(_) => unreachable!(),
        }
    }

    #[test]
    fn concurrency_and_rate_conflict() {
        let err = enroll(&["--concurrency", "10", "--rate", "5"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(err.exit_code(), 2);
        let err = parse(&[
            "cycle",
            "--clients",
            "3",
            "--rate",
            "5",
            "--concurrency",
            "1",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn credentials_flags_conflict() {
        let err = enroll(&["--shared-credentials", "--unique-credentials"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(
            enroll(&["--unique-credentials"]).unwrap().0.credentials,
            Credentials::Unique
        );
        assert_eq!(
            enroll(&["--shared-credentials"]).unwrap().0.credentials,
            Credentials::Shared
        );
    }

    #[test]
    fn defaults_follow_the_contract() {
        let (c, out) = enroll(&[]).unwrap();
        assert_eq!(c.run.protocol, Protocol::V5);
        assert_eq!(c.encoding, Encoding::Json);
        assert_eq!(c.credentials, Credentials::Shared);
        assert_eq!(c.run.load, Load::Closed { concurrency: 100 });
        assert_eq!(
            c.provisioning,
            BrokerAddr::parse("mqtt://127.0.0.1:1883").unwrap()
        );
        assert_eq!(c.provisioning_account, "provision");
        assert_eq!(c.operational_broker, "mqtt://127.0.0.1:1884");
        assert_eq!(c.api, "http://127.0.0.1:8080");
        assert_eq!(c.run.timeout, Duration::from_secs(30));
        assert_eq!(c.run.duration, None);
        assert!(!c.activation_key && !c.operational);
        assert_eq!(c.run.operational_phase, OperationalPhase::Inline);
        assert!(validate_run_id(&c.run_id).is_ok());
        assert_eq!(
            out,
            Output {
                json: None,
                html: None,
                allow_failures: false
            }
        );
    }

    #[test]
    fn full_enroll_command_line() {
        let (c, out) = enroll(&[
            "--api",
            "http://10.0.0.1:8080",
            "--provisioning",
            "mqtt://10.0.0.1:1999",
            "--provisioning-account",
            "prov",
            "--rate",
            "250.5",
            "--protocol",
            "3.1.1",
            "--encoding",
            "kura",
            "--unique-credentials",
            "--activation-key",
            "--operational",
            "--operational-phase",
            "separate",
            "--duration",
            "60",
            "--seed",
            "42",
            "--json",
            "out.json",
            "--allow-failures",
            "--run-id",
            "abc123",
            "--timeout",
            "2.5",
            "--source-addresses",
            "4",
        ])
        .unwrap();
        assert_eq!(c.run.load, Load::Open { rate: 250.5 });
        assert_eq!(c.run.protocol, Protocol::V311);
        assert_eq!(c.encoding, Encoding::Kura);
        assert_eq!(c.provisioning.port, 1999);
        assert_eq!(c.provisioning_account, "prov");
        assert!(c.activation_key && c.operational);
        assert_eq!(c.run.operational_phase, OperationalPhase::Separate);
        assert_eq!(c.run.duration, Some(Duration::from_secs(60)));
        assert_eq!(c.run.timeout, Duration::from_millis(2500));
        assert_eq!(c.seed, 42);
        assert_eq!(c.run_id, "abc123");
        assert_eq!(c.run.source_addresses, 4);
        assert_eq!(out.json, Some(PathBuf::from("out.json")));
        assert!(out.allow_failures);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for extra in [
            &["--protocol", "4.0"][..],
            &["--rate", "0"],
            &["--rate", "-1"],
            &["--concurrency", "0"],
            &["--encoding", "xml"],
            &["--provisioning", "mqtts://x:8883"],
            &["--run-id", "Bad_Id"],
            &["--bulk-size", "10001"],
            &["--duration", "0"],
        ] {
            let err = enroll(extra).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{extra:?}");
        }
        // Required flags.
        assert!(parse(&["enroll", "--token", "T", "--devices", "1"]).is_err());
        assert!(parse(&["cycle"]).is_err());
        assert!(parse(&["cycle", "--clients", "1", "--password", "p"]).is_err());
    }

    #[test]
    fn operational_phase_flag() {
        let phase = |extra: &[&str]| enroll(extra).map(|(c, _)| c.run.operational_phase);
        assert_eq!(phase(&["--operational"]).unwrap(), OperationalPhase::Inline);
        assert_eq!(
            phase(&["--operational", "--operational-phase", "inline"]).unwrap(),
            OperationalPhase::Inline
        );
        let (c, _) = enroll(&["--operational", "--operational-phase", "separate"]).unwrap();
        assert_eq!(c.run.operational_phase, OperationalPhase::Separate);
        assert!(c.operational);
        // `separate` only means something with the reconnect.
        let err = phase(&["--operational-phase", "separate"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(err.exit_code(), 2);
        assert_eq!(phase(&[]).unwrap(), OperationalPhase::Inline);
        let err = phase(&["--operational", "--operational-phase", "later"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn protocol_aliases() {
        assert_eq!(
            enroll(&["--protocol", "5.0"]).unwrap().0.run.protocol,
            Protocol::V5
        );
        assert_eq!(
            enroll(&["--protocol", "4"]).unwrap().0.run.protocol,
            Protocol::V311
        );
    }

    #[test]
    fn cycle_command_line() {
        let cli = parse(&[
            "cycle",
            "--broker",
            "mqtt://127.0.0.1:1884",
            "--username",
            "u",
            "--password",
            "p",
            "--clients",
            "50",
            "--concurrency",
            "5",
            "--protocol",
            "3.1.1",
            "--json",
            "c.json",
        ])
        .unwrap();
        let Command::Cycle(args) = cli.command else {
            unreachable!()
        };
        let (c, out) = args.into_config(false);
        assert_eq!(c.broker.port, 1884);
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some("p"));
        assert_eq!(c.clients, 50);
        assert_eq!(c.run.load, Load::Closed { concurrency: 5 });
        assert_eq!(c.run.protocol, Protocol::V311);
        assert_eq!(c.api, None);
        assert_eq!(c.topic, "cycle/{client_id}");
        assert_eq!(out.json, Some(PathBuf::from("c.json")));
    }

    #[test]
    fn cycle_sandbox_flag() {
        let cycle = |extra: &[&str]| {
            let args: Vec<&str> = ["cycle", "--clients", "1"]
                .iter()
                .chain(extra)
                .copied()
                .collect();
            parse(&args).map(|cli| {
                let Command::Cycle(args) = cli.command else {
                    unreachable!()
                };
                args.into_config(false).0
            })
        };
        let c = cycle(&["--sandbox"]).unwrap();
        assert!(c.sandbox);
        assert_eq!((c.username, c.password), (None, None));
        assert!(!cycle(&[]).unwrap().sandbox);
        // Anonymous means no credentials.
        let err = cycle(&["--sandbox", "--username", "u"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = cycle(&["--sandbox", "--username", "u", "--password", "p"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn cycle_topic_flag() {
        let topic = |extra: &[&str]| {
            let args: Vec<&str> = ["cycle", "--clients", "1"]
                .iter()
                .chain(extra)
                .copied()
                .collect();
            parse(&args).map(|cli| {
                let Command::Cycle(args) = cli.command else {
                    unreachable!()
                };
                args.into_config(false).0.topic
            })
        };
        assert_eq!(topic(&[]).unwrap(), DEFAULT_CYCLE_TOPIC);
        assert_eq!(
            topic(&["--topic", "acme/{client_id}/cycle"]).unwrap(),
            "acme/{client_id}/cycle"
        );
        for bad in ["acme/cycle", "acme/{client_id}/#", ""] {
            let err = topic(&["--topic", bad]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn ramp_flag() {
        let (c, out) = enroll(&["--ramp", "0:100,30:2000,60:2000", "--html", "r.html"]).unwrap();
        assert_eq!(
            c.run.load,
            Load::Ramp(Ramp::parse("0:100,30:2000,60:2000").unwrap())
        );
        assert_eq!(c.run.load.ramp().as_deref(), Some("0:100,30:2000,60:2000"));
        assert_eq!(out.html, Some(PathBuf::from("r.html")));
        for other in [&["--rate", "5"][..], &["--concurrency", "5"]] {
            let args: Vec<&str> = ["--ramp", "0:1"].iter().chain(other).copied().collect();
            let err = enroll(&args).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ArgumentConflict, "{other:?}");
            assert_eq!(err.exit_code(), 2);
        }
        for bad in ["", "10:100", "0:100,0:50", "0:100,5:0", "0:abc"] {
            let err = enroll(&["--ramp", bad]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
            assert!(err.to_string().contains("bad ramp"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn compare_command_line() {
        let cli = parse(&["compare", "a.json", "b.json"]).unwrap();
        let Command::Compare(args) = cli.command else {
            unreachable!()
        };
        assert_eq!(args.baseline, PathBuf::from("a.json"));
        assert_eq!(args.current, PathBuf::from("b.json"));
        assert_eq!(args.max_regression, 10.0);
        assert_eq!(args.html, None);
        let cli = parse(&[
            "compare",
            "a.json",
            "b.json",
            "--html",
            "c.html",
            "--max-regression",
            "2.5",
        ])
        .unwrap();
        let Command::Compare(args) = cli.command else {
            unreachable!()
        };
        assert_eq!(args.max_regression, 2.5);
        assert_eq!(args.html, Some(PathBuf::from("c.html")));
        assert_eq!(
            parse(&["compare", "a.json", "b.json", "--max-regression", "-1"])
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(parse(&["compare", "a.json"]).unwrap_err().exit_code(), 2);
        // Unreadable input is exit 2, before any comparison.
        let args = CompareArgs {
            baseline: "/nonexistent/a.json".into(),
            current: "/nonexistent/b.json".into(),
            html: None,
            max_regression: 10.0,
        };
        assert_eq!(run_compare(&args), EXIT_SETUP);
    }

    #[test]
    fn json_path_is_checked_before_the_run() {
        assert!(check_writable(Path::new("/nonexistent-dir-for-loadtest/x.json")).is_err());
        assert!(check_writable(Path::new("report.json")).is_ok());
    }
}
