//! EMQX 5: HTTP authentication (with the user's ACL in EMQX 5.8's format), HTTP authorization
//! and the webhook's connect/disconnect events (HOOKS.md 2.1).

use std::collections::HashMap;

use fleetgate_acl::plain_filter;
use fleetgate_hooks::{Access, Action, Protocol, Session};
use ntex::util::Bytes;
use ntex::web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Change, HookDoor, HookError, facts, json, peer};

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
    let writes: Vec<_> = coalesce(&events)
        .into_iter()
        .map(|(e, change)| {
            let at = e.peername.as_deref().map(|p| peer(Some(p)));
            let username = e.username.as_deref().unwrap_or("");
            door.connection(&e.clientid, username, at, change)
        })
        .collect();
    futures::future::join_all(writes).await;
    Ok(HttpResponse::NoContent().finish())
}

/// The connection changes of a batch, in order, with a connect and the disconnect that follows
/// it for the same client ID and user folded into one change at the connect's place (a
/// device that came and went between two posts: one registry write instead of two). Applying
/// the result in order leaves every entry as applying each event would, because nothing else
/// of that client ID comes between the two. Other events are left out.
fn coalesce(events: &[Event]) -> Vec<(&Event, Change)> {
    let mut out: Vec<(&Event, Change)> = Vec::with_capacity(events.len());
    // Per client ID, its latest event when that is a connect: where it is in `out`, and its user.
    let mut open: HashMap<&str, (usize, Option<&str>)> = HashMap::new();
    for e in events {
        let (client, user) = (e.clientid.as_str(), e.username.as_deref());
        match e.event.as_str() {
            "client.connected" => {
                open.insert(client, (out.len(), user));
                out.push((e, Change::Up));
            }
            "client.disconnected" => match open.remove(client) {
                Some((at, by)) if by == user => out[at].1 = Change::UpAndDown,
                _ => out.push((e, Change::Down)),
            },
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(events: &[(&str, &str, &str)]) -> Vec<Event> {
        let list: Vec<_> = events
            .iter()
            .map(|(event, client, user)| json!({"event": event, "clientid": client, "username": user}))
            .collect();
        serde_json::from_value(json!(list)).unwrap()
    }

    fn changes(events: &[Event]) -> Vec<(String, Change)> {
        coalesce(events)
            .into_iter()
            .map(|(e, c)| (e.clientid.clone(), c))
            .collect()
    }

    #[test]
    fn a_connect_and_its_disconnect_in_one_batch_are_one_change_at_the_connect() {
        let b = batch(&[
            ("client.connected", "a", "a@x"),
            ("client.connected", "b", "b@x"),
            ("session.subscribed", "a", "a@x"),
            ("client.disconnected", "a", "a@x"),
            ("client.disconnected", "c", "c@x"),
            ("client.connected", "a", "a@x"),
        ]);
        let want = [
            ("a", Change::UpAndDown),
            ("b", Change::Up),
            ("c", Change::Down),
            ("a", Change::Up),
        ];
        let want: Vec<_> = want.iter().map(|(c, k)| (c.to_string(), *k)).collect();
        assert_eq!(changes(&b), want);
    }

    #[test]
    fn nothing_is_folded_across_another_event_of_the_client_id() {
        // A takeover by another user: folding its first connect with the disconnect of that
        // first user would leave the entry DISCONNECTED where the events end CONNECTED.
        let b = batch(&[
            ("client.connected", "a", "a@x"),
            ("client.connected", "a", "other@x"),
            ("client.disconnected", "a", "a@x"),
        ]);
        let got: Vec<_> = changes(&b).into_iter().map(|(_, c)| c).collect();
        assert_eq!(got, [Change::Up, Change::Up, Change::Down]);
        // A disconnect of another user, then the first user's: the first connect stays alone.
        let b = batch(&[
            ("client.connected", "a", "a@x"),
            ("client.disconnected", "a", "other@x"),
            ("client.disconnected", "a", "a@x"),
        ]);
        let got: Vec<_> = changes(&b).into_iter().map(|(_, c)| c).collect();
        assert_eq!(got, [Change::Up, Change::Down, Change::Down]);
    }
}
