//! `begin_exchange` / `finish_exchange`: ending an exchange from the handle its start returned
//! gives the same records whether the kept copy is still current or stale (a change made in
//! between is then not lost), the reply's fate is worded by storage and logged only once known,
//! and restart recovery fails a running exchange by its ids.

use chrono::Utc;
use fleetgate_storage::ops::{
    self, Attempt, ExchangeAction, ExchangeStart, IdentityPlan, NewRequest, ReplyFate,
    RunningExchangeHandle, UserPlan,
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

fn begin(store: &Store, r: &ProvisionRequest) -> Box<RunningExchangeHandle> {
    let start = store
        .write(ops::begin_exchange(
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
            fleetgate_storage::ProvisioningProtocol::ProvV1,
        ))
        .unwrap();
    let ExchangeStart::Started {
        execution_id,
        running,
    } = start
    else {
        panic!("not started: {start:?}")
    };
    let running = running.expect("a running exchange has a handle");
    assert_eq!(running.execution_id(), execution_id);
    assert_eq!(running.request_id(), r.id);
    running
}

fn reject(store: &Store, r: &ProvisionRequest) {
    store
        .write(ops::record_rejection(
            r.id.clone(),
            "bad user name or password: wrong password".into(),
            Utc::now(),
        ))
        .unwrap();
}

#[test]
fn finishing_from_a_current_or_a_stale_copy_gives_the_same_records() {
    let (_d, store) = setup();
    let (a, b) = (create(&store, "dev-a"), create(&store, "dev-b"));
    let ra = begin(&store, &a);
    let rb = begin(&store, &b);
    let (xa, xb) = (ra.execution_id().to_string(), rb.execution_id().to_string());
    // b's kept request copy goes stale, so its finish decodes what is stored.
    reject(&store, &b);
    let now = Utc::now();
    for running in [ra, rb] {
        assert!(
            store
                .write(ops::finish_exchange(running, ReplyFate::Acknowledged, now))
                .unwrap()
        );
    }
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
    assert_eq!(eb.log.last().unwrap().message, "PUBACK received");
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
    let running = begin(&store, &r);
    // Another write changes the request after the exchange started.
    reject(&store, &r);
    assert!(
        store
            .write(ops::finish_exchange(
                running,
                ReplyFate::Acknowledged,
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
    let running = begin(&store, &r);
    let x = running.execution_id().to_string();
    assert!(
        store
            .write(ops::fail_exchange_after_restart(
                r.id.clone(),
                x.clone(),
                Utc::now(),
            ))
            .unwrap()
    );
    // Once more: no longer running, nothing to do.
    assert!(
        !store
            .write(ops::fail_exchange_after_restart(
                r.id.clone(),
                x.clone(),
                Utc::now(),
            ))
            .unwrap()
    );
    assert!(
        !store
            .write(ops::finish_exchange(
                running,
                ReplyFate::Acknowledged,
                Utc::now(),
            ))
            .unwrap()
    );
    let read = store.read().unwrap();
    assert_eq!(
        read.request(&r.id).unwrap().unwrap().status,
        RequestStatus::Failed
    );
    let e = read.execution(&r.id, &x).unwrap().unwrap();
    assert_eq!(e.outcome, Outcome::Failed);
    assert_eq!(
        e.log.last().unwrap().message,
        "Fleetgate restarted while this exchange was running"
    );
}

#[test]
fn the_reply_is_logged_only_once_its_fate_is_known() {
    let cases = [
        (
            ReplyFate::Acknowledged,
            Outcome::Completed,
            "PUBACK received",
        ),
        (
            ReplyFate::Written,
            Outcome::Completed,
            "reply written to a QoS 0 subscription",
        ),
        (
            ReplyFate::Disconnected,
            Outcome::Failed,
            "the device disconnected before acknowledging the reply",
        ),
        (
            ReplyFate::TimedOut,
            Outcome::Failed,
            "no PUBACK within provisioning.reply_timeout",
        ),
        (
            ReplyFate::Refused(0x80),
            Outcome::Failed,
            "the device refused the reply (reason code 0x80)",
        ),
    ];
    let (_d, store) = setup();
    for (i, (fate, outcome, message)) in cases.into_iter().enumerate() {
        let r = create(&store, &format!("dev-{i}"));
        let running = begin(&store, &r);
        let x = running.execution_id().to_string();
        let started = store.read().unwrap().execution(&r.id, &x).unwrap().unwrap();
        assert!(
            started
                .log
                .iter()
                .all(|l| !l.message.contains("reply") && !l.message.contains("PUBACK")),
            "the first commit speaks of a reply: {:?}",
            started.log
        );
        assert_eq!(fate.outcome(), outcome);
        assert!(
            store
                .write(ops::finish_exchange(running, fate, Utc::now()))
                .unwrap()
        );
        let read = store.read().unwrap();
        let e = read.execution(&r.id, &x).unwrap().unwrap();
        assert_eq!(e.outcome, outcome);
        assert_eq!(e.log.len(), started.log.len() + 1);
        assert_eq!(e.log.last().unwrap().message, message);
        let status = read.request(&r.id).unwrap().unwrap().status;
        let expected = if outcome == Outcome::Completed {
            RequestStatus::Completed
        } else {
            RequestStatus::Failed
        };
        assert_eq!(status, expected);
    }
}
