//! Moves of enrolled devices (PROTOCOL.md 8.2, API.md "Moves"): the move record with its
//! status and log, and the writes that retire the source identity once the move is done.
//!
//! A move is keyed by source account, client ID and a time-ordered id, so a device's moves list
//! in order and its latest is its current one. The secrets a move sends the device (the
//! provision password) are never stored: they live in the process that drives the move.

use serde::{Deserialize, Serialize};

use crate::engine::{Table, Tx, decode, key};
use crate::ops::Op;
use crate::read::Reader;
use crate::records::{
    ConnectionStatus, Device, DeviceConnection, DeviceStatus, DeviceUser, LogLevel, LogLine,
    Timestamp,
};
use crate::{RecordKind, StoreError};

/// Where a device moves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum MoveTarget {
    /// Another account of this instance, through the provision request created for it.
    Account {
        /// The target account.
        account: String,
        /// The open provision request the device provisions against.
        provision_request_id: String,
    },
    /// Another Fleetgate instance, where a provision request for the device exists.
    Instance {
        /// Its provisioning endpoint as devices reach it.
        provisioning_url: String,
        /// Its provisioning account (`PA`).
        provisioning_account: String,
        /// The provision username there (the password is never stored).
        username: String,
    },
}

/// A move's status (API.md "Moves").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MoveStatus {
    /// Created; waiting for the device to be ready for the CONF-V1 PUT.
    Pending,
    /// The device acknowledged the PUT; waiting for it to arrive at the target.
    Sent,
    /// The device is at the target; the source identity is retired.
    Completed,
    /// The device did not take the move; it stays where it was.
    Failed,
}

impl MoveStatus {
    /// `PENDING`, `SENT`, `COMPLETED` or `FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            MoveStatus::Pending => "PENDING",
            MoveStatus::Sent => "SENT",
            MoveStatus::Completed => "COMPLETED",
            MoveStatus::Failed => "FAILED",
        }
    }

    /// Whether the move has ended.
    pub fn is_final(self) -> bool {
        matches!(self, MoveStatus::Completed | MoveStatus::Failed)
    }
}

/// One move of a device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Move {
    /// Opaque, time-ordered id.
    pub id: String,
    /// The source account.
    pub account: String,
    /// The device's client ID.
    pub client_id: String,
    /// Where it goes.
    pub target: MoveTarget,
    /// Where it is.
    pub status: MoveStatus,
    /// Creation time.
    pub created_on: Timestamp,
    /// Last change.
    pub modified_on: Timestamp,
    /// Every step, in order; never a secret.
    pub log: Vec<LogLine>,
}

impl Move {
    /// `movedTo` of the source registry entry once done: the target account's name, or the
    /// other instance's provisioning URL.
    pub fn moved_to(&self) -> &str {
        match &self.target {
            MoveTarget::Account { account, .. } => account,
            MoveTarget::Instance {
                provisioning_url, ..
            } => provisioning_url,
        }
    }
}

fn move_key(account: &str, client_id: &str, id: &str) -> Vec<u8> {
    key(&[account, client_id, id])
}

/// Records a new move, PENDING, with its first log line. 404 when the source has no such
/// registry entry; 409 when the device is already MOVED or has a move that has not ended.
pub fn create_move(
    account: String,
    client_id: String,
    target: MoveTarget,
    now: Timestamp,
) -> Op<Move> {
    Box::new(move |tx| {
        let device: Device = tx
            .get_keyed(Table::Devices, &key(&[&account, &client_id]))?
            .ok_or(StoreError::NotFound(RecordKind::Device))?;
        if device.status == DeviceStatus::Moved {
            return Err(StoreError::conflict(
                "clientId",
                "the device has moved already",
            ));
        }
        if let Some(last) = latest(tx, &account, &client_id)?
            && !last.status.is_final()
        {
            return Err(StoreError::conflict(
                "clientId",
                "the device has a move in progress",
            ));
        }
        let m = Move {
            id: crate::ids::new_id(),
            account,
            client_id,
            log: vec![LogLine {
                at: now,
                level: LogLevel::Info,
                message: match &target {
                    MoveTarget::Account {
                        account,
                        provision_request_id,
                    } => format!(
                        "move to account {account} created (provision request {provision_request_id}); waiting for the device"
                    ),
                    MoveTarget::Instance {
                        provisioning_url, ..
                    } => format!(
                        "move to instance {provisioning_url} created; waiting for the device"
                    ),
                },
            }],
            target,
            status: MoveStatus::Pending,
            created_on: now,
            modified_on: now,
        };
        tx.put(Table::Moves, move_key(&m.account, &m.client_id, &m.id), &m);
        Ok(m)
    })
}

/// The device's latest move (ids are time-ordered, so the last key).
fn latest(tx: &Tx<'_, '_>, account: &str, client_id: &str) -> Result<Option<Move>, StoreError> {
    let keys = tx.keys_with_prefix(Table::Moves, &key(&[account, client_id, ""]))?;
    match keys.last() {
        Some(k) => tx.get(Table::Moves, k),
        None => Ok(None),
    }
}

