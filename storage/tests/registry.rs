//! Account users and the Device Registry through the store's public API: the instance-wide
//! username rule from both sides, user changes and what they revoke, registry entries before
//! provisioning, deletion, CONNECT facts with `operationalConnectedOn`, BIRTH facts, paging.

use chrono::Utc;
use fleetgate_storage::ops::{
    self, Attempt, ConnectedSession, ExchangeAction, ExchangeStart, IdentityPlan, NewAccountUser,
    NewRequest, StoredUser, UserPatch, UserPlan,
};
use fleetgate_storage::*;

fn setup() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(DB_FILE), &StoreOptions::default(), None).unwrap();
    for name in ["acme", "other"] {
        store
            .write(ops::create_account(
                AccountInput::named(name).validate().unwrap(),
                Utc::now(),
            ))
            .unwrap();
    }
    (dir, store)
}

fn app(
    store: &Store,
    account: &str,
    name: &str,
    permissions: &[&str],
) -> Result<AccountUser, StoreError> {
    store.write(ops::create_account_user(
        account.into(),
        NewAccountUser {
            name: name.into(),
            password_hash: "$argon2id$stub".into(),
            permissions: permissions.iter().map(ToString::to_string).collect(),
        },
        Utc::now(),
    ))
}

fn request(store: &Store, client_id: &str) -> Result<ProvisionRequest, StoreError> {
    let spec = RequestInput {
        client_id: Some(client_id.into()),
        provision_username: Some("fleet".into()),
        provision_password: Some("password-1".into()),
        confirm_provision_password: Some("password-1".into()),
        broker_url: Some("mqtt://127.0.0.1:1884".into()),
        ..RequestInput::default()
    }
    .validate(20, Utc::now())
    .unwrap();
    let user = match store.read().unwrap().provision_user("fleet").unwrap() {
        Some(u) => UserPlan::Existing {
            hash: u.password_hash,
        },
        None => UserPlan::New { hash: "h1".into() },
    };
    store
        .write(ops::create_requests(
            "acme".into(),
            vec![NewRequest {
                spec,
                user,
                activation_key_hash: None,
            }],
            false,
            Utc::now(),
        ))
        .map(|mut v| v.remove(0))
}

/// Provisions `client_id` in acme; returns the execution id.
fn provision(store: &Store, client_id: &str) -> (ProvisionRequest, String) {
    let r = request(store, client_id).unwrap();
    let start = store
        .write(ops::begin_exchange(
            Attempt {
                request_id: r.id.clone(),
                protocol: "5.0".into(),
                peer: "127.0.0.1:5000".into(),
                now: Utc::now(),
            },
            "r-1".into(),
            ExchangeAction::Provision(IdentityPlan {
                username: format!("{client_id}@acme"),
                password_hash: "hmac".into(),
                configurations: 1,
            }),
            fleetgate_storage::ProvisioningProtocol::ProvV1,
        ))
        .unwrap();
    let ExchangeStart::Started { execution_id, .. } = start else {
        panic!("{start:?}")
    };
    (r, execution_id)
}

fn conflict_field(e: StoreError) -> String {
    match e {
        StoreError::Conflict(errors) => errors[0].field.clone(),
        other => panic!("not a conflict: {other:?}"),
    }
}

fn connected(client_id: &str, username: &str) -> ConnectedSession {
    ConnectedSession {
        account: "acme".into(),
        client_id: client_id.into(),
        username: username.into(),
        peer: Some("127.0.0.1:6000".into()),
        protocol: Some("3.1.1".into()),
    }
}

#[test]
fn usernames_are_unique_in_the_instance_from_both_sides() {
    let (_dir, store) = setup();
    let dash = app(&store, "acme", "dash", &["broker:connect"]).unwrap();
    assert_eq!(dash.username, "dash@acme");
    assert!(!format!("{dash:?}").contains("argon2"));
    assert_eq!(
        conflict_field(app(&store, "acme", "dash", &[]).unwrap_err()),
        "name"
    );
    // The same name in another account is another username.
    app(&store, "other", "dash", &[]).unwrap();
    // A later provision request whose CID@ACCOUNT is an account user's: 409.
    assert_eq!(
        conflict_field(request(&store, "dash").unwrap_err()),
        "clientId"
    );
    // A device user's username, an open request's client ID, a registry entry: all taken.
    provision(&store, "dev-1");
    assert_eq!(
        conflict_field(app(&store, "acme", "dev-1", &[]).unwrap_err()),
        "name"
    );
    request(&store, "dev-2").unwrap();
    assert_eq!(
        conflict_field(app(&store, "acme", "dev-2", &[]).unwrap_err()),
        "name"
    );
    store
        .write(ops::create_device(
            "acme".into(),
            DeviceInput {
                client_id: Some("dev-3".into()),
                display_name: None,
            }
            .validate()
            .unwrap(),
        ))
        .unwrap();
    assert_eq!(
        conflict_field(app(&store, "acme", "dev-3", &[]).unwrap_err()),
        "name"
    );
    // And a registry entry for an account user's name is refused too.
    let e = store
        .write(ops::create_device(
            "acme".into(),
            DeviceInput {
                client_id: Some("dash".into()),
                display_name: None,
            }
            .validate()
            .unwrap(),
        ))
        .unwrap_err();
    assert_eq!(conflict_field(e), "clientId");
    assert!(matches!(
        app(&store, "nope", "x", &[]),
        Err(StoreError::NotFound(RecordKind::Account))
    ));
    let read = store.read().unwrap();
    let names: Vec<String> = read
        .account_users("acme")
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["dash@acme"]);
}

