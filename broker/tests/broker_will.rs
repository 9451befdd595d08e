//! Will messages on the real binary's sandbox (PROTOCOL.md 6.2): published when a connection
//! ends without a normal DISCONNECT (socket loss, takeover, 5.0 DISCONNECT 0x04), never after a
//! normal one; the 5.0 will delay is honoured, cancelled when the session resumes in time, cut
//! short when the session ends first; a will topic that is no topic is refused at CONNECT, and
//! on the operational listener so is one outside the device's ACL.

mod common;

use std::time::{Duration, Instant};

use common::binary::{Broker, SANDBOX};
use common::raw::{Client, Msg, Options, Prop, QUIET, WAIT};

/// A client subscribed to `filter`, watching for wills.
fn watcher(b: &Broker, filter: &str) -> Client {
    let mut w = Client::connect(
        b.sandbox,
        &Options::v5(&format!("watch-{}", filter.replace(['/', '#'], ""))),
    );
    assert_eq!(w.subscribe(filter, 1), 1);
    w
}

#[test]
fn will_is_published_when_the_socket_is_lost() {
    let b = Broker::start(SANDBOX);
    let mut w = watcher(&b, "will/lost/#");
    for v5 in [false, true] {
        let topic = format!("will/lost/{v5}");
        let c = Client::connect(
            b.sandbox,
            &Options::version(v5, "dies").will(Msg::new(&topic, "gone").qos(1)),
        );
        c.drop_connection();
        let m = w.receive();
        assert_eq!(
            (m.topic.as_str(), m.payload.as_slice()),
            (topic.as_str(), &b"gone"[..])
        );
    }
}

#[test]
fn no_will_after_a_normal_disconnect() {
    let b = Broker::start(SANDBOX);
    let mut w = watcher(&b, "will/normal/#");
    for v5 in [false, true] {
        let c = Client::connect(
            b.sandbox,
            &Options::version(v5, "leaves").will(Msg::new("will/normal/x", "gone").qos(1)),
        );
        c.disconnect();
    }
    assert_eq!(w.message(QUIET), None);
}

#[test]
fn v5_disconnect_with_will_message_publishes_the_will() {
    let b = Broker::start(SANDBOX);
    let mut w = watcher(&b, "will/0x04/#");
    let mut c = Client::connect(
        b.sandbox,
        &Options::v5("leaves-with-will").will(Msg::new("will/0x04/x", "asked").qos(1)),
    );
    c.disconnect_with(0x04, &[]);
    assert_eq!(w.receive().payload, b"asked");
}

#[test]
fn will_is_published_on_takeover() {
    let b = Broker::start(SANDBOX);
    let mut w = watcher(&b, "will/takeover/#");
    for v5 in [false, true] {
        let mut old = Client::connect(
            b.sandbox,
            &Options::version(v5, "taken").will(Msg::new("will/takeover/x", "old").qos(1)),
        );
        let new = Client::connect(b.sandbox, &Options::version(v5, "taken"));
        assert!(old.closed(WAIT), "the old connection is closed on takeover");
        assert_eq!(w.receive().payload, b"old");
        new.disconnect();
    }
}

#[test]
fn will_retain_flag_is_kept() {
    let b = Broker::start(SANDBOX);
    let c = Client::connect(
        b.sandbox,
        &Options::v3("dies-retained").will(Msg::new("will/retained", "last").qos(1).retain()),
    );
    c.drop_connection();
    std::thread::sleep(Duration::from_millis(300));
    let mut r = Client::connect(b.sandbox, &Options::v3("reads-retained"));
    assert_eq!(r.subscribe("will/retained", 1), 1);
    let m = r.receive();
    assert!(m.retain);
    assert_eq!(m.payload, b"last");
}

/// A 5.0 client with a will delayed by `delay` s and a session of `expiry` s.
fn delayed(b: &Broker, cid: &str, topic: &str, delay: u32, expiry: u32) -> Client {
    Client::connect(
        b.sandbox,
        &Options::v5(cid)
            .persistent()
            .prop(Prop::SessionExpiry(expiry))
            .will(Msg::new(topic, "late").qos(1).prop(Prop::WillDelay(delay))),
    )
}

