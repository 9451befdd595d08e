//! An application message inside the broker, and what one delivery of it to one session is.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fleetgate_storage::broker::StoredMessage;
use ntex::util::{ByteString, Bytes};

/// MQTT 5.0 properties passed through unchanged (PROTOCOL.md 6.2), shared by every copy.
#[derive(Clone, Debug, Default)]
pub struct Properties {
    /// User properties, in order.
    pub user: Vec<(ByteString, ByteString)>,
    /// Content type.
    pub content_type: Option<ByteString>,
    /// Payload format indicator: UTF-8.
    pub utf8: bool,
    /// Response topic.
    pub response_topic: Option<ByteString>,
    /// Correlation data.
    pub correlation: Option<Bytes>,
}

/// A published message; immutable once routed, shared by every session it goes to.
#[derive(Clone, Debug)]
pub struct Message {
    /// Topic name.
    pub topic: ByteString,
    /// Payload.
    pub payload: Bytes,
    /// QoS it was published with.
    pub qos: u8,
    /// Retain flag as published.
    pub retain: bool,
    /// 5.0 properties.
    pub props: Properties,
    /// Message expiry (5.0), as a deadline.
    pub expires: Option<Instant>,
    /// The session that published it (no-local); 0 for a will or a retained message.
    pub from: u64,
}

impl Message {
    /// Seconds left before expiry (5.0 message expiry interval to send on), or `None` when
    /// the message never expires; `Some(0)` means expired.
    pub fn expiry_left(&self, now: Instant) -> Option<u32> {
        self.expires.map(|at| {
            let left = at.saturating_duration_since(now);
            u32::try_from(left.as_secs() + u64::from(left.subsec_nanos() > 0)).unwrap_or(u32::MAX)
        })
    }

    /// Whether it expired by `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }

    /// The record kept in the store.
    pub fn to_stored(&self) -> StoredMessage {
        StoredMessage {
            topic: self.topic.to_string(),
            payload: self.payload.to_vec(),
            qos: self.qos,
            retain: self.retain,
            user_properties: self
                .props
                .user
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            content_type: self.props.content_type.as_ref().map(ToString::to_string),
            payload_utf8: self.props.utf8.then_some(true),
            response_topic: self.props.response_topic.as_ref().map(ToString::to_string),
            correlation_data: self.props.correlation.as_ref().map(|c| c.to_vec()),
            expires_at_ms: self.expires.map(|at| {
                let left = at.saturating_duration_since(Instant::now());
                unix_ms(SystemTime::now() + left)
            }),
            sub_ids: Vec::new(),
        }
    }

    /// A message read back from the store; `None` when it expired meanwhile.
    pub fn from_stored(m: StoredMessage) -> Option<Message> {
        let expires = match m.expires_at_ms {
            Some(ms) => {
                let left = ms.checked_sub(unix_ms(SystemTime::now()))?;
                Some(Instant::now() + Duration::from_millis(left))
            }
            None => None,
        };
        Some(Message {
            topic: ByteString::from(m.topic),
            payload: Bytes::from(m.payload),
            qos: m.qos.min(2),
            retain: m.retain,
            props: Properties {
                user: m
                    .user_properties
                    .into_iter()
                    .map(|(k, v)| (ByteString::from(k), ByteString::from(v)))
                    .collect(),
                content_type: m.content_type.map(ByteString::from),
                utf8: m.payload_utf8.unwrap_or(false),
                response_topic: m.response_topic.map(ByteString::from),
                correlation: m.correlation_data.map(Bytes::from),
            },
            expires,
            from: 0,
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One delivery of a message to one session.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The message.
    pub msg: Arc<Message>,
    /// QoS of this delivery: the lower of the published and the granted one.
    pub qos: u8,
    /// Retain flag to send (retained on subscribe, or retain-as-published).
    pub retain: bool,
    /// Subscription identifiers of every matching subscription (5.0).
    pub sub_ids: Vec<u32>,
    /// Sent before and not acknowledged: a redelivery.
    pub dup: bool,
    /// Its sequence number in the store's queue of a persistent session, until acknowledged
    /// (`None`: kept in memory only).
    pub stored: Option<u64>,
}

impl Delivery {
    /// A delivery of `msg` not kept in the store (yet).
    pub fn new(msg: Arc<Message>, qos: u8, retain: bool, sub_ids: Vec<u32>) -> Delivery {
        Delivery {
            msg,
            qos,
            retain,
            sub_ids,
            dup: false,
            stored: None,
        }
    }

    /// The record of this delivery in a persistent session's queue.
    pub fn to_stored(&self) -> StoredMessage {
        StoredMessage {
            qos: self.qos,
            retain: self.retain,
            sub_ids: self.sub_ids.clone(),
            ..self.msg.to_stored()
        }
    }

    /// A delivery read back from a persistent session's queue, stored as `seq`. The store does
    /// not know whether it was sent before the stop, so it goes out as a first delivery.
    /// `None` when it expired meanwhile.
    pub fn from_stored(m: StoredMessage, seq: u64) -> Option<Delivery> {
        let (qos, retain, sub_ids) = (m.qos.min(2), m.retain, m.sub_ids.clone());
        Some(Delivery {
            stored: Some(seq),
            ..Delivery::new(Arc::new(Message::from_stored(m)?), qos, retain, sub_ids)
        })
    }
}
