//! The field rules of the admin API (API.md), in one place, on typed values. The API parses
//! its JSON into [`RequestInput`] / [`AccountInput`] (a wrong JSON type is its 422);
//! `validate()` applies every rule at once and returns the field errors, named by the API's
//! camelCase field names. The limits are public constants so that the OpenAPI document is
//! generated from (or checked against) the same numbers.

use serde::Serialize;

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
/// Smallest `passwordLength` a request may ask for (an account may raise it).
pub const MIN_PASSWORD_LENGTH: u16 = 20;
/// Largest `additionalConfiguration`, in bytes.
pub const MAX_ADDITIONAL_CONFIGURATION: usize = 256 * 1024;
/// Shortest provision username.
pub const MIN_PROVISION_USERNAME: usize = 3;
/// Longest provision username or password we accept (bounds hashing work).
pub const MAX_CREDENTIAL: usize = 256;
/// Shortest provision password, in characters.
pub const MIN_PROVISION_PASSWORD: usize = 8;
/// Longest account name.
pub const MAX_ACCOUNT_NAME: usize = 64;

// The client-ID rule is the ACL's (a client ID becomes a topic level); the API validates
// with the same function the CONNECT hooks use.
pub use fleetgate_acl::{MAX_CLIENT_ID, valid_client_id};

/// Whether `s` is a valid account name: 1 to 64 of `[a-z0-9-]`.
pub fn valid_account_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ACCOUNT_NAME
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `s` is a valid provision username: 3 to 256 of `[A-Za-z0-9_-]`.
pub fn valid_provision_username(s: &str) -> bool {
    s.len() >= MIN_PROVISION_USERNAME
        && s.len() <= MAX_CREDENTIAL
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Why a broker URL is refused (the message of the `brokerUrl` field error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BrokerUrlError {
    /// No `scheme://`.
    #[error("must look like scheme://host:port")]
    NoScheme,
    /// A scheme MQTT clients do not speak.
    #[error("scheme must be one of mqtt, mqtts, tcp, ssl, ws, wss")]
    Scheme,
    /// `user:password@` in the authority.
    #[error("must not carry user information")]
    UserInfo,
    /// `[` without `]`.
    #[error("unterminated IPv6 address")]
    UnterminatedIpv6,
    /// Brackets around something that is not an IPv6 address.
    #[error("invalid IPv6 address")]
    Ipv6,
    /// No host.
    #[error("must name a host")]
    NoHost,
    /// A host with characters outside `[A-Za-z0-9.-_:]`.
    #[error("host contains invalid characters")]
    HostChars,
    /// A port that is not 1 to 65535.
    #[error("port must be 1 to 65535")]
    Port,
}

/// Checks a broker URL: scheme `mqtt`, `mqtts`, `tcp`, `ssl`, `ws` or `wss`, a host, and a port
/// (explicit or the scheme's default). Returns the effective port.
pub fn check_broker_url(url: &str) -> Result<u16, BrokerUrlError> {
    let (scheme, rest) = url.split_once("://").ok_or(BrokerUrlError::NoScheme)?;
    let default_port = match scheme {
        "mqtt" | "tcp" => 1883,
        "mqtts" | "ssl" => 8883,
        "ws" => 80,
        "wss" => 443,
        _ => return Err(BrokerUrlError::Scheme),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(BrokerUrlError::UserInfo);
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or(BrokerUrlError::UnterminatedIpv6)?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(BrokerUrlError::Ipv6);
        }
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':').ok_or(BrokerUrlError::Port)?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(BrokerUrlError::NoHost);
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
    {
        return Err(BrokerUrlError::HostChars);
    }
    match port {
        None => Ok(default_port),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(BrokerUrlError::Port),
        },
    }
}

/// A provision request body (create or update) as the caller gave it: `None` is an absent
/// field. [`RequestInput::validate`] turns it into a [`RequestSpec`].
#[derive(Clone, Default, PartialEq)]
pub struct RequestInput {
    /// Client ID.
    pub client_id: Option<String>,
    /// Provision username.
    pub provision_username: Option<String>,
    /// Provision password in clear.
    pub provision_password: Option<String>,
    /// The same password again.
    pub confirm_provision_password: Option<String>,
    /// Broker URL.
    pub broker_url: Option<String>,
    /// Window start (default: now).
    pub activates_on: Option<Timestamp>,
    /// Window end (default: open).
    pub expires_on: Option<Timestamp>,
    /// Generate an activation key (default false).
    pub generate_activation_key: Option<bool>,
    /// Reserve the generated user (default true).
    pub reserve_user: Option<bool>,
    /// Coupling (default INHERITED).
    pub connection_coupling: Option<Coupling>,
    /// VPN access (default false).
    pub vpn_access: Option<bool>,
    /// Requested password length.
    pub password_length: Option<i64>,
    /// Additional configuration XML.
    pub additional_configuration: Option<String>,
}

