//! `fleetgate`: `serve` runs the broker; `config` prints the effective configuration; the other
//! commands are clients of the admin API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
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
    Serve(ServeArgs),
    /// Print the effective configuration (secrets redacted).
    Config(ServeArgs),
    #[command(flatten)]
    Client(fleetgate_cli::ClientCommand),
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
            provisioning_account: self.provisioning_account,
        };
        Ok(Config::load(&overrides, std::env::vars())?)
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLEETGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            init_logging();
            args.load().and_then(fleetgate::server::serve)
        }
        Command::Config(args) => args.load().map(|c| print!("{}", c.redacted())),
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
