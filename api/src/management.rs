//! Device management (API.md "Device management", PROTOCOL.md 7): a generic Kura request,
//! CONF-V1 configurations (GET and PUT, all or one PID) and CMD-V1 commands, sent through the
//! requester to a registry device of the account that is connected and ready.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use fleetgate_devmgmt::{Method, Reply, Request, RequestError};
use fleetgate_kura::proto::KuraMetric;
use fleetgate_storage::Account;
use fleetgate_wire::{CommandResult, DeviceReply};
use ntex::web::HttpResponse;
use ntex::web::types::State;
use serde_json::Value;

use super::error::{ApiError, Problem};
use super::extract::{DevicePath, JsonBody, Target, XmlBody};
use super::input;
use fleetgate_app::App;
use fleetgate_config::Config;

/// `{clientId}/configurations/{pid}`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationPath {
    /// The device's client ID.
    pub client_id: String,
    /// The configuration's PID.
    pub pid: String,
}

/// The registry entry must exist (404 otherwise), as for every device route.
fn known_device(app: &App, account: &Account, client_id: &str) -> Result<(), ApiError> {
    app.store
        .read()?
        .device(&account.name, client_id)?
        .map(drop)
        .ok_or_else(|| ApiError::NotFound(format!("device {client_id:?}")))
}

fn default_timeout(app: &App) -> std::time::Duration {
    Config::secs(app.config.device_management.timeout)
}

/// Sends `request` and waits for the reply; the requester's refusals as API errors.
async fn send(
    app: &App,
    account: &Account,
    client_id: &str,
    request: Request,
) -> Result<Reply, ApiError> {
    known_device(app, account, client_id)?;
    app.devices
        .request(&account.name, client_id, request)
        .await
        .map_err(|e| match e {
            RequestError::NotConnected | RequestError::NotReady | RequestError::Disconnected => {
                ApiError::conflict("clientId", e.to_string())
            }
            RequestError::Timeout(_) => ApiError::GatewayTimeout(e.to_string()),
            RequestError::MalformedReply(_) => ApiError::BadGateway(e.to_string()),
            RequestError::InvalidLevel(_) => ApiError::invalid("resources", e.to_string()),
            RequestError::NoBroker => ApiError::Unavailable(e.to_string()),
        })
}

/// A device's error reply as 502, with its code and message.
fn device_error(reply: &Reply) -> ApiError {
    ApiError::BadGateway(format!(
        "the device answered {}: {}",
        reply.code,
        reply.exception_message().unwrap_or("(no message)")
    ))
}

/// The reply when the device answered 200, else [`device_error`].
fn ok_or_device_error(reply: Reply) -> Result<Reply, ApiError> {
    if reply.code == 200 {
        Ok(reply)
    } else {
        Err(device_error(&reply))
    }
}

fn metric_json(m: &KuraMetric) -> Value {
    if let Some(s) = m.as_str() {
        return Value::from(s);
    }
    if let Some(i) = m.as_i32() {
        return Value::from(i);
    }
    if let Some(i) = m.as_i64() {
        return Value::from(i);
    }
    if let Some(b) = m.as_bool() {
        return Value::from(b);
    }
    if let Some(d) = m.double_value {
        return Value::from(d);
    }
    if let Some(f) = m.float_value {
        return Value::from(f64::from(f));
    }
    m.bytes_value.as_deref().map_or(Value::Null, |b| {
        Value::from(base64::engine::general_purpose::STANDARD.encode(b))
    })
}

/// Sends a Kura request to a device and returns its reply as is (a device error such as 404 or
/// 500 is a 200 here with that `responseCode`).
#[utoipa::path(
    post, path = "/api/v1/accounts/{account}/devices/{clientId}/requests", tag = "device management",
    params(
        ("account" = String, Path, description = "Target account"),
        ("clientId" = String, Path, description = "Client ID"),
    ),
    request_body = super::dto::DeviceRequestInput,
    responses(
        (status = 200, description = "The device's reply", body = DeviceReply),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or device", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The device is not connected or not ready", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The device's reply could not be read", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "No reply in time", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn device_request(
    app: State<Arc<App>>,
    body: JsonBody<false>,
    Target {
        account,
        path: DevicePath { client_id },
    }: Target<DevicePath>,
) -> Result<HttpResponse, ApiError> {
    let request = input::device_request(&body.into_value()?, default_timeout(&app))
        .map_err(ApiError::Invalid)?;
    let reply = send(&app, &account, &client_id, request).await?;
    let metrics: BTreeMap<String, Value> = reply
        .payload
        .metrics()
        .iter()
        .map(|m| (m.name.clone(), metric_json(m)))
        .collect();
    let (body, body_base64) = match reply.payload.body() {
        None => (None, None),
        Some(b) => match std::str::from_utf8(b) {
            Ok(text) => (Some(text.to_string()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(b)),
            ),
        },
    };
    Ok(HttpResponse::Ok().json(&DeviceReply {
        response_code: reply.code,
        metrics,
        body,
        body_base64,
    }))
}

/// CONF-V1 `GET configurations[/PID]`: the device's configuration, in Kura's snapshot form.
async fn get_configuration(
    app: &App,
    account: &Account,
    client_id: &str,
    pid: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let request = Request {
        app: "CONF-V1".into(),
        method: Method::Get,
        resources: std::iter::once("configurations".to_string())
            .chain(pid)
            .collect(),
        metrics: vec![],
        body: None,
        timeout: default_timeout(app),
    };
    let reply = ok_or_device_error(send(app, account, client_id, request).await?)?;
    let xml = reply.payload.body().unwrap_or_default().to_vec();
    Ok(HttpResponse::Ok().content_type("application/xml").body(xml))
}

