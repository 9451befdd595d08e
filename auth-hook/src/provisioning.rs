//! The provisioning CONNECT decision of PROTOCOL.md section 2, in the steps its driver runs
//! around the two things that are not pure: reading the candidate request and verifying the
//! password on the pool.
//!
//! 1. [`check_client_id`](crate::check_client_id), then the limiter's bans;
//! 2. [`match_username`]: the presented user name against the candidate's provision username
//!    ([`CredentialFailure`] otherwise);
//! 3. the password, verified by the [`Verifier`](crate::verifier::Verifier);
//! 4. [`accept`]: the request's state and activation window at `now` ([`WindowRefusal`]
//!    otherwise).
//!
//! A [`CredentialFailure`] counts toward bans and updates the request's `lastRejection`; a
//! [`WindowRefusal`] is recorded as a `REJECTED` execution. Both carry the reason the request's
//! owner reads; the device only sees the [`Refusal`].

use std::fmt;

use crate::{ProvisioningSession, Refusal, Timestamp};

/// Why the credentials of a provisioning CONNECT did not match (PROTOCOL.md 2, 0x04 / 0x86).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialFailure {
    /// No provision request (or no provision user) for the client ID.
    NoRequest,
    /// The user name is not the request's provision username.
    UsernameMismatch,
    /// The password does not verify against the provision user's hash.
    WrongPassword,
}

impl CredentialFailure {
    /// The reason recorded for the request's owner.
    pub fn reason(self) -> &'static str {
        match self {
            CredentialFailure::NoRequest => "no provision request",
            CredentialFailure::UsernameMismatch => "user name does not match",
            CredentialFailure::WrongPassword => "wrong password",
        }
    }
}

impl From<CredentialFailure> for Refusal {
    fn from(_: CredentialFailure) -> Refusal {
        Refusal::BadCredentials
    }
}

/// Step 2: the presented user name must be the request's provision username (no user name at
/// all never matches).
pub fn match_username(
    presented: Option<&str>,
    provision_username: &str,
) -> Result<(), CredentialFailure> {
    if presented == Some(provision_username) {
        Ok(())
    } else {
        Err(CredentialFailure::UsernameMismatch)
    }
}

/// What step 4 needs of the matched provision request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvisionCandidate {
    /// The request's ID.
    pub request_id: String,
    /// The request's target account.
    pub target_account: String,
    /// The request's status name when it is closed at the decision's `now` (PROTOCOL.md 5),
    /// `None` while it is open.
    pub closed: Option<&'static str>,
    /// Start of the activation window.
    pub activates_on: Timestamp,
    /// End of the activation window (exclusive), if any.
    pub expires_on: Option<Timestamp>,
}

/// Why a CONNECT with the right credentials is refused (PROTOCOL.md 2, 0x05 / 0x87).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowRefusal {
    /// The request is closed; its status name.
    Closed(&'static str),
    /// `now < activatesOn`.
    NotYetActive,
    /// `expiresOn <= now`.
    Expired,
}

impl fmt::Display for WindowRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowRefusal::Closed(status) => write!(f, "the request is closed ({status})"),
            WindowRefusal::NotYetActive => {
                f.write_str("the activation window has not opened yet (activatesOn)")
            }
            WindowRefusal::Expired => f.write_str("the activation window has closed (expiresOn)"),
        }
    }
}

impl From<WindowRefusal> for Refusal {
    fn from(_: WindowRefusal) -> Refusal {
        Refusal::NotAuthorized
    }
}

/// A refusal with the right credentials, and the request to record it on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Why.
    pub why: WindowRefusal,
    /// The matched request (its `REJECTED` execution).
    pub request_id: String,
}

