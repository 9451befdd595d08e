//! The PROV-V1 message model ([`ProvRequest`], [`ProvReply`]) and its two encodings.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::payload::Payload;
use crate::proto::KuraMetric;
use crate::{KuraError, RequestError};

/// Largest request payload accepted, in bytes. A request carries two short strings, so
/// anything near this is not a request; the bound keeps parsing cheap for a stranger's input.
pub const MAX_REQUEST_LEN: usize = 16 * 1024;

/// Longest valid `request.id`, in characters.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// `provision.status` of a successful reply.
pub const PROVISION_STATUS_COMPLETED: &str = "COMPLETED";

/// Field names of PROV-V1: JSON keys, and Kura metric names.
pub mod fields {
    /// Request: the device's identifier for this exchange (STRING).
    pub const REQUEST_ID: &str = "request.id";
    /// Request: the activation key, when the provision request has one (STRING).
    pub const ACTIVATION_KEY: &str = "activation.key";
    /// Reply: response code (JSON number, Kura INT32).
    pub const RESPONSE_CODE: &str = "response.code";
    /// Failure reply: human-readable reason (STRING).
    pub const RESPONSE_EXCEPTION_MESSAGE: &str = "response.exception.message";
    /// Success reply: `COMPLETED` (STRING).
    pub const PROVISION_STATUS: &str = "provision.status";
    /// Success reply: operational broker URL (STRING).
    pub const BROKER_URL: &str = "broker.url";
    /// Success reply: target account (STRING).
    pub const ACCOUNT_NAME: &str = "account.name";
    /// Success reply: device client ID (STRING).
    pub const CLIENT_ID: &str = "client.id";
    /// Success reply: device username `CID@ACCOUNT` (STRING).
    pub const USERNAME: &str = "username";
    /// Success reply: generated device password (STRING).
    pub const PASSWORD: &str = "password";
    /// Success reply: configuration XML (JSON string; Kura: the UTF-8 `body`, not a metric).
    pub const CONFIGURATION: &str = "configuration";
}

/// PROV-V1 topic names (PROTOCOL.md sections 3 and 4).
pub mod topics {
    /// Last reply-topic level used when no valid `request.id` could be read.
    pub const REPLY_ERROR_LEVEL: &str = "error";

    /// `$EDC/{pa}/{cid}/PROV-V1/EXEC/provision`: where the device publishes its request.
    pub fn request_topic(pa: &str, cid: &str) -> String {
        format!("$EDC/{pa}/{cid}/PROV-V1/EXEC/provision")
    }

    /// `$EDC/{pa}/{cid}/PROV-V1/REPLY/{level}`: where the reply goes; `level` is the valid
    /// `request.id`, or [`REPLY_ERROR_LEVEL`].
    pub fn reply_topic(pa: &str, cid: &str, level: &str) -> String {
        format!("$EDC/{pa}/{cid}/PROV-V1/REPLY/{level}")
    }

    /// `$EDC/{pa}/{cid}/PROV-V1/REPLY/#`: the widest filter a device may subscribe to.
    pub fn reply_filter(pa: &str, cid: &str) -> String {
        format!("$EDC/{pa}/{cid}/PROV-V1/REPLY/#")
    }

    /// Whether `topic` is `$EDC/{account}/{client_id}/MQTT/BIRTH`, a Kura device's BIRTH
    /// (allocates nothing: every accepted PUBLISH is asked).
    pub fn is_birth_topic(topic: &str, account: &str, client_id: &str) -> bool {
        topic
            .strip_prefix("$EDC/")
            .and_then(|t| t.strip_prefix(account))
            .and_then(|t| t.strip_prefix('/'))
            .and_then(|t| t.strip_prefix(client_id))
            .is_some_and(|t| t == "/MQTT/BIRTH")
    }
}

/// Which of the two PROV-V1 encodings a payload uses. A reply uses the request's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// A flat JSON object.
    Json,
    /// A KuraPayload protobuf.
    Kura,
}

impl Encoding {
    /// PROTOCOL.md 4.1: a payload whose first byte is `{` is JSON (no whitespace is skipped);
    /// anything else, including an empty payload, is a KuraPayload.
    pub fn detect(payload: &[u8]) -> Encoding {
        if payload.first() == Some(&b'{') {
            Encoding::Json
        } else {
            Encoding::Kura
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Json => "JSON",
            Encoding::Kura => "KuraPayload",
        })
    }
}

