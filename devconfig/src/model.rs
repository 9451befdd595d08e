//! The in-memory model of a configuration document and the rules a valid one obeys.

use std::collections::HashSet;
use std::fmt;

/// What a password value is shown as wherever it must not be disclosed.
pub const MASK: &str = "********";

/// A device configuration document: an ordered list of component configurations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Document {
    /// The configurations, in document order.
    pub configurations: Vec<Configuration>,
}

/// The configuration of one component, identified by its PID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuration {
    /// The component PID (`<id>` in the seed form, the `pid` attribute in the Kura snapshot form).
    pub id: String,
    /// The properties, in document order.
    pub properties: Vec<Property>,
}

/// One typed property of a configuration.
///
/// `Debug` shows the values of `Password` properties as `********`, so a document can be
/// logged without disclosing secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Property {
    /// The property name (the `name` attribute).
    pub name: String,
    /// The property type (the `type` attribute).
    pub ptype: PropertyType,
    /// Whether the property is an array (zero or more values) rather than a scalar (exactly one).
    pub array: bool,
    /// The `encrypted` attribute, carried through unchanged.
    pub encrypted: bool,
    /// The values as text, unescaped.
    pub values: Vec<String>,
}

/// The type of a property, spelled in XML exactly as the variant name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropertyType {
    /// Any text.
    String,
    /// A 64-bit signed integer.
    Long,
    /// A 64-bit floating point number.
    Double,
    /// A 32-bit floating point number.
    Float,
    /// A 32-bit signed integer.
    Integer,
    /// An 8-bit signed integer.
    Byte,
    /// Exactly one character.
    Char,
    /// `true` or `false`, in any letter case.
    Boolean,
    /// A 16-bit signed integer.
    Short,
    /// Any text; a secret that previews mask.
    Password,
}

impl PropertyType {
    /// Every property type, in the order PROTOCOL.md lists them.
    pub const ALL: [PropertyType; 10] = [
        PropertyType::String,
        PropertyType::Long,
        PropertyType::Double,
        PropertyType::Float,
        PropertyType::Integer,
        PropertyType::Byte,
        PropertyType::Char,
        PropertyType::Boolean,
        PropertyType::Short,
        PropertyType::Password,
    ];

    /// The spelling of this type in the XML `type` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            PropertyType::String => "String",
            PropertyType::Long => "Long",
            PropertyType::Double => "Double",
            PropertyType::Float => "Float",
            PropertyType::Integer => "Integer",
            PropertyType::Byte => "Byte",
            PropertyType::Char => "Char",
            PropertyType::Boolean => "Boolean",
            PropertyType::Short => "Short",
            PropertyType::Password => "Password",
        }
    }

    /// The type spelled exactly `name` (case-sensitive, as Kura writes it), if any.
    pub fn from_xml_name(name: &str) -> Option<PropertyType> {
        PropertyType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Checks that `value` is a valid value of this type.
    ///
    /// The error describes what was expected; it never contains the value itself.
    /// Integers follow Rust's parsing (optional sign, decimal digits, no whitespace).
    /// Floating point values follow Rust's parsing, except that the non-finite values must be
    /// spelled as Kura (Java) writes and reads them: `NaN` and `Infinity`, optionally signed.
    pub fn check_value(self, value: &str) -> Result<(), UnexpectedValue> {
        let ok = match self {
            PropertyType::String | PropertyType::Password => true,
            PropertyType::Long => value.parse::<i64>().is_ok(),
            PropertyType::Integer => value.parse::<i32>().is_ok(),
            PropertyType::Short => value.parse::<i16>().is_ok(),
            PropertyType::Byte => value.parse::<i8>().is_ok(),
            PropertyType::Double => java_non_finite_ok(value) && value.parse::<f64>().is_ok(),
            PropertyType::Float => java_non_finite_ok(value) && value.parse::<f32>().is_ok(),
            PropertyType::Char => value.chars().count() == 1,
            PropertyType::Boolean => {
                value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false")
            }
        };
        if ok {
            Ok(())
        } else {
            Err(UnexpectedValue(self))
        }
    }

    fn expectation(self) -> &'static str {
        match self {
            PropertyType::String | PropertyType::Password => "text",
            PropertyType::Long => "a 64-bit signed integer",
            PropertyType::Integer => "a 32-bit signed integer",
            PropertyType::Short => "a 16-bit signed integer",
            PropertyType::Byte => "an 8-bit signed integer",
            PropertyType::Double => "a 64-bit floating point number",
            PropertyType::Float => "a 32-bit floating point number",
            PropertyType::Char => "exactly one character",
            PropertyType::Boolean => "true or false",
        }
    }
}

