//! Property-based fuzzing of the PROV-V1 wire formats (proptest; see docs/robustness.md).
//!
//! - `Payload::decode`, `decode_request` and `decode_reply` never panic, on arbitrary bytes,
//!   JSON-ish text and mutated valid encodings;
//! - a refused request always yields a usable error reply (topic level, code, encoding);
//! - generated requests, replies and payloads round-trip in both encodings.
//!
//! Bounded for CI (`PROPTEST_CASES` overrides the default number of cases per target).

use fleetgate_kura::proto::{KuraMetric, KuraPayload, KuraPosition, ValueType};
use fleetgate_kura::{
    Encoding, MAX_REQUEST_LEN, Payload, ProvFailure, ProvReply, ProvRequest, ProvSuccess,
    decode_reply, decode_request, topics, valid_request_id,
};
use proptest::prelude::*;

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("tests/regressions/prop.txt"),
        )),
        ..ProptestConfig::default()
    }
}

fn request_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,64}"
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(any::<char>(), 0..max).prop_map(|v| v.into_iter().collect()),
        1 => prop::sample::select(vec!["", "{", "\"", "\\", "\u{0}", "null", "\u{FEFF}"])
            .prop_map(String::from),
    ]
}

fn request() -> impl Strategy<Value = ProvRequest> {
    (request_id(), prop::option::of(text(48))).prop_map(|(id, key)| ProvRequest {
        request_id: id,
        activation_key: key,
    })
}

fn reply() -> impl Strategy<Value = ProvReply> {
    prop_oneof![
        (
            text(16),
            text(32),
            text(16),
            text(16),
            text(16),
            text(32),
            text(256)
        )
            .prop_map(|(s, u, a, c, n, p, x)| {
                ProvReply::Success(ProvSuccess {
                    provision_status: s,
                    broker_url: u,
                    account_name: a,
                    client_id: c,
                    username: n,
                    password: p,
                    configuration: x,
                })
            }),
        (any::<u16>().prop_filter("not 200", |c| *c != 200), text(64))
            .prop_map(|(code, message)| ProvReply::Failure(ProvFailure { code, message })),
    ]
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![Just(Encoding::Json), Just(Encoding::Kura)]
}

fn finite_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite (NaN != NaN)", |v| !v.is_nan())
}

fn metric() -> impl Strategy<Value = KuraMetric> {
    (
        prop::sample::select(vec![
            "request.id".to_string(),
            "activation.key".to_string(),
            "response.code".to_string(),
            "username".to_string(),
            "x".to_string(),
        ]),
        0..9i32,
        prop::option::of(finite_f64()),
        prop::option::of(any::<f32>().prop_filter("not NaN", |v| !v.is_nan())),
        prop::option::of(any::<i64>()),
        prop::option::of(any::<i32>()),
        prop::option::of(any::<bool>()),
        prop::option::of(text(16)),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
    )
        .prop_map(|(name, t, d, f, l, i, b, s, y)| KuraMetric {
            name,
            r#type: t,
            double_value: d,
            float_value: f,
            long_value: l,
            int_value: i,
            bool_value: b,
            string_value: s,
            bytes_value: y,
        })
}

fn kura_payload() -> impl Strategy<Value = KuraPayload> {
    (
        prop::option::of(any::<i64>()),
        prop::option::of((finite_f64(), finite_f64(), prop::option::of(any::<i32>()))),
        prop::collection::vec(metric(), 0..6),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..32)),
    )
        .prop_map(|(timestamp, position, metric, body)| KuraPayload {
            timestamp,
            position: position.map(|(latitude, longitude, satellites)| KuraPosition {
                latitude,
                longitude,
                satellites,
                ..KuraPosition::default()
            }),
            metric,
            body,
        })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::Flip(a, b)),
        (any::<usize>(), 1..8usize).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (
            any::<usize>(),
            prop::collection::vec(
                prop_oneof![any::<u8>(), Just(0xff), Just(0x80), Just(b'{'), Just(b'"')],
                1..12
            )
        )
            .prop_map(|(a, v)| Mutation::Insert(a, v)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let at = |a: usize, len: usize| if len == 0 { 0 } else { a % (len + 1) };
        match m {
            Mutation::Flip(a, x) => {
                if !bytes.is_empty() {
                    let i = a % bytes.len();
                    bytes[i] ^= x | 1;
                }
            }
            Mutation::Delete(a, n) => {
                let start = at(*a, bytes.len());
                let end = (start + n).min(bytes.len());
                bytes.drain(start..end);
            }
            Mutation::Insert(a, v) => {
                let start = at(*a, bytes.len());
                bytes.splice(start..start, v.iter().copied());
            }
            Mutation::Truncate(a) => {
                let len = at(*a, bytes.len());
                bytes.truncate(len);
            }
        }
    }
    bytes
}

