//! Byte parity of [`Document::to_snapshot_xml`] with Kura's own snapshot writer, and acceptance
//! of what it writes by Kura's own snapshot parser (the rules of Kura's
//! `XmlJavaComponentConfigurationsMapper.unmarshal` and `XmlConfigPropertiesAdapter.unmarshal`,
//! restated below).

use fleetgate_devconfig::{
    Configuration, Document, Identity, MQTT_TRANSPORT_PID, Property, PropertyType, ReservedPolicy,
    generated,
};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// The golden sample: what Kura writes for [`sample`].
///
/// How it was derived (by hand, not by running the writer under test): Kura serialises a
/// snapshot in `XmlMarshallUnmarshallImpl.marshal` by building a DOM with
/// `XmlJavaComponentConfigurationsMapper.marshal` (root `esf:configurations` with `xmlns:esf`
/// and `xmlns:ocd` set, one `esf:configuration` with attribute `pid` per component, an
/// `esf:properties` element, one `esf:property` per property with attributes `name`, `array`,
/// `encrypted`, `type` and one `esf:value` per value set with `setTextContent`), marking the
/// document standalone, and handing it to the JDK's `Transformer` with `indent=yes` and
/// `{http://xml.apache.org/xslt}indent-amount=4`. From the JDK's side: its DOM keeps attributes
/// sorted by name (so `array encrypted name type`, and `xmlns:esf` before `xmlns:ocd`); a
/// standalone document gets no `standalone` pseudo-attribute and no line break after the
/// declaration; empty elements are written `<x/>`; text escapes `& < >` and writes `\r`, C1
/// controls and U+2028 as decimal references while `"` and `'` stay as they are; attributes
/// also escape `"` and write tab, newline and carriage return as references; every line,
/// the last one included, ends with the platform's `\n`. The layout was then checked line by
/// line against snapshots Kura commits in its own repository
/// (`kura/examples/scenarios/org.eclipse.kura.example.ai/snapshots/*.xml`, e.g. `<esf:value/>`
/// for an empty value and the root on the declaration's line).
const GOLDEN: &str = include_str!("golden/kura-snapshot.xml");

const PASSWORD: &str = "Pa55<w&rd>\"x'";

/// A document as Fleetgate builds one: the generated MqttDataTransport and VPN configurations
/// merged with an additional configuration that uses every type and every escaping rule.
fn sample() -> Document {
    let identity = Identity {
        broker_url: "mqtt://broker.example:1884".into(),
        account_name: "acme".into(),
        client_id: "dev-0001".into(),
        username: "dev-0001@acme".into(),
        password: PASSWORD.into(),
    };
    let vpn = "org.eclipse.kura.net.vpn.client";
    let scalar = Property::scalar;
    let additional = Document {
        configurations: vec![
            Configuration::new(
                MQTT_TRANSPORT_PID,
                vec![scalar("keep-alive", PropertyType::Integer, "30")],
            ),
            Configuration::new(
                "org.eclipse.kura.clock.ClockService",
                vec![
                    scalar("enabled", PropertyType::Boolean, "true"),
                    scalar("clock.ntp.host", PropertyType::String, " pool.ntp.org "),
                    scalar("clock.ntp.port", PropertyType::Integer, "123"),
                    scalar("rtc.filename", PropertyType::String, ""),
                ],
            ),
            Configuration::new(
                "example.Types",
                vec![
                    Property::array(
                        "servers",
                        PropertyType::String,
                        ["a & b", "", "line 1\nline 2\r"],
                    ),
                    Property::array("none", PropertyType::Long, Vec::<String>::new()),
                    scalar("big", PropertyType::Long, "-9223372036854775808"),
                    scalar("ratio", PropertyType::Double, "0.5"),
                    Property::array("gains", PropertyType::Float, ["1.5", "-Infinity"]),
                    scalar("level", PropertyType::Byte, "-128"),
                    scalar("port", PropertyType::Short, "8883"),
                    scalar("separator", PropertyType::Char, ";"),
                    scalar(
                        "say \"<hi>\"\t\n",
                        PropertyType::String,
                        "caf\u{e9} \u{85}\u{2028} \u{2603}",
                    ),
                ],
            ),
            Configuration::new("example.Empty", Vec::new()),
        ],
    };
    let merged = Document::merge(
        generated(&identity, Some(vpn)),
        &additional,
        &ReservedPolicy::for_generated(Some(vpn)),
    );
    assert!(merged.warnings.is_empty(), "{:?}", merged.warnings);
    merged.document
}

