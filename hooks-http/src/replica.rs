//! `GET /hooks/replica?epoch=E&seq=N[&wait=S]`: the replica feed that the native Mosquitto
//! plugin follows (HOOKS.md 3). It answers, as `fleetgate_replica::wire::Page` JSON:
//! - the changes after `(E, N)` when the store's journal can continue that position: each
//!   changed key once, read from a snapshot taken after the journal, so with its current state
//!   (an upsert) or as gone (a delete);
//! - nothing new yet: it waits up to `wait` seconds (at most 20, the default) for a commit and
//!   answers an empty changes page if none came, so changes reach a follower within a
//!   round trip;
//! - a full snapshot otherwise (no position, another epoch: Fleetgate restarted, or a
//!   position that fell out of the journal).
//!
//! Pages are built and serialised on a blocking thread: a snapshot of 100,000 users takes a
//! while and must not stall the listener's event loop. Password hashes are in the pages: the
//! route is behind `hooks.token` like every hook route.

use std::time::Duration;

use fleetgate_replica::wire::{
    self, AccountRecord, AccountUserRecord, Changes, ConnectionRecord, DeviceKey, DeviceUserRecord,
    Page, Position, Record, RecordKey, Snapshot,
};
use fleetgate_storage::journal::{ChangeKind, ChangedKey};
use fleetgate_storage::{Coupling, Reader, Store, StoreError};
use ntex::util::Bytes;
use ntex::web::types::Query;
use ntex::web::{HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::{HookDoor, HookError};

/// Most journal entries one changes page covers; a follower further behind takes several.
const CHANGES_PER_PAGE: usize = 10_000;

#[derive(Deserialize)]
struct FeedQuery {
    epoch: Option<u64>,
    seq: Option<u64>,
    wait: Option<u64>,
}

/// Serves one page of the feed.
pub(crate) async fn feed(
    door: &HookDoor,
    req: &HttpRequest,
    _: &Bytes,
) -> Result<HttpResponse, HookError> {
    let q = Query::<FeedQuery>::from_query(req.query_string())
        .map_err(|e| HookError::Malformed(format!("invalid feed query: {e}")))?
        .into_inner();
    let store = door.app.store.clone();
    let journal = store.journal();
    let from = match (q.epoch, q.seq) {
        (Some(epoch), Some(seq)) if epoch == journal.epoch() => Some(seq),
        _ => None,
    };
    if let Some(seq) = from {
        // Subscribed before looking at the head, so a commit in between is not missed.
        let mut head = journal.watch();
        if *head.borrow_and_update() == seq {
            let wait = q
                .wait
                .unwrap_or(wire::MAX_WAIT_SECS)
                .min(wire::MAX_WAIT_SECS);
            let _ = ntex::time::timeout(Duration::from_secs(wait), head.changed()).await;
        }
    }
    let built = ntex::rt::spawn_blocking(move || page(&store, from)).await;
    match built {
        Ok(Ok(body)) => Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(body)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "replica feed: store read failed");
            Ok(HttpResponse::ServiceUnavailable().finish())
        }
        Err(e) => {
            tracing::error!(error = %e, "replica feed: page builder failed");
            Ok(HttpResponse::ServiceUnavailable().finish())
        }
    }
}

