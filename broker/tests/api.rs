//! The admin REST API (API.md) over a real socket: every endpoint, every validation rule,
//! authentication and account isolation, paging, bulk all-or-nothing, limits, and that no
//! secret ever leaves in a response.

mod common;

use std::cell::RefCell;

use chrono::{Duration, SecondsFormat};
use common::TestServer;
use fleetgate_storage::ConnectionStatus;
use fleetgate_storage::ops::{
    self, Attempt, ExchangeAction, ExchangeStart, IdentityPlan, ReplyFate, RunningExchangeHandle,
};
use serde_json::{Value, json};

const PASSWORD: &str = "fleet-password-1";

/// One HTTP answer.
#[derive(Debug)]
struct Resp {
    status: u16,
    content_type: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a problem+json answer with `status`; returns the problem.
    fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.content_type, "application/problem+json",
            "{}",
            self.body
        );
        let p = self.json();
        assert_eq!(p["status"], status);
        assert!(p["type"].is_string() && p["title"].is_string() && p["detail"].is_string());
        assert!(p["errors"].is_array(), "{p}");
        p
    }

    /// The fields named by a problem's errors.
    fn error_fields(&self, status: u16) -> Vec<String> {
        self.problem(status)["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_string())
            .collect()
    }
}

/// A client that remembers every response body, to search them for secrets.
struct Client {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
    seen: RefCell<Vec<String>>,
}