#[test]
fn user_changes_say_when_sessions_must_end() {
    let (_dir, store) = setup();
    app(&store, "acme", "dash", &["broker:connect", "data:read"]).unwrap();
    let patch = |username: &str, p: UserPatch| {
        store.write(ops::update_user(
            "acme".into(),
            username.into(),
            p,
            Utc::now(),
        ))
    };
    // Adding a permission keeps sessions; a new password too.
    let c = patch(
        "dash@acme",
        UserPatch {
            permissions: Some(vec![
                "broker:connect".into(),
                "data:read".into(),
                "device:read".into(),
            ]),
            password_hash: Some("$argon2id$new".into()),
            ..UserPatch::default()
        },
    )
    .unwrap();
    assert!(!c.revoke);
    let StoredUser::Account(u) = &c.user else {
        panic!()
    };
    assert_eq!(u.password_hash, "$argon2id$new");
    // Losing a permission, broker:connect, or being disabled ends them.
    let c = patch(
        "dash@acme",
        UserPatch {
            permissions: Some(vec!["broker:connect".into(), "device:read".into()]),
            ..UserPatch::default()
        },
    )
    .unwrap();
    assert!(c.revoke);
    let off = UserPatch {
        enabled: Some(false),
        ..UserPatch::default()
    };
    assert!(patch("dash@acme", off.clone()).unwrap().revoke);
    // Already unable to connect: nothing to end.
    assert!(!patch("dash@acme", off.clone()).unwrap().revoke);
    // Device users: only enabled.
    provision(&store, "dev-1");
    assert!(patch("dev-1@acme", off).unwrap().revoke);
    assert!(
        !store
            .read()
            .unwrap()
            .device_user("dev-1@acme")
            .unwrap()
            .unwrap()
            .enabled
    );
    let e = patch(
        "dev-1@acme",
        UserPatch {
            permissions: Some(vec![]),
            ..UserPatch::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e:?}");
    // Not visible from another account.
    assert!(matches!(
        store.write(ops::update_user(
            "other".into(),
            "dash@acme".into(),
            UserPatch::default(),
            Utc::now()
        )),
        Err(StoreError::NotFound(RecordKind::User))
    ));
    // Delete: account users only.
    assert_eq!(
        conflict_field(
            store
                .write(ops::delete_account_user("acme".into(), "dev-1@acme".into()))
                .unwrap_err()
        ),
        "username"
    );
    store
        .write(ops::delete_account_user("acme".into(), "dash@acme".into()))
        .unwrap();
    let read = store.read().unwrap();
    assert!(read.account_user("dash@acme").unwrap().is_none());
    assert!(read.account_users("acme").unwrap().is_empty());
}

#[test]
fn first_operational_connect_with_the_new_identity_is_recorded_once() {
    let (_dir, store) = setup();
    // A registry entry made before provisioning keeps its display name.
    store
        .write(ops::create_device(
            "acme".into(),
            DeviceInput {
                client_id: Some("dev-1".into()),
                display_name: Some("Pump 1".into()),
            }
            .validate()
            .unwrap(),
        ))
        .unwrap();
    let (r, execution) = provision(&store, "dev-1");
    let read = store.read().unwrap();
    let d = read.device("acme", "dev-1").unwrap().unwrap();
    assert_eq!(d.display_name.as_deref(), Some("Pump 1"));
    assert_eq!(d.provision_request_id.as_deref(), Some(r.id.as_str()));
    assert!(d.provisioned_on.is_some());
    let stamp = |store: &Store| {
        store
            .read()
            .unwrap()
            .execution(&r.id, &execution)
            .unwrap()
            .unwrap()
            .operational_connected_on
    };
    assert_eq!(stamp(&store), None);
    // Another user on the same client ID (LOOSE) is not the new identity.
    store
        .write(ops::record_connected(
            connected("dev-1", "x@acme"),
            Utc::now(),
        ))
        .unwrap();
    assert_eq!(stamp(&store), None);
    let first = Utc::now();
    store
        .write(ops::record_connected(
            connected("dev-1", "dev-1@acme"),
            first,
        ))
        .unwrap();
    assert_eq!(stamp(&store), Some(first));
    store
        .write(ops::record_connected(
            connected("dev-1", "dev-1@acme"),
            Utc::now(),
        ))
        .unwrap();
    assert_eq!(stamp(&store), Some(first), "only the first connect counts");
    let c = store
        .read()
        .unwrap()
        .device_connection("acme", "dev-1")
        .unwrap()
        .unwrap();
    assert_eq!(c.status, ConnectionStatus::Connected);
    assert_eq!(c.peer.as_deref(), Some("127.0.0.1:6000"));
    assert_eq!(c.protocol.as_deref(), Some("3.1.1"));
}

#[test]
fn birth_facts_delete_and_paging() {
    let (_dir, store) = setup();
    for cid in ["dev-1", "dev-2", "dev-3"] {
        provision(&store, cid);
    }
    let birth = Birth {
        model_name: Some("Raspberry Pi".into()),
        kura_version: Some("5.4.0".into()),
        ..Birth::default()
    };
    let on = Utc::now();
    store
        .write(ops::record_birth(
            "acme".into(),
            "dev-2".into(),
            birth.clone(),
            on,
        ))
        .unwrap();
    let d = store
        .read()
        .unwrap()
        .device("acme", "dev-2")
        .unwrap()
        .unwrap();
    assert_eq!((d.birth, d.birth_on), (Some(birth), Some(on)));

    store
        .write(ops::record_connected(
            connected("dev-3", "dev-3@acme"),
            Utc::now(),
        ))
        .unwrap();
    let read = store.read().unwrap();
    let page = read.list_devices("acme", None, 2, None).unwrap();
    let ids: Vec<&str> = page
        .items
        .iter()
        .map(|(d, _)| d.client_id.as_str())
        .collect();
    assert_eq!(ids, ["dev-1", "dev-2"]);
    assert_eq!(page.next.as_deref(), Some("dev-2"));
    let page = read.list_devices("acme", None, 2, Some("dev-2")).unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.next, None);
    let connected_only = read
        .list_devices("acme", Some(ConnectionStatus::Connected), 10, None)
        .unwrap();
    assert_eq!(connected_only.items.len(), 1);
    assert_eq!(connected_only.items[0].0.client_id, "dev-3");
    assert!(
        read.list_devices("other", None, 10, None)
            .unwrap()
            .items
            .is_empty()
    );
    drop(read);

    // CONNECTED: only with force; the device user and connection go with the entry.
    let e = store
        .write(ops::delete_device("acme".into(), "dev-3".into(), false))
        .unwrap_err();
    assert_eq!(conflict_field(e), "connection");
    let gone = store
        .write(ops::delete_device("acme".into(), "dev-3".into(), true))
        .unwrap();
    assert_eq!(gone, ["dev-3@acme"]);
    let read = store.read().unwrap();
    assert!(read.device("acme", "dev-3").unwrap().is_none());
    assert!(read.device_connection("acme", "dev-3").unwrap().is_none());
    assert!(read.device_user("dev-3@acme").unwrap().is_none());
    assert_eq!(read.users("acme").unwrap().len(), 2);
    assert!(matches!(
        store.write(ops::delete_device("acme".into(), "dev-3".into(), false)),
        Err(StoreError::NotFound(RecordKind::Device))
    ));
}

