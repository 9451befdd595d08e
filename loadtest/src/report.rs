//! The run report: LOADTEST.md's JSON shape, and the same figures as a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::config::Protocol;
use crate::server::{self, Figure};
use crate::stats::{FailureKind, Percentiles, Stats};

/// Which scenario produced a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `enroll`: provisioning exchanges.
    Enroll,
    /// `cycle`: connect/subscribe/publish/receive/disconnect.
    Cycle,
}

impl Scenario {
    /// `"enroll"` or `"cycle"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Enroll => "enroll",
            Scenario::Cycle => "cycle",
        }
    }

    /// Key of the attempted/completed/failed block: `devices` or `clients`.
    pub fn population_key(self) -> &'static str {
        match self {
            Scenario::Enroll => "devices",
            Scenario::Cycle => "clients",
        }
    }

    /// Key of the throughput figure.
    pub fn rate_key(self) -> &'static str {
        match self {
            Scenario::Enroll => "enrollments_per_second",
            Scenario::Cycle => "cycles_per_second",
        }
    }

    /// Index of the end-to-end phase (`enrollment`, `total`): the one compared and plotted as
    /// a histogram.
    pub fn end_to_end_phase(self) -> usize {
        2
    }

    /// Latency phases, in report order.
    pub fn phases(self) -> &'static [&'static str] {
        match self {
            Scenario::Enroll => ENROLL_PHASES,
            Scenario::Cycle => CYCLE_PHASES,
        }
    }
}

/// Phases of `enroll`: index 0 connect, 1 reply, 2 enrollment, 3 operational.
pub const ENROLL_PHASES: &[&str] = &["connect", "reply", "enrollment", "operational"];
/// Phases of `cycle`: index 0 connect, 1 roundtrip, 2 total.
pub const CYCLE_PHASES: &[&str] = &["connect", "roundtrip", "total"];

/// The `config` block. Field names and order are the report's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ReportConfig {
    /// `enroll`.
    Enroll {
        /// Devices simulated.
        devices: u64,
        /// Closed-model concurrency, `null` with `--rate`.
        concurrency: Option<u64>,
        /// Open-model rate, `null` with `--concurrency`.
        rate: Option<f64>,
        /// `"3.1.1"` or `"5"`.
        protocol: String,
        /// `"json"` or `"kura"`.
        encoding: String,
        /// `"shared"` or `"unique"`.
        credentials: String,
        /// Whether devices reconnected to the operational endpoint.
        operational: bool,
        /// `"inline"` (reconnect right after each enrollment) or `"separate"` (a second timed
        /// phase after every device enrolled).
        operational_phase: String,
        /// Open-model `--ramp` (`seconds:rate,...`); absent from the JSON without one.
        #[serde(skip_serializing_if = "Option::is_none")]
        ramp: Option<String>,
    },
    /// `cycle`.
    Cycle {
        /// Clients simulated.
        clients: u64,
        /// Closed-model concurrency, `null` with `--rate`.
        concurrency: Option<u64>,
        /// Open-model rate, `null` with `--concurrency`.
        rate: Option<f64>,
        /// `"3.1.1"` or `"5"`.
        protocol: String,
        /// The `--topic` template (`{client_id}` not substituted).
        topic: String,
        /// `--sandbox` (anonymous clients); absent from the JSON without it.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        sandbox: bool,
        /// Open-model `--ramp` (`seconds:rate,...`); absent from the JSON without one.
        #[serde(skip_serializing_if = "Option::is_none")]
        ramp: Option<String>,
        /// `--hold` in seconds; absent from the JSON without it.
        #[serde(skip_serializing_if = "Option::is_none")]
        hold_s: Option<f64>,
    },
}

/// Attempted / completed / failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Devices (clients) the run was asked for: every one is attempted or counted as timed
    /// out when the run ended first, so `completed + failed == attempted`.
    pub attempted: u64,
    /// Completed every phase.
    pub completed: u64,
    /// Failed, for the reasons in `failures`.
    pub failed: u64,
}

/// `/metrics` samples (`fleetgate_*`) before and after the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerMetrics {
    /// Before the run (empty when `/metrics` was unreachable).
    pub metrics_before: BTreeMap<String, f64>,
    /// After the run (empty when `/metrics` was unreachable).
    pub metrics_after: BTreeMap<String, f64>,
}

