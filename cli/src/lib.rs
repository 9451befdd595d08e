//! `fleetgate-cli`: the `fleetgate` admin commands (`request`, `executions`, `account`, `token`,
//! `user`, `device`, `backup`), which the `fleetgate` binary mounts next to `serve`.
//!
//! It owns the command line of those commands, the bulk-file readers (CSV, JSON lines) and the
//! human output (tables, `field  value` records; the API's JSON with `--json`). Every call goes
//! through `fleetgate-client`: this crate holds no HTTP of its own and never opens the
//! database. Failures are errors for the binary to print (exit 1), with the problem's detail
//! and field errors.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use fleetgate_client::Client;
use fleetgate_client::types::{
    Coupling, DeviceCommand as CommandBody, DeviceQuery, Endpoint, Items, Job, JobStatus,
    NewAccount, NewDevice, NewUser, Problem, ProvisionRequestInput, RequestQuery, Secret,
    UserPatch,
};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Options of every client command.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Client options")]
pub struct ClientArgs {
    /// Base URL of the admin API.
    #[arg(
        long,
        global = true,
        env = "FLEETGATE_API",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub api: String,
    /// Bearer token: the instance admin token or an account token (default: FLEETGATE_TOKEN,
    /// else FLEETGATE_ADMIN_TOKEN).
    #[arg(long, global = true, env = "FLEETGATE_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Target account of the command.
    #[arg(long, global = true, env = "FLEETGATE_ACCOUNT", value_name = "NAME")]
    pub account: Option<String>,
    /// PEM certificates to trust for an `https://` API instead of the system's WebPKI roots
    /// (the admin listener's self-signed certificate, or the CA that signed it).
    #[arg(long, global = true, env = "FLEETGATE_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

/// Commands that are clients of the admin API.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Provision requests of an account.
    Request {
        #[command(flatten)]
        /// Connection options.
        client: ClientArgs,
        #[command(subcommand)]
        /// What to do.
        command: RequestCommand,
    },
    /// Executions (provisioning attempts) of a request.
    Executions {
        #[command(flatten)]
        /// Connection options.
        client: ClientArgs,
        #[command(subcommand)]
        /// What to do.
        command: ExecutionsCommand,
    },
    /// Target accounts (admin token).
    Account {
        #[command(flatten)]
        /// Connection options.
        client: ClientArgs,
        #[command(subcommand)]
        /// What to do.
        command: AccountCommand,
    },
    /// API tokens of an account.
    Token {
        #[command(flatten)]
        /// Connection options.
        client: ClientArgs,
        #[command(subcommand)]
        /// What to do.
        command: TokenCommand,
    },
    /// Operational users of an account: account users (applications) and device users.
    User {
        #[command(flatten)]
        /// Connection options.
        client: ClientArgs,
        #[command(subcommand)]
        /// What to do.
        command: UserCommand,
    },
    /// Known broker endpoints (the brokers devices are provisioned to).
    Endpoint {
        #[command(flatten)]
        /// Connection options.
        client: ClientArgs,
        #[command(subcommand)]
        /// What to do.
        command: EndpointCommand,
    },
    /// Batch jobs of an account (API.md "Jobs").
    Job {
        #[command(flatten)]
        /// Connection options.
        client: ClientArgs,
        #[command(subcommand)]
        /// What to do.
        command: JobCommand,
    },
    /// Devices of an account.
    Device {
        #[command(flatten)]
        /// Connection options.
        client: ClientArgs,
        #[command(subcommand)]
        /// What to do.
        command: DeviceCommand,
    },
    /// Save a consistent backup of the whole store (admin token) into a new file (mode 0600);
    /// `fleetgate restore` puts it back into an empty data dir.
    Backup {
        #[command(flatten)]
        /// Connection options.
        client: ClientArgs,
        /// The file to write (must not exist).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
}

/// Coupling values of the CLI.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CouplingArg {
    /// The account's default.
    Inherited,
    /// Any user of the account not reserved to another device.
    Loose,
    /// Only the reserved user.
    Strict,
}

impl From<CouplingArg> for Coupling {
    fn from(c: CouplingArg) -> Self {
        match c {
            CouplingArg::Inherited => Coupling::Inherited,
            CouplingArg::Loose => Coupling::Loose,
            CouplingArg::Strict => Coupling::Strict,
        }
    }
}

/// Fields of a provision request given on the command line.
#[derive(Args, Clone, Debug, Default)]
pub struct RequestFields {
    /// The device's MQTT client ID.
    #[arg(long, value_name = "CID")]
    pub client_id: Option<String>,
    /// Provision username the device presents.
    #[arg(long = "username", value_name = "NAME")]
    pub provision_username: Option<String>,
    /// Provision password (write-only; also read from FLEETGATE_PROVISION_PASSWORD).
    #[arg(
        long = "password",
        env = "FLEETGATE_PROVISION_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub provision_password: Option<Secret>,
    /// Operational broker URL handed to the device.
    #[arg(long, value_name = "URL")]
    pub broker_url: Option<String>,
    /// Start of the activation window (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub activates_on: Option<String>,
    /// End of the activation window (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub expires_on: Option<String>,
    /// Require an activation key (printed once).
    #[arg(long)]
    pub activation_key: bool,
    /// No activation key (update).
    #[arg(long, conflicts_with = "activation_key")]
    pub no_activation_key: bool,
    /// Do not reserve the generated user for the client ID.
    #[arg(long)]
    pub no_reserve_user: bool,
    /// Reserve the generated user for the client ID (the default; for update).
    #[arg(long, conflicts_with = "no_reserve_user")]
    pub reserve_user: bool,
    /// Coupling of the device connection.
    #[arg(long, value_enum)]
    pub coupling: Option<CouplingArg>,
    /// Grant VPN access.
    #[arg(long)]
    pub vpn: bool,
    /// Revoke VPN access (update).
    #[arg(long, conflicts_with = "vpn")]
    pub no_vpn: bool,
    /// Length of the generated device password.
    #[arg(long, value_name = "N")]
    pub password_length: Option<u32>,
    /// Additional configuration: a Kura configuration XML file.
    #[arg(long, value_name = "FILE")]
    pub additional_configuration: Option<PathBuf>,
}

