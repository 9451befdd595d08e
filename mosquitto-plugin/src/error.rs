//! The plugin's errors (none of them carries a secret).

use fleetgate_replica::ReplicaError;

/// Why the plugin could not start, or a feed or event request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A required `plugin_opt_*` line is missing from Mosquitto's configuration.
    #[error("missing plugin option plugin_opt_{0}")]
    MissingOption(&'static str),
    /// A background thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(#[from] std::io::Error),
    /// Fleetgate could not be reached, or the exchange failed.
    #[error("request failed: {0}")]
    Http(#[from] ureq::Error),
    /// Fleetgate answered with an unexpected status.
    #[error("unexpected HTTP status {0}")]
    Status(u16),
    /// A feed page could not be applied.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
}