#[test]
fn v5_will_delay_is_honoured() {
    let b = Broker::start(SANDBOX);
    let mut w = watcher(&b, "will/delay/#");
    let c = delayed(&b, "delays", "will/delay/x", 2, 60);
    let lost = Instant::now();
    c.drop_connection();
    assert_eq!(
        w.message(Duration::from_millis(1500)),
        None,
        "not before 2 s"
    );
    let m = w
        .message(Duration::from_secs(4))
        .expect("the will after its delay");
    assert_eq!(m.payload, b"late");
    let after = lost.elapsed();
    assert!(after >= Duration::from_millis(1900), "will after {after:?}");
}

#[test]
fn v5_will_delay_is_cancelled_when_the_session_resumes() {
    let b = Broker::start(SANDBOX);
    let mut w = watcher(&b, "will/resume/#");
    let c = delayed(&b, "resumes", "will/resume/x", 2, 60);
    c.drop_connection();
    std::thread::sleep(Duration::from_millis(500));
    let back = Client::connect(
        b.sandbox,
        &Options::v5("resumes")
            .persistent()
            .prop(Prop::SessionExpiry(60)),
    );
    assert!(back.session_present);
    assert_eq!(
        w.message(Duration::from_secs(3)),
        None,
        "no will: the session resumed"
    );
    back.disconnect();
}

#[test]
fn v5_will_is_sent_when_the_session_ends_before_the_delay() {
    let b = Broker::start(SANDBOX);
    let mut w = watcher(&b, "will/expiry/#");
    // Session expiry 1 s, will delay 30 s: the will goes when the session ends.
    let c = delayed(&b, "expires", "will/expiry/x", 30, 1);
    c.drop_connection();
    let m = w
        .message(Duration::from_secs(4))
        .expect("the will when the session ended");
    assert_eq!(m.payload, b"late");
    // Session expiry 0 (the session ends with the connection), will delay 5 s: at once.
    let c = delayed(&b, "ends-now", "will/expiry/y", 5, 0);
    c.drop_connection();
    let m = w
        .message(Duration::from_millis(1500))
        .expect("the will at once: the session ended with the connection");
    assert_eq!(m.topic, "will/expiry/y");
}

#[test]
fn a_will_topic_that_is_no_topic_is_refused_at_connect() {
    let b = Broker::start(SANDBOX);
    for v5 in [false, true] {
        let r = Client::try_connect(
            b.sandbox,
            &Options::version(v5, "bad-will").will(Msg::new("will/+/x", "w")),
        );
        // 3.1.1: the connection is closed; 5.0: a CONNACK refusal (or a close) - never accepted.
        if let Ok(c) = r {
            assert_ne!(
                c.connack_code, 0,
                "a wildcard will topic accepted (v5={v5})"
            );
        }
    }
    // The listener is unaffected.
    Client::connect(b.sandbox, &Options::v5("good-after-bad")).disconnect();
}

#[test]
fn an_operational_will_topic_outside_the_acl_is_refused_at_connect() {
    // The account space: the will topic is checked against the device's ACL at CONNECT.
    let b = Broker::start_operational("");
    let (user, password) = b.provision("acme", "dev-w");
    for v5 in [false, true] {
        let outside = Options::version(v5, "dev-w")
            .login(&user, &password)
            .will(Msg::new("acme/another-device/x", "w"));
        let c = b.operational_connect(&outside);
        assert_eq!(c.connack_code, if v5 { 0x87 } else { 0x05 }, "v5={v5}");
        // Kura's LWT is inside a device's ACL.
        let lwt = Options::version(v5, "dev-w")
            .login(&user, &password)
            .will(Msg::new("$EDC/acme/dev-w/MQTT/LWT", "bye"));
        let c = b.operational_connect(&lwt);
        assert_eq!(c.connack_code, 0, "v5={v5}");
        c.disconnect();
    }
}
