//! Fleetgate's Batch Jobs engine (PROTOCOL.md 7, API.md "Jobs"): it decides when an attempt of
//! a job starts on a target device, runs the job's steps in order through the Kura requester,
//! and records every attempt as a durable execution with its log.
//!
//! Triggers: `NOW` (at creation, on every target that is ready; the others when they become
//! ready), `DEVICE_CONNECT` (on each target when it connects and is ready), `INTERVAL` and `CRON`
//! (each firing starts a new run on every target, [`schedule`]). A failed attempt is retried
//! when its device is next ready, up to `maxAttempts` per run. At most
//! `device_management.max_in_flight` executions send steps at once; the others wait for a slot.
//!
//! The rules live in storage's write operations (`fleetgate_storage::jobs`), checked inside the
//! write; this crate keeps only a filter in memory (which devices are targets, which targets
//! are settled for the run) so that the readiness of a device no job targets costs one lookup.
//! At start, executions left RUNNING by a previous process end FAILED with a log line.
//!
//! This crate owns no network code and no HTTP: the admin API validates and creates jobs in
//! the store, then tells the engine ([`Jobs::created`], [`Jobs::targets_changed`],
//! [`Jobs::deleted`]). It never logs a step's configuration or metrics (they may hold secrets).

pub mod schedule;
pub mod steps;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use fleetgate_auth_hook::Clock;
use fleetgate_devmgmt::{MetricError, Requester};
use fleetgate_metrics::Metrics;
use fleetgate_storage::jobs::{self as ops, Job, JobStatus};
use fleetgate_storage::{LogLevel, LogLine, Store, StoreError, Timestamp};
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::AbortHandle;

use schedule::Timer;

/// Errors of the jobs engine and of job validation.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// An `INTERVAL` duration that is not one this engine takes.
    #[error("invalid duration {0}")]
    Duration(String),
    /// A cron expression that is not 5 valid fields.
    #[error("invalid cron expression {0}")]
    Cron(String),
    /// A request step's method.
    #[error("method must be GET, PUT, POST, DEL or EXEC")]
    Method,
    /// A request step's metric.
    #[error("metrics: {0}")]
    Metric(#[from] MetricError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine's thread could not start.
    #[error("cannot start the jobs thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// What the engine keeps of a job.
struct Plan {
    job: Job,
}

impl Plan {
    /// How long each step waits for its reply.
    fn step_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.job.step_timeout.max(1)))
    }
}

/// `(job id, client id)`.
type TargetKey = (String, String);

#[derive(Default)]
struct State {
    plans: HashMap<String, Arc<Plan>>,
    /// account -> client ID -> ids of the jobs targeting it.
    by_device: HashMap<String, HashMap<String, Vec<String>>>,
    /// job id -> its targets.
    members: HashMap<String, HashSet<String>>,
    /// Targets with nothing left to do in their job's current run.
    settled: HashSet<TargetKey>,
    /// Targets with an attempt queued or running.
    busy: HashSet<TargetKey>,
    timers: HashMap<String, AbortHandle>,
}

impl State {
    fn add_target(&mut self, account: &str, job: &str, client_id: &str) {
        let jobs = self
            .by_device
            .entry(account.to_string())
            .or_default()
            .entry(client_id.to_string())
            .or_default();
        if !jobs.iter().any(|j| j == job) {
            jobs.push(job.to_string());
        }
        self.members
            .entry(job.to_string())
            .or_default()
            .insert(client_id.to_string());
    }

    fn remove_target(&mut self, account: &str, job: &str, client_id: &str) {
        if let Some(devices) = self.by_device.get_mut(account) {
            if let Some(jobs) = devices.get_mut(client_id) {
                jobs.retain(|j| j != job);
                if jobs.is_empty() {
                    devices.remove(client_id);
                }
            }
            if devices.is_empty() {
                self.by_device.remove(account);
            }
        }
        if let Some(m) = self.members.get_mut(job) {
            m.remove(client_id);
        }
        self.settled
            .remove(&(job.to_string(), client_id.to_string()));
    }
}

struct Inner {
    store: Store,
    requester: Arc<Requester>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
    handle: Handle,
    state: Mutex<State>,
}

/// How an attempt left its target.
enum After {
    /// Nothing left in this run (completed, out of attempts, or not startable).
    Settled,
    /// May start again when the device is next ready.
    Open,
}

