//! Parsing of the admin API's camelCase JSON bodies into storage's typed inputs. Bodies are read
//! as raw JSON values so that a wrong JSON type is a 422 naming the field (not a 400); storage's
//! `validate()` then applies the field rules. Both kinds of error are reported together, in the
//! order of the fields, and a field with a wrong type gets no second error from the rules.

use chrono::{DateTime, Utc};
use fleetgate_storage::validate::{
    ACCOUNT_COUPLING, AccountInput, AccountSpec, AccountUserInput, AccountUserSpec, DeviceInput,
    DeviceSpec, EndpointInput, EndpointSpec, RequestInput, RequestSpec, UserPatchInput,
    UserPatchSpec,
};
use fleetgate_storage::{Coupling, FieldError, Timestamp};
use serde_json::{Map, Value};

/// Reads fields out of a JSON object, collecting type errors instead of stopping at the first.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    /// Every field asked for, in order: the order errors are reported in.
    order: Vec<&'static str>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    fn of(body: &'a Value) -> Result<Self, Vec<FieldError>> {
        let obj = body
            .as_object()
            .ok_or_else(|| vec![FieldError::new("", "the body must be a JSON object")])?;
        Ok(Fields {
            obj,
            order: Vec::new(),
            errors: Vec::new(),
        })
    }

    /// The non-null value of `name`.
    fn value(&mut self, name: &'static str) -> Option<&'a Value> {
        self.order.push(name);
        self.obj.get(name).filter(|v| !v.is_null())
    }

    fn wrong(&mut self, name: &str, message: &str) {
        self.errors.push(FieldError::new(name, message));
    }

    fn string(&mut self, name: &'static str) -> Option<String> {
        match self.value(name)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.wrong(name, "must be a string");
                None
            }
        }
    }

    fn boolean(&mut self, name: &'static str) -> Option<bool> {
        match self.value(name)? {
            Value::Bool(b) => Some(*b),
            _ => {
                self.wrong(name, "must be true or false");
                None
            }
        }
    }

    fn integer(&mut self, name: &'static str) -> Option<i64> {
        let n = self.value(name)?.as_i64();
        if n.is_none() {
            self.wrong(name, "must be an integer");
        }
        n
    }

    fn timestamp(&mut self, name: &'static str) -> Option<Timestamp> {
        let s = self.string(name)?;
        match DateTime::parse_from_rfc3339(&s) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                self.wrong(name, "must be an RFC 3339 timestamp");
                None
            }
        }
    }

    /// A list of strings.
    fn strings(&mut self, name: &'static str) -> Option<Vec<String>> {
        let items = match self.value(name)? {
            Value::Array(items) => items,
            _ => {
                self.wrong(name, "must be an array of strings");
                return None;
            }
        };
        let strings: Option<Vec<String>> = items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect();
        if strings.is_none() {
            self.wrong(name, "must be an array of strings");
        }
        strings
    }

    /// A coupling spelled exactly; `unknown` is the message for any other string.
    fn coupling(&mut self, name: &'static str, unknown: &str) -> Option<Coupling> {
        let s = self.string(name)?;
        let c = Coupling::parse(&s);
        if c.is_none() {
            self.wrong(name, unknown);
        }
        c
    }

    /// Merges the rules' verdict with the type errors: a field that had the wrong type keeps
    /// only that error (the rules saw it as absent).
    fn finish<T>(self, validated: Result<T, Vec<FieldError>>) -> Result<T, Vec<FieldError>> {
        let mut errors = self.errors;
        match validated {
            Ok(v) if errors.is_empty() => return Ok(v),
            Ok(_) => {}
            Err(rules) => {
                let typed: Vec<String> = errors.iter().map(|e| e.field.clone()).collect();
                errors.extend(rules.into_iter().filter(|e| !typed.contains(&e.field)));
            }
        }
        let order = self.order;
        errors.sort_by_key(|e| order.iter().position(|f| *f == e.field));
        Err(errors)
    }
}

