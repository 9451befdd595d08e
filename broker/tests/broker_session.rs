//! Sessions on the real binary's sandbox (PROTOCOL.md 6.2): 3.1.1 clean session 0 and 5.0
//! session expiry keep subscriptions and undelivered QoS 1/2 messages while the client is away,
//! resume with session present, expire as 5.0 says, survive a graceful restart and a SIGKILL
//! with every message acknowledged to its publisher, and hold at most
//! `operational.max_queue` messages; a takeover ends the old connection (5.0: DISCONNECT 0x8E).

mod common;

use std::time::Duration;

use common::binary::{Broker, SANDBOX};
use common::raw::{Client, Msg, Options, Prop, QUIET, WAIT};

/// A persistent session's CONNECT: 3.1.1 clean session 0, 5.0 clean start 0 with `expiry` s.
fn persistent(v5: bool, cid: &str, expiry: u32) -> Options {
    let o = Options::version(v5, cid).persistent();
    if v5 {
        o.prop(Prop::SessionExpiry(expiry))
    } else {
        o
    }
}

fn publish_all(b: &Broker, v5: bool, topic: &str, payloads: &[&str]) {
    let mut p = Client::connect(b.sandbox, &Options::version(v5, "session-publisher"));
    for pl in payloads {
        assert_eq!(p.publish(Msg::new(topic, *pl).qos(1)), 0);
    }
    p.disconnect();
}

fn payloads(ms: Vec<Msg>) -> Vec<String> {
    ms.into_iter()
        .map(|m| String::from_utf8(m.payload).unwrap())
        .collect()
}

#[test]
fn a_persistent_session_queues_while_away_and_resumes_with_session_present() {
    let b = Broker::start(SANDBOX);
    for v5 in [false, true] {
        let topic = format!("away/{v5}");
        // Whatever an earlier run left under this client ID goes first.
        Client::connect(b.sandbox, &Options::version(v5, "away")).disconnect();
        let mut s = Client::connect(b.sandbox, &persistent(v5, "away", 300));
        assert!(!s.session_present, "a new session (v5={v5})");
        assert_eq!(s.subscribe(&topic, 1), 1);
        s.disconnect();
        publish_all(&b, v5, &topic, &["1", "2", "3"]);
        let mut s = Client::connect(b.sandbox, &persistent(v5, "away", 300));
        assert!(s.session_present, "v5={v5}");
        assert_eq!(payloads(s.drain(QUIET)), ["1", "2", "3"], "v5={v5}");
        // The subscription came back with the session.
        publish_all(&b, v5, &topic, &["4"]);
        assert_eq!(s.receive().payload, b"4");
        s.disconnect();
        // A clean session ends it.
        let s = Client::connect(b.sandbox, &Options::version(v5, "away"));
        assert!(!s.session_present);
        s.disconnect();
        let s = Client::connect(b.sandbox, &persistent(v5, "away", 300));
        assert!(
            !s.session_present,
            "the clean connection discarded it (v5={v5})"
        );
        s.disconnect();
    }
}

#[test]
fn v5_session_expiry_is_honoured() {
    let b = Broker::start(SANDBOX);
    // Expiry 0 (the default): the session ends with the connection.
    let mut s = Client::connect(b.sandbox, &Options::v5("short").persistent());
    assert_eq!(s.subscribe("expiry/x", 1), 1);
    s.disconnect();
    let s = Client::connect(b.sandbox, &Options::v5("short").persistent());
    assert!(!s.session_present);
    s.disconnect();

    // Expiry 2 s: there after 0.5 s, gone after 3 s.
    let mut s = Client::connect(b.sandbox, &persistent(true, "two-seconds", 2));
    assert_eq!(s.subscribe("expiry/y", 1), 1);
    s.disconnect();
    std::thread::sleep(Duration::from_millis(500));
    let s = Client::connect(b.sandbox, &persistent(true, "two-seconds", 2));
    assert!(s.session_present);
    s.disconnect();
    std::thread::sleep(Duration::from_secs(3));
    let s = Client::connect(b.sandbox, &persistent(true, "two-seconds", 2));
    assert!(!s.session_present, "expired after 2 s");
    s.disconnect();

    // The DISCONNECT may change the expiry (from non-zero): to 0 ends the session now.
    let mut s = Client::connect(b.sandbox, &persistent(true, "changes", 300));
    assert_eq!(s.subscribe("expiry/z", 1), 1);
    s.disconnect_with(0, &[Prop::SessionExpiry(0)]);
    let s = Client::connect(b.sandbox, &persistent(true, "changes", 300));
    assert!(!s.session_present, "DISCONNECT set the expiry to 0");
    s.disconnect();
}

