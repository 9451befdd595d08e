//! Shared subscriptions `$share/GROUP/FILTER` on the real binary's sandbox (PROTOCOL.md 6.2),
//! for 3.1.1 and 5.0: each message goes to one member of a group, round robin; every group and
//! every plain subscriber gets each message.

mod common;

use common::binary::{Broker, SANDBOX};
use common::raw::{Client, Msg, Options, QUIET};

fn payloads(c: &mut Client) -> Vec<u16> {
    c.drain(QUIET)
        .into_iter()
        .map(|m| u16::from_be_bytes([m.payload[0], m.payload[1]]))
        .collect()
}

#[test]
fn share_group_members_take_turns() {
    let b = Broker::start(SANDBOX);
    for v5 in [false, true] {
        let group = format!("$share/g{v5}/shared/{v5}/#");
        let mut members: Vec<Client> = (0..2)
            .map(|i| {
                let mut m =
                    Client::connect(b.sandbox, &Options::version(v5, &format!("member-{i}")));
                assert_eq!(m.subscribe(&group, 1), 1, "v5={v5}");
                m
            })
            .collect();
        let mut other_group = Client::connect(b.sandbox, &Options::version(v5, "other-group"));
        assert_eq!(
            other_group.subscribe(&format!("$share/h{v5}/shared/{v5}/#"), 1),
            1
        );
        let mut plain = Client::connect(b.sandbox, &Options::version(v5, "plain"));
        assert_eq!(plain.subscribe(&format!("shared/{v5}/#"), 1), 1);

        let mut p = Client::connect(b.sandbox, &Options::version(v5, "share-pub"));
        for i in 0..10u16 {
            assert_eq!(
                p.publish(Msg::new(&format!("shared/{v5}/x"), i.to_be_bytes()).qos(1)),
                0
            );
        }
        let a = payloads(&mut members[0]);
        let c = payloads(&mut members[1]);
        assert_eq!(a.len(), 5, "round robin (v5={v5}): {a:?} / {c:?}");
        assert_eq!(c.len(), 5, "round robin (v5={v5}): {a:?} / {c:?}");
        let mut all: Vec<u16> = a.iter().chain(&c).copied().collect();
        all.sort();
        assert_eq!(
            all,
            (0..10).collect::<Vec<_>>(),
            "each message once in the group"
        );
        assert_eq!(payloads(&mut other_group), (0..10).collect::<Vec<_>>());
        assert_eq!(payloads(&mut plain), (0..10).collect::<Vec<_>>());
        for m in members {
            m.disconnect();
        }
        other_group.disconnect();
        plain.disconnect();
        p.disconnect();
    }
}

#[test]
fn a_member_that_leaves_stops_getting_its_turn() {
    let b = Broker::start(SANDBOX);
    let mut stays = Client::connect(b.sandbox, &Options::v5("stays"));
    assert_eq!(stays.subscribe("$share/g/leave/#", 1), 1);
    let mut leaves = Client::connect(b.sandbox, &Options::v5("leaves"));
    assert_eq!(leaves.subscribe("$share/g/leave/#", 1), 1);
    leaves.unsubscribe("$share/g/leave/#");
    let mut p = Client::connect(b.sandbox, &Options::v5("leave-pub"));
    for i in 0..4u16 {
        assert_eq!(p.publish(Msg::new("leave/x", i.to_be_bytes()).qos(1)), 0);
    }
    assert_eq!(payloads(&mut stays), [0, 1, 2, 3]);
    assert_eq!(payloads(&mut leaves), Vec::<u16>::new());
    leaves.disconnect();
    stays.disconnect();
}
