//! The API's JSON shapes: the responses are `fleetgate-wire`'s (shared with the client, so
//! what is served, documented and decoded is one definition), built here from the storage
//! records; the request bodies are documented here. Nothing built here can carry a hash or a
//! provision password: the records' secret fields are simply not copied, and the one-time
//! activation key is passed only by the create/update handlers. These are functions rather
//! than `From` impls because neither the records nor the shapes are this crate's.

use chrono::{DateTime, Utc};
use fleetgate_storage::{
    Account, AccountUser, Birth, ConnectionStatus, Coupling, Device, DeviceConnection,
    DeviceStatus, DeviceUser, Execution, LogLevel, Outcome, ProvisionRequest, ProvisioningProtocol,
    RequestStatus,
};
use fleetgate_wire as wire;
use utoipa::ToSchema;

fn coupling(c: Coupling) -> wire::Coupling {
    match c {
        Coupling::Inherited => wire::Coupling::Inherited,
        Coupling::Loose => wire::Coupling::Loose,
        Coupling::Strict => wire::Coupling::Strict,
    }
}

fn status(s: RequestStatus) -> wire::RequestStatus {
    match s {
        RequestStatus::Created => wire::RequestStatus::Created,
        RequestStatus::Running => wire::RequestStatus::Running,
        RequestStatus::Completed => wire::RequestStatus::Completed,
        RequestStatus::Failed => wire::RequestStatus::Failed,
    }
}

fn outcome(o: Outcome) -> wire::Outcome {
    match o {
        Outcome::Running => wire::Outcome::Running,
        Outcome::Completed => wire::Outcome::Completed,
        Outcome::Failed => wire::Outcome::Failed,
        Outcome::Rejected => wire::Outcome::Rejected,
    }
}

pub(crate) fn level(l: LogLevel) -> wire::LogLevel {
    match l {
        LogLevel::Info => wire::LogLevel::Info,
        LogLevel::Warn => wire::LogLevel::Warn,
        LogLevel::Error => wire::LogLevel::Error,
    }
}

fn connection(s: ConnectionStatus) -> wire::ConnectionStatus {
    match s {
        ConnectionStatus::NeverConnected => wire::ConnectionStatus::NeverConnected,
        ConnectionStatus::Connected => wire::ConnectionStatus::Connected,
        ConnectionStatus::Disconnected => wire::ConnectionStatus::Disconnected,
    }
}

/// The view of an account.
pub fn account(a: &Account) -> wire::Account {
    wire::Account {
        name: a.name.clone(),
        min_password_length: a.min_password_length,
        default_coupling: coupling(a.default_coupling),
        created_on: a.created_on,
    }
}

/// The view of `r` at `now` in `account`, carrying `key`: the one-time activation key, only
/// in the answer of the create or update that generated it.
pub fn request(
    r: &ProvisionRequest,
    account: &Account,
    now: DateTime<Utc>,
    key: Option<String>,
) -> wire::ProvisionRequest {
    wire::ProvisionRequest {
        id: r.id.clone(),
        account: r.account.clone(),
        client_id: r.client_id.clone(),
        provision_username: r.provision_username.clone(),
        broker_url: r.broker_url.clone(),
        activates_on: r.activates_on,
        expires_on: r.expires_on,
        generate_activation_key: r.activation_key_hash.is_some(),
        reserve_user: r.reserve_user,
        connection_coupling: coupling(r.connection_coupling),
        vpn_access: r.vpn_access,
        password_length: r.effective_password_length(account.min_password_length),
        additional_configuration: r.additional_configuration.clone(),
        status: status(r.status),
        closed: r.is_closed(now),
        created_on: r.created_on,
        modified_on: r.modified_on,
        last_rejection: r.last_rejection.as_ref().map(|x| wire::Rejection {
            at: x.at,
            reason: x.reason.clone(),
        }),
        warnings: r.warnings.clone(),
        activation_key: key.map(wire::Secret::from),
    }
}

