//! `compare BASELINE.json CURRENT.json`: two JSON reports side by side, the change of every
//! headline figure, and the verdict (a regression when throughput fell, or the end-to-end
//! phase's p99 rose, by more than the allowed percentage).
//!
//! It reads the JSON report of LOADTEST.md as data (not [`crate::Report`]), so reports written
//! by older versions of the tool compare too.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::error::Error;
use crate::report::Scenario;

/// One compared figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `enrollments_per_second`, `latency_ms.enrollment.p99`, ...
    pub name: String,
    /// In the baseline (`None`: absent or null).
    pub baseline: Option<f64>,
    /// In the current report.
    pub current: Option<f64>,
    /// This row decides the verdict and went beyond the allowed change.
    pub regression: bool,
}

impl Row {
    /// The relative change in percent (`None` without both values or from 0).
    pub fn change_pct(&self) -> Option<f64> {
        match (self.baseline, self.current) {
            (Some(b), Some(c)) if b != 0.0 => Some((c - b) / b.abs() * 100.0),
            _ => None,
        }
    }

    /// `+12.3%`, `-4.0%`, `=` or `-`.
    pub fn change_text(&self) -> String {
        match (self.change_pct(), self.baseline, self.current) {
            (Some(p), _, _) => format!("{p:+.1}%"),
            (None, Some(b), Some(c)) if b == c => "=".to_string(),
            (None, Some(_), Some(c)) => format!("from 0 to {c}"),
            _ => "-".to_string(),
        }
    }
}

/// Two reports compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// `enroll` or `cycle`.
    pub scenario: String,
    /// How the baseline was named (its path).
    pub baseline_name: String,
    /// How the current report was named (its path).
    pub current_name: String,
    /// Allowed change in percent.
    pub max_regression_pct: f64,
    /// Every headline figure.
    pub rows: Vec<Row>,
    /// What regressed, as sentences (empty: no regression).
    pub regressions: Vec<String>,
}

/// Reads a JSON report from `path`.
pub fn load(path: &Path) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| Error::NotJson {
        path: path.to_path_buf(),
        source,
    })
}

fn scenario_of(v: &Value, name: &str) -> Result<Scenario, Error> {
    match v.get("scenario").and_then(Value::as_str) {
        Some("enroll") => Ok(Scenario::Enroll),
        Some("cycle") => Ok(Scenario::Cycle),
        _ => Err(Error::NotAReport {
            path: name.into(),
            reason: "no \"scenario\": \"enroll\" or \"cycle\"".into(),
        }),
    }
}

/// Compares `current` with `baseline` (JSON reports named `baseline_name`, `current_name`).
/// Both must be of the same scenario.
pub fn compare(
    baseline: &Value,
    baseline_name: &str,
    current: &Value,
    current_name: &str,
    max_regression_pct: f64,
) -> Result<Comparison, Error> {
    let scenario = scenario_of(baseline, baseline_name)?;
    if scenario_of(current, current_name)? != scenario {
        return Err(Error::NotAReport {
            path: current_name.into(),
            reason: format!("its scenario is not the baseline's ({})", scenario.as_str()),
        });
    }
    let pop = scenario.population_key();
    let rate = scenario.rate_key();
    let mut names: Vec<String> = vec![
        rate.to_string(),
        "duration_s".into(),
        format!("{pop}.attempted"),
        format!("{pop}.completed"),
        format!("{pop}.failed"),
    ];
    if scenario == Scenario::Enroll {
        names.push("operational_connects_per_second".into());
    }
    for phase in scenario.phases() {
        for q in ["p50", "p90", "p99", "max"] {
            names.push(format!("latency_ms.{phase}.{q}"));
        }
    }
    let end_to_end_p99 = format!(
        "latency_ms.{}.p99",
        scenario.phases()[scenario.end_to_end_phase()]
    );
    let mut rows = Vec::new();
    let mut regressions = Vec::new();
    for name in names {
        let get = |v: &Value| {
            name.split('.')
                .try_fold(v, |v, key| v.get(key))
                .and_then(Value::as_f64)
        };
        let mut row = Row {
            baseline: get(baseline),
            current: get(current),
            name,
            regression: false,
        };
        if let Some(change) = row.change_pct() {
            if row.name == rate && change < -max_regression_pct {
                row.regression = true;
                regressions.push(format!("throughput fell by {:.1}%", -change));
            } else if row.name == end_to_end_p99 && change > max_regression_pct {
                row.regression = true;
                regressions.push(format!("{} rose by {change:.1}%", row.name));
            }
        }
        rows.push(row);
    }
    if rows[0].baseline.is_none() || rows[0].current.is_none() {
        return Err(Error::NotAReport {
            path: if rows[0].baseline.is_none() {
                baseline_name
            } else {
                current_name
            }
            .into(),
            reason: format!("no {rate}"),
        });
    }
    Ok(Comparison {
        scenario: scenario.as_str().to_string(),
        baseline_name: baseline_name.to_string(),
        current_name: current_name.to_string(),
        max_regression_pct,
        rows,
        regressions,
    })
}