/// The page after `from` (changes when the journal continues it, else a snapshot), as JSON.
fn page(store: &Store, from: Option<u64>) -> Result<Vec<u8>, StoreError> {
    let journal = store.journal();
    let epoch = journal.epoch();
    let page = match from.and_then(|seq| journal.since(seq, CHANGES_PER_PAGE)) {
        Some(changes) => {
            // The snapshot is taken after the journal was read: it holds at least every change
            // up to `changes.seq` (the writer journals after committing).
            let read = store.read()?;
            let mut upserts = Vec::new();
            let mut deletes = Vec::new();
            for key in &changes.keys {
                match current(&read, key)? {
                    Ok(record) => upserts.push(record),
                    Err(gone) => deletes.push(gone),
                }
            }
            Page::Changes(Changes {
                position: Position {
                    epoch,
                    seq: changes.seq,
                },
                upserts,
                deletes,
            })
        }
        None => {
            // The head first, then the snapshot: the snapshot is at least as new as the head,
            // and a change after it is sent again, which is harmless (upserts are idempotent).
            let seq = journal.head();
            Page::Snapshot(Snapshot {
                position: Position { epoch, seq },
                records: everything(&store.read()?)?,
            })
        }
    };
    Ok(serde_json::to_vec(&page).expect("feed pages serialise"))
}

/// Every record the decisions read.
fn everything(read: &Reader) -> Result<Vec<Record>, StoreError> {
    let mut records = Vec::new();
    records.extend(read.accounts()?.into_iter().map(account));
    records.extend(read.all_device_users()?.into_iter().map(device_user));
    records.extend(read.all_account_users()?.into_iter().map(account_user));
    records.extend(read.all_device_connections()?.into_iter().map(connection));
    records.extend(
        read.all_device_keys()?
            .into_iter()
            .map(|(account, client_id)| Record::Device(DeviceKey { account, client_id })),
    );
    Ok(records)
}

/// The current record of a changed key, or the key of a deleted one.
fn current(read: &Reader, key: &ChangedKey) -> Result<Result<Record, RecordKey>, StoreError> {
    let parts = key.parts();
    let one = parts.first().copied().unwrap_or_default();
    let device_key = || DeviceKey {
        account: one.to_string(),
        client_id: parts.get(1).copied().unwrap_or_default().to_string(),
    };
    Ok(match key.kind {
        ChangeKind::DeviceUser => {
            read.device_user(one)?
                .map(device_user)
                .ok_or_else(|| RecordKey::DeviceUser {
                    username: one.to_string(),
                })
        }
        ChangeKind::AccountUser => {
            read.account_user(one)?
                .map(account_user)
                .ok_or_else(|| RecordKey::AccountUser {
                    username: one.to_string(),
                })
        }
        ChangeKind::Account => read
            .account(one)?
            .map(account)
            .ok_or_else(|| RecordKey::Account {
                name: one.to_string(),
            }),
        ChangeKind::DeviceConnection => {
            let k = device_key();
            read.device_connection(&k.account, &k.client_id)?
                .map(connection)
                .ok_or(RecordKey::DeviceConnection(k))
        }
        ChangeKind::Device => {
            let k = device_key();
            match read.device(&k.account, &k.client_id)? {
                Some(_) => Ok(Record::Device(k)),
                None => Err(RecordKey::Device(k)),
            }
        }
    })
}

fn coupling(c: Coupling) -> wire::Coupling {
    match c {
        Coupling::Inherited => wire::Coupling::Inherited,
        Coupling::Loose => wire::Coupling::Loose,
        Coupling::Strict => wire::Coupling::Strict,
    }
}

fn account(a: fleetgate_storage::Account) -> Record {
    Record::Account(AccountRecord {
        name: a.name,
        default_coupling: coupling(a.default_coupling),
    })
}

fn device_user(u: fleetgate_storage::DeviceUser) -> Record {
    Record::DeviceUser(DeviceUserRecord {
        username: u.username,
        account: u.account,
        password_hash: u.password_hash,
        permissions: u.permissions,
        reserved_for: u.reserved_for,
        enabled: u.enabled,
    })
}

fn account_user(u: fleetgate_storage::AccountUser) -> Record {
    Record::AccountUser(AccountUserRecord {
        username: u.username,
        account: u.account,
        password_hash: u.password_hash,
        permissions: u.permissions,
        enabled: u.enabled,
    })
}

