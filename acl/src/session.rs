//! The ACL hook: session identity + filter/topic -> [`Decision`].

use crate::permission::{Permission, Permissions};
use crate::topic::{valid_topic_filter, valid_topic_name, within_levels};

/// The outcome of an ACL check. The default is [`Decision::Deny`].
#[must_use]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The operation is allowed.
    Allow,
    /// The operation is refused (the default).
    #[default]
    Deny,
}

impl Decision {
    /// `true` for [`Decision::Allow`].
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }

    fn allow_if(condition: bool) -> Decision {
        if condition {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }
}

/// Who a connection is, decided once at CONNECT.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Session {
    /// A device on the provisioning endpoint (PROTOCOL.md section 3).
    Provisioning {
        /// The provisioning account name (`PA`, config `provisioning.account`).
        account: String,
        /// The MQTT client identifier (`CID`).
        client_id: String,
        /// Fleetgate's requester client ID (config `device_management.requester`): a
        /// Kura-native device answers Fleetgate's CONF-V1 PUT on
        /// `$EDC/PA/{requester}/CONF-V1/REPLY/#` (PROTOCOL.md 8.1).
        requester: String,
    },
    /// A provisioned device on the operational endpoint (PROTOCOL.md section 6).
    Device {
        /// The device's target account.
        account: String,
        /// The MQTT client identifier.
        client_id: String,
    },
    /// An account user (an application) on the operational endpoint (PROTOCOL.md 6.1).
    Account {
        /// The user's account.
        account: String,
        /// The MQTT client identifier it connected with.
        client_id: String,
        /// What its permissions let it reach.
        permissions: Permissions,
    },
}

impl Session {
    /// The account: `PA` for a provisioning session, the target account for a device.
    pub fn account(&self) -> &str {
        match self {
            Session::Provisioning { account, .. }
            | Session::Device { account, .. }
            | Session::Account { account, .. } => account,
        }
    }

    /// The MQTT client identifier.
    pub fn client_id(&self) -> &str {
        match self {
            Session::Provisioning { client_id, .. }
            | Session::Device { client_id, .. }
            | Session::Account { client_id, .. } => client_id,
        }
    }

    /// Account and client ID, when both are safe to splice into a topic as one level each.
    ///
    /// Connect-time validation already refuses such client IDs; this is the second line: an
    /// identity with `/`, `+`, `#` or NUL would widen the scope (`acme/+/#`), an empty one would
    /// collapse a level, and an account starting with `$` could alias the `$EDC` tree
    /// (account `$EDC` + client `acme` = `$EDC/acme/#`, another account's space).
    fn safe_parts(&self) -> Option<(&str, &str)> {
        let (account, client_id) = (self.account(), self.client_id());
        (safe_level(account) && safe_level(client_id) && !account.starts_with('$'))
            .then_some((account, client_id))
    }
}

/// Whether `s` is one topic level that matches only itself.
fn safe_level(s: &str) -> bool {
    !s.is_empty() && !s.bytes().any(|b| matches!(b, b'/' | b'+' | b'#' | b'\0'))
}

/// The Kura request methods an account user with `device:manage` may publish (PROTOCOL.md 7).
const KURA_METHODS: [&str; 5] = ["GET", "PUT", "POST", "DEL", "EXEC"];

/// What a session asks to do with a topic: the two questions of the ACL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// SUBSCRIBE to a filter.
    Subscribe,
    /// PUBLISH to a topic name.
    Publish,
}

