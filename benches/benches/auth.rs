//! Provision-password checks: one argon2id verify with the default (OWASP) parameters vs a hit
//! in the verification cache vs the keyed fast hash used for generated secrets.

// `criterion_group!` generates an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use fleetgate_auth_hook::cache::VerifyCache;
use fleetgate_auth_hook::credentials::{Argon2Params, argon2_verify, fast_hash, fast_verify};

const USER: &str = "fleet-provision";
const PASSWORD: &str = "correct horse battery staple";
const DEVICE_PASSWORD: &str = "Xy7!generated-Passw0rd-0123456789abcdef";

fn auth(c: &mut Criterion) {
    let phc = Argon2Params::default().hash(PASSWORD).unwrap();
    assert!(argon2_verify(PASSWORD.as_bytes(), &phc));
    let cache = VerifyCache::default();
    cache.insert(USER, PASSWORD.as_bytes(), &phc);
    assert!(cache.hit(USER, PASSWORD.as_bytes(), &phc));
    let fast = fast_hash(DEVICE_PASSWORD);
    assert!(fast_verify(DEVICE_PASSWORD, &fast));

    let mut g = c.benchmark_group("auth_verify");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    g.bench_function("cache_hit", |b| {
        b.iter(|| cache.hit(black_box(USER), black_box(PASSWORD.as_bytes()), &phc));
    });
    g.bench_function("fast_verify_hmac_sha256", |b| {
        b.iter(|| fast_verify(black_box(DEVICE_PASSWORD), &fast));
    });
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    g.bench_function("argon2id_verify_default_params", |b| {
        b.iter(|| argon2_verify(black_box(PASSWORD.as_bytes()), &phc));
    });
    g.finish();
}

criterion_group!(benches, auth);
criterion_main!(benches);