/// The largest BIRTH read (after decompression) for Kura-native provisioning: a BIRTH is a few
/// hundred bytes of metrics.
pub const MAX_BIRTH_LEN: usize = 1 << 20;

/// `true` when `id` is 1 to 64 characters of `[A-Za-z0-9._-]` (PROTOCOL.md 4.1), which also
/// makes it a safe topic level (no `/`, `+`, `#`).
pub fn valid_request_id(id: &str) -> bool {
    // All allowed characters are ASCII, so byte length is character count.
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A device's provisioning request.
#[derive(Clone, PartialEq, Eq)]
pub struct ProvRequest {
    /// `request.id`. Valid (see [`valid_request_id`]) when decoded; encoding does not check it,
    /// so a test tool can send invalid ones.
    pub request_id: String,
    /// `activation.key`, if sent.
    pub activation_key: Option<String>,
}

impl fmt::Debug for ProvRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvRequest")
            .field("request_id", &self.request_id)
            .field(
                "activation_key",
                &self.activation_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Decodes a request payload, choosing the encoding by [`Encoding::detect`].
///
/// On error, [`RequestError`] gives the encoding to answer in and the reply topic level.
pub fn decode_request(payload: &[u8]) -> Result<(Encoding, ProvRequest), RequestError> {
    let encoding = Encoding::detect(payload);
    let request = match encoding {
        Encoding::Json => ProvRequest::from_json(payload)?,
        Encoding::Kura => ProvRequest::from_kura(payload)?,
    };
    Ok((encoding, request))
}

impl ProvRequest {
    /// A request without activation key.
    pub fn new(request_id: impl Into<String>) -> Self {
        ProvRequest {
            request_id: request_id.into(),
            activation_key: None,
        }
    }

    /// Adds an activation key.
    #[must_use]
    pub fn with_activation_key(mut self, key: impl Into<String>) -> Self {
        self.activation_key = Some(key.into());
        self
    }

    /// Decodes the JSON encoding: a flat object where `request.id` and `activation.key` (if
    /// present) are strings, each at most once. Other keys are ignored, as a Kura decoder
    /// ignores unknown metrics.
    pub fn from_json(payload: &[u8]) -> Result<Self, RequestError> {
        let encoding = Encoding::Json;
        check_request_len(payload, encoding)?;
        let object = JsonObject::parse(payload)
            .map_err(|cause| RequestError::Malformed { encoding, cause })?;
        request_from_fields(&object, encoding)
    }

    /// Decodes the KuraPayload encoding: STRING metrics `request.id` and, optionally,
    /// `activation.key`, each at most once. Other metrics, timestamp, position and body are
    /// ignored.
    pub fn from_kura(payload: &[u8]) -> Result<Self, RequestError> {
        let encoding = Encoding::Kura;
        check_request_len(payload, encoding)?;
        let payload = Payload::decode(payload)
            .map_err(|cause| RequestError::Malformed { encoding, cause })?;
        request_from_fields(&payload, encoding)
    }

    /// The request an unmodified Kura device makes by its BIRTH on the provisioning endpoint
    /// (PROTOCOL.md 8.1): its STRING metric `activation.key`, if any (at most once), under
    /// `request_id`, the id Fleetgate gives the CONF-V1 PUT it answers with. The BIRTH may be
    /// gzip-compressed, as Kura may compress any payload; it is read up to [`MAX_BIRTH_LEN`]
    /// bytes after decompression. Its other metrics are ignored.
    pub fn from_birth(payload: &[u8], request_id: impl Into<String>) -> Result<Self, KuraError> {
        let payload = Payload::decode_maybe_gzip(payload, MAX_BIRTH_LEN)?;
        Ok(ProvRequest {
            request_id: request_id.into(),
            activation_key: payload.opt_str(fields::ACTIVATION_KEY)?.map(str::to_owned),
        })
    }

    /// Encodes as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Json<'a> {
            #[serde(rename = "request.id")]
            request_id: &'a str,
            #[serde(rename = "activation.key", skip_serializing_if = "Option::is_none")]
            activation_key: Option<&'a str>,
        }
        to_json_vec(&Json {
            request_id: &self.request_id,
            activation_key: self.activation_key.as_deref(),
        })
    }

    /// The KuraPayload form (without timestamp; set one with [`Payload::set_timestamp`]).
    pub fn to_kura_payload(&self) -> Payload {
        let mut payload = Payload::new().with_str(fields::REQUEST_ID, self.request_id.as_str());
        if let Some(key) = &self.activation_key {
            payload.set_str(fields::ACTIVATION_KEY, key.as_str());
        }
        payload
    }

    /// Encodes as a KuraPayload protobuf.
    pub fn to_kura(&self) -> Vec<u8> {
        self.to_kura_payload().encode()
    }

    /// Encodes in the given encoding.
    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Json => self.to_json(),
            Encoding::Kura => self.to_kura(),
        }
    }
}

