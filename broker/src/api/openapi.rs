//! The OpenAPI 3 document, generated with utoipa from the handlers' annotations.

use std::sync::OnceLock;

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{accounts, dto, error, records, requests};

/// Adds the bearer security scheme every `/api/v1` operation refers to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Fleetgate admin API",
        description = "Accounts, tokens, provision requests, executions, users and devices of a \
                       Fleetgate instance. Authenticate with `Authorization: Bearer TOKEN` (the \
                       instance admin token, or an account token acting inside its own account). \
                       Errors are application/problem+json (RFC 9457)."
    ),
    paths(
        super::healthz,
        super::metrics,
        super::openapi_json,
        accounts::create_account,
        accounts::list_accounts,
        accounts::get_account,
        accounts::create_token,
        accounts::delete_token,
        requests::bulk_create,
        requests::create_request,
        requests::list_requests,
        requests::get_request,
        requests::update_request,
        requests::delete_request,
        requests::configuration_preview,
        requests::list_executions,
        requests::get_execution,
        records::list_users,
        records::list_devices,
        records::get_device,
    ),
    components(schemas(error::Problem, error::ProblemField, dto::AccountInput, dto::RequestInput, dto::BulkInput)),
    modifiers(&BearerAuth),
    tags(
        (name = "accounts", description = "Target accounts and their API tokens (admin token)"),
        (name = "provision requests", description = "Enrollment orders of devices and their executions"),
        (name = "target-account records", description = "What provisioning wrote: device users and devices"),
        (name = "operations", description = "Health, metrics and this document (no auth)"),
    )
)]
pub struct ApiDoc;

/// The document as JSON, built once.
pub fn json() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or_default())
}

/// The (lower-case method, path) pairs the document describes.
pub fn described_routes() -> Vec<(String, String)> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "patch", "head", "options", "trace",
    ];
    let mut out = Vec::new();
    if let Some(paths) = json().get("paths").and_then(|p| p.as_object()) {
        for (path, item) in paths {
            for m in METHODS {
                if item.get(m).is_some() {
                    out.push((m.to_string(), path.clone()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_and_nothing_else() {
        let mut served: Vec<(String, String)> = super::super::ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_string(), (*p).to_string()))
            .collect();
        let mut described = described_routes();
        served.sort();
        described.sort();
        assert_eq!(served, described);
    }

    #[test]
    fn document_is_openapi_3_with_bearer_auth() {
        let doc = json();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let create = &doc["paths"]["/api/v1/accounts/{account}/provision-requests"]["post"];
        assert!(create["responses"]["201"].is_object());
        assert!(create["responses"]["422"].is_object());
        let schema = &doc["components"]["schemas"]["ProvisionRequest"]["properties"];
        assert!(schema["passwordLength"].is_object());
        assert!(schema.get("provisionPassword").is_none());
    }
}