/// The view of `e`, with or without its log.
pub fn execution(e: &Execution, with_log: bool) -> wire::Execution {
    wire::Execution {
        id: e.id.clone(),
        started_on: e.started_on,
        ended_on: e.ended_on,
        outcome: outcome(e.outcome),
        // PROTOCOL.md 8.1 names a Kura-native execution's protocol "kura"; the MQTT version
        // stays in `mqttVersion`.
        protocol: match e.provisioning_protocol {
            ProvisioningProtocol::Kura => e.provisioning_protocol.as_str().to_string(),
            ProvisioningProtocol::ProvV1 => e.protocol.clone(),
        },
        mqtt_version: e.protocol.clone(),
        provisioning_protocol: e.provisioning_protocol.as_str().to_string(),
        peer: e.peer.clone(),
        operational_connected_on: e.operational_connected_on,
        log: with_log.then(|| {
            e.log
                .iter()
                .map(|l| wire::LogLine {
                    at: l.at,
                    level: level(l.level),
                    message: l.message.clone(),
                })
                .collect()
        }),
    }
}

/// The view of a device user (never its hash).
pub fn device_user(u: &DeviceUser) -> wire::User {
    wire::User {
        username: u.username.clone(),
        kind: wire::UserKind::Device,
        permissions: u.permissions.clone(),
        reserved_for: u.reserved_for.clone(),
        enabled: u.enabled,
        created_on: u.created_on,
    }
}

/// The view of an account user (never its hash).
pub fn account_user(u: &AccountUser) -> wire::User {
    wire::User {
        username: u.username.clone(),
        kind: wire::UserKind::Account,
        permissions: u.permissions.clone(),
        reserved_for: None,
        enabled: u.enabled,
        created_on: u.created_on,
    }
}

fn device_status(s: DeviceStatus) -> wire::DeviceStatus {
    match s {
        DeviceStatus::Enabled => wire::DeviceStatus::Enabled,
        DeviceStatus::Disabled => wire::DeviceStatus::Disabled,
        DeviceStatus::Moved => wire::DeviceStatus::Moved,
    }
}

fn birth(b: &Birth) -> wire::Birth {
    wire::Birth {
        display_name: b.display_name.clone(),
        model_name: b.model_name.clone(),
        model_id: b.model_id.clone(),
        serial_number: b.serial_number.clone(),
        firmware_version: b.firmware_version.clone(),
        os: b.os.clone(),
        os_version: b.os_version.clone(),
        jvm_version: b.jvm_version.clone(),
        kura_version: b.kura_version.clone(),
        application_framework_version: b.application_framework_version.clone(),
        connection_interface: b.connection_interface.clone(),
        connection_ip: b.connection_ip.clone(),
        application_ids: b.application_ids.clone(),
    }
}

/// A registry entry merged with its connection entry (none: never connected, `INHERITED`).
pub fn device(d: &Device, c: Option<&DeviceConnection>, account: &Account) -> wire::Device {
    let requested = c.map_or(Coupling::Inherited, |c| c.coupling);
    wire::Device {
        client_id: d.client_id.clone(),
        status: device_status(d.status),
        moved_to: d.moved_to.clone(),
        display_name: d.display_name.clone(),
        connection: connection(c.map_or(ConnectionStatus::NeverConnected, |c| c.status)),
        coupling: coupling(requested),
        effective_coupling: coupling(requested.resolve(account.default_coupling)),
        reserved_user: c.and_then(|c| c.reserved_user.clone()),
        provisioned_on: d.provisioned_on,
        provision_request_id: d.provision_request_id.clone(),
        last_connected_on: c.and_then(|c| c.last_connected_on),
        last_authenticated_on: c.and_then(|c| c.last_authenticated_on),
        peer: c.and_then(|c| c.peer.clone()),
        protocol: c.and_then(|c| c.protocol.clone()),
        birth: d.birth.as_ref().map(birth),
        birth_on: d.birth_on,
    }
}

