//! The configurations Fleetgate generates for a provisioned device.

use std::fmt;

use crate::model::{Configuration, Document, MASK, Property, PropertyType};

/// The PID of Kura's MQTT data transport, which carries the device's connection identity.
pub const MQTT_TRANSPORT_PID: &str = "org.eclipse.kura.core.data.transport.mqtt.MqttDataTransport";

/// The MqttDataTransport properties Fleetgate generates, in the order it writes them. They are
/// reserved: an additional configuration cannot override them.
pub const RESERVED_TRANSPORT_PROPERTIES: [&str; 5] = [
    "broker-url",
    "topic.context.account-name",
    "client-id",
    "username",
    "password",
];

/// The properties of the generated VPN client configuration, in the order written.
pub const VPN_PROPERTIES: [&str; 2] = ["username", "password"];

/// The identity a provisioned device receives. `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The operational endpoint URL, e.g. `mqtts://broker.example:8883`.
    pub broker_url: String,
    /// The target account name.
    pub account_name: String,
    /// The device's client ID.
    pub client_id: String,
    /// The device's username, `CID@ACCOUNT`.
    pub username: String,
    /// The generated password, in clear (it only ever leaves in the reply).
    pub password: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("broker_url", &self.broker_url)
            .field("account_name", &self.account_name)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &MASK)
            .finish()
    }
}

/// The generated configuration: the MqttDataTransport configuration with exactly the five
/// reserved properties (broker-url, topic.context.account-name, client-id, username as
/// `String`; password as `Password`), then, when `vpn_pid` is given, a configuration with that
/// PID carrying `username` (`String`) and `password` (`Password`). All scalar, not encrypted.
///
/// Merge the request's additional configuration into it with [`Document::merge`].
pub fn generated(identity: &Identity, vpn_pid: Option<&str>) -> Document {
    let string = |name: &str, value: &str| Property::scalar(name, PropertyType::String, value);
    let password = || Property::scalar("password", PropertyType::Password, &identity.password);
    let mut configurations = vec![Configuration::new(
        MQTT_TRANSPORT_PID,
        vec![
            string("broker-url", &identity.broker_url),
            string("topic.context.account-name", &identity.account_name),
            string("client-id", &identity.client_id),
            string("username", &identity.username),
            password(),
        ],
    )];
    if let Some(pid) = vpn_pid {
        configurations.push(Configuration::new(
            pid,
            vec![string("username", &identity.username), password()],
        ));
    }
    Document { configurations }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn identity() -> Identity {
        Identity {
            broker_url: "mqtts://ops.example:8883".into(),
            account_name: "acme".into(),
            client_id: "dev-0001".into(),
            username: "dev-0001@acme".into(),
            password: "Xy7!generated-Passw0rd".into(),
        }
    }

    pub(crate) const VPN: &str = "org.eclipse.kura.net.vpn.client.VpnClient";

    #[test]
    fn transport_configuration_has_the_five_properties_in_order() {
        let d = generated(&identity(), None);
        assert_eq!(d.configurations.len(), 1);
        let c = &d.configurations[0];
        assert_eq!(c.id, MQTT_TRANSPORT_PID);
        let names: Vec<&str> = c.properties.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, RESERVED_TRANSPORT_PROPERTIES);
        let types: Vec<PropertyType> = c.properties.iter().map(|p| p.ptype).collect();
        assert_eq!(
            types,
            [
                PropertyType::String,
                PropertyType::String,
                PropertyType::String,
                PropertyType::String,
                PropertyType::Password
            ]
        );
        assert!(c.properties.iter().all(|p| !p.array && !p.encrypted));
        assert_eq!(
            c.property("broker-url").and_then(Property::value),
            Some("mqtts://ops.example:8883")
        );
        assert_eq!(
            c.property("topic.context.account-name")
                .and_then(Property::value),
            Some("acme")
        );
        assert_eq!(
            c.property("client-id").and_then(Property::value),
            Some("dev-0001")
        );
        assert_eq!(
            c.property("username").and_then(Property::value),
            Some("dev-0001@acme")
        );
        assert_eq!(
            c.property("password").and_then(Property::value),
            Some("Xy7!generated-Passw0rd")
        );
        assert_eq!(d.validate(), Ok(()));
    }

    #[test]
    fn vpn_configuration_follows_the_transport() {
        let d = generated(&identity(), Some(VPN));
        assert_eq!(d.configurations.len(), 2);
        let vpn = &d.configurations[1];
        assert_eq!(vpn.id, VPN);
        assert_eq!(vpn.properties.len(), 2);
        assert_eq!(vpn.properties[0].name, "username");
        assert_eq!(vpn.properties[0].ptype, PropertyType::String);
        assert_eq!(vpn.properties[0].value(), Some("dev-0001@acme"));
        assert_eq!(vpn.properties[1].name, "password");
        assert_eq!(vpn.properties[1].ptype, PropertyType::Password);
        assert_eq!(vpn.properties[1].value(), Some("Xy7!generated-Passw0rd"));
        assert_eq!(d.validate(), Ok(()));
    }

    #[test]
    fn generated_xml_matches_the_protocol_example_and_masks() {
        let xml = generated(&identity(), None).to_xml();
        assert!(xml.starts_with(concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<configurations xmlns:ns0="http://www.osgi.org/xmlns/metatype/v1.2.0">"#,
            r#"<configuration><id>org.eclipse.kura.core.data.transport.mqtt.MqttDataTransport</id><properties>"#,
            r#"<property name="broker-url" array="false" encrypted="false" type="String"><value>mqtts://ops.example:8883</value></property>"#,
        )));
        assert!(xml.contains(
            r#"<property name="password" array="false" encrypted="false" type="Password"><value>Xy7!generated-Passw0rd</value></property>"#
        ));
        let masked = generated(&identity(), Some(VPN)).to_xml_masked();
        assert!(!masked.contains("generated-Passw0rd"));
        assert_eq!(masked.matches("<value>********</value>").count(), 2);
    }

    #[test]
    fn identity_debug_hides_the_password() {
        let s = format!("{:?}", identity());
        assert!(!s.contains("generated-Passw0rd"), "{s}");
        assert!(s.contains("dev-0001@acme"));
    }
}
