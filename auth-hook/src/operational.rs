//! The operational CONNECT decision of PROTOCOL.md section 6.1 for device users: credentials
//! (keyed fast hash, inline), `broker:connect`, the user's reservation and the client ID's
//! coupling. Deny by default: every path that does not end in a [`DeviceSession`] refuses.
//!
//! The records come through a [`DeviceDirectory`], read lazily in the order the checks need
//! them, so a wrong password costs one lookup: the broker's store snapshot, a Mosquitto
//! plugin's in-memory replica or a test table implement it alike.

use crate::credentials::fast_verify;
use crate::{ConnectFacts, DeviceSession, Refusal, check_client_id};

/// What the decision needs of a device user.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceUser {
    /// Owning account.
    pub account: String,
    /// Keyed fast hash of the generated password.
    pub password_hash: String,
    /// e.g. `broker:connect`, `vpn:connect`.
    pub permissions: Vec<String>,
    /// The client ID this user is reserved for, if any.
    pub reserved_for: Option<String>,
}

impl std::fmt::Debug for DeviceUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is a secret too.
        f.debug_struct("DeviceUser")
            .field("account", &self.account)
            .field("permissions", &self.permissions)
            .field("reserved_for", &self.reserved_for)
            .finish_non_exhaustive()
    }
}

/// How a client ID is tied to the users of its account, with `INHERITED` already resolved
/// against the account's default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CouplingRule {
    /// Any user of the account not reserved to another device.
    Loose,
    /// Only the client ID's reserved user (none reserved: nobody).
    Strict {
        /// The reserved user, if any.
        reserved_user: Option<String>,
    },
}

/// Where the decision reads device users and coupling rules. A read error refuses the CONNECT
/// as [`Refusal::ServerBusy`].
pub trait DeviceDirectory {
    /// Why a read failed.
    type Error;

    /// The device user named `username`, if any.
    fn device_user(&self, username: &str) -> Result<Option<DeviceUser>, Self::Error>;

    /// The coupling rule of `client_id` in `account`; `None` when the account does not exist.
    fn coupling(&self, account: &str, client_id: &str)
    -> Result<Option<CouplingRule>, Self::Error>;
}

/// Decides a CONNECT of a device user (PROTOCOL.md 6.1).
pub fn authenticate_device<D: DeviceDirectory>(
    directory: &D,
    facts: &ConnectFacts,
) -> Result<DeviceSession, Refusal> {
    check_client_id(&facts.client_id)?;
    let username = facts.username.as_deref().ok_or(Refusal::BadCredentials)?;
    let user = lookup(directory, username)?;
    let password = std::str::from_utf8(facts.password.as_deref().unwrap_or_default())
        .map_err(|_| Refusal::BadCredentials)?;
    if !fast_verify(password, &user.password_hash) {
        return Err(Refusal::BadCredentials);
    }
    admit(directory, user, &facts.client_id, username)
}

/// The rules of [`authenticate_device`] without the password: for doors that ask about a
/// client authenticated earlier with no connection of their own (an HTTP topic check, a
/// connect/disconnect event), so that a user disabled or re-coupled since is refused there too.
pub fn identify_device<D: DeviceDirectory>(
    directory: &D,
    client_id: &str,
    username: &str,
) -> Result<DeviceSession, Refusal> {
    check_client_id(client_id)?;
    let user = lookup(directory, username)?;
    admit(directory, user, client_id, username)
}

fn lookup<D: DeviceDirectory>(directory: &D, username: &str) -> Result<DeviceUser, Refusal> {
    directory
        .device_user(username)
        .map_err(|_| Refusal::ServerBusy)?
        .ok_or(Refusal::BadCredentials)
}

