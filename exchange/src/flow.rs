//! The exchange itself: decode, plan, first commit, reply, wait for its fate within
//! `provisioning.reply_timeout`, second commit, linger, close.

use std::borrow::Cow;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use fleetgate_kura::{Encoding, ProvReply, ProvRequest, RequestError, decode_request, topics};
use fleetgate_storage::ops::{self, Attempt, ExchangeAction, ExchangeStart, ReplyFate};
use fleetgate_storage::{Outcome, ProvisioningProtocol, Store, StoreError, Timestamp};

use crate::plan::plan;

/// The device's connection, as far as the exchange needs it.
pub trait ReplySink {
    /// Publishes `payload` on `topic` at the QoS the device subscribed to `topic` with (QoS 1
    /// when it has no matching subscription: devices commonly subscribe late), retain 0.
    /// Resolves when the reply's fate is known: [`ReplyFate::Acknowledged`] on the PUBACK of a
    /// QoS 1 reply, [`ReplyFate::Written`] once a QoS 0 reply is written,
    /// [`ReplyFate::Disconnected`] when the connection closes first, [`ReplyFate::Refused`] on
    /// an MQTT 5.0 error reason code. It need not time out: the exchange does.
    fn publish(&self, topic: String, payload: Vec<u8>) -> impl Future<Output = ReplyFate>;

    /// Sends a Kura-native device the CONF-V1 `PUT configurations` request whose body is
    /// `configuration` (PROTOCOL.md 8.1), and resolves with its fate: [`ReplyFate::Answered`]
    /// with the device's `response.code`, [`ReplyFate::Disconnected`] when it disconnects
    /// first, [`ReplyFate::NotAnswered`] when no reply came within `timeout`.
    fn put_configuration(
        &self,
        configuration: String,
        timeout: Duration,
    ) -> impl Future<Output = ReplyFate>;

    /// Closes the connection, if it is still open, as a normal end (MQTT 5.0: DISCONNECT 0x00).
    fn close(&self);

    /// The execution has ended durably (its second commit is done, or it never started).
    /// What may follow (the linger before [`ReplySink::close`]) is a courtesy to the device
    /// that a shutdown need not wait for.
    fn settled(&self);
}

/// Time, as the exchange sees it; a fake one makes timeouts and linger testable.
pub trait Timer {
    /// Now, in UTC, for the records.
    fn now(&self) -> Timestamp;

    /// Resolves once `duration` has passed.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()>;
}

/// What the exchange counts, for metrics.
pub trait Observer {
    /// One exchange outcome.
    fn outcome(&self, outcome: Counted);

    /// A completed enrollment and how long it took from the request to the reply's fate.
    fn enrolled(&self, took: Duration);
}

/// An exchange outcome to count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// The success reply was delivered: the execution COMPLETED.
    Completed,
    /// The success reply was not delivered: the execution FAILED.
    Failed,
    /// A failure reply with this PROV-V1 code was sent (or, for 409, nothing changed).
    ReplyCode(u16),
}

impl Counted {
    /// The metrics label: `completed`, `failed`, or `reply_code_NNN`.
    pub fn label(self) -> Cow<'static, str> {
        match self {
            Counted::Completed => "completed".into(),
            Counted::Failed => "failed".into(),
            Counted::ReplyCode(code) => format!("reply_code_{code}").into(),
        }
    }
}

/// How the device provisions itself, which decides how the exchange answers it.
#[derive(Clone, Copy, Debug)]
enum Dialect {
    /// A PROV-V1 request in this encoding: answered with a PROV-V1 reply.
    ProvV1(Encoding),
    /// An unmodified Kura device's BIRTH: answered with a CONF-V1 PUT (PROTOCOL.md 8.1).
    Kura,
}

impl Dialect {
    /// The provisioning protocol its execution records.
    fn protocol(self) -> ProvisioningProtocol {
        match self {
            Dialect::ProvV1(_) => ProvisioningProtocol::ProvV1,
            Dialect::Kura => ProvisioningProtocol::Kura,
        }
    }
}

/// The provisioning settings an exchange follows.
#[derive(Clone, Copy, Debug)]
pub struct Settings<'a> {
    /// The provisioning account (the `PA` of the topics).
    pub account: &'a str,
    /// The PID of the VPN client configuration, for requests with VPN access.
    pub vpn_client_pid: &'a str,
    /// How long to wait for a reply's fate (`provisioning.reply_timeout`).
    pub reply_timeout: Duration,
    /// How long a completed session stays open before it is closed (`provisioning.linger`).
    pub linger: Duration,
}

