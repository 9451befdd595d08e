//! The requester against a fake broker: readiness, matching, timeouts, malformed and stray
//! replies, disconnects.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::*;

#[derive(Default)]
struct FakeBroker {
    online: Mutex<Option<Vec<String>>>,
    sent: Mutex<Vec<(String, Payload)>>,
}

impl Transport for FakeBroker {
    fn subscribed(&self, _: &str, _: &str, topic: &str) -> Option<bool> {
        self.online
            .lock()
            .as_ref()
            .map(|subs| subs.iter().any(|f| fleetgate_acl::filter_matches(f, topic)))
    }

    fn publish(&self, topic: String, payload: Vec<u8>) {
        self.sent
            .lock()
            .push((topic, Payload::decode(&payload).unwrap()));
    }
}

fn setup(subs: Option<&[&str]>) -> (Arc<Requester>, Arc<FakeBroker>) {
    let broker = Arc::new(FakeBroker::default());
    *broker.online.lock() = subs.map(|s| s.iter().map(|f| f.to_string()).collect());
    let r = Arc::new(Requester::new("fleetgate"));
    r.attach(broker.clone());
    (r, broker)
}

fn get_configurations() -> Request {
    Request {
        app: "CONF-V1".into(),
        method: Method::Get,
        resources: vec!["configurations".into()],
        metrics: vec![],
        body: None,
        timeout: Duration::from_secs(30),
    }
}

/// Waits until the fake broker saw a request; returns its `request.id`.
async fn sent_id(broker: &FakeBroker) -> String {
    for _ in 0..100 {
        if let Some((_, p)) = broker.sent.lock().last() {
            return p.metric_str("request.id").unwrap().to_string();
        }
        tokio::task::yield_now().await;
    }
    panic!("nothing sent");
}

fn reply(code: i32) -> Vec<u8> {
    Payload::new()
        .with_i32("response.code", code)
        .with_body(b"<xml/>".to_vec())
        .encode()
}

#[tokio::test]
async fn not_connected_and_not_ready_devices_get_nothing() {
    let (r, broker) = setup(None);
    let e = r.request("acme", "dev-1", get_configurations()).await;
    assert_eq!(e.unwrap_err(), RequestError::NotConnected);
    *broker.online.lock() = Some(vec!["acme/dev-1/#".into()]);
    let e = r.request("acme", "dev-1", get_configurations()).await;
    assert_eq!(e.unwrap_err(), RequestError::NotReady);
    assert!(broker.sent.lock().is_empty());
    let mut bad = get_configurations();
    bad.resources = vec!["a/b".into()];
    assert_eq!(
        r.request("acme", "dev-1", bad).await.unwrap_err(),
        RequestError::InvalidLevel("every resource")
    );
}

#[tokio::test]
async fn a_reply_answers_its_request() {
    let (r, broker) = setup(Some(&["$EDC/acme/dev-1/#"]));
    let waiter = tokio::spawn({
        let r = r.clone();
        async move { r.request("acme", "dev-1", get_configurations()).await }
    });
    let id = sent_id(&broker).await;
    {
        let sent = broker.sent.lock();
        let (topic, p) = &sent[0];
        assert_eq!(topic, "$EDC/acme/dev-1/CONF-V1/GET/configurations");
        assert_eq!(p.metric_str("requester.client.id"), Some("fleetgate"));
    }
    let topic = format!("$EDC/acme/fleetgate/CONF-V1/REPLY/{id}");
    // Another device answering the same id, or another app: ignored.
    r.on_publish("acme", "dev-2", &topic, &reply(200));
    r.on_publish(
        "acme",
        "dev-1",
        &format!("$EDC/acme/fleetgate/CMD-V1/REPLY/{id}"),
        &reply(200),
    );
    assert_eq!(r.ignored_replies(), 2);
    r.on_publish("acme", "dev-1", &topic, &reply(200));
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.code, 200);
    assert_eq!(got.payload.body(), Some(&b"<xml/>"[..]));
    // A late duplicate is ignored.
    r.on_publish("acme", "dev-1", &topic, &reply(200));
    assert_eq!(r.ignored_replies(), 3);
}

