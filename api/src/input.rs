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
use std::time::Duration;

use fleetgate_devconfig::Document;
use fleetgate_devmgmt::{Command, Method, Request};
use fleetgate_kura::proto::KuraMetric;
use fleetgate_storage::jobs::{self, JobSpec, JobStep, Schedule};
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

/// Longest device-management request wait, seconds.
pub const MAX_DEVICE_TIMEOUT: i64 = 3600;

/// One topic level of a request: non-empty, at most 255 bytes, no `/`, `+`, `#`, NUL.
fn topic_level(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && !s.contains(['/', '+', '#', '\0'])
}

impl Fields<'_> {
    /// `timeout` in seconds, 1 to [`MAX_DEVICE_TIMEOUT`], else `default`.
    fn timeout(&mut self, default: Duration) -> Duration {
        match self.integer("timeout") {
            Some(n) if (1..=MAX_DEVICE_TIMEOUT).contains(&n) => {
                Duration::from_secs(n.unsigned_abs())
            }
            Some(_) => {
                self.wrong("timeout", "must be 1 to 3600 seconds");
                default
            }
            None => default,
        }
    }

    /// `metrics`: an object of strings, booleans and integers, as Kura metrics (integers that
    /// fit INT32 as INT32, others as INT64).
    fn metrics(&mut self) -> Vec<KuraMetric> {
        let Some(v) = self.value("metrics") else {
            return Vec::new();
        };
        let Some(obj) = v.as_object() else {
            self.wrong("metrics", "must be an object");
            return Vec::new();
        };
        let mut out = Vec::with_capacity(obj.len());
        for (name, value) in obj {
            match fleetgate_devmgmt::metric_from_json(name, value) {
                Ok(m) => out.push(m),
                Err(e) => self.wrong("metrics", &e.to_string()),
            }
        }
        out
    }
}

/// Parses and validates a device-management request body (`POST .../devices/{clientId}/
/// requests`).
pub fn device_request(body: &Value, default_timeout: Duration) -> Result<Request, Vec<FieldError>> {
    let mut f = Fields::of(body)?;
    let app = f.string("app");
    let method = f.string("method");
    let resources = f.strings("resources").unwrap_or_default();
    let metrics = f.metrics();
    let text = f.string("body");
    let timeout = f.timeout(default_timeout);
    let mut e = Vec::new();
    match &app {
        None => e.push(FieldError::new("app", "is required")),
        Some(a) if !topic_level(a) => e.push(FieldError::new("app", "must be one topic level")),
        Some(_) => {}
    }
    let method = match method.as_deref().map(|m| (m, Method::parse(m))) {
        None => {
            e.push(FieldError::new("method", "is required"));
            None
        }
        Some((_, None)) => {
            e.push(FieldError::new(
                "method",
                "must be GET, PUT, POST, DEL or EXEC",
            ));
            None
        }
        Some((_, Some(m))) => Some(m),
    };
    if !resources.iter().all(|r| topic_level(r)) {
        e.push(FieldError::new("resources", "each must be one topic level"));
    }
    let request = match (app, method) {
        (Some(app), Some(method)) if e.is_empty() => Ok(Request {
            app,
            method,
            resources,
            metrics,
            body: text.map(String::into_bytes),
            timeout,
        }),
        _ => Err(e),
    };
    f.finish(request)
}

/// Parses and validates a command body (`POST .../devices/{clientId}/commands`) into a CMD-V1
/// `EXEC command` request: `command.command`, `command.argumentN`, `command.environment.pairN`
/// (`NAME=VALUE`), `command.password`, `command.timeout` (seconds; the reply is awaited a few
/// seconds longer).
pub fn command(body: &Value, default_timeout: Duration) -> Result<Request, Vec<FieldError>> {
    command_parts(body, default_timeout).map(|(c, timeout)| Request::command(c, timeout))
}

