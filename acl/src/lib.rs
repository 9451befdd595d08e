//! Topic decisions of Fleetgate: what a session may SUBSCRIBE to and PUBLISH to, and which
//! subscribers a PUBLISH reaches.
//!
//! This crate owns:
//! - MQTT topic names and filters: validation ([`valid_topic_name`], [`valid_topic_filter`]),
//!   and the client IDs that may become a topic level ([`valid_client_id`]),
//!   matching ([`filter_matches`]) and containment ([`filter_is_within`]);
//! - the ACL of PROTOCOL.md sections 3 and 6 ([`may_subscribe`], [`may_publish`]) for a typed
//!   [`Session`] identity (provisioning device, device, or account user with its
//!   [`Permissions`]), **deny by default**: anything not explicitly allowed is
//!   [`Decision::Deny`], including malformed filters and identities that are not topic-safe;
//! - the subscription matcher of the operational endpoint ([`SubscriptionTree`]).
//!
//! It must not do I/O, know about sockets, MQTT packets or reason codes, or hold broker state:
//! the broker turns a [`Decision`] into a SUBACK / PUBACK code or a disconnect.
//!
//! MQTT 5 shared subscriptions (`$share/...`) are not understood here and are therefore denied:
//! the broker strips `$share/GROUP/` and asks about the plain filter.

mod permission;
mod session;
mod topic;
mod tree;

pub use permission::{Permission, Permissions};
pub use session::{Access, Decision, Session, may_publish, may_subscribe, rules};
pub use topic::{
    MAX_CLIENT_ID, MAX_TOPIC_LEN, filter_is_within, filter_matches, plain_filter, valid_client_id,
    valid_topic_filter, valid_topic_name,
};
pub use tree::{MAX_TREE_LEVELS, SubscriptionTree, TreeError};

/// The permission every operational user needs to connect (PROTOCOL.md 6.1).
pub const PERMISSION_BROKER_CONNECT: &str = "broker:connect";

#[cfg(test)]
mod tests;
