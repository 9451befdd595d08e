//! `fleetgate-wire`: the JSON shapes of Fleetgate's admin API (API.md), defined once for both
//! sides. The server (`fleetgate-api`) builds the response shapes from its storage records and
//! documents them in its OpenAPI description (`ToSchema`); clients (`fleetgate-client`, hence
//! the CLI and the load tester) decode the same types, so a field cannot drift between what is
//! served, what is documented and what is read. JSON is camelCase with RFC 3339 UTC timestamps;
//! a response decoded here and encoded again is the JSON the server sent (the same `null`s, the
//! same omitted optional fields): the CLI's `--json` output relies on that.
//!
//! The problem document of error answers ([`Problem`]) is here for the same reason.
//!
//! It owns shapes only: no storage, no HTTP, no validation (the server validates bodies from
//! raw JSON so that its 422 names each wrong field; the request bodies here are what a client
//! sends). Secrets (provision passwords, tokens, activation keys) are [`Secret`]s: they reach
//! the wire but never a `Debug` output.

use std::fmt::{self, Write as _};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most provision requests one bulk call may hold (API.md): the server refuses more, the
/// client splits larger batches.
pub const MAX_BULK_ITEMS: usize = 10_000;
/// Largest page of the provision-request listing (`limit`).
pub const MAX_PAGE_SIZE: usize = 1000;

/// A secret string (password, token, activation key): serialized as the plain string, shown as
/// `<redacted>` by `Debug`, and deliberately without `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that must show or send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

/// Coupling of a device connection (`INHERITED` = the account default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Coupling {
    /// The account's default.
    Inherited,
    /// Any user of the account not reserved to another device.
    Loose,
    /// Only the reserved user.
    Strict,
}

/// Lifecycle status of a provision request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestStatus {
    /// Never attempted.
    Created,
    /// An exchange is in progress.
    Running,
    /// The device acknowledged its reply.
    Completed,
    /// The last exchange failed.
    Failed,
}

/// Outcome of an execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// In progress.
    Running,
    /// The device acknowledged its reply.
    Completed,
    /// The exchange failed.
    Failed,
    /// The CONNECT was refused although the credentials matched.
    Rejected,
}

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogLevel {
    /// A step.
    Info,
    /// Unusual, did not fail the exchange.
    Warn,
    /// The reason of a failure.
    Error,
}

/// Connection state on the operational endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectionStatus {
    /// Never seen on the operational endpoint.
    NeverConnected,
    /// A session is open.
    Connected,
    /// The last session ended.
    Disconnected,
}

/// An account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// 1 to 64 of `[a-z0-9-]`.
    pub name: String,
    /// Minimum length of generated device passwords.
    pub min_password_length: u16,
    /// Coupling of device connections whose coupling is `INHERITED`.
    pub default_coupling: Coupling,
    /// Creation time.
    pub created_on: DateTime<Utc>,
}

/// `GET /accounts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AccountList {
    /// The accounts the caller may see, by name.
    pub items: Vec<Account>,
}

/// A new account token, shown once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    /// Token id (for revocation).
    pub id: String,
    /// The bearer token `fgt_ID_SECRET`; stored only as a hash.
    #[schema(value_type = String)]
    pub token: Secret,
}

/// The last refused CONNECT with wrong credentials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rejection {
    /// When.
    pub at: DateTime<Utc>,
    /// Why (never a secret).
    pub reason: String,
}

