//! Moving an enrolled device to another account or another Fleetgate instance (PROTOCOL.md 8.2,
//! API.md "Moves").
//!
//! `POST .../devices/{clientId}/move` records the move (and, within the instance, creates the
//! target account's provision request) and answers 202; a task then drives it: it waits until
//! the device is ready on the operational endpoint (devmgmt's readiness reports), sends it a
//! CONF-V1 PUT pointing its MqttDataTransport at the target's provisioning endpoint with the
//! provision credentials, and retires the source identity only once the device is there: when
//! the target enrollment COMPLETED (same instance: the source user is deleted), or when the
//! device acknowledged and disconnected (other instance: the source user is disabled). A device
//! that does not answer the PUT in time fails the move and stays where it was.
//!
//! The provision password is held by the task only, never stored: a move that a restart
//! interrupts before the PUT cannot be resumed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use fleetgate_devconfig::{Identity, generated};
use fleetgate_devmgmt::{Request, RequestError, Requester};
use fleetgate_storage::moves::{self, Move, MoveStatus, MoveTarget};
use fleetgate_storage::ops;
use fleetgate_storage::{ConnectionStatus, LogLevel, RequestStatus, StoreError};
use fleetgate_wire as wire;
use ntex::web::types::State;
use ntex::web::{HttpRequest, HttpResponse};
use serde_json::Value;
use tokio::sync::Notify;

use super::dto;
use super::error::{ApiError, Problem};
use super::extract::{DevicePath, JsonBody, Target, authenticate, target_account};
use super::input;
use super::requests::create_rows;
use fleetgate_app::App;
use fleetgate_config::Config;

/// How often a move looks at the store while it waits for the target enrollment or for the
/// device to leave (both are state changes of other parts: the provisioning endpoint, the
/// operational broker).
const POLL: Duration = Duration::from_millis(250);

/// Starts a move of the device to another account (`targetAccount` with the provision request
/// fields for it) or another instance (`targetInstance`).
#[utoipa::path(
    post, path = "/api/v1/accounts/{account}/devices/{clientId}/move", tag = "devices",
    params(
        ("account" = String, Path, description = "Source account"),
        ("clientId" = String, Path, description = "Client ID (percent-encoded where needed)"),
    ),
    request_body = Object,
    responses(
        (status = 202, description = "Move recorded, PENDING", body = wire::Move),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or device, or a target account the token cannot see", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The client ID has an open request in the instance, or the device has a move in progress or has moved", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn start_move(
    req: HttpRequest,
    app: State<Arc<App>>,
    body: JsonBody<false>,
    Target {
        account,
        path: DevicePath { client_id },
    }: Target<DevicePath>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_value()?;
    let now = app.clock.now();
    if app
        .store
        .read()?
        .device(&account.name, &client_id)?
        .is_none()
    {
        return Err(ApiError::NotFound(format!("device {client_id:?}")));
    }
    let (target, send) = match (body.get("targetAccount"), body.get("targetInstance")) {
        (Some(Value::String(name)), None) => {
            let caller = authenticate(&req, &app)?;
            let target = target_account(&app, &caller, name)?;
            if target.name == account.name {
                return Err(ApiError::invalid(
                    "targetAccount",
                    "must be another account than the source",
                ));
            }
            let mut fields = body.clone();
            let object = fields
                .as_object_mut()
                .ok_or_else(|| ApiError::invalid("", "must be a JSON object"))?;
            object.remove("targetAccount");
            object.insert("clientId".into(), Value::String(client_id.clone()));
            let password = object
                .get("provisionPassword")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let spec = input::request_spec(&fields, target.min_password_length, now)
                .map_err(ApiError::Invalid)?;
            let username = spec.provision_username.clone();
            let (r, _) = create_rows(&app, &target, vec![spec], false, now)
                .await?
                .pop()
                .ok_or_else(|| ApiError::Internal("nothing created".into()))?;
            let target = MoveTarget::Account {
                account: target.name,
                provision_request_id: r.id,
            };
            let send = Credentials {
                url: app.provisioning_url(),
                account: app.config.provisioning.account.clone(),
                username,
                password,
            };
            (target, send)
        }
        (None, Some(instance)) => {
            let t: TargetInstanceInput = serde_json::from_value(instance.clone())
                .map_err(|e| ApiError::invalid("targetInstance", e.to_string()))?;
            if fleetgate_storage::validate::check_broker_url(&t.provisioning_url).is_err() {
                return Err(ApiError::invalid(
                    "targetInstance.provisioningUrl",
                    "must be a broker URL (mqtt://HOST:PORT)",
                ));
            }
            let password = t
                .password
                .clone()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| ApiError::invalid("targetInstance.password", "is required"))?;
            for (field, value) in [
                (
                    "targetInstance.provisioningAccount",
                    &t.provisioning_account,
                ),
                ("targetInstance.username", &t.username),
            ] {
                if value.is_empty() {
                    return Err(ApiError::invalid(field, "is required"));
                }
            }
            let send = Credentials {
                url: t.provisioning_url.clone(),
                account: t.provisioning_account.clone(),
                username: t.username.clone(),
                password,
            };
            let target = MoveTarget::Instance {
                provisioning_url: t.provisioning_url,
                provisioning_account: t.provisioning_account,
                username: t.username,
            };
            (target, send)
        }
        _ => {
            return Err(ApiError::invalid(
                "targetAccount",
                "give either targetAccount (with the provision request fields) or targetInstance",
            ));
        }
    };
    let created = app
        .store
        .write_async(moves::create_move(
            account.name.clone(),
            client_id.clone(),
            target.clone(),
            now,
        ))
        .await;
    let m = match created {
        Ok(m) => m,
        Err(e) => {
            // The request made for this move goes with it.
            if let MoveTarget::Account {
                account,
                provision_request_id,
            } = target
            {
                let _ = app
                    .store
                    .write_async(ops::delete_request(account, provision_request_id, true))
                    .await;
            }
            return Err(e.into());
        }
    };
    let running = app.tasks.track();
    let view = view(&m, false);
    let app = app.get_ref().clone();
    drop(ntex::rt::spawn(async move {
        drive(&app, m, send).await;
        drop(running);
    }));
    Ok(HttpResponse::Accepted().json(&view))
}

