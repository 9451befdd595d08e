//! Table-driven tests of topic rules, the ACL and the subscription tree.

use std::collections::{BTreeMap, BTreeSet};

use crate::*;

const PA: &str = "provision";
const CID: &str = "dev-1";

fn prov() -> Session {
    Session::Provisioning {
        account: PA.into(),
        client_id: CID.into(),
        requester: "fleetgate".into(),
    }
}

fn device() -> Session {
    Session::Device {
        account: "acme".into(),
        client_id: CID.into(),
    }
}

#[test]
fn topic_name_validation() {
    let long_ok = "a".repeat(MAX_TOPIC_LEN);
    let too_long = "a".repeat(MAX_TOPIC_LEN + 1);
    let rows: &[(&str, bool)] = &[
        ("a", true),
        ("a/b", true),
        ("/", true),
        ("//", true),
        ("a/", true),
        ("/a", true),
        (" ", true),
        ("$SYS/x", true),
        ("é/ü", true),
        (&long_ok, true),
        ("", false),
        ("+", false),
        ("#", false),
        ("a/+", false),
        ("a/#", false),
        ("a+b", false),
        ("a#b", false),
        ("a\0", false),
        (&too_long, false),
    ];
    for (topic, want) in rows {
        assert_eq!(valid_topic_name(topic), *want, "{topic:.40?}");
    }
}

#[test]
fn topic_filter_validation() {
    let too_long = "a".repeat(MAX_TOPIC_LEN + 1);
    let rows: &[(&str, bool)] = &[
        ("#", true),
        ("+", true),
        ("a", true),
        ("a/#", true),
        ("a/+/b", true),
        ("+/+", true),
        ("/#", true),
        ("/+", true),
        ("a//+", true),
        ("+/#", true),
        ("a/", true),
        ("/", true),
        ("$SYS/#", true),
        ("", false),
        ("a/#/b", false),
        ("#/", false),
        ("#/#", false),
        ("a#", false),
        ("a/b#", false),
        ("a+/b", false),
        ("a/+b", false),
        ("##", false),
        ("++", false),
        ("a\0", false),
        (&too_long, false),
    ];
    for (filter, want) in rows {
        assert_eq!(valid_topic_filter(filter), *want, "{filter:.40?}");
    }
}

#[test]
fn filter_matching() {
    let rows: &[(&str, &str, bool)] = &[
        ("#", "a", true),
        ("#", "a/b", true),
        ("#", "/", true),
        ("#", "$SYS", false),
        ("#", "$SYS/a", false),
        ("+/a", "$SYS/a", false),
        ("+", "$SYS", false),
        ("+/#", "$SYS/a", false),
        ("$SYS/#", "$SYS/a", true),
        ("$SYS/#", "$SYS", true),
        ("$SYS/+", "$SYS/a", true),
        ("a/$x", "a/$x", true),
        ("a/+", "a/$x", true),
        ("a/#", "a", true),
        ("a/#", "a/", true),
        ("a/#", "a/b/c", true),
        ("a/#", "ab", false),
        ("a/#", "b/a", false),
        ("a/+", "a", false),
        ("a/+", "a/b", true),
        ("a/+", "a/", true),
        ("a/+", "a/b/c", false),
        ("+", "a", true),
        ("+", "a/b", false),
        ("+", "/", false),
        ("+/+", "/", true),
        ("/+", "/a", true),
        ("/+", "a", false),
        ("+/#", "a", true),
        ("a", "a", true),
        ("a", "A", false),
        ("a/b", "a/b/", false),
        ("a/b/", "a/b", false),
        ("a//b", "a//b", true),
        ("a//b", "a/b", false),
        ("a/+/b", "a//b", true),
        // Invalid inputs never match.
        ("a/#/b", "a/x/b", false),
        ("a/b", "a/+", false),
        ("+", "", false),
        ("", "", false),
        ("a\0", "a\0", false),
    ];
    for (filter, topic, want) in rows {
        assert_eq!(filter_matches(filter, topic), *want, "{filter} vs {topic}");
    }
}

#[test]
fn filter_containment() {
    let reply = "$EDC/PA/CID/PROV-V1/REPLY/#";
    let rows: &[(&str, &str, bool)] = &[
        ("$EDC/PA/CID/PROV-V1/REPLY/#", reply, true),
        ("$EDC/PA/CID/PROV-V1/REPLY/+", reply, true),
        ("$EDC/PA/CID/PROV-V1/REPLY/r-1", reply, true),
        ("$EDC/PA/CID/PROV-V1/REPLY", reply, true),
        ("$EDC/PA/CID/PROV-V1/REPLY/", reply, true),
        ("$EDC/PA/CID/PROV-V1/REPLY/+/+/#", reply, true),
        ("#", reply, false),
        ("+/PA/CID/PROV-V1/REPLY/#", reply, false),
        ("$EDC/#", reply, false),
        ("$EDC/PA/+/PROV-V1/REPLY/#", reply, false),
        ("$EDC/PA/CID/PROV-V1/#", reply, false),
        ("$EDC/PA/CID/PROV-V1/+", reply, false),
        ("$EDC/PA/CID/PROV-V1/REPLYX/#", reply, false),
        ("$EDC/PA/CID2/PROV-V1/REPLY/#", reply, false),
        ("$EDC/PA/CID/PROV-V1/REPLY/#/x", reply, false),
        ("$EDC/PA/CID/PROV-V1/reply/#", reply, false),
        (
            "$EDC/PA/CID/PROV-V1/REPLY/#",
            "$EDC/PA/CID/PROV-V1/REPLY/#/x",
            false,
        ),
        ("a/b", "a/#", true),
        ("a", "a/#", true),
        ("a/#", "a/#", true),
        ("a/#", "a", false),
        ("a/#", "a/+", false),
        ("a/#", "a/+/#", false),
        ("a/+", "a/#", true),
        ("a/+", "a/+", true),
        ("a/b", "a/+", true),
        ("a/+", "a/b", false),
        ("a/+/b", "a/+/+", true),
        ("a/+/+", "a/+/b", false),
        ("a", "a", true),
        ("a", "b", false),
        ("a", "+", true),
        ("a/b", "+", false),
        ("#", "#", true),
        ("+", "#", true),
        ("+/#", "#", true),
        ("+/x", "#", true),
        ("#", "+/#", true),
        ("#", "+", false),
        ("#", "+/+/#", false),
        // `/#` cannot match its parent (the empty string is not a topic).
        ("/#", "/+/#", true),
        ("/#", "+/+/#", true),
        ("a/#", "a/+/#", false),
        ("//#", "//+/#", false),
        ("$x", "#", false),
        ("$x/#", "#", false),
        ("$x/y", "+/y", false),
        ("$x/y", "$x/+", true),
        ("$x/#", "$x/#", true),
        ("$x", "$x/#", true),
        ("x/$y", "x/+", true),
        ("/", "+/+", true),
        ("/", "#", true),
        ("/a", "/#", true),
        ("", "#", false),
        ("a", "", false),
    ];
    for (filter, scope, want) in rows {
        assert_eq!(
            filter_is_within(filter, scope),
            *want,
            "{filter} within {scope}"
        );
    }
}

