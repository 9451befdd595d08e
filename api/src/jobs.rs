//! Batch Jobs (API.md "Jobs", PROTOCOL.md 7): create, list, show with per-status target
//! counts, delete (stops it), change targets, and the executions with their logs. The jobs
//! engine (`App::jobs`) is told of every change once the store committed it.

use std::sync::Arc;

use fleetgate_config::Config;
use fleetgate_jobs::schedule::Timer;
use fleetgate_storage::jobs::{self, Job, JobStatus, JobTarget};
use fleetgate_storage::{FieldError, Reader};
use fleetgate_wire as wire;
use ntex::http::header;
use ntex::web::types::State;
use ntex::web::{HttpRequest, HttpResponse};

use super::dto;
use super::error::{ApiError, Problem};
use super::extract::{IdPath, JsonBody, Target};
use super::input;
use super::requests::query_pairs;
use fleetgate_app::App;

fn wire_status(s: JobStatus) -> wire::JobStatus {
    match s {
        JobStatus::Pending => wire::JobStatus::Pending,
        JobStatus::Running => wire::JobStatus::Running,
        JobStatus::Completed => wire::JobStatus::Completed,
        JobStatus::Failed => wire::JobStatus::Failed,
    }
}

/// A job as the API shows it: its record, its targets and their counts in the current run,
/// and its next firing.
fn view(app: &App, job: Job, targets: &[JobTarget]) -> wire::Job {
    let mut counts = wire::TargetCounts::default();
    for t in targets {
        // A target still on an earlier run (a timed job's target that missed the latest
        // firing, or one added since) waits for the next firing.
        let status = if t.run == job.run {
            t.status
        } else {
            JobStatus::Pending
        };
        *match status {
            JobStatus::Pending => &mut counts.pending,
            JobStatus::Running => &mut counts.running,
            JobStatus::Completed => &mut counts.completed,
            JobStatus::Failed => &mut counts.failed,
        } += 1;
    }
    let next_fire_on = Timer::of(&job.schedule, job.created_on)
        .ok()
        .flatten()
        .and_then(|t| t.next(job.fired_on, app.clock.now()));
    wire::Job {
        steps: job
            .steps
            .iter()
            .map(|s| serde_json::to_value(s).unwrap_or_default())
            .collect(),
        schedule: serde_json::to_value(&job.schedule).unwrap_or_default(),
        id: job.id,
        name: job.name,
        max_attempts: job.max_attempts,
        step_timeout: job.step_timeout,
        created_on: job.created_on,
        run: job.run,
        fired_on: job.fired_on,
        next_fire_on,
        targets: targets.iter().map(|t| t.client_id.clone()).collect(),
        target_counts: counts,
    }
}

fn job_path(account: &str, id: &str) -> String {
    format!("/api/v1/accounts/{account}/jobs/{id}")
}

