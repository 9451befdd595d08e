//! The admin API as the simulator uses it (API.md): bulk creation of provision requests and the
//! Prometheus `/metrics` scrape. Blocking HTTP (ureq); async callers run it on the blocking pool.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};

/// The API could not be reached at all (connection refused, host not found, connect timeout).
/// The CLI exits 2 on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    /// What was being contacted, e.g. `admin API at http://127.0.0.1:8080`.
    pub what: String,
    /// The transport error.
    pub cause: String,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot reach the {}: {}", self.what, self.cause)
    }
}

impl std::error::Error for Unreachable {}

/// Largest bulk request body sent (the API's default body limit is 1 MiB).
pub const MAX_BULK_BODY: usize = 1_000_000;

/// Most provision requests the bulk endpoint takes per call.
pub const MAX_BULK_ITEMS: usize = 10_000;

/// One provision request as the bulk endpoint takes it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewRequest {
    /// Target client ID.
    pub client_id: String,
    /// Provision username.
    pub provision_username: String,
    /// Provision password.
    pub provision_password: String,
    /// The same password again.
    pub confirm_provision_password: String,
    /// Operational broker URL given to the device.
    pub broker_url: String,
    /// Ask for an activation key.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub generate_activation_key: bool,
    /// RFC 3339 expiry.
    pub expires_on: String,
}

/// The part of a created provision request the simulator needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    /// Target client ID.
    pub client_id: String,
    /// The activation key, returned once on creation.
    #[serde(default)]
    pub activation_key: Option<String>,
}

#[derive(Deserialize)]
struct BulkCreated {
    created: Vec<Created>,
}

