//! The JSON shapes of the API (camelCase, RFC 3339 UTC timestamps), built from the storage
//! records. Nothing here can carry a hash or a provision password: the records' secret fields
//! are simply not copied, and the one-time activation key is set only by the create/update
//! handlers.

use chrono::{DateTime, Utc};
use fleetgate_storage::{
    Account, ConnectionStatus, Coupling, Device, DeviceConnection, DeviceUser, Execution, LogLevel,
    Outcome, ProvisionRequest, RequestStatus,
};
use serde::Serialize;
use utoipa::ToSchema;

/// Coupling of a device connection (`INHERITED` = the account default).
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[schema(as = Coupling)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CouplingDto {
    /// The account's default.
    Inherited,
    /// Any user of the account not reserved to another device.
    Loose,
    /// Only the reserved user.
    Strict,
}

impl From<Coupling> for CouplingDto {
    fn from(c: Coupling) -> Self {
        match c {
            Coupling::Inherited => CouplingDto::Inherited,
            Coupling::Loose => CouplingDto::Loose,
            Coupling::Strict => CouplingDto::Strict,
        }
    }
}

/// Lifecycle status of a provision request.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[schema(as = RequestStatus)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StatusDto {
    /// Never attempted.
    Created,
    /// An exchange is in progress.
    Running,
    /// The device acknowledged its reply.
    Completed,
    /// The last exchange failed.
    Failed,
}

impl From<RequestStatus> for StatusDto {
    fn from(s: RequestStatus) -> Self {
        match s {
            RequestStatus::Created => StatusDto::Created,
            RequestStatus::Running => StatusDto::Running,
            RequestStatus::Completed => StatusDto::Completed,
            RequestStatus::Failed => StatusDto::Failed,
        }
    }
}

/// An account.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Account)]
#[serde(rename_all = "camelCase")]
pub struct AccountDto {
    /// 1 to 64 of `[a-z0-9-]`.
    pub name: String,
    /// Minimum length of generated device passwords.
    pub min_password_length: u16,
    /// Coupling of device connections whose coupling is `INHERITED`.
    pub default_coupling: CouplingDto,
    /// Creation time.
    pub created_on: DateTime<Utc>,
}

impl From<&Account> for AccountDto {
    fn from(a: &Account) -> Self {
        AccountDto {
            name: a.name.clone(),
            min_password_length: a.min_password_length,
            default_coupling: a.default_coupling.into(),
            created_on: a.created_on,
        }
    }
}

/// `GET /accounts`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountList {
    /// The accounts the caller may see, by name.
    pub items: Vec<AccountDto>,
}

/// A new account token, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenCreated {
    /// Token id (for revocation).
    pub id: String,
    /// The bearer token `fgt_ID_SECRET`; stored only as a hash.
    pub token: String,
}

/// The last refused CONNECT with wrong credentials.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Rejection)]
pub struct RejectionDto {
    /// When.
    pub at: DateTime<Utc>,
    /// Why (never a secret).
    pub reason: String,
}

/// A provision request as the API shows it. Write-only fields (`provisionPassword`,
/// `confirmProvisionPassword`) are never returned.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProvisionRequest)]
#[serde(rename_all = "camelCase")]
pub struct RequestDto {
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
    pub connection_coupling: CouplingDto,
    /// Grant `vpn:connect` and generate the VPN configuration.
    pub vpn_access: bool,
    /// Effective generated password length: max(20, requested, account minimum).
    pub password_length: u16,
    /// Additional device configuration (XML), as given.
    pub additional_configuration: Option<String>,
    /// Lifecycle status.
    pub status: StatusDto,
    /// `COMPLETED`, or `FAILED` with `expiresOn` passed.
    pub closed: bool,
    /// Creation time.
    pub created_on: DateTime<Utc>,
    /// Last modification (any field or status).
    pub modified_on: DateTime<Utc>,
    /// Last refusal with wrong credentials, or null.
    pub last_rejection: Option<RejectionDto>,
    /// Warnings about the input (reserved properties that will be replaced).
    pub warnings: Vec<String>,
    /// The activation key: only in the response that generated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation_key: Option<String>,
}

