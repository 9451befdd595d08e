//! Per-device outcomes, failure reasons and latency histograms, for the whole run and over
//! time ([`Timeline`]).

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

/// Time buckets a [`Timeline`] keeps at most; past it, neighbours merge and the width doubles.
pub const MAX_BUCKETS: usize = 600;

/// Per-bucket histograms: 2 significant figures from 1 us to one hour is plenty for a plot and
/// keeps one phase's histogram of one bucket at a few kilobytes.
fn new_bucket_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static histogram bounds are valid")
}

/// What ended within one time bucket of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bucket {
    /// Devices that completed.
    pub completed: u64,
    /// Devices that failed, by reason.
    pub failures: BTreeMap<FailureKind, u64>,
    /// Latencies per phase of the devices that ended in the bucket (`None`: no sample).
    phases: Vec<Option<Histogram<u64>>>,
}

impl Bucket {
    /// Percentiles of phase `index` in this bucket.
    pub fn phase(&self, index: usize) -> Option<Percentiles> {
        self.phases.get(index)?.as_ref().and_then(percentiles)
    }

    fn add(&mut self, other: &Bucket) {
        self.completed += other.completed;
        for (k, v) in &other.failures {
            *self.failures.entry(*k).or_insert(0) += v;
        }
        if self.phases.len() < other.phases.len() {
            self.phases.resize(other.phases.len(), None);
        }
        for (a, b) in self.phases.iter_mut().zip(&other.phases) {
            match (a.as_mut(), b) {
                // Same bounds on both sides, so addition cannot fail.
                (Some(a), Some(b)) => {
                    let _ = a.add(b);
                }
                (None, Some(b)) => *a = Some(b.clone()),
                (_, None) => {}
            }
        }
    }
}

/// Outcomes over time, by when they ended: one-second buckets, each with its own per-phase
/// HdrHistograms (2 significant figures). Memory is bounded: when a run outlasts
/// [`MAX_BUCKETS`] buckets, neighbouring buckets merge and the width doubles.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    width_s: u64,
    buckets: Vec<Bucket>,
}

impl Default for Timeline {
    fn default() -> Timeline {
        Timeline {
            width_s: 1,
            buckets: Vec::new(),
        }
    }
}

impl Timeline {
    /// Width of each bucket in seconds (1 unless the run was long).
    pub fn width_s(&self) -> u64 {
        self.width_s
    }

    /// The buckets, the first starting at the run's start.
    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    fn bucket_at(&mut self, at: Duration) -> &mut Bucket {
        let mut index = (at.as_secs() / self.width_s) as usize;
        while index >= MAX_BUCKETS {
            self.coarsen();
            index = (at.as_secs() / self.width_s) as usize;
        }
        if self.buckets.len() <= index {
            self.buckets.resize(index + 1, Bucket::default());
        }
        &mut self.buckets[index]
    }

    /// Halves the resolution: buckets 2k and 2k+1 become bucket k.
    fn coarsen(&mut self) {
        let old = std::mem::take(&mut self.buckets);
        for pair in old.chunks(2) {
            let mut merged = pair[0].clone();
            if let Some(second) = pair.get(1) {
                merged.add(second);
            }
            self.buckets.push(merged);
        }
        self.width_s *= 2;
    }

    /// Records an outcome that ended `at` after the start.
    pub fn record(&mut self, at: Duration, outcome: &Outcome) {
        let bucket = self.bucket_at(at);
        for (i, sample) in outcome.phases.iter().enumerate() {
            if let Some(d) = sample {
                if bucket.phases.len() <= i {
                    bucket.phases.resize(i + 1, None);
                }
                bucket.phases[i]
                    .get_or_insert_with(new_bucket_histogram)
                    .saturating_record((d.as_micros() as u64).max(1));
            }
        }
        match &outcome.failure {
            None => bucket.completed += 1,
            Some(f) => *bucket.failures.entry(f.kind).or_insert(0) += 1,
        }
    }

