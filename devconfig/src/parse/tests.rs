use super::*;

const SEED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<configurations xmlns:ns0="http://www.osgi.org/xmlns/metatype/v1.2.0">
  <configuration>
    <id>org.eclipse.kura.command.CommandCloudApp</id>
    <properties>
      <property name="command.enable" array="false" encrypted="false" type="Boolean"><value>true</value></property>
      <property name="command.password.value" array="false" encrypted="true" type="Password"><value>secret-cmd</value></property>
      <property name="command.environment" array="true" encrypted="false" type="String"><value>A=1</value><value>B=2</value></property>
      <property name="command.timeout" type="Integer"><value>60</value></property>
    </properties>
  </configuration>
  <configuration>
    <id>org.eclipse.kura.core.diagnostics.DiagnosticsService</id>
    <properties>
      <property name="interval" array="false" encrypted="false" type="Long"><value>3600000</value></property>
      <property name="ratio" array="false" encrypted="false" type="Double"><value>0.5</value></property>
    </properties>
  </configuration>
</configurations>
"#;

const SNAPSHOT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<esf:configurations xmlns:esf="http://eurotech.com/esf/2.0" xmlns:ocd="http://www.osgi.org/xmlns/metatype/v1.2.0">
    <esf:configuration pid="org.eclipse.kura.command.CommandCloudApp">
        <ocd:OCD id="org.eclipse.kura.command.CommandCloudApp" name="CommandCloudApp" description="Command &amp; control">
            <ocd:Icon resource="CommandCloudApp" size="32"/>
            <ocd:AD id="command.enable" name="command.enable" type="Boolean" cardinality="0" required="true" default="false">
                <ocd:Option label="yes" value="true"/>
            </ocd:AD>
            Some free text.
        </ocd:OCD>
        <esf:properties>
            <esf:property array="false" encrypted="false" name="command.enable" type="Boolean">
                <esf:value>true</esf:value>
            </esf:property>
            <esf:property array="false" encrypted="true" name="command.password.value" type="Password">
                <esf:value>secret-cmd</esf:value>
            </esf:property>
            <esf:property array="true" encrypted="false" name="command.environment" type="String">
                <esf:value>A=1</esf:value>
                <esf:value>B=2</esf:value>
            </esf:property>
            <esf:property name="command.timeout" type="Integer"><esf:value>60</esf:value></esf:property>
        </esf:properties>
    </esf:configuration>
    <esf:configuration pid="org.eclipse.kura.core.diagnostics.DiagnosticsService">
        <esf:properties>
            <esf:property array="false" encrypted="false" name="interval" type="Long"><esf:value>3600000</esf:value></esf:property>
            <esf:property array="false" encrypted="false" name="ratio" type="Double"><esf:value>0.5</esf:value></esf:property>
        </esf:properties>
    </esf:configuration>
</esf:configurations>
"#;

fn expected_seed() -> Document {
    let mut password = Property::scalar(
        "command.password.value",
        PropertyType::Password,
        "secret-cmd",
    );
    password.encrypted = true;
    Document {
        configurations: vec![
            Configuration::new(
                "org.eclipse.kura.command.CommandCloudApp",
                vec![
                    Property::scalar("command.enable", PropertyType::Boolean, "true"),
                    password,
                    Property::array("command.environment", PropertyType::String, ["A=1", "B=2"]),
                    Property::scalar("command.timeout", PropertyType::Integer, "60"),
                ],
            ),
            Configuration::new(
                "org.eclipse.kura.core.diagnostics.DiagnosticsService",
                vec![
                    Property::scalar("interval", PropertyType::Long, "3600000"),
                    Property::scalar("ratio", PropertyType::Double, "0.5"),
                ],
            ),
        ],
    }
}

/// A one-configuration seed-form document with `properties` inside `<properties>`, each
/// property starting on line 4 + its index, column 7.
fn with_properties(properties: &[&str]) -> String {
    let mut s =
        String::from("<configurations>\n  <configuration>\n    <id>pid.a</id><properties>\n");
    for p in properties {
        s.push_str("      ");
        s.push_str(p);
        s.push('\n');
    }
    s.push_str("    </properties>\n  </configuration>\n</configurations>\n");
    s
}

