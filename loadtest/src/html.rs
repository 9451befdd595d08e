//! The HTML reports: one self-contained page per run (or per comparison) with inline CSS and
//! SVG charts drawn here. No JavaScript and no external URL, so the file opens anywhere,
//! offline, and can be attached to a ticket as it is.

use std::fmt::Write as _;

use crate::compare::Comparison;
use crate::report::Report;
use crate::server::number;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:60em}\
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .8em;border-bottom:1px solid #ddd;\
text-align:left}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
.worse{color:#b00020;font-weight:bold}.better{color:#1b7f3b}\
svg.chart{background:#fafafa;border:1px solid #ddd;margin:.4em 0}\
svg text{font-size:11px;fill:#444}.verdict{font-size:1.2em;font-weight:bold}";

/// Series colours: p50/p90/p99 and the failure reasons take them in order.
const COLORS: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One line of a chart.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

/// A line chart of `series` as an inline `<svg class="chart">`: axes with min/max labels, one
/// `<polyline>` per series, a legend. `log_x` labels the x axis with 10^x (the histogram).
fn line_chart(
    id: &str,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_x: bool,
) -> String {
    const W: f64 = 760.0;
    const H: f64 = 260.0;
    const L: f64 = 64.0;
    const R: f64 = 150.0;
    const T: f64 = 24.0;
    const B: f64 = 40.0;
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= 0.0 {
        y1 = 1.0;
    }
    y1 *= 1.05;
    let sx = |x: f64| L + (x - x0) / (x1 - x0) * (W - L - R);
    let sy = |y: f64| T + (1.0 - y / y1) * (H - T - B);
    let total: usize = series.iter().map(|s| s.points.len()).sum();
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart\" id=\"{id}\" data-points=\"{total}\" xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{t}\">\
         <title>{t}</title><text x=\"{L}\" y=\"15\" font-weight=\"bold\">{t}</text>",
        t = escape(title)
    );
    let (bx, by) = (W - R, H - B);
    let _ = write!(
        out,
        "<line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{by}\" stroke=\"#888\"/>\
         <line x1=\"{L}\" y1=\"{by}\" x2=\"{bx}\" y2=\"{by}\" stroke=\"#888\"/>"
    );
    for i in 0..=4 {
        let y = y1 * i as f64 / 4.0;
        let py = sy(y);
        let _ = write!(
            out,
            "<line x1=\"{L}\" y1=\"{py:.1}\" x2=\"{bx}\" y2=\"{py:.1}\" stroke=\"#e4e4e4\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            L - 4.0,
            py + 4.0,
            tick(y)
        );
        let x = x0 + (x1 - x0) * i as f64 / 4.0;
        let label = if log_x { tick(10f64.powf(x)) } else { tick(x) };
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            sx(x),
            by + 14.0
        );
    }
    let _ = write!(
        out,
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
         <text x=\"12\" y=\"{:.1}\" transform=\"rotate(-90 12 {:.1})\" text-anchor=\"middle\">{}</text>",
        (L + bx) / 2.0,
        H - 6.0,
        escape(x_label),
        (T + by) / 2.0,
        (T + by) / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\" data-series=\"{n}\" \
             points=\"{}\"/>",
            points.join(" "),
            n = escape(&s.name)
        );
        if s.points.len() == 1 {
            // A single point draws no line: mark it.
            let (x, y) = s.points[0];
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>",
                sx(x),
                sy(y)
            );
        }
        let ly = T + 14.0 * i as f64 + 8.0;
        let _ = write!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"{color}\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            bx + 10.0,
            ly - 3.0,
            bx + 26.0,
            ly + 1.0,
            escape(&s.name)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// An axis label: at most 3 significant decimals, thousands as `k`.
fn tick(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.abs() >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{t}</title><style>{STYLE}</style></head>\n<body>\n<h1>{t}</h1>\n{body}</body></html>\n",
        t = escape(title)
    )
}

