//! MQTT 5.0 features on the real binary's sandbox (PROTOCOL.md 6.2): topic aliases from the
//! client, the server's receive maximum (exceeded: DISCONNECT 0x93), the maximum packet size
//! both ways, message expiry of queued messages, properties passed through unchanged,
//! subscription identifiers, no-local, retain-as-published and retain handling, and the server
//! keep alive when `operational.max_keepalive` is lower than the client's.

mod common;

use std::time::Duration;

use common::binary::{Broker, SANDBOX};
use common::raw::{Client, Msg, Options, Packet, Prop, QUIET, WAIT, sub_opts};

#[test]
fn topic_alias_from_the_client() {
    let b = Broker::start(SANDBOX);
    let mut s = Client::connect(b.sandbox, &Options::v5("alias-sub"));
    assert_eq!(s.subscribe("alias/#", 1), 1);
    let mut p = Client::connect(b.sandbox, &Options::v5("alias-pub"));
    let max = p
        .connack_props
        .iter()
        .find_map(|x| match x {
            Prop::TopicAliasMaximum(m) => Some(*m),
            _ => None,
        })
        .unwrap_or(0);
    assert!(
        (1..=10).contains(&max),
        "topic alias maximum 1..=10, got {max}"
    );
    assert_eq!(
        p.publish(
            Msg::new("alias/one", "set")
                .qos(1)
                .prop(Prop::TopicAlias(1))
        ),
        0
    );
    assert_eq!(
        p.publish(Msg::new("", "used").qos(1).prop(Prop::TopicAlias(1))),
        0
    );
    // An alias may be mapped again.
    assert_eq!(
        p.publish(
            Msg::new("alias/two", "reset")
                .qos(1)
                .prop(Prop::TopicAlias(1))
        ),
        0
    );
    assert_eq!(
        p.publish(Msg::new("", "used2").qos(1).prop(Prop::TopicAlias(1))),
        0
    );
    let got: Vec<(String, Vec<u8>)> = s
        .drain(QUIET)
        .into_iter()
        .map(|m| {
            assert!(
                !m.props.iter().any(|x| matches!(x, Prop::TopicAlias(_))),
                "the subscriber did not allow aliases: {m:?}"
            );
            (m.topic, m.payload)
        })
        .collect();
    assert_eq!(
        got,
        [
            ("alias/one".to_string(), b"set".to_vec()),
            ("alias/one".to_string(), b"used".to_vec()),
            ("alias/two".to_string(), b"reset".to_vec()),
            ("alias/two".to_string(), b"used2".to_vec()),
        ]
    );
    // An alias above the maximum closes the connection: MQTT names 0x94 Topic Alias invalid,
    // ntex-mqtt 8.2 sends 0x82 Protocol Error (docs/conformance.md, "Known deviations").
    p.send_publish(
        &Msg::new("alias/x", "bad")
            .qos(1)
            .id(99)
            .prop(Prop::TopicAlias(max + 1)),
    );
    assert!(p.closed(WAIT));
    assert!(
        matches!(p.disconnect_reason(), Some(0x94 | 0x82)),
        "{:?}",
        p.disconnect_reason()
    );
}

#[test]
fn exceeding_the_receive_maximum_gets_disconnect_0x93() {
    let b = Broker::start(SANDBOX);
    let mut p = Client::connect(b.sandbox, &Options::v5("greedy"));
    let max = p
        .connack_props
        .iter()
        .find_map(|x| match x {
            Prop::ReceiveMaximum(m) => Some(*m),
            _ => None,
        })
        .expect("the broker announces its receive maximum");
    // QoS 2 messages stay unacknowledged until PUBREL: never sending it keeps them all in flight.
    for id in 1..=max {
        p.send_publish(&Msg::new("greedy/x", "q").qos(2).id(id));
    }
    for id in 1..=max {
        p.expect(
            WAIT,
            |x| matches!(x, Packet::PubRec { id: r, .. } if *r == id),
        );
    }
    p.send_publish(&Msg::new("greedy/x", "one too many").qos(2).id(max + 1));
    assert!(p.closed(WAIT), "closed after receive maximum + 1");
    assert_eq!(p.disconnect_reason(), Some(0x93));
}

#[test]
fn the_broker_respects_the_receive_maximum_of_the_client() {
    let b = Broker::start(SANDBOX);
    let mut s = Client::connect(
        b.sandbox,
        &Options::v5("slow").prop(Prop::ReceiveMaximum(2)),
    );
    assert_eq!(s.subscribe("slow/x", 1), 1);
    let mut p = Client::connect(b.sandbox, &Options::v5("slow-pub"));
    for i in 0..5u8 {
        assert_eq!(p.publish(Msg::new("slow/x", vec![i]).qos(1)), 0);
    }
    // Two in flight, no more until one is acknowledged.
    let first = s.message(WAIT).unwrap();
    let second = s.message(WAIT).unwrap();
    assert_eq!(s.message(QUIET), None, "a third before any PUBACK");
    s.acknowledge(&first);
    s.acknowledge(&second);
    let rest: Vec<u8> = s.drain(QUIET).into_iter().map(|m| m.payload[0]).collect();
    assert_eq!(rest, [2, 3, 4]);
}

