//! Account users (API.md "Account users", PROTOCOL.md 6.1) and the changes that apply to both
//! kinds of operational user.
//!
//! Usernames are unique in the instance across device users (`CID@ACCOUNT`) and account users
//! (`NAME@ACCOUNT`). The rule is checked here, inside the write, from both sides: creating an
//! account user, and creating a provision request or writing a device identity
//! ([`super::create_requests`], [`super::begin_exchange`]).

use super::{Op, not_found, target_account};
use crate::engine::{Table, Tx, key};
use crate::records::*;
use crate::{RecordKind, StoreError};

/// A validated account user to create; the password is already hashed (argon2 for a chosen
/// one, keyed fast hash for a generated one: hashing never runs in the writer).
#[derive(Clone)]
pub struct NewAccountUser {
    /// `NAME`.
    pub name: String,
    /// The password's hash.
    pub password_hash: String,
    /// Known permissions.
    pub permissions: Vec<String>,
}

impl std::fmt::Debug for NewAccountUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccountUser")
            .field("name", &self.name)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

/// Creates an account user `NAME@ACCOUNT`. 409 when the username is taken (by a device user or
/// an account user), or when `NAME` is a client ID of the account that provisioning would turn
/// into the same username (an open request, or a registry entry).
pub fn create_account_user(
    account: String,
    user: NewAccountUser,
    now: Timestamp,
) -> Op<AccountUser> {
    Box::new(move |tx| {
        target_account(tx, &account)?;
        let username = format!("{}@{account}", user.name);
        let taken = || StoreError::conflict("name", format!("the username {username} is taken"));
        if tx
            .get_raw(Table::DeviceUsers, username.as_bytes())?
            .is_some()
            || tx
                .get_raw(Table::AccountUsers, username.as_bytes())?
                .is_some()
        {
            return Err(taken());
        }
        if tx
            .get_raw(Table::Devices, &key(&[&account, &user.name]))?
            .is_some()
            || open_request_in(tx, &account, &user.name)?
        {
            return Err(StoreError::conflict(
                "name",
                format!(
                    "{} is a client ID of this account's devices, whose username would be {username}",
                    user.name
                ),
            ));
        }
        let created = AccountUser {
            username,
            name: user.name,
            account,
            password_hash: user.password_hash,
            permissions: user.permissions,
            enabled: true,
            created_on: now,
            modified_on: now,
        };
        put_account_user(tx, &created);
        Ok(created)
    })
}

/// Whether `client_id` has an open provision request in `account`.
fn open_request_in(tx: &Tx<'_, '_>, account: &str, client_id: &str) -> Result<bool, StoreError> {
    let Some(id) = tx.get_raw(Table::OpenRequestByClient, client_id.as_bytes())? else {
        return Ok(false);
    };
    let request = tx.get_keyed::<ProvisionRequest>(Table::Requests, &id)?;
    Ok(request.is_some_and(|r| r.account == account))
}

fn put_account_user(tx: &mut Tx<'_, '_>, user: &AccountUser) {
    tx.put(Table::AccountUsers, user.username.as_bytes().to_vec(), user);
    tx.put_index(
        Table::AccountUsersByAccount,
        key(&[&user.account, &user.username]),
    );
}

/// An operational user of either kind, as stored.
#[derive(Clone, Debug, PartialEq)]
pub enum StoredUser {
    /// Created by provisioning (`CID@ACCOUNT`).
    Device(DeviceUser),
    /// Created with the API (`NAME@ACCOUNT`).
    Account(AccountUser),
}

impl StoredUser {
    /// Whether the user may open a session: enabled, with `broker:connect`.
    pub fn may_connect(&self) -> bool {
        let (enabled, permissions) = match self {
            StoredUser::Device(u) => (u.enabled, &u.permissions),
            StoredUser::Account(u) => (u.enabled, &u.permissions),
        };
        enabled && permissions.iter().any(|p| p == PERMISSION_BROKER_CONNECT)
    }

