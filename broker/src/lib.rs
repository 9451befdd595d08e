//! The `fleetgate` binary's library: it wires the crates together and owns nothing else. It
//! binds the listeners and runs them in one ntex server ([`server`]): the MQTT endpoints of
//! `fleetgate-mqtt`, the admin API of `fleetgate-api`, over the shared state of `fleetgate-app`;
//! it handles the signals and the shutdown order, and gives freed memory back to the system
//! ([`memory`]). Tests and benches start the same server
//! in-process with [`server::Running`].
//!
//! It must not decide anything nor speak a protocol itself: every rule lives in a crate below.

pub mod memory;
pub mod server;
