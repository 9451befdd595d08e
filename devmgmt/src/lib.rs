//! Fleetgate's side of Eclipse Kura's request/reply protocol (PROTOCOL.md 7): the requester
//! that sends a device `$EDC/ACCOUNT/CID/{APP}/{METHOD}/{resources}` with `request.id` and
//! `requester.client.id`, and matches the device's reply on
//! `$EDC/ACCOUNT/{requester}/{APP}/REPLY/{request.id}` back to the caller that waits for it.
//!
//! This crate owns the request and reply model ([`Request`], [`Reply`], [`Method`]), the
//! pending requests and their timeouts, and a device's readiness (connected, and BIRTH seen or
//! a subscription covering the request topic). It reaches the broker through [`Transport`]
//! (publish a request; ask whether a device's session is online and subscribed), and is told
//! of the device's publishes and disconnects by the broker. It must not know ntex, the store
//! or HTTP: the admin API and jobs call [`Requester::request`] and map its errors.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fleetgate_kura::Payload;
use fleetgate_kura::proto::KuraMetric;
use fleetgate_kura::topics::is_birth_topic;
use parking_lot::{Mutex, RwLock};
use rand::Rng as _;
use tokio::sync::oneshot;

/// The largest reply read after decompression (a full configuration snapshot is well under).
pub const MAX_REPLY: usize = 16 << 20;

/// A Kura request method (the topic level after the app).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Read.
    Get,
    /// Replace.
    Put,
    /// Create.
    Post,
    /// Delete.
    Del,
    /// Run.
    Exec,
}

