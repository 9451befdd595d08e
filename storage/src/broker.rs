//! What the MQTT broker keeps (PROTOCOL.md 6.2): retained messages, written durably one by one
//! before the publisher's acknowledgement, and persistent sessions, saved at a graceful
//! shutdown and loaded at the next start. Each broker (the operational endpoint, the sandbox)
//! is a `space` of its own, so nothing of one is ever read into the other.
//!
//! The broker owns the meaning of these records; storage only keeps them, keyed by space.

use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::engine::{Table, Tx, decode, encode, key};
use crate::read::Reader;

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
    /// When it expires, Unix milliseconds (None: never).
    pub expires_at_ms: Option<u64>,
    /// Its subscriptions.
    pub subscriptions: Vec<StoredSubscription>,
    /// Messages queued for it, oldest first.
    pub queue: Vec<StoredMessage>,
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

/// Replaces every saved session of `space` with `sessions`.
pub fn save_sessions(
    tx: &mut Tx<'_, '_>,
    space: &str,
    sessions: &[StoredSession],
) -> Result<(), StoreError> {
    let prefix = key(&[space, ""]);
    for k in tx.keys_with_prefix(Table::BrokerSessions, &prefix)? {
        tx.delete(Table::BrokerSessions, k);
    }
    for s in sessions {
        let k = key(&[space, &s.account, &s.client_id]);
        tx.put_raw(Table::BrokerSessions, k, encode(s));
    }
    Ok(())
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
    fn saving_sessions_replaces_the_space_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), &StoreOptions::default(), None).unwrap();
        let session = |id: &str| StoredSession {
            account: "acme".into(),
            client_id: id.into(),
            username: format!("{id}@acme"),
            expires_at_ms: Some(1),
            subscriptions: vec![StoredSubscription {
                filter: "$share/g/acme/#".into(),
                qos: 2,
                no_local: true,
                retain_as_published: false,
                id: Some(7),
            }],
            queue: vec![message("acme/x", b"q")],
        };
        let (one, two) = (session("one"), session("two"));
        let (o, t) = (one.clone(), two.clone());
        store
            .write(move |tx| save_sessions(tx, "op", &[o]))
            .unwrap();
        store
            .write(move |tx| save_sessions(tx, "sandbox", &[t]))
            .unwrap();
        let t = two.clone();
        store
            .write(move |tx| save_sessions(tx, "op", &[t]))
            .unwrap();
        let read = store.read().unwrap();
        assert_eq!(read.broker_sessions("op").unwrap(), vec![two.clone()]);
        assert_eq!(read.broker_sessions("sandbox").unwrap(), vec![two]);
        drop(one);
    }
}