// ---- Input shapes, for the OpenAPI document only: bodies are parsed from raw JSON by
// `super::input`, so that a wrong type is a 422 naming the field, and validated by
// `fleetgate_storage::validate`. utoipa takes only literals for limits: the test
// `openapi::tests::input_limits_agree_with_the_validator` drives the validator at and past every
// limit written here, so a limit that drifts from the validator fails it.

/// `POST /accounts` body.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct AccountInput {
    /// 1 to 64 of `[a-z0-9-]`, unique; the provisioning account's name is reserved.
    #[schema(
        example = "acme",
        pattern = r"^[a-z0-9-]+$",
        min_length = 1,
        max_length = 64
    )]
    pub name: String,
    /// 1 to 128; default 20.
    #[schema(minimum = 1, maximum = 128)]
    pub min_password_length: Option<u16>,
    /// `LOOSE` (default) or `STRICT`.
    pub default_coupling: Option<wire::Coupling>,
}

/// `POST .../devices/{clientId}/requests` body: a Kura request.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct DeviceRequestInput {
    /// The app, one topic level: `CONF-V1`, `CMD-V1`, `DEPLOY-V2`, ...
    #[schema(example = "CONF-V1", max_length = 255)]
    pub app: String,
    /// `GET`, `PUT`, `POST`, `DEL` or `EXEC`.
    #[schema(example = "GET")]
    pub method: String,
    /// Resource path, one topic level each.
    #[schema(example = json!(["configurations"]))]
    pub resources: Option<Vec<String>>,
    /// The app's metrics: strings, booleans, integers (INT32 when they fit, else INT64).
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<serde_json::Value>,
    /// The body, as text.
    pub body: Option<String>,
    /// Seconds to wait for the reply, 1 to 3600 (default `device_management.timeout`).
    #[schema(minimum = 1, maximum = 3600)]
    pub timeout: Option<u32>,
}

/// `POST .../devices/{clientId}/commands` body.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct CommandInput {
    /// The command.
    #[schema(example = "uname")]
    pub command: String,
    /// Its arguments.
    #[schema(example = json!(["-a"]))]
    pub arguments: Option<Vec<String>>,
    /// Environment variables.
    #[schema(value_type = Option<Object>)]
    pub environment: Option<serde_json::Value>,
    /// The device command service's password, when it has one.
    pub password: Option<String>,
    /// Seconds the command may run, 1 to 3600 (the reply is awaited 5 s longer).
    #[schema(minimum = 1, maximum = 3600)]
    pub timeout: Option<u32>,
}

/// `POST /endpoints` body.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct EndpointInput {
    /// 1 to 64 of `[a-z0-9-]`, unique; `fleetgate` is reserved.
    #[schema(
        example = "eu-cluster",
        pattern = r"^[a-z0-9-]+$",
        min_length = 1,
        max_length = 64
    )]
    pub name: String,
    /// The broker URL devices connect to (`mqtt`, `mqtts`, `tcp`, `ssl`, `ws`, `wss`).
    #[schema(example = "mqtts://mqtt.eu.example:8883")]
    pub url: String,
    /// `mosquitto`, `rabbitmq`, `emqx`, `vernemq` or `other` (default).
    #[schema(example = "rabbitmq")]
    pub kind: Option<String>,
}