/// Containment against its definition, exhaustively over short filters: `f` is within `s`
/// exactly when every topic of a universe matched by `f` is matched by `s`. The universe
/// holds the filters' literals plus `z` (a value no filter names) up to one level deeper than
/// any filter, which is enough to witness every non-containment.
#[test]
fn containment_agrees_with_its_definition() {
    let filter_levels = ["a", "$x", "", "+", "#"];
    let topic_levels = ["a", "$x", "", "z"];
    let filters: Vec<String> = words(&filter_levels, 3)
        .into_iter()
        .filter(|f| valid_topic_filter(f))
        .collect();
    let topics: Vec<String> = words(&topic_levels, 4);
    let matched: Vec<Vec<bool>> = filters
        .iter()
        .map(|f| topics.iter().map(|t| filter_matches(f, t)).collect())
        .collect();
    for (i, f) in filters.iter().enumerate() {
        for (j, s) in filters.iter().enumerate() {
            let by_definition = (0..topics.len()).all(|t| !matched[i][t] || matched[j][t]);
            assert_eq!(filter_is_within(f, s), by_definition, "{f:?} within {s:?}");
        }
    }
}

/// All `/`-joined words of 1 to `max` levels over `alphabet`.
fn words(alphabet: &[&str], max: usize) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    let mut current: Vec<String> = alphabet.iter().map(|s| s.to_string()).collect();
    for _ in 0..max {
        all.extend(current.iter().cloned());
        current = current
            .iter()
            .flat_map(|w| alphabet.iter().map(move |l| format!("{w}/{l}")))
            .collect();
    }
    all
}

#[test]
fn provisioning_subscribe() {
    let rows: &[(&str, Decision)] = &[
        ("$EDC/provision/dev-1/PROV-V1/REPLY/#", Decision::Allow),
        ("$EDC/provision/dev-1/PROV-V1/REPLY/+", Decision::Allow),
        ("$EDC/provision/dev-1/PROV-V1/REPLY/r-1", Decision::Allow),
        ("$EDC/provision/dev-1/PROV-V1/REPLY/error", Decision::Allow),
        ("$EDC/provision/dev-1/PROV-V1/REPLY", Decision::Allow),
        ("$EDC/provision/dev-1/PROV-V1/REPLY/", Decision::Allow),
        ("$EDC/provision/dev-1/PROV-V1/REPLY//#", Decision::Allow),
        ("$EDC/provision/dev-1/PROV-V1/REPLY/+/x", Decision::Allow),
        // A Kura-native device (PROTOCOL.md 3 and 8.1) subscribes to its whole `$EDC/PA/CID/#`,
        // where Fleetgate's CONF-V1 requests arrive; before 8.1 these were refused.
        ("$EDC/provision/dev-1/#", Decision::Allow),
        ("$EDC/provision/dev-1", Decision::Allow),
        ("$EDC/provision/dev-1/CONF-V1/#", Decision::Allow),
        ("$EDC/provision/dev-1/PROV-V1/#", Decision::Allow),
        ("$EDC/provision/dev-1/PROV-V1/+/#", Decision::Allow),
        ("$EDC/provision/dev-1/PROV-V1/+/r-1", Decision::Allow),
        ("$EDC/provision/dev-1/PROV-V1/REPLYX/#", Decision::Allow),
        ("$EDC/provision/dev-1/PROV-V1/REPL/#", Decision::Allow),
        ("$EDC/provision/dev-1/PROV-V2/REPLY/#", Decision::Allow),
        ("$EDC/provision/dev-1/PROV-V1/reply/#", Decision::Allow),
        ("$EDC/provision/dev-1//PROV-V1/REPLY/#", Decision::Allow),
        ("$EDC/provision/dev-1/PROV-V1", Decision::Allow),
        (
            "$EDC/provision/dev-1/PROV-V1/EXEC/provision",
            Decision::Allow,
        ),
        ("$EDC/provision/dev-1/PROV-V1/EXEC/#", Decision::Allow),
        // Wider than the scope.
        ("#", Decision::Deny),
        ("+/#", Decision::Deny),
        ("+", Decision::Deny),
        ("$EDC/#", Decision::Deny),
        ("$EDC/provision/#", Decision::Deny),
        ("$EDC/provision/+/PROV-V1/REPLY/#", Decision::Deny),
        ("$EDC/+/dev-1/PROV-V1/REPLY/#", Decision::Deny),
        ("+/provision/dev-1/PROV-V1/REPLY/#", Decision::Deny),
        // Other devices, other accounts.
        ("$EDC/provision/dev-2/PROV-V1/REPLY/#", Decision::Deny),
        ("$EDC/provision/dev-10/PROV-V1/REPLY/#", Decision::Deny),
        ("$EDC/provision/dev-/PROV-V1/REPLY/#", Decision::Deny),
        ("$EDC/acme/dev-1/PROV-V1/REPLY/#", Decision::Deny),
        ("$EDC/provisionX/dev-1/PROV-V1/REPLY/#", Decision::Deny),
        // Only similar.
        ("$edc/provision/dev-1/PROV-V1/REPLY/#", Decision::Deny),
        ("$EDC/Provision/dev-1/PROV-V1/REPLY/#", Decision::Deny),
        ("$EDC/provision/DEV-1/PROV-V1/REPLY/#", Decision::Deny),
        ("EDC/provision/dev-1/PROV-V1/REPLY/#", Decision::Deny),
        ("/$EDC/provision/dev-1/PROV-V1/REPLY/#", Decision::Deny),
        ("$EDC//provision/dev-1/PROV-V1/REPLY/#", Decision::Deny),
        (
            "$share/g/$EDC/provision/dev-1/PROV-V1/REPLY/#",
            Decision::Deny,
        ),
        // Invalid filters.
        ("$EDC/provision/dev-1/PROV-V1/REPLY/#/x", Decision::Deny),
        ("$EDC/provision/dev-1/PROV-V1/REPLY/#/", Decision::Deny),
        ("$EDC/provision/dev-1/PROV-V1/REPLY/x#", Decision::Deny),
        ("$EDC/provision/dev-1/PROV-V1/REPLY/r+", Decision::Deny),
        ("$EDC/provision/dev-1/PROV-V1/REPLY/\0", Decision::Deny),
        ("", Decision::Deny),
    ];
    for (filter, want) in rows {
        assert_eq!(may_subscribe(&prov(), filter), *want, "{filter:?}");
    }
}

