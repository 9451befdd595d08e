//! Reading a configuration document from XML, in either accepted form, with validation.

use std::collections::HashSet;

use quick_xml::XmlVersion;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::reader::Reader;

use crate::model::{
    Configuration, Document, Property, PropertyType, Violation, check_id, check_property_name,
    check_value, check_xml_chars, duplicate_id_message, duplicate_name_message, is_xml_space,
    quote, shorten,
};

/// The largest document [`Document::parse`] accepts, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// The deepest element nesting [`Document::parse`] accepts (the document itself needs 5 levels;
/// the rest is room for skipped elements such as Kura's `<ocd:OCD>`).
pub const MAX_DEPTH: usize = 32;

/// Why a document was rejected, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// 1-based line of the offending element or position.
    pub line: usize,
    /// 1-based column (in characters) of the offending element or position.
    pub column: usize,
    /// What is wrong. Never contains a password value.
    pub message: String,
}

impl Document {
    /// Parses and validates a configuration document, in the seed form (`<configurations>` /
    /// `<configuration><id>`) or the Kura snapshot form (`<esf:configurations>` /
    /// `<esf:configuration pid="...">`); both give the same model.
    ///
    /// Element and attribute names are matched on their local part, so namespace prefixes are
    /// ignored. Unknown elements directly inside a configuration (such as Kura's `<ocd:OCD>`)
    /// are skipped with their content; anywhere else an unknown element is an error. Unknown
    /// attributes are ignored. DOCTYPE declarations are refused, and so are inputs larger than
    /// [`MAX_DOCUMENT_BYTES`] or nested deeper than [`MAX_DEPTH`].
    pub fn parse(input: &str) -> Result<Document, ParseError> {
        if input.len() > MAX_DOCUMENT_BYTES {
            return Err(error_at(
                input,
                MAX_DOCUMENT_BYTES,
                format!(
                    "the document is {} bytes long; at most {MAX_DOCUMENT_BYTES} are allowed",
                    input.len()
                ),
            ));
        }
        // quick-xml skips a byte order mark but then counts positions after it; strip it here
        // so that positions and the text agree. A BOM is not a visible column anyway.
        let text = input.strip_prefix('\u{feff}').unwrap_or(input);
        Parser::new(text).run()
    }
}

impl std::str::FromStr for Document {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Document::parse(s)
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let prefix = &text.as_bytes()[..offset.min(text.len())];
    let line = 1 + prefix.iter().filter(|&&b| b == b'\n').count();
    let line_start = prefix
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    // Count characters, not bytes: every byte but a UTF-8 continuation byte starts one.
    let column = 1 + prefix[line_start..]
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count();
    (line, column)
}

fn error_at(text: &str, offset: usize, message: String) -> ParseError {
    let (line, column) = line_column(text, offset);
    ParseError {
        line,
        column,
        message,
    }
}

/// What the parser is inside of. Each open element has one frame.
enum Frame {
    Root,
    Configuration(ConfigurationFrame),
    Id {
        start: usize,
        text: String,
    },
    Properties,
    Property {
        start: usize,
        property: Property,
    },
    Value {
        start: usize,
        text: String,
    },
    /// An unknown element being skipped, with everything inside it.
    Skip,
}

impl Frame {
    fn describe(&self) -> &'static str {
        match self {
            Frame::Root => "<configurations>",
            Frame::Configuration(_) => "<configuration>",
            Frame::Id { .. } => "<id>",
            Frame::Properties => "<properties>",
            Frame::Property { .. } => "<property>",
            Frame::Value { .. } => "<value>",
            Frame::Skip => "a skipped element",
        }
    }
}

struct ConfigurationFrame {
    start: usize,
    pid: Option<String>,
    id: Option<String>,
    seen_properties: bool,
    properties: Vec<Property>,
    names: HashSet<String>,
}