/// Rust accepts `inf`, `infinity` and `nan` in any case; Java only `Infinity` and `NaN`.
fn java_non_finite_ok(value: &str) -> bool {
    let unsigned = value.strip_prefix(['+', '-']).unwrap_or(value);
    let non_finite = ["inf", "infinity", "nan"]
        .iter()
        .any(|w| unsigned.eq_ignore_ascii_case(w));
    !non_finite || unsigned == "Infinity" || unsigned == "NaN"
}

impl fmt::Display for PropertyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PropertyType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PropertyType::from_xml_name(s).ok_or_else(|| format!("unknown property type {}", quote(s)))
    }
}

impl Property {
    /// A scalar (non-array, non-encrypted) property with one value.
    pub fn scalar(name: impl Into<String>, ptype: PropertyType, value: impl Into<String>) -> Self {
        Property {
            name: name.into(),
            ptype,
            array: false,
            encrypted: false,
            values: vec![value.into()],
        }
    }

    /// A non-encrypted array property with the given values.
    pub fn array<I, S>(name: impl Into<String>, ptype: PropertyType, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Property {
            name: name.into(),
            ptype,
            array: true,
            encrypted: false,
            values: values.into_iter().map(Into::into).collect(),
        }
    }

    /// The single value of a scalar property (`None` for an array property).
    pub fn value(&self) -> Option<&str> {
        match (self.array, self.values.as_slice()) {
            (false, [v]) => Some(v),
            _ => None,
        }
    }

    /// Checks this property against every rule [`Document::parse`] enforces.
    pub(crate) fn check(&self) -> Result<(), Violation> {
        check_property_name(&self.name)?;
        if !self.array && self.values.len() != 1 {
            return Err(Violation::ValueCount {
                name: self.name.clone(),
                count: self.values.len(),
            });
        }
        for v in &self.values {
            check_value(&self.name, self.ptype, v)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masked;
        let values: &[String] = if self.ptype == PropertyType::Password {
            masked = vec![MASK.to_string(); self.values.len()];
            &masked
        } else {
            &self.values
        };
        f.debug_struct("Property")
            .field("name", &self.name)
            .field("ptype", &self.ptype)
            .field("array", &self.array)
            .field("encrypted", &self.encrypted)
            .field("values", &values)
            .finish()
    }
}

impl Configuration {
    /// A configuration with the given PID and properties.
    pub fn new(id: impl Into<String>, properties: Vec<Property>) -> Self {
        Configuration {
            id: id.into(),
            properties,
        }
    }

    /// The property called `name`, if any.
    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name == name)
    }
}

/// A document that breaks one of the rules [`Document::parse`] enforces (see
/// [`Document::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidDocument {
    /// What is wrong, naming the configuration and property; never a secret value.
    pub message: String,
}

impl Document {
    /// The configuration with PID `id`, if any.
    pub fn configuration(&self, id: &str) -> Option<&Configuration> {
        self.configurations.iter().find(|c| c.id == id)
    }