fn check_request_len(payload: &[u8], encoding: Encoding) -> Result<(), RequestError> {
    if payload.len() > MAX_REQUEST_LEN {
        return Err(RequestError::Malformed {
            encoding,
            cause: KuraError::TooLarge {
                len: payload.len(),
                limit: MAX_REQUEST_LEN,
            },
        });
    }
    Ok(())
}

fn request_from_fields(
    src: &impl FieldSource,
    encoding: Encoding,
) -> Result<ProvRequest, RequestError> {
    let request_id = match src.opt_str(fields::REQUEST_ID) {
        Ok(Some(id)) if valid_request_id(id) => id.to_owned(),
        Ok(Some(_)) => {
            return Err(RequestError::InvalidRequestId {
                encoding,
                cause: KuraError::InvalidValue {
                    field: fields::REQUEST_ID,
                    reason: "must be 1 to 64 characters of [A-Za-z0-9._-]",
                },
            });
        }
        Ok(None) => {
            return Err(RequestError::Malformed {
                encoding,
                cause: KuraError::MissingField(fields::REQUEST_ID),
            });
        }
        Err(cause) => return Err(RequestError::InvalidRequestId { encoding, cause }),
    };
    let activation_key = match src.opt_str(fields::ACTIVATION_KEY) {
        Ok(key) => key.map(str::to_owned),
        Err(cause) => {
            return Err(RequestError::InvalidField {
                encoding,
                request_id,
                cause,
            });
        }
    };
    Ok(ProvRequest {
        request_id,
        activation_key,
    })
}

/// Fleetgate's answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProvReply {
    /// Response code 200, with the device's new identity.
    Success(ProvSuccess),
    /// Any other response code, with a reason.
    Failure(ProvFailure),
}

/// The content of a successful reply (response code 200).
#[derive(Clone, PartialEq, Eq)]
pub struct ProvSuccess {
    /// `provision.status`, [`PROVISION_STATUS_COMPLETED`].
    pub provision_status: String,
    /// `broker.url`: the operational endpoint.
    pub broker_url: String,
    /// `account.name`: the target account.
    pub account_name: String,
    /// `client.id`.
    pub client_id: String,
    /// `username`: `CID@ACCOUNT`.
    pub username: String,
    /// `password`: the generated device password (redacted in `Debug`).
    pub password: String,
    /// `configuration`: the configuration XML.
    pub configuration: String,
}

impl fmt::Debug for ProvSuccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvSuccess")
            .field("provision_status", &self.provision_status)
            .field("broker_url", &self.broker_url)
            .field("account_name", &self.account_name)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("configuration_len", &self.configuration.len())
            .finish()
    }
}

/// The content of a failed reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvFailure {
    /// `response.code`: 400, 403, 409 or 500 (PROTOCOL.md 4.2); never 200.
    pub code: u16,
    /// `response.exception.message`.
    pub message: String,
}

/// Decodes a reply payload, choosing the encoding by [`Encoding::detect`] (a KuraPayload
/// never starts with `{`: that byte would be field 15 with the group wire type).
pub fn decode_reply(payload: &[u8]) -> Result<(Encoding, ProvReply), KuraError> {
    let encoding = Encoding::detect(payload);
    let reply = match encoding {
        Encoding::Json => ProvReply::from_json(payload)?,
        Encoding::Kura => ProvReply::from_kura(payload)?,
    };
    Ok((encoding, reply))
}

impl ProvReply {
    /// `response.code` of a success.
    pub const SUCCESS_CODE: u16 = 200;

