//! Prometheus metrics (prometheus-client). Names follow the hooks: `fleetgate_connect_*` for the
//! auth hook, `fleetgate_acl_*` for the ACL hook, `fleetgate_provisioning_*` for the exchange,
//! `fleetgate_storage_*` for group commit.
//!
//! This crate owns the registry and every metric family; the other crates record through its
//! methods or through their own observer traits, which it implements. It must not decide
//! anything nor read the store except to render the request-status gauges at scrape time.

mod process;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use fleetgate_auth_hook::AuthMetrics;
use fleetgate_storage::Store;

/// `endpoint` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    /// `provisioning`, `operational` or `sandbox`.
    pub endpoint: &'static str,
}

/// `endpoint` + `state` labels of broker sessions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionLabels {
    /// `operational` or `sandbox`.
    pub endpoint: &'static str,
    /// `online` (a client is connected) or `offline` (a persistent session waiting).
    pub state: &'static str,
}

/// `endpoint` + `result` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectLabels {
    /// `provisioning` or `operational`.
    pub endpoint: &'static str,
    /// `accepted` or a refusal label.
    pub result: &'static str,
}

/// `endpoint` + `action` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AclLabels {
    /// `provisioning` or `operational`.
    pub endpoint: &'static str,
    /// `subscribe` or `publish`.
    pub action: &'static str,
}

/// `outcome` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// e.g. `completed`, `failed`, `reply_code_403`.
    pub outcome: String,
}

/// `status` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// A request status.
    pub status: &'static str,
}

/// Labels of an admin-API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route's path template (`/api/v1/accounts/{account}`): bounded, unlike paths.
    pub route: &'static str,
    /// HTTP method.
    pub method: String,
    /// Status code.
    pub status: u16,
}

/// Labels of a decision asked through the HTTP hook listener.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    /// The broker format: `emqx`, `vernemq`, `rabbitmq`, `mosquitto-go-auth`.
    pub broker: &'static str,
    /// The question: `authenticate`, `subscribe`, `publish`, `event`, ...
    pub hook: &'static str,
    /// `allow`, `deny`, or `error` (refused before a decision: token, malformed body).
    pub result: &'static str,
}

/// `route` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// The route's path template.
    pub route: &'static str,
}

/// `result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `hit`/`miss`, or a ban kind.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// A broker's state, counted (see [`Metrics::set_broker`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct BrokerGauges {
    /// Sessions with a connected client.
    pub online: usize,
    /// Persistent sessions whose client is away.
    pub offline: usize,
    /// Deliveries waiting in session queues.
    pub queued: usize,
    /// Retained messages.
    pub retained: usize,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Open connections by endpoint.
    pub connections: Family<EndpointLabel, Gauge>,
    /// CONNECT results by endpoint and reason.
    pub connect_results: Family<ConnectLabels, Counter>,
    /// Exchange outcomes.
    pub provisioning_outcomes: Family<OutcomeLabel, Counter>,
    /// Exchange start to PUBACK, seconds.
    pub enrollment_duration: Histogram,
    /// argon2 verification time, seconds.
    pub verify_duration: Histogram,
    /// Verification cache lookups.
    pub verify_cache: Family<ResultLabel, Counter>,
    /// Verifications waiting for a pool thread (set at scrape).
    pub verify_queue: Gauge,
    /// Bans by kind.
    pub bans: Family<ResultLabel, Counter>,
    /// ACL denials.
    pub acl_denials: Family<AclLabels, Counter>,
    /// Group-commit latency, seconds.
    pub commit_duration: Histogram,
    /// Closures per group commit.
    pub commit_batch_size: Histogram,
    /// Requests by status (refreshed at scrape).
    pub requests: Family<StatusLabel, Gauge>,
    /// Deliveries queued for a session, by broker endpoint.
    pub messages_delivered: Family<EndpointLabel, Counter>,
    /// Deliveries dropped (full queue, or larger than the client accepts), by broker endpoint.
    pub messages_dropped: Family<EndpointLabel, Counter>,
    /// Broker sessions by endpoint and state (set by the broker every second).
    pub broker_sessions: Family<SessionLabels, Gauge>,
    /// Deliveries waiting in session queues, by endpoint (set every second).
    pub broker_queued: Family<EndpointLabel, Gauge>,
    /// Retained messages, by endpoint (set every second).
    pub broker_retained: Family<EndpointLabel, Gauge>,
    /// Admin-API requests by route, method and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Decisions of the HTTP hook listener.
    pub hook_decisions: Family<HookLabels, Counter>,
    /// Admin-API request latency by route, seconds.
    pub http_duration: Family<RouteLabel, Histogram>,
    /// Ended job executions by outcome (`completed`, `failed`).
    pub job_executions: Family<OutcomeLabel, Counter>,
    /// Job executions sending steps now (bounded by `device_management.max_in_flight`).
    pub job_executions_running: Gauge,
    /// Time from a job execution's start to its end, seconds.
    pub job_execution_duration: Histogram,
    /// Device replies that matched no pending request (unknown or expired request id, or
    /// another device's), copied from the requester's count at each scrape.
    pub device_replies_ignored: Counter,
    process: process::ProcessMetrics,
}

