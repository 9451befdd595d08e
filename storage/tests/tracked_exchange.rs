//! `begin_exchange_tracked` / `finish_exchange_tracked`: ending an exchange from what its start
//! wrote gives the same records as `finish_exchange`, and a change made in between (which makes
//! the kept copy stale) is not lost.

use chrono::Utc;
use fleetgate_storage::ops::{
    self, Attempt, ExchangeAction, ExchangeStart, IdentityPlan, NewRequest, RunningState, UserPlan,
};
use fleetgate_storage::*;

fn setup() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(DB_FILE), &StoreOptions::default(), None).unwrap();
    store
        .write(ops::ensure_provisioning_account(
            "provision".into(),
            Utc::now(),
        ))
        .unwrap();
    store
        .write(ops::create_account(
            AccountInput::named("acme").validate().unwrap(),
            Utc::now(),
        ))
        .unwrap();
    (dir, store)
}

fn create(store: &Store, client_id: &str) -> ProvisionRequest {
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
    let user = if store
        .read()
        .unwrap()
        .provision_user("fleet")
        .unwrap()
        .is_some()
    {
        UserPlan::Existing { hash: "h1".into() }
    } else {
        UserPlan::New { hash: "h1".into() }
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
        .unwrap()
}

fn begin(store: &Store, r: &ProvisionRequest) -> (String, Box<RunningState>) {
    let (start, running) = store
        .write(ops::begin_exchange_tracked(
            Attempt {
                request_id: r.id.clone(),
                protocol: "5.0".into(),
                peer: "127.0.0.1:5000".into(),
                now: Utc::now(),
            },
            "q1".into(),
            ExchangeAction::Provision(IdentityPlan {
                username: format!("{}@acme", r.client_id),
                password_hash: "hmac".into(),
                configurations: 1,
            }),
        ))
        .unwrap();
    let ExchangeStart::Started { execution_id, .. } = start else {
        panic!("not started: {start:?}")
    };
    (
        execution_id,
        running.expect("a running exchange is tracked"),
    )
}

#[test]
fn tracked_finish_completes_like_finish_exchange() {
    let (_d, store) = setup();
    let (a, b) = (create(&store, "dev-a"), create(&store, "dev-b"));
    let (xa, running) = begin(&store, &a);
    let (xb, _) = begin(&store, &b);
    let now = Utc::now();
    assert!(
        store
            .write(ops::finish_exchange_tracked(
                running,
                xa.clone(),
                Outcome::Completed,
                "PUBACK received".into(),
                now,
            ))
            .unwrap()
    );
    assert!(
        store
            .write(ops::finish_exchange(
                b.id.clone(),
                xb.clone(),
                Outcome::Completed,
                "PUBACK received".into(),
                now,
            ))
            .unwrap()
    );
    let read = store.read().unwrap();
    let (ra, rb) = (
        read.request(&a.id).unwrap().unwrap(),
        read.request(&b.id).unwrap().unwrap(),
    );
    assert_eq!(ra.status, RequestStatus::Completed);
    assert_eq!(ra.running, None);
    assert_eq!((ra.status, ra.modified_on), (rb.status, rb.modified_on));
    let (ea, eb) = (
        read.execution(&a.id, &xa).unwrap().unwrap(),
        read.execution(&b.id, &xb).unwrap().unwrap(),
    );
    assert_eq!(ea.outcome, Outcome::Completed);
    assert_eq!(ea.ended_on, Some(now));
    assert_eq!(ea.log.len(), eb.log.len());
    assert_eq!(ea.log.last().unwrap().message, "PUBACK received");
    // The status index moved with the request (not left at RUNNING).
    let completed = read
        .list_requests("acme", Some(RequestStatus::Completed), None, 10, None)
        .unwrap();
    assert_eq!(completed.items.len(), 2);
    let running = read
        .list_requests("acme", Some(RequestStatus::Running), None, 10, None)
        .unwrap();
    assert!(running.items.is_empty());
}

#[test]
fn a_change_in_between_is_kept() {
    let (_d, store) = setup();
    let r = create(&store, "dev-1");
    let (x, running) = begin(&store, &r);
    // Another write changes the request after the exchange started.
    store
        .write(ops::record_rejection(
            r.id.clone(),
            "bad user name or password: wrong password".into(),
            Utc::now(),
        ))
        .unwrap();
    assert!(
        store
            .write(ops::finish_exchange_tracked(
                running,
                x,
                Outcome::Completed,
                "PUBACK received".into(),
                Utc::now(),
            ))
            .unwrap()
    );
    let stored = store.read().unwrap().request(&r.id).unwrap().unwrap();
    assert_eq!(stored.status, RequestStatus::Completed);
    assert!(stored.last_rejection.is_some(), "the rejection was lost");
}

#[test]
fn an_exchange_no_longer_running_is_left_alone() {
    let (_d, store) = setup();
    let r = create(&store, "dev-1");
    let (x, running) = begin(&store, &r);
    assert!(
        store
            .write(ops::finish_exchange(
                r.id.clone(),
                x.clone(),
                Outcome::Failed,
                "the device disconnected".into(),
                Utc::now(),
            ))
            .unwrap()
    );
    assert!(
        !store
            .write(ops::finish_exchange_tracked(
                running,
                x.clone(),
                Outcome::Completed,
                "PUBACK received".into(),
                Utc::now(),
            ))
            .unwrap()
    );
    let read = store.read().unwrap();
    assert_eq!(
        read.request(&r.id).unwrap().unwrap().status,
        RequestStatus::Failed
    );
    assert_eq!(
        read.execution(&r.id, &x).unwrap().unwrap().outcome,
        Outcome::Failed
    );
}
