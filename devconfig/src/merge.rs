//! Merging a request's additional configuration into the generated one.

use crate::generate::{MQTT_TRANSPORT_PID, RESERVED_TRANSPORT_PROPERTIES, VPN_PROPERTIES};
use crate::model::{Configuration, Document, quote};

/// Which properties of which configurations an additional configuration may not set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReservedPolicy {
    entries: Vec<(String, Vec<String>)>,
}

impl ReservedPolicy {
    /// Nothing reserved.
    pub fn none() -> Self {
        ReservedPolicy::default()
    }

    /// The five MqttDataTransport properties Fleetgate generates ([`RESERVED_TRANSPORT_PROPERTIES`]
    /// of [`MQTT_TRANSPORT_PID`]): the reserved parameters of PROTOCOL.md 4.5.
    pub fn mqtt_transport() -> Self {
        ReservedPolicy::none().reserve(MQTT_TRANSPORT_PID, RESERVED_TRANSPORT_PROPERTIES)
    }

    /// [`ReservedPolicy::mqtt_transport`], plus, with a VPN client PID, that configuration's
    /// generated `username` and `password`, so that it keeps carrying the device's credentials.
    pub fn for_generated(vpn_pid: Option<&str>) -> Self {
        let policy = ReservedPolicy::mqtt_transport();
        match vpn_pid {
            Some(pid) => policy.reserve(pid, VPN_PROPERTIES),
            None => policy,
        }
    }

    /// This policy with the properties `names` of configuration `pid` reserved as well.
    pub fn reserve<I, S>(mut self, pid: &str, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names = names.into_iter().map(Into::into);
        match self.entries.iter_mut().find(|(p, _)| p == pid) {
            Some((_, existing)) => existing.extend(names),
            None => self.entries.push((pid.to_string(), names.collect())),
        }
        self
    }

    /// Whether property `name` of configuration `pid` is reserved.
    pub fn is_reserved(&self, pid: &str, name: &str) -> bool {
        self.entries
            .iter()
            .any(|(p, names)| p == pid && names.iter().any(|n| n == name))
    }

    /// One message per reserved property that `additional` sets, in document order, such as
    /// `property "password" of org.eclipse.kura.core.data.transport.mqtt.MqttDataTransport is
    /// reserved and will be replaced by the generated value`. Values are never included.
    pub fn warnings(&self, additional: &Document) -> Vec<String> {
        additional
            .configurations
            .iter()
            .flat_map(|c| c.properties.iter().map(move |p| (c, p)))
            .filter(|(c, p)| self.is_reserved(&c.id, &p.name))
            .map(|(c, p)| reserved_message(c, &p.name))
            .collect()
    }
}

fn reserved_message(c: &Configuration, name: &str) -> String {
    format!(
        "property {} of {} is reserved and will be replaced by the generated value",
        quote(name),
        c.id.escape_debug()
    )
}

/// The warnings for the admin API: each reserved MqttDataTransport property `additional` tries
/// to set ([`ReservedPolicy::mqtt_transport`]`.warnings(additional)`).
pub fn reserved_warnings(additional: &Document) -> Vec<String> {
    ReservedPolicy::mqtt_transport().warnings(additional)
}

/// The result of [`Document::merge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The merged document.
    pub document: Document,
    /// [`ReservedPolicy::warnings`] for the additional document: what was ignored.
    pub warnings: Vec<String>,
}

