//! The one error type of the client.

use crate::types::Problem;

/// Why a call of the admin API failed. A server that cannot be reached, an HTTP error answer
/// and an answer that does not decode are distinct, so callers can react to each (the
/// loadtest treats an unreachable server as a setup error, the CLI adds a hint to a 401).
/// Nothing here carries a secret: URLs hold no token and request bodies are never kept.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection could be made (refused, host not found, connect timeout).
    #[error("cannot reach the admin API at {url}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// The transport error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The connection was made but the exchange failed (reset, timeout, unreadable answer).
    #[error("{method} {url} failed")]
    Transport {
        /// HTTP method.
        method: &'static str,
        /// The URL called.
        url: String,
        /// The transport error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The base URL does not make a valid request URL.
    #[error("invalid admin API URL {url}")]
    InvalidUrl {
        /// The URL built.
        url: String,
        /// Why it is invalid.
        #[source]
        source: ureq::http::Error,
    },
    /// The server answered with an error status and a problem document.
    #[error("{}", problem.describe(*status, &|i| format!("row {i}")))]
    Problem {
        /// HTTP status of the answer.
        status: u16,
        /// The problem document.
        problem: Problem,
    },
    /// The server answered with an error status and a body that is not a problem document.
    #[error("HTTP {status}: {}", body.trim())]
    Status {
        /// HTTP status of the answer.
        status: u16,
        /// The body, as text.
        body: String,
    },
    /// A success answer whose body is not the expected JSON.
    #[error("{method} {url}: the admin API answered something that is not the expected JSON")]
    Decode {
        /// HTTP method.
        method: &'static str,
        /// The URL called.
        url: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The CA file given for an `https://` API is not PEM.
    #[error("cannot read the CA certificates")]
    Ca(#[source] ureq::Error),
    /// The CA file given for an `https://` API holds no certificate.
    #[error("the CA file holds no certificate")]
    NoCertificate,
    /// A file the client writes (a backup) could not be created or written.
    #[error("cannot write {}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A request body could not be encoded as JSON.
    #[error("cannot encode the request body")]
    Encode(#[from] serde_json::Error),
    /// One call of a bulk creation failed; the calls before it were committed.
    #[error(
        "creating provision requests {first}..{end} failed ({created} created by earlier calls)"
    )]
    Bulk {
        /// Index of the call's first item in the caller's slice.
        first: usize,
        /// Index after the call's last item.
        end: usize,
        /// How many requests earlier calls created.
        created: usize,
        /// Why the call failed.
        #[source]
        source: Box<Error>,
    },
    /// A bulk call answered success with another number of requests than it was sent.
    #[error("the admin API created {got} provision requests instead of {sent}")]
    BulkCount {
        /// Requests sent in the call.
        sent: usize,
        /// Requests in the answer.
        got: usize,
    },
}

impl Error {
    /// Whether the server could not be reached at all (also inside a failed bulk call).
    pub fn is_unreachable(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Bulk { source, .. } => source.is_unreachable(),
            _ => false,
        }
    }

    /// The HTTP status of an error answer (also inside a failed bulk call).
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Problem { status, .. } | Error::Status { status, .. } => Some(*status),
            Error::Bulk { source, .. } => source.status(),
            _ => None,
        }
    }
}

/// Whether a transport error means no connection was made.
pub(crate) fn means_unreachable(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::NotConnected
                | std::io::ErrorKind::AddrNotAvailable
                | std::io::ErrorKind::HostUnreachable
                | std::io::ErrorKind::NetworkUnreachable
                | std::io::ErrorKind::TimedOut
        ),
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Connect | ureq::Timeout::Resolve),
        _ => false,
    }
}
