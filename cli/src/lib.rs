//! The command-line client of the admin API (`fleetgate request ...`, `fleetgate account ...`,
//! ...). It only speaks HTTP to a running instance (ureq, blocking): it never opens the
//! database. Output is a human-readable table by default, the API's JSON with `--json`.
//! Failures exit non-zero with the problem's detail and field errors on stderr.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

/// Most requests per bulk call (the API's limit).
pub const BULK_CHUNK: usize = 10_000;
/// Page size used when walking a listing.
const PAGE: usize = 1000;

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
    pub token: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Target account of the command.
    #[arg(long, global = true, env = "FLEETGATE_ACCOUNT", value_name = "NAME")]
    pub account: Option<String>,
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
    /// Devices of an account.
    Device {
        #[command(flatten)]
        /// Connection options.
        client: ClientArgs,
        #[command(subcommand)]
        /// What to do.
        command: DeviceCommand,
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

impl CouplingArg {
    fn wire(self) -> &'static str {
        match self {
            CouplingArg::Inherited => "INHERITED",
            CouplingArg::Loose => "LOOSE",
            CouplingArg::Strict => "STRICT",
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
    pub provision_password: Option<String>,
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
    fn apply(&self, body: &mut Map<String, Value>) -> anyhow::Result<()> {
        let mut set = |k: &str, v: Value| {
            body.insert(k.to_string(), v);
        };
        if let Some(v) = &self.client_id {
            set("clientId", json!(v));
        }
        if let Some(v) = &self.provision_username {
            set("provisionUsername", json!(v));
        }
        if let Some(v) = &self.provision_password {
            set("provisionPassword", json!(v));
            set("confirmProvisionPassword", json!(v));
        }
        if let Some(v) = &self.broker_url {
            set("brokerUrl", json!(v));
        }
        if let Some(v) = &self.activates_on {
            set("activatesOn", json!(v));
        }
        if let Some(v) = &self.expires_on {
            set("expiresOn", json!(v));
        }
        if self.activation_key {
            set("generateActivationKey", json!(true));
        }
        if self.no_activation_key {
            set("generateActivationKey", json!(false));
        }
        if self.no_reserve_user {
            set("reserveUser", json!(false));
        }
        if self.reserve_user {
            set("reserveUser", json!(true));
        }
        if let Some(c) = self.coupling {
            set("connectionCoupling", json!(c.wire()));
        }
        if self.vpn {
            set("vpnAccess", json!(true));
        }
        if self.no_vpn {
            set("vpnAccess", json!(false));
        }
        if let Some(n) = self.password_length {
            set("passwordLength", json!(n));
        }
        if let Some(path) = &self.additional_configuration {
            let xml = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            set("additionalConfiguration", json!(xml));
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

/// `fleetgate device ...`.
#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// List the devices of --account.
    List,
    /// Show one device.
    Show {
        /// Client ID.
        client_id: String,
    },
}

/// Runs a client command.
pub fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    let mut out = String::new();
    match cmd {
        ClientCommand::Request { client, command } => {
            let api = Api::new(&client);
            request(&api, &client, command, &mut out)?;
        }
        ClientCommand::Executions { client, command } => {
            let api = Api::new(&client);
            executions(&api, &client, command, &mut out)?;
        }
        ClientCommand::Account { client, command } => {
            let api = Api::new(&client);
            account(&api, &client, command, &mut out)?;
        }
        ClientCommand::Token { client, command } => {
            let api = Api::new(&client);
            token(&api, &client, command, &mut out)?;
        }
        ClientCommand::Device { client, command } => {
            let api = Api::new(&client);
            device(&api, &client, command, &mut out)?;
        }
    }
    print!("{out}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A blocking client of the admin API.
struct Api {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved characters pass).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Renders a problem+json answer (or any error body) as the error of a failed command.
fn problem_error(status: u16, body: &str) -> anyhow::Error {
    let Ok(p) = serde_json::from_str::<Value>(body) else {
        return anyhow!("HTTP {status}: {}", body.trim());
    };
    let mut msg = format!(
        "HTTP {status} {}: {}",
        p["title"].as_str().unwrap_or(""),
        p["detail"].as_str().unwrap_or("")
    );
    for e in p["errors"].as_array().into_iter().flatten() {
        msg.push_str("\n  ");
        if let Some(i) = e["index"].as_u64() {
            let _ = write!(msg, "[row {i}] ");
        }
        let field = e["field"].as_str().unwrap_or("");
        if !field.is_empty() {
            let _ = write!(msg, "{field}: ");
        }
        msg.push_str(e["message"].as_str().unwrap_or(""));
    }
    if status == 401 {
        msg.push_str("\n  (pass --token or set FLEETGATE_TOKEN)");
    }
    anyhow!(msg)
}

impl Api {
    fn new(c: &ClientArgs) -> Api {
        let token = c
            .token
            .clone()
            .or_else(|| std::env::var("FLEETGATE_ADMIN_TOKEN").ok())
            .filter(|t| !t.is_empty());
        Api {
            base: c.api.trim_end_matches('/').to_string(),
            token,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent(),
        }
    }

    /// Sends a request; returns the body of a 2xx answer, else the problem as an error.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.base);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let result = match body {
            Some(b) => self.agent.run(
                req.header("Content-Type", "application/json")
                    .body(serde_json::to_vec(b)?)
                    .context("invalid request")?,
            ),
            None => self.agent.run(req.body(()).context("invalid request")?),
        };
        let mut res = result.with_context(|| format!("cannot reach the admin API at {url}"))?;
        let status = res.status().as_u16();
        let text = res
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .with_context(|| format!("cannot read the answer of {method} {url}"))?;
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(problem_error(status, &text))
        }
    }

    fn json(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let text = self.call(method, path, body)?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).context("the admin API answered something that is not JSON")
    }
}

fn account_of(c: &ClientArgs) -> anyhow::Result<String> {
    c.account
        .clone()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| anyhow!("--account (or FLEETGATE_ACCOUNT) is required"))
}