/// The device's latest move, with its log.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/devices/{clientId}/move", tag = "devices",
    params(
        ("account" = String, Path, description = "Source account"),
        ("clientId" = String, Path, description = "Client ID (percent-encoded where needed)"),
    ),
    responses(
        (status = 200, description = "The move", body = wire::Move),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or device, or no move", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_move(
    app: State<Arc<App>>,
    Target {
        account,
        path: DevicePath { client_id },
    }: Target<DevicePath>,
) -> Result<HttpResponse, ApiError> {
    let m = app
        .store
        .read()?
        .latest_move(&account.name, &client_id)?
        .ok_or_else(|| ApiError::NotFound(format!("move of device {client_id:?}")))?;
    Ok(HttpResponse::Ok().json(&view(&m, true)))
}

fn view(m: &Move, with_log: bool) -> wire::Move {
    let (provision_request_id, target_account, target_instance) = match &m.target {
        MoveTarget::Account {
            account,
            provision_request_id,
        } => (
            Some(provision_request_id.clone()),
            Some(account.clone()),
            None,
        ),
        MoveTarget::Instance {
            provisioning_url,
            provisioning_account,
            username,
        } => (
            None,
            None,
            Some(wire::TargetInstance {
                provisioning_url: provisioning_url.clone(),
                provisioning_account: provisioning_account.clone(),
                username: username.clone(),
            }),
        ),
    };
    wire::Move {
        id: m.id.clone(),
        status: m.status.as_str().into(),
        provision_request_id,
        target_account,
        target_instance,
        created_on: m.created_on,
        modified_on: m.modified_on,
        log: with_log.then(|| {
            m.log
                .iter()
                .map(|l| wire::LogLine {
                    at: l.at,
                    level: dto::level(l.level),
                    message: l.message.clone(),
                })
                .collect()
        }),
    }
}

/// `targetInstance` as the API takes it: [`wire::TargetInstance`] and the write-only password.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TargetInstanceInput {
    provisioning_url: String,
    provisioning_account: String,
    username: String,
    password: Option<String>,
}

/// What the PUT points the device's MqttDataTransport at. `Debug` is not derived: it holds a
/// password.
struct Credentials {
    url: String,
    account: String,
    username: String,
    password: String,
}

