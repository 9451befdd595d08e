//! VerneMQ's webhooks (HOOKS.md 2.2): one path, the hook named by the `vernemq-hook` header.

use std::collections::HashMap;

use base64::Engine as _;
use fleetgate_acl::plain_filter;
use fleetgate_hooks::{Action, Protocol};
use ntex::util::Bytes;
use ntex::web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Change, HookDoor, HookError, facts, json};

const BROKER: &str = "vernemq";

/// The client IDs VerneMQ registered, to their user names: `on_client_offline` and
/// `on_client_gone` carry only the client ID, and the registry entry is the user's account's.
/// Bounded: past it, the oldest registrations are forgotten (their offline changes nothing).
pub(crate) struct Registered {
    users: parking_lot::Mutex<HashMap<(String, String), String>>,
}

/// Most registrations remembered at once.
const MAX_REGISTERED: usize = 1_000_000;

impl Registered {
    pub(crate) fn new() -> Registered {
        Registered {
            users: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    fn insert(&self, mountpoint: &str, client_id: &str, username: &str) {
        let mut users = self.users.lock();
        if users.len() >= MAX_REGISTERED {
            users.clear();
        }
        users.insert((mountpoint.into(), client_id.into()), username.into());
    }

    fn take(&self, mountpoint: &str, client_id: &str) -> Option<String> {
        self.users
            .lock()
            .remove(&(mountpoint.to_string(), client_id.to_string()))
    }
}

#[derive(Deserialize)]
struct Register {
    client_id: String,
    username: Option<String>,
    password: Option<String>,
    #[serde(default)]
    mountpoint: String,
    peer_addr: Option<String>,
}

#[derive(Deserialize, Serialize)]
struct Topic {
    topic: String,
    qos: u8,
}

#[derive(Deserialize)]
struct Subscribe {
    client_id: String,
    username: Option<String>,
    topics: Vec<Topic>,
}

#[derive(Deserialize)]
struct Publish {
    client_id: String,
    username: Option<String>,
    topic: String,
    #[serde(default)]
    payload: String,
}

#[derive(Deserialize)]
struct Gone {
    client_id: String,
    #[serde(default)]
    mountpoint: String,
}

fn ok() -> Value {
    json!({"result": "ok"})
}

fn not_allowed() -> Value {
    json!({"result": {"error": "not_allowed"}})
}

/// The SUBACK code VerneMQ sends for a refused filter.
const REFUSED_QOS: u8 = 128;

/// `POST /hooks/vernemq`.
pub(crate) async fn hook(
    door: &HookDoor,
    req: &HttpRequest,
    body: &Bytes,
) -> Result<HttpResponse, HookError> {
    let name = req
        .headers()
        .get("vernemq-hook")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| HookError::Malformed("the vernemq-hook header is missing".into()))?;
    let answer = match name {
        "auth_on_register" | "auth_on_register_m5" => {
            let r: Register = json(body)?;
            let protocol = if name.ends_with("_m5") {
                Protocol::V5
            } else {
                Protocol::V311
            };
            let username = r.username.as_deref();
            let f = facts(
                &r.client_id,
                username,
                r.password.as_deref(),
                r.peer_addr.as_deref(),
                protocol,
            );
            let session = door.login(&f).await;
            door.count(BROKER, "authenticate", session.is_ok());
            match session {
                Ok(session) => {
                    door.registered
                        .insert(&r.mountpoint, &r.client_id, session.username());
                    // VerneMQ connects the client right after: the session just decided
                    // (with its peer and protocol) is the one the registry records.
                    door.app.hooks.connected(&session).await;
                    ok()
                }
                Err(_) => not_allowed(),
            }
        }
        "auth_on_subscribe" | "auth_on_subscribe_m5" => {
            let s: Subscribe = json(body)?;
            let username = s.username.as_deref().unwrap_or("");
            let decided: Vec<Topic> = s
                .topics
                .into_iter()
                .map(|t| {
                    let allowed = door.may(
                        &s.client_id,
                        username,
                        Action::Subscribe(plain_filter(&t.topic)),
                    );
                    door.count(BROKER, "subscribe", allowed);
                    Topic {
                        qos: if allowed { t.qos } else { REFUSED_QOS },
                        topic: t.topic,
                    }
                })
                .collect();
            let refused = decided.iter().filter(|t| t.qos == REFUSED_QOS).count();
            if refused == 0 {
                ok()
            } else if refused == decided.len() {
                not_allowed()
            } else {
                json!({"result": "ok", "topics": decided})
            }
        }
        "auth_on_publish" | "auth_on_publish_m5" => {
            let p: Publish = json(body)?;
            // The payload matters only to a BIRTH's registry facts, never to the decision: a
            // VerneMQ configured without `base64payload` sends it raw.
            let payload = base64::engine::general_purpose::STANDARD
                .decode(p.payload.as_bytes())
                .unwrap_or_else(|_| p.payload.clone().into_bytes());
            let username = p.username.as_deref().unwrap_or("");
            let allowed = match door.app.hooks.identify(&p.client_id, username) {
                Ok(session) => {
                    let allowed = door
                        .app
                        .hooks
                        .authorize(&session, Action::Publish(&p.topic))
                        .is_allowed();
                    if allowed {
                        door.app.hooks.published(&session, &p.topic, &payload).await;
                    }
                    allowed
                }
                Err(_) => false,
            };
            door.count(BROKER, "publish", allowed);
            if allowed { ok() } else { not_allowed() }
        }
        "on_client_offline" | "on_client_gone" => {
            let g: Gone = json(body)?;
            if let Some(username) = door.registered.take(&g.mountpoint, &g.client_id) {
                door.connection(&g.client_id, &username, None, Change::Down)
                    .await;
            }
            json!({})
        }
        other => {
            return Err(HookError::Malformed(format!(
                "unsupported vernemq-hook {other:?}"
            )));
        }
    };
    Ok(HttpResponse::Ok().json(&answer))
}