fn requests_path(account: &str) -> String {
    format!("/api/v1/accounts/{}/provision-requests", encode(account))
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
fn read_bulk(file: &Path, format: Option<BulkFormat>) -> anyhow::Result<Vec<Row>> {
    let format = if file == Path::new("-") {
        format.ok_or_else(|| anyhow!("reading standard input needs --format csv|jsonl"))?
    } else {
        bulk_format(file, format)?
    };
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let rows = match format {
        BulkFormat::Csv => read_csv(&text)?,
        BulkFormat::Jsonl => read_jsonl(&text)?,
    };
    if rows.is_empty() {
        bail!("{} holds no requests", file.display());
    }
    Ok(rows)
}

/// Rewrites a bulk problem's row indexes as file lines.
fn bulk_error(e: anyhow::Error, chunk: &[Row], first: usize, done: usize) -> anyhow::Error {
    let mut msg = e.to_string();
    for (i, row) in chunk.iter().enumerate().rev() {
        msg = msg.replace(
            &format!("[row {i}] "),
            &format!("[row {}, line {}] ", first + i, row.line),
        );
    }
    if done > 0 {
        msg.push_str(&format!(
            "\n{done} requests of earlier calls were created; this call and later ones were not"
        ));
    } else {
        msg.push_str("\nnothing was created");
    }
    anyhow!(msg)
}

// ---------------------------------------------------------------------------------------------
// Commands

fn request(api: &Api, c: &ClientArgs, cmd: RequestCommand, out: &mut String) -> anyhow::Result<()> {
    let account = account_of(c)?;
    let base = requests_path(&account);
    match cmd {
        RequestCommand::Create { fields } => {
            let mut body = Map::new();
            fields.apply(&mut body)?;
            let v = api.json("POST", &base, Some(&Value::Object(body)))?;
            out.push_str(&show_request(&v, c.json));
        }
        RequestCommand::Bulk { file, format } => {
            let rows = read_bulk(&file, format)?;
            let mut created: Vec<Value> = Vec::with_capacity(rows.len());
            for (n, chunk) in rows.chunks(BULK_CHUNK).enumerate() {
                let first = n * BULK_CHUNK;
                let body =
                    json!({ "requests": chunk.iter().map(|r| r.body.clone()).collect::<Vec<_>>() });
                let v = api
                    .json("POST", &format!("{base}/bulk"), Some(&body))
                    .map_err(|e| bulk_error(e, chunk, first, created.len()))?;
                created.extend(v["created"].as_array().cloned().unwrap_or_default());
            }
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
            let mut items: Vec<Value> = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let want = limit.map_or(PAGE, |l| l.saturating_sub(items.len()).min(PAGE));
                if want == 0 {
                    break;
                }
                let mut q = format!("?limit={want}");
                if let Some(s) = &status {
                    let _ = write!(q, "&status={}", encode(s));
                }
                if let Some(cid) = &client_id {
                    let _ = write!(q, "&clientId={}", encode(cid));
                }
                if let Some(a) = &after {
                    let _ = write!(q, "&after={}", encode(a));
                }
                let page = api.json("GET", &format!("{base}{q}"), None)?;
                items.extend(page["items"].as_array().cloned().unwrap_or_default());
                match page["next"].as_str() {
                    Some(n) => after = Some(n.to_string()),
                    None => break,
                }
            }
            if c.json {
                out.push_str(&pretty(&json!({ "items": items })));
            } else {
                let rows: Vec<Vec<String>> =
                    items.iter().map(|v| cells(v, REQUEST_COLUMNS)).collect();
                out.push_str(&table(REQUEST_COLUMNS, &rows));
            }
        }
        RequestCommand::Show { id } => {
            let v = api.json("GET", &format!("{base}/{}", encode(&id)), None)?;
            out.push_str(&show_request(&v, c.json));
        }
        RequestCommand::Update { id, fields } => {
            let path = format!("{base}/{}", encode(&id));
            let current = api.json("GET", &path, None)?;
            let mut body = Map::new();
            for k in [
                "clientId",
                "provisionUsername",
                "brokerUrl",
                "activatesOn",
                "expiresOn",
                "generateActivationKey",
                "reserveUser",
                "connectionCoupling",
                "vpnAccess",
                "passwordLength",
                "additionalConfiguration",
            ] {
                if let Some(v) = current.get(k).filter(|v| !v.is_null()) {
                    body.insert(k.to_string(), v.clone());
                }
            }
            fields.apply(&mut body)?;
            if !body.contains_key("provisionPassword") {
                bail!("--password is required: the provision password is write-only");
            }
            let v = api.json("PUT", &path, Some(&Value::Object(body)))?;
            out.push_str(&show_request(&v, c.json));
        }
        RequestCommand::Delete { id, force } => {
            let q = if force { "?force=true" } else { "" };
            api.call("DELETE", &format!("{base}/{}{q}", encode(&id)), None)?;
            if c.json {
                out.push_str(&pretty(&json!({ "deleted": id })));
            } else {
                let _ = writeln!(out, "deleted {id}");
            }
        }
        RequestCommand::Preview { id } => {
            let xml = api.call(
                "GET",
                &format!("{base}/{}/configuration-preview", encode(&id)),
                None,
            )?;
            out.push_str(&xml);
            if !xml.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    Ok(())
}

fn executions(
    api: &Api,
    c: &ClientArgs,
    cmd: ExecutionsCommand,
    out: &mut String,
) -> anyhow::Result<()> {
    let base = requests_path(&account_of(c)?);
    match cmd {
        ExecutionsCommand::List { request } => {
            let v = api.json(
                "GET",
                &format!("{base}/{}/executions", encode(&request)),
                None,
            )?;
            if c.json {
                out.push_str(&pretty(&v));
            } else {
                let cols = ["id", "outcome", "protocol", "peer", "startedOn", "endedOn"];
                let rows: Vec<Vec<String>> = v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| cells(e, &cols))
                    .collect();
                out.push_str(&table(&cols, &rows));
            }
        }
        ExecutionsCommand::Show { request, execution } => {
            let v = api.json(
                "GET",
                &format!(
                    "{base}/{}/executions/{}",
                    encode(&request),
                    encode(&execution)
                ),
                None,
            )?;
            if c.json {
                out.push_str(&pretty(&v));
            } else {
                let mut head = v.clone();
                if let Some(o) = head.as_object_mut() {
                    o.remove("log");
                }
                out.push_str(&details(
                    &head,
                    &["id", "outcome", "protocol", "peer", "startedOn", "endedOn"],
                ));
                out.push_str("\nlog:\n");
                for l in v["log"].as_array().into_iter().flatten() {
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

fn account(api: &Api, c: &ClientArgs, cmd: AccountCommand, out: &mut String) -> anyhow::Result<()> {
    let cols = ["name", "minPasswordLength", "defaultCoupling", "createdOn"];
    match cmd {
        AccountCommand::Create {
            name,
            min_password_length,
            default_coupling,
        } => {
            let mut body = json!({ "name": name });
            if let Some(n) = min_password_length {
                body["minPasswordLength"] = json!(n);
            }
            if let Some(d) = default_coupling {
                body["defaultCoupling"] = json!(d.wire());
            }
            let v = api.json("POST", "/api/v1/accounts", Some(&body))?;
            out.push_str(&one(&v, &cols, c.json));
        }
        AccountCommand::List => {
            let v = api.json("GET", "/api/v1/accounts", None)?;
            out.push_str(&listing(&v, &cols, c.json));
        }
        AccountCommand::Show { name } => {
            let v = api.json("GET", &format!("/api/v1/accounts/{}", encode(&name)), None)?;
            out.push_str(&one(&v, &cols, c.json));
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

fn token(api: &Api, c: &ClientArgs, cmd: TokenCommand, out: &mut String) -> anyhow::Result<()> {
    let base = format!("/api/v1/accounts/{}/tokens", encode(&account_of(c)?));
    match cmd {
        TokenCommand::Create => {
            let v = api.json("POST", &base, Some(&json!({})))?;
            if c.json {
                out.push_str(&pretty(&v));
            } else {
                out.push_str(&details(&v, &["id", "token"]));
                out.push_str("\nThe token is shown only this once: store it now.\n");
            }
        }
        TokenCommand::Revoke { id } => {
            api.call("DELETE", &format!("{base}/{}", encode(&id)), None)?;
            if c.json {
                out.push_str(&pretty(&json!({ "revoked": id })));
            } else {
                let _ = writeln!(out, "revoked {id}");
            }
        }
    }
    Ok(())
}

fn device(api: &Api, c: &ClientArgs, cmd: DeviceCommand, out: &mut String) -> anyhow::Result<()> {
    let base = format!("/api/v1/accounts/{}/devices", encode(&account_of(c)?));
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
        DeviceCommand::List => {
            let v = api.json("GET", &base, None)?;
            out.push_str(&listing(&v, &cols, c.json));
        }
        DeviceCommand::Show { client_id } => {
            let v = api.json("GET", &format!("{base}/{}", encode(&client_id)), None)?;
            out.push_str(&one(&v, &cols, c.json));
        }
    }
    Ok(())
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
    fn encoding_and_problems() {
        assert_eq!(encode("a:b@c d/é"), "a%3Ab%40c%20d%2F%C3%A9");
        let e = problem_error(
            422,
            r#"{"title":"Unprocessable Entity","detail":"validation failed","errors":[{"index":3,"field":"clientId","message":"bad"}]}"#,
        );
        assert_eq!(
            e.to_string(),
            "HTTP 422 Unprocessable Entity: validation failed\n  [row 3] clientId: bad"
        );
        assert_eq!(
            problem_error(502, "gateway").to_string(),
            "HTTP 502: gateway"
        );
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
