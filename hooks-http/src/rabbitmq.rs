//! RabbitMQ's HTTP auth backend with its MQTT plugin (HOOKS.md 2.3): parameters as a GET query
//! or a POST form, answers `allow` / `deny` as `text/plain`.
//!
//! RabbitMQ turns an MQTT topic into a routing key by swapping `/` and `.` and writing `+` as
//! `*`; topic checks translate the routing key back and decide on the MQTT topic, so the same
//! rules hold as on every other door.

use fleetgate_hooks::{Action, Protocol};
use ntex::util::Bytes;
use ntex::web::types::Query;
use ntex::web::{HttpRequest, HttpResponse};

use crate::{HookDoor, HookError, facts};

const BROKER: &str = "rabbitmq";

/// The request's parameters: the form body of a POST, else the query (minus `token`).
struct Params(Vec<(String, String)>);

impl Params {
    fn of(req: &HttpRequest, body: &Bytes) -> Result<Params, HookError> {
        let text = if body.is_empty() {
            req.query_string().to_string()
        } else {
            std::str::from_utf8(body)
                .map_err(|_| HookError::Malformed("the form body is not UTF-8".into()))?
                .to_string()
        };
        Query::<Vec<(String, String)>>::from_query(&text)
            .map(|q| Params(q.into_inner()))
            .map_err(|e| HookError::Malformed(format!("invalid form: {e}")))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find_map(|(k, v)| (k == name).then_some(v.as_str()))
    }

    fn require(&self, name: &str) -> Result<&str, HookError> {
        self.get(name)
            .ok_or_else(|| HookError::Malformed(format!("parameter {name} is required")))
    }

    /// The MQTT client ID: `client_id` (user checks) or `variable_map.client_id` (topic
    /// checks).
    fn client_id(&self) -> Option<&str> {
        self.get("client_id")
            .or_else(|| self.get("variable_map.client_id"))
            .filter(|c| !c.is_empty())
    }
}

fn answer(door: &HookDoor, hook: &'static str, allowed: bool) -> HttpResponse {
    door.count(BROKER, hook, allowed);
    HttpResponse::Ok()
        .content_type("text/plain")
        .body(if allowed { "allow" } else { "deny" })
}

/// `/hooks/rabbitmq/user`: `username`, `password`, `client_id` (RabbitMQ's MQTT plugin passes
/// the client ID; without one the CONNECT cannot be decided and is refused).
pub(crate) async fn user(
    door: &HookDoor,
    req: &HttpRequest,
    body: &Bytes,
) -> Result<HttpResponse, HookError> {
    let p = Params::of(req, body)?;
    let username = p.require("username")?;
    let accepted = match p.client_id() {
        Some(client_id) => {
            let f = facts(
                client_id,
                Some(username),
                p.get("password"),
                p.get("ip"),
                Protocol::V311,
            );
            door.login(&f).await.is_ok()
        }
        None => false,
    };
    Ok(answer(door, "authenticate", accepted))
}

/// `/hooks/rabbitmq/vhost`: a user that may connect may use the virtual host it was sent to.
pub(crate) async fn vhost(
    door: &HookDoor,
    req: &HttpRequest,
    body: &Bytes,
) -> Result<HttpResponse, HookError> {
    let p = Params::of(req, body)?;
    let allowed = door
        .app
        .hooks
        .may_connect_as(p.require("username")?)
        .is_ok();
    Ok(answer(door, "vhost", allowed))
}

/// The queue RabbitMQ's MQTT plugin keeps a client's subscriptions of one QoS in:
/// `mqtt-subscription-CIDqos0` or `...qos1`. `client_id`, when the request names it, must be
/// that client's.
fn is_subscription_queue(name: &str, client_id: Option<&str>) -> bool {
    let Some(rest) = name.strip_prefix("mqtt-subscription-") else {
        return false;
    };
    let Some(cid) = rest
        .strip_suffix("qos0")
        .or_else(|| rest.strip_suffix("qos1"))
    else {
        return false;
    };
    !cid.is_empty() && client_id.is_none_or(|c| c == cid)
}

/// `/hooks/rabbitmq/resource`: the `amq.topic` exchange and the client's own subscription
/// queues, for users that may connect; anything else is denied.
pub(crate) async fn resource(
    door: &HookDoor,
    req: &HttpRequest,
    body: &Bytes,
) -> Result<HttpResponse, HookError> {
    let p = Params::of(req, body)?;
    let username = p.require("username")?;
    let (kind, name) = (p.require("resource")?, p.require("name")?);
    let resource_ok = match kind {
        "exchange" => name == "amq.topic",
        "queue" => is_subscription_queue(name, p.client_id()),
        _ => false,
    };
    let allowed = resource_ok && door.app.hooks.may_connect_as(username).is_ok();
    Ok(answer(door, "resource", allowed))
}

/// An AMQP routing key of RabbitMQ's MQTT plugin back to the MQTT topic (or filter).
fn mqtt_topic(routing_key: &str) -> String {
    routing_key
        .chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            '*' => '+',
            c => c,
        })
        .collect()
}

/// `/hooks/rabbitmq/topic`: `write` is a PUBLISH to the topic, `read` a SUBSCRIBE to the
/// filter, decided for `variable_map.client_id` (or `client_id`) and `username`.
pub(crate) async fn topic(
    door: &HookDoor,
    req: &HttpRequest,
    body: &Bytes,
) -> Result<HttpResponse, HookError> {
    let p = Params::of(req, body)?;
    let username = p.require("username")?;
    let topic = mqtt_topic(p.require("routing_key")?);
    let (hook, action) = match p.require("permission")? {
        "write" => ("publish", Action::Publish(&topic)),
        "read" => ("subscribe", Action::Subscribe(&topic)),
        other => {
            return Err(HookError::Malformed(format!(
                "permission must be read or write, not {other:?}"
            )));
        }
    };
    let allowed = p.get("name") == Some("amq.topic")
        && p.client_id()
            .is_some_and(|client_id| door.may(client_id, username, action));
    Ok(answer(door, hook, allowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_keys_become_mqtt_topics() {
        assert_eq!(mqtt_topic("acme.dev-1.telemetry"), "acme/dev-1/telemetry");
        assert_eq!(mqtt_topic("acme.*.x.#"), "acme/+/x/#");
        assert_eq!(mqtt_topic("a/b.c"), "a.b/c");
    }

    #[test]
    fn subscription_queues() {
        assert!(is_subscription_queue(
            "mqtt-subscription-dev-1qos1",
            Some("dev-1")
        ));
        assert!(is_subscription_queue("mqtt-subscription-dev-1qos0", None));
        assert!(!is_subscription_queue(
            "mqtt-subscription-dev-1qos1",
            Some("dev-2")
        ));
        assert!(!is_subscription_queue("mqtt-subscription-qos1", None));
        assert!(!is_subscription_queue("other-queue", None));
    }
}