/// A command body's fields (`command`, `arguments`, `environment`, `password`) and its
/// `timeout`, validated: what [`command`] sends and a job's command step keeps.
fn command_parts(
    body: &Value,
    default_timeout: Duration,
) -> Result<(Command, Duration), Vec<FieldError>> {
    let mut f = Fields::of(body)?;
    let command = f.string("command");
    let arguments = f.strings("arguments").unwrap_or_default();
    let environment: Vec<(String, String)> = match f.value("environment") {
        None => Vec::new(),
        Some(Value::Object(o)) if o.values().all(Value::is_string) => o
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
        Some(_) => {
            f.wrong("environment", "must be an object of strings");
            Vec::new()
        }
    };
    let password = f.string("password");
    let timeout = f.timeout(default_timeout);
    let parts = match command.filter(|c| !c.trim().is_empty()) {
        None => Err(vec![FieldError::new("command", "is required")]),
        Some(command) => Ok((
            Command {
                command,
                arguments,
                environment,
                password,
            },
            timeout,
        )),
    };
    f.finish(parts)
}

/// Most steps one job may have.
pub const MAX_JOB_STEPS: usize = 50;

/// Parses and validates a job body (`POST .../jobs`) of `account`: name, targets (existence is
/// checked in the write), steps (each validated as its device-management request would be,
/// errors on `steps[N].field`), schedule, `maxAttempts` (1 to 100, default 3), `stepTimeout`
/// (seconds, 1 to 3600, default `default_timeout`).
pub fn job_spec(
    body: &Value,
    account: &str,
    default_timeout: Duration,
) -> Result<JobSpec, Vec<FieldError>> {
    let mut f = Fields::of(body)?;
    let name = f.string("name");
    let targets = f.strings("targets");
    let steps = f.value("steps");
    let schedule = f.value("schedule");
    let max_attempts = f.integer("maxAttempts");
    let step_timeout = f.integer("stepTimeout");
    let mut e = Vec::new();
    match &name {
        None => e.push(FieldError::new("name", "is required")),
        Some(n) if n.trim().is_empty() || n.chars().count() > 255 => {
            e.push(FieldError::new("name", "must be 1 to 255 characters"));
        }
        Some(_) => {}
    }
    match &targets {
        Some(t) if t.len() > jobs::MAX_TARGETS => e.push(FieldError::new(
            "targets",
            format!("at most {} per job", jobs::MAX_TARGETS),
        )),
        Some(_) => {}
        None if !f.errors.iter().any(|x| x.field == "targets") => {
            e.push(FieldError::new("targets", "is required"));
        }
        None => {}
    }
    let steps = match steps {
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_JOB_STEPS => items
            .iter()
            .enumerate()
            .filter_map(|(i, step)| match job_step(step, i) {
                Ok(s) => Some(s),
                Err(errors) => {
                    e.extend(errors);
                    None
                }
            })
            .collect(),
        _ => {
            e.push(FieldError::new(
                "steps",
                format!("must be an array of 1 to {MAX_JOB_STEPS} steps"),
            ));
            Vec::new()
        }
    };
    let schedule = match schedule {
        None => {
            e.push(FieldError::new("schedule", "is required"));
            None
        }
        Some(s) => match job_schedule(s) {
            Ok(s) => Some(s),
            Err(errors) => {
                e.extend(errors);
                None
            }
        },
    };
    let max_attempts = match max_attempts {
        None => 3,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=100).contains(n))
            .unwrap_or_else(|| {
                e.push(FieldError::new("maxAttempts", "must be 1 to 100"));
                1
            }),
    };
    let step_timeout = match step_timeout {
        None => u32::try_from(default_timeout.as_secs().max(1)).unwrap_or(u32::MAX),
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=3600).contains(n))
            .unwrap_or_else(|| {
                e.push(FieldError::new("stepTimeout", "must be 1 to 3600 seconds"));
                1
            }),
    };
    let spec = match (name, targets, schedule) {
        (Some(name), Some(targets), Some(schedule)) if e.is_empty() => Ok(JobSpec {
            account: account.to_string(),
            name: name.trim().to_string(),
            steps,
            schedule,
            max_attempts,
            step_timeout,
            targets,
        }),
        _ => Err(e),
    };
    f.finish(spec)
}

