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
        let safe_level =
            |s: &str| !s.is_empty() && !s.bytes().any(|b| matches!(b, b'/' | b'+' | b'#' | b'\0'));
        (safe_level(account) && safe_level(client_id) && !account.starts_with('$'))
            .then_some((account, client_id))
    }
}

/// The Kura request methods an account user with `device:manage` may publish (PROTOCOL.md 7).
const KURA_METHODS: [&str; 5] = ["GET", "PUT", "POST", "DEL", "EXEC"];

/// May `session` SUBSCRIBE to `filter`? Deny by default. The broker strips `$share/GROUP/`
/// before asking, so `filter` is always a plain filter.
///
/// - Provisioning: only filters within `$EDC/PA/CID/PROV-V1/REPLY/#`.
/// - Device: only filters within `$EDC/ACCOUNT/CID/#` or `ACCOUNT/CID/#`.
/// - Account user (PROTOCOL.md 6.1): within `ACCOUNT/#` with `data:read`, within
///   `$EDC/ACCOUNT/+/MQTT/#` with `device:read`, within `$EDC/ACCOUNT/CID/#` (its own replies
///   and notifications) with `device:manage`.
pub fn may_subscribe(session: &Session, filter: &str) -> Decision {
    let Some((account, client_id)) = session.safe_parts() else {
        return Decision::Deny;
    };
    if !valid_topic_filter(filter) {
        return Decision::Deny;
    }
    let levels = || filter.split('/');
    Decision::allow_if(match session {
        Session::Provisioning { .. } => within_levels(
            levels(),
            ["$EDC", account, client_id, "PROV-V1", "REPLY", "#"].into_iter(),
        ),
        Session::Device { .. } => {
            within_levels(levels(), ["$EDC", account, client_id, "#"].into_iter())
                || within_levels(levels(), [account, client_id, "#"].into_iter())
        }
        Session::Account { permissions, .. } => {
            (permissions.has(Permission::DataRead)
                && within_levels(levels(), [account, "#"].into_iter()))
                || (permissions.has(Permission::DeviceRead)
                    && within_levels(levels(), ["$EDC", account, "+", "MQTT", "#"].into_iter()))
                || (permissions.has(Permission::DeviceManage)
                    && within_levels(levels(), ["$EDC", account, client_id, "#"].into_iter()))
        }
    })
}

/// May `session` PUBLISH to `topic`? Deny by default.
///
/// - Provisioning: only exactly `$EDC/PA/CID/PROV-V1/EXEC/provision`.
/// - Device: topics matched by `$EDC/ACCOUNT/CID/#` or `ACCOUNT/CID/#`, and Kura replies and
///   notifications to a requester of its account: `$EDC/ACCOUNT/+/+/REPLY/#` and
///   `$EDC/ACCOUNT/+/+/NOTIFY/CID/#`.
/// - Account user: inside `ACCOUNT/#` with `data:write`; Kura requests
///   `$EDC/ACCOUNT/+/+/GET|PUT|POST|DEL|EXEC/#` with `device:manage`.
pub fn may_publish(session: &Session, topic: &str) -> Decision {
    let Some((account, client_id)) = session.safe_parts() else {
        return Decision::Deny;
    };
    if !valid_topic_name(topic) {
        return Decision::Deny;
    }
    let levels = || topic.split('/');
    Decision::allow_if(match session {
        Session::Provisioning { .. } => {
            levels().eq(["$EDC", account, client_id, "PROV-V1", "EXEC", "provision"])
        }
        Session::Device { .. } => {
            within_levels(levels(), ["$EDC", account, client_id, "#"].into_iter())
                || within_levels(levels(), [account, client_id, "#"].into_iter())
                || within_levels(
                    levels(),
                    ["$EDC", account, "+", "+", "REPLY", "#"].into_iter(),
                )
                || within_levels(
                    levels(),
                    ["$EDC", account, "+", "+", "NOTIFY", client_id, "#"].into_iter(),
                )
        }
        Session::Account { permissions, .. } => {
            (permissions.has(Permission::DataWrite)
                && within_levels(levels(), [account, "#"].into_iter()))
                || (permissions.has(Permission::DeviceManage)
                    && KURA_METHODS.iter().any(|&method| {
                        within_levels(
                            levels(),
                            ["$EDC", account, "+", "+", method, "#"].into_iter(),
                        )
                    }))
        }
    })
}
