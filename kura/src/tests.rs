//! Unit tests of the codec and the PROV-V1 model.

use prost::Message as _;

use crate::proto::{KuraMetric, KuraPayload, KuraPosition, ValueType};
use crate::*;

const PROTO_FILE: &str = include_str!("../proto/kurapayload.proto");

fn success() -> ProvSuccess {
    ProvSuccess {
        provision_status: PROVISION_STATUS_COMPLETED.to_owned(),
        broker_url: "mqtts://broker.acme.example:8883".to_owned(),
        account_name: "acme".to_owned(),
        client_id: "dev-0001".to_owned(),
        username: "dev-0001@acme".to_owned(),
        password: "s3cret!Passw0rd-xyzQ".to_owned(),
        configuration:
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><configurations>é\"\\</configurations>"
                .to_owned(),
    }
}

/// Protobuf field key bytes (tag << 3 | wire type) as a varint.
fn key(tag: u32, wire_type: u32) -> Vec<u8> {
    let mut v = (tag << 3) | wire_type;
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn assert_proto_declares(name: &str, tag: u32) {
    let tag = format!("{tag};");
    let found = PROTO_FILE.lines().any(|line| {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        tokens.windows(3).any(|w| w == [name, "=", tag.as_str()])
    });
    assert!(found, "kurapayload.proto does not declare `{name} = {tag}`");
}

#[test]
fn proto_tags_match_the_proto_file() {
    const VARINT: u32 = 0;
    const FIXED64: u32 = 1;
    const LEN: u32 = 2;
    const FIXED32: u32 = 5;

    // KuraPayload fields.
    let rows: Vec<(&str, u32, u32, KuraPayload)> = vec![
        (
            "timestamp",
            1,
            VARINT,
            KuraPayload {
                timestamp: Some(1),
                ..Default::default()
            },
        ),
        (
            "position",
            2,
            LEN,
            KuraPayload {
                position: Some(KuraPosition::default()),
                ..Default::default()
            },
        ),
        (
            "metric",
            5000,
            LEN,
            KuraPayload {
                metric: vec![KuraMetric::default()],
                ..Default::default()
            },
        ),
        (
            "body",
            5001,
            LEN,
            KuraPayload {
                body: Some(vec![]),
                ..Default::default()
            },
        ),
    ];
    for (name, tag, wire, msg) in rows {
        assert_proto_declares(name, tag);
        assert!(
            msg.encode_to_vec().starts_with(&key(tag, wire)),
            "KuraPayload.{name}"
        );
    }

    // KuraMetric fields (name and type are required, so they are always encoded first).
    let base = KuraMetric {
        name: "n".into(),
        r#type: 0,
        ..Default::default()
    };
    let prefix = [key(1, LEN), vec![1, b'n'], key(2, VARINT), vec![0]].concat();
    assert_eq!(base.encode_to_vec(), prefix);
    assert_proto_declares("name", 1);
    assert_proto_declares("type", 2);
    let metric_rows: Vec<(&str, u32, u32, KuraMetric)> = vec![
        (
            "double_value",
            3,
            FIXED64,
            KuraMetric {
                double_value: Some(1.0),
                ..base.clone()
            },
        ),
        (
            "float_value",
            4,
            FIXED32,
            KuraMetric {
                float_value: Some(1.0),
                ..base.clone()
            },
        ),
        (
            "long_value",
            5,
            VARINT,
            KuraMetric {
                long_value: Some(1),
                ..base.clone()
            },
        ),
        (
            "int_value",
            6,
            VARINT,
            KuraMetric {
                int_value: Some(1),
                ..base.clone()
            },
        ),
        (
            "bool_value",
            7,
            VARINT,
            KuraMetric {
                bool_value: Some(true),
                ..base.clone()
            },
        ),
        (
            "string_value",
            8,
            LEN,
            KuraMetric {
                string_value: Some("s".into()),
                ..base.clone()
            },
        ),
        (
            "bytes_value",
            9,
            LEN,
            KuraMetric {
                bytes_value: Some(vec![1]),
                ..base.clone()
            },
        ),
    ];
    for (name, tag, wire, msg) in metric_rows {
        assert_proto_declares(name, tag);
        assert_eq!(
            msg.encode_to_vec()[prefix.len()..][..key(tag, wire).len()],
            key(tag, wire),
            "{name}"
        );
    }

    // ValueType numbers.
    for (name, value) in [
        ("DOUBLE", ValueType::Double),
        ("FLOAT", ValueType::Float),
        ("INT64", ValueType::Int64),
        ("INT32", ValueType::Int32),
        ("BOOL", ValueType::Bool),
        ("STRING", ValueType::String),
        ("BYTES", ValueType::Bytes),
    ] {
        assert_proto_declares(name, value as u32);
    }

    // KuraPosition fields (latitude and longitude are required, 9 bytes each).
    let pos = KuraPosition::default();
    let pos_prefix = [key(1, FIXED64), vec![0; 8], key(2, FIXED64), vec![0; 8]].concat();
    assert_eq!(pos.encode_to_vec(), pos_prefix);
    assert_proto_declares("latitude", 1);
    assert_proto_declares("longitude", 2);
    let pos_rows: Vec<(&str, u32, u32, KuraPosition)> = vec![
        (
            "altitude",
            3,
            FIXED64,
            KuraPosition {
                altitude: Some(1.0),
                ..pos.clone()
            },
        ),
        (
            "precision",
            4,
            FIXED64,
            KuraPosition {
                precision: Some(1.0),
                ..pos.clone()
            },
        ),
        (
            "heading",
            5,
            FIXED64,
            KuraPosition {
                heading: Some(1.0),
                ..pos.clone()
            },
        ),
        (
            "speed",
            6,
            FIXED64,
            KuraPosition {
                speed: Some(1.0),
                ..pos.clone()
            },
        ),
        (
            "timestamp",
            7,
            VARINT,
            KuraPosition {
                timestamp: Some(1),
                ..pos.clone()
            },
        ),
        (
            "satellites",
            8,
            VARINT,
            KuraPosition {
                satellites: Some(1),
                ..pos.clone()
            },
        ),
        (
            "status",
            9,
            VARINT,
            KuraPosition {
                status: Some(1),
                ..pos.clone()
            },
        ),
    ];
    for (name, tag, wire, msg) in pos_rows {
        assert_proto_declares(name, tag);
        assert_eq!(
            msg.encode_to_vec()[pos_prefix.len()..][..key(tag, wire).len()],
            key(tag, wire),
            "{name}"
        );
    }
    assert!(PROTO_FILE.contains("syntax = \"proto2\";"));
    assert!(PROTO_FILE.contains("package kuradatatypes;"));
}

#[test]
fn payload_builder_and_typed_getters() {
    let p = Payload::new()
        .with_str("s", "text")
        .with_i32("i", -7)
        .with_i64("l", 1 << 40)
        .with_bool("b", true)
        .with_timestamp(1_700_000_000_000)
        .with_body(b"<xml/>".to_vec());
    assert_eq!(p.metric_str("s"), Some("text"));
    assert_eq!(p.metric_i32("i"), Some(-7));
    assert_eq!(p.metric_i64("l"), Some(1 << 40));
    assert_eq!(p.metric_bool("b"), Some(true));
    assert_eq!(p.body(), Some(&b"<xml/>"[..]));
    assert_eq!(p.timestamp(), Some(1_700_000_000_000));
    // Typed getters refuse another type, and absent names.
    assert_eq!(p.metric_i32("s"), None);
    assert_eq!(p.metric_str("i"), None);
    assert_eq!(p.metric_str("missing"), None);

    let decoded = Payload::decode(&p.encode()).unwrap();
    assert_eq!(decoded, p);

    // Setters replace a metric of the same name, whatever its type.
    let mut q = p.clone();
    q.set_i32("s", 5);
    assert_eq!(q.metric_i32("s"), Some(5));
    assert_eq!(q.metrics().iter().filter(|m| m.name == "s").count(), 1);
    q.set_body(None);
    assert_eq!(q.body(), None);
    assert_eq!(KuraPayload::from(q.clone()), q.into_proto());
}

#[test]
fn metric_with_declared_type_but_no_value_reads_as_none() {
    let mut p = Payload::new();
    p.proto_mut().metric.push(KuraMetric {
        name: "s".into(),
        r#type: ValueType::String as i32,
        ..Default::default()
    });
    p.proto_mut().metric.push(KuraMetric {
        name: "u".into(),
        r#type: 99,
        string_value: Some("x".into()),
        ..Default::default()
    });
    let p = Payload::decode(&p.encode()).unwrap();
    assert_eq!(p.metric_str("s"), None);
    assert_eq!(p.metric("u").unwrap().value_type(), None);
    assert_eq!(p.metric_str("u"), None);
}

#[test]
fn request_round_trips_in_both_encodings() {
    let requests = [
        ProvRequest::new("r-1"),
        ProvRequest::new("A.b_c-9").with_activation_key("K7Q-secret"),
        ProvRequest::new("x".repeat(64)).with_activation_key(""),
    ];
    for req in requests {
        for encoding in [Encoding::Json, Encoding::Kura] {
            let bytes = req.encode(encoding);
            assert_eq!(Encoding::detect(&bytes), encoding);
            let (got_encoding, got) = decode_request(&bytes).unwrap();
            assert_eq!(got_encoding, encoding);
            assert_eq!(got, req);
        }
        assert_eq!(ProvRequest::from_json(&req.to_json()).unwrap(), req);
        assert_eq!(ProvRequest::from_kura(&req.to_kura()).unwrap(), req);
    }
}

#[test]
fn request_json_is_the_documented_flat_object() {
    let req = ProvRequest::new("r-1").with_activation_key("K7Q");
    assert_eq!(
        req.to_json(),
        br#"{"request.id":"r-1","activation.key":"K7Q"}"#
    );
    assert_eq!(
        ProvRequest::new("r-1").to_json(),
        br#"{"request.id":"r-1"}"#
    );
    let parsed =
        ProvRequest::from_json(br#"{ "request.id" : "r-1", "activation.key": "K7Q..." }"#).unwrap();
    assert_eq!(parsed.request_id, "r-1");
    assert_eq!(parsed.activation_key.as_deref(), Some("K7Q..."));
}

#[test]
fn request_kura_is_string_metrics() {
    let p = Payload::decode(&ProvRequest::new("r-1").with_activation_key("k").to_kura()).unwrap();
    assert_eq!(p.metric_str("request.id"), Some("r-1"));
    assert_eq!(p.metric_str("activation.key"), Some("k"));
    assert_eq!(p.metrics().len(), 2);

    // A real device adds a timestamp, position and other metrics: ignored.
    let mut p = Payload::new()
        .with_timestamp(1)
        .with_str("request.id", "r-2")
        .with_i32("other", 3)
        .with_body(vec![0xff]);
    p.proto_mut().position = Some(KuraPosition {
        latitude: 1.0,
        longitude: 2.0,
        ..Default::default()
    });
    let (encoding, req) = decode_request(&p.encode()).unwrap();
    assert_eq!(encoding, Encoding::Kura);
    assert_eq!(req, ProvRequest::new("r-2"));
}

#[test]
fn encoding_detection_is_on_the_first_byte_only() {
    let rows: &[(&[u8], Encoding)] = &[
        (b"{", Encoding::Json),
        (b"{\"request.id\":\"r\"}", Encoding::Json),
        (b" {\"request.id\":\"r\"}", Encoding::Kura),
        (b"\n{}", Encoding::Kura),
        (b"\xef\xbb\xbf{}", Encoding::Kura),
        (b"", Encoding::Kura),
        (b"[]", Encoding::Kura),
        (b"\x08\x01", Encoding::Kura),
    ];
    for (bytes, want) in rows {
        assert_eq!(Encoding::detect(bytes), *want, "{bytes:?}");
    }
    // A JSON request with leading whitespace is parsed as Kura and has no request.id.
    let err = decode_request(b" {\"request.id\":\"r-1\"}").unwrap_err();
    assert_eq!(err.encoding(), Encoding::Kura);
    assert_eq!(err.reply_topic_level(), "error");
}

#[test]
fn request_id_validation() {
    let valid = ["r-1", "A", "a.b_c-D9", ".", "..", "-", "_", &"z".repeat(64)];
    let invalid = [
        "",
        &"z".repeat(65),
        "a/b",
        "a+b",
        "a#",
        "#",
        "+",
        "a b",
        "r-1\0",
        "é",
        "r:1",
        "r@1",
        "$r",
        "r\n",
    ];
    for id in valid {
        assert!(valid_request_id(id), "{id:?} should be valid");
        for encoding in [Encoding::Json, Encoding::Kura] {
            let (_, req) = decode_request(&ProvRequest::new(id).encode(encoding)).unwrap();
            assert_eq!(req.request_id, id);
        }
    }
    for id in invalid {
        assert!(!valid_request_id(id), "{id:?} should be invalid");
        for encoding in [Encoding::Json, Encoding::Kura] {
            let err = decode_request(&ProvRequest::new(id).encode(encoding)).unwrap_err();
            assert!(
                matches!(err, RequestError::InvalidRequestId { .. }),
                "{id:?} {encoding}: {err:?}"
            );
            assert_eq!(err.encoding(), encoding);
            assert_eq!(err.request_id(), None);
            assert_eq!(err.reply_topic_level(), "error");
            // The message never echoes the bad id.
            if !id.is_empty() && id != "." {
                assert!(!err.to_string().contains(id), "{err}");
            }
        }
    }
}

#[test]
fn request_id_of_the_wrong_type_or_duplicated_is_invalid() {
    let json_rows: &[&[u8]] = &[
        br#"{"request.id": 1}"#,
        br#"{"request.id": null}"#,
        br#"{"request.id": true}"#,
        br#"{"request.id": ["r-1"]}"#,
        br#"{"request.id": {"v": "r-1"}}"#,
        br#"{"request.id": "r-1", "request.id": "r-2"}"#,
        br#"{"request.id": "r-1", "request.id": "r-1"}"#,
    ];
    for bytes in json_rows {
        let err = decode_request(bytes).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::InvalidRequestId {
                    encoding: Encoding::Json,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    let mut no_value = Payload::new();
    no_value.proto_mut().metric.push(KuraMetric {
        name: "request.id".into(),
        r#type: ValueType::String as i32,
        ..Default::default()
    });
    let kura_rows = [
        Payload::new().with_i32("request.id", 1),
        Payload::new().with_bool("request.id", true),
        no_value,
        {
            let mut p = Payload::new().with_str("request.id", "r-1");
            p.proto_mut()
                .metric
                .push(KuraMetric::string("request.id", "r-2"));
            p
        },
    ];
    for p in kura_rows {
        let err = decode_request(&p.encode()).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::InvalidRequestId {
                    encoding: Encoding::Kura,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.reply_topic_level(), "error");
    }
}

#[test]
fn missing_request_id_is_malformed() {
    let rows: Vec<Vec<u8>> = vec![
        b"{}".to_vec(),
        br#"{"activation.key": "k"}"#.to_vec(),
        br#"{"Request.Id": "r-1"}"#.to_vec(),
        Vec::new(),
        Payload::new().with_str("activation.key", "k").encode(),
        Payload::new().with_str("requestId", "r-1").encode(),
    ];
    for bytes in rows {
        let err = decode_request(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::Malformed {
                    cause: KuraError::MissingField("request.id"),
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.reply_topic_level(), "error");
        let reply = err.to_reply();
        assert_eq!(reply.code(), 400);
    }
}

#[test]
fn bad_activation_key_with_a_valid_id_is_answered_on_that_id() {
    let rows: Vec<(Vec<u8>, Encoding)> = vec![
        (
            br#"{"request.id": "r-1", "activation.key": 7}"#.to_vec(),
            Encoding::Json,
        ),
        (
            br#"{"request.id": "r-1", "activation.key": null}"#.to_vec(),
            Encoding::Json,
        ),
        (
            br#"{"request.id": "r-1", "activation.key": "a", "activation.key": "b"}"#.to_vec(),
            Encoding::Json,
        ),
        (
            Payload::new()
                .with_str("request.id", "r-1")
                .with_i64("activation.key", 7)
                .encode(),
            Encoding::Kura,
        ),
    ];
    for (bytes, encoding) in rows {
        let err = decode_request(&bytes).unwrap_err();
        assert!(matches!(err, RequestError::InvalidField { .. }), "{err:?}");
        assert_eq!(err.encoding(), encoding);
        assert_eq!(err.request_id(), Some("r-1"));
        assert_eq!(err.reply_topic_level(), "r-1");
        let reply = err.to_reply();
        assert_eq!(reply.code(), 400);
        assert!(matches!(&reply, ProvReply::Failure(f) if f.message.contains("activation.key")));
    }
}

#[test]
fn unknown_json_fields_are_ignored() {
    let bytes = br#"{"x": 1, "request.id": "r-1", "y": {"z": [1, null]}, "timestamp": 17}"#;
    assert_eq!(decode_request(bytes).unwrap().1, ProvRequest::new("r-1"));
}

#[test]
fn garbage_is_malformed() {
    let rows: &[&[u8]] = &[
        b"{",
        b"{garbage",
        b"{\"request.id\":\"r-1\"",
        b"{\"request.id\":\"r-1\",}",
        b"{\"request.id\":\"r-1\"} trailing",
        b"{\"request.id\":\"r-1\"}{}",
        b"{\"request.id\":\"\xff\"}",
        b"\xff\xff\xff\xff",
        b"\x0a\xff",
        b"\x42\x05abc",
        b"hello world",
    ];
    for bytes in rows {
        let err = decode_request(bytes).unwrap_err();
        assert!(
            matches!(err, RequestError::Malformed { .. }),
            "{bytes:?}: {err:?}"
        );
        assert_eq!(err.encoding(), Encoding::detect(bytes));
        assert_eq!(err.reply_topic_level(), "error");
    }
}

#[test]
fn oversized_requests_are_refused_before_parsing() {
    let pad = "p".repeat(MAX_REQUEST_LEN);
    let json = format!(r#"{{"request.id": "r-1", "pad": "{pad}"}}"#);
    let kura = Payload::new()
        .with_str("request.id", "r-1")
        .with_str("pad", pad)
        .encode();
    for bytes in [json.as_bytes(), &kura] {
        let err = decode_request(bytes).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::Malformed {
                    cause: KuraError::TooLarge { .. },
                    ..
                }
            ),
            "{err:?}"
        );
    }
    // Exactly at the limit is fine.
    let head = r#"{"request.id": "r-1", "pad": ""#;
    let fill = "p".repeat(MAX_REQUEST_LEN - head.len() - 2);
    let at_limit = format!("{head}{fill}\"}}");
    assert_eq!(at_limit.len(), MAX_REQUEST_LEN);
    assert!(decode_request(at_limit.as_bytes()).is_ok());
}

#[test]
fn reply_round_trips_in_both_encodings() {
    let replies = [
        ProvReply::Success(success()),
        ProvReply::failure(400, "request.id is missing"),
        ProvReply::failure(403, "activation key missing or wrong"),
        ProvReply::failure(409, ""),
        ProvReply::failure(500, "ünïcode \"quoted\""),
    ];
    for reply in replies {
        for encoding in [Encoding::Json, Encoding::Kura] {
            let bytes = reply.encode(encoding);
            let (got_encoding, got) = decode_reply(&bytes).unwrap();
            assert_eq!(got_encoding, encoding);
            assert_eq!(got, reply);
        }
    }
}

#[test]
fn reply_json_shape() {
    let v: serde_json::Value =
        serde_json::from_slice(&ProvReply::Success(success()).to_json()).unwrap();
    let obj = v.as_object().unwrap();
    assert_eq!(obj["response.code"], serde_json::json!(200));
    assert!(obj["response.code"].is_u64());
    for name in [
        "provision.status",
        "broker.url",
        "account.name",
        "client.id",
        "username",
        "password",
        "configuration",
    ] {
        assert!(obj[name].is_string(), "{name}");
    }
    assert_eq!(obj["provision.status"], "COMPLETED");
    assert_eq!(obj.len(), 8);

    assert_eq!(
        ProvReply::failure(403, "no").to_json(),
        br#"{"response.code":403,"response.exception.message":"no"}"#
    );
}

#[test]
fn reply_kura_shape() {
    let p = ProvReply::Success(success()).to_kura_payload();
    assert_eq!(p.metric_i32("response.code"), Some(200));
    assert_eq!(p.metric_str("password"), Some(success().password.as_str()));
    assert_eq!(p.metric_str("client.id"), Some("dev-0001"));
    assert!(p.metric("configuration").is_none());
    assert_eq!(p.body(), Some(success().configuration.as_bytes()));
    assert_eq!(p.metrics().len(), 7);

    let p = ProvReply::failure(409, "busy").to_kura_payload();
    assert_eq!(p.metric_i32("response.code"), Some(409));
    assert_eq!(p.metric_str("response.exception.message"), Some("busy"));
    assert_eq!(p.metrics().len(), 2);
    assert_eq!(p.body(), None);
}

#[test]
fn bad_replies_are_errors() {
    let json_rows: &[&[u8]] = &[
        br#"{"response.code": "200"}"#,
        br#"{"response.code": 200.5, "response.exception.message": "x"}"#,
        br#"{"response.code": -1, "response.exception.message": "x"}"#,
        br#"{"response.code": 70000, "response.exception.message": "x"}"#,
        br#"{"response.code": 400}"#,
        br#"{"response.code": 400, "response.code": 400, "response.exception.message": "x"}"#,
        br#"{"response.exception.message": "x"}"#,
        br#"{"response.code": 200, "response.exception.message": "x"}"#,
        br#"[]"#,
        br#"{"#,
    ];
    for bytes in json_rows {
        assert!(
            ProvReply::from_json(bytes).is_err(),
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }

    let mut no_password = ProvReply::Success(success()).to_kura_payload();
    no_password
        .proto_mut()
        .metric
        .retain(|m| m.name != "password");
    let mut bad_body = ProvReply::Success(success()).to_kura_payload();
    bad_body.set_body(Some(vec![0xff, 0xfe]));
    let mut no_body = ProvReply::Success(success()).to_kura_payload();
    no_body.set_body(None);
    let kura_rows = [
        no_password,
        bad_body,
        no_body,
        Payload::new()
            .with_str("response.code", "400")
            .with_str("response.exception.message", "x"),
        Payload::new()
            .with_i64("response.code", 400)
            .with_str("response.exception.message", "x"),
        Payload::new()
            .with_i32("response.code", -5)
            .with_str("response.exception.message", "x"),
        Payload::new().with_i32("response.code", 400),
        Payload::new(),
    ];
    for p in kura_rows {
        assert!(ProvReply::from_kura(&p.encode()).is_err(), "{p:?}");
    }
}

#[test]
fn secrets_are_redacted_in_debug() {
    let s = format!("{:?}", ProvReply::Success(success()));
    assert!(!s.contains(&success().password), "{s}");
    assert!(s.contains("dev-0001@acme"));
    let s = format!(
        "{:?}",
        ProvRequest::new("r-1").with_activation_key("TOPSECRETKEY")
    );
    assert!(!s.contains("TOPSECRETKEY"), "{s}");
}

#[test]
fn topic_names() {
    assert_eq!(
        topics::request_topic("provision", "dev-1"),
        "$EDC/provision/dev-1/PROV-V1/EXEC/provision"
    );
    assert_eq!(
        topics::reply_topic("provision", "dev-1", "r-1"),
        "$EDC/provision/dev-1/PROV-V1/REPLY/r-1"
    );
    assert_eq!(
        topics::reply_filter("provision", "dev-1"),
        "$EDC/provision/dev-1/PROV-V1/REPLY/#"
    );
    assert_eq!(topics::REPLY_ERROR_LEVEL, "error");
}

/// Deterministic xorshift64*, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Runs every decoder on `bytes`; the test fails if any of them panics.
fn decode_everything(bytes: &[u8]) {
    let _ = Payload::decode(bytes);
    let _ = decode_request(bytes);
    let _ = ProvRequest::from_json(bytes);
    let _ = ProvRequest::from_kura(bytes);
    let _ = decode_reply(bytes);
    let _ = ProvReply::from_json(bytes);
    let _ = ProvReply::from_kura(bytes);
    if let Ok((encoding, req)) = decode_request(bytes) {
        // Whatever decodes is valid and re-encodes to something that decodes the same.
        assert!(valid_request_id(&req.request_id));
        assert_eq!(decode_request(&req.encode(encoding)).unwrap().1, req);
    }
}

#[test]
fn decoding_never_panics_on_random_bytes() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let len = rng.below(300);
        let mut bytes = rng.bytes(len);
        if rng.below(4) == 0 && !bytes.is_empty() {
            bytes[0] = b'{';
        }
        decode_everything(&bytes);
    }
}

#[test]
fn decoding_never_panics_on_mutated_valid_payloads() {
    let seeds: Vec<Vec<u8>> = vec![
        ProvRequest::new("r-1").with_activation_key("key").to_kura(),
        ProvRequest::new("r-1").with_activation_key("key").to_json(),
        ProvReply::Success(success()).to_kura(),
        ProvReply::Success(success()).to_json(),
        ProvReply::failure(400, "bad").to_kura(),
        {
            let mut p = Payload::new()
                .with_timestamp(-1)
                .with_str("request.id", "r")
                .with_body(vec![1, 2, 3]);
            p.proto_mut().position = Some(KuraPosition {
                latitude: 1.0,
                longitude: 2.0,
                satellites: Some(3),
                ..Default::default()
            });
            p.encode()
        },
    ];
    let mut rng = Rng(42);
    for seed in &seeds {
        // Every truncation.
        for end in 0..=seed.len() {
            decode_everything(&seed[..end]);
        }
        // Random byte replacements, insertions and deletions.
        for _ in 0..3_000 {
            let mut bytes = seed.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len() + 1);
                match rng.below(3) {
                    0 if at < bytes.len() => bytes[at] = rng.next() as u8,
                    1 => bytes.insert(at, rng.next() as u8),
                    _ if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => {}
                }
            }
            decode_everything(&bytes);
        }
    }
}

#[test]
fn decoding_never_panics_on_adversarial_shapes() {
    // Deep nesting: serde_json's recursion limit answers an error, not a stack overflow.
    let deep = format!("{{\"a\":{}", "[".repeat(100_000));
    decode_everything(deep.as_bytes());
    let deep_objects = "{\"a\":".repeat(50_000);
    decode_everything(deep_objects.as_bytes());
    // A length prefix claiming far more bytes than there are.
    let mut huge_len = key(5000, 2);
    huge_len.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    decode_everything(&huge_len);
    // An overlong varint.
    decode_everything(&[
        0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ]);
    // Many metrics.
    let mut many = Payload::new();
    for i in 0..5_000 {
        many.proto_mut()
            .metric
            .push(KuraMetric::int32(format!("m{i}"), i));
    }
    decode_everything(&many.encode());
    // Long JSON string with escapes.
    let escapes = format!("{{\"request.id\":\"{}\"}}", "\\u0000".repeat(3000));
    decode_everything(escapes.as_bytes());
}

#[test]
fn a_birth_gives_a_kura_native_request_its_activation_key() {
    let birth = Payload::new()
        .with_str("display_name", "pi")
        .with_str("activation.key", "K1");
    let r = ProvRequest::from_birth(&birth.encode(), "x-1").unwrap();
    assert_eq!(r.request_id, "x-1");
    assert_eq!(r.activation_key.as_deref(), Some("K1"));
    // No key, or a gzip-compressed BIRTH, as Kura may send.
    let plain = Payload::new().with_str("display_name", "pi").encode();
    assert_eq!(
        ProvRequest::from_birth(&plain, "x").unwrap().activation_key,
        None
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &birth.encode()).unwrap();
    let gz = gz.finish().unwrap();
    assert_eq!(
        ProvRequest::from_birth(&gz, "x")
            .unwrap()
            .activation_key
            .as_deref(),
        Some("K1")
    );
    // A key that is not a STRING metric, or bytes that are no payload: refused.
    let wrong = Payload::new().with_i32("activation.key", 1).encode();
    assert!(ProvRequest::from_birth(&wrong, "x").is_err());
    assert!(ProvRequest::from_birth(b"\xff\xff\xff", "x").is_err());
}
