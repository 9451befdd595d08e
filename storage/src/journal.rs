//! The change journal: which records the connect and topic decisions read changed, in commit
//! order, so that a replica (the Mosquitto plugin's, HOOKS.md 3) can follow the store with
//! "key K of kind X changed" instead of re-reading everything.
//!
//! It is in memory and bounded: a ring of the last [`CAPACITY`] changed keys, numbered by a
//! sequence that starts at 0 with each process, under a random epoch drawn at open. A follower
//! whose position fell out of the ring, or that followed another process (another epoch), is
//! told to take a full snapshot instead ([`Journal::since`] answers `None`). Nothing is written
//! to disk: after a restart every follower re-reads a snapshot, which is also what makes the
//! journal safe to lose.
//!
//! The writer thread records each committed batch with one short lock ([`Journal::record`]);
//! the values are not kept, only the keys: a follower reads their current state from a snapshot
//! taken after it read the journal, so it never sees a state older than the sequence it is told.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;
use std::sync::PoisonError;

use rand::RngCore;

use crate::engine::Table;

/// How many changed keys the journal keeps.
pub const CAPACITY: usize = 65_536;

/// The kind of a record the decisions read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// A device user, keyed by username.
    DeviceUser,
    /// An account user, keyed by username.
    AccountUser,
    /// An account (its default coupling and existence), keyed by name.
    Account,
    /// A device connection (coupling, reserved user), keyed by account and client ID.
    DeviceConnection,
    /// A registry entry's existence, keyed by account and client ID.
    Device,
}

impl ChangeKind {
    /// The journal's kind of a table, for the tables the decisions read.
    pub(crate) fn of(table: Table) -> Option<ChangeKind> {
        match table {
            Table::DeviceUsers => Some(ChangeKind::DeviceUser),
            Table::AccountUsers => Some(ChangeKind::AccountUser),
            Table::Accounts => Some(ChangeKind::Account),
            Table::DeviceConnections => Some(ChangeKind::DeviceConnection),
            Table::Devices => Some(ChangeKind::Device),
            _ => None,
        }
    }
}

/// A changed key: its kind and its parts (one for users and accounts; account and client ID
/// for connections and registry entries).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangedKey {
    /// What kind of record changed.
    pub kind: ChangeKind,
    /// The record's key, as the engine stores it (parts joined by a 0 byte).
    raw: Vec<u8>,
}

impl ChangedKey {
    /// A changed key of `kind` made of `parts`.
    pub fn new(kind: ChangeKind, parts: &[&str]) -> Self {
        ChangedKey {
            kind,
            raw: crate::engine::key(parts),
        }
    }

    pub(crate) fn from_raw(kind: ChangeKind, raw: Vec<u8>) -> Self {
        ChangedKey { kind, raw }
    }

    /// The key's parts: `[username]`, `[account name]` or `[account, client ID]`.
    pub fn parts(&self) -> Vec<&str> {
        self.raw
            .split(|b| *b == 0)
            .map(|p| std::str::from_utf8(p).unwrap_or(""))
            .collect()
    }
}

/// The changes after a position: the position they reach and the distinct keys, in key order.
#[derive(Debug, PartialEq, Eq)]
pub struct Changes {
    /// The sequence number of the last change included.
    pub seq: u64,
    /// The keys that changed after the asked position, each once.
    pub keys: Vec<ChangedKey>,
}

struct Ring {
    /// The last changed keys; the newest has sequence `head`.
    entries: VecDeque<ChangedKey>,
    head: u64,
}

/// The journal of one open store.
pub struct Journal {
    epoch: u64,
    ring: Mutex<Ring>,
    head: tokio::sync::watch::Sender<u64>,
}

impl Default for Journal {
    fn default() -> Self {
        Journal {
            epoch: rand::rng().next_u64(),
            ring: Mutex::new(Ring {
                entries: VecDeque::with_capacity(1024),
                head: 0,
            }),
            head: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("epoch", &self.epoch)
            .field("head", &self.head())
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// This process's epoch: a follower of another epoch must take a snapshot.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The sequence number of the newest change (0: none yet).
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// A receiver that sees [`Journal::head`] move (long polls wait on it).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// The distinct keys changed after `seq`, at most `limit` changes' worth; `None` when `seq`
    /// cannot be continued (it fell out of the ring, or is ahead of this process's head).
    pub fn since(&self, seq: u64, limit: usize) -> Option<Changes> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = ring.head - ring.entries.len() as u64;
        if seq < oldest || seq > ring.head {
            return None;
        }
        let skip = usize::try_from(seq - oldest).ok()?;
        let take = limit.max(1);
        let keys: BTreeSet<ChangedKey> =
            ring.entries.iter().skip(skip).take(take).cloned().collect();
        let reached = seq + (ring.entries.len() - skip).min(take) as u64;
        Some(Changes {
            seq: reached,
            keys: keys.into_iter().collect(),
        })
    }

    /// Records the keys of one committed batch, in commit order, and wakes the waiters.
    pub(crate) fn record(&self, keys: Vec<ChangedKey>) {
        if keys.is_empty() {
            return;
        }
        let head = {
            let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
            for k in keys {
                if ring.entries.len() == CAPACITY {
                    ring.entries.pop_front();
                }
                ring.entries.push_back(k);
                ring.head += 1;
            }
            ring.head
        };
        self.head.send_replace(head);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> ChangedKey {
        ChangedKey::new(ChangeKind::DeviceUser, &[name])
    }

    #[test]
    fn changes_are_numbered_in_commit_order_and_deduplicated() {
        let j = Journal::default();
        assert_eq!(j.head(), 0);
        assert_eq!(
            j.since(0, 10),
            Some(Changes {
                seq: 0,
                keys: vec![]
            })
        );
        j.record(vec![user("a"), user("b")]);
        j.record(vec![user("a")]);
        assert_eq!(j.head(), 3);
        let all = j.since(0, 100).unwrap();
        assert_eq!(all.seq, 3);
        assert_eq!(all.keys, vec![user("a"), user("b")]);
        let last = j.since(2, 100).unwrap();
        assert_eq!((last.seq, last.keys), (3, vec![user("a")]));
        // A limit cuts the page at a position the follower continues from.
        let first = j.since(0, 1).unwrap();
        assert_eq!((first.seq, first.keys), (1, vec![user("a")]));
        // Ahead of this process (another process's position): a snapshot is needed.
        assert_eq!(j.since(4, 10), None);
    }

    #[test]
    fn a_position_out_of_the_ring_needs_a_snapshot() {
        let j = Journal::default();
        j.record((0..CAPACITY + 10).map(|i| user(&i.to_string())).collect());
        assert_eq!(j.head(), (CAPACITY + 10) as u64);
        assert_eq!(j.since(9, 10), None);
        let tail = j.since(10, usize::MAX).unwrap();
        assert_eq!(tail.seq, j.head());
        assert_eq!(tail.keys.len(), CAPACITY);
    }

    #[test]
    fn epochs_differ_and_keys_split() {
        assert_ne!(Journal::default().epoch(), Journal::default().epoch());
        let k = ChangedKey::new(ChangeKind::Device, &["acme", "dev-1"]);
        assert_eq!(k.parts(), vec!["acme", "dev-1"]);
        let j = Journal::default();
        let w = j.watch();
        assert!(!w.has_changed().unwrap());
        j.record(vec![]);
        assert!(!w.has_changed().unwrap(), "an empty batch wakes nobody");
        j.record(vec![k]);
        assert!(w.has_changed().unwrap());
    }
}