#[test]
fn provisioning_publish() {
    let rows: &[(&str, Decision)] = &[
        (
            "$EDC/provision/dev-1/PROV-V1/EXEC/provision",
            Decision::Allow,
        ),
        (
            "$EDC/provision/dev-1/PROV-V1/EXEC/provision/",
            Decision::Deny,
        ),
        (
            "$EDC/provision/dev-1/PROV-V1/EXEC/provision/x",
            Decision::Deny,
        ),
        (
            "$EDC/provision/dev-1/PROV-V1/EXEC/Provision",
            Decision::Deny,
        ),
        (
            "$EDC/provision/dev-1/PROV-V1/EXEC/provisionX",
            Decision::Deny,
        ),
        ("$EDC/provision/dev-1/PROV-V1/EXEC", Decision::Deny),
        ("$EDC/provision/dev-1/PROV-V1/EXEC/", Decision::Deny),
        ("$EDC/provision/dev-1/PROV-V1/EXEC/+", Decision::Deny),
        ("$EDC/provision/dev-1/PROV-V1/EXEC/#", Decision::Deny),
        ("$EDC/provision/+/PROV-V1/EXEC/provision", Decision::Deny),
        (
            "$EDC/provision/dev-2/PROV-V1/EXEC/provision",
            Decision::Deny,
        ),
        ("$EDC/acme/dev-1/PROV-V1/EXEC/provision", Decision::Deny),
        (
            "$edc/provision/dev-1/PROV-V1/EXEC/provision",
            Decision::Deny,
        ),
        (
            "/$EDC/provision/dev-1/PROV-V1/EXEC/provision",
            Decision::Deny,
        ),
        (
            "$EDC/provision/dev-1/PROV-V1/EXEC/provision\0",
            Decision::Deny,
        ),
        // Kura-native (PROTOCOL.md 3 and 8.1): BIRTH, DC, APPS, LWT, and CONF-V1 replies to
        // Fleetgate's requester only.
        ("$EDC/provision/dev-1/MQTT/BIRTH", Decision::Allow),
        ("$EDC/provision/dev-1/MQTT/DC", Decision::Allow),
        ("$EDC/provision/dev-1/MQTT/LWT", Decision::Allow),
        ("$EDC/provision/dev-1/MQTT/APPS", Decision::Allow),
        (
            "$EDC/provision/fleetgate/CONF-V1/REPLY/r-1",
            Decision::Allow,
        ),
        ("$EDC/provision/dev-2/MQTT/BIRTH", Decision::Deny),
        ("$EDC/provision/dev-1/MQTT/+", Decision::Deny),
        ("$EDC/provision/dev-1/CONF-V1/REPLY/r-1", Decision::Deny),
        ("$EDC/provision/other/CONF-V1/REPLY/r-1", Decision::Deny),
        ("$EDC/provision/fleetgate/CMD-V1/REPLY/r-1", Decision::Deny),
        ("$EDC/provision/fleetgate/CONF-V1/EXEC/r-1", Decision::Deny),
        ("$EDC/provision/+/CONF-V1/REPLY/r-1", Decision::Deny),
        ("$EDC/acme/fleetgate/CONF-V1/REPLY/r-1", Decision::Deny),
        ("$EDC/provision/dev-1/data", Decision::Deny),
        // Its own reply topic: replies come from Fleetgate only.
        ("$EDC/provision/dev-1/PROV-V1/REPLY/r-1", Decision::Deny),
        ("$EDC/provision/dev-1/PROV-V1/REPLY/error", Decision::Deny),
        ("acme/dev-1/data", Decision::Deny),
        ("$SYS/x", Decision::Deny),
        ("a", Decision::Deny),
        ("", Decision::Deny),
    ];
    for (topic, want) in rows {
        assert_eq!(may_publish(&prov(), topic), *want, "{topic:?}");
    }
}

