//! Operational users of a target account (API.md "Account users", PROTOCOL.md 6.1): account
//! users (applications) created, changed and deleted here, and the device users provisioning
//! created, listed alongside (only their `enabled` changes here).
//!
//! A chosen password is argon2-hashed on the verification pool, like provision passwords, and
//! verified there at CONNECT (with the verification cache). A generated one is a long CSPRNG
//! string (PROTOCOL.md 4.4's rules), stored with the keyed fast hash of device passwords and
//! returned once, in the 201 body. No other answer carries a password or a hash.
//!
//! Changes that end sessions (disabled, deleted, a permission removed) call
//! `Hooks::revoke` after their commit, so that every door closes the user's sessions and a
//! reconnect is refused.

use std::sync::Arc;

use fleetgate_auth_hook::credentials::{fast_hash, generate_password};
use fleetgate_storage::ops::{self, NewAccountUser, StoredUser, UserPatch};
use fleetgate_storage::validate::MIN_PASSWORD_LENGTH;
use fleetgate_wire::{User, UserCreated, UserList};
use ntex::http::header;
use ntex::web::HttpResponse;
use ntex::web::types::State;

use super::dto;
use super::error::{ApiError, Problem};
use super::extract::{JsonBody, Target, UserPath};
use super::input;
use super::requests::hash_password;
use fleetgate_app::App;

fn view(u: &StoredUser) -> User {
    match u {
        StoredUser::Device(d) => dto::device_user(d),
        StoredUser::Account(a) => dto::account_user(a),
    }
}

/// Creates an account user `NAME@ACCOUNT`.
#[utoipa::path(
    post, path = "/api/v1/accounts/{account}/users", tag = "users",
    params(("account" = String, Path, description = "Target account")),
    request_body = super::dto::UserInput,
    responses(
        (status = 201, description = "Created; a generated `password` is shown this once", body = UserCreated),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The username is taken in the instance (or is a device's of this account)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Password hashing overloaded", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_user(
    app: State<Arc<App>>,
    body: JsonBody<false>,
    Target { account, .. }: Target,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_value()?;
    let spec = input::account_user_spec(&body).map_err(ApiError::Invalid)?;
    let (password_hash, generated) = match &spec.password {
        Some(chosen) => (hash_password(&app, chosen).await?, None),
        None => {
            let length = MIN_PASSWORD_LENGTH.max(account.min_password_length);
            let password = generate_password(usize::from(length));
            (fast_hash(&password), Some(password))
        }
    };
    let user = NewAccountUser {
        name: spec.name,
        password_hash,
        permissions: spec.permissions,
    };
    let created = app
        .store
        .write_async(ops::create_account_user(
            account.name.clone(),
            user,
            app.clock.now(),
        ))
        .await?;
    Ok(HttpResponse::Created()
        .header(
            header::LOCATION,
            format!(
                "/api/v1/accounts/{}/users/{}",
                account.name,
                created.username.replace('@', "%40")
            ),
        )
        .json(&UserCreated {
            user: dto::account_user(&created),
            password: generated.map(Into::into),
        }))
}

/// The operational users of an account: device users, then account users, each by username
/// (never a hash).
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/users", tag = "users",
    params(("account" = String, Path, description = "Target account")),
    responses(
        (status = 200, description = "Users", body = UserList),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_users(
    app: State<Arc<App>>,
    Target { account, .. }: Target,
) -> Result<HttpResponse, ApiError> {
    let read = app.store.read()?;
    let devices = read.users(&account.name)?;
    let apps = read.account_users(&account.name)?;
    let items = devices
        .iter()
        .map(dto::device_user)
        .chain(apps.iter().map(dto::account_user))
        .collect();
    Ok(HttpResponse::Ok().json(&UserList { items }))
}

/// One user of either kind.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/users/{username}", tag = "users",
    params(
        ("account" = String, Path, description = "Target account"),
        ("username" = String, Path, description = "`NAME@ACCOUNT` or `CID@ACCOUNT` (`@` may be percent-encoded)"),
    ),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or user", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_user(
    app: State<Arc<App>>,
    Target {
        account,
        path: UserPath { username },
    }: Target<UserPath>,
) -> Result<HttpResponse, ApiError> {
    let read = app.store.read()?;
    let not_found = || ApiError::NotFound(format!("user {username:?}"));
    let user = match read.device_user(&username)? {
        Some(d) => StoredUser::Device(d),
        None => StoredUser::Account(read.account_user(&username)?.ok_or_else(not_found)?),
    };
    let own = match &user {
        StoredUser::Device(d) => d.account == account.name,
        StoredUser::Account(a) => a.account == account.name,
    };
    if !own {
        return Err(not_found());
    }
    Ok(HttpResponse::Ok().json(&view(&user)))
}

/// Changes a user: an account user's permissions, password and `enabled`; a device user's
/// `enabled` only. Disabling it or removing a permission ends its open sessions.
#[utoipa::path(
    patch, path = "/api/v1/accounts/{account}/users/{username}", tag = "users",
    params(
        ("account" = String, Path, description = "Target account"),
        ("username" = String, Path, description = "`NAME@ACCOUNT` or `CID@ACCOUNT`"),
    ),
    request_body = super::dto::UserPatchInput,
    responses(
        (status = 200, description = "Changed", body = User),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or user", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed, or more than `enabled` for a device user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Password hashing overloaded", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn update_user(
    app: State<Arc<App>>,
    body: JsonBody<false>,
    Target {
        account,
        path: UserPath { username },
    }: Target<UserPath>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_value()?;
    let spec = input::user_patch_spec(&body).map_err(ApiError::Invalid)?;
    let password_hash = match &spec.password {
        Some(p) => Some(hash_password(&app, p).await?),
        None => None,
    };
    let patch = UserPatch {
        permissions: spec.permissions,
        password_hash,
        enabled: spec.enabled,
    };
    let change = app
        .store
        .write_async(ops::update_user(
            account.name,
            username.clone(),
            patch,
            app.clock.now(),
        ))
        .await?;
    if change.revoke {
        app.hooks.revoke(&username);
    }
    Ok(HttpResponse::Ok().json(&view(&change.user)))
}

/// Deletes an account user and ends its open sessions (a device user goes with its device:
/// 409).
#[utoipa::path(
    delete, path = "/api/v1/accounts/{account}/users/{username}", tag = "users",
    params(
        ("account" = String, Path, description = "Target account"),
        ("username" = String, Path, description = "`NAME@ACCOUNT`"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A device user (delete its device instead)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_user(
    app: State<Arc<App>>,
    Target {
        account,
        path: UserPath { username },
    }: Target<UserPath>,
) -> Result<HttpResponse, ApiError> {
    app.store
        .write_async(ops::delete_account_user(account.name, username.clone()))
        .await?;
    app.hooks.revoke(&username);
    Ok(HttpResponse::NoContent().finish())
}
