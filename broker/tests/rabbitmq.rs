//! Fleetgate deciding for a real RabbitMQ 3.10 cluster (HOOKS.md 2.3 and 4, issue 13): two
//! nodes clustered, `rabbitmq_mqtt` + `rabbitmq_auth_backend_http` pointing at the hook
//! listener, HAProxy in front. A device enrolled over the real provisioning exchange with the
//! cluster's URL as `brokerUrl` connects through either node and through HAProxy with the
//! identity from its reply, is confined to its topics (RabbitMQ closes the connection on a
//! refused topic), and its telemetry reaches an account user subscribed on the other node.
//!
//! Needs Debian's `rabbitmq-server` and `haproxy` (scripts/install-test-deps.sh); fails, never
//! skips, without them.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::rabbit::RabbitCluster;
use common::*;
use fleetgate_kura::ProvSuccess;
use serde_json::json;

const ACCOUNT: &str = "acme";
const DEVICE: &str = "dev-1";
const PROVISION_PASSWORD: &str = "fleet-password-1";

/// Creates a provision request for `DEVICE` whose `brokerUrl` is `broker_url` and enrolls it
/// over the provisioning endpoint (PROV-V1, JSON, MQTT 3.1.1): the device's reply.
async fn enroll_device(s: &TestServer, broker_url: &str) -> ProvSuccess {
    let puser = format!("fleet-{ACCOUNT}");
    let mut body = request_body(DEVICE, &puser, PROVISION_PASSWORD);
    body["brokerUrl"] = json!(broker_url);
    create_request(s, ACCOUNT, body);
    prov_v1_exchange(s, Version::V3, DEVICE, &puser, PROVISION_PASSWORD).await
}

/// What a device tries outside its topics.
#[derive(Debug)]
enum Refused {
    Publish(String),
    Subscribe(String),
}

/// An MQTT 3.1.1 connection to `addr`: the client, or the CONNACK refusal code.
async fn connect(addr: SocketAddr, client_id: &str, user: &str, pw: &str) -> Result<Device, u8> {
    Device::connect(Connect {
        version: Version::V3,
        addr,
        client_id,
        username: user,
        password: pw,
        manual_acks: false,
    })
    .await
}