impl Method {
    /// The topic level.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Del => "DEL",
            Method::Exec => "EXEC",
        }
    }

    /// Parses a topic level spelled as [`Method::as_str`].
    pub fn parse(s: &str) -> Option<Method> {
        [
            Method::Get,
            Method::Put,
            Method::Post,
            Method::Del,
            Method::Exec,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// A request to a device.
#[derive(Clone, Debug)]
pub struct Request {
    /// The app, e.g. `CONF-V1`: one topic level.
    pub app: String,
    /// The method.
    pub method: Method,
    /// The resource path, one topic level each (`["configurations", "PID"]`).
    pub resources: Vec<String>,
    /// The app's own metrics, beside `request.id` and `requester.client.id`.
    pub metrics: Vec<KuraMetric>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
    /// How long to wait for the reply.
    pub timeout: Duration,
}

/// How much longer than its own timeout a command's reply is awaited.
pub const COMMAND_GRACE: Duration = Duration::from_secs(5);

/// A CMD-V1 command: what [`Request::command`] sends.
#[derive(Clone, Debug, Default)]
pub struct Command {
    /// The command line's program.
    pub command: String,
    /// Its arguments.
    pub arguments: Vec<String>,
    /// `NAME=VALUE` environment pairs.
    pub environment: Vec<(String, String)>,
    /// The device's command-service password, if it has one.
    pub password: Option<String>,
}

impl Request {
    /// CONF-V1 `PUT configurations[/PID]` of a document already in Kura's snapshot form.
    pub fn configuration_put(pid: Option<String>, snapshot_xml: String, timeout: Duration) -> Self {
        Request {
            app: "CONF-V1".into(),
            method: Method::Put,
            resources: std::iter::once("configurations".to_string())
                .chain(pid)
                .collect(),
            metrics: vec![],
            body: Some(snapshot_xml.into_bytes()),
            timeout,
        }
    }

    /// CMD-V1 `EXEC command`: `command.command`, `command.argumentN`,
    /// `command.environment.pairN`, `command.password`, INT32 `command.timeout` (seconds); the
    /// reply is awaited [`COMMAND_GRACE`] longer than the device's own timeout.
    pub fn command(command: Command, timeout: Duration) -> Self {
        let mut metrics = vec![KuraMetric::string("command.command", command.command)];
        for (i, a) in command.arguments.into_iter().enumerate() {
            metrics.push(KuraMetric::string(format!("command.argument{i}"), a));
        }
        for (i, (k, v)) in command.environment.into_iter().enumerate() {
            metrics.push(KuraMetric::string(
                format!("command.environment.pair{i}"),
                format!("{k}={v}"),
            ));
        }
        if let Some(p) = command.password {
            metrics.push(KuraMetric::string("command.password", p));
        }
        let secs = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        metrics.push(KuraMetric::int32("command.timeout", secs));
        Request {
            app: "CMD-V1".into(),
            method: Method::Exec,
            resources: vec!["command".into()],
            metrics,
            body: None,
            timeout: timeout + COMMAND_GRACE,
        }
    }
}

/// Why a JSON value cannot be a request metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    /// Only strings, booleans and integers are taken.
    #[error("values must be strings, booleans or integers")]
    Type,
    /// `request.id` and `requester.client.id` are the requester's.
    #[error("request.id and requester.client.id are Fleetgate's")]
    Reserved,
}

/// A request's metric from JSON: a string, a boolean, or an integer (INT32 when it fits,
/// else INT64).
pub fn metric_from_json(name: &str, value: &serde_json::Value) -> Result<KuraMetric, MetricError> {
    if name == "request.id" || name == "requester.client.id" {
        return Err(MetricError::Reserved);
    }
    match value {
        serde_json::Value::String(s) => Ok(KuraMetric::string(name, s)),
        serde_json::Value::Bool(b) => Ok(KuraMetric::bool(name, *b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(match i32::try_from(i) {
                Ok(small) => KuraMetric::int32(name, small),
                Err(_) => KuraMetric::int64(name, i),
            }),
            None => Err(MetricError::Type),
        },
        _ => Err(MetricError::Type),
    }
}

/// A device's reply: its `response.code` and the whole payload (metrics and body).
#[derive(Clone, Debug)]
pub struct Reply {
    /// `response.code`: 200 ok, 400, 404, 500.
    pub code: i32,
    /// The reply payload as the device sent it (decompressed).
    pub payload: Payload,
}

impl Reply {
    /// `response.exception.message`, on an error reply.
    pub fn exception_message(&self) -> Option<&str> {
        self.payload.metric_str("response.exception.message")
    }
}

/// Why a request got no reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The device has no connected session.
    #[error("the device is not connected")]
    NotConnected,
    /// Connected, but neither its BIRTH nor a subscription covering the request topic yet.
    #[error(
        "the device is connected but not ready (no BIRTH, no subscription covering the request)"
    )]
    NotReady,
    /// No reply within the request's timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The device disconnected before it replied.
    #[error("the device disconnected before replying")]
    Disconnected,
    /// The reply could not be read.
    #[error("malformed reply: {0}")]
    MalformedReply(String),
    /// The app or a resource cannot be a topic level.
    #[error("{0} must be one topic level (no /, +, #)")]
    InvalidLevel(&'static str),
    /// Fleetgate's broker is not attached (not started, or shutting down).
    #[error("the operational endpoint is not running")]
    NoBroker,
}

/// What the requester needs of the broker.
pub trait Transport: Send + Sync {
    /// `None` when `client_id` of `account` has no connected session; else whether one of its
    /// subscriptions matches `topic`.
    fn subscribed(&self, account: &str, client_id: &str, topic: &str) -> Option<bool>;
    /// Publishes a request at QoS 1, not retained.
    fn publish(&self, topic: String, payload: Vec<u8>);
}

struct Pending {
    account: String,
    client_id: String,
    app: String,
    reply: oneshot::Sender<Result<Reply, RequestError>>,
}

/// Told when a device becomes ready: `(account, client_id)`. Called on the broker's thread
/// that saw it, so it must only note the fact and return (spawn any work).
pub type ReadyListener = Box<dyn Fn(&str, &str) + Send + Sync>;

/// The requester: one per Fleetgate process, shared by the admin API and jobs.
pub struct Requester {
    requester: String,
    transport: OnceLock<Arc<dyn Transport>>,
    pending: Mutex<HashMap<String, Pending>>,
    births: Mutex<HashSet<(String, String)>>,
    ignored: AtomicU64,
    listeners: RwLock<Vec<ReadyListener>>,
}

/// Removes a request from the pending map however its caller stops waiting.
struct PendingGuard<'a> {
    requester: &'a Requester,
    id: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.requester.pending.lock().remove(&self.id);
    }
}

