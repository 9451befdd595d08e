//! Property-based fuzzing of the configuration document (proptest; see docs/robustness.md).
//!
//! - `Document::parse` never panics, on token soup or on mutated valid documents;
//! - whatever it accepts validates and round-trips: `parse(to_xml(d)) == d`;
//! - generated valid documents round-trip the same way;
//! - merging any two accepted documents never panics, validates, round-trips and keeps the
//!   reserved properties of the base.
//!
//! Bounded for CI (`PROPTEST_CASES` overrides the default number of cases per target).

use fleetgate_devconfig::{
    Configuration, Document, Identity, MQTT_TRANSPORT_PID, Property, PropertyType,
    RESERVED_TRANSPORT_PROPERTIES, ReservedPolicy, VPN_PROPERTIES, generated,
};
use proptest::prelude::*;

const VPN_PID: &str = "org.eclipse.kura.net.vpn.client.VpnClient";

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Failures are reported with their minimal input; keep the persisted seeds next to
        // the test (tests/regressions/) rather than in proptest's default location.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("tests/regressions/prop.txt"),
        )),
        ..ProptestConfig::default()
    }
}

fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r'
        | '\u{20}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

/// Text of XML characters, biased towards the ones that need escaping.
fn xml_text(max: usize) -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => prop::char::range('a', 'z'),
        2 => prop::sample::select(vec![
            '<', '>', '&', '"', '\'', ' ', '\t', '\n', '\r', ']', '=', '/', '\u{85}', '\u{2028}',
            '\u{FEFF}', '\u{FFFD}', '\u{10000}', '\u{1F600}', 'é', '$', ';', '#',
        ]),
        1 => any::<char>().prop_filter("XML 1.0 character", |c| is_xml_char(*c)),
    ];
    prop::collection::vec(ch, 0..max).prop_map(|v| v.into_iter().collect())
}

fn id_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            MQTT_TRANSPORT_PID.to_string(),
            VPN_PID.to_string(),
            "org.eclipse.kura.command.CommandCloudApp".to_string(),
            "a".to_string(),
            "b".to_string(),
        ]),
        1 => xml_text(12).prop_filter_map("valid id", |s| {
            let t = s.trim_matches([' ', '\t', '\n', '\r']).to_string();
            (!t.is_empty()).then_some(t)
        }),
    ]
}

fn name_strategy() -> impl Strategy<Value = String> {
    let mut pool: Vec<String> = RESERVED_TRANSPORT_PROPERTIES
        .iter()
        .map(|s| s.to_string())
        .collect();
    pool.extend(["keep-alive", "x", "y"].map(String::from));
    prop_oneof![
        3 => prop::sample::select(pool),
        1 => xml_text(10).prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

fn value_strategy(t: PropertyType) -> BoxedStrategy<String> {
    use PropertyType as T;
    match t {
        T::String | T::Password => xml_text(16).boxed(),
        T::Long => any::<i64>().prop_map(|v| v.to_string()).boxed(),
        T::Integer => any::<i32>().prop_map(|v| format!("{v:+}")).boxed(),
        T::Short => any::<i16>().prop_map(|v| v.to_string()).boxed(),
        T::Byte => any::<i8>().prop_map(|v| v.to_string()).boxed(),
        T::Double => prop_oneof![
            any::<f64>()
                .prop_filter("finite", |v| v.is_finite())
                .prop_map(|v| format!("{v:e}")),
            prop::sample::select(vec!["NaN", "Infinity", "-Infinity", "+Infinity", "1.5E10"])
                .prop_map(String::from),
        ]
        .boxed(),
        T::Float => any::<f32>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(|v| v.to_string())
            .boxed(),
        T::Char => any::<char>()
            .prop_filter("XML 1.0 character", |c| is_xml_char(*c))
            .prop_map(String::from)
            .boxed(),
        T::Boolean => prop::sample::select(vec!["true", "FALSE", "True", "false"])
            .prop_map(String::from)
            .boxed(),
    }
}

fn property_strategy() -> impl Strategy<Value = Property> {
    (
        name_strategy(),
        prop::sample::select(PropertyType::ALL.to_vec()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(name, ptype, array, encrypted)| {
            let count = if array { 0..4usize } else { 1..2usize };
            prop::collection::vec(value_strategy(ptype), count).prop_map(move |values| Property {
                name: name.clone(),
                ptype,
                array,
                encrypted,
                values,
            })
        })
}

/// A valid document: unique ids, unique property names per configuration.
fn document_strategy() -> impl Strategy<Value = Document> {
    prop::collection::vec(
        (
            id_strategy(),
            prop::collection::vec(property_strategy(), 0..6),
        ),
        0..4,
    )
    .prop_map(|configs| {
        let mut out: Vec<Configuration> = Vec::new();
        for (id, props) in configs {
            if out.iter().any(|c| c.id == id) {
                continue;
            }
            let mut properties: Vec<Property> = Vec::new();
            for p in props {
                if !properties.iter().any(|q| q.name == p.name) {
                    properties.push(p);
                }
            }
            out.push(Configuration::new(id, properties));
        }
        Document {
            configurations: out,
        }
    })
}

/// XML-ish token soup: mostly nonsense, sometimes a document.
fn token_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        prop::sample::select(vec![
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
            "<configurations>",
            "</configurations>",
            "<esf:configurations xmlns:esf=\"http://eurotech.com/esf/2.0\">",
            "</esf:configurations>",
            "<configuration>",
            "</configuration>",
            "<esf:configuration pid=\"p\">",
            "</esf:configuration>",
            "<id>",
            "</id>",
            "<properties>",
            "</properties>",
            "<property name=\"n\" type=\"String\">",
            "<property name=\"n\" array=\"true\" type=\"Integer\">",
            "<property name=\"m\" type=\"Char\" encrypted=\"maybe\">",
            "</property>",
            "<value>",
            "</value>",
            "<value/>",
            "<x/>",
            "<ocd:OCD>",
            "</ocd:OCD>",
            "<![CDATA[",
            "]]>",
            "<!-- c -->",
            "<!DOCTYPE x [<!ENTITY e \"e\">]>",
            "&amp;",
            "&e;",
            "&#x0;",
            "&#xD800;",
            "&#65;",
            "&#x110000;",
            "&",
            "<",
            ">",
            "\"",
            "=",
            " ",
            "\n",
            "\u{feff}",
            "\u{0}",
            "pid",
            "12",
            "a",
        ])
        .prop_map(String::from),
        xml_text(4),
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(token, 0..40).prop_map(|v| v.concat())
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, String),
    Duplicate(usize, usize),
    Replace(usize, char),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..16usize).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), token_soup()).prop_map(|(a, s)| Mutation::Insert(a, s)),
        (any::<usize>(), 1..64usize).prop_map(|(a, n)| Mutation::Duplicate(a, n)),
        (any::<usize>(), any::<char>()).prop_map(|(a, c)| Mutation::Replace(a, c)),
    ]
}