/// Drives a move to its end (see the module documentation).
async fn drive(app: &App, m: Move, send: Credentials) {
    let (account, client_id) = (m.account.clone(), m.client_id.clone());
    let note = |status: MoveStatus, level: LogLevel, message: String| {
        moves::advance_move(
            account.clone(),
            client_id.clone(),
            m.id.clone(),
            status,
            level,
            message,
            app.clock.now(),
        )
    };
    let document = generated(
        &Identity {
            broker_url: send.url.clone(),
            account_name: send.account.clone(),
            client_id: client_id.clone(),
            username: send.username.clone(),
            password: send.password.clone(),
        },
        None,
    );
    let timeout = Config::secs(app.config.device_management.timeout);
    loop {
        wait_ready(&app.devices, &account, &client_id).await;
        let put = Request::configuration_put(None, document.to_snapshot_xml(), timeout);
        let failure = match app.devices.request(&account, &client_id, put).await {
            Ok(reply) if reply.code == 200 => break,
            Ok(reply) => format!(
                "the device answered the CONF-V1 PUT with {}{}",
                reply.code,
                reply
                    .exception_message()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
            Err(RequestError::Timeout(t)) => {
                format!("the device did not answer the CONF-V1 PUT within {t:?}; it stays")
            }
            // It left (or is not ready any more) before answering: wait for it again.
            Err(
                RequestError::NotConnected | RequestError::NotReady | RequestError::Disconnected,
            ) => {
                continue;
            }
            Err(e) => format!("the CONF-V1 PUT failed: {e}"),
        };
        return fail(app, &m, failure).await;
    }
    let sent = format!(
        "the device acknowledged the CONF-V1 PUT pointing it at {} (account {}, username {})",
        send.url, send.account, send.username
    );
    if let Err(e) = app
        .store
        .write_async(note(MoveStatus::Sent, LogLevel::Info, sent))
        .await
    {
        tracing::error!(error = %e, "could not record a move");
    }
    let delete_user = match &m.target {
        MoveTarget::Account {
            provision_request_id,
            ..
        } => match target_enrolled(app, provision_request_id).await {
            Ok(()) => true,
            Err(reason) => return fail(app, &m, reason).await,
        },
        MoveTarget::Instance { .. } => {
            device_left(app, &account, &client_id).await;
            false
        }
    };
    let complete = moves::complete_move(
        account.clone(),
        client_id.clone(),
        m.id.clone(),
        delete_user,
        app.clock.now(),
    );
    match app.store.write_async(complete).await {
        Ok(retired) => {
            for username in &retired {
                app.hooks.revoke(username);
            }
        }
        Err(e) => tracing::error!(error = %e, "could not complete a move"),
    }
}

/// Fails the move with `reason`; within the instance, the provision request made for it goes.
async fn fail(app: &App, m: &Move, reason: String) {
    let write = moves::advance_move(
        m.account.clone(),
        m.client_id.clone(),
        m.id.clone(),
        MoveStatus::Failed,
        LogLevel::Error,
        reason,
        app.clock.now(),
    );
    if let Err(e) = app.store.write_async(write).await {
        tracing::error!(error = %e, "could not record a failed move");
    }
    if let MoveTarget::Account {
        account,
        provision_request_id,
    } = &m.target
    {
        let delete = ops::delete_request(account.clone(), provision_request_id.clone(), true);
        if let Err(e) = app.store.write_async(delete).await
            && !matches!(e, StoreError::NotFound(_))
        {
            tracing::error!(error = %e, "could not delete a failed move's provision request");
        }
    }
}

/// Waits until the target account's provision request is COMPLETED; an error when it is
/// closed otherwise, or gone.
async fn target_enrolled(app: &App, request_id: &str) -> Result<(), String> {
    loop {
        let now = app.clock.now();
        match app.store.read().and_then(|r| r.request(request_id)) {
            Ok(Some(r)) if r.status == RequestStatus::Completed => return Ok(()),
            Ok(Some(r)) if r.is_closed(now) => {
                return Err("the target enrollment failed and its request is closed".into());
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err("the target account's provision request was deleted".into()),
            Err(e) => tracing::warn!(error = %e, "store read failed while a move waits"),
        }
        ntex::time::sleep(POLL).await;
    }
}

/// Waits until the device's operational connection has ended.
async fn device_left(app: &App, account: &str, client_id: &str) {
    loop {
        let connected = app
            .store
            .read()
            .and_then(|r| r.device_connection(account, client_id))
            .ok()
            .flatten()
            .is_some_and(|c| c.status == ConnectionStatus::Connected);
        if !connected {
            return;
        }
        ntex::time::sleep(POLL).await;
    }
}

/// The readiness reports of each requester (one per running instance), shared by its moves.
fn ready_signal(requester: &Arc<Requester>) -> Arc<Notify> {
    static SIGNALS: OnceLock<Mutex<HashMap<usize, Arc<Notify>>>> = OnceLock::new();
    let mut signals = SIGNALS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Keyed by the requester's address: it lives as long as its process's App.
    let id = Arc::as_ptr(requester) as usize;
    signals
        .entry(id)
        .or_insert_with(|| {
            let notify = Arc::new(Notify::new());
            let n = notify.clone();
            requester.on_ready(Box::new(move |_, _| n.notify_waiters()));
            notify
        })
        .clone()
}

/// Waits until the device is ready for a request (connected, and BIRTH or a covering
/// subscription): at once when it is, else at a readiness report.
async fn wait_ready(requester: &Arc<Requester>, account: &str, client_id: &str) {
    let signal = ready_signal(requester);
    loop {
        let reported = signal.notified();
        let mut reported = std::pin::pin!(reported);
        reported.as_mut().enable();
        if requester.is_ready(account, client_id) {
            return;
        }
        // A report of any device wakes every waiting move; each checks its own device again.
        let _ = tokio::time::timeout(Duration::from_secs(5), reported).await;
    }
}
