//! The admin REST API (API.md) on ntex::web: accounts, tokens, provision requests, executions,
//! operational users (account users and device users) and the device registry under `/api/v1`, plus `/healthz`, `/metrics` and the OpenAPI document.
//!
//! Every route is declared once, in [`ROUTES`]'s table below: the same table registers the
//! handlers ([`configure`]) and is checked against the generated OpenAPI document, so the
//! description cannot drift from what is served. Errors are `application/problem+json`
//! ([`error::ApiError`]); bodies are parsed from raw JSON by [`input`] (a wrong type is a 422
//! naming the field) into storage's typed inputs, whose `validate()` applies the field rules.
//! Every route, the 405 answers and the catch-all 404 run inside [`request_id::RequestId`]: a
//! request id and a tracing span per request, returned as `X-Request-Id`.
//! The API never returns a provision password, a hash, a token other than at its creation, an
//! activation key after its creation, or an account user's password (a generated one is in
//! its creation's answer only).
//!
//! It must not reach into the MQTT endpoints nor hold rules of its own: provision passwords are
//! verified and hashed through the hooks' pool (so are account users' chosen passwords; user
//! changes that end sessions are announced with the hooks' `revoke`), previews come from `fleetgate-exchange`, field
//! rules from storage's `validate()`, and the JSON shapes are `fleetgate-wire`'s.

pub mod accounts;
pub mod audit;
pub mod backup;
pub mod devices;
pub mod dto;
pub mod endpoints;
pub mod error;
pub mod extract;
pub mod guard;
pub mod input;
pub mod jobs;
pub mod management;
pub mod moves;
pub mod openapi;
pub mod request_id;
pub mod requests;
pub mod users;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ntex::http::header;
use ntex::web::types::State;
use ntex::web::{self, DefaultError, HttpRequest, HttpResponse};

use error::ApiError;
use fleetgate_app::App;
use request_id::RequestId;

/// Declares the route table once: `ROUTES` (method, path) for checks and documentation, and
/// the registration used by [`configure`].
macro_rules! routes {
    ($($method:ident $path:literal => $handler:path;)*) => {
        /// Every route served: (lower-case method, path template). Paths use the same
        /// `{name}` templates in ntex and in the OpenAPI document.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn route_table() -> Vec<(&'static str, &'static str, web::Route<DefaultError>)> {
            vec![$((stringify!($method), $path, web::$method().to($handler))),*]
        }
    };
}