impl std::fmt::Debug for RequestInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestInput")
            .field("client_id", &self.client_id)
            .field("provision_username", &self.provision_username)
            .field("broker_url", &self.broker_url)
            .finish_non_exhaustive()
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

/// Field errors collected while validating, so that every broken rule is reported at once.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// `value`, or an "is required" error on `field`.
    fn required<'a>(&mut self, field: &str, value: Option<&'a str>) -> Option<&'a str> {
        if value.is_none() {
            self.add(field, "is required");
        }
        value
    }
}

impl RequestInput {
    /// Applies API.md's field rules (the account's minimum password length, `now` as the
    /// default window start) and returns the validated spec or every field error.
    pub fn validate(
        self,
        account_min_password_length: u16,
        now: Timestamp,
    ) -> Result<RequestSpec, Vec<FieldError>> {
        let mut e = Errors::default();
        let client_id = e.required("clientId", self.client_id.as_deref());
        if let Some(c) = client_id
            && !valid_client_id(c)
        {
            e.add(
                "clientId",
                "must be 1 to 255 characters of A-Z a-z 0-9 . _ : @ -",
            );
        }
        let username = e.required("provisionUsername", self.provision_username.as_deref());
        if let Some(u) = username
            && !valid_provision_username(u)
        {
            e.add(
                "provisionUsername",
                "must be 3 to 256 characters of A-Z a-z 0-9 _ -",
            );
        }
        let password = e.required("provisionPassword", self.provision_password.as_deref());
        let confirm = e.required(
            "confirmProvisionPassword",
            self.confirm_provision_password.as_deref(),
        );
        if let Some(p) = password {
            if p.chars().count() < MIN_PROVISION_PASSWORD {
                e.add("provisionPassword", "must be at least 8 characters");
            } else if p.len() > MAX_CREDENTIAL {
                e.add("provisionPassword", "must be at most 256 bytes");
            }
        }
        if let (Some(p), Some(c)) = (password, confirm)
            && p != c
        {
            e.add("confirmProvisionPassword", "must equal provisionPassword");
        }
        let broker_url = e.required("brokerUrl", self.broker_url.as_deref());
        if let Some(u) = broker_url
            && let Err(m) = check_broker_url(u)
        {
            e.add("brokerUrl", m.to_string());
        }
        let activates_on = self.activates_on.unwrap_or(now);
        if let Some(x) = self.expires_on
            && x <= activates_on
        {
            e.add("expiresOn", "must be after activatesOn");
        }
        let minimum = MIN_PASSWORD_LENGTH.max(account_min_password_length);
        let password_length = match self.password_length {
            Some(n) if n < i64::from(minimum) || n > i64::from(MAX_PASSWORD_LENGTH) => {
                e.add(
                    "passwordLength",
                    format!("must be between {minimum} and {MAX_PASSWORD_LENGTH}"),
                );
                None
            }
            Some(n) => u16::try_from(n).ok(),
            None => None,
        };
        let mut warnings = Vec::new();
        if let Some(xml) = &self.additional_configuration {
            if xml.len() > MAX_ADDITIONAL_CONFIGURATION {
                e.add("additionalConfiguration", "must be at most 256 KiB");
            } else {
                match fleetgate_devconfig::Document::parse(xml) {
                    Ok(doc) => warnings = fleetgate_devconfig::reserved_warnings(&doc),
                    Err(err) => e.add("additionalConfiguration", err.to_string()),
                }
            }
        }
        if !e.0.is_empty() {
            return Err(e.0);
        }
        Ok(RequestSpec {
            client_id: client_id.unwrap_or_default().to_string(),
            provision_username: username.unwrap_or_default().to_string(),
            provision_password: password.unwrap_or_default().to_string(),
            broker_url: broker_url.unwrap_or_default().to_string(),
            activates_on,
            expires_on: self.expires_on,
            generate_activation_key: self.generate_activation_key.unwrap_or(false),
            reserve_user: self.reserve_user.unwrap_or(true),
            connection_coupling: self.connection_coupling.unwrap_or(Coupling::Inherited),
            vpn_access: self.vpn_access.unwrap_or(false),
            password_length,
            additional_configuration: self
                .additional_configuration
                .filter(|x| !x.trim().is_empty()),
            warnings,
        })
    }
}

