//! Property-based fuzzing of topic matching and the ACL (proptest; see docs/robustness.md).
//!
//! - `filter_matches` agrees with a naive reference matcher written here;
//! - `filter_is_within(f, scope)` is sound (every sampled topic `f` matches, `scope` matches)
//!   and agrees with a brute-force containment check over a finite topic universe;
//! - `may_subscribe` / `may_publish` never allow anything outside the session's namespace, and
//!   allow what is inside it;
//! - `SubscriptionTree::matches` agrees with the reference matcher.
//!
//! Bounded for CI (`PROPTEST_CASES` overrides the default number of cases per target).

use std::collections::BTreeSet;

use fleetgate_acl::{
    Permission, Permissions, Session, SubscriptionTree, filter_is_within, filter_matches,
    may_publish, may_subscribe, valid_topic_filter, valid_topic_name,
};
use proptest::prelude::*;

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("tests/regressions/prop.txt"),
        )),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- reference model

fn ref_valid_name(t: &str) -> bool {
    !t.is_empty() && t.len() <= 65_535 && !t.chars().any(|c| c == '+' || c == '#' || c == '\0')
}

fn ref_valid_filter(f: &str) -> bool {
    if f.is_empty() || f.len() > 65_535 || f.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = f.split('/').collect();
    levels.iter().enumerate().all(|(i, l)| match *l {
        "+" => true,
        "#" => i == levels.len() - 1,
        other => !other.contains('+') && !other.contains('#'),
    })
}

fn ref_levels(f: &[&str], t: &[&str]) -> bool {
    match (f.split_first(), t.split_first()) {
        (Some((&"#", _)), _) => true,
        (None, None) => true,
        (Some((&"+", fr)), Some((_, tr))) => ref_levels(fr, tr),
        (Some((fl, fr)), Some((tl, tr))) => fl == tl && ref_levels(fr, tr),
        _ => false,
    }
}

/// MQTT 3.1.1 / 5.0 section 4.7, written the obvious way.
fn ref_matches(filter: &str, topic: &str) -> bool {
    if !ref_valid_filter(filter) || !ref_valid_name(topic) {
        return false;
    }
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    if topic.starts_with('$') && (f[0] == "+" || f[0] == "#") {
        return false;
    }
    ref_levels(&f, &t)
}

/// Containment in a scope of literal levels followed by `#` (every namespace is one): the
/// filter must start with exactly those literals (a wildcard there would reach other levels;
/// fewer levels, or a `#` among them, would reach a parent outside the scope).
fn within_prefix_scope(filter: &str, scope: &str) -> bool {
    let prefix: Vec<&str> = scope.strip_suffix("/#").unwrap().split('/').collect();
    let levels: Vec<&str> = filter.split('/').collect();
    ref_valid_filter(filter) && levels.len() >= prefix.len() && levels[..prefix.len()] == prefix[..]
}

/// Every topic of at most `depth` levels over `alphabet`.
fn universe(alphabet: &[String], depth: usize) -> Vec<String> {
    let mut all = Vec::new();
    let mut frontier: Vec<String> = alphabet.to_vec();
    for _ in 0..depth {
        all.extend(frontier.iter().cloned());
        frontier = frontier
            .iter()
            .flat_map(|p| alphabet.iter().map(move |l| format!("{p}/{l}")))
            .collect();
    }
    all.into_iter().filter(|t| ref_valid_name(t)).collect()
}

/// Containment decided by brute force: the literals of both filters, plus a fresh level, an
/// empty level and a fresh `$` level, stand for every possible level; one level more than the
/// longer filter stands for every depth.
fn brute_within(filter: &str, scope: &str) -> bool {
    let mut alphabet: BTreeSet<String> = ["zz", "", "$zz"].iter().map(|s| s.to_string()).collect();
    for l in filter.split('/').chain(scope.split('/')) {
        if l != "+" && l != "#" {
            alphabet.insert(l.to_string());
        }
    }
    let depth = filter.split('/').count().max(scope.split('/').count()) + 1;
    let alphabet: Vec<String> = alphabet.into_iter().collect();
    universe(&alphabet, depth)
        .iter()
        .all(|t| !ref_matches(filter, t) || ref_matches(scope, t))
}

