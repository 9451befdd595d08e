//! Figures derived from the server's `/metrics` samples before and after a run: counter
//! increases with their rate, histogram quantiles (as Prometheus's `histogram_quantile`
//! computes them from the bucket increases), gauges before and after. The report shows these
//! instead of raw buckets; the JSON report keeps the raw samples.

use std::collections::BTreeMap;

/// One derived figure of a metric (or of one label set of it) that changed during the run.
#[derive(Debug, Clone, PartialEq)]
pub enum Figure {
    /// A counter (`*_total` or an unbucketed `*_count`/`*_sum`): its increase.
    Counter {
        /// Name with labels.
        name: String,
        /// Increase over the run.
        increase: f64,
        /// Increase per second of the run.
        per_second: f64,
    },
    /// A histogram: the observations made during the run.
    Histogram {
        /// Family name (without `_bucket`) with labels other than `le`.
        name: String,
        /// Observations during the run.
        count: f64,
        /// Mean of those observations (`None` without a `_sum`).
        mean: Option<f64>,
        /// Median, interpolated within buckets.
        p50: Option<f64>,
        /// 99th percentile, interpolated within buckets.
        p99: Option<f64>,
    },
    /// Any other sample (a gauge): before and after.
    Gauge {
        /// Name with labels.
        name: String,
        /// Before the run (0 when absent).
        before: f64,
        /// After the run.
        after: f64,
    },
}

impl Figure {
    /// The figure's name (with labels).
    pub fn name(&self) -> &str {
        match self {
            Figure::Counter { name, .. }
            | Figure::Histogram { name, .. }
            | Figure::Gauge { name, .. } => name,
        }
    }

    /// One line of text: `name  increase (rate/s)`, `name  n obs, p50 .., p99 ..`, or
    /// `name  before -> after`. Histograms of seconds are shown in milliseconds.
    pub fn text(&self) -> String {
        match self {
            Figure::Counter {
                name,
                increase,
                per_second,
            } => format!("{name}  +{} ({per_second:.1}/s)", number(*increase)),
            Figure::Histogram {
                name,
                count,
                mean,
                p50,
                p99,
            } => {
                let (scale, unit) = if name.split('{').next().unwrap_or("").ends_with("_seconds") {
                    (1000.0, " ms")
                } else {
                    (1.0, "")
                };
                let q = |v: &Option<f64>| match v {
                    Some(v) => format!("{}{unit}", number(v * scale)),
                    None => "-".to_string(),
                };
                format!(
                    "{name}  {} observed, mean {}, p50 {}, p99 {}",
                    number(*count),
                    q(mean),
                    q(p50),
                    q(p99)
                )
            }
            Figure::Gauge {
                name,
                before,
                after,
            } => format!("{name}  {} -> {}", number(*before), number(*after)),
        }
    }
}

/// A compact number: integers without decimals, others with up to three significant decimals.
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Splits `name{a="1",le="0.5"}` into the name, the labels without `le`, and `le`'s value.
fn split_key(key: &str) -> (&str, String, Option<&str>) {
    let Some(open) = key.find('{') else {
        return (key, String::new(), None);
    };
    let name = &key[..open];
    let inner = key[open + 1..].trim_end_matches('}');
    let mut le = None;
    let mut rest = Vec::new();
    // Label values of the fleetgate_* families are identifiers, routes and numbers: none has
    // a comma, so a plain split is enough here.
    for label in inner.split(',').filter(|l| !l.is_empty()) {
        match label.strip_prefix("le=") {
            Some(v) => le = Some(v.trim_matches('"')),
            None => rest.push(label),
        }
    }
    let labels = if rest.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", rest.join(","))
    };
    (name, labels, le)
}

/// Prometheus's `histogram_quantile` on cumulative `(upper bound, count)` buckets sorted by
/// bound (the last `+Inf`): linear within the bucket holding the rank; a rank in `+Inf`
/// answers the highest finite bound. `None` when there are no observations.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(upper, cumulative) in buckets {
        if cumulative >= rank {
            if upper.is_infinite() {
                return Some(prev.0);
            }
            let in_bucket = cumulative - prev.1;
            let lower = if prev.0 == 0.0 && upper <= 0.0 {
                upper
            } else {
                prev.0
            };
            if in_bucket <= 0.0 {
                return Some(upper);
            }
            return Some(lower + (upper - lower) * (rank - prev.1) / in_bucket);
        }
        prev = (upper, cumulative);
    }
    Some(prev.0)
}

