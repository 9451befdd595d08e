//! Validation of every field rule of the admin API (API.md), in one place. Input arrives as a
//! parsed JSON value so that a wrong type is a field error (422), not a parse error (400).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::records::{Coupling, Timestamp};

/// One field-level error; `index` names the row of a bulk request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Row of a bulk request, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// camelCase field name.
    pub field: String,
    /// What is wrong, never echoing a secret.
    pub message: String,
}

impl FieldError {
    /// An error on `field`.
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            index: None,
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The same error, attributed to row `index` of a bulk request.
    pub fn at(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(i) = self.index {
            write!(f, "[{i}] ")?;
        }
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Largest `passwordLength` a request may ask for.
pub const MAX_PASSWORD_LENGTH: u16 = 128;
/// Largest `additionalConfiguration`, in bytes.
pub const MAX_ADDITIONAL_CONFIGURATION: usize = 256 * 1024;
/// Longest provision username or password we accept (bounds hashing work).
pub const MAX_CREDENTIAL: usize = 256;

// The client-ID rule is the ACL's (a client ID becomes a topic level); the API validates
// with the same function the CONNECT hooks use.
pub use fleetgate_acl::{MAX_CLIENT_ID, valid_client_id};

/// Whether `s` is a valid account name: 1 to 64 of `[a-z0-9-]`.
pub fn valid_account_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `s` is a valid provision username: 3 to 256 of `[A-Za-z0-9_-]`.
pub fn valid_provision_username(s: &str) -> bool {
    s.len() >= 3
        && s.len() <= MAX_CREDENTIAL
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks a broker URL: scheme `mqtt`, `mqtts`, `tcp`, `ssl`, `ws` or `wss`, a host, and a port
/// (explicit or the scheme's default). Returns the effective port.
pub fn check_broker_url(url: &str) -> Result<u16, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("must look like scheme://host:port")?;
    let default_port = match scheme {
        "mqtt" | "tcp" => 1883,
        "mqtts" | "ssl" => 8883,
        "ws" => 80,
        "wss" => 443,
        _ => return Err("scheme must be one of mqtt, mqtts, tcp, ssl, ws, wss".into()),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("must not carry user information".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unterminated IPv6 address")?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("invalid IPv6 address".into());
        }
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':').ok_or("invalid port")?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("must name a host".into());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
    {
        return Err("host contains invalid characters".into());
    }
    match port {
        None => Ok(default_port),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err("port must be 1 to 65535".into()),
        },
    }
}

/// A validated provision request body (create or update).
#[derive(Clone, PartialEq)]
pub struct RequestSpec {
    /// Client ID.
    pub client_id: String,
    /// Provision username.
    pub provision_username: String,
    /// Provision password in clear: the caller hashes it and drops it.
    pub provision_password: String,
    /// Broker URL.
    pub broker_url: String,
    /// Window start.
    pub activates_on: Timestamp,
    /// Window end.
    pub expires_on: Option<Timestamp>,
    /// Generate an activation key.
    pub generate_activation_key: bool,
    /// Reserve the generated user.
    pub reserve_user: bool,
    /// Coupling.
    pub connection_coupling: Coupling,
    /// VPN access.
    pub vpn_access: bool,
    /// Requested password length.
    pub password_length: Option<u16>,
    /// Validated additional configuration.
    pub additional_configuration: Option<String>,
    /// Warnings (reserved properties).
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for RequestSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSpec")
            .field("client_id", &self.client_id)
            .field("provision_username", &self.provision_username)
            .field("provision_password", &"<redacted>")
            .field("broker_url", &self.broker_url)
            .finish_non_exhaustive()
    }
}

