//! A request id per admin-API request: every log line written while a request is handled
//! carries it (a `request{id, method, path}` tracing span), the response returns it as
//! `X-Request-Id`, and one debug line per request records the route, status and duration.
//!
//! The id is the client's `X-Request-Id` when it is a plain token (so a caller or a proxy in
//! front can correlate its own logs with ours), else a fresh one. Only the method, the path
//! (without the query string) and the route template are logged: never a header value other
//! than the id, nor a body, since bodies carry passwords and headers carry tokens.

use std::sync::Arc;
use std::time::Instant;

use fleetgate_app::App;

use ntex::http::header::{HeaderName, HeaderValue};
use ntex::service::cfg::SharedCfg;
use ntex::service::{Middleware, Service, ServiceCtx};
use ntex::web::{WebRequest, WebResponse};
use tracing::Instrument as _;

/// The request and response header carrying the request id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client-sent id that is kept; a longer one is replaced by a fresh id.
const MAX_CLIENT_ID_LEN: usize = 128;

/// Middleware giving each request of one route a request id and a span (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct RequestId {
    route: &'static str,
}

impl RequestId {
    /// The middleware for the route with path template `route` (logged as `route`).
    pub fn new(route: &'static str) -> Self {
        RequestId { route }
    }
}

impl<S> Middleware<S, SharedCfg> for RequestId {
    type Service = RequestIdService<S>;

    fn create(&self, service: S, _: SharedCfg) -> Self::Service {
        RequestIdService {
            service,
            route: self.route,
        }
    }
}

/// The service [`RequestId`] wraps around a route's handlers.
#[derive(Debug)]
pub struct RequestIdService<S> {
    service: S,
    route: &'static str,
}

impl<S, E> Service<WebRequest<E>> for RequestIdService<S>
where
    S: Service<WebRequest<E>, Response = WebResponse>,
{
    type Response = WebResponse;
    type Error = S::Error;

    ntex::forward_poll!(service);
    ntex::forward_ready!(service);
    ntex::forward_shutdown!(service);

    async fn call(
        &self,
        req: WebRequest<E>,
        ctx: ServiceCtx<'_, Self>,
    ) -> Result<Self::Response, Self::Error> {
        let id = req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_sane(v))
            .map_or_else(fleetgate_storage::ids::new_id, str::to_string);
        let span = tracing::info_span!(
            "request",
            id = %id,
            method = %req.method(),
            path = %req.path(),
        );
        let metrics = req.app_state::<Arc<App>>().map(|app| app.metrics.clone());
        let method = req.method().clone();
        let started = Instant::now();
        let result = ctx.call(&self.service, req).instrument(span.clone()).await;
        let took = started.elapsed();
        let duration_ms = took.as_secs_f64() * 1000.0;
        if let (Some(metrics), Ok(res)) = (&metrics, &result) {
            metrics.http_request(self.route, method.as_str(), res.status().as_u16(), took);
        }
        let _entered = span.enter();
        match result {
            Ok(mut res) => {
                tracing::debug!(
                    route = self.route,
                    status = res.status().as_u16(),
                    duration_ms,
                    "request handled"
                );
                // `is_sane` ids and generated ones are visible ASCII, always a valid value.
                if let Ok(value) = HeaderValue::from_str(&id) {
                    res.headers_mut().insert(REQUEST_ID, value);
                }
                Ok(res)
            }
            Err(e) => {
                tracing::debug!(
                    route = self.route,
                    duration_ms,
                    "request failed before a response"
                );
                Err(e)
            }
        }
    }
}

/// A client-sent id is kept only if it is short and of `[A-Za-z0-9._:-]`, so that it cannot
/// forge log lines or JSON fields, nor bloat every line of the request.
fn is_sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::is_sane;

    #[test]
    fn only_plain_short_ids_are_kept() {
        assert!(is_sane("3f1c9a2e-7b4d-4e8a-9c1f-0a2b3c4d5e6f"));
        assert!(is_sane("req_42.a:b"));
        assert!(!is_sane(""));
        assert!(!is_sane("two words"));
        assert!(!is_sane("line\nbreak"));
        assert!(!is_sane("quote\"d"));
        assert!(!is_sane(&"a".repeat(129)));
        assert!(is_sane(&"a".repeat(128)));
    }
}
