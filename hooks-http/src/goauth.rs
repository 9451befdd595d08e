//! mosquitto-go-auth's HTTP backend (HOOKS.md 2.4), JSON response mode: `{"Ok", "Error"}`.

use fleetgate_acl::plain_filter;
use fleetgate_hooks::{Action, Protocol};
use ntex::util::Bytes;
use ntex::web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::{HookDoor, HookError, facts, json};

const BROKER: &str = "mosquitto-go-auth";

fn answer(door: &HookDoor, hook: &'static str, ok: bool) -> HttpResponse {
    door.count(BROKER, hook, ok);
    HttpResponse::Ok().json(&json!({"Ok": ok, "Error": ""}))
}

#[derive(Deserialize)]
struct User {
    username: String,
    password: Option<String>,
    clientid: String,
}

/// `POST /hooks/mosquitto-go-auth/user`.
pub(crate) async fn user(
    door: &HookDoor,
    _: &HttpRequest,
    body: &Bytes,
) -> Result<HttpResponse, HookError> {
    let u: User = json(body)?;
    let f = facts(
        &u.clientid,
        Some(&u.username),
        u.password.as_deref(),
        None,
        Protocol::V311,
    );
    let ok = door.login(&f).await.is_ok();
    Ok(answer(door, "authenticate", ok))
}

/// `POST /hooks/mosquitto-go-auth/superuser`: nobody is a superuser.
pub(crate) async fn superuser(
    door: &HookDoor,
    _: &HttpRequest,
    _: &Bytes,
) -> Result<HttpResponse, HookError> {
    Ok(answer(door, "superuser", false))
}

#[derive(Deserialize)]
struct Acl {
    username: String,
    clientid: String,
    topic: String,
    acc: u8,
}

/// go-auth's access bits: read a message, write (publish), subscribe.
const READ: u8 = 1;
const WRITE: u8 = 2;
const SUBSCRIBE: u8 = 4;

/// `POST /hooks/mosquitto-go-auth/acl`: every bit of `acc` must be allowed. Reading a message
/// on a topic is allowed where subscribing to that topic would be.
pub(crate) async fn acl(
    door: &HookDoor,
    _: &HttpRequest,
    body: &Bytes,
) -> Result<HttpResponse, HookError> {
    let a: Acl = json(body)?;
    if a.acc == 0 || a.acc & !(READ | WRITE | SUBSCRIBE) != 0 {
        return Err(HookError::Malformed(format!(
            "acc must be a combination of 1 (read), 2 (write) and 4 (subscribe), not {}",
            a.acc
        )));
    }
    let filter = plain_filter(&a.topic);
    let ok = [
        (READ, Action::Subscribe(&a.topic)),
        (WRITE, Action::Publish(&a.topic)),
        (SUBSCRIBE, Action::Subscribe(filter)),
    ]
    .into_iter()
    .filter(|(bit, _)| a.acc & bit != 0)
    .all(|(_, action)| door.may(&a.clientid, &a.username, action));
    Ok(answer(door, "acl", ok))
}
