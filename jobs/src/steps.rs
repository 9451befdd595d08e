//! A job step as the Kura request it sends, and the log line its reply makes.

use std::time::Duration;

use fleetgate_devmgmt::{Command, Method, Reply, Request, metric_from_json};
use fleetgate_storage::jobs::JobStep;

use crate::JobsError;

/// Longest excerpt of a command's output or an error message kept in a log line.
const EXCERPT: usize = 2000;

/// The request `step` sends, each reply awaited `timeout`. Fails only on a step that the API
/// would not have taken (unknown method, a bad metric).
pub fn request_of(step: &JobStep, timeout: Duration) -> Result<Request, JobsError> {
    Ok(match step {
        JobStep::Configuration { configuration } => {
            Request::configuration_put(None, configuration.clone(), timeout)
        }
        JobStep::Command {
            command,
            arguments,
            environment,
        } => Request::command(
            Command {
                command: command.clone(),
                arguments: arguments.clone(),
                environment: environment
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                password: None,
            },
            timeout,
        ),
        JobStep::Request {
            app,
            method,
            resources,
            metrics,
            body,
        } => Request {
            app: app.clone(),
            method: Method::parse(method).ok_or(JobsError::Method)?,
            resources: resources.clone(),
            metrics: metrics
                .iter()
                .map(|(name, value)| metric_from_json(name, value))
                .collect::<Result<_, _>>()?,
            body: body.clone().map(String::into_bytes),
            timeout,
        },
    })
}

/// What a step is, for its log lines: `CONF-V1 PUT configurations`.
pub fn describe(request: &Request) -> String {
    format!(
        "{} {} {}",
        request.app,
        request.method.as_str(),
        request.resources.join("/")
    )
}

fn excerpt(s: &str) -> String {
    if s.len() <= EXCERPT {
        return s.to_string();
    }
    let mut end = EXCERPT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

/// The log line of a device's reply: its code, and what the step's kind says of it (a
/// command's exit code and output, an error's message).
pub fn reply_line(step: &JobStep, what: &str, reply: &Reply) -> String {
    let p = &reply.payload;
    let mut line = format!("{what} answered {}", reply.code);
    if let JobStep::Command { .. } = step {
        if let Some(code) = p.metric_i32("command.exit.code") {
            line.push_str(&format!(", exit code {code}"));
        }
        if p.metric_bool("command.timedout") == Some(true) {
            line.push_str(", timed out");
        }
        for (name, label) in [("command.stdout", "stdout"), ("command.stderr", "stderr")] {
            if let Some(text) = p.metric_str(name).filter(|t| !t.is_empty()) {
                line.push_str(&format!(", {label}: {:?}", excerpt(text)));
            }
        }
    } else if let Some(body) = p.body().filter(|b| !b.is_empty()) {
        line.push_str(&format!(", body of {} bytes", body.len()));
    }
    if reply.code != 200
        && let Some(m) = reply.exception_message()
    {
        line.push_str(&format!(": {}", excerpt(m)));
    }
    line
}
