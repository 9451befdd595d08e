//! `fleetgate-client`: a typed, blocking client of Fleetgate's admin REST API (API.md).
//!
//! It owns the client side of the wire: one [`Client`] method per route the server serves,
//! the request and response shapes ([`types`]; the JSON shapes are `fleetgate-wire`'s, the
//! very types the server serializes, so the two cannot drift), the problem+json error
//! ([`Error`]), bulk creation split into calls the server accepts, and a parser of the
//! `/metrics` text ([`prometheus`]). The CLI (`fleetgate-cli`) and the load tester use it.
//!
//! It must not link the broker, its storage or its API crate (`fleetgate-wire` holds shapes
//! only): it knows the server only through HTTP, exactly as any other client would, so it can
//! neither drift into internals nor bypass the API's validation. Secrets it carries (tokens,
//! provision passwords, activation keys) never appear in `Debug` output or errors.

mod error;
pub mod prometheus;
pub mod types;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::Error;
use types::{
    Account, AccountList, BulkCreated, CommandResult, Device, DeviceCommand, DevicePage,
    DeviceQuery, Endpoint, EndpointList, Execution, ExecutionList, Health, Job, JobExecution,
    JobExecutionList, JobList, JobStatus, Move, NewAccount, NewDevice, NewUser, Problem,
    ProvisionRequest, ProvisionRequestInput, RequestPage, RequestQuery, Secret, TokenCreated, User,
    UserCreated, UserList, UserPatch, encode,
};

pub use fleetgate_wire::MAX_BULK_ITEMS;
/// Largest bulk request body sent (the server's default body limit is 1 MiB).
pub const MAX_BULK_BODY: usize = 1_000_000;
/// Largest answer read: a page or a bulk answer of 10,000 requests stays far below it.
const MAX_ANSWER: u64 = 1 << 30;
/// Page size used by [`Client::all_requests`]: the API's maximum.
const PAGE: usize = fleetgate_wire::MAX_PAGE_SIZE;

/// The result of a client call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A blocking client of one Fleetgate instance's admin API. Cheap to clone (the connection
/// pool is shared).
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<Secret>,
    /// Timeouts and trusted roots the agent was built with (kept to rebuild it).
    transport: Transport,
}

/// What the agent is built from.
#[derive(Clone, Default)]
struct Transport {
    connect: Option<Duration>,
    total: Option<Duration>,
    /// Certificates trusted for an `https://` API instead of the WebPKI roots (a self-signed
    /// admin listener: `--ca FILE`).
    roots: Option<Vec<ureq::tls::Certificate<'static>>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token)
            .finish()
    }
}

/// Builds the agent: error statuses are answers to decode, not transport errors. An
/// `https://` base URL is verified against the WebPKI roots, or against `roots` when given.
fn agent(t: &Transport) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(roots) = &t.roots {
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(roots));
    }
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(t.connect)
        .timeout_global(t.total)
        .tls_config(tls.build())
        .build()
        .new_agent()
}

impl Client {
    /// A client of the API at `base_url` (e.g. `http://127.0.0.1:8080`), sending `token` as
    /// bearer token when given, without timeouts.
    pub fn new(base_url: &str, token: Option<&str>) -> Client {
        let transport = Transport::default();
        Client {
            agent: agent(&transport),
            base: base_url.trim_end_matches('/').to_string(),
            token: token.map(Secret::from),
            transport,
        }
    }

    /// The same client with a connect timeout and a timeout for each whole call.
    pub fn with_timeouts(mut self, connect: Option<Duration>, total: Option<Duration>) -> Client {
        self.transport.connect = connect;
        self.transport.total = total;
        self.agent = agent(&self.transport);
        self
    }

    /// The same client trusting only the certificates of the PEM text `pem` for an
    /// `https://` API (a self-signed admin listener's certificate, or its CA).
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<Client> {
        let mut roots = Vec::new();
        for item in ureq::tls::parse_pem(pem) {
            if let ureq::tls::PemItem::Certificate(c) = item.map_err(Error::Ca)? {
                roots.push(c);
            }
        }
        if roots.is_empty() {
            return Err(Error::NoCertificate);
        }
        self.transport.roots = Some(roots);
        self.agent = agent(&self.transport);
        Ok(self)
    }