/// Parses and validates a provision request body (create, update, or one bulk row) against the
/// account's minimum password length; `now` is the default window start.
pub fn request_spec(
    body: &Value,
    account_min_password_length: u16,
    now: Timestamp,
) -> Result<RequestSpec, Vec<FieldError>> {
    let mut f = Fields::of(body)?;
    let input = RequestInput {
        client_id: f.string("clientId"),
        provision_username: f.string("provisionUsername"),
        provision_password: f.string("provisionPassword"),
        confirm_provision_password: f.string("confirmProvisionPassword"),
        broker_url: f.string("brokerUrl"),
        activates_on: f.timestamp("activatesOn"),
        expires_on: f.timestamp("expiresOn"),
        generate_activation_key: f.boolean("generateActivationKey"),
        reserve_user: f.boolean("reserveUser"),
        connection_coupling: f.coupling("connectionCoupling", "must be INHERITED, LOOSE or STRICT"),
        vpn_access: f.boolean("vpnAccess"),
        password_length: f.integer("passwordLength"),
        additional_configuration: f.string("additionalConfiguration"),
    };
    f.finish(input.validate(account_min_password_length, now))
}

/// Parses and validates a `POST /accounts` body.
pub fn account_spec(body: &Value) -> Result<AccountSpec, Vec<FieldError>> {
    let mut f = Fields::of(body)?;
    let input = AccountInput {
        name: f.string("name"),
        min_password_length: f.integer("minPasswordLength"),
        default_coupling: f.coupling("defaultCoupling", ACCOUNT_COUPLING),
    };
    f.finish(input.validate())
}

/// Parses and validates a `POST /endpoints` body.
pub fn endpoint_spec(body: &Value) -> Result<EndpointSpec, Vec<FieldError>> {
    let mut f = Fields::of(body)?;
    let input = EndpointInput {
        name: f.string("name"),
        url: f.string("url"),
        kind: f.string("kind"),
    };
    f.finish(input.validate())
}

/// Parses and validates a `POST .../users` body.
pub fn account_user_spec(body: &Value) -> Result<AccountUserSpec, Vec<FieldError>> {
    let mut f = Fields::of(body)?;
    let input = AccountUserInput {
        name: f.string("name"),
        password: f.string("password"),
        permissions: f.strings("permissions"),
    };
    f.finish(input.validate())
}

/// Parses and validates a `PATCH .../users/{username}` body.
pub fn user_patch_spec(body: &Value) -> Result<UserPatchSpec, Vec<FieldError>> {
    let mut f = Fields::of(body)?;
    let input = UserPatchInput {
        permissions: f.strings("permissions"),
        password: f.string("password"),
        enabled: f.boolean("enabled"),
    };
    f.finish(input.validate())
}

