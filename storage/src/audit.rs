//! The audit log of the admin API (API.md "Audit"): one entry per mutation or device
//! operation, append-only, in its own table keyed by time and sequence, bounded by a retention
//! count the writer enforces.
//!
//! Keys are 24 hex digits: microseconds since the epoch (16) and a sequence within that
//! microsecond (8). They are chosen inside the write, from the last key committed, so they grow
//! in commit order even when the clock steps back: a reader paging with `after` never misses
//! an entry committed after it read. The key is also the listing's cursor.
//!
//! An entry never holds a secret: the API records who, from where, what and the outcome, never
//! a body, a query string nor a header.

use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::engine::decode;
use crate::engine::{Table, Tx, key, last_part};
use crate::read::{Page, Reader};
use crate::records::Timestamp;

/// Most entries pruned by one append: pruning keeps pace with appends, and a lowered
/// retention shrinks the log over the next appends rather than in one long write.
const PRUNE_PER_APPEND: usize = 16;

/// One audited API call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// When the answer was given.
    pub at: Timestamp,
    /// `admin`, `token:ID`, or `unauthenticated` (a refused caller).
    pub actor: String,
    /// The caller's address.
    pub peer: String,
    /// `RESOURCE[.SUB...].VERB`, derived from the route (see the API's audit module).
    pub action: String,
    /// The account acted in, if any.
    pub account: Option<String>,
    /// What was acted on within it (path parameters joined with `/`), if named.
    pub target: Option<String>,
    /// `ok` for a 2xx answer, else the HTTP status.
    pub outcome: String,
}

/// An entry with its key (the listing cursor).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyed {
    /// The entry's key.
    pub key: String,
    /// The entry.
    pub entry: AuditEntry,
}

/// (microseconds, sequence) of a key written by [`append`].
fn parse_key(k: &[u8]) -> Option<(u64, u32)> {
    let k = std::str::from_utf8(k).ok()?;
    if k.len() != 24 {
        return None;
    }
    Some((
        u64::from_str_radix(&k[..16], 16).ok()?,
        u32::from_str_radix(&k[16..], 16).ok()?,
    ))
}

/// The key after `last` for an entry made at `micros`.
fn next_key(last: Option<(u64, u32)>, micros: u64) -> String {
    let (m, seq) = match last {
        Some((lm, ls)) if lm >= micros => match ls.checked_add(1) {
            Some(s) => (lm, s),
            None => (lm + 1, 0),
        },
        _ => (micros, 0),
    };
    format!("{m:016x}{seq:08x}")
}

/// Appends `entry`, then drops the oldest entries beyond `retention`.
pub fn append(
    entry: AuditEntry,
    retention: u64,
) -> impl FnOnce(&mut Tx<'_, '_>) -> Result<(), StoreError> + Send + 'static {
    move |tx| {
        let micros = u64::try_from(entry.at.timestamp_micros()).unwrap_or(0);
        let last = tx.last_key(Table::Audit)?.and_then(|k| parse_key(&k));
        let k = next_key(last, micros);
        let over = (tx.len(Table::Audit)? + 1).saturating_sub(retention);
        let prune = usize::try_from(over)
            .unwrap_or(usize::MAX)
            .min(PRUNE_PER_APPEND);
        for old in tx.first_keys(Table::Audit, prune)? {
            if let Some(e) = tx.get::<AuditEntry>(Table::Audit, &old)?
                && let (Some(account), Ok(old_key)) = (e.account, std::str::from_utf8(&old))
            {
                tx.delete(Table::AuditByAccount, key(&[&account, old_key]));
            }
            tx.delete(Table::Audit, old);
        }
        if let Some(account) = &entry.account {
            tx.put_index(Table::AuditByAccount, key(&[account, &k]));
        }
        tx.put(Table::Audit, k.into_bytes(), &entry);
        Ok(())
    }
}

impl Reader {
    /// Audit entries oldest first, strictly after the cursor `after`, of `account` only when
    /// given; at most `limit`, with the next cursor when there are more.
    pub fn audit(
        &self,
        account: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Keyed>, StoreError> {
        let (table, prefix) = match account {
            Some(a) => (Table::AuditByAccount, key(&[a, ""])),
            None => (Table::Audit, Vec::new()),
        };
        let mut start = prefix.clone();
        if let Some(a) = after {
            start.extend_from_slice(a.as_bytes());
            // Strictly after the cursor: every key has the same length, so appending a byte
            // gives the least key above it.
            start.push(0);
        }
        let mut items = Vec::new();
        let mut more = false;
        self.snap.scan(table, &prefix, &start, |k, v| {
            if items.len() == limit {
                more = true;
                return Ok(false);
            }
            let entry_key = last_part(k).to_string();
            let entry = match account {
                Some(_) => match self
                    .snap
                    .get::<AuditEntry>(Table::Audit, entry_key.as_bytes())?
                {
                    Some(e) => e,
                    None => return Ok(true),
                },
                None => decode(v)?,
            };
            items.push(Keyed {
                key: entry_key,
                entry,
            });
            Ok(true)
        })?;
        let next = if more {
            items.last().map(|e| e.key.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_grow_even_when_the_clock_steps_back() {
        let a = next_key(None, 1_000);
        let b = next_key(parse_key(a.as_bytes()), 1_000);
        let c = next_key(parse_key(b.as_bytes()), 500);
        let d = next_key(parse_key(c.as_bytes()), 2_000);
        assert!(a < b && b < c && c < d, "{a} {b} {c} {d}");
        assert_eq!(parse_key(d.as_bytes()), Some((2_000, 0)));
        assert_eq!(parse_key(c.as_bytes()), Some((1_000, 2)));
        assert_eq!(
            next_key(Some((7, u32::MAX)), 7),
            format!("{:016x}{:08x}", 8, 0)
        );
    }
}
