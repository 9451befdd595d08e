//! Fleetgate's broker: the `fleetgate` binary's library. It owns the MQTT listeners
//! (provisioning and operational, on ntex-mqtt), the PROV-V1 exchange, the admin REST API,
//! metrics, configuration loading and the CLI. Decisions about credentials and topics are
//! asked of the `fleetgate-hooks` facade (over the pure `fleetgate-auth-hook` and
//! `fleetgate-acl`), persistence is `fleetgate-storage`'s; all ntex-mqtt code stays in this
//! crate.

pub mod api;
pub mod app;
pub mod mqtt;
pub mod operational;
pub mod provisioning;
pub mod server;
pub mod tasks;

pub use fleetgate_config as config;
pub use fleetgate_metrics as metrics;
