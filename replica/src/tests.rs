//! The replica applies snapshots and changes, refuses what does not continue it, survives a
//! broken feed, and answers the decisions exactly like the store does.

use fleetgate_auth_hook::credentials::fast_hash;
use fleetgate_auth_hook::operational::{self, Admitted, CouplingRule, DeviceDirectory, Step};
use fleetgate_auth_hook::{ConnectFacts, Protocol, Refusal};

use super::*;
use crate::wire::{AccountRecord, DeviceKey};

const PW: &str = "Gen3rated-Passw0rd!";

fn pos(epoch: u64, seq: u64) -> Position {
    Position { epoch, seq }
}

fn device_user(cid: &str, enabled: bool, hash: &str) -> Record {
    Record::DeviceUser(DeviceUserRecord {
        username: format!("{cid}@acme"),
        account: "acme".into(),
        password_hash: hash.into(),
        permissions: vec!["broker:connect".into()],
        reserved_for: Some(cid.into()),
        enabled,
    })
}

fn key(cid: &str) -> DeviceKey {
    DeviceKey {
        account: "acme".into(),
        client_id: cid.into(),
    }
}

fn connection(cid: &str, coupling: Coupling) -> Record {
    Record::DeviceConnection(ConnectionRecord {
        key: key(cid),
        coupling,
        reserved_user: Some(format!("{cid}@acme")),
    })
}

fn snapshot(epoch: u64, hash: &str) -> Page {
    Page::Snapshot(Snapshot {
        position: pos(epoch, 7),
        records: vec![
            Record::Account(AccountRecord {
                name: "acme".into(),
                default_coupling: Coupling::Strict,
            }),
            device_user("dev-1", true, hash),
            connection("dev-1", Coupling::Inherited),
            Record::Device(key("dev-1")),
        ],
    })
}

fn connect(r: &Replica, cid: &str, user: &str, pw: &str) -> Result<Step, Refusal> {
    operational::authenticate(
        r,
        &ConnectFacts {
            client_id: cid.into(),
            username: Some(user.into()),
            password: Some(pw.as_bytes().to_vec()),
            peer: ([127, 0, 0, 1], 1).into(),
            protocol: Protocol::V311,
        },
    )
}

#[test]
fn a_snapshot_then_changes_drive_the_same_decisions() {
    let hash = fast_hash(PW);
    let shared = SharedReplica::default();
    assert_eq!(shared.position(), None);
    assert_eq!(
        connect(&shared.read(), "dev-1", "dev-1@acme", PW),
        Err(Refusal::BadCredentials),
        "an empty replica knows nobody"
    );
    shared.apply(snapshot(1, &hash)).unwrap();
    assert_eq!(shared.position(), Some(pos(1, 7)));
    let Ok(Step::Admitted(Admitted::Device(s))) =
        connect(&shared.read(), "dev-1", "dev-1@acme", PW)
    else {
        panic!("dev-1 connects");
    };
    assert_eq!(s.account, "acme");
    assert_eq!(
        connect(&shared.read(), "dev-1", "dev-1@acme", "wrong"),
        Err(Refusal::BadCredentials)
    );
    // STRICT by the account's default: dev-1's user on another client ID is refused.
    assert_eq!(
        shared.read().coupling("acme", "dev-2"),
        Ok(Some(CouplingRule::Strict {
            reserved_user: None
        }))
    );
    assert!(shared.read().registered_device("acme", "dev-1").unwrap());

    // Disabled, and a new device with its registry entry.
    let revoked = shared
        .apply(Page::Changes(Changes {
            position: pos(1, 9),
            upserts: vec![
                device_user("dev-1", false, &hash),
                device_user("dev-2", true, &hash),
                connection("dev-2", Coupling::Loose),
            ],
            deletes: vec![],
        }))
        .unwrap();
    assert_eq!(
        revoked,
        vec!["dev-1@acme".to_string()],
        "disabled: its sessions end"
    );
    assert_eq!(
        operational::identify(&*shared.read(), "dev-1", "dev-1@acme"),
        Err(Refusal::NotAuthorized)
    );
    assert!(operational::identify(&*shared.read(), "dev-2", "dev-2@acme").is_ok());
    assert_eq!(shared.read().users(), 2);

    // Deleted: unknown again.
    let revoked = shared
        .apply(Page::Changes(Changes {
            position: pos(1, 10),
            upserts: vec![],
            deletes: vec![
                RecordKey::DeviceUser {
                    username: "dev-2@acme".into(),
                },
                RecordKey::Device(key("dev-1")),
                RecordKey::DeviceConnection(key("dev-2")),
                RecordKey::Account {
                    name: "acme".into(),
                },
            ],
        }))
        .unwrap();
    assert_eq!(
        revoked,
        vec!["dev-2@acme".to_string()],
        "deleted: its sessions end"
    );
    assert_eq!(
        operational::identify(&*shared.read(), "dev-2", "dev-2@acme"),
        Err(Refusal::BadCredentials)
    );
    assert!(!shared.read().registered_device("acme", "dev-1").unwrap());
    assert_eq!(shared.read().coupling("acme", "dev-1"), Ok(None));
}

