//! Retained messages on the real binary's sandbox (PROTOCOL.md 6.2): the last retained message
//! per topic is delivered on SUBSCRIBE, an empty payload deletes it, an acknowledged one
//! survives SIGKILL, and `operational.max_retained` bounds how many are kept (5.0: PUBACK
//! 0x97 Quota exceeded; 3.1.1: delivered but not retained).

mod common;

use common::binary::{Broker, SANDBOX};
use common::raw::{Client, Msg, Options, QUIET};

/// The retained messages a new subscriber to `filter` receives, as (topic, payload), sorted.
fn retained(b: &Broker, v5: bool, filter: &str) -> Vec<(String, Vec<u8>)> {
    let mut c = Client::connect(b.sandbox, &Options::version(v5, "retained-reader"));
    assert_eq!(c.subscribe(filter, 1), 1);
    let mut got: Vec<_> = c
        .drain(QUIET)
        .into_iter()
        .map(|m| {
            assert!(
                m.retain,
                "a retained message arrives with RETAIN set: {m:?}"
            );
            (m.topic, m.payload)
        })
        .collect();
    got.sort();
    c.disconnect();
    got
}

#[test]
fn retained_message_is_delivered_on_subscribe_and_an_empty_one_deletes_it() {
    let b = Broker::start(SANDBOX);
    for v5 in [false, true] {
        let t = format!("ret/{v5}/a");
        let mut p = Client::connect(b.sandbox, &Options::version(v5, "retained-writer"));
        assert_eq!(p.publish(Msg::new(&t, "one").qos(1).retain()), 0);
        // The last one per topic wins.
        assert_eq!(p.publish(Msg::new(&t, "two").qos(1).retain()), 0);
        // Not retained: delivered to subscribers of the moment only, the retained one stays.
        assert_eq!(p.publish(Msg::new(&t, "live").qos(1)), 0);
        assert_eq!(
            retained(&b, v5, &format!("ret/{v5}/#")),
            vec![(t.clone(), b"two".to_vec())]
        );
        assert_eq!(p.publish(Msg::new(&t, "").qos(1).retain()), 0);
        assert_eq!(retained(&b, v5, &format!("ret/{v5}/#")), vec![]);
        p.disconnect();
    }
}

#[test]
fn a_live_subscriber_gets_a_retained_publish_without_retain_flag() {
    // MQTT 3.1.1 3.3.1.3 and 5.0 without retain-as-published: RETAIN is set only on messages
    // sent because of a new subscription.
    let b = Broker::start(SANDBOX);
    for v5 in [false, true] {
        let mut s = Client::connect(b.sandbox, &Options::version(v5, "live-sub"));
        assert_eq!(s.subscribe("live/#", 1), 1);
        let mut p = Client::connect(b.sandbox, &Options::version(v5, "live-pub"));
        assert_eq!(p.publish(Msg::new("live/x", "r").qos(1).retain()), 0);
        let m = s.receive();
        assert_eq!(
            (m.topic.as_str(), m.payload.as_slice(), m.retain),
            ("live/x", &b"r"[..], false)
        );
        assert_eq!(p.publish(Msg::new("live/x", "").qos(1).retain()), 0);
        s.disconnect();
        p.disconnect();
    }
}

#[test]
fn acknowledged_retained_messages_survive_sigkill() {
    let mut b = Broker::start(SANDBOX);
    let mut p = Client::connect(b.sandbox, &Options::v5("durable-writer"));
    // PUBACK (QoS 1) and PUBCOMP (QoS 2) are the promise: after them, a SIGKILL loses nothing.
    assert_eq!(
        p.publish(Msg::new("durable/q1", "kept-1").qos(1).retain()),
        0
    );
    assert_eq!(
        p.publish(Msg::new("durable/q2", "kept-2").qos(2).retain()),
        0
    );
    // A deletion is as durable as a write.
    assert_eq!(p.publish(Msg::new("durable/gone", "x").qos(1).retain()), 0);
    assert_eq!(p.publish(Msg::new("durable/gone", "").qos(1).retain()), 0);
    b.kill();
    b.start_again();
    assert_eq!(
        retained(&b, true, "durable/#"),
        vec![
            ("durable/q1".to_string(), b"kept-1".to_vec()),
            ("durable/q2".to_string(), b"kept-2".to_vec()),
        ]
    );
    // And across a graceful restart too.
    b.stop();
    b.start_again();
    assert_eq!(retained(&b, false, "durable/#").len(), 2);
}

const QUOTA: &str = r#"
[operational]
max_retained = 3
"#;

#[test]
fn v5_retained_publish_past_the_quota_gets_quota_exceeded() {
    let b = Broker::start(QUOTA);
    let mut p = Client::connect(b.sandbox, &Options::v5("quota-writer"));
    for i in 0..3 {
        assert_eq!(
            p.publish(Msg::new(&format!("quota/{i}"), "r").qos(1).retain()),
            0
        );
    }
    assert_eq!(p.publish(Msg::new("quota/3", "r").qos(1).retain()), 0x97);
    assert_eq!(p.publish(Msg::new("quota/4", "r").qos(2).retain()), 0x97);
    // Replacing a kept one is no new one.
    assert_eq!(p.publish(Msg::new("quota/0", "again").qos(1).retain()), 0);
    let kept = retained(&b, true, "quota/#");
    assert_eq!(
        kept.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["quota/0", "quota/1", "quota/2"]
    );
    // Deleting one frees its place.
    assert_eq!(p.publish(Msg::new("quota/1", "").qos(1).retain()), 0);
    assert_eq!(p.publish(Msg::new("quota/3", "r").qos(1).retain()), 0);
    // The connection is still usable after the refusals.
    assert_eq!(p.publish(Msg::new("quota/plain", "x").qos(1)), 0);
    p.disconnect();
}

#[test]
fn v3_retained_publish_past_the_quota_is_delivered_but_not_retained() {
    let b = Broker::start(QUOTA);
    let mut s = Client::connect(b.sandbox, &Options::v3("quota-live"));
    assert_eq!(s.subscribe("quota/#", 1), 1);
    let mut p = Client::connect(b.sandbox, &Options::v3("quota-writer"));
    for i in 0..4 {
        assert_eq!(
            p.publish(Msg::new(&format!("quota/{i}"), "r").qos(1).retain()),
            0
        );
    }
    let live: Vec<String> = (0..4).map(|_| s.receive().topic).collect();
    assert_eq!(live, ["quota/0", "quota/1", "quota/2", "quota/3"]);
    assert_eq!(
        retained(&b, false, "quota/#")
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>(),
        ["quota/0", "quota/1", "quota/2"]
    );
    // Still connected.
    assert_eq!(p.publish(Msg::new("quota/plain", "x").qos(1)), 0);
    p.disconnect();
    s.disconnect();
}
