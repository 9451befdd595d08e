//! EMQX 5: HTTP authentication (with the user's ACL in EMQX 5.8's format), HTTP authorization
//! and the webhook's connect/disconnect events (HOOKS.md 2.1).

use fleetgate_acl::plain_filter;
use fleetgate_hooks::{Access, Action, Protocol, Session};
use ntex::util::Bytes;
use ntex::web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{HookDoor, HookError, facts, json, peer};

const BROKER: &str = "emqx";

#[derive(Deserialize)]
struct Authn {
    clientid: String,
    username: Option<String>,
    password: Option<String>,
    peerhost: Option<String>,
}

/// One rule of EMQX 5.8's `acl` list.
#[derive(Debug, PartialEq, Eq, Serialize)]
struct Rule {
    permission: &'static str,
    action: &'static str,
    topic: String,
}

/// The session's scopes as EMQX rules (a scope both published and subscribed in is one `all`
/// rule), then deny-all rules: `#` does not match `$` topics in EMQX, so `$EDC/#` and
/// `$SYS/#` are denied by name.
fn acl(session: &Session) -> Vec<Rule> {
    let publish = session.rules(Access::Publish);
    let subscribe = session.rules(Access::Subscribe);
    let mut rules: Vec<Rule> = subscribe
        .iter()
        .map(|t| Rule {
            permission: "allow",
            action: if publish.contains(t) {
                "all"
            } else {
                "subscribe"
            },
            topic: t.clone(),
        })
        .collect();
    rules.extend(
        publish
            .into_iter()
            .filter(|t| !subscribe.contains(t))
            .map(|topic| Rule {
                permission: "allow",
                action: "publish",
                topic,
            }),
    );
    rules.extend(["#", "$EDC/#", "$SYS/#"].map(|t| Rule {
        permission: "deny",
        action: "all",
        topic: t.into(),
    }));
    rules
}

/// `POST /hooks/emqx/authn`.
pub(crate) async fn authn(
    door: &HookDoor,
    _: &HttpRequest,
    body: &Bytes,
) -> Result<HttpResponse, HookError> {
    let a: Authn = json(body)?;
    let f = facts(
        &a.clientid,
        a.username.as_deref(),
        a.password.as_deref(),
        a.peerhost.as_deref(),
        Protocol::V311,
    );
    let answer = match door.login(&f).await {
        Ok(session) => json!({"result": "allow", "is_superuser": false, "acl": acl(&session)}),
        Err(_) => json!({"result": "deny"}),
    };
    door.count(BROKER, "authenticate", answer["result"] == "allow");
    Ok(HttpResponse::Ok().json(&answer))
}

#[derive(Deserialize)]
struct Authz {
    clientid: String,
    username: Option<String>,
    action: String,
    topic: String,
}

/// `POST /hooks/emqx/authz`.
pub(crate) async fn authz(
    door: &HookDoor,
    _: &HttpRequest,
    body: &Bytes,
) -> Result<HttpResponse, HookError> {
    let a: Authz = json(body)?;
    let (hook, action) = match a.action.as_str() {
        "publish" => ("publish", Action::Publish(&a.topic)),
        "subscribe" => ("subscribe", Action::Subscribe(plain_filter(&a.topic))),
        other => {
            return Err(HookError::Malformed(format!(
                "action must be publish or subscribe, not {other:?}"
            )));
        }
    };
    let allowed = door.may(&a.clientid, a.username.as_deref().unwrap_or(""), action);
    door.count(BROKER, hook, allowed);
    let result = if allowed { "allow" } else { "deny" };
    Ok(HttpResponse::Ok().json(&json!({ "result": result })))
}

#[derive(Deserialize)]
struct Event {
    event: String,
    clientid: String,
    username: Option<String>,
    peername: Option<String>,
}

/// The most events one request may carry.
const MAX_EVENTS: usize = 5_000;

/// One event object (EMQX's webhook), or an array of them (the Mosquitto plugin batches what
/// queued up while its previous post was in flight).
#[derive(Deserialize)]
#[serde(untagged)]
enum Events {
    One(Event),
    Many(Vec<Event>),
}

/// `POST /hooks/emqx/events`: `client.connected` / `client.disconnected` move the device's
/// registry status; other events are acknowledged and ignored. A batch is decided in order
/// and its writes go to the store together (one group commit, not one per event).
pub(crate) async fn events(
    door: &HookDoor,
    _: &HttpRequest,
    body: &Bytes,
) -> Result<HttpResponse, HookError> {
    let events = match json::<Events>(body)? {
        Events::One(e) => vec![e],
        Events::Many(es) if es.len() <= MAX_EVENTS => es,
        Events::Many(_) => {
            return Err(HookError::Malformed(format!(
                "at most {MAX_EVENTS} events per request"
            )));
        }
    };
    let writes: Vec<_> = events
        .iter()
        .filter_map(|e| {
            let up = match e.event.as_str() {
                "client.connected" => true,
                "client.disconnected" => false,
                _ => return None,
            };
            let at = e.peername.as_deref().map(|p| peer(Some(p)));
            let username = e.username.as_deref().unwrap_or("");
            Some(door.connection(&e.clientid, username, at, up))
        })
        .collect();
    futures::future::join_all(writes).await;
    Ok(HttpResponse::NoContent().finish())
}
