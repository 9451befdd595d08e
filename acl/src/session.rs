//! The ACL hook: session identity + filter/topic -> [`Decision`].

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
}

impl Session {
    /// The account: `PA` for a provisioning session, the target account for a device.
    pub fn account(&self) -> &str {
        match self {
            Session::Provisioning { account, .. } | Session::Device { account, .. } => account,
        }
    }

    /// The MQTT client identifier.
    pub fn client_id(&self) -> &str {
        match self {
            Session::Provisioning { client_id, .. } | Session::Device { client_id, .. } => {
                client_id
            }
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

/// May `session` SUBSCRIBE to `filter`? Deny by default.
///
/// - Provisioning: only filters within `$EDC/PA/CID/PROV-V1/REPLY/#`.
/// - Device: only filters within `$EDC/ACCOUNT/CID/#` or `ACCOUNT/CID/#`.
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
    })
}

/// May `session` PUBLISH to `topic`? Deny by default.
///
/// - Provisioning: only exactly `$EDC/PA/CID/PROV-V1/EXEC/provision`.
/// - Device: only topics matched by `$EDC/ACCOUNT/CID/#` or `ACCOUNT/CID/#`.
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
        }
    })
}
