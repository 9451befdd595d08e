//! The Device Registry (API.md "Devices", PROTOCOL.md 6.3): entries created before
//! provisioning, deletion with the device's user and connection, the facts of an operational
//! CONNECT (and the provisioning execution's `operationalConnectedOn`), and BIRTH facts.

use super::{Op, not_found, target_account};
use crate::engine::{Table, key};
use crate::records::*;
use crate::validate::DeviceSpec;
use crate::{RecordKind, StoreError};

/// Creates a registry entry before provisioning (provisioning fills in the rest). 409 when the
/// client ID has one, or when its device username `CID@ACCOUNT` is an account user's.
pub fn create_device(account: String, spec: DeviceSpec) -> Op<Device> {
    Box::new(move |tx| {
        target_account(tx, &account)?;
        let ck = key(&[&account, &spec.client_id]);
        if tx.get_raw(Table::Devices, &ck)?.is_some() {
            return Err(StoreError::conflict(
                "clientId",
                "the registry has a device with this client ID",
            ));
        }
        super::check_not_account_user(tx, &account, &spec.client_id)?;
        let device = Device {
            display_name: spec.display_name,
            ..Device::new(account, spec.client_id)
        };
        tx.put(Table::Devices, ck, &device);
        Ok(device)
    })
}

/// Deletes a registry entry with its device user (`CID@ACCOUNT`) and its device connection.
/// 409 while CONNECTED unless `force`. Returns the usernames deleted, whose sessions the
/// caller ends.
pub fn delete_device(account: String, client_id: String, force: bool) -> Op<Vec<String>> {
    Box::new(move |tx| {
        let ck = key(&[&account, &client_id]);
        if tx.get_raw(Table::Devices, &ck)?.is_none() {
            return Err(not_found(RecordKind::Device));
        }
        let connection: Option<DeviceConnection> = tx.get_keyed(Table::DeviceConnections, &ck)?;
        if connection
            .as_ref()
            .is_some_and(|c| c.status == ConnectionStatus::Connected)
            && !force
        {
            return Err(StoreError::conflict(
                "connection",
                "the device is CONNECTED; use force=true to delete it and disconnect it",
            ));
        }
        let mut deleted = Vec::new();
        let own = format!("{client_id}@{account}");
        let reserved = connection.and_then(|c| c.reserved_user);
        for username in std::iter::once(own).chain(reserved) {
            let user: Option<DeviceUser> = tx.get_keyed(Table::DeviceUsers, username.as_bytes())?;
            if user.is_some_and(|u| u.account == account) && !deleted.contains(&username) {
                tx.delete(Table::DeviceUsers, username.as_bytes().to_vec());
                tx.delete(Table::UsersByAccount, key(&[&account, &username]));
                deleted.push(username);
            }
        }
        tx.delete(Table::DeviceConnections, ck.clone());
        tx.delete(Table::Devices, ck);
        Ok(deleted)
    })
}

/// Who opened an operational session, for [`record_connected`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectedSession {
    /// Account.
    pub account: String,
    /// Client ID.
    pub client_id: String,
    /// The user it connected with.
    pub username: String,
    /// Peer `ip:port`, when the door knows it.
    pub peer: Option<String>,
    /// `3.1.1` or `5.0`, when the door knows it.
    pub protocol: Option<String>,
}

/// A device's operational session began: its connection entry becomes CONNECTED with
/// `lastConnectedOn`, peer and protocol (created under LOOSE coupling for a device that was
/// never provisioned). When it connects with the identity a provisioning execution gave it
/// (`CID@ACCOUNT`) for the first time, that execution records `operationalConnectedOn`.
pub fn record_connected(session: ConnectedSession, now: Timestamp) -> Op<()> {
    Box::new(move |tx| {
        let ConnectedSession {
            account,
            client_id,
            username,
            peer,
            protocol,
        } = session;
        let ck = key(&[&account, &client_id]);
        let mut c = tx
            .get_keyed::<DeviceConnection>(Table::DeviceConnections, &ck)?
            .unwrap_or_else(|| super::unprovisioned_connection(&account, &client_id));
        c.status = ConnectionStatus::Connected;
        c.last_connected_on = Some(now);
        c.peer = peer;
        c.protocol = protocol;
        tx.put(Table::DeviceConnections, ck.clone(), &c);
        if username != format!("{client_id}@{account}") {
            return Ok(());
        }
        let Some(mut device) = tx.get_keyed::<Device>(Table::Devices, &ck)? else {
            return Ok(());
        };
        let (Some(execution), Some(request)) = (
            device.awaiting_execution.take(),
            device.provision_request_id.as_deref(),
        ) else {
            return Ok(());
        };
        let stored = tx.get_keyed::<Execution>(Table::ExecutionsById, execution.as_bytes())?;
        if let Some(mut e) = stored.filter(|e| e.request_id == request) {
            e.operational_connected_on.get_or_insert(now);
            tx.put(Table::ExecutionsById, execution.into_bytes(), &e);
        }
        tx.put(Table::Devices, ck, &device);
        Ok(())
    })
}

/// Another broker's hook authenticated the device (HOOKS.md 2): its connection entry records
/// `lastAuthenticatedOn` (created under LOOSE coupling for a device never provisioned).
pub fn record_authenticated(account: String, client_id: String, now: Timestamp) -> Op<()> {
    Box::new(move |tx| {
        let ck = key(&[&account, &client_id]);
        let mut c = tx
            .get_keyed::<DeviceConnection>(Table::DeviceConnections, &ck)?
            .unwrap_or_else(|| super::unprovisioned_connection(&account, &client_id));
        c.last_authenticated_on = Some(now);
        tx.put(Table::DeviceConnections, ck, &c);
        Ok(())
    })
}

/// Records the facts of a device's Kura BIRTH (PROTOCOL.md 6.3) in its registry entry, which
/// a device connecting without provisioning gets here (as Kapua registers a device on BIRTH).
pub fn record_birth(account: String, client_id: String, birth: Birth, now: Timestamp) -> Op<()> {
    Box::new(move |tx| {
        let ck = key(&[&account, &client_id]);
        let mut device = tx
            .get_keyed::<Device>(Table::Devices, &ck)?
            .unwrap_or_else(|| Device::new(account, client_id));
        device.birth = Some(birth);
        device.birth_on = Some(now);
        tx.put(Table::Devices, ck, &device);
        Ok(())
    })
}
