//! The `enroll` scenario: create the fleet's provision requests through the bulk API, then
//! let every device run the PROV-V1 exchange (and optionally reconnect operationally).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use rand::distr::Alphanumeric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use fleetgate_client::types::ProvisionRequestInput;
use fleetgate_kura::Payload;

use crate::api;
use crate::config::{
    BrokerAddr, Credentials, EnrollConfig, OperationalPhase, Protocol, validate_run_id,
};
use crate::mqtt::{Conn, ConnectParams, Dialer, Incoming, MqttError};
use crate::net::{self, phase};
use crate::report::{Report, ReportConfig, Scenario, ServerMetrics};
use crate::runner;
use crate::stats::{Failure, FailureKind, Outcome};
use crate::verify::{Identity, verify_reply};
use crate::wire;

/// Phase indexes of an enrollment outcome (see [`crate::report::ENROLL_PHASES`]).
const CONNECT: usize = 0;
const REPLY: usize = 1;
const ENROLLMENT: usize = 2;
const OPERATIONAL: usize = 3;

/// One simulated device, fully prepared before the run so the hot path only does I/O.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// Client ID (`lt-{seed}-{run}-{i}`).
    pub client_id: String,
    /// Provision username.
    pub username: Arc<str>,
    /// Provision password.
    pub password: Arc<str>,
    /// `request.id` of its PROV-V1 request.
    pub request_id: String,
    /// Activation key returned at creation, if requested.
    pub activation_key: Option<String>,
}

/// The devices of a run and the provision requests that enroll them; a pure function of the
/// configuration's seed, run id, size and credentials mode.
pub fn plan_devices(
    config: &EnrollConfig,
    expires_on: &str,
) -> (Vec<DeviceSpec>, Vec<ProvisionRequestInput>) {
    let mut rng = StdRng::seed_from_u64(mix(config.seed, &config.run_id));
    let shared: (Arc<str>, Arc<str>) = (
        Arc::from(format!("lt-shared-{}", config.run_id)),
        Arc::from(password(&mut rng)),
    );
    let mut devices = Vec::with_capacity(config.devices);
    let mut requests = Vec::with_capacity(config.devices);
    for i in 0..config.devices {
        let (username, pass) = match config.credentials {
            Credentials::Shared => shared.clone(),
            Credentials::Unique => (
                Arc::from(format!("lt-{}-{}-{i}", config.seed, config.run_id)),
                Arc::from(password(&mut rng)),
            ),
        };
        let client_id = format!("lt-{}-{}-{i}", config.seed, config.run_id);
        let request_id = format!("r{i}-{:08x}", rng.random::<u32>());
        requests.push(
            ProvisionRequestInput {
                client_id: Some(client_id.clone()),
                provision_username: Some(username.to_string()),
                broker_url: Some(config.operational_broker.clone()),
                generate_activation_key: config.activation_key.then_some(true),
                expires_on: Some(expires_on.to_string()),
                ..ProvisionRequestInput::default()
            }
            .with_password(&pass),
        );
        devices.push(DeviceSpec {
            client_id,
            username,
            password: pass,
            request_id,
            activation_key: None,
        });
    }
    (devices, requests)
}

fn password(rng: &mut StdRng) -> String {
    (0..24).map(|_| rng.sample(Alphanumeric) as char).collect()
}