impl RequestFields {
    /// Writes the given fields over `body`.
    fn apply(&self, body: &mut ProvisionRequestInput) -> anyhow::Result<()> {
        let given = |v: &Option<String>, field: &mut Option<String>| {
            if v.is_some() {
                field.clone_from(v);
            }
        };
        given(&self.client_id, &mut body.client_id);
        given(&self.provision_username, &mut body.provision_username);
        given(&self.broker_url, &mut body.broker_url);
        given(&self.activates_on, &mut body.activates_on);
        given(&self.expires_on, &mut body.expires_on);
        if let Some(p) = &self.provision_password {
            body.provision_password = Some(p.clone());
            body.confirm_provision_password = Some(p.clone());
        }
        // A flag and its negation: clap lets at most one through.
        let switch = |on: bool, off: bool, field: &mut Option<bool>| {
            if on || off {
                *field = Some(on);
            }
        };
        switch(
            self.activation_key,
            self.no_activation_key,
            &mut body.generate_activation_key,
        );
        switch(
            self.reserve_user,
            self.no_reserve_user,
            &mut body.reserve_user,
        );
        switch(self.vpn, self.no_vpn, &mut body.vpn_access);
        if let Some(c) = self.coupling {
            body.connection_coupling = Some(c.into());
        }
        if let Some(n) = self.password_length {
            body.password_length = Some(n);
        }
        if let Some(path) = &self.additional_configuration {
            body.additional_configuration = Some(read_input(path)?);
        }
        Ok(())
    }
}

/// Input format of `request bulk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BulkFormat {
    /// Comma-separated values with a header row of API field names.
    Csv,
    /// One JSON request object per line.
    Jsonl,
}

/// `fleetgate request ...`.
#[derive(Subcommand, Debug)]
pub enum RequestCommand {
    /// Create a provision request.
    Create {
        #[command(flatten)]
        /// The request's fields.
        fields: RequestFields,
    },
    /// Create many requests from a CSV (header row of API field names) or JSON-lines file,
    /// 10,000 per call, each call all or nothing. A missing confirmProvisionPassword is taken
    /// from provisionPassword.
    Bulk {
        /// The file (`-` for standard input).
        file: PathBuf,
        /// Input format (default: from the extension, .csv or .jsonl/.ndjson).
        #[arg(long, value_enum)]
        format: Option<BulkFormat>,
    },
    /// List requests (every page unless --limit).
    List {
        /// Only this status (CREATED, RUNNING, COMPLETED, FAILED).
        #[arg(long)]
        status: Option<String>,
        /// Only this client ID.
        #[arg(long)]
        client_id: Option<String>,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show one request.
    Show {
        /// Request id.
        id: String,
    },
    /// Replace a CREATED request's fields: unspecified fields keep their current values; the
    /// provision password must be given again.
    Update {
        /// Request id.
        id: String,
        #[command(flatten)]
        /// Fields to change.
        fields: RequestFields,
    },
    /// Delete a request and its executions.
    Delete {
        /// Request id.
        id: String,
        /// Delete even while RUNNING.
        #[arg(long)]
        force: bool,
    },
    /// Print the configuration a device would receive now (passwords masked).
    Preview {
        /// Request id.
        id: String,
    },
}

/// `fleetgate executions ...`.
#[derive(Subcommand, Debug)]
pub enum ExecutionsCommand {
    /// List the executions of a request.
    List {
        /// Request id.
        request: String,
    },
    /// Show one execution and its log.
    Show {
        /// Request id.
        request: String,
        /// Execution id.
        execution: String,
    },
}

/// `fleetgate account ...`.
#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Create a target account.
    Create {
        /// Name: 1 to 64 of a-z 0-9 -.
        name: String,
        /// Minimum length of generated device passwords.
        #[arg(long, value_name = "N")]
        min_password_length: Option<u32>,
        /// Coupling used by INHERITED device connections.
        #[arg(long, value_enum)]
        default_coupling: Option<CouplingArg>,
    },
    /// List accounts.
    List,
    /// Show one account.
    Show {
        /// Account name.
        name: String,
    },
}

/// `fleetgate endpoint ...`.
#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// Add a known broker endpoint (admin token).
    Add {
        /// Name: 1 to 64 of a-z 0-9 -.
        name: String,
        /// The broker URL devices connect to, e.g. mqtts://mqtt.eu.example:8883.
        url: String,
        /// mosquitto, rabbitmq, emqx, vernemq or other.
        #[arg(long, default_value = "other")]
        kind: String,
    },
    /// List the known endpoints (`fleetgate` is this instance's own).
    List,
    /// Remove a known endpoint (admin token).
    Delete {
        /// Name.
        name: String,
    },
}

/// `fleetgate token ...`.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token for --account (printed once).
    Create,
    /// Revoke a token of --account.
    Revoke {
        /// Token id.
        id: String,
    },
}

/// `fleetgate user ...`.
#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account user NAME@ACCOUNT (without --password one is generated and printed
    /// once).
    Create {
        /// NAME: 1 to 64 of A-Z a-z 0-9 . _ -.
        name: String,
        /// A chosen password, at least 12 characters (also read from FLEETGATE_USER_PASSWORD).
        #[arg(
            long,
            env = "FLEETGATE_USER_PASSWORD",
            hide_env_values = true,
            value_name = "PASSWORD"
        )]
        password: Option<Secret>,
        /// A permission (repeat): broker:connect, data:read, data:write, device:read,
        /// device:manage.
        #[arg(long = "permission", value_name = "PERMISSION")]
        permissions: Vec<String>,
    },
    /// List the users of --account (device users and account users).
    List,
    /// Show one user.
    Show {
        /// NAME@ACCOUNT or CID@ACCOUNT.
        username: String,
    },
    /// Change a user: permissions, password and enabled (a device user: enabled only).
    Update {
        /// NAME@ACCOUNT or CID@ACCOUNT.
        username: String,
        /// Replace the permissions with these (repeat); --no-permissions removes them all.
        #[arg(long = "permission", value_name = "PERMISSION")]
        permissions: Vec<String>,
        /// Remove every permission.
        #[arg(long, conflicts_with = "permissions")]
        no_permissions: bool,
        /// A new chosen password (also read from FLEETGATE_USER_PASSWORD).
        #[arg(
            long,
            env = "FLEETGATE_USER_PASSWORD",
            hide_env_values = true,
            value_name = "PASSWORD"
        )]
        password: Option<Secret>,
        /// Enable the user.
        #[arg(long)]
        enable: bool,
        /// Disable the user (its open sessions end).
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
    },
    /// Delete an account user (its open sessions end).
    Delete {
        /// NAME@ACCOUNT.
        username: String,
    },
}