/// An account body (`POST /accounts`) as the caller gave it: `None` is an absent field.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccountInput {
    /// Name.
    pub name: Option<String>,
    /// Minimum generated password length (default 20).
    pub min_password_length: Option<i64>,
    /// Default coupling (default LOOSE; INHERITED is refused).
    pub default_coupling: Option<Coupling>,
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

impl AccountInput {
    /// An input naming only the account (every other field at its default).
    pub fn named(name: impl Into<String>) -> Self {
        AccountInput {
            name: Some(name.into()),
            ..AccountInput::default()
        }
    }

    /// Applies API.md's account rules and returns the validated spec or every field error.
    pub fn validate(self) -> Result<AccountSpec, Vec<FieldError>> {
        let mut e = Errors::default();
        let name = e.required("name", self.name.as_deref());
        if let Some(n) = name
            && !valid_account_name(n)
        {
            e.add("name", "must be 1 to 64 characters of a-z 0-9 -");
        }
        let min = match self.min_password_length {
            Some(n) if !(1..=i64::from(MAX_PASSWORD_LENGTH)).contains(&n) => {
                e.add(
                    "minPasswordLength",
                    format!("must be between 1 and {MAX_PASSWORD_LENGTH}"),
                );
                MIN_PASSWORD_LENGTH
            }
            Some(n) => u16::try_from(n).unwrap_or(MIN_PASSWORD_LENGTH),
            None => MIN_PASSWORD_LENGTH,
        };
        let default_coupling = match self.default_coupling {
            Some(Coupling::Inherited) => {
                e.add("defaultCoupling", ACCOUNT_COUPLING);
                Coupling::Loose
            }
            Some(c) => c,
            None => Coupling::Loose,
        };
        if !e.0.is_empty() {
            return Err(e.0);
        }
        Ok(AccountSpec {
            name: name.unwrap_or_default().to_string(),
            min_password_length: min,
            default_coupling,
        })
    }
}

/// The rule of an account's `defaultCoupling` (an account has no coupling to inherit from).
pub const ACCOUNT_COUPLING: &str = "must be LOOSE or STRICT";

/// Longest account-user name.
pub const MAX_USER_NAME: usize = 64;
/// Shortest chosen account-user password, in characters.
pub const MIN_USER_PASSWORD: usize = 12;
/// Longest device display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 255;

/// Whether `s` is a valid account-user name: 1 to 64 of `[A-Za-z0-9._-]`.
pub fn valid_user_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_USER_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Checks a chosen account-user password (at least 12 characters, at most 256 bytes).
fn check_user_password(e: &mut Errors, password: &str) {
    if password.chars().count() < MIN_USER_PASSWORD {
        e.add("password", "must be at least 12 characters");
    } else if password.len() > MAX_CREDENTIAL {
        e.add("password", "must be at most 256 bytes");
    }
}

/// Parses permission names: every one must be in PROTOCOL.md 6.1's table. Duplicates go; the
/// result is in the table's order.
fn check_permissions(e: &mut Errors, names: &[String]) -> Vec<String> {
    let mut known = Vec::new();
    for n in names {
        match fleetgate_acl::Permission::parse(n) {
            Some(p) => known.push(p),
            None => e.add(
                "permissions",
                format!(
                    "unknown permission {n:?}: must be among {}",
                    fleetgate_acl::Permission::ALL
                        .map(|p| p.as_str())
                        .join(", ")
                ),
            ),
        }
    }
    known.sort();
    known.dedup();
    known.into_iter().map(|p| p.as_str().to_string()).collect()
}

/// A `POST .../users` body as the caller gave it: `None` is an absent field.
#[derive(Clone, Default, PartialEq)]
pub struct AccountUserInput {
    /// `NAME`.
    pub name: Option<String>,
    /// A chosen password; absent: one is generated.
    pub password: Option<String>,
    /// Permissions (default none).
    pub permissions: Option<Vec<String>>,
}

impl std::fmt::Debug for AccountUserInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountUserInput")
            .field("name", &self.name)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

/// A validated `POST .../users` body.
#[derive(Clone, PartialEq)]
pub struct AccountUserSpec {
    /// `NAME`.
    pub name: String,
    /// The chosen password in clear (the caller hashes and drops it); `None`: generate one.
    pub password: Option<String>,
    /// Known permissions, deduplicated, in the table's order.
    pub permissions: Vec<String>,
}

impl std::fmt::Debug for AccountUserSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountUserSpec")
            .field("name", &self.name)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