    /// The base URL, without trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    // ------------------------------------------------------------------------------------
    // Transport

    /// Sends a request with an optional JSON body; returns the body of a 2xx answer, else the
    /// answer as an error.
    fn call(&self, method: &'static str, path: &str, body: Option<Vec<u8>>) -> Result<String> {
        self.call_typed(method, path, body.map(|b| (b, "application/json")))
    }

    /// [`Client::call`] with a body of any content type.
    fn call_typed(
        &self,
        method: &'static str,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
    ) -> Result<String> {
        let (mut res, url) = self.send(method, path, body)?;
        let status = res.status().as_u16();
        let text = res
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| Error::Transport {
                method,
                url: url.clone(),
                source: Box::new(e),
            })?;
        answer(status, text)
    }

    /// Sends a request; returns the answer, whatever its status, and the URL called.
    fn send(
        &self,
        method: &'static str,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
    ) -> Result<(ureq::http::Response<ureq::Body>, String)> {
        let url = format!("{}{path}", self.base);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {}", t.expose()));
        }
        let invalid = |source| Error::InvalidUrl {
            url: url.clone(),
            source,
        };
        let result = match body {
            Some((b, content_type)) => self.agent.run(
                req.header("Content-Type", content_type)
                    .body(b)
                    .map_err(invalid)?,
            ),
            None => self.agent.run(req.body(()).map_err(invalid)?),
        };
        let transport = |e: ureq::Error| {
            if error::means_unreachable(&e) {
                Error::Unreachable {
                    url: url.clone(),
                    source: Box::new(e),
                }
            } else {
                Error::Transport {
                    method,
                    url: url.clone(),
                    source: Box::new(e),
                }
            }
        };
        let res = result.map_err(transport)?;
        Ok((res, url))
    }

    /// A call with an optional JSON body whose answer is JSON.
    fn json<R: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<R> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let text = self.call(method, path, body)?;
        serde_json::from_str(&text).map_err(|source| Error::Decode {
            method,
            url: format!("{}{path}", self.base),
            source,
        })
    }

    fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R> {
        self.json("GET", path, None::<&()>)
    }

    // ------------------------------------------------------------------------------------
    // Operations

    /// `GET /healthz`: `Ok` once the instance is ready (a 503 problem otherwise).
    pub fn health(&self) -> Result<Health> {
        self.get("/healthz")
    }

    /// `GET /metrics`: the Prometheus text exposition.
    pub fn metrics_text(&self) -> Result<String> {
        self.call("GET", "/metrics", None)
    }

    /// `GET /metrics`, parsed: the samples whose names start with `prefix`
    /// (see [`prometheus::parse`]).
    pub fn metrics(&self, prefix: &str) -> Result<BTreeMap<String, f64>> {
        Ok(prometheus::parse(&self.metrics_text()?, prefix))
    }

    /// `GET /api/v1/backup` (admin token): streams a whole-store backup into the new file
    /// `to` (mode 0600; an existing file is not replaced). Returns its size. A failed or cut
    /// download leaves no file.
    pub fn backup(&self, to: &Path) -> Result<u64> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let (mut res, url) = self.send("GET", "/api/v1/backup", None)?;
        let status = res.status().as_u16();
        if !(200..300).contains(&status) {
            let text = res.body_mut().read_to_string().unwrap_or_default();
            return answer(status, text).map(|_| 0);
        }
        let file_error = |source| Error::File {
            path: to.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)
            .map_err(file_error)?;
        let copied = std::io::copy(&mut res.body_mut().as_reader(), &mut file)
            .map_err(|e| Error::Transport {
                method: "GET",
                url,
                source: Box::new(ureq::Error::Io(e)),
            })
            .and_then(|n| file.sync_all().map(|()| n).map_err(file_error));
        if copied.is_err() {
            let _ = std::fs::remove_file(to);
        }
        copied
    }

    // ------------------------------------------------------------------------------------
    // Accounts and tokens

    /// `POST /api/v1/accounts` (admin token).
    pub fn create_account(&self, account: &NewAccount) -> Result<Account> {
        self.json("POST", "/api/v1/accounts", Some(account))
    }

    /// `GET /api/v1/accounts`: the accounts the token may see.
    pub fn list_accounts(&self) -> Result<Vec<Account>> {
        Ok(self.get::<AccountList>("/api/v1/accounts")?.items)
    }

    /// `GET /api/v1/accounts/{account}`.
    pub fn get_account(&self, name: &str) -> Result<Account> {
        self.get(&format!("/api/v1/accounts/{}", encode(name)))
    }

    /// `POST /api/v1/accounts/{account}/tokens`: a new account token, shown only here.
    pub fn create_token(&self, account: &str) -> Result<TokenCreated> {
        let empty = serde_json::Map::new();
        self.json("POST", &tokens_path(account), Some(&empty))
    }

    /// `DELETE /api/v1/accounts/{account}/tokens/{id}`.
    pub fn delete_token(&self, account: &str, id: &str) -> Result<()> {
        let path = format!("{}/{}", tokens_path(account), encode(id));
        self.call("DELETE", &path, None).map(drop)
    }

    // ------------------------------------------------------------------------------------
    // Known broker endpoints

    /// `GET /api/v1/endpoints`: `fleetgate` first, then the others by name.
    pub fn list_endpoints(&self) -> Result<Vec<Endpoint>> {
        Ok(self.get::<EndpointList>("/api/v1/endpoints")?.items)
    }

    /// `POST /api/v1/endpoints` (admin token).
    pub fn create_endpoint(&self, endpoint: &Endpoint) -> Result<Endpoint> {
        self.json("POST", "/api/v1/endpoints", Some(endpoint))
    }

    /// `DELETE /api/v1/endpoints/{name}` (admin token).
    pub fn delete_endpoint(&self, name: &str) -> Result<()> {
        let path = format!("/api/v1/endpoints/{}", encode(name));
        self.call("DELETE", &path, None).map(drop)
    }

    // ------------------------------------------------------------------------------------
    // Provision requests

    /// `POST .../provision-requests`.
    pub fn create_request(
        &self,
        account: &str,
        request: &ProvisionRequestInput,
    ) -> Result<ProvisionRequest> {
        self.json("POST", &requests_path(account), Some(request))
    }

    /// Creates `requests` through `POST .../provision-requests/bulk`, in as many calls as
    /// needed: at most `max_items` (clamped to 1..=[`MAX_BULK_ITEMS`]) requests and at most
    /// [`MAX_BULK_BODY`] bytes per call (a single larger request goes alone). Each call is all
    /// or nothing; a failed call stops the run with [`Error::Bulk`], saying which items it held
    /// and how many earlier calls created. Returns the created requests in input order.
    ///
    /// Items are any serializable objects, not only [`ProvisionRequestInput`]: a caller that
    /// relays rows from a file sends them as they are, so the server names each wrong field.
    pub fn bulk_create<T: Serialize>(
        &self,
        account: &str,
        requests: &[T],
        max_items: usize,
    ) -> Result<Vec<ProvisionRequest>> {
        let path = format!("{}/bulk", requests_path(account));
        let mut created = Vec::with_capacity(requests.len());
        for call in bulk_calls(requests, max_items)? {
            let earlier = created.len();
            created.extend(
                self.post_bulk(&path, call.body, call.items.len())
                    .map_err(|e| Error::Bulk {
                        first: call.items.start,
                        end: call.items.end,
                        created: earlier,
                        source: Box::new(e),
                    })?,
            );
        }
        Ok(created)
    }

    /// Sends one bulk call of `sent` requests, checking that the answer holds as many.
    fn post_bulk(&self, path: &str, body: Vec<u8>, sent: usize) -> Result<Vec<ProvisionRequest>> {
        let text = self.call("POST", path, Some(body))?;
        let answer: BulkCreated = serde_json::from_str(&text).map_err(|source| Error::Decode {
            method: "POST",
            url: format!("{}{path}", self.base),
            source,
        })?;
        match answer.created.len() {
            got if got == sent => Ok(answer.created),
            got => Err(Error::BulkCount { sent, got }),
        }
    }

    /// `GET .../provision-requests` with filters and paging: one page.
    pub fn list_requests(&self, account: &str, query: &RequestQuery) -> Result<RequestPage> {
        self.get(&format!(
            "{}{}",
            requests_path(account),
            query.to_query_string()
        ))
    }

    /// Every request matching `query`'s filters, walking the pages (its `limit` and `after`
    /// are ignored), at most `limit` of them.
    pub fn all_requests(
        &self,
        account: &str,
        query: &RequestQuery,
        limit: Option<usize>,
    ) -> Result<Vec<ProvisionRequest>> {
        let mut items = Vec::new();
        let mut query = RequestQuery {
            after: None,
            ..query.clone()
        };
        loop {
            let want = limit.map_or(PAGE, |l| l.saturating_sub(items.len()).min(PAGE));
            if want == 0 {
                break;
            }
            query.limit = Some(want);
            let page = self.list_requests(account, &query)?;
            items.extend(page.items);
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        Ok(items)
    }

    /// `GET .../provision-requests/{id}`.
    pub fn get_request(&self, account: &str, id: &str) -> Result<ProvisionRequest> {
        self.get(&request_path(account, id))
    }

    /// `PUT .../provision-requests/{id}`: replaces every field of a `CREATED` request (the
    /// provision password must be given again; see [`ProvisionRequest::to_input`]).
    pub fn update_request(
        &self,
        account: &str,
        id: &str,
        request: &ProvisionRequestInput,
    ) -> Result<ProvisionRequest> {
        self.json("PUT", &request_path(account, id), Some(request))
    }

    /// `DELETE .../provision-requests/{id}`, with `?force=true` to delete a `RUNNING` one.
    pub fn delete_request(&self, account: &str, id: &str, force: bool) -> Result<()> {
        let q = if force { "?force=true" } else { "" };
        let path = format!("{}{q}", request_path(account, id));
        self.call("DELETE", &path, None).map(drop)
    }

    /// `GET .../provision-requests/{id}/configuration-preview`: the configuration XML a device
    /// would receive now, passwords masked.
    pub fn configuration_preview(&self, account: &str, id: &str) -> Result<String> {
        let path = format!("{}/configuration-preview", request_path(account, id));
        self.call("GET", &path, None)
    }

    // ------------------------------------------------------------------------------------
    // Executions, users, devices

    /// `GET .../provision-requests/{id}/executions`: the executions of a request, oldest
    /// first, without their logs.
    pub fn list_executions(&self, account: &str, request: &str) -> Result<Vec<Execution>> {
        let path = format!("{}/executions", request_path(account, request));
        Ok(self.get::<ExecutionList>(&path)?.items)
    }

    /// `GET .../provision-requests/{id}/executions/{executionId}`, with its log.
    pub fn get_execution(
        &self,
        account: &str,
        request: &str,
        execution: &str,
    ) -> Result<Execution> {
        self.get(&format!(
            "{}/executions/{}",
            request_path(account, request),
            encode(execution)
        ))
    }

    // ------------------------------------------------------------------------------------
    // Operational users

    /// `POST .../users`: an account user; a generated password is in the answer, this once.
    pub fn create_user(&self, account: &str, user: &NewUser) -> Result<UserCreated> {
        self.json("POST", &users_path(account), Some(user))
    }

    /// `GET /api/v1/accounts/{account}/users`: device users and account users.
    pub fn list_users(&self, account: &str) -> Result<Vec<User>> {
        Ok(self.get::<UserList>(&users_path(account))?.items)
    }

    /// `GET .../users/{username}`.
    pub fn get_user(&self, account: &str, username: &str) -> Result<User> {
        self.get(&user_path(account, username))
    }

    /// `PATCH .../users/{username}`: the fields set change.
    pub fn update_user(&self, account: &str, username: &str, patch: &UserPatch) -> Result<User> {
        self.json("PATCH", &user_path(account, username), Some(patch))
    }

    /// `DELETE .../users/{username}` (account users).
    pub fn delete_user(&self, account: &str, username: &str) -> Result<()> {
        self.call("DELETE", &user_path(account, username), None)
            .map(drop)
    }

    // ------------------------------------------------------------------------------------
    // Devices

    /// `POST .../devices`: a registry entry before provisioning.
    pub fn create_device(&self, account: &str, device: &NewDevice) -> Result<Device> {
        self.json("POST", &devices_path(account), Some(device))
    }

    /// `GET .../devices` with a filter and paging: one page.
    pub fn list_devices(&self, account: &str, query: &DeviceQuery) -> Result<DevicePage> {
        self.get(&format!(
            "{}{}",
            devices_path(account),
            query.to_query_string()
        ))
    }

    /// Every device matching `query`'s filter, walking the pages (its `limit` and `after` are
    /// ignored).
    pub fn all_devices(&self, account: &str, query: &DeviceQuery) -> Result<Vec<Device>> {
        let mut items = Vec::new();
        let mut query = DeviceQuery {
            after: None,
            limit: Some(PAGE),
            ..query.clone()
        };
        loop {
            let page = self.list_devices(account, &query)?;
            items.extend(page.items);
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(items),
            }
        }
    }

    /// `GET /api/v1/accounts/{account}/devices/{clientId}`.
    pub fn get_device(&self, account: &str, client_id: &str) -> Result<Device> {
        self.get(&device_path(account, client_id))
    }

    /// `GET .../devices/{clientId}/configurations[/{pid}]`: the device's configuration in
    /// Kura's snapshot form.
    pub fn device_configuration(
        &self,
        account: &str,
        client_id: &str,
        pid: Option<&str>,
    ) -> Result<String> {
        self.call("GET", &configurations_path(account, client_id, pid), None)
    }

    /// `PUT .../devices/{clientId}/configurations[/{pid}]` with a configuration XML document.
    pub fn put_device_configuration(
        &self,
        account: &str,
        client_id: &str,
        pid: Option<&str>,
        xml: String,
    ) -> Result<()> {
        let path = configurations_path(account, client_id, pid);
        self.call_typed("PUT", &path, Some((xml.into_bytes(), "application/xml")))
            .map(drop)
    }

    /// `POST .../devices/{clientId}/commands`: runs a command on the device.
    pub fn run_command(
        &self,
        account: &str,
        client_id: &str,
        command: &DeviceCommand,
    ) -> Result<CommandResult> {
        let path = format!("{}/commands", device_path(account, client_id));
        self.json("POST", &path, Some(command))
    }

    /// `POST .../devices/{clientId}/move`: `body` is the API's move body (`targetAccount` with
    /// the provision request fields, or `targetInstance`); the move starts PENDING.
    pub fn move_device<T: Serialize>(
        &self,
        account: &str,
        client_id: &str,
        body: &T,
    ) -> Result<Move> {
        let path = format!("{}/move", device_path(account, client_id));
        self.json("POST", &path, Some(body))
    }

    /// `GET .../devices/{clientId}/move`: the device's latest move, with its log.
    pub fn device_move(&self, account: &str, client_id: &str) -> Result<Move> {
        self.get(&format!("{}/move", device_path(account, client_id)))
    }

    /// `DELETE .../devices/{clientId}`, with `?force=true` to delete (and disconnect) a
    /// CONNECTED one.
    pub fn delete_device(&self, account: &str, client_id: &str, force: bool) -> Result<()> {
        let q = if force { "?force=true" } else { "" };
        let path = format!("{}{q}", device_path(account, client_id));
        self.call("DELETE", &path, None).map(drop)
    }
}