    /// The permissions.
    pub fn permissions(&self) -> &[String] {
        match self {
            StoredUser::Device(u) => &u.permissions,
            StoredUser::Account(u) => &u.permissions,
        }
    }
}

/// A validated change of a user; `None` leaves a field as it is. A password arrives hashed.
#[derive(Clone, Default)]
pub struct UserPatch {
    /// New permissions (account users only).
    pub permissions: Option<Vec<String>>,
    /// Hash of the new chosen password (account users only).
    pub password_hash: Option<String>,
    /// Enable or disable (both kinds).
    pub enabled: Option<bool>,
}

impl std::fmt::Debug for UserPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPatch")
            .field("permissions", &self.permissions)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// What [`update_user`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct UserChange {
    /// The user as now stored.
    pub user: StoredUser,
    /// Whether its open sessions must end: it can no longer connect, or it lost a permission
    /// its sessions were admitted with (their ACL is decided at CONNECT).
    pub revoke: bool,
}

/// Changes a user of `account`. A device user takes only `enabled` (422 otherwise: its
/// permissions and password are provisioning's).
pub fn update_user(
    account: String,
    username: String,
    patch: UserPatch,
    now: Timestamp,
) -> Op<UserChange> {
    Box::new(move |tx| {
        let before = user_in(tx, &account, &username)?;
        let after = match before.clone() {
            StoredUser::Device(mut u) => {
                if patch.permissions.is_some() || patch.password_hash.is_some() {
                    return Err(StoreError::Invalid(vec![crate::FieldError::new(
                        if patch.permissions.is_some() {
                            "permissions"
                        } else {
                            "password"
                        },
                        "only enabled can be changed on a device user",
                    )]));
                }
                if let Some(e) = patch.enabled {
                    u.enabled = e;
                }
                u.modified_on = now;
                tx.put(Table::DeviceUsers, u.username.as_bytes().to_vec(), &u);
                StoredUser::Device(u)
            }
            StoredUser::Account(mut u) => {
                if let Some(p) = patch.permissions {
                    u.permissions = p;
                }
                if let Some(h) = patch.password_hash {
                    u.password_hash = h;
                }
                if let Some(e) = patch.enabled {
                    u.enabled = e;
                }
                u.modified_on = now;
                put_account_user(tx, &u);
                StoredUser::Account(u)
            }
        };
        let lost_permission = before
            .permissions()
            .iter()
            .any(|p| !after.permissions().contains(p));
        let revoke = before.may_connect() && (!after.may_connect() || lost_permission);
        Ok(UserChange {
            user: after,
            revoke,
        })
    })
}

/// Deletes an account user. A device user goes with its device (409 here).
pub fn delete_account_user(account: String, username: String) -> Op<()> {
    Box::new(move |tx| match user_in(tx, &account, &username)? {
        StoredUser::Device(_) => Err(StoreError::conflict(
            "username",
            "a device user goes with its device: delete the device",
        )),
        StoredUser::Account(u) => {
            tx.delete(Table::AccountUsers, u.username.as_bytes().to_vec());
            tx.delete(
                Table::AccountUsersByAccount,
                key(&[&u.account, &u.username]),
            );
            Ok(())
        }
    })
}

/// The user `username` of `account`, of either kind; 404 otherwise.
fn user_in(tx: &Tx<'_, '_>, account: &str, username: &str) -> Result<StoredUser, StoreError> {
    if let Some(u) = tx.get_keyed::<DeviceUser>(Table::DeviceUsers, username.as_bytes())? {
        return (u.account == account)
            .then_some(StoredUser::Device(u))
            .ok_or_else(|| not_found(RecordKind::User));
    }
    tx.get::<AccountUser>(Table::AccountUsers, username.as_bytes())?
        .filter(|u| u.account == account)
        .map(StoredUser::Account)
        .ok_or_else(|| not_found(RecordKind::User))
}