/// Reads fields out of a JSON object, collecting errors instead of stopping at the first.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    fn value(&self, name: &str) -> Option<&'a Value> {
        self.obj.get(name).filter(|v| !v.is_null())
    }

    fn err(&mut self, name: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(name, message));
    }

    fn string(&mut self, name: &str, required: bool) -> Option<&'a str> {
        match self.value(name) {
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => {
                self.err(name, "must be a string");
                None
            }
            None => {
                if required {
                    self.err(name, "is required");
                }
                None
            }
        }
    }

    fn boolean(&mut self, name: &str, default: bool) -> bool {
        match self.value(name) {
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.err(name, "must be true or false");
                default
            }
            None => default,
        }
    }

    fn integer(&mut self, name: &str) -> Option<i64> {
        match self.value(name) {
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => Some(i),
                None => {
                    self.err(name, "must be an integer");
                    None
                }
            },
            Some(_) => {
                self.err(name, "must be an integer");
                None
            }
            None => None,
        }
    }

    fn timestamp(&mut self, name: &str) -> Option<Timestamp> {
        let s = self.string(name, false)?;
        match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                self.err(name, "must be an RFC 3339 timestamp");
                None
            }
        }
    }

    fn coupling(&mut self, name: &str, default: Coupling, allow_inherited: bool) -> Coupling {
        let Some(s) = self.string(name, false) else {
            return default;
        };
        match Coupling::parse(s) {
            Some(Coupling::Inherited) if !allow_inherited => {
                self.err(name, "must be LOOSE or STRICT");
                default
            }
            Some(c) => c,
            None if allow_inherited => {
                self.err(name, "must be INHERITED, LOOSE or STRICT");
                default
            }
            None => {
                self.err(name, "must be LOOSE or STRICT");
                default
            }
        }
    }
}

fn object(body: &Value) -> Result<&Map<String, Value>, Vec<FieldError>> {
    body.as_object()
        .ok_or_else(|| vec![FieldError::new("", "the body must be a JSON object")])
}

impl RequestSpec {
    /// Validates a create/update body against the account's minimum password length.
    pub fn from_json(
        body: &Value,
        account_min_password_length: u16,
        now: Timestamp,
    ) -> Result<RequestSpec, Vec<FieldError>> {
        let mut f = Fields {
            obj: object(body)?,
            errors: Vec::new(),
        };
        let client_id = f.string("clientId", true);
        if let Some(c) = client_id
            && !valid_client_id(c)
        {
            f.err(
                "clientId",
                "must be 1 to 255 characters of A-Z a-z 0-9 . _ : @ -",
            );
        }
        let username = f.string("provisionUsername", true);
        if let Some(u) = username
            && !valid_provision_username(u)
        {
            f.err(
                "provisionUsername",
                "must be 3 to 256 characters of A-Z a-z 0-9 _ -",
            );
        }
        let password = f.string("provisionPassword", true);
        let confirm = f.string("confirmProvisionPassword", true);
        if let Some(p) = password {
            if p.chars().count() < 8 {
                f.err("provisionPassword", "must be at least 8 characters");
            } else if p.len() > MAX_CREDENTIAL {
                f.err("provisionPassword", "must be at most 256 bytes");
            }
        }
        if let (Some(p), Some(c)) = (password, confirm)
            && p != c
        {
            f.err("confirmProvisionPassword", "must equal provisionPassword");
        }
        let broker_url = f.string("brokerUrl", true);
        if let Some(u) = broker_url
            && let Err(m) = check_broker_url(u)
        {
            f.err("brokerUrl", m);
        }
        let activates_on = f.timestamp("activatesOn").unwrap_or(now);
        let expires_on = f.timestamp("expiresOn");
        if let Some(e) = expires_on
            && e <= activates_on
        {
            f.err("expiresOn", "must be after activatesOn");
        }
        let generate_activation_key = f.boolean("generateActivationKey", false);
        let reserve_user = f.boolean("reserveUser", true);
        let connection_coupling = f.coupling("connectionCoupling", Coupling::Inherited, true);
        let vpn_access = f.boolean("vpnAccess", false);
        let minimum = 20.max(account_min_password_length);
        let password_length = match f.integer("passwordLength") {
            Some(n) if n < i64::from(minimum) || n > i64::from(MAX_PASSWORD_LENGTH) => {
                f.err(
                    "passwordLength",
                    format!("must be between {minimum} and {MAX_PASSWORD_LENGTH}"),
                );
                None
            }
            Some(n) => u16::try_from(n).ok(),
            None => None,
        };
        let mut warnings = Vec::new();
        let additional_configuration = f.string("additionalConfiguration", false);
        if let Some(xml) = additional_configuration {
            if xml.len() > MAX_ADDITIONAL_CONFIGURATION {
                f.err("additionalConfiguration", "must be at most 256 KiB");
            } else {
                match fleetgate_devconfig::Document::parse(xml) {
                    Ok(doc) => warnings = fleetgate_devconfig::reserved_warnings(&doc),
                    Err(e) => f.err("additionalConfiguration", e.to_string()),
                }
            }
        }
        if !f.errors.is_empty() {
            return Err(f.errors);
        }
        Ok(RequestSpec {
            client_id: client_id.unwrap_or_default().to_string(),
            provision_username: username.unwrap_or_default().to_string(),
            provision_password: password.unwrap_or_default().to_string(),
            broker_url: broker_url.unwrap_or_default().to_string(),
            activates_on,
            expires_on,
            generate_activation_key,
            reserve_user,
            connection_coupling,
            vpn_access,
            password_length,
            additional_configuration: additional_configuration
                .filter(|x| !x.trim().is_empty())
                .map(str::to_string),
            warnings,
        })
    }
}