/// The provisioning session a request came in on.
#[derive(Clone, Copy, Debug)]
pub struct Session<'a> {
    /// The provision request the CONNECT matched.
    pub request_id: &'a str,
    /// The device's client ID.
    pub client_id: &'a str,
    /// `3.1.1` or `5.0`.
    pub protocol: &'a str,
    /// Peer `ip:port`.
    pub peer: &'a str,
}

/// One exchange: everything it reads, writes and talks to.
pub struct Exchange<'a, S, T, O> {
    /// The store.
    pub store: &'a Store,
    /// The provisioning settings.
    pub settings: Settings<'a>,
    /// The session the request came in on.
    pub session: Session<'a>,
    /// The device's connection.
    pub sink: &'a S,
    /// Time.
    pub timer: &'a T,
    /// Metrics.
    pub observer: &'a O,
}

impl<S: ReplySink, T: Timer, O: Observer> Exchange<'_, S, T, O> {
    /// Runs the exchange of one request payload to its end. Run it detached from the publish
    /// handler: a device that disconnects mid-exchange must not cancel it half-way, as only
    /// this ends the execution (COMPLETED on the reply's PUBACK, FAILED on disconnect, refusal
    /// or `reply_timeout`).
    pub async fn run(&self, payload: &[u8]) {
        let started = Instant::now();
        match decode_request(payload) {
            Ok((encoding, request)) => {
                self.provision(Dialect::ProvV1(encoding), request, started)
                    .await;
            }
            Err(e) => self.undecodable(e).await,
        }
    }

    /// Runs the Kura-native exchange (PROTOCOL.md 8.1) that the BIRTH `birth` of an unmodified
    /// Kura device starts, to its end: the state changes of a PROV-V1 exchange, then a CONF-V1
    /// PUT of the configuration in Kura's snapshot form instead of a reply; COMPLETED when the
    /// device answers 200. A failure (activation key missing or wrong, a BIRTH that cannot be
    /// read) fails the execution and sends nothing. Run it detached, as [`Exchange::run`].
    pub async fn run_kura(&self, birth: &[u8]) {
        let started = Instant::now();
        // Identifies this exchange among the request's attempts, as a PROV-V1 request.id does
        // (a second BIRTH while it runs is then another exchange, and not started).
        let put_id = fleetgate_storage::ids::new_id();
        match ProvRequest::from_birth(birth, put_id.clone()) {
            Ok(request) => self.provision(Dialect::Kura, request, started).await,
            Err(e) => {
                let action = ExchangeAction::Fail {
                    code: 400,
                    reason: format!("unreadable BIRTH: {e}"),
                };
                let begin =
                    ops::begin_exchange(self.attempt(), put_id, action, ProvisioningProtocol::Kura);
                if let Err(err) = self.store.write_async(begin).await {
                    tracing::error!(error = %err, "could not store a rejected exchange");
                }
                self.observer.outcome(Counted::ReplyCode(400));
            }
        }
    }

    /// Plans and runs a decoded request: the first commit, the reply (PROV-V1) or CONF-V1 PUT
    /// (Kura), the second commit on its fate, the linger.
    async fn provision(&self, dialect: Dialect, request: ProvRequest, started: Instant) {
        let (action, reply) = plan(
            self.store,
            self.session.request_id,
            &request,
            self.settings.vpn_client_pid,
        )
        .split();
        let device_request_id = request.request_id;
        let attempt = self.attempt();
        let begin = ops::begin_exchange(
            attempt,
            device_request_id.clone(),
            action,
            dialect.protocol(),
        );
        let start = self.store.write_async(begin).await;
        let (running, (success, document)) = match (start, reply) {
            (
                Ok(ExchangeStart::Started {
                    running: Some(running),
                    ..
                }),
                Ok(success),
            ) => (running, success),
            (Ok(ExchangeStart::Started { .. }), Err((code, reason))) => {
                return self.fail(dialect, &device_request_id, code, reason).await;
            }
            // A `Provision` always starts a running exchange; should it not, nothing was
            // written to answer for.
            (Ok(ExchangeStart::Started { .. }), Ok(_)) => {
                tracing::error!("a provisioning exchange started without running");
                return self
                    .fail(dialect, &device_request_id, 500, "no reply".into())
                    .await;
            }
            (Ok(ExchangeStart::Duplicate), _) => return,
            (Ok(ExchangeStart::Busy), _) => {
                let reason = "another exchange for this request is running";
                return self
                    .fail(dialect, &device_request_id, 409, reason.into())
                    .await;
            }
            (Ok(ExchangeStart::NotOpen), _) => {
                let reason = "the provision request is no longer open";
                return self
                    .fail(dialect, &device_request_id, 409, reason.into())
                    .await;
            }
            (Err(e), _) => {
                // A full disk is logged by the store once a minute, not once per device.
                if !matches!(e, StoreError::Full) {
                    tracing::error!(error = %e, "could not store an exchange");
                }
                let reason = match e {
                    StoreError::Full => "the server's storage is full",
                    _ => "could not store the provisioning result",
                };
                return self
                    .fail(dialect, &device_request_id, 500, reason.into())
                    .await;
            }
        };
        let fate = match dialect {
            Dialect::ProvV1(encoding) => {
                let topic = self.reply_topic(&device_request_id);
                self.send(topic, ProvReply::Success(success).encode(encoding))
                    .await
            }
            Dialect::Kura => {
                self.sink
                    .put_configuration(document.to_snapshot_xml(), self.settings.reply_timeout)
                    .await
            }
        };
        let finish = ops::finish_exchange(running, fate, self.timer.now());
        if let Err(e) = self.store.write_async(finish).await {
            tracing::error!(error = %e, "could not end an exchange");
        }
        self.sink.settled();
        if fate.outcome() != Outcome::Completed {
            self.observer.outcome(Counted::Failed);
            return;
        }
        self.observer.outcome(Counted::Completed);
        self.observer.enrolled(started.elapsed());
        self.timer.sleep(self.settings.linger).await;
        self.sink.close();
    }

    /// 400: recorded when the request can still be attributed (no change while another
    /// exchange runs), answered on `REPLY/{request.id}` or `REPLY/error`.
    async fn undecodable(&self, e: RequestError) {
        let action = ExchangeAction::Fail {
            code: 400,
            reason: e.to_string(),
        };
        let device_request_id = e.request_id().unwrap_or("-").to_string();
        let begin = ops::begin_exchange(
            self.attempt(),
            device_request_id,
            action,
            ProvisioningProtocol::ProvV1,
        );
        if let Err(err) = self.store.write_async(begin).await {
            tracing::error!(error = %err, "could not store a rejected exchange");
        }
        self.observer.outcome(Counted::ReplyCode(400));
        let topic = self.reply_topic(e.reply_topic_level());
        self.answer_failure(topic, e.to_reply().encode(e.encoding()))
            .await;
    }

    /// Counts a failure and, to a PROV-V1 device, sends the failure reply on `REPLY/{level}`.
    /// A Kura-native device is sent nothing (PROTOCOL.md 8.1): it has no PROV-V1 reply to
    /// read, and the execution log holds the reason.
    async fn fail(&self, dialect: Dialect, level: &str, code: u16, reason: String) {
        self.observer.outcome(Counted::ReplyCode(code));
        match dialect {
            Dialect::ProvV1(encoding) => {
                let payload = ProvReply::failure(code, reason).encode(encoding);
                self.answer_failure(self.reply_topic(level), payload).await;
            }
            Dialect::Kura => {
                tracing::debug!(client_id = %self.session.client_id, code, %reason, "Kura-native exchange not run");
            }
        }
    }

    /// Sends a reply that nothing waits on: its fate changes no record.
    async fn answer_failure(&self, topic: String, payload: Vec<u8>) {
        let fate = self.send(topic, payload).await;
        if fate.outcome() != Outcome::Completed {
            tracing::debug!(client_id = %self.session.client_id, ?fate, "failure reply not delivered");
        }
    }

    /// Publishes a reply and waits for its fate, at most `reply_timeout`.
    async fn send(&self, topic: String, payload: Vec<u8>) -> ReplyFate {
        let mut delivery = pin!(self.sink.publish(topic, payload));
        // The deadline starts only when the fate is not known at once: a QoS 0 reply (or a
        // closed connection) then costs no timer.
        let at_once = poll_fn(|cx| Poll::Ready(delivery.as_mut().poll(cx))).await;
        if let Poll::Ready(fate) = at_once {
            return fate;
        }
        let mut deadline = pin!(self.timer.sleep(self.settings.reply_timeout));
        poll_fn(|cx| {
            if let Poll::Ready(fate) = delivery.as_mut().poll(cx) {
                Poll::Ready(fate)
            } else if deadline.as_mut().poll(cx).is_ready() {
                Poll::Ready(ReplyFate::TimedOut)
            } else {
                Poll::Pending
            }
        })
        .await
    }

    fn reply_topic(&self, level: &str) -> String {
        topics::reply_topic(self.settings.account, self.session.client_id, level)
    }

    fn attempt(&self) -> Attempt {
        Attempt {
            request_id: self.session.request_id.to_string(),
            protocol: self.session.protocol.to_string(),
            peer: self.session.peer.to_string(),
            now: self.timer.now(),
        }
    }
}
