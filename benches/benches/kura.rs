//! PROV-V1 reply payloads: encode and decode of a success reply in both encodings (a
//! KuraPayload protobuf and the flat JSON object), carrying a realistic configuration XML.

// `criterion_group!` generates an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fleetgate_devconfig::{Identity, ReservedPolicy, generated};
use fleetgate_kura::{PROVISION_STATUS_COMPLETED, ProvReply, ProvSuccess, decode_reply};

fn reply() -> ProvReply {
    let identity = Identity {
        broker_url: "mqtts://broker.acme.example:8883".into(),
        account_name: "acme".into(),
        client_id: "dev-0001".into(),
        username: "dev-0001@acme".into(),
        password: "s3cret!Passw0rd-xyzQ".into(),
    };
    let configuration = fleetgate_devconfig::Document::merge(
        generated(&identity, None),
        &fleetgate_devconfig::Document::default(),
        &ReservedPolicy::mqtt_transport(),
    )
    .document
    .to_xml();
    ProvReply::Success(ProvSuccess {
        provision_status: PROVISION_STATUS_COMPLETED.to_owned(),
        broker_url: identity.broker_url,
        account_name: identity.account_name,
        client_id: identity.client_id,
        username: identity.username,
        password: identity.password,
        configuration,
    })
}

fn kura(c: &mut Criterion) {
    let reply = reply();
    let kura = reply.to_kura();
    let json = reply.to_json();
    assert_eq!(decode_reply(&kura).unwrap().1, reply);
    assert_eq!(decode_reply(&json).unwrap().1, reply);

    let mut g = c.benchmark_group("prov_v1_reply");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    g.throughput(Throughput::Bytes(kura.len() as u64));
    g.bench_function("encode_kura", |b| b.iter(|| black_box(&reply).to_kura()));
    g.bench_function("decode_kura", |b| b.iter(|| decode_reply(black_box(&kura))));
    g.throughput(Throughput::Bytes(json.len() as u64));
    g.bench_function("encode_json", |b| b.iter(|| black_box(&reply).to_json()));
    g.bench_function("decode_json", |b| b.iter(|| decode_reply(black_box(&json))));
    g.finish();
}

criterion_group!(benches, kura);
criterion_main!(benches);