/// Creates a job on registry devices of the account.
#[utoipa::path(
    post, path = "/api/v1/accounts/{account}/jobs", tag = "jobs",
    params(("account" = String, Path, description = "Target account")),
    request_body(content = Object, description = "`{\"name\", \"targets\": [clientId...], \"steps\": [...], \"schedule\": {\"trigger\": ...}, \"maxAttempts\": 3, \"stepTimeout\": 30}`"),
    responses(
        (status = 201, description = "Created", body = wire::Job),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed (unknown target, invalid XML, cron or duration)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_job(
    app: State<Arc<App>>,
    body: JsonBody<false>,
    Target { account, .. }: Target,
) -> Result<HttpResponse, ApiError> {
    let spec = input::job_spec(
        &body.into_value()?,
        &account.name,
        Config::secs(app.config.device_management.timeout),
    )
    .map_err(ApiError::Invalid)?;
    let targets = spec.targets.clone();
    let job = app
        .store
        .write_async(jobs::create_job(spec, app.clock.now()))
        .await?;
    app.jobs
        .created(job.clone(), &targets)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let stored = app.store.read()?.job_targets(&job.id)?;
    let location = job_path(&account.name, &job.id);
    Ok(HttpResponse::Created()
        .header(header::LOCATION, location)
        .json(&view(&app, job, &stored)))
}

/// The jobs of the account, oldest first.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/jobs", tag = "jobs",
    params(("account" = String, Path, description = "Target account")),
    responses(
        (status = 200, description = "The jobs", body = wire::JobList),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_jobs(
    app: State<Arc<App>>,
    Target { account, .. }: Target,
) -> Result<HttpResponse, ApiError> {
    let read = app.store.read()?;
    let mut items = Vec::new();
    for job in read.jobs(Some(&account.name))? {
        let targets = read.job_targets(&job.id)?;
        items.push(view(&app, job, &targets));
    }
    Ok(HttpResponse::Ok().json(&wire::JobList { items }))
}

fn find(read: &Reader, account: &str, id: &str) -> Result<Job, ApiError> {
    read.job(account, id)?
        .ok_or_else(|| ApiError::NotFound(format!("job {id:?}")))
}

/// One job, with its targets' counts per status.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/jobs/{id}", tag = "jobs",
    params(
        ("account" = String, Path, description = "Target account"),
        ("id" = String, Path, description = "Job id"),
    ),
    responses(
        (status = 200, description = "The job", body = wire::Job),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or job", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_job(
    app: State<Arc<App>>,
    Target {
        account,
        path: IdPath { id },
    }: Target<IdPath>,
) -> Result<HttpResponse, ApiError> {
    let read = app.store.read()?;
    let job = find(&read, &account.name, &id)?;
    let targets = read.job_targets(&id)?;
    Ok(HttpResponse::Ok().json(&view(&app, job, &targets)))
}

/// Deletes a job with its executions: no attempt starts any more; steps in flight finish on
/// their devices.
#[utoipa::path(
    delete, path = "/api/v1/accounts/{account}/jobs/{id}", tag = "jobs",
    params(
        ("account" = String, Path, description = "Target account"),
        ("id" = String, Path, description = "Job id"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or job", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_job(
    app: State<Arc<App>>,
    Target {
        account,
        path: IdPath { id },
    }: Target<IdPath>,
) -> Result<HttpResponse, ApiError> {
    app.store
        .write_async(jobs::delete_job(account.name.clone(), id.clone()))
        .await?;
    app.jobs.deleted(&account.name, &id);
    Ok(HttpResponse::NoContent().finish())
}

/// The `add` / `remove` lists of a targets change.
fn target_lists(body: &serde_json::Value) -> Result<(Vec<String>, Vec<String>), ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::invalid("", "the body must be a JSON object"));
    };
    let mut errors = Vec::new();
    let mut list = |name: &str| -> Vec<String> {
        match obj.get(name) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) if items.iter().all(|v| v.is_string()) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(_) => {
                errors.push(FieldError::new(name, "must be an array of client IDs"));
                Vec::new()
            }
        }
    };
    let add = list("add");
    let remove = list("remove");
    if errors.is_empty() {
        Ok((add, remove))
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// Adds and removes targets (added ones must be registry devices of the account; at most
/// 10,000 in all).
#[utoipa::path(
    post, path = "/api/v1/accounts/{account}/jobs/{id}/targets", tag = "jobs",
    params(
        ("account" = String, Path, description = "Target account"),
        ("id" = String, Path, description = "Job id"),
    ),
    request_body(content = Object, description = "`{\"add\": [clientId...], \"remove\": [clientId...]}`"),
    responses(
        (status = 200, description = "The job", body = wire::Job),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or job", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown device, or too many targets", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn change_targets(
    app: State<Arc<App>>,
    body: JsonBody<false>,
    Target {
        account,
        path: IdPath { id },
    }: Target<IdPath>,
) -> Result<HttpResponse, ApiError> {
    let (add, remove) = target_lists(&body.into_value()?)?;
    let job = app
        .store
        .write_async(jobs::update_targets(
            account.name.clone(),
            id.clone(),
            add.clone(),
            remove.clone(),
            app.clock.now(),
        ))
        .await?;
    app.jobs.targets_changed(&job, &add, &remove);
    let targets = app.store.read()?.job_targets(&id)?;
    Ok(HttpResponse::Ok().json(&view(&app, job, &targets)))
}

/// A job's executions (one per attempt per target), with their logs.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account}/jobs/{id}/executions", tag = "jobs",
    params(
        ("account" = String, Path, description = "Target account"),
        ("id" = String, Path, description = "Job id"),
        ("clientId" = Option<String>, Query, description = "Only this target's"),
        ("status" = Option<String>, Query, description = "PENDING, RUNNING, COMPLETED or FAILED"),
    ),
    responses(
        (status = 200, description = "The executions", body = wire::JobExecutionList),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown account or job", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown status", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_executions(
    app: State<Arc<App>>,
    req: HttpRequest,
    Target {
        account,
        path: IdPath { id },
    }: Target<IdPath>,
) -> Result<HttpResponse, ApiError> {
    let mut client_id = None;
    let mut status = None;
    for (k, v) in query_pairs(&req)? {
        match k.as_str() {
            "clientId" => client_id = Some(v),
            "status" => {
                status = Some(JobStatus::parse(&v).ok_or_else(|| {
                    ApiError::invalid("status", "must be PENDING, RUNNING, COMPLETED or FAILED")
                })?);
            }
            _ => {}
        }
    }
    let read = app.store.read()?;
    find(&read, &account.name, &id)?;
    let items = read
        .job_executions(&id, client_id.as_deref(), status)?
        .into_iter()
        .map(|e| wire::JobExecution {
            id: e.id,
            client_id: e.client_id,
            status: wire_status(e.status),
            run: e.run,
            attempt: e.attempt,
            started_on: e.started_on,
            ended_on: e.ended_on,
            step: e.step,
            log: e
                .log
                .into_iter()
                .map(|l| wire::LogLine {
                    at: l.at,
                    level: dto::level(l.level),
                    message: l.message,
                })
                .collect(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(&wire::JobExecutionList { items }))
}
