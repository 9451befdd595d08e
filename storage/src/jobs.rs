//! Batch Jobs (API.md "Jobs", PROTOCOL.md 7): the job, its targets' state in the current run,
//! and one execution per attempt of a target, with its log.
//!
//! A job's *run* counts its firings: `NOW` and `DEVICE_CONNECT` jobs have one run from their
//! creation; `INTERVAL` and `CRON` jobs start a new run at each firing. Each target of the
//! current run has a [`JobTarget`] (its status, the attempts made, its latest execution); every
//! attempt is a [`JobExecution`] keyed by job, client ID and a time-ordered id, so a target's
//! executions list in order. The rules that decide whether an attempt may start are checked
//! inside the write ([`start_execution`]), so the jobs engine's in-memory view is only a filter.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{Table, Tx, decode, key};
use crate::ids::new_id;
use crate::ops::Op;
use crate::read::Reader;
use crate::records::{LogLevel, LogLine, Timestamp};
use crate::validate::FieldError;
use crate::{RecordKind, StoreError};

/// Most targets one job may have.
pub const MAX_TARGETS: usize = 10_000;

/// One step of a job, as the API takes and shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum JobStep {
    /// CONF-V1 `PUT configurations` of this document (Kura snapshot form, validated).
    Configuration {
        /// The configuration XML.
        configuration: String,
    },
    /// CMD-V1 `EXEC command`.
    Command {
        /// The command.
        command: String,
        /// Its arguments.
        #[serde(default)]
        arguments: Vec<String>,
        /// Environment variables.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        environment: BTreeMap<String, String>,
    },
    /// Any other Kura request.
    Request {
        /// The app, e.g. `DEPLOY-V2`.
        app: String,
        /// GET, PUT, POST, DEL or EXEC.
        method: String,
        /// The resource path.
        #[serde(default)]
        resources: Vec<String>,
        /// The app's metrics (strings, booleans, integers).
        #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
        metrics: serde_json::Map<String, serde_json::Value>,
        /// The body, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
}

impl JobStep {
    /// The step's type, as in the API.
    pub fn kind(&self) -> &'static str {
        match self {
            JobStep::Configuration { .. } => "configuration",
            JobStep::Command { .. } => "command",
            JobStep::Request { .. } => "request",
        }
    }
}

/// When a job runs (API.md "Jobs").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "trigger", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Schedule {
    /// Once, at creation, on every target (a target not ready then runs when it becomes ready).
    Now,
    /// On each target when it connects and is ready, until it COMPLETED once.
    DeviceConnect,
    /// Every `every` (ISO 8601 duration) from `startsOn` (default: creation).
    Interval {
        /// ISO 8601 duration, e.g. `PT1H`.
        every: String,
        /// The first firing.
        #[serde(
            rename = "startsOn",
            default,
            skip_serializing_if = "Option::is_none",
            serialize_with = "ser_opt_ts"
        )]
        starts_on: Option<Timestamp>,
    },
    /// At each time a 5-field cron expression matches, in UTC.
    Cron {
        /// e.g. `0 3 * * *`.
        cron: String,
    },
}

impl Schedule {
    /// Whether firings (not connections) start the runs.
    pub fn is_timed(&self) -> bool {
        matches!(self, Schedule::Interval { .. } | Schedule::Cron { .. })
    }
}

// serde's `serialize_with` hands over `&Option<T>`.
#[allow(clippy::ref_option)]
fn ser_opt_ts<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&rfc3339(t)),
        None => s.serialize_none(),
    }
}

fn ser_ts<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(t))
}

fn rfc3339(t: &Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Opaque, time-ordered id.
    pub id: String,
    /// Its account.
    pub account: String,
    /// A name for people.
    pub name: String,
    /// Run in order on each target.
    pub steps: Vec<JobStep>,
    /// When it runs.
    pub schedule: Schedule,
    /// Attempts per target and run.
    pub max_attempts: u32,
    /// Seconds each step waits for the device's reply.
    pub step_timeout: u32,
    /// Creation time.
    #[serde(serialize_with = "ser_ts")]
    pub created_on: Timestamp,
    /// Firings so far (1 from creation for `NOW` and `DEVICE_CONNECT`).
    pub run: u32,
    /// The latest firing of a timed job.
    #[serde(default, serialize_with = "ser_opt_ts")]
    pub fired_on: Option<Timestamp>,
}