/// Folds the run id into the seed, so two runs with the same seed still get other passwords.
fn mix(seed: u64, run_id: &str) -> u64 {
    run_id.bytes().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

struct Ctx {
    devices: Vec<DeviceSpec>,
    payloads: Vec<Bytes>,
    dialer: Dialer,
    provisioning: SocketAddr,
    protocol: Protocol,
    timeout: Duration,
    keep_alive: u16,
    provisioning_account: String,
    account: String,
    encoding: crate::config::Encoding,
    operational: bool,
    operational_url: String,
    operational_addr: Option<SocketAddr>,
    /// Kura requests each device answers once reconnected.
    kura_replies: u32,
    /// With a separate operational phase: each enrolled device's new identity, kept for the
    /// second phase (empty otherwise).
    identities: Vec<OnceLock<Identity>>,
}

/// Runs the `enroll` scenario and returns its report. Errors are setup failures (unreachable
/// API or listener, API refusal, bad configuration); device failures are in the report.
pub async fn run_enroll(config: &EnrollConfig) -> anyhow::Result<Report> {
    validate_run_id(&config.run_id).map_err(|e| anyhow!("--run-id: {e}"))?;
    if config.devices == 0 {
        bail!("--devices must be at least 1");
    }
    let operational_target =
        BrokerAddr::parse(&config.operational_broker).context("--operational-broker")?;

    let provisioning = net::probe(&config.provisioning, "provisioning listener").await?;
    let operational_addr = if config.operational {
        Some(net::probe(&operational_target, "operational listener").await?)
    } else {
        net::resolve(&operational_target).await.ok()
    };
    let dialer = if provisioning.ip().is_loopback() && config.run.source_addresses > 1 {
        Dialer::loopback_spread(config.run.source_addresses)
    } else {
        Dialer::new()
    };

    let lifetime = chrono::Duration::from_std(
        config.run.duration.unwrap_or_default() + Duration::from_secs(600),
    )
    .unwrap_or_else(|_| chrono::Duration::hours(1))
    .max(chrono::Duration::hours(1));
    let expires_on =
        (chrono::Utc::now() + lifetime).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (mut devices, requests) = plan_devices(config, &expires_on);
    let separate = config.operational && config.run.operational_phase == OperationalPhase::Separate;

    let api_base = config.api.clone();
    let metrics_before =
        tokio::task::spawn_blocking(move || api::metrics_or_empty(Some(&api_base), "before"))
            .await
            .unwrap_or_default();

    eprintln!(
        "run {} (seed {}): creating {} provision requests in account {} ...",
        config.run_id, config.seed, config.devices, config.account
    );
    let api = api::admin(&config.api, &config.token);
    let (account, chunk) = (config.account.clone(), config.bulk_size);
    let t = Instant::now();
    let created =
        tokio::task::spawn_blocking(move || api::bulk_create(&api, &account, &requests, chunk))
            .await
            .context("bulk creation task")??;
    eprintln!(
        "created {} provision requests in {:.2} s; {} devices connecting to {} from {} source address(es)",
        created.len(),
        t.elapsed().as_secs_f64(),
        config.devices,
        config.provisioning,
        dialer.source_count()
    );
    if config.activation_key {
        let mut keys: HashMap<String, String> = created
            .into_iter()
            .filter_map(|c| {
                c.activation_key
                    .map(|k| (c.client_id, k.expose().to_string()))
            })
            .collect();
        for d in &mut devices {
            d.activation_key =
                Some(keys.remove(&d.client_id).ok_or_else(|| {
                    anyhow!("the API returned no activationKey for {}", d.client_id)
                })?);
        }
    }
    let payloads = devices
        .iter()
        .map(|d| {
            Bytes::from(wire::encode_request(
                config.encoding,
                &d.request_id,
                d.activation_key.as_deref(),
            ))
        })
        .collect();

    let ctx = Arc::new(Ctx {
        devices,
        payloads,
        dialer,
        provisioning,
        protocol: config.run.protocol,
        timeout: config.run.timeout,
        keep_alive: net::keep_alive(config.run.timeout),
        provisioning_account: config.provisioning_account.clone(),
        account: config.account.clone(),
        encoding: config.encoding,
        operational: config.operational,
        operational_url: config.operational_broker.clone(),
        operational_addr,
        kura_replies: config.kura_replies,
        identities: if separate {
            (0..config.devices).map(|_| OnceLock::new()).collect()
        } else {
            Vec::new()
        },
    });
    let phase_ctx = ctx.clone();
    let mut result = runner::run(config.devices, 4, &config.run, move |i| {
        let ctx = phase_ctx.clone();
        async move { enroll_device(&ctx, i).await }
    })
    .await;
    let mut duration_s = result.elapsed.as_secs_f64();
    let mut per_second = None;
    let mut operational_per_second = None;
    if separate {
        let (secs, rate) = operational_phase(config, &ctx, &mut result).await;
        per_second = Some(rate.0);
        operational_per_second = rate.1;
        duration_s += secs;
    }

    let api_base = config.api.clone();
    let metrics_after =
        tokio::task::spawn_blocking(move || api::metrics_or_empty(Some(&api_base), "after"))
            .await
            .unwrap_or_default();

    let mut report = Report::build(
        Scenario::Enroll,
        ReportConfig::Enroll {
            devices: config.devices as u64,
            concurrency: config.run.load.concurrency().map(|c| c as u64),
            rate: config.run.load.rate(),
            protocol: config.run.protocol.as_str().to_string(),
            encoding: config.encoding.as_str().to_string(),
            credentials: config.credentials.as_str().to_string(),
            operational: config.operational,
            operational_phase: config.run.operational_phase.as_str().to_string(),
            ramp: config.run.load.ramp(),
        },
        config.run.protocol,
        result.attempted,
        &result.stats,
        duration_s,
        ServerMetrics {
            metrics_before,
            metrics_after,
        },
    );
    if let Some(rate) = per_second {
        report.per_second = rate;
    }
    report.operational_per_second = operational_per_second;
    Ok(report)
}

/// The second timed phase of `--operational-phase separate`: every device that enrolled in
/// `enrolled` (the first phase's result) reconnects with its kept identity, under the same
/// load model; the rest of `--duration` bounds it. Folds its outcomes into `enrolled`, so a
/// device completes only once it also reconnected. Returns the phase's wall time in seconds,
/// the enrollment phase's rate (enrolled per second) and the phase's own rate (successful
/// reconnects per second; `None` when the phase did not run).
async fn operational_phase(
    config: &EnrollConfig,
    ctx: &Arc<Ctx>,
    enrolled: &mut runner::RunResult,
) -> (f64, (f64, Option<f64>)) {
    let enrolled_ok = enrolled.stats.completed;
    let enroll_secs = enrolled.elapsed.as_secs_f64();
    let enroll_rate = if enroll_secs > 0.0 {
        enrolled_ok as f64 / enroll_secs
    } else {
        0.0
    };
    // Devices complete only after their reconnect.
    enrolled.stats.completed = 0;
    let remaining = config
        .run
        .duration
        .map(|d| d.saturating_sub(enrolled.elapsed));
    if enrolled.stopped || remaining == Some(Duration::ZERO) {
        enrolled.stats.record_failure(
            FailureKind::Timeout,
            "the run ended (--duration or interrupt) before the operational phase",
            enrolled_ok,
        );
        return (0.0, (enroll_rate, None));
    }
    // A device's identity is kept only when it enrolled, and nothing was cancelled (the run
    // was not stopped), so these are exactly the completed devices.
    let todo: Arc<Vec<usize>> = Arc::new(
        (0..ctx.identities.len())
            .filter(|&i| ctx.identities[i].get().is_some())
            .collect(),
    );
    if todo.is_empty() {
        return (0.0, (enroll_rate, None));
    }
    eprintln!(
        "enrollment phase: {enrolled_ok} enrolled in {enroll_secs:.2} s ({enroll_rate:.1}/s); \
         operational phase: {} devices reconnecting to {}",
        todo.len(),
        config.operational_broker
    );
    let mut options = config.run.clone();
    options.duration = remaining;
    let phase_ctx = ctx.clone();
    let result = runner::run(todo.len(), 4, &options, move |j| {
        let (ctx, todo) = (phase_ctx.clone(), todo.clone());
        async move {
            let i = todo[j];
            let out = Outcome::default();
            let Some(identity) = ctx.identities[i].get() else {
                return out.fail(Failure::bad_reply(format!(
                    "{}: no identity kept",
                    ctx.devices[i].client_id
                )));
            };
            reconnect_outcome(&ctx, i, identity, out).await
        }
    })
    .await;
    let secs = result.elapsed.as_secs_f64();
    let rate = (secs > 0.0).then(|| result.stats.completed as f64 / secs);
    // The reconnects happened after the enrollment phase: plot them there.
    enrolled.stats.merge_after(&result.stats, enrolled.elapsed);
    (secs, (enroll_rate, rate))
}

/// Runs the reconnect and records it in `out`.
async fn reconnect_outcome(ctx: &Ctx, i: usize, identity: &Identity, mut out: Outcome) -> Outcome {
    match reconnect(ctx, i, identity).await {
        Ok(d) => {
            out.phases[OPERATIONAL] = Some(d);
            out
        }
        Err(f) => out.fail(f),
    }
}

async fn enroll_device(ctx: &Ctx, i: usize) -> Outcome {
    let mut out = Outcome::default();
    let identity = match provision(ctx, i, &mut out).await {
        Ok(identity) => identity,
        Err(f) => return out.fail(f),
    };
    if !ctx.operational {
        return out;
    }
    match ctx.identities.get(i) {
        // Separate phase: keep the identity for the second phase.
        Some(slot) => {
            let _ = slot.set(identity);
            out
        }
        None => reconnect_outcome(ctx, i, &identity, out).await,
    }
}

/// The PROV-V1 exchange: CONNECT, SUBSCRIBE, PUBLISH request, reply, PUBACK, DISCONNECT.
async fn provision(ctx: &Ctx, i: usize, out: &mut Outcome) -> Result<Identity, Failure> {
    let dev = &ctx.devices[i];
    let cid = dev.client_id.as_str();
    let pa = ctx.provisioning_account.as_str();
    let t0 = Instant::now();
    let params = ConnectParams {
        client_id: cid,
        login: Some((&dev.username, &dev.password)),
        keep_alive: ctx.keep_alive,
    };
    let mut conn = phase(
        ctx.timeout,
        &format!("{cid}: provisioning CONNECT"),
        net::connect(&ctx.dialer, i, ctx.provisioning, ctx.protocol, params),
    )
    .await?;
    out.phases[CONNECT] = Some(t0.elapsed());

    let exchange = async {
        let filter = format!("$EDC/{pa}/{cid}/PROV-V1/REPLY/#");
        phase(
            ctx.timeout,
            &format!("{cid}: SUBSCRIBE"),
            conn.subscribe(&filter),
        )
        .await?;
        let reply_topic = format!("$EDC/{pa}/{cid}/PROV-V1/REPLY/{}", dev.request_id);
        let error_topic = format!("$EDC/{pa}/{cid}/PROV-V1/REPLY/error");
        let request_topic = format!("$EDC/{pa}/{cid}/PROV-V1/EXEC/provision");
        let t_pub = Instant::now();
        let payload = phase(ctx.timeout, &format!("{cid}: reply"), async {
            let pkid = conn
                .publish_qos1(&request_topic, ctx.payloads[i].clone())
                .await?;
            loop {
                match conn.next().await? {
                    Incoming::Publish {
                        topic,
                        pkid: id,
                        qos,
                        payload,
                    } => {
                        let received = Instant::now();
                        if qos > 0 {
                            conn.puback(id).await?;
                        }
                        if topic == reply_topic || topic == error_topic {
                            return Ok((received, payload));
                        }
                        return Err(MqttError::Protocol(format!(
                            "message on unexpected topic {topic}"
                        )));
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
        .await;
        payload.map(|(received, payload)| (t_pub, received, payload))
    }
    .await;
    let (t_pub, received, payload) = match exchange {
        Ok(v) => v,
        Err(f) => {
            conn.disconnect().await;
            return Err(f);
        }
    };
    out.phases[REPLY] = Some(received - t_pub);
    out.phases[ENROLLMENT] = Some(received - t0);
    conn.disconnect().await;

    let (encoding, reply) =
        wire::decode_reply(&payload).map_err(|e| Failure::bad_reply(format!("{cid}: {e}")))?;
    if encoding != ctx.encoding {
        return Err(Failure::bad_reply(format!(
            "{cid}: reply encoded as {}, request as {}",
            encoding.as_str(),
            ctx.encoding.as_str()
        )));
    }
    verify_reply(reply, cid, &ctx.account)
}

/// Reconnects with the new identity to the reply's `broker.url`: CONNECT -> CONNACK.
async fn reconnect(ctx: &Ctx, i: usize, identity: &Identity) -> Result<Duration, Failure> {
    let cid = ctx.devices[i].client_id.as_str();
    let target = match ctx.operational_addr {
        Some(addr) if identity.broker_url == ctx.operational_url => addr,
        _ => {
            let broker = BrokerAddr::parse(&identity.broker_url).map_err(|e| {
                Failure::bad_reply(format!("{cid}: broker.url {:?}: {e}", identity.broker_url))
            })?;
            net::resolve(&broker)
                .await
                .map_err(|e| Failure::disconnected(format!("{cid}: resolving {broker}: {e}")))?
        }
    };
    let t0 = Instant::now();
    let params = ConnectParams {
        client_id: cid,
        login: Some((&identity.username, &identity.password)),
        keep_alive: ctx.keep_alive,
    };
    let mut conn = phase(
        ctx.timeout,
        &format!("{cid}: operational CONNECT"),
        net::connect(&ctx.dialer, i, target, ctx.protocol, params),
    )
    .await?;
    let elapsed = t0.elapsed();
    if ctx.kura_replies > 0 {
        let answered = phase(
            ctx.timeout,
            &format!("{cid}: Kura requests"),
            answer_kura_requests(&mut conn, &ctx.account, cid, ctx.kura_replies),
        )
        .await;
        if let Err(f) = answered {
            conn.disconnect().await;
            return Err(f);
        }
    }
    conn.disconnect().await;
    Ok(elapsed)
}

/// As an Eclipse Kura device: subscribes to `$EDC/ACCOUNT/CID/#`, publishes its BIRTH, and
/// answers `n` requests on `$EDC/ACCOUNT/{requester.client.id}/{APP}/REPLY/{request.id}` with
/// `response.code` 200 (PROTOCOL.md 7).
async fn answer_kura_requests(
    conn: &mut Conn,
    account: &str,
    cid: &str,
    n: u32,
) -> Result<(), MqttError> {
    let prefix = format!("$EDC/{account}/{cid}/");
    conn.subscribe(&format!("{prefix}#")).await?;
    let birth = Payload::new()
        .with_str("display_name", cid)
        .with_str("application_ids", "CONF-V1,CMD-V1")
        .encode();
    conn.publish_qos1(&format!("{prefix}MQTT/BIRTH"), Bytes::from(birth))
        .await?;
    let mut answered = 0;
    while answered < n {
        match conn.next().await? {
            Incoming::Publish {
                topic,
                pkid,
                qos,
                payload,
            } => {
                if qos > 0 {
                    conn.puback(pkid).await?;
                }
                let Some(app) = topic
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.split('/').next())
                else {
                    continue;
                };
                let request = Payload::decode(&payload)
                    .map_err(|e| MqttError::Protocol(format!("request on {topic}: {e}")))?;
                let (Some(id), Some(requester)) = (
                    request.metric_str("request.id"),
                    request.metric_str("requester.client.id"),
                ) else {
                    continue;
                };
                let reply = Payload::new().with_i32("response.code", 200).encode();
                conn.publish_qos1(
                    &format!("$EDC/{account}/{requester}/{app}/REPLY/{id}"),
                    Bytes::from(reply),
                )
                .await?;
                answered += 1;
            }
            Incoming::Disconnect { reason } => return Err(MqttError::ServerDisconnect(reason)),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Encoding, RunOptions};

    fn config(credentials: Credentials, seed: u64, run_id: &str) -> EnrollConfig {
        EnrollConfig {
            api: "http://127.0.0.1:8080".into(),
            token: "t".into(),
            account: "acme".into(),
            provisioning: BrokerAddr::parse("mqtt://127.0.0.1:1883").unwrap(),
            provisioning_account: "provision".into(),
            operational_broker: "mqtt://127.0.0.1:1884".into(),
            devices: 3,
            encoding: Encoding::Json,
            credentials,
            activation_key: true,
            operational: false,
            kura_replies: 0,
            seed,
            run_id: run_id.into(),
            bulk_size: 10_000,
            run: RunOptions::default(),
        }
    }

    #[test]
    fn device_plan_is_reproducible_and_run_unique() {
        let (a, ra) = plan_devices(
            &config(Credentials::Shared, 7, "abc"),
            "2030-01-01T00:00:00Z",
        );
        let (b, _) = plan_devices(
            &config(Credentials::Shared, 7, "abc"),
            "2030-01-01T00:00:00Z",
        );
        let (c, _) = plan_devices(
            &config(Credentials::Shared, 7, "abd"),
            "2030-01-01T00:00:00Z",
        );
        assert_eq!(a[2].client_id, "lt-7-abc-2");
        assert_eq!(a[0].password, b[0].password);
        assert_eq!(a[1].request_id, b[1].request_id);
        assert_ne!(a[0].password, c[0].password);
        assert_ne!(a[0].client_id, c[0].client_id);
        // Shared credentials: one username/password for all.
        assert_eq!(&*a[0].username, "lt-shared-abc");
        assert!(
            a.iter()
                .all(|d| d.username == a[0].username && d.password == a[0].password)
        );
        assert!(
            a.iter()
                .all(|d| fleetgate_kura::valid_request_id(&d.request_id))
        );
        assert_eq!(ra[1].client_id.as_deref(), Some(a[1].client_id.as_str()));
        assert_eq!(ra[0].generate_activation_key, Some(true));
        assert!(ra[0].provision_password.is_some());
        assert_eq!(ra[0].provision_password, ra[0].confirm_provision_password);
        assert_eq!(ra[0].broker_url.as_deref(), Some("mqtt://127.0.0.1:1884"));

        let (u, _) = plan_devices(
            &config(Credentials::Unique, 7, "abc"),
            "2030-01-01T00:00:00Z",
        );
        assert_ne!(u[0].username, u[1].username);
        assert_ne!(u[0].password, u[1].password);
        assert!(u.iter().all(|d| d.password.len() >= 8));
    }
}
