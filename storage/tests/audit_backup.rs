//! The audit table (append, retention, paging per account), lazy writes (they ride the next
//! commit, and a close flushes them) and backups (a snapshot restored elsewhere; refusals).

use chrono::Utc;
use fleetgate_storage::audit::{self, AuditEntry};
use fleetgate_storage::backup::{self, BackupError};
use fleetgate_storage::*;

fn open(path: &std::path::Path) -> Store {
    Store::open(path, &StoreOptions::default(), None).unwrap()
}

fn entry(account: Option<&str>, target: &str) -> AuditEntry {
    AuditEntry {
        at: Utc::now(),
        actor: "admin".into(),
        peer: "127.0.0.1".into(),
        action: "provision-request.create".into(),
        account: account.map(Into::into),
        target: Some(target.into()),
        outcome: "ok".into(),
    }
}

fn targets(page: &read::Page<audit::Keyed>) -> Vec<String> {
    page.items
        .iter()
        .map(|k| k.entry.target.clone().unwrap())
        .collect()
}

#[test]
fn audit_entries_append_in_order_page_per_account_and_keep_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join(DB_FILE));
    for i in 0..8 {
        let account = if i % 2 == 0 { "acme" } else { "other" };
        store
            .write(audit::append(entry(Some(account), &format!("t{i}")), 6))
            .unwrap();
    }
    let read = store.read().unwrap();
    let all = read.audit(None, None, 100).unwrap();
    assert_eq!(targets(&all), ["t2", "t3", "t4", "t5", "t6", "t7"]);
    assert_eq!(all.next, None);
    // The pruned entries left the account index too.
    let acme = read.audit(Some("acme"), None, 100).unwrap();
    assert_eq!(targets(&acme), ["t2", "t4", "t6"]);
    // Paging.
    let first = read.audit(Some("acme"), None, 2).unwrap();
    assert_eq!(targets(&first), ["t2", "t4"]);
    let rest = read.audit(Some("acme"), first.next.as_deref(), 2).unwrap();
    assert_eq!(targets(&rest), ["t6"]);
    assert_eq!(rest.next, None);
    assert!(
        read.audit(Some("nobody"), None, 10)
            .unwrap()
            .items
            .is_empty()
    );
}

#[test]
fn a_lazy_write_rides_the_next_commit_and_a_close_flushes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    let store = open(&path);
    store.write_lazy("test", audit::append(entry(None, "lazy-1"), 100));
    // It was queued first: the write after it commits it at the latest.
    store.write(|_| Ok(())).unwrap();
    let seen = store.read().unwrap().audit(None, None, 10).unwrap();
    assert_eq!(targets(&seen), ["lazy-1"]);
    store.write_lazy("test", audit::append(entry(None, "lazy-2"), 100));
    store.close();
    let store = open(&path);
    let seen = store.read().unwrap().audit(None, None, 10).unwrap();
    assert_eq!(targets(&seen), ["lazy-1", "lazy-2"]);
}

#[test]
fn a_backup_restores_the_snapshot_and_restore_refuses_what_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join(DB_FILE));
    store
        .write(ops::create_account(
            AccountInput::named("acme").validate().unwrap(),
            Utc::now(),
        ))
        .unwrap();
    store
        .write(audit::append(entry(Some("acme"), "before"), 10))
        .unwrap();
    let file = dir.path().join("backup.redb");
    store.backup_to(&file, Utc::now()).unwrap();
    // Written after the snapshot: not in it.
    store
        .write(audit::append(entry(Some("acme"), "after"), 10))
        .unwrap();
    // The target may not exist, or be empty.
    let target = dir.path().join("restored");
    let restored = backup::restore(&file, &target).unwrap();
    assert_eq!(restored.file, target.join(DB_FILE));
    let copy = open(&restored.file);
    let read = copy.read().unwrap();
    assert!(read.account("acme").unwrap().is_some());
    assert_eq!(targets(&read.audit(None, None, 10).unwrap()), ["before"]);
    drop(read);
    copy.close();
    // Refusals, each leaving the target as it was.
    assert!(matches!(
        backup::restore(&file, &target),
        Err(BackupError::NotEmpty(_))
    ));
    let elsewhere = dir.path().join("elsewhere");
    let not_redb = dir.path().join("not-redb");
    std::fs::write(&not_redb, b"hello").unwrap();
    assert!(matches!(
        backup::restore(&not_redb, &elsewhere),
        Err(BackupError::NotABackup(_))
    ));
    store.close();
    assert!(matches!(
        backup::restore(&dir.path().join(DB_FILE), &elsewhere),
        Err(BackupError::NoMarker)
    ));
    assert!(!elsewhere.exists());
}