/// CONF-V1 `PUT configurations[/PID]` of a document validated as a request's additional
/// configuration (422 with line and column), sent in Kura's snapshot form; 204 once the device
/// answered 200.
async fn put_configuration(
    app: &App,
    account: &Account,
    client_id: &str,
    pid: Option<String>,
    xml: &str,
) -> Result<HttpResponse, ApiError> {
    let snapshot =
        input::configuration_snapshot(xml, pid.as_deref(), "body").map_err(ApiError::Invalid)?;
    let request = Request::configuration_put(pid, snapshot, default_timeout(app));
    ok_or_device_error(send(app, account, client_id, request).await?)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Every configuration of the device (CONF-V1 `GET configurations`).
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/devices/{clientId}/configurations", tag = "device management",
    params(
        ("account" = String, Path, description = "Target account"),
        ("clientId" = String, Path, description = "Client ID"),
    ),
    responses(
        (status = 200, description = "Kura snapshot XML", body = String, content_type = "application/xml"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or device", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The device is not connected or not ready", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The device answered an error", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "No reply in time", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_configurations(
    app: State<Arc<App>>,
    Target {
        account,
        path: DevicePath { client_id },
    }: Target<DevicePath>,
) -> Result<HttpResponse, ApiError> {
    get_configuration(&app, &account, &client_id, None).await
}

/// One configuration of the device (CONF-V1 `GET configurations/PID`).
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/devices/{clientId}/configurations/{pid}", tag = "device management",
    params(
        ("account" = String, Path, description = "Target account"),
        ("clientId" = String, Path, description = "Client ID"),
        ("pid" = String, Path, description = "Configuration PID"),
    ),
    responses(
        (status = 200, description = "Kura snapshot XML", body = String, content_type = "application/xml"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or device", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The device is not connected or not ready", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The device answered an error", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "No reply in time", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_one_configuration(
    app: State<Arc<App>>,
    Target {
        account,
        path: ConfigurationPath { client_id, pid },
    }: Target<ConfigurationPath>,
) -> Result<HttpResponse, ApiError> {
    get_configuration(&app, &account, &client_id, Some(pid)).await
}

/// Sends configurations to the device (CONF-V1 `PUT configurations`).
#[utoipa::path(
    put, path = "/api/v1/accounts/{account}/devices/{clientId}/configurations", tag = "device management",
    params(
        ("account" = String, Path, description = "Target account"),
        ("clientId" = String, Path, description = "Client ID"),
    ),
    request_body(content = String, content_type = "application/xml", description = "Configuration XML (seed or Kura snapshot form)"),
    responses(
        (status = 204, description = "The device applied it (answered 200)"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or device", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The device is not connected or not ready", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not XML", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid XML (with line and column)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The device answered an error", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "No reply in time", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn put_configurations(
    app: State<Arc<App>>,
    body: XmlBody,
    Target {
        account,
        path: DevicePath { client_id },
    }: Target<DevicePath>,
) -> Result<HttpResponse, ApiError> {
    put_configuration(&app, &account, &client_id, None, &body.into_text()?).await
}

/// Sends one configuration to the device (CONF-V1 `PUT configurations/PID`).
#[utoipa::path(
    put, path = "/api/v1/accounts/{account}/devices/{clientId}/configurations/{pid}", tag = "device management",
    params(
        ("account" = String, Path, description = "Target account"),
        ("clientId" = String, Path, description = "Client ID"),
        ("pid" = String, Path, description = "Configuration PID"),
    ),
    request_body(content = String, content_type = "application/xml", description = "A document holding exactly this PID's configuration"),
    responses(
        (status = 204, description = "The device applied it (answered 200)"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or device", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The device is not connected or not ready", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not XML", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid XML (with line and column), or another PID", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The device answered an error", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "No reply in time", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn put_one_configuration(
    app: State<Arc<App>>,
    body: XmlBody,
    Target {
        account,
        path: ConfigurationPath { client_id, pid },
    }: Target<ConfigurationPath>,
) -> Result<HttpResponse, ApiError> {
    put_configuration(&app, &account, &client_id, Some(pid), &body.into_text()?).await
}

/// Runs a command on the device (CMD-V1 `EXEC command`). A non-zero exit is a 200 with its
/// `exitCode` (Kura answers it with 500 and the exit code); a device without a usable command
/// service (500 without an exit code) is a 502.
#[utoipa::path(
    post, path = "/api/v1/accounts/{account}/devices/{clientId}/commands", tag = "device management",
    params(
        ("account" = String, Path, description = "Target account"),
        ("clientId" = String, Path, description = "Client ID"),
    ),
    request_body = super::dto::CommandInput,
    responses(
        (status = 200, description = "The command ran", body = CommandResult),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or device", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The device is not connected or not ready", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The device could not run it", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "No reply in time", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn run_command(
    app: State<Arc<App>>,
    body: JsonBody<false>,
    Target {
        account,
        path: DevicePath { client_id },
    }: Target<DevicePath>,
) -> Result<HttpResponse, ApiError> {
    let request =
        input::command(&body.into_value()?, default_timeout(&app)).map_err(ApiError::Invalid)?;
    let reply = send(&app, &account, &client_id, request).await?;
    let p = &reply.payload;
    let exit_code = p.metric_i32("command.exit.code");
    if reply.code != 200 && exit_code.is_none() {
        return Err(device_error(&reply));
    }
    let text = |name: &str| p.metric_str(name).unwrap_or_default().to_string();
    Ok(HttpResponse::Ok().json(&CommandResult {
        exit_code,
        stdout: text("command.stdout"),
        stderr: text("command.stderr"),
        timed_out: p.metric_bool("command.timedout").unwrap_or(false),
    }))
}
