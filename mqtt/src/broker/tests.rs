//! The broker core without sockets: sessions attach and detach, deliveries are taken from
//! their queues as a connection's drain task would.

use std::sync::Arc;
use std::time::Duration;

use fleetgate_storage::{Store, StoreOptions};
use ntex::util::{ByteString, Bytes};
use tokio::sync::Notify;

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), &StoreOptions::default(), None).unwrap();
    Fixture { _dir: dir, store }
}

fn limits() -> Limits {
    Limits {
        max_queue: 4,
        max_retained: 2,
        session_expiry_v3: Duration::from_secs(60),
        max_keepalive: 0,
    }
}

fn broker(f: &Fixture) -> Arc<Broker> {
    let door = Door::Sandbox {
        deny_subscribe: Vec::new(),
    };
    Broker::open(door, limits(), f.store.clone(), Metrics::new()).unwrap()
}

fn msg(topic: &str, qos: u8, from: u64) -> Message {
    Message {
        topic: ByteString::from(topic),
        payload: Bytes::from_static(b"x"),
        qos,
        retain: false,
        props: Properties::default(),
        expires: None,
        from,
    }
}

fn opts(qos: u8, id: Option<u32>) -> SubOpts {
    SubOpts {
        qos,
        no_local: false,
        retain_as_published: false,
        id,
    }
}

/// Attaches `client` (clean start unless `resume`) with `expiry`.
fn attach(b: &Broker, client: &str, resume: bool, expiry: Option<Duration>) -> Attached {
    let link = (Arc::new(Notify::new()), Arc::new(Kicker::default()));
    let key = (String::new(), client.to_string());
    b.attach(key, "", !resume, expiry, link.0, link.1, || ()).0
}

fn drain(b: &Broker, a: &Attached) -> Vec<Delivery> {
    std::iter::from_fn(|| b.next_delivery(a.session, a.generation)).collect()
}

#[test]
fn overlapping_subscriptions_deliver_once_at_the_highest_qos_with_every_identifier() {
    let f = fixture();
    let b = broker(&f);
    let a = attach(&b, "a", false, Some(Duration::ZERO));
    b.subscribe(a.session, "t/+", opts(1, Some(3)), 0);
    b.subscribe(a.session, "t/#", opts(2, Some(5)), 0);
    b.subscribe(a.session, "other", opts(2, Some(9)), 0);
    b.route(msg("t/x", 2, 0));
    let got = drain(&b, &a);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos, 2);
    let mut ids = got[0].sub_ids.clone();
    ids.sort_unstable();
    assert_eq!(ids, vec![3, 5]);
    b.route(msg("t/x", 0, 0));
    assert_eq!(
        drain(&b, &a)[0].qos,
        0,
        "the lower of published and granted"
    );
}

#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards_and_no_local_holds() {
    let f = fixture();
    let b = broker(&f);
    let a = attach(&b, "a", false, Some(Duration::ZERO));
    b.subscribe(a.session, "#", opts(1, None), 0);
    b.subscribe(a.session, "+/x", opts(1, None), 0);
    b.route(msg("$SYS/x", 1, 0));
    assert!(drain(&b, &a).is_empty());
    let c = attach(&b, "c", false, Some(Duration::ZERO));
    b.subscribe(
        c.session,
        "n/t",
        SubOpts {
            no_local: true,
            ..opts(1, None)
        },
        0,
    );
    b.route(msg("n/t", 1, c.session));
    assert!(drain(&b, &c).is_empty(), "no local");
    assert_eq!(drain(&b, &a).len(), 1);
}

#[test]
fn shared_groups_take_turns() {
    let f = fixture();
    let b = broker(&f);
    let a = attach(&b, "a", false, Some(Duration::ZERO));
    let c = attach(&b, "c", false, Some(Duration::ZERO));
    for s in [&a, &c] {
        b.subscribe(s.session, "$share/g/s/+", opts(1, None), 0);
    }
    for _ in 0..4 {
        b.route(msg("s/1", 1, 0));
    }
    assert_eq!((drain(&b, &a).len(), drain(&b, &c).len()), (2, 2));
    b.unsubscribe(a.session, "$share/g/s/+");
    b.route(msg("s/1", 1, 0));
    assert_eq!((drain(&b, &a).len(), drain(&b, &c).len()), (0, 1));
}

