//! What the MQTT broker keeps (PROTOCOL.md 6.2): retained messages, written durably before
//! the publisher's acknowledgement; persistent sessions (subscriptions and expiry), written
//! when they change; and the QoS 1 and 2 messages given to a persistent session, each written
//! durably before the publisher's acknowledgement and deleted once the subscriber acknowledged
//! it. So a SIGKILL loses nothing acknowledged. Each broker (the operational endpoint, the
//! sandbox) is a `space` of its own, so nothing of one is ever read into the other.
//!
//! The broker owns the meaning of these records; storage only keeps them, keyed by space.

use serde::{Deserialize, Serialize};

use crate::engine::{Table, Tx, decode, encode, key};
use crate::read::Reader;
use crate::{CorruptRecord, StoreError};

/// A message as the broker keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredMessage {
    /// Topic name.
    pub topic: String,
    /// Payload.
    #[serde(with = "bytes_b64")]
    pub payload: Vec<u8>,
    /// QoS it was published with.
    pub qos: u8,
    /// Whether it was published retained.
    #[serde(default)]
    pub retain: bool,
    /// MQTT 5.0 user properties, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_properties: Vec<(String, String)>,
    /// MQTT 5.0 content type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// MQTT 5.0 payload format indicator (true = UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_utf8: Option<bool>,
    /// MQTT 5.0 response topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    /// MQTT 5.0 correlation data.
    #[serde(
        default,
        with = "opt_bytes_b64",
        skip_serializing_if = "Option::is_none"
    )]
    pub correlation_data: Option<Vec<u8>>,
    /// When it expires (MQTT 5.0 message expiry), Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// A queued delivery's MQTT 5.0 subscription identifiers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_ids: Vec<u32>,
}

/// One subscription of a persistent session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSubscription {
    /// The filter as subscribed (with `$share/GROUP/` when shared).
    pub filter: String,
    /// Granted QoS.
    pub qos: u8,
    /// MQTT 5.0 no local.
    #[serde(default)]
    pub no_local: bool,
    /// MQTT 5.0 retain as published.
    #[serde(default)]
    pub retain_as_published: bool,
    /// MQTT 5.0 subscription identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
}

/// A persistent session whose client is away.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSession {
    /// The account (empty in the sandbox).
    pub account: String,
    /// MQTT client identifier.
    pub client_id: String,
    /// The user it belongs to (empty in the sandbox).
    pub username: String,
    /// When it expires, Unix milliseconds, once its client has gone; `None` while the client
    /// is connected (then `expiry_ms` counts from the next start) or when it never expires.
    pub expires_at_ms: Option<u64>,
    /// Its session expiry interval, milliseconds (`None`: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_ms: Option<u64>,
    /// Its subscriptions.
    pub subscriptions: Vec<StoredSubscription>,
    /// Messages queued for it, oldest first, as versions before [`Table::BrokerQueue`] saved
    /// them at a graceful shutdown; read once at the next start, never written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queue: Vec<StoredMessage>,
}

/// One message of a persistent session's queue ([`Table::BrokerQueue`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    /// The session's account (empty in the sandbox).
    pub account: String,
    /// The session's client identifier.
    pub client_id: String,
    /// Its place in the broker's order of queued messages.
    pub seq: u64,
    /// The message, at the QoS it is delivered with.
    pub message: StoredMessage,
}

/// Writes (`Some`) or deletes (`None`) the retained message of `topic` in `space`.
pub fn put_retained(
    tx: &mut Tx<'_, '_>,
    space: &str,
    topic: &str,
    message: Option<&StoredMessage>,
) -> Result<(), StoreError> {
    let k = key(&[space, topic]);
    match message {
        Some(m) => tx.put_raw(Table::Retained, k, encode(m)),
        None => tx.delete(Table::Retained, k),
    }
    Ok(())
}

/// Writes (replaces) the record of a persistent session of `space`.
pub fn put_session(tx: &mut Tx<'_, '_>, space: &str, session: &StoredSession) {
    let k = key(&[space, &session.account, &session.client_id]);
    tx.put_raw(Table::BrokerSessions, k, encode(session));
}

/// Deletes a session of `space` and every message queued for it.
pub fn delete_session(
    tx: &mut Tx<'_, '_>,
    space: &str,
    account: &str,
    client_id: &str,
) -> Result<(), StoreError> {
    tx.delete(Table::BrokerSessions, key(&[space, account, client_id]));
    for k in tx.keys_with_prefix(Table::BrokerQueue, &key(&[space, account, client_id, ""]))? {
        tx.delete(Table::BrokerQueue, k);
    }
    Ok(())
}

fn queue_key(space: &str, account: &str, client_id: &str, seq: u64) -> Vec<u8> {
    key(&[space, account, client_id, &format!("{seq:016x}")])
}

/// Keeps a message given to a persistent session of `space` until [`delete_queued`].
pub fn put_queued(tx: &mut Tx<'_, '_>, space: &str, queued: &QueuedMessage) {
    let k = queue_key(space, &queued.account, &queued.client_id, queued.seq);
    tx.put_raw(Table::BrokerQueue, k, encode(&queued.message));
}

/// Forgets a queued message (acknowledged by the subscriber, expired, or not deliverable).
pub fn delete_queued(tx: &mut Tx<'_, '_>, space: &str, account: &str, client_id: &str, seq: u64) {
    tx.delete(
        Table::BrokerQueue,
        queue_key(space, account, client_id, seq),
    );
}

impl Reader {
    /// Every retained message of `space`.
    pub fn retained(&self, space: &str) -> Result<Vec<StoredMessage>, StoreError> {
        self.broker_values(Table::Retained, space)
    }