#[test]
fn the_snapshot_writer_matches_kuras_bytes() {
    let written = sample().to_snapshot_xml();
    for (n, (w, g)) in written.lines().zip(GOLDEN.lines()).enumerate() {
        assert_eq!(w, g, "line {}", n + 1);
    }
    assert_eq!(written, GOLDEN);
}

#[test]
fn kuras_parser_rules_accept_what_fleetgate_puts() {
    let document = sample();
    let read = kura_unmarshal(&document.to_snapshot_xml()).expect("Kura would refuse the PUT");
    assert_eq!(read, as_kura_reads(&document));
    // The password reaches MqttDataTransport exactly: not encrypted, so Kura takes it as is
    // instead of decrypting it.
    let transport = read.iter().find(|c| c.pid == MQTT_TRANSPORT_PID).unwrap();
    let password = transport
        .properties
        .iter()
        .find(|p| p.name == "password")
        .unwrap();
    assert_eq!(password.values, [PASSWORD]);
}

#[test]
fn kuras_parser_applies_nothing_from_the_seed_form() {
    // Why CONF-V1 PUT bodies must use the snapshot form: Kura looks up `esf:configuration` by
    // its qualified name, finds none, and answers 200 with nothing applied.
    let read = kura_unmarshal(&sample().to_xml()).unwrap();
    assert!(read.is_empty());
}

#[test]
fn kuras_parser_rules_refuse_what_kura_refuses() {
    // The restated rules are not a tautology: they refuse what Kura's parser throws on.
    let wrap = |property: &str| {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><esf:configurations xmlns:esf="e"><esf:configuration pid="p"><esf:properties>{property}</esf:properties></esf:configuration></esf:configurations>"#
        )
    };
    for bad in [
        r#"<esf:property array="false" encrypted="false" name="n" type="Integer"/>"#,
        r#"<esf:property array="false" encrypted="false" name="n" type="Integer"><esf:value> 1</esf:value></esf:property>"#,
        r#"<esf:property array="false" encrypted="false" name="n" type="Byte"><esf:value>128</esf:value></esf:property>"#,
        r#"<esf:property array="false" encrypted="false" name="n" type="Char"><esf:value/></esf:property>"#,
        r#"<esf:property array="false" encrypted="true" name="n" type="Password"><esf:value>x</esf:value></esf:property>"#,
    ] {
        let refused = kura_unmarshal(&wrap(bad)).expect_err(bad);
        assert!(refused.0.contains("value"), "{bad}: {refused:?}");
    }
    // An unknown type is skipped, not refused; a non-array property takes its first value.
    let read = kura_unmarshal(&wrap(concat!(
        r#"<esf:property array="false" encrypted="false" name="a" type="string"><esf:value>x</esf:value></esf:property>"#,
        r#"<esf:property array="false" encrypted="false" name="b" type="Long"><esf:value>1</esf:value><esf:value>2</esf:value></esf:property>"#,
    )))
    .unwrap();
    assert_eq!(read[0].properties.len(), 1);
    assert_eq!(read[0].properties[0].values, ["1"]);
}

/// A configuration as Kura's parser hands it to the configuration service: PID and properties
/// with their (checked) values as text.
#[derive(Debug, PartialEq)]
struct KuraConfiguration {
    pid: String,
    properties: Vec<KuraProperty>,
}

#[derive(Debug, PartialEq)]
struct KuraProperty {
    name: String,
    ptype: String,
    array: bool,
    values: Vec<String>,
}

/// What Kura's parser yields for a document it accepts, written from Fleetgate's model.
fn as_kura_reads(document: &Document) -> Vec<KuraConfiguration> {
    document
        .configurations
        .iter()
        .map(|c| KuraConfiguration {
            pid: c.id.clone(),
            properties: c
                .properties
                .iter()
                .map(|p| KuraProperty {
                    name: p.name.clone(),
                    ptype: p.ptype.as_str().to_string(),
                    array: p.array,
                    values: if p.array {
                        p.values.clone()
                    } else {
                        p.values[..1].to_vec()
                    },
                })
                .collect(),
        })
        .collect()
}

/// A namespace-unaware DOM element (Kura's `DocumentBuilderFactory` is not namespace aware, so
/// names are compared as written, prefix included).
#[derive(Debug, Default)]
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
    children: Vec<Node>,
}

#[derive(Debug)]
enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    fn attribute(&self, name: &str) -> String {
        // DOM's getAttribute answers "" for a missing attribute.
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    fn text_content(&self) -> String {
        self.children
            .iter()
            .map(|n| match n {
                Node::Element(e) => e.text_content(),
                Node::Text(t) => t.clone(),
            })
            .collect()
    }

    /// `getElementsByTagName`: every descendant with that name, in document order.
    fn by_tag_name<'a>(&'a self, name: &str, out: &mut Vec<&'a Element>) {
        for e in self.elements() {
            if e.name == name {
                out.push(e);
            }
            e.by_tag_name(name, out);
        }
    }
}