impl Client {
    fn new(s: &TestServer, token: Option<&str>) -> Client {
        Client {
            base: s.admin_url(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent(),
            token: token.map(str::to_string),
            seen: RefCell::new(Vec::new()),
        }
    }

    fn admin(s: &TestServer) -> Client {
        Client::new(s, Some(s.admin_token()))
    }

    fn with_token(&self, token: Option<&str>) -> Client {
        Client {
            base: self.base.clone(),
            agent: self.agent.clone(),
            token: token.map(str::to_string),
            seen: RefCell::new(Vec::new()),
        }
    }

    fn raw(&self, method: &str, path: &str, body: Option<(&str, Vec<u8>)>) -> Resp {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let res = match body {
            Some((ct, b)) => {
                let req = if ct.is_empty() {
                    req
                } else {
                    req.header("Content-Type", ct)
                };
                self.agent.run(req.body(b).unwrap())
            }
            None => self.agent.run(req.body(()).unwrap()),
        };
        let mut res = res.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let headers: Vec<(String, String)> = res
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = res
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap_or_default();
        self.seen.borrow_mut().push(body.clone());
        Resp {
            status: res.status().as_u16(),
            content_type: res
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
            headers,
            body,
        }
    }

    fn get(&self, path: &str) -> Resp {
        self.raw("GET", path, None)
    }

    fn delete(&self, path: &str) -> Resp {
        self.raw("DELETE", path, None)
    }

    fn send(&self, method: &str, path: &str, body: &Value) -> Resp {
        self.raw(
            method,
            path,
            Some(("application/json", body.to_string().into_bytes())),
        )
    }

    fn post(&self, path: &str, body: &Value) -> Resp {
        self.send("POST", path, body)
    }

    fn put(&self, path: &str, body: &Value) -> Resp {
        self.send("PUT", path, body)
    }
}

fn account(c: &Client, name: &str, extra: Value) -> Value {
    let mut body = json!({ "name": name });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = c.post("/api/v1/accounts", &body);
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

fn body(client_id: &str) -> Value {
    json!({
        "clientId": client_id,
        "provisionUsername": "fleet",
        "provisionPassword": PASSWORD,
        "confirmProvisionPassword": PASSWORD,
        "brokerUrl": "mqtts://broker.acme.example:8883",
    })
}

fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

fn without(mut v: Value, field: &str) -> Value {
    v.as_object_mut().unwrap().remove(field);
    v
}

const REQS: &str = "/api/v1/accounts/acme/provision-requests";

fn create(c: &Client, b: &Value) -> Value {
    let r = c.post(REQS, b);
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

fn attempt(s: &TestServer, id: &str) -> Attempt {
    Attempt {
        request_id: id.to_string(),
        protocol: "5.0".into(),
        peer: "127.0.0.1:40000".into(),
        now: s.app().clock.now(),
    }
}

/// Starts an exchange through the store, as the provisioning endpoint would: the request
/// becomes RUNNING and the device's user, connection and registry entry exist.
fn start_exchange(s: &TestServer, id: &str, client_id: &str) -> Box<RunningExchangeHandle> {
    let start = s
        .app()
        .store
        .write(ops::begin_exchange(
            attempt(s, id),
            "r-1".into(),
            ExchangeAction::Provision(IdentityPlan {
                username: format!("{client_id}@acme"),
                password_hash: fleetgate_auth_hook::credentials::fast_hash("Generated-Pass-123!"),
                configurations: 1,
            }),
            fleetgate_storage::ProvisioningProtocol::ProvV1,
        ))
        .unwrap();
    match start {
        ExchangeStart::Started {
            running: Some(running),
            ..
        } => running,
        other => panic!("exchange not started: {other:?}"),
    }
}

fn finish_exchange(s: &TestServer, running: Box<RunningExchangeHandle>, fate: ReplyFate) {
    assert!(
        s.app()
            .store
            .write(ops::finish_exchange(running, fate, s.app().clock.now()))
            .unwrap()
    );
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[test]
fn unauthenticated_and_unknown_callers_get_401_problem() {
    let s = TestServer::start();
    let admin = Client::admin(&s);
    account(&admin, "acme", json!({}));
    for token in [None, Some("wrong"), Some("fgt_nope_nope"), Some("")] {
        let c = admin.with_token(token);
        for (method, path) in [
            ("GET", "/api/v1/accounts"),
            ("GET", "/api/v1/accounts/acme"),
            ("GET", REQS),
            ("POST", REQS),
            ("GET", "/api/v1/accounts/acme/devices"),
        ] {
            let r = if method == "POST" {
                c.post(path, &body("dev-1"))
            } else {
                c.get(path)
            };
            r.problem(401);
            assert!(
                r.header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer")),
                "{method} {path}: {:?}",
                r.headers
            );
        }
    }
    // The admin token under another scheme is not a bearer token.
    let req = ureq::http::Request::builder()
        .uri(format!("{}/api/v1/accounts", s.admin_url()))
        .header("Authorization", format!("Basic {}", s.admin_token()))
        .body(())
        .unwrap();
    let res = admin.agent.run(req).unwrap();
    assert_eq!(res.status().as_u16(), 401);
    // The scheme is case-insensitive.
    let req = ureq::http::Request::builder()
        .uri(format!("{}/api/v1/accounts", s.admin_url()))
        .header("Authorization", format!("bearer {}", s.admin_token()))
        .body(())
        .unwrap();
    assert_eq!(admin.agent.run(req).unwrap().status().as_u16(), 200);
    // Even a malformed or oversized body answers 401 first.
    let r = admin
        .with_token(None)
        .raw("POST", REQS, Some(("application/json", b"{oops".to_vec())));
    r.problem(401);
    // No auth needed for operations endpoints.
    let anon = admin.with_token(None);
    assert_eq!(anon.get("/healthz").status, 200);
    assert_eq!(anon.get("/metrics").status, 200);
    assert_eq!(anon.get("/api/v1/openapi.json").status, 200);
}

#[test]
fn unknown_paths_and_methods_are_problems() {
    let s = TestServer::start();
    let c = Client::admin(&s);
    c.get("/nope").problem(404);
    c.get("/api/v1/nope").problem(404);
    let r = c.delete("/api/v1/accounts");
    r.problem(405);
    assert_eq!(r.header("allow"), Some("POST, GET"));
}

#[test]
fn accounts_create_list_get_and_conflicts() {
    let s = TestServer::start();
    let c = Client::admin(&s);
    let a = account(
        &c,
        "acme",
        json!({"minPasswordLength": 24, "defaultCoupling": "STRICT"}),
    );
    assert_eq!(a["name"], "acme");
    assert_eq!(a["minPasswordLength"], 24);
    assert_eq!(a["defaultCoupling"], "STRICT");
    assert!(a["createdOn"].as_str().unwrap().ends_with('Z'));
    let b = account(&c, "beta-2", json!({}));
    assert_eq!(b["minPasswordLength"], 20);
    assert_eq!(b["defaultCoupling"], "LOOSE");

    // Taken names, the provisioning account's included.
    for name in ["acme", "provision"] {
        let r = c.post("/api/v1/accounts", &json!({ "name": name }));
        assert_eq!(r.error_fields(409), ["name"]);
    }
    for (b, field) in [
        (json!({"name": "Acme"}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "a_b"}), "name"),
        (json!({"name": "a@b"}), "name"),
        (json!({ "name": "a".repeat(65) }), "name"),
        (json!({"name": 5}), "name"),
        (json!({}), "name"),
        (
            json!({"name": "x", "minPasswordLength": 0}),
            "minPasswordLength",
        ),
        (
            json!({"name": "x", "minPasswordLength": 129}),
            "minPasswordLength",
        ),
        (
            json!({"name": "x", "minPasswordLength": "20"}),
            "minPasswordLength",
        ),
        (
            json!({"name": "x", "defaultCoupling": "INHERITED"}),
            "defaultCoupling",
        ),
        (
            json!({"name": "x", "defaultCoupling": "loose"}),
            "defaultCoupling",
        ),
    ] {
        let r = c.post("/api/v1/accounts", &b);
        assert_eq!(r.error_fields(422), [field], "{b}");
    }
    assert_eq!(
        c.get("/api/v1/accounts/x").status,
        404,
        "nothing was created"
    );

    let list = c.get("/api/v1/accounts");
    assert_eq!(list.status, 200);
    let names: Vec<String> = list.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["acme", "beta-2"],
        "the provisioning account is not a target"
    );
    let one = c.get("/api/v1/accounts/acme");
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["minPasswordLength"], 24);
    c.get("/api/v1/accounts/provision").problem(404);
    c.get("/api/v1/accounts/zzz").problem(404);
    c.post("/api/v1/accounts/provision/tokens", &json!({}))
        .problem(404);
}

#[test]
fn account_tokens_act_only_inside_their_account() {
    let s = TestServer::start();
    let admin = Client::admin(&s);
    account(&admin, "acme", json!({}));
    account(&admin, "other", json!({}));
    let r = admin.post("/api/v1/accounts/acme/tokens", &json!({}));
    assert_eq!(r.status, 201, "{}", r.body);
    let t = r.json();
    let (id, token) = (t["id"].as_str().unwrap(), t["token"].as_str().unwrap());
    assert!(token.starts_with(&format!("fgt_{id}_")), "{token}");
    let stored = s.app().store.read().unwrap().token(id).unwrap().unwrap();
    assert!(!stored.secret_hash.contains(&token[token.len() - 20..]));

    let acme = admin.with_token(Some(token));
    let mine = create(&acme, &body("dev-1"));
    assert_eq!(mine["account"], "acme");
    let other_req = create(&admin, &body("dev-2"));
    let theirs = {
        let r = admin.post(
            "/api/v1/accounts/other/provision-requests",
            &with(
                with(body("dev-3"), "provisionUsername", json!("other-fleet")),
                "clientId",
                json!("dev-3"),
            ),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()
    };
    // Own account: everything works.
    assert_eq!(acme.get("/api/v1/accounts/acme").status, 200);
    assert_eq!(
        acme.get(&format!("{REQS}/{}", other_req["id"].as_str().unwrap()))
            .status,
        200
    );
    let list = acme.get("/api/v1/accounts");
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(list.json()["items"][0]["name"], "acme");
    // Another account: 404 everywhere, as if it did not exist.
    let tid = theirs["id"].as_str().unwrap();
    for path in [
        "/api/v1/accounts/other".to_string(),
        "/api/v1/accounts/other/provision-requests".to_string(),
        format!("/api/v1/accounts/other/provision-requests/{tid}"),
        format!("/api/v1/accounts/other/provision-requests/{tid}/executions"),
        format!("/api/v1/accounts/other/provision-requests/{tid}/configuration-preview"),
        "/api/v1/accounts/other/users".to_string(),
        "/api/v1/accounts/other/devices".to_string(),
        "/api/v1/accounts/nonexistent".to_string(),
    ] {
        acme.get(&path).problem(404);
    }
    acme.delete(&format!("/api/v1/accounts/other/provision-requests/{tid}"))
        .problem(404);
    acme.post("/api/v1/accounts/other/tokens", &json!({}))
        .problem(404);
    acme.post("/api/v1/accounts/other/provision-requests", &body("dev-9"))
        .problem(404);
    // A request id of another account under one's own account path: 404 too.
    acme.get(&format!("{REQS}/{tid}")).problem(404);
    // Account tokens cannot create accounts.
    acme.post("/api/v1/accounts", &json!({"name": "mine"}))
        .problem(403);
    assert_eq!(
        s.app()
            .store
            .read()
            .unwrap()
            .request(tid)
            .unwrap()
            .unwrap()
            .account,
        "other"
    );

    // Revocation.
    admin
        .delete(&format!("/api/v1/accounts/other/tokens/{id}"))
        .problem(404);
    assert_eq!(
        admin
            .delete(&format!("/api/v1/accounts/acme/tokens/{id}"))
            .status,
        204
    );
    acme.get("/api/v1/accounts/acme").problem(401);
    admin
        .delete(&format!("/api/v1/accounts/acme/tokens/{id}"))
        .problem(404);
}

#[test]
fn every_request_validation_rule_answers_422_with_its_field() {
    let s = TestServer::start();
    let c = Client::admin(&s);
    account(&c, "acme", json!({"minPasswordLength": 24}));
    let now = s.app().clock.now();
    let xml = |props: &str| {
        format!(
            "<configurations><configuration><id>org.example.App</id><properties>{props}</properties></configuration></configurations>"
        )
    };
    let good_prop = r#"<property name="x" array="false" encrypted="false" type="Integer"><value>5</value></property>"#;
    let cases: Vec<(Value, &str)> = vec![
        (without(body("d"), "clientId"), "clientId"),
        (with(body("d"), "clientId", json!("")), "clientId"),
        (with(body("d"), "clientId", json!("a/b")), "clientId"),
        (with(body("d"), "clientId", json!("a+b")), "clientId"),
        (with(body("d"), "clientId", json!("a#b")), "clientId"),
        (with(body("d"), "clientId", json!("a b")), "clientId"),
        (with(body("d"), "clientId", json!("dé")), "clientId"),
        (
            with(body("d"), "clientId", json!("a".repeat(256))),
            "clientId",
        ),
        (with(body("d"), "clientId", json!(42)), "clientId"),
        (without(body("d"), "provisionUsername"), "provisionUsername"),
        (
            with(body("d"), "provisionUsername", json!("ab")),
            "provisionUsername",
        ),
        (
            with(body("d"), "provisionUsername", json!("a.b.c")),
            "provisionUsername",
        ),
        (
            with(body("d"), "provisionUsername", json!("a@bc")),
            "provisionUsername",
        ),
        (without(body("d"), "provisionPassword"), "provisionPassword"),
        (
            with(
                with(body("d"), "provisionPassword", json!("short")),
                "confirmProvisionPassword",
                json!("short"),
            ),
            "provisionPassword",
        ),
        (
            without(body("d"), "confirmProvisionPassword"),
            "confirmProvisionPassword",
        ),
        (
            with(
                body("d"),
                "confirmProvisionPassword",
                json!("other-password"),
            ),
            "confirmProvisionPassword",
        ),
        (without(body("d"), "brokerUrl"), "brokerUrl"),
        (
            with(body("d"), "brokerUrl", json!("http://h:80")),
            "brokerUrl",
        ),
        (with(body("d"), "brokerUrl", json!("h:1883")), "brokerUrl"),
        (
            with(body("d"), "brokerUrl", json!("mqtt://:1883")),
            "brokerUrl",
        ),
        (
            with(body("d"), "brokerUrl", json!("mqtt://h:0")),
            "brokerUrl",
        ),
        (
            with(body("d"), "brokerUrl", json!("mqtt://h:70000")),
            "brokerUrl",
        ),
        (
            with(body("d"), "brokerUrl", json!("mqtt://h:port")),
            "brokerUrl",
        ),
        (
            with(body("d"), "activatesOn", json!("tomorrow")),
            "activatesOn",
        ),
        (with(body("d"), "activatesOn", json!(12)), "activatesOn"),
        (
            with(
                body("d"),
                "expiresOn",
                json!(rfc3339(now - Duration::hours(1))),
            ),
            "expiresOn",
        ),
        (
            with(
                with(
                    body("d"),
                    "activatesOn",
                    json!(rfc3339(now + Duration::days(2))),
                ),
                "expiresOn",
                json!(rfc3339(now + Duration::days(1))),
            ),
            "expiresOn",
        ),
        (
            with(body("d"), "generateActivationKey", json!("yes")),
            "generateActivationKey",
        ),
        (with(body("d"), "reserveUser", json!(1)), "reserveUser"),
        (with(body("d"), "vpnAccess", json!("false")), "vpnAccess"),
        (
            with(body("d"), "connectionCoupling", json!("loose")),
            "connectionCoupling",
        ),
        (
            with(body("d"), "connectionCoupling", json!("TIGHT")),
            "connectionCoupling",
        ),
        (
            with(body("d"), "passwordLength", json!(20)),
            "passwordLength",
        ),
        (
            with(body("d"), "passwordLength", json!(23)),
            "passwordLength",
        ),
        (
            with(body("d"), "passwordLength", json!(129)),
            "passwordLength",
        ),
        (
            with(body("d"), "passwordLength", json!(24.5)),
            "passwordLength",
        ),
        (
            with(body("d"), "passwordLength", json!("24")),
            "passwordLength",
        ),
        (
            with(
                body("d"),
                "additionalConfiguration",
                json!("<configurations>"),
            ),
            "additionalConfiguration",
        ),
        (
            with(
                body("d"),
                "additionalConfiguration",
                json!(xml(&good_prop.replace("Integer", "Int"))),
            ),
            "additionalConfiguration",
        ),
        (
            with(
                body("d"),
                "additionalConfiguration",
                json!(xml(
                    &good_prop.replace("<value>5</value>", "<value>five</value>")
                )),
            ),
            "additionalConfiguration",
        ),
        (
            with(
                body("d"),
                "additionalConfiguration",
                json!(xml(&good_prop.replace(
                    "<value>5</value>",
                    "<value>5</value><value>6</value>"
                ))),
            ),
            "additionalConfiguration",
        ),
        (
            with(
                body("d"),
                "additionalConfiguration",
                json!(xml(&good_prop.replace("<value>5</value>", ""))),
            ),
            "additionalConfiguration",
        ),
        (
            with(
                body("d"),
                "additionalConfiguration",
                json!(format!(
                    "<configurations>{}</configurations>",
                    " ".repeat(257 * 1024)
                )),
            ),
            "additionalConfiguration",
        ),
        (
            with(body("d"), "additionalConfiguration", json!(7)),
            "additionalConfiguration",
        ),
        (json!([body("d")]), ""),
        (json!("text"), ""),
    ];
    for (b, field) in &cases {
        let r = c.post(REQS, b);
        assert_eq!(
            r.error_fields(422),
            [*field],
            "{}",
            &b.to_string()[..b.to_string().len().min(300)]
        );
    }
    // Line and column of a bad XML document.
    let r = c.post(
        REQS,
        &with(
            body("d"),
            "additionalConfiguration",
            json!("<configurations>\n  <configuration>\n"),
        ),
    );
    let msg = r.problem(422)["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("line"), "{msg}");
    // Every error at once.
    let r = c.post(REQS, &json!({}));
    let fields = r.error_fields(422);
    for f in [
        "clientId",
        "provisionUsername",
        "provisionPassword",
        "confirmProvisionPassword",
        "brokerUrl",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} in {fields:?}");
    }
    // Nothing was created by any of that.
    let list = c.get(REQS).json();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    // The limits themselves are fine.
    for (f, v) in [
        ("clientId", json!("a".repeat(255))),
        ("passwordLength", json!(24)),
        ("passwordLength", json!(128)),
        ("brokerUrl", json!("wss://h/mqtt")),
        ("additionalConfiguration", json!(xml(good_prop))),
    ] {
        let b = with(body(&format!("ok-{f}")), f, v.clone());
        let r = c.post(REQS, &b);
        assert_eq!(r.status, 201, "{f}={v}: {}", r.body);
        let id = r.json()["id"].as_str().unwrap().to_string();
        assert_eq!(c.delete(&format!("{REQS}/{id}")).status, 204);
    }
}

#[test]
fn malformed_bodies_media_types_and_limits() {
    let s = TestServer::start();
    let c = Client::admin(&s);
    account(&c, "acme", json!({}));
    for bad in [
        &b"{"[..],
        b"{\"clientId\": }",
        b"",
        b"   ",
        b"nul",
        b"{\"a\":1}}",
    ] {
        c.raw("POST", REQS, Some(("application/json", bad.to_vec())))
            .problem(400);
        c.raw(
            "POST",
            "/api/v1/accounts",
            Some(("application/json", bad.to_vec())),
        )
        .problem(400);
    }
    c.raw(
        "POST",
        REQS,
        Some(("text/plain", body("d").to_string().into_bytes())),
    )
    .problem(415);
    // `curl -d` labels JSON bodies form-urlencoded: read as JSON, so `a=b` is malformed JSON.
    c.raw(
        "POST",
        REQS,
        Some(("application/x-www-form-urlencoded", b"a=b".to_vec())),
    )
    .problem(400);
    // No content type at all is accepted; so is a charset parameter.
    let r = c.raw(
        "POST",
        REQS,
        Some(("", body("d-1").to_string().into_bytes())),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = c.raw(
        "POST",
        REQS,
        Some((
            "application/json; charset=utf-8",
            body("d-2").to_string().into_bytes(),
        )),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    // Over the 1 MiB default limit: 413, even though it is valid JSON.
    let limit = s.app().config.admin.body_limit;
    let big = with(body("d-3"), "pad", json!("x".repeat(limit)));
    let r = c.post(REQS, &big);
    r.problem(413);
    let r = c.post(
        "/api/v1/accounts",
        &json!({"name": "big", "pad": "x".repeat(limit)}),
    );
    r.problem(413);
    assert_eq!(c.get("/api/v1/accounts/big").status, 404);
    // The bulk endpoint has its own, larger limit.
    let rows: Vec<Value> = (0..6000).map(|i| body(&format!("bulk-{i}"))).collect();
    let bulk = json!({ "requests": rows });
    assert!(bulk.to_string().len() > limit);
    let r = c.post(&format!("{REQS}/bulk"), &bulk);
    assert_eq!(r.status, 201, "{}", &r.body[..r.body.len().min(500)]);
    let bulk_limit = s.app().config.admin.bulk_body_limit;
    let r = c.raw(
        "POST",
        &format!("{REQS}/bulk"),
        Some(("application/json", vec![b' '; bulk_limit + 1])),
    );
    r.problem(413);
}

#[test]
fn create_response_shape_defaults_and_activation_key() {
    let s = TestServer::start();
    let c = Client::admin(&s);
    account(&c, "acme", json!({"minPasswordLength": 24}));
    let now = s.app().clock.now();
    let r = c.post(REQS, &body("dev-1"));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.content_type, "application/json");
    let v = r.json();
    let id = v["id"].as_str().unwrap();
    assert_eq!(r.header("location"), Some(format!("{REQS}/{id}").as_str()));
    assert_eq!(v["account"], "acme");
    assert_eq!(v["clientId"], "dev-1");
    assert_eq!(v["provisionUsername"], "fleet");
    assert_eq!(v["brokerUrl"], "mqtts://broker.acme.example:8883");
    assert_eq!(v["status"], "CREATED");
    assert_eq!(v["closed"], false);
    assert_eq!(v["reserveUser"], true);
    assert_eq!(v["vpnAccess"], false);
    assert_eq!(v["generateActivationKey"], false);
    assert_eq!(v["connectionCoupling"], "INHERITED");
    assert_eq!(v["passwordLength"], 24, "max(20, account minimum)");
    assert_eq!(v["expiresOn"], Value::Null);
    assert_eq!(v["lastRejection"], Value::Null);
    assert_eq!(
        v["warnings"],
        json!(["brokerUrl mqtts://broker.acme.example:8883 is not a known broker endpoint"]),
        "API.md: a brokerUrl outside the known endpoints is warned about"
    );
    assert_eq!(v["additionalConfiguration"], Value::Null);
    let activates =
        chrono::DateTime::parse_from_rfc3339(v["activatesOn"].as_str().unwrap()).unwrap();
    assert!(
        (activates.timestamp() - now.timestamp()).abs() <= 1,
        "defaults to now"
    );
    for f in ["createdOn", "modifiedOn", "activatesOn"] {
        let t = v[f].as_str().unwrap();
        assert!(t.ends_with('Z'), "{f}={t} is UTC");
        chrono::DateTime::parse_from_rfc3339(t).unwrap();
    }
    for secret in [
        "provisionPassword",
        "confirmProvisionPassword",
        "activationKey",
        "passwordHash",
        "activationKeyHash",
    ] {
        assert!(v.get(secret).is_none(), "{secret} in {v}");
    }

    // With every field given.
    let start = rfc3339(now + Duration::hours(1));
    let end = "2099-01-01T00:00:00+02:00";
    let full = json!({
        "clientId": "dev-2",
        "provisionUsername": "fleet",
        "provisionPassword": PASSWORD,
        "confirmProvisionPassword": PASSWORD,
        "brokerUrl": "tcp://10.0.0.1",
        "activatesOn": start,
        "expiresOn": end,
        "generateActivationKey": true,
        "reserveUser": false,
        "connectionCoupling": "STRICT",
        "vpnAccess": true,
        "passwordLength": 64,
        "additionalConfiguration": "<configurations><configuration><id>org.eclipse.kura.core.data.transport.mqtt.MqttDataTransport</id><properties><property name=\"password\" array=\"false\" encrypted=\"false\" type=\"Password\"><value>mine</value></property><property name=\"keep-alive\" array=\"false\" encrypted=\"false\" type=\"Integer\"><value>30</value></property></properties></configuration></configurations>",
    });
    let v = create(&c, &full);
    assert_eq!(v["activatesOn"], start);
    assert_eq!(v["expiresOn"], "2098-12-31T22:00:00Z", "normalised to UTC");
    assert_eq!(v["generateActivationKey"], true);
    assert_eq!(v["reserveUser"], false);
    assert_eq!(v["connectionCoupling"], "STRICT");
    assert_eq!(v["vpnAccess"], true);
    assert_eq!(v["passwordLength"], 64);
    let warnings = v["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{v}");
    assert!(warnings[0].as_str().unwrap().contains("password"));
    assert!(
        warnings[1]
            .as_str()
            .unwrap()
            .contains("not a known broker endpoint")
    );
    assert!(!v["warnings"].to_string().contains("mine"));
    let key = v["activationKey"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 32);
    assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()));
    let id = v["id"].as_str().unwrap();
    // Stored only as a hash, shown once.
    let stored = s.app().store.read().unwrap().request(id).unwrap().unwrap();
    let hash = stored.activation_key_hash.unwrap();
    assert!(fleetgate_auth_hook::credentials::fast_verify(&key, &hash));
    let again = c.get(&format!("{REQS}/{id}"));
    assert_eq!(again.status, 200);
    assert!(again.json().get("activationKey").is_none());
    assert_eq!(again.json()["generateActivationKey"], true);
    let listed = c.get(REQS).json();
    assert!(!listed.to_string().contains(&key));
    c.get(&format!("{REQS}/nope")).problem(404);
}

#[test]
fn uniqueness_conflicts_answer_409() {
    let s = TestServer::start();
    let c = Client::admin(&s);
    account(&c, "acme", json!({}));
    account(&c, "other", json!({}));
    create(&c, &body("dev-1"));
    // Open request for the client ID, in any account.
    assert_eq!(c.post(REQS, &body("dev-1")).error_fields(409), ["clientId"]);
    let r = c.post(
        "/api/v1/accounts/other/provision-requests",
        &with(body("dev-1"), "provisionUsername", json!("other-fleet")),
    );
    assert_eq!(r.error_fields(409), ["clientId"]);
    // The provision username belongs to acme.
    let r = c.post("/api/v1/accounts/other/provision-requests", &body("dev-2"));
    assert_eq!(r.error_fields(409), ["provisionUsername"]);
    // Same account, same username, other password.
    let other_pw = with(
        with(
            body("dev-2"),
            "provisionPassword",
            json!("another-password"),
        ),
        "confirmProvisionPassword",
        json!("another-password"),
    );
    assert_eq!(
        c.post(REQS, &other_pw).error_fields(409),
        ["provisionPassword"]
    );
    // Same password: reused.
    create(&c, &body("dev-2"));
    let user = s
        .app()
        .store
        .read()
        .unwrap()
        .provision_user("fleet")
        .unwrap()
        .unwrap();
    assert_eq!(user.request_count, 2);
    // Nothing half-created by the conflicts.
    assert_eq!(c.get(REQS).json()["items"].as_array().unwrap().len(), 2);
    assert!(
        c.get("/api/v1/accounts/other/provision-requests").json()["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // A closed request frees its client ID.
    let first = c.get(&format!("{REQS}?clientId=dev-1")).json()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let x = start_exchange(&s, &first, "dev-1");
    finish_exchange(&s, x, ReplyFate::Acknowledged);
    let v = c.get(&format!("{REQS}/{first}")).json();
    assert_eq!(v["status"], "COMPLETED");
    assert_eq!(v["closed"], true);
    create(&c, &body("dev-1"));
}

#[test]
fn update_rules() {
    let s = TestServer::start();
    let c = Client::admin(&s);
    account(&c, "acme", json!({}));
    let v = create(&c, &body("dev-1"));
    let id = v["id"].as_str().unwrap().to_string();
    let path = format!("{REQS}/{id}");
    let created_on = v["createdOn"].clone();
    s.clock().advance(Duration::seconds(5));

    // Same username, new password: the request is its only user, so the password changes.
    let new_pw = with(
        with(
            with(body("dev-1b"), "provisionPassword", json!("new-password-2")),
            "confirmProvisionPassword",
            json!("new-password-2"),
        ),
        "vpnAccess",
        json!(true),
    );
    let r = c.put(&path, &new_pw);
    assert_eq!(r.status, 200, "{}", r.body);
    let u = r.json();
    assert_eq!(u["id"], id);
    assert_eq!(u["clientId"], "dev-1b");
    assert_eq!(u["vpnAccess"], true);
    assert_eq!(u["createdOn"], created_on);
    assert_ne!(u["modifiedOn"], created_on);
    assert!(u.get("activationKey").is_none());
    let user = s
        .app()
        .store
        .read()
        .unwrap()
        .provision_user("fleet")
        .unwrap()
        .unwrap();
    assert_eq!(user.request_count, 1);
    assert!(fleetgate_auth_hook::credentials::argon2_verify(
        b"new-password-2",
        &user.password_hash
    ));
    // Same body again (password matches now).
    assert_eq!(c.put(&path, &new_pw).status, 200);

    // A shared username cannot change password through one request.
    create(
        &c,
        &with(
            with(
                with(body("dev-2"), "provisionPassword", json!("new-password-2")),
                "confirmProvisionPassword",
                json!("new-password-2"),
            ),
            "clientId",
            json!("dev-2"),
        ),
    );
    let r = c.put(&path, &with(body("dev-1b"), "clientId", json!("dev-1b")));
    assert_eq!(r.error_fields(409), ["provisionPassword"]);
    // Validation.
    assert_eq!(
        c.put(&path, &with(new_pw.clone(), "brokerUrl", json!("ftp://x")))
            .error_fields(422),
        ["brokerUrl"]
    );
    c.raw("PUT", &path, Some(("application/json", b"{".to_vec())))
        .problem(400);
    // Client ID of another open request.
    assert_eq!(
        c.put(&path, &with(new_pw.clone(), "clientId", json!("dev-2")))
            .error_fields(409),
        ["clientId"]
    );
    // Moving to a new username releases the old one... which dev-2 still uses.
    let moved = with(
        with(
            with(body("dev-1b"), "provisionUsername", json!("solo")),
            "provisionPassword",
            json!("solo-password"),
        ),
        "confirmProvisionPassword",
        json!("solo-password"),
    );
    assert_eq!(c.put(&path, &moved).status, 200);
    let read = s.app().store.read().unwrap();
    assert_eq!(
        read.provision_user("fleet").unwrap().unwrap().request_count,
        1
    );
    assert_eq!(
        read.provision_user("solo").unwrap().unwrap().request_count,
        1
    );
    drop(read);

    // Activation key: generated when switched on, kept while on, cleared when off.
    let on = with(moved.clone(), "generateActivationKey", json!(true));
    let r = c.put(&path, &on).json();
    let key = r["activationKey"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 32);
    let r = c.put(&path, &on).json();
    assert!(r.get("activationKey").is_none(), "kept, not shown again");
    let hash = s
        .app()
        .store
        .read()
        .unwrap()
        .request(&id)
        .unwrap()
        .unwrap()
        .activation_key_hash
        .unwrap();
    assert!(fleetgate_auth_hook::credentials::fast_verify(&key, &hash));
    let r = c.put(&path, &moved).json();
    assert_eq!(r["generateActivationKey"], false);
    assert!(
        s.app()
            .store
            .read()
            .unwrap()
            .request(&id)
            .unwrap()
            .unwrap()
            .activation_key_hash
            .is_none()
    );

    // Unknown request: 404.
    c.put(&format!("{REQS}/0000000000000000000000000a"), &moved)
        .problem(404);
    // Only while CREATED.
    let x = start_exchange(&s, &id, "dev-1b");
    let r = c.put(&path, &moved);
    assert_eq!(r.error_fields(409), ["status"]);
    finish_exchange(&s, x, ReplyFate::Disconnected);
    assert_eq!(c.get(&path).json()["status"], "FAILED");
    c.put(&path, &moved).problem(409);
    assert_eq!(c.get(&path).json()["status"], "FAILED", "unchanged");
}

#[test]
fn delete_rules() {
    let s = TestServer::start();
    let c = Client::admin(&s);
    account(&c, "acme", json!({}));
    let a = create(&c, &body("dev-1"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = create(&c, &body("dev-2"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(c.delete(&format!("{REQS}/{a}")).status, 204);
    c.delete(&format!("{REQS}/{a}")).problem(404);
    c.get(&format!("{REQS}/{a}")).problem(404);
    start_exchange(&s, &b, "dev-2");
    let r = c.delete(&format!("{REQS}/{b}"));
    assert_eq!(r.error_fields(409), ["status"]);
    let r = c.delete(&format!("{REQS}/{b}?force=false"));
    r.problem(409);
    c.delete(&format!("{REQS}/{b}?force=maybe")).problem(422);
    assert_eq!(c.delete(&format!("{REQS}/{b}?force=true")).status, 204);
    c.get(&format!("{REQS}/{b}")).problem(404);
    c.get(&format!("{REQS}/{b}/executions")).problem(404);
    assert!(
        s.app()
            .store
            .read()
            .unwrap()
            .provision_user("fleet")
            .unwrap()
            .is_none()
    );
}

#[test]
fn bulk_is_all_or_nothing() {
    let s = TestServer::start();
    let c = Client::admin(&s);
    account(&c, "acme", json!({}));
    let bulk = format!("{REQS}/bulk");
    // One bad row: nothing is created, the row is named.
    let mut rows: Vec<Value> = (0..50).map(|i| body(&format!("dev-{i}"))).collect();
    rows[17] = with(rows[17].clone(), "brokerUrl", json!("nope"));
    rows[30] = without(rows[30].clone(), "clientId");
    let r = c.post(&bulk, &json!({ "requests": rows }));
    let p = r.problem(422);
    let errors: Vec<(u64, &str)> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(errors, [(17, "brokerUrl"), (30, "clientId")]);
    assert!(c.get(REQS).json()["items"].as_array().unwrap().is_empty());
    assert!(
        s.app()
            .store
            .read()
            .unwrap()
            .provision_user("fleet")
            .unwrap()
            .is_none()
    );

    // All good: created in order, keys where asked.
    rows[17] = body("dev-17");
    rows[30] = with(body("dev-30"), "generateActivationKey", json!(true));
    let r = c.post(&bulk, &json!({ "requests": rows }));
    assert_eq!(r.status, 201, "{}", &r.body[..r.body.len().min(400)]);
    let created = r.json()["created"].as_array().unwrap().clone();
    assert_eq!(created.len(), 50);
    for (i, v) in created.iter().enumerate() {
        assert_eq!(v["clientId"], format!("dev-{i}"));
        assert_eq!(v.get("activationKey").is_some(), i == 30);
    }
    assert_eq!(
        s.app()
            .store
            .read()
            .unwrap()
            .provision_user("fleet")
            .unwrap()
            .unwrap()
            .request_count,
        50
    );

    // Conflicts with the state or inside the batch: 409 by index, nothing created.
    let conflicting = json!({"requests": [
        body("new-0"),
        body("dev-3"),
        body("new-2"),
        body("new-2"),
        with(with(body("new-4"), "provisionPassword", json!("different-pw")), "confirmProvisionPassword", json!("different-pw")),
    ]});
    let r = c.post(&bulk, &conflicting);
    let p = r.problem(409);
    let fields: Vec<(u64, &str)> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(fields, [(4, "provisionPassword")]);
    let conflicting =
        json!({"requests": [body("new-0"), body("dev-3"), body("new-2"), body("new-2")]});
    let p = c.post(&bulk, &conflicting).problem(409);
    let fields: Vec<(u64, &str)> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(fields, [(1, "clientId"), (3, "clientId")]);
    // New users inside one batch must agree on their password.
    let r = c.post(&bulk, &json!({"requests": [
        with(body("n-1"), "provisionUsername", json!("fresh")),
        with(with(with(body("n-2"), "provisionUsername", json!("fresh")), "provisionPassword", json!("other-pass")), "confirmProvisionPassword", json!("other-pass")),
    ]}));
    let p = r.problem(409);
    assert_eq!(p["errors"][0]["index"], 1);
    assert_eq!(p["errors"][0]["field"], "provisionPassword");
    assert_eq!(
        c.get(&format!("{REQS}?limit=1000")).json()["items"]
            .as_array()
            .unwrap()
            .len(),
        50
    );
    assert!(
        s.app()
            .store
            .read()
            .unwrap()
            .provision_user("fresh")
            .unwrap()
            .is_none()
    );

    // Shape and size of the batch.
    c.post(&bulk, &json!({"requests": []})).problem(422);
    assert_eq!(c.post(&bulk, &json!({})).error_fields(422), ["requests"]);
    assert_eq!(
        c.post(&bulk, &json!({"requests": {}})).error_fields(422),
        ["requests"]
    );
    assert_eq!(c.post(&bulk, &json!([body("x")])).error_fields(422), [""]);
    let too_many: Vec<Value> = (0..10_001)
        .map(|i| json!({"clientId": format!("t-{i}")}))
        .collect();
    assert_eq!(
        c.post(&bulk, &json!({ "requests": too_many }))
            .error_fields(422),
        ["requests"]
    );
}

#[test]
fn a_full_bulk_of_ten_thousand_is_accepted() {
    let s = TestServer::start();
    let c = Client::admin(&s);
    account(&c, "acme", json!({}));
    let rows: Vec<Value> = (0..10_000).map(|i| body(&format!("dev-{i:05}"))).collect();
    let r = c.post(&format!("{REQS}/bulk"), &json!({ "requests": rows }));
    assert_eq!(r.status, 201, "{}", &r.body[..r.body.len().min(400)]);
    assert_eq!(r.json()["created"].as_array().unwrap().len(), 10_000);
    let page = c.get(&format!("{REQS}?limit=1000")).json();
    assert_eq!(page["items"].as_array().unwrap().len(), 1000);
    assert!(page["next"].is_string());
}

#[test]
fn paging_returns_every_request_exactly_once() {
    let s = TestServer::start();
    let c = Client::admin(&s);
    account(&c, "acme", json!({}));
    account(&c, "other", json!({}));
    let rows: Vec<Value> = (0..53).map(|i| body(&format!("dev-{i}"))).collect();
    let created = c.post(&format!("{REQS}/bulk"), &json!({ "requests": rows }));
    assert_eq!(created.status, 201);
    let mut expected: Vec<String> = created.json()["created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    // Noise in another account.
    c.post(
        "/api/v1/accounts/other/provision-requests",
        &with(body("x-1"), "provisionUsername", json!("other-user")),
    );
    for limit in [1, 7, 53, 100] {
        let mut seen = Vec::new();
        let mut url = format!("{REQS}?limit={limit}");
        let mut pages = 0;
        loop {
            let page = c.get(&url);
            assert_eq!(page.status, 200, "{}", page.body);
            let page = page.json();
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= limit);
            seen.extend(items.iter().map(|v| v["id"].as_str().unwrap().to_string()));
            pages += 1;
            match page["next"].as_str() {
                Some(next) => url = format!("{REQS}?limit={limit}&after={next}"),
                None => break,
            }
        }
        assert_eq!(seen, expected, "limit {limit}");
        assert_eq!(pages, 53usize.div_ceil(limit), "limit {limit}");
    }
    // Default page size 100.
    let all = c.get(REQS).json();
    assert_eq!(all["items"].as_array().unwrap().len(), 53);
    assert_eq!(all["next"], Value::Null);
    // Filters.
    let x = start_exchange(&s, &expected[5], "dev-5");
    let running = c.get(&format!("{REQS}?status=RUNNING")).json();
    assert_eq!(running["items"].as_array().unwrap().len(), 1);
    assert_eq!(running["items"][0]["id"], expected[5]);
    finish_exchange(&s, x, ReplyFate::Acknowledged);
    assert!(
        c.get(&format!("{REQS}?status=RUNNING")).json()["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let created_only = c.get(&format!("{REQS}?status=CREATED&limit=1000")).json();
    assert_eq!(created_only["items"].as_array().unwrap().len(), 52);
    let one = c.get(&format!("{REQS}?clientId=dev-7")).json();
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    assert_eq!(one["items"][0]["clientId"], "dev-7");
    assert!(
        c.get(&format!("{REQS}?clientId=x-1")).json()["items"]
            .as_array()
            .unwrap()
            .is_empty(),
        "other account's"
    );
    assert!(
        c.get(&format!("{REQS}?clientId=dev-7&status=FAILED"))
            .json()["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Paging with a filter.
    let mut seen = Vec::new();
    let mut url = format!("{REQS}?status=CREATED&limit=10");
    loop {
        let page = c.get(&url).json();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["id"].as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(n) => url = format!("{REQS}?status=CREATED&limit=10&after={n}"),
            None => break,
        }
    }
    expected.remove(5);
    assert_eq!(seen, expected);
    // Bad parameters.
    for q in ["limit=0", "limit=1001", "limit=-1", "limit=abc"] {
        assert_eq!(
            c.get(&format!("{REQS}?{q}")).error_fields(422),
            ["limit"],
            "{q}"
        );
    }
    assert_eq!(
        c.get(&format!("{REQS}?status=DONE")).error_fields(422),
        ["status"]
    );
    assert_eq!(
        c.get(&format!("{REQS}?after=garbage")).error_fields(422),
        ["after"]
    );
    assert_eq!(c.get(&format!("{REQS}?limit=1000")).status, 200);
}

#[test]
fn configuration_preview_is_the_masked_device_document() {
    let s = TestServer::start();
    let c = Client::admin(&s);
    account(&c, "acme", json!({}));
    let extra = "<configurations><configuration><id>org.eclipse.kura.core.data.transport.mqtt.MqttDataTransport</id><properties><property name=\"client-id\" array=\"false\" encrypted=\"false\" type=\"String\"><value>spoofed</value></property><property name=\"keep-alive\" array=\"false\" encrypted=\"false\" type=\"Integer\"><value>30</value></property></properties></configuration><configuration><id>org.example.Wifi</id><properties><property name=\"psk\" array=\"false\" encrypted=\"false\" type=\"Password\"><value>wifi-secret</value></property></properties></configuration></configurations>";
    let v = create(
        &c,
        &with(
            with(body("dev-1"), "additionalConfiguration", json!(extra)),
            "vpnAccess",
            json!(true),
        ),
    );
    let r = c.get(&format!(
        "{REQS}/{}/configuration-preview",
        v["id"].as_str().unwrap()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type, "application/xml");
    let xml = &r.body;
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        "{xml}"
    );
    for part in [
        "<id>org.eclipse.kura.core.data.transport.mqtt.MqttDataTransport</id>",
        "<property name=\"broker-url\" array=\"false\" encrypted=\"false\" type=\"String\"><value>mqtts://broker.acme.example:8883</value></property>",
        "<property name=\"topic.context.account-name\" array=\"false\" encrypted=\"false\" type=\"String\"><value>acme</value></property>",
        "<property name=\"client-id\" array=\"false\" encrypted=\"false\" type=\"String\"><value>dev-1</value></property>",
        "<property name=\"username\" array=\"false\" encrypted=\"false\" type=\"String\"><value>dev-1@acme</value></property>",
        "<property name=\"password\" array=\"false\" encrypted=\"false\" type=\"Password\"><value>********</value></property>",
        "<property name=\"keep-alive\" array=\"false\" encrypted=\"false\" type=\"Integer\"><value>30</value></property>",
        "<id>org.eclipse.kura.net.vpn.client.VpnClient</id>",
        "<id>org.example.Wifi</id>",
    ] {
        assert!(xml.contains(part), "{part} not in {xml}");
    }
    assert!(!xml.contains("spoofed"), "reserved property kept");
    assert!(!xml.contains("wifi-secret"), "passwords masked");
    assert!(!xml.contains(PASSWORD));
    assert_eq!(xml.matches("<value>********</value>").count(), 3);
    c.get(&format!("{REQS}/nope/configuration-preview"))
        .problem(404);
}

#[test]
fn executions_users_and_devices() {
    let s = TestServer::start();
    let c = Client::admin(&s);
    account(&c, "acme", json!({"defaultCoupling": "STRICT"}));
    let id = create(&c, &with(body("dev-1"), "vpnAccess", json!(true)))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!("{REQS}/{id}");
    assert_eq!(
        c.get(&format!("{base}/executions")).json(),
        json!({"items": []})
    );
    assert!(
        c.get("/api/v1/accounts/acme/users").json()["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        c.get("/api/v1/accounts/acme/devices").json()["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    c.get("/api/v1/accounts/acme/devices/dev-1").problem(404);

    let running = start_exchange(&s, &id, "dev-1");
    let x = running.execution_id().to_string();
    let list = c.get(&format!("{base}/executions")).json();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], x);
    assert_eq!(items[0]["outcome"], "RUNNING");
    assert_eq!(items[0]["protocol"], "5.0");
    assert_eq!(items[0]["peer"], "127.0.0.1:40000");
    assert_eq!(items[0]["endedOn"], Value::Null);
    assert!(items[0].get("log").is_none());
    finish_exchange(&s, running, ReplyFate::Acknowledged);
    let one = c.get(&format!("{base}/executions/{x}"));
    assert_eq!(one.status, 200);
    let one = one.json();
    assert_eq!(one["outcome"], "COMPLETED");
    assert!(one["endedOn"].is_string());
    let log = one["log"].as_array().unwrap();
    assert!(log.len() >= 3, "{one}");
    for line in log {
        assert!(line["at"].is_string() && line["message"].is_string());
        assert!(["INFO", "WARN", "ERROR"].contains(&line["level"].as_str().unwrap()));
    }
    c.get(&format!("{base}/executions/nope")).problem(404);

    // Users: never a hash.
    let users = c.get("/api/v1/accounts/acme/users").json();
    assert_eq!(
        users["items"][0],
        json!({
            "username": "dev-1@acme",
            "kind": "DEVICE",
            "permissions": ["broker:connect", "vpn:connect"],
            "reservedFor": "dev-1",
            "enabled": true,
            "createdOn": users["items"][0]["createdOn"],
        })
    );
    // Devices: registry entry merged with the connection entry.
    let d = c.get("/api/v1/accounts/acme/devices/dev-1").json();
    assert_eq!(d["clientId"], "dev-1");
    assert_eq!(d["status"], "ENABLED");
    assert_eq!(d["connection"], "NEVER_CONNECTED");
    assert_eq!(d["coupling"], "INHERITED");
    assert_eq!(d["effectiveCoupling"], "STRICT");
    assert_eq!(d["reservedUser"], "dev-1@acme");
    assert_eq!(d["provisionRequestId"], id);
    assert!(d["provisionedOn"].is_string());
    assert_eq!(d["lastConnectedOn"], Value::Null);
    s.app()
        .store
        .write(ops::set_connection_status(
            "acme".into(),
            "dev-1".into(),
            ConnectionStatus::Connected,
            s.app().clock.now(),
        ))
        .unwrap();
    let devices = c.get("/api/v1/accounts/acme/devices").json();
    assert_eq!(devices["items"].as_array().unwrap().len(), 1);
    assert_eq!(devices["items"][0]["connection"], "CONNECTED");
    assert!(devices["items"][0]["lastConnectedOn"].is_string());
    s.app()
        .store
        .write(ops::set_connection_status(
            "acme".into(),
            "dev-1".into(),
            ConnectionStatus::Disconnected,
            s.app().clock.now(),
        ))
        .unwrap();
    assert_eq!(
        c.get("/api/v1/accounts/acme/devices/dev-1").json()["connection"],
        "DISCONNECTED"
    );
    // Client IDs with reserved URL characters, percent-encoded.
    let odd = create(&c, &with(body("a:b@c"), "clientId", json!("a:b@c")))["id"]
        .as_str()
        .unwrap()
        .to_string();
    start_exchange(&s, &odd, "a:b@c");
    assert_eq!(
        c.get("/api/v1/accounts/acme/devices/a%3Ab%40c").json()["clientId"],
        "a:b@c"
    );
    assert_eq!(
        c.get(&format!("{REQS}?clientId=a%3Ab%40c")).json()["items"][0]["id"],
        odd
    );
}

#[test]
fn last_rejection_and_closed_are_reported() {
    let s = TestServer::start();
    let c = Client::admin(&s);
    account(&c, "acme", json!({}));
    let now = s.app().clock.now();
    let v = create(
        &c,
        &with(
            body("dev-1"),
            "expiresOn",
            json!(rfc3339(now + Duration::hours(1))),
        ),
    );
    let id = v["id"].as_str().unwrap().to_string();
    s.app()
        .store
        .write(ops::record_rejection(
            id.clone(),
            "bad user name or password: wrong password".into(),
            now,
        ))
        .unwrap();
    let v = c.get(&format!("{REQS}/{id}")).json();
    assert_eq!(
        v["lastRejection"]["reason"],
        "bad user name or password: wrong password"
    );
    assert!(v["lastRejection"]["at"].is_string());
    let x = start_exchange(&s, &id, "dev-1");
    finish_exchange(&s, x, ReplyFate::Disconnected);
    assert_eq!(c.get(&format!("{REQS}/{id}")).json()["closed"], false);
    s.clock().advance(Duration::hours(2));
    let v = c.get(&format!("{REQS}/{id}")).json();
    assert_eq!(v["status"], "FAILED");
    assert_eq!(v["closed"], true, "FAILED with expiresOn passed");
}

#[test]
fn no_secret_ever_appears_in_a_response() {
    let s = TestServer::start();
    let admin = Client::admin(&s);
    account(&admin, "acme", json!({}));
    let tok = admin
        .post("/api/v1/accounts/acme/tokens", &json!({}))
        .json();
    let token = tok["token"].as_str().unwrap().to_string();
    let c = admin.with_token(Some(&token));
    let v = create(
        &c,
        &with(body("dev-1"), "generateActivationKey", json!(true)),
    );
    let key = v["activationKey"].as_str().unwrap().to_string();
    let id = v["id"].as_str().unwrap().to_string();
    // Everything after creation, with both tokens.
    let bulk = c.post(
        &format!("{REQS}/bulk"),
        &json!({"requests": [body("dev-2"), with(body("dev-3"), "generateActivationKey", json!(false))]}),
    );
    assert_eq!(bulk.status, 201);
    let x = start_exchange(&s, &id, "dev-1").execution_id().to_string();
    for client in [&c, &admin] {
        client.get("/api/v1/accounts");
        client.get("/api/v1/accounts/acme");
        client.get(REQS);
        client.get(&format!("{REQS}/{id}"));
        client.get(&format!("{REQS}/{id}/configuration-preview"));
        client.get(&format!("{REQS}/{id}/executions"));
        client.get(&format!("{REQS}/{id}/executions/{x}"));
        client.get("/api/v1/accounts/acme/users");
        client.get("/api/v1/accounts/acme/devices");
        client.get("/api/v1/accounts/acme/devices/dev-1");
        client.put(&format!("{REQS}/{id}"), &body("dev-1"));
        client.post(REQS, &body("dev-1"));
        client.post(
            REQS,
            &with(
                body("dev-9"),
                "provisionPassword",
                json!("wrong-password-9"),
            ),
        );
        client.get("/metrics");
        client.get("/healthz");
        client.get("/api/v1/openapi.json");
    }
    let user_hash = s
        .app()
        .store
        .read()
        .unwrap()
        .provision_user("fleet")
        .unwrap()
        .unwrap()
        .password_hash;
    let key_hash = s
        .app()
        .store
        .read()
        .unwrap()
        .request(&id)
        .unwrap()
        .unwrap()
        .activation_key_hash;
    let token_secret = token.rsplit('_').next().unwrap().to_string();
    let stored_token = s
        .app()
        .store
        .read()
        .unwrap()
        .token(tok["id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    let mut all: Vec<String> = c.seen.borrow().iter().skip(1).cloned().collect(); // skip the create
    all.extend(admin.seen.borrow().iter().skip(2).cloned()); // skip account + token creation
    all.push(bulk.body.clone());
    assert!(all.len() > 30);
    for b in &all {
        for secret in [
            PASSWORD,
            "wrong-password-9",
            key.as_str(),
            token.as_str(),
            token_secret.as_str(),
            s.admin_token(),
            user_hash.as_str(),
            stored_token.secret_hash.as_str(),
            "$argon2",
            "hs256$",
            "Generated-Pass-123!",
        ] {
            assert!(!b.contains(secret), "{secret:?} leaked in {b}");
        }
        if let Some(h) = &key_hash {
            assert!(!b.contains(h.as_str()));
        }
    }
}

/// Checks every line of a Prometheus text exposition (format 0.0.4).
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    let mut typed = std::collections::HashMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match parts.next() {
                Some("HELP") => assert!(parts.next().is_some(), "{line}"),
                Some("TYPE") => {
                    let name = parts.next().unwrap().to_string();
                    let kind = parts.next().unwrap();
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "{line}"
                    );
                    assert!(
                        typed.insert(name, kind.to_string()).is_none(),
                        "TYPE twice: {line}"
                    );
                }
                _ => {}
            }
            continue;
        }
        assert!(!line.starts_with('#'), "{line}");
        let (name_labels, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let name = match name_labels.find('{') {
            Some(i) => {
                assert!(name_labels.ends_with('}'), "{line}");
                let labels = &name_labels[i + 1..name_labels.len() - 1];
                for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                    assert!(v.starts_with('"'), "{line}");
                }
                &name_labels[..i]
            }
            None => name_labels,
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "{line}"
        );
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
        };
        samples.push((name_labels.to_string(), v));
    }
    samples
}

#[test]
fn metrics_and_health() {
    let s = TestServer::start();
    let c = Client::admin(&s);
    account(&c, "acme", json!({}));
    create(&c, &body("dev-1"));
    let anon = c.with_token(None);
    let r = anon.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        r.content_type
    );
    let samples = parse_prometheus(&r.body);
    assert!(samples.len() > 10);
    let created = samples
        .iter()
        .find(|(n, _)| n == "fleetgate_requests{status=\"CREATED\"}")
        .unwrap_or_else(|| panic!("{}", r.body));
    assert!((created.1 - 1.0).abs() < f64::EPSILON);
    // The API's own requests, by route template (not path), method and status.
    let count = |labels: &str| {
        samples
            .iter()
            .find(|(n, _)| n == &format!("fleetgate_http_requests_total{{{labels}}}"))
            .map(|(_, v)| *v)
    };
    let created_request =
        r#"route="/api/v1/accounts/{account}/provision-requests",method="POST",status="201""#;
    assert_eq!(count(created_request), Some(1.0), "{}", r.body);
    assert!(samples.iter().any(|(n, v)| n
        .starts_with(r#"fleetgate_http_request_duration_seconds_count{route="/api/v1/accounts/{account}/provision-requests"}"#)
        && *v >= 1.0));
    for (name, _) in &samples {
        assert!(!name.contains("dev-1"), "paths never become labels: {name}");
    }
    // The standard process metrics sit beside Fleetgate's own.
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(samples.iter().any(|(n, v)| n == name && *v > 0.0), "{name}");
    }
    // OpenMetrics on request.
    let mut req = ureq::http::Request::builder()
        .uri(format!("{}/metrics", s.admin_url()))
        .header("Accept", "application/openmetrics-text; version=1.0.0");
    req = req.method("GET");
    let mut res = c.agent.run(req.body(()).unwrap()).unwrap();
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(
        res.body_mut()
            .read_to_string()
            .unwrap()
            .ends_with("# EOF\n")
    );

    let h = anon.get("/healthz");
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["status"], "ok");
    s.app()
        .ready
        .store(false, std::sync::atomic::Ordering::SeqCst);
    anon.get("/healthz").problem(503);
    s.app()
        .ready
        .store(true, std::sync::atomic::Ordering::SeqCst);
}

#[test]
fn openapi_document_is_served() {
    let s = TestServer::start();
    let r = Client::new(&s, None).get("/api/v1/openapi.json");
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("application/json"));
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (method, path) in fleetgate_api::ROUTES {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
}