/// Parses and validates a `POST .../devices` body.
pub fn device_spec(body: &Value) -> Result<DeviceSpec, Vec<FieldError>> {
    let mut f = Fields::of(body)?;
    let input = DeviceInput {
        client_id: f.string("clientId"),
        display_name: f.string("displayName"),
    };
    f.finish(input.validate())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetgate_storage::validate::check_broker_url;
    use serde_json::json;

    fn now() -> Timestamp {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn good() -> Value {
        json!({
            "clientId": "dev-0001",
            "provisionUsername": "fleet_1",
            "provisionPassword": "s3cret-pass",
            "confirmProvisionPassword": "s3cret-pass",
            "brokerUrl": "mqtts://broker.acme.example:8883"
        })
    }

    fn with(field: &str, value: Value) -> Value {
        let mut v = good();
        v[field] = value;
        v
    }

    fn errors(body: &Value) -> Vec<String> {
        match request_spec(body, 20, now()) {
            Ok(_) => vec![],
            Err(e) => e.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn good_body_gets_defaults() {
        let s = request_spec(&good(), 20, now()).unwrap();
        assert_eq!(s.activates_on, now());
        assert_eq!(s.expires_on, None);
        assert!(!s.generate_activation_key);
        assert!(s.reserve_user);
        assert_eq!(s.connection_coupling, Coupling::Inherited);
        assert!(!s.vpn_access);
        assert_eq!(s.password_length, None);
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn client_id_rule() {
        for ok in ["a", "dev.1_x:y@z-Q", &"a".repeat(255)] {
            assert!(errors(&with("clientId", json!(ok))).is_empty(), "{ok}");
        }
        for bad in ["", "a/b", "a+b", "a#", "a b", "é", &"a".repeat(256)] {
            assert_eq!(errors(&with("clientId", json!(bad))), ["clientId"], "{bad}");
        }
        assert_eq!(errors(&with("clientId", json!(5))), ["clientId"]);
        let mut v = good();
        v.as_object_mut().unwrap().remove("clientId");
        assert_eq!(errors(&v), ["clientId"]);
    }

    #[test]
    fn username_rule() {
        assert!(errors(&with("provisionUsername", json!("ab_-9"))).is_empty());
        for bad in ["ab", "a.b.c", "a@bc", ""] {
            assert_eq!(
                errors(&with("provisionUsername", json!(bad))),
                ["provisionUsername"]
            );
        }
    }

    #[test]
    fn password_rules() {
        let mut v = good();
        v["provisionPassword"] = json!("short");
        v["confirmProvisionPassword"] = json!("short");
        assert_eq!(errors(&v), ["provisionPassword"]);
        assert_eq!(
            errors(&with("confirmProvisionPassword", json!("other-pass"))),
            ["confirmProvisionPassword"]
        );
        let mut v = good();
        v.as_object_mut()
            .unwrap()
            .remove("confirmProvisionPassword");
        assert_eq!(errors(&v), ["confirmProvisionPassword"]);
        let mut v = good();
        v["provisionPassword"] = json!("12345678");
        v["confirmProvisionPassword"] = json!("12345678");
        assert!(errors(&v).is_empty());
    }

    #[test]
    fn broker_url_rule() {
        for ok in [
            "mqtt://h",
            "mqtts://h.example:8883",
            "tcp://10.0.0.1:1883",
            "ssl://h:1",
            "ws://h/mqtt",
            "wss://h:443/mqtt",
            "mqtt://[::1]:1883",
        ] {
            assert!(check_broker_url(ok).is_ok(), "{ok}");
        }
        assert_eq!(check_broker_url("mqtt://h"), Ok(1883));
        assert_eq!(check_broker_url("wss://h"), Ok(443));
        for bad in [
            "http://h:80",
            "h:1883",
            "mqtt://:1883",
            "mqtt://h:0",
            "mqtt://h:70000",
            "mqtt://h:x",
            "mqtt://u:p@h:1883",
            "mqtt://h h:1",
            "",
        ] {
            assert!(check_broker_url(bad).is_err(), "{bad}");
            assert_eq!(errors(&with("brokerUrl", json!(bad))), ["brokerUrl"]);
        }
    }

    #[test]
    fn window_rule() {
        assert!(errors(&with("expiresOn", json!("2026-01-02T00:00:00Z"))).is_empty());
        assert_eq!(
            errors(&with("expiresOn", json!("2025-12-31T00:00:00Z"))),
            ["expiresOn"]
        );
        assert_eq!(
            errors(&with("expiresOn", json!("2026-01-01T00:00:00Z"))),
            ["expiresOn"]
        );
        assert_eq!(
            errors(&with("activatesOn", json!("yesterday"))),
            ["activatesOn"]
        );
        let mut v = good();
        v["activatesOn"] = json!("2026-02-01T00:00:00+01:00");
        v["expiresOn"] = json!("2026-02-01T00:30:00Z");
        assert!(errors(&v).is_empty());
    }

    #[test]
    fn booleans_and_enums() {
        for f in ["generateActivationKey", "reserveUser", "vpnAccess"] {
            assert!(errors(&with(f, json!(true))).is_empty());
            assert_eq!(errors(&with(f, json!("yes"))), [f]);
        }
        for ok in ["INHERITED", "LOOSE", "STRICT"] {
            assert!(errors(&with("connectionCoupling", json!(ok))).is_empty());
        }
        assert_eq!(
            errors(&with("connectionCoupling", json!("loose"))),
            ["connectionCoupling"]
        );
    }

    #[test]
    fn password_length_rule() {
        assert!(errors(&with("passwordLength", json!(20))).is_empty());
        assert!(errors(&with("passwordLength", json!(128))).is_empty());
        assert_eq!(
            errors(&with("passwordLength", json!(19))),
            ["passwordLength"]
        );
        assert_eq!(
            errors(&with("passwordLength", json!(129))),
            ["passwordLength"]
        );
        assert_eq!(
            errors(&with("passwordLength", json!(20.5))),
            ["passwordLength"]
        );
        let e = request_spec(&with("passwordLength", json!(22)), 24, now()).unwrap_err();
        assert_eq!(e[0].field, "passwordLength");
    }

    #[test]
    fn additional_configuration_rule() {
        let xml = r#"<configurations><configuration><id>a.b</id><properties><property name="x" array="false" encrypted="false" type="Integer"><value>5</value></property></properties></configuration></configurations>"#;
        assert!(errors(&with("additionalConfiguration", json!(xml))).is_empty());
        let bad_type = xml.replace("Integer", "Int");
        assert_eq!(
            errors(&with("additionalConfiguration", json!(bad_type))),
            ["additionalConfiguration"]
        );
        let e =
            request_spec(&with("additionalConfiguration", json!("<a>")), 20, now()).unwrap_err();
        assert!(e[0].message.contains("line"), "{}", e[0].message);
        let huge = format!(
            "<configurations>{}</configurations>",
            " ".repeat(300 * 1024)
        );
        assert_eq!(
            errors(&with("additionalConfiguration", json!(huge))),
            ["additionalConfiguration"]
        );
    }

    #[test]
    fn reserved_property_is_a_warning() {
        let xml = r#"<configurations><configuration><id>org.eclipse.kura.core.data.transport.mqtt.MqttDataTransport</id><properties><property name="password" array="false" encrypted="false" type="Password"><value>mine</value></property></properties></configuration></configurations>"#;
        let s = request_spec(&with("additionalConfiguration", json!(xml)), 20, now()).unwrap();
        assert_eq!(s.warnings.len(), 1);
        assert!(!s.warnings[0].contains("mine"));
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let e = request_spec(&json!({}), 20, now()).unwrap_err();
        let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "clientId",
            "provisionUsername",
            "provisionPassword",
            "confirmProvisionPassword",
            "brokerUrl",
        ] {
            assert!(fields.contains(&f), "{f}");
        }
        assert!(request_spec(&json!([1]), 20, now()).is_err());
    }

    #[test]
    fn account_rules() {
        let a = account_spec(&json!({"name": "acme"})).unwrap();
        assert_eq!(a.min_password_length, 20);
        assert_eq!(a.default_coupling, Coupling::Loose);
        let a = account_spec(
            &json!({"name": "a-1", "minPasswordLength": 24, "defaultCoupling": "STRICT"}),
        )
        .unwrap();
        assert_eq!(a.min_password_length, 24);
        for bad in ["", "Acme", "a_b", "a@b", &"a".repeat(65)] {
            assert!(account_spec(&json!({ "name": bad })).is_err(), "{bad}");
        }
        for bad in [json!(0), json!(129), json!("x")] {
            assert!(account_spec(&json!({"name": "a", "minPasswordLength": bad})).is_err());
        }
        assert!(account_spec(&json!({"name": "a", "defaultCoupling": "INHERITED"})).is_err());
    }

    #[test]
    fn user_and_device_bodies() {
        let spec = account_user_spec(&json!({"name": "dash", "password": "twelve chars",
            "permissions": ["broker:connect"]}))
        .unwrap();
        assert_eq!(spec.permissions, ["broker:connect"]);
        let fields = |r: Result<(), Vec<FieldError>>| -> Vec<String> {
            r.err()
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(
            fields(account_user_spec(&json!({"name": 1, "permissions": "data:read"})).map(drop)),
            ["name", "permissions"]
        );
        assert_eq!(
            fields(
                account_user_spec(&json!({"name": "a", "permissions": ["data:read", 2]})).map(drop)
            ),
            ["permissions"]
        );
        assert_eq!(
            fields(user_patch_spec(&json!({"enabled": "no", "password": "short"})).map(drop)),
            ["password", "enabled"]
        );
        let p = user_patch_spec(&json!({"enabled": false})).unwrap();
        assert_eq!(p.enabled, Some(false));
        assert_eq!(
            fields(device_spec(&json!({"displayName": "x"})).map(drop)),
            ["clientId"]
        );
        assert_eq!(
            device_spec(&json!({"clientId": "dev-1"}))
                .unwrap()
                .client_id,
            "dev-1"
        );
    }
}