/// `fleetgate device ...`.
#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Register a device before provisioning.
    Create {
        /// Client ID.
        client_id: String,
        /// A name for people.
        #[arg(long, value_name = "NAME")]
        display_name: Option<String>,
    },
    /// List the devices of --account (every page).
    List {
        /// Only this connection state (NEVER_CONNECTED, CONNECTED, DISCONNECTED).
        #[arg(long, value_name = "STATE")]
        connection: Option<String>,
    },
    /// Show one device, with its BIRTH facts.
    Show {
        /// Client ID.
        client_id: String,
    },
    /// Delete a device with its device user and connection.
    Delete {
        /// Client ID.
        client_id: String,
        /// Delete even while CONNECTED (and disconnect it).
        #[arg(long)]
        force: bool,
    },
    /// A connected device's configuration, over Kura's CONF-V1.
    Config {
        #[command(subcommand)]
        /// What to do.
        command: ConfigCommand,
    },
    /// Move a Kura device to another account (`--to-account`, with the fields of the provision
    /// request made for it there) or to another Fleetgate instance (`--to-instance`, whose
    /// provision request for it exists); `--status` shows its latest move and log.
    Move {
        /// Client ID.
        #[arg(value_name = "CLIENT_ID")]
        device: String,
        /// The target account of this instance.
        #[arg(long, value_name = "ACCOUNT", conflicts_with_all = ["to_instance", "status"])]
        to_account: Option<String>,
        /// The other instance's provisioning endpoint as devices reach it (mqtt://HOST:PORT).
        #[arg(long, value_name = "URL", conflicts_with = "status")]
        to_instance: Option<String>,
        /// The other instance's provisioning account.
        #[arg(
            long,
            value_name = "NAME",
            default_value = "provision",
            requires = "to_instance"
        )]
        instance_account: String,
        /// Show the latest move instead of starting one.
        #[arg(long)]
        status: bool,
        /// The provision request fields (--username and --password also name the other
        /// instance's provision credentials).
        #[command(flatten)]
        request: Box<RequestFields>,
    },
    /// Run a command on a connected device (Kura's CMD-V1); prints its output and fails when
    /// it exits non-zero.
    Exec {
        /// Client ID.
        client_id: String,
        /// Seconds it may run.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u32>,
        /// The command and its arguments (after `--` when they start with `-`).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

/// `fleetgate job ...`.
#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Create a job from its JSON body (API.md "Jobs": name, targets, steps, schedule,
    /// maxAttempts, stepTimeout).
    Create {
        /// The JSON file; `-` reads standard input.
        file: PathBuf,
    },
    /// List the jobs of --account.
    List,
    /// Show one job with its targets' counts per status.
    Show {
        /// Job id.
        id: String,
    },
    /// Delete a job and its executions (steps in flight finish on their devices).
    Delete {
        /// Job id.
        id: String,
    },
    /// Add and remove targets.
    Targets {
        /// Job id.
        id: String,
        /// Client IDs to add.
        #[arg(long, value_delimiter = ',', value_name = "CID,...")]
        add: Vec<String>,
        /// Client IDs to remove.
        #[arg(long, value_delimiter = ',', value_name = "CID,...")]
        remove: Vec<String>,
    },
    /// The job's executions, one per attempt per target (with --json: their logs).
    Executions {
        /// Job id.
        id: String,
        /// Only this target's.
        #[arg(long, value_name = "CID")]
        client_id: Option<String>,
        /// Only those in this status (PENDING, RUNNING, COMPLETED, FAILED).
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
    },
}

/// `fleetgate device config ...`.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the device's configuration (Kura snapshot XML).
    Get {
        /// Client ID.
        client_id: String,
        /// Only this configuration.
        #[arg(long, value_name = "PID")]
        pid: Option<String>,
    },
    /// Send a configuration document (seed or snapshot form) to the device.
    Put {
        /// Client ID.
        client_id: String,
        /// The XML file; `-` reads standard input.
        file: PathBuf,
        /// The document holds only this configuration.
        #[arg(long, value_name = "PID")]
        pid: Option<String>,
    },
}

