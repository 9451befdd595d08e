//! Topic decisions: the per-packet ACL checks and the operational subscription matcher with
//! 10,000 subscribers.

// `criterion_group!` generates an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fleetgate_acl::{Session, SubscriptionTree, may_publish, may_subscribe};

const SUBSCRIBERS: u32 = 10_000;

fn acl(c: &mut Criterion) {
    let device = Session::Device {
        account: "acme".into(),
        client_id: "dev-004711".into(),
    };
    let prov = Session::Provisioning {
        account: "provision".into(),
        client_id: "dev-004711".into(),
        requester: "fleetgate".into(),
    };

    let mut g = c.benchmark_group("acl");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    g.bench_function("may_subscribe_device_allowed", |b| {
        b.iter(|| may_subscribe(&device, black_box("$EDC/acme/dev-004711/#")));
    });
    g.bench_function("may_subscribe_device_denied", |b| {
        b.iter(|| may_subscribe(&device, black_box("acme/+/#")));
    });
    g.bench_function("may_subscribe_provisioning_reply", |b| {
        b.iter(|| {
            may_subscribe(
                &prov,
                black_box("$EDC/provision/dev-004711/PROV-V1/REPLY/#"),
            )
        });
    });
    g.bench_function("may_publish_device_allowed", |b| {
        b.iter(|| may_publish(&device, black_box("acme/dev-004711/sensors/temperature")));
    });
    g.bench_function("may_publish_provisioning_exec", |b| {
        b.iter(|| {
            may_publish(
                &prov,
                black_box("$EDC/provision/dev-004711/PROV-V1/EXEC/provision"),
            )
        });
    });
    g.finish();

    // 10,000 devices, each subscribed to its own two trees, plus one account-wide monitor.
    let mut tree: SubscriptionTree<u32> = SubscriptionTree::new();
    for i in 0..SUBSCRIBERS {
        tree.insert(&format!("acme/dev-{i:06}/#"), i, 1).unwrap();
        tree.insert(&format!("$EDC/acme/dev-{i:06}/#"), i, 1)
            .unwrap();
    }
    tree.insert("acme/+/sensors/#", SUBSCRIBERS, 0).unwrap();
    assert_eq!(tree.matches("acme/dev-004711/sensors/temperature").len(), 2);
    assert_eq!(tree.matches("$EDC/acme/dev-004711/cmd/exec").len(), 1);

    let mut g = c.benchmark_group("subscription_tree_10k");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    g.bench_function("matches_2_of_10k", |b| {
        b.iter(|| tree.matches(black_box("acme/dev-004711/sensors/temperature")));
    });
    g.bench_function("matches_edc_1_of_10k", |b| {
        b.iter(|| tree.matches(black_box("$EDC/acme/dev-004711/cmd/exec")));
    });
    g.bench_function("matches_none_of_10k", |b| {
        b.iter(|| tree.matches(black_box("other/dev-004711/x")));
    });
    g.finish();
}

criterion_group!(benches, acl);
criterion_main!(benches);
