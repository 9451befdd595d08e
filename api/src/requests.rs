//! Provision requests: create (single and bulk), list, read, update, delete, configuration
//! preview, and their executions.
//!
//! Provision passwords are settled outside the store's writer: the handler reads a snapshot,
//! verifies (or hashes) each distinct username/password pair once on the bounded verification
//! pool, and hands the store a [`UserPlan`]; if the user changed meanwhile the store answers
//! `Stale` and the handler reads again (a few times at most).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fleetgate_auth_hook::credentials::{fast_hash, random_alphanumeric};
use fleetgate_auth_hook::pool::PoolError;

use fleetgate_storage::ops::{self, NewRequest, UserPlan};
use fleetgate_storage::{
    Account, FieldError, ProvisionRequest, RequestSpec, RequestStatus, StoreError, Timestamp, ids,
};
use fleetgate_wire::{self as wire, BulkCreated, ExecutionList, RequestPage};
use futures::StreamExt as _;
use ntex::http::header;
use ntex::web::types::{Query, State};
use ntex::web::{HttpRequest, HttpResponse};
use serde_json::Value;

use super::dto;
use super::endpoints::KnownUrls;
use super::error::{ApiError, Problem};
use super::extract::{ExecutionPath, IdPath, JsonBody, Target};
use super::input;
use fleetgate_app::App;
use fleetgate_wire::{MAX_BULK_ITEMS, MAX_PAGE_SIZE};

/// Default page size of the request listing.
pub const DEFAULT_LIMIT: usize = 100;
/// Length of a generated activation key.
pub const ACTIVATION_KEY_LENGTH: usize = 32;
/// How often a write is retried after the provision user changed under it.
const STALE_RETRIES: usize = 3;

fn busy() -> ApiError {
    ApiError::Unavailable("credential verification is overloaded; retry later".into())
}

/// How many hashing/verification jobs one API call keeps in flight on the pool.
fn concurrency(app: &App) -> usize {
    fleetgate_config::threads_or_cores(app.config.auth.verify_threads)
}

/// argon2-hashes a new provision password or a chosen account-user password on the
/// verification pool (never on the event loop).
pub(crate) async fn hash_password(app: &App, password: &str) -> Result<String, ApiError> {
    let slot = Arc::new(Mutex::new(None));
    let (out, params, password) = (slot.clone(), app.argon2, password.to_string());
    let ran = app
        .hooks
        .pool()
        .run(move || {
            let hashed = params.hash(&password);
            let ok = hashed.is_ok();
            *out.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hashed);
            ok
        })
        .await;
    if ran == Err(PoolError::Busy) {
        return Err(busy());
    }
    let hashed = slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    match hashed {
        Some(Ok(h)) => Ok(h),
        Some(Err(e)) => Err(ApiError::Internal(e.to_string())),
        None => Err(ApiError::Internal("password hashing did not run".into())),
    }
}

/// Verifies a provision password against the stored hash (cache, else the pool).
async fn verify_password(
    app: &App,
    username: &str,
    password: &str,
    hash: &str,
) -> Result<bool, ApiError> {
    app.hooks
        .verify_provision_password(username, password.as_bytes(), hash)
        .await
        .map_err(|PoolError::Busy| busy())
}

fn conflict_at(field: &str, message: &str, index: usize, bulk: bool) -> FieldError {
    let e = FieldError::new(field, message);
    if bulk { e.at(index) } else { e }
}

const OTHER_ACCOUNT: &str = "this provision username belongs to another account";
const OTHER_PASSWORD: &str =
    "this provision username exists with a different password; reuse it with the same password";

