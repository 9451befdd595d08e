//! `begin_exchange` / `finish_exchange`: ending an exchange from the handle its start returned
//! gives the same records whether the kept copy is still current or stale (a change made in
//! between is then not lost), the reply's fate is worded by storage and logged only once known,
//! and restart recovery fails a running exchange by its ids. The records an enrollment writes
//! stay packed in their tables, and a store of the layout before that reads and recovers.

use chrono::Utc;
use fleetgate_storage::engine::Table;
use fleetgate_storage::ops::{
    self, Attempt, ExchangeAction, ExchangeStart, IdentityPlan, NewRequest, ReplyFate,
    RunningExchangeHandle, UserPlan,
};
use fleetgate_storage::*;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use serde_json::{Value, json};

fn setup() -> (tempfile::TempDir, Store) {
    setup_with(&StoreOptions::default())
}

fn setup_with(options: &StoreOptions) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(DB_FILE), options, None).unwrap();
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
    create_many(store, &[client_id]).remove(0)
}

fn create_many(store: &Store, client_ids: &[&str]) -> Vec<ProvisionRequest> {
    let spec = |client_id: &str| {
        RequestInput {
            client_id: Some(client_id.into()),
            provision_username: Some("fleet".into()),
            provision_password: Some("password-1".into()),
            confirm_provision_password: Some("password-1".into()),
            broker_url: Some("mqtt://127.0.0.1:1884".into()),
            ..RequestInput::default()
        }
        .validate(20, Utc::now())
        .unwrap()
    };
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
            client_ids
                .iter()
                .map(|c| NewRequest {
                    spec: spec(c),
                    user: user.clone(),
                    activation_key_hash: None,
                })
                .collect(),
            false,
            Utc::now(),
        ))
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