/// A request topic every device listening for requests receives (Kura subscribes
/// `$EDC/ACCOUNT/CID/#`); readiness by subscription is judged on it.
fn probe_topic(account: &str, client_id: &str) -> String {
    format!("$EDC/{account}/{client_id}/CONF-V1/PUT/configurations")
}

/// Whether `filter` reaches below `$EDC/{account}/{client_id}/`: its first three levels match
/// those (literally, or by `+`), or a `#` comes first.
fn covers_requests(filter: &str, account: &str, client_id: &str) -> bool {
    let mut levels = filter.split('/');
    for want in ["$EDC", account, client_id] {
        match levels.next() {
            Some("#") => return want != "$EDC",
            Some("+") if want != "$EDC" => {}
            Some(l) if l == want => {}
            _ => return false,
        }
    }
    levels.next().is_some()
}

fn topic_level(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '+', '#', '\0'])
}

impl Requester {
    /// A requester known to devices as `requester` (config `device_management.requester`):
    /// replies come on `$EDC/ACCOUNT/{requester}/...`.
    pub fn new(requester: impl Into<String>) -> Requester {
        Requester {
            requester: requester.into(),
            transport: OnceLock::new(),
            pending: Mutex::new(HashMap::new()),
            births: Mutex::new(HashSet::new()),
            ignored: AtomicU64::new(0),
            listeners: RwLock::new(Vec::new()),
        }
    }

    /// Registers `listener`, called each time a device becomes ready: at its BIRTH, at a
    /// subscription covering `$EDC/ACCOUNT/CID/...`, and when it reconnects to a session that
    /// kept such a subscription. A device may be reported ready more than once per connection.
    pub fn on_ready(&self, listener: ReadyListener) {
        self.listeners.write().push(listener);
    }

    fn notify_ready(&self, account: &str, client_id: &str) {
        for listener in self.listeners.read().iter() {
            listener(account, client_id);
        }
    }

    /// Whether a request could be sent to `client_id` of `account` now: connected, and its
    /// BIRTH seen or a subscription covering its request topics made.
    pub fn is_ready(&self, account: &str, client_id: &str) -> bool {
        let Some(transport) = self.transport.get() else {
            return false;
        };
        match transport.subscribed(account, client_id, &probe_topic(account, client_id)) {
            None => false,
            Some(true) => true,
            Some(false) => self
                .births
                .lock()
                .contains(&(account.to_string(), client_id.to_string())),
        }
    }

    /// Device `client_id` of `account` subscribed to `filter` (the broker granted it): ready
    /// when the filter covers its request topics.
    pub fn on_subscribe(&self, account: &str, client_id: &str, filter: &str) {
        if covers_requests(filter, account, client_id) {
            self.notify_ready(account, client_id);
        }
    }

    /// Device `client_id` of `account` connected, to a new or a resumed session: ready now
    /// when the resumed session kept a subscription covering its request topics.
    pub fn on_connect(&self, account: &str, client_id: &str) {
        let Some(transport) = self.transport.get() else {
            return;
        };
        if transport.subscribed(account, client_id, &probe_topic(account, client_id)) == Some(true)
        {
            self.notify_ready(account, client_id);
        }
    }

    /// Connects the requester to the broker once it runs.
    pub fn attach(&self, transport: Arc<dyn Transport>) {
        if self.transport.set(transport).is_err() {
            tracing::warn!("the requester is attached to a broker already");
        }
    }

    /// The requester's client ID.
    pub fn requester_id(&self) -> &str {
        &self.requester
    }

    /// Replies that matched no pending request (unknown, expired, from another device).
    pub fn ignored_replies(&self) -> u64 {
        self.ignored.load(Ordering::Relaxed)
    }

