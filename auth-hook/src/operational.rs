//! The operational CONNECT decision of PROTOCOL.md section 6.1, for both kinds of user:
//! - device users `CID@ACCOUNT`: credentials (keyed fast hash, inline), `enabled`,
//!   `broker:connect`, the user's reservation and the client ID's coupling;
//! - account users `NAME@ACCOUNT`: credentials (argon2 for a chosen password, which the driver
//!   verifies on its pool; keyed fast hash for a generated one, inline), `enabled`,
//!   `broker:connect`, and a client ID that is not a device of the account's registry.
//!
//! Deny by default: every path that does not end in a session refuses. The records come
//! through a [`DeviceDirectory`], read lazily in the order the checks need them, so a wrong
//! password costs one lookup: the broker's store snapshot, a Mosquitto plugin's in-memory
//! replica or a test table implement it alike.

use crate::credentials::{fast_verify, is_fast_hash};
use crate::{AccountSession, ConnectFacts, DeviceSession, Refusal, check_client_id};

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
    /// A disabled user is refused (0x05 / 0x87).
    pub enabled: bool,
}

impl std::fmt::Debug for DeviceUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is a secret too.
        f.debug_struct("DeviceUser")
            .field("account", &self.account)
            .field("permissions", &self.permissions)
            .field("reserved_for", &self.reserved_for)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// What the decision needs of an account user (an application).
#[derive(Clone, PartialEq, Eq)]
pub struct AccountUser {
    /// Owning account.
    pub account: String,
    /// argon2id PHC string of a chosen password, or keyed fast hash of a generated one.
    pub password_hash: String,
    /// PROTOCOL.md 6.1's permissions.
    pub permissions: Vec<String>,
    /// A disabled user is refused (0x05 / 0x87).
    pub enabled: bool,
}

impl std::fmt::Debug for AccountUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountUser")
            .field("account", &self.account)
            .field("permissions", &self.permissions)
            .field("enabled", &self.enabled)
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

/// Where the decision reads users, coupling rules and the registry. A read error refuses the
/// CONNECT as [`Refusal::ServerBusy`].
pub trait DeviceDirectory {
    /// Why a read failed.
    type Error;

    /// The device user named `username`, if any.
    fn device_user(&self, username: &str) -> Result<Option<DeviceUser>, Self::Error>;

    /// The account user named `username`, if any (usernames are unique across both kinds).
    fn account_user(&self, username: &str) -> Result<Option<AccountUser>, Self::Error>;

    /// The coupling rule of `client_id` in `account`; `None` when the account does not exist.
    fn coupling(&self, account: &str, client_id: &str)
    -> Result<Option<CouplingRule>, Self::Error>;

    /// Whether `client_id` is a device of `account`'s registry (an application may not take
    /// it over).
    fn registered_device(&self, account: &str, client_id: &str) -> Result<bool, Self::Error>;
}

/// An operational session, decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// A device user's session.
    Device(DeviceSession),
    /// An account user's session.
    Account(AccountSession),
}

impl Admitted {
    /// The session's identity for the topic decisions of `fleetgate-acl`, so that every door
    /// derives it the same way.
    pub fn acl_session(&self) -> fleetgate_acl::Session {
        match self {
            Admitted::Device(d) => fleetgate_acl::Session::Device {
                account: d.account.clone(),
                client_id: d.client_id.clone(),
            },
            Admitted::Account(a) => fleetgate_acl::Session::Account {
                account: a.account.clone(),
                client_id: a.client_id.clone(),
                permissions: fleetgate_acl::Permissions::from_names(
                    a.permissions.iter().map(String::as_str),
                ),
            },
        }
    }
}

/// The outcome of [`authenticate`]: decided, or waiting for the one thing that is not pure.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Every check passed.
    Admitted(Admitted),
    /// An account user with a chosen password: its driver verifies the password against
    /// `password_hash` (argon2, on its pool and cache), then calls [`PendingAccount::admit`];
    /// a wrong password is [`Refusal::BadCredentials`].
    VerifyPassword(PendingAccount),
}