#[test]
fn a_message_larger_than_the_clients_maximum_packet_size_is_not_sent_to_it() {
    let b = Broker::start(SANDBOX);
    let mut s = Client::connect(
        b.sandbox,
        &Options::v5("small").prop(Prop::MaximumPacketSize(200)),
    );
    assert_eq!(s.subscribe("size/#", 1), 1);
    let mut big = Client::connect(b.sandbox, &Options::v5("big-sub"));
    assert_eq!(big.subscribe("size/#", 1), 1);
    let mut p = Client::connect(b.sandbox, &Options::v5("size-pub"));
    assert_eq!(p.publish(Msg::new("size/big", vec![7u8; 500]).qos(1)), 0);
    assert_eq!(p.publish(Msg::new("size/small", vec![1u8; 50]).qos(1)), 0);
    let got: Vec<String> = s.drain(QUIET).into_iter().map(|m| m.topic).collect();
    assert_eq!(
        got,
        ["size/small"],
        "the big one is dropped for this client only"
    );
    assert_eq!(big.drain(QUIET).len(), 2);
    assert!(!s.closed(Duration::from_millis(100)), "still connected");
}

#[test]
fn a_packet_larger_than_the_servers_maximum_packet_size_closes_the_connection() {
    let b = Broker::start(
        r#"
[operational]
max_packet_size = 1024
"#,
    );
    let mut c = Client::connect(b.sandbox, &Options::v5("too-big"));
    assert_eq!(
        c.connack_prop(|x| matches!(x, Prop::MaximumPacketSize(_))),
        Some(Prop::MaximumPacketSize(1024)),
        "the broker announces its maximum packet size"
    );
    assert_eq!(c.publish(Msg::new("big/x", vec![0u8; 900]).qos(1)), 0);
    c.send_publish(&Msg::new("big/x", vec![0u8; 2000]).qos(1).id(500));
    assert!(c.closed(WAIT), "closed after a packet over the maximum");
    // 0x95 Packet too large, if the broker says why.
    if let Some(code) = c.disconnect_reason() {
        assert_eq!(code, 0x95);
    }
    // Only that connection.
    Client::connect(b.sandbox, &Options::v5("after-too-big")).disconnect();
}

#[test]
fn queued_messages_expire() {
    let b = Broker::start(SANDBOX);
    let session = || {
        Options::v5("expiring")
            .persistent()
            .prop(Prop::SessionExpiry(300))
    };
    let mut s = Client::connect(b.sandbox, &session());
    assert_eq!(s.subscribe("msgexp/#", 1), 1);
    s.disconnect();
    let mut p = Client::connect(b.sandbox, &Options::v5("expiring-pub"));
    assert_eq!(
        p.publish(
            Msg::new("msgexp/short", "s")
                .qos(1)
                .prop(Prop::MessageExpiry(1))
        ),
        0
    );
    assert_eq!(
        p.publish(
            Msg::new("msgexp/long", "l")
                .qos(1)
                .prop(Prop::MessageExpiry(60))
        ),
        0
    );
    std::thread::sleep(Duration::from_millis(2500));
    let mut s = Client::connect(b.sandbox, &session());
    let got = s.drain(QUIET);
    assert_eq!(got.len(), 1, "only the unexpired one: {got:?}");
    assert_eq!(got[0].topic, "msgexp/long");
    // The interval sent on is what is left of it.
    let left = got[0]
        .props
        .iter()
        .find_map(|x| match x {
            Prop::MessageExpiry(v) => Some(*v),
            _ => None,
        })
        .expect("message expiry interval forwarded");
    assert!(
        (1..=58).contains(&left),
        "what is left of 60 s after 2.5 s: {left}"
    );
}

#[test]
fn request_response_and_user_properties_pass_through_unchanged() {
    let b = Broker::start(SANDBOX);
    let mut s = Client::connect(b.sandbox, &Options::v5("props-sub"));
    assert_eq!(s.subscribe("props/#", 2), 2);
    let mut p = Client::connect(b.sandbox, &Options::v5("props-pub"));
    let props = vec![
        Prop::PayloadFormat(1),
        Prop::ContentType("application/json".into()),
        Prop::ResponseTopic("props/reply".into()),
        Prop::CorrelationData(vec![0, 1, 2, 255]),
        Prop::User("k".into(), "v1".into()),
        Prop::User("k".into(), "v2".into()),
        Prop::User("other".into(), "".into()),
    ];
    for qos in 0..3 {
        let mut m = Msg::new("props/x", "{}").qos(qos);
        m.props = props.clone();
        assert_eq!(p.publish(m), 0);
        let got = s.receive();
        let mut want = props.clone();
        let mut seen = got.props.clone();
        // Order of different properties is free; user properties keep theirs.
        let user = |v: &Vec<Prop>| -> Vec<Prop> {
            v.iter()
                .filter(|x| matches!(x, Prop::User(..)))
                .cloned()
                .collect()
        };
        assert_eq!(
            user(&seen),
            user(&want),
            "user properties in order (QoS {qos})"
        );
        let key = |x: &Prop| format!("{x:?}");
        seen.sort_by_key(key);
        want.sort_by_key(key);
        assert_eq!(seen, want, "QoS {qos}");
    }
}