/// The HTML report of one run.
pub fn report(r: &Report) -> String {
    let mut b = String::new();
    let unit = r.scenario.rate_key().replace('_', " ");
    let _ = write!(
        b,
        "<h2>Configuration</h2><p>{}</p>\n<h2>Headline figures</h2><table>\
         <tr><th>{pop} attempted</th><td class=\"n\">{}</td></tr>\
         <tr><th>completed</th><td class=\"n\">{}</td></tr>\
         <tr><th>failed</th><td class=\"n\">{}</td></tr>\
         <tr><th>duration</th><td class=\"n\">{:.3} s</td></tr>\
         <tr><th>{unit}</th><td class=\"n\">{:.1}</td></tr>",
        escape(&r.config_text()),
        r.counts.attempted,
        r.counts.completed,
        r.counts.failed,
        r.duration_s,
        r.per_second,
        pop = r.scenario.population_key()
    );
    if let Some(op) = r.operational_per_second {
        let _ = write!(
            b,
            "<tr><th>operational connects per second</th><td class=\"n\">{op:.1}</td></tr>"
        );
    }
    b.push_str(
        "</table>\n<table><tr><th>latency (ms)</th><th class=\"n\">p50</th><th class=\"n\">p90</th>\
                <th class=\"n\">p99</th><th class=\"n\">max</th></tr>",
    );
    for (name, p) in &r.latency_ms {
        match p {
            Some(p) => {
                let _ = write!(
                    b,
                    "<tr><td>{name}</td><td class=\"n\">{:.3}</td><td class=\"n\">{:.3}</td>\
                     <td class=\"n\">{:.3}</td><td class=\"n\">{:.3}</td></tr>",
                    p.p50, p.p90, p.p99, p.max
                );
            }
            None => {
                let _ = write!(
                    b,
                    "<tr><td>{name}</td><td class=\"n\">-</td><td></td><td></td><td></td></tr>"
                );
            }
        }
    }
    b.push_str("</table>\n");
    let failures: Vec<String> = r
        .failures
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{} {n}", escape(k)))
        .collect();
    let _ = writeln!(
        b,
        "<p>Failures: {}</p>",
        if failures.is_empty() {
            "none".to_string()
        } else {
            failures.join(", ")
        }
    );

    b.push_str("<h2>Over time</h2>\n");
    // Each interval is plotted at its middle, as a rate per second.
    let mid = |i: &crate::report::Interval| i.start_s + i.width_s / 2.0;
    let completions = Series {
        name: "completed/s".into(),
        points: r
            .timeline
            .iter()
            .map(|i| (mid(i), i.completed as f64 / i.width_s))
            .collect(),
    };
    b.push_str(&line_chart(
        "completions",
        "Completions per second",
        "seconds",
        "per second",
        &[completions],
        false,
    ));
    for (p, (name, _)) in r.latency_ms.iter().enumerate() {
        let quantile = |label: &str, f: fn(&crate::stats::Percentiles) -> f64| Series {
            name: label.into(),
            points: r
                .timeline
                .iter()
                .filter_map(|i| {
                    i.latency_ms
                        .get(p)
                        .copied()
                        .flatten()
                        .map(|q| (mid(i), f(&q)))
                })
                .collect(),
        };
        let series = [
            quantile("p50", |q| q.p50),
            quantile("p90", |q| q.p90),
            quantile("p99", |q| q.p99),
        ];
        if series[0].points.is_empty() {
            continue;
        }
        b.push_str(&line_chart(
            &format!("latency-{name}"),
            &format!("Latency of {name} over time (by when the device ended)"),
            "seconds",
            "ms",
            &series,
            false,
        ));
    }
    let mut reasons: Vec<&String> = r.timeline.iter().flat_map(|i| i.failures.keys()).collect();
    reasons.sort();
    reasons.dedup();
    let mut failure_series = vec![Series {
        name: "all reasons".into(),
        points: r
            .timeline
            .iter()
            .map(|i| (mid(i), i.failures.values().sum::<u64>() as f64 / i.width_s))
            .collect(),
    }];
    for reason in reasons {
        failure_series.push(Series {
            name: reason.clone(),
            points: r
                .timeline
                .iter()
                .map(|i| {
                    (
                        mid(i),
                        i.failures.get(reason).copied().unwrap_or(0) as f64 / i.width_s,
                    )
                })
                .collect(),
        });
    }
    b.push_str(&line_chart(
        "failures",
        "Failures per second by reason",
        "seconds",
        "per second",
        &failure_series,
        false,
    ));

    if !r.latency_histogram.is_empty() {
        let name = r.scenario.phases()[r.scenario.end_to_end_phase()];
        let mut points = Vec::new();
        // A step line over log-spaced bins: each bar is a flat segment.
        for bin in &r.latency_histogram {
            points.push((bin.low_ms.log10(), bin.count as f64));
            points.push((bin.high_ms.log10(), bin.count as f64));
        }
        b.push_str("<h2>Latency distribution</h2>\n");
        b.push_str(&line_chart(
            "histogram",
            &format!("Histogram of {name} latency (log scale)"),
            "ms",
            "devices",
            &[Series {
                name: name.into(),
                points,
            }],
            true,
        ));
    }

    b.push_str("<h2>Server metrics that changed</h2>\n");
    let figures = r.server_figures();
    if figures.is_empty() {
        b.push_str("<p>None (no <code>/metrics</code>, or nothing changed).</p>\n");
    } else {
        b.push_str("<table>");
        for f in &figures {
            let _ = write!(b, "<tr><td>{}</td></tr>", escape(&f.text()));
        }
        b.push_str("</table>\n");
    }
    page(
        &format!("fleetgate-loadtest {} report", r.scenario.as_str()),
        &b,
    )
}

