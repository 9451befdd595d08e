//! The HTTP hook listener of HOOKS.md 2: other brokers (EMQX 5, VerneMQ, RabbitMQ's HTTP auth
//! backend, mosquitto-go-auth) ask Fleetgate's hook facade whether a client may connect,
//! subscribe or publish, and report connects and disconnects, each in its own format.
//!
//! This crate owns those formats: parsing each broker's request (JSON, form or query), the
//! listener's token check and the per-address ban of callers with a wrong token, and mapping
//! a decision back to each broker's answer. Every answer is decided by
//! [`fleetgate_hooks::Hooks`] from memory and the store (no network), so a decision never
//! depends on the door that asked (HOOKS.md 1). It must not decide anything itself, nor know
//! the MQTT endpoints: a malformed body is a 400 and never an "allow".

pub mod emqx;
pub mod goauth;
pub mod rabbitmq;
mod replica;
pub mod vernemq;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use fleetgate_app::App;
use fleetgate_auth_hook::credentials::constant_time_eq;
use fleetgate_auth_hook::limiter::FailureLimiter;
use fleetgate_hooks::{Action, ConnectFacts, EndpointKind, Protocol, Refusal, Session};
use ntex::http::{StatusCode, header};
use ntex::util::Bytes;
use ntex::web::types::{PayloadConfig, Query, State};
use ntex::web::{self, DefaultError, HttpRequest, HttpResponse};

pub use fleetgate_wire::Problem;

/// Largest hook request body: the biggest is a VerneMQ publish with its payload, which a broker
/// bounds by its own packet size; 1 MiB leaves room for any sane one.
pub const BODY_LIMIT: usize = 1 << 20;

/// The shared state of the hook listener.
pub struct HookDoor {
    app: Arc<App>,
    token: String,
    /// Wrong-token callers, by address (HOOKS.md 2: they count toward the per-address ban).
    callers: FailureLimiter,
    /// VerneMQ's registrations (its offline events name the client ID only).
    registered: vernemq::Registered,
}

impl HookDoor {
    /// The door of `app`, answering requests that carry `token`.
    pub fn new(app: Arc<App>, token: String) -> Arc<HookDoor> {
        let limits = app.hooks.limits();
        Arc::new(HookDoor {
            app,
            token,
            callers: FailureLimiter::new(limits),
            registered: vernemq::Registered::new(),
        })
    }

    /// Admits a caller with the right token (as `Authorization: Bearer` or `?token=`);
    /// counts a missing or wrong one toward a ban of its address.
    fn admit(&self, req: &HttpRequest) -> Result<(), HookError> {
        let now = self.app.clock.now();
        let ip = req
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        if self.callers.check_address(ip, now).0.is_some() {
            return Err(HookError::Banned);
        }
        let given = bearer(req).map(str::to_string).or_else(|| query_token(req));
        match given {
            Some(t)
                if !self.token.is_empty()
                    && constant_time_eq(t.as_bytes(), self.token.as_bytes()) =>
            {
                Ok(())
            }
            _ => {
                for key in self.callers.record_address_failure(ip, now) {
                    tracing::warn!(%key, "hook caller banned after repeated wrong tokens");
                }
                Err(HookError::Unauthorized)
            }
        }
    }

    /// Decides a CONNECT reported by a broker, as the operational endpoint would, and records
    /// the device's `lastAuthenticatedOn` when it is accepted. That write is bookkeeping: it is
    /// submitted before the answer and committed with the next group commit, but the broker's
    /// answer does not wait for it (a CONNECT storm through a broker is not paced by fsyncs).
    async fn login(&self, facts: &ConnectFacts) -> Result<Session, Refusal> {
        let session = self
            .app
            .hooks
            .authenticate(EndpointKind::Operational, facts)
            .await?;
        drop(ntex::rt::spawn(self.app.hooks.authenticated(&session)));
        Ok(session)
    }

    /// May the client authenticated earlier as `client_id` / `username` do `action`? Every rule
    /// of the CONNECT but the password applies to the current records.
    fn may(&self, client_id: &str, username: &str, action: Action<'_>) -> bool {
        self.app
            .hooks
            .identify(client_id, username)
            .is_ok_and(|s| self.app.hooks.authorize(&s, action).is_allowed())
    }