/// Runs a client command, printing its output on stdout.
pub fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    let mut out = String::new();
    let result = match cmd {
        ClientCommand::Request { client, command } => {
            connect(&client).and_then(|api| request(&api, &client, command, &mut out))
        }
        ClientCommand::Executions { client, command } => {
            connect(&client).and_then(|api| executions(&api, &client, command, &mut out))
        }
        ClientCommand::Account { client, command } => {
            connect(&client).and_then(|api| account(&api, &client, command, &mut out))
        }
        ClientCommand::Token { client, command } => {
            connect(&client).and_then(|api| token(&api, &client, command, &mut out))
        }
        ClientCommand::User { client, command } => {
            connect(&client).and_then(|api| user(&api, &client, command, &mut out))
        }
        ClientCommand::Endpoint { client, command } => {
            connect(&client).and_then(|api| endpoint(&api, &client, command, &mut out))
        }
        ClientCommand::Backup { client, to } => connect(&client).and_then(|api| {
            let size = api.backup(&to)?;
            writeln!(out, "backup of {size} bytes written to {}", to.display())?;
            Ok(())
        }),
        ClientCommand::Device { client, command } => {
            connect(&client).and_then(|api| device(&api, &client, command, &mut out))
        }
        ClientCommand::Job { client, command } => {
            connect(&client).and_then(|api| job(&api, &client, command, &mut out))
        }
    };
    result.map_err(|e| match e.downcast::<fleetgate_client::Error>() {
        Ok(e) => api_error(e),
        Err(e) => e,
    })?;
    print!("{out}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The API

/// The client of the command's instance: `--token`, else `FLEETGATE_ADMIN_TOKEN`; trusting
/// `--ca` for an `https://` API when given.
fn connect(c: &ClientArgs) -> anyhow::Result<Client> {
    let token = c
        .token
        .as_ref()
        .map(|t| t.expose().to_string())
        .or_else(|| std::env::var("FLEETGATE_ADMIN_TOKEN").ok())
        .filter(|t| !t.is_empty());
    let client = Client::new(&c.api, token.as_deref());
    match &c.ca {
        Some(path) => {
            let pem =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            client
                .with_ca_pem(&pem)
                .with_context(|| format!("--ca {}", path.display()))
        }
        None => Ok(client),
    }
}

/// The text of a problem answer, with a hint on a 401 (the usual cause: no token given).
fn problem_text(status: u16, problem: &Problem, item: &dyn Fn(usize) -> String) -> String {
    let mut msg = problem.describe(status, item);
    if status == 401 {
        msg.push_str("\n  (pass --token or set FLEETGATE_TOKEN)");
    }
    msg
}

/// A failed call as the command's error.
fn api_error(e: fleetgate_client::Error) -> anyhow::Error {
    match e {
        fleetgate_client::Error::Problem { status, problem } => {
            anyhow!(problem_text(status, &problem, &|i| format!("row {i}")))
        }
        other => anyhow::Error::new(other),
    }
}

fn account_of(c: &ClientArgs) -> anyhow::Result<String> {
    c.account
        .clone()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| anyhow!("--account (or FLEETGATE_ACCOUNT) is required"))
}

/// A typed answer as JSON, for the renderers (which pick fields by their API names).
fn value(v: &impl Serialize) -> anyhow::Result<Value> {
    serde_json::to_value(v).context("cannot render the answer")
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

// ---------------------------------------------------------------------------------------------
// Human output

/// A plain-text table with aligned columns.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let _ = write!(s, "{c:<w$}  ", w = widths[i]);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// A JSON value as a table cell (`-` for null).
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn cells(v: &Value, fields: &[&str]) -> Vec<String> {
    fields.iter().map(|f| cell(&v[*f])).collect()
}

/// `key: value` lines of an object, in the given order, then any other keys.
fn details(v: &Value, order: &[&str]) -> String {
    let mut out = String::new();
    let Some(obj) = v.as_object() else {
        return pretty(v);
    };
    let width = obj.keys().map(String::len).max().unwrap_or(0);
    let mut keys: Vec<&str> = order
        .iter()
        .copied()
        .filter(|k| obj.contains_key(*k))
        .collect();
    keys.extend(
        obj.keys()
            .map(String::as_str)
            .filter(|k| !order.contains(k)),
    );
    for k in keys {
        let value = match &obj[k] {
            Value::String(s) if s.contains('\n') => format!("\n{s}"),
            Value::Object(_) => obj[k].to_string(),
            other => cell(other),
        };
        let _ = writeln!(out, "{k:<width$}  {value}");
    }
    out
}

const REQUEST_ORDER: &[&str] = &[
    "id",
    "account",
    "clientId",
    "status",
    "closed",
    "provisionUsername",
    "brokerUrl",
    "activatesOn",
    "expiresOn",
    "generateActivationKey",
    "activationKey",
    "reserveUser",
    "connectionCoupling",
    "vpnAccess",
    "passwordLength",
    "createdOn",
    "modifiedOn",
    "lastRejection",
    "warnings",
    "additionalConfiguration",
];

const REQUEST_COLUMNS: &[&str] = &[
    "id",
    "clientId",
    "status",
    "closed",
    "provisionUsername",
    "activatesOn",
    "expiresOn",
];

fn show_request(v: &Value, json_out: bool) -> String {
    if json_out {
        return pretty(v);
    }
    let mut out = details(v, REQUEST_ORDER);
    if v["activationKey"].is_string() {
        out.push_str("\nThe activation key is shown only this once: hand it to the device now.\n");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Bulk input

/// Types a CSV cell like the API expects: booleans, integers for `passwordLength`, nothing for
/// an empty cell.
fn typed_cell(field: &str, raw: &str) -> Option<Value> {
    if raw.is_empty() {
        return None;
    }
    let lower = raw.to_ascii_lowercase();
    Some(match field {
        "generateActivationKey" | "reserveUser" | "vpnAccess" => match lower.as_str() {
            "true" | "yes" | "1" => Value::Bool(true),
            "false" | "no" | "0" => Value::Bool(false),
            _ => Value::String(raw.to_string()),
        },
        "passwordLength" => raw
            .parse::<i64>()
            .map_or_else(|_| Value::String(raw.to_string()), Value::from),
        _ => Value::String(raw.to_string()),
    })
}

/// One bulk row with where it came from.
struct Row {
    line: usize,
    body: Value,
}

fn fill_confirmation(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut()
        && !o.contains_key("confirmProvisionPassword")
        && let Some(p) = o.get("provisionPassword").cloned()
    {
        o.insert("confirmProvisionPassword".into(), p);
    }
    v
}

fn read_csv(text: &str) -> anyhow::Result<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .context("cannot read the CSV header")?
        .clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.context("invalid CSV")?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let mut obj = Map::new();
        for (h, raw) in headers.iter().zip(record.iter()) {
            if let Some(v) = typed_cell(h, raw) {
                obj.insert(h.to_string(), v);
            }
        }
        if obj.is_empty() {
            continue;
        }
        rows.push(Row {
            line,
            body: fill_confirmation(Value::Object(obj)),
        });
    }
    Ok(rows)
}

fn read_jsonl(text: &str) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let body: Value = serde_json::from_str(line)
            .with_context(|| format!("line {}: not a JSON object", i + 1))?;
        if !body.is_object() {
            bail!("line {}: not a JSON object", i + 1);
        }
        rows.push(Row {
            line: i + 1,
            body: fill_confirmation(body),
        });
    }
    Ok(rows)
}

