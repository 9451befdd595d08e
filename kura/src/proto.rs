//! Hand-written prost messages matching `kura/proto/kurapayload.proto`.
//!
//! In the `.proto` file `KuraMetric` and `KuraPosition` are nested in `KuraPayload` (and
//! `ValueType` in `KuraMetric`); nesting only changes names, never the wire format, so they are
//! flat here. Field numbers and types must stay in step with the `.proto` file: the test
//! `proto_tags_match_the_proto_file` in `tests` checks the tags against hand-computed bytes.
//!
//! prost does not enforce proto2 `required` on decode: a missing required field decodes as its
//! default value. Callers that care (the PROV-V1 model in this crate) check what they read.

/// The type tag of a [`KuraMetric`]: says which `*_value` field carries the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ValueType {
    /// `double_value` (tag 3).
    Double = 0,
    /// `float_value` (tag 4).
    Float = 1,
    /// `long_value` (tag 5).
    Int64 = 2,
    /// `int_value` (tag 6).
    Int32 = 3,
    /// `bool_value` (tag 7).
    Bool = 4,
    /// `string_value` (tag 8).
    String = 5,
    /// `bytes_value` (tag 9).
    Bytes = 6,
}

/// `kuradatatypes.KuraPayload`: the top-level message of a Kura MQTT payload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KuraPayload {
    /// Milliseconds since the Unix epoch, as the sender saw it.
    #[prost(int64, optional, tag = "1")]
    pub timestamp: Option<i64>,
    /// Where the sender was.
    #[prost(message, optional, tag = "2")]
    pub position: Option<KuraPosition>,
    /// Named, typed values.
    #[prost(message, repeated, tag = "5000")]
    pub metric: Vec<KuraMetric>,
    /// Opaque body (PROV-V1 puts the configuration XML here, UTF-8).
    #[prost(bytes = "vec", optional, tag = "5001")]
    pub body: Option<Vec<u8>>,
}

/// `kuradatatypes.KuraPayload.KuraMetric`: one named, typed value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KuraMetric {
    /// Metric name (required).
    #[prost(string, required, tag = "1")]
    pub name: String,
    /// Value type (required), a [`ValueType`] as its wire integer.
    #[prost(enumeration = "ValueType", required, tag = "2")]
    pub r#type: i32,
    /// Value when `type` is DOUBLE.
    #[prost(double, optional, tag = "3")]
    pub double_value: Option<f64>,
    /// Value when `type` is FLOAT.
    #[prost(float, optional, tag = "4")]
    pub float_value: Option<f32>,
    /// Value when `type` is INT64.
    #[prost(int64, optional, tag = "5")]
    pub long_value: Option<i64>,
    /// Value when `type` is INT32.
    #[prost(int32, optional, tag = "6")]
    pub int_value: Option<i32>,
    /// Value when `type` is BOOL.
    #[prost(bool, optional, tag = "7")]
    pub bool_value: Option<bool>,
    /// Value when `type` is STRING.
    #[prost(string, optional, tag = "8")]
    pub string_value: Option<String>,
    /// Value when `type` is BYTES.
    #[prost(bytes = "vec", optional, tag = "9")]
    pub bytes_value: Option<Vec<u8>>,
}

/// `kuradatatypes.KuraPayload.KuraPosition`: a GPS fix.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KuraPosition {
    /// Degrees (required).
    #[prost(double, required, tag = "1")]
    pub latitude: f64,
    /// Degrees (required).
    #[prost(double, required, tag = "2")]
    pub longitude: f64,
    /// Metres.
    #[prost(double, optional, tag = "3")]
    pub altitude: Option<f64>,
    /// Dilution of precision.
    #[prost(double, optional, tag = "4")]
    pub precision: Option<f64>,
    /// Degrees.
    #[prost(double, optional, tag = "5")]
    pub heading: Option<f64>,
    /// Metres per second.
    #[prost(double, optional, tag = "6")]
    pub speed: Option<f64>,
    /// Milliseconds since the Unix epoch of the fix.
    #[prost(int64, optional, tag = "7")]
    pub timestamp: Option<i64>,
    /// Satellites in view.
    #[prost(int32, optional, tag = "8")]
    pub satellites: Option<i32>,
    /// Receiver status.
    #[prost(int32, optional, tag = "9")]
    pub status: Option<i32>,
}

impl KuraMetric {
    /// A STRING metric.
    pub fn string(name: impl Into<String>, value: impl Into<String>) -> Self {
        KuraMetric {
            name: name.into(),
            r#type: ValueType::String as i32,
            string_value: Some(value.into()),
            ..Default::default()
        }
    }

    /// An INT32 metric.
    pub fn int32(name: impl Into<String>, value: i32) -> Self {
        KuraMetric {
            name: name.into(),
            r#type: ValueType::Int32 as i32,
            int_value: Some(value),
            ..Default::default()
        }
    }

    /// An INT64 metric.
    pub fn int64(name: impl Into<String>, value: i64) -> Self {
        KuraMetric {
            name: name.into(),
            r#type: ValueType::Int64 as i32,
            long_value: Some(value),
            ..Default::default()
        }
    }

    /// A BOOL metric.
    pub fn bool(name: impl Into<String>, value: bool) -> Self {
        KuraMetric {
            name: name.into(),
            r#type: ValueType::Bool as i32,
            bool_value: Some(value),
            ..Default::default()
        }
    }

    /// The declared type, or `None` when the wire integer is not a known [`ValueType`].
    pub fn value_type(&self) -> Option<ValueType> {
        ValueType::try_from(self.r#type).ok()
    }

    /// The value if this is a STRING metric that carries one.
    pub fn as_str(&self) -> Option<&str> {
        match self.value_type() {
            Some(ValueType::String) => self.string_value.as_deref(),
            _ => None,
        }
    }

    /// The value if this is an INT32 metric that carries one.
    pub fn as_i32(&self) -> Option<i32> {
        match self.value_type() {
            Some(ValueType::Int32) => self.int_value,
            _ => None,
        }
    }

    /// The value if this is an INT64 metric that carries one.
    pub fn as_i64(&self) -> Option<i64> {
        match self.value_type() {
            Some(ValueType::Int64) => self.long_value,
            _ => None,
        }
    }

    /// The value if this is a BOOL metric that carries one.
    pub fn as_bool(&self) -> Option<bool> {
        match self.value_type() {
            Some(ValueType::Bool) => self.bool_value,
            _ => None,
        }
    }
}