fn boundary(s: &str, at: usize) -> usize {
    if s.is_empty() {
        return 0;
    }
    let mut i = at % (s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(mut s: String, mutations: &[Mutation]) -> String {
    for m in mutations {
        match m {
            Mutation::Delete(a, n) => {
                let start = boundary(&s, *a);
                let end = boundary(&s, (start + n).min(s.len()));
                if end > start {
                    s.replace_range(start..end, "");
                }
            }
            Mutation::Insert(a, t) => {
                let at = boundary(&s, *a);
                s.insert_str(at, t);
            }
            Mutation::Duplicate(a, n) => {
                let start = boundary(&s, *a);
                let end = boundary(&s, (start + n).min(s.len()));
                let slice = s[start..end].to_string();
                s.insert_str(end, &slice);
            }
            Mutation::Replace(a, c) => {
                let at = boundary(&s, *a);
                if let Some(old) = s[at..].chars().next() {
                    s.replace_range(at..at + old.len_utf8(), &c.to_string());
                }
            }
        }
    }
    s
}

/// Whatever the parser accepts must validate and read back unchanged.
fn check_accepted(d: &Document) -> Result<(), TestCaseError> {
    prop_assert!(
        d.validate().is_ok(),
        "accepted but invalid: {:?}",
        d.validate()
    );
    let xml = d.to_xml();
    let again = Document::parse(&xml);
    prop_assert_eq!(again.as_ref(), Ok(d), "round trip failed for {:?}", xml);
    Ok(())
}

/// Merge never panics, validates, round-trips, and keeps every reserved property of the base.
fn check_merge(base: &Document, additional: &Document) -> Result<(), TestCaseError> {
    let policy = ReservedPolicy::for_generated(Some(VPN_PID));
    let merged = Document::merge(base.clone(), additional, &policy);
    check_accepted(&merged.document)?;
    let reserved: Vec<(&str, &str)> = RESERVED_TRANSPORT_PROPERTIES
        .iter()
        .map(|n| (MQTT_TRANSPORT_PID, *n))
        .chain(VPN_PROPERTIES.iter().map(|n| (VPN_PID, *n)))
        .collect();
    for (pid, name) in reserved {
        let before = base.configuration(pid).and_then(|c| c.property(name));
        let after = merged
            .document
            .configuration(pid)
            .and_then(|c| c.property(name));
        prop_assert_eq!(before, after, "reserved {}/{} changed by merge", pid, name);
    }
    // Every non-reserved property of the additional document wins.
    for c in &additional.configurations {
        for p in &c.properties {
            if policy.is_reserved(&c.id, &p.name) {
                continue;
            }
            let got = merged
                .document
                .configuration(&c.id)
                .and_then(|m| m.property(&p.name));
            prop_assert_eq!(got, Some(p));
        }
    }
    // Warnings are exactly the reserved properties the additional document tried to set.
    prop_assert_eq!(merged.warnings, policy.warnings(additional));
    Ok(())
}

fn escape(text: &str, attribute: bool) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' if attribute => out.push_str(&format!("&#{};", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// The Kura snapshot form (`esf:` prefixes, `pid` attribute, an `ocd:OCD` to skip), written
/// independently of `Document::to_xml`.
fn to_snapshot(d: &Document, pretty: bool) -> String {
    let nl = if pretty { "\n  " } else { "" };
    let mut out = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><esf:configurations xmlns:esf="http://eurotech.com/esf/2.0" xmlns:ocd="http://www.osgi.org/xmlns/metatype/v1.2.0">"#,
    );
    for c in &d.configurations {
        out.push_str(&format!(
            r#"{nl}<esf:configuration pid="{}"><ocd:OCD id="x"><ocd:AD id="a"/></ocd:OCD>{nl}<esf:properties>"#,
            escape(&c.id, true)
        ));
        for p in &c.properties {
            out.push_str(&format!(
                r#"{nl}<esf:property type="{}" name="{}" array="{}" encrypted="{}">"#,
                p.ptype.as_str(),
                escape(&p.name, true),
                p.array,
                p.encrypted
            ));
            for v in &p.values {
                out.push_str(&format!("<esf:value>{}</esf:value>", escape(v, false)));
            }
            out.push_str("</esf:property>");
        }
        out.push_str(&format!("{nl}</esf:properties></esf:configuration>"));
    }
    out.push_str("</esf:configurations>\n");
    out
}

fn identity() -> impl Strategy<Value = Identity> {
    (
        xml_text(12),
        xml_text(12),
        xml_text(12),
        xml_text(12),
        xml_text(24),
    )
        .prop_map(
            |(broker_url, account_name, client_id, username, password)| Identity {
                broker_url,
                account_name,
                client_id,
                username,
                password,
            },
        )
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn parse_never_panics_on_token_soup(input in token_soup()) {
        if let Ok(d) = Document::parse(&input) {
            check_accepted(&d)?;
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_strings(input in any::<String>()) {
        if let Ok(d) = Document::parse(&input) {
            check_accepted(&d)?;
        }
    }

    #[test]
    fn generated_documents_round_trip(d in document_strategy()) {
        check_accepted(&d)?;
        let masked = d.mask_passwords();
        check_accepted(&masked)?;
        prop_assert_eq!(Document::parse(&d.to_xml_masked()), Ok(masked));
    }

    #[test]
    fn snapshot_form_reads_as_the_same_model(d in document_strategy(), pretty in any::<bool>()) {
        prop_assert_eq!(Document::parse(&to_snapshot(&d, pretty)), Ok(d));
    }

    #[test]
    fn mutated_documents_never_panic(
        d in document_strategy(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let input = apply(d.to_xml(), &mutations);
        if let Ok(parsed) = Document::parse(&input) {
            check_accepted(&parsed)?;
        }
    }

    #[test]
    fn merging_accepted_documents(
        a in document_strategy(),
        b in document_strategy(),
        mutations in prop::collection::vec(mutation(), 0..3),
    ) {
        // The additional document may also be a mutant, when the parser still accepts it.
        let b = match Document::parse(&apply(b.to_xml(), &mutations)) {
            Ok(parsed) => parsed,
            Err(_) => b,
        };
        check_merge(&a, &b)?;
        check_merge(&b, &a)?;
    }

    #[test]
    fn merging_into_generated_keeps_identity(
        id in identity(),
        vpn in any::<bool>(),
        additional in document_strategy(),
    ) {
        let base = generated(&id, vpn.then_some(VPN_PID));
        check_accepted(&base)?;
        check_merge(&base, &additional)?;
        let policy = ReservedPolicy::for_generated(vpn.then_some(VPN_PID));
        let merged = Document::merge(base, &additional, &policy).document;
        let transport = merged.configuration(MQTT_TRANSPORT_PID).unwrap();
        prop_assert_eq!(transport.property("password").unwrap().value(), Some(id.password.as_str()));
        prop_assert_eq!(transport.property("username").unwrap().value(), Some(id.username.as_str()));
        prop_assert_eq!(transport.property("client-id").unwrap().value(), Some(id.client_id.as_str()));
        prop_assert_eq!(transport.property("broker-url").unwrap().value(), Some(id.broker_url.as_str()));
        prop_assert_eq!(
            transport.property("topic.context.account-name").unwrap().value(),
            Some(id.account_name.as_str())
        );
    }
}
