//! The admin API's guard, one middleware around every route: failed-authentication bans per
//! peer address, and the audit log (API.md "Audit, backup, transport security").
//!
//! **Bans.** Every 401 answered to an address counts toward `admin.max_failures` within
//! `auth.failure_window` ([`fleetgate_auth_hook::limiter::FailureLimiter`], the auth hook's own
//! limiter, keyed by address only); past it the address is answered 429 with `Retry-After`
//! for `auth.ban`, before any token is looked at (the right token too). Routes without a
//! token (`/healthz`, `/metrics`, the OpenAPI document) are never refused: monitoring behind
//! the same address keeps working.
//!
//! **Audit.** The guard records an entry after the answer, from the matched route alone, so a
//! route added later is audited without a line of its own. Recorded: every call whose method
//! is not GET/HEAD/OPTIONS, every call under `.../devices/{clientId}/...` (requests to the
//! device, its configuration, commands), and the backup. Only callers that authenticated, or
//! were refused with 401 (which bans bound), are recorded, so a stranger cannot flush the log
//! with 404s or 405s. The action is named by [`describe`]'s rule. Entries ride the next group
//! commit ([`fleetgate_storage::Store::write_lazy`]): no caller waits for them and they add no
//! fsync of their own to a busy store.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use fleetgate_app::App;
use fleetgate_auth_hook::AuthMetrics as _;
use fleetgate_auth_hook::limiter::{FailureLimiter, LimitConfig};
use fleetgate_config::Config;
use fleetgate_storage::audit::{self, AuditEntry};
use ntex::http::{Method, StatusCode, header};
use ntex::service::cfg::SharedCfg;
use ntex::service::{Middleware, Service, ServiceCtx};
use ntex::web::{DefaultError, WebRequest, WebResponse};

use crate::error::ApiError;

/// Who authenticated, as the audit log names them: `admin` or `token:ID`. Set on the request
/// by [`crate::extract::authenticate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor(pub String);

/// Actor of a call refused with 401.
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// The process-wide state of the guard (shared by every worker): the failed-authentication
/// limiter. The server registers it as app state next to the `Arc<App>`.
pub struct Bans {
    limiter: FailureLimiter,
}

impl Bans {
    /// The limiter of `config`: `admin.max_failures` per address within `auth.failure_window`,
    /// banned for `auth.ban`.
    pub fn new(config: &Config) -> Arc<Bans> {
        Arc::new(Bans {
            limiter: FailureLimiter::new(LimitConfig {
                max_failures: config.admin.max_failures,
                max_failures_per_address: config.admin.max_failures,
                window: Config::secs(config.auth.failure_window),
                ban: Config::secs(config.auth.ban),
            }),
        })
    }
}

/// Middleware guarding the route with path template `route` (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Guard {
    route: &'static str,
}

impl Guard {
    /// The guard of the route `route`.
    pub fn new(route: &'static str) -> Self {
        Guard { route }
    }
}

impl<S> Middleware<S, SharedCfg> for Guard {
    type Service = GuardService<S>;

    fn create(&self, service: S, _: SharedCfg) -> Self::Service {
        GuardService {
            service,
            route: self.route,
        }
    }
}

/// The service [`Guard`] wraps around a route's handlers.
#[derive(Debug)]
pub struct GuardService<S> {
    service: S,
    route: &'static str,
}

/// Whether `route` needs a token (only those are banned and audited).
fn needs_token(route: &str) -> bool {
    route.starts_with("/api/v1/") && route != "/api/v1/openapi.json"
}