// ---------------------------------------------------------------- strategies

const LEVELS: &[&str] = &[
    "a",
    "b",
    "",
    "$SYS",
    "$EDC",
    "acme",
    "dev-1",
    "PROV-V1",
    "REPLY",
    "EXEC",
    "provision",
    "x",
];

fn literal_level() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(LEVELS).prop_map(String::from),
        1 => "[a-z$]{0,3}",
        1 => prop::sample::select(vec!["a+", "#b", "\0", "é", " "]).prop_map(String::from),
    ]
}

fn filter_level() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => literal_level(),
        2 => Just("+".to_string()),
        1 => Just("#".to_string()),
    ]
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(literal_level(), 1..6).prop_map(|v| v.join("/"))
}

fn filter() -> impl Strategy<Value = String> {
    prop::collection::vec(filter_level(), 1..6).prop_map(|v| v.join("/"))
}

/// A filter with few levels and few distinct literals, for the brute-force containment check.
fn small_filter() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "", "$x", "+", "#"]),
        1..4,
    )
    .prop_map(|v| v.join("/"))
}

/// Topics `filter` is likely to match: its wildcards replaced by sampled levels.
fn instantiate(filter: &str, fill: &[String], seed: usize) -> String {
    let mut out = Vec::new();
    let mut k = seed;
    let mut next = || {
        k = k
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        k >> 33
    };
    for l in filter.split('/') {
        match l {
            "+" => out.push(fill[next() % fill.len()].clone()),
            "#" => {
                for _ in 0..next() % 3 {
                    out.push(fill[next() % fill.len()].clone());
                }
            }
            other => out.push(other.to_string()),
        }
    }
    out.join("/")
}

fn account_or_cid() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["acme", "dev-1", "provision", "a", "x"]).prop_map(String::from),
        1 => prop::sample::select(vec!["", "$EDC", "$x", "a/b", "+", "#", "a+", "\0", "PROV-V1"])
            .prop_map(String::from),
        1 => "[a-z/+#$]{0,4}",
    ]
}

fn session() -> impl Strategy<Value = Session> {
    (any::<bool>(), account_or_cid(), account_or_cid()).prop_map(|(prov, account, client_id)| {
        if prov {
            Session::Provisioning {
                account,
                client_id,
                requester: "fleetgate".into(),
            }
        } else {
            Session::Device { account, client_id }
        }
    })
}

fn safe(session: &Session) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && !s.contains('/')
            && !s.contains('+')
            && !s.contains('#')
            && !s.contains('\0')
    };
    ok(session.account()) && ok(session.client_id()) && !session.account().starts_with('$')
}

/// The topics a session may reach, as filters (PROTOCOL.md sections 3 and 6).
fn namespace(session: &Session) -> Vec<String> {
    let (a, c) = (session.account(), session.client_id());
    match session {
        Session::Provisioning { .. } => vec![format!("$EDC/{a}/{c}/#")],
        Session::Device { .. } => vec![format!("$EDC/{a}/{c}/#"), format!("{a}/{c}/#")],
        Session::Account { .. } => unreachable!("the strategy makes no account users"),
    }
}

fn in_namespace(session: &Session, topic: &str) -> bool {
    namespace(session).iter().any(|s| ref_matches(s, topic))
}

/// What a device may publish beyond its own namespace: Kura replies and notifications to a
/// requester of its account (PROTOCOL.md 6.1).
fn in_publish_namespace(session: &Session, topic: &str) -> bool {
    let (a, c) = (session.account(), session.client_id());
    in_namespace(session, topic)
        || ref_matches(&format!("$EDC/{a}/+/+/REPLY/#"), topic)
        || ref_matches(&format!("$EDC/{a}/+/+/NOTIFY/{c}/#"), topic)
}