/// The ACL itself, once: every scope (a topic filter, as levels) `session` may `access`,
/// visited until `visit` answers `true`. [`may_subscribe`] and [`may_publish`] test a filter or
/// topic against them without allocating; [`rules`] lists them for brokers that enforce rules
/// of their own (HOOKS.md 2.1). The caller has checked [`Session::safe_parts`].
fn any_scope(
    session: &Session,
    (account, client_id): (&str, &str),
    access: Access,
    mut visit: impl FnMut(&[&str]) -> bool,
) -> bool {
    match (session, access) {
        // Its PROV-V1 replies, and for a Kura-native device (PROTOCOL.md 8.1) everything
        // Fleetgate sends it, CONF-V1 requests included.
        (Session::Provisioning { .. }, Access::Subscribe) => {
            visit(&["$EDC", account, client_id, "#"])
        }
        (Session::Provisioning { requester, .. }, Access::Publish) => {
            visit(&["$EDC", account, client_id, "PROV-V1", "EXEC", "provision"])
                || visit(&["$EDC", account, client_id, "MQTT", "#"])
                || (safe_level(requester)
                    && visit(&["$EDC", account, requester, "CONF-V1", "REPLY", "#"]))
        }
        (Session::Device { .. }, Access::Subscribe) => {
            visit(&["$EDC", account, client_id, "#"]) || visit(&[account, client_id, "#"])
        }
        (Session::Device { .. }, Access::Publish) => {
            visit(&["$EDC", account, client_id, "#"])
                || visit(&[account, client_id, "#"])
                || visit(&["$EDC", account, "+", "+", "REPLY", "#"])
                || visit(&["$EDC", account, "+", "+", "NOTIFY", client_id, "#"])
        }
        (Session::Account { permissions, .. }, Access::Subscribe) => {
            (permissions.has(Permission::DataRead) && visit(&[account, "#"]))
                || (permissions.has(Permission::DeviceRead)
                    && visit(&["$EDC", account, "+", "MQTT", "#"]))
                || (permissions.has(Permission::DeviceManage)
                    && visit(&["$EDC", account, client_id, "#"]))
        }
        (Session::Account { permissions, .. }, Access::Publish) => {
            (permissions.has(Permission::DataWrite) && visit(&[account, "#"]))
                || (permissions.has(Permission::DeviceManage)
                    && KURA_METHODS
                        .iter()
                        .any(|&method| visit(&["$EDC", account, "+", "+", method, "#"])))
        }
    }
}

/// May `session` SUBSCRIBE to `filter`? Deny by default. The broker strips `$share/GROUP/`
/// before asking, so `filter` is always a plain filter. Allowed: filters within a scope of
/// [`rules`]:
///
/// - Provisioning: `$EDC/PA/CID/#` (PROV-V1 replies, and Kura-native requests, PROTOCOL.md 3).
/// - Device: `$EDC/ACCOUNT/CID/#` or `ACCOUNT/CID/#`.
/// - Account user (PROTOCOL.md 6.1): `ACCOUNT/#` with `data:read`, `$EDC/ACCOUNT/+/MQTT/#`
///   with `device:read`, `$EDC/ACCOUNT/CID/#` (its own replies and notifications) with
///   `device:manage`.
pub fn may_subscribe(session: &Session, filter: &str) -> Decision {
    decide(session, Access::Subscribe, filter, valid_topic_filter)
}

/// May `session` PUBLISH to `topic`? Deny by default. Allowed: topics matched by a scope of
/// [`rules`]:
///
/// - Provisioning: exactly `$EDC/PA/CID/PROV-V1/EXEC/provision`; for Kura-native
///   provisioning `$EDC/PA/CID/MQTT/#` (BIRTH, DC, APPS, LWT) and CONF-V1 replies
///   `$EDC/PA/{requester}/CONF-V1/REPLY/#` (PROTOCOL.md 3).
/// - Device: `$EDC/ACCOUNT/CID/#` or `ACCOUNT/CID/#`, and Kura replies and notifications to a
///   requester of its account: `$EDC/ACCOUNT/+/+/REPLY/#` and `$EDC/ACCOUNT/+/+/NOTIFY/CID/#`.
/// - Account user: inside `ACCOUNT/#` with `data:write`; Kura requests
///   `$EDC/ACCOUNT/+/+/GET|PUT|POST|DEL|EXEC/#` with `device:manage`.
pub fn may_publish(session: &Session, topic: &str) -> Decision {
    decide(session, Access::Publish, topic, valid_topic_name)
}

fn decide(session: &Session, access: Access, topic: &str, valid: fn(&str) -> bool) -> Decision {
    let Some(parts) = session.safe_parts() else {
        return Decision::Deny;
    };
    Decision::allow_if(
        valid(topic)
            && any_scope(session, parts, access, |scope| {
                within_levels(topic.split('/'), scope.iter().copied())
            }),
    )
}

/// The scopes `session` may `access`, as topic filters: a filter is allowed to SUBSCRIBE when
/// it is within one ([`crate::filter_is_within`]), a topic to PUBLISH when one matches it. No
/// scopes for an identity that is not topic-safe (everything is denied).
pub fn rules(session: &Session, access: Access) -> Vec<String> {
    let mut scopes = Vec::new();
    if let Some(parts) = session.safe_parts() {
        any_scope(session, parts, access, |scope| {
            scopes.push(scope.join("/"));
            false
        });
    }
    scopes
}