    /// Checks a document built in code against the rules [`Document::parse`] enforces: non-empty
    /// unique ids without surrounding whitespace, non-empty property names unique within a
    /// configuration, one value per scalar property, values valid for their type, and only
    /// characters XML 1.0 can carry. Parsed, generated and merged documents always pass.
    pub fn validate(&self) -> Result<(), InvalidDocument> {
        let mut ids = HashSet::new();
        for c in &self.configurations {
            check_id(&c.id).map_err(|v| InvalidDocument {
                message: v.to_string(),
            })?;
            if !ids.insert(c.id.as_str()) {
                return Err(InvalidDocument {
                    message: duplicate_id_message(&c.id),
                });
            }
            let mut names = HashSet::new();
            for p in &c.properties {
                p.check().map_err(|m| InvalidDocument {
                    message: format!("configuration {}: {m}", quote(&c.id)),
                })?;
                if !names.insert(p.name.as_str()) {
                    return Err(InvalidDocument {
                        message: duplicate_name_message(&p.name, &c.id),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Whether `c` may appear in an XML 1.0 document (the `Char` production).
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r'
        | '\u{20}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

/// A value that is not valid for its property type; the message says what was expected and
/// never contains the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected {}", .0.expectation())]
pub struct UnexpectedValue(pub PropertyType);

/// A broken rule of a configuration document. The messages name the configuration or property
/// and never contain a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Violation {
    /// `what` holds a character XML 1.0 cannot carry.
    #[error("{what} contains the character U+{code:04X}, which XML 1.0 does not allow")]
    NonXmlChar { what: String, code: u32 },
    #[error("configuration with an empty id")]
    EmptyId,
    #[error("configuration id {} has surrounding whitespace", quote(.0))]
    IdWhitespace(String),
    #[error("property with an empty name")]
    EmptyName,
    /// Quoting the value is safe: a Password value is any text, so it never fails its type.
    #[error(
        "invalid value {} for property {} of type {}: {source}",
        quote(value),
        quote(name),
        source.0
    )]
    BadValue {
        name: String,
        value: String,
        source: UnexpectedValue,
    },
    #[error(
        "non-array property {} has {count} values; it must have exactly one",
        quote(name)
    )]
    ValueCount { name: String, count: usize },
}

/// Checks that `text` only holds XML 1.0 characters; `what` names the text in the error.
pub(crate) fn check_xml_chars(text: &str, what: &str) -> Result<(), Violation> {
    match text.chars().find(|&c| !is_xml_char(c)) {
        None => Ok(()),
        Some(c) => Err(Violation::NonXmlChar {
            what: what.to_string(),
            code: u32::from(c),
        }),
    }
}

pub(crate) fn check_id(id: &str) -> Result<(), Violation> {
    if id.is_empty() {
        return Err(Violation::EmptyId);
    }
    if id.trim_matches(is_xml_space) != id {
        return Err(Violation::IdWhitespace(id.to_string()));
    }
    check_xml_chars(id, "configuration id")
}

pub(crate) fn check_property_name(name: &str) -> Result<(), Violation> {
    if name.is_empty() {
        return Err(Violation::EmptyName);
    }
    check_xml_chars(name, "property name")
}

/// Checks one value of property `name`. The message never contains a password.
pub(crate) fn check_value(name: &str, ptype: PropertyType, value: &str) -> Result<(), Violation> {
    check_xml_chars(value, &format!("the value of property {}", quote(name)))?;
    ptype
        .check_value(value)
        .map_err(|source| Violation::BadValue {
            name: name.to_string(),
            value: value.to_string(),
            source,
        })
}

pub(crate) fn duplicate_id_message(id: &str) -> String {
    format!("duplicate configuration id {}", quote(id))
}

pub(crate) fn duplicate_name_message(name: &str, id: &str) -> String {
    format!(
        "duplicate property {} in configuration {}",
        quote(name),
        quote(id)
    )
}

/// XML white space (`S` production).
pub(crate) fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Text for an error message: shortened, with control characters and quotes escaped.
pub(crate) fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    let (head, cut) = match text.char_indices().nth(MAX_CHARS) {
        None => (text, false),
        Some((i, _)) => (&text[..i], true),
    };
    let mut out: String = head.escape_debug().collect();
    if cut {
        out.push_str("...");
    }
    out
}

/// [`shorten`]ed text in double quotes.
pub(crate) fn quote(text: &str) -> String {
    format!("\"{}\"", shorten(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip_exactly() {
        for t in PropertyType::ALL {
            assert_eq!(PropertyType::from_xml_name(t.as_str()), Some(t));
            assert_eq!(t.as_str().parse::<PropertyType>(), Ok(t));
        }
        assert_eq!(PropertyType::from_xml_name("string"), None);
        assert_eq!(PropertyType::from_xml_name("Strin"), None);
        assert_eq!(PropertyType::from_xml_name(""), None);
    }

    #[test]
    fn value_rules_per_type() {
        use PropertyType::*;
        let good: &[(PropertyType, &str)] = &[
            (String, ""),
            (String, " any <text> "),
            (Password, ""),
            (Long, "-9223372036854775808"),
            (Long, "+42"),
            (Integer, "2147483647"),
            (Short, "-32768"),
            (Byte, "127"),
            (Double, "1.5E10"),
            (Double, "-0.0"),
            (Double, "NaN"),
            (Double, "-Infinity"),
            (Float, "3.25"),
            (Float, "Infinity"),
            (Char, "x"),
            (Char, "é"),
            (Boolean, "true"),
            (Boolean, "FALSE"),
            (Boolean, "True"),
        ];
        for (t, v) in good {
            assert_eq!(t.check_value(v), Ok(()), "{t} {v:?}");
        }
        let bad: &[(PropertyType, &str)] = &[
            (Long, "9223372036854775808"),
            (Long, ""),
            (Long, " 1"),
            (Long, "1.0"),
            (Integer, "2147483648"),
            (Short, "32768"),
            (Byte, "128"),
            (Byte, "0x10"),
            (Double, "abc"),
            (Double, ""),
            (Double, "inf"),
            (Double, "nan"),
            (Double, "1.0d"),
            (Float, "INFINITY"),
            (Char, ""),
            (Char, "ab"),
            (Boolean, "yes"),
            (Boolean, "1"),
            (Boolean, ""),
        ];
        for (t, v) in bad {
            assert!(t.check_value(v).is_err(), "{t} {v:?} should be rejected");
        }
    }

    #[test]
    fn debug_masks_passwords() {
        let p = Property::scalar("password", PropertyType::Password, "s3cret");
        let s = format!("{p:?}");
        assert!(!s.contains("s3cret"), "{s}");
        assert!(s.contains(MASK));
        let q = Property::scalar("user", PropertyType::String, "visible");
        assert!(format!("{q:?}").contains("visible"));
    }

    #[test]
    fn validate_catches_model_errors() {
        let ok = Document {
            configurations: vec![Configuration::new(
                "a",
                vec![Property::scalar("x", PropertyType::Integer, "1")],
            )],
        };
        assert_eq!(ok.validate(), Ok(()));

        let mut dup = ok.clone();
        dup.configurations.push(ok.configurations[0].clone());
        assert!(dup.validate().unwrap_err().message.contains("duplicate"));

        let mut bad_value = ok.clone();
        bad_value.configurations[0].properties[0].values[0] = "x".into();
        assert!(bad_value.validate().is_err());

        let mut two = ok.clone();
        two.configurations[0].properties[0].values.push("2".into());
        assert!(two.validate().is_err());

        let mut ctl = ok.clone();
        ctl.configurations[0].properties[0].ptype = PropertyType::String;
        ctl.configurations[0].properties[0].values[0] = "a\u{1}".into();
        assert!(ctl.validate().unwrap_err().message.contains("U+0001"));

        let mut padded = ok.clone();
        padded.configurations[0].id = " a".into();
        assert!(padded.validate().is_err());

        let mut dup_name = ok;
        let p = dup_name.configurations[0].properties[0].clone();
        dup_name.configurations[0].properties.push(p);
        assert!(dup_name.validate().is_err());
    }

    #[test]
    fn quote_shortens_and_escapes() {
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
        let long = "x".repeat(1000);
        assert!(quote(&long).len() < 80);
    }
}