#[test]
fn full_queues_drop_the_oldest_qos0_first_then_refuse() {
    let f = fixture();
    let b = broker(&f);
    let a = attach(&b, "a", false, Some(Duration::ZERO));
    b.subscribe(a.session, "q", opts(1, None), 0);
    b.route(msg("q", 0, 0));
    for _ in 0..3 {
        b.route(msg("q", 1, 0));
    }
    b.route(msg("q", 1, 0)); // drops the QoS 0 one
    b.route(msg("q", 1, 0)); // refused: nothing left to drop
    let got = drain(&b, &a);
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|d| d.qos == 1));
}

#[test]
fn persistent_sessions_keep_qos1_while_away_and_resume() {
    let f = fixture();
    let b = broker(&f);
    let a = attach(&b, "a", false, Some(Duration::from_secs(60)));
    b.subscribe(a.session, "p", opts(1, None), 0);
    b.route(msg("p", 1, 0));
    let unacked = drain(&b, &a);
    assert!(b.detach(
        a.session,
        a.generation,
        unacked,
        Some(Duration::from_secs(60)),
        None
    ));
    b.route(msg("p", 0, 0)); // not kept for an absent client
    b.route(msg("p", 1, 0));
    let again = attach(&b, "a", true, Some(Duration::from_secs(60)));
    assert!(again.present);
    let got = drain(&b, &again);
    assert_eq!(got.len(), 2);
    assert!(got[0].dup, "sent before and not acknowledged");
    assert!(!got[1].dup);
    let clean = attach(&b, "a", false, Some(Duration::ZERO));
    assert!(!clean.present, "a clean start discards the session");
}

#[test]
fn a_session_saved_at_shutdown_is_there_after_a_restart() {
    let f = fixture();
    let b = broker(&f);
    let a = attach(&b, "a", false, Some(Duration::from_secs(600)));
    b.subscribe(a.session, "r/#", opts(2, Some(4)), 0);
    b.detach(
        a.session,
        a.generation,
        Vec::new(),
        Some(Duration::from_secs(600)),
        None,
    );
    b.route(msg("r/1", 2, 0));
    b.save().unwrap();
    drop(b);
    let b = broker(&f);
    let again = attach(&b, "a", true, Some(Duration::from_secs(600)));
    assert!(again.present);
    let got = drain(&b, &again);
    assert_eq!(got.len(), 1);
    assert_eq!(&*got[0].msg.topic, "r/1");
    b.route(msg("r/2", 1, 0));
    assert_eq!(
        drain(&b, &again)[0].sub_ids,
        vec![4],
        "subscriptions came back too"
    );
}

#[test]
fn retained_messages_respect_the_quota_and_empty_payloads_delete() {
    let f = fixture();
    let b = broker(&f);
    let keep = |topic: &str, payload: &'static [u8]| {
        let mut m = msg(topic, 1, 0);
        m.retain = true;
        m.payload = Bytes::from_static(payload);
        b.retain(&Arc::new(m))
    };
    assert_eq!(keep("a", b"1"), Retain::Kept);
    assert_eq!(keep("b", b"1"), Retain::Kept);
    assert_eq!(keep("a", b"2"), Retain::Kept, "replacing is not a new one");
    assert_eq!(keep("c", b"1"), Retain::QuotaExceeded);
    assert_eq!(keep("a", b""), Retain::Kept);
    assert_eq!(keep("c", b"1"), Retain::Kept, "a deletion frees room");
    let s = attach(&b, "s", false, Some(Duration::ZERO));
    let upto = b.subscribe(s.session, "#", opts(2, None), 0).unwrap();
    assert_eq!(keep("d", b"late"), Retain::QuotaExceeded);
    assert_eq!(
        keep("b", b"2"),
        Retain::Kept,
        "replaced after the subscription"
    );
    b.send_retained(s.session, "#", upto);
    let mut topics: Vec<String> = drain(&b, &s)
        .iter()
        .map(|d| d.msg.topic.to_string())
        .collect();
    topics.sort();
    assert_eq!(topics, ["c"], "b went to the subscription live, not again");
}

