//! Known broker endpoints (API.md): the list with Fleetgate's own, admin-only changes, and the
//! `brokerUrl` warning or refusal (`provisioning.strict_broker_urls`).

mod common;

use common::*;
use serde_json::{Value, json};

const ENDPOINTS: &str = "/api/v1/endpoints";

fn eu() -> Value {
    json!({"name": "eu-cluster", "url": "mqtts://mqtt.eu.example:8883", "kind": "rabbitmq"})
}

fn request(client_id: &str, broker_url: &str) -> Value {
    let mut r = request_body(client_id, "fleet", "fleet-password-1");
    r["brokerUrl"] = json!(broker_url);
    r
}

#[test]
fn the_list_starts_with_fleetgates_own_endpoint() {
    let s = TestServer::start();
    let (status, list) = get(&s, ENDPOINTS);
    assert_eq!(status, 200);
    assert_eq!(
        list,
        json!({"items": [{"name": "fleetgate", "kind": "fleetgate",
                          "url": format!("mqtt://{}", s.operational_addr())}]})
    );
    let (status, added) = post(&s, ENDPOINTS, &eu());
    assert_eq!((status, added), (201, eu()));
    let (_, list) = get(&s, ENDPOINTS);
    assert_eq!(list["items"][1], eu());

    for (body, field) in [
        (json!({"name": "Bad Name", "url": "mqtt://h"}), "name"),
        (json!({"name": "x", "url": "http://h"}), "url"),
        (
            json!({"name": "x", "url": "mqtt://h", "kind": "kafka"}),
            "kind",
        ),
        (json!({"url": "mqtt://h"}), "name"),
    ] {
        let (status, problem) = post(&s, ENDPOINTS, &body);
        assert_eq!(status, 422, "{body}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    assert_eq!(post(&s, ENDPOINTS, &eu()).0, 409, "taken");
    let own = json!({"name": "fleetgate", "url": "mqtt://h"});
    assert_eq!(post(&s, ENDPOINTS, &own).0, 409, "reserved");
    assert_eq!(
        call(&s, "DELETE", "/api/v1/endpoints/fleetgate", None).0,
        409
    );
    assert_eq!(
        call(&s, "DELETE", "/api/v1/endpoints/eu-cluster", None).0,
        204
    );
    assert_eq!(
        call(&s, "DELETE", "/api/v1/endpoints/eu-cluster", None).0,
        404
    );
}

#[test]
fn account_tokens_read_but_do_not_change() {
    let s = TestServer::start();
    create_account(&s, "acme");
    let (_, token) = post(&s, "/api/v1/accounts/acme/tokens", &json!({}));
    let token = token["token"].as_str().unwrap();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let url = format!("{}{ENDPOINTS}", s.admin_url());
    let auth = format!("Bearer {token}");
    let listed = agent
        .get(&url)
        .header("Authorization", &auth)
        .call()
        .unwrap();
    assert_eq!(listed.status().as_u16(), 200);
    let refused = agent
        .post(&url)
        .header("Authorization", &auth)
        .send_json(eu())
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let anonymous = agent.get(&url).call().unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
}

#[test]
fn unknown_broker_urls_are_warned_about() {
    let s = TestServer::start();
    create_account(&s, "acme");
    post(&s, ENDPOINTS, &eu());
    let known = create_request(
        &s,
        "acme",
        request("dev-1", "mqtts://mqtt.eu.example:8883/"),
    );
    assert_eq!(known["warnings"], json!([]), "a trailing / is the same URL");
    let own = format!("mqtt://{}", s.operational_addr());
    let known = create_request(&s, "acme", request("dev-2", &own));
    assert_eq!(known["warnings"], json!([]));
    let unknown = create_request(&s, "acme", request("dev-3", "mqtt://elsewhere:1883"));
    assert_eq!(
        unknown["warnings"],
        json!(["brokerUrl mqtt://elsewhere:1883 is not a known broker endpoint"])
    );
}

#[test]
fn strict_broker_urls_refuse_unknown_ones() {
    let s = TestServer::start_with(&[("FLEETGATE_PROVISIONING_STRICT_BROKER_URLS", "true")]);
    create_account(&s, "acme");
    post(&s, ENDPOINTS, &eu());
    let path = "/api/v1/accounts/acme/provision-requests";
    let (status, problem) = post(&s, path, &request("dev-1", "mqtt://elsewhere:1883"));
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "brokerUrl", "{problem}");
    let (status, problem) = post(
        &s,
        &format!("{path}/bulk"),
        &json!({"requests": [request("dev-1", "mqtts://mqtt.eu.example:8883"),
                             request("dev-2", "mqtt://elsewhere:1883")]}),
    );
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["index"], 1, "{problem}");
    let (_, page) = get(&s, path);
    assert_eq!(page["items"], json!([]), "nothing created");
    let (status, _) = post(&s, path, &request("dev-1", "mqtts://mqtt.eu.example:8883"));
    assert_eq!(status, 201);
}
