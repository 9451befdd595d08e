//! The admin API as the simulator uses it (API.md), through `fleetgate-client`: bulk creation
//! of the fleet's provision requests and the Prometheus `/metrics` scrape. Blocking HTTP; async
//! callers run it on the blocking pool. Also [`Unreachable`], the setup error of a server that
//! cannot be reached at all, over HTTP or MQTT.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use anyhow::anyhow;
use fleetgate_client::types::{ProvisionRequest, ProvisionRequestInput};
use fleetgate_client::{Client, Error};

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

/// The client of the admin API at `base`, authenticating with `token`.
pub fn admin(base: &str, token: &str) -> Client {
    // A bulk call of 10,000 requests with per-device passwords costs one argon2 hash each.
    Client::new(base, Some(token))
        .with_timeouts(Some(Duration::from_secs(5)), Some(Duration::from_secs(900)))
}

/// Creates `requests` in `account`, at most `chunk` per call (and at most
/// [`fleetgate_client::MAX_BULK_BODY`] bytes), and returns what was created, in order. An
/// absent server is [`Unreachable`].
pub fn bulk_create(
    api: &Client,
    account: &str,
    requests: &[ProvisionRequestInput],
    chunk: usize,
) -> anyhow::Result<Vec<ProvisionRequest>> {
    api.bulk_create(account, requests, chunk)
        .map_err(|e| setup_error(api, e))
}

/// A failed call as a setup error: [`Unreachable`], or one line naming the items of the
/// failed call and the server's answer (at most five field errors, so a refused fleet of
/// 10,000 does not flood the terminal).
fn setup_error(api: &Client, e: Error) -> anyhow::Error {
    if e.is_unreachable() {
        let mut cause: &dyn std::error::Error = &e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        return Unreachable {
            what: format!("admin API at {}", api.base_url()),
            cause: cause.to_string(),
        }
        .into();
    }
    let Error::Bulk {
        first, end, source, ..
    } = e
    else {
        return e.into();
    };
    let doing = format!("creating provision requests {first}..{end}");
    match describe_answer(&source) {
        Some((status, text)) => anyhow!("{doing}: {} answered {status}: {text}", api.base_url()),
        None => anyhow::Error::new(*source).context(doing),
    }
}

/// An error answer (problem document or any body) as `(status, one line)`; `None` for other
/// errors.
fn describe_answer(e: &Error) -> Option<(u16, String)> {
    const SHOWN: usize = 5;
    match e {
        Error::Problem { status, problem } => {
            let mut out = problem.title.clone();
            if !problem.detail.is_empty() {
                out.push_str(": ");
                out.push_str(&problem.detail);
            }
            for e in problem.errors.iter().take(SHOWN) {
                match e.index {
                    Some(i) => out.push_str(&format!("; [{i}] {}: {}", e.field, e.message)),
                    None => out.push_str(&format!("; {}: {}", e.field, e.message)),
                }
            }
            if problem.errors.len() > SHOWN {
                out.push_str(&format!("; ... {} more", problem.errors.len() - SHOWN));
            }
            Some((*status, out))
        }
        Error::Status { status, body } => Some((*status, body.chars().take(300).collect())),
        _ => None,
    }
}

/// Scrapes metrics for the report: the `fleetgate_*` samples, or on any error a warning on
/// stderr and an empty map (the run does not fail because `/metrics` is unreachable).
pub fn metrics_or_empty(base: Option<&str>, when: &str) -> BTreeMap<String, f64> {
    let Some(base) = base else {
        return BTreeMap::new();
    };
    let client = Client::new(base, None).with_timeouts(None, Some(Duration::from_secs(10)));
    match client.metrics("fleetgate_") {
        Ok(m) => m,
        Err(e) => {
            eprintln!(
                "warning: no server metrics {when} the run: {:#}",
                anyhow::Error::new(e)
            );
            BTreeMap::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_documents() {
        let body = r#"{"type":"about:blank","title":"Unprocessable","status":422,
            "detail":"2 invalid requests","errors":[{"index":3,"field":"clientId","message":"taken"}]}"#;
        let problem = Error::Problem {
            status: 422,
            problem: serde_json::from_str(body).unwrap(),
        };
        assert_eq!(
            describe_answer(&problem).unwrap().1,
            "Unprocessable: 2 invalid requests; [3] clientId: taken"
        );
        let text = Error::Status {
            status: 500,
            body: "plain text".into(),
        };
        assert_eq!(describe_answer(&text).unwrap().1, "plain text");
    }

    #[test]
    fn request_json_shape() {
        let r = ProvisionRequestInput {
            client_id: Some("lt-1-a-0".into()),
            provision_username: Some("lt-shared-a".into()),
            broker_url: Some("mqtt://127.0.0.1:1884".into()),
            expires_on: Some("2030-01-01T00:00:00Z".into()),
            ..ProvisionRequestInput::default()
        }
        .with_password("pw");
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
        let v = serde_json::to_value(ProvisionRequestInput {
            generate_activation_key: Some(true),
            ..r
        })
        .unwrap();
        assert_eq!(v["generateActivationKey"], true);
    }

    #[test]
    fn unreachable_api_is_classified() {
        // Port 1 on loopback: nothing listens there.
        let api = admin("http://127.0.0.1:1", "t");
        let err = bulk_create(&api, "acme", &[], 10).unwrap();
        assert!(err.is_empty());
        let req = ProvisionRequestInput {
            client_id: Some("c".into()),
            provision_username: Some("u".into()),
            broker_url: Some("mqtt://127.0.0.1:1884".into()),
            expires_on: Some("2030-01-01T00:00:00Z".into()),
            ..ProvisionRequestInput::default()
        }
        .with_password("p");
        let err = bulk_create(&api, "acme", &[req], 10).unwrap_err();
        assert!(err.downcast_ref::<Unreachable>().is_some(), "{err:#}");
    }
}