    /// A device's connection began or ended (or both) at a broker that reports it: the registry
    /// status follows. A connect of an identity refused now changes nothing; its disconnect
    /// is still recorded (a user disabled since is why the broker closed it). The write is
    /// submitted before this returns (so events submitted in turn are committed in that
    /// order); the future resolves once it is committed.
    fn connection(
        &self,
        client_id: &str,
        username: &str,
        peer: Option<SocketAddr>,
        change: Change,
    ) -> futures::future::BoxFuture<'static, ()> {
        let hooks = &self.app.hooks;
        match (hooks.identify(client_id, username), change) {
            (Ok(session), Change::Up) => Box::pin(hooks.connected(&session.at(peer))),
            (Ok(session), Change::UpAndDown) => Box::pin(hooks.visited(&session.at(peer))),
            (Ok(session), Change::Down) => Box::pin(hooks.disconnected(&session)),
            (Err(_), Change::Down | Change::UpAndDown) => {
                Box::pin(hooks.disconnected_user(client_id, username))
            }
            (Err(why), Change::Up) => {
                tracing::debug!(%client_id, reason = why.label(), "connection event of an unknown session ignored");
                Box::pin(std::future::ready(()))
            }
        }
    }

    /// Counts a decision.
    fn count(&self, broker: &'static str, hook: &'static str, allowed: bool) {
        let result = if allowed { "allow" } else { "deny" };
        self.app.metrics.hook_decision(broker, hook, result);
    }
}

/// What a broker reported of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// It began.
    Up,
    /// It ended.
    Down,
    /// It began and ended (both reported in one batch): one store write for the two.
    UpAndDown,
}

/// Why a hook request got no decision.
#[derive(Debug)]
enum HookError {
    /// No token or a wrong one (401).
    Unauthorized,
    /// The caller's address is banned after wrong tokens (429).
    Banned,
    /// The body or query is not what the broker's format says (400).
    Malformed(String),
}

impl HookError {
    fn response(&self) -> HttpResponse {
        let (status, title, detail) = match self {
            HookError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "a hook request must carry hooks.token".to_string(),
            ),
            HookError::Banned => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
                "this address is banned after repeated wrong tokens".to_string(),
            ),
            HookError::Malformed(why) => (StatusCode::BAD_REQUEST, "Bad Request", why.clone()),
        };
        let problem = Problem {
            kind: "about:blank".into(),
            title: title.into(),
            status: Some(status.as_u16()),
            detail,
            errors: vec![],
        };
        let mut r = HttpResponse::build(status);
        r.content_type("application/problem+json");
        if matches!(self, HookError::Unauthorized) {
            r.header(header::WWW_AUTHENTICATE, "Bearer");
        }
        r.json(&problem)
    }
}

/// The bearer token of `req`, if any.
fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The `token` query parameter (brokers that cannot send headers).
fn query_token(req: &HttpRequest) -> Option<String> {
    Query::<Vec<(String, String)>>::from_query(req.query_string())
        .ok()?
        .into_inner()
        .into_iter()
        .find_map(|(k, v)| (k == "token").then_some(v))
}

/// A JSON body as `T`, or 400 naming what is wrong.
fn json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, HookError> {
    serde_json::from_slice(body)
        .map_err(|e| HookError::Malformed(format!("invalid JSON body: {e}")))
}

/// A peer given as `ip`, `ip:port` or `[v6]:port`; unknown or unparseable: the unspecified
/// address, which no ban counts (the broker itself may not be banned for its clients).
fn peer(given: Option<&str>) -> SocketAddr {
    let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
    let Some(s) = given.map(str::trim) else {
        return unknown;
    };
    s.parse::<SocketAddr>()
        .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 0)))
        .unwrap_or(unknown)
}