#[tokio::test]
async fn a_birth_makes_a_device_ready_and_a_gzip_reply_is_read() {
    let (r, broker) = setup(Some(&[]));
    r.on_publish("acme", "dev-1", "$EDC/acme/dev-1/MQTT/BIRTH", b"");
    let waiter = tokio::spawn({
        let r = r.clone();
        async move { r.request("acme", "dev-1", get_configurations()).await }
    });
    let id = sent_id(&broker).await;
    let gz = flate2_gzip(&reply(404));
    r.on_publish(
        "acme",
        "dev-1",
        &format!("$EDC/acme/fleetgate/CONF-V1/REPLY/{id}"),
        &gz,
    );
    assert_eq!(waiter.await.unwrap().unwrap().code, 404);
    // After a disconnect the BIRTH no longer counts.
    r.on_disconnect("acme", "dev-1");
    let e = r.request("acme", "dev-1", get_configurations()).await;
    assert_eq!(e.unwrap_err(), RequestError::NotReady);
}

fn flate2_gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn malformed_replies_fail_the_request_clearly() {
    let (r, broker) = setup(Some(&["$EDC/acme/dev-1/#"]));
    for (payload, expected) in [
        (vec![0xff, 0xff, 0xff], "invalid KuraPayload"),
        (Payload::new().encode(), "response.code"),
    ] {
        let waiter = tokio::spawn({
            let r = r.clone();
            async move { r.request("acme", "dev-1", get_configurations()).await }
        });
        broker.sent.lock().clear();
        let id = sent_id(&broker).await;
        r.on_publish(
            "acme",
            "dev-1",
            &format!("$EDC/acme/fleetgate/CONF-V1/REPLY/{id}"),
            &payload,
        );
        match waiter.await.unwrap() {
            Err(RequestError::MalformedReply(m)) => assert!(m.contains(expected), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn no_reply_times_out_and_a_disconnect_ends_the_wait() {
    let (r, broker) = setup(Some(&["$EDC/acme/dev-1/#"]));
    let mut req = get_configurations();
    req.timeout = Duration::from_secs(5);
    let e = r.request("acme", "dev-1", req).await;
    assert_eq!(
        e.unwrap_err(),
        RequestError::Timeout(Duration::from_secs(5))
    );
    assert!(
        r.pending.lock().is_empty(),
        "the timed-out request is forgotten"
    );
    let waiter = tokio::spawn({
        let r = r.clone();
        async move { r.request("acme", "dev-1", get_configurations()).await }
    });
    broker.sent.lock().clear();
    sent_id(&broker).await;
    r.on_disconnect("acme", "dev-1");
    assert_eq!(
        waiter.await.unwrap().unwrap_err(),
        RequestError::Disconnected
    );
}

/// Every readiness report, in order.
fn recorded(r: &Requester) -> Arc<Mutex<Vec<(String, String)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    r.on_ready(Box::new(move |a, c| {
        sink.lock().push((a.to_string(), c.to_string()));
    }));
    seen
}

#[test]
fn birth_covering_subscriptions_and_resumed_sessions_report_readiness() {
    let (r, broker) = setup(Some(&[]));
    let seen = recorded(&r);
    assert!(!r.is_ready("acme", "dev-1"));
    r.on_publish("acme", "dev-1", "$EDC/acme/dev-1/MQTT/BIRTH", b"");
    assert!(r.is_ready("acme", "dev-1"));
    r.on_disconnect("acme", "dev-1");
    assert!(
        !r.is_ready("acme", "dev-1"),
        "a disconnect forgets the BIRTH"
    );
    // Filters that cover requests to the device, and some that do not.
    for (filter, covers) in [
        ("$EDC/acme/dev-1/#", true),
        ("$EDC/+/dev-1/CONF-V1/#", true),
        ("$EDC/acme/+/+", true),
        ("$EDC/#", true),
        ("#", false),
        ("$EDC/acme/dev-1", false),
        ("$EDC/acme/dev-2/#", false),
        ("$EDC/other/dev-1/#", false),
        ("acme/dev-1/#", false),
    ] {
        seen.lock().clear();
        r.on_subscribe("acme", "dev-1", filter);
        assert_eq!(!seen.lock().is_empty(), covers, "{filter}");
    }
    seen.lock().clear();
    r.on_connect("acme", "dev-1");
    assert!(
        seen.lock().is_empty(),
        "a fresh session has no subscription"
    );
    *broker.online.lock() = Some(vec!["$EDC/acme/dev-1/#".into()]);
    r.on_connect("acme", "dev-1");
    assert!(r.is_ready("acme", "dev-1"));
    assert_eq!(
        *seen.lock(),
        vec![("acme".to_string(), "dev-1".to_string())]
    );
    *broker.online.lock() = None;
    assert!(!r.is_ready("acme", "dev-1"), "offline is never ready");
}