impl RequestDto {
    /// The view of `r` at `now` in `account`, without activation key.
    pub fn new(r: &ProvisionRequest, account: &Account, now: DateTime<Utc>) -> Self {
        RequestDto {
            id: r.id.clone(),
            account: r.account.clone(),
            client_id: r.client_id.clone(),
            provision_username: r.provision_username.clone(),
            broker_url: r.broker_url.clone(),
            activates_on: r.activates_on,
            expires_on: r.expires_on,
            generate_activation_key: r.activation_key_hash.is_some(),
            reserve_user: r.reserve_user,
            connection_coupling: r.connection_coupling.into(),
            vpn_access: r.vpn_access,
            password_length: r.effective_password_length(account.min_password_length),
            additional_configuration: r.additional_configuration.clone(),
            status: r.status.into(),
            closed: r.is_closed(now),
            created_on: r.created_on,
            modified_on: r.modified_on,
            last_rejection: r.last_rejection.as_ref().map(|x| RejectionDto {
                at: x.at,
                reason: x.reason.clone(),
            }),
            warnings: r.warnings.clone(),
            activation_key: None,
        }
    }

    /// The same view carrying the one-time activation key.
    pub fn with_key(mut self, key: Option<String>) -> Self {
        self.activation_key = key;
        self
    }
}

/// One page of provision requests.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestPage {
    /// The requests, in creation order.
    pub items: Vec<RequestDto>,
    /// Cursor for `after=` to get the next page; null on the last page.
    pub next: Option<String>,
}

/// `POST .../provision-requests/bulk` -> 201.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkCreated {
    /// The created requests, in input order (each with its `activationKey` if generated).
    pub created: Vec<RequestDto>,
}

/// Outcome of an execution.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[schema(as = Outcome)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutcomeDto {
    /// In progress.
    Running,
    /// The device acknowledged its reply.
    Completed,
    /// The exchange failed.
    Failed,
    /// The CONNECT was refused although the credentials matched.
    Rejected,
}

impl From<Outcome> for OutcomeDto {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Running => OutcomeDto::Running,
            Outcome::Completed => OutcomeDto::Completed,
            Outcome::Failed => OutcomeDto::Failed,
            Outcome::Rejected => OutcomeDto::Rejected,
        }
    }
}

/// Severity of a log line.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[schema(as = LogLevel)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LevelDto {
    /// A step.
    Info,
    /// Unusual, did not fail the exchange.
    Warn,
    /// The reason of a failure.
    Error,
}

impl From<LogLevel> for LevelDto {
    fn from(l: LogLevel) -> Self {
        match l {
            LogLevel::Info => LevelDto::Info,
            LogLevel::Warn => LevelDto::Warn,
            LogLevel::Error => LevelDto::Error,
        }
    }
}

/// One log line of an execution; never a secret.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LogLine)]
pub struct LogLineDto {
    /// When.
    pub at: DateTime<Utc>,
    /// Severity.
    pub level: LevelDto,
    /// What happened.
    pub message: String,
}

/// One attempt of a device against a request. `log` is present on the single-execution
/// endpoint only.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Execution)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionDto {
    /// Opaque id.
    pub id: String,
    /// Start time.
    pub started_on: DateTime<Utc>,
    /// End time, null while running.
    pub ended_on: Option<DateTime<Utc>>,
    /// Outcome.
    pub outcome: OutcomeDto,
    /// `3.1.1` or `5.0`.
    pub protocol: String,
    /// Peer address `ip:port`.
    pub peer: String,
    /// Every step, in order (single-execution endpoint only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<Vec<LogLineDto>>,
}