/// A provision request as the API shows it. Write-only fields (`provisionPassword`,
/// `confirmProvisionPassword`) are never returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionRequest {
    /// Opaque id.
    pub id: String,
    /// Target account.
    pub account: String,
    /// The device's MQTT client ID.
    pub client_id: String,
    /// Provision username the device presents.
    pub provision_username: String,
    /// Operational broker URL handed to the device.
    pub broker_url: String,
    /// Start of the activation window.
    pub activates_on: DateTime<Utc>,
    /// End of the activation window (exclusive); null = never expires.
    pub expires_on: Option<DateTime<Utc>>,
    /// Whether the device must present an activation key.
    pub generate_activation_key: bool,
    /// Reserve the generated user for this client ID.
    pub reserve_user: bool,
    /// Coupling of the device connection.
    pub connection_coupling: Coupling,
    /// Grant `vpn:connect` and generate the VPN configuration.
    pub vpn_access: bool,
    /// Effective generated password length: max(20, requested, account minimum).
    pub password_length: u16,
    /// Additional device configuration (XML), as given.
    pub additional_configuration: Option<String>,
    /// Lifecycle status.
    pub status: RequestStatus,
    /// `COMPLETED`, or `FAILED` with `expiresOn` passed.
    pub closed: bool,
    /// Creation time.
    pub created_on: DateTime<Utc>,
    /// Last modification (any field or status).
    pub modified_on: DateTime<Utc>,
    /// Last refusal with wrong credentials, or null.
    pub last_rejection: Option<Rejection>,
    /// Warnings about the input (reserved properties that will be replaced).
    pub warnings: Vec<String>,
    /// The activation key: only in the response that generated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub activation_key: Option<Secret>,
}

impl ProvisionRequest {
    /// The update body that keeps every field as it is (the password, write-only, is not
    /// known: set it with [`ProvisionRequestInput::with_password`]).
    pub fn to_input(&self) -> ProvisionRequestInput {
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        ProvisionRequestInput {
            client_id: Some(self.client_id.clone()),
            provision_username: Some(self.provision_username.clone()),
            provision_password: None,
            confirm_provision_password: None,
            broker_url: Some(self.broker_url.clone()),
            activates_on: Some(time(&self.activates_on)),
            expires_on: self.expires_on.as_ref().map(time),
            generate_activation_key: Some(self.generate_activation_key),
            reserve_user: Some(self.reserve_user),
            connection_coupling: Some(self.connection_coupling),
            vpn_access: Some(self.vpn_access),
            password_length: Some(u32::from(self.password_length)),
            additional_configuration: self.additional_configuration.clone(),
        }
    }
}

/// One page of provision requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RequestPage {
    /// The requests, in creation order.
    pub items: Vec<ProvisionRequest>,
    /// Cursor for `after=` to get the next page; null on the last page.
    pub next: Option<String>,
}

/// `POST .../provision-requests/bulk` -> 201.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BulkCreated {
    /// The created requests, in input order (each with its `activationKey` if generated).
    pub created: Vec<ProvisionRequest>,
}

/// One log line of an execution; never a secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// When.
    pub at: DateTime<Utc>,
    /// Severity.
    pub level: LogLevel,
    /// What happened.
    pub message: String,
}

/// One attempt of a device against a request. `log` is present on the single-execution
/// endpoint only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// Opaque id.
    pub id: String,
    /// Start time.
    pub started_on: DateTime<Utc>,
    /// End time, null while running.
    pub ended_on: Option<DateTime<Utc>>,
    /// Outcome.
    pub outcome: Outcome,
    /// `3.1.1` or `5.0` (API.md); `kura` for an unmodified Kura device provisioned by BIRTH and
    /// CONF-V1 PUT (PROTOCOL.md 8.1: "an execution (`protocol` "kura")").
    pub protocol: String,
    /// The MQTT version of the attempt's connection, `3.1.1` or `5.0`, whatever it spoke over
    /// it.
    #[serde(default)]
    pub mqtt_version: String,
    /// The provisioning protocol: `PROV-V1`, or `kura` for an unmodified Kura device
    /// provisioned by BIRTH and CONF-V1 PUT (PROTOCOL.md 8.1).
    #[serde(default = "prov_v1")]
    pub provisioning_protocol: String,
    /// Peer address `ip:port`.
    pub peer: String,
    /// When the provisioned device first connected to the operational endpoint with the
    /// identity this execution gave it (PROTOCOL.md 6.3); null until then: a COMPLETED
    /// execution whose device never arrived shows as such.
    pub operational_connected_on: Option<DateTime<Utc>>,
    /// Every step, in order (single-execution endpoint only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<Vec<LogLine>>,
}

/// What an execution without `provisioningProtocol` (an older server) spoke.
fn prov_v1() -> String {
    "PROV-V1".into()
}

/// The executions of a request, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionList {
    /// Executions without their logs.
    pub items: Vec<Execution>,
}