    /// A failure reply. `code` must not be 200 (a 200 reply always decodes as a success).
    pub fn failure(code: u16, message: impl Into<String>) -> Self {
        debug_assert_ne!(code, Self::SUCCESS_CODE, "a failure cannot have code 200");
        ProvReply::Failure(ProvFailure {
            code,
            message: message.into(),
        })
    }

    /// `response.code`.
    pub fn code(&self) -> u16 {
        match self {
            ProvReply::Success(_) => Self::SUCCESS_CODE,
            ProvReply::Failure(failure) => failure.code,
        }
    }

    /// Decodes the JSON encoding. `response.code` must be an integer; the other fields
    /// strings. Unknown keys are ignored; a known key twice is an error.
    pub fn from_json(payload: &[u8]) -> Result<Self, KuraError> {
        reply_from_fields(&JsonObject::parse(payload)?)
    }

    /// Decodes the KuraPayload encoding: `response.code` an INT32 metric, the others STRING
    /// metrics, the configuration the UTF-8 body.
    pub fn from_kura(payload: &[u8]) -> Result<Self, KuraError> {
        reply_from_fields(&Payload::decode(payload)?)
    }

    /// Encodes as JSON, fields in the order of PROTOCOL.md 4.2.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct SuccessJson<'a> {
            #[serde(rename = "response.code")]
            code: u16,
            #[serde(rename = "provision.status")]
            provision_status: &'a str,
            #[serde(rename = "broker.url")]
            broker_url: &'a str,
            #[serde(rename = "account.name")]
            account_name: &'a str,
            #[serde(rename = "client.id")]
            client_id: &'a str,
            username: &'a str,
            password: &'a str,
            configuration: &'a str,
        }
        #[derive(Serialize)]
        struct FailureJson<'a> {
            #[serde(rename = "response.code")]
            code: u16,
            #[serde(rename = "response.exception.message")]
            message: &'a str,
        }
        match self {
            ProvReply::Success(s) => to_json_vec(&SuccessJson {
                code: Self::SUCCESS_CODE,
                provision_status: &s.provision_status,
                broker_url: &s.broker_url,
                account_name: &s.account_name,
                client_id: &s.client_id,
                username: &s.username,
                password: &s.password,
                configuration: &s.configuration,
            }),
            ProvReply::Failure(f) => to_json_vec(&FailureJson {
                code: f.code,
                message: &f.message,
            }),
        }
    }

    /// The KuraPayload form (without timestamp; set one with [`Payload::set_timestamp`]).
    pub fn to_kura_payload(&self) -> Payload {
        let payload = Payload::new().with_i32(fields::RESPONSE_CODE, i32::from(self.code()));
        match self {
            ProvReply::Success(s) => payload
                .with_str(fields::PROVISION_STATUS, s.provision_status.as_str())
                .with_str(fields::BROKER_URL, s.broker_url.as_str())
                .with_str(fields::ACCOUNT_NAME, s.account_name.as_str())
                .with_str(fields::CLIENT_ID, s.client_id.as_str())
                .with_str(fields::USERNAME, s.username.as_str())
                .with_str(fields::PASSWORD, s.password.as_str())
                .with_body(s.configuration.as_bytes()),
            ProvReply::Failure(f) => {
                payload.with_str(fields::RESPONSE_EXCEPTION_MESSAGE, f.message.as_str())
            }
        }
    }

    /// Encodes as a KuraPayload protobuf.
    pub fn to_kura(&self) -> Vec<u8> {
        self.to_kura_payload().encode()
    }

    /// Encodes in the given encoding.
    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Json => self.to_json(),
            Encoding::Kura => self.to_kura(),
        }
    }
}

fn reply_from_fields(src: &impl FieldSource) -> Result<ProvReply, KuraError> {
    let code = src
        .code()?
        .ok_or(KuraError::MissingField(fields::RESPONSE_CODE))?;
    let required = |name: &'static str| -> Result<String, KuraError> {
        src.opt_str(name)?
            .map(str::to_owned)
            .ok_or(KuraError::MissingField(name))
    };
    if code == ProvReply::SUCCESS_CODE {
        Ok(ProvReply::Success(ProvSuccess {
            provision_status: required(fields::PROVISION_STATUS)?,
            broker_url: required(fields::BROKER_URL)?,
            account_name: required(fields::ACCOUNT_NAME)?,
            client_id: required(fields::CLIENT_ID)?,
            username: required(fields::USERNAME)?,
            password: required(fields::PASSWORD)?,
            configuration: src
                .configuration()?
                .map(str::to_owned)
                .ok_or(KuraError::MissingField(fields::CONFIGURATION))?,
        }))
    } else {
        Ok(ProvReply::Failure(ProvFailure {
            code,
            message: required(fields::RESPONSE_EXCEPTION_MESSAGE)?,
        }))
    }
}

