//! A parser of the Prometheus text exposition format (and OpenMetrics text), enough to read
//! `/metrics` samples by name.

use std::collections::BTreeMap;

/// Parses exposition text into `name{labels}` -> value, keeping the samples whose name starts
/// with `prefix`. Labels are kept as written; timestamps are dropped; comments and malformed
/// lines are skipped.
pub fn parse(text: &str, prefix: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || !line.starts_with(prefix) {
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .unwrap_or(line.len());
        let key_end = if line[name_end..].starts_with('{') {
            match closing_brace(&line[name_end..]) {
                Some(i) => name_end + i + 1,
                None => continue,
            }
        } else {
            name_end
        };
        let Some(value) = line[key_end..].split_whitespace().next() else {
            continue;
        };
        if let Ok(v) = value.parse::<f64>() {
            out.insert(line[..key_end].to_string(), v);
        }
    }
    out
}

/// Index of the `}` closing a label set that starts at `s[0] == '{'`, honouring quoted values
/// and backslash escapes.
fn closing_brace(s: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text() {
        let text = r#"# HELP fleetgate_connects_total Connects.
# TYPE fleetgate_connects_total counter
fleetgate_connects_total{listener="provisioning",outcome="accepted"} 1027
fleetgate_connects_total{listener="provisioning",outcome="refused"} 3 1712345678000
fleetgate_weird{a="x}y",b="q\"z"} 2.5
fleetgate_up 1
fleetgate_latency_seconds_bucket{le="+Inf"} 7
fleetgate_inf +Inf
process_cpu_seconds_total 12.5
fleetgate_broken{a="x" 1
# EOF
"#;
        let m = parse(text, "fleetgate_");
        assert_eq!(
            m[r#"fleetgate_connects_total{listener="provisioning",outcome="accepted"}"#],
            1027.0
        );
        assert_eq!(
            m[r#"fleetgate_connects_total{listener="provisioning",outcome="refused"}"#],
            3.0
        );
        assert_eq!(m[r#"fleetgate_weird{a="x}y",b="q\"z"}"#], 2.5);
        assert_eq!(m["fleetgate_up"], 1.0);
        assert_eq!(m[r#"fleetgate_latency_seconds_bucket{le="+Inf"}"#], 7.0);
        assert!(m["fleetgate_inf"].is_infinite());
        assert!(!m.keys().any(|k| k.starts_with("process_")));
        assert_eq!(m.len(), 6);
    }
}
