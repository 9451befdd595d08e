//! Writing a configuration document in the seed form, and masking secrets for previews.

use crate::model::{Document, MASK, Property, PropertyType};

/// The XML declaration every written document starts with.
pub const XML_DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// The namespace Kura's snapshot form binds to `esf`.
pub const ESF_NAMESPACE: &str = "http://eurotech.com/esf/2.0";

/// The namespace the seed form binds to `ns0` on the root element.
pub const METATYPE_NAMESPACE: &str = "http://www.osgi.org/xmlns/metatype/v1.2.0";

/// One level of indentation in the snapshot form: Kura's marshaller sets the JDK transformer's
/// `{http://xml.apache.org/xslt}indent-amount` to 4.
const INDENT: &str = "    ";

impl Document {
    /// Writes the document in the seed form, compactly (no indentation):
    /// `<?xml ...?><configurations xmlns:ns0="..."><configuration><id>PID</id><properties>`
    /// `<property name=".." array=".." encrypted=".." type=".."><value>..</value></property>`
    /// `...</properties></configuration>...</configurations>`.
    ///
    /// Text and attribute values are escaped so that [`Document::parse`] reads back exactly the
    /// same document (carriage returns, and tabs and newlines in attributes, as character
    /// references). Characters XML 1.0 cannot carry at all are written as they are; parsed,
    /// generated and merged documents never contain them (see [`Document::validate`]).
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(256 + 160 * self.property_count());
        out.push_str(XML_DECLARATION);
        out.push_str(r#"<configurations xmlns:ns0=""#);
        out.push_str(METATYPE_NAMESPACE);
        out.push_str(r#"">"#);
        for c in &self.configurations {
            out.push_str("<configuration><id>");
            push_text(&mut out, &c.id);
            out.push_str("</id><properties>");
            for prop in &c.properties {
                out.push_str("<property");
                push_named_attribute(&mut out, "name", &prop.name);
                push_named_attribute(&mut out, "array", bool_str(prop.array));
                push_named_attribute(&mut out, "encrypted", bool_str(prop.encrypted));
                push_named_attribute(&mut out, "type", prop.ptype.as_str());
                out.push('>');
                for v in &prop.values {
                    out.push_str("<value>");
                    push_text(&mut out, v);
                    out.push_str("</value>");
                }
                out.push_str("</property>");
            }
            out.push_str("</properties></configuration>");
        }
        out.push_str("</configurations>");
        out
    }

    /// Writes the document in Kura's snapshot form, the only one Kura's CONF-V1 PUT applies
    /// (PROTOCOL.md 7), byte for byte as Kura itself writes a snapshot
    /// (`XmlMarshallUnmarshallImpl` + `XmlJavaComponentConfigurationsMapper`, serialised by the
    /// JDK's `Transformer` with `indent=yes` and `indent-amount=4`):
    ///
    /// ```text
    /// <?xml version="1.0" encoding="UTF-8"?><esf:configurations xmlns:esf="..." xmlns:ocd="...">
    ///     <esf:configuration pid="PID">
    ///         <esf:properties>
    ///             <esf:property array="false" encrypted="false" name="n" type="String">
    ///                 <esf:value>v</esf:value>
    ///             </esf:property>
    ///         </esf:properties>
    ///     </esf:configuration>
    /// </esf:configurations>
    /// ```
    ///
    /// - The root follows the declaration on the same line: Kura marks its DOM standalone, so
    ///   the JDK writes no `standalone` pseudo-attribute and, with it, no line break there.
    /// - Attributes come in alphabetical order (the JDK DOM keeps an element's attributes
    ///   sorted by name), hence `array`, `encrypted`, `name`, `type`.
    /// - An element without content is written `<x/>` (an empty value `<esf:value/>`, an
    ///   array with no values `<esf:property .../>`); lines end with `\n`, the last one too.
    /// - Values are written untrimmed (Kura's parser reads `getTextContent()` as is) and
    ///   escaped as the JDK serialiser escapes them (see [`push_text`], [`push_attribute`]).
    pub fn to_snapshot_xml(&self) -> String {
        let mut out = String::with_capacity(256 + 200 * self.property_count());
        out.push_str(XML_DECLARATION);
        out.push_str(r#"<esf:configurations xmlns:esf=""#);
        out.push_str(ESF_NAMESPACE);
        out.push_str(r#"" xmlns:ocd=""#);
        out.push_str(METATYPE_NAMESPACE);
        out.push('"');
        if self.configurations.is_empty() {
            out.push_str("/>\n");
            return out;
        }
        out.push_str(">\n");
        for c in &self.configurations {
            out.push_str(INDENT);
            out.push_str("<esf:configuration");
            push_named_attribute(&mut out, "pid", &c.id);
            out.push_str(">\n");
            out.push_str(&INDENT.repeat(2));
            if c.properties.is_empty() {
                out.push_str("<esf:properties/>\n");
            } else {
                out.push_str("<esf:properties>\n");
                for prop in &c.properties {
                    push_snapshot_property(&mut out, prop);
                }
                out.push_str(&INDENT.repeat(2));
                out.push_str("</esf:properties>\n");
            }
            out.push_str(INDENT);
            out.push_str("</esf:configuration>\n");
        }
        out.push_str("</esf:configurations>\n");
        out
    }

    /// A copy in which every value of every `Password` property is `********`, for previews
    /// and logs.
    pub fn mask_passwords(&self) -> Document {
        let mut masked = self.clone();
        for p in masked
            .configurations
            .iter_mut()
            .flat_map(|c| c.properties.iter_mut())
            .filter(|p| p.ptype == PropertyType::Password)
        {
            for v in &mut p.values {
                *v = MASK.to_string();
            }
        }
        masked
    }

    /// [`Document::to_xml`] of [`Document::mask_passwords`]: the admin preview.
    pub fn to_xml_masked(&self) -> String {
        self.mask_passwords().to_xml()
    }

    fn property_count(&self) -> usize {
        self.configurations.iter().map(|c| c.properties.len()).sum()
    }
}

/// One `<esf:property>` of the snapshot form, at its indentation level, with its values.
fn push_snapshot_property(out: &mut String, prop: &Property) {
    out.push_str(&INDENT.repeat(3));
    out.push_str("<esf:property");
    push_named_attribute(out, "array", bool_str(prop.array));
    push_named_attribute(out, "encrypted", bool_str(prop.encrypted));
    push_named_attribute(out, "name", &prop.name);
    push_named_attribute(out, "type", prop.ptype.as_str());
    if prop.values.is_empty() {
        out.push_str("/>\n");
        return;
    }
    out.push_str(">\n");
    for v in &prop.values {
        out.push_str(&INDENT.repeat(4));
        if v.is_empty() {
            out.push_str("<esf:value/>\n");
        } else {
            out.push_str("<esf:value>");
            push_text(out, v);
            out.push_str("</esf:value>\n");
        }
    }
    out.push_str(&INDENT.repeat(3));
    out.push_str("</esf:property>\n");
}

/// ` name="value"`, the value escaped.
fn push_named_attribute(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str(r#"=""#);
    push_attribute(out, value);
    out.push('"');
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// Escapes element text as the JDK serialiser (`ToStream.characters`) does: `&`, `<`, `>` as
/// entities; `\r` as a character reference (a parser would otherwise turn it into `\n`, end-of-line
/// normalisation); C1 controls (U+007F to U+009F) and U+2028 as character references; `"`, tab
/// and newline as they are.
fn push_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c if needs_reference(c) => push_reference(out, c),
            c => out.push(c),
        }
    }
}

/// Escapes a double-quoted attribute value as the JDK serialiser (`ToStream.writeAttrString`)
/// does: text's escapes plus `"`, and white space other than a space as a character reference
/// (a parser would otherwise turn it into a space, attribute normalisation).
fn push_attribute(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => push_reference(out, c),
            c if needs_reference(c) => push_reference(out, c),
            c => out.push(c),
        }
    }
}