/// A run report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The scenario.
    pub scenario: Scenario,
    /// What was run.
    pub config: ReportConfig,
    /// Attempted / completed / failed.
    pub counts: Counts,
    /// Failure counts by report key (`connack_0xNN`, `timeout`, ...).
    pub failures: BTreeMap<String, u64>,
    /// Wall time of the MQTT part of the run, in seconds.
    pub duration_s: f64,
    /// Completed per second of `duration_s` (with a separate operational phase: enrolled
    /// devices per second of the enrollment phase).
    pub per_second: f64,
    /// `enroll` with a separate operational phase: successful reconnects per second of that
    /// phase's own wall time (`operational_connects_per_second`); `None` when not measured.
    pub operational_per_second: Option<f64>,
    /// Latency percentiles per phase (scenario order); `None` when the phase has no sample or
    /// was not run.
    pub latency_ms: Vec<(&'static str, Option<Percentiles>)>,
    /// Server metrics.
    pub server: ServerMetrics,
    /// The first failure detail of each reason (stderr only, not in the JSON).
    pub first_failures: BTreeMap<String, String>,
    /// The run over time, for the HTML report (not in the JSON).
    pub timeline: Vec<Interval>,
    /// Histogram of the end-to-end phase (`enrollment`, `total`) for the HTML report.
    pub latency_histogram: Vec<HistogramBin>,
}

/// One interval of the run's timeline (one second, or more in very long runs).
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    /// Start, seconds after the run's start.
    pub start_s: f64,
    /// Length in seconds.
    pub width_s: f64,
    /// Devices that completed in it.
    pub completed: u64,
    /// Devices that failed in it, by report key.
    pub failures: BTreeMap<String, u64>,
    /// Latency percentiles per phase (scenario order) of the devices that ended in it.
    pub latency_ms: Vec<Option<Percentiles>>,
}

/// One bar of a latency histogram: samples in `[low_ms, high_ms)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistogramBin {
    /// Lower bound in ms.
    pub low_ms: f64,
    /// Upper bound in ms.
    pub high_ms: f64,
    /// Samples.
    pub count: u64,
}

/// Bars of [`latency_bins`].
const HISTOGRAM_BINS: usize = 30;

/// Log-spaced bins from the smallest to the largest sample of `h` (microseconds).
pub fn latency_bins(h: &hdrhistogram::Histogram<u64>) -> Vec<HistogramBin> {
    if h.is_empty() {
        return Vec::new();
    }
    let (lo, hi) = (h.min().max(1) as f64, (h.max().max(1) as f64) * 1.001);
    let ratio = (hi / lo).max(1.0001);
    let step = ratio.ln() / HISTOGRAM_BINS as f64;
    let mut bins: Vec<HistogramBin> = (0..HISTOGRAM_BINS)
        .map(|i| HistogramBin {
            low_ms: lo * (step * i as f64).exp() / 1000.0,
            high_ms: lo * (step * (i + 1) as f64).exp() / 1000.0,
            count: 0,
        })
        .collect();
    for v in h.iter_recorded() {
        let x = (v.value_iterated_to().max(1) as f64 / lo).ln() / step;
        let i = (x.max(0.0) as usize).min(HISTOGRAM_BINS - 1);
        bins[i].count += v.count_since_last_iteration();
    }
    bins
}

