//! The exchange against a real temporary store, with a fake reply sink, a fake timer and a
//! counting observer: success, every failure code of PROTOCOL.md 4.2, the reply's fates
//! (disconnect, timeout, refusal, QoS 0), duplicates and concurrent exchanges.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::Context;
use std::time::Duration;

use chrono::Utc;
use fleetgate_auth_hook::credentials::{fast_hash, fast_verify};
use fleetgate_exchange::{
    Counted, Exchange, Observer, ReplyFate, ReplySink, Session, Settings, Timer, preview,
};
use fleetgate_kura::{ProvReply, ProvRequest, decode_reply};
use fleetgate_storage::ops::{self, Attempt, ExchangeAction, IdentityPlan, NewRequest, UserPlan};
use fleetgate_storage::validate::{AccountInput, RequestInput};
use fleetgate_storage::*;
use futures::channel::oneshot;
use futures::future::{Either, pending, ready};

const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
const LINGER: Duration = Duration::from_secs(5);
const PA: &str = "provision";

/// What the fake sink does with the next reply.
enum Then {
    /// Its fate is known at once.
    Fate(ReplyFate),
    /// Its fate is whatever the test sends, when it sends it.
    Wait(oneshot::Receiver<ReplyFate>),
    /// It never gets one.
    Never,
}

#[derive(Default)]
struct FakeSink {
    script: RefCell<VecDeque<Then>>,
    published: RefCell<Vec<(String, Vec<u8>)>>,
    /// CONF-V1 PUT bodies sent to a Kura-native device, with their timeouts.
    puts: RefCell<Vec<(String, Duration)>>,
    closed: Cell<usize>,
    settled: Cell<usize>,
}

impl FakeSink {
    fn then(self, then: Then) -> Self {
        self.script.borrow_mut().push_back(then);
        self
    }

    fn replies(&self) -> Vec<(String, ProvReply)> {
        self.published
            .borrow()
            .iter()
            .map(|(t, p)| (t.clone(), decode_reply(p).unwrap().1))
            .collect()
    }
}

impl FakeSink {
    async fn fate(&self, default: ReplyFate) -> ReplyFate {
        let then = self
            .script
            .borrow_mut()
            .pop_front()
            .unwrap_or(Then::Fate(default));
        match then {
            Then::Fate(f) => f,
            Then::Wait(rx) => rx.await.unwrap(),
            Then::Never => pending().await,
        }
    }
}

impl ReplySink for FakeSink {
    async fn publish(&self, topic: String, payload: Vec<u8>) -> ReplyFate {
        self.published.borrow_mut().push((topic, payload));
        self.fate(ReplyFate::Acknowledged).await
    }

    async fn put_configuration(&self, configuration: String, timeout: Duration) -> ReplyFate {
        self.puts.borrow_mut().push((configuration, timeout));
        self.fate(ReplyFate::Answered(200)).await
    }

    fn close(&self) {
        self.closed.set(self.closed.get() + 1);
    }

    fn settled(&self) {
        // Settled before the linger and the close, never after.
        assert_eq!(self.closed.get(), 0);
        self.settled.set(self.settled.get() + 1);
    }
}

/// Sleeps end at once, except the reply timeout when `timeouts_expire` is false.
#[derive(Default)]
struct FakeTimer {
    timeouts_expire: bool,
    slept: RefCell<Vec<Duration>>,
}

impl Timer for FakeTimer {
    fn now(&self) -> Timestamp {
        Utc::now()
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> {
        self.slept.borrow_mut().push(duration);
        if duration == REPLY_TIMEOUT && !self.timeouts_expire {
            Either::Left(pending())
        } else {
            Either::Right(ready(()))
        }
    }
}

#[derive(Default)]
struct Counter {
    outcomes: RefCell<Vec<Counted>>,
    enrolled: Cell<usize>,
}

impl Observer for Counter {
    fn outcome(&self, outcome: Counted) {
        self.outcomes.borrow_mut().push(outcome);
    }

    fn enrolled(&self, _took: Duration) {
        self.enrolled.set(self.enrolled.get() + 1);
    }
}

struct World {
    _dir: tempfile::TempDir,
    store: Store,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(DB_FILE), &StoreOptions::default(), None).unwrap();
    store
        .write(ops::ensure_provisioning_account(PA.into(), Utc::now()))
        .unwrap();
    for name in ["acme", "other"] {
        store
            .write(ops::create_account(
                AccountInput::named(name).validate().unwrap(),
                Utc::now(),
            ))
            .unwrap();
    }
    World { _dir: dir, store }
}

