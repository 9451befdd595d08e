//! The crate's typed errors: what a caller (the CLI) can tell apart and report precisely.
//! Setup failures of a run stay `anyhow` (they are only ever printed).

use std::path::PathBuf;

/// Errors of ramp parsing and report comparison.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `--ramp` specification that cannot be used.
    #[error("bad ramp {spec:?}: {reason}")]
    BadRamp {
        /// The specification as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A report file that cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file that is not JSON.
    #[error("{} is not JSON: {source}", path.display())]
    NotJson {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON file that is not a loadtest report.
    #[error("{} is not a loadtest report: {reason}", path.display())]
    NotAReport {
        /// The file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// Writing an output file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