/// A client of the admin API.
#[derive(Clone)]
pub struct Api {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Api {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:8080`), authenticating with `token`.
    pub fn new(base: &str, token: &str) -> Api {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            // A bulk call of 10,000 requests with per-device passwords costs one argon2 hash each.
            .timeout_global(Some(Duration::from_secs(900)))
            .build();
        Api {
            agent: ureq::Agent::new_with_config(config),
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    fn unreachable_or(&self, e: ureq::Error, doing: &str) -> anyhow::Error {
        let unreachable = match &e {
            ureq::Error::Io(io) => matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::NotConnected
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
                    | std::io::ErrorKind::TimedOut
            ),
            ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
            ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Connect | ureq::Timeout::Resolve),
            _ => false,
        };
        if unreachable {
            anyhow::Error::new(Unreachable {
                what: format!("admin API at {}", self.base),
                cause: e.to_string(),
            })
        } else {
            anyhow!("{doing}: {e}")
        }
    }

    /// Creates `requests` in `account`, at most `chunk` per call (and at most
    /// [`MAX_BULK_BODY`] bytes), and returns what was created, in order.
    pub fn bulk_create(
        &self,
        account: &str,
        requests: &[NewRequest],
        chunk: usize,
    ) -> anyhow::Result<Vec<Created>> {
        let url = format!(
            "{}/api/v1/accounts/{account}/provision-requests/bulk",
            self.base
        );
        let chunk = chunk.clamp(1, MAX_BULK_ITEMS);
        let mut created = Vec::with_capacity(requests.len());
        let mut body = String::new();
        let mut count = 0usize;
        for (i, request) in requests.iter().enumerate() {
            let item = serde_json::to_string(request).context("encoding a provision request")?;
            let overflow =
                count > 0 && (count == chunk || body.len() + item.len() + 3 > MAX_BULK_BODY);
            if overflow {
                created.extend(self.post_bulk(&url, &body, count, i - count)?);
                body.clear();
                count = 0;
            }
            body.push_str(if count == 0 { "{\"requests\":[" } else { "," });
            body.push_str(&item);
            count += 1;
        }
        if count > 0 {
            created.extend(self.post_bulk(&url, &body, count, requests.len() - count)?);
        }
        Ok(created)
    }

    fn post_bulk(
        &self,
        url: &str,
        body: &str,
        count: usize,
        first: usize,
    ) -> anyhow::Result<Vec<Created>> {
        let body = format!("{body}]}}");
        let doing = format!("creating provision requests {first}..{}", first + count);
        let response = self
            .agent
            .post(url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(&body)
            .map_err(|e| self.unreachable_or(e, &doing))?;
        let status = response.status().as_u16();
        let text = response
            .into_body()
            .into_with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .with_context(|| format!("{doing}: reading the response"))?;
        if status != 201 && status != 200 {
            return Err(anyhow!(
                "{doing}: {url} answered {status}: {}",
                describe_problem(&text)
            ));
        }
        let parsed: BulkCreated = serde_json::from_str(&text)
            .with_context(|| format!("{doing}: unexpected response body"))?;
        if parsed.created.len() != count {
            return Err(anyhow!(
                "{doing}: the API created {} requests instead of {count}",
                parsed.created.len()
            ));
        }
        Ok(parsed.created)
    }

    /// Scrapes `{base}/metrics` and keeps the `fleetgate_*` samples.
    pub fn metrics(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        scrape_metrics(&self.agent, &self.base)
    }
}

/// Scrapes `{base}/metrics` (no auth) and keeps the samples whose names start with
/// `fleetgate_`.
pub fn scrape_metrics(agent: &ureq::Agent, base: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let url = format!("{}/metrics", base.trim_end_matches('/'));
    let response = agent
        .get(&url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(anyhow!("GET {url} answered {status}"));
    }
    let text = response
        .into_body()
        .into_with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .with_context(|| format!("GET {url}: reading the body"))?;
    Ok(parse_prometheus(&text, "fleetgate_"))
}

/// Scrapes metrics for the report: on any error, a warning on stderr and an empty map (the
/// run does not fail because `/metrics` is unreachable).
pub fn metrics_or_empty(base: Option<&str>, when: &str) -> BTreeMap<String, f64> {
    let Some(base) = base else {
        return BTreeMap::new();
    };
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    match scrape_metrics(&agent, base) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("warning: no server metrics {when} the run: {e:#}");
            BTreeMap::new()
        }
    }
}

/// Turns an RFC 9457 problem document (or any body) into one line.
fn describe_problem(body: &str) -> String {
    #[derive(Deserialize)]
    struct FieldError {
        #[serde(default)]
        field: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        index: Option<u64>,
    }
    #[derive(Deserialize)]
    struct Problem {
        #[serde(default)]
        title: String,
        #[serde(default)]
        detail: String,
        #[serde(default)]
        errors: Vec<FieldError>,
    }
    match serde_json::from_str::<Problem>(body) {
        Ok(p) => {
            let mut out = p.title;
            if !p.detail.is_empty() {
                out.push_str(": ");
                out.push_str(&p.detail);
            }
            for e in p.errors.iter().take(5) {
                match e.index {
                    Some(i) => out.push_str(&format!("; [{i}] {}: {}", e.field, e.message)),
                    None => out.push_str(&format!("; {}: {}", e.field, e.message)),
                }
            }
            if p.errors.len() > 5 {
                out.push_str(&format!("; ... {} more", p.errors.len() - 5));
            }
            out
        }
        Err(_) => body.chars().take(300).collect(),
    }
}

/// Parses the Prometheus text exposition format (and OpenMetrics text) into
/// `name{labels}` -> value, keeping the samples whose name starts with `prefix`. Labels are kept
/// as written; timestamps are dropped; comments and malformed lines are skipped.
pub fn parse_prometheus(text: &str, prefix: &str) -> BTreeMap<String, f64> {
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
        let m = parse_prometheus(text, "fleetgate_");
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

    #[test]
    fn problem_documents() {
        let body = r#"{"type":"about:blank","title":"Unprocessable","status":422,
            "detail":"2 invalid requests","errors":[{"index":3,"field":"clientId","message":"taken"}]}"#;
        assert_eq!(
            describe_problem(body),
            "Unprocessable: 2 invalid requests; [3] clientId: taken"
        );
        assert_eq!(describe_problem("plain text"), "plain text");
    }

    #[test]
    fn request_json_shape() {
        let r = NewRequest {
            client_id: "lt-1-a-0".into(),
            provision_username: "lt-shared-a".into(),
            provision_password: "pw".into(),
            confirm_provision_password: "pw".into(),
            broker_url: "mqtt://127.0.0.1:1884".into(),
            generate_activation_key: false,
            expires_on: "2030-01-01T00:00:00Z".into(),
        };
        let v = serde_json::to_value(&r).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "brokerUrl",
                "clientId",
                "confirmProvisionPassword",
                "expiresOn",
                "provisionPassword",
                "provisionUsername"
            ]
        );
        let v = serde_json::to_value(NewRequest {
            generate_activation_key: true,
            ..r
        })
        .unwrap();
        assert_eq!(v["generateActivationKey"], true);
    }

    #[test]
    fn unreachable_api_is_classified() {
        // Port 1 on loopback: nothing listens there.
        let api = Api::new("http://127.0.0.1:1", "t");
        let err = api.bulk_create("acme", &[], 10).unwrap();
        assert!(err.is_empty());
        let req = NewRequest {
            client_id: "c".into(),
            provision_username: "u".into(),
            provision_password: "p".into(),
            confirm_provision_password: "p".into(),
            broker_url: "mqtt://127.0.0.1:1884".into(),
            generate_activation_key: false,
            expires_on: "2030-01-01T00:00:00Z".into(),
        };
        let err = api.bulk_create("acme", &[req], 10).unwrap_err();
        assert!(err.downcast_ref::<Unreachable>().is_some(), "{err:#}");
    }
}