impl World {
    fn request(&self, account: &str, client_id: &str, activation_key: Option<&str>) -> String {
        let spec = RequestInput {
            client_id: Some(client_id.into()),
            provision_username: Some(format!("fleet-{account}")),
            provision_password: Some("password-1".into()),
            confirm_provision_password: Some("password-1".into()),
            broker_url: Some("mqtts://broker.acme.example:8883".into()),
            ..RequestInput::default()
        }
        .validate(20, Utc::now())
        .unwrap();
        self.store
            .write(ops::create_requests(
                account.into(),
                vec![NewRequest {
                    spec,
                    user: UserPlan::New { hash: "h1".into() },
                    activation_key_hash: activation_key.map(fast_hash),
                }],
                false,
                Utc::now(),
            ))
            .unwrap()
            .remove(0)
            .id
    }

    fn stored(&self, id: &str) -> ProvisionRequest {
        self.store.read().unwrap().request(id).unwrap().unwrap()
    }

    fn executions(&self, id: &str) -> Vec<Execution> {
        self.store.read().unwrap().executions(id).unwrap()
    }

    fn last_line(&self, id: &str) -> String {
        let execs = self.executions(id);
        execs.last().unwrap().log.last().unwrap().message.clone()
    }
}

struct Device<'a> {
    world: &'a World,
    request_id: String,
    client_id: String,
    sink: FakeSink,
    timer: FakeTimer,
    counter: Counter,
}

impl<'a> Device<'a> {
    fn new(world: &'a World, request_id: &str, client_id: &str) -> Self {
        Device {
            world,
            request_id: request_id.into(),
            client_id: client_id.into(),
            sink: FakeSink::default(),
            timer: FakeTimer::default(),
            counter: Counter::default(),
        }
    }

    fn exchange(&self) -> Exchange<'_, FakeSink, FakeTimer, Counter> {
        Exchange {
            store: &self.world.store,
            settings: Settings {
                account: PA,
                vpn_client_pid: "org.eclipse.kura.net.vpn.client.VpnClient",
                reply_timeout: REPLY_TIMEOUT,
                linger: LINGER,
            },
            session: Session {
                request_id: &self.request_id,
                client_id: &self.client_id,
                protocol: "5.0",
                peer: "127.0.0.1:5000",
            },
            sink: &self.sink,
            timer: &self.timer,
            observer: &self.counter,
        }
    }

    fn run(&self, payload: &[u8]) {
        futures::executor::block_on(self.exchange().run(payload));
    }

    fn run_kura(&self, birth: &[u8]) {
        futures::executor::block_on(self.exchange().run_kura(birth));
    }

    fn outcomes(&self) -> Vec<Counted> {
        self.counter.outcomes.borrow().clone()
    }

    fn topic(&self, level: &str) -> String {
        format!("$EDC/{PA}/{}/PROV-V1/REPLY/{level}", self.client_id)
    }

    /// The one failure reply sent, as (topic, code, message).
    fn failure(&self) -> (String, u16, String) {
        let replies = self.sink.replies();
        assert_eq!(replies.len(), 1, "{replies:?}");
        let (topic, reply) = replies.into_iter().next().unwrap();
        let ProvReply::Failure(f) = reply else {
            panic!("not a failure: {reply:?}")
        };
        (topic, f.code, f.message)
    }
}

fn request(id: &str) -> Vec<u8> {
    ProvRequest::new(id).to_json()
}