#[test]
fn a_delayed_will_is_cancelled_by_a_resume_and_sent_when_the_session_ends() {
    let f = fixture();
    let b = broker(&f);
    let w = attach(&b, "watcher", false, Some(Duration::ZERO));
    b.subscribe(w.session, "will/#", opts(1, None), 0);
    let expiry = Some(Duration::from_secs(60));
    let a = attach(&b, "a", false, expiry);
    let will = (msg("will/a", 1, 0), Duration::from_millis(300));
    b.detach(a.session, a.generation, Vec::new(), expiry, Some(will));
    attach(&b, "a", true, expiry);
    std::thread::sleep(Duration::from_millis(600));
    assert!(drain(&b, &w).is_empty(), "resumed within the delay");
    let c = attach(&b, "c", false, Some(Duration::from_millis(200)));
    let will = (msg("will/c", 1, 0), Duration::from_secs(30));
    b.detach(
        c.session,
        c.generation,
        Vec::new(),
        Some(Duration::from_millis(200)),
        Some(will),
    );
    std::thread::sleep(Duration::from_millis(700));
    let got = drain(&b, &w);
    assert_eq!(
        got.len(),
        1,
        "the session expired before the delay: the will goes then"
    );
    assert_eq!(&*got[0].msg.topic, "will/c");
}

#[test]
fn qos2_redeliveries_are_not_routed_twice() {
    let f = fixture();
    let b = broker(&f);
    let a = attach(&b, "a", false, Some(Duration::from_secs(60)));
    assert!(b.qos2_received(a.session, 7, false));
    assert!(!b.qos2_received(a.session, 7, true), "a DUP redelivery");
    assert!(
        b.qos2_received(a.session, 7, false),
        "a new message reusing the id"
    );
    b.qos2_released(a.session, 7);
    assert!(b.qos2_received(a.session, 7, true));
}

/// Waits until every write submitted so far is durable (the store commits in order).
fn barrier(f: &Fixture) {
    f.store.write(|_| Ok(())).unwrap();
}

fn topics(got: &[Delivery]) -> Vec<String> {
    got.iter().map(|d| d.msg.topic.to_string()).collect()
}

#[test]
fn what_a_persistent_session_was_given_survives_a_stop_without_saving() {
    let f = fixture();
    let b = broker(&f);
    let hour = Some(Duration::from_secs(3600));
    let away = attach(&b, "away", false, hour);
    b.subscribe(away.session, "r/#", opts(2, Some(4)), 0);
    drop(b.keep_session(away.session));
    b.detach(away.session, away.generation, Vec::new(), hour, None);
    let here = attach(&b, "here", false, hour);
    b.subscribe(here.session, "r/#", opts(1, None), 0);
    drop(b.keep_session(here.session));
    let clean = attach(&b, "clean", false, Some(Duration::ZERO));
    b.subscribe(clean.session, "r/#", opts(1, None), 0);
    assert!(b.keep_session(clean.session).is_none(), "not persistent");
    assert!(b.route(msg("r/0", 0, 0)).is_none(), "QoS 0 is never stored");
    assert!(b.route(msg("r/1", 1, 0)).is_some());
    assert!(b.route(msg("r/2", 2, 0)).is_some());
    // "here" is given both; it acknowledges the first, the second is in flight at the stop.
    let given = drain(&b, &here);
    assert_eq!(topics(&given), ["r/0", "r/1", "r/2"]);
    b.settle(here.session, &given[1]);
    barrier(&f);
    // No `save`: the broker is gone as after a SIGKILL.
    b.stopped.store(true, Ordering::SeqCst);
    drop(b);

    let b = broker(&f);
    let away = attach(&b, "away", true, hour);
    assert!(away.present);
    let got = drain(&b, &away);
    assert_eq!(topics(&got), ["r/1", "r/2"]);
    assert_eq!((got[0].qos, got[1].qos), (1, 2));
    assert_eq!(got[1].sub_ids, vec![4]);
    let here = attach(&b, "here", true, hour);
    assert!(here.present, "a session online at the stop is kept too");
    assert_eq!(
        topics(&drain(&b, &here)),
        ["r/2"],
        "only what was not acknowledged"
    );
    assert!(!attach(&b, "clean", true, Some(Duration::ZERO)).present);
    // Settled and ended sessions leave nothing behind.
    for d in got {
        b.settle(away.session, &d);
    }
    attach(&b, "here", false, Some(Duration::ZERO));
    barrier(&f);
    let read = f.store.read().unwrap();
    assert!(read.broker_queue("sandbox").unwrap().is_empty());
    let sessions: Vec<String> = read
        .broker_sessions("sandbox")
        .unwrap()
        .into_iter()
        .map(|s| s.client_id)
        .collect();
    assert_eq!(sessions, ["away"]);
}