#[test]
fn v3_persistent_session_expires_after_operational_session_expiry() {
    let b = Broker::start(
        r#"
[operational]
session_expiry = 2.0
"#,
    );
    let mut s = Client::connect(b.sandbox, &persistent(false, "v3-expiry", 0));
    assert_eq!(s.subscribe("v3expiry/x", 1), 1);
    s.disconnect();
    std::thread::sleep(Duration::from_millis(500));
    let s = Client::connect(b.sandbox, &persistent(false, "v3-expiry", 0));
    assert!(s.session_present);
    s.disconnect();
    std::thread::sleep(Duration::from_secs(3));
    let s = Client::connect(b.sandbox, &persistent(false, "v3-expiry", 0));
    assert!(
        !s.session_present,
        "expired after operational.session_expiry"
    );
    s.disconnect();
}

#[test]
fn takeover_ends_the_old_connection() {
    let b = Broker::start(SANDBOX);
    for v5 in [false, true] {
        let mut old = Client::connect(b.sandbox, &persistent(v5, "twin", 60));
        assert_eq!(old.subscribe("twin/x", 1), 1);
        let new = Client::connect(b.sandbox, &persistent(v5, "twin", 60));
        assert!(
            new.session_present,
            "the session moves to the new connection (v5={v5})"
        );
        assert!(old.closed(WAIT), "old connection closed (v5={v5})");
        if v5 {
            assert_eq!(
                old.disconnect_reason(),
                Some(0x8E),
                "DISCONNECT Session taken over"
            );
        }
        let mut new = new;
        publish_all(&b, v5, "twin/x", &["to-new"]);
        assert_eq!(new.receive().payload, b"to-new");
        new.disconnect();
    }
}

#[test]
fn a_persistent_session_and_its_queue_survive_a_graceful_restart() {
    let mut b = Broker::start(SANDBOX);
    for v5 in [false, true] {
        let mut s = Client::connect(b.sandbox, &persistent(v5, &format!("restart-{v5}"), 600));
        assert_eq!(s.subscribe(&format!("restart/{v5}/#"), 2), 2);
        s.disconnect();
    }
    for v5 in [false, true] {
        publish_all(&b, v5, &format!("restart/{v5}/q"), &["a", "b"]);
    }
    b.stop();
    b.start_again();
    for v5 in [false, true] {
        let mut s = Client::connect(b.sandbox, &persistent(v5, &format!("restart-{v5}"), 600));
        assert!(s.session_present, "v5={v5}");
        assert_eq!(payloads(s.drain(QUIET)), ["a", "b"], "v5={v5}");
        publish_all(&b, v5, &format!("restart/{v5}/q"), &["c"]);
        assert_eq!(
            s.receive().payload,
            b"c",
            "the subscription survived (v5={v5})"
        );
        s.disconnect();
    }
}