/// Create/update body of a provision request.
#[derive(Debug, ToSchema)]
#[schema(as = ProvisionRequestInput)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct RequestInput {
    /// 1 to 255 of `[A-Za-z0-9._:@-]`; no other open request for it in the instance (409).
    #[schema(pattern = r"^[A-Za-z0-9._:@-]+$", min_length = 1, max_length = 255)]
    pub client_id: String,
    /// 3 to 256 of `[A-Za-z0-9_-]`; reusable only by the same account with the same password.
    #[schema(pattern = r"^[A-Za-z0-9_-]+$", min_length = 3, max_length = 256)]
    pub provision_username: String,
    /// At least 8 characters, at most 256 bytes (UTF-8); write-only.
    #[schema(min_length = 8, max_length = 256, format = Password)]
    pub provision_password: String,
    /// Must equal `provisionPassword`; write-only.
    #[schema(min_length = 8, max_length = 256, format = Password)]
    pub confirm_provision_password: String,
    /// `mqtt|mqtts|tcp|ssl|ws|wss://host[:port][/path]`, port 1 to 65535 (default by scheme),
    /// no user information. The pattern admits every URL the validator accepts (so that a
    /// body outside it is always refused); the host and port rules are the validator's.
    #[schema(pattern = r"^(mqtt|mqtts|tcp|ssl|ws|wss)://[^@/?#]+([/?#][\s\S]*)?$")]
    pub broker_url: String,
    /// Default now.
    pub activates_on: Option<DateTime<Utc>>,
    /// After `activatesOn`; default never.
    pub expires_on: Option<DateTime<Utc>>,
    /// Default false; when true the response carries `activationKey` once.
    pub generate_activation_key: Option<bool>,
    /// Default true.
    pub reserve_user: Option<bool>,
    /// Default `INHERITED`.
    pub connection_coupling: Option<wire::Coupling>,
    /// Default false.
    pub vpn_access: Option<bool>,
    /// max(20, account minimum) to 128.
    #[schema(minimum = 20, maximum = 128)]
    pub password_length: Option<u16>,
    /// Kura configuration XML, at most 256 KiB.
    #[schema(max_length = 262144)]
    pub additional_configuration: Option<String>,
}

/// Bulk create body.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct BulkInput {
    /// 1 to 10,000 requests, created all or nothing.
    #[schema(min_items = 1, max_items = 10000)]
    pub requests: Vec<RequestInput>,
}

/// `POST .../users` body.
#[derive(Debug, ToSchema)]
#[schema(as = UserInput)]
#[allow(dead_code)]
pub struct UserInput {
    /// 1 to 64 of `[A-Za-z0-9._-]`; the username `NAME@ACCOUNT` must be free in the instance.
    #[schema(pattern = r"^[A-Za-z0-9._-]+$", min_length = 1, max_length = 64)]
    pub name: String,
    /// At least 12 characters, at most 256 bytes; write-only. Omitted: one is generated and
    /// returned once as `password`.
    #[schema(min_length = 12, max_length = 256, format = Password)]
    pub password: Option<String>,
    /// A subset of `broker:connect`, `data:read`, `data:write`, `device:read`,
    /// `device:manage` (default none).
    pub permissions: Option<Vec<String>>,
}

/// `PATCH .../users/{username}` body: the fields given change. Device users take only
/// `enabled`.
#[derive(Debug, ToSchema)]
#[schema(as = UserPatchInput)]
#[allow(dead_code)]
pub struct UserPatchInput {
    /// New permissions (account users).
    pub permissions: Option<Vec<String>>,
    /// New password, at least 12 characters (account users); write-only.
    #[schema(min_length = 12, max_length = 256, format = Password)]
    pub password: Option<String>,
    /// Enable or disable; disabling ends the user's open sessions.
    pub enabled: Option<bool>,
}

/// `POST .../devices` body.
#[derive(Debug, ToSchema)]
#[schema(as = DeviceInput)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInput {
    /// 1 to 255 of `[A-Za-z0-9._:@-]`; not in the registry yet (409).
    #[schema(pattern = r"^[A-Za-z0-9._:@-]+$", min_length = 1, max_length = 255)]
    pub client_id: String,
    /// 1 to 255 characters.
    #[schema(min_length = 1, max_length = 255)]
    pub display_name: Option<String>,
}