impl Client {
    // ------------------------------------------------------------------------------------
    // Jobs

    /// `POST .../jobs`: `job` is the API's job body (name, targets, steps, schedule, ...).
    pub fn create_job<T: Serialize>(&self, account: &str, job: &T) -> Result<Job> {
        self.json("POST", &jobs_path(account), Some(job))
    }

    /// `GET .../jobs`.
    pub fn list_jobs(&self, account: &str) -> Result<Vec<Job>> {
        self.get::<JobList>(&jobs_path(account)).map(|l| l.items)
    }

    /// `GET .../jobs/{id}`, with its targets' counts per status.
    pub fn get_job(&self, account: &str, id: &str) -> Result<Job> {
        self.get(&job_path(account, id))
    }

    /// `DELETE .../jobs/{id}`.
    pub fn delete_job(&self, account: &str, id: &str) -> Result<()> {
        self.call("DELETE", &job_path(account, id), None).map(drop)
    }

    /// `POST .../jobs/{id}/targets`.
    pub fn change_job_targets(
        &self,
        account: &str,
        id: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<Job> {
        let body = serde_json::json!({"add": add, "remove": remove});
        self.json(
            "POST",
            &format!("{}/targets", job_path(account, id)),
            Some(&body),
        )
    }

    /// `GET .../jobs/{id}/executions`, of one target and in one status when given.
    pub fn job_executions(
        &self,
        account: &str,
        id: &str,
        client_id: Option<&str>,
        status: Option<JobStatus>,
    ) -> Result<Vec<JobExecution>> {
        let mut query = Vec::new();
        if let Some(c) = client_id {
            query.push(format!("clientId={}", encode(c)));
        }
        if let Some(s) = status {
            let s = serde_json::to_value(s).unwrap_or_default();
            query.push(format!("status={}", s.as_str().unwrap_or_default()));
        }
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        self.get::<JobExecutionList>(&format!("{}/executions{q}", job_path(account, id)))
            .map(|l| l.items)
    }
}

/// A 2xx answer's body, or the error answer: a problem document when the body is a JSON
/// object, else the status and the text.
fn answer(status: u16, text: String) -> Result<String> {
    if (200..300).contains(&status) {
        return Ok(text);
    }
    Err(match serde_json::from_str::<Problem>(&text) {
        Ok(problem) => Error::Problem { status, problem },
        Err(_) => Error::Status { status, body: text },
    })
}

/// One call of a bulk creation: which items it holds and its body.
struct BulkCall {
    items: Range<usize>,
    body: Vec<u8>,
}

/// Splits `requests` into bulk calls of at most `max_items` (clamped to
/// 1..=[`MAX_BULK_ITEMS`]) requests and [`MAX_BULK_BODY`] bytes, in order; a request larger
/// than the byte limit goes alone (and the server refuses it).
fn bulk_calls<T: Serialize>(requests: &[T], max_items: usize) -> Result<Vec<BulkCall>> {
    const OPEN: &[u8] = b"{\"requests\":[";
    const CLOSE: &[u8] = b"]}";
    let max_items = max_items.clamp(1, MAX_BULK_ITEMS);
    let mut calls = Vec::new();
    let mut current = BulkCall {
        items: 0..0,
        body: OPEN.to_vec(),
    };
    for (i, request) in requests.iter().enumerate() {
        let item = serde_json::to_vec(request)?;
        let count = current.items.len();
        let full =
            count == max_items || current.body.len() + 1 + item.len() + CLOSE.len() > MAX_BULK_BODY;
        if count > 0 && full {
            current.body.extend_from_slice(CLOSE);
            calls.push(std::mem::replace(
                &mut current,
                BulkCall {
                    items: i..i,
                    body: OPEN.to_vec(),
                },
            ));
        }
        if !current.items.is_empty() {
            current.body.push(b',');
        }
        current.body.extend_from_slice(&item);
        current.items.end = i + 1;
    }
    if !current.items.is_empty() {
        current.body.extend_from_slice(CLOSE);
        calls.push(current);
    }
    Ok(calls)
}

fn tokens_path(account: &str) -> String {
    format!("/api/v1/accounts/{}/tokens", encode(account))
}

fn requests_path(account: &str) -> String {
    format!("/api/v1/accounts/{}/provision-requests", encode(account))
}

fn request_path(account: &str, id: &str) -> String {
    format!("{}/{}", requests_path(account), encode(id))
}

fn devices_path(account: &str) -> String {
    format!("/api/v1/accounts/{}/devices", encode(account))
}

fn device_path(account: &str, client_id: &str) -> String {
    format!("{}/{}", devices_path(account), encode(client_id))
}

fn jobs_path(account: &str) -> String {
    format!("/api/v1/accounts/{}/jobs", encode(account))
}

fn job_path(account: &str, id: &str) -> String {
    format!("{}/{}", jobs_path(account), encode(id))
}

fn users_path(account: &str) -> String {
    format!("/api/v1/accounts/{}/users", encode(account))
}

fn user_path(account: &str, username: &str) -> String {
    format!("{}/{}", users_path(account), encode(username))
}

fn configurations_path(account: &str, client_id: &str, pid: Option<&str>) -> String {
    let mut path = format!("{}/configurations", device_path(account, client_id));
    if let Some(pid) = pid {
        path.push('/');
        path.push_str(&encode(pid));
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn error_answers_are_problems_or_text() {
        let e = answer(
            422,
            r#"{"title":"Unprocessable Entity","detail":"validation failed","errors":[{"index":3,"field":"clientId","message":"bad"}]}"#.into(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "HTTP 422 Unprocessable Entity: validation failed\n  [row 3] clientId: bad"
        );
        let body = r#"{"type":"about:blank","title":"Unprocessable Entity","status":422,"detail":"validation failed","errors":[{"index":3,"field":"clientId","message":"bad"},{"field":"","message":"whole body"}]}"#;
        let e = answer(422, body.into()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "HTTP 422 Unprocessable Entity: validation failed\n  [row 3] clientId: bad\n  whole body"
        );
        let Error::Problem { status, problem } = &e else {
            panic!("{e:?}")
        };
        assert_eq!((*status, problem.errors.len()), (422, 2));
        assert_eq!(e.status(), Some(422));
        assert!(!e.is_unreachable());
        // A problem without detail nor errors (what a proxy might send) still decodes.
        let e = answer(401, r#"{"title":"Unauthorized","status":401}"#.into()).unwrap_err();
        assert_eq!(e.to_string(), "HTTP 401 Unauthorized: ");
        let e = answer(502, "gateway\n".into()).unwrap_err();
        assert!(matches!(e, Error::Status { status: 502, .. }), "{e:?}");
        assert_eq!(e.to_string(), "HTTP 502: gateway");
        assert_eq!(answer(204, String::new()).unwrap(), "");
    }

    #[test]
    fn an_absent_server_is_unreachable() {
        // Port 1 on loopback: nothing listens there.
        let client = Client::new("http://127.0.0.1:1/", Some("t"));
        assert_eq!(client.base_url(), "http://127.0.0.1:1");
        let e = client.list_accounts().unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("cannot reach the admin API at http://127.0.0.1:1/api/v1/accounts"),
            "{e}"
        );
        let rows = [json!({"clientId": "c"})];
        let e = client.bulk_create("acme", &rows, 10).unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
        assert!(
            matches!(
                e,
                Error::Bulk {
                    first: 0,
                    end: 1,
                    created: 0,
                    ..
                }
            ),
            "{e:?}"
        );
        // Nothing to create: no call at all.
        assert!(
            client
                .bulk_create::<Value>("acme", &[], 10)
                .unwrap()
                .is_empty()
        );
        assert!(!format!("{client:?}").contains("\"t\""));
    }

    #[test]
    fn bulk_calls_respect_count_and_size() {
        let rows: Vec<Value> = (0..25)
            .map(|i| json!({ "clientId": format!("c{i}") }))
            .collect();
        let calls = bulk_calls(&rows, 10).unwrap();
        let ranges: Vec<Range<usize>> = calls.iter().map(|c| c.items.clone()).collect();
        assert_eq!(ranges, [0..10, 10..20, 20..25]);
        let body: Value = serde_json::from_slice(&calls[2].body).unwrap();
        assert_eq!(body["requests"].as_array().unwrap().len(), 5);
        assert_eq!(body["requests"][0]["clientId"], "c20");
        assert_eq!(bulk_calls(&rows, 0).unwrap().len(), 25);

        // ~300 kB items: three fit under the byte limit, and an oversized one goes alone.
        let big = |n: usize| json!({ "additionalConfiguration": "x".repeat(n) });
        let rows = vec![
            big(300_000),
            big(300_000),
            big(300_000),
            big(300_000),
            big(1_200_000),
            big(10),
        ];
        let calls = bulk_calls(&rows, MAX_BULK_ITEMS).unwrap();
        let ranges: Vec<Range<usize>> = calls.iter().map(|c| c.items.clone()).collect();
        assert_eq!(ranges, [0..3, 3..4, 4..5, 5..6]);
        for c in &calls[..2] {
            assert!(c.body.len() <= MAX_BULK_BODY);
            let v: Value = serde_json::from_slice(&c.body).unwrap();
            assert_eq!(v["requests"].as_array().unwrap().len(), c.items.len());
        }
    }
}
