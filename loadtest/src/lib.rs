//! `fleetgate-loadtest`: Fleetgate's fleet simulator and load generator.
//!
//! It owns the load-test contract of `LOADTEST.md`: the `enroll` and `cycle` scenarios, their
//! command line, the closed (`--concurrency`) and open (`--rate`, `--ramp`) arrival models, and
//! the run report (JSON, table and a self-contained HTML page with plots) with latency
//! percentiles, failure reasons and the server's `fleetgate_*` metrics before and after, and
//! `compare` of two JSON reports.
//!
//! It speaks only HTTP (the admin API of `API.md`: bulk creation of provision requests,
//! `/metrics`) and MQTT (the device protocol of `PROTOCOL.md`), exactly as an operator's
//! script and a device would. It must not link or reach into broker internals (storage, hooks,
//! listeners); the only project crates it uses are wire crates: `fleetgate-client` (the admin
//! API) and `fleetgate-kura` (the KuraPayload codec).
//!
//! Library use: [`run_enroll`] and [`run_cycle`] take a configuration and return a
//! [`Report`]; errors are setup failures (unreachable server, API refusal), device failures
//! are counted in the report. The binary adds the command line ([`cli`]).
//!
//! Module map: [`config`] (what to run), [`api`] (the admin API, through `fleetgate-client`), [`mqtt`] (one client connection on
//! rumqttc's packet codecs), [`wire`] and [`verify`] (PROV-V1 payloads and their checks),
//! [`runner`] (arrival models, collection), [`ramp`] (the `--ramp` rate curve), [`stats`] and
//! [`report`] (figures), [`server`] (figures derived from the server's metrics), [`html`] (the
//! HTML report and its SVG charts), [`compare`] (two reports side by side), [`error`].

pub mod api;
pub mod cli;
pub mod compare;
pub mod config;
pub mod cycle;
pub mod enroll;
pub mod error;
pub mod html;
pub mod mqtt;
pub mod net;
pub mod ramp;
pub mod report;
pub mod runner;
pub mod server;
pub mod stats;
pub mod verify;
pub mod wire;

pub use api::Unreachable;
pub use config::{
    BrokerAddr, Credentials, CycleConfig, Encoding, EnrollConfig, Load, OperationalPhase, Protocol,
    RunOptions,
};
pub use cycle::run_cycle;
pub use enroll::run_enroll;
pub use error::Error;
pub use ramp::Ramp;
pub use report::{Report, Scenario};