fn start(e: &BytesStart<'_>) -> Element {
    Element {
        name: e.name().as_ref().to_string(),
        attributes: e
            .attributes()
            .map(|a| {
                let a = a.unwrap();
                (
                    a.key.as_ref().to_string(),
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .unwrap()
                        .into_owned(),
                )
            })
            .collect(),
        children: Vec::new(),
    }
}

fn dom(xml: &str) -> Element {
    let mut reader = Reader::from_str(xml);
    let mut stack = vec![Element::default()];
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) => stack.push(start(&e)),
            Event::Empty(e) => {
                let e = start(&e);
                stack.last_mut().unwrap().children.push(Node::Element(e));
            }
            Event::End(_) => {
                let e = stack.pop().unwrap();
                stack.last_mut().unwrap().children.push(Node::Element(e));
            }
            Event::Text(t) => {
                let t = t.xml10_content().into_owned();
                stack.last_mut().unwrap().children.push(Node::Text(t));
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().unwrap() {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_xml_entity(&r)
                        .unwrap()
                        .to_string(),
                };
                stack.last_mut().unwrap().children.push(Node::Text(c));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(stack.len(), 1);
    stack.pop().unwrap()
}

/// Why Kura's parser would refuse a document (its PUT then answers an error).
#[derive(Debug)]
struct Refused(String);

/// Kura's snapshot parser, restated: `getElementsByTagName("esf:configuration")`; in each, every
/// child element is a properties element whose child elements are properties (the last
/// properties element wins); a property's values are the text content of its child elements;
/// an unknown `type` (the comparison is exact) skips the property; a non-array property takes
/// its first value, which must exist and parse as Java parses that type (`Integer.parseInt`
/// and friends: no white space, range checked; `Character`: at least one character); an
/// encrypted `Password` is decrypted, which a clear password would not survive.
fn kura_unmarshal(xml: &str) -> Result<Vec<KuraConfiguration>, Refused> {
    let root = dom(xml);
    let mut configurations = Vec::new();
    root.by_tag_name("esf:configuration", &mut configurations);
    configurations
        .into_iter()
        .map(|c| {
            let mut properties = Vec::new();
            for holder in c.elements() {
                properties = holder
                    .elements()
                    .map(kura_property)
                    .filter_map(Result::transpose)
                    .collect::<Result<Vec<_>, _>>()?;
            }
            Ok(KuraConfiguration {
                pid: c.attribute("pid"),
                properties,
            })
        })
        .collect()
}

fn kura_property(e: &Element) -> Result<Option<KuraProperty>, Refused> {
    const TYPES: [&str; 10] = [
        "String", "Long", "Double", "Float", "Integer", "Byte", "Char", "Boolean", "Short",
        "Password",
    ];
    let ptype = e.attribute("type");
    if !TYPES.contains(&ptype.as_str()) {
        return Ok(None);
    }
    let array = e.attribute("array").eq_ignore_ascii_case("true");
    let encrypted = e.attribute("encrypted").eq_ignore_ascii_case("true");
    let mut values: Vec<String> = e.elements().map(Element::text_content).collect();
    if !array {
        let Some(first) = values.first() else {
            return Err(Refused(format!("{ptype} property without a value")));
        };
        values = vec![first.clone()];
    }
    for v in &values {
        java_parse(&ptype, v, encrypted)?;
    }
    Ok(Some(KuraProperty {
        name: e.attribute("name"),
        ptype,
        array,
        values,
    }))
}

fn java_parse(ptype: &str, v: &str, encrypted: bool) -> Result<(), Refused> {
    let refused = || Refused(format!("{ptype} value {v:?}"));
    // Java's integer parsers take an optional sign and digits only; Rust's `parse` agrees.
    let ok = match ptype {
        "Long" => v.parse::<i64>().is_ok(),
        "Integer" => v.parse::<i32>().is_ok(),
        "Short" => v.parse::<i16>().is_ok(),
        "Byte" => v.parse::<i8>().is_ok(),
        // Double.parseDouble trims and knows Infinity / NaN (signed), like Rust's parse.
        "Double" | "Float" => {
            let t = v.trim();
            let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
            unsigned == "Infinity" || unsigned == "NaN" || t.parse::<f64>().is_ok()
        }
        "Char" => !v.is_empty(),
        "Password" => !encrypted,
        _ => true,
    };
    if ok { Ok(()) } else { Err(refused()) }
}
