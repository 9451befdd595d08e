//! Known broker endpoints (API.md "Known broker endpoints"): the brokers devices are
//! provisioned to, with Fleetgate's own operational endpoint listed as `fleetgate`; a request's
//! `brokerUrl` outside them gets a warning, or a 422 with `provisioning.strict_broker_urls`.

use std::sync::Arc;

use fleetgate_storage::validate::OWN_ENDPOINT;
use fleetgate_storage::{BrokerEndpoint, FieldError, RequestSpec, ops};
use fleetgate_wire::{Endpoint, EndpointList};
use ntex::http::header;
use ntex::web::types::{Path, State};
use ntex::web::{HttpRequest, HttpResponse};

use super::error::{ApiError, Problem};
use super::extract::{Caller, JsonBody, authenticate};
use super::input;
use fleetgate_app::App;

/// `{name}` of an endpoint.
#[derive(Debug, serde::Deserialize)]
pub struct NamePath {
    /// The endpoint's name.
    pub name: String,
}

fn endpoint(e: &BrokerEndpoint) -> Endpoint {
    Endpoint {
        name: e.name.clone(),
        url: e.url.clone(),
        kind: e.kind.clone(),
    }
}

/// Fleetgate's own operational endpoint as devices reach it.
fn own(app: &App) -> Endpoint {
    Endpoint {
        name: OWN_ENDPOINT.into(),
        url: app.operational_url(),
        kind: OWN_ENDPOINT.into(),
    }
}

/// The URLs of the known endpoints, read once per request, to check `brokerUrl`s against.
pub(crate) struct KnownUrls {
    urls: Vec<String>,
    strict: bool,
}

/// A URL compared without a trailing `/` (`mqtt://h:1883/` is `mqtt://h:1883`).
fn normal(url: &str) -> &str {
    url.trim_end_matches('/')
}

impl KnownUrls {
    pub(crate) fn read(app: &App) -> Result<KnownUrls, ApiError> {
        let mut urls: Vec<String> = app
            .store
            .read()?
            .endpoints()?
            .into_iter()
            .map(|e| e.url)
            .collect();
        urls.push(app.operational_url());
        Ok(KnownUrls {
            urls,
            strict: app.config.provisioning.strict_broker_urls,
        })
    }

    /// A `brokerUrl` outside the known endpoints: a warning on `spec`, or the field error
    /// when strict.
    pub(crate) fn check(&self, spec: &mut RequestSpec) -> Result<(), FieldError> {
        let url = normal(&spec.broker_url);
        if self.urls.iter().any(|u| normal(u) == url) {
            return Ok(());
        }
        if self.strict {
            return Err(FieldError::new(
                "brokerUrl",
                "is not a known broker endpoint (provisioning.strict_broker_urls is on)",
            ));
        }
        spec.warnings
            .push(format!("brokerUrl {url} is not a known broker endpoint"));
        Ok(())
    }
}

fn admin_only(req: &HttpRequest, app: &App, what: &str) -> Result<(), ApiError> {
    if authenticate(req, app)? != Caller::Admin {
        return Err(ApiError::Forbidden(format!(
            "only the instance admin token may {what} endpoints"
        )));
    }
    Ok(())
}

/// The known broker endpoints: `fleetgate` first, then the others by name (any token).
#[utoipa::path(
    get, path = "/api/v1/endpoints", tag = "endpoints",
    responses(
        (status = 200, description = "The known endpoints", body = EndpointList),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_endpoints(
    req: HttpRequest,
    app: State<Arc<App>>,
) -> Result<HttpResponse, ApiError> {
    authenticate(&req, &app)?;
    let items = std::iter::once(own(&app))
        .chain(app.store.read()?.endpoints()?.iter().map(endpoint))
        .collect();
    Ok(HttpResponse::Ok().json(&EndpointList { items }))
}

/// Adds a known broker endpoint (admin token).
#[utoipa::path(
    post, path = "/api/v1/endpoints", tag = "endpoints",
    request_body = super::dto::EndpointInput,
    responses(
        (status = 201, description = "Added", body = Endpoint),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Account tokens cannot add endpoints", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken (`fleetgate` is Fleetgate's own)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_endpoint(
    req: HttpRequest,
    app: State<Arc<App>>,
    body: JsonBody<false>,
) -> Result<HttpResponse, ApiError> {
    admin_only(&req, &app, "add")?;
    let spec = input::endpoint_spec(&body.into_value()?).map_err(ApiError::Invalid)?;
    let e = app
        .store
        .write_async(ops::create_endpoint(spec, app.clock.now()))
        .await?;
    Ok(HttpResponse::Created()
        .header(header::LOCATION, format!("/api/v1/endpoints/{}", e.name))
        .json(&endpoint(&e)))
}

/// Removes a known broker endpoint (admin token); `fleetgate` cannot be removed.
#[utoipa::path(
    delete, path = "/api/v1/endpoints/{name}", tag = "endpoints",
    params(("name" = String, Path, description = "Endpoint name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Account tokens cannot remove endpoints", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`fleetgate` is Fleetgate's own", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_endpoint(
    req: HttpRequest,
    app: State<Arc<App>>,
    path: Path<NamePath>,
) -> Result<HttpResponse, ApiError> {
    admin_only(&req, &app, "remove")?;
    let name = path.into_inner().name;
    if name == OWN_ENDPOINT {
        return Err(ApiError::conflict(
            "name",
            "fleetgate is this instance's own endpoint (operational.public_url)",
        ));
    }
    app.store.write_async(ops::delete_endpoint(name)).await?;
    Ok(HttpResponse::NoContent().finish())
}