/// Which kind of operational user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserKind {
    /// Created by provisioning: `CID@ACCOUNT`.
    Device,
    /// Created with the API: `NAME@ACCOUNT`.
    Account,
}

/// An operational user of a target account (never its hash).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// `CID@ACCOUNT` or `NAME@ACCOUNT`.
    pub username: String,
    /// `DEVICE` or `ACCOUNT`.
    pub kind: UserKind,
    /// e.g. `broker:connect`, `data:read`, `vpn:connect`.
    pub permissions: Vec<String>,
    /// The client ID the user is reserved for, or null.
    pub reserved_for: Option<String>,
    /// A disabled user cannot connect.
    pub enabled: bool,
    /// Creation time.
    pub created_on: DateTime<Utc>,
}

/// `POST .../users` -> 201: the user, with the generated password when the request named
/// none (shown this once; API.md "Account users").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserCreated {
    /// The user.
    #[serde(flatten)]
    pub user: User,
    /// The generated password: only here, and only when one was generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub password: Option<Secret>,
}

/// `GET .../users`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserList {
    /// Users by username (device users, then account users).
    pub items: Vec<User>,
}

/// A registry entry's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeviceStatus {
    /// In service.
    Enabled,
    /// Taken out of service.
    Disabled,
    /// Moved elsewhere (`movedTo`).
    Moved,
}

/// The facts of a device's latest Kura BIRTH (PROTOCOL.md 6.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Birth {
    /// `display_name`.
    pub display_name: Option<String>,
    /// `model_name`.
    pub model_name: Option<String>,
    /// `model_id`.
    pub model_id: Option<String>,
    /// `serial_number`.
    pub serial_number: Option<String>,
    /// `firmware_version`.
    pub firmware_version: Option<String>,
    /// `os`.
    pub os: Option<String>,
    /// `os_version`.
    pub os_version: Option<String>,
    /// `jvm_version`.
    pub jvm_version: Option<String>,
    /// `kura_version`.
    pub kura_version: Option<String>,
    /// `application_framework_version`.
    pub application_framework_version: Option<String>,
    /// `connection_interface`.
    pub connection_interface: Option<String>,
    /// `connection_ip`.
    pub connection_ip: Option<String>,
    /// `application_ids`.
    pub application_ids: Option<String>,
}

/// A device: its registry entry merged with its device-connection entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Client ID.
    pub client_id: String,
    /// `ENABLED`, `DISABLED` or `MOVED`.
    pub status: DeviceStatus,
    /// Where it moved to, or null.
    pub moved_to: Option<String>,
    /// The name given when the entry was created with the API, or null.
    pub display_name: Option<String>,
    /// Connection state.
    pub connection: ConnectionStatus,
    /// Coupling as requested (`INHERITED` = the account default).
    pub coupling: Coupling,
    /// The coupling in force (`INHERITED` resolved against the account default).
    pub effective_coupling: Coupling,
    /// The user reserved for this client ID, or null.
    pub reserved_user: Option<String>,
    /// When it was last provisioned; null for an entry created before provisioning.
    pub provisioned_on: Option<DateTime<Utc>>,
    /// The request that provisioned it, or null.
    pub provision_request_id: Option<String>,
    /// Last successful operational CONNECT, or null.
    pub last_connected_on: Option<DateTime<Utc>>,
    /// Last successful authentication through another broker's hook (HOOKS.md 2), or null:
    /// the status of devices on brokers that report no disconnects (RabbitMQ).
    pub last_authenticated_on: Option<DateTime<Utc>>,
    /// Peer `ip:port` of the last operational session, or null.
    pub peer: Option<String>,
    /// MQTT version of the last operational session (`3.1.1`, `5.0`), or null.
    pub protocol: Option<String>,
    /// Facts of the latest Kura BIRTH, or null.
    pub birth: Option<Birth>,
    /// When that BIRTH arrived, or null.
    pub birth_on: Option<DateTime<Utc>>,
}

/// One page of devices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DevicePage {
    /// Devices by client ID.
    pub items: Vec<Device>,
    /// Cursor for `after=` to get the next page; null on the last page.
    pub next: Option<String>,
}

