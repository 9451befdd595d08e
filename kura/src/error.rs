//! The crate's errors.

use crate::Encoding;

/// Why bytes could not be read as (or turned into) a PROV-V1 / KuraPayload value.
#[derive(Debug, thiserror::Error)]
pub enum KuraError {
    /// Not a valid KuraPayload protobuf.
    #[error("invalid KuraPayload protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// Not valid JSON, not a JSON object, or trailing data after it.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Larger than the limit for this kind of payload.
    #[error("payload is {len} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Size of the payload.
        len: usize,
        /// The limit it exceeded.
        limit: usize,
    },
    /// It starts like gzip but does not decompress.
    #[error("invalid gzip: {0}")]
    Gzip(#[source] std::io::Error),
    /// A required field (JSON key or Kura metric/body) is absent.
    #[error("`{0}` is missing")]
    MissingField(&'static str),
    /// A field appears more than once, so its value is ambiguous.
    #[error("`{0}` appears more than once")]
    DuplicateField(&'static str),
    /// A field has the wrong JSON type or Kura metric type.
    #[error("`{field}` must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be, in words ("a string", "an INT32 metric", ...).
        expected: &'static str,
    },
    /// A field has the right type but a value outside what PROV-V1 allows.
    #[error("`{field}` is invalid: {reason}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// Why, in words suitable for a device's log.
        reason: &'static str,
    },
}

/// Why a PROV-V1 request payload was refused; every case is answered with response code 400.
///
/// The variant tells the broker where to answer: [`RequestError::reply_topic_level`] gives
/// the last level of the reply topic (`error` unless a valid `request.id` could be read).
/// The `Display` text is fit for `response.exception.message`: it never echoes the payload.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The payload could not be decoded at all, or it carries no `request.id`.
    /// Answer on `REPLY/error`.
    #[error("malformed request payload: {cause}")]
    Malformed {
        /// Encoding of the request (the reply uses the same).
        encoding: Encoding,
        /// What was wrong.
        #[source]
        cause: KuraError,
    },
    /// A `request.id` is present but unusable: wrong type, duplicated, or not 1 to 64
    /// characters of `[A-Za-z0-9._-]`. Answer on `REPLY/error`.
    #[error("invalid request.id: {cause}")]
    InvalidRequestId {
        /// Encoding of the request (the reply uses the same).
        encoding: Encoding,
        /// What was wrong.
        #[source]
        cause: KuraError,
    },
    /// `request.id` is valid but another field is not. Answer on `REPLY/{request_id}`.
    #[error("malformed request {request_id}: {cause}")]
    InvalidField {
        /// Encoding of the request (the reply uses the same).
        encoding: Encoding,
        /// The valid `request.id` read from the payload.
        request_id: String,
        /// What was wrong.
        #[source]
        cause: KuraError,
    },
}

impl RequestError {
    /// Encoding of the refused request; the reply must use it too.
    pub fn encoding(&self) -> Encoding {
        match self {
            RequestError::Malformed { encoding, .. }
            | RequestError::InvalidRequestId { encoding, .. }
            | RequestError::InvalidField { encoding, .. } => *encoding,
        }
    }

    /// The valid `request.id`, when one could be read.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            RequestError::InvalidField { request_id, .. } => Some(request_id),
            RequestError::Malformed { .. } | RequestError::InvalidRequestId { .. } => None,
        }
    }

    /// Last level of the reply topic: the valid `request.id`, else
    /// [`REPLY_ERROR_LEVEL`](crate::topics::REPLY_ERROR_LEVEL) (`error`).
    pub fn reply_topic_level(&self) -> &str {
        self.request_id()
            .unwrap_or(crate::topics::REPLY_ERROR_LEVEL)
    }

    /// The underlying decoding error.
    pub fn cause(&self) -> &KuraError {
        match self {
            RequestError::Malformed { cause, .. }
            | RequestError::InvalidRequestId { cause, .. }
            | RequestError::InvalidField { cause, .. } => cause,
        }
    }

    /// The 400 failure reply for this error (message = this error's `Display`).
    pub fn to_reply(&self) -> crate::ProvReply {
        crate::ProvReply::failure(400, self.to_string())
    }
}