/// Moves move `id` of the device to `status` with a log line (an ended move does not change).
/// Returns the move as stored.
pub fn advance_move(
    account: String,
    client_id: String,
    id: String,
    status: MoveStatus,
    level: LogLevel,
    message: String,
    now: Timestamp,
) -> Op<Move> {
    Box::new(move |tx| {
        let k = move_key(&account, &client_id, &id);
        let mut m: Move = tx
            .get(Table::Moves, &k)?
            .ok_or(StoreError::NotFound(RecordKind::Device))?;
        if m.status.is_final() {
            return Ok(m);
        }
        m.status = status;
        m.modified_on = now;
        m.log.push(LogLine {
            at: now,
            level,
            message,
        });
        tx.put(Table::Moves, k, &m);
        Ok(m)
    })
}

/// Completes move `id`: the source registry entry ends MOVED with `movedTo`; the source device
/// user is deleted (a move within the instance, `delete_user`) or disabled (a move to another
/// instance), and the device connection goes with a deleted user. Returns the usernames whose
/// sessions the caller ends.
pub fn complete_move(
    account: String,
    client_id: String,
    id: String,
    delete_user: bool,
    now: Timestamp,
) -> Op<Vec<String>> {
    Box::new(move |tx| {
        let k = move_key(&account, &client_id, &id);
        let mut m: Move = tx
            .get(Table::Moves, &k)?
            .ok_or(StoreError::NotFound(RecordKind::Device))?;
        if m.status.is_final() {
            return Ok(Vec::new());
        }
        let dk = key(&[&account, &client_id]);
        let mut device: Device = tx
            .get_keyed(Table::Devices, &dk)?
            .ok_or(StoreError::NotFound(RecordKind::Device))?;
        device.status = DeviceStatus::Moved;
        device.moved_to = Some(m.moved_to().to_string());
        tx.put(Table::Devices, dk.clone(), &device);
        let username = format!("{client_id}@{account}");
        let mut retired = Vec::new();
        if let Some(mut user) =
            tx.get_keyed::<DeviceUser>(Table::DeviceUsers, username.as_bytes())?
        {
            if delete_user {
                tx.delete(Table::DeviceUsers, username.as_bytes().to_vec());
                tx.delete(Table::UsersByAccount, key(&[&account, &username]));
                tx.delete(Table::DeviceConnections, dk);
            } else {
                user.enabled = false;
                user.modified_on = now;
                tx.put(Table::DeviceUsers, username.as_bytes().to_vec(), &user);
                if let Some(mut c) =
                    tx.get_keyed::<DeviceConnection>(Table::DeviceConnections, &dk)?
                {
                    c.status = ConnectionStatus::Disconnected;
                    tx.put(Table::DeviceConnections, dk, &c);
                }
            }
            retired.push(username);
        }
        m.status = MoveStatus::Completed;
        m.modified_on = now;
        m.log.push(LogLine {
            at: now,
            level: LogLevel::Info,
            message: format!(
                "completed: the device is at {}; its source user was {}",
                m.moved_to(),
                if delete_user { "deleted" } else { "disabled" }
            ),
        });
        tx.put(Table::Moves, k, &m);
        Ok(retired)
    })
}

impl Reader {
    /// The latest move of a device, if it ever had one.
    pub fn latest_move(&self, account: &str, client_id: &str) -> Result<Option<Move>, StoreError> {
        let mut last = None;
        self.snap.scan(
            Table::Moves,
            &key(&[account, client_id, ""]),
            b"",
            |_, v| {
                last = Some(decode(v)?);
                Ok(true)
            },
        )?;
        Ok(last)
    }
}

/// After a restart: every move that had not ended is FAILED, as the process that held its
/// provision password is gone; a PENDING move's provision request in the target account is
/// deleted with it (a SENT device may be enrolling there, so that one stays). Returns how many
/// moves were failed.
pub fn fail_interrupted_moves(now: Timestamp) -> Op<usize> {
    Box::new(move |tx| {
        let mut failed = 0;
        for k in tx.keys_with_prefix(Table::Moves, b"")? {
            let Some(mut m) = tx.get::<Move>(Table::Moves, &k)? else {
                continue;
            };
            if m.status.is_final() {
                continue;
            }
            if let (
                MoveStatus::Pending,
                MoveTarget::Account {
                    account,
                    provision_request_id,
                },
            ) = (m.status, &m.target)
                && tx
                    .get_raw(Table::Requests, provision_request_id.as_bytes())?
                    .is_some()
            {
                crate::ops::delete_request(account.clone(), provision_request_id.clone(), true)(
                    tx,
                )?;
            }
            m.log.push(LogLine {
                at: now,
                level: LogLevel::Error,
                message: format!(
                    "Fleetgate restarted while the move was {}: it is not resumed, and the device stays where it is",
                    m.status.as_str()
                ),
            });
            m.status = MoveStatus::Failed;
            m.modified_on = now;
            tx.put(Table::Moves, k, &m);
            failed += 1;
        }
        Ok(failed)
    })
}
