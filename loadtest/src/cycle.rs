//! The `cycle` scenario: each client connects, subscribes to its own topic at QoS 1 (the
//! `--topic` template with `{client_id}` replaced, `cycle/{client_id}` by default), publishes one
//! QoS 1 message there, receives it back and disconnects (after `--hold`, idle, when given:
//! an idle-connection load).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bytes::Bytes;

use crate::api;
use crate::config::{CycleConfig, Protocol, cycle_topic, validate_run_id, validate_topic_template};
use crate::mqtt::{ConnectParams, Dialer, Incoming, MqttError};
use crate::net::{self, phase};
use crate::report::{Report, ReportConfig, Scenario, ServerMetrics};
use crate::runner;
use crate::stats::{Failure, Outcome};

const CONNECT: usize = 0;
const ROUNDTRIP: usize = 1;
const TOTAL: usize = 2;

struct Ctx {
    run_id: String,
    topic: String,
    login: Option<(String, String)>,
    dialer: Dialer,
    broker: SocketAddr,
    protocol: Protocol,
    timeout: Duration,
    keep_alive: u16,
    hold: Option<Duration>,
}

/// Runs the `cycle` scenario and returns its report. Errors are setup failures (unreachable
/// broker, bad configuration); client failures are in the report.
pub async fn run_cycle(config: &CycleConfig) -> anyhow::Result<Report> {
    validate_run_id(&config.run_id).map_err(|e| anyhow!("--run-id: {e}"))?;
    if config.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if config.sandbox && (config.username.is_some() || config.password.is_some()) {
        bail!("--sandbox clients are anonymous: no --username or --password");
    }
    validate_topic_template(&config.topic).map_err(|e| anyhow!("--topic: {e}"))?;
    let broker = net::probe(&config.broker, "broker").await?;
    let dialer = if broker.ip().is_loopback() && config.run.source_addresses > 1 {
        Dialer::loopback_spread(config.run.source_addresses)
    } else {
        Dialer::new()
    };
    let api_base = config.api.clone();
    let metrics_before =
        tokio::task::spawn_blocking(move || api::metrics_or_empty(api_base.as_deref(), "before"))
            .await
            .unwrap_or_default();
    eprintln!(
        "run {}: {} clients cycling on {} against {} from {} source address(es)",
        config.run_id,
        config.clients,
        config.topic,
        config.broker,
        dialer.source_count()
    );
    let login = match (&config.username, &config.password) {
        (Some(u), p) => Some((u.clone(), p.clone().unwrap_or_default())),
        (None, _) => None,
    };
    let ctx = Arc::new(Ctx {
        run_id: config.run_id.clone(),
        topic: config.topic.clone(),
        login,
        dialer,
        broker,
        protocol: config.run.protocol,
        timeout: config.run.timeout,
        // A held client sends nothing, so its keep alive must outlast the hold too.
        keep_alive: net::keep_alive(config.run.timeout + config.hold.unwrap_or_default()),
        hold: config.hold,
    });
    let result = runner::run(config.clients, 3, &config.run, move |i| {
        let ctx = ctx.clone();
        async move { cycle_client(&ctx, i).await }
    })
    .await;
    let api_base = config.api.clone();
    let metrics_after =
        tokio::task::spawn_blocking(move || api::metrics_or_empty(api_base.as_deref(), "after"))
            .await
            .unwrap_or_default();
    Ok(Report::build(
        Scenario::Cycle,
        ReportConfig::Cycle {
            clients: config.clients as u64,
            concurrency: config.run.load.concurrency().map(|c| c as u64),
            rate: config.run.load.rate(),
            protocol: config.run.protocol.as_str().to_string(),
            topic: config.topic.clone(),
            sandbox: config.sandbox,
            ramp: config.run.load.ramp(),
            hold_s: config.hold.map(|h| h.as_secs_f64()),
        },
        config.run.protocol,
        result.attempted,
        &result.stats,
        result.elapsed.as_secs_f64(),
        ServerMetrics {
            metrics_before,
            metrics_after,
        },
    ))
}

async fn cycle_client(ctx: &Ctx, i: usize) -> Outcome {
    let mut out = Outcome::default();
    match cycle(ctx, i, &mut out).await {
        Ok(()) => out,
        Err(f) => out.fail(f),
    }
}

async fn cycle(ctx: &Ctx, i: usize, out: &mut Outcome) -> Result<(), Failure> {
    let cid = format!("cycle-{}-{i}", ctx.run_id);
    let t0 = Instant::now();
    let params = ConnectParams {
        client_id: &cid,
        login: ctx.login.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
        keep_alive: ctx.keep_alive,
    };
    let mut conn = phase(
        ctx.timeout,
        &format!("{cid}: CONNECT"),
        net::connect(&ctx.dialer, i, ctx.broker, ctx.protocol, params),
    )
    .await?;
    out.phases[CONNECT] = Some(t0.elapsed());
    let topic = cycle_topic(&ctx.topic, &cid);
    let body = Bytes::from(format!("{cid} {}", t0.elapsed().as_nanos()));
    let result = async {
        phase(
            ctx.timeout,
            &format!("{cid}: SUBSCRIBE"),
            conn.subscribe(&topic),
        )
        .await?;
        let t1 = Instant::now();
        phase(ctx.timeout, &format!("{cid}: roundtrip"), async {
            let pkid = conn.publish_qos1(&topic, body.clone()).await?;
            loop {
                match conn.next().await? {
                    Incoming::Publish {
                        topic: t,
                        pkid: id,
                        qos,
                        payload,
                    } => {
                        let received = Instant::now();
                        if qos > 0 {
                            conn.puback(id).await?;
                        }
                        if t != topic || payload != body {
                            return Err(MqttError::Protocol(format!(
                                "received a different message on {t}"
                            )));
                        }
                        return Ok(received);
                    }
                    Incoming::PubAck { pkid: id, reason } if id == pkid && reason >= 0x80 => {
                        return Err(MqttError::PublishRefused(reason));
                    }
                    Incoming::Disconnect { reason } => {
                        return Err(MqttError::ServerDisconnect(reason));
                    }
                    _ => {}
                }
            }
        })
        .await
        .map(|received| (t1, received))
    }
    .await;
    if let (Ok(_), Some(hold)) = (&result, ctx.hold) {
        tokio::time::sleep(hold).await;
    }
    conn.disconnect().await;
    let (t1, received) = result?;
    out.phases[ROUNDTRIP] = Some(received - t1);
    out.phases[TOTAL] = Some(received - t0);
    Ok(())
}
