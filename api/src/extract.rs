//! Request-side plumbing: bearer-token authentication, the target-account extractor and the
//! JSON body reader.
//!
//! The body reader never fails as an extractor: it records its error and lets the handler
//! authenticate first, so a caller without a token always hears 401, whatever it sent. A handler
//! that takes both lists [`JsonBody`] before [`Target`]: extractors run in order and stop at the
//! first error, and the body must be read (or drained) before a 401 is answered.

use std::sync::Arc;

use fleetgate_auth_hook::credentials::{constant_time_eq, fast_verify, parse_token};
use fleetgate_storage::Account;
use ntex::http::header;
use ntex::util::{Bytes, BytesMut};
use ntex::web::types::Path;
use ntex::web::{DefaultError, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;
use super::guard::Actor;
use fleetgate_app::App;

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The instance admin token: may do everything.
    Admin,
    /// An account token: may act only inside this account.
    Account(String),
}

impl Caller {
    /// Whether the caller may see `account` (others answer 404, as if it did not exist).
    pub fn sees(&self, account: &str) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Account(a) => a == account,
        }
    }
}

/// The bearer token of `req`, if any.
fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Authenticates `req`: the admin token (constant-time comparison) or an account token
/// (`fgt_ID_SECRET`, verified against its keyed hash). Anything else is 401.
/// The caller is also recorded on the request as the audit log's [`Actor`] (`admin` or
/// `token:ID`; never the token itself).
pub fn authenticate(req: &HttpRequest, app: &App) -> Result<Caller, ApiError> {
    let token = bearer(req).ok_or(ApiError::Unauthorized)?;
    if !app.admin_token.is_empty() && constant_time_eq(token.as_bytes(), app.admin_token.as_bytes())
    {
        req.extensions_mut().insert(Actor("admin".into()));
        return Ok(Caller::Admin);
    }
    let (id, secret) = parse_token(token).ok_or(ApiError::Unauthorized)?;
    let stored = app.store.read()?.token(id)?.ok_or(ApiError::Unauthorized)?;
    if fast_verify(secret, &stored.secret_hash) {
        req.extensions_mut()
            .insert(Actor(format!("token:{}", stored.id)));
        Ok(Caller::Account(stored.account))
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// The target account `name` as `caller` may see it: 404 when it does not exist, is the
/// provisioning account, or belongs to another account than the caller's token.
pub fn target_account(app: &App, caller: &Caller, name: &str) -> Result<Account, ApiError> {
    let not_found = || ApiError::NotFound(format!("account {name:?}"));
    if !caller.sees(name) {
        return Err(not_found());
    }
    app.store
        .read()?
        .account(name)?
        .filter(|a| !a.provisioning)
        .ok_or_else(not_found)
}

/// The prologue of every handler under `/api/v1/accounts/{account}`: the caller is
/// authenticated (401 otherwise) and the `{account}` segment names a target account the caller
/// may see (404 otherwise). `P` holds the route's other path segments, by name (`()` for none).
pub struct Target<P = ()> {
    /// The target account.
    pub account: Account,
    /// The other path segments.
    pub path: P,
}

/// `{id}`: a provision request or a token.
#[derive(Debug, serde::Deserialize)]
pub struct IdPath {
    /// The id.
    pub id: String,
}

/// `{id}/executions/{executionId}`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionPath {
    /// The provision request's id.
    pub id: String,
    /// The execution's id.
    pub execution_id: String,
}

/// `{clientId}`: a device.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicePath {
    /// The device's client ID.
    pub client_id: String,
}

/// `{username}`: an operational user.
#[derive(Debug, serde::Deserialize)]
pub struct UserPath {
    /// `NAME@ACCOUNT` or `CID@ACCOUNT`.
    pub username: String,
}

/// The `{account}` segment: every route that takes a [`Target`] has one.
#[derive(serde::Deserialize)]
struct AccountPath {
    account: String,
}

impl<P: DeserializeOwned + 'static> FromRequest<DefaultError> for Target<P> {
    type Error = ApiError;

    async fn from_request(
        req: &HttpRequest,
        payload: &mut ntex::http::Payload,
    ) -> Result<Self, ApiError> {
        let app = req
            .app_state::<Arc<App>>()
            .ok_or_else(|| ApiError::Internal("the admin API runs without its state".into()))?;
        let caller = authenticate(req, app)?;
        let malformed = |e: ntex::web::error::PathError| ApiError::Malformed(e.to_string());
        let name = <Path<AccountPath> as FromRequest<DefaultError>>::from_request(req, payload)
            .await
            .map_err(malformed)?
            .into_inner()
            .account;
        let account = target_account(app, &caller, &name)?;
        let path = <Path<P> as FromRequest<DefaultError>>::from_request(req, payload)
            .await
            .map_err(malformed)?
            .into_inner();
        Ok(Target { account, path })
    }
}