impl Document {
    /// Merges `additional` into `base` (PROTOCOL.md 4.5).
    ///
    /// A configuration of `additional` whose id is in `base` is merged property by property: a
    /// property with a new name is appended, one with an existing name replaces that property
    /// in place (type, flags and values), and a reserved property is ignored so the base keeps
    /// its own (the additional can never set a reserved property, even one the base lacks).
    /// Other configurations are appended in the order given. Base order is kept throughout.
    pub fn merge(base: Document, additional: &Document, reserved: &ReservedPolicy) -> Merged {
        let mut document = base;
        let mut warnings = Vec::new();
        for add in &additional.configurations {
            let index = match document.configurations.iter().position(|c| c.id == add.id) {
                Some(i) => i,
                None => {
                    document
                        .configurations
                        .push(Configuration::new(add.id.clone(), Vec::new()));
                    document.configurations.len() - 1
                }
            };
            let target = &mut document.configurations[index];
            for p in &add.properties {
                if reserved.is_reserved(&add.id, &p.name) {
                    warnings.push(reserved_message(add, &p.name));
                    continue;
                }
                match target.properties.iter_mut().find(|q| q.name == p.name) {
                    Some(existing) => *existing = p.clone(),
                    None => target.properties.push(p.clone()),
                }
            }
        }
        Merged { document, warnings }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::generated;
    use crate::generate::tests::{VPN, identity};
    use crate::model::{Property, PropertyType};

    const COMMAND: &str = "org.eclipse.kura.command.CommandCloudApp";
    const DIAGNOSTICS: &str = "org.eclipse.kura.core.diagnostics.DiagnosticsService";

    fn doc(configurations: Vec<Configuration>) -> Document {
        Document { configurations }
    }

    fn names(c: &Configuration) -> Vec<&str> {
        c.properties.iter().map(|p| p.name.as_str()).collect()
    }

    fn ids(d: &Document) -> Vec<&str> {
        d.configurations.iter().map(|c| c.id.as_str()).collect()
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

    /// The additional documents survive a trip through XML: they are what the API receives.
    fn via_xml(d: Document) -> Document {
        let parsed = Document::parse(&d.to_xml()).unwrap();
        assert_eq!(parsed, d);
        parsed
    }

    #[test]
    fn seed_command_service_full() {
        let additional = via_xml(doc(vec![command_full()]));
        let base = generated(&identity(), None);
        let merged = Document::merge(base.clone(), &additional, &ReservedPolicy::mqtt_transport());
        assert!(merged.warnings.is_empty());
        assert_eq!(reserved_warnings(&additional), Vec::<String>::new());
        assert_eq!(ids(&merged.document), [MQTT_TRANSPORT_PID, COMMAND]);
        assert_eq!(merged.document.configurations[0], base.configurations[0]);
        assert_eq!(merged.document.configurations[1], command_full());
        assert_eq!(merged.document.validate(), Ok(()));
        let masked = merged.document.to_xml_masked();
        assert!(!masked.contains("secret-cmd") && !masked.contains("generated-Passw0rd"));
        assert!(
            merged
                .document
                .to_xml()
                .contains("<value>secret-cmd</value>")
        );
    }

    #[test]
    fn seed_enable_only() {
        let additional = via_xml(doc(vec![command_enable_only()]));
        let merged = Document::merge(
            generated(&identity(), Some(VPN)),
            &additional,
            &ReservedPolicy::for_generated(Some(VPN)),
        );
        assert!(merged.warnings.is_empty());
        assert_eq!(ids(&merged.document), [MQTT_TRANSPORT_PID, VPN, COMMAND]);
        assert_eq!(merged.document.configurations[2], command_enable_only());
    }

    #[test]
    fn seed_diagnostics_and_command_keeps_reserved_values() {
        let additional = via_xml(doc(vec![
            diagnostics(),
            command_enable_only(),
            transport_attempt(),
        ]));
        let base = generated(&identity(), None);
        let merged = Document::merge(base.clone(), &additional, &ReservedPolicy::mqtt_transport());

        let d = &merged.document;
        assert_eq!(ids(d), [MQTT_TRANSPORT_PID, DIAGNOSTICS, COMMAND]);
        let transport = &d.configurations[0];
        let mut expected_names = RESERVED_TRANSPORT_PROPERTIES.to_vec();
        expected_names.push("keep-alive");
        assert_eq!(names(transport), expected_names);
        assert_eq!(
            transport.properties[..5],
            base.configurations[0].properties[..]
        );
        assert_eq!(
            transport.property("password").and_then(Property::value),
            Some("Xy7!generated-Passw0rd")
        );
        assert_eq!(
            transport.property("client-id").and_then(Property::value),
            Some("dev-0001")
        );
        assert_eq!(
            transport.property("keep-alive"),
            Some(&Property::scalar("keep-alive", PropertyType::Integer, "30"))
        );
        assert_eq!(d.configurations[1], diagnostics());
        assert_eq!(d.configurations[2], command_enable_only());
        assert_eq!(d.validate(), Ok(()));

        let expected = [
            format!(
                "property \"password\" of {MQTT_TRANSPORT_PID} is reserved and will be replaced by the generated value"
            ),
            format!(
                "property \"client-id\" of {MQTT_TRANSPORT_PID} is reserved and will be replaced by the generated value"
            ),
        ];
        assert_eq!(merged.warnings, expected);
        assert_eq!(reserved_warnings(&additional), expected);
        assert!(
            merged
                .warnings
                .iter()
                .all(|w| !w.contains("attacker-choice") && !w.contains("someone-else"))
        );
    }

    #[test]
    fn replacement_by_name_keeps_order_in_transport_and_vpn() {
        let base = generated(&identity(), Some(VPN));
        let additional = doc(vec![
            Configuration::new(
                VPN,
                vec![
                    Property::scalar("remote", PropertyType::String, "vpn.example"),
                    Property::scalar("port", PropertyType::Integer, "1194"),
                ],
            ),
            Configuration::new(
                MQTT_TRANSPORT_PID,
                vec![
                    Property::scalar("keep-alive", PropertyType::Integer, "30"),
                    Property::scalar("qos", PropertyType::Integer, "1"),
                ],
            ),
            Configuration::new(
                MQTT_TRANSPORT_PID.to_string() + ".Other",
                vec![Property::scalar("x", PropertyType::Short, "1")],
            ),
        ]);
        let first = Document::merge(base, &additional, &ReservedPolicy::for_generated(Some(VPN)));
        assert!(first.warnings.is_empty());

        // A second additional document replaces by name, in place, and appends new names.
        let second = doc(vec![
            Configuration::new(
                MQTT_TRANSPORT_PID,
                vec![
                    Property::scalar("qos", PropertyType::Long, "0"),
                    Property::scalar("timeout", PropertyType::Integer, "20"),
                    Property::scalar("keep-alive", PropertyType::Integer, "60"),
                ],
            ),
            Configuration::new(
                VPN,
                vec![
                    Property::scalar("port", PropertyType::Integer, "443"),
                    Property::scalar("password", PropertyType::Password, "mine"),
                ],
            ),
        ]);
        let merged = Document::merge(
            first.document,
            &second,
            &ReservedPolicy::for_generated(Some(VPN)),
        );
        let d = &merged.document;
        assert_eq!(
            ids(d),
            [
                MQTT_TRANSPORT_PID,
                VPN,
                "org.eclipse.kura.core.data.transport.mqtt.MqttDataTransport.Other"
            ]
        );
        let transport = &d.configurations[0];
        assert_eq!(
            names(transport)[5..],
            ["keep-alive", "qos", "timeout"],
            "replaced in place, new appended"
        );
        assert_eq!(
            transport.property("keep-alive").unwrap().value(),
            Some("60")
        );
        assert_eq!(
            transport.property("qos"),
            Some(&Property::scalar("qos", PropertyType::Long, "0"))
        );
        let vpn = &d.configurations[1];
        assert_eq!(names(vpn), ["username", "password", "remote", "port"]);
        assert_eq!(vpn.property("port").unwrap().value(), Some("443"));
        assert_eq!(
            vpn.property("password").unwrap().value(),
            Some("Xy7!generated-Passw0rd")
        );
        assert_eq!(
            merged.warnings,
            [format!(
                "property \"password\" of {VPN} is reserved and will be replaced by the generated value"
            )]
        );
        // The admin API's warnings only cover the MqttDataTransport.
        assert!(reserved_warnings(&second).is_empty());
    }

    #[test]
    fn vpn_credentials_are_replaceable_when_only_the_transport_is_reserved() {
        let base = generated(&identity(), Some(VPN));
        let additional = doc(vec![Configuration::new(
            VPN,
            vec![Property::scalar("username", PropertyType::String, "other")],
        )]);
        let merged = Document::merge(base, &additional, &ReservedPolicy::mqtt_transport());
        assert!(merged.warnings.is_empty());
        let vpn = &merged.document.configurations[1];
        assert_eq!(names(vpn), ["username", "password"]);
        assert_eq!(vpn.properties[0].value(), Some("other"));
    }

    #[test]
    fn reserved_properties_are_dropped_even_without_a_base_configuration() {
        let merged = Document::merge(
            Document::default(),
            &doc(vec![transport_attempt()]),
            &ReservedPolicy::mqtt_transport(),
        );
        assert_eq!(ids(&merged.document), [MQTT_TRANSPORT_PID]);
        assert_eq!(names(&merged.document.configurations[0]), ["keep-alive"]);
        assert_eq!(merged.warnings.len(), 2);
    }

    #[test]
    fn nothing_reserved_means_plain_replacement() {
        let merged = Document::merge(
            generated(&identity(), None),
            &doc(vec![transport_attempt()]),
            &ReservedPolicy::none(),
        );
        assert!(merged.warnings.is_empty());
        let t = &merged.document.configurations[0];
        assert_eq!(
            t.property("client-id").unwrap().value(),
            Some("someone-else")
        );
        assert_eq!(t.properties.len(), 6);
    }

    #[test]
    fn policy_queries() {
        let p = ReservedPolicy::for_generated(Some(VPN)).reserve(VPN, ["extra"]);
        for name in RESERVED_TRANSPORT_PROPERTIES {
            assert!(p.is_reserved(MQTT_TRANSPORT_PID, name));
        }
        assert!(p.is_reserved(VPN, "username") && p.is_reserved(VPN, "extra"));
        assert!(!p.is_reserved(MQTT_TRANSPORT_PID, "keep-alive"));
        assert!(!p.is_reserved(COMMAND, "password"));
        assert!(!ReservedPolicy::mqtt_transport().is_reserved(VPN, "password"));
    }
}
