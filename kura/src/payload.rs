//! [`Payload`]: an ergonomic wrapper over [`KuraPayload`].

use prost::Message as _;

use crate::KuraError;
use crate::proto::{KuraMetric, KuraPayload};

/// A KuraPayload with builder methods and typed getters.
///
/// Getters look at the *first* metric with the given name and return `None` when it is absent,
/// has another type, or lacks its value. Setters replace every metric of that name, so a
/// payload built with them has at most one metric per name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Payload {
    proto: KuraPayload,
}

impl Payload {
    /// An empty payload: no timestamp, metrics or body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes a KuraPayload protobuf. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, KuraError> {
        Ok(Payload {
            proto: KuraPayload::decode(bytes)?,
        })
    }

    /// Decodes a KuraPayload that may be gzip-compressed (Kura's cloud service compresses a
    /// payload when that makes it smaller), reading at most `max` bytes once decompressed so
    /// that a small compressed payload cannot expand without bound.
    pub fn decode_maybe_gzip(bytes: &[u8], max: usize) -> Result<Self, KuraError> {
        use std::io::Read as _;
        const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
        if !bytes.starts_with(&GZIP_MAGIC) {
            return Self::decode(bytes);
        }
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(max as u64 + 1)
            .read_to_end(&mut plain)
            .map_err(KuraError::Gzip)?;
        if plain.len() > max {
            return Err(KuraError::TooLarge {
                len: plain.len(),
                limit: max,
            });
        }
        Self::decode(&plain)
    }

    /// Encodes as a KuraPayload protobuf.
    pub fn encode(&self) -> Vec<u8> {
        self.proto.encode_to_vec()
    }

    /// Builder form of [`Payload::set_str`].
    #[must_use]
    pub fn with_str(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_str(name, value);
        self
    }

    /// Builder form of [`Payload::set_i32`].
    #[must_use]
    pub fn with_i32(mut self, name: impl Into<String>, value: i32) -> Self {
        self.set_i32(name, value);
        self
    }

    /// Builder form of [`Payload::set_i64`].
    #[must_use]
    pub fn with_i64(mut self, name: impl Into<String>, value: i64) -> Self {
        self.set_i64(name, value);
        self
    }

    /// Builder form of [`Payload::set_bool`].
    #[must_use]
    pub fn with_bool(mut self, name: impl Into<String>, value: bool) -> Self {
        self.set_bool(name, value);
        self
    }

    /// Builder form of [`Payload::set_body`] with a body.
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.set_body(Some(body.into()));
        self
    }

    /// Builder form of [`Payload::set_timestamp`] with a timestamp.
    #[must_use]
    pub fn with_timestamp(mut self, millis: i64) -> Self {
        self.set_timestamp(Some(millis));
        self
    }

    /// Sets a STRING metric, replacing any metric of that name.
    pub fn set_str(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.set_metric(KuraMetric::string(name, value));
    }

    /// Sets an INT32 metric, replacing any metric of that name.
    pub fn set_i32(&mut self, name: impl Into<String>, value: i32) {
        self.set_metric(KuraMetric::int32(name, value));
    }

    /// Sets an INT64 metric, replacing any metric of that name.
    pub fn set_i64(&mut self, name: impl Into<String>, value: i64) {
        self.set_metric(KuraMetric::int64(name, value));
    }

    /// Sets a BOOL metric, replacing any metric of that name.
    pub fn set_bool(&mut self, name: impl Into<String>, value: bool) {
        self.set_metric(KuraMetric::bool(name, value));
    }

    /// Sets a metric, replacing any metric of the same name.
    pub fn set_metric(&mut self, metric: KuraMetric) {
        self.proto.metric.retain(|m| m.name != metric.name);
        self.proto.metric.push(metric);
    }

    /// Sets or clears the body.
    pub fn set_body(&mut self, body: Option<Vec<u8>>) {
        self.proto.body = body;
    }

    /// Sets or clears the timestamp (milliseconds since the Unix epoch).
    pub fn set_timestamp(&mut self, millis: Option<i64>) {
        self.proto.timestamp = millis;
    }

    /// The first metric with this name, whatever its type.
    pub fn metric(&self, name: &str) -> Option<&KuraMetric> {
        self.proto.metric.iter().find(|m| m.name == name)
    }

    /// All metrics, in payload order.
    pub fn metrics(&self) -> &[KuraMetric] {
        &self.proto.metric
    }

    /// Value of the first metric named `name` if it is a STRING metric.
    pub fn metric_str(&self, name: &str) -> Option<&str> {
        self.metric(name).and_then(KuraMetric::as_str)
    }

    /// Value of the first metric named `name` if it is an INT32 metric.
    pub fn metric_i32(&self, name: &str) -> Option<i32> {
        self.metric(name).and_then(KuraMetric::as_i32)
    }

    /// Value of the first metric named `name` if it is an INT64 metric.
    pub fn metric_i64(&self, name: &str) -> Option<i64> {
        self.metric(name).and_then(KuraMetric::as_i64)
    }

    /// Value of the first metric named `name` if it is a BOOL metric.
    pub fn metric_bool(&self, name: &str) -> Option<bool> {
        self.metric(name).and_then(KuraMetric::as_bool)
    }

    /// The body, if any.
    pub fn body(&self) -> Option<&[u8]> {
        self.proto.body.as_deref()
    }

    /// The timestamp (milliseconds since the Unix epoch), if any.
    pub fn timestamp(&self) -> Option<i64> {
        self.proto.timestamp
    }

    /// The underlying prost message.
    pub fn proto(&self) -> &KuraPayload {
        &self.proto
    }

    /// The underlying prost message, mutably (for fields without a setter, e.g. `position`).
    pub fn proto_mut(&mut self) -> &mut KuraPayload {
        &mut self.proto
    }

    /// Unwraps the prost message.
    pub fn into_proto(self) -> KuraPayload {
        self.proto
    }
}

impl From<KuraPayload> for Payload {
    fn from(proto: KuraPayload) -> Self {
        Payload { proto }
    }
}

impl From<Payload> for KuraPayload {
    fn from(payload: Payload) -> Self {
        payload.proto
    }
}
