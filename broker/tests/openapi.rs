//! The OpenAPI document cannot drift from what is served: every route of the route table is
//! described (and nothing else), every described route answers on a live server (not the
//! catch-all 404), and the document describes auth and errors.

mod common;

use common::TestServer;
use serde_json::Value;

fn served() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = fleetgate_api::ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_string(), (*p).to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn the_document_describes_exactly_the_route_table() {
    let mut described = fleetgate_api::openapi::described_routes();
    described.sort();
    assert_eq!(served(), described);
}

#[test]
fn every_operation_documents_auth_and_problems() {
    let doc = fleetgate_api::openapi::json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["type"],
        "http"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    for (method, path) in served() {
        let op = &doc["paths"][&path][&method];
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|k| k.starts_with('2')),
            "{method} {path}: no success response"
        );
        if needs_token(&path) {
            assert_eq!(
                op["security"],
                serde_json::json!([{"bearer": []}]),
                "{method} {path}"
            );
            let unauthorized = &responses["401"]["content"]["application/problem+json"];
            assert!(
                unauthorized.is_object(),
                "{method} {path}: 401 not described"
            );
            // Every path parameter is declared.
            for segment in path.split('/').filter(|s| s.starts_with('{')) {
                let name = segment.trim_matches(|c| c == '{' || c == '}');
                let declared = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
                assert!(declared, "{method} {path}: parameter {name}");
            }
        } else {
            assert!(
                op.get("security").is_none(),
                "{method} {path} needs no auth"
            );
        }
    }
    // Secrets are write-only: inputs have them, outputs never do.
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["ProvisionRequestInput"]["properties"]["provisionPassword"].is_object());
    for (name, schema) in schemas.as_object().unwrap() {
        if name.ends_with("Input") {
            continue;
        }
        for property in schema["properties"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.keys())
        {
            let lower = property.to_ascii_lowercase();
            // The one exception API.md names: an account user created without a password gets
            // a generated one, returned once in the 201 (`UserCreated`, that answer only).
            let generated_once = name == "UserCreated" && property == "password";
            assert!(
                !lower.contains("password") || lower.ends_with("passwordlength") || generated_once,
                "{name} returns {property}"
            );
            assert!(
                !lower.contains("hash") && !lower.contains("secret"),
                "{name} returns {property}"
            );
        }
    }
}

/// Fills a path template with sample values.
fn sample(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { "x" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every route under `/api/v1` but the OpenAPI document asks for a token.
fn needs_token(path: &str) -> bool {
    path.starts_with("/api/v1/") && path != "/api/v1/openapi.json"
}

#[test]
fn every_described_route_is_served() {
    let s = TestServer::start();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    for (method, path) in served() {
        let req = ureq::http::Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(format!("{}{}", s.admin_url(), sample(&path)));
        let mut res = agent
            .run(
                req.header("Content-Type", "application/json")
                    .body(b"{}".to_vec())
                    .unwrap(),
            )
            .unwrap();
        let status = res.status().as_u16();
        let body = res.body_mut().read_to_string().unwrap_or_default();
        if needs_token(&path) {
            // Routed to its handler, which asks for a token (the catch-all would say 404).
            assert_eq!(status, 401, "{method} {path}: {body}");
        } else {
            assert_eq!(status, 200, "{method} {path}: {body}");
        }
    }
    // The served document is the generated one.
    let mut res = agent
        .get(&format!("{}/api/v1/openapi.json", s.admin_url()))
        .call()
        .unwrap();
    let served: Value = serde_json::from_str(&res.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(&served, fleetgate_api::openapi::json());
}