impl Report {
    /// Builds the report of a finished run.
    pub fn build(
        scenario: Scenario,
        config: ReportConfig,
        protocol: Protocol,
        attempted: u64,
        stats: &Stats,
        duration_s: f64,
        server: ServerMetrics,
    ) -> Report {
        let mut failures = BTreeMap::new();
        // Always present, so scripts can read them without checking: the fixed reasons, and
        // the bad-credentials refusal of the protocol in use (as LOADTEST.md's example shows).
        let bad_credentials = match protocol {
            Protocol::V5 => 0x86,
            Protocol::V311 => 0x04,
        };
        for kind in [
            FailureKind::Connack(bad_credentials),
            FailureKind::Timeout,
            FailureKind::BadReply,
            FailureKind::Disconnected,
        ] {
            failures.insert(kind.key(), 0);
        }
        for (kind, n) in &stats.failures {
            *failures.entry(kind.key()).or_insert(0) += n;
        }
        let timeline = stats.timeline.buckets();
        let width = stats.timeline.width_s() as f64;
        let timeline = timeline
            .iter()
            .enumerate()
            .map(|(i, b)| Interval {
                start_s: i as f64 * width,
                // The last interval usually ends with the run, part-way through: its rate is
                // per second of the part covered (at least half a second, so a few stragglers
                // in the last milliseconds do not plot as a spike).
                width_s: (duration_s - i as f64 * width).clamp(width.min(0.5), width),
                completed: b.completed,
                failures: b.failures.iter().map(|(k, v)| (k.key(), *v)).collect(),
                latency_ms: (0..scenario.phases().len()).map(|p| b.phase(p)).collect(),
            })
            .collect();
        let latency_histogram = stats
            .phase_histogram(scenario.end_to_end_phase())
            .map(latency_bins)
            .unwrap_or_default();
        let latency_ms = scenario
            .phases()
            .iter()
            .enumerate()
            .map(|(i, name)| (*name, stats.phase(i)))
            .collect();
        let per_second = if duration_s > 0.0 {
            stats.completed as f64 / duration_s
        } else {
            0.0
        };
        Report {
            scenario,
            config,
            counts: Counts {
                attempted,
                completed: stats.completed,
                failed: stats.failed,
            },
            failures,
            duration_s,
            per_second,
            operational_per_second: None,
            latency_ms,
            server,
            first_failures: stats
                .first_failure
                .iter()
                .map(|(k, v)| (k.key(), v.clone()))
                .collect(),
            timeline,
            latency_histogram,
        }
    }

    /// The derived server figures of the metrics that changed (see [`crate::server`]).
    pub fn server_figures(&self) -> Vec<Figure> {
        server::derive(
            &self.server.metrics_before,
            &self.server.metrics_after,
            self.duration_s,
        )
    }

    /// One line describing the configuration.
    pub fn config_text(&self) -> String {
        match &self.config {
            ReportConfig::Enroll {
                concurrency,
                rate,
                protocol,
                encoding,
                credentials,
                operational,
                operational_phase,
                ramp,
                ..
            } => format!(
                "{}, protocol {protocol}, encoding {encoding}, {credentials} credentials{}",
                load_text(*concurrency, *rate, ramp.as_deref()),
                if *operational {
                    format!(", operational reconnect ({operational_phase})")
                } else {
                    String::new()
                }
            ),
            ReportConfig::Cycle {
                concurrency,
                rate,
                protocol,
                topic,
                sandbox,
                ramp,
                ..
            } => format!(
                "{}, protocol {protocol}, topic {topic}{}",
                load_text(*concurrency, *rate, ramp.as_deref()),
                if *sandbox {
                    ", sandbox (anonymous)"
                } else {
                    ""
                }
            ),
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The same figures as a human-readable table.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(w, "scenario      {}", self.scenario.as_str());
        let config = self.config_text();
        let _ = writeln!(w, "config        {config}");
        let _ = writeln!(
            w,
            "{:<14}{} attempted, {} completed, {} failed",
            self.scenario.population_key(),
            self.counts.attempted,
            self.counts.completed,
            self.counts.failed
        );
        let _ = writeln!(w, "duration      {:.3} s", self.duration_s);
        let unit = match self.scenario {
            Scenario::Enroll => "enrollments/s",
            Scenario::Cycle => "cycles/s",
        };
        let _ = writeln!(w, "throughput    {:.1} {unit}", self.per_second);
        if self.scenario == Scenario::Enroll {
            match self.operational_per_second {
                Some(r) => {
                    let _ = writeln!(w, "operational   {r:.1} connects/s (separate phase)");
                }
                None => {
                    let _ = writeln!(w, "operational   - connects/s (not measured on its own)");
                }
            }
        }
        let failures: Vec<String> = self
            .failures
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(w, "failures      {}", failures.join(", "));
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "{:<14}{:>10}{:>10}{:>10}{:>10}",
            "latency (ms)", "p50", "p90", "p99", "max"
        );
        for (name, p) in &self.latency_ms {
            match p {
                Some(p) => {
                    let _ = writeln!(
                        w,
                        "{name:<14}{:>10.3}{:>10.3}{:>10.3}{:>10.3}",
                        p.p50, p.p90, p.p99, p.max
                    );
                }
                None => {
                    let _ = writeln!(w, "{name:<14}{:>10}", "-");
                }
            }
        }
        let figures = self.server_figures();
        if !figures.is_empty() {
            let _ = writeln!(w);
            let _ = writeln!(
                w,
                "server metrics that changed (derived; raw values in --json):"
            );
            for f in figures {
                let _ = writeln!(w, "  {}", f.text());
            }
        }
        out
    }
}

