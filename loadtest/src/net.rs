//! Target resolution, the reachability probe and per-phase helpers shared by the scenarios.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::api::Unreachable;
use crate::config::BrokerAddr;
use crate::config::Protocol;
use crate::mqtt::{Conn, ConnectParams, Dialer, MqttError};
use crate::stats::Failure;

/// Resolves a broker address to its first socket address.
pub async fn resolve(addr: &BrokerAddr) -> std::io::Result<SocketAddr> {
    tokio::net::lookup_host(addr.host_port())
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{} resolves to no address", addr.host)))
}

/// Resolves `addr` and opens (then closes) one TCP connection, so an unreachable listener is
/// reported once, before any device runs, as [`Unreachable`]. Every resolved address is tried
/// in turn (`localhost` may resolve to `::1` first while the listener is on 127.0.0.1); the
/// first that accepts is the one all clients use.
pub async fn probe(addr: &BrokerAddr, what: &str) -> anyhow::Result<SocketAddr> {
    let unreachable = |cause: String| Unreachable {
        what: format!("{what} at {addr}"),
        cause,
    };
    let targets: Vec<SocketAddr> = tokio::net::lookup_host(addr.host_port())
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .collect();
    let mut last = format!("{} resolves to no address", addr.host);
    for target in targets {
        match tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(target),
        )
        .await
        {
            Ok(Ok(_)) => return Ok(target),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "no TCP connection within 5 s".into(),
        }
    }
    Err(unreachable(last).into())
}

/// Keep alive for simulated clients: above any phase timeout, so they never need to ping.
pub fn keep_alive(timeout: Duration) -> u16 {
    (timeout.as_secs().saturating_mul(2) + 30).min(u64::from(u16::MAX)) as u16
}

/// Runs one phase under the per-phase timeout; `context` names the device and phase.
pub async fn phase<T, Fut>(limit: Duration, context: &str, fut: Fut) -> Result<T, Failure>
where
    Fut: Future<Output = Result<T, MqttError>>,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.into_failure(context)),
        Err(_) => Err(Failure::timeout(context, limit)),
    }
}

/// TCP connect (from the device's source address) and MQTT CONNECT -> CONNACK.
pub async fn connect(
    dialer: &Dialer,
    index: usize,
    target: SocketAddr,
    protocol: Protocol,
    params: ConnectParams<'_>,
) -> Result<Conn, MqttError> {
    let stream = dialer.tcp_connect(index, target).await?;
    Conn::handshake(stream, protocol, params).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_exceeds_timeouts() {
        assert_eq!(keep_alive(Duration::from_secs(30)), 90);
        assert_eq!(keep_alive(Duration::from_secs(1_000_000)), u16::MAX);
    }

    #[tokio::test]
    async fn probe_reports_unreachable() {
        let addr = BrokerAddr::parse("mqtt://127.0.0.1:1").unwrap();
        let err = probe(&addr, "provisioning listener").await.unwrap_err();
        let u = err.downcast_ref::<Unreachable>().unwrap();
        assert!(
            u.to_string()
                .contains("provisioning listener at mqtt://127.0.0.1:1"),
            "{u}"
        );
    }
}