fn connection(c: fleetgate_storage::DeviceConnection) -> Record {
    Record::DeviceConnection(ConnectionRecord {
        key: DeviceKey {
            account: c.account,
            client_id: c.client_id,
        },
        coupling: coupling(c.coupling),
        reserved_user: c.reserved_user,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use chrono::Utc;
    use fleetgate_replica::Replica;
    use fleetgate_storage::engine::Table;
    use fleetgate_storage::{AccountInput, DB_FILE, DeviceInput, StoreOptions, ops};

    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            durable: false,
            ..StoreOptions::default()
        };
        let store = Store::open(&dir.path().join(DB_FILE), &options, None).unwrap();
        (dir, store)
    }

    fn parse(body: &[u8]) -> Page {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn pages_follow_the_journal_with_upserts_and_deletes() {
        let (_dir, store) = store();
        let epoch = store.journal().epoch();
        let Page::Snapshot(empty) = parse(&page(&store, None).unwrap()) else {
            panic!("no position: a snapshot");
        };
        assert_eq!(empty.position, Position { epoch, seq: 0 });
        store
            .write(ops::create_account(
                AccountInput::named("acme").validate().unwrap(),
                Utc::now(),
            ))
            .unwrap();
        let device = DeviceInput {
            client_id: Some("dev-1".into()),
            display_name: None,
        };
        store
            .write(ops::create_device(
                "acme".into(),
                device.validate().unwrap(),
            ))
            .unwrap();
        let Page::Changes(created) = parse(&page(&store, Some(0)).unwrap()) else {
            panic!("a position of this epoch: changes");
        };
        assert_eq!(created.position.seq, store.journal().head());
        assert!(created.deletes.is_empty());
        let key = DeviceKey {
            account: "acme".into(),
            client_id: "dev-1".into(),
        };
        assert!(created.upserts.contains(&Record::Device(key.clone())));
        assert!(
            created
                .upserts
                .iter()
                .any(|r| matches!(r, Record::Account(a) if a.name == "acme"))
        );

        let seq = created.position.seq;
        store
            .write(ops::delete_device("acme".into(), "dev-1".into(), false))
            .unwrap();
        let Page::Changes(deleted) = parse(&page(&store, Some(seq)).unwrap()) else {
            panic!("changes");
        };
        assert_eq!(deleted.deletes, vec![RecordKey::Device(key)]);
        assert!(deleted.upserts.is_empty());

        // Ahead of the journal (another process's position): a snapshot.
        assert!(matches!(
            parse(&page(&store, Some(seq + 100)).unwrap()),
            Page::Snapshot(_)
        ));
    }

    #[test]
    fn a_snapshot_of_100_000_users_is_built_and_replicated() {
        const USERS: usize = 100_000;
        let (_dir, store) = store();
        for chunk in 0..USERS / 10_000 {
            store
                .write(move |tx| {
                    for i in chunk * 10_000..(chunk + 1) * 10_000 {
                        let user = fleetgate_storage::DeviceUser {
                            username: format!("dev-{i}@acme"),
                            account: "acme".into(),
                            password_hash: "hs256$c2FsdA$bWFj".into(),
                            permissions: vec!["broker:connect".into()],
                            reserved_for: Some(format!("dev-{i}")),
                            enabled: true,
                            created_on: Utc::now(),
                            modified_on: Utc::now(),
                        };
                        tx.put(Table::DeviceUsers, user.username.as_bytes().to_vec(), &user);
                    }
                    Ok(())
                })
                .unwrap();
        }
        let started = Instant::now();
        let body = page(&store, None).unwrap();
        let built = started.elapsed();
        let replica = match parse(&body) {
            Page::Snapshot(s) => Replica::from_snapshot(s),
            Page::Changes(_) => panic!("a snapshot"),
        };
        assert_eq!(replica.users(), USERS);
        eprintln!(
            "snapshot of {USERS} users: {} MB of JSON built in {built:?}",
            body.len() / 1_000_000
        );
    }
}
