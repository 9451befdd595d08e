//! The provisioning exchange (PROTOCOL.md section 4, and the Kura-native one of 8.1), free of
//! any MQTT library.
//!
//! This crate owns what happens between a device's request and the end of its execution: the
//! [`Plan`] made from a store snapshot (the identity of PROTOCOL.md 4.4 and the configuration
//! document of 4.5, or a failure code), the two-commit protocol around the reply (the identity
//! is durable before the reply leaves; the reply's fate ends the execution), the reply timeout,
//! the linger before closing a completed session, and the failure replies of 4.2. An unmodified
//! Kura device's BIRTH runs the same exchange ([`Exchange::run_kura`]), answered with a CONF-V1
//! PUT of the configuration in Kura's snapshot form instead of a reply. It also renders the
//! admin API's configuration [`preview`].
//!
//! It talks to the connection only through [`ReplySink`], to time only through [`Timer`], and
//! to metrics only through [`Observer`], so the MQTT endpoint is glue and the flow is tested
//! with fakes. It must not know the MQTT library, the ACL, or the runtime, and must not write
//! anything to the store except through `fleetgate_storage::ops`.

mod flow;
mod plan;

pub use fleetgate_storage::ops::ReplyFate;
pub use flow::{Counted, Exchange, Observer, ReplySink, Session, Settings, Timer};
pub use plan::{Plan, configuration, identity, plan, preview};

/// Why a configuration document could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The request's stored additional configuration no longer parses.
    #[error("the stored additional configuration is invalid: {0}")]
    AdditionalConfiguration(#[from] fleetgate_devconfig::ParseError),
}
