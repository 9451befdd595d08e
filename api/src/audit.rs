//! `GET /api/v1/audit` (API.md "Audit"): the entries the guard ([`crate::guard`]) recorded,
//! oldest first, a page at a time. The admin token sees every entry (`account=` filters);
//! an account token sees its own account's only, and naming another account answers 404 as if
//! it did not exist.

use std::sync::Arc;

use fleetgate_storage::validate::valid_account_name;
use fleetgate_storage::{FieldError, Timestamp};
use ntex::web::types::State;
use ntex::web::{HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{Caller, authenticate};
use super::requests::{Paging, query_pairs};
use fleetgate_app::App;

/// One audited call.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditItem {
    /// When it was answered (RFC 3339 UTC).
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// `admin`, `token:ID`, or `unauthenticated` (refused with 401).
    pub actor: String,
    /// The caller's IP address.
    pub peer: String,
    /// `RESOURCE[.SUB...].VERB`, e.g. `provision-request.create`, `device.command.create`.
    pub action: String,
    /// The account acted in.
    pub account: Option<String>,
    /// What was acted on (path parameters joined with `/`, or the created id).
    pub target: Option<String>,
    /// `ok`, or the HTTP status of the refusal (`"404"`).
    pub outcome: String,
}

/// A page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Entries, oldest first.
    pub items: Vec<AuditItem>,
    /// Cursor of the next page (`after`), when there is one.
    pub next: Option<String>,
}

/// Whether `s` is an audit cursor (24 hex digits).
fn valid_cursor(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The listing's query: `account`, `after`, `limit`.
fn audit_query(pairs: Vec<(String, String)>) -> Result<(Option<String>, Paging), ApiError> {
    let mut account = None;
    let paging = Paging::parse(pairs, valid_cursor, |k, v| match k {
        "account" if valid_account_name(&v) => {
            account = Some(v);
            None
        }
        "account" => Some(FieldError::new("account", "must be an account name")),
        _ => None,
    })?;
    Ok((account, paging))
}

/// The audit log: every mutation and device operation through the API, oldest first.
#[utoipa::path(
    get, path = "/api/v1/audit", tag = "administration",
    params(
        ("account" = Option<String>, Query, description = "Only this account's entries (an account token: its own, the default)"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Page size, 1 to 1000 (default 100)"),
        ("after" = Option<String>, Query, description = "The `next` cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "One page, oldest first", body = AuditPage),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Another account than the token's", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad query parameter", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_audit(req: HttpRequest, app: State<Arc<App>>) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&req, &app)?;
    let (account, paging) = audit_query(query_pairs(&req)?)?;
    let account = match (&caller, account) {
        (Caller::Admin, a) => a,
        (Caller::Account(own), Some(a)) if a != *own => {
            return Err(ApiError::NotFound(format!("account {a:?}")));
        }
        (Caller::Account(own), _) => Some(own.clone()),
    };
    let page =
        app.store
            .read()?
            .audit(account.as_deref(), paging.after.as_deref(), paging.limit)?;
    let items = page
        .items
        .into_iter()
        .map(|k| AuditItem {
            at: k.entry.at,
            actor: k.entry.actor,
            peer: k.entry.peer,
            action: k.entry.action,
            account: k.entry.account,
            target: k.entry.target,
            outcome: k.entry.outcome,
        })
        .collect();
    Ok(HttpResponse::Ok().json(&AuditPage {
        items,
        next: page.next,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn query_rules() {
        let (account, paging) = audit_query(pairs(&[
            ("account", "acme"),
            ("after", "0000000000000001000000aa"),
        ]))
        .unwrap();
        assert_eq!(account.as_deref(), Some("acme"));
        assert_eq!(paging.after.as_deref(), Some("0000000000000001000000aa"));
        for (k, v) in [
            ("account", "Not An Account"),
            ("after", "zz"),
            ("limit", "0"),
        ] {
            let e = audit_query(pairs(&[(k, v)])).unwrap_err();
            assert_eq!(e.field_errors()[0].field, k, "{k}={v}");
        }
    }
}