/// Characters the JDK serialiser writes as decimal references although UTF-8 could carry them.
fn needs_reference(c: char) -> bool {
    matches!(c, '\u{7f}'..='\u{9f}' | '\u{2028}')
}

/// `&#N;` with N decimal, as the JDK writes references.
fn push_reference(out: &mut String, c: char) {
    out.push_str("&#");
    out.push_str(&u32::from(c).to_string());
    out.push(';');
}

#[cfg(test)]
mod tests {
    use crate::model::{Configuration, Document, Property, PropertyType};

    fn one(p: Property) -> Document {
        Document {
            configurations: vec![Configuration::new("pid.a", vec![p])],
        }
    }

    #[test]
    fn writes_the_snapshot_form_exactly_and_reads_it_back() {
        let d = one(Property::array("k", PropertyType::String, [" a", "b "]));
        let xml = d.to_snapshot_xml();
        assert_eq!(
            xml,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                r#"<esf:configurations xmlns:esf="http://eurotech.com/esf/2.0" xmlns:ocd="http://www.osgi.org/xmlns/metatype/v1.2.0">"#,
                "\n",
                r#"    <esf:configuration pid="pid.a">"#,
                "\n        <esf:properties>\n",
                r#"            <esf:property array="true" encrypted="false" name="k" type="String">"#,
                "\n                <esf:value> a</esf:value>",
                "\n                <esf:value>b </esf:value>",
                "\n            </esf:property>",
                "\n        </esf:properties>",
                "\n    </esf:configuration>",
                "\n</esf:configurations>\n",
            )
        );
        assert_eq!(Document::parse(&xml).unwrap(), d);
    }

    #[test]
    fn writes_the_seed_form_exactly() {
        let d = one(Property::scalar("k", PropertyType::String, "v"));
        assert_eq!(
            d.to_xml(),
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                r#"<configurations xmlns:ns0="http://www.osgi.org/xmlns/metatype/v1.2.0">"#,
                r#"<configuration><id>pid.a</id><properties>"#,
                r#"<property name="k" array="false" encrypted="false" type="String"><value>v</value></property>"#,
                r#"</properties></configuration></configurations>"#
            )
        );
    }

    #[test]
    fn empty_documents_and_arrays() {
        let empty = Document::default();
        assert!(empty.to_xml().ends_with(
            r#"<configurations xmlns:ns0="http://www.osgi.org/xmlns/metatype/v1.2.0"></configurations>"#
        ));
        assert_eq!(Document::parse(&empty.to_xml()), Ok(empty.clone()));
        assert!(empty.to_snapshot_xml().ends_with(
            r#"xmlns:ocd="http://www.osgi.org/xmlns/metatype/v1.2.0"/>
"#
        ));
        assert_eq!(Document::parse(&empty.to_snapshot_xml()), Ok(empty));

        let none = one(Property::array(
            "a",
            PropertyType::Integer,
            Vec::<String>::new(),
        ));
        assert!(none.to_xml().contains(
            r#"<property name="a" array="true" encrypted="false" type="Integer"></property>"#
        ));
        assert!(
            none.to_snapshot_xml().contains(
                r#"<esf:property array="true" encrypted="false" name="a" type="Integer"/>"#
            )
        );
        assert_eq!(Document::parse(&none.to_xml()), Ok(none.clone()));
        assert_eq!(Document::parse(&none.to_snapshot_xml()), Ok(none));
    }

    #[test]
    fn escapes_text_and_attributes() {
        let mut p = Property::scalar(
            "a\"b<c>&d'e\tf\ng\rh",
            PropertyType::String,
            "x<y>&z\"q'r\r\n s\tt ]]> &amp;",
        );
        p.encrypted = true;
        let d = one(p);
        let xml = d.to_xml();
        assert!(
            xml.contains(r#"name="a&quot;b&lt;c&gt;&amp;d'e&#9;f&#10;g&#13;h""#),
            "{xml}"
        );
        assert!(
            xml.contains("<value>x&lt;y&gt;&amp;z\"q'r&#13;\n s\tt ]]&gt; &amp;amp;</value>"),
            "{xml}"
        );
        assert!(xml.contains(r#"encrypted="true""#));
        assert_eq!(Document::parse(&xml), Ok(d.clone()));
        let snapshot = d.to_snapshot_xml();
        assert!(
            snapshot.contains(
                "<esf:value>x&lt;y&gt;&amp;z\"q'r&#13;\n s\tt ]]&gt; &amp;amp;</esf:value>"
            ),
            "{snapshot}"
        );
        assert_eq!(Document::parse(&snapshot), Ok(d));
    }

    #[test]
    fn masks_every_password_value() {
        let d = Document {
            configurations: vec![Configuration::new(
                "pid.a",
                vec![
                    Property::scalar("user", PropertyType::String, "u"),
                    Property::scalar("password", PropertyType::Password, "s3cr&t"),
                    Property::array("keys", PropertyType::Password, ["k1", "k2"]),
                ],
            )],
        };
        let masked = d.mask_passwords();
        let c = &masked.configurations[0];
        assert_eq!(c.properties[0].values, ["u"]);
        assert_eq!(c.properties[1].values, ["********"]);
        assert_eq!(c.properties[2].values, ["********", "********"]);
        let xml = d.to_xml_masked();
        assert!(!xml.contains("s3cr") && !xml.contains("k1") && !xml.contains("k2"));
        assert!(xml.contains(r#"type="Password"><value>********</value>"#));
        // The original is untouched.
        assert!(d.to_xml().contains("s3cr&amp;t"));
    }
}