#[test]
fn subscription_identifiers() {
    let b = Broker::start(SANDBOX);
    let mut s = Client::connect(b.sandbox, &Options::v5("ids"));
    assert_eq!(
        s.subscribe_with(&[("subid/a", 1)], &[Prop::SubscriptionId(1)]),
        [1]
    );
    assert_eq!(
        s.subscribe_with(&[("subid/+", 1)], &[Prop::SubscriptionId(268_435_455)]),
        [1]
    );
    assert_eq!(s.subscribe("subid/#", 1), 1);
    let mut p = Client::connect(b.sandbox, &Options::v5("ids-pub"));
    assert_eq!(p.publish(Msg::new("subid/a", "x").qos(1)), 0);
    let m = s.receive();
    let mut ids = m.subscription_ids();
    ids.sort();
    assert_eq!(
        ids,
        [1, 268_435_455],
        "one copy with every matching identifier"
    );
    assert_eq!(s.message(QUIET), None, "one copy");
    assert_eq!(p.publish(Msg::new("subid/b/c", "y").qos(1)), 0);
    assert_eq!(s.receive().subscription_ids(), Vec::<u32>::new());
}

#[test]
fn no_local() {
    let b = Broker::start(SANDBOX);
    let mut c = Client::connect(b.sandbox, &Options::v5("self"));
    assert_eq!(
        c.subscribe_with(&[("nolocal/x", sub_opts(1, true, false, 0))], &[]),
        [1]
    );
    let mut other = Client::connect(b.sandbox, &Options::v5("other"));
    assert_eq!(c.publish(Msg::new("nolocal/x", "mine").qos(1)), 0);
    assert_eq!(other.publish(Msg::new("nolocal/x", "theirs").qos(1)), 0);
    let got: Vec<Vec<u8>> = c.drain(QUIET).into_iter().map(|m| m.payload).collect();
    assert_eq!(got, [b"theirs".to_vec()]);
}

#[test]
fn retain_as_published_and_retain_handling() {
    let b = Broker::start(SANDBOX);
    let mut p = Client::connect(b.sandbox, &Options::v5("rh-pub"));
    assert_eq!(p.publish(Msg::new("rh/x", "kept").qos(1).retain()), 0);

    // Retain as published: a live retained PUBLISH keeps RETAIN for this subscription only.
    let mut rap = Client::connect(b.sandbox, &Options::v5("rap"));
    assert_eq!(
        rap.subscribe_with(&[("rh/x", sub_opts(1, false, true, 2))], &[]),
        [1]
    );
    let mut plain = Client::connect(b.sandbox, &Options::v5("not-rap"));
    assert_eq!(
        plain.subscribe_with(&[("rh/x", sub_opts(1, false, false, 2))], &[]),
        [1]
    );
    assert_eq!(p.publish(Msg::new("rh/x", "live").qos(1).retain()), 0);
    assert!(rap.receive().retain);
    assert!(!plain.receive().retain);

    // Retain handling 0: on every SUBSCRIBE; 1: only when the subscription is new; 2: never.
    let count = |c: &mut Client, rh: u8| {
        c.subscribe_with(&[("rh/x", sub_opts(1, false, false, rh))], &[]);
        c.drain(QUIET).len()
    };
    let mut c = Client::connect(b.sandbox, &Options::v5("rh0"));
    assert_eq!(
        (count(&mut c, 0), count(&mut c, 0)),
        (1, 1),
        "retain handling 0"
    );
    let mut c = Client::connect(b.sandbox, &Options::v5("rh1"));
    assert_eq!(
        (count(&mut c, 1), count(&mut c, 1)),
        (1, 0),
        "retain handling 1"
    );
    let mut c = Client::connect(b.sandbox, &Options::v5("rh2"));
    assert_eq!(
        (count(&mut c, 2), count(&mut c, 2)),
        (0, 0),
        "retain handling 2"
    );
}

#[test]
fn server_keep_alive_when_max_keepalive_is_lower() {
    let b = Broker::start(
        r#"
[operational]
max_keepalive = 60
"#,
    );
    let c = Client::connect(b.sandbox, &Options::v5("asks-120").keep_alive(120));
    assert_eq!(
        c.connack_prop(|x| matches!(x, Prop::ServerKeepAlive(_))),
        Some(Prop::ServerKeepAlive(60))
    );
    c.disconnect();
    let c = Client::connect(b.sandbox, &Options::v5("asks-30").keep_alive(30));
    let granted = c.connack_prop(|x| matches!(x, Prop::ServerKeepAlive(_)));
    assert!(
        granted.is_none() || granted == Some(Prop::ServerKeepAlive(30)),
        "30 s asked, within the limit: {granted:?}"
    );
    c.disconnect();
}