/// The engine: one per process.
pub struct Jobs {
    inner: Arc<Inner>,
    /// Stops the engine's own thread, when it has one.
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl Jobs {
    /// Starts the engine on a thread of its own: fails the executions a previous process left
    /// RUNNING, loads every job, listens for ready devices and arms the timers.
    pub fn start(
        store: Store,
        requester: Arc<Requester>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        max_in_flight: usize,
    ) -> Result<Jobs, JobsError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("fleetgate-jobs".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        let jobs = Jobs::start_on(handle, store, requester, clock, metrics, max_in_flight)?;
        *jobs.stop.lock() = Some(stop);
        Ok(jobs)
    }

    /// [`Jobs::start`] on a runtime of the caller's (tests drive its clock).
    pub fn start_on(
        handle: Handle,
        store: Store,
        requester: Arc<Requester>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        max_in_flight: usize,
    ) -> Result<Jobs, JobsError> {
        let failed = store.write(ops::fail_running_executions(clock.now()))?;
        if failed > 0 {
            tracing::warn!(
                count = failed,
                "job executions left RUNNING by the previous process marked FAILED"
            );
        }
        let inner = Arc::new(Inner {
            store,
            requester,
            clock,
            metrics,
            slots: Arc::new(Semaphore::new(max_in_flight.max(1))),
            handle,
            state: Mutex::new(State::default()),
        });
        let read = inner.store.read()?;
        for job in read.jobs(None)? {
            let targets = read.job_targets(&job.id)?;
            let plan = inner.plan_of(job)?;
            let mut st = inner.state.lock();
            for t in targets {
                st.add_target(&plan.job.account, &plan.job.id, &t.client_id);
                if settled(&plan.job, t.run, t.status, t.attempts) {
                    st.settled.insert((plan.job.id.clone(), t.client_id));
                }
            }
            st.plans.insert(plan.job.id.clone(), plan.clone());
            drop(st);
            inner.arm(&plan)?;
        }
        drop(read);
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        inner
            .requester
            .on_ready(Box::new(move |account: &str, client_id: &str| {
                if let Some(inner) = weak.upgrade() {
                    inner.ready(account, client_id);
                }
            }));
        Ok(Jobs {
            inner,
            stop: Mutex::new(None),
        })
    }

    /// A job was created in the store with these targets: `NOW` starts on every ready target,
    /// timed jobs arm their timer.
    pub fn created(&self, job: Job, targets: &[String]) -> Result<(), JobsError> {
        let plan = self.inner.plan_of(job)?;
        {
            let mut st = self.inner.state.lock();
            for cid in targets {
                st.add_target(&plan.job.account, &plan.job.id, cid);
            }
            st.plans.insert(plan.job.id.clone(), plan.clone());
        }
        self.inner.arm(&plan)?;
        if plan.job.schedule == ops::Schedule::Now {
            self.inner
                .start_ready(&plan.job.account, &plan.job.id, targets);
        }
        Ok(())
    }

    /// Targets were added to and removed from `job` in the store: an added target of a `NOW`
    /// job starts at once when ready.
    pub fn targets_changed(&self, job: &Job, added: &[String], removed: &[String]) {
        {
            let mut st = self.inner.state.lock();
            for cid in removed {
                st.remove_target(&job.account, &job.id, cid);
            }
            for cid in added {
                st.add_target(&job.account, &job.id, cid);
            }
        }
        if job.schedule == ops::Schedule::Now {
            self.inner.start_ready(&job.account, &job.id, added);
        }
    }

    /// A job was deleted from the store: no attempt starts any more; a step in flight
    /// finishes on its device and is not recorded.
    pub fn deleted(&self, account: &str, id: &str) {
        let mut st = self.inner.state.lock();
        st.plans.remove(id);
        if let Some(t) = st.timers.remove(id) {
            t.abort();
        }
        for cid in st.members.remove(id).unwrap_or_default() {
            st.remove_target(account, id, &cid);
        }
    }

    /// Stops the timers and, when the engine has its own thread, the thread (steps in flight
    /// are dropped; the next start fails their executions with a log line).
    pub fn shutdown(&self) {
        for (_, t) in self.inner.state.lock().timers.drain() {
            t.abort();
        }
        if let Some(stop) = self.stop.lock().take() {
            let _ = stop.send(());
        }
    }

    /// Attempts queued for a slot or running.
    pub fn running(&self) -> usize {
        self.inner.state.lock().busy.len()
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Whether a target has nothing left to do in its job's current run.
fn settled(job: &Job, run: u32, status: JobStatus, attempts: u32) -> bool {
    if run != job.run {
        // A timed job's target that missed the latest firing waits for the next.
        return job.schedule.is_timed();
    }
    match status {
        JobStatus::Completed => true,
        JobStatus::Failed => attempts >= job.max_attempts,
        JobStatus::Pending | JobStatus::Running => false,
    }
}

fn line(at: Timestamp, level: LogLevel, message: impl Into<String>) -> LogLine {
    LogLine {
        at,
        level,
        message: message.into(),
    }
}

impl Inner {
    fn plan_of(&self, job: Job) -> Result<Arc<Plan>, JobsError> {
        // Validated when created; checked again so a stored schedule can never panic here.
        Timer::of(&job.schedule, job.created_on)?;
        Ok(Arc::new(Plan { job }))
    }

    fn plan(&self, id: &str) -> Option<Arc<Plan>> {
        self.state.lock().plans.get(id).cloned()
    }

    /// Starts the timer of a timed job.
    fn arm(self: &Arc<Self>, plan: &Arc<Plan>) -> Result<(), JobsError> {
        let Some(timer) = Timer::of(&plan.job.schedule, plan.job.created_on)? else {
            return Ok(());
        };
        let task = self.handle.spawn(self.clone().tick(
            plan.job.account.clone(),
            plan.job.id.clone(),
            timer,
            plan.job.fired_on,
        ));
        if let Some(old) = self
            .state
            .lock()
            .timers
            .insert(plan.job.id.clone(), task.abort_handle())
        {
            old.abort();
        }
        Ok(())
    }

    /// Fires a timed job at each time of its schedule, until it is deleted.
    async fn tick(
        self: Arc<Self>,
        account: String,
        id: String,
        timer: Timer,
        mut fired_on: Option<Timestamp>,
    ) {
        loop {
            let Some(next) = timer.next(fired_on, self.clock.now()) else {
                return;
            };
            // Short sleeps: the clock may be stepped while waiting (NTP, or a test's clock).
            loop {
                let now = self.clock.now();
                if now >= next {
                    break;
                }
                let wait = (next - now).to_std().unwrap_or_default();
                tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
            }
            let now = self.clock.now();
            match self
                .store
                .write_async(ops::fire_job(account.clone(), id.clone(), now))
                .await
            {
                Ok(Some(job)) => {
                    fired_on = job.fired_on;
                    tracing::info!(job = %id, run = job.run, "job fired");
                    let targets: Vec<String> = {
                        let mut st = self.state.lock();
                        if let Some(plan) = st.plans.get_mut(&id) {
                            *plan = Arc::new(Plan { job });
                        }
                        st.settled.retain(|(j, _)| *j != id);
                        st.members
                            .get(&id)
                            .map(|m| m.iter().cloned().collect())
                            .unwrap_or_default()
                    };
                    self.start_ready(&account, &id, &targets);
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "job firing not recorded; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Starts an attempt on each of `targets` that is ready now.
    fn start_ready(self: &Arc<Self>, account: &str, id: &str, targets: &[String]) {
        for cid in targets {
            if self.requester.is_ready(account, cid) {
                self.try_start(account, id, cid);
            }
        }
    }

    /// A device became ready: an attempt of every job that targets it and is not settled.
    fn ready(self: &Arc<Self>, account: &str, client_id: &str) {
        let jobs: Vec<String> = {
            let st = self.state.lock();
            match st.by_device.get(account).and_then(|d| d.get(client_id)) {
                Some(jobs) => jobs.clone(),
                None => return,
            }
        };
        for job in jobs {
            self.try_start(account, &job, client_id);
        }
    }

    fn try_start(self: &Arc<Self>, account: &str, job: &str, client_id: &str) {
        let key = (job.to_string(), client_id.to_string());
        {
            let mut st = self.state.lock();
            if st.settled.contains(&key) || !st.busy.insert(key.clone()) {
                return;
            }
        }
        let inner = self.clone();
        let account = account.to_string();
        self.handle.spawn(async move {
            let after = inner.attempt(&account, &key.0, &key.1).await;
            let mut st = inner.state.lock();
            st.busy.remove(&key);
            if matches!(after, After::Settled) && st.plans.contains_key(&key.0) {
                st.settled.insert(key);
            }
        });
    }

    /// One attempt of `job` on `client_id`: waits for a slot, starts the execution if the
    /// store's rules allow, runs the steps, records the end.
    async fn attempt(&self, account: &str, job: &str, client_id: &str) -> After {
        let Ok(_slot) = self.slots.clone().acquire_owned().await else {
            return After::Open;
        };
        let Some(plan) = self.plan(job) else {
            return After::Settled;
        };
        let steps = &plan.job.steps;
        let first = steps
            .first()
            .map(|s| steps::request_of(s, plan.step_timeout()));
        let first_line = match &first {
            Some(Ok(r)) => format!("step 1 of {}: {} sent", steps.len(), steps::describe(r)),
            _ => "starting".to_string(),
        };
        let started = match self
            .store
            .write_async(ops::start_execution(
                account.to_string(),
                job.to_string(),
                client_id.to_string(),
                first_line,
                self.clock.now(),
            ))
            .await
        {
            Ok(Some(s)) => s,
            Ok(None) => return After::Settled,
            Err(e) => {
                tracing::warn!(%job, %client_id, error = %e, "job execution not started");
                return After::Open;
            }
        };
        self.metrics.job_executions_running.inc();
        let began = Instant::now();
        let status = self
            .run_steps(account, job, client_id, &plan, &started, first)
            .await;
        self.metrics.job_executions_running.dec();
        let Some(status) = status else {
            // The job was deleted meanwhile: nothing to record.
            return After::Settled;
        };
        self.metrics.job_execution(
            if status == JobStatus::Completed {
                "completed"
            } else {
                "failed"
            },
            began.elapsed(),
        );
        let same_run = self.plan(job).is_some_and(|p| p.job.run == started.run);
        if same_run && (status == JobStatus::Completed || started.attempt >= plan.job.max_attempts)
        {
            After::Settled
        } else {
            After::Open
        }
    }

    /// Sends the steps in order; records each step before it is sent (so that a crash names
    /// it) and the end. `None` when the job was deleted meanwhile.
    async fn run_steps(
        &self,
        account: &str,
        job: &str,
        client_id: &str,
        plan: &Plan,
        started: &ops::Started,
        first: Option<Result<fleetgate_devmgmt::Request, JobsError>>,
    ) -> Option<JobStatus> {
        let steps = &plan.job.steps;
        let total = steps.len();
        let mut lines = Vec::new();
        let mut status = JobStatus::Completed;
        let mut next = first;
        for (i, step) in steps.iter().enumerate() {
            self.plan(job)?;
            let request = match next
                .take()
                .unwrap_or_else(|| steps::request_of(step, plan.step_timeout()))
            {
                Ok(r) => r,
                Err(e) => {
                    lines.push(line(
                        self.clock.now(),
                        LogLevel::Error,
                        format!("step {} of {total} cannot be sent: {e}", i + 1),
                    ));
                    status = JobStatus::Failed;
                    break;
                }
            };
            let what = steps::describe(&request);
            if i > 0 {
                lines.push(line(
                    self.clock.now(),
                    LogLevel::Info,
                    format!("step {} of {total}: {what} sent", i + 1),
                ));
                self.record(
                    job,
                    client_id,
                    &started.execution,
                    Some(i),
                    &mut lines,
                    None,
                )
                .await;
            }
            match self.requester.request(account, client_id, request).await {
                Ok(reply) => {
                    let ok = reply.code == 200;
                    lines.push(line(
                        self.clock.now(),
                        if ok { LogLevel::Info } else { LogLevel::Error },
                        format!(
                            "step {} of {total}: {}",
                            i + 1,
                            steps::reply_line(step, &what, &reply)
                        ),
                    ));
                    if !ok {
                        status = JobStatus::Failed;
                        break;
                    }
                }
                Err(e) => {
                    lines.push(line(
                        self.clock.now(),
                        LogLevel::Error,
                        format!("step {} of {total}: {what}: {e}", i + 1),
                    ));
                    status = JobStatus::Failed;
                    break;
                }
            }
        }
        self.plan(job)?;
        let max = plan.job.max_attempts;
        let closing = match status {
            JobStatus::Completed => "completed: every step answered 200".to_string(),
            _ if started.attempt < max => format!(
                "failed; attempt {} of {max}, retried when the device is next ready",
                started.attempt
            ),
            _ => format!("failed; no attempts left ({max})"),
        };
        lines.push(line(
            self.clock.now(),
            if status == JobStatus::Completed {
                LogLevel::Info
            } else {
                LogLevel::Error
            },
            closing,
        ));
        self.record(
            job,
            client_id,
            &started.execution,
            None,
            &mut lines,
            Some((status, self.clock.now())),
        )
        .await;
        Some(status)
    }

    async fn record(
        &self,
        job: &str,
        client_id: &str,
        execution: &str,
        step: Option<usize>,
        lines: &mut Vec<LogLine>,
        end: Option<(JobStatus, Timestamp)>,
    ) {
        let op = ops::record_execution(
            job.to_string(),
            client_id.to_string(),
            execution.to_string(),
            step.and_then(|s| u32::try_from(s).ok()),
            std::mem::take(lines),
            end,
        );
        if let Err(e) = self.store.write_async(op).await {
            tracing::warn!(%job, %client_id, error = %e, "job execution progress not recorded");
        }
    }
}

#[cfg(test)]
mod tests;
