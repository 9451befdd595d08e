//! Per-device outcomes, failure reasons and latency histograms.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// At most this many latency phases per scenario.
pub const MAX_PHASES: usize = 4;

/// Why a device (or cycle client) failed. The report key of each is fixed by LOADTEST.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    /// CONNACK with this refusal code (v5 reason code or v3 return code), any phase.
    Connack(u8),
    /// A phase did not finish within `--timeout`, or the run ended (`--duration`, Ctrl-C)
    /// before the device finished or even started.
    Timeout,
    /// The server answered something the protocol does not lead a device to expect: an
    /// undecodable or incomplete reply, a refused subscription or publish, a broken
    /// configuration document, a reply for another device.
    BadReply,
    /// The connection could not be opened, was closed or reset, or the server sent DISCONNECT.
    Disconnected,
    /// The PROV-V1 reply carried this non-200 `response.code`.
    ReplyCode(i64),
}

impl FailureKind {
    /// The report key: `connack_0xNN`, `timeout`, `bad_reply`, `disconnected`, `reply_code_NNN`.
    pub fn key(&self) -> String {
        match self {
            FailureKind::Connack(code) => format!("connack_0x{code:02x}"),
            FailureKind::Timeout => "timeout".to_string(),
            FailureKind::BadReply => "bad_reply".to_string(),
            FailureKind::Disconnected => "disconnected".to_string(),
            FailureKind::ReplyCode(code) => format!("reply_code_{code}"),
        }
    }
}

/// A failure with a human-readable detail (the first of each kind is shown on stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The reason counted in the report.
    pub kind: FailureKind,
    /// What exactly happened, for the operator.
    pub detail: String,
}

impl Failure {
    /// A failure of `kind` described by `detail`.
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Failure {
        Failure {
            kind,
            detail: detail.into(),
        }
    }

    /// A timeout of the named phase.
    pub fn timeout(phase: &str, limit: Duration) -> Failure {
        Failure::new(
            FailureKind::Timeout,
            format!("{phase}: nothing within {:.1} s", limit.as_secs_f64()),
        )
    }

    /// A bad reply, described by `detail`.
    pub fn bad_reply(detail: impl Into<String>) -> Failure {
        Failure::new(FailureKind::BadReply, detail)
    }

    /// A connection loss, described by `detail`.
    pub fn disconnected(detail: impl Into<String>) -> Failure {
        Failure::new(FailureKind::Disconnected, detail)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.key(), self.detail)
    }
}

/// What one device (or cycle client) produced: the phases it got through and, if it did not
/// complete, why.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Latency per phase index (scenario-specific order), `None` when not reached.
    pub phases: [Option<Duration>; MAX_PHASES],
    /// `None` when the device completed.
    pub failure: Option<Failure>,
}

impl Outcome {
    /// Marks the outcome failed (keeps the phases measured so far).
    pub fn fail(mut self, failure: Failure) -> Outcome {
        self.failure = Some(failure);
        self
    }
}

/// p50/p90/p99/max of one phase, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest recorded value.
    pub max: f64,
}

/// Values are recorded in microseconds, from 1 us to one hour, 3 significant figures.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

fn micros_to_ms(us: u64) -> f64 {
    // Microsecond resolution: three decimals of a millisecond.
    us as f64 / 1000.0
}

/// Extracts p50/p90/p99/max in ms; `None` for an empty histogram.
pub fn percentiles(h: &Histogram<u64>) -> Option<Percentiles> {
    if h.is_empty() {
        return None;
    }
    Some(Percentiles {
        p50: micros_to_ms(h.value_at_quantile(0.50)),
        p90: micros_to_ms(h.value_at_quantile(0.90)),
        p99: micros_to_ms(h.value_at_quantile(0.99)),
        max: micros_to_ms(h.max()),
    })
}

/// Aggregated outcomes of a run. One collector owns it, so recording takes no lock.
#[derive(Debug, Clone)]
pub struct Stats {
    phases: Vec<Histogram<u64>>,
    /// Devices that completed every phase.
    pub completed: u64,
    /// Devices that failed (sum of `failures`).
    pub failed: u64,
    /// Failure counts by reason.
    pub failures: BTreeMap<FailureKind, u64>,
    /// The first failure detail seen for each reason.
    pub first_failure: BTreeMap<FailureKind, String>,
}