/// `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// The problem document (also described in the OpenAPI document).
// RFC 9457 `application/problem+json`. The server always sends every member (the schema says
// so); decoding is lenient (`default`) so that any JSON object error body, e.g. from a proxy,
// still decodes on the client: hence `status` is an `Option` here though the schema requires it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// Problem type URI (`about:blank`: the title is the HTTP status text).
    #[serde(rename = "type", default)]
    #[schema(required = true)]
    pub kind: String,
    /// Short summary (the HTTP status text).
    #[serde(default)]
    #[schema(required = true)]
    pub title: String,
    /// HTTP status code.
    #[serde(default)]
    #[schema(required = true, value_type = u16)]
    pub status: Option<u16>,
    /// What went wrong, for humans.
    #[serde(default)]
    #[schema(required = true)]
    pub detail: String,
    /// Field-level errors (validation and conflicts); empty otherwise.
    #[serde(default)]
    #[schema(required = true)]
    pub errors: Vec<FieldError>,
}

/// One field error of a [`Problem`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = ProblemField)]
pub struct FieldError {
    /// Row of a bulk request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// camelCase field name (empty for the whole body).
    #[serde(default)]
    #[schema(required = true)]
    pub field: String,
    /// What is wrong.
    #[serde(default)]
    #[schema(required = true)]
    pub message: String,
}

impl Problem {
    /// The problem as text: `HTTP {status} {title}: {detail}`, then one indented line per field
    /// error, `[LABEL] field: message`, where `item` names a bulk item from its index.
    pub fn describe(&self, status: u16, item: &dyn Fn(usize) -> String) -> String {
        let mut msg = format!("HTTP {status} {}: {}", self.title, self.detail);
        for e in &self.errors {
            msg.push_str("\n  ");
            if let Some(i) = e.index {
                let _ = write!(msg, "[{}] ", item(i));
            }
            if !e.field.is_empty() {
                let _ = write!(msg, "{}: ", e.field);
            }
            msg.push_str(&e.message);
        }
        msg
    }
}

// ---- Request bodies as a client sends them. The server documents its bodies with their
// limits in its own input shapes and parses them from raw JSON (so that a wrong type is a 422
// naming the field): these are deliberately looser, sending exactly what the caller set.

/// `POST /api/v1/accounts` body.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccount {
    /// 1 to 64 of `[a-z0-9-]`.
    pub name: String,
    /// Minimum length of generated device passwords (server default 20).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_password_length: Option<u32>,
    /// Coupling of `INHERITED` device connections (server default `LOOSE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_coupling: Option<Coupling>,
}

/// Create or update body of a provision request. Every field is optional on the wire: the
/// server validates the body and names each missing or wrong field in its 422, so callers
/// that relay user input (the CLI) send exactly what they were given. Timestamps are RFC 3339
/// text for the same reason.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionRequestInput {
    /// The device's MQTT client ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Provision username the device presents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provision_username: Option<String>,
    /// Provision password (write-only: required on create and on every update).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provision_password: Option<Secret>,
    /// Must equal `provision_password`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirm_provision_password: Option<Secret>,
    /// Operational broker URL handed to the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_url: Option<String>,
    /// Start of the activation window (RFC 3339; default now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activates_on: Option<String>,
    /// End of the activation window (RFC 3339; default never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_on: Option<String>,
    /// Require an activation key, returned once in the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generate_activation_key: Option<bool>,
    /// Reserve the generated user for the client ID (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserve_user: Option<bool>,
    /// Coupling of the device connection (default `INHERITED`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_coupling: Option<Coupling>,
    /// Grant VPN access (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpn_access: Option<bool>,
    /// Length of the generated device password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_length: Option<u32>,
    /// Additional configuration: Kura configuration XML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_configuration: Option<String>,
}

/// `POST .../users` body. Only what is set is sent: the server names each wrong field.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewUser {
    /// `NAME`: 1 to 64 of `[A-Za-z0-9._-]`; the username is `NAME@ACCOUNT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A chosen password (at least 12 characters); absent: one is generated and returned once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Permissions of PROTOCOL.md 6.1's table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
}

/// `PATCH .../users/{username}` body: only the fields set change.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPatch {
    /// New permissions (account users only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    /// New chosen password (account users only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Enable or disable (both kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `POST .../devices` body.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewDevice {
    /// The device's client ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// A name for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