/// The figures of the samples that changed between `before` and `after`, over a run of
/// `duration_s` seconds, sorted by name.
pub fn derive(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    duration_s: f64,
) -> Vec<Figure> {
    let delta = |key: &str| {
        after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
    };
    // Histogram families by (family, labels): their bucket increases.
    let mut histograms: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for key in after.keys() {
        let (name, labels, le) = split_key(key);
        if let (Some(family), Some(le)) = (name.strip_suffix("_bucket"), le) {
            let upper = if le == "+Inf" {
                f64::INFINITY
            } else {
                match le.parse::<f64>() {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            };
            histograms
                .entry((family.to_string(), labels))
                .or_default()
                .push((upper, delta(key)));
        }
    }
    let mut figures = Vec::new();
    for ((family, labels), mut buckets) in histograms.clone() {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let count = delta(&format!("{family}_count{labels}"));
        let count = if count > 0.0 {
            count
        } else {
            buckets.last().map_or(0.0, |b| b.1)
        };
        if count <= 0.0 {
            continue;
        }
        let sum_key = format!("{family}_sum{labels}");
        figures.push(Figure::Histogram {
            name: format!("{family}{labels}"),
            count,
            mean: after
                .contains_key(&sum_key)
                .then(|| delta(&sum_key) / count),
            p50: quantile(0.5, &buckets),
            p99: quantile(0.99, &buckets),
        });
    }
    for (key, value) in after {
        let (name, labels, _) = split_key(key);
        let of_histogram = |suffix: &str| {
            name.strip_suffix(suffix)
                .is_some_and(|f| histograms.contains_key(&(f.to_string(), labels.clone())))
        };
        if of_histogram("_bucket") || of_histogram("_count") || of_histogram("_sum") {
            continue;
        }
        let was = before.get(key).copied().unwrap_or(0.0);
        if was == *value {
            continue;
        }
        if name.ends_with("_total") || name.ends_with("_count") || name.ends_with("_sum") {
            let increase = value - was;
            figures.push(Figure::Counter {
                name: key.clone(),
                increase,
                per_second: if duration_s > 0.0 {
                    increase / duration_s
                } else {
                    0.0
                },
            });
        } else {
            figures.push(Figure::Gauge {
                name: key.clone(),
                before: was,
                after: *value,
            });
        }
    }
    figures.sort_by(|a, b| a.name().cmp(b.name()));
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let b = [
            (0.001, 0.0),
            (0.01, 50.0),
            (0.1, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert!((quantile(0.5, &b).unwrap() - 0.01).abs() < 1e-12);
        assert!((quantile(0.25, &b).unwrap() - 0.0055).abs() < 1e-12);
        assert!((quantile(0.99, &b).unwrap() - 0.0982).abs() < 1e-12);
        // A rank in +Inf answers the highest finite bound.
        let inf = [(0.1, 1.0), (f64::INFINITY, 10.0)];
        assert_eq!(quantile(0.99, &inf), Some(0.1));
        assert_eq!(quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
    }

    #[test]
    fn derived_figures_from_before_and_after() {
        let before = map(&[
            ("fleetgate_commit_batch_size_bucket{le=\"1\"}", 10.0),
            ("fleetgate_commit_batch_size_bucket{le=\"10\"}", 10.0),
            ("fleetgate_commit_batch_size_bucket{le=\"+Inf\"}", 10.0),
            ("fleetgate_commit_batch_size_count", 10.0),
            ("fleetgate_commit_batch_size_sum", 10.0),
            ("fleetgate_enrollments_total{result=\"ok\"}", 5.0),
            ("fleetgate_connections", 2.0),
            ("fleetgate_unchanged_total", 7.0),
        ]);
        let after = map(&[
            ("fleetgate_commit_batch_size_bucket{le=\"1\"}", 10.0),
            ("fleetgate_commit_batch_size_bucket{le=\"10\"}", 110.0),
            ("fleetgate_commit_batch_size_bucket{le=\"+Inf\"}", 110.0),
            ("fleetgate_commit_batch_size_count", 110.0),
            ("fleetgate_commit_batch_size_sum", 510.0),
            ("fleetgate_enrollments_total{result=\"ok\"}", 105.0),
            ("fleetgate_connections", 9.0),
            ("fleetgate_unchanged_total", 7.0),
        ]);
        let f = derive(&before, &after, 2.0);
        assert_eq!(f.len(), 3, "{f:?}");
        assert_eq!(
            f[0],
            Figure::Histogram {
                name: "fleetgate_commit_batch_size".into(),
                count: 100.0,
                mean: Some(5.0),
                p50: Some(5.5),
                p99: Some(9.91),
            }
            .clone()
        );
        assert_eq!(
            f[1],
            Figure::Gauge {
                name: "fleetgate_connections".into(),
                before: 2.0,
                after: 9.0
            }
        );
        assert_eq!(
            f[2],
            Figure::Counter {
                name: "fleetgate_enrollments_total{result=\"ok\"}".into(),
                increase: 100.0,
                per_second: 50.0
            }
        );
        assert!(f[0].text().contains("p99 9.910"), "{}", f[0].text());
        assert!(f[2].text().contains("+100 (50.0/s)"), "{}", f[2].text());
    }

    #[test]
    fn seconds_histograms_are_shown_in_milliseconds() {
        let f = Figure::Histogram {
            name: "fleetgate_commit_seconds".into(),
            count: 4.0,
            mean: Some(0.002),
            p50: Some(0.0015),
            p99: None,
        };
        assert_eq!(
            f.text(),
            "fleetgate_commit_seconds  4 observed, mean 2 ms, p50 1.500 ms, p99 -"
        );
    }
}