impl ExecutionDto {
    /// The view of `e`, with or without its log.
    pub fn new(e: &Execution, with_log: bool) -> Self {
        ExecutionDto {
            id: e.id.clone(),
            started_on: e.started_on,
            ended_on: e.ended_on,
            outcome: e.outcome.into(),
            protocol: e.protocol.clone(),
            peer: e.peer.clone(),
            log: with_log.then(|| {
                e.log
                    .iter()
                    .map(|l| LogLineDto {
                        at: l.at,
                        level: l.level.into(),
                        message: l.message.clone(),
                    })
                    .collect()
            }),
        }
    }
}

/// The executions of a request, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionList {
    /// Executions without their logs.
    pub items: Vec<ExecutionDto>,
}

/// A device user of a target account (never its hash).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User)]
#[serde(rename_all = "camelCase")]
pub struct UserDto {
    /// `CID@ACCOUNT`.
    pub username: String,
    /// e.g. `broker:connect`, `vpn:connect`.
    pub permissions: Vec<String>,
    /// The client ID the user is reserved for, or null.
    pub reserved_for: Option<String>,
    /// Creation time.
    pub created_on: DateTime<Utc>,
}

impl From<&DeviceUser> for UserDto {
    fn from(u: &DeviceUser) -> Self {
        UserDto {
            username: u.username.clone(),
            permissions: u.permissions.clone(),
            reserved_for: u.reserved_for.clone(),
            created_on: u.created_on,
        }
    }
}

/// `GET .../users`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    /// Users by username.
    pub items: Vec<UserDto>,
}

/// Connection state on the operational endpoint.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[schema(as = ConnectionStatus)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectionDto {
    /// Never seen on the operational endpoint.
    NeverConnected,
    /// A session is open.
    Connected,
    /// The last session ended.
    Disconnected,
}

impl From<ConnectionStatus> for ConnectionDto {
    fn from(s: ConnectionStatus) -> Self {
        match s {
            ConnectionStatus::NeverConnected => ConnectionDto::NeverConnected,
            ConnectionStatus::Connected => ConnectionDto::Connected,
            ConnectionStatus::Disconnected => ConnectionDto::Disconnected,
        }
    }
}

/// A device: its registry entry merged with its device-connection entry.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Device)]
#[serde(rename_all = "camelCase")]
pub struct DeviceDto {
    /// Client ID.
    pub client_id: String,
    /// Always `ENABLED` today.
    pub status: String,
    /// Connection state.
    pub connection: ConnectionDto,
    /// Coupling as requested (`INHERITED` = the account default).
    pub coupling: CouplingDto,
    /// The coupling in force (`INHERITED` resolved against the account default).
    pub effective_coupling: CouplingDto,
    /// The user reserved for this client ID, or null.
    pub reserved_user: Option<String>,
    /// When it was last provisioned.
    pub provisioned_on: DateTime<Utc>,
    /// The request that provisioned it.
    pub provision_request_id: String,
    /// Last successful operational CONNECT, or null.
    pub last_connected_on: Option<DateTime<Utc>>,
}

impl DeviceDto {
    /// Merges a registry entry with its connection entry.
    pub fn new(d: &Device, c: Option<&DeviceConnection>, account: &Account) -> Self {
        let coupling = c.map_or(Coupling::Inherited, |c| c.coupling);
        DeviceDto {
            client_id: d.client_id.clone(),
            status: d.status.clone(),
            connection: c
                .map_or(ConnectionStatus::NeverConnected, |c| c.status)
                .into(),
            coupling: coupling.into(),
            effective_coupling: coupling.resolve(account.default_coupling).into(),
            reserved_user: c.and_then(|c| c.reserved_user.clone()),
            provisioned_on: d.provisioned_on,
            provision_request_id: d.provision_request_id.clone(),
            last_connected_on: c.and_then(|c| c.last_connected_on),
        }
    }
}

/// `GET .../devices`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    /// Devices by client ID.
    pub items: Vec<DeviceDto>,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
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
    pub default_coupling: Option<CouplingDto>,
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
    pub connection_coupling: Option<CouplingDto>,
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