/// The HTML page of a comparison: every headline figure side by side with its change.
pub fn comparison(c: &Comparison) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<p>Baseline <code>{}</code>, current <code>{}</code>; a regression is throughput down \
         or end-to-end p99 up by more than {}%.</p>\n<p class=\"verdict {}\">{}</p>\n\
         <table><tr><th>figure</th><th class=\"n\">baseline</th><th class=\"n\">current</th>\
         <th class=\"n\">change</th></tr>",
        escape(&c.baseline_name),
        escape(&c.current_name),
        number(c.max_regression_pct),
        if c.regressions.is_empty() {
            "better"
        } else {
            "worse"
        },
        escape(&c.verdict())
    );
    for row in &c.rows {
        let class = if row.regression {
            " class=\"worse\""
        } else {
            ""
        };
        let _ = write!(
            b,
            "<tr{class}><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&row.name),
            row.baseline.map(number).unwrap_or_else(|| "-".into()),
            row.current.map(number).unwrap_or_else(|| "-".into()),
            escape(&row.change_text())
        );
    }
    b.push_str("</table>\n");
    page(
        &format!("fleetgate-loadtest comparison ({})", c.scenario),
        &b,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::compare;
    use crate::config::Protocol;
    use crate::report::{ReportConfig, Scenario, ServerMetrics};
    use crate::stats::{Failure, FailureKind, Outcome, Stats};

    fn run_report() -> Report {
        let mut stats = Stats::new(4);
        for i in 0..300u64 {
            let ms = 1 + i % 40;
            let outcome = Outcome {
                phases: [
                    Some(Duration::from_millis(ms)),
                    Some(Duration::from_millis(2 * ms)),
                    Some(Duration::from_millis(3 * ms)),
                    None,
                ],
                failure: (i % 50 == 0).then(|| Failure::new(FailureKind::Timeout, "slow")),
            };
            stats.record_at(Duration::from_millis(i * 10), &outcome);
        }
        let mut server = ServerMetrics::default();
        server
            .metrics_after
            .insert("fleetgate_enrollments_total".into(), 294.0);
        Report::build(
            Scenario::Enroll,
            ReportConfig::Enroll {
                devices: 300,
                concurrency: None,
                rate: None,
                protocol: "5".into(),
                encoding: "json".into(),
                credentials: "shared".into(),
                operational: false,
                operational_phase: "inline".into(),
                ramp: Some("0:100,3:100".into()),
            },
            Protocol::V5,
            300,
            &stats,
            3.0,
            server,
        )
    }

    /// The `<svg ...>` elements and the points of their polylines.
    fn charts(html: &str) -> Vec<(String, usize)> {
        html.split("<svg ")
            .skip(1)
            .map(|svg| {
                let svg = &svg[..svg.find("</svg>").unwrap()];
                let id = svg
                    .split("id=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                let points = svg
                    .split("<polyline ")
                    .skip(1)
                    .map(|p| {
                        let p = p.split(" points=\"").nth(1).unwrap();
                        p.split('"').next().unwrap().split_whitespace().count()
                    })
                    .sum();
                (id.to_string(), points)
            })
            .collect()
    }

    #[test]
    fn every_chart_has_data_and_nothing_is_external() {
        let html = report(&run_report());
        let charts = charts(&html);
        let ids: Vec<&str> = charts.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "completions",
                "latency-connect",
                "latency-reply",
                "latency-enrollment",
                "failures",
                "histogram"
            ]
        );
        for (id, points) in &charts {
            assert!(*points > 0, "{id} has no data");
        }
        // 3 seconds of timeline, one point each.
        assert_eq!(charts[0].1, 3);
        // No network: the only URL is the SVG namespace, which is an identifier.
        let without_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        for needle in ["http:", "https:", "<script", "src=", "@import", "url("] {
            assert!(!without_ns.contains(needle), "{needle}");
        }
        assert!(html.contains("ramp 0:100,3:100"));
        assert!(html.contains("fleetgate_enrollments_total  +294"));
        assert!(html.contains("timeout 6"));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn comparison_page() {
        let a: serde_json::Value = serde_json::from_str(&run_report().to_json()).unwrap();
        let mut b = a.clone();
        b["enrollments_per_second"] = (a["enrollments_per_second"].as_f64().unwrap() / 10.0).into();
        let c = compare::compare(&a, "base<1>.json", &b, "cur.json", 10.0).unwrap();
        let html = comparison(&c);
        assert!(html.contains("base&lt;1&gt;.json"));
        assert!(html.contains("REGRESSION: throughput fell by 90.0%"));
        assert!(html.contains("class=\"worse\""));
    }
}
