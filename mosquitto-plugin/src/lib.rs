//! Fleetgate's native Mosquitto plugin (HOOKS.md 3): a shared library that Mosquitto 2.0
//! (plugin API version 5) loads to decide CONNECTs and topic access with Fleetgate's own
//! decision code, from an in-memory replica of Fleetgate's users kept current from its hook
//! listener's feed.
//!
//! It owns:
//! - the C entry points and Mosquitto's event structs (`ffi`, the only unsafe code);
//! - the decisions at Mosquitto's door (`plugin`): BASIC_AUTH through
//!   `fleetgate_auth_hook::operational::authenticate`, ACL_CHECK through `identify` and
//!   `fleetgate_acl`, on the replica;
//! - the follower thread (`feed`) that keeps the replica current, and the thread (`events`)
//!   that reports connects and disconnects to Fleetgate.
//!
//! It must not make Mosquitto's single thread wait on the network or on a lock held during a
//! network call, nor decide anything its own way: a rule lives in `fleetgate-auth-hook` or
//! `fleetgate-acl`. Passwords and hashes are never logged.

// The C entry points are left out of the unit-test binary: the broker functions they call
// exist only inside `mosquitto`, so an executable cannot link them. What only they use looks
// unused there; the library itself is built with every lint.
#![cfg_attr(test, allow(dead_code))]

mod error;
mod events;
mod feed;
#[cfg(not(test))]
mod ffi;
mod plugin;

pub use error::Error;
