//! The configuration a device receives: merge of the generated MqttDataTransport (+ VPN)
//! configuration with the request's additional configuration, and writing it as XML. The
//! three additional documents follow devconfig's merge tests.

// `criterion_group!` generates an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use fleetgate_devconfig::{
    Configuration, Document, Identity, MQTT_TRANSPORT_PID, Property, PropertyType, ReservedPolicy,
    generated,
};

const COMMAND: &str = "org.eclipse.kura.command.CommandCloudApp";
const DIAGNOSTICS: &str = "org.eclipse.kura.core.diagnostics.DiagnosticsService";
const VPN: &str = "org.eclipse.kura.net.vpn.client.VpnClient";

fn identity() -> Identity {
    Identity {
        broker_url: "mqtts://ops.example:8883".into(),
        account_name: "acme".into(),
        client_id: "dev-0001".into(),
        username: "dev-0001@acme".into(),
        password: "Xy7!generated-Passw0rd".into(),
    }
}

fn command_full() -> Configuration {
    Configuration::new(
        COMMAND,
        vec![
            Property::scalar("command.enable", PropertyType::Boolean, "true"),
            Property::scalar(
                "command.password.value",
                PropertyType::Password,
                "secret-cmd",
            ),
            Property::scalar("command.working.directory", PropertyType::String, "/tmp"),
            Property::scalar("command.timeout", PropertyType::Integer, "60"),
            Property::array("command.environment", PropertyType::String, ["A=1", "B=2"]),
            Property::scalar("privileged.command.enable", PropertyType::Boolean, "false"),
        ],
    )
}

fn command_enable_only() -> Configuration {
    Configuration::new(
        COMMAND,
        vec![Property::scalar(
            "command.enable",
            PropertyType::Boolean,
            "true",
        )],
    )
}

fn diagnostics() -> Configuration {
    Configuration::new(
        DIAGNOSTICS,
        vec![
            Property::scalar("diagnostics.enable", PropertyType::Boolean, "true"),
            Property::scalar("diagnostics.interval", PropertyType::Long, "3600000"),
        ],
    )
}

fn transport_attempt() -> Configuration {
    Configuration::new(
        MQTT_TRANSPORT_PID,
        vec![
            Property::scalar("password", PropertyType::Password, "attacker-choice"),
            Property::scalar("client-id", PropertyType::String, "someone-else"),
            Property::scalar("keep-alive", PropertyType::Integer, "30"),
        ],
    )
}

fn devconfig(c: &mut Criterion) {
    // (name, VPN pid, additional document), the additional parsed from its XML as the API does.
    let cases: Vec<(&str, Option<&str>, Document)> = vec![
        ("command_full", None, vec![command_full()]),
        (
            "enable_only_with_vpn",
            Some(VPN),
            vec![command_enable_only()],
        ),
        (
            "diagnostics_command_reserved",
            None,
            vec![diagnostics(), command_enable_only(), transport_attempt()],
        ),
    ]
    .into_iter()
    .map(|(name, vpn, configurations)| {
        let xml = Document { configurations }.to_xml();
        (name, vpn, Document::parse(&xml).unwrap())
    })
    .collect();

    let mut g = c.benchmark_group("devconfig");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let id = identity();
    for (name, vpn, additional) in &cases {
        let policy = ReservedPolicy::for_generated(*vpn);
        g.bench_function(format!("generate_merge/{name}"), |b| {
            b.iter(|| Document::merge(generated(&id, *vpn), black_box(additional), &policy));
        });
        g.bench_function(format!("generate_merge_to_xml/{name}"), |b| {
            b.iter(|| {
                Document::merge(generated(&id, *vpn), black_box(additional), &policy)
                    .document
                    .to_xml()
            });
        });
        let merged = Document::merge(generated(&id, *vpn), additional, &policy).document;
        g.bench_function(format!("to_xml_only/{name}"), |b| {
            b.iter_batched_ref(|| merged.clone(), |d| d.to_xml(), BatchSize::SmallInput);
        });
    }
    g.finish();
}

criterion_group!(benches, devconfig);
criterion_main!(benches);