/// Settles the provision user of every row (all in `account`) from one snapshot, verifying or
/// hashing each distinct username/password pair once. Conflicts are 409s naming the rows.
async fn plan_users(
    app: &App,
    account: &str,
    specs: &[RequestSpec],
    bulk: bool,
) -> Result<Vec<UserPlan>, ApiError> {
    enum Job<'a> {
        Hash(&'a str),
        Verify(&'a str, &'a str, String),
    }
    let read = app.store.read()?;
    let mut by_user: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut position: HashMap<&str, usize> = HashMap::new();
    for (i, s) in specs.iter().enumerate() {
        let slot = *position
            .entry(s.provision_username.as_str())
            .or_insert_with(|| {
                by_user.push((s.provision_username.as_str(), Vec::new()));
                by_user.len() - 1
            });
        by_user[slot].1.push(i);
    }
    let mut errors = Vec::new();
    let mut plans: Vec<Option<UserPlan>> = vec![None; specs.len()];
    // (job, rows it settles)
    let mut jobs: Vec<(Job<'_>, Vec<usize>)> = Vec::new();
    for (username, rows) in by_user {
        match read.provision_user(username)? {
            Some(u) if u.account != account => {
                for i in rows {
                    errors.push(conflict_at("provisionUsername", OTHER_ACCOUNT, i, bulk));
                }
            }
            Some(u) => {
                let mut distinct: Vec<(&str, Vec<usize>)> = Vec::new();
                for i in rows {
                    let pw = specs[i].provision_password.as_str();
                    match distinct.iter_mut().find(|(p, _)| *p == pw) {
                        Some((_, r)) => r.push(i),
                        None => distinct.push((pw, vec![i])),
                    }
                }
                for (pw, rows) in distinct {
                    jobs.push((Job::Verify(username, pw, u.password_hash.clone()), rows));
                }
            }
            None => {
                // A new user takes the password of its first row; other passwords conflict.
                let first = rows[0];
                let pw = specs[first].provision_password.as_str();
                let (same, other): (Vec<usize>, Vec<usize>) = rows
                    .into_iter()
                    .partition(|&i| specs[i].provision_password == pw);
                for i in other {
                    errors.push(conflict_at(
                        "provisionPassword",
                        &format!(
                            "differs from the provisionPassword of row {first}, which uses the \
                             same provisionUsername"
                        ),
                        i,
                        bulk,
                    ));
                }
                jobs.push((Job::Hash(pw), same));
            }
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.index);
        return Err(ApiError::Conflict(errors));
    }
    let results: Vec<Result<Option<UserPlan>, ApiError>> =
        futures::stream::iter(jobs.iter().map(|(job, _)| async move {
            match job {
                Job::Hash(pw) => Ok(Some(UserPlan::New {
                    hash: hash_password(app, pw).await?,
                })),
                Job::Verify(username, pw, hash) => Ok(verify_password(app, username, pw, hash)
                    .await?
                    .then(|| UserPlan::Existing { hash: hash.clone() })),
            }
        }))
        .buffered(concurrency(app))
        .collect()
        .await;
    for ((_, rows), result) in jobs.iter().zip(results) {
        match result? {
            Some(plan) => {
                for &i in rows {
                    plans[i] = Some(plan.clone());
                }
            }
            None => {
                for &i in rows {
                    errors.push(conflict_at("provisionPassword", OTHER_PASSWORD, i, bulk));
                }
            }
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.index);
        return Err(ApiError::Conflict(errors));
    }
    plans
        .into_iter()
        .map(|p| p.ok_or_else(|| ApiError::Internal("unsettled provision user".into())))
        .collect()
}

/// Creates validated rows all or nothing; returns each request with its one-time key.
pub(crate) async fn create_rows(
    app: &App,
    account: &Account,
    specs: Vec<RequestSpec>,
    bulk: bool,
    now: Timestamp,
) -> Result<Vec<(ProvisionRequest, Option<String>)>, ApiError> {
    let keys: Vec<Option<String>> = specs
        .iter()
        .map(|s| {
            s.generate_activation_key
                .then(|| random_alphanumeric(ACTIVATION_KEY_LENGTH))
        })
        .collect();
    let key_hashes: Vec<Option<String>> =
        keys.iter().map(|k| k.as_deref().map(fast_hash)).collect();
    let mut attempt = 0;
    loop {
        let plans = plan_users(app, &account.name, &specs, bulk).await?;
        let rows = specs
            .iter()
            .zip(plans)
            .zip(&key_hashes)
            .map(|((spec, user), key)| NewRequest {
                spec: spec.clone(),
                user,
                activation_key_hash: key.clone(),
            })
            .collect();
        let write = ops::create_requests(account.name.clone(), rows, bulk, now);
        match app.store.write_async(write).await {
            Ok(created) => return Ok(created.into_iter().zip(keys).collect()),
            Err(StoreError::Stale) if attempt < STALE_RETRIES => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

fn location(r: &ProvisionRequest) -> String {
    format!("/api/v1/accounts/{}/provision-requests/{}", r.account, r.id)
}

/// Creates a provision request.
#[utoipa::path(
    post, path = "/api/v1/accounts/{account}/provision-requests", tag = "provision requests",
    params(("account" = String, Path, description = "Target account")),
    request_body = super::dto::RequestInput,
    responses(
        (status = 201, description = "Created; `activationKey` is shown this once", body = wire::ProvisionRequest),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Client ID has an open request; provision username of another account or with another password", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Credential verification overloaded", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_request(
    app: State<Arc<App>>,
    body: JsonBody<false>,
    Target { account, .. }: Target,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_value()?;
    let now = app.clock.now();
    let mut spec =
        input::request_spec(&body, account.min_password_length, now).map_err(ApiError::Invalid)?;
    KnownUrls::read(&app)?
        .check(&mut spec)
        .map_err(|e| ApiError::Invalid(vec![e]))?;
    let (r, key) = create_rows(&app, &account, vec![spec], false, now)
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal("nothing created".into()))?;
    Ok(HttpResponse::Created()
        .header(header::LOCATION, location(&r))
        .json(&dto::request(&r, &account, now, key)))
}

/// Creates up to 10,000 provision requests, all or nothing. Its body limit is
/// `admin.bulk_body_limit` (default 16 MiB), not `admin.body_limit`.
#[utoipa::path(
    post, path = "/api/v1/accounts/{account}/provision-requests/bulk", tag = "provision requests",
    params(("account" = String, Path, description = "Target account")),
    request_body = super::dto::BulkInput,
    responses(
        (status = 201, description = "All created, in input order", body = BulkCreated),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflicts, by row `index`; nothing created", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than admin.bulk_body_limit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation errors, by row `index`; nothing created", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn bulk_create(
    app: State<Arc<App>>,
    body: JsonBody<true>,
    Target { account, .. }: Target,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_value()?;
    let rows = match &body {
        Value::Object(o) => match o.get("requests") {
            Some(Value::Array(rows)) => rows,
            Some(_) => return Err(ApiError::invalid("requests", "must be an array")),
            None => return Err(ApiError::invalid("requests", "is required")),
        },
        _ => {
            return Err(ApiError::invalid(
                "",
                "the body must be a JSON object with a requests array",
            ));
        }
    };
    if rows.is_empty() || rows.len() > MAX_BULK_ITEMS {
        return Err(ApiError::invalid(
            "requests",
            format!(
                "must hold 1 to {MAX_BULK_ITEMS} requests (it holds {})",
                rows.len()
            ),
        ));
    }
    let now = app.clock.now();
    let mut specs = Vec::with_capacity(rows.len());
    let mut errors = Vec::new();
    let known = KnownUrls::read(&app)?;
    for (i, row) in rows.iter().enumerate() {
        let spec = input::request_spec(row, account.min_password_length, now)
            .and_then(|mut s| known.check(&mut s).map(|()| s).map_err(|e| vec![e]));
        match spec {
            Ok(s) => specs.push(s),
            Err(es) => errors.extend(es.into_iter().map(|e| e.at(i))),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let created = create_rows(&app, &account, specs, true, now).await?;
    let created = created
        .into_iter()
        .map(|(r, key)| dto::request(&r, &account, now, key))
        .collect();
    Ok(HttpResponse::Created().json(&BulkCreated { created }))
}

/// The query string's pairs, decoded.
pub(crate) fn query_pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, ApiError> {
    Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(Query::into_inner)
        .map_err(|e| ApiError::invalid("query", format!("cannot decode the query string: {e}")))
}

/// `limit` and `after` of a paged listing, validated.
#[derive(Debug, PartialEq)]
pub(crate) struct Paging {
    /// Page size.
    pub(crate) limit: usize,
    /// The `next` cursor of the previous page.
    pub(crate) after: Option<String>,
}

impl Paging {
    /// Reads a listing's query: `limit` and `after` (a cursor `valid_cursor` accepts) here, any
    /// other key through `other`, which answers its field error if the value is bad. Empty
    /// values count as absent; every error is reported at once (422).
    pub(crate) fn parse(
        pairs: Vec<(String, String)>,
        valid_cursor: fn(&str) -> bool,
        mut other: impl FnMut(&str, String) -> Option<FieldError>,
    ) -> Result<Paging, ApiError> {
        let mut paging = Paging {
            limit: DEFAULT_LIMIT,
            after: None,
        };
        let mut errors = Vec::new();
        for (k, v) in pairs.into_iter().filter(|(_, v)| !v.is_empty()) {
            let error = match k.as_str() {
                "limit" => match v.parse::<usize>() {
                    Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => {
                        paging.limit = n;
                        None
                    }
                    _ => Some(FieldError::new(
                        "limit",
                        format!("must be an integer from 1 to {MAX_PAGE_SIZE}"),
                    )),
                },
                "after" if valid_cursor(&v) => {
                    paging.after = Some(v);
                    None
                }
                "after" => Some(FieldError::new(
                    "after",
                    "must be a cursor returned as next by this listing",
                )),
                _ => other(&k, v),
            };
            errors.extend(error);
        }
        if errors.is_empty() {
            Ok(paging)
        } else {
            Err(ApiError::Invalid(errors))
        }
    }
}

/// The listing's query, validated.
#[derive(Debug, PartialEq)]
struct ListQuery {
    status: Option<RequestStatus>,
    client_id: Option<String>,
    paging: Paging,
}

fn list_query(pairs: Vec<(String, String)>) -> Result<ListQuery, ApiError> {
    let (mut status, mut client_id) = (None, None);
    let paging = Paging::parse(pairs, ids::is_id, |k, v| match k {
        "status" => match RequestStatus::parse(&v) {
            Some(s) => {
                status = Some(s);
                None
            }
            None => Some(FieldError::new(
                "status",
                "must be CREATED, RUNNING, COMPLETED or FAILED",
            )),
        },
        "clientId" => {
            client_id = Some(v);
            None
        }
        _ => None,
    })?;
    Ok(ListQuery {
        status,
        client_id,
        paging,
    })
}

/// Lists an account's provision requests in creation order, a page at a time.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/provision-requests", tag = "provision requests",
    params(
        ("account" = String, Path, description = "Target account"),
        ("status" = Option<String>, Query, description = "CREATED, RUNNING, COMPLETED or FAILED"),
        ("clientId" = Option<String>, Query, description = "Only this client ID"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Page size, 1 to 1000 (default 100)"),
        ("after" = Option<String>, Query, description = "The `next` cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = RequestPage),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad query parameter", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_requests(
    req: HttpRequest,
    app: State<Arc<App>>,
    Target { account, .. }: Target,
) -> Result<HttpResponse, ApiError> {
    let q = list_query(query_pairs(&req)?)?;
    let now = app.clock.now();
    let page = app.store.read()?.list_requests(
        &account.name,
        q.status,
        q.client_id.as_deref(),
        q.paging.limit,
        q.paging.after.as_deref(),
    )?;
    let items = page
        .items
        .iter()
        .map(|r| dto::request(r, &account, now, None))
        .collect();
    Ok(HttpResponse::Ok().json(&RequestPage {
        items,
        next: page.next,
    }))
}

fn request_in(app: &App, account: &str, id: &str) -> Result<ProvisionRequest, ApiError> {
    app.store
        .read()?
        .request_in(account, id)?
        .ok_or_else(|| ApiError::NotFound(format!("provision request {id:?}")))
}

/// One provision request.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/provision-requests/{id}", tag = "provision requests",
    params(
        ("account" = String, Path, description = "Target account"),
        ("id" = String, Path, description = "Request id"),
    ),
    responses(
        (status = 200, description = "The request", body = wire::ProvisionRequest),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or request", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_request(
    app: State<Arc<App>>,
    Target {
        account,
        path: IdPath { id },
    }: Target<IdPath>,
) -> Result<HttpResponse, ApiError> {
    let r = request_in(&app, &account.name, &id)?;
    Ok(HttpResponse::Ok().json(&dto::request(&r, &account, app.clock.now(), None)))
}

/// Settles the provision user for a PUT: like a create, except that when the request being
/// updated is the only user of its unchanged username, a new password replaces the old one.
async fn plan_update_user(
    app: &App,
    account: &str,
    old: &ProvisionRequest,
    spec: &RequestSpec,
) -> Result<UserPlan, ApiError> {
    let user = app.store.read()?.provision_user(&spec.provision_username)?;
    let Some(u) = user else {
        return Ok(UserPlan::New {
            hash: hash_password(app, &spec.provision_password).await?,
        });
    };
    if u.account != account {
        return Err(ApiError::conflict("provisionUsername", OTHER_ACCOUNT));
    }
    if verify_password(app, &u.username, &spec.provision_password, &u.password_hash).await? {
        return Ok(UserPlan::Existing {
            hash: u.password_hash,
        });
    }
    if u.username == old.provision_username && u.request_count == 1 {
        return Ok(UserPlan::Replace {
            new_hash: hash_password(app, &spec.provision_password).await?,
            old_hash: u.password_hash,
        });
    }
    Err(ApiError::conflict("provisionPassword", OTHER_PASSWORD))
}

fn not_created(r: &ProvisionRequest) -> ApiError {
    ApiError::conflict(
        "status",
        format!(
            "only a CREATED request can be modified (it is {})",
            r.status.as_str()
        ),
    )
}

/// Replaces a `CREATED` request's fields (same body as create).
#[utoipa::path(
    put, path = "/api/v1/accounts/{account}/provision-requests/{id}", tag = "provision requests",
    params(
        ("account" = String, Path, description = "Target account"),
        ("id" = String, Path, description = "Request id"),
    ),
    request_body = super::dto::RequestInput,
    responses(
        (status = 200, description = "Updated; `activationKey` only when this update generated a new one", body = wire::ProvisionRequest),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not CREATED, or a uniqueness conflict", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn update_request(
    app: State<Arc<App>>,
    body: JsonBody<false>,
    Target {
        account,
        path: IdPath { id },
    }: Target<IdPath>,
) -> Result<HttpResponse, ApiError> {
    let mut old = request_in(&app, &account.name, &id)?;
    let body = body.into_value()?;
    let now = app.clock.now();
    let mut spec =
        input::request_spec(&body, account.min_password_length, now).map_err(ApiError::Invalid)?;
    KnownUrls::read(&app)?
        .check(&mut spec)
        .map_err(|e| ApiError::Invalid(vec![e]))?;
    if old.status != RequestStatus::Created {
        return Err(not_created(&old));
    }
    // Keep the key the device already has; make one (shown once) when switching it on.
    let (key, key_hash) = match (spec.generate_activation_key, &old.activation_key_hash) {
        (false, _) => (None, None),
        (true, Some(h)) => (None, Some(h.clone())),
        (true, None) => {
            let k = random_alphanumeric(ACTIVATION_KEY_LENGTH);
            let h = fast_hash(&k);
            (Some(k), Some(h))
        }
    };
    let mut attempt = 0;
    let updated = loop {
        let user = plan_update_user(&app, &account.name, &old, &spec).await?;
        let row = NewRequest {
            spec: spec.clone(),
            user,
            activation_key_hash: key_hash.clone(),
        };
        let write = ops::update_request(account.name.clone(), id.clone(), row, now);
        match app.store.write_async(write).await {
            Ok(r) => break r,
            Err(StoreError::Stale) if attempt < STALE_RETRIES => {
                attempt += 1;
                old = request_in(&app, &account.name, &id)?;
            }
            Err(e) => return Err(e.into()),
        }
    };
    Ok(HttpResponse::Ok().json(&dto::request(&updated, &account, now, key)))
}

/// The `force` query parameter of a delete (default false).
pub(crate) fn force(req: &HttpRequest) -> Result<bool, ApiError> {
    let mut force = false;
    for (k, v) in query_pairs(req)? {
        if k == "force" {
            force = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" | "" => false,
                _ => return Err(ApiError::invalid("force", "must be true or false")),
            };
        }
    }
    Ok(force)
}

/// Deletes a request and its executions; a `RUNNING` one only with `force=true`.
#[utoipa::path(
    delete, path = "/api/v1/accounts/{account}/provision-requests/{id}", tag = "provision requests",
    params(
        ("account" = String, Path, description = "Target account"),
        ("id" = String, Path, description = "Request id"),
        ("force" = Option<bool>, Query, description = "Delete even while RUNNING"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "RUNNING and not forced", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "force is not true or false", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_request(
    req: HttpRequest,
    app: State<Arc<App>>,
    Target {
        account,
        path: IdPath { id },
    }: Target<IdPath>,
) -> Result<HttpResponse, ApiError> {
    let force = force(&req)?;
    app.store
        .write_async(ops::delete_request(account.name, id, force))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The document a device would receive now, passwords shown as `********`.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/provision-requests/{id}/configuration-preview",
    tag = "provision requests",
    params(
        ("account" = String, Path, description = "Target account"),
        ("id" = String, Path, description = "Request id"),
    ),
    responses(
        (status = 200, description = "Kura configuration XML", body = String, content_type = "application/xml"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or request", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn configuration_preview(
    app: State<Arc<App>>,
    Target {
        account,
        path: IdPath { id },
    }: Target<IdPath>,
) -> Result<HttpResponse, ApiError> {
    let r = request_in(&app, &account.name, &id)?;
    let xml = fleetgate_exchange::preview(&app.config.provisioning.vpn_client_pid, &r)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().content_type("application/xml").body(xml))
}

/// The executions of a request, oldest first, without logs.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/provision-requests/{id}/executions",
    tag = "provision requests",
    params(
        ("account" = String, Path, description = "Target account"),
        ("id" = String, Path, description = "Request id"),
    ),
    responses(
        (status = 200, description = "Executions", body = ExecutionList),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or request", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_executions(
    app: State<Arc<App>>,
    Target {
        account,
        path: IdPath { id },
    }: Target<IdPath>,
) -> Result<HttpResponse, ApiError> {
    let read = app.store.read()?;
    let r = read
        .request_in(&account.name, &id)?
        .ok_or_else(|| ApiError::NotFound(format!("provision request {id:?}")))?;
    let items = read
        .executions(&r.id)?
        .iter()
        .map(|e| dto::execution(e, false))
        .collect();
    Ok(HttpResponse::Ok().json(&ExecutionList { items }))
}

/// One execution with its log.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/provision-requests/{id}/executions/{executionId}",
    tag = "provision requests",
    params(
        ("account" = String, Path, description = "Target account"),
        ("id" = String, Path, description = "Request id"),
        ("executionId" = String, Path, description = "Execution id"),
    ),
    responses(
        (status = 200, description = "The execution and its log", body = wire::Execution),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account, request or execution", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_execution(
    app: State<Arc<App>>,
    Target {
        account,
        path: ExecutionPath {
            id,
            execution_id: execution,
        },
    }: Target<ExecutionPath>,
) -> Result<HttpResponse, ApiError> {
    let read = app.store.read()?;
    let r = read
        .request_in(&account.name, &id)?
        .ok_or_else(|| ApiError::NotFound(format!("provision request {id:?}")))?;
    let e = read
        .execution(&r.id, &execution)?
        .ok_or_else(|| ApiError::NotFound(format!("execution {execution:?}")))?;
    Ok(HttpResponse::Ok().json(&dto::execution(&e, true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn list_query_defaults_and_limits() {
        let q = list_query(pairs(&[])).unwrap();
        assert_eq!(q.paging.limit, DEFAULT_LIMIT);
        assert_eq!(q.status, None);
        let q = list_query(pairs(&[
            ("limit", "1000"),
            ("status", "RUNNING"),
            ("x", "y"),
        ]))
        .unwrap();
        assert_eq!(q.paging.limit, 1000);
        assert_eq!(q.status, Some(RequestStatus::Running));
        for bad in ["0", "1001", "-1", "ten", "1.5"] {
            let e = list_query(pairs(&[("limit", bad)])).unwrap_err();
            assert_eq!(e.field_errors()[0].field, "limit", "{bad}");
        }
        let e = list_query(pairs(&[("status", "created")])).unwrap_err();
        assert_eq!(e.field_errors()[0].field, "status");
        let e = list_query(pairs(&[("after", "nope")])).unwrap_err();
        assert_eq!(e.field_errors()[0].field, "after");
        let id = ids::new_id();
        assert_eq!(
            list_query(pairs(&[("after", &id)])).unwrap().paging.after,
            Some(id)
        );
    }
}