impl Comparison {
    /// `no regression (limit 10%)` or `REGRESSION: throughput fell by 23.0%`.
    pub fn verdict(&self) -> String {
        if self.regressions.is_empty() {
            format!(
                "no regression (limit {}%)",
                crate::server::number(self.max_regression_pct)
            )
        } else {
            format!("REGRESSION: {}", self.regressions.join("; "))
        }
    }

    /// The comparison as a text table.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<36}{:>14}{:>14}{:>12}",
            format!("{} report", self.scenario),
            "baseline",
            "current",
            "change"
        );
        let show = |v: Option<f64>| v.map(crate::server::number).unwrap_or_else(|| "-".into());
        for row in &self.rows {
            let _ = writeln!(
                out,
                "{:<36}{:>14}{:>14}{:>12}{}",
                row.name,
                show(row.baseline),
                show(row.current),
                row.change_text(),
                if row.regression {
                    "  <- regression"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(out, "\n{}", self.verdict());
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn report(rate: f64, p99: f64) -> Value {
        json!({
            "scenario": "enroll",
            "devices": {"attempted": 100, "completed": 100, "failed": 0},
            "duration_s": 1.0,
            "enrollments_per_second": rate,
            "operational_connects_per_second": null,
            "latency_ms": {
                "connect": {"p50": 1.0, "p90": 2.0, "p99": 3.0, "max": 4.0},
                "reply": {"p50": 1.0, "p90": 2.0, "p99": 3.0, "max": 4.0},
                "enrollment": {"p50": 1.0, "p90": 2.0, "p99": p99, "max": 40.0},
                "operational": null
            }
        })
    }

    fn verdict(base: Value, cur: Value, pct: f64) -> Comparison {
        compare(&base, "a.json", &cur, "b.json", pct).unwrap()
    }

    #[test]
    fn within_the_limit_is_no_regression() {
        let c = verdict(report(1000.0, 10.0), report(950.0, 10.9), 10.0);
        assert!(c.regressions.is_empty(), "{:?}", c.regressions);
        assert_eq!(c.rows[0].change_text(), "-5.0%");
        // Improvements never count.
        let c = verdict(report(1000.0, 10.0), report(3000.0, 1.0), 10.0);
        assert!(c.regressions.is_empty());
        assert!(c.to_table().contains("no regression (limit 10%)"));
    }

    #[test]
    fn throughput_drop_and_p99_rise_regress() {
        let c = verdict(report(1000.0, 10.0), report(800.0, 10.0), 10.0);
        assert_eq!(c.regressions, ["throughput fell by 20.0%"]);
        assert!(c.rows[0].regression);
        let c = verdict(report(1000.0, 10.0), report(1000.0, 12.0), 10.0);
        assert_eq!(c.regressions, ["latency_ms.enrollment.p99 rose by 20.0%"]);
        // A looser limit lets both pass.
        let c = verdict(report(1000.0, 10.0), report(800.0, 12.0), 25.0);
        assert!(c.regressions.is_empty());
        let c = verdict(report(1000.0, 10.0), report(800.0, 12.0), 10.0);
        assert_eq!(c.regressions.len(), 2);
        assert!(c.verdict().starts_with("REGRESSION: "));
        let operational = c
            .rows
            .iter()
            .find(|r| r.name == "operational_connects_per_second")
            .unwrap();
        assert_eq!(operational.change_text(), "-");
    }

    #[test]
    fn mismatched_or_foreign_files_are_errors() {
        let cycle = json!({"scenario": "cycle", "cycles_per_second": 5.0});
        let err = compare(&report(1.0, 1.0), "a", &cycle, "b", 10.0).unwrap_err();
        assert!(
            err.to_string().contains("not the baseline's (enroll)"),
            "{err}"
        );
        let err = compare(&json!({"x": 1}), "a", &cycle, "b", 10.0).unwrap_err();
        assert!(matches!(err, Error::NotAReport { .. }));
        let err = load(Path::new("/nonexistent/report.json")).unwrap_err();
        assert!(matches!(err, Error::Unreadable { .. }));
    }
}