/// Seconds from `now` to `until`, rounded up, at least 1 (`Retry-After`).
fn retry_after(until: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> u64 {
    let ms = (until - now).num_milliseconds().max(1);
    u64::try_from(ms).unwrap_or(1).div_ceil(1000)
}

impl<S> Service<WebRequest<DefaultError>> for GuardService<S>
where
    S: Service<WebRequest<DefaultError>, Response = WebResponse>,
{
    type Response = WebResponse;
    type Error = S::Error;

    ntex::forward_poll!(service);
    ntex::forward_ready!(service);
    ntex::forward_shutdown!(service);

    async fn call(
        &self,
        req: WebRequest<DefaultError>,
        ctx: ServiceCtx<'_, Self>,
    ) -> Result<Self::Response, Self::Error> {
        if !needs_token(self.route) {
            return ctx.call(&self.service, req).await;
        }
        let (Some(app), Some(bans)) = (
            req.app_state::<Arc<App>>().cloned(),
            req.app_state::<Arc<Bans>>().cloned(),
        ) else {
            let e = ApiError::Internal("the admin API runs without its guard".into());
            return Ok(req.render_error(&e));
        };
        // A caller whose address is unknown (no socket peer) counts as one unspecified
        // address, which the limiter never bans.
        let ip = req
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let now = app.clock.now();
        let (banned, ended) = bans.limiter.check_address(ip, now);
        for key in ended {
            tracing::info!(%key, "admin API ban ended");
        }
        if banned.is_some() {
            let until = bans.limiter.address_ban_ends(ip, now).unwrap_or(now);
            let e = ApiError::TooManyRequests(retry_after(until, now));
            return Ok(req.render_error(&e));
        }
        let method = req.method().clone();
        let params: Vec<(String, String)> = req
            .match_info()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let res = ctx.call(&self.service, req).await?;
        let status = res.status();
        if status == StatusCode::UNAUTHORIZED {
            for key in bans.limiter.record_address_failure(ip, now) {
                app.metrics.banned("admin_address");
                tracing::warn!(%key, "admin API caller banned after repeated failed authentications");
            }
        }
        let actor = res.request().extensions().get::<Actor>().cloned();
        let actor = match actor {
            Some(Actor(a)) => a,
            None if status == StatusCode::UNAUTHORIZED => UNAUTHENTICATED.to_string(),
            None => return Ok(res),
        };
        let location = res
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok());
        if let Some(d) = describe(self.route, &method, &params, location) {
            let entry = AuditEntry {
                at: app.clock.now(),
                actor,
                peer: ip.to_string(),
                action: d.action,
                account: d.account,
                target: d.target,
                outcome: if status.is_success() {
                    "ok".into()
                } else {
                    status.as_u16().to_string()
                },
            };
            app.store.write_lazy(
                "audit entry",
                audit::append(entry, app.config.admin.audit_retention),
            );
        }
        Ok(res)
    }
}

/// What an audited call did, derived from its route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Described {
    /// `RESOURCE[.SUB...].VERB`.
    pub action: String,
    /// The account acted in.
    pub account: Option<String>,
    /// What was acted on.
    pub target: Option<String>,
}