/// Connects the device at `addr`, publishes `payload` as its telemetry and waits until
/// `watcher` receives it; the device's connection, still open.
async fn telemetry_reaches(
    id: &ProvSuccess,
    addr: SocketAddr,
    watcher: &mut Device,
    payload: &str,
) -> Device {
    let device = connect(addr, &id.client_id, &id.username, &id.password)
        .await
        .unwrap_or_else(|code| panic!("device CONNECT through {addr}: CONNACK {code}"));
    let topic = format!("{ACCOUNT}/{DEVICE}/telemetry");
    device.publish(&topic, 1, payload.into()).await;
    let got = watcher.publish_received(Duration::from_secs(10)).await;
    assert_eq!(
        got,
        Some((topic, payload.as_bytes().to_vec())),
        "telemetry published through {addr}"
    );
    device
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provisioned_device_on_a_rabbitmq_cluster_behind_haproxy() {
    let began = Instant::now();
    let s = TestServer::start();
    let hooks = s
        .running
        .as_ref()
        .unwrap()
        .addrs
        .hooks
        .expect("hook listener on");
    let cluster = RabbitCluster::start(hooks, HOOKS_TOKEN);
    let cluster_up = began.elapsed();
    let (node1, node2, proxy) = (cluster.node(0), cluster.node(1), cluster.proxy_addr);

    create_account(&s, ACCOUNT);
    let id = enroll_device(&s, &cluster.url()).await;
    assert_eq!(id.broker_url, cluster.url(), "the reply names the cluster");
    let from_reply: SocketAddr = id
        .broker_url
        .strip_prefix("mqtt://")
        .and_then(|a| a.parse().ok())
        .expect("brokerUrl mqtt://HOST:PORT");
    let (status, user) = post(
        &s,
        &format!("/api/v1/accounts/{ACCOUNT}/users"),
        &json!({"name": "dash", "permissions": ["broker:connect", "data:read"]}),
    );
    assert_eq!(status, 201, "{user}");
    let dash_password = user["password"].as_str().unwrap().to_string();

    // The account user watches the fleet on node 2.
    let mut dash = connect(node2, "dash-1", &format!("dash@{ACCOUNT}"), &dash_password)
        .await
        .expect("the account user connects to node 2");
    dash.subscribe(&format!("{ACCOUNT}/#"), 1).await;
    assert_eq!(dash.suback().await, vec![1]);

    // The device's telemetry reaches node 2's subscriber whichever door it came through: node
    // 1 (the other node, through the cluster), node 2, and HAProxy, the address of its reply.
    for (addr, payload) in [(node1, "via node 1"), (node2, "via node 2")] {
        telemetry_reaches(&id, addr, &mut dash, payload)
            .await
            .disconnect()
            .await;
    }
    // Two connections through HAProxy, one to each node (round robin): on top of the device's
    // direct connections, and the account user's on node 2. Counted from the nodes' logs,
    // which may lag behind.
    for payload in ["via haproxy 1", "via haproxy 2"] {
        telemetry_reaches(&id, from_reply, &mut dash, payload)
            .await
            .disconnect()
            .await;
    }
    let accepted = || [0, 1].map(|i| cluster.mqtt_connections(i));
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted() != [1 + 1, 2 + 1] && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        accepted(),
        [1 + 1, 2 + 1],
        "MQTT connections accepted by node 1 and node 2"
    );

    // Confined: RabbitMQ closes the connection on a refused topic (no SUBACK 0x80 in its
    // MQTT plugin), for a publish to another device's topic and a subscription to the whole
    // account alike, on either node.
    for (addr, refused) in [
        (
            node1,
            Refused::Publish(format!("{ACCOUNT}/dev-2/telemetry")),
        ),
        (node2, Refused::Subscribe(format!("{ACCOUNT}/#"))),
    ] {
        // A healthy connection until the refusal.
        let mut device = telemetry_reaches(&id, addr, &mut dash, "before a refusal").await;
        match &refused {
            Refused::Publish(topic) => device.publish(topic, 1, b"x".to_vec()).await,
            Refused::Subscribe(filter) => device.subscribe(filter, 1).await,
        }
        assert!(
            device.closed(Duration::from_secs(5)).await,
            "{refused:?} through {addr}: the connection is closed"
        );
    }
    assert!(
        dash.publish_received(Duration::from_millis(500))
            .await
            .is_none(),
        "nothing of a refused publish reached the subscriber"
    );

    // Credentials are Fleetgate's: a wrong password, or the device's password under another
    // client ID, is refused at CONNECT.
    assert_eq!(
        connect(proxy, &id.client_id, &id.username, "wrong-password-123")
            .await
            .err(),
        Some(0x04),
        "wrong password"
    );
    assert!(
        connect(node1, "dev-2", &id.username, &id.password)
            .await
            .is_err(),
        "its reserved user under another client ID"
    );

    // Those refusals were Fleetgate's: its RabbitMQ door counted them.
    let app = s.app();
    let metrics = app.metrics.render(&app.store, &app.config.data_dir);
    let counted: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("broker=\"rabbitmq\""))
        .collect();
    for hook in ["authenticate", "publish", "subscribe"] {
        let series = format!(
            "fleetgate_hook_decisions_total{{broker=\"rabbitmq\",hook=\"{hook}\",result=\"deny\"}}"
        );
        assert!(
            counted.iter().any(|l| l.starts_with(&series)),
            "{series} in {counted:#?}"
        );
    }

    // RabbitMQ reports no connections; the registry shows the last authentication instead.
    let (status, device) = get(&s, &format!("/api/v1/accounts/{ACCOUNT}/devices/{DEVICE}"));
    assert_eq!(status, 200, "{device}");
    assert!(device["lastAuthenticatedOn"].is_string(), "{device}");

    dash.disconnect().await;
    eprintln!(
        "cluster up in {cluster_up:.1?}, whole test {:.1?}",
        began.elapsed()
    );
}