    /// Counts `n` failures of `kind` at `at`.
    pub fn record_failures(&mut self, at: Duration, kind: FailureKind, n: u64) {
        if n > 0 {
            *self.bucket_at(at).failures.entry(kind).or_insert(0) += n;
        }
    }

    /// Adds `other`, whose time 0 is `offset` after this timeline's (a later phase of the
    /// same run).
    pub fn merge(&mut self, other: &Timeline, offset: Duration) {
        for (i, b) in other.buckets.iter().enumerate() {
            let at = offset + Duration::from_secs(i as u64 * other.width_s);
            self.bucket_at(at).add(b);
        }
    }
}

/// Aggregated outcomes of a run. One collector owns it, so recording takes no lock.
#[derive(Debug, Clone)]
pub struct Stats {
    phases: Vec<Histogram<u64>>,
    /// The same outcomes over time.
    pub timeline: Timeline,
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
            timeline: Timeline::default(),
        }
    }

    /// Records one outcome that ended `at` after the run's start, in the totals and the
    /// timeline.
    pub fn record_at(&mut self, at: Duration, outcome: &Outcome) {
        self.record(outcome);
        self.timeline.record(at, outcome);
    }

    /// Records one outcome in the totals only (not the timeline). Phase latencies count even when a later phase failed (a device
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

    /// Merges another collector's statistics (same phases) that started at the same time.
    pub fn merge(&mut self, other: &Stats) {
        self.merge_after(other, Duration::ZERO);
    }

    /// Merges the statistics of a later phase of the run that started `offset` after this one.
    pub fn merge_after(&mut self, other: &Stats, offset: Duration) {
        self.timeline.merge(&other.timeline, offset);
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

    /// The whole-run histogram of phase `index` (microseconds).
    pub fn phase_histogram(&self, index: usize) -> Option<&Histogram<u64>> {
        self.phases.get(index)
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

    fn ok_ms(ms: u64) -> Outcome {
        Outcome {
            phases: [Some(Duration::from_millis(ms)), None, None, None],
            failure: None,
        }
    }

    #[test]
    fn timeline_buckets_by_second() {
        let mut s = Stats::new(1);
        s.record_at(Duration::from_millis(100), &ok_ms(5));
        s.record_at(Duration::from_millis(900), &ok_ms(7));
        s.record_at(Duration::from_millis(2500), &ok_ms(50));
        s.timeline
            .record_failures(Duration::from_millis(2600), FailureKind::Timeout, 3);
        let t = &s.timeline;
        assert_eq!(t.width_s(), 1);
        assert_eq!(t.buckets().len(), 3);
        assert_eq!(t.buckets()[0].completed, 2);
        assert_eq!(t.buckets()[1].completed, 0);
        assert!(t.buckets()[1].phase(0).is_none());
        let p = t.buckets()[2].phase(0).unwrap();
        assert!((p.p50 - 50.0).abs() < 1.0, "{p:?}");
        assert_eq!(t.buckets()[2].failures[&FailureKind::Timeout], 3);
        assert_eq!(s.completed, 3);
    }

    #[test]
    fn timeline_memory_is_bounded() {
        let mut t = Timeline::default();
        for sec in 0..(3 * MAX_BUCKETS as u64) {
            t.record(Duration::from_secs(sec), &ok_ms(1));
        }
        assert!(t.buckets().len() <= MAX_BUCKETS);
        assert_eq!(t.width_s(), 4);
        let total: u64 = t.buckets().iter().map(|b| b.completed).sum();
        assert_eq!(total, 3 * MAX_BUCKETS as u64);
    }

    #[test]
    fn a_later_phase_merges_at_its_offset() {
        let mut a = Stats::new(1);
        a.record_at(Duration::ZERO, &ok_ms(1));
        let mut b = Stats::new(1);
        b.record_at(Duration::ZERO, &ok_ms(1));
        a.merge_after(&b, Duration::from_secs(3));
        assert_eq!(a.timeline.buckets().len(), 4);
        assert_eq!(a.timeline.buckets()[3].completed, 1);
        assert_eq!(a.completed, 2);
    }
}