/// A validated account body.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountSpec {
    /// Name.
    pub name: String,
    /// Minimum generated password length.
    pub min_password_length: u16,
    /// Default coupling (LOOSE or STRICT).
    pub default_coupling: Coupling,
}

impl AccountSpec {
    /// Validates `POST /accounts`.
    pub fn from_json(body: &Value) -> Result<AccountSpec, Vec<FieldError>> {
        let mut f = Fields {
            obj: object(body)?,
            errors: Vec::new(),
        };
        let name = f.string("name", true);
        if let Some(n) = name
            && !valid_account_name(n)
        {
            f.err("name", "must be 1 to 64 characters of a-z 0-9 -");
        }
        let min = match f.integer("minPasswordLength") {
            Some(n) if !(1..=i64::from(MAX_PASSWORD_LENGTH)).contains(&n) => {
                f.err(
                    "minPasswordLength",
                    format!("must be between 1 and {MAX_PASSWORD_LENGTH}"),
                );
                20
            }
            Some(n) => u16::try_from(n).unwrap_or(20),
            None => 20,
        };
        let default_coupling = f.coupling("defaultCoupling", Coupling::Loose, false);
        if !f.errors.is_empty() {
            return Err(f.errors);
        }
        Ok(AccountSpec {
            name: name.unwrap_or_default().to_string(),
            min_password_length: min,
            default_coupling,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        match RequestSpec::from_json(body, 20, now()) {
            Ok(_) => vec![],
            Err(e) => e.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn good_body_gets_defaults() {
        let s = RequestSpec::from_json(&good(), 20, now()).unwrap();
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
        let e = RequestSpec::from_json(&with("passwordLength", json!(22)), 24, now()).unwrap_err();
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
        let e = RequestSpec::from_json(&with("additionalConfiguration", json!("<a>")), 20, now())
            .unwrap_err();
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
        let s = RequestSpec::from_json(&with("additionalConfiguration", json!(xml)), 20, now())
            .unwrap();
        assert_eq!(s.warnings.len(), 1);
        assert!(!s.warnings[0].contains("mine"));
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let e = RequestSpec::from_json(&json!({}), 20, now()).unwrap_err();
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
        assert!(RequestSpec::from_json(&json!([1]), 20, now()).is_err());
    }

    #[test]
    fn account_rules() {
        let a = AccountSpec::from_json(&json!({"name": "acme"})).unwrap();
        assert_eq!(a.min_password_length, 20);
        assert_eq!(a.default_coupling, Coupling::Loose);
        let a = AccountSpec::from_json(
            &json!({"name": "a-1", "minPasswordLength": 24, "defaultCoupling": "STRICT"}),
        )
        .unwrap();
        assert_eq!(a.min_password_length, 24);
        for bad in ["", "Acme", "a_b", "a@b", &"a".repeat(65)] {
            assert!(
                AccountSpec::from_json(&json!({ "name": bad })).is_err(),
                "{bad}"
            );
        }
        for bad in [json!(0), json!(129), json!("x")] {
            assert!(
                AccountSpec::from_json(&json!({"name": "a", "minPasswordLength": bad})).is_err()
            );
        }
        assert!(
            AccountSpec::from_json(&json!({"name": "a", "defaultCoupling": "INHERITED"})).is_err()
        );
    }
}