routes! {
    get "/healthz" => healthz;
    get "/metrics" => metrics;
    get "/api/v1/openapi.json" => openapi_json;
    post "/api/v1/accounts" => accounts::create_account;
    get "/api/v1/accounts" => accounts::list_accounts;
    get "/api/v1/accounts/{account}" => accounts::get_account;
    post "/api/v1/accounts/{account}/tokens" => accounts::create_token;
    delete "/api/v1/accounts/{account}/tokens/{id}" => accounts::delete_token;
    post "/api/v1/accounts/{account}/provision-requests/bulk" => requests::bulk_create;
    post "/api/v1/accounts/{account}/provision-requests" => requests::create_request;
    get "/api/v1/accounts/{account}/provision-requests" => requests::list_requests;
    get "/api/v1/accounts/{account}/provision-requests/{id}" => requests::get_request;
    put "/api/v1/accounts/{account}/provision-requests/{id}" => requests::update_request;
    delete "/api/v1/accounts/{account}/provision-requests/{id}" => requests::delete_request;
    get "/api/v1/accounts/{account}/provision-requests/{id}/configuration-preview" => requests::configuration_preview;
    get "/api/v1/accounts/{account}/provision-requests/{id}/executions" => requests::list_executions;
    get "/api/v1/accounts/{account}/provision-requests/{id}/executions/{executionId}" => requests::get_execution;
    post "/api/v1/accounts/{account}/users" => users::create_user;
    get "/api/v1/accounts/{account}/users" => users::list_users;
    get "/api/v1/accounts/{account}/users/{username}" => users::get_user;
    patch "/api/v1/accounts/{account}/users/{username}" => users::update_user;
    delete "/api/v1/accounts/{account}/users/{username}" => users::delete_user;
    post "/api/v1/accounts/{account}/devices" => devices::create_device;
    get "/api/v1/accounts/{account}/devices" => devices::list_devices;
    get "/api/v1/accounts/{account}/devices/{clientId}" => devices::get_device;
    delete "/api/v1/accounts/{account}/devices/{clientId}" => devices::delete_device;
    post "/api/v1/accounts/{account}/devices/{clientId}/requests" => management::device_request;
    get "/api/v1/accounts/{account}/devices/{clientId}/configurations" => management::get_configurations;
    put "/api/v1/accounts/{account}/devices/{clientId}/configurations" => management::put_configurations;
    get "/api/v1/accounts/{account}/devices/{clientId}/configurations/{pid}" => management::get_one_configuration;
    put "/api/v1/accounts/{account}/devices/{clientId}/configurations/{pid}" => management::put_one_configuration;
    post "/api/v1/accounts/{account}/devices/{clientId}/commands" => management::run_command;
    post "/api/v1/accounts/{account}/devices/{clientId}/move" => moves::start_move;
    get "/api/v1/accounts/{account}/devices/{clientId}/move" => moves::get_move;
    post "/api/v1/accounts/{account}/jobs" => jobs::create_job;
    get "/api/v1/accounts/{account}/jobs" => jobs::list_jobs;
    get "/api/v1/accounts/{account}/jobs/{id}" => jobs::get_job;
    delete "/api/v1/accounts/{account}/jobs/{id}" => jobs::delete_job;
    post "/api/v1/accounts/{account}/jobs/{id}/targets" => jobs::change_targets;
    get "/api/v1/accounts/{account}/jobs/{id}/executions" => jobs::list_executions;
    get "/api/v1/endpoints" => endpoints::list_endpoints;
    post "/api/v1/endpoints" => endpoints::create_endpoint;
    delete "/api/v1/endpoints/{name}" => endpoints::delete_endpoint;
    get "/api/v1/audit" => audit::list_audit;
    get "/api/v1/backup" => backup::backup;
}

/// One path's methods and routes, while grouping the route table.
type Resource = (
    &'static str,
    Vec<&'static str>,
    Vec<web::Route<DefaultError>>,
);

/// Registers every route of [`ROUTES`] (one resource per path, answering 405 problem+json with
/// `Allow` for other methods) and a catch-all 404 problem+json, each wrapped in
/// [`request_id::RequestId`] (per resource, so the log names the route template); inside it,
/// every route is wrapped in [`guard::Guard`] (bans and the audit log). The caller provides the
/// `Arc<App>` and `Arc<guard::Bans>` states:
/// `App::new().state(app).state(bans).configure(api::configure)`.
pub fn configure(cfg: &mut web::ServiceConfig<DefaultError>) {
    // (path, methods, routes) in first-declaration order.
    let mut resources: Vec<Resource> = Vec::new();
    for (method, path, route) in route_table() {
        match resources.iter_mut().find(|(p, _, _)| *p == path) {
            Some((_, methods, routes)) => {
                methods.push(method);
                routes.push(route);
            }
            None => resources.push((path, vec![method], vec![route])),
        }
    }
    for (path, methods, routes) in resources {
        let allow = methods
            .iter()
            .map(|m| m.to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(", ");
        let mut resource = web::resource(path);
        for route in routes {
            resource = resource.route(route);
        }
        cfg.service(
            resource
                .default_service(web::to(move || {
                    let allow = allow.clone();
                    async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed(allow)) }
                }))
                .middleware(guard::Guard::new(path))
                .middleware(RequestId::new(path)),
        );
    }
    const CATCH_ALL: &str = "/{tail}*";
    cfg.service(
        web::resource(CATCH_ALL)
            .to(not_found)
            .middleware(RequestId::new(CATCH_ALL)),
    );
}

/// The catch-all: 404 problem+json.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("path {}", req.path())))
}