impl AccountUserInput {
    /// Applies API.md's account-user rules.
    pub fn validate(self) -> Result<AccountUserSpec, Vec<FieldError>> {
        let mut e = Errors::default();
        let name = e.required("name", self.name.as_deref());
        if let Some(n) = name
            && !valid_user_name(n)
        {
            e.add("name", "must be 1 to 64 characters of A-Z a-z 0-9 . _ -");
        }
        if let Some(p) = &self.password {
            check_user_password(&mut e, p);
        }
        let permissions = check_permissions(&mut e, self.permissions.as_deref().unwrap_or(&[]));
        if !e.0.is_empty() {
            return Err(e.0);
        }
        Ok(AccountUserSpec {
            name: name.unwrap_or_default().to_string(),
            password: self.password,
            permissions,
        })
    }
}

/// A `PATCH .../users/{username}` body as the caller gave it.
#[derive(Clone, Default, PartialEq)]
pub struct UserPatchInput {
    /// New permissions (account users only).
    pub permissions: Option<Vec<String>>,
    /// New chosen password (account users only).
    pub password: Option<String>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

impl std::fmt::Debug for UserPatchInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPatchInput")
            .field("permissions", &self.permissions)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// A validated `PATCH .../users/{username}` body; `None` leaves a field as it is.
#[derive(Clone, Default, PartialEq)]
pub struct UserPatchSpec {
    /// New permissions, known and deduplicated.
    pub permissions: Option<Vec<String>>,
    /// New chosen password in clear (the caller hashes and drops it).
    pub password: Option<String>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

impl std::fmt::Debug for UserPatchSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPatchSpec")
            .field("permissions", &self.permissions)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl UserPatchInput {
    /// Applies the account-user rules to the fields given.
    pub fn validate(self) -> Result<UserPatchSpec, Vec<FieldError>> {
        let mut e = Errors::default();
        if let Some(p) = &self.password {
            check_user_password(&mut e, p);
        }
        let permissions = self
            .permissions
            .as_deref()
            .map(|names| check_permissions(&mut e, names));
        if !e.0.is_empty() {
            return Err(e.0);
        }
        Ok(UserPatchSpec {
            permissions,
            password: self.password,
            enabled: self.enabled,
        })
    }
}

/// A `POST .../devices` body as the caller gave it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceInput {
    /// Client ID.
    pub client_id: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
}

/// A validated `POST .../devices` body.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceSpec {
    /// Client ID.
    pub client_id: String,
    /// Display name.
    pub display_name: Option<String>,
}