/// An account user whose argon2 password is still to be verified.
#[derive(PartialEq, Eq)]
pub struct PendingAccount {
    user: AccountUser,
    username: String,
    client_id: String,
}

impl std::fmt::Debug for PendingAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAccount")
            .field("username", &self.username)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl PendingAccount {
    /// The user name presented.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The stored argon2 hash to verify the presented password against.
    pub fn password_hash(&self) -> &str {
        &self.user.password_hash
    }

    /// The rules after the password (which the caller verified).
    pub fn admit<D: DeviceDirectory>(self, directory: &D) -> Result<Admitted, Refusal> {
        admit_account(directory, self.user, &self.client_id, &self.username).map(Admitted::Account)
    }
}

/// Decides a CONNECT on the operational endpoint (PROTOCOL.md 6.1), except an argon2 password
/// ([`Step::VerifyPassword`]).
pub fn authenticate<D: DeviceDirectory>(
    directory: &D,
    facts: &ConnectFacts,
) -> Result<Step, Refusal> {
    check_client_id(&facts.client_id)?;
    let username = facts.username.as_deref().ok_or(Refusal::BadCredentials)?;
    let password = std::str::from_utf8(facts.password.as_deref().unwrap_or_default())
        .map_err(|_| Refusal::BadCredentials)?;
    match lookup(directory, username)? {
        User::Device(user) => {
            if !fast_verify(password, &user.password_hash) {
                return Err(Refusal::BadCredentials);
            }
            admit_device(directory, user, &facts.client_id, username)
                .map(|s| Step::Admitted(Admitted::Device(s)))
        }
        User::Account(user) if is_fast_hash(&user.password_hash) => {
            if !fast_verify(password, &user.password_hash) {
                return Err(Refusal::BadCredentials);
            }
            admit_account(directory, user, &facts.client_id, username)
                .map(|s| Step::Admitted(Admitted::Account(s)))
        }
        User::Account(user) => Ok(Step::VerifyPassword(PendingAccount {
            user,
            username: username.to_string(),
            client_id: facts.client_id.clone(),
        })),
    }
}

/// Every rule of [`authenticate`] but the password: for doors that ask about a client
/// authenticated earlier with no connection of their own (an HTTP topic check, a
/// connect/disconnect event), so that a user disabled or re-coupled since is refused there too.
pub fn identify<D: DeviceDirectory>(
    directory: &D,
    client_id: &str,
    username: &str,
) -> Result<Admitted, Refusal> {
    check_client_id(client_id)?;
    match lookup(directory, username)? {
        User::Device(user) => {
            admit_device(directory, user, client_id, username).map(Admitted::Device)
        }
        User::Account(user) => {
            admit_account(directory, user, client_id, username).map(Admitted::Account)
        }
    }
}

/// Whether `username` names a user that may connect at all (it exists, is enabled and holds
/// `broker:connect`), for doors that ask with a user name only (RabbitMQ's vhost and resource
/// checks). Client-ID rules are not applied: such a door has decided the CONNECT already.
pub fn may_connect_as<D: DeviceDirectory>(directory: &D, username: &str) -> Result<(), Refusal> {
    match lookup(directory, username)? {
        User::Device(user) => may_connect(user.enabled, &user.permissions),
        User::Account(user) => may_connect(user.enabled, &user.permissions),
    }
}

enum User {
    Device(DeviceUser),
    Account(AccountUser),
}

/// The user named `username`: a device user, else an account user, else bad credentials.
fn lookup<D: DeviceDirectory>(directory: &D, username: &str) -> Result<User, Refusal> {
    let busy = |_| Refusal::ServerBusy;
    if let Some(u) = directory.device_user(username).map_err(busy)? {
        return Ok(User::Device(u));
    }
    directory
        .account_user(username)
        .map_err(busy)?
        .map(User::Account)
        .ok_or(Refusal::BadCredentials)
}