#[test]
fn a_filtered_device_page_reads_a_bounded_number_of_entries_and_gives_a_cursor() {
    use fleetgate_storage::read::FILTER_SCAN_PER_ITEM;
    let (_dir, store) = setup();
    let cids: Vec<String> = (0..=120).map(|i| format!("dev-{i:03}")).collect();
    for cid in &cids {
        provision(&store, cid);
    }
    for cid in ["dev-110", "dev-115"] {
        store
            .write(ops::record_connected(
                connected(cid, &format!("{cid}@acme")),
                Utc::now(),
            ))
            .unwrap();
    }
    let read = store.read().unwrap();
    let page = |after: Option<&str>| {
        let p = read
            .list_devices("acme", Some(ConnectionStatus::Connected), 1, after)
            .unwrap();
        let ids: Vec<String> = p.items.iter().map(|(d, _)| d.client_id.clone()).collect();
        (ids, p.next)
    };
    // Limit 1: the first page reads FILTER_SCAN_PER_ITEM entries, none connected, and says
    // where to go on.
    let last_read = format!("dev-{:03}", FILTER_SCAN_PER_ITEM - 1);
    assert_eq!(page(None), (Vec::new(), Some(last_read.clone())));
    assert_eq!(
        page(Some(&last_read)),
        (vec!["dev-110".to_string()], Some("dev-110".to_string()))
    );
    assert_eq!(page(Some("dev-110")), (vec!["dev-115".to_string()], None));
    // Without a filter every entry read is an item: the budget plays no part.
    let all = read.list_devices("acme", None, 1000, None).unwrap();
    assert_eq!(all.items.len(), cids.len());
    assert_eq!(all.next, None);
}