#[test]
fn device_subscribe() {
    let rows: &[(&str, Decision)] = &[
        ("$EDC/acme/dev-1/#", Decision::Allow),
        ("$EDC/acme/dev-1", Decision::Allow),
        ("$EDC/acme/dev-1/+", Decision::Allow),
        ("$EDC/acme/dev-1/CONF-V1/REPLY/#", Decision::Allow),
        ("acme/dev-1/#", Decision::Allow),
        ("acme/dev-1", Decision::Allow),
        ("acme/dev-1/", Decision::Allow),
        ("acme/dev-1/+/x", Decision::Allow),
        ("acme/dev-1/cmd", Decision::Allow),
        ("#", Decision::Deny),
        ("+/#", Decision::Deny),
        ("$EDC/#", Decision::Deny),
        ("$EDC/acme/#", Decision::Deny),
        ("$EDC/acme/+/#", Decision::Deny),
        ("$EDC/+/dev-1/#", Decision::Deny),
        ("acme/#", Decision::Deny),
        ("acme/+", Decision::Deny),
        ("acme/+/#", Decision::Deny),
        ("acme/+/cmd", Decision::Deny),
        ("+/dev-1/#", Decision::Deny),
        ("acme", Decision::Deny),
        ("acme/dev-2/#", Decision::Deny),
        ("acme/dev-12/#", Decision::Deny),
        ("acme/dev-1x/#", Decision::Deny),
        ("$EDC/acme/dev-2/#", Decision::Deny),
        ("other/dev-1/#", Decision::Deny),
        ("$EDC/other/dev-1/#", Decision::Deny),
        ("Acme/dev-1/#", Decision::Deny),
        ("acme/Dev-1/#", Decision::Deny),
        ("/acme/dev-1/#", Decision::Deny),
        ("acme//dev-1/#", Decision::Deny),
        ("acme/dev-1/#/x", Decision::Deny),
        ("acme/dev-1#", Decision::Deny),
        ("$EDC/provision/dev-1/PROV-V1/REPLY/#", Decision::Deny),
        ("$share/g/acme/dev-1/#", Decision::Deny),
        ("", Decision::Deny),
    ];
    for (filter, want) in rows {
        assert_eq!(may_subscribe(&device(), filter), *want, "{filter:?}");
    }
}

#[test]
fn device_publish() {
    let rows: &[(&str, Decision)] = &[
        ("acme/dev-1/data", Decision::Allow),
        ("acme/dev-1", Decision::Allow),
        ("acme/dev-1/", Decision::Allow),
        ("acme/dev-1/a/b/c", Decision::Allow),
        ("$EDC/acme/dev-1/MQTT/BIRTH", Decision::Allow),
        ("$EDC/acme/dev-1", Decision::Allow),
        ("acme/dev-1/+", Decision::Deny),
        ("acme/dev-1/#", Decision::Deny),
        ("acme/dev-2/data", Decision::Deny),
        ("acme/dev-12/data", Decision::Deny),
        ("acme", Decision::Deny),
        ("acme/", Decision::Deny),
        ("$EDC/acme/dev-2/MQTT/BIRTH", Decision::Deny),
        ("$EDC/other/dev-1/x", Decision::Deny),
        ("other/dev-1/x", Decision::Deny),
        ("ACME/dev-1/data", Decision::Deny),
        ("/acme/dev-1/data", Decision::Deny),
        (
            "$EDC/provision/dev-1/PROV-V1/EXEC/provision",
            Decision::Deny,
        ),
        ("acme/dev-1/\0", Decision::Deny),
        ("", Decision::Deny),
    ];
    for (topic, want) in rows {
        assert_eq!(may_publish(&device(), topic), *want, "{topic:?}");
    }
}

/// An account user `app-1` of `acme` with `permissions`.
fn app(permissions: &[Permission]) -> Session {
    Session::Account {
        account: "acme".into(),
        client_id: "app-1".into(),
        permissions: Permissions::of(permissions),
    }
}

#[test]
fn device_publishes_kura_replies_and_its_own_notifications() {
    let rows: &[(&str, Decision)] = &[
        ("$EDC/acme/fleetgate/CONF-V1/REPLY/r-1", Decision::Allow),
        ("$EDC/acme/app-1/CMD-V1/REPLY/r-2", Decision::Allow),
        ("$EDC/acme/app-1/CMD-V1/REPLY", Decision::Allow),
        (
            "$EDC/acme/app-1/DEPLOY-V2/NOTIFY/dev-1/download",
            Decision::Allow,
        ),
        ("$EDC/acme/app-1/DEPLOY-V2/NOTIFY/dev-1", Decision::Allow),
        (
            "$EDC/acme/app-1/DEPLOY-V2/NOTIFY/dev-2/download",
            Decision::Deny,
        ),
        ("$EDC/acme/app-1/DEPLOY-V2/NOTIFY", Decision::Deny),
        ("$EDC/other/app-1/CMD-V1/REPLY/r-2", Decision::Deny),
        ("$EDC/acme/app-1/CMD-V1/EXEC/command", Decision::Deny),
        ("$EDC/acme/app-1/REPLY/x", Decision::Deny),
        ("acme/app-1/CMD-V1/REPLY/r-2", Decision::Deny),
    ];
    for (topic, want) in rows {
        assert_eq!(may_publish(&device(), topic), *want, "{topic:?}");
    }
    // Subscriptions do not widen: replies to others are not the device's to read.
    assert_eq!(
        may_subscribe(&device(), "$EDC/acme/+/+/REPLY/#"),
        Decision::Deny
    );
}