fn may_connect(enabled: bool, permissions: &[String]) -> Result<(), Refusal> {
    let connect = permissions
        .iter()
        .any(|p| p == fleetgate_acl::PERMISSION_BROKER_CONNECT);
    if enabled && connect {
        Ok(())
    } else {
        Err(Refusal::NotAuthorized)
    }
}

/// `enabled`, `broker:connect`, the user's reservation and the client ID's coupling, in that
/// order.
fn admit_device<D: DeviceDirectory>(
    directory: &D,
    user: DeviceUser,
    client_id: &str,
    username: &str,
) -> Result<DeviceSession, Refusal> {
    may_connect(user.enabled, &user.permissions)?;
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

/// `enabled`, `broker:connect`, and a client ID that no device of the account's registry
/// holds (a device's client ID is never taken over by an application).
fn admit_account<D: DeviceDirectory>(
    directory: &D,
    user: AccountUser,
    client_id: &str,
    username: &str,
) -> Result<AccountSession, Refusal> {
    may_connect(user.enabled, &user.permissions)?;
    if directory
        .registered_device(&user.account, client_id)
        .map_err(|_| Refusal::ServerBusy)?
    {
        return Err(Refusal::NotAuthorized);
    }
    Ok(AccountSession {
        account: user.account,
        client_id: client_id.to_string(),
        username: username.to_string(),
        permissions: user.permissions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Protocol;
    use crate::credentials::{Argon2Params, fast_hash};
    use std::cell::Cell;
    use std::collections::HashMap;
    use std::net::SocketAddr;

    const PW: &str = "Gen3rated-Passw0rd!";

    /// An in-memory directory; counts reads so the tests pin the lazy order.
    #[derive(Default)]
    struct Table {
        users: HashMap<String, DeviceUser>,
        apps: HashMap<String, AccountUser>,
        devices: Vec<(String, String)>,
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

        fn account_user(&self, username: &str) -> Result<Option<AccountUser>, ()> {
            self.reads.set(self.reads.get() + 1);
            Ok(self.apps.get(username).cloned())
        }

        fn registered_device(&self, account: &str, client_id: &str) -> Result<bool, ()> {
            self.reads.set(self.reads.get() + 1);
            Ok(self
                .devices
                .iter()
                .any(|(a, c)| a == account && c == client_id))
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
            enabled: true,
        }
    }

    fn app(permissions: &[&str], password_hash: String) -> AccountUser {
        AccountUser {
            account: "acme".into(),
            password_hash,
            permissions: permissions.iter().map(ToString::to_string).collect(),
            enabled: true,
        }
    }

    /// The decision for a device user, which never needs the pool.
    fn authenticate_device(t: &Table, f: &ConnectFacts) -> Result<DeviceSession, Refusal> {
        match authenticate(t, f)? {
            Step::Admitted(Admitted::Device(s)) => Ok(s),
            other => panic!("not a device decision: {other:?}"),
        }
    }

    fn identify_device(
        t: &Table,
        client_id: &str,
        username: &str,
    ) -> Result<DeviceSession, Refusal> {
        match identify(t, client_id, username)? {
            Admitted::Device(s) => Ok(s),
            other => panic!("not a device: {other:?}"),
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
        let mut disabled = user(&["broker:connect"], None);
        disabled.enabled = false;
        t.users.insert("disabled@acme".into(), disabled);
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
            ("dev-1", Some("disabled@acme"), pw, Err(NotAuthorized)),
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

    const APP_PW: &str = "a chosen passphrase";

    /// acme's applications: `dash` (argon2, data:read), `gen` (generated password, fast hash),
    /// `off` (disabled), `mute` (no broker:connect); `dev-1` is a registry device of acme.
    fn apps() -> Table {
        let mut t = table();
        let argon = Argon2Params::cheap_for_tests().hash(APP_PW).unwrap();
        t.apps.insert(
            "dash@acme".into(),
            app(&["broker:connect", "data:read"], argon.clone()),
        );
        t.apps
            .insert("gen@acme".into(), app(&["broker:connect"], fast_hash(PW)));
        let mut off = app(&["broker:connect"], fast_hash(PW));
        off.enabled = false;
        t.apps.insert("off@acme".into(), off);
        t.apps
            .insert("mute@acme".into(), app(&["data:read"], fast_hash(PW)));
        t.devices.push(("acme".into(), "dev-1".into()));
        t
    }

    fn account_session(client_id: &str, username: &str, permissions: &[&str]) -> Admitted {
        Admitted::Account(AccountSession {
            account: "acme".into(),
            client_id: client_id.into(),
            username: username.into(),
            permissions: permissions.iter().map(ToString::to_string).collect(),
        })
    }

    #[test]
    fn account_user_connect_decisions() {
        use Refusal::*;
        let t = apps();
        let pw = Some(PW.as_bytes());
        // A generated password (keyed fast hash) is decided inline.
        assert_eq!(
            authenticate(&t, &facts("app-1", Some("gen@acme"), pw)),
            Ok(Step::Admitted(account_session(
                "app-1",
                "gen@acme",
                &["broker:connect"]
            )))
        );
        for (client_id, username, password, want) in [
            (
                "app-1",
                "gen@acme",
                Some(b"wrong".as_slice()),
                BadCredentials,
            ),
            ("app-1", "gen@acme", None, BadCredentials),
            ("app-1", "nobody@acme", pw, BadCredentials),
            ("app-1", "off@acme", pw, NotAuthorized),
            ("app-1", "mute@acme", pw, NotAuthorized),
            // A registry device's client ID is never taken over by an application.
            ("dev-1", "gen@acme", pw, NotAuthorized),
            ("a/b", "gen@acme", pw, InvalidClientId),
        ] {
            assert_eq!(
                authenticate(&t, &facts(client_id, Some(username), password)),
                Err(want),
                "{client_id} {username}"
            );
        }
        // The same client ID in another account's registry is no obstacle.
        let mut other = apps();
        other.devices = vec![("other".into(), "dev-1".into())];
        assert!(authenticate(&other, &facts("dev-1", Some("gen@acme"), pw)).is_ok());
    }

    #[test]
    fn a_chosen_password_is_left_to_the_pool_and_the_rules_follow() {
        let t = apps();
        // Right or wrong, the password is not judged here: argon2 is the driver's, on its pool.
        let Ok(Step::VerifyPassword(pending)) =
            authenticate(&t, &facts("app-1", Some("dash@acme"), Some(b"whatever")))
        else {
            panic!("an argon2 password must be verified by the driver");
        };
        assert_eq!(pending.username(), "dash@acme");
        assert!(crate::credentials::argon2_verify(
            APP_PW.as_bytes(),
            pending.password_hash()
        ));
        assert!(!format!("{pending:?}").contains(pending.password_hash()));
        assert_eq!(
            pending.admit(&t),
            Ok(account_session(
                "app-1",
                "dash@acme",
                &["broker:connect", "data:read"]
            ))
        );
        let Ok(Step::VerifyPassword(on_device_id)) =
            authenticate(&t, &facts("dev-1", Some("dash@acme"), Some(b"x")))
        else {
            panic!("pending");
        };
        assert_eq!(on_device_id.admit(&t), Err(Refusal::NotAuthorized));
        // identify applies the same rules without the password.
        assert!(identify(&t, "app-1", "dash@acme").is_ok());
        assert_eq!(
            identify(&t, "dev-1", "dash@acme"),
            Err(Refusal::NotAuthorized)
        );
        assert_eq!(
            identify(&t, "app-1", "off@acme"),
            Err(Refusal::NotAuthorized)
        );
    }

    #[test]
    fn account_user_debug_hides_the_hash() {
        let a = app(&["broker:connect"], fast_hash(PW));
        assert!(!format!("{a:?}").contains(&a.password_hash));
    }
}
