//! The device configuration document (Eclipse Kura configuration XML) of PROTOCOL.md 4.5.
//!
//! This crate owns the document model ([`Document`], [`Configuration`], [`Property`],
//! [`PropertyType`]) and everything done to it: parsing and validating the request's
//! additional configuration ([`Document::parse`], seed form or Kura snapshot form, errors
//! with line and column), generating the device's MqttDataTransport and VPN configurations
//! ([`generated`]), merging the additional configuration into them under the reserved
//! properties rule ([`Document::merge`], [`ReservedPolicy`], [`reserved_warnings`]), and
//! writing the result in the seed form ([`Document::to_xml`], with passwords masked for
//! previews by [`Document::to_xml_masked`]) or byte for byte as Kura writes a snapshot
//! ([`Document::to_snapshot_xml`], the form Kura's CONF-V1 PUT applies).
//!
//! It does no I/O and keeps no state: no sockets, no files, no storage, no clock, no logging.
//! Callers hand it strings and get strings back. Input is bounded ([`MAX_DOCUMENT_BYTES`],
//! [`MAX_DEPTH`]), DOCTYPE declarations are refused, and no input makes it panic.

mod generate;
mod merge;
mod model;
mod parse;
mod write;

pub use generate::{
    Identity, MQTT_TRANSPORT_PID, RESERVED_TRANSPORT_PROPERTIES, VPN_PROPERTIES, generated,
};
pub use merge::{Merged, ReservedPolicy, reserved_warnings};
pub use model::{
    Configuration, Document, InvalidDocument, MASK, Property, PropertyType, UnexpectedValue,
};
pub use parse::{MAX_DEPTH, MAX_DOCUMENT_BYTES, ParseError};
pub use write::{ESF_NAMESPACE, METATYPE_NAMESPACE, XML_DECLARATION};