fn to_json_vec(value: &impl Serialize) -> Vec<u8> {
    // Only structs of strings and integers are serialized here, which cannot fail.
    serde_json::to_vec(value).expect("serializing strings and integers to JSON cannot fail")
}

const CODE_RANGE: &str = "an integer from 0 to 65535";

/// Read access to PROV-V1 fields, whatever the encoding.
trait FieldSource {
    /// A string field: `Ok(None)` when absent; an error when it has another type or appears
    /// more than once.
    fn opt_str(&self, name: &'static str) -> Result<Option<&str>, KuraError>;
    /// `response.code`.
    fn code(&self) -> Result<Option<u16>, KuraError>;
    /// The configuration of a success reply.
    fn configuration(&self) -> Result<Option<&str>, KuraError>;
}

/// A JSON object as its entries in order, duplicates kept, so that a duplicated key is an
/// error rather than "last one wins".
struct JsonObject(Vec<(String, Value)>);

impl JsonObject {
    fn parse(bytes: &[u8]) -> Result<Self, KuraError> {
        // serde_json bounds nesting (recursion limit 128) and rejects trailing data.
        Ok(serde_json::from_slice(bytes)?)
    }

    fn unique(&self, name: &'static str) -> Result<Option<&Value>, KuraError> {
        let mut found = self.0.iter().filter(|(key, _)| key == name).map(|(_, v)| v);
        let first = found.next();
        if found.next().is_some() {
            return Err(KuraError::DuplicateField(name));
        }
        Ok(first)
    }
}

impl<'de> serde::Deserialize<'de> for JsonObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = JsonObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonObject, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(JsonObject(entries))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl FieldSource for JsonObject {
    fn opt_str(&self, name: &'static str) -> Result<Option<&str>, KuraError> {
        match self.unique(name)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(KuraError::WrongType {
                field: name,
                expected: "a string",
            }),
        }
    }

    fn code(&self) -> Result<Option<u16>, KuraError> {
        let field = fields::RESPONSE_CODE;
        match self.unique(field)? {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .map(Some)
                .ok_or(KuraError::InvalidValue {
                    field,
                    reason: CODE_RANGE,
                }),
            Some(_) => Err(KuraError::WrongType {
                field,
                expected: "a number",
            }),
        }
    }

    fn configuration(&self) -> Result<Option<&str>, KuraError> {
        self.opt_str(fields::CONFIGURATION)
    }
}

fn unique_metric<'a>(
    payload: &'a Payload,
    name: &'static str,
) -> Result<Option<&'a KuraMetric>, KuraError> {
    let mut found = payload.metrics().iter().filter(|m| m.name == name);
    let first = found.next();
    if found.next().is_some() {
        return Err(KuraError::DuplicateField(name));
    }
    Ok(first)
}

impl FieldSource for Payload {
    fn opt_str(&self, name: &'static str) -> Result<Option<&str>, KuraError> {
        match unique_metric(self, name)? {
            None => Ok(None),
            Some(metric) => metric.as_str().map(Some).ok_or(KuraError::WrongType {
                field: name,
                expected: "a STRING metric with a value",
            }),
        }
    }

    fn code(&self) -> Result<Option<u16>, KuraError> {
        let field = fields::RESPONSE_CODE;
        match unique_metric(self, field)? {
            None => Ok(None),
            Some(metric) => {
                let code = metric.as_i32().ok_or(KuraError::WrongType {
                    field,
                    expected: "an INT32 metric with a value",
                })?;
                u16::try_from(code)
                    .map(Some)
                    .map_err(|_| KuraError::InvalidValue {
                        field,
                        reason: CODE_RANGE,
                    })
            }
        }
    }

    fn configuration(&self) -> Result<Option<&str>, KuraError> {
        self.body()
            .map(|body| {
                std::str::from_utf8(body).map_err(|_| KuraError::InvalidValue {
                    field: fields::CONFIGURATION,
                    reason: "the body must be UTF-8",
                })
            })
            .transpose()
    }
}