/// `broker:connect`, the user's reservation and the client ID's coupling, in that order.
fn admit<D: DeviceDirectory>(
    directory: &D,
    user: DeviceUser,
    client_id: &str,
    username: &str,
) -> Result<DeviceSession, Refusal> {
    if !user
        .permissions
        .iter()
        .any(|p| p == fleetgate_acl::PERMISSION_BROKER_CONNECT)
    {
        return Err(Refusal::NotAuthorized);
    }
    if user.reserved_for.as_deref().is_some_and(|c| c != client_id) {
        return Err(Refusal::NotAuthorized);
    }
    let rule = directory
        .coupling(&user.account, client_id)
        .map_err(|_| Refusal::ServerBusy)?
        .ok_or(Refusal::NotAuthorized)?;
    if let CouplingRule::Strict { reserved_user } = rule
        && reserved_user.as_deref() != Some(username)
    {
        return Err(Refusal::NotAuthorized);
    }
    Ok(DeviceSession {
        account: user.account,
        client_id: client_id.to_string(),
        username: username.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Protocol;
    use crate::credentials::fast_hash;
    use std::cell::Cell;
    use std::collections::HashMap;
    use std::net::SocketAddr;

    const PW: &str = "Gen3rated-Passw0rd!";

    /// An in-memory directory; counts reads so the tests pin the lazy order.
    #[derive(Default)]
    struct Table {
        users: HashMap<String, DeviceUser>,
        rules: HashMap<(String, String), CouplingRule>,
        accounts: Vec<String>,
        broken: bool,
        reads: Cell<usize>,
    }

    impl DeviceDirectory for Table {
        type Error = ();

        fn device_user(&self, username: &str) -> Result<Option<DeviceUser>, ()> {
            self.reads.set(self.reads.get() + 1);
            if self.broken {
                return Err(());
            }
            Ok(self.users.get(username).cloned())
        }

        fn coupling(&self, account: &str, client_id: &str) -> Result<Option<CouplingRule>, ()> {
            self.reads.set(self.reads.get() + 1);
            if !self.accounts.iter().any(|a| a == account) {
                return Ok(None);
            }
            Ok(Some(
                self.rules
                    .get(&(account.to_string(), client_id.to_string()))
                    .cloned()
                    .unwrap_or(CouplingRule::Loose),
            ))
        }
    }

    fn user(permissions: &[&str], reserved_for: Option<&str>) -> DeviceUser {
        DeviceUser {
            account: "acme".into(),
            password_hash: fast_hash(PW),
            permissions: permissions.iter().map(ToString::to_string).collect(),
            reserved_for: reserved_for.map(Into::into),
        }
    }

    fn table() -> Table {
        let mut t = Table {
            accounts: vec!["acme".into()],
            ..Table::default()
        };
        t.users
            .insert("dev-1@acme".into(), user(&["broker:connect"], None));
        t.users.insert(
            "reserved@acme".into(),
            user(&["broker:connect"], Some("dev-1")),
        );
        t.users
            .insert("vpn-only@acme".into(), user(&["vpn:connect"], None));
        t.users.insert("nothing@acme".into(), user(&[], None));
        let mut orphan = user(&["broker:connect"], None);
        orphan.account = "gone".into();
        t.users.insert("orphan@gone".into(), orphan);
        t.rules.insert(
            ("acme".into(), "strict-1".into()),
            CouplingRule::Strict {
                reserved_user: Some("dev-1@acme".into()),
            },
        );
        t.rules.insert(
            ("acme".into(), "strict-none".into()),
            CouplingRule::Strict {
                reserved_user: None,
            },
        );
        t
    }

    fn facts(client_id: &str, username: Option<&str>, password: Option<&[u8]>) -> ConnectFacts {
        ConnectFacts {
            client_id: client_id.into(),
            username: username.map(Into::into),
            password: password.map(<[u8]>::to_vec),
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            protocol: Protocol::V311,
        }
    }

    #[test]
    fn device_connect_decisions() {
        use Refusal::*;
        let pw = Some(PW.as_bytes());
        // (client ID, user name, password, expected account or refusal)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a [u8]>,
            Result<&'a str, Refusal>,
        );
        let cases: &[Case<'_>] = &[
            ("dev-1", Some("dev-1@acme"), pw, Ok("acme")),
            // Loose: any client ID of the account may use an unreserved user.
            ("dev-2", Some("dev-1@acme"), pw, Ok("acme")),
            ("dev-1", Some("reserved@acme"), pw, Ok("acme")),
            ("strict-1", Some("dev-1@acme"), pw, Ok("acme")),
            // Client ID first, before any credential.
            ("", Some("dev-1@acme"), pw, Err(InvalidClientId)),
            ("a/b", Some("dev-1@acme"), pw, Err(InvalidClientId)),
            ("#", None, None, Err(InvalidClientId)),
            // Credentials: deny by default.
            ("dev-1", None, pw, Err(BadCredentials)),
            ("dev-1", Some("dev-1@acme"), None, Err(BadCredentials)),
            ("dev-1", Some("dev-1@acme"), Some(b""), Err(BadCredentials)),
            (
                "dev-1",
                Some("dev-1@acme"),
                Some(b"wrong"),
                Err(BadCredentials),
            ),
            (
                "dev-1",
                Some("dev-1@acme"),
                Some(&[0xff, 0xfe]),
                Err(BadCredentials),
            ),
            ("dev-1", Some("nobody@acme"), pw, Err(BadCredentials)),
            // Right credentials, refused by a rule.
            ("dev-1", Some("vpn-only@acme"), pw, Err(NotAuthorized)),
            ("dev-1", Some("nothing@acme"), pw, Err(NotAuthorized)),
            ("dev-2", Some("reserved@acme"), pw, Err(NotAuthorized)),
            ("strict-1", Some("reserved@acme"), pw, Err(NotAuthorized)),
            ("strict-none", Some("dev-1@acme"), pw, Err(NotAuthorized)),
            ("dev-1", Some("orphan@gone"), pw, Err(NotAuthorized)),
        ];
        let t = table();
        for (client_id, username, password, expected) in cases {
            let got = authenticate_device(&t, &facts(client_id, *username, *password));
            let want = expected.map(|account| DeviceSession {
                account: account.into(),
                client_id: (*client_id).into(),
                username: username.unwrap().into(),
            });
            assert_eq!(got, want, "{client_id} {username:?}");
        }
    }

    #[test]
    fn identify_applies_every_rule_but_the_password() {
        let t = table();
        for (client_id, username) in [
            ("dev-1", "dev-1@acme"),
            ("dev-2", "reserved@acme"),
            ("strict-none", "dev-1@acme"),
            ("dev-1", "vpn-only@acme"),
            ("dev-1", "nobody@acme"),
            ("a/b", "dev-1@acme"),
        ] {
            assert_eq!(
                identify_device(&t, client_id, username),
                authenticate_device(&t, &facts(client_id, Some(username), Some(PW.as_bytes()))),
                "{client_id} {username}"
            );
        }
        assert!(identify_device(&t, "dev-1", "dev-1@acme").is_ok());
    }

    #[test]
    fn reads_are_lazy_and_a_broken_directory_is_busy() {
        let t = table();
        let _ = authenticate_device(&t, &facts("dev-1", Some("dev-1@acme"), Some(b"x")));
        assert_eq!(t.reads.get(), 1, "a wrong password reads the user only");
        t.reads.set(0);
        let _ = authenticate_device(&t, &facts("dev-1", Some("dev-1@acme"), Some(PW.as_bytes())));
        assert_eq!(t.reads.get(), 2);
        let broken = Table {
            broken: true,
            ..table()
        };
        assert_eq!(
            authenticate_device(&broken, &facts("dev-1", Some("dev-1@acme"), Some(b"x"))),
            Err(Refusal::ServerBusy)
        );
    }

    #[test]
    fn debug_hides_the_password_hash() {
        let u = user(&["broker:connect"], None);
        assert!(!format!("{u:?}").contains(&u.password_hash));
    }
}
