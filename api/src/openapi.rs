//! The OpenAPI 3 document, generated with utoipa from the handlers' annotations.

use std::sync::OnceLock;

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    accounts, audit, backup, devices, dto, endpoints, error, jobs, management, moves, requests,
    users,
};

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

/// Declares the `X-Request-Id` header every response carries (the request-id middleware).
struct RequestIdHeader;

impl Modify for RequestIdHeader {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::{ObjectBuilder, RefOr, Type};
        let header = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(
                "The request's id: the client's own X-Request-Id when it sent a sane one, else \
                 a generated one; also on the request's log lines.",
            ))
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                for response in op.responses.responses.values_mut() {
                    if let RefOr::T(r) = response {
                        r.headers.insert("X-Request-Id".into(), header.clone());
                    }
                }
            }
        }
    }
}

/// Declares the 429 every operation with a token may answer: the guard refuses an address
/// banned after repeated failed authentications before any token check.
struct BannedAnswer;

impl Modify for BannedAnswer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, ResponseBuilder, Type};
        let response = ResponseBuilder::new()
            .description(
                "This address made too many failed authentications (admin.max_failures per \
                 auth.failure_window); retry after Retry-After seconds",
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("Seconds until the ban ends"))
                    .build(),
            )
            .content(
                error::PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    op.responses
                        .responses
                        .insert("429".into(), response.clone().into());
                }
            }
        }
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
        users::create_user,
        users::list_users,
        users::get_user,
        users::update_user,
        users::delete_user,
        devices::create_device,
        devices::list_devices,
        devices::get_device,
        devices::delete_device,
        moves::start_move,
        moves::get_move,
        management::device_request,
        management::get_configurations,
        management::put_configurations,
        management::get_one_configuration,
        management::put_one_configuration,
        management::run_command,
        jobs::create_job,
        jobs::list_jobs,
        jobs::get_job,
        jobs::delete_job,
        jobs::change_targets,
        jobs::list_executions,
        endpoints::list_endpoints,
        endpoints::create_endpoint,
        endpoints::delete_endpoint,
        audit::list_audit,
        backup::backup,
    ),
    components(schemas(error::Problem, audit::AuditPage, audit::AuditItem, fleetgate_wire::FieldError, dto::AccountInput, dto::RequestInput, dto::BulkInput, dto::UserInput, dto::UserPatchInput, dto::DeviceInput, dto::EndpointInput, dto::DeviceRequestInput, dto::CommandInput)),
    modifiers(&BearerAuth, &BannedAnswer, &RequestIdHeader),
    tags(
        (name = "accounts", description = "Target accounts and their API tokens (admin token)"),
        (name = "provision requests", description = "Enrollment orders of devices and their executions"),
        (name = "users", description = "Operational users: account users (applications) and the device users provisioning created (PROTOCOL.md 6.1)"),
        (name = "device management", description = "Kura request/reply with a connected device: configurations, commands, any app (PROTOCOL.md 7)"),
        (name = "jobs", description = "Batch Jobs: steps run on target devices on a trigger, with per-target executions and logs (PROTOCOL.md 7)"),
        (name = "endpoints", description = "Known broker endpoints: where devices are provisioned to"),
        (name = "devices", description = "The Device Registry: entries, connection state and BIRTH facts (PROTOCOL.md 6.3)"),
        (name = "operations", description = "Health, metrics and this document (no auth)"),
        (name = "administration", description = "The audit log of the API's changes and device operations, and whole-store backups"),
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
    use crate::input;
    use fleetgate_storage::validate::MIN_PASSWORD_LENGTH;
    use serde_json::{Value, json};

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

    /// A valid request body with `value` for `field` (the password and its confirmation take
    /// it together).
    fn request_with(field: &str, value: Value) -> Value {
        let mut body = json!({
            "clientId": "dev-0001",
            "provisionUsername": "fleet_1",
            "provisionPassword": "s3cret-pass",
            "confirmProvisionPassword": "s3cret-pass",
            "brokerUrl": "mqtts://broker.acme.example:8883"
        });
        body[field] = value.clone();
        match field {
            "provisionPassword" => body["confirmProvisionPassword"] = value,
            "confirmProvisionPassword" => body["provisionPassword"] = value,
            _ => {}
        }
        body
    }

    /// A string of `len` characters that satisfies every other rule of `field`.
    fn text(field: &str, len: usize) -> String {
        if field == "additionalConfiguration" {
            const OPEN: &str = "<configurations>";
            const CLOSE: &str = "</configurations>";
            let pad = len.saturating_sub(OPEN.len() + CLOSE.len());
            return format!("{OPEN}{}{CLOSE}", " ".repeat(pad));
        }
        "a".repeat(len)
    }

    /// Whether the API refuses `body` naming `field`. The password and its confirmation are
    /// one value (the test sets both), so an error on either names it.
    fn refuses(schema: &str, body: &Value, field: &str) -> bool {
        let twin = match field {
            "provisionPassword" => "confirmProvisionPassword",
            "confirmProvisionPassword" => "provisionPassword",
            other => other,
        };
        refused(schema, body)
            .iter()
            .any(|f| f == field || f == twin)
    }

    /// The fields the API names in its errors for `body` (the schema picks the validator).
    fn refused(schema: &str, body: &Value) -> Vec<String> {
        let now = chrono::Utc::now();
        let result = match schema {
            "AccountInput" => input::account_spec(body).map(|_| ()),
            "UserInput" => input::account_user_spec(body).map(|_| ()),
            "UserPatchInput" => input::user_patch_spec(body).map(|_| ()),
            "DeviceInput" => input::device_spec(body).map(|_| ()),
            "EndpointInput" => input::endpoint_spec(body).map(|_| ()),
            _ => input::request_spec(body, MIN_PASSWORD_LENGTH, now).map(|_| ()),
        };
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    /// Every length and range limit of the input schemas, driven through the validator at the
    /// limit (accepted) and one past it (refused, naming the field). utoipa only takes literals,
    /// so this is what keeps the document and the validator's constants in step. (Lengths are
    /// checked with ASCII: JSON Schema counts characters, the password rule counts bytes, so
    /// `maxLength` is the byte limit, the most any ASCII password may have.)
    #[test]
    fn every_response_declares_the_request_id_header() {
        let doc = json();
        let mut responses = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, r) in op["responses"].as_object().unwrap() {
                    assert!(
                        r["headers"]["X-Request-Id"].is_object(),
                        "{method} {path} {status}"
                    );
                    responses += 1;
                }
            }
        }
        assert!(responses > 40, "{responses}");
    }

    #[test]
    fn input_limits_agree_with_the_validator() {
        let doc = json();
        let mut checked = Vec::new();
        for schema in [
            "ProvisionRequestInput",
            "AccountInput",
            "UserInput",
            "UserPatchInput",
            "DeviceInput",
            "EndpointInput",
        ] {
            let properties = doc["components"]["schemas"][schema]["properties"]
                .as_object()
                .unwrap();
            for (field, p) in properties {
                for keyword in ["minLength", "maxLength", "minimum", "maximum"] {
                    let Some(limit) = p.get(keyword).and_then(Value::as_u64) else {
                        continue;
                    };
                    let past = if keyword.starts_with("min") {
                        limit.checked_sub(1)
                    } else {
                        Some(limit + 1)
                    };
                    let at_and_past = [Some(limit), past].map(|n| {
                        n.map(|n| {
                            let n = usize::try_from(n).unwrap();
                            let value = if keyword.ends_with("Length") {
                                json!(text(field, n))
                            } else {
                                json!(n)
                            };
                            let base = match schema {
                                "AccountInput" => Some(json!({"name": "acme"})),
                                "UserInput" => Some(json!({"name": "dash"})),
                                "UserPatchInput" => Some(json!({})),
                                "DeviceInput" => Some(json!({"clientId": "dev-1"})),
                                "EndpointInput" => {
                                    Some(json!({"name": "eu", "url": "mqtt://h:1883"}))
                                }
                                _ => None,
                            };
                            match base {
                                Some(mut body) => {
                                    body[field.as_str()] = value;
                                    body
                                }
                                None => request_with(field, value),
                            }
                        })
                    });
                    let [Some(at), past] = at_and_past else {
                        unreachable!()
                    };
                    assert!(
                        !refuses(schema, &at, field),
                        "{schema}.{field}: {keyword} {limit} is refused by the validator"
                    );
                    if let Some(past) = past {
                        assert!(
                            refuses(schema, &past, field),
                            "{schema}.{field}: one past {keyword} {limit} is accepted"
                        );
                    }
                    checked.push(format!("{field}.{keyword}"));
                }
            }
        }
        // The limits the validator enforces are all described (and so checked above).
        for limit in [
            "clientId.maxLength",
            "provisionUsername.minLength",
            "provisionUsername.maxLength",
            "provisionPassword.minLength",
            "provisionPassword.maxLength",
            "confirmProvisionPassword.maxLength",
            "passwordLength.minimum",
            "passwordLength.maximum",
            "additionalConfiguration.maxLength",
            "name.maxLength",
            "minPasswordLength.minimum",
            "minPasswordLength.maximum",
            "password.minLength",
            "password.maxLength",
            "displayName.maxLength",
        ] {
            assert!(
                checked.iter().any(|c| c == limit),
                "{limit} is not described"
            );
        }
        let requests = &doc["components"]["schemas"]["BulkInput"]["properties"]["requests"];
        assert_eq!(requests["maxItems"], json!(fleetgate_wire::MAX_BULK_ITEMS));
        assert_eq!(requests["minItems"], json!(1));
        let list = &doc["paths"]["/api/v1/accounts/{account}/provision-requests"]["get"];
        let limit = list["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap();
        assert_eq!(
            limit["schema"]["maximum"],
            json!(fleetgate_wire::MAX_PAGE_SIZE)
        );
    }
}