impl DeviceInput {
    /// Applies API.md's device rules (the client-ID rule of provision requests).
    pub fn validate(self) -> Result<DeviceSpec, Vec<FieldError>> {
        let mut e = Errors::default();
        let client_id = e.required("clientId", self.client_id.as_deref());
        if let Some(c) = client_id
            && !valid_client_id(c)
        {
            e.add(
                "clientId",
                "must be 1 to 255 characters of A-Z a-z 0-9 . _ : @ -",
            );
        }
        if let Some(d) = &self.display_name
            && (d.trim().is_empty() || d.chars().count() > MAX_DISPLAY_NAME)
        {
            e.add(
                "displayName",
                "must be 1 to 255 characters, not only blanks",
            );
        }
        if !e.0.is_empty() {
            return Err(e.0);
        }
        Ok(DeviceSpec {
            client_id: client_id.unwrap_or_default().to_string(),
            display_name: self.display_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn now() -> Timestamp {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn good() -> RequestInput {
        RequestInput {
            client_id: Some("dev-0001".into()),
            provision_username: Some("fleet_1".into()),
            provision_password: Some("s3cret-pass".into()),
            confirm_provision_password: Some("s3cret-pass".into()),
            broker_url: Some("mqtts://broker.acme.example:8883".into()),
            ..RequestInput::default()
        }
    }

    fn fields(r: Result<RequestSpec, Vec<FieldError>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn typed_input_gets_defaults_and_hides_the_password() {
        let input = good();
        assert!(!format!("{input:?}").contains("s3cret"));
        let s = input.validate(20, now()).unwrap();
        assert_eq!(s.activates_on, now());
        assert!(s.reserve_user);
        assert_eq!(s.connection_coupling, Coupling::Inherited);
    }

    #[test]
    fn absent_required_fields_are_all_reported() {
        let f = fields(RequestInput::default().validate(20, now()));
        assert_eq!(
            f,
            [
                "clientId",
                "provisionUsername",
                "provisionPassword",
                "confirmProvisionPassword",
                "brokerUrl"
            ]
        );
    }

    #[test]
    fn rules_apply_to_typed_values() {
        let mut i = good();
        i.password_length = Some(19);
        i.expires_on = Some(now());
        assert_eq!(
            fields(i.validate(20, now())),
            ["expiresOn", "passwordLength"]
        );
        let a = AccountInput {
            default_coupling: Some(Coupling::Inherited),
            ..AccountInput::named("acme")
        };
        assert_eq!(a.validate().unwrap_err()[0].field, "defaultCoupling");
        assert_eq!(check_broker_url("mqtt://h:0"), Err(BrokerUrlError::Port));
    }

    fn names(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn account_user_rules() {
        let ok = AccountUserInput {
            name: Some("dash.board_1-x".into()),
            password: Some("twelve chars".into()),
            permissions: names(&["data:read", "broker:connect", "data:read"]),
        };
        assert!(!format!("{ok:?}").contains("twelve"));
        let spec = ok.validate().unwrap();
        assert_eq!(spec.permissions, ["broker:connect", "data:read"]);
        assert!(!format!("{spec:?}").contains("twelve"));
        let generated = AccountUserInput {
            name: Some("a".into()),
            ..AccountUserInput::default()
        }
        .validate()
        .unwrap();
        assert_eq!((generated.password, generated.permissions.len()), (None, 0));
        let bad = AccountUserInput {
            name: Some("a@b".into()),
            password: Some("eleven char".into()),
            permissions: names(&["vpn:connect"]),
        };
        let fields: Vec<String> = bad
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["name", "password", "permissions"]);
        assert!(!valid_user_name(&"a".repeat(65)));
        assert!(valid_user_name(&"a".repeat(64)));
        assert_eq!(
            AccountUserInput::default().validate().unwrap_err()[0].field,
            "name"
        );
    }

    #[test]
    fn patch_and_device_rules() {
        let p = UserPatchInput {
            permissions: names(&["device:manage"]),
            password: Some("x".repeat(257)),
            enabled: Some(false),
        };
        assert_eq!(p.validate().unwrap_err()[0].field, "password");
        let p = UserPatchInput {
            enabled: Some(false),
            ..UserPatchInput::default()
        }
        .validate()
        .unwrap();
        assert_eq!((p.permissions, p.enabled), (None, Some(false)));
        let d = DeviceInput {
            client_id: Some("dev-1".into()),
            display_name: Some("Pump 1".into()),
        }
        .validate()
        .unwrap();
        assert_eq!(d.display_name.as_deref(), Some("Pump 1"));
        for bad in [
            DeviceInput::default(),
            DeviceInput {
                client_id: Some("a/b".into()),
                display_name: None,
            },
            DeviceInput {
                client_id: Some("dev-1".into()),
                display_name: Some(" ".into()),
            },
        ] {
            assert!(bad.validate().is_err());
        }
    }
}

/// The kinds of broker a known endpoint may name.
pub const ENDPOINT_KINDS: [&str; 5] = ["mosquitto", "rabbitmq", "emqx", "vernemq", "other"];

/// The name of Fleetgate's own operational endpoint in the known endpoints (reserved).
pub const OWN_ENDPOINT: &str = "fleetgate";

/// A known-endpoint body (`POST /endpoints`) as the caller gave it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointInput {
    /// Name.
    pub name: Option<String>,
    /// Broker URL.
    pub url: Option<String>,
    /// Kind (default `other`).
    pub kind: Option<String>,
}

/// A validated known endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Name.
    pub name: String,
    /// Broker URL.
    pub url: String,
    /// Kind.
    pub kind: String,
}

impl EndpointInput {
    /// Applies API.md's rules: a name like an account's (not `fleetgate`, which is 409 at the
    /// store), a broker URL as a request's `brokerUrl`, a known kind.
    pub fn validate(self) -> Result<EndpointSpec, Vec<FieldError>> {
        let mut e = Errors::default();
        let name = e.required("name", self.name.as_deref());
        if let Some(n) = name
            && !valid_account_name(n)
        {
            e.add("name", "must be 1 to 64 characters of a-z 0-9 -");
        }
        let url = e.required("url", self.url.as_deref());
        if let Some(u) = url
            && let Err(m) = check_broker_url(u)
        {
            e.add("url", m.to_string());
        }
        let kind = self.kind.as_deref().unwrap_or("other");
        if !ENDPOINT_KINDS.contains(&kind) {
            e.add(
                "kind",
                format!("must be one of {}", ENDPOINT_KINDS.join(", ")),
            );
        }
        if !e.0.is_empty() {
            return Err(e.0);
        }
        Ok(EndpointSpec {
            name: name.unwrap_or_default().to_string(),
            url: url.unwrap_or_default().to_string(),
            kind: kind.to_string(),
        })
    }
}