/// Status of a target's attempt (and of the target, by its latest attempt).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Waiting for the device (or, for a timed job, for the next firing).
    Pending,
    /// A step is in flight.
    Running,
    /// Every step answered 200.
    Completed,
    /// A step failed (retried on the next connection while attempts remain).
    Failed,
}

impl JobStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "PENDING",
            JobStatus::Running => "RUNNING",
            JobStatus::Completed => "COMPLETED",
            JobStatus::Failed => "FAILED",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<JobStatus> {
        [
            JobStatus::Pending,
            JobStatus::Running,
            JobStatus::Completed,
            JobStatus::Failed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A target of a job: where it stands in the job's current run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobTarget {
    /// The device.
    pub client_id: String,
    /// The run this state belongs to (0: before a timed job's first firing).
    pub run: u32,
    /// Attempts made in that run.
    pub attempts: u32,
    /// Its status in that run.
    pub status: JobStatus,
    /// Its latest execution in that run.
    pub execution: Option<String>,
}

/// One attempt of a job on one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecution {
    /// Opaque, time-ordered id.
    pub id: String,
    /// The job.
    pub job_id: String,
    /// The device.
    pub client_id: String,
    /// The job's run.
    pub run: u32,
    /// 1 for the first attempt of the run.
    pub attempt: u32,
    /// Status.
    pub status: JobStatus,
    /// When its first step was sent.
    #[serde(default, serialize_with = "ser_opt_ts")]
    pub started_on: Option<Timestamp>,
    /// When it ended.
    #[serde(default, serialize_with = "ser_opt_ts")]
    pub ended_on: Option<Timestamp>,
    /// The step running or last run (0-based), `None` before the first.
    pub step: Option<u32>,
    /// What happened, step by step; never a secret.
    pub log: Vec<LogLine>,
}

/// A job as created: everything but the id, the run and the firing.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// Its account.
    pub account: String,
    /// A name for people.
    pub name: String,
    /// Validated steps.
    pub steps: Vec<JobStep>,
    /// Validated schedule.
    pub schedule: Schedule,
    /// At least 1.
    pub max_attempts: u32,
    /// Seconds.
    pub step_timeout: u32,
    /// Registry devices of the account (checked in the write).
    pub targets: Vec<String>,
}

fn job_key(account: &str, id: &str) -> Vec<u8> {
    key(&[account, id])
}

fn target_key(job: &str, client_id: &str) -> Vec<u8> {
    key(&[job, client_id])
}

fn execution_key(job: &str, client_id: &str, id: &str) -> Vec<u8> {
    key(&[job, client_id, id])
}

fn log(at: Timestamp, level: LogLevel, message: impl Into<String>) -> LogLine {
    LogLine {
        at,
        level,
        message: message.into(),
    }
}

/// A new PENDING execution of `target` for `job`'s current run, written with its target.
fn add_pending(tx: &mut Tx<'_, '_>, job: &Job, client_id: &str, attempts: u32, now: Timestamp) {
    let exec = JobExecution {
        id: new_id(),
        job_id: job.id.clone(),
        client_id: client_id.to_string(),
        run: job.run,
        attempt: attempts + 1,
        status: JobStatus::Pending,
        started_on: None,
        ended_on: None,
        step: None,
        log: vec![log(
            now,
            LogLevel::Info,
            "waiting for the device to be ready",
        )],
    };
    tx.put(
        Table::JobTargets,
        target_key(&job.id, client_id),
        &JobTarget {
            client_id: client_id.to_string(),
            run: job.run,
            attempts,
            status: JobStatus::Pending,
            execution: Some(exec.id.clone()),
        },
    );
    tx.put(
        Table::JobExecutions,
        execution_key(&job.id, client_id, &exec.id),
        &exec,
    );
}

/// Checks that every client ID is a registry device of `account`, with no repeats.
fn check_targets(
    tx: &Tx<'_, '_>,
    account: &str,
    targets: &[String],
    field: &str,
) -> Result<(), StoreError> {
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for cid in targets {
        if !seen.insert(cid.as_str()) {
            errors.push(FieldError::new(field, format!("{cid:?} is listed twice")));
        } else if tx.get_raw(Table::Devices, &key(&[account, cid]))?.is_none() {
            errors.push(FieldError::new(
                field,
                format!("{cid:?} is not a registry device of the account"),
            ));
        }
        if errors.len() >= 20 {
            break;
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Invalid(errors))
    }
}