/// Liveness/readiness: 200 once every listener accepts connections and the store reads.
#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = fleetgate_wire::Health),
        (status = 503, description = "Starting, stopping, or the store cannot be read", body = error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn healthz(app: State<Arc<App>>) -> Result<HttpResponse, ApiError> {
    if !app.ready.load(Ordering::Acquire) {
        return Err(ApiError::Unavailable("the listeners are not up".into()));
    }
    if let Err(e) = app.store.read() {
        return Err(ApiError::Unavailable(format!(
            "the store cannot be read: {e}"
        )));
    }
    Ok(HttpResponse::Ok().json(&fleetgate_wire::Health {
        status: "ok".into(),
    }))
}

/// Content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics text.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prometheus metrics: OpenMetrics text when the scraper asks for it (`Accept`), otherwise the
/// classic text format 0.0.4.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition (format 0.0.4), or OpenMetrics on request", body = String, content_type = "text/plain; version=0.0.4"),
    )
)]
pub async fn metrics(req: HttpRequest, app: State<Arc<App>>) -> HttpResponse {
    app.metrics
        .verify_queue
        .set(i64::try_from(app.hooks.pool().queued()).unwrap_or(i64::MAX));
    app.metrics
        .set_device_replies_ignored(app.devices.ignored_replies());
    let openmetrics = app.metrics.render(&app.store, &app.config.data_dir);
    let wants_openmetrics = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    if wants_openmetrics {
        HttpResponse::Ok()
            .content_type(OPENMETRICS_TEXT)
            .body(openmetrics)
    } else {
        HttpResponse::Ok()
            .content_type(PROMETHEUS_TEXT)
            .body(openmetrics_to_prometheus(&openmetrics))
    }
}

/// Rewrites OpenMetrics text (what prometheus-client writes) as Prometheus text format 0.0.4:
/// counter families are named after their `_total` samples, `info` families become gauges
/// named `_info`, and `# UNIT` / `# EOF` lines go.
pub fn openmetrics_to_prometheus(text: &str) -> String {
    let mut kinds = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            kinds.insert(name.to_string(), kind.trim().to_string());
        }
    }
    let renamed = |name: &str| -> (String, Option<&'static str>) {
        match kinds.get(name).map(String::as_str) {
            Some("counter") if !name.ends_with("_total") => (format!("{name}_total"), None),
            Some("info") => (format!("{name}_info"), Some("gauge")),
            Some("gaugehistogram") => (name.to_string(), Some("histogram")),
            Some("stateset" | "unknown") => (name.to_string(), Some("untyped")),
            _ => (name.to_string(), None),
        }
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(&format!("# HELP {} {help}\n", renamed(name).0));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, replaced) = renamed(name);
            out.push_str(&format!(
                "# TYPE {name} {}\n",
                replaced.unwrap_or(kind.trim())
            ));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The OpenAPI 3 document of this API, generated from the handlers.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi::json().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_table_is_consistent() {
        let mut seen = std::collections::HashSet::new();
        for (method, path) in ROUTES {
            assert!(
                seen.insert((method, path)),
                "duplicate route {method} {path}"
            );
            assert!(path.starts_with('/'));
        }
    }

    #[test]
    fn openmetrics_becomes_prometheus_text() {
        let om = "# HELP fg_connect_results CONNECT decisions.\n# TYPE fg_connect_results counter\n\
                  fg_connect_results_total{endpoint=\"p\"} 3\n# HELP fg_build Build information.\n\
                  # TYPE fg_build info\nfg_build_info{version=\"0.1.0\"} 1\n# UNIT fg_x seconds\n# EOF\n";
        let text = openmetrics_to_prometheus(om);
        assert_eq!(
            text,
            "# HELP fg_connect_results_total CONNECT decisions.\n# TYPE fg_connect_results_total counter\n\
             fg_connect_results_total{endpoint=\"p\"} 3\n# HELP fg_build_info Build information.\n\
             # TYPE fg_build_info gauge\nfg_build_info{version=\"0.1.0\"} 1\n"
        );
    }
}