/// Step 4, after the password verified: the session when the request is open and `now` lies in
/// `[activatesOn, expiresOn)`. Closed is checked first (its reason says more).
pub fn accept(
    client_id: &str,
    candidate: ProvisionCandidate,
    now: Timestamp,
) -> Result<ProvisioningSession, Rejected> {
    let refused = if let Some(status) = candidate.closed {
        Some(WindowRefusal::Closed(status))
    } else if now < candidate.activates_on {
        Some(WindowRefusal::NotYetActive)
    } else if candidate.expires_on.is_some_and(|e| e <= now) {
        Some(WindowRefusal::Expired)
    } else {
        None
    };
    if let Some(why) = refused {
        return Err(Rejected {
            why,
            request_id: candidate.request_id,
        });
    }
    Ok(ProvisioningSession {
        client_id: client_id.to_string(),
        request_id: candidate.request_id,
        target_account: candidate.target_account,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn t(s: i64) -> Timestamp {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn candidate(closed: Option<&'static str>, from: i64, to: Option<i64>) -> ProvisionCandidate {
        ProvisionCandidate {
            request_id: "r-1".into(),
            target_account: "acme".into(),
            closed,
            activates_on: t(from),
            expires_on: to.map(t),
        }
    }

    #[test]
    fn user_name_must_be_the_provision_username() {
        for (presented, expected) in [
            (Some("fleet"), Ok(())),
            (Some("Fleet"), Err(CredentialFailure::UsernameMismatch)),
            (Some("fleet "), Err(CredentialFailure::UsernameMismatch)),
            (Some(""), Err(CredentialFailure::UsernameMismatch)),
            (None, Err(CredentialFailure::UsernameMismatch)),
        ] {
            assert_eq!(
                match_username(presented, "fleet"),
                expected,
                "{presented:?}"
            );
        }
    }

    #[test]
    fn window_and_state_decide_after_the_password() {
        use WindowRefusal::*;
        // (closed, activatesOn, expiresOn, now, expected)
        type Case = (
            Option<&'static str>,
            i64,
            Option<i64>,
            i64,
            Result<(), WindowRefusal>,
        );
        let cases: [Case; 9] = [
            (None, 0, None, 0, Ok(())),
            (None, 0, None, 10_000, Ok(())),
            (None, 0, Some(10), 9, Ok(())),
            // The window is [activatesOn, expiresOn).
            (None, 0, Some(10), 10, Err(Expired)),
            (None, 0, Some(10), 11, Err(Expired)),
            (None, 5, None, 4, Err(NotYetActive)),
            (None, 5, Some(10), 4, Err(NotYetActive)),
            // Closed wins over the window (its reason says more).
            (Some("COMPLETED"), 0, None, 1, Err(Closed("COMPLETED"))),
            (Some("FAILED"), 0, Some(10), 20, Err(Closed("FAILED"))),
        ];
        for (closed, from, to, now, expected) in cases {
            let got = accept("dev-1", candidate(closed, from, to), t(now))
                .map_err(|r| {
                    assert_eq!(r.request_id, "r-1");
                    r.why
                })
                .map(|s| {
                    assert_eq!(
                        s,
                        ProvisioningSession {
                            client_id: "dev-1".into(),
                            request_id: "r-1".into(),
                            target_account: "acme".into(),
                        }
                    );
                });
            assert_eq!(got, expected, "{closed:?} [{from}, {to:?}) at {now}");
        }
    }

    #[test]
    fn refusals_map_to_the_protocol_table_and_say_why() {
        for f in [
            CredentialFailure::NoRequest,
            CredentialFailure::UsernameMismatch,
            CredentialFailure::WrongPassword,
        ] {
            assert_eq!(Refusal::from(f), Refusal::BadCredentials);
        }
        for w in [
            WindowRefusal::Closed("COMPLETED"),
            WindowRefusal::NotYetActive,
            WindowRefusal::Expired,
        ] {
            assert_eq!(Refusal::from(w), Refusal::NotAuthorized);
        }
        assert_eq!(
            WindowRefusal::Closed("COMPLETED").to_string(),
            "the request is closed (COMPLETED)"
        );
        assert_eq!(CredentialFailure::WrongPassword.reason(), "wrong password");
    }
}