/// Describes a call for the audit log, or `None` when it is not audited (a read that is not a
/// device operation nor the backup). The naming rule, for routes added later too:
/// - the path after `/api/v1/`, without `accounts/{account}/` (the `{account}` segment is the
///   entry's `account`), keeps its literal segments, each with one trailing `s` dropped, joined
///   with `.`; then `.` and the verb: POST `create`, PUT and PATCH `update`, DELETE `delete`,
///   GET `read`. So `POST .../provision-requests` is `provision-request.create`, `PUT
///   .../devices/{clientId}/configurations/{pid}` is `device.configuration.update` and `POST
///   .../devices/{clientId}/commands` is `device.command.create`.
/// - `target` is the other path parameters joined with `/` (`dev-1/org.foo`); for a creation
///   without one, the last segment of the answer's `Location` (the new id or name). For
///   `POST /api/v1/accounts` the new account is also the entry's `account`.
pub fn describe(
    route: &str,
    method: &Method,
    params: &[(String, String)],
    location: Option<&str>,
) -> Option<Described> {
    let device_operation = route.contains("/devices/{clientId}/");
    let read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if read && !device_operation && route != "/api/v1/backup" {
        return None;
    }
    let rest = route.strip_prefix("/api/v1/")?;
    let scoped = rest.strip_prefix("accounts/{account}/");
    let resource = scoped.unwrap_or(rest);
    let verb = match *method {
        Method::POST => "create",
        Method::PUT | Method::PATCH => "update",
        Method::DELETE => "delete",
        _ => "read",
    };
    let mut action: Vec<&str> = resource
        .split('/')
        .filter(|s| !s.is_empty() && !s.starts_with('{'))
        .map(|s| s.strip_suffix('s').filter(|x| !x.is_empty()).unwrap_or(s))
        .collect();
    action.push(verb);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let others: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k != "account")
        .map(|(_, v)| v.as_str())
        .collect();
    let created = location
        .filter(|_| *method == Method::POST)
        .and_then(|l| l.rsplit('/').next())
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let target = if others.is_empty() {
        created.clone()
    } else {
        Some(others.join("/"))
    };
    let account = param("account").or_else(|| {
        (route == "/api/v1/accounts")
            .then(|| created.clone())
            .flatten()
    });
    Some(Described {
        action: action.join("."),
        account,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn d(action: &str, account: Option<&str>, target: Option<&str>) -> Option<Described> {
        Some(Described {
            action: action.into(),
            account: account.map(Into::into),
            target: target.map(Into::into),
        })
    }

    #[test]
    fn actions_follow_the_route() {
        let acme = p(&[("account", "acme")]);
        assert_eq!(
            describe(
                "/api/v1/accounts/{account}/provision-requests",
                &Method::POST,
                &acme,
                Some("/api/v1/accounts/acme/provision-requests/r1"),
            ),
            d("provision-request.create", Some("acme"), Some("r1"))
        );
        assert_eq!(
            describe(
                "/api/v1/accounts/{account}/devices/{clientId}/configurations/{pid}",
                &Method::PUT,
                &p(&[("account", "acme"), ("clientId", "dev-1"), ("pid", "org.x")]),
                None,
            ),
            d(
                "device.configuration.update",
                Some("acme"),
                Some("dev-1/org.x")
            )
        );
        assert_eq!(
            describe(
                "/api/v1/accounts/{account}/devices/{clientId}/configurations",
                &Method::GET,
                &p(&[("account", "acme"), ("clientId", "dev-1")]),
                None,
            ),
            d("device.configuration.read", Some("acme"), Some("dev-1"))
        );
        assert_eq!(
            describe(
                "/api/v1/accounts/{account}/devices/{clientId}/commands",
                &Method::POST,
                &p(&[("account", "acme"), ("clientId", "dev-1")]),
                None,
            ),
            d("device.command.create", Some("acme"), Some("dev-1"))
        );
        assert_eq!(
            describe(
                "/api/v1/accounts",
                &Method::POST,
                &[],
                Some("/api/v1/accounts/acme")
            ),
            d("account.create", Some("acme"), Some("acme"))
        );
        assert_eq!(
            describe(
                "/api/v1/accounts/{account}/users/{username}",
                &Method::PATCH,
                &p(&[("account", "acme"), ("username", "ops@acme")]),
                None,
            ),
            d("user.update", Some("acme"), Some("ops@acme"))
        );
        assert_eq!(
            describe(
                "/api/v1/endpoints/{name}",
                &Method::DELETE,
                &p(&[("name", "eu")]),
                None
            ),
            d("endpoint.delete", None, Some("eu"))
        );
        assert_eq!(
            describe("/api/v1/backup", &Method::GET, &[], None),
            d("backup.read", None, None)
        );
        // A route added later is named by the same rule.
        assert_eq!(
            describe(
                "/api/v1/accounts/{account}/jobs/{id}/targets",
                &Method::POST,
                &p(&[("account", "acme"), ("id", "j1")]),
                None,
            ),
            d("job.target.create", Some("acme"), Some("j1"))
        );
    }

    #[test]
    fn reads_are_not_audited_except_device_operations_and_backups() {
        for route in [
            "/api/v1/accounts",
            "/api/v1/accounts/{account}/provision-requests/{id}",
            "/api/v1/accounts/{account}/devices/{clientId}",
            "/api/v1/audit",
        ] {
            assert_eq!(describe(route, &Method::GET, &[], None), None, "{route}");
        }
    }

    #[test]
    fn retry_after_rounds_up() {
        let now = chrono::Utc::now();
        assert_eq!(
            retry_after(now + chrono::Duration::milliseconds(1500), now),
            2
        );
        assert_eq!(retry_after(now, now), 1);
        assert_eq!(retry_after(now + chrono::Duration::seconds(300), now), 300);
    }
}
