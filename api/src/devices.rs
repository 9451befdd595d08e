//! The Device Registry (API.md "Devices"): entries created before provisioning, the listing
//! with its connection filter and paging, one device with PROTOCOL.md 6.3's facts, and
//! deletion with the device's user and connection.

use std::sync::Arc;

use fleetgate_storage::{ConnectionStatus, FieldError, ops, validate::valid_client_id};
use fleetgate_wire::{Device, DevicePage};
use ntex::http::header;
use ntex::web::types::State;
use ntex::web::{HttpRequest, HttpResponse};

use super::dto;
use super::error::{ApiError, Problem};
use super::extract::{DevicePath, JsonBody, Target};
use super::input;
use super::requests::{Paging, force, query_pairs};
use fleetgate_app::App;

/// Creates a registry entry before provisioning (so that jobs can target the device).
#[utoipa::path(
    post, path = "/api/v1/accounts/{account}/devices", tag = "devices",
    params(("account" = String, Path, description = "Target account")),
    request_body = super::dto::DeviceInput,
    responses(
        (status = 201, description = "Created", body = Device),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "In the registry already, or CID@ACCOUNT is an account user's", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_device(
    app: State<Arc<App>>,
    body: JsonBody<false>,
    Target { account, .. }: Target,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_value()?;
    let spec = input::device_spec(&body).map_err(ApiError::Invalid)?;
    let d = app
        .store
        .write_async(ops::create_device(account.name.clone(), spec))
        .await?;
    Ok(HttpResponse::Created()
        .header(
            header::LOCATION,
            format!(
                "/api/v1/accounts/{}/devices/{}",
                account.name,
                percent(&d.client_id)
            ),
        )
        .json(&dto::device(&d, None, &account)))
}

/// A client ID as one path segment (`:` and `@` are allowed in client IDs).
fn percent(client_id: &str) -> String {
    client_id.replace(':', "%3A").replace('@', "%40")
}

/// The listing's query, validated.
#[derive(Debug, PartialEq)]
struct ListQuery {
    connection: Option<ConnectionStatus>,
    paging: Paging,
}

fn list_query(pairs: Vec<(String, String)>) -> Result<ListQuery, ApiError> {
    let mut connection = None;
    let paging = Paging::parse(pairs, valid_client_id, |k, v| match k {
        "connection" => match ConnectionStatus::parse(&v) {
            Some(c) => {
                connection = Some(c);
                None
            }
            None => Some(FieldError::new(
                "connection",
                "must be NEVER_CONNECTED, CONNECTED or DISCONNECTED",
            )),
        },
        _ => None,
    })?;
    Ok(ListQuery { connection, paging })
}

/// The devices of an account, by client ID, a page at a time: registry entries merged with
/// their connection entries. With `connection`, a page reads at most 100 registry entries per
/// item asked for (10,000 at most), so a state few devices are in gives short, even empty,
/// pages with a `next` cursor: follow `next` until it is null.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/devices", tag = "devices",
    params(
        ("account" = String, Path, description = "Target account"),
        ("connection" = Option<String>, Query, description = "NEVER_CONNECTED, CONNECTED or DISCONNECTED. A filtered page may hold fewer items than `limit`, even none, while `next` is set: follow `next` until it is null"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Page size, 1 to 1000 (default 100)"),
        ("after" = Option<String>, Query, description = "The `next` cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = DevicePage),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad query parameter", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_devices(
    req: HttpRequest,
    app: State<Arc<App>>,
    Target { account, .. }: Target,
) -> Result<HttpResponse, ApiError> {
    let q = list_query(query_pairs(&req)?)?;
    let page = app.store.read()?.list_devices(
        &account.name,
        q.connection,
        q.paging.limit,
        q.paging.after.as_deref(),
    )?;
    let items = page
        .items
        .iter()
        .map(|(d, c)| dto::device(d, c.as_ref(), &account))
        .collect();
    Ok(HttpResponse::Ok().json(&DevicePage {
        items,
        next: page.next,
    }))
}

/// One device, with its BIRTH facts.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/devices/{clientId}", tag = "devices",
    params(
        ("account" = String, Path, description = "Target account"),
        ("clientId" = String, Path, description = "Client ID (percent-encoded where needed)"),
    ),
    responses(
        (status = 200, description = "The device", body = Device),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or device", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_device(
    app: State<Arc<App>>,
    Target {
        account,
        path: DevicePath { client_id },
    }: Target<DevicePath>,
) -> Result<HttpResponse, ApiError> {
    let read = app.store.read()?;
    let d = read
        .device(&account.name, &client_id)?
        .ok_or_else(|| ApiError::NotFound(format!("device {client_id:?}")))?;
    let c = read.device_connection(&account.name, &client_id)?;
    Ok(HttpResponse::Ok().json(&dto::device(&d, c.as_ref(), &account)))
}

/// Deletes a device: its registry entry, device user and device connection. While CONNECTED
/// only with `force=true`, which ends its session.
#[utoipa::path(
    delete, path = "/api/v1/accounts/{account}/devices/{clientId}", tag = "devices",
    params(
        ("account" = String, Path, description = "Target account"),
        ("clientId" = String, Path, description = "Client ID (percent-encoded where needed)"),
        ("force" = Option<bool>, Query, description = "Delete even while CONNECTED (and disconnect it)"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or device", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "CONNECTED and not forced", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "force is not true or false", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_device(
    req: HttpRequest,
    app: State<Arc<App>>,
    Target {
        account,
        path: DevicePath { client_id },
    }: Target<DevicePath>,
) -> Result<HttpResponse, ApiError> {
    let force = force(&req)?;
    let deleted = app
        .store
        .write_async(ops::delete_device(account.name, client_id, force))
        .await?;
    // After the commit: a reconnect of the deleted user is refused from now on.
    for username in &deleted {
        app.hooks.revoke(username);
    }
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn list_query_rules() {
        let q = list_query(pairs(&[])).unwrap();
        assert_eq!(
            (q.connection, q.paging.limit, q.paging.after),
            (None, crate::requests::DEFAULT_LIMIT, None)
        );
        let q = list_query(pairs(&[("connection", "CONNECTED"), ("after", "a:b@c")])).unwrap();
        assert_eq!(q.connection, Some(ConnectionStatus::Connected));
        assert_eq!(q.paging.after.as_deref(), Some("a:b@c"));
        for (k, v) in [
            ("connection", "connected"),
            ("limit", "0"),
            ("after", "a/b"),
        ] {
            let e = list_query(pairs(&[(k, v)])).unwrap_err();
            assert_eq!(e.field_errors()[0].field, k, "{k}={v}");
        }
    }
}