/// The facts of a CONNECT reported by a broker.
fn facts(
    client_id: &str,
    username: Option<&str>,
    password: Option<&str>,
    peer_addr: Option<&str>,
    protocol: Protocol,
) -> ConnectFacts {
    ConnectFacts {
        client_id: client_id.to_string(),
        username: username.filter(|u| !u.is_empty()).map(str::to_string),
        password: password.map(|p| p.as_bytes().to_vec()),
        peer: peer(peer_addr),
        protocol,
    }
}

/// The handler shape of every hook route: the door, the request and its body, to a response.
type Handler = for<'a> fn(
    &'a HookDoor,
    &'a HttpRequest,
    &'a Bytes,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<HttpResponse, HookError>> + 'a>,
>;

/// Declares the route table once: `ROUTES` (method, path) and the registration.
macro_rules! routes {
    ($($method:ident $path:literal => $handler:path;)*) => {
        /// Every route served: (lower-case method, path).
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn route_table() -> Vec<(&'static str, web::Route<DefaultError>)> {
            vec![$((
                $path,
                web::$method().to(|door: State<Arc<HookDoor>>, req: HttpRequest, body: Bytes| {
                    serve(door, req, body, |d, r, b| Box::pin($handler(d, r, b)))
                }),
            )),*]
        }
    };
}

routes! {
    post "/hooks/emqx/authn" => emqx::authn;
    post "/hooks/emqx/authz" => emqx::authz;
    post "/hooks/emqx/events" => emqx::events;
    post "/hooks/vernemq" => vernemq::hook;
    get "/hooks/rabbitmq/user" => rabbitmq::user;
    post "/hooks/rabbitmq/user" => rabbitmq::user;
    get "/hooks/rabbitmq/vhost" => rabbitmq::vhost;
    post "/hooks/rabbitmq/vhost" => rabbitmq::vhost;
    get "/hooks/rabbitmq/resource" => rabbitmq::resource;
    post "/hooks/rabbitmq/resource" => rabbitmq::resource;
    get "/hooks/rabbitmq/topic" => rabbitmq::topic;
    post "/hooks/rabbitmq/topic" => rabbitmq::topic;
    post "/hooks/mosquitto-go-auth/user" => goauth::user;
    post "/hooks/mosquitto-go-auth/superuser" => goauth::superuser;
    post "/hooks/mosquitto-go-auth/acl" => goauth::acl;
    get "/hooks/replica" => replica::feed;
}

/// The prologue of every route: the token, then the handler; errors become their answers.
async fn serve(
    door: State<Arc<HookDoor>>,
    req: HttpRequest,
    body: Bytes,
    handler: Handler,
) -> HttpResponse {
    let answer = match door.admit(&req) {
        Ok(()) => handler(&door, &req, &body).await,
        Err(e) => Err(e),
    };
    answer.unwrap_or_else(|e| {
        tracing::debug!(path = req.path(), error = ?e, "hook request refused");
        e.response()
    })
}

/// Registers the hook routes on a web app whose state holds the `Arc<HookDoor>`; other paths
/// answer 404.
pub fn configure(cfg: &mut web::ServiceConfig<DefaultError>) {
    cfg.state(PayloadConfig::new(BODY_LIMIT));
    let mut resources: Vec<(&'static str, Vec<web::Route<DefaultError>>)> = Vec::new();
    for (path, route) in route_table() {
        match resources.iter_mut().find(|(p, _)| *p == path) {
            Some((_, routes)) => routes.push(route),
            None => resources.push((path, vec![route])),
        }
    }
    for (path, routes) in resources {
        let mut resource = web::resource(path);
        for route in routes {
            resource = resource.route(route);
        }
        cfg.service(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_in_every_spelling() {
        assert_eq!(peer(Some("10.0.0.7")), "10.0.0.7:0".parse().unwrap());
        assert_eq!(
            peer(Some("10.0.0.7:5100")),
            "10.0.0.7:5100".parse().unwrap()
        );
        assert_eq!(peer(Some("[::1]:80")), "[::1]:80".parse().unwrap());
        assert!(peer(Some("nonsense")).ip().is_unspecified());
        assert!(peer(None).ip().is_unspecified());
    }

    #[test]
    fn every_route_is_under_hooks() {
        assert!(ROUTES.iter().all(|(_, p)| p.starts_with("/hooks/")));
    }
}