/// Whether a body with this `Content-Type` is read as JSON: `application/json`,
/// `application/*+json`, or `application/x-www-form-urlencoded`, which is what `curl -d`
/// labels every body with (such a body is still parsed as JSON: `a=b` answers 400).
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence == "application/x-www-form-urlencoded"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A JSON request body, read with the configured limit: `admin.body_limit`, or
/// `admin.bulk_body_limit` when `BULK` (10,000 rows do not fit in 1 MiB). Errors (415 for a
/// non-JSON content type, 413 over the limit, 400 for malformed JSON) are kept for the handler
/// to raise after authentication. A missing content type is accepted.
pub struct JsonBody<const BULK: bool>(Result<Value, ApiError>);

impl<const BULK: bool> JsonBody<BULK> {
    /// The parsed body, or the error found reading it.
    pub fn into_value(self) -> Result<Value, ApiError> {
        self.0
    }
}

/// The body limit in force for `req`.
fn limit(req: &HttpRequest, bulk: bool) -> usize {
    let default = if bulk { 16 << 20 } else { 1 << 20 };
    req.app_state::<Arc<App>>().map_or(default, |app| {
        if bulk {
            app.config.admin.bulk_body_limit
        } else {
            app.config.admin.body_limit
        }
    })
}

/// How much of a refused body is still read (and discarded) so that the client, which may
/// still be sending, reads our answer instead of a connection reset.
const MAX_DRAIN: usize = 64 << 20;

/// Reads and discards the rest of the body, up to [`MAX_DRAIN`] bytes.
async fn drain(payload: &mut ntex::http::Payload, mut seen: usize) {
    while seen <= MAX_DRAIN {
        match payload.recv().await {
            Some(Ok(chunk)) => seen += chunk.len(),
            _ => break,
        }
    }
}

/// Reads the whole body up to `limit` bytes.
async fn read_body(
    req: &HttpRequest,
    payload: &mut ntex::http::Payload,
    limit: usize,
    (accepts, expected): (fn(&str) -> bool, &'static str),
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let refuse = if let Some(ct) = req.headers().get(header::CONTENT_TYPE)
        && !ct.to_str().is_ok_and(accepts)
    {
        Some(ApiError::UnsupportedMediaType(expected))
    } else if declared.is_some_and(|n| n > limit) {
        Some(ApiError::TooLarge(limit))
    } else {
        None
    };
    if let Some(e) = refuse {
        if declared.is_none_or(|n| n <= MAX_DRAIN) {
            drain(payload, 0).await;
        }
        return Err(e);
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.recv().await {
        let chunk = chunk.map_err(|e| ApiError::Malformed(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            drain(payload, body.len() + chunk.len()).await;
            return Err(ApiError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

impl<const BULK: bool> FromRequest<DefaultError> for JsonBody<BULK> {
    type Error = ApiError;

    async fn from_request(
        req: &HttpRequest,
        payload: &mut ntex::http::Payload,
    ) -> Result<Self, ApiError> {
        let parsed = match read_body(
            req,
            payload,
            limit(req, BULK),
            (is_json, "application/json"),
        )
        .await
        {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => {
                Err(ApiError::Malformed("the body is empty".into()))
            }
            Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| ApiError::Malformed(e.to_string())),
            Err(e) => Err(e),
        };
        Ok(JsonBody(parsed))
    }
}

/// Whether a body with this `Content-Type` is read as XML: `application/xml`, `text/xml`,
/// `application/*+xml`.
fn is_xml(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/xml"
        || essence == "text/xml"
        || (essence.starts_with("application/") && essence.ends_with("+xml"))
}

/// An XML request body (a configuration document), read with `admin.body_limit`; errors kept
/// for the handler as [`JsonBody`]'s. A missing content type is accepted.
pub struct XmlBody(Result<String, ApiError>);

impl XmlBody {
    /// The body as text, or the error found reading it.
    pub fn into_text(self) -> Result<String, ApiError> {
        self.0
    }
}

impl FromRequest<DefaultError> for XmlBody {
    type Error = ApiError;

    async fn from_request(
        req: &HttpRequest,
        payload: &mut ntex::http::Payload,
    ) -> Result<Self, ApiError> {
        let text = read_body(req, payload, limit(req, false), (is_xml, "application/xml"))
            .await
            .and_then(|bytes| {
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| ApiError::invalid("body", "must be UTF-8 XML"))
            });
        Ok(XmlBody(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/xml"));
        assert!(!is_json("multipart/form-data; boundary=x"));
        assert!(is_json("application/x-www-form-urlencoded"));
    }
}
