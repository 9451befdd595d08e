//! The door's decisions on a replica, without Mosquitto.

use fleetgate_auth_hook::credentials::{Argon2Params, fast_hash};
use fleetgate_replica::wire::{
    AccountRecord, AccountUserRecord, Changes, Coupling, DeviceKey, DeviceUserRecord, Page,
    Position, Record, Snapshot,
};

use super::*;

const PW: &str = "Gen3rated-Passw0rd!";
const APP_PW: &str = "a chosen passphrase";

fn device(cid: &str, enabled: bool) -> Record {
    Record::DeviceUser(DeviceUserRecord {
        username: format!("{cid}@acme"),
        account: "acme".into(),
        password_hash: fast_hash(PW),
        permissions: vec!["broker:connect".into()],
        reserved_for: None,
        enabled,
    })
}

fn plugin() -> (Plugin, Arc<SharedReplica>) {
    let replica = Arc::new(SharedReplica::default());
    let argon = Argon2Params::cheap_for_tests().hash(APP_PW).unwrap();
    replica
        .apply(Page::Snapshot(Snapshot {
            position: Position { epoch: 1, seq: 1 },
            records: vec![
                Record::Account(AccountRecord {
                    name: "acme".into(),
                    default_coupling: Coupling::Loose,
                }),
                device("dev-1", true),
                Record::Device(DeviceKey {
                    account: "acme".into(),
                    client_id: "dev-1".into(),
                }),
                Record::AccountUser(AccountUserRecord {
                    username: "dash@acme".into(),
                    account: "acme".into(),
                    password_hash: argon,
                    permissions: vec!["broker:connect".into(), "data:read".into()],
                    enabled: true,
                }),
            ],
        }))
        .unwrap();
    (Plugin::offline(replica.clone()), replica)
}

fn auth(p: &Plugin, cid: &str, user: Option<&str>, pw: Option<&str>) -> Result<(), Refusal> {
    p.basic_auth(1, cid, user, pw.map(str::as_bytes), Some("127.0.0.1"), 4)
}

#[test]
fn basic_auth_decides_devices_and_account_users() {
    let (p, _) = plugin();
    assert_eq!(auth(&p, "dev-1", Some("dev-1@acme"), Some(PW)), Ok(()));
    assert_eq!(
        auth(&p, "dev-1", Some("dev-1@acme"), Some("wrong")),
        Err(Refusal::BadCredentials)
    );
    assert_eq!(auth(&p, "dev-1", None, None), Err(Refusal::BadCredentials));
    assert_eq!(
        auth(&p, "dev-1", Some("nobody@acme"), Some(PW)),
        Err(Refusal::BadCredentials)
    );
    // argon2, then the cache: both answer the same.
    for _ in 0..2 {
        assert_eq!(auth(&p, "app-1", Some("dash@acme"), Some(APP_PW)), Ok(()));
    }
    assert_eq!(
        auth(&p, "app-1", Some("dash@acme"), Some("wrong")),
        Err(Refusal::BadCredentials)
    );
    // An application may not take a registry device's client ID.
    assert_eq!(
        auth(&p, "dev-1", Some("dash@acme"), Some(APP_PW)),
        Err(Refusal::NotAuthorized)
    );
    // Only the device's session is remembered, for its disconnect.
    assert_eq!(p.admitted.lock().len(), 1);
    p.disconnected(1);
    assert_eq!(p.admitted.lock().len(), 0);
}

#[test]
fn a_taken_over_session_does_not_end_the_device_connection() {
    let (p, _) = plugin();
    let connect = |client| {
        p.basic_auth(
            client,
            "dev-1",
            Some("dev-1@acme"),
            Some(PW.as_bytes()),
            None,
            5,
        )
    };
    connect(1).unwrap();
    // The same client ID connects again: the old connection ends after the new one began.
    connect(2).unwrap();
    assert!(
        p.admitted.lock().remove(1).is_none(),
        "dev-1 is still connected"
    );
    assert!(p.admitted.lock().remove(2).is_some(), "now it is not");
    // A connection that authenticates twice is one connection.
    connect(3).unwrap();
    connect(3).unwrap();
    assert!(p.admitted.lock().remove(3).is_some());
    assert_eq!(p.admitted.lock().len(), 0);
}

#[test]
fn repeated_wrong_passwords_ban_the_client_id_before_argon2_runs() {
    let (p, _) = plugin();
    for _ in 0..5 {
        assert_eq!(
            auth(&p, "app-9", Some("dash@acme"), Some("guess")),
            Err(Refusal::BadCredentials)
        );
    }
    assert_eq!(
        auth(&p, "app-9", Some("dash@acme"), Some(APP_PW)),
        Err(Refusal::Banned),
        "banned, even with the right password"
    );
    assert_eq!(auth(&p, "app-1", Some("dash@acme"), Some(APP_PW)), Ok(()));
}

#[test]
fn acl_checks_follow_the_replica() {
    let (p, replica) = plugin();
    let dev = |access, topic| p.acl_check("dev-1", Some("dev-1@acme"), access, topic);
    assert!(dev(Access::Subscribe, "acme/dev-1/#"));
    assert!(!dev(Access::Subscribe, "acme/dev-2/#"));
    assert!(!dev(Access::Subscribe, "#"));
    assert!(dev(Access::Write, "acme/dev-1/telemetry"));
    assert!(!dev(Access::Write, "acme/dev-2/telemetry"));
    assert!(dev(Access::Read, "acme/dev-1/cmd"));
    assert!(!dev(Access::Read, "acme/dev-2/cmd"));
    assert!(dev(Access::Unsubscribe, "anything/#"));
    assert!(!p.acl_check("dev-1", None, Access::Write, "acme/dev-1/t"));

    let app = |access, topic| p.acl_check("app-1", Some("dash@acme"), access, topic);
    assert!(app(Access::Subscribe, "acme/#"));
    assert!(app(Access::Subscribe, "$share/g/acme/+/telemetry"));
    assert!(app(Access::Read, "acme/dev-1/telemetry"));
    assert!(!app(Access::Write, "acme/dev-1/telemetry"), "no data:write");
    assert!(!app(Access::Subscribe, "other/#"));

    // Disabled through the API: the next check is refused once the replica has it.
    replica
        .apply(Page::Changes(Changes {
            position: Position { epoch: 1, seq: 2 },
            upserts: vec![device("dev-1", false)],
            deletes: vec![],
        }))
        .unwrap();
    assert!(!dev(Access::Write, "acme/dev-1/telemetry"));
    assert_eq!(
        auth(&p, "dev-1", Some("dev-1@acme"), Some(PW)),
        Err(Refusal::NotAuthorized)
    );
}