fn prop(ptype: &str, value: &str) -> String {
    format!(r#"<property name="p" type="{ptype}"><value>{value}</value></property>"#)
}

fn parse_one(p: &str) -> Result<Property, ParseError> {
    let d = Document::parse(&with_properties(&[p]))?;
    Ok(d.configurations[0].properties[0].clone())
}

#[track_caller]
fn fails(xml: &str, line: usize, column: usize, needle: &str) -> ParseError {
    let e = Document::parse(xml).expect_err("should be rejected");
    assert!(
        e.message.contains(needle),
        "message {:?} should contain {needle:?}",
        e.message
    );
    assert_eq!(
        (e.line, e.column),
        (line, column),
        "position of {:?}",
        e.message
    );
    e
}

#[track_caller]
fn fails_anywhere(xml: &str, needle: &str) -> ParseError {
    let e = Document::parse(xml).expect_err("should be rejected");
    assert!(
        e.message.contains(needle),
        "message {:?} should contain {needle:?}",
        e.message
    );
    e
}

#[test]
fn seed_form_parses() {
    assert_eq!(Document::parse(SEED), Ok(expected_seed()));
}

#[test]
fn snapshot_form_normalises_to_the_same_model() {
    assert_eq!(Document::parse(SNAPSHOT), Ok(expected_seed()));
    assert_eq!(
        Document::parse(SNAPSHOT).unwrap().to_xml(),
        Document::parse(SEED).unwrap().to_xml()
    );
}

#[test]
fn round_trip_of_the_seed() {
    let d = Document::parse(SEED).unwrap();
    assert_eq!(Document::parse(&d.to_xml()), Ok(d));
}

#[test]
fn other_prefixes_and_default_namespaces_are_matched_by_local_name() {
    let xml = r#"<x:configurations xmlns:x="urn:x"><x:configuration><id>a</id><y:properties xmlns:y="urn:y"><property name="n" type="Char"><x:value>c</x:value></property></y:properties></x:configuration></x:configurations>"#;
    let d = Document::parse(xml).unwrap();
    assert_eq!(
        d.configurations[0].properties,
        [Property::scalar("n", PropertyType::Char, "c")]
    );
    let xml = r#"<configurations xmlns="http://eurotech.com/esf/2.0"><configuration pid="a"/></configurations>"#;
    assert_eq!(
        Document::parse(xml).unwrap().configurations,
        [Configuration::new("a", vec![])]
    );
}

#[test]
fn flags_default_to_false() {
    let p = parse_one(r#"<property name="p" type="String"><value>v</value></property>"#).unwrap();
    assert!(!p.array && !p.encrypted);
    let p = parse_one(
        r#"<property name="p" type="String" array="true" encrypted="true"><value>v</value></property>"#,
    )
    .unwrap();
    assert!(p.array && p.encrypted);
}

#[test]
fn values_are_unescaped_text() {
    let cases: &[(&str, &str)] = &[
        ("<value/>", ""),
        ("<value></value>", ""),
        ("<value>  spaced  </value>", "  spaced  "),
        (
            "<value>a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;</value>",
            "a <b> & \"c\" 'd'",
        ),
        ("<value>&#65;&#x42;&#x1F600;</value>", "AB\u{1F600}"),
        (
            "<value><![CDATA[<not> &amp; markup]]></value>",
            "<not> &amp; markup",
        ),
        ("<value>a<!-- comment -->b<?pi x?>c</value>", "abc"),
        (
            "<value>line1\r\nline2\rline3</value>",
            "line1\nline2\nline3",
        ),
        ("<value>keep&#13;cr</value>", "keep\rcr"),
        ("<value>ünïcødé ✓</value>", "ünïcødé ✓"),
    ];
    for (value, expected) in cases {
        let p = parse_one(&format!(
            r#"<property name="p" type="String">{value}</property>"#
        ))
        .unwrap_or_else(|e| panic!("{value}: {e}"));
        assert_eq!(p.values, [*expected], "{value}");
    }
}

#[test]
fn attributes_are_unescaped_and_normalised() {
    let p = parse_one(
        r#"<property name="a&amp;b&#9;c&#10;d
e	f" type='Password'><value/></property>"#,
    )
    .unwrap();
    assert_eq!(p.name, "a&b\tc\nd e f");
    assert_eq!(p.ptype, PropertyType::Password);
}

#[test]
fn ids_are_trimmed_and_may_come_from_both_forms_when_equal() {
    let xml = "<configurations><configuration pid=\"a\"><id>\n  a\n</id></configuration></configurations>";
    assert_eq!(
        Document::parse(xml).unwrap().configurations[0].id,
        "a".to_string()
    );
    fails(
        "<configurations>\n<configuration pid=\"a\"><id>b</id></configuration></configurations>",
        2,
        1,
        "differ",
    );
}

#[test]
fn a_configuration_without_properties_is_empty() {
    let xml = "<configurations><configuration><id>a</id></configuration><configuration><id>b</id><properties/></configuration></configurations>";
    let d = Document::parse(xml).unwrap();
    assert_eq!(
        d.configurations,
        [
            Configuration::new("a", vec![]),
            Configuration::new("b", vec![])
        ]
    );
}

#[test]
fn prologue_epilogue_comments_and_bom_are_accepted() {
    let xml =
        "\u{feff}<?xml version=\"1.0\"?>\n<!-- c -->\n<?pi?>\n<configurations/>\n<!-- end -->\n";
    assert_eq!(Document::parse(xml), Ok(Document::default()));
    // Positions after a BOM count from the first visible character.
    fails("\u{feff}<x/>", 1, 1, "root element");
}

#[test]
fn display_format() {
    let xml = with_properties(&[
        r#"<property name="p" type="String"><value/></property>"#,
        r#"<property name="q" type="Strin"><value/></property>"#,
    ]);
    let e = Document::parse(&xml).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 5, column 7: unknown property type \"Strin\""
    );
    assert_eq!((e.line, e.column), (5, 7));
    assert_eq!(e.message, "unknown property type \"Strin\"");
}

#[test]
fn malformed_xml_is_rejected_with_its_position() {
    fails(
        "<configurations>\n  <configuration>\n  </configurations>",
        3,
        3,
        "malformed XML",
    );
    fails("<configurations>\n  <configuration", 2, 3, "malformed XML");
    fails(
        "<configurations>\n <configuration b=c/></configurations>",
        2,
        2,
        "malformed XML",
    );
    fails(
        "<configurations>\n <configuration x='1' x='2'/></configurations>",
        2,
        2,
        "malformed XML",
    );
    fails(
        "<configurations>&bogus</configurations>",
        1,
        17,
        "malformed XML",
    );
    fails_anywhere(
        "<configurations><!-- a -- b --></configurations>",
        "malformed XML",
    );
    fails_anywhere("</configurations>", "malformed XML");
    let long = format!(
        "<configurations><configuration pid=\"a\"><{0}></configuration></configurations>",
        "n".repeat(100_000)
    );
    assert!(fails_anywhere(&long, "malformed XML").message.len() < 300);
}

#[test]
fn empty_and_unclosed_documents_are_rejected() {
    fails("", 1, 1, "no <configurations> root element");
    fails(
        "  \n <!-- only a comment -->",
        2,
        25,
        "no <configurations> root",
    );
    fails(
        "<configurations>\n<configuration>",
        2,
        16,
        "unexpected end of the document inside <configuration>",
    );
}

#[test]
fn root_must_be_configurations() {
    fails(
        "<?xml version=\"1.0\"?>\n<configuration/>",
        2,
        1,
        "root element",
    );
    fails("\n\n   <esf:snapshot/>", 3, 4, "<esf:snapshot>");
    fails(
        "<configurations/>\n<configurations/>",
        2,
        1,
        "content after the root element",
    );
    fails(
        "<configurations/>\nx",
        2,
        1,
        "text outside the root element",
    );
    fails("x<configurations/>", 1, 1, "text outside the root element");
}

#[test]
fn doctype_is_rejected() {
    fails(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE configurations [<!ENTITY a \"aaaa\">]>\n<configurations>&a;</configurations>",
        2,
        1,
        "DOCTYPE",
    );
    fails(
        "<configurations><configuration><id>&a;</id></configuration></configurations>",
        1,
        36,
        "unknown entity &a;",
    );
}

#[test]
fn xml_declaration_must_come_first() {
    fails(
        "<configurations/>\n<?xml version=\"1.0\"?>",
        2,
        1,
        "XML declaration",
    );
}

#[test]
fn configuration_needs_an_id() {
    fails(
        "<configurations>\n  <configuration><properties/></configuration>\n</configurations>",
        2,
        3,
        "without an id",
    );
    fails(
        "<configurations>\n  <configuration><id> </id></configuration>\n</configurations>",
        2,
        3,
        "empty id",
    );
    fails(
        "<configurations>\n  <configuration pid=\"\"/>\n</configurations>",
        2,
        3,
        "empty id",
    );
    fails(
        "<configurations>\n  <configuration><id>a</id><id>a</id></configuration>\n</configurations>",
        2,
        28,
        "more than one <id>",
    );
    fails(
        "<configurations>\n  <configuration><id>a<b/></id></configuration>\n</configurations>",
        2,
        23,
        "unexpected element <b> in <id>",
    );
}

#[test]
fn duplicate_configuration_ids_are_rejected() {
    fails(
        "<configurations>\n  <configuration><id>a</id></configuration>\n  <configuration pid=\"a\"/>\n</configurations>",
        3,
        3,
        "duplicate configuration id \"a\"",
    );
}

#[test]
fn property_needs_a_name() {
    fails(
        &with_properties(&[r#"<property type="String"><value/></property>"#]),
        4,
        7,
        "property without a name",
    );
    fails(
        &with_properties(&[r#"<property name="" type="String"><value/></property>"#]),
        4,
        7,
        "empty name",
    );
}

#[test]
fn property_needs_a_known_type() {
    fails(
        &with_properties(&[r#"<property name="p"><value/></property>"#]),
        4,
        7,
        "property \"p\" has no type attribute",
    );
    for bad in ["string", "Strin", "int", "", "Password "] {
        fails(
            &with_properties(&[&format!(
                r#"<property name="p" type="{bad}"><value/></property>"#
            )]),
            4,
            7,
            &format!("unknown property type {}", quote(bad)),
        );
    }
    for t in PropertyType::ALL {
        let value = match t {
            PropertyType::Boolean => "true",
            PropertyType::Char => "c",
            _ => "1",
        };
        assert_eq!(parse_one(&prop(t.as_str(), value)).unwrap().ptype, t);
    }
}

#[test]
fn non_array_properties_have_exactly_one_value() {
    fails(
        &with_properties(&[
            r#"<property name="ok" type="String"><value/></property>"#,
            r#"<property name="none" type="String"></property>"#,
        ]),
        5,
        7,
        "non-array property \"none\" has 0 values",
    );
    fails(
        &with_properties(&[
            r#"<property name="two" type="Integer"><value>1</value><value>2</value></property>"#,
        ]),
        4,
        7,
        "has 2 values",
    );
    fails(
        &with_properties(&[r#"<property name="empty" type="String" array="false"/>"#]),
        4,
        7,
        "has 0 values",
    );
    let p = parse_one(r#"<property name="e" type="Long" array="true"/>"#).unwrap();
    assert!(p.array && p.values.is_empty());
    let p = parse_one(
        r#"<property name="e" type="Long" array="true"><value>1</value><value>-2</value><value>3</value></property>"#,
    )
    .unwrap();
    assert_eq!(p.values, ["1", "-2", "3"]);
}

#[test]
fn values_must_fit_their_type() {
    // The property starts at column 7 and `<value>` 41 characters later (`prop` is fixed
    // width for a type of one length), so the error points at the value element.
    let good: &[(&str, &str)] = &[
        ("Long", "-9223372036854775808"),
        ("Integer", "-2147483648"),
        ("Short", "32767"),
        ("Byte", "-128"),
        ("Double", "-1.5e-300"),
        ("Double", "NaN"),
        ("Float", "Infinity"),
        ("Char", "€"),
        ("Boolean", "TRUE"),
        ("Boolean", "false"),
        ("String", "anything at all"),
        ("Password", "anything at all"),
    ];
    for (t, v) in good {
        assert_eq!(parse_one(&prop(t, v)).unwrap().values, [*v], "{t} {v}");
    }
    let bad: &[(&str, &str)] = &[
        ("Long", "9223372036854775808"),
        ("Long", "12abc"),
        ("Integer", "2147483648"),
        ("Integer", " 1"),
        ("Short", "40000"),
        ("Byte", "200"),
        ("Double", "one"),
        ("Double", ""),
        ("Float", "1,5"),
        ("Char", "ab"),
        ("Char", ""),
        ("Boolean", "yes"),
        ("Boolean", ""),
    ];
    for (t, v) in bad {
        let xml = with_properties(&[&prop(t, v)]);
        let column = 7 + format!(r#"<property name="p" type="{t}">"#).chars().count();
        fails(
            &xml,
            4,
            column,
            &format!("invalid value {} for property \"p\" of type {t}", quote(v)),
        );
    }
    // Values in arrays are checked one by one; the error points at the bad one.
    fails(
        &with_properties(&[
            r#"<property name="a" type="Integer" array="true">"#,
            r#"  <value>1</value>"#,
            r#"  <value>x</value>"#,
            r#"</property>"#,
        ]),
        6,
        9,
        "invalid value \"x\"",
    );
}

#[test]
fn characters_xml_cannot_carry_are_rejected() {
    fails(
        &with_properties(&[&prop("Password", "a&#1;b")]),
        4,
        42,
        "U+0001",
    );
    let e = fails_anywhere(&with_properties(&[&prop("String", "a\u{1}b")]), "U+0001");
    assert!(!e.message.contains("a\u{1}b"));
    fails_anywhere(
        "<configurations><configuration pid=\"a&#xFFFE;\"/></configurations>",
        "U+FFFE",
    );
    fails_anywhere(
        "<configurations><configuration><id>a&#0;</id></configuration></configurations>",
        "invalid character reference",
    );
}

#[test]
fn password_values_are_never_in_messages() {
    let e = Document::parse(&with_properties(&[
        r#"<property name="pw" type="Password"><value>topsecret</value><value>other</value></property>"#,
    ]))
    .unwrap_err();
    assert!(!e.to_string().contains("topsecret"));
}

#[test]
fn flags_must_be_true_or_false() {
    fails(
        &with_properties(&[r#"<property name="p" type="String" array="yes"><value/></property>"#]),
        4,
        7,
        "attribute array must be \"true\" or \"false\", not \"yes\"",
    );
    fails(
        &with_properties(&[
            r#"<property name="p" type="String" encrypted="1"><value/></property>"#,
        ]),
        4,
        7,
        "attribute encrypted must be",
    );
    fails(
        &with_properties(&[
            r#"<property name="p" type="String" encrypted="TRUE"><value/></property>"#,
        ]),
        4,
        7,
        "attribute encrypted must be",
    );
}

#[test]
fn duplicate_property_names_are_rejected() {
    fails(
        &with_properties(&[
            r#"<property name="p" type="String"><value/></property>"#,
            r#"<property name="q" type="String"><value/></property>"#,
            r#"<property name="p" type="Integer"><value>1</value></property>"#,
        ]),
        6,
        7,
        "duplicate property \"p\" in configuration \"pid.a\"",
    );
    fails_anywhere(
        r#"<configurations><configuration pid="x"><properties><property name="p" type="String" esf:name="q"><value/></property></properties></configuration></configurations>"#,
        "duplicate attribute",
    );
    // The same name in two configurations is fine.
    let xml = r#"<configurations><configuration pid="x"><properties><property name="p" type="String"><value/></property></properties></configuration><configuration pid="y"><properties><property name="p" type="String"><value/></property></properties></configuration></configurations>"#;
    assert_eq!(Document::parse(xml).unwrap().configurations.len(), 2);
}

#[test]
fn unknown_elements_are_skipped_only_inside_a_configuration() {
    let xml = "<configurations><configuration><id>a</id><ocd:OCD><x><y>&amp;t</y></x></ocd:OCD><extra/><properties/><more>text</more></configuration></configurations>";
    assert_eq!(
        Document::parse(xml).unwrap().configurations,
        [Configuration::new("a", vec![])]
    );
    fails(
        "<configurations>\n  <snapshot/>\n</configurations>",
        2,
        3,
        "unexpected element <snapshot> in <configurations>",
    );
    fails(
        &with_properties(&[r#"<proprety name="p" type="String"><value/></proprety>"#]),
        4,
        7,
        "unexpected element <proprety> in <properties>",
    );
    fails(
        &with_properties(&[r#"<property name="p" type="String"><values/></property>"#]),
        4,
        40,
        "unexpected element <values> in <property>",
    );
    fails(
        &with_properties(&[r#"<property name="p" type="String"><value><b/></value></property>"#]),
        4,
        47,
        "unexpected element <b> in <value>",
    );
    fails(
        "<configurations><configuration><id>a</id><properties/><properties/></configuration></configurations>",
        1,
        55,
        "more than one <properties>",
    );
}

#[test]
fn stray_text_is_rejected() {
    fails(
        &with_properties(&[r#"<property name="p" type="String">x<value/></property>"#]),
        4,
        40,
        "unexpected text in <property>",
    );
    fails(
        "<configurations>\n  <configuration pid='a'>\n    <properties>oops</properties></configuration></configurations>",
        3,
        17,
        "unexpected text in <properties>",
    );
    fails(
        "<configurations>text</configurations>",
        1,
        17,
        "unexpected text in <configurations>",
    );
    fails(
        "<configurations><![CDATA[x]]></configurations>",
        1,
        17,
        "unexpected text",
    );
}

#[test]
fn size_is_limited() {
    let mut big = with_properties(&[&prop("String", &"x".repeat(MAX_DOCUMENT_BYTES))]);
    let e = fails_anywhere(&big, "at most 262144");
    assert_eq!(e.line, 4);
    big.truncate(0);
    // Just under the limit is fine.
    let skeleton = with_properties(&[&prop("String", "")]);
    let fill = MAX_DOCUMENT_BYTES - skeleton.len();
    let fits = with_properties(&[&prop("String", &"y".repeat(fill))]);
    assert_eq!(fits.len(), MAX_DOCUMENT_BYTES);
    assert_eq!(
        Document::parse(&fits).unwrap().configurations[0].properties[0].values[0].len(),
        fill
    );
    let over = with_properties(&[&prop("String", &"y".repeat(fill + 1))]);
    fails_anywhere(&over, "at most 262144");
}

#[test]
fn nesting_is_limited() {
    let nest = |n: usize| {
        format!(
            "<configurations><configuration><id>a</id>{}{}</configuration></configurations>",
            "<x>".repeat(n),
            "</x>".repeat(n)
        )
    };
    assert!(Document::parse(&nest(MAX_DEPTH - 2)).is_ok());
    let e = fails_anywhere(&nest(MAX_DEPTH - 1), "nested deeper than 32");
    assert_eq!(e.column, 42 + 3 * (MAX_DEPTH - 2));
    fails_anywhere(&nest(30_000), "nested deeper than 32");
    fails_anywhere(&"<configurations>".repeat(10_000), "unexpected element");
}

#[test]
fn columns_count_characters_not_bytes() {
    fails(
        "<configurations><!-- ééé --><x/></configurations>",
        1,
        29,
        "unexpected element <x>",
    );
    assert_eq!(line_column("ab\ncdé\nf", 0), (1, 1));
    assert_eq!(line_column("ab\ncdé\nf", 3), (2, 1));
    assert_eq!(line_column("ab\ncdé\nf", 7), (2, 4));
    assert_eq!(line_column("ab\ncdé\nf", 8), (3, 1));
    assert_eq!(line_column("ab", 100), (1, 3));
}

/// A tiny deterministic generator (xorshift), so that tests need no extra dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

fn random_text(rng: &mut Rng) -> String {
    let pieces = [
        "a",
        "Z",
        "0",
        " ",
        "  ",
        "\t",
        "\n",
        "\r",
        "\r\n",
        "&",
        "<",
        ">",
        "\"",
        "'",
        "]]>",
        "&amp;",
        "é",
        "€",
        "\u{1F600}",
        "\u{FFFD}",
        "=",
        "/",
        "--",
    ];
    let n = rng.below(8);
    (0..n).map(|_| rng.pick(&pieces)).collect()
}

fn random_value(rng: &mut Rng, t: PropertyType) -> String {
    match t {
        PropertyType::String | PropertyType::Password => random_text(rng),
        PropertyType::Long => (rng.next() as i64).to_string(),
        PropertyType::Integer => (rng.next() as i32).to_string(),
        PropertyType::Short => (rng.next() as i16).to_string(),
        PropertyType::Byte => (rng.next() as i8).to_string(),
        PropertyType::Double => rng.pick(&["0.5", "-1e300", "NaN", "-Infinity", "3"]).into(),
        PropertyType::Float => rng.pick(&["1.25", "Infinity", "-0", "7e-3"]).into(),
        PropertyType::Char => rng.pick(&["x", "<", "&", "é", " ", "\r"]).into(),
        PropertyType::Boolean => rng.pick(&["true", "false", "TRUE", "False"]).into(),
    }
}

#[test]
fn random_documents_round_trip() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..300 {
        let mut d = Document::default();
        for c in 0..rng.below(4) {
            let mut configuration =
                Configuration::new(format!("pid.{c}.{}", rng.below(99)), vec![]);
            for i in 0..rng.below(6) {
                let ptype = PropertyType::ALL[rng.below(PropertyType::ALL.len())];
                let array = rng.below(2) == 0;
                let count = if array { rng.below(4) } else { 1 };
                configuration.properties.push(Property {
                    name: format!("{i}{}", random_text(&mut rng)),
                    ptype,
                    array,
                    encrypted: rng.below(2) == 0,
                    values: (0..count).map(|_| random_value(&mut rng, ptype)).collect(),
                });
            }
            d.configurations.push(configuration);
        }
        assert_eq!(d.validate(), Ok(()));
        let xml = d.to_xml();
        assert_eq!(Document::parse(&xml).as_ref(), Ok(&d), "{xml}");
    }
}
