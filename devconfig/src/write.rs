//! Writing a configuration document in the seed form, and masking secrets for previews.

use crate::model::{Document, MASK, PropertyType};

/// The XML declaration every written document starts with.
pub const XML_DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// The two forms a document is written in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// The seed's `<configurations><configuration><id>` form (PROV-V1 replies).
    Seed,
    /// Kura's `esf:` snapshot form (CONF-V1 PUT bodies).
    Snapshot,
}

/// The namespace Kura's snapshot form binds to `esf`.
pub const ESF_NAMESPACE: &str = "http://eurotech.com/esf/2.0";

/// The namespace the seed form binds to `ns0` on the root element.
pub const METATYPE_NAMESPACE: &str = "http://www.osgi.org/xmlns/metatype/v1.2.0";

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
        self.write(Form::Seed)
    }

    /// Writes the document in Kura's snapshot form, the only one Kura's CONF-V1 PUT applies
    /// (PROTOCOL.md 7), compactly:
    /// `<?xml ...?><esf:configurations xmlns:esf="http://eurotech.com/esf/2.0" xmlns:ocd="...">`
    /// `<esf:configuration pid="PID"><esf:properties><esf:property array=".." encrypted=".."`
    /// ` name=".." type=".."><esf:value>..</esf:value></esf:property>...`. Values are written
    /// untrimmed and escaped as in [`Document::to_xml`].
    pub fn to_snapshot_xml(&self) -> String {
        self.write(Form::Snapshot)
    }

    fn write(&self, form: Form) -> String {
        let snapshot = form == Form::Snapshot;
        let mut out = String::with_capacity(256 + 160 * self.property_count());
        out.push_str(XML_DECLARATION);
        if snapshot {
            out.push_str(r#"<esf:configurations xmlns:esf=""#);
            out.push_str(ESF_NAMESPACE);
            out.push_str(r#"" xmlns:ocd=""#);
        } else {
            out.push_str(r#"<configurations xmlns:ns0=""#);
        }
        out.push_str(METATYPE_NAMESPACE);
        out.push_str(r#"">"#);
        let p = if snapshot { "esf:" } else { "" };
        for c in &self.configurations {
            if snapshot {
                out.push_str(r#"<esf:configuration pid=""#);
                push_attribute(&mut out, &c.id);
                out.push_str(r#""><esf:properties>"#);
            } else {
                out.push_str("<configuration><id>");
                push_text(&mut out, &c.id);
                out.push_str("</id><properties>");
            }
            for prop in &c.properties {
                let attributes = [
                    ("array", bool_str(prop.array)),
                    ("encrypted", bool_str(prop.encrypted)),
                    ("type", prop.ptype.as_str()),
                ];
                out.push('<');
                out.push_str(p);
                out.push_str("property");
                if !snapshot {
                    push_named_attribute(&mut out, "name", &prop.name);
                }
                for (name, value) in &attributes[..2] {
                    push_named_attribute(&mut out, name, value);
                }
                if snapshot {
                    push_named_attribute(&mut out, "name", &prop.name);
                }
                push_named_attribute(&mut out, attributes[2].0, attributes[2].1);
                out.push('>');
                for v in &prop.values {
                    out.push('<');
                    out.push_str(p);
                    out.push_str("value>");
                    push_text(&mut out, v);
                    out.push_str("</");
                    out.push_str(p);
                    out.push_str("value>");
                }
                out.push_str("</");
                out.push_str(p);
                out.push_str("property>");
            }
            out.push_str("</");
            out.push_str(p);
            out.push_str("properties></");
            out.push_str(p);
            out.push_str("configuration>");
        }
        out.push_str("</");
        out.push_str(p);
        out.push_str("configurations>");
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

/// Escapes element text. `\r` becomes a character reference because a parser would otherwise
/// turn it into `\n` (end-of-line normalisation).
fn push_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

/// Escapes a double-quoted attribute value. White space other than a space becomes a character
/// reference because a parser would otherwise turn it into a space (attribute normalisation).
fn push_attribute(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
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
                r#"<esf:configuration pid="pid.a"><esf:properties>"#,
                r#"<esf:property array="true" encrypted="false" name="k" type="String"><esf:value> a</esf:value><esf:value>b </esf:value></esf:property>"#,
                r#"</esf:properties></esf:configuration></esf:configurations>"#
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
        assert_eq!(Document::parse(&empty.to_xml()), Ok(empty));

        let none = one(Property::array(
            "a",
            PropertyType::Integer,
            Vec::<String>::new(),
        ));
        assert!(none.to_xml().contains(
            r#"<property name="a" array="true" encrypted="false" type="Integer"></property>"#
        ));
        assert_eq!(Document::parse(&none.to_xml()), Ok(none));
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
        assert_eq!(Document::parse(&xml), Ok(d));
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