fn load_text(concurrency: Option<u64>, rate: Option<f64>, ramp: Option<&str>) -> String {
    if let Some(ramp) = ramp {
        return format!("open model, ramp {ramp} (seconds:arrivals/s)");
    }
    match (concurrency, rate) {
        (_, Some(rate)) => format!("open model, {rate} arrivals/s"),
        (Some(c), None) => format!("closed model, concurrency {c}"),
        (None, None) => "closed model".to_string(),
    }
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Latency<'a>(&'a [(&'static str, Option<Percentiles>)]);
        impl Serialize for Latency<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut m = serializer.serialize_map(Some(self.0.len()))?;
                for (name, p) in self.0 {
                    m.serialize_entry(name, p)?;
                }
                m.end()
            }
        }
        let enroll = self.scenario == Scenario::Enroll;
        let mut m = serializer.serialize_map(Some(if enroll { 9 } else { 8 }))?;
        m.serialize_entry("scenario", self.scenario.as_str())?;
        m.serialize_entry("config", &self.config)?;
        m.serialize_entry(self.scenario.population_key(), &self.counts)?;
        m.serialize_entry("failures", &self.failures)?;
        m.serialize_entry("duration_s", &round3(self.duration_s))?;
        m.serialize_entry(self.scenario.rate_key(), &round1(self.per_second))?;
        if enroll {
            m.serialize_entry(
                "operational_connects_per_second",
                &self.operational_per_second.map(round1),
            )?;
        }
        m.serialize_entry("latency_ms", &Latency(&self.latency_ms))?;
        m.serialize_entry("server", &self.server)?;
        m.end()
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;

    use super::*;
    use crate::stats::{Failure, Outcome};

    fn enroll_report() -> Report {
        let mut stats = Stats::new(4);
        for ms in 1..=10u64 {
            stats.record(&Outcome {
                phases: [
                    Some(Duration::from_millis(ms)),
                    Some(Duration::from_millis(2 * ms)),
                    Some(Duration::from_millis(3 * ms)),
                    None,
                ],
                failure: None,
            });
        }
        stats.record(
            &Outcome::default().fail(Failure::new(FailureKind::Connack(0x87), "not authorized")),
        );
        stats.record(
            &Outcome::default().fail(Failure::new(FailureKind::ReplyCode(403), "activation")),
        );
        Report::build(
            Scenario::Enroll,
            ReportConfig::Enroll {
                devices: 12,
                concurrency: Some(200),
                rate: None,
                protocol: "5".into(),
                encoding: "json".into(),
                credentials: "shared".into(),
                operational: false,
                operational_phase: "inline".into(),
                ramp: None,
            },
            Protocol::V5,
            12,
            &stats,
            0.5,
            ServerMetrics::default(),
        )
    }

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    #[test]
    fn enroll_json_shape() {
        let v: Value = serde_json::from_str(&enroll_report().to_json()).unwrap();
        assert_eq!(
            keys(&v),
            [
                "config",
                "devices",
                "duration_s",
                "enrollments_per_second",
                "failures",
                "latency_ms",
                "operational_connects_per_second",
                "scenario",
                "server"
            ]
        );
        assert_eq!(v["scenario"], "enroll");
        assert_eq!(v["operational_connects_per_second"], Value::Null);
        assert_eq!(
            keys(&v["config"]),
            [
                "concurrency",
                "credentials",
                "devices",
                "encoding",
                "operational",
                "operational_phase",
                "protocol",
                "rate"
            ]
        );
        assert_eq!(v["config"]["operational_phase"], "inline");
        assert_eq!(v["config"]["rate"], Value::Null);
        assert_eq!(v["config"]["concurrency"], 200);
        assert_eq!(v["config"]["protocol"], "5");
        assert_eq!(keys(&v["devices"]), ["attempted", "completed", "failed"]);
        assert_eq!(v["devices"]["attempted"], 12);
        assert_eq!(v["devices"]["completed"], 10);
        assert_eq!(v["devices"]["failed"], 2);
        assert_eq!(
            keys(&v["failures"]),
            [
                "bad_reply",
                "connack_0x86",
                "connack_0x87",
                "disconnected",
                "reply_code_403",
                "timeout"
            ]
        );
        assert_eq!(v["failures"]["connack_0x87"], 1);
        assert_eq!(v["failures"]["connack_0x86"], 0);
        assert_eq!(v["duration_s"], 0.5);
        assert_eq!(v["enrollments_per_second"], 20.0);
        assert_eq!(
            keys(&v["latency_ms"]),
            ["connect", "enrollment", "operational", "reply"]
        );
        assert_eq!(v["latency_ms"]["operational"], Value::Null);
        assert_eq!(
            keys(&v["latency_ms"]["reply"]),
            ["max", "p50", "p90", "p99"]
        );
        assert!(v["latency_ms"]["connect"]["p50"].is_number());
        assert_eq!(keys(&v["server"]), ["metrics_after", "metrics_before"]);
        assert!(
            v["server"]["metrics_before"]
                .as_object()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn json_key_order_follows_the_contract() {
        let json = enroll_report().to_json();
        let order = [
            "\"scenario\"",
            "\"config\"",
            "\"devices\"",
            "\"failures\"",
            "\"duration_s\"",
            "\"enrollments_per_second\"",
            "\"operational_connects_per_second\"",
            "\"latency_ms\"",
            "\"server\"",
        ];
        // Top-level keys are indented by two spaces in the pretty output.
        let positions: Vec<usize> = order
            .iter()
            .map(|k| json.find(&format!("\n  {k}")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{json}");
        let phases = [
            "\"connect\"",
            "\"reply\"",
            "\"enrollment\"",
            "\"operational\"",
        ];
        let latency = &json[json.find("\"latency_ms\"").unwrap()..];
        let positions: Vec<usize> = phases.iter().map(|k| latency.find(k).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{json}");
    }

    #[test]
    fn cycle_sandbox_is_reported() {
        let r = Report::build(
            Scenario::Cycle,
            ReportConfig::Cycle {
                clients: 1,
                concurrency: Some(1),
                rate: None,
                protocol: "5".into(),
                topic: "cycle/{client_id}".into(),
                sandbox: true,
                ramp: None,
                hold_s: Some(1.5),
            },
            Protocol::V5,
            1,
            &Stats::new(3),
            0.25,
            ServerMetrics::default(),
        );
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["config"]["sandbox"], true);
        assert_eq!(v["config"]["hold_s"], 1.5);
        assert!(
            r.to_table().contains("sandbox (anonymous)"),
            "{}",
            r.to_table()
        );
    }

    #[test]
    fn cycle_json_shape() {
        let mut stats = Stats::new(3);
        stats.record(&Outcome {
            phases: [
                Some(Duration::from_millis(1)),
                Some(Duration::from_millis(1)),
                Some(Duration::from_millis(2)),
                None,
            ],
            failure: None,
        });
        let mut server = ServerMetrics::default();
        server.metrics_after.insert("fleetgate_up".into(), 1.0);
        let r = Report::build(
            Scenario::Cycle,
            ReportConfig::Cycle {
                clients: 1,
                concurrency: None,
                rate: Some(50.0),
                protocol: "3.1.1".into(),
                topic: "acme/{client_id}/cycle".into(),
                sandbox: false,
                ramp: None,
                hold_s: None,
            },
            Protocol::V311,
            1,
            &stats,
            0.25,
            server,
        );
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(
            keys(&v),
            [
                "clients",
                "config",
                "cycles_per_second",
                "duration_s",
                "failures",
                "latency_ms",
                "scenario",
                "server"
            ]
        );
        assert_eq!(v["scenario"], "cycle");
        assert_eq!(
            keys(&v["config"]),
            ["clients", "concurrency", "protocol", "rate", "topic"]
        );
        assert_eq!(v["config"]["topic"], "acme/{client_id}/cycle");
        assert_eq!(v["config"]["concurrency"], Value::Null);
        assert_eq!(v["config"]["rate"], 50.0);
        assert_eq!(keys(&v["latency_ms"]), ["connect", "roundtrip", "total"]);
        assert_eq!(v["cycles_per_second"], 4.0);
        assert!(v.get("operational_connects_per_second").is_none());
        assert_eq!(
            keys(&v["failures"]),
            ["bad_reply", "connack_0x04", "disconnected", "timeout"]
        );
        assert_eq!(v["server"]["metrics_after"]["fleetgate_up"], 1.0);
        assert!(
            r.to_table().contains("topic acme/{client_id}/cycle"),
            "{}",
            r.to_table()
        );
    }

    #[test]
    fn timeline_intervals_and_histogram() {
        let mut stats = Stats::new(4);
        for ms in [0u64, 500, 1500, 2100] {
            let phases = [None, None, Some(Duration::from_millis(1 + ms / 100)), None];
            stats.record_at(
                Duration::from_millis(ms),
                &Outcome {
                    phases,
                    failure: None,
                },
            );
        }
        let mut r = enroll_report();
        r = Report::build(
            Scenario::Enroll,
            r.config.clone(),
            Protocol::V5,
            4,
            &stats,
            2.2,
            ServerMetrics::default(),
        );
        let widths: Vec<f64> = r.timeline.iter().map(|i| i.width_s).collect();
        // The last second is covered for 0.2 s only: counted as half a second.
        assert_eq!(widths, [1.0, 1.0, 0.5]);
        assert_eq!(r.timeline[0].completed, 2);
        assert!(r.timeline[1].latency_ms[2].is_some());
        assert!(r.timeline[1].latency_ms[0].is_none());
        let bins: u64 = r.latency_histogram.iter().map(|b| b.count).sum();
        assert_eq!(bins, 4);
        assert!(
            r.latency_histogram
                .windows(2)
                .all(|w| w[0].high_ms <= w[1].low_ms * 1.0001)
        );
    }

    #[test]
    fn table_shows_derived_server_figures_not_buckets() {
        let mut r = enroll_report();
        for (key, before, after) in [
            (
                "fleetgate_storage_commit_duration_seconds_bucket{le=\"0.001\"}",
                0.0,
                90.0,
            ),
            (
                "fleetgate_storage_commit_duration_seconds_bucket{le=\"0.01\"}",
                0.0,
                100.0,
            ),
            (
                "fleetgate_storage_commit_duration_seconds_bucket{le=\"+Inf\"}",
                0.0,
                100.0,
            ),
            (
                "fleetgate_storage_commit_duration_seconds_count",
                0.0,
                100.0,
            ),
            ("fleetgate_storage_commit_duration_seconds_sum", 0.0, 0.1),
        ] {
            r.server.metrics_before.insert(key.into(), before);
            r.server.metrics_after.insert(key.into(), after);
        }
        let t = r.to_table();
        assert!(!t.contains("_bucket"), "{t}");
        assert!(
            t.contains("fleetgate_storage_commit_duration_seconds  100 observed, mean 1 ms, p50 0.556 ms, p99 9.100 ms"),
            "{t}"
        );
        // The JSON keeps the raw samples.
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(
            v["server"]["metrics_after"]["fleetgate_storage_commit_duration_seconds_bucket{le=\"0.01\"}"],
            100.0
        );
    }

    #[test]
    fn separate_operational_phase_rate() {
        let mut r = enroll_report();
        r.operational_per_second = Some(5123.456);
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["operational_connects_per_second"], 5123.5);
        assert!(
            r.to_table().contains("5123.5 connects/s"),
            "{}",
            r.to_table()
        );
        assert!(
            enroll_report()
                .to_table()
                .contains("not measured on its own")
        );
    }

    #[test]
    fn table_has_the_same_figures() {
        let t = enroll_report().to_table();
        assert!(t.contains("12 attempted, 10 completed, 2 failed"), "{t}");
        assert!(t.contains("reply_code_403 1"), "{t}");
        assert!(t.contains("20.0 enrollments/s"), "{t}");
        assert!(t.contains("operational"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("connect") && l.contains('.')),
            "{t}"
        );
    }
}