struct Parser<'a> {
    text: &'a str,
    reader: Reader<&'a [u8]>,
    stack: Vec<Frame>,
    configurations: Vec<Configuration>,
    ids: HashSet<String>,
    root_seen: bool,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        let mut reader = Reader::from_str(text);
        let config = reader.config_mut();
        config.enable_all_checks(true);
        config.trim_text(false);
        config.expand_empty_elements = false;
        Parser {
            text,
            reader,
            stack: Vec::new(),
            configurations: Vec::new(),
            ids: HashSet::new(),
            root_seen: false,
        }
    }

    fn error(&self, offset: usize, message: impl std::fmt::Display) -> ParseError {
        error_at(self.text, offset, message.to_string())
    }

    fn position(&self) -> usize {
        usize::try_from(self.reader.buffer_position()).unwrap_or(usize::MAX)
    }

    fn run(mut self) -> Result<Document, ParseError> {
        let mut first = true;
        loop {
            // Every event starts where the previous one ended (text, even white space, is an
            // event of its own), so this is the offset of the event's first byte.
            let start = self.position();
            let event = match self.reader.read_event() {
                Ok(event) => event,
                Err(e) => {
                    let at = usize::try_from(self.reader.error_position()).unwrap_or(start);
                    return Err(self.error(at, malformed(&e)));
                }
            };
            match event {
                Event::Decl(_) if !first => {
                    return Err(self.error(
                        start,
                        "the XML declaration is only allowed at the start of the document",
                    ));
                }
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
                Event::DocType(_) => {
                    return Err(self.error(start, "DOCTYPE declarations are not allowed"));
                }
                Event::Start(e) => self.open(&e, start)?,
                Event::Empty(e) => {
                    self.open(&e, start)?;
                    self.close(start)?;
                }
                Event::End(_) => self.close(start)?,
                Event::Text(t) => self.text(&t.xml10_content(), start)?,
                Event::CData(c) => self.text(&c.xml10_content(), start)?,
                Event::GeneralRef(r) => {
                    let resolved = self.resolve(&r, start)?;
                    self.text(&resolved, start)?;
                }
                Event::Eof => break,
            }
            first = false;
        }
        let end = self.text.len();
        if let Some(frame) = self.stack.last() {
            return Err(self.error(
                end,
                format!("unexpected end of the document inside {}", frame.describe()),
            ));
        }
        if !self.root_seen {
            return Err(self.error(end, "no <configurations> root element"));
        }
        Ok(Document {
            configurations: self.configurations,
        })
    }

    fn resolve(&self, r: &BytesRef<'_>, start: usize) -> Result<String, ParseError> {
        if r.is_char_ref() {
            match r.resolve_char_ref() {
                Ok(Some(c)) => Ok(c.to_string()),
                _ => Err(self.error(
                    start,
                    format!("invalid character reference &{};", shorten(r)),
                )),
            }
        } else {
            quick_xml::escape::resolve_xml_entity(r)
                .map(str::to_string)
                .ok_or_else(|| self.error(start, format!("unknown entity &{};", shorten(r))))
        }
    }

    fn open(&mut self, e: &BytesStart<'_>, start: usize) -> Result<(), ParseError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.error(
                start,
                format!("elements are nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        let local = e.local_name();
        let local = local.as_ref();
        let frame = match self.stack.last_mut() {
            None if self.root_seen => {
                return Err(self.error(start, "content after the root element"));
            }
            None => {
                if local != "configurations" {
                    return Err(self.error(
                        start,
                        format!(
                            "the root element must be <configurations>, not <{}>",
                            name_of(e)
                        ),
                    ));
                }
                self.root_seen = true;
                // Iterate the attributes anyway, so that malformed ones are reported.
                attributes(self.text, e, start)?;
                Frame::Root
            }
            Some(Frame::Root) => {
                if local != "configuration" {
                    return Err(self.unexpected(e, start, "<configurations>"));
                }
                let pid = attributes(self.text, e, start)?
                    .into_iter()
                    .find(|(k, _)| k == "pid")
                    .map(|(_, v)| v.trim_matches(is_xml_space).to_string());
                Frame::Configuration(ConfigurationFrame {
                    start,
                    pid,
                    id: None,
                    seen_properties: false,
                    properties: Vec::new(),
                    names: HashSet::new(),
                })
            }
            Some(Frame::Configuration(c)) => match local {
                "id" if c.id.is_some() => {
                    return Err(self.error(start, "more than one <id> in a configuration"));
                }
                "id" => Frame::Id {
                    start,
                    text: String::new(),
                },
                "properties" if c.seen_properties => {
                    return Err(self.error(start, "more than one <properties> in a configuration"));
                }
                "properties" => {
                    c.seen_properties = true;
                    Frame::Properties
                }
                _ => Frame::Skip,
            },
            Some(Frame::Properties) => {
                if local != "property" {
                    return Err(self.unexpected(e, start, "<properties>"));
                }
                self.open_property(e, start)?
            }
            Some(Frame::Property { .. }) => {
                if local != "value" {
                    return Err(self.unexpected(e, start, "<property>"));
                }
                Frame::Value {
                    start,
                    text: String::new(),
                }
            }
            Some(Frame::Id { .. }) => return Err(self.unexpected(e, start, "<id>")),
            Some(Frame::Value { .. }) => return Err(self.unexpected(e, start, "<value>")),
            Some(Frame::Skip) => Frame::Skip,
        };
        self.stack.push(frame);
        Ok(())
    }

    fn unexpected(&self, e: &BytesStart<'_>, start: usize, parent: &str) -> ParseError {
        self.error(
            start,
            format!("unexpected element <{}> in {parent}", name_of(e)),
        )
    }

    fn open_property(&mut self, e: &BytesStart<'_>, start: usize) -> Result<Frame, ParseError> {
        let mut name = None;
        let mut ptype = None;
        let mut array = false;
        let mut encrypted = false;
        for (key, value) in attributes(self.text, e, start)? {
            match key.as_str() {
                "name" => name = Some(value),
                "type" => ptype = Some(value),
                "array" | "encrypted" => {
                    let flag = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(self.error(
                                start,
                                format!(
                                    "attribute {key} must be \"true\" or \"false\", not {}",
                                    quote(&value)
                                ),
                            ));
                        }
                    };
                    if key == "array" {
                        array = flag;
                    } else {
                        encrypted = flag;
                    }
                }
                _ => {}
            }
        }
        let Some(name) = name else {
            return Err(self.error(start, "property without a name attribute"));
        };
        check_property_name(&name).map_err(|m| self.error(start, m))?;
        let Some(ptype) = ptype else {
            return Err(self.error(
                start,
                format!("property {} has no type attribute", quote(&name)),
            ));
        };
        let Some(ptype) = PropertyType::from_xml_name(&ptype) else {
            return Err(self.error(start, format!("unknown property type {}", quote(&ptype))));
        };
        let configuration = self.current_configuration();
        let duplicate = match configuration {
            Some(c) => !c.names.insert(name.clone()),
            None => false,
        };
        if duplicate {
            let id = self
                .current_configuration()
                .and_then(|c| c.pid.clone().or_else(|| c.id.clone()))
                .unwrap_or_default();
            return Err(self.error(start, duplicate_name_message(&name, &id)));
        }
        Ok(Frame::Property {
            start,
            property: Property {
                name,
                ptype,
                array,
                encrypted,
                values: Vec::new(),
            },
        })
    }

    fn current_configuration(&mut self) -> Option<&mut ConfigurationFrame> {
        self.stack.iter_mut().rev().find_map(|f| match f {
            Frame::Configuration(c) => Some(c),
            _ => None,
        })
    }

    fn close(&mut self, start: usize) -> Result<(), ParseError> {
        let Some(frame) = self.stack.pop() else {
            return Err(self.error(start, "end tag without a start tag"));
        };
        match frame {
            Frame::Root | Frame::Properties | Frame::Skip => {}
            Frame::Configuration(c) => self.close_configuration(c)?,
            Frame::Id { start, text } => {
                let id = text.trim_matches(is_xml_space).to_string();
                check_xml_chars(&id, "configuration id").map_err(|m| self.error(start, m))?;
                if let Some(c) = self.current_configuration() {
                    c.id = Some(id);
                }
            }
            Frame::Value { start, text } => {
                let Some(Frame::Property { property, .. }) = self.stack.last_mut() else {
                    return Err(self.error(start, "<value> outside a <property>"));
                };
                if let Err(m) = check_value(&property.name, property.ptype, &text) {
                    return Err(self.error(start, m));
                }
                property.values.push(text);
            }
            Frame::Property { start, property } => {
                if !property.array && property.values.len() != 1 {
                    let count = property.values.len();
                    let name = property.name.clone();
                    return Err(self.error(start, Violation::ValueCount { name, count }));
                }
                if let Some(c) = self.current_configuration() {
                    c.properties.push(property);
                }
            }
        }
        Ok(())
    }

    fn close_configuration(&mut self, c: ConfigurationFrame) -> Result<(), ParseError> {
        let id = match (c.pid, c.id) {
            (Some(pid), Some(id)) if pid != id => {
                return Err(self.error(
                    c.start,
                    format!(
                        "configuration pid {} and id {} differ",
                        quote(&pid),
                        quote(&id)
                    ),
                ));
            }
            (Some(id), _) | (None, Some(id)) => id,
            (None, None) => {
                return Err(self.error(c.start, "configuration without an id or pid"));
            }
        };
        check_id(&id).map_err(|m| self.error(c.start, m))?;
        if !self.ids.insert(id.clone()) {
            return Err(self.error(c.start, duplicate_id_message(&id)));
        }
        self.configurations.push(Configuration {
            id,
            properties: c.properties,
        });
        Ok(())
    }

    fn text(&mut self, text: &str, start: usize) -> Result<(), ParseError> {
        match self.stack.last_mut() {
            Some(Frame::Id { text: acc, .. } | Frame::Value { text: acc, .. }) => {
                acc.push_str(text);
                Ok(())
            }
            Some(Frame::Skip) => Ok(()),
            _ if text.chars().all(is_xml_space) => Ok(()),
            frame => {
                let message = match frame {
                    None => "text outside the root element".to_string(),
                    Some(frame) => format!("unexpected text in {}", frame.describe()),
                };
                // Point at the first character that is not white space, in the source.
                let rest = self.text.get(start..).unwrap_or_default();
                let skipped = rest.len() - rest.trim_start_matches(is_xml_space).len();
                Err(self.error(start + skipped, message))
            }
        }
    }
}