fn bulk_format(file: &Path, format: Option<BulkFormat>) -> anyhow::Result<BulkFormat> {
    if let Some(f) = format {
        return Ok(f);
    }
    match file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => Ok(BulkFormat::Csv),
        Some("jsonl" | "ndjson" | "json") => Ok(BulkFormat::Jsonl),
        _ => bail!(
            "cannot tell the format of {}: pass --format csv|jsonl",
            file.display()
        ),
    }
}

/// Reads the rows of a bulk file.
/// The text of `file`, or of standard input for `-`.
fn read_input(file: &Path) -> anyhow::Result<String> {
    if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
    }
}

fn read_bulk(file: &Path, format: Option<BulkFormat>) -> anyhow::Result<Vec<Row>> {
    let format = if file == Path::new("-") {
        format.ok_or_else(|| anyhow!("reading standard input needs --format csv|jsonl"))?
    } else {
        bulk_format(file, format)?
    };
    let text = read_input(file)?;
    let rows = match format {
        BulkFormat::Csv => read_csv(&text)?,
        BulkFormat::Jsonl => read_jsonl(&text)?,
    };
    if rows.is_empty() {
        bail!("{} holds no requests", file.display());
    }
    Ok(rows)
}

/// A failed bulk creation as the command's error: the problem's item indexes become the rows
/// and lines of the file, and the message says what earlier calls created.
fn bulk_error(e: fleetgate_client::Error, rows: &[Row]) -> anyhow::Error {
    let fleetgate_client::Error::Bulk {
        first,
        created,
        source,
        ..
    } = e
    else {
        return api_error(e);
    };
    let mut msg = match *source {
        fleetgate_client::Error::Problem { status, problem } => {
            problem_text(status, &problem, &|i| match rows.get(first + i) {
                Some(row) => format!("row {}, line {}", first + i, row.line),
                None => format!("row {i}"),
            })
        }
        other => format!("{:#}", anyhow::Error::new(other)),
    };
    if created > 0 {
        let _ = write!(
            msg,
            "\n{created} requests of earlier calls were created; this call and later ones were not"
        );
    } else {
        msg.push_str("\nnothing was created");
    }
    anyhow!(msg)
}

// ---------------------------------------------------------------------------------------------
// Commands

