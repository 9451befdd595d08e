//! Accounts and account tokens.

use std::sync::Arc;

use fleetgate_auth_hook::credentials::generate_token;
use fleetgate_storage::{ApiToken, ids, ops};
use fleetgate_wire::{Account, AccountList, TokenCreated};
use ntex::http::header;
use ntex::web::types::State;
use ntex::web::{HttpRequest, HttpResponse};

use super::dto;
use super::error::{ApiError, Problem};
use super::extract::{Caller, IdPath, JsonBody, Target, authenticate};
use super::input;
use fleetgate_app::App;

/// Creates a target account (admin token only).
#[utoipa::path(
    post, path = "/api/v1/accounts", tag = "accounts",
    request_body = super::dto::AccountInput,
    responses(
        (status = 201, description = "Created", body = Account),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Account tokens cannot create accounts", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken (or is the provisioning account's)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_account(
    req: HttpRequest,
    app: State<Arc<App>>,
    body: JsonBody<false>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&req, &app)?;
    if caller != Caller::Admin {
        return Err(ApiError::Forbidden(
            "only the instance admin token may create accounts".into(),
        ));
    }
    let body = body.into_value()?;
    let spec = input::account_spec(&body).map_err(ApiError::Invalid)?;
    let account = app
        .store
        .write_async(ops::create_account(spec, app.clock.now()))
        .await?;
    Ok(HttpResponse::Created()
        .header(
            header::LOCATION,
            format!("/api/v1/accounts/{}", account.name),
        )
        .json(&dto::account(&account)))
}

/// Lists the target accounts the caller may see (an account token sees its own).
#[utoipa::path(
    get, path = "/api/v1/accounts", tag = "accounts",
    responses(
        (status = 200, description = "The accounts, by name", body = AccountList),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_accounts(
    req: HttpRequest,
    app: State<Arc<App>>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&req, &app)?;
    let items = app
        .store
        .read()?
        .accounts()?
        .iter()
        .filter(|a| !a.provisioning && caller.sees(&a.name))
        .map(dto::account)
        .collect();
    Ok(HttpResponse::Ok().json(&AccountList { items }))
}

/// One target account.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}", tag = "accounts",
    params(("account" = String, Path, description = "Account name")),
    responses(
        (status = 200, description = "The account", body = Account),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, or not the token's account", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_account(Target { account, .. }: Target) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(&dto::account(&account)))
}

/// Creates an account token; the token is shown once and stored only as a hash.
#[utoipa::path(
    post, path = "/api/v1/accounts/{account}/tokens", tag = "accounts",
    params(("account" = String, Path, description = "Account name")),
    responses(
        (status = 201, description = "The token, shown once", body = TokenCreated),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_token(
    app: State<Arc<App>>,
    Target { account, .. }: Target,
) -> Result<HttpResponse, ApiError> {
    let id = ids::new_id();
    let (token, secret_hash) = generate_token(&id);
    let stored = ApiToken {
        id: id.clone(),
        account: account.name.clone(),
        secret_hash,
        created_on: app.clock.now(),
    };
    app.store.write_async(ops::create_token(stored)).await?;
    Ok(HttpResponse::Created()
        .header(
            header::LOCATION,
            format!("/api/v1/accounts/{}/tokens/{id}", account.name),
        )
        .json(&TokenCreated {
            id,
            token: token.into(),
        }))
}

/// Revokes an account token.
#[utoipa::path(
    delete, path = "/api/v1/accounts/{account}/tokens/{id}", tag = "accounts",
    params(
        ("account" = String, Path, description = "Account name"),
        ("id" = String, Path, description = "Token id"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_token(
    app: State<Arc<App>>,
    Target {
        account,
        path: IdPath { id },
    }: Target<IdPath>,
) -> Result<HttpResponse, ApiError> {
    app.store
        .write_async(ops::delete_token(account.name, id))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