#[test]
fn account_user_subscribe() {
    use Permission::*;
    let all = [BrokerConnect, DataRead, DataWrite, DeviceRead, DeviceManage];
    // (permissions, filter, decision)
    let rows: &[(&[Permission], &str, Decision)] = &[
        (&[DataRead], "acme/#", Decision::Allow),
        (&[DataRead], "acme/+/data", Decision::Allow),
        (&[DataRead], "acme/dev-1/#", Decision::Allow),
        (&[DataRead], "acme", Decision::Allow),
        (&[DataRead], "other/#", Decision::Deny),
        (&[DataRead], "+/dev-1/#", Decision::Deny),
        (&[DataRead], "$EDC/acme/+/MQTT/#", Decision::Deny),
        (&[DataWrite], "acme/#", Decision::Deny),
        (&[DeviceRead], "$EDC/acme/+/MQTT/#", Decision::Allow),
        (&[DeviceRead], "$EDC/acme/dev-1/MQTT/BIRTH", Decision::Allow),
        (&[DeviceRead], "$EDC/acme/+/MQTT/+", Decision::Allow),
        (&[DeviceRead], "$EDC/acme/+/+/#", Decision::Deny),
        (&[DeviceRead], "$EDC/acme/dev-1/#", Decision::Deny),
        (&[DeviceRead], "$EDC/acme/#", Decision::Deny),
        (&[DeviceRead], "$EDC/other/+/MQTT/#", Decision::Deny),
        (&[DeviceRead], "acme/#", Decision::Deny),
        (&[DeviceManage], "$EDC/acme/app-1/#", Decision::Allow),
        (
            &[DeviceManage],
            "$EDC/acme/app-1/CONF-V1/REPLY/+",
            Decision::Allow,
        ),
        (&[DeviceManage], "$EDC/acme/app-2/#", Decision::Deny),
        (&[DeviceManage], "$EDC/acme/+/MQTT/#", Decision::Deny),
        (&[DeviceManage], "$EDC/other/app-1/#", Decision::Deny),
        (&[BrokerConnect], "acme/#", Decision::Deny),
        (&[], "acme/#", Decision::Deny),
        (&all, "#", Decision::Deny),
        (&all, "+/#", Decision::Deny),
        (&all, "+", Decision::Deny),
        (&all, "$EDC/#", Decision::Deny),
        (&all, "$EDC/+/+/MQTT/#", Decision::Deny),
        (&all, "other/#", Decision::Deny),
        (&all, "$EDC/other/+/MQTT/#", Decision::Deny),
        (&all, "$share/g/acme/#", Decision::Deny),
        (&all, "acme/#/x", Decision::Deny),
        (&all, "", Decision::Deny),
    ];
    for (permissions, filter, want) in rows {
        assert_eq!(
            may_subscribe(&app(permissions), filter),
            *want,
            "{permissions:?} {filter:?}"
        );
    }
}

#[test]
fn account_user_publish() {
    use Permission::*;
    let all = [BrokerConnect, DataRead, DataWrite, DeviceRead, DeviceManage];
    let rows: &[(&[Permission], &str, Decision)] = &[
        (&[DataWrite], "acme/dev-1/cmd", Decision::Allow),
        (&[DataWrite], "acme", Decision::Allow),
        (&[DataWrite], "other/dev-1/cmd", Decision::Deny),
        (
            &[DataWrite],
            "$EDC/acme/dev-1/CONF-V1/GET/configurations",
            Decision::Deny,
        ),
        (&[DataRead], "acme/dev-1/cmd", Decision::Deny),
        (
            &[DeviceManage],
            "$EDC/acme/dev-1/CONF-V1/GET/configurations",
            Decision::Allow,
        ),
        (
            &[DeviceManage],
            "$EDC/acme/dev-1/CONF-V1/PUT/configurations/pid",
            Decision::Allow,
        ),
        (
            &[DeviceManage],
            "$EDC/acme/dev-1/DEPLOY-V2/POST/x",
            Decision::Allow,
        ),
        (
            &[DeviceManage],
            "$EDC/acme/dev-1/DEPLOY-V2/DEL/x",
            Decision::Allow,
        ),
        (
            &[DeviceManage],
            "$EDC/acme/dev-1/CMD-V1/EXEC/command",
            Decision::Allow,
        ),
        (
            &[DeviceManage],
            "$EDC/acme/dev-1/CMD-V1/EXEC",
            Decision::Allow,
        ),
        (
            &[DeviceManage],
            "$EDC/acme/dev-1/CMD-V1/REPLY/r-1",
            Decision::Deny,
        ),
        (
            &[DeviceManage],
            "$EDC/acme/dev-1/MQTT/BIRTH",
            Decision::Deny,
        ),
        (
            &[DeviceManage],
            "$EDC/acme/dev-1/CMD-V1/exec/command",
            Decision::Deny,
        ),
        (&[DeviceManage], "$EDC/acme/dev-1/GET", Decision::Deny),
        (
            &[DeviceManage],
            "$EDC/other/dev-1/CONF-V1/GET/configurations",
            Decision::Deny,
        ),
        (&[DeviceManage], "acme/dev-1/cmd", Decision::Deny),
        (&[DeviceRead], "$EDC/acme/dev-1/MQTT/BIRTH", Decision::Deny),
        (&all, "other/x", Decision::Deny),
        (
            &all,
            "$EDC/other/dev-1/CONF-V1/GET/configurations",
            Decision::Deny,
        ),
        (&all, "$SYS/x", Decision::Deny),
        (&all, "acme/+", Decision::Deny),
        (&all, "", Decision::Deny),
    ];
    for (permissions, topic, want) in rows {
        assert_eq!(
            may_publish(&app(permissions), topic),
            *want,
            "{permissions:?} {topic:?}"
        );
    }
}