    /// Sends `request` to `client_id` of `account` and waits for its reply. Not sent when the
    /// device is not connected or not ready.
    pub async fn request(
        &self,
        account: &str,
        client_id: &str,
        request: Request,
    ) -> Result<Reply, RequestError> {
        if !topic_level(&request.app) {
            return Err(RequestError::InvalidLevel("app"));
        }
        if !request.resources.iter().all(|r| topic_level(r)) {
            return Err(RequestError::InvalidLevel("every resource"));
        }
        let transport = self.transport.get().ok_or(RequestError::NoBroker)?;
        let mut topic = format!(
            "$EDC/{account}/{client_id}/{}/{}",
            request.app,
            request.method.as_str()
        );
        for r in &request.resources {
            topic.push('/');
            topic.push_str(r);
        }
        match transport.subscribed(account, client_id, &topic) {
            None => return Err(RequestError::NotConnected),
            Some(false)
                if !self
                    .births
                    .lock()
                    .contains(&(account.to_string(), client_id.to_string())) =>
            {
                return Err(RequestError::NotReady);
            }
            Some(_) => {}
        }
        let id = format!("{:032x}", rand::rng().random::<u128>());
        let mut payload = Payload::new()
            .with_str("request.id", id.clone())
            .with_str("requester.client.id", self.requester.clone());
        for m in request.metrics {
            payload.set_metric(m);
        }
        payload.set_body(request.body);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(
            id.clone(),
            Pending {
                account: account.to_string(),
                client_id: client_id.to_string(),
                app: request.app,
                reply: tx,
            },
        );
        let _guard = PendingGuard {
            requester: self,
            id: id.clone(),
        };
        transport.publish(topic, payload.encode());
        match tokio::time::timeout(request.timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(RequestError::Disconnected),
            Err(_) => Err(RequestError::Timeout(request.timeout)),
        }
    }

    /// A PUBLISH the broker accepted from device `client_id` of `account`: its BIRTH makes it
    /// ready; a reply to this requester answers the pending request of that id, when it is
    /// this very device's (anything else is ignored and counted).
    pub fn on_publish(&self, account: &str, client_id: &str, topic: &str, payload: &[u8]) {
        if is_birth_topic(topic, account, client_id) {
            self.births
                .lock()
                .insert((account.to_string(), client_id.to_string()));
            self.notify_ready(account, client_id);
            return;
        }
        let Some((app, id)) = self.reply_parts(account, topic) else {
            return;
        };
        let pending = {
            let mut map = self.pending.lock();
            match map.get(id) {
                Some(p) if p.account == account && p.client_id == client_id && p.app == app => {
                    map.remove(id)
                }
                _ => None,
            }
        };
        let Some(pending) = pending else {
            self.ignored.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%account, %client_id, %topic, "reply to no pending request ignored");
            return;
        };
        let reply = Payload::decode_maybe_gzip(payload, MAX_REPLY)
            .map_err(|e| RequestError::MalformedReply(e.to_string()))
            .and_then(|payload| match payload.metric_i32("response.code") {
                Some(code) => Ok(Reply { code, payload }),
                None => Err(RequestError::MalformedReply(
                    "no INT32 metric response.code".into(),
                )),
            });
        if let Err(e) = &reply {
            tracing::warn!(%account, %client_id, %app, error = %e, "malformed reply");
        }
        // The caller may have stopped waiting: nothing to do then.
        let _ = pending.reply.send(reply);
    }

    /// `(app, request id)` of `$EDC/{account}/{requester}/{app}/REPLY/{id}`.
    fn reply_parts<'t>(&self, account: &str, topic: &'t str) -> Option<(&'t str, &'t str)> {
        let rest = topic
            .strip_prefix("$EDC/")?
            .strip_prefix(account)?
            .strip_prefix('/')?
            .strip_prefix(self.requester.as_str())?
            .strip_prefix('/')?;
        let (app, rest) = rest.split_once('/')?;
        let id = rest.strip_prefix("REPLY/")?;
        (!id.contains('/')).then_some((app, id))
    }

    /// Device `client_id` of `account` disconnected: it is not ready any more, and its
    /// pending requests fail at once.
    pub fn on_disconnect(&self, account: &str, client_id: &str) {
        self.births
            .lock()
            .remove(&(account.to_string(), client_id.to_string()));
        let mut map = self.pending.lock();
        let gone: Vec<String> = map
            .iter()
            .filter(|(_, p)| p.account == account && p.client_id == client_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(p) = map.remove(&id) {
                let _ = p.reply.send(Err(RequestError::Disconnected));
            }
        }
    }
}

#[cfg(test)]
mod tests;