/// The attributes of `e` as (local name, normalised value), without namespace declarations.
fn attributes(
    text: &str,
    e: &BytesStart<'_>,
    start: usize,
) -> Result<Vec<(String, String)>, ParseError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for attr in e.attributes() {
        let attr = attr.map_err(|err| error_at(text, start, malformed(&err)))?;
        if attr.key.as_namespace_binding().is_some() {
            continue;
        }
        let key = attr.key.local_name().as_ref().to_string();
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|err| error_at(text, start, malformed(&err)))?;
        check_xml_chars(&value, &format!("attribute {key}"))
            .map_err(|m| error_at(text, start, m.to_string()))?;
        if out.iter().any(|(k, _)| *k == key) {
            return Err(error_at(
                text,
                start,
                format!("duplicate attribute {}", quote(&key)),
            ));
        }
        out.push((key, value.into_owned()));
    }
    Ok(out)
}

/// "malformed XML: ..." with quick-xml's description, which may quote names from the input
/// and so is cut to a readable length.
fn malformed(e: &dyn std::fmt::Display) -> String {
    const MAX_CHARS: usize = 200;
    let description = e.to_string();
    match description.char_indices().nth(MAX_CHARS) {
        None => format!("malformed XML: {description}"),
        Some((cut, _)) => format!("malformed XML: {}...", &description[..cut]),
    }
}

/// The element's name as written, shortened for messages.
fn name_of(e: &BytesStart<'_>) -> String {
    shorten(e.name().as_ref())
}

#[cfg(test)]
mod tests;
