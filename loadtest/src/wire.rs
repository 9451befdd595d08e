//! PROV-V1 payloads as a device sees them (PROTOCOL.md 4.1, 4.2): encode a request, decode a
//! reply.
//!
//! JSON is implemented here, independently of the broker's codec, the way a device maker
//! would read PROTOCOL.md (so a drift of the broker's JSON shows up as `bad_reply`). The
//! KuraPayload protobuf goes through `fleetgate-kura`, the project's Kura codec.

use serde_json::{Map, Value};

use crate::config::Encoding;

/// A decoded PROV-V1 reply. Every field but `response_code` may be missing on the wire; the
/// caller decides what a success must carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// `response.code` (200 on success).
    pub response_code: i64,
    /// `response.exception.message` (failures).
    pub exception_message: Option<String>,
    /// `provision.status`.
    pub provision_status: Option<String>,
    /// `broker.url`: where the device connects with its new identity.
    pub broker_url: Option<String>,
    /// `account.name`.
    pub account_name: Option<String>,
    /// `client.id`.
    pub client_id: Option<String>,
    /// `username` of the device identity.
    pub username: Option<String>,
    /// `password` of the device identity.
    pub password: Option<String>,
    /// `configuration`: the device configuration XML (Kura: the payload body).
    pub configuration: Option<String>,
}

/// Encodes a PROV-V1 request.
pub fn encode_request(
    encoding: Encoding,
    request_id: &str,
    activation_key: Option<&str>,
) -> Vec<u8> {
    match encoding {
        Encoding::Json => encode_json_request(request_id, activation_key),
        Encoding::Kura => kura::encode_request(request_id, activation_key),
    }
}

/// Decodes a PROV-V1 reply and tells which encoding it used: a payload starting with `{` is
/// JSON, anything else a KuraPayload (PROTOCOL.md 4.1's rule, which replies mirror).
pub fn decode_reply(bytes: &[u8]) -> Result<(Encoding, Reply), String> {
    if bytes.first() == Some(&b'{') {
        decode_json_reply(bytes).map(|r| (Encoding::Json, r))
    } else {
        kura::decode_reply(bytes).map(|r| (Encoding::Kura, r))
    }
}

fn encode_json_request(request_id: &str, activation_key: Option<&str>) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("request.id".into(), Value::String(request_id.into()));
    if let Some(key) = activation_key {
        m.insert("activation.key".into(), Value::String(key.into()));
    }
    serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
}

fn decode_json_reply(bytes: &[u8]) -> Result<Reply, String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("reply is not valid JSON: {e}"))?;
    let Value::Object(m) = value else {
        return Err("reply is not a JSON object".into());
    };
    let response_code = match m.get("response.code") {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("response.code {n} is not an integer"))?,
        Some(other) => return Err(format!("response.code is not a number: {other}")),
        None => return Err("reply has no response.code".into()),
    };
    let text = |name: &str| -> Result<Option<String>, String> {
        match m.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("{name} is not a string: {other}")),
        }
    };
    Ok(Reply {
        response_code,
        exception_message: text("response.exception.message")?,
        provision_status: text("provision.status")?,
        broker_url: text("broker.url")?,
        account_name: text("account.name")?,
        client_id: text("client.id")?,
        username: text("username")?,
        password: text("password")?,
        configuration: text("configuration")?,
    })
}

/// The KuraPayload branch, through `fleetgate-kura` (the project's codec for both sides).
mod kura {
    use fleetgate_kura::{ProvReply, ProvRequest};

    use super::Reply;

    pub(super) fn encode_request(request_id: &str, activation_key: Option<&str>) -> Vec<u8> {
        let mut request = ProvRequest::new(request_id);
        if let Some(key) = activation_key {
            request = request.with_activation_key(key);
        }
        request.to_kura()
    }