/// Polls `fut` until `done` holds (the store's writer thread wakes it from elsewhere).
fn drive_until<F: Future>(mut fut: Pin<&mut F>, done: impl Fn() -> bool) {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    for _ in 0..5000 {
        assert!(fut.as_mut().poll(&mut cx).is_pending(), "ended early");
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("condition not reached");
}

#[test]
fn success_completes_only_on_the_ack_then_lingers_and_closes() {
    let w = world();
    let id = w.request("acme", "dev-1", None);
    let (ack, wait) = oneshot::channel();
    let mut d = Device::new(&w, &id, "dev-1");
    d.sink = FakeSink::default().then(Then::Wait(wait));
    let payload = request("q1");
    let exchange = d.exchange();
    let mut run = pin!(exchange.run(&payload));
    drive_until(run.as_mut(), || !d.sink.published.borrow().is_empty());
    // The identity is durable before the reply leaves; the execution waits for the reply's fate.
    assert_eq!(w.stored(&id).status, RequestStatus::Running);
    assert_eq!(w.executions(&id)[0].outcome, Outcome::Running);
    let user = w.store.read().unwrap().device_user("dev-1@acme").unwrap();
    let user = user.expect("device user written before the reply");
    assert_eq!(d.sink.closed.get(), 0);
    assert_eq!(
        d.sink.settled.get(),
        0,
        "not settled while the reply's fate is open"
    );
    ack.send(ReplyFate::Acknowledged).unwrap();
    futures::executor::block_on(run);

    let (topic, reply) = d.sink.replies().remove(0);
    assert_eq!(topic, d.topic("q1"));
    let ProvReply::Success(s) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(s.provision_status, "COMPLETED");
    assert_eq!(s.broker_url, "mqtts://broker.acme.example:8883");
    assert_eq!(s.account_name, "acme");
    assert_eq!(s.client_id, "dev-1");
    assert_eq!(s.username, "dev-1@acme");
    assert!(s.password.len() >= 20);
    assert!(fast_verify(&s.password, &user.password_hash));
    assert!(s.configuration.contains("dev-1@acme"));
    assert!(s.configuration.contains(&s.password));

    let r = w.stored(&id);
    assert_eq!(r.status, RequestStatus::Completed);
    assert_eq!(r.running, None);
    assert_eq!(w.executions(&id)[0].outcome, Outcome::Completed);
    assert_eq!(w.last_line(&id), "PUBACK received");
    let read = w.store.read().unwrap();
    assert!(read.device("acme", "dev-1").unwrap().is_some());
    assert!(read.device_connection("acme", "dev-1").unwrap().is_some());
    assert_eq!(d.outcomes(), [Counted::Completed]);
    assert_eq!(d.counter.enrolled.get(), 1);
    assert_eq!(*d.timer.slept.borrow(), [REPLY_TIMEOUT, LINGER]);
    assert_eq!(d.sink.closed.get(), 1);
    assert_eq!(d.sink.settled.get(), 1);
}

#[test]
fn a_qos0_reply_completes_once_written() {
    let w = world();
    let id = w.request("acme", "dev-1", None);
    let mut d = Device::new(&w, &id, "dev-1");
    d.sink = FakeSink::default().then(Then::Fate(ReplyFate::Written));
    d.run(&request("q1"));
    assert_eq!(w.stored(&id).status, RequestStatus::Completed);
    assert_eq!(w.last_line(&id), "reply written to a QoS 0 subscription");
    assert_eq!(d.outcomes(), [Counted::Completed]);
    assert_eq!(d.sink.closed.get(), 1);
    // Nothing to wait for, so no reply timer was started: only the linger.
    assert_eq!(*d.timer.slept.borrow(), [LINGER]);
}

/// Runs one exchange whose success reply meets `then`; returns the device, which must have
/// ended FAILED without lingering or closing.
fn undelivered<'a>(w: &'a World, then: Then, timeouts_expire: bool) -> (String, Device<'a>) {
    let id = w.request("acme", "dev-1", None);
    let mut d = Device::new(w, &id, "dev-1");
    d.sink = FakeSink::default().then(then);
    d.timer.timeouts_expire = timeouts_expire;
    d.run(&request("q1"));
    let r = w.stored(&id);
    assert_eq!(r.status, RequestStatus::Failed);
    assert!(!r.is_closed(Utc::now()), "a failed request may be retried");
    assert_eq!(w.executions(&id)[0].outcome, Outcome::Failed);
    assert_eq!(d.outcomes(), [Counted::Failed]);
    assert_eq!(d.counter.enrolled.get(), 0);
    assert_eq!(d.sink.closed.get(), 0);
    assert_eq!(d.sink.settled.get(), 1);
    assert!(!d.timer.slept.borrow().contains(&LINGER));
    (id, d)
}

#[test]
fn a_disconnect_before_the_puback_fails_the_exchange() {
    let w = world();
    let (id, _) = undelivered(&w, Then::Fate(ReplyFate::Disconnected), false);
    assert_eq!(
        w.last_line(&id),
        "the device disconnected before acknowledging the reply"
    );
}

#[test]
fn no_puback_within_the_reply_timeout_fails_the_exchange() {
    let w = world();
    let (id, d) = undelivered(&w, Then::Never, true);
    assert_eq!(
        w.last_line(&id),
        "no PUBACK within provisioning.reply_timeout"
    );
    assert_eq!(*d.timer.slept.borrow(), [REPLY_TIMEOUT]);
}