impl ProvisionRequestInput {
    /// Sets the provision password and its confirmation.
    pub fn with_password(mut self, password: &str) -> Self {
        self.provision_password = Some(password.into());
        self.confirm_provision_password = Some(password.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn request_json() -> Value {
        json!({
            "id": "r1", "account": "acme", "clientId": "dev-1", "provisionUsername": "fleet",
            "brokerUrl": "mqtt://h:1883", "activatesOn": "2026-12-01T17:26:15.123456789Z",
            "expiresOn": null, "generateActivationKey": true, "reserveUser": true,
            "connectionCoupling": "INHERITED", "vpnAccess": false, "passwordLength": 32,
            "additionalConfiguration": null, "status": "CREATED", "closed": false,
            "createdOn": "2026-12-01T17:26:15Z", "modifiedOn": "2026-12-01T17:26:15.500Z",
            "lastRejection": {"at": "2026-12-01T17:30:00Z", "reason": "wrong password"},
            "warnings": [], "activationKey": "KEY-123"
        })
    }

    #[test]
    // Timestamps in chrono's own form (what the server writes): 0, 3, 6 or 9 fraction digits.
    fn responses_round_trip_to_the_same_json() {
        let v = request_json();
        let r: ProvisionRequest = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(r.status, RequestStatus::Created);
        assert_eq!(r.activation_key.as_ref().unwrap().expose(), "KEY-123");
        assert_eq!(serde_json::to_value(&r).unwrap(), v);
        // Without a key, the key stays absent (not null), as the server writes it.
        let mut v = v;
        v.as_object_mut().unwrap().remove("activationKey");
        let r: ProvisionRequest = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&r).unwrap(), v);

        let e = json!({"id": "e1", "startedOn": "2026-12-01T17:26:15Z", "endedOn": null,
            "outcome": "RUNNING", "protocol": "kura", "mqttVersion": "3.1.1",
            "provisioningProtocol": "kura", "peer": "127.0.0.1:5", "operationalConnectedOn": null});
        let x: Execution = serde_json::from_value(e.clone()).unwrap();
        assert_eq!(serde_json::to_value(&x).unwrap(), e);
        // An older server sends no provisioningProtocol: its executions were all PROV-V1.
        let mut older = e.clone();
        older
            .as_object_mut()
            .unwrap()
            .remove("provisioningProtocol");
        let x: Execution = serde_json::from_value(older).unwrap();
        assert_eq!(x.provisioning_protocol, "PROV-V1");
        let d = json!({"clientId": "dev-1", "status": "ENABLED", "connection": "NEVER_CONNECTED",
            "coupling": "INHERITED", "effectiveCoupling": "LOOSE", "reservedUser": "dev-1@acme",
            "provisionedOn": "2026-12-01T17:26:15Z", "provisionRequestId": "r1",
            "lastConnectedOn": null, "lastAuthenticatedOn": null, "movedTo": null, "displayName": "Pump 1", "peer": null,
            "protocol": null, "birthOn": "2026-12-01T17:30:00Z",
            "birth": {"displayName": "Pump 1", "modelName": "RPi", "modelId": null,
                "serialNumber": null, "firmwareVersion": null, "os": "Linux", "osVersion": null,
                "jvmVersion": null, "kuraVersion": "5.4.0", "applicationFrameworkVersion": null,
                "connectionInterface": null, "connectionIp": null, "applicationIds": null}});
        let dev: Device = serde_json::from_value(d.clone()).unwrap();
        assert_eq!(dev.connection, ConnectionStatus::NeverConnected);
        assert_eq!(
            dev.birth.as_ref().unwrap().kura_version.as_deref(),
            Some("5.4.0")
        );
        assert_eq!(serde_json::to_value(&dev).unwrap(), d);
        let u = json!({"username": "dash@acme", "kind": "ACCOUNT", "permissions": ["data:read"],
            "reservedFor": null, "enabled": true, "createdOn": "2026-12-01T17:26:15Z"});
        let user: User = serde_json::from_value(u.clone()).unwrap();
        assert_eq!(user.kind, UserKind::Account);
        assert_eq!(serde_json::to_value(&user).unwrap(), u);
        let mut c = u.clone();
        c["password"] = json!("Gen3rated-Passw0rd!");
        let created: UserCreated = serde_json::from_value(c.clone()).unwrap();
        assert_eq!(created.user, user);
        assert_eq!(serde_json::to_value(&created).unwrap(), c);
        assert!(!format!("{created:?}").contains("Gen3rated"));
        let plain: UserCreated = serde_json::from_value(u.clone()).unwrap();
        assert_eq!(serde_json::to_value(&plain).unwrap(), u);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let r: ProvisionRequest = serde_json::from_value(request_json()).unwrap();
        let input = r.to_input().with_password("very-secret-pw");
        let t = TokenCreated {
            id: "t1".into(),
            token: "fgt_t1_SECRETSECRET".into(),
        };
        let user = NewUser {
            name: Some("dash".into()),
            password: Some("chosen-passphrase".into()),
            permissions: None,
        };
        let patch = UserPatch {
            password: Some("chosen-passphrase".into()),
            ..UserPatch::default()
        };
        let shown = format!("{r:?} {input:?} {t:?} {user:?} {patch:?}");
        for secret in [
            "KEY-123",
            "very-secret-pw",
            "SECRETSECRET",
            "chosen-passphrase",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn inputs_send_only_what_is_set() {
        let v = serde_json::to_value(ProvisionRequestInput {
            client_id: Some("dev-1".into()),
            connection_coupling: Some(Coupling::Strict),
            ..ProvisionRequestInput::default()
        })
        .unwrap();
        assert_eq!(
            v,
            json!({"clientId": "dev-1", "connectionCoupling": "STRICT"})
        );
        let v = serde_json::to_value(ProvisionRequestInput::default().with_password("pw")).unwrap();
        assert_eq!(
            v,
            json!({"provisionPassword": "pw", "confirmProvisionPassword": "pw"})
        );
        let v = serde_json::to_value(NewAccount {
            name: "acme".into(),
            ..NewAccount::default()
        })
        .unwrap();
        assert_eq!(v, json!({"name": "acme"}));
    }

    #[test]
    fn update_body_keeps_the_current_fields() {
        let r: ProvisionRequest = serde_json::from_value(request_json()).unwrap();
        let v = serde_json::to_value(r.to_input()).unwrap();
        assert_eq!(v["activatesOn"], "2026-12-01T17:26:15.123456789Z");
        assert_eq!(v["passwordLength"], 32);
        assert_eq!(v["generateActivationKey"], true);
        assert!(v.get("expiresOn").is_none());
        assert!(v.get("additionalConfiguration").is_none());
        assert!(v.get("provisionPassword").is_none());
    }

    #[test]
    // The server's problem (every member, `index` only on bulk rows) and any other JSON
    // object error body both decode.
    fn problems_serialize_in_full_and_decode_leniently() {
        let p = Problem {
            kind: "about:blank".into(),
            title: "Unprocessable Entity".into(),
            status: Some(422),
            detail: "1 invalid field".into(),
            errors: vec![FieldError {
                index: None,
                field: "clientId".into(),
                message: "required".into(),
            }],
        };
        let v = json!({"type": "about:blank", "title": "Unprocessable Entity", "status": 422,
            "detail": "1 invalid field",
            "errors": [{"field": "clientId", "message": "required"}]});
        assert_eq!(serde_json::to_value(&p).unwrap(), v);
        assert_eq!(serde_json::from_value::<Problem>(v).unwrap(), p);
        let other: Problem = serde_json::from_value(json!({"detail": "bad gateway"})).unwrap();
        assert_eq!(other.status, None);
        assert_eq!(other.detail, "bad gateway");
        assert!(other.errors.is_empty());
    }
}

/// A known broker endpoint (API.md "Known broker endpoints").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Its name; `fleetgate` is the instance's own operational endpoint.
    pub name: String,
    /// The URL devices connect to.
    pub url: String,
    /// `fleetgate`, `mosquitto`, `rabbitmq`, `emqx`, `vernemq` or `other`.
    pub kind: String,
}

/// `GET /endpoints`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EndpointList {
    /// `fleetgate` first, then the others by name.
    pub items: Vec<Endpoint>,
}