#[test]
fn persistent_sessions_lose_nothing_acknowledged_to_a_sigkill() {
    let mut b = Broker::start(SANDBOX);
    let mut here = Vec::new();
    let mut subscribed = Vec::new();
    for v5 in [false, true] {
        let mut away = Client::connect(b.sandbox, &persistent(v5, &format!("away-{v5}"), 600));
        assert_eq!(away.subscribe(&format!("kill/{v5}/#"), 2), 2);
        away.disconnect();
        let mut h = Client::connect(b.sandbox, &persistent(v5, &format!("here-{v5}"), 600));
        assert_eq!(h.subscribe(&format!("kill/{v5}/#"), 1), 1);
        here.push(h);
    }
    for v5 in [false, true] {
        publish_all(&b, v5, &format!("kill/{v5}/q"), &["a", "b"]);
    }
    for (v5, h) in [false, true].into_iter().zip(&mut here) {
        // Received, not acknowledged: in flight at the kill.
        for payload in ["a", "b"] {
            let m = h
                .message(WAIT)
                .expect("a delivery to the connected session");
            assert_eq!(m.payload, payload.as_bytes(), "v5={v5}");
        }
        // Subscribed (SUBACK received) just before the kill.
        let mut s = Client::connect(b.sandbox, &persistent(v5, &format!("late-{v5}"), 600));
        assert_eq!(s.subscribe(&format!("late/{v5}/#"), 1), 1);
        subscribed.push(s);
    }
    b.kill();
    drop((here, subscribed));
    b.start_again();
    for v5 in [false, true] {
        for cid in ["away", "here"] {
            let mut s = Client::connect(b.sandbox, &persistent(v5, &format!("{cid}-{v5}"), 600));
            assert!(s.session_present, "{cid} v5={v5}");
            assert_eq!(payloads(s.drain(QUIET)), ["a", "b"], "{cid} v5={v5}");
            s.disconnect();
        }
        let mut s = Client::connect(b.sandbox, &persistent(v5, &format!("late-{v5}"), 600));
        assert!(s.session_present, "late v5={v5}");
        publish_all(&b, v5, &format!("late/{v5}/x"), &["c"]);
        assert_eq!(
            s.receive().payload,
            b"c",
            "the subscription survived (v5={v5})"
        );
        s.disconnect();
    }
    // Delivered and acknowledged: not delivered again. (Through a graceful stop: a SIGKILL
    // right after an acknowledgement may come before the store forgot the message, which is
    // then delivered again, as QoS 1 allows.)
    b.stop();
    b.start_again();
    for v5 in [false, true] {
        for cid in ["away", "here", "late"] {
            let mut s = Client::connect(b.sandbox, &persistent(v5, &format!("{cid}-{v5}"), 600));
            assert!(s.session_present, "{cid} v5={v5}");
            assert!(s.drain(QUIET).is_empty(), "{cid} v5={v5}");
            s.disconnect();
        }
    }
}

#[test]
fn a_persistent_session_queue_is_bounded_by_max_queue() {
    let b = Broker::start(
        r#"
[operational]
max_queue = 5
"#,
    );
    for v5 in [false, true] {
        let topic = format!("bounded/{v5}");
        let mut s = Client::connect(b.sandbox, &persistent(v5, "bounded", 300));
        assert_eq!(s.subscribe(&topic, 1), 1);
        s.disconnect();
        // Eight QoS 1 messages for a queue of five: the first five are kept, the rest refused.
        publish_all(&b, v5, &topic, &["1", "2", "3", "4", "5", "6", "7", "8"]);
        let mut s = Client::connect(b.sandbox, &persistent(v5, "bounded", 300));
        assert_eq!(
            payloads(s.drain(QUIET)),
            ["1", "2", "3", "4", "5"],
            "v5={v5}"
        );
        s.disconnect();
    }
}

#[test]
fn a_zero_length_client_id_gets_a_fresh_session() {
    let b = Broker::start(SANDBOX);
    // 3.1.1: allowed with clean session only.
    let c = Client::connect(b.sandbox, &Options::v3(""));
    c.disconnect();
    let r = Client::try_connect(b.sandbox, &Options::v3("").persistent());
    if let Ok(c) = r {
        assert_eq!(c.connack_code, 0x02, "identifier rejected");
    }
    // 5.0: the broker assigns one.
    let c = Client::connect(b.sandbox, &Options::v5(""));
    assert!(
        c.connack_prop(|p| matches!(p, Prop::AssignedClientId(id) if !id.is_empty()))
            .is_some(),
        "assigned client identifier: {:?}",
        c.connack_props
    );
    c.disconnect();
}