/// One step, validated as the device-management request it sends; errors on `steps[N].field`.
fn job_step(step: &Value, i: usize) -> Result<JobStep, Vec<FieldError>> {
    let at = |errors: Vec<FieldError>| -> Vec<FieldError> {
        errors
            .into_iter()
            .map(|x| {
                let field = if x.field.is_empty() {
                    format!("steps[{i}]")
                } else {
                    format!("steps[{i}].{}", x.field)
                };
                FieldError::new(&field, x.message)
            })
            .collect()
    };
    let text = |name: &str| step.get(name).and_then(Value::as_str).map(str::to_string);
    let any = Duration::from_secs(1);
    match step.get("type").and_then(Value::as_str) {
        Some("configuration") => {
            let xml = text("configuration")
                .ok_or_else(|| at(vec![FieldError::new("configuration", "is required (XML)")]))?;
            let configuration = configuration_snapshot(&xml, None, "configuration").map_err(at)?;
            Ok(JobStep::Configuration { configuration })
        }
        Some("command") => {
            let (c, _) = command_parts(step, any).map_err(at)?;
            if c.password.is_some() {
                return Err(at(vec![FieldError::new(
                    "password",
                    "is not stored in jobs: use a command service without a password",
                )]));
            }
            Ok(JobStep::Command {
                command: c.command,
                arguments: c.arguments,
                environment: c.environment.into_iter().collect(),
            })
        }
        Some("request") => {
            let request = device_request(step, any).map_err(at)?;
            Ok(JobStep::Request {
                app: request.app,
                method: request.method.as_str().to_string(),
                resources: request.resources,
                metrics: step
                    .get("metrics")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
                body: text("body"),
            })
        }
        _ => Err(at(vec![FieldError::new(
            "type",
            "must be configuration, command or request",
        )])),
    }
}

/// A job's schedule; errors on `schedule.field`.
fn job_schedule(value: &Value) -> Result<Schedule, Vec<FieldError>> {
    let wrong = |field: &str, m: String| vec![FieldError::new(&format!("schedule.{field}"), m)];
    let text = |name: &str| value.get(name).and_then(Value::as_str);
    let schedule = match text("trigger") {
        Some("NOW") => Schedule::Now,
        Some("DEVICE_CONNECT") => Schedule::DeviceConnect,
        Some("INTERVAL") => {
            let every = text("every")
                .ok_or_else(|| wrong("every", "is required (an ISO 8601 duration)".into()))?;
            fleetgate_jobs::schedule::parse_duration(every)
                .map_err(|e| wrong("every", e.to_string()))?;
            let starts_on = match value.get("startsOn").filter(|v| !v.is_null()) {
                None => None,
                Some(v) => Some(
                    v.as_str()
                        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                        .map(|t| t.with_timezone(&Utc))
                        .ok_or_else(|| wrong("startsOn", "must be an RFC 3339 timestamp".into()))?,
                ),
            };
            Schedule::Interval {
                every: every.to_string(),
                starts_on,
            }
        }
        Some("CRON") => {
            let cron = text("cron").ok_or_else(|| {
                wrong(
                    "cron",
                    "is required (5 fields: minute hour day month weekday)".into(),
                )
            })?;
            fleetgate_jobs::schedule::parse_cron(cron).map_err(|e| wrong("cron", e.to_string()))?;
            Schedule::Cron {
                cron: cron.trim().to_string(),
            }
        }
        _ => {
            return Err(wrong(
                "trigger",
                "must be NOW, DEVICE_CONNECT, INTERVAL or CRON".into(),
            ));
        }
    };
    Ok(schedule)
}
/// A configuration document as CONF-V1 sends it: `xml` parsed as a request's additional
/// configuration (the error, on `field`, says line and column), holding at least one
/// configuration (with `pid`: exactly that PID's), rewritten in Kura's snapshot form.
pub fn configuration_snapshot(
    xml: &str,
    pid: Option<&str>,
    field: &str,
) -> Result<String, Vec<FieldError>> {
    let wrong = |m: String| vec![FieldError::new(field, m)];
    let document = Document::parse(xml).map_err(|e| wrong(e.to_string()))?;
    if document.configurations.is_empty() {
        return Err(wrong("holds no configuration".into()));
    }
    if let Some(pid) = pid
        && (document.configurations.len() != 1 || document.configuration(pid).is_none())
    {
        return Err(wrong(format!(
            "must hold exactly the configuration of {pid}"
        )));
    }
    Ok(document.to_snapshot_xml())
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