/// A device's reply to a Kura request (API.md "Device management").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceReply {
    /// `response.code`: 200, 400, 404, 500.
    pub response_code: i32,
    /// Every metric of the reply, by name (bytes as base64).
    #[schema(value_type = Object)]
    pub metrics: std::collections::BTreeMap<String, serde_json::Value>,
    /// The reply's body as UTF-8 text, or null.
    pub body: Option<String>,
    /// The body as base64 when it is not UTF-8 (then `body` is null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

/// What a command did on the device (CMD-V1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandResult {
    /// Its exit code (null when the device did not say).
    pub exit_code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Whether it was stopped at its timeout.
    pub timed_out: bool,
}

/// Status of a job's target, and of one of its executions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Waiting for the device to be ready (or, for a timed job, for the next firing).
    Pending,
    /// A step is in flight.
    Running,
    /// Every step answered 200.
    Completed,
    /// A step failed or timed out.
    Failed,
}

/// How many targets are in each status in the job's current run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct TargetCounts {
    /// Waiting.
    pub pending: u32,
    /// Running a step.
    pub running: u32,
    /// Done.
    pub completed: u32,
    /// Failed (retried when the device is next ready while attempts remain).
    pub failed: u32,
}

/// A batch job (API.md "Jobs").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Opaque id.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// Run in order on each target: `{"type": "configuration", "configuration": XML}`,
    /// `{"type": "command", "command", "arguments"}`, `{"type": "request", "app", "method",
    /// "resources", "metrics", "body"}`.
    #[schema(value_type = Vec<Object>)]
    pub steps: Vec<serde_json::Value>,
    /// `{"trigger": "NOW" | "DEVICE_CONNECT" | "INTERVAL" | "CRON", "every", "startsOn",
    /// "cron"}`.
    #[schema(value_type = Object)]
    pub schedule: serde_json::Value,
    /// Attempts per target and run.
    pub max_attempts: u32,
    /// Seconds each step waits for its reply.
    pub step_timeout: u32,
    /// Creation time.
    pub created_on: DateTime<Utc>,
    /// Firings so far (1 from creation for NOW and DEVICE_CONNECT).
    pub run: u32,
    /// The latest firing of a timed job.
    pub fired_on: Option<DateTime<Utc>>,
    /// The next firing of a timed job.
    pub next_fire_on: Option<DateTime<Utc>>,
    /// Target devices (client IDs).
    pub targets: Vec<String>,
    /// Targets per status in the current run.
    pub target_counts: TargetCounts,
}

