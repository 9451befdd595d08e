//! The change journal through the store's public API: committed writes to what the decisions
//! read are journaled in commit order; failed writes and registry bookkeeping are not.

use chrono::Utc;
use fleetgate_storage::journal::{ChangeKind, ChangedKey};
use fleetgate_storage::ops::{self, ConnectedSession, NewAccountUser};
use fleetgate_storage::*;

fn setup() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(DB_FILE), &StoreOptions::default(), None).unwrap();
    (dir, store)
}

fn changes_since(store: &Store, seq: u64) -> Vec<ChangedKey> {
    store.journal().since(seq, usize::MAX).unwrap().keys
}

#[test]
fn committed_decision_records_are_journaled_and_bookkeeping_is_not() {
    let (_dir, store) = setup();
    let j = store.journal();
    assert_eq!(j.head(), 0);
    store
        .write(ops::create_account(
            AccountInput::named("acme").validate().unwrap(),
            Utc::now(),
        ))
        .unwrap();
    assert_eq!(
        changes_since(&store, 0),
        vec![ChangedKey::new(ChangeKind::Account, &["acme"])]
    );
    let after_account = j.head();

    let user = NewAccountUser {
        name: "dash".into(),
        password_hash: "$argon2id$stub".into(),
        permissions: vec!["broker:connect".into()],
    };
    store
        .write(ops::create_account_user("acme".into(), user, Utc::now()))
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
    assert_eq!(
        changes_since(&store, after_account),
        vec![
            ChangedKey::new(ChangeKind::AccountUser, &["dash@acme"]),
            ChangedKey::new(ChangeKind::Device, &["acme", "dev-1"]),
        ]
    );

    // A refused write leaves nothing behind, in the store or the journal.
    let head = j.head();
    let again = NewAccountUser {
        name: "dash".into(),
        password_hash: "$argon2id$stub".into(),
        permissions: vec![],
    };
    assert!(
        store
            .write(ops::create_account_user("acme".into(), again, Utc::now()))
            .is_err()
    );
    assert_eq!(j.head(), head);

    // A connect changes the connection entry (journaled) and not the registry entry's
    // existence (not journaled).
    let mut watch = j.watch();
    store
        .write(ops::record_connected(
            ConnectedSession {
                account: "acme".into(),
                client_id: "dev-1".into(),
                username: "dev-1@acme".into(),
                peer: None,
                protocol: None,
            },
            Utc::now(),
        ))
        .unwrap();
    assert!(watch.has_changed().unwrap());
    assert_eq!(*watch.borrow_and_update(), j.head());
    assert_eq!(
        changes_since(&store, head),
        vec![ChangedKey::new(
            ChangeKind::DeviceConnection,
            &["acme", "dev-1"]
        )]
    );
    let keys = changes_since(&store, head);
    assert_eq!(keys[0].parts(), vec!["acme", "dev-1"]);

    // Later connects and disconnects change only the entry's status and times: not journaled
    // (the replicas of every Mosquitto would otherwise follow every connect of the fleet).
    let head = j.head();
    store
        .write(ops::set_connection_status(
            "acme".into(),
            "dev-1".into(),
            ConnectionStatus::Disconnected,
            Utc::now(),
        ))
        .unwrap();
    store
        .write(ops::record_authenticated(
            "acme".into(),
            "dev-1".into(),
            Utc::now(),
        ))
        .unwrap();
    assert_eq!(j.head(), head);
}