#[test]
fn unsafe_identities_are_denied_everything() {
    let identities: &[(&str, &str)] = &[
        ("acme", "a/b"),
        ("acme", "+"),
        ("acme", "#"),
        ("acme", "dev\0"),
        ("acme", ""),
        ("a/b", "dev-1"),
        ("a+", "dev-1"),
        ("#", "dev-1"),
        ("", "dev-1"),
        ("ac\0me", "dev-1"),
        // `$EDC/acme/#` would be account acme's whole space.
        ("$EDC", "acme"),
        ("$x", "dev-1"),
    ];
    for (account, client_id) in identities {
        for session in [
            Session::Provisioning {
                account: account.to_string(),
                client_id: client_id.to_string(),
                requester: "fleetgate".into(),
            },
            Session::Device {
                account: account.to_string(),
                client_id: client_id.to_string(),
            },
            Session::Account {
                account: account.to_string(),
                client_id: client_id.to_string(),
                permissions: Permissions::of(&Permission::ALL),
            },
        ] {
            // Built the way the session's own topics are built.
            let own = [
                format!("$EDC/{account}/{client_id}/PROV-V1/REPLY/#"),
                format!("$EDC/{account}/{client_id}/PROV-V1/EXEC/provision"),
                format!("$EDC/{account}/{client_id}/#"),
                format!("{account}/{client_id}/#"),
                format!("{account}/{client_id}/x"),
                format!("$EDC/{account}/{client_id}/x"),
                "$EDC/acme/x".to_string(),
                "#".to_string(),
            ];
            for t in &own {
                assert_eq!(
                    may_subscribe(&session, t),
                    Decision::Deny,
                    "{session:?} sub {t:?}"
                );
                assert_eq!(
                    may_publish(&session, t),
                    Decision::Deny,
                    "{session:?} pub {t:?}"
                );
            }
        }
    }
}

