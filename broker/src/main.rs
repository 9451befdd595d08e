//! `fleetgate`: `serve` runs the broker; `config` prints the effective configuration;
//! `restore` puts a backup back into an empty data dir and `compact` gives a stopped store's
//! free pages back to the file system (both offline);
//! `completions` and `man` print shell completions and the man page generated from this very
//! clap definition (so they cannot drift from the flags); the other commands are clients of the
//! admin API.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use fleetgate_config::{Config, Overrides};

#[derive(Parser)]
#[command(name = "fleetgate", version, about = "Device-provisioning MQTT broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker: provisioning and operational MQTT endpoints and the admin API.
    Serve(Serve),
    /// Print the effective configuration (secrets redacted).
    Config(ServeArgs),
    /// Print a shell completion script for SHELL on stdout.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout.
    Man,
    /// Restore a backup (`fleetgate backup`) into an empty data dir, offline: the file is
    /// checked (redb integrity, Fleetgate's tables, the backup marker) before anything is
    /// written; the dir is created 0700 and the store 0600.
    Restore {
        /// The backup file.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The data dir to create (or an empty one).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Compact a stopped server's store, offline: redb moves pages down into the free space
    /// inside the file and trims its end. A file below 4 GiB grows by doubling, so a store can
    /// hold free space that stopping does not give back (about a sixth of a 1,000,000-device
    /// store). Refused while a server has the store open.
    Compact {
        /// The data dir of the stopped server.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    #[command(flatten)]
    Client(fleetgate_cli::ClientCommand),
}

/// `serve`: the configuration flags plus how to log.
#[derive(Args)]
struct Serve {
    #[command(flatten)]
    args: ServeArgs,
    /// Log line format: `text` for people, `json` (one object per line) for log shippers.
    #[arg(long, value_enum, env = "FLEETGATE_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The format of the log lines on stderr.
#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (tracing-subscriber's JSON formatter).
    Json,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Provisioning listener.
    #[arg(long, value_name = "ADDR:PORT")]
    provisioning_listen: Option<String>,
    /// Operational listener.
    #[arg(long, value_name = "ADDR:PORT")]
    operational_listen: Option<String>,
    /// Admin API listener.
    #[arg(long, value_name = "ADDR:PORT")]
    admin_listen: Option<String>,
    /// Anonymous sandbox listener (off unless given here or in the configuration).
    #[arg(long, value_name = "ADDR:PORT")]
    sandbox_listen: Option<String>,
    /// HTTP hook listener for other brokers (HOOKS.md; empty turns it off).
    #[arg(long, value_name = "ADDR:PORT")]
    hooks_listen: Option<String>,
    /// Name of the provisioning account.
    #[arg(long, value_name = "NAME")]
    provisioning_account: Option<String>,
}

impl ServeArgs {
    fn load(self) -> anyhow::Result<Config> {
        let overrides = Overrides {
            config_file: self.config,
            data_dir: self.data_dir,
            provisioning_listen: self.provisioning_listen,
            operational_listen: self.operational_listen,
            admin_listen: self.admin_listen,
            sandbox_listen: self.sandbox_listen,
            hooks_listen: self.hooks_listen,
            provisioning_account: self.provisioning_account,
        };
        Ok(Config::load(&overrides, std::env::vars())?)
    }
}

/// The filter when `FLEETGATE_LOG` is unset: Fleetgate's own lines at info, but ntex's
/// internals (arbiters starting and stopping, accept loops pausing) only when something is
/// wrong, since an operator cannot act on them. `ntex` covers every `ntex_*` crate because
/// EnvFilter matches targets by prefix. `FLEETGATE_LOG` replaces the whole filter.
const DEFAULT_LOG_FILTER: &str = "info,ntex=warn";

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLEETGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // The request span's fields (id, method, path) go into each line, so a shipper can
        // group an API request's lines without parsing text.
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

/// Writes the completion script of the whole command line for `shell` to stdout.
fn print_completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    // Into a buffer first: clap_complete panics on a failed write (`| head` closing the pipe),
    // while a write to stdout here is an ordinary error.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "fleetgate", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(())
}

/// Writes the man page (roff) of the whole command line to stdout.
fn print_man() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    out.flush()?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(serve) => {
            init_logging(serve.log_format);
            serve.args.load().and_then(fleetgate::server::serve)
        }
        Command::Config(args) => args.load().map(|c| print!("{}", c.redacted())),
        Command::Completions { shell } => print_completions(shell),
        Command::Man => print_man(),
        Command::Restore { from, data_dir } => fleetgate_storage::backup::restore(&from, &data_dir)
            .map(|r| {
                println!(
                    "restored the backup taken at {} into {}",
                    r.taken,
                    r.file.display()
                );
            })
            .map_err(Into::into),
        Command::Compact { data_dir } => compact(&data_dir),
        Command::Client(c) => fleetgate_cli::run(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleetgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `compact`: compacts the store of the stopped server of `data_dir` and says how the file's
/// size changed.
fn compact(data_dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let file = data_dir.join(fleetgate_storage::DB_FILE);
    let size = || {
        std::fs::metadata(&file)
            .map(|m| m.len())
            .with_context(|| format!("no store at {}", file.display()))
    };
    let before = size()?;
    fleetgate_storage::sizes::compact(&file).with_context(|| {
        format!(
            "cannot compact {} (is a server running on it?)",
            file.display()
        )
    })?;
    let after = size()?;
    println!("compacted {}: {before} -> {after} bytes", file.display());
    Ok(())
}