#[test]
fn changes_of_another_epoch_are_refused_and_a_snapshot_replaces_everything() {
    let hash = fast_hash(PW);
    let shared = SharedReplica::default();
    let later = Changes {
        position: pos(2, 1),
        upserts: vec![device_user("dev-9", true, &hash)],
        deletes: vec![],
    };
    // Before any snapshot nothing continues.
    assert!(matches!(
        shared.apply(Page::Changes(later.clone())),
        Err(ReplicaError::Discontinuous { have: None, .. })
    ));
    shared.apply(snapshot(1, &hash)).unwrap();
    assert!(matches!(
        shared.apply(Page::Changes(later)),
        Err(ReplicaError::Discontinuous { .. })
    ));
    let back = Changes {
        position: pos(1, 3),
        upserts: vec![],
        deletes: vec![],
    };
    assert!(
        shared.apply(Page::Changes(back)).is_err(),
        "a page may not go back"
    );
    assert_eq!(shared.position(), Some(pos(1, 7)));
    assert!(shared.read().device_user("dev-9@acme").unwrap().is_none());

    // Fleetgate restarted (a new epoch): its snapshot replaces the replica, users and all.
    let Page::Snapshot(mut s) = snapshot(2, &hash) else {
        unreachable!()
    };
    s.records.retain(|r| !matches!(r, Record::DeviceUser(_)));
    assert_eq!(
        shared.apply(Page::Snapshot(s)).unwrap(),
        vec!["dev-1@acme".to_string()],
        "a user missing from a new snapshot is revoked"
    );
    assert_eq!(shared.position(), Some(pos(2, 7)));
    assert_eq!(shared.read().users(), 0);
}

#[test]
fn a_feed_that_breaks_mid_way_keeps_the_last_good_replica() {
    let hash = fast_hash(PW);
    let shared = SharedReplica::default();
    let good = serde_json::to_vec(&snapshot(1, &hash)).unwrap();
    shared.apply_json(&good).unwrap();
    let disabled = serde_json::to_vec(&Page::Changes(Changes {
        position: pos(1, 8),
        upserts: vec![device_user("dev-1", false, &hash)],
        deletes: vec![],
    }))
    .unwrap();
    for cut in [0, 1, disabled.len() / 2, disabled.len() - 1] {
        assert!(matches!(
            shared.apply_json(&disabled[..cut]),
            Err(ReplicaError::Malformed(_))
        ));
        assert_eq!(shared.position(), Some(pos(1, 7)));
        assert!(operational::identify(&*shared.read(), "dev-1", "dev-1@acme").is_ok());
    }
    let snap_cut = &good[..good.len() - 10];
    assert!(shared.apply_json(snap_cut).is_err());
    shared.apply_json(&disabled).unwrap();
    assert_eq!(
        operational::identify(&*shared.read(), "dev-1", "dev-1@acme"),
        Err(Refusal::NotAuthorized)
    );
}

#[test]
fn the_wire_format_is_stable_and_debug_hides_hashes() {
    let hash = fast_hash(PW);
    let page = Page::Changes(Changes {
        position: pos(5, 6),
        upserts: vec![connection("dev-1", Coupling::Strict)],
        deletes: vec![RecordKey::Device(key("dev-1"))],
    });
    let json = serde_json::to_value(&page).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "type": "changes",
            "position": {"epoch": 5, "seq": 6},
            "upserts": [{"kind": "deviceConnection", "account": "acme", "clientId": "dev-1",
                         "coupling": "STRICT", "reservedUser": "dev-1@acme"}],
            "deletes": [{"kind": "device", "account": "acme", "clientId": "dev-1"}],
        })
    );
    assert_eq!(serde_json::from_value::<Page>(json).unwrap(), page);
    let user = device_user("dev-1", true, &hash);
    assert!(!format!("{user:?}").contains(&hash));
    let shared = SharedReplica::default();
    shared.apply(snapshot(1, &hash)).unwrap();
    assert!(!format!("{shared:?}").contains(&hash));
}
