//! The HTTP hook listener (HOOKS.md 2) against a live in-process server: EMQX and VerneMQ
//! cannot run here, so these tests post the request bodies their documentation shows (and
//! RabbitMQ's and mosquitto-go-auth's) and check the answers field by field, with the
//! registry's view of each device after connect and disconnect events.

mod common;

use common::*;
use serde_json::{Value, json};

/// A hook request: (status, content type, body text).
fn hook(
    s: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", s.hooks_url()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = agent.run(req.body(body.to_vec()).unwrap()).unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        status,
        ct,
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

const BEARER: &str = "Bearer test-hooks-token-0123456789";

/// A JSON hook with the token; returns (status, parsed body or Null).
fn post_json(s: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    post_json_with(s, path, &[], body)
}

fn post_json_with(
    s: &TestServer,
    path: &str,
    extra: &[(&str, &str)],
    body: &Value,
) -> (u16, Value) {
    let mut headers = vec![
        ("Authorization", BEARER),
        ("Content-Type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    let (status, _, text) = hook(s, "POST", path, &headers, body.to_string().as_bytes());
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A RabbitMQ form POST with `?token=` (RabbitMQ sends no headers); returns (status, content
/// type, body).
fn rabbit(s: &TestServer, what: &str, form: &str) -> (u16, String, String) {
    hook(
        s,
        "POST",
        &format!("/hooks/rabbitmq/{what}?token=test-hooks-token-0123456789"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
}

/// acme with its device `dev-1` enrolled and an account user `dash@acme` with `data:read`;
/// returns (server, device password, user password).
fn fleet() -> (TestServer, String, String) {
    let s = TestServer::start();
    let device = enroll(&s, "acme", "dev-1");
    let (status, user) = post(
        &s,
        "/api/v1/accounts/acme/users",
        &json!({"name": "dash", "permissions": ["broker:connect", "data:read"]}),
    );
    assert_eq!(status, 201, "{user}");
    let app = user["password"].as_str().unwrap().to_string();
    (s, device, app)
}

#[test]
fn token_is_required_and_wrong_tokens_ban_the_address() {
    let s = TestServer::start_with(&[("FLEETGATE_AUTH_MAX_FAILURES_PER_ADDRESS", "3")]);
    let body = json!({"clientid": "dev-1", "username": "u", "password": "p"}).to_string();
    let path = "/hooks/emqx/authn";
    let (status, ct, _) = hook(&s, "POST", path, &[], body.as_bytes());
    assert_eq!((status, ct.as_str()), (401, "application/problem+json"));
    let (status, _, text) = hook(
        &s,
        "POST",
        path,
        &[("Authorization", BEARER)],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let (status, _, _) = hook(
        &s,
        "POST",
        &format!("{path}?token=test-hooks-token-0123456789"),
        &[],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "the token as a query parameter");
    for _ in 0..2 {
        let (status, _, _) = hook(
            &s,
            "POST",
            path,
            &[("Authorization", "Bearer wrong")],
            body.as_bytes(),
        );
        assert_eq!(status, 401);
    }
    // The third failure bans the address: even the right token is refused now.
    let (status, _, text) = hook(
        &s,
        "POST",
        path,
        &[("Authorization", BEARER)],
        body.as_bytes(),
    );
    assert_eq!(status, 429, "{text}");
}

#[test]
fn malformed_bodies_are_400_and_decide_nothing() {
    let (s, _, _) = fleet();
    for (path, body) in [
        ("/hooks/emqx/authn", "not json"),
        ("/hooks/emqx/authn", "{}"),
        ("/hooks/emqx/authn", r#"{"clientid": 7}"#),
        (
            "/hooks/emqx/authz",
            r#"{"clientid": "dev-1", "username": "dev-1@acme", "action": "delete", "topic": "x"}"#,
        ),
        ("/hooks/emqx/events", r#"{"event": "client.connected"}"#),
        ("/hooks/mosquitto-go-auth/user", "[]"),
        (
            "/hooks/mosquitto-go-auth/acl",
            r#"{"username": "dev-1@acme", "clientid": "dev-1", "topic": "acme/dev-1/x", "acc": 8}"#,
        ),
    ] {
        let (status, ct, text) = hook(
            &s,
            "POST",
            path,
            &[
                ("Authorization", BEARER),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        );
        assert_eq!(status, 400, "{path} {body}: {text}");
        assert_eq!(ct, "application/problem+json");
        assert!(
            !text.contains("allow") && !text.contains("\"ok\""),
            "{text}"
        );
    }
    let (status, _) = post_json(&s, "/hooks/vernemq", &json!({"client_id": "dev-1"}));
    assert_eq!(status, 400, "no vernemq-hook header");
    let (status, _) = post_json_with(
        &s,
        "/hooks/vernemq",
        &[("vernemq-hook", "auth_on_everything")],
        &json!({}),
    );
    assert_eq!(status, 400, "unknown hook");
    let (status, _, body) = rabbit(&s, "topic", "username=dev-1%40acme&permission=write");
    assert_eq!(status, 400, "{body}");
    let (status, _, _) = hook(
        &s,
        "POST",
        "/hooks/unknown",
        &[("Authorization", BEARER)],
        b"",
    );
    assert_eq!(status, 404);
}

#[test]
fn emqx_authn_answers_with_the_users_rules() {
    let (s, device, app) = fleet();
    let authn = |clientid: &str, username: &str, password: &str| {
        post_json(
            &s,
            "/hooks/emqx/authn",
            &json!({"clientid": clientid, "username": username, "password": password,
                    "peerhost": "10.1.2.3"}),
        )
    };
    let (status, answer) = authn("dev-1", "dev-1@acme", &device);
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({
            "result": "allow",
            "is_superuser": false,
            "acl": [
                {"permission": "allow", "action": "all", "topic": "$EDC/acme/dev-1/#"},
                {"permission": "allow", "action": "all", "topic": "acme/dev-1/#"},
                {"permission": "allow", "action": "publish", "topic": "$EDC/acme/+/+/REPLY/#"},
                {"permission": "allow", "action": "publish", "topic": "$EDC/acme/+/+/NOTIFY/dev-1/#"},
                {"permission": "deny", "action": "all", "topic": "#"},
                {"permission": "deny", "action": "all", "topic": "$EDC/#"},
                {"permission": "deny", "action": "all", "topic": "$SYS/#"},
            ]
        })
    );
    let (_, answer) = authn("dash-1", "dash@acme", &app);
    assert_eq!(answer["result"], "allow");
    assert_eq!(
        answer["acl"][0],
        json!({"permission": "allow", "action": "subscribe", "topic": "acme/#"})
    );
    for (clientid, username, password) in [
        ("dev-1", "dev-1@acme", "wrong password"),
        ("dev-1", "nobody@acme", &device),
        ("dev-2", "dev-1@acme", &device),
        ("dev-1", "", ""),
        ("dev-1", "dash@acme", &app),
    ] {
        assert_eq!(
            authn(clientid, username, password).1,
            json!({"result": "deny"}),
            "{clientid} {username}"
        );
    }
    // A device the broker authenticated shows when (RabbitMQ and EMQX alike), as soon as the
    // write the answer did not wait for is committed.
    let mut d = Value::Null;
    for _ in 0..50 {
        d = get(&s, "/api/v1/accounts/acme/devices/dev-1").1;
        if d["lastAuthenticatedOn"].is_string() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(d["lastAuthenticatedOn"].is_string(), "{d}");
}

#[test]
fn emqx_authz_follows_the_acl_and_user_changes_at_once() {
    let (s, _, _) = fleet();
    let authz = |clientid: &str, username: &str, action: &str, topic: &str| {
        post_json(
            &s,
            "/hooks/emqx/authz",
            &json!({"clientid": clientid, "username": username, "action": action,
                    "topic": topic, "qos": 1, "retain": false}),
        )
        .1["result"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        authz("dev-1", "dev-1@acme", "publish", "acme/dev-1/telemetry"),
        "allow"
    );
    assert_eq!(
        authz("dev-1", "dev-1@acme", "publish", "acme/dev-2/telemetry"),
        "deny"
    );
    assert_eq!(
        authz("dev-1", "dev-1@acme", "subscribe", "$EDC/acme/dev-1/#"),
        "allow"
    );
    assert_eq!(authz("dev-1", "dev-1@acme", "subscribe", "acme/#"), "deny");
    assert_eq!(
        authz("dash-1", "dash@acme", "subscribe", "$share/g/acme/#"),
        "allow"
    );
    assert_eq!(
        authz("dash-1", "dash@acme", "publish", "acme/dev-1/cmd"),
        "deny"
    );
    assert_eq!(
        authz("dash-1", "nobody@acme", "subscribe", "acme/#"),
        "deny"
    );
    let (status, _) = call(
        &s,
        "PATCH",
        "/api/v1/accounts/acme/users/dash@acme",
        Some(&json!({"enabled": false})),
    );
    assert_eq!(status, 200);
    assert_eq!(authz("dash-1", "dash@acme", "subscribe", "acme/#"), "deny");
}

#[test]
fn emqx_events_move_the_registry_status() {
    let (s, _, _) = fleet();
    let event = |name: &str| {
        let (status, body) = post_json(
            &s,
            "/hooks/emqx/events",
            &json!({"event": name, "clientid": "dev-1", "username": "dev-1@acme",
                    "peername": "10.9.8.7:51000", "timestamp": 1_700_000_000_000_i64}),
        );
        assert_eq!((status, body), (204, Value::Null), "{name}");
        get(&s, "/api/v1/accounts/acme/devices/dev-1").1
    };
    let d = event("client.connected");
    assert_eq!(d["connection"], "CONNECTED", "{d}");
    assert_eq!(d["peer"], "10.9.8.7:51000");
    let d = event("client.disconnected");
    assert_eq!(d["connection"], "DISCONNECTED", "{d}");
    let d = event("message.publish");
    assert_eq!(
        d["connection"], "DISCONNECTED",
        "other events change nothing"
    );
    // A device whose user was disabled while connected: its disconnect still counts (a
    // disabled user is why a broker closes the connection).
    event("client.connected");
    let (status, _) = call(
        &s,
        "PATCH",
        "/api/v1/accounts/acme/users/dev-1@acme",
        Some(&json!({"enabled": false})),
    );
    assert_eq!(status, 200);
    let d = event("client.disconnected");
    assert_eq!(d["connection"], "DISCONNECTED", "{d}");
}

#[test]
fn events_may_come_in_batches_decided_in_order() {
    let (s, _, _) = fleet();
    let enroll_more = enroll(&s, "acme", "dev-2");
    assert!(!enroll_more.is_empty());
    let event = |name: &str, cid: &str| {
        json!({"event": name, "clientid": cid, "username": format!("{cid}@acme"),
               "peername": "10.0.0.1:1000", "timestamp": 1})
    };
    let (status, _) = post_json(
        &s,
        "/hooks/emqx/events",
        &json!([
            event("client.connected", "dev-1"),
            event("client.connected", "dev-2"),
            event("client.disconnected", "dev-2"),
            event("session.subscribed", "dev-1"),
        ]),
    );
    assert_eq!(status, 204);
    let connection = |cid: &str| {
        get(&s, &format!("/api/v1/accounts/acme/devices/{cid}")).1["connection"].clone()
    };
    assert_eq!(connection("dev-1"), "CONNECTED");
    assert_eq!(connection("dev-2"), "DISCONNECTED", "the later event wins");
    // dev-2 came and went inside the batch (one write for both): its connect's facts are kept.
    let dev2 = get(&s, "/api/v1/accounts/acme/devices/dev-2").1;
    assert_eq!(dev2["peer"], "10.0.0.1:1000", "{dev2}");
    assert!(dev2["lastConnectedOn"].is_string(), "{dev2}");
    let too_many: Vec<Value> = (0..5_001)
        .map(|_| json!({"event": "x", "clientid": "d"}))
        .collect();
    let (status, _) = post_json(&s, "/hooks/emqx/events", &json!(too_many));
    assert_eq!(status, 400);
}

#[test]
fn vernemq_webhooks() {
    let (s, device, _) = fleet();
    let call_hook = |name: &str, body: Value| {
        let (status, answer) =
            post_json_with(&s, "/hooks/vernemq", &[("vernemq-hook", name)], &body);
        assert_eq!(status, 200, "{name}: {answer}");
        answer
    };
    let register = |password: &str| {
        json!({"peer_addr": "127.0.0.1", "peer_port": 8888, "username": "dev-1@acme",
               "password": password, "mountpoint": "", "client_id": "dev-1",
               "clean_session": false})
    };
    let not_allowed = json!({"result": {"error": "not_allowed"}});
    assert_eq!(
        call_hook("auth_on_register", register("wrong")),
        not_allowed
    );
    assert_eq!(
        call_hook("auth_on_register", register(&device)),
        json!({"result": "ok"})
    );
    let d = get(&s, "/api/v1/accounts/acme/devices/dev-1").1;
    assert_eq!(d["connection"], "CONNECTED", "{d}");
    let mut m5 = register(&device);
    m5["properties"] = json!({});
    assert_eq!(
        call_hook("auth_on_register_m5", m5),
        json!({"result": "ok"})
    );

    let subscribe = |topics: Value| {
        json!({"username": "dev-1@acme", "client_id": "dev-1", "mountpoint": "",
               "topics": topics})
    };
    assert_eq!(
        call_hook(
            "auth_on_subscribe",
            subscribe(json!([{"topic": "acme/dev-1/cmd", "qos": 1}]))
        ),
        json!({"result": "ok"})
    );
    assert_eq!(
        call_hook(
            "auth_on_subscribe",
            subscribe(json!([{"topic": "acme/dev-1/cmd", "qos": 1},
                             {"topic": "acme/#", "qos": 2}]))
        ),
        json!({"result": "ok", "topics": [{"topic": "acme/dev-1/cmd", "qos": 1},
                                          {"topic": "acme/#", "qos": 128}]})
    );
    assert_eq!(
        call_hook(
            "auth_on_subscribe_m5",
            subscribe(json!([{"topic": "#", "qos": 0}]))
        ),
        not_allowed
    );
    let publish = |topic: &str| {
        json!({"username": "dev-1@acme", "client_id": "dev-1", "mountpoint": "", "qos": 1,
               "topic": topic, "payload": "aGVsbG8=", "retain": false})
    };
    assert_eq!(
        call_hook("auth_on_publish", publish("acme/dev-1/telemetry")),
        json!({"result": "ok"})
    );
    assert_eq!(
        call_hook("auth_on_publish_m5", publish("acme/dev-9/x")),
        not_allowed
    );
    // The documentation's own sample payload is not base64: decided all the same.
    let mut raw = publish("acme/dev-1/telemetry");
    raw["payload"] = json!("hello");
    assert_eq!(call_hook("auth_on_publish", raw), json!({"result": "ok"}));

    assert_eq!(
        call_hook(
            "on_client_offline",
            json!({"mountpoint": "", "client_id": "dev-1"})
        ),
        json!({})
    );
    let d = get(&s, "/api/v1/accounts/acme/devices/dev-1").1;
    assert_eq!(d["connection"], "DISCONNECTED", "{d}");
    assert_eq!(
        call_hook(
            "on_client_gone",
            json!({"mountpoint": "", "client_id": "never-seen"})
        ),
        json!({})
    );
}

/// Percent-encodes a form value (generated passwords hold `+`, `%`, `&`...).
fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn rabbitmq_backend() {
    let (s, device, app) = fleet();
    let user = |form: String| rabbit(&s, "user", &form);
    let (status, ct, body) = user(format!(
        "username={}&password={}&client_id=dev-1&vhost=%2F&ip=10.0.0.1",
        enc("dev-1@acme"),
        enc(&device)
    ));
    assert_eq!(
        (status, ct.as_str(), body.as_str()),
        (200, "text/plain", "allow")
    );
    assert_eq!(
        user(format!(
            "username={}&password=wrong&client_id=dev-1",
            enc("dev-1@acme")
        ))
        .2,
        "deny"
    );
    assert_eq!(
        user(format!(
            "username={}&password={}",
            enc("dev-1@acme"),
            enc(&device)
        ))
        .2,
        "deny",
        "no client ID: undecidable, refused"
    );
    // GET with the parameters in the query, next to the token.
    let (_, _, body) = hook(
        &s,
        "GET",
        &format!(
            "/hooks/rabbitmq/user?token=test-hooks-token-0123456789&username=dash%40acme&password={}&client_id=dash-1",
            enc(&app)
        ),
        &[],
        b"",
    );
    assert_eq!(body, "allow");

    let (_, _, body) = rabbit(&s, "vhost", "username=dev-1%40acme&vhost=%2F&ip=10.0.0.1");
    assert_eq!(body, "allow");
    assert_eq!(
        rabbit(&s, "vhost", "username=nobody%40acme&vhost=%2F").2,
        "deny"
    );
    for (form, expected) in [
        ("resource=exchange&name=amq.topic&permission=write", "allow"),
        (
            "resource=queue&name=mqtt-subscription-dev-1qos1&permission=configure",
            "allow",
        ),
        ("resource=queue&name=other-queue&permission=read", "deny"),
        ("resource=exchange&name=amq.direct&permission=write", "deny"),
    ] {
        let (_, _, body) = rabbit(
            &s,
            "resource",
            &format!("username=dev-1%40acme&vhost=%2F&{form}"),
        );
        assert_eq!(body, expected, "{form}");
    }
    for (key, permission, expected) in [
        ("acme.dev-1.telemetry", "write", "allow"),
        ("acme.dev-2.telemetry", "write", "deny"),
        ("acme.dev-1.#", "read", "allow"),
        ("acme.*.telemetry", "read", "deny"),
    ] {
        let (_, _, body) = rabbit(
            &s,
            "topic",
            &format!(
                "username=dev-1%40acme&vhost=%2F&resource=topic&name=amq.topic&permission={permission}&routing_key={key}&variable_map.client_id=dev-1&variable_map.username=dev-1%40acme&variable_map.vhost=%2F"
            ),
        );
        assert_eq!(body, expected, "{permission} {key}");
    }
}

#[test]
fn mosquitto_go_auth_backend() {
    let (s, device, _) = fleet();
    let user = |password: &str| {
        post_json(
            &s,
            "/hooks/mosquitto-go-auth/user",
            &json!({"username": "dev-1@acme", "password": password, "clientid": "dev-1"}),
        )
    };
    assert_eq!(user(&device), (200, json!({"Ok": true, "Error": ""})));
    assert_eq!(user("wrong").1, json!({"Ok": false, "Error": ""}));
    let (_, su) = post_json(
        &s,
        "/hooks/mosquitto-go-auth/superuser",
        &json!({"username": "dev-1@acme"}),
    );
    assert_eq!(su, json!({"Ok": false, "Error": ""}));
    for (topic, acc, ok) in [
        ("acme/dev-1/telemetry", 2, true),
        ("acme/dev-2/telemetry", 2, false),
        ("acme/dev-1/cmd", 1, true),
        ("acme/dev-1/#", 4, true),
        ("acme/#", 4, false),
        ("acme/dev-1/x", 3, true),
    ] {
        let (_, answer) = post_json(
            &s,
            "/hooks/mosquitto-go-auth/acl",
            &json!({"username": "dev-1@acme", "clientid": "dev-1", "topic": topic, "acc": acc}),
        );
        assert_eq!(answer["Ok"], ok, "{topic} {acc}");
    }
}