/// Enrollments in the order a loaded server runs them (exchanges started and ended out of the
/// order their requests were created) leave the request and execution tables packed: a record
/// keeps its size once written (redb then rewrites it in place), and executions are appended
/// past the end. Before, both tables were left a third to half unused (docs/benchmarks.md,
/// "Issue 17: the million-device store").
#[test]
fn enrollment_records_stay_packed() {
    let (dir, store) = setup_with(&StoreOptions {
        durable: false,
        ..StoreOptions::default()
    });
    let ids: Vec<String> = (0..1200).map(|i| format!("dev-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let requests = create_many(&store, &ids);
    // Each window of 40 starts in reverse order and ends in creation order.
    for window in requests.chunks(40) {
        let running: Vec<_> = window.iter().rev().map(|r| begin(&store, r)).collect();
        for handle in running.into_iter().rev() {
            assert!(
                store
                    .write(ops::finish_exchange(
                        handle,
                        ReplyFate::Acknowledged,
                        Utc::now()
                    ))
                    .unwrap()
            );
        }
    }
    store.close();
    let sizes = sizes::measure(&dir.path().join(DB_FILE)).unwrap();
    for table in [Table::Requests, Table::ExecutionsById] {
        let t = sizes.tables.iter().find(|t| t.table == table).unwrap();
        assert_eq!(t.entries, 1200);
        let bytes = t.pages * sizes.page_size;
        assert!(
            t.fragmented_bytes * 100 < bytes * 15,
            "{table:?}: {} of {bytes} page bytes unused",
            t.fragmented_bytes
        );
    }
}

/// A running execution is written as long as it is once it ends successfully, so that its
/// second write keeps its size (and redb rewrites it in place).
#[test]
fn a_running_execution_has_room_for_its_end() {
    let (dir, store) = setup();
    let requests = create_many(&store, &["dev-1", "dev-2", "dev-3"]);
    let running: Vec<_> = requests.iter().map(|r| begin(&store, r)).collect();
    let path = dir.path().join(DB_FILE);
    let executions = |store: &Store| {
        store.close();
        let sizes = sizes::measure(&path).unwrap();
        let t = sizes
            .tables
            .into_iter()
            .find(|t| t.table == Table::ExecutionsById);
        let value_bytes = t.unwrap().value_bytes;
        (
            Store::open(&path, &StoreOptions::default(), None).unwrap(),
            value_bytes,
        )
    };
    let (store, started) = executions(&store);
    for handle in running {
        let fate = ReplyFate::Acknowledged;
        assert!(
            store
                .write(ops::finish_exchange(handle, fate, Utc::now()))
                .unwrap()
        );
    }
    let (store, ended) = executions(&store);
    assert_eq!(started, ended);
    for r in &requests {
        let e = store.read().unwrap().executions(&r.id).unwrap().remove(0);
        assert_eq!(e.outcome, Outcome::Completed);
    }
}

/// A store written before the records left their keys' fields out and executions moved
/// (executions keyed by request and execution id, a running exchange held in its request,
/// ids and status names in the records) reads, is moved to the new layout when it opens, and
/// its running exchange is failed by restart recovery as before.
#[test]
fn a_store_of_the_layout_before_reads_and_recovers() {
    let (dir, store) = setup();
    let (running_request, ended_request) = (create(&store, "dev-1"), create(&store, "dev-2"));
    let running = begin(&store, &running_request);
    let x = running.execution_id().to_string();
    let ended = begin(&store, &ended_request);
    let ended_x = ended.execution_id().to_string();
    assert!(
        store
            .write(ops::finish_exchange(
                ended,
                ReplyFate::Acknowledged,
                Utc::now()
            ))
            .unwrap()
    );
    store.close();
    to_the_layout_before(
        &dir.path().join(DB_FILE),
        &[(&running_request.id, &x), (&ended_request.id, &ended_x)],
        &running_request.id,
    );

    let store = Store::open(&dir.path().join(DB_FILE), &StoreOptions::default(), None).unwrap();
    let read = store.read().unwrap();
    let left = read.running_requests().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, running_request.id);
    assert_eq!(left[0].running.as_ref().unwrap().execution_id, x);
    let executions = read.executions(&running_request.id).unwrap();
    assert_eq!(executions.len(), 1);
    assert_eq!(
        (executions[0].id.as_str(), executions[0].outcome),
        (x.as_str(), Outcome::Running)
    );
    let e = read
        .execution(&ended_request.id, &ended_x)
        .unwrap()
        .unwrap();
    assert_eq!(e.outcome, Outcome::Completed);
    assert_eq!(e.request_id, ended_request.id);
    assert!(
        read.execution(&running_request.id, &ended_x)
            .unwrap()
            .is_none()
    );
    assert_eq!(
        read.request(&ended_request.id).unwrap().unwrap().status,
        RequestStatus::Completed
    );
    drop(read);
    assert!(
        store
            .write(ops::fail_exchange_after_restart(
                running_request.id.clone(),
                x.clone(),
                Utc::now(),
            ))
            .unwrap()
    );
    let read = store.read().unwrap();
    assert!(read.running_requests().unwrap().is_empty());
    let r = read.request(&running_request.id).unwrap().unwrap();
    assert_eq!((r.status, r.running), (RequestStatus::Failed, None));
    let e = read.execution(&running_request.id, &x).unwrap().unwrap();
    assert_eq!(e.outcome, Outcome::Failed);
    assert_eq!(
        e.log.last().unwrap().message,
        "Fleetgate restarted while this exchange was running"
    );
    drop(read);
    store.close();
    let sizes = sizes::measure(&dir.path().join(DB_FILE)).unwrap();
    let entries = |table| {
        sizes
            .tables
            .iter()
            .find(|t| t.table == table)
            .map_or(0, |t| t.entries)
    };
    assert_eq!(entries(Table::Executions), 0, "the old table was moved");
    assert_eq!(entries(Table::ExecutionsById), 2);
    assert_eq!(entries(Table::RunningExchanges), 0);
}

/// Rewrites the closed store at `path` as the build before stored it: `executions` (request
/// id, execution id) in the old table with their ids in the records, each request with its id
/// and status name, `running` holding its running exchange in its record.
fn to_the_layout_before(path: &std::path::Path, executions: &[(&str, &str)], running: &str) {
    let table = |name| TableDefinition::<&[u8], &[u8]>::new(name);
    let json = |bytes: &[u8]| -> Value { serde_json::from_slice(&bytes[1..]).unwrap() };
    let stored = |value: &Value| [&[1u8][..], &serde_json::to_vec(value).unwrap()].concat();
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut by_id = txn.open_table(table("executions_by_id")).unwrap();
        let mut by_request = txn.open_table(table("executions_by_request")).unwrap();
        let mut legacy = txn.open_table(table("executions")).unwrap();
        for (request, execution) in executions {
            let mut e = json(by_id.remove(execution.as_bytes()).unwrap().unwrap().value());
            e["i"] = json!(execution);
            let k = [request.as_bytes(), b"\0", execution.as_bytes()].concat();
            by_request.remove(k.as_slice()).unwrap().unwrap();
            legacy.insert(k.as_slice(), stored(&e).as_slice()).unwrap();
        }
        let mut requests = txn.open_table(table("requests")).unwrap();
        let mut running_exchanges = txn.open_table(table("running_exchanges")).unwrap();
        let ids: Vec<String> = requests
            .iter()
            .unwrap()
            .map(|item| String::from_utf8(item.unwrap().0.value().to_vec()).unwrap())
            .collect();
        for id in ids {
            let mut r = json(requests.get(id.as_bytes()).unwrap().unwrap().value());
            r["i"] = json!(id);
            let status = RequestStatus::ALL[usize::try_from(r["s"].as_u64().unwrap()).unwrap()];
            r["s"] = json!(status.as_str());
            if id == running {
                let x = json(
                    running_exchanges
                        .remove(id.as_bytes())
                        .unwrap()
                        .unwrap()
                        .value(),
                );
                r["rn"] = json!({"executionId": x["e"], "deviceRequestId": x["d"]});
            }
            requests
                .insert(id.as_bytes(), stored(&r).as_slice())
                .unwrap();
        }
        assert!(running_exchanges.is_empty().unwrap());
    }
    txn.commit().unwrap();
}