/// Creates a job and its targets. `NOW` and `DEVICE_CONNECT` jobs start their one run at once
/// (every target PENDING); timed jobs wait for their first firing.
pub fn create_job(spec: JobSpec, now: Timestamp) -> Op<Job> {
    Box::new(move |tx| {
        if spec.targets.len() > MAX_TARGETS {
            return Err(StoreError::Invalid(vec![FieldError::new(
                "targets",
                format!("at most {MAX_TARGETS} per job"),
            )]));
        }
        check_targets(tx, &spec.account, &spec.targets, "targets")?;
        let job = Job {
            id: new_id(),
            account: spec.account,
            name: spec.name,
            steps: spec.steps,
            run: u32::from(!spec.schedule.is_timed()),
            schedule: spec.schedule,
            max_attempts: spec.max_attempts,
            step_timeout: spec.step_timeout,
            created_on: now,
            fired_on: None,
        };
        for cid in &spec.targets {
            add_target(tx, &job, cid, now);
        }
        tx.put(Table::Jobs, job_key(&job.account, &job.id), &job);
        Ok(job)
    })
}

/// A target joining `job`: PENDING in the current run (timed jobs: until the next firing).
fn add_target(tx: &mut Tx<'_, '_>, job: &Job, client_id: &str, now: Timestamp) {
    if job.schedule.is_timed() {
        tx.put(
            Table::JobTargets,
            target_key(&job.id, client_id),
            &JobTarget {
                client_id: client_id.to_string(),
                run: 0,
                attempts: 0,
                status: JobStatus::Pending,
                execution: None,
            },
        );
    } else {
        add_pending(tx, job, client_id, 0, now);
    }
}

fn job_in(tx: &Tx<'_, '_>, account: &str, id: &str) -> Result<Job, StoreError> {
    tx.get(Table::Jobs, &job_key(account, id))?
        .ok_or(StoreError::NotFound(RecordKind::Job))
}

/// Deletes a job, its targets and their executions.
pub fn delete_job(account: String, id: String) -> Op<()> {
    Box::new(move |tx| {
        job_in(tx, &account, &id)?;
        let prefix = key(&[&id, ""]);
        for table in [Table::JobTargets, Table::JobExecutions] {
            for k in tx.keys_with_prefix(table, &prefix)? {
                tx.delete(table, k);
            }
        }
        tx.delete(Table::Jobs, job_key(&account, &id));
        Ok(())
    })
}

/// Adds and removes targets. A removed target's executions go with it (a step in flight still
/// finishes on the device, unrecorded). Returns the job.
pub fn update_targets(
    account: String,
    id: String,
    add: Vec<String>,
    remove: Vec<String>,
    now: Timestamp,
) -> Op<Job> {
    Box::new(move |tx| {
        let job = job_in(tx, &account, &id)?;
        check_targets(tx, &account, &add, "add")?;
        for cid in &remove {
            let ek = key(&[&id, cid, ""]);
            for k in tx.keys_with_prefix(Table::JobExecutions, &ek)? {
                tx.delete(Table::JobExecutions, k);
            }
            tx.delete(Table::JobTargets, target_key(&id, cid));
        }
        let mut count = tx
            .keys_with_prefix(Table::JobTargets, &key(&[&id, ""]))?
            .iter()
            .filter(|k| !remove.iter().any(|r| crate::engine::last_part(k) == r))
            .count();
        for cid in &add {
            if tx
                .get_raw(Table::JobTargets, &target_key(&id, cid))?
                .is_some()
            {
                continue;
            }
            count += 1;
            add_target(tx, &job, cid, now);
        }
        if count > MAX_TARGETS {
            return Err(StoreError::Invalid(vec![FieldError::new(
                "add",
                format!("at most {MAX_TARGETS} targets per job"),
            )]));
        }
        Ok(job)
    })
}

