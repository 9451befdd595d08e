//! Read-only views of a target account's records: device users and devices.

use std::sync::Arc;

use fleetgate_wire::{Device, DeviceList, UserList};
use ntex::web::HttpResponse;
use ntex::web::types::State;

use super::dto;
use super::error::{ApiError, Problem};
use super::extract::{DevicePath, Target};
use fleetgate_app::App;

/// The device users of an account (never a hash).
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/users", tag = "target-account records",
    params(("account" = String, Path, description = "Target account")),
    responses(
        (status = 200, description = "Users by username", body = UserList),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_users(
    app: State<Arc<App>>,
    Target { account, .. }: Target,
) -> Result<HttpResponse, ApiError> {
    let items = app
        .store
        .read()?
        .users(&account.name)?
        .iter()
        .map(dto::user)
        .collect();
    Ok(HttpResponse::Ok().json(&UserList { items }))
}

/// The devices of an account: registry entries merged with their connection entries.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/devices", tag = "target-account records",
    params(("account" = String, Path, description = "Target account")),
    responses(
        (status = 200, description = "Devices by client ID", body = DeviceList),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_devices(
    app: State<Arc<App>>,
    Target { account, .. }: Target,
) -> Result<HttpResponse, ApiError> {
    let read = app.store.read()?;
    let mut items = Vec::new();
    for d in read.devices(&account.name)? {
        let c = read.device_connection(&account.name, &d.client_id)?;
        items.push(dto::device(&d, c.as_ref(), &account));
    }
    Ok(HttpResponse::Ok().json(&DeviceList { items }))
}

/// One device.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/devices/{clientId}", tag = "target-account records",
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