/// JSON-ish text: objects with the PROV-V1 keys and odd values.
fn json_soup() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"request.id\"",
            "\"activation.key\"",
            "\"response.code\"",
            "\"response.exception.message\"",
            "\"configuration\"",
            "\"r-1\"",
            "\"bad/id\"",
            "\"\"",
            "200",
            "-1",
            "1e400",
            "65536",
            "null",
            "true",
            "\"\\ud800\"",
            "\"\\u0000\"",
            " ",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..3),
    ];
    prop::collection::vec(token, 0..30).prop_map(|v| {
        let mut out = vec![b'{'];
        out.extend(v.concat());
        out
    })
}

/// Decoding `bytes` in every way never panics, and refusals are answerable.
fn decode_everything(bytes: &[u8]) -> Result<(), TestCaseError> {
    let _ = Payload::decode(bytes);
    let _ = ProvRequest::from_json(bytes);
    let _ = ProvRequest::from_kura(bytes);
    let _ = ProvReply::from_json(bytes);
    let _ = ProvReply::from_kura(bytes);
    let _ = decode_reply(bytes);
    match decode_request(bytes) {
        Ok((encoding, request)) => {
            prop_assert_eq!(encoding, Encoding::detect(bytes));
            prop_assert!(valid_request_id(&request.request_id));
            prop_assert!(bytes.len() <= MAX_REQUEST_LEN);
            // What was decoded encodes and decodes to the same request.
            let again = decode_request(&request.encode(encoding));
            prop_assert_eq!(again.ok(), Some((encoding, request)));
        }
        Err(e) => {
            prop_assert_eq!(e.encoding(), Encoding::detect(bytes));
            let level = e.reply_topic_level();
            prop_assert!(
                level == topics::REPLY_ERROR_LEVEL || valid_request_id(level),
                "reply topic level {:?} is not a safe topic level",
                level
            );
            if let Some(id) = e.request_id() {
                prop_assert!(valid_request_id(id));
            }
            let reply = e.to_reply();
            prop_assert_ne!(reply.code(), ProvReply::SUCCESS_CODE);
            // The error reply itself round-trips in the request's encoding.
            let encoded = reply.encode(e.encoding());
            let decoded = decode_reply(&encoded).map_err(|e| e.to_string());
            prop_assert_eq!(decoded, Ok((e.encoding(), reply)));
            let _ = e.to_string();
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_everything(&bytes)?;
    }

    #[test]
    fn json_soup_never_panics(bytes in json_soup()) {
        decode_everything(&bytes)?;
    }

    #[test]
    fn mutated_requests_never_panic(
        r in request(),
        e in encoding(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        decode_everything(&apply(r.encode(e), &mutations))?;
    }

    #[test]
    fn mutated_replies_never_panic(
        r in reply(),
        e in encoding(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        decode_everything(&apply(r.encode(e), &mutations))?;
    }

    #[test]
    fn mutated_payloads_never_panic(
        p in kura_payload(),
        mutations in prop::collection::vec(mutation(), 0..4),
    ) {
        use prost::Message as _;
        decode_everything(&apply(p.encode_to_vec(), &mutations))?;
    }

    #[test]
    fn requests_round_trip(r in request(), e in encoding()) {
        let bytes = r.encode(e);
        prop_assert_eq!(Encoding::detect(&bytes), e);
        let decoded = decode_request(&bytes).map_err(|e| e.to_string());
        prop_assert_eq!(decoded, Ok((e, r)));
    }

    #[test]
    fn invalid_request_ids_are_refused(
        id in text(80).prop_filter("invalid", |s| !valid_request_id(s)),
        e in encoding(),
    ) {
        let bytes = ProvRequest::new(id).encode(e);
        let err = decode_request(&bytes).unwrap_err();
        prop_assert_eq!(err.reply_topic_level(), topics::REPLY_ERROR_LEVEL);
        decode_everything(&bytes)?;
    }

    #[test]
    fn replies_round_trip(r in reply(), e in encoding()) {
        let bytes = r.encode(e);
        prop_assert_eq!(Encoding::detect(&bytes), e);
        let decoded = decode_reply(&bytes).map_err(|e| e.to_string());
        prop_assert_eq!(decoded, Ok((e, r)));
    }

    #[test]
    fn payloads_round_trip(p in kura_payload()) {
        use prost::Message as _;
        let payload = Payload::decode(&p.encode_to_vec()).unwrap();
        prop_assert_eq!(payload.proto(), &p);
        prop_assert_eq!(Payload::decode(&payload.encode()).unwrap(), payload.clone());
        // Typed getters agree with the first metric of that name.
        for m in p.metric.iter() {
            let first = payload.metric(&m.name).unwrap();
            let expect_str = (first.value_type() == Some(ValueType::String))
                .then_some(first.string_value.as_deref())
                .flatten();
            prop_assert_eq!(payload.metric_str(&m.name), expect_str);
        }
    }
}