/// The jobs of an account, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// The jobs.
    pub items: Vec<Job>,
}

/// One attempt of a job on one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobExecution {
    /// Opaque id.
    pub id: String,
    /// The device.
    pub client_id: String,
    /// Status.
    pub status: JobStatus,
    /// The job's run it belongs to.
    pub run: u32,
    /// 1 for the run's first attempt on this target.
    pub attempt: u32,
    /// When its first step was sent.
    pub started_on: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_on: Option<DateTime<Utc>>,
    /// The step running or last run (0-based).
    pub step: Option<u32>,
    /// What happened, step by step, with the device's replies; never a secret.
    pub log: Vec<LogLine>,
}

/// A job's executions, by client ID then oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobExecutionList {
    /// The executions.
    pub items: Vec<JobExecution>,
}

/// Another Fleetgate instance a device moves to (API.md "Moves").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetInstance {
    /// Its provisioning endpoint as devices reach it (`mqtt://host:port`).
    pub provisioning_url: String,
    /// Its provisioning account.
    pub provisioning_account: String,
    /// The provision username of the request waiting there (its password is write-only).
    pub username: String,
}

/// A move of a device to another account or instance (PROTOCOL.md 8.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Move {
    /// Opaque id.
    pub id: String,
    /// `PENDING`, `SENT`, `COMPLETED` or `FAILED`.
    pub status: String,
    /// The provision request created in the target account (a move within the instance).
    pub provision_request_id: Option<String>,
    /// The target account (a move within the instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_account: Option<String>,
    /// The target instance (a move to another instance), without the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_instance: Option<TargetInstance>,
    /// Creation time.
    pub created_on: DateTime<Utc>,
    /// Last change.
    pub modified_on: DateTime<Utc>,
    /// Every step (GET only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<Vec<LogLine>>,
}