/// A timed job fires: a new run in which every target not RUNNING gets a PENDING execution
/// (an execution still PENDING from the previous run ends FAILED). Returns the job as fired,
/// or `None` when it is gone.
pub fn fire_job(account: String, id: String, now: Timestamp) -> Op<Option<Job>> {
    Box::new(move |tx| {
        let Some(mut job) = tx.get::<Job>(Table::Jobs, &job_key(&account, &id))? else {
            return Ok(None);
        };
        job.run += 1;
        job.fired_on = Some(now);
        let targets: Vec<JobTarget> = tx
            .keys_with_prefix(Table::JobTargets, &key(&[&id, ""]))?
            .iter()
            .filter_map(|k| tx.get::<JobTarget>(Table::JobTargets, k).transpose())
            .collect::<Result<_, _>>()?;
        for t in targets {
            match t.status {
                JobStatus::Running => continue,
                JobStatus::Pending => {
                    if let Some(exec) = &t.execution {
                        let ek = execution_key(&id, &t.client_id, exec);
                        if let Some(mut e) = tx.get::<JobExecution>(Table::JobExecutions, &ek)? {
                            e.status = JobStatus::Failed;
                            e.ended_on = Some(now);
                            e.log.push(log(
                                now,
                                LogLevel::Error,
                                "the device was not ready before the next firing",
                            ));
                            tx.put(Table::JobExecutions, ek, &e);
                        }
                    }
                }
                JobStatus::Completed | JobStatus::Failed => {}
            }
            add_pending(tx, &job, &t.client_id, 0, now);
        }
        tx.put(Table::Jobs, job_key(&account, &id), &job);
        Ok(Some(job))
    })
}

/// An attempt that may start.
#[derive(Clone, Debug, PartialEq)]
pub struct Started {
    /// The execution, now RUNNING.
    pub execution: String,
    /// Its run.
    pub run: u32,
    /// Its attempt number.
    pub attempt: u32,
}

/// Starts an attempt of `job` on `client_id`, now ready, when the rules allow one: its
/// current-run execution is PENDING, or FAILED with attempts left (a new execution). `None`
/// when not (completed, out of attempts, running, gone, or a timed job's target that missed
/// the firing). The execution's step becomes the first, with `first_line` in its log.
pub fn start_execution(
    account: String,
    id: String,
    client_id: String,
    first_line: String,
    now: Timestamp,
) -> Op<Option<Started>> {
    Box::new(move |tx| {
        let Some(job) = tx.get::<Job>(Table::Jobs, &job_key(&account, &id))? else {
            return Ok(None);
        };
        let tk = target_key(&id, &client_id);
        let Some(mut target) = tx.get::<JobTarget>(Table::JobTargets, &tk)? else {
            return Ok(None);
        };
        if target.run != job.run || job.run == 0 {
            return Ok(None);
        }
        let mut exec = match (target.status, &target.execution) {
            (JobStatus::Pending, Some(e)) => {
                match tx
                    .get::<JobExecution>(Table::JobExecutions, &execution_key(&id, &client_id, e))?
                {
                    Some(exec) => exec,
                    None => return Ok(None),
                }
            }
            (JobStatus::Failed, _) if target.attempts < job.max_attempts => JobExecution {
                id: new_id(),
                job_id: id.clone(),
                client_id: client_id.clone(),
                run: job.run,
                attempt: target.attempts + 1,
                status: JobStatus::Pending,
                started_on: None,
                ended_on: None,
                step: None,
                log: Vec::new(),
            },
            _ => return Ok(None),
        };
        exec.status = JobStatus::Running;
        exec.started_on = Some(now);
        exec.log.push(log(
            now,
            LogLevel::Info,
            format!("attempt {} of {} started", exec.attempt, job.max_attempts),
        ));
        exec.log.push(log(now, LogLevel::Info, first_line));
        exec.step = Some(0);
        target.attempts = exec.attempt;
        target.status = JobStatus::Running;
        target.execution = Some(exec.id.clone());
        tx.put(Table::JobTargets, tk, &target);
        tx.put(
            Table::JobExecutions,
            execution_key(&id, &client_id, &exec.id),
            &exec,
        );
        Ok(Some(Started {
            execution: exec.id,
            run: job.run,
            attempt: target.attempts,
        }))
    })
}