fn fill_levels(session: &Session) -> Vec<String> {
    let mut fill: Vec<String> = LEVELS.iter().map(|s| s.to_string()).collect();
    fill.push(session.account().to_string());
    fill.push(session.client_id().to_string());
    fill
}

// ---------------------------------------------------------------- properties

/// Containment in a scope of literal and `+` levels ending in `/#`, level by level: the
/// filter's levels under the scope's literals are those literals, under its `+` any single
/// level (not `#`, which would reach deeper than one level there).
fn within_scope(filter: &str, scope: &str) -> bool {
    let prefix: Vec<&str> = scope.strip_suffix("/#").unwrap().split('/').collect();
    let levels: Vec<&str> = filter.split('/').collect();
    ref_valid_filter(filter)
        && levels.len() >= prefix.len()
        && prefix
            .iter()
            .zip(&levels)
            .all(|(p, l)| if *p == "+" { *l != "#" } else { p == l })
}

/// An account user with any set of permissions.
fn account_user() -> impl Strategy<Value = Session> {
    (
        account_or_cid(),
        account_or_cid(),
        prop::collection::vec(prop::sample::select(Permission::ALL.to_vec()), 0..5),
    )
        .prop_map(|(account, client_id, permissions)| Session::Account {
            account,
            client_id,
            permissions: Permissions::of(&permissions),
        })
}

/// PROTOCOL.md 6.1's table for an account user: the topics it may reach, as filters.
fn account_scopes(session: &Session, publish: bool) -> Vec<String> {
    let Session::Account {
        account: a,
        client_id: c,
        permissions,
    } = session
    else {
        unreachable!("account users only")
    };
    let mut scopes = Vec::new();
    if publish {
        if permissions.has(Permission::DataWrite) {
            scopes.push(format!("{a}/#"));
        }
        if permissions.has(Permission::DeviceManage) {
            for m in ["GET", "PUT", "POST", "DEL", "EXEC"] {
                scopes.push(format!("$EDC/{a}/+/+/{m}/#"));
            }
        }
    } else {
        if permissions.has(Permission::DataRead) {
            scopes.push(format!("{a}/#"));
        }
        if permissions.has(Permission::DeviceRead) {
            scopes.push(format!("$EDC/{a}/+/MQTT/#"));
        }
        if permissions.has(Permission::DeviceManage) {
            scopes.push(format!("$EDC/{a}/{c}/#"));
        }
    }
    scopes
}