impl Stats {
    /// Empty statistics for `phase_count` phases.
    pub fn new(phase_count: usize) -> Stats {
        Stats {
            phases: (0..phase_count.min(MAX_PHASES))
                .map(|_| new_histogram())
                .collect(),
            completed: 0,
            failed: 0,
            failures: BTreeMap::new(),
            first_failure: BTreeMap::new(),
        }
    }

    /// Records one outcome. Phase latencies count even when a later phase failed (a device
    /// refused at the operational reconnect still enrolled).
    pub fn record(&mut self, outcome: &Outcome) {
        for (h, sample) in self.phases.iter_mut().zip(outcome.phases.iter()) {
            if let Some(d) = sample {
                h.saturating_record((d.as_micros() as u64).max(1));
            }
        }
        match &outcome.failure {
            None => self.completed += 1,
            Some(f) => self.record_failure(f.kind, &f.detail, 1),
        }
    }

    /// Counts `n` failures of `kind`.
    pub fn record_failure(&mut self, kind: FailureKind, detail: &str, n: u64) {
        if n == 0 {
            return;
        }
        self.failed += n;
        *self.failures.entry(kind).or_insert(0) += n;
        self.first_failure
            .entry(kind)
            .or_insert_with(|| detail.to_string());
    }

    /// Merges another collector's statistics (same phases).
    pub fn merge(&mut self, other: &Stats) {
        for (a, b) in self.phases.iter_mut().zip(other.phases.iter()) {
            // Same bounds on both sides, so addition cannot fail.
            let _ = a.add(b);
        }
        self.completed += other.completed;
        self.failed += other.failed;
        for (k, v) in &other.failures {
            *self.failures.entry(*k).or_insert(0) += v;
        }
        for (k, v) in &other.first_failure {
            self.first_failure.entry(*k).or_insert_with(|| v.clone());
        }
    }

    /// Percentiles of phase `index` (`None` when nothing was recorded or no such phase).
    pub fn phase(&self, index: usize) -> Option<Percentiles> {
        self.phases.get(index).and_then(percentiles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_keys() {
        assert_eq!(FailureKind::Connack(0x86).key(), "connack_0x86");
        assert_eq!(FailureKind::Connack(0x05).key(), "connack_0x05");
        assert_eq!(FailureKind::Connack(0x8A).key(), "connack_0x8a");
        assert_eq!(FailureKind::Timeout.key(), "timeout");
        assert_eq!(FailureKind::BadReply.key(), "bad_reply");
        assert_eq!(FailureKind::Disconnected.key(), "disconnected");
        assert_eq!(FailureKind::ReplyCode(403).key(), "reply_code_403");
        assert_eq!(FailureKind::ReplyCode(500).key(), "reply_code_500");
    }

    #[test]
    fn percentile_extraction() {
        let mut h = new_histogram();
        assert_eq!(percentiles(&h), None);
        // 1..=1000 ms, one sample each.
        for ms in 1..=1000u64 {
            h.record(ms * 1000).unwrap();
        }
        let p = percentiles(&h).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 0.001;
        assert!(close(p.p50, 500.0), "{p:?}");
        assert!(close(p.p90, 900.0), "{p:?}");
        assert!(close(p.p99, 990.0), "{p:?}");
        assert!(close(p.max, 1000.0), "{p:?}");
        assert!(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.max);
    }

    #[test]
    fn sub_millisecond_values_keep_microseconds() {
        let mut h = new_histogram();
        h.record(1234).unwrap();
        let p = percentiles(&h).unwrap();
        assert!((p.p50 - 1.234).abs() < 0.002, "{p:?}");
    }

    #[test]
    fn record_and_merge() {
        let mut a = Stats::new(2);
        let mut b = Stats::new(2);
        let ok = Outcome {
            phases: [
                Some(Duration::from_millis(2)),
                Some(Duration::from_millis(3)),
                None,
                None,
            ],
            failure: None,
        };
        a.record(&ok);
        b.record(
            &ok.clone()
                .fail(Failure::new(FailureKind::Connack(0x86), "refused")),
        );
        b.record(&Outcome::default().fail(Failure::timeout("reply", Duration::from_secs(30))));
        a.merge(&b);
        assert_eq!(a.completed, 1);
        assert_eq!(a.failed, 2);
        assert_eq!(a.failures[&FailureKind::Connack(0x86)], 1);
        assert_eq!(a.failures[&FailureKind::Timeout], 1);
        assert_eq!(a.first_failure[&FailureKind::Connack(0x86)], "refused");
        assert!(a.phase(0).is_some());
        assert!(a.phase(3).is_none());
    }
}
