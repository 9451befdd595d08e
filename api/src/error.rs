//! Errors of the admin API, rendered as `application/problem+json` (RFC 9457).

use std::fmt;

use fleetgate_storage::{FieldError, StoreError};
use ntex::http::{StatusCode, header};
use ntex::web::{HttpRequest, HttpResponse, WebResponseError};

/// The problem document is `fleetgate-wire`'s: the client decodes the very shape served here.
pub use fleetgate_wire::Problem;

/// Content type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer of the API. The `Display` text is the problem's `detail`: it never contains
/// a secret.
#[derive(Debug)]
pub enum ApiError {
    /// No token, or a wrong one (401).
    Unauthorized,
    /// A valid token that may not do this (403).
    Forbidden(String),
    /// Unknown, or not visible to the caller (404).
    NotFound(String),
    /// Known path, unsupported method (405); carries the `Allow` value.
    MethodNotAllowed(String),
    /// The body is not JSON (400).
    Malformed(String),
    /// The body is larger than the limit (413).
    TooLarge(usize),
    /// The body's content type is not the one the route reads (415); carries that one.
    UnsupportedMediaType(&'static str),
    /// Validation failed (422).
    Invalid(Vec<FieldError>),
    /// Conflict with the current state (409).
    Conflict(Vec<FieldError>),
    /// Overloaded, or not ready (503).
    Unavailable(String),
    /// A device answered what Fleetgate cannot use: an error reply, a malformed one (502).
    BadGateway(String),
    /// A device did not answer in time (504).
    GatewayTimeout(String),
    /// Something broke inside; the detail is logged, not shown (500).
    Internal(String),
    /// The caller's address is banned after repeated failed authentications (429); carries
    /// the seconds until the ban ends (`Retry-After`).
    TooManyRequests(u64),
}

impl ApiError {
    /// A 422 on one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError::new(field, message)])
    }

    /// A 409 on one field.
    pub fn conflict(field: &str, message: impl Into<String>) -> Self {
        ApiError::Conflict(vec![FieldError::new(field, message)])
    }

    /// The field errors carried, if any.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            ApiError::Invalid(e) | ApiError::Conflict(e) => e,
            _ => &[],
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Unauthorized => f.write_str("a valid bearer token is required"),
            ApiError::Forbidden(m) => f.write_str(m),
            ApiError::NotFound(what) => write!(f, "{what} not found"),
            ApiError::MethodNotAllowed(_) => f.write_str("this method is not supported here"),
            ApiError::Malformed(m) => write!(f, "the body is not valid JSON: {m}"),
            ApiError::TooLarge(limit) => write!(f, "the body is larger than {limit} bytes"),
            ApiError::UnsupportedMediaType(t) => write!(f, "the body must be {t}"),
            ApiError::Invalid(e) => write!(f, "validation failed: {}", summary(e)),
            ApiError::Conflict(e) => write!(f, "conflict with the current state: {}", summary(e)),
            ApiError::Unavailable(m) | ApiError::BadGateway(m) | ApiError::GatewayTimeout(m) => {
                f.write_str(m)
            }
            ApiError::Internal(_) => f.write_str("internal error"),
            ApiError::TooManyRequests(secs) => write!(
                f,
                "too many failed authentications from this address; retry in {secs} s"
            ),
        }
    }
}

fn summary(errors: &[FieldError]) -> String {
    const SHOWN: usize = 5;
    let mut s = errors
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if errors.len() > SHOWN {
        s.push_str(&format!("; and {} more", errors.len() - SHOWN));
    }
    s
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(what.to_string()),
            StoreError::Conflict(errors) => ApiError::Conflict(errors),
            StoreError::Invalid(errors) => ApiError::Invalid(errors),
            StoreError::Stale => {
                ApiError::Unavailable("the data changed concurrently several times; retry".into())
            }
            StoreError::Closed => ApiError::Unavailable("the store is shutting down".into()),
            e @ (StoreError::Db(_)
            | StoreError::Writer(_)
            | StoreError::BatchAborted
            | StoreError::Corrupt(_)
            | StoreError::Backup(_)) => ApiError::Internal(e.to_string()),
        }
    }
}

impl ApiError {
    /// The problem document of this error.
    pub fn problem(&self) -> Problem {
        let status = WebResponseError::status_code(self);
        Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: Some(status.as_u16()),
            detail: self.to_string(),
            errors: self
                .field_errors()
                .iter()
                .map(|e| fleetgate_wire::FieldError {
                    index: e.index,
                    field: e.field.clone(),
                    message: e.message.clone(),
                })
                .collect(),
        }
    }
}

impl WebResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Malformed(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self, req: &HttpRequest) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            tracing::error!(path = %req.path(), error = %detail, "admin API internal error");
        }
        let body = serde_json::to_string(&self.problem()).unwrap_or_default();
        let mut b = HttpResponse::build(WebResponseError::status_code(self));
        b.content_type(PROBLEM_JSON);
        match self {
            ApiError::Unauthorized => {
                b.header(header::WWW_AUTHENTICATE, "Bearer realm=\"fleetgate\"");
            }
            ApiError::MethodNotAllowed(allow) => {
                b.header(header::ALLOW, allow.as_str());
            }
            ApiError::TooManyRequests(secs) => {
                b.header(header::RETRY_AFTER, secs.to_string());
            }
            _ => {}
        }
        b.body(body)
    }
}