#[test]
fn a_refused_reply_fails_the_exchange() {
    let w = world();
    let (id, _) = undelivered(&w, Then::Fate(ReplyFate::Refused(0x87)), false);
    assert_eq!(
        w.last_line(&id),
        "the device refused the reply (reason code 0x87)"
    );
}

#[test]
fn an_undecodable_payload_gets_400() {
    let w = world();
    let id = w.request("acme", "dev-1", None);
    let d = Device::new(&w, &id, "dev-1");
    d.run(b"{not json");
    let (topic, code, _) = d.failure();
    assert_eq!((topic, code), (d.topic("error"), 400));
    assert_eq!(d.outcomes(), [Counted::ReplyCode(400)]);
    let execs = w.executions(&id);
    assert_eq!(execs.len(), 1);
    assert_eq!(execs[0].outcome, Outcome::Failed);
    assert!(w.last_line(&id).starts_with("failed with 400"));
    assert_eq!(w.stored(&id).status, RequestStatus::Failed);
    // A readable request.id with a bad field is answered on its own topic.
    let d = Device::new(&w, &id, "dev-1");
    d.run(br#"{"request.id": "q2", "activation.key": 7}"#);
    let (topic, code, _) = d.failure();
    assert_eq!((topic, code), (d.topic("q2"), 400));
}

#[test]
fn a_missing_or_wrong_activation_key_gets_403() {
    let w = world();
    let id = w.request("acme", "dev-1", Some("open-sesame"));
    for (payload, reason) in [
        (request("q1"), "activation key missing"),
        (
            ProvRequest::new("q2")
                .with_activation_key("guess")
                .to_json(),
            "activation key wrong",
        ),
    ] {
        let d = Device::new(&w, &id, "dev-1");
        d.run(&payload);
        let (_, code, message) = d.failure();
        assert_eq!((code, message.as_str()), (403, reason));
        assert_eq!(d.outcomes(), [Counted::ReplyCode(403)]);
        assert_eq!(w.stored(&id).status, RequestStatus::Failed);
        assert_eq!(w.last_line(&id), format!("failed with 403: {reason}"));
    }
    assert!(
        w.store
            .read()
            .unwrap()
            .device_user("dev-1@acme")
            .unwrap()
            .is_none()
    );
    // The right key provisions.
    let d = Device::new(&w, &id, "dev-1");
    d.run(
        &ProvRequest::new("q3")
            .with_activation_key("open-sesame")
            .to_json(),
    );
    assert_eq!(w.stored(&id).status, RequestStatus::Completed);
}

#[test]
fn a_duplicate_is_ignored_and_a_concurrent_exchange_gets_409() {
    let w = world();
    let id = w.request("acme", "dev-1", None);
    let (ack, wait) = oneshot::channel();
    let mut first = Device::new(&w, &id, "dev-1");
    first.sink = FakeSink::default().then(Then::Wait(wait));
    let payload = request("q1");
    let exchange = first.exchange();
    let mut run = pin!(exchange.run(&payload));
    drive_until(run.as_mut(), || !first.sink.published.borrow().is_empty());

    // The same request.id again (a QoS 1 redelivery): nothing happens.
    let dup = Device::new(&w, &id, "dev-1");
    dup.run(&payload);
    assert!(dup.sink.published.borrow().is_empty());
    assert!(dup.outcomes().is_empty());
    assert_eq!(w.executions(&id).len(), 1);

    // Another request.id while it runs: 409, no change.
    let other = Device::new(&w, &id, "dev-1");
    other.run(&request("q2"));
    let (topic, code, message) = other.failure();
    assert_eq!(topic, other.topic("q2"));
    assert_eq!(code, 409);
    assert_eq!(message, "another exchange for this request is running");
    assert_eq!(other.outcomes(), [Counted::ReplyCode(409)]);
    assert_eq!(w.executions(&id).len(), 1);
    assert_eq!(w.stored(&id).status, RequestStatus::Running);

    ack.send(ReplyFate::Acknowledged).unwrap();
    futures::executor::block_on(run);
    assert_eq!(w.stored(&id).status, RequestStatus::Completed);

    // Completed: the request is closed, so a new exchange gets 409 too.
    let late = Device::new(&w, &id, "dev-1");
    late.run(&request("q3"));
    let (_, code, message) = late.failure();
    assert_eq!(code, 409);
    assert_eq!(message, "the provision request is no longer open");
    assert_eq!(w.executions(&id).len(), 1);
}

#[test]
fn a_result_that_cannot_be_stored_gets_500() {
    let w = world();
    // Account "other" already holds a device user named dev-1@acme, so the store refuses to
    // write acme's identity.
    let squatter = w.request("other", "squatter", None);
    w.store
        .write(ops::begin_exchange(
            Attempt {
                request_id: squatter,
                protocol: "5.0".into(),
                peer: "127.0.0.1:1".into(),
                now: Utc::now(),
            },
            "s1".into(),
            ExchangeAction::Provision(IdentityPlan {
                username: "dev-1@acme".into(),
                password_hash: "unused".into(),
                configurations: 1,
            }),
            fleetgate_storage::ProvisioningProtocol::ProvV1,
        ))
        .unwrap();
    let id = w.request("acme", "dev-1", None);
    let d = Device::new(&w, &id, "dev-1");
    d.run(&request("q1"));
    let (topic, code, message) = d.failure();
    assert_eq!((topic, code), (d.topic("q1"), 500));
    assert_eq!(message, "could not store the provisioning result");
    assert_eq!(d.outcomes(), [Counted::ReplyCode(500)]);
    // The failed commit left nothing behind.
    assert!(w.executions(&id).is_empty());
    assert_eq!(w.stored(&id).status, RequestStatus::Created);
}

#[test]
fn the_preview_masks_the_password() {
    let w = world();
    let id = w.request("acme", "dev-1", None);
    let xml = preview("org.eclipse.kura.net.vpn.client.VpnClient", &w.stored(&id)).unwrap();
    assert!(xml.contains("dev-1@acme"));
    assert!(xml.contains(fleetgate_devconfig::MASK));
}

// ---------------------------------------------------------------------------------------------
// Kura-native exchanges (PROTOCOL.md 8.1): started by a BIRTH, answered with a CONF-V1 PUT.

fn birth(activation_key: Option<&str>) -> Vec<u8> {
    let mut p = fleetgate_kura::Payload::new().with_str("display_name", "Raspberry Pi");
    if let Some(k) = activation_key {
        p.set_str("activation.key", k);
    }
    p.encode()
}

#[test]
fn a_kura_birth_provisions_by_a_conf_put_and_completes_on_200() {
    let w = world();
    let id = w.request("acme", "dev-1", Some("key-1"));
    let d = Device::new(&w, &id, "dev-1");
    d.run_kura(&birth(Some("key-1")));
    // No PROV-V1 reply: the configuration goes as a CONF-V1 PUT, in Kura's snapshot form.
    assert!(d.sink.published.borrow().is_empty());
    let puts = d.sink.puts.borrow();
    assert_eq!(puts.len(), 1);
    let (body, timeout) = &puts[0];
    assert_eq!(*timeout, REPLY_TIMEOUT);
    assert!(body.contains(
        r#"<esf:configuration pid="org.eclipse.kura.core.data.transport.mqtt.MqttDataTransport">"#
    ));
    assert!(body.contains("<esf:value>dev-1@acme</esf:value>"));
    let document = fleetgate_devconfig::Document::parse(body).unwrap();
    let transport = &document.configurations[0];
    let password = transport.property("password").unwrap();
    assert_eq!(password.ptype, fleetgate_devconfig::PropertyType::Password);
    let user = w.store.read().unwrap().device_user("dev-1@acme").unwrap();
    assert!(fast_verify(
        password.value().unwrap(),
        &user.unwrap().password_hash
    ));

    let r = w.stored(&id);
    assert_eq!(r.status, RequestStatus::Completed);
    let e = &w.executions(&id)[0];
    assert_eq!(e.outcome, Outcome::Completed);
    assert_eq!(e.provisioning_protocol, ProvisioningProtocol::Kura);
    assert_eq!(e.protocol, "5.0");
    assert!(
        e.log[0]
            .message
            .starts_with("Kura-native exchange started on BIRTH")
    );
    assert_eq!(
        w.last_line(&id),
        "the device answered the CONF-V1 PUT with 200"
    );
    assert_eq!(d.outcomes(), [Counted::Completed]);
    assert_eq!(d.sink.closed.get(), 1, "closed after the linger");
}

#[test]
fn a_kura_exchange_fails_on_an_error_reply_a_disconnect_or_no_reply_and_retries_with_a_new_password()
 {
    let w = world();
    let id = w.request("acme", "dev-1", None);
    let mut passwords = Vec::new();
    for (fate, line) in [
        (
            ReplyFate::Answered(500),
            "the device answered the CONF-V1 PUT with 500",
        ),
        (
            ReplyFate::Disconnected,
            "the device disconnected before acknowledging the reply",
        ),
        (
            ReplyFate::NotAnswered,
            "no CONF-V1 reply within provisioning.reply_timeout",
        ),
    ] {
        let mut d = Device::new(&w, &id, "dev-1");
        d.sink = FakeSink::default().then(Then::Fate(fate));
        d.run_kura(&birth(None));
        assert_eq!(w.stored(&id).status, RequestStatus::Failed, "{fate:?}");
        assert_eq!(w.last_line(&id), line);
        assert_eq!(d.outcomes(), [Counted::Failed]);
        assert_eq!(d.sink.closed.get(), 0);
        let body = d.sink.puts.borrow()[0].0.clone();
        let document = fleetgate_devconfig::Document::parse(&body).unwrap();
        let password = document.configurations[0].property("password").unwrap();
        passwords.push(password.value().unwrap().to_string());
    }
    passwords.sort();
    passwords.dedup();
    assert_eq!(passwords.len(), 3, "every retry has a new password");
    // The window is open: the device's next BIRTH completes it.
    let d = Device::new(&w, &id, "dev-1");
    d.run_kura(&birth(None));
    assert_eq!(w.stored(&id).status, RequestStatus::Completed);
    assert!(
        w.executions(&id)
            .iter()
            .all(|e| e.provisioning_protocol == ProvisioningProtocol::Kura)
    );
}

#[test]
fn a_kura_birth_without_the_right_activation_key_fails_and_nothing_is_sent() {
    for (sent, reason) in [
        (None, "failed with 403: activation key missing"),
        (Some("nope"), "failed with 403: activation key wrong"),
    ] {
        let w = world();
        let id = w.request("acme", "dev-1", Some("key-1"));
        let d = Device::new(&w, &id, "dev-1");
        d.run_kura(&birth(sent));
        assert!(d.sink.puts.borrow().is_empty(), "nothing sent");
        assert!(d.sink.published.borrow().is_empty(), "nothing sent");
        assert_eq!(w.stored(&id).status, RequestStatus::Failed);
        let e = &w.executions(&id)[0];
        assert_eq!(e.outcome, Outcome::Failed);
        assert_eq!(e.provisioning_protocol, ProvisioningProtocol::Kura);
        assert_eq!(w.last_line(&id), reason);
        assert_eq!(d.outcomes(), [Counted::ReplyCode(403)]);
        assert!(
            w.store
                .read()
                .unwrap()
                .device_user("dev-1@acme")
                .unwrap()
                .is_none()
        );
    }
    // A BIRTH that is no KuraPayload at all.
    let w = world();
    let id = w.request("acme", "dev-1", None);
    let d = Device::new(&w, &id, "dev-1");
    d.run_kura(b"\xff\xff not a payload");
    assert!(d.sink.puts.borrow().is_empty());
    assert_eq!(w.stored(&id).status, RequestStatus::Failed);
    assert!(
        w.last_line(&id)
            .starts_with("failed with 400: unreadable BIRTH")
    );
}

#[test]
fn a_second_birth_while_a_kura_exchange_runs_is_not_another_exchange() {
    let w = world();
    let id = w.request("acme", "dev-1", None);
    let (answer, wait) = oneshot::channel();
    let mut first = Device::new(&w, &id, "dev-1");
    first.sink = FakeSink::default().then(Then::Wait(wait));
    let payload = birth(None);
    let exchange = first.exchange();
    let mut run = pin!(exchange.run_kura(&payload));
    drive_until(run.as_mut(), || !first.sink.puts.borrow().is_empty());
    let second = Device::new(&w, &id, "dev-1");
    second.run_kura(&birth(None));
    assert!(second.sink.puts.borrow().is_empty());
    assert!(second.sink.published.borrow().is_empty());
    assert_eq!(second.outcomes(), [Counted::ReplyCode(409)]);
    answer.send(ReplyFate::Answered(200)).unwrap();
    futures::executor::block_on(run);
    assert_eq!(w.stored(&id).status, RequestStatus::Completed);
    assert_eq!(w.executions(&id).len(), 1);
}