/// Records the progress of a RUNNING execution: the step now running and new log lines;
/// with `end`, its final status (also the target's). Nothing when the job, the target or the
/// execution is gone.
pub fn record_execution(
    id: String,
    client_id: String,
    execution: String,
    step: Option<u32>,
    lines: Vec<LogLine>,
    end: Option<(JobStatus, Timestamp)>,
) -> Op<()> {
    Box::new(move |tx| {
        let ek = execution_key(&id, &client_id, &execution);
        let Some(mut exec) = tx.get::<JobExecution>(Table::JobExecutions, &ek)? else {
            return Ok(());
        };
        exec.step = step.or(exec.step);
        exec.log.extend(lines);
        if let Some((status, at)) = end {
            exec.status = status;
            exec.ended_on = Some(at);
            let tk = target_key(&id, &client_id);
            if let Some(mut target) = tx.get::<JobTarget>(Table::JobTargets, &tk)?
                && target.execution.as_deref() == Some(execution.as_str())
            {
                target.status = status;
                tx.put(Table::JobTargets, tk, &target);
            }
        }
        tx.put(Table::JobExecutions, ek, &exec);
        Ok(())
    })
}

/// At start: every execution left RUNNING by the previous process ends FAILED with a log line
/// (retried per `maxAttempts` when its device is next ready). Returns how many.
pub fn fail_running_executions(now: Timestamp) -> Op<usize> {
    Box::new(move |tx| {
        let mut failed = 0;
        for k in tx.keys_with_prefix(Table::JobTargets, b"")? {
            let Some(mut target) = tx.get::<JobTarget>(Table::JobTargets, &k)? else {
                continue;
            };
            if target.status != JobStatus::Running {
                continue;
            }
            let job = std::str::from_utf8(&k[..k.iter().position(|b| *b == 0).unwrap_or(0)])
                .unwrap_or("")
                .to_string();
            if let Some(e) = &target.execution {
                let ek = execution_key(&job, &target.client_id, e);
                if let Some(mut exec) = tx.get::<JobExecution>(Table::JobExecutions, &ek)? {
                    exec.status = JobStatus::Failed;
                    exec.ended_on = Some(now);
                    exec.log.push(log(
                        now,
                        LogLevel::Error,
                        match exec.step {
                            Some(s) => format!(
                                "step {} was in flight when Fleetgate stopped; its outcome is unknown",
                                s + 1
                            ),
                            None => "Fleetgate stopped before the first step was sent".to_string(),
                        },
                    ));
                    tx.put(Table::JobExecutions, ek, &exec);
                }
            }
            target.status = JobStatus::Failed;
            tx.put(Table::JobTargets, k, &target);
            failed += 1;
        }
        Ok(failed)
    })
}

impl Reader {
    /// A job of `account`.
    pub fn job(&self, account: &str, id: &str) -> Result<Option<Job>, StoreError> {
        self.snap.get(Table::Jobs, &job_key(account, id))
    }

    /// The jobs of `account` (every account when `None`), oldest first.
    pub fn jobs(&self, account: Option<&str>) -> Result<Vec<Job>, StoreError> {
        let prefix = account.map_or_else(Vec::new, |a| key(&[a, ""]));
        let mut out = Vec::new();
        self.snap.scan(Table::Jobs, &prefix, b"", |_, v| {
            out.push(decode(v)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// A job's targets, by client ID.
    pub fn job_targets(&self, id: &str) -> Result<Vec<JobTarget>, StoreError> {
        let mut out = Vec::new();
        self.snap
            .scan(Table::JobTargets, &key(&[id, ""]), b"", |_, v| {
                out.push(decode(v)?);
                Ok(true)
            })?;
        Ok(out)
    }

    /// A job's executions (of one target when `client_id` is given), by client ID then in
    /// order, optionally only those in `status`.
    pub fn job_executions(
        &self,
        id: &str,
        client_id: Option<&str>,
        status: Option<JobStatus>,
    ) -> Result<Vec<JobExecution>, StoreError> {
        let prefix = match client_id {
            Some(c) => key(&[id, c, ""]),
            None => key(&[id, ""]),
        };
        let mut out = Vec::new();
        self.snap.scan(Table::JobExecutions, &prefix, b"", |_, v| {
            let e: JobExecution = decode(v)?;
            if status.is_none_or(|s| e.status == s) {
                out.push(e);
            }
            Ok(true)
        })?;
        Ok(out)
    }
}