impl Metrics {
    /// Registers every metric: Fleetgate's under the `fleetgate` prefix, the standard process
    /// metrics (`process_*`) under their own names.
    pub fn new() -> Arc<Metrics> {
        let mut root = Registry::default();
        let m = Metrics {
            connections: Family::default(),
            connect_results: Family::default(),
            provisioning_outcomes: Family::default(),
            enrollment_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            verify_duration: Histogram::new(exponential_buckets(0.001, 2.0, 12)),
            verify_cache: Family::default(),
            verify_queue: Gauge::default(),
            bans: Family::default(),
            acl_denials: Family::default(),
            hook_decisions: Family::default(),
            commit_duration: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            commit_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            requests: Family::default(),
            messages_delivered: Family::default(),
            messages_dropped: Family::default(),
            broker_sessions: Family::default(),
            broker_queued: Family::default(),
            broker_retained: Family::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 2.0, 16))
            }),
            job_executions: Family::default(),
            job_executions_running: Gauge::default(),
            job_execution_duration: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            device_replies_ignored: Counter::default(),
            process: process::ProcessMetrics::default(),
            registry: Registry::default(),
        };
        m.process.register(&mut root);
        let registry = root.sub_registry_with_prefix("fleetgate");
        registry.register(
            "data_dir_available_bytes",
            "Free space for Fleetgate on the data dir's filesystem",
            m.process.data_dir_gauge(),
        );
        registry.register(
            "device_replies_ignored",
            "Device replies that matched no pending request (unknown or expired id, another device's)",
            m.device_replies_ignored.clone(),
        );
        registry.register(
            "job_executions",
            "Ended batch-job executions by outcome",
            m.job_executions.clone(),
        );
        registry.register(
            "job_executions_running",
            "Batch-job executions sending steps now",
            m.job_executions_running.clone(),
        );
        registry.register(
            "job_execution_duration_seconds",
            "Batch-job execution time, start to end",
            m.job_execution_duration.clone(),
        );
        registry.register(
            "connections",
            "Open MQTT connections",
            m.connections.clone(),
        );
        registry.register(
            "connect_results",
            "CONNECT decisions by endpoint and result",
            m.connect_results.clone(),
        );
        registry.register(
            "provisioning_outcomes",
            "Provisioning exchange outcomes",
            m.provisioning_outcomes.clone(),
        );
        registry.register(
            "enrollment_duration_seconds",
            "Time from a valid provision request to the device's PUBACK",
            m.enrollment_duration.clone(),
        );
        registry.register(
            "credential_verify_duration_seconds",
            "argon2 verification time",
            m.verify_duration.clone(),
        );
        registry.register(
            "credential_cache",
            "Verification cache lookups",
            m.verify_cache.clone(),
        );
        registry.register(
            "credential_verify_queue_depth",
            "argon2 verifications waiting for a pool thread",
            m.verify_queue.clone(),
        );
        registry.register("bans", "Bans after repeated failures", m.bans.clone());
        registry.register("acl_denials", "ACL denials", m.acl_denials.clone());
        registry.register(
            "hook_decisions",
            "Decisions asked by other brokers through the HTTP hook listener",
            m.hook_decisions.clone(),
        );
        registry.register(
            "storage_commit_duration_seconds",
            "Group commit latency",
            m.commit_duration.clone(),
        );
        registry.register(
            "storage_commit_batch_size",
            "Writes per group commit",
            m.commit_batch_size.clone(),
        );
        registry.register(
            "requests",
            "Provision requests by status",
            m.requests.clone(),
        );
        registry.register(
            "messages_delivered",
            "Deliveries queued for broker sessions",
            m.messages_delivered.clone(),
        );
        registry.register(
            "messages_dropped",
            "Deliveries dropped for a full session queue or the client's maximum packet size",
            m.messages_dropped.clone(),
        );
        registry.register(
            "broker_sessions",
            "Broker sessions by state (online: connected; offline: persistent, client away)",
            m.broker_sessions.clone(),
        );
        registry.register(
            "broker_queued_messages",
            "Deliveries waiting in broker session queues",
            m.broker_queued.clone(),
        );
        registry.register(
            "broker_retained_messages",
            "Retained messages kept by the broker",
            m.broker_retained.clone(),
        );
        registry.register(
            "http_requests",
            "Admin API requests by route, method and status",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Admin API request latency by route",
            m.http_duration.clone(),
        );
        registry.register(
            "build",
            "Build information",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        Arc::new(Metrics {
            registry: root,
            ..m
        })
    }

    /// Counts a delivery queued by the broker of `endpoint`.
    pub fn delivered(&self, endpoint: &'static str) {
        self.messages_delivered
            .get_or_create(&EndpointLabel { endpoint })
            .inc();
    }

    /// Counts a delivery the broker of `endpoint` dropped.
    pub fn dropped(&self, endpoint: &'static str) {
        self.messages_dropped
            .get_or_create(&EndpointLabel { endpoint })
            .inc();
    }

    /// Sets the gauges of the broker of `endpoint`.
    pub fn set_broker(&self, endpoint: &'static str, g: &BrokerGauges) {
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        for (state, v) in [("online", g.online), ("offline", g.offline)] {
            self.broker_sessions
                .get_or_create(&SessionLabels { endpoint, state })
                .set(n(v));
        }
        self.broker_queued
            .get_or_create(&EndpointLabel { endpoint })
            .set(n(g.queued));
        self.broker_retained
            .get_or_create(&EndpointLabel { endpoint })
            .set(n(g.retained));
    }

    /// Counts a CONNECT decision.
    pub fn connect(&self, endpoint: &'static str, result: &'static str) {
        self.connect_results
            .get_or_create(&ConnectLabels { endpoint, result })
            .inc();
    }

    /// Counts an exchange outcome.
    pub fn outcome(&self, outcome: impl Into<String>) {
        self.provisioning_outcomes
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts an ended job execution (`completed` or `failed`) and observes its duration.
    pub fn job_execution(&self, outcome: &'static str, took: Duration) {
        self.job_executions
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
        self.job_execution_duration.observe(took.as_secs_f64());
    }

    /// Sets the ignored-replies counter to the requester's running count.
    pub fn set_device_replies_ignored(&self, total: u64) {
        self.device_replies_ignored
            .inner()
            .store(total, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts an admin-API request and observes its latency.
    pub fn http_request(&self, route: &'static str, method: &str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route,
                method: method.to_string(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabel { route })
            .observe(took.as_secs_f64());
    }

    /// Counts a decision of the HTTP hook listener.
    pub fn hook_decision(&self, broker: &'static str, hook: &'static str, result: &'static str) {
        self.hook_decisions
            .get_or_create(&HookLabels {
                broker,
                hook,
                result,
            })
            .inc();
    }

    /// Counts an ACL denial.
    pub fn acl_denied(&self, endpoint: &'static str, action: &'static str) {
        self.acl_denials
            .get_or_create(&AclLabels { endpoint, action })
            .inc();
    }

    /// Observes a group commit (the storage observer).
    pub fn commit(&self, batch: usize, took: Duration) {
        self.commit_duration.observe(took.as_secs_f64());
        self.commit_batch_size.observe(batch as f64);
    }

    /// The text exposition, with the request gauges refreshed from `store` and the process
    /// figures and the free space of `data_dir` read now.
    pub fn render(&self, store: &Store, data_dir: &Path) -> String {
        self.process.refresh(data_dir);
        if let Ok(counts) = store.read().and_then(|r| r.count_requests_by_status()) {
            for (status, n) in counts {
                self.requests
                    .get_or_create(&StatusLabel {
                        status: status.as_str(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A connection slot of an endpoint, taken before the CONNECT is decided so that concurrent
/// CONNECTs cannot overshoot the limit; given back when dropped.
pub struct Slot(Gauge);

impl Slot {
    /// Takes a slot of `endpoint` unless `max` are taken.
    pub fn acquire(metrics: &Metrics, endpoint: &'static str, max: usize) -> Option<Slot> {
        let gauge = metrics
            .connections
            .get_or_create(&EndpointLabel { endpoint })
            .clone();
        let before = gauge.inc();
        let slot = Slot(gauge);
        (usize::try_from(before).unwrap_or(usize::MAX) < max).then_some(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl AuthMetrics for Metrics {
    fn verify_latency(&self, seconds: f64) {
        self.verify_duration.observe(seconds);
    }

    fn cache_lookup(&self, hit: bool) {
        self.verify_cache
            .get_or_create(&ResultLabel {
                result: if hit { "hit" } else { "miss" },
            })
            .inc();
    }

    fn banned(&self, kind: &'static str) {
        self.bans.get_or_create(&ResultLabel { result: kind }).inc();
    }
}