fn request(
    api: &Client,
    c: &ClientArgs,
    cmd: RequestCommand,
    out: &mut String,
) -> anyhow::Result<()> {
    let account = account_of(c)?;
    match cmd {
        RequestCommand::Create { fields } => {
            let mut body = ProvisionRequestInput::default();
            fields.apply(&mut body)?;
            let created = api.create_request(&account, &body)?;
            out.push_str(&show_request(&value(&created)?, c.json));
        }
        RequestCommand::Bulk { file, format } => {
            let rows = read_bulk(&file, format)?;
            // The rows go as they were read, so the server names each wrong field.
            let bodies: Vec<&Value> = rows.iter().map(|r| &r.body).collect();
            let created = api
                .bulk_create(&account, &bodies, fleetgate_client::MAX_BULK_ITEMS)
                .map_err(|e| bulk_error(e, &rows))?;
            let created = created
                .iter()
                .map(value)
                .collect::<anyhow::Result<Vec<_>>>()?;
            if c.json {
                out.push_str(&pretty(&json!({ "created": created })));
            } else {
                let with_keys = created.iter().any(|v| v["activationKey"].is_string());
                let mut cols = vec!["id", "clientId", "status"];
                if with_keys {
                    cols.push("activationKey");
                }
                let rows: Vec<Vec<String>> = created.iter().map(|v| cells(v, &cols)).collect();
                out.push_str(&table(&cols, &rows));
                let _ = writeln!(out, "{} requests created", created.len());
                if with_keys {
                    out.push_str("Activation keys are shown only this once.\n");
                }
            }
        }
        RequestCommand::List {
            status,
            client_id,
            limit,
        } => {
            let query = RequestQuery {
                status,
                client_id,
                ..RequestQuery::default()
            };
            let items = api.all_requests(&account, &query, limit)?;
            out.push_str(&listing(&value(&Items { items })?, REQUEST_COLUMNS, c.json));
        }
        RequestCommand::Show { id } => {
            let shown = api.get_request(&account, &id)?;
            out.push_str(&show_request(&value(&shown)?, c.json));
        }
        RequestCommand::Update { id, fields } => {
            let mut body = api.get_request(&account, &id)?.to_input();
            fields.apply(&mut body)?;
            if body.provision_password.is_none() {
                bail!("--password is required: the provision password is write-only");
            }
            let updated = api.update_request(&account, &id, &body)?;
            out.push_str(&show_request(&value(&updated)?, c.json));
        }
        RequestCommand::Delete { id, force } => {
            api.delete_request(&account, &id, force)?;
            if c.json {
                out.push_str(&pretty(&json!({ "deleted": id })));
            } else {
                let _ = writeln!(out, "deleted {id}");
            }
        }
        RequestCommand::Preview { id } => {
            let xml = api.configuration_preview(&account, &id)?;
            out.push_str(&xml);
            if !xml.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    Ok(())
}

fn executions(
    api: &Client,
    c: &ClientArgs,
    cmd: ExecutionsCommand,
    out: &mut String,
) -> anyhow::Result<()> {
    let account = account_of(c)?;
    let cols = ["id", "outcome", "protocol", "peer", "startedOn", "endedOn"];
    match cmd {
        ExecutionsCommand::List { request } => {
            let items = api.list_executions(&account, &request)?;
            out.push_str(&listing(&value(&Items { items })?, &cols, c.json));
        }
        ExecutionsCommand::Show { request, execution } => {
            let mut shown = api.get_execution(&account, &request, &execution)?;
            if c.json {
                out.push_str(&pretty(&value(&shown)?));
            } else {
                let log = shown.log.take().unwrap_or_default();
                out.push_str(&details(&value(&shown)?, &cols));
                out.push_str("\nlog:\n");
                for l in log {
                    let l = value(&l)?;
                    let _ = writeln!(
                        out,
                        "{}  {:<5}  {}",
                        cell(&l["at"]),
                        cell(&l["level"]),
                        cell(&l["message"])
                    );
                }
            }
        }
    }
    Ok(())
}

fn account(
    api: &Client,
    c: &ClientArgs,
    cmd: AccountCommand,
    out: &mut String,
) -> anyhow::Result<()> {
    let cols = ["name", "minPasswordLength", "defaultCoupling", "createdOn"];
    match cmd {
        AccountCommand::Create {
            name,
            min_password_length,
            default_coupling,
        } => {
            let created = api.create_account(&NewAccount {
                name,
                min_password_length,
                default_coupling: default_coupling.map(Coupling::from),
            })?;
            out.push_str(&one(&value(&created)?, &cols, c.json));
        }
        AccountCommand::List => {
            let items = api.list_accounts()?;
            out.push_str(&listing(&value(&Items { items })?, &cols, c.json));
        }
        AccountCommand::Show { name } => {
            let shown = api.get_account(&name)?;
            out.push_str(&one(&value(&shown)?, &cols, c.json));
        }
    }
    Ok(())
}

fn endpoint(
    api: &Client,
    c: &ClientArgs,
    cmd: EndpointCommand,
    out: &mut String,
) -> anyhow::Result<()> {
    let cols = ["name", "kind", "url"];
    match cmd {
        EndpointCommand::Add { name, url, kind } => {
            let added = api.create_endpoint(&Endpoint { name, url, kind })?;
            out.push_str(&one(&value(&added)?, &cols, c.json));
        }
        EndpointCommand::List => {
            let items = api.list_endpoints()?;
            out.push_str(&listing(&value(&Items { items })?, &cols, c.json));
        }
        EndpointCommand::Delete { name } => {
            api.delete_endpoint(&name)?;
            out.push_str(&format!("endpoint {name} removed\n"));
        }
    }
    Ok(())
}

/// A list response (`{"items": [...]}`): raw JSON, or a table of `cols`.
fn listing(v: &Value, cols: &[&str], json: bool) -> String {
    if json {
        return pretty(v);
    }
    let rows: Vec<Vec<String>> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| cells(item, cols))
        .collect();
    table(cols, &rows)
}

/// A single record: raw JSON, or one `field: value` line per column.
fn one(v: &Value, cols: &[&str], json: bool) -> String {
    if json { pretty(v) } else { details(v, cols) }
}

fn token(api: &Client, c: &ClientArgs, cmd: TokenCommand, out: &mut String) -> anyhow::Result<()> {
    let account = account_of(c)?;
    match cmd {
        TokenCommand::Create => {
            let created = value(&api.create_token(&account)?)?;
            if c.json {
                out.push_str(&pretty(&created));
            } else {
                out.push_str(&details(&created, &["id", "token"]));
                out.push_str("\nThe token is shown only this once: store it now.\n");
            }
        }
        TokenCommand::Revoke { id } => {
            api.delete_token(&account, &id)?;
            if c.json {
                out.push_str(&pretty(&json!({ "revoked": id })));
            } else {
                let _ = writeln!(out, "revoked {id}");
            }
        }
    }
    Ok(())
}

fn user(api: &Client, c: &ClientArgs, cmd: UserCommand, out: &mut String) -> anyhow::Result<()> {
    let account = account_of(c)?;
    let cols = [
        "username",
        "kind",
        "permissions",
        "reservedFor",
        "enabled",
        "createdOn",
    ];
    match cmd {
        UserCommand::Create {
            name,
            password,
            permissions,
        } => {
            let created = value(&api.create_user(
                &account,
                &NewUser {
                    name: Some(name),
                    password,
                    permissions: Some(permissions),
                },
            )?)?;
            if c.json {
                out.push_str(&pretty(&created));
            } else {
                out.push_str(&details(&created, &cols));
                if created.get("password").is_some() {
                    out.push_str(
                        "\nThe generated password is shown only this once: store it now.\n",
                    );
                }
            }
        }
        UserCommand::List => {
            let items = api.list_users(&account)?;
            out.push_str(&listing(&value(&Items { items })?, &cols, c.json));
        }
        UserCommand::Show { username } => {
            let shown = api.get_user(&account, &username)?;
            out.push_str(&one(&value(&shown)?, &cols, c.json));
        }
        UserCommand::Update {
            username,
            permissions,
            no_permissions,
            password,
            enable,
            disable,
        } => {
            let patch = UserPatch {
                permissions: (no_permissions || !permissions.is_empty()).then_some(permissions),
                password,
                enabled: if enable {
                    Some(true)
                } else if disable {
                    Some(false)
                } else {
                    None
                },
            };
            if patch == UserPatch::default() {
                bail!(
                    "nothing to change: give --permission, --no-permissions, --password, --enable or --disable"
                );
            }
            let changed = api.update_user(&account, &username, &patch)?;
            out.push_str(&one(&value(&changed)?, &cols, c.json));
        }
        UserCommand::Delete { username } => {
            api.delete_user(&account, &username)?;
            if c.json {
                out.push_str(&pretty(&json!({ "deleted": username })));
            } else {
                let _ = writeln!(out, "deleted {username}");
            }
        }
    }
    Ok(())
}

fn job(api: &Client, c: &ClientArgs, cmd: JobCommand, out: &mut String) -> anyhow::Result<()> {
    let account = account_of(c)?;
    let cols = [
        "id",
        "name",
        "schedule",
        "run",
        "targetCounts",
        "nextFireOn",
    ];
    let job_view = |job: &Job| -> anyhow::Result<Value> {
        let mut v = value(job)?;
        // One cell each: the trigger, and the counts as STATUS=N.
        v["schedule"] = v["schedule"]["trigger"].clone();
        let counts = &job.target_counts;
        v["targetCounts"] = Value::from(format!(
            "PENDING={} RUNNING={} COMPLETED={} FAILED={}",
            counts.pending, counts.running, counts.completed, counts.failed
        ));
        Ok(v)
    };
    match cmd {
        JobCommand::Create { file } => {
            let body: Value = serde_json::from_str(&read_input(&file)?)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let created = api.create_job(&account, &body)?;
            out.push_str(&if c.json {
                pretty(&value(&created)?)
            } else {
                one(&job_view(&created)?, &cols, false)
            });
        }
        JobCommand::List => {
            let jobs = api.list_jobs(&account)?;
            if c.json {
                out.push_str(&pretty(&value(&Items { items: jobs })?));
            } else {
                let items = jobs
                    .iter()
                    .map(job_view)
                    .collect::<anyhow::Result<Vec<_>>>()?;
                out.push_str(&listing(&json!({ "items": items }), &cols, false));
            }
        }
        JobCommand::Show { id } => {
            let shown = api.get_job(&account, &id)?;
            out.push_str(&if c.json {
                pretty(&value(&shown)?)
            } else {
                let mut all = cols.to_vec();
                all.extend([
                    "maxAttempts",
                    "stepTimeout",
                    "createdOn",
                    "firedOn",
                    "targets",
                ]);
                one(&job_view(&shown)?, &all, false)
            });
        }
        JobCommand::Delete { id } => {
            api.delete_job(&account, &id)?;
            if c.json {
                out.push_str(&pretty(&json!({ "deleted": id })));
            } else {
                let _ = writeln!(out, "deleted job {id}");
            }
        }
        JobCommand::Targets { id, add, remove } => {
            let changed = api.change_job_targets(&account, &id, &add, &remove)?;
            out.push_str(&if c.json {
                pretty(&value(&changed)?)
            } else {
                one(
                    &job_view(&changed)?,
                    &["id", "targets", "targetCounts"],
                    false,
                )
            });
        }
        JobCommand::Executions {
            id,
            client_id,
            status,
        } => {
            let status = status
                .map(|s| {
                    serde_json::from_value::<JobStatus>(Value::from(s.clone())).map_err(|_| {
                        anyhow!("--status {s}: must be PENDING, RUNNING, COMPLETED or FAILED")
                    })
                })
                .transpose()?;
            let items = api.job_executions(&account, &id, client_id.as_deref(), status)?;
            out.push_str(&listing(
                &value(&Items { items })?,
                &[
                    "clientId",
                    "status",
                    "attempt",
                    "run",
                    "startedOn",
                    "endedOn",
                ],
                c.json,
            ));
        }
    }
    Ok(())
}

fn device(
    api: &Client,
    c: &ClientArgs,
    cmd: DeviceCommand,
    out: &mut String,
) -> anyhow::Result<()> {
    let account = account_of(c)?;
    let cols = [
        "clientId",
        "status",
        "connection",
        "coupling",
        "reservedUser",
        "provisionedOn",
        "lastConnectedOn",
    ];
    match cmd {
        DeviceCommand::Create {
            client_id,
            display_name,
        } => {
            let created = api.create_device(
                &account,
                &NewDevice {
                    client_id: Some(client_id),
                    display_name,
                },
            )?;
            out.push_str(&one(&value(&created)?, &cols, c.json));
        }
        DeviceCommand::List { connection } => {
            let items = api.all_devices(
                &account,
                &DeviceQuery {
                    connection,
                    ..DeviceQuery::default()
                },
            )?;
            out.push_str(&listing(&value(&Items { items })?, &cols, c.json));
        }
        DeviceCommand::Show { client_id } => {
            let shown = api.get_device(&account, &client_id)?;
            let mut all = cols.to_vec();
            all.extend([
                "displayName",
                "movedTo",
                "peer",
                "protocol",
                "provisionRequestId",
                "birthOn",
                "birth",
            ]);
            out.push_str(&one(&value(&shown)?, &all, c.json));
        }
        DeviceCommand::Delete { client_id, force } => {
            api.delete_device(&account, &client_id, force)?;
            if c.json {
                out.push_str(&pretty(&json!({ "deleted": client_id })));
            } else {
                let _ = writeln!(out, "deleted {client_id}");
            }
        }
        DeviceCommand::Config {
            command: ConfigCommand::Get { client_id, pid },
        } => {
            out.push_str(&api.device_configuration(&account, &client_id, pid.as_deref())?);
            out.push('\n');
        }
        DeviceCommand::Config {
            command:
                ConfigCommand::Put {
                    client_id,
                    file,
                    pid,
                },
        } => {
            let xml = read_input(&file)?;
            api.put_device_configuration(&account, &client_id, pid.as_deref(), xml)?;
            let _ = writeln!(out, "configuration applied on {client_id}");
        }
        DeviceCommand::Move {
            device: client_id,
            to_account,
            to_instance,
            instance_account,
            status,
            request,
        } => {
            let moved = if status {
                api.device_move(&account, &client_id)?
            } else {
                let body = move_body(to_account, to_instance, instance_account, &request)?;
                api.move_device(&account, &client_id, &body)?
            };
            let mut v = value(&moved)?;
            if !c.json
                && let Some(log) = v.as_object_mut().and_then(|o| o.remove("log"))
            {
                out.push_str(&one(
                    &v,
                    &["id", "status", "provisionRequestId", "targetAccount"],
                    false,
                ));
                for line in log.as_array().into_iter().flatten() {
                    let at = line["at"].as_str().unwrap_or_default();
                    let message = line["message"].as_str().unwrap_or_default();
                    let _ = writeln!(out, "{at}  {message}");
                }
            } else {
                out.push_str(&one(
                    &v,
                    &["id", "status", "provisionRequestId", "targetAccount"],
                    c.json,
                ));
            }
        }
        DeviceCommand::Exec {
            client_id,
            timeout,
            mut command,
        } => {
            let body = CommandBody {
                command: command.remove(0),
                arguments: command,
                timeout,
            };
            let ran = api.run_command(&account, &client_id, &body)?;
            if c.json {
                out.push_str(&pretty(&value(&ran)?));
            } else {
                out.push_str(&ran.stdout);
                eprint!("{}", ran.stderr);
            }
            match ran.exit_code {
                Some(0) => {}
                Some(code) => anyhow::bail!("the command exited with {code}"),
                None if ran.timed_out => anyhow::bail!("the command timed out"),
                None => {}
            }
        }
    }
    Ok(())
}

/// The API body of `device move`: the target account with the provision request fields, or
/// the target instance with the provision credentials there.
fn move_body(
    to_account: Option<String>,
    to_instance: Option<String>,
    instance_account: String,
    request: &RequestFields,
) -> anyhow::Result<Value> {
    match (to_account, to_instance) {
        (Some(target), None) => {
            let mut input = ProvisionRequestInput::default();
            request.apply(&mut input)?;
            let mut body = value(&input)?;
            body["targetAccount"] = Value::String(target);
            Ok(body)
        }
        (None, Some(url)) => Ok(json!({"targetInstance": {
            "provisioningUrl": url,
            "provisioningAccount": instance_account,
            "username": request.provision_username,
            "password": request.provision_password.as_ref().map(Secret::expose),
        }})),
        _ => anyhow::bail!("give --to-account or --to-instance (or --status)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_typed() {
        let rows = read_csv(
            "clientId,provisionUsername,provisionPassword,brokerUrl,vpnAccess,passwordLength,expiresOn\n\
             dev-1,fleet,secret-pass,mqtt://h,true,32,\n\
             dev-2,fleet,secret-pass,mqtt://h,no,,2030-01-01T00:00:00Z\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].body["vpnAccess"], json!(true));
        assert_eq!(rows[0].body["passwordLength"], json!(32));
        assert!(rows[0].body.get("expiresOn").is_none());
        assert_eq!(rows[0].body["confirmProvisionPassword"], "secret-pass");
        assert_eq!(rows[1].body["vpnAccess"], json!(false));
        assert_eq!(rows[1].body["expiresOn"], "2030-01-01T00:00:00Z");
    }

    #[test]
    fn jsonl_rows_keep_their_lines() {
        let rows = read_jsonl("{\"clientId\":\"a\"}\n\n{\"clientId\":\"b\",\"provisionPassword\":\"p\",\"confirmProvisionPassword\":\"q\"}\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].line, 3);
        assert_eq!(rows[1].body["confirmProvisionPassword"], "q");
        assert!(read_jsonl("[1]\n").is_err());
        assert!(read_jsonl("{oops\n").is_err());
    }

    #[test]
    fn formats_from_extensions() {
        assert_eq!(
            bulk_format(Path::new("a.CSV"), None).unwrap(),
            BulkFormat::Csv
        );
        assert_eq!(
            bulk_format(Path::new("a.jsonl"), None).unwrap(),
            BulkFormat::Jsonl
        );
        assert_eq!(
            bulk_format(Path::new("a.txt"), Some(BulkFormat::Csv)).unwrap(),
            BulkFormat::Csv
        );
        assert!(bulk_format(Path::new("a.txt"), None).is_err());
    }

    #[test]
    fn problems_name_file_rows_and_hint_at_tokens() {
        use fleetgate_client::Error;
        use fleetgate_client::types::FieldError;
        let problem = |status: u16| Error::Problem {
            status,
            problem: Problem {
                title: "Unprocessable Entity".into(),
                detail: "validation failed".into(),
                errors: vec![FieldError {
                    index: Some(1),
                    field: "brokerUrl".into(),
                    message: "bad".into(),
                }],
                ..Problem::default()
            },
        };
        // Lines 1, 3 and 4 hold rows 0, 1 and 2; the failed call held rows 1 and 2.
        let rows = read_jsonl("{}\n\n{}\n{}\n").unwrap();
        let bulk = |created: usize, source: Error| Error::Bulk {
            first: 1,
            end: 3,
            created,
            source: Box::new(source),
        };
        assert_eq!(
            bulk_error(bulk(0, problem(422)), &rows).to_string(),
            "HTTP 422 Unprocessable Entity: validation failed\n  [row 2, line 4] brokerUrl: bad\nnothing was created"
        );
        assert!(
            bulk_error(bulk(1, problem(422)), &rows)
                .to_string()
                .ends_with(
                    "\n1 requests of earlier calls were created; this call and later ones were not"
                )
        );
        assert_eq!(
            api_error(problem(422)).to_string(),
            "HTTP 422 Unprocessable Entity: validation failed\n  [row 1] brokerUrl: bad"
        );
        assert!(
            api_error(problem(401))
                .to_string()
                .ends_with("\n  (pass --token or set FLEETGATE_TOKEN)")
        );
        let gateway = Error::Status {
            status: 502,
            body: "gateway".into(),
        };
        assert_eq!(api_error(gateway).to_string(), "HTTP 502: gateway");
    }

    #[test]
    fn flags_fill_the_request_body() {
        let fields = RequestFields {
            client_id: Some("dev-1".into()),
            provision_password: Some("secret-pass".into()),
            no_activation_key: true,
            vpn: true,
            coupling: Some(CouplingArg::Strict),
            ..RequestFields::default()
        };
        let mut body = ProvisionRequestInput {
            client_id: Some("old".into()),
            broker_url: Some("mqtt://h".into()),
            generate_activation_key: Some(true),
            ..ProvisionRequestInput::default()
        };
        fields.apply(&mut body).unwrap();
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({
                "clientId": "dev-1", "brokerUrl": "mqtt://h", "generateActivationKey": false,
                "vpnAccess": true, "connectionCoupling": "STRICT",
                "provisionPassword": "secret-pass", "confirmProvisionPassword": "secret-pass"
            })
        );
        assert!(!format!("{fields:?}").contains("secret-pass"));
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["id", "status"],
            &[
                vec!["1".into(), "CREATED".into()],
                vec!["22".into(), "-".into()],
            ],
        );
        assert_eq!(t, "id  status\n1   CREATED\n22  -\n");
    }
}