    /// Every saved session of `space`.
    pub fn broker_sessions(&self, space: &str) -> Result<Vec<StoredSession>, StoreError> {
        self.broker_values(Table::BrokerSessions, space)
    }

    /// Every queued message of `space`, in order of session, then of sequence.
    pub fn broker_queue(&self, space: &str) -> Result<Vec<QueuedMessage>, StoreError> {
        let prefix = key(&[space, ""]);
        let mut out = Vec::new();
        self.snap
            .scan(Table::BrokerQueue, &prefix, &prefix, |k, v| {
                let mut parts = k[prefix.len()..]
                    .split(|b| *b == 0)
                    .map(String::from_utf8_lossy);
                let (Some(account), Some(client_id), Some(seq), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(StoreError::Corrupt(CorruptRecord::Key));
                };
                let seq = u64::from_str_radix(&seq, 16)
                    .map_err(|_| StoreError::Corrupt(CorruptRecord::Key))?;
                out.push(QueuedMessage {
                    account: account.into_owned(),
                    client_id: client_id.into_owned(),
                    seq,
                    message: decode(v)?,
                });
                Ok(true)
            })?;
        Ok(out)
    }

    fn broker_values<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        space: &str,
    ) -> Result<Vec<T>, StoreError> {
        let prefix = key(&[space, ""]);
        let mut out = Vec::new();
        self.snap.scan(table, &prefix, &prefix, |_, v| {
            out.push(decode(v)?);
            Ok(true)
        })?;
        Ok(out)
    }
}

mod bytes_b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

mod opt_bytes_b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    // serde's `with` on an Option field hands the Option over as is.
    #[allow(clippy::ref_option)]
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => super::bytes_b64::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::bytes_b64")] Vec<u8>);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreOptions};

    fn message(topic: &str, payload: &[u8]) -> StoredMessage {
        StoredMessage {
            topic: topic.into(),
            payload: payload.to_vec(),
            qos: 1,
            retain: true,
            correlation_data: Some(vec![0, 255]),
            user_properties: vec![("a".into(), "1".into())],
            ..StoredMessage::default()
        }
    }

    #[test]
    fn retained_messages_are_kept_per_space_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), &StoreOptions::default(), None).unwrap();
        let (a, b) = (message("t/1", b"\x00bin"), message("t/2", b"two"));
        let (a2, b2) = (a.clone(), b.clone());
        store
            .write(move |tx| {
                put_retained(tx, "op", "t/1", Some(&a2))?;
                put_retained(tx, "op", "t/2", Some(&b2))?;
                put_retained(tx, "sandbox", "t/1", Some(&b2))
            })
            .unwrap();
        assert_eq!(
            store.read().unwrap().retained("op").unwrap(),
            vec![a, b.clone()]
        );
        store
            .write(|tx| put_retained(tx, "op", "t/1", None))
            .unwrap();
        assert_eq!(
            store.read().unwrap().retained("op").unwrap(),
            vec![b.clone()]
        );
        assert_eq!(store.read().unwrap().retained("sandbox").unwrap(), vec![b]);
    }

    #[test]
    fn sessions_and_their_queues_are_kept_per_space_and_deleted_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), &StoreOptions::default(), None).unwrap();
        let session = |id: &str| StoredSession {
            account: "acme".into(),
            client_id: id.into(),
            username: format!("{id}@acme"),
            expires_at_ms: Some(1),
            expiry_ms: Some(7_200_000),
            subscriptions: vec![StoredSubscription {
                filter: "$share/g/acme/#".into(),
                qos: 2,
                no_local: true,
                retain_as_published: false,
                id: Some(7),
            }],
            queue: Vec::new(),
        };
        let queued = |id: &str, seq: u64| QueuedMessage {
            account: "acme".into(),
            client_id: id.into(),
            seq,
            message: StoredMessage {
                sub_ids: vec![7],
                ..message(&format!("acme/{seq}"), b"q")
            },
        };
        // "one" and "one1": a client ID that extends another must not share its queue.
        let (one, one1) = (session("one"), session("one1"));
        let writes = (one.clone(), one1.clone());
        store
            .write(move |tx| {
                put_session(tx, "op", &writes.0);
                put_session(tx, "op", &writes.1);
                put_session(tx, "sandbox", &writes.0);
                // Out of order: the key orders them.
                for (id, seq) in [("one", 0x11), ("one", 0x2), ("one1", 3)] {
                    put_queued(tx, "op", &queued(id, seq));
                }
                put_queued(tx, "sandbox", &queued("one", 9));
                Ok(())
            })
            .unwrap();
        let read = store.read().unwrap();
        assert_eq!(
            read.broker_sessions("op").unwrap(),
            vec![one.clone(), one1.clone()]
        );
        assert_eq!(
            read.broker_queue("op").unwrap(),
            vec![queued("one", 2), queued("one", 0x11), queued("one1", 3)]
        );
        store
            .write(|tx| {
                // Another account's key deletes nothing.
                delete_queued(tx, "op", "one", "one", 2);
                delete_queued(tx, "op", "acme", "one", 0x11);
                delete_session(tx, "op", "acme", "one1")
            })
            .unwrap();
        let read = store.read().unwrap();
        assert_eq!(read.broker_sessions("op").unwrap(), vec![one.clone()]);
        assert_eq!(read.broker_queue("op").unwrap(), vec![queued("one", 2)]);
        assert_eq!(read.broker_sessions("sandbox").unwrap(), vec![one]);
        assert_eq!(
            read.broker_queue("sandbox").unwrap(),
            vec![queued("one", 9)]
        );
    }
}