proptest! {
    #![proptest_config(cases(2000))]

    /// An account user reaches exactly its table's scopes, never anything of another account.
    #[test]
    fn account_users_follow_the_table(
        s in account_user(),
        f in filter(),
        t in topic(),
        seeds in prop::collection::vec(any::<usize>(), 1..6),
    ) {
        let fill = fill_levels(&s);
        let mut filters = vec![f];
        let mut topics = vec![t];
        for scope in account_scopes(&s, false).iter().chain(&account_scopes(&s, true)) {
            filters.push(scope.clone());
            filters.push(narrow(scope, &fill, seeds[0]));
            filters.push(widen(scope, &seeds));
            topics.push(instantiate(scope, &fill, seeds[0]));
        }
        for f in filters {
            let allowed = may_subscribe(&s, &f).is_allowed();
            let expected = safe(&s)
                && ref_valid_filter(&f)
                && account_scopes(&s, false).iter().any(|scope| within_scope(&f, scope));
            prop_assert_eq!(allowed, expected, "{:?} subscribing to {:?}", s, f);
        }
        for t in topics {
            let allowed = may_publish(&s, &t).is_allowed();
            let expected = safe(&s)
                && ref_valid_name(&t)
                && account_scopes(&s, true).iter().any(|scope| ref_matches(scope, &t));
            prop_assert_eq!(allowed, expected, "{:?} publishing to {:?}", s, t);
            if allowed {
                let a = s.account();
                prop_assert!(
                    t == a || t.starts_with(&format!("{a}/")) || t.starts_with(&format!("$EDC/{a}/")),
                    "{:?} may publish {:?}, outside its account", s, t
                );
            }
        }
    }

    #[test]
    fn validity_agrees_with_reference(f in filter(), t in topic()) {
        prop_assert_eq!(valid_topic_filter(&f), ref_valid_filter(&f), "filter {:?}", f);
        prop_assert_eq!(valid_topic_name(&t), ref_valid_name(&t), "topic {:?}", t);
        prop_assert_eq!(valid_topic_name(&f), ref_valid_name(&f), "filter as topic {:?}", f);
    }

    #[test]
    fn matching_agrees_with_reference(f in filter(), t in topic(), seed in any::<usize>()) {
        prop_assert_eq!(filter_matches(&f, &t), ref_matches(&f, &t), "{:?} vs {:?}", f, t);
        // Also a topic derived from the filter, which it matches more often.
        let fill: Vec<String> = LEVELS.iter().map(|s| s.to_string()).collect();
        let t2 = instantiate(&f, &fill, seed);
        prop_assert_eq!(filter_matches(&f, &t2), ref_matches(&f, &t2), "{:?} vs {:?}", f, t2);
    }

    #[test]
    fn within_is_sound_on_sampled_topics(
        f in filter(),
        scope in filter(),
        topics in prop::collection::vec(topic(), 0..8),
        seeds in prop::collection::vec(any::<usize>(), 1..8),
    ) {
        // Often make the scope a widening of the filter, so that "within" is true sometimes.
        for scope in [scope.clone(), widen(&f, &seeds)] {
            if !filter_is_within(&f, &scope) {
                continue;
            }
            let fill: Vec<String> = LEVELS.iter().map(|s| s.to_string()).collect();
            let derived = seeds.iter().map(|&s| instantiate(&f, &fill, s));
            for t in topics.iter().cloned().chain(derived) {
                prop_assert!(
                    !filter_matches(&f, &t) || filter_matches(&scope, &t),
                    "{:?} within {:?}, but {:?} is matched by the filter only", f, scope, t
                );
            }
        }
    }

    #[test]
    fn within_agrees_with_brute_force(f in small_filter(), scope in small_filter()) {
        let expected = ref_valid_filter(&f) && ref_valid_filter(&scope) && brute_within(&f, &scope);
        prop_assert_eq!(filter_is_within(&f, &scope), expected, "{:?} within {:?}", f, scope);
    }

    #[test]
    fn publish_stays_in_namespace(s in session(), t in topic(), seed in any::<usize>()) {
        let fill = fill_levels(&s);
        let mut candidates = vec![t];
        for ns in namespace(&s) {
            candidates.push(instantiate(&ns, &fill, seed));
        }
        candidates.push(format!("$EDC/{}/{}/PROV-V1/EXEC/provision", s.account(), s.client_id()));
        candidates.push(format!("$EDC/{}/fleetgate/CONF-V1/REPLY/r-1", s.account()));
        candidates.push(format!("$EDC/{}/app/DEPLOY-V2/NOTIFY/{}/x", s.account(), s.client_id()));
        candidates.push(format!("$EDC/{}/app/DEPLOY-V2/NOTIFY/other/x", s.account()));
        for t in candidates {
            let allowed = may_publish(&s, &t).is_allowed();
            let expected = safe(&s)
                && match &s {
                    Session::Provisioning {
                        account,
                        client_id,
                        requester,
                    } => {
                        t == format!("$EDC/{account}/{client_id}/PROV-V1/EXEC/provision")
                            || ref_matches(&format!("$EDC/{account}/{client_id}/MQTT/#"), &t)
                            || ref_matches(
                                &format!("$EDC/{account}/{requester}/CONF-V1/REPLY/#"),
                                &t,
                            )
                    }
                    Session::Device { .. } => in_publish_namespace(&s, &t),
                    Session::Account { .. } => unreachable!("the strategy makes no account users"),
                };
            prop_assert_eq!(allowed, expected, "{:?} publishing to {:?}", s, t);
        }
    }

    #[test]
    fn subscribe_stays_in_namespace(
        s in session(),
        f in filter(),
        seeds in prop::collection::vec(any::<usize>(), 1..6),
    ) {
        let fill = fill_levels(&s);
        let mut candidates = vec![f];
        for ns in namespace(&s) {
            candidates.push(ns.clone());
            candidates.push(narrow(&ns, &fill, seeds[0]));
            candidates.push(widen(&ns, &seeds));
        }
        for f in candidates {
            let allowed = may_subscribe(&s, &f).is_allowed();
            if allowed {
                prop_assert!(safe(&s), "unsafe identity {:?} allowed {:?}", s, f);
                // Every topic the filter matches is inside the namespace.
                for &seed in &seeds {
                    let t = instantiate(&f, &fill, seed);
                    prop_assert!(
                        !ref_matches(&f, &t) || in_namespace(&s, &t),
                        "{:?} may subscribe to {:?}, which matches {:?} outside its namespace",
                        s, f, t
                    );
                }
            }
            let expected = safe(&s)
                && ref_valid_filter(&f)
                && namespace(&s).iter().any(|ns| within_prefix_scope(&f, ns));
            prop_assert_eq!(allowed, expected, "{:?} subscribing to {:?}", s, f);
        }
    }

    #[test]
    fn tree_agrees_with_reference(
        filters in prop::collection::vec(filter(), 0..12),
        topics in prop::collection::vec(topic(), 1..8),
        seed in any::<usize>(),
    ) {
        let mut tree = SubscriptionTree::new();
        let mut inserted = Vec::new();
        for (key, f) in filters.iter().enumerate() {
            if tree.insert(f, key, 1).is_ok() {
                inserted.push((key, f.clone()));
            } else {
                prop_assert!(!ref_valid_filter(f) || f.split('/').count() > 32, "refused {:?}", f);
            }
        }
        let fill: Vec<String> = LEVELS.iter().map(|s| s.to_string()).collect();
        let derived = filters.iter().map(|f| instantiate(f, &fill, seed));
        for t in topics.iter().cloned().chain(derived) {
            let mut got: Vec<usize> = tree.matches(&t).into_iter().map(|(k, _)| k).collect();
            got.sort_unstable();
            let expected: Vec<usize> = inserted
                .iter()
                .filter(|(_, f)| ref_matches(f, &t))
                .map(|(k, _)| *k)
                .collect();
            prop_assert_eq!(got, expected, "topic {:?}", t);
        }
        // Removing everything empties the tree.
        for (key, f) in &inserted {
            prop_assert!(tree.remove(f, key));
        }
        prop_assert!(tree.is_empty());
    }
}

/// A scope containing `filter`: some literal levels replaced by `+`, maybe a `#` tail.
fn widen(filter: &str, seeds: &[usize]) -> String {
    let levels: Vec<&str> = filter.split('/').collect();
    let seed = seeds.iter().fold(0usize, |a, s| a.wrapping_add(*s));
    let cut = if seed % 3 == 0 {
        (seed / 3) % (levels.len() + 1)
    } else {
        levels.len()
    };
    let mut out: Vec<String> = levels[..cut]
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if (seed >> (i + 2)) & 1 == 1 {
                "+".to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    if cut < levels.len() {
        out.push("#".to_string());
    }
    out.join("/")
}

/// A filter inside `scope`: its `#` replaced by some levels or `+`.
fn narrow(scope: &str, fill: &[String], seed: usize) -> String {
    let mut t = instantiate(scope, fill, seed);
    if seed.is_multiple_of(2) {
        t.push_str("/+");
    }
    t
}