/// Deny by default: over a universe of filters and topics built from the session's own
/// names, wildcards and look-alikes, exactly the documented set is allowed and nothing else.
#[test]
fn deny_by_default() {
    assert_eq!(Decision::default(), Decision::Deny);
    assert!(!Decision::Deny.is_allowed());
    assert!(Decision::Allow.is_allowed());

    let alphabet = [
        "$EDC",
        "provision",
        "acme",
        "dev-1",
        "dev-2",
        "PROV-V1",
        "REPLY",
        "EXEC",
        "",
        "+",
        "#",
    ];
    let universe = words(&alphabet, 4);
    let extra = [
        "$EDC/provision/dev-1/PROV-V1/EXEC/provision",
        "$EDC/provision/dev-1/PROV-V1/REPLY/#",
        "$EDC/provision/dev-1/PROV-V1/REPLY/+",
        "$EDC/provision/dev-1/PROV-V1/REPLY/r-1",
        "$EDC/provision/dev-1/PROV-V1/REPLY",
        "$EDC/provision/dev-2/PROV-V1/EXEC/provision",
        "$EDC/provision/dev-1/PROV-V1/EXEC/provision/#",
        "$EDC/provision/dev-1/MQTT/BIRTH",
        "$EDC/provision/dev-1/MQTT/#",
        "$EDC/provision/dev-2/MQTT/BIRTH",
        "$EDC/provision/fleetgate/CONF-V1/REPLY/r-1",
        "$EDC/provision/fleetgate/CONF-V1/REPLY/#",
        "$EDC/provision/dev-1/CONF-V1/REPLY/r-1",
    ];
    let mut allowed: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for s in universe.iter().map(String::as_str).chain(extra) {
        for (label, session) in [("prov", prov()), ("device", device())] {
            if may_subscribe(&session, s).is_allowed() {
                allowed.entry(label).or_default().insert(format!("sub {s}"));
            }
            if may_publish(&session, s).is_allowed() {
                allowed.entry(label).or_default().insert(format!("pub {s}"));
            }
        }
    }
    // A provisioning session publishes exactly these; it subscribes to valid filters under
    // `$EDC/provision/dev-1` (PROTOCOL.md 3), and to nothing else.
    let mut prov_allowed: BTreeSet<String> = [
        "pub $EDC/provision/dev-1/PROV-V1/EXEC/provision",
        "pub $EDC/provision/dev-1/MQTT/BIRTH",
        "pub $EDC/provision/fleetgate/CONF-V1/REPLY/r-1",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for f in universe.iter().map(String::as_str).chain(extra) {
        let own = f == "$EDC/provision/dev-1" || f.starts_with("$EDC/provision/dev-1/");
        if own && valid_topic_filter(f) {
            prov_allowed.insert(format!("sub {f}"));
        }
    }
    assert!(prov_allowed.contains("sub $EDC/provision/dev-1/PROV-V1/REPLY/r-1"));
    assert_eq!(allowed.get("prov"), Some(&prov_allowed));
    // Every device allowance is under its own two prefixes.
    let device_allowed = &allowed["device"];
    assert!(!device_allowed.is_empty());
    for entry in device_allowed {
        let t = entry.split_once(' ').unwrap().1;
        assert!(
            t == "acme/dev-1"
                || t.starts_with("acme/dev-1/")
                || t == "$EDC/acme/dev-1"
                || t.starts_with("$EDC/acme/dev-1/"),
            "{entry}"
        );
    }
    assert!(device_allowed.contains("sub acme/dev-1/#"));
    assert!(device_allowed.contains("pub $EDC/acme/dev-1/REPLY"));

    // An account user with no permission may do nothing at all, and one with every
    // permission only what PROTOCOL.md 6.1's table names, all inside its own account.
    let nothing = app(&[]);
    let everything = app(&Permission::ALL);
    for s in universe.iter().map(String::as_str).chain(extra) {
        assert_eq!(may_subscribe(&nothing, s), Decision::Deny, "sub {s}");
        assert_eq!(may_publish(&nothing, s), Decision::Deny, "pub {s}");
        for (what, decision) in [
            ("sub", may_subscribe(&everything, s)),
            ("pub", may_publish(&everything, s)),
        ] {
            if decision.is_allowed() {
                assert!(
                    s == "acme" || s.starts_with("acme/") || s.starts_with("$EDC/acme/"),
                    "{what} {s}"
                );
            }
        }
    }
    for refused in ["#", "+/#", "$EDC/#", "+", "$EDC/+/#"] {
        assert_eq!(
            may_subscribe(&everything, refused),
            Decision::Deny,
            "{refused}"
        );
    }
}

#[test]
fn tree_fan_out() {
    let mut tree = SubscriptionTree::new();
    for k in 0..100u32 {
        assert_eq!(tree.insert("a/b", k, (k % 3) as u8), Ok(None));
    }
    let mut got = tree.matches("a/b");
    got.sort();
    let want: Vec<(u32, u8)> = (0..100).map(|k| (k, (k % 3) as u8)).collect();
    assert_eq!(got, want);
    assert!(tree.matches("a/c").is_empty());
    assert!(tree.matches("a").is_empty());
    assert_eq!(tree.len(), 100);
    assert_eq!(tree.subscriber_count(), 100);
}

#[test]
fn tree_overlapping_filters_give_each_subscriber_once_with_max_qos() {
    let mut tree = SubscriptionTree::new();
    tree.insert("a/#", "s1", 0).unwrap();
    tree.insert("a/b", "s1", 2).unwrap();
    tree.insert("a/+", "s1", 1).unwrap();
    tree.insert("#", "s1", 0).unwrap();
    tree.insert("+/b", "s2", 1).unwrap();
    tree.insert("a/b/#", "s2", 0).unwrap();
    tree.insert("a/c", "s3", 2).unwrap();
    let mut got = tree.matches("a/b");
    got.sort();
    assert_eq!(got, vec![("s1", 2), ("s2", 1)]);
    let mut got = tree.matches("a/c");
    got.sort();
    assert_eq!(got, vec![("s1", 1), ("s3", 2)]);
    let mut got = tree.matches("a");
    got.sort();
    assert_eq!(got, vec![("s1", 0)]);

    // Re-subscribing replaces the QoS and returns the old one.
    assert_eq!(tree.insert("a/b", "s1", 0), Ok(Some(2)));
    let mut got = tree.matches("a/b");
    got.sort();
    assert_eq!(got, vec![("s1", 1), ("s2", 1)]);
}

#[test]
fn tree_large_overlapping_fan_out_is_deduplicated() {
    let mut tree = SubscriptionTree::new();
    for k in 0..200u32 {
        tree.insert("x/#", k, 0).unwrap();
        tree.insert("x/+", k, 1).unwrap();
        if k % 2 == 0 {
            tree.insert("x/y", k, 2).unwrap();
        }
    }
    let mut out = vec![(9999, 0)];
    tree.matches_into("x/y", &mut out);
    assert_eq!(out[0], (9999, 0), "existing entries are left alone");
    let mut got = out.split_off(1);
    got.sort();
    let want: Vec<(u32, u8)> = (0..200)
        .map(|k| (k, if k % 2 == 0 { 2 } else { 1 }))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn tree_dollar_topics() {
    let mut tree = SubscriptionTree::new();
    tree.insert("#", "all", 0).unwrap();
    tree.insert("+/x", "plus", 0).unwrap();
    tree.insert("+/#", "plushash", 0).unwrap();
    tree.insert("$EDC/#", "edc", 1).unwrap();
    tree.insert("$EDC/+", "edcplus", 1).unwrap();
    tree.insert("a/+", "deeper", 1).unwrap();
    let mut got = tree.matches("$EDC/x");
    got.sort();
    assert_eq!(got, vec![("edc", 1), ("edcplus", 1)]);
    let mut got = tree.matches("other/x");
    got.sort();
    assert_eq!(got, vec![("all", 0), ("plus", 0), ("plushash", 0)]);
    // `$` only matters at the first level.
    let mut got = tree.matches("a/$x");
    got.sort();
    assert_eq!(got, vec![("all", 0), ("deeper", 1), ("plushash", 0)]);
}

#[test]
fn tree_removal_prunes() {
    let mut tree = SubscriptionTree::new();
    assert_eq!(tree.node_count(), 1);
    tree.insert("a/b/c", 1u8, 0).unwrap();
    tree.insert("a/+/c", 1, 0).unwrap();
    tree.insert("a/#", 2, 0).unwrap();
    tree.insert("a/b/c", 2, 1).unwrap();
    tree.insert("x/y/z/#", 1, 0).unwrap();
    assert_eq!(tree.len(), 5);

    assert!(!tree.remove("a/b/c", &3));
    assert!(!tree.remove("a/b", &1));
    assert!(!tree.remove("a/b/#/x", &1));
    assert!(tree.remove("a/b/c", &1));
    assert!(!tree.remove("a/b/c", &1));
    let mut got = tree.matches("a/b/c");
    got.sort();
    assert_eq!(got, vec![(1, 0), (2, 1)]);

    let mut filters: Vec<&str> = tree.filters_of(&1).collect();
    filters.sort();
    assert_eq!(filters, vec!["a/+/c", "x/y/z/#"]);
    assert_eq!(tree.remove_all(&1), 2);
    assert_eq!(tree.remove_all(&1), 0);
    assert_eq!(tree.filters_of(&1).count(), 0);
    let mut got = tree.matches("a/b/c");
    got.sort();
    assert_eq!(got, vec![(2, 1)]);
    assert!(tree.matches("x/y/z").is_empty());

    assert_eq!(tree.remove_all(&2), 2);
    assert!(tree.is_empty());
    assert_eq!(tree.subscriber_count(), 0);
    assert_eq!(tree.node_count(), 1, "every emptied node is pruned");
}

#[test]
fn tree_rejects_invalid_and_too_deep_filters() {
    let mut tree = SubscriptionTree::new();
    assert_eq!(tree.insert("a/#/b", 1, 0), Err(TreeError::InvalidFilter));
    assert_eq!(tree.insert("", 1, 0), Err(TreeError::InvalidFilter));
    assert_eq!(tree.insert("a+", 1, 0), Err(TreeError::InvalidFilter));
    let deepest = vec!["l"; MAX_TREE_LEVELS].join("/");
    let too_deep = vec!["l"; MAX_TREE_LEVELS + 1].join("/");
    assert_eq!(tree.insert(&deepest, 1, 0), Ok(None));
    assert_eq!(tree.insert(&too_deep, 1, 0), Err(TreeError::TooManyLevels));
    assert_eq!(tree.len(), 1);
    assert_eq!(tree.matches(&deepest), vec![(1, 0)]);
    // Topics deeper than the tree are matched by `#`, and do not recurse past its depth.
    tree.insert("l/#", 2, 0).unwrap();
    let very_deep_topic = vec!["l"; 30_000].join("/");
    assert!(valid_topic_name(&very_deep_topic));
    assert_eq!(tree.matches(&very_deep_topic), vec![(2, 0)]);
    assert!(
        tree.matches("l/+").is_empty(),
        "invalid topic names match nothing"
    );
    assert!(tree.matches("").is_empty());
}

/// The tree agrees with `filter_matches` over every short filter and topic.
#[test]
fn tree_agrees_with_filter_matches() {
    let filter_levels = ["a", "$x", "", "+", "#"];
    let topic_levels = ["a", "$x", "", "z"];
    let filters: Vec<String> = words(&filter_levels, 3)
        .into_iter()
        .filter(|f| valid_topic_filter(f))
        .collect();
    let mut tree = SubscriptionTree::new();
    for (i, f) in filters.iter().enumerate() {
        tree.insert(f, i, (i % 3) as u8).unwrap();
        // A second, shared subscriber on every filter exercises deduplication.
        tree.insert(f, usize::MAX, (i % 3) as u8).unwrap();
    }
    for t in words(&topic_levels, 4) {
        let mut got = tree.matches(&t);
        got.sort();
        let mut want: Vec<(usize, u8)> = filters
            .iter()
            .enumerate()
            .filter(|(_, f)| filter_matches(f, &t))
            .map(|(i, _)| (i, (i % 3) as u8))
            .collect();
        if let Some(max) = want.iter().map(|(_, q)| *q).max() {
            want.push((usize::MAX, max));
        }
        assert_eq!(got, want, "topic {t:?}");
    }
    for (i, f) in filters.iter().enumerate() {
        assert!(tree.remove(f, &i));
    }
    assert_eq!(tree.remove_all(&usize::MAX), filters.len());
    assert!(tree.is_empty());
    assert_eq!(tree.node_count(), 1);
}

#[test]
fn client_ids_that_may_become_a_topic_level() {
    for (id, valid) in [
        ("dev-1", true),
        ("a.b_c:d@e-f", true),
        (&"x".repeat(MAX_CLIENT_ID) as &str, true),
        ("", false),
        (&"x".repeat(MAX_CLIENT_ID + 1), false),
        ("a/b", false),
        ("a+", false),
        ("#", false),
        ("$EDC", false),
        ("a b", false),
        ("é", false),
    ] {
        assert_eq!(valid_client_id(id), valid, "{id:?}");
    }
}

#[test]
fn rules_list_what_the_decisions_allow() {
    let app_all = app(&Permission::ALL);
    assert_eq!(
        rules(&device(), Access::Subscribe),
        ["$EDC/acme/dev-1/#", "acme/dev-1/#"]
    );
    assert_eq!(
        rules(&app(&[Permission::DataRead]), Access::Publish),
        Vec::<String>::new()
    );
    assert_eq!(rules(&app_all, Access::Publish).len(), 6);
    // Every topic and filter over levels that matter: a decision allows exactly what one of
    // the listed scopes covers (so a broker enforcing the list decides as Fleetgate does).
    let levels = [
        "$EDC", "acme", "dev-1", "app-1", "MQTT", "REPLY", "GET", "+", "#", "x",
    ];
    for session in [prov(), device(), app_all, app(&[Permission::DeviceRead])] {
        let publish = rules(&session, Access::Publish);
        let subscribe = rules(&session, Access::Subscribe);
        for w in words(&levels, 4) {
            let by_rules = valid_topic_name(&w) && publish.iter().any(|r| filter_matches(r, &w));
            assert_eq!(
                may_publish(&session, &w).is_allowed(),
                by_rules,
                "{session:?} publish {w}"
            );
            let by_rules = subscribe.iter().any(|r| filter_is_within(&w, r));
            assert_eq!(
                may_subscribe(&session, &w).is_allowed(),
                by_rules,
                "{session:?} subscribe {w}"
            );
        }
    }
    let unsafe_id = Session::Device {
        account: "acme".into(),
        client_id: "a/b".into(),
    };
    assert!(rules(&unsafe_id, Access::Publish).is_empty());
}

#[test]
fn shared_subscriptions_have_a_plain_filter() {
    assert_eq!(plain_filter("$share/g/acme/#"), "acme/#");
    assert_eq!(plain_filter("acme/#"), "acme/#");
    assert_eq!(plain_filter("$share/g"), "$share/g");
}
