//! The wire shapes of the admin API (API.md) as the client uses them: the JSON shapes shared
//! with the server ([`fleetgate_wire`], re-exported here), plus what only a client needs: the
//! query string of the request listing, a generic list for callers that print lists, and
//! percent-encoding.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

pub use fleetgate_wire::{
    Account, AccountList, Birth, BulkCreated, CommandResult, ConnectionStatus, Coupling, Device,
    DevicePage, DeviceStatus, Endpoint, EndpointList, Execution, ExecutionList, FieldError, Health,
    Job, JobExecution, JobExecutionList, JobList, JobStatus, LogLevel, LogLine, Move, NewAccount,
    NewDevice, NewUser, Outcome, Problem, ProvisionRequest, ProvisionRequestInput, Rejection,
    RequestPage, RequestStatus, Secret, TargetCounts, TargetInstance, TokenCreated, User,
    UserCreated, UserKind, UserList, UserPatch,
};

/// A list in the API's `{"items": [...]}` form, of any record: for callers that print lists
/// (the CLI's `--json`); the API's own lists are the named shapes ([`AccountList`], ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Items<T> {
    /// The listed records, in the server's order.
    pub items: Vec<T>,
}

/// Filters and paging of `GET .../provision-requests`. `status` is sent as given: the server
/// validates it (and names the field when it is wrong).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestQuery {
    /// Only this status (`CREATED`, `RUNNING`, `COMPLETED`, `FAILED`).
    pub status: Option<String>,
    /// Only this client ID.
    pub client_id: Option<String>,
    /// Page size (server default 100, at most 1000).
    pub limit: Option<usize>,
    /// Cursor: the `next` of the previous page.
    pub after: Option<String>,
}

impl RequestQuery {
    /// The query string, `?`-prefixed (empty when nothing is set).
    pub fn to_query_string(&self) -> String {
        let mut q = String::new();
        let mut add = |k: &str, v: &str| {
            q.push(if q.is_empty() { '?' } else { '&' });
            let _ = write!(q, "{k}={}", encode(v));
        };
        if let Some(l) = self.limit {
            add("limit", &l.to_string());
        }
        if let Some(s) = &self.status {
            add("status", s);
        }
        if let Some(c) = &self.client_id {
            add("clientId", c);
        }
        if let Some(a) = &self.after {
            add("after", a);
        }
        q
    }
}

/// Filters and paging of `GET .../devices`. `connection` is sent as given: the server
/// validates it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceQuery {
    /// Only this connection state (`NEVER_CONNECTED`, `CONNECTED`, `DISCONNECTED`).
    pub connection: Option<String>,
    /// Page size (server default 100, at most 1000).
    pub limit: Option<usize>,
    /// Cursor: the `next` of the previous page.
    pub after: Option<String>,
}

impl DeviceQuery {
    /// The query string, `?`-prefixed (empty when nothing is set).
    pub fn to_query_string(&self) -> String {
        let mut q = String::new();
        let mut add = |k: &str, v: &str| {
            q.push(if q.is_empty() { '?' } else { '&' });
            let _ = write!(q, "{k}={}", encode(v));
        };
        if let Some(l) = self.limit {
            add("limit", &l.to_string());
        }
        if let Some(c) = &self.connection {
            add("connection", c);
        }
        if let Some(a) = &self.after {
            add("after", a);
        }
        q
    }
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved characters pass).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded() {
        assert_eq!(encode("a:b@c d/é"), "a%3Ab%40c%20d%2F%C3%A9");
        assert_eq!(RequestQuery::default().to_query_string(), "");
        let q = RequestQuery {
            status: Some("CREATED".into()),
            client_id: Some("a b".into()),
            limit: Some(10),
            after: Some("c/d".into()),
        };
        assert_eq!(
            q.to_query_string(),
            "?limit=10&status=CREATED&clientId=a%20b&after=c%2Fd"
        );
        let d = DeviceQuery {
            connection: Some("CONNECTED".into()),
            limit: Some(5),
            after: Some("a:b".into()),
        };
        assert_eq!(
            d.to_query_string(),
            "?limit=5&connection=CONNECTED&after=a%3Ab"
        );
        assert_eq!(DeviceQuery::default().to_query_string(), "");
    }
}

/// `POST .../devices/{clientId}/commands` body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceCommand {
    /// The command.
    pub command: String,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<String>,
    /// Seconds it may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
}