    pub(super) fn decode_reply(bytes: &[u8]) -> Result<Reply, String> {
        match ProvReply::from_kura(bytes).map_err(|e| format!("KuraPayload reply: {e}"))? {
            ProvReply::Success(s) => Ok(Reply {
                response_code: i64::from(ProvReply::SUCCESS_CODE),
                exception_message: None,
                provision_status: Some(s.provision_status),
                broker_url: Some(s.broker_url),
                account_name: Some(s.account_name),
                client_id: Some(s.client_id),
                username: Some(s.username),
                password: Some(s.password),
                configuration: Some(s.configuration),
            }),
            ProvReply::Failure(f) => Ok(Reply {
                response_code: i64::from(f.code),
                exception_message: Some(f.message),
                ..Reply::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_request_shape() {
        let bytes = encode_request(Encoding::Json, "r-1", Some("K7Q"));
        assert_eq!(bytes[0], b'{');
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["request.id"], "r-1");
        assert_eq!(v["activation.key"], "K7Q");
        assert_eq!(v.as_object().unwrap().len(), 2);

        let bytes = encode_request(Encoding::Json, "r-2", None);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 1);
    }

    #[test]
    fn json_success_reply() {
        let payload = br#"{"response.code": 200, "provision.status": "COMPLETED",
            "broker.url": "mqtt://127.0.0.1:1884", "account.name": "acme",
            "client.id": "dev-1", "username": "dev-1@acme", "password": "pw",
            "configuration": "<configurations/>"}"#;
        let (enc, r) = decode_reply(payload).unwrap();
        assert_eq!(enc, Encoding::Json);
        assert_eq!(r.response_code, 200);
        assert_eq!(r.username.as_deref(), Some("dev-1@acme"));
        assert_eq!(r.broker_url.as_deref(), Some("mqtt://127.0.0.1:1884"));
        assert_eq!(r.configuration.as_deref(), Some("<configurations/>"));
    }

    #[test]
    fn json_failure_reply() {
        let (_, r) =
            decode_reply(br#"{"response.code": 403, "response.exception.message": "bad key"}"#)
                .unwrap();
        assert_eq!(r.response_code, 403);
        assert_eq!(r.exception_message.as_deref(), Some("bad key"));
        assert_eq!(r.password, None);
    }

    #[test]
    fn malformed_replies() {
        assert!(decode_reply(b"{not json").is_err());
        assert!(decode_reply(br#"{"username": "x"}"#).is_err());
        assert!(decode_reply(br#"{"response.code": "200"}"#).is_err());
        assert!(decode_reply(br#"{"response.code": 200, "password": 5}"#).is_err());
        assert!(decode_reply(b"\x0a\x0b garbage").is_err());
    }

    #[test]
    fn kura_round_trip() {
        let bytes = encode_request(Encoding::Kura, "r-9", Some("KEY"));
        assert_ne!(bytes.first(), Some(&b'{'));
        let (enc, req) = fleetgate_kura::decode_request(&bytes).unwrap();
        assert_eq!(enc, fleetgate_kura::Encoding::Kura);
        assert_eq!(req.request_id, "r-9");
        assert_eq!(req.activation_key.as_deref(), Some("KEY"));

        let success = fleetgate_kura::ProvReply::Success(fleetgate_kura::ProvSuccess {
            provision_status: "COMPLETED".into(),
            broker_url: "mqtt://127.0.0.1:1884".into(),
            account_name: "acme".into(),
            client_id: "dev-1".into(),
            username: "dev-1@acme".into(),
            password: "pw".into(),
            configuration: "<configurations/>".into(),
        });
        let (enc, r) = decode_reply(&success.to_kura()).unwrap();
        assert_eq!(enc, Encoding::Kura);
        assert_eq!(r.response_code, 200);
        assert_eq!(r.password.as_deref(), Some("pw"));
        assert_eq!(r.configuration.as_deref(), Some("<configurations/>"));

        let failure = fleetgate_kura::ProvReply::failure(403, "wrong key");
        let (_, r) = decode_reply(&failure.to_kura()).unwrap();
        assert_eq!(r.response_code, 403);
        assert_eq!(r.exception_message.as_deref(), Some("wrong key"));
    }
}
