//! `fleetgate-loadtest`: see the library crate for what it does; this is only the entry point.

use clap::Parser;

fn main() -> std::process::ExitCode {
    fleetgate_loadtest::cli::run(fleetgate_loadtest::cli::Cli::parse())
}
