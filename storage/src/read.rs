//! Typed queries over a read snapshot.

use crate::StoreError;
use crate::engine::{Snapshot, Table, decode, decode_keyed, key, last_part, two_parts};
use crate::records::*;

/// Registry entries a filtered page of devices reads per item asked for
/// ([`Reader::list_devices`]).
pub const FILTER_SCAN_PER_ITEM: usize = 100;
/// Most registry entries one filtered page of devices reads.
pub const FILTER_SCAN_MAX: usize = 10_000;

/// A consistent read view with typed queries.
pub struct Reader {
    pub(crate) snap: Snapshot,
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page<T> {
    /// The items, in id order.
    pub items: Vec<T>,
    /// Cursor for the next page, if there is one.
    pub next: Option<String>,
}

impl Reader {
    pub(crate) fn new(snap: Snapshot) -> Self {
        Reader { snap }
    }

    /// An account by name.
    pub fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        self.snap.get(Table::Accounts, name.as_bytes())
    }

    /// Every account, by name.
    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.values(Table::Accounts, b"", |_, v| decode(v))
    }

    /// The known broker endpoints added through the API, by name.
    pub fn endpoints(&self) -> Result<Vec<BrokerEndpoint>, StoreError> {
        self.values(Table::Endpoints, b"", |_, v| decode(v))
    }

    /// An API token by id.
    pub fn token(&self, id: &str) -> Result<Option<ApiToken>, StoreError> {
        self.snap.get(Table::Tokens, id.as_bytes())
    }

    /// A provision user by username.
    pub fn provision_user(&self, username: &str) -> Result<Option<ProvisionUser>, StoreError> {
        self.snap.get(Table::ProvisionUsers, username.as_bytes())
    }

    /// A provision request by id, in any account.
    pub fn request(&self, id: &str) -> Result<Option<ProvisionRequest>, StoreError> {
        let Some(mut r) = self
            .snap
            .get_keyed::<ProvisionRequest>(Table::Requests, id.as_bytes())?
        else {
            return Ok(None);
        };
        r.restore_running(|k| self.snap.get(Table::RunningExchanges, k))?;
        Ok(Some(r))
    }

    /// A provision request by id, only if it belongs to `account`.
    pub fn request_in(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<ProvisionRequest>, StoreError> {
        Ok(self.request(id)?.filter(|r| r.account == account))
    }

    /// The request a CONNECT with this client ID is matched against: its open request, else its
    /// latest one (which is then closed).
    pub fn connect_candidate(
        &self,
        client_id: &str,
    ) -> Result<Option<ProvisionRequest>, StoreError> {
        if let Some(id) = self
            .snap
            .get_raw(Table::OpenRequestByClient, client_id.as_bytes())?
        {
            let id = String::from_utf8_lossy(&id).into_owned();
            return self.request(&id);
        }
        let mut latest = None;
        self.snap
            .scan_rev(Table::RequestsByClient, &key(&[client_id, ""]), |k, _| {
                latest = Some(last_part(k).to_string());
                Ok(false)
            })?;
        match latest {
            Some(id) => self.request(&id),
            None => Ok(None),
        }
    }

    /// Lists an account's requests in id order, optionally filtered by status and client ID,
    /// starting after the cursor `after`.
    pub fn list_requests(
        &self,
        account: &str,
        status: Option<RequestStatus>,
        client_id: Option<&str>,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Page<ProvisionRequest>, StoreError> {
        let (table, prefix) = match (client_id, status) {
            (Some(c), _) => (Table::RequestsByClient, key(&[c, ""])),
            (None, Some(s)) => (
                Table::RequestsByAccountStatus,
                key(&[account, s.as_str(), ""]),
            ),
            (None, None) => (Table::RequestsByAccount, key(&[account, ""])),
        };
        let mut start = prefix.clone();
        if let Some(a) = after {
            start.extend_from_slice(a.as_bytes());
            // Strictly after the cursor.
            start.push(0);
        }
        let mut items = Vec::new();
        let mut more = false;
        self.snap.scan(table, &prefix, &start, |k, _| {
            let id = last_part(k);
            let Some(r) = self.request(id)? else {
                return Ok(true);
            };
            if r.account != account || status.is_some_and(|s| s != r.status) {
                return Ok(true);
            }
            if items.len() == limit {
                more = true;
                return Ok(false);
            }
            items.push(r);
            Ok(true)
        })?;
        let next = if more {
            items.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Number of requests in each status, over all accounts.
    pub fn count_requests_by_status(&self) -> Result<Vec<(RequestStatus, u64)>, StoreError> {
        let mut counts = [0u64; 4];
        self.snap
            .scan(Table::RequestsByAccountStatus, b"", b"", |k, _| {
                let mut parts = k.split(|b| *b == 0);
                let _account = parts.next();
                let status = parts
                    .next()
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(RequestStatus::parse);
                if let Some(s) = status {
                    let i = RequestStatus::ALL.iter().position(|x| *x == s).unwrap_or(0);
                    counts[i] += 1;
                }
                Ok(true)
            })?;
        Ok(RequestStatus::ALL.iter().copied().zip(counts).collect())
    }

    /// Every request left `RUNNING`, in any account.
    pub fn running_requests(&self) -> Result<Vec<ProvisionRequest>, StoreError> {
        let mut out = Vec::new();
        for account in self.accounts()? {
            let prefix = key(&[&account.name, RequestStatus::Running.as_str(), ""]);
            let mut ids = Vec::new();
            self.snap
                .scan(Table::RequestsByAccountStatus, &prefix, &prefix, |k, _| {
                    ids.push(last_part(k).to_string());
                    Ok(true)
                })?;
            for id in ids {
                out.extend(self.request(&id)?);
            }
        }
        Ok(out)
    }

    /// The executions of a request, oldest first.
    pub fn executions(&self, request_id: &str) -> Result<Vec<Execution>, StoreError> {
        let mut ids = Vec::new();
        let prefix = key(&[request_id, ""]);
        self.snap
            .scan(Table::ExecutionsByRequest, &prefix, &prefix, |k, _| {
                ids.push(last_part(k).to_string());
                Ok(true)
            })?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(self.execution(request_id, &id)?);
        }
        Ok(out)
    }

    /// One execution of a request.
    pub fn execution(
        &self,
        request_id: &str,
        execution_id: &str,
    ) -> Result<Option<Execution>, StoreError> {
        Ok(self
            .snap
            .get_keyed::<Execution>(Table::ExecutionsById, execution_id.as_bytes())?
            .filter(|e| e.request_id == request_id))
    }

    /// A device user by username.
    pub fn device_user(&self, username: &str) -> Result<Option<DeviceUser>, StoreError> {
        self.snap.get_keyed(Table::DeviceUsers, username.as_bytes())
    }

    /// Every device user of an account, by username.
    pub fn users(&self, account: &str) -> Result<Vec<DeviceUser>, StoreError> {
        let mut names = Vec::new();
        self.snap
            .scan(Table::UsersByAccount, &key(&[account, ""]), b"", |k, _| {
                names.push(last_part(k).to_string());
                Ok(true)
            })?;
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            out.extend(self.device_user(&n)?);
        }
        Ok(out)
    }

    /// An account user by username.
    pub fn account_user(&self, username: &str) -> Result<Option<AccountUser>, StoreError> {
        self.snap.get(Table::AccountUsers, username.as_bytes())
    }

    /// Every account user of an account, by username.
    pub fn account_users(&self, account: &str) -> Result<Vec<AccountUser>, StoreError> {
        let mut names = Vec::new();
        self.snap.scan(
            Table::AccountUsersByAccount,
            &key(&[account, ""]),
            b"",
            |k, _| {
                names.push(last_part(k).to_string());
                Ok(true)
            },
        )?;
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            out.extend(self.account_user(&n)?);
        }
        Ok(out)
    }

    /// The device-connection entry of a client ID in an account.
    pub fn device_connection(
        &self,
        account: &str,
        client_id: &str,
    ) -> Result<Option<DeviceConnection>, StoreError> {
        self.snap
            .get_keyed(Table::DeviceConnections, &key(&[account, client_id]))
    }

    /// The registry entry of a client ID in an account.
    pub fn device(&self, account: &str, client_id: &str) -> Result<Option<Device>, StoreError> {
        self.snap
            .get_keyed(Table::Devices, &key(&[account, client_id]))
    }

    /// Every registry entry of an account, by client ID.
    pub fn devices(&self, account: &str) -> Result<Vec<Device>, StoreError> {
        self.values(Table::Devices, &key(&[account, ""]), decode_keyed)
    }

    /// One page of an account's registry in client-ID order, each entry with its connection
    /// entry, optionally only those in `connection` state (no connection entry counts as
    /// `NEVER_CONNECTED`), starting after the client ID `after`.
    ///
    /// A filtered page reads at most [`FILTER_SCAN_PER_ITEM`] entries per item asked for, and
    /// never more than [`FILTER_SCAN_MAX`]: a state that few devices are in then gives short
    /// (even empty) pages with a cursor, each answered in bounded time, instead of one request
    /// that reads the whole registry (1.8 s at 1,000,000 devices, docs/benchmarks.md).
    pub fn list_devices(
        &self,
        account: &str,
        connection: Option<ConnectionStatus>,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Page<(Device, Option<DeviceConnection>)>, StoreError> {
        let prefix = key(&[account, ""]);
        let mut start = prefix.clone();
        if let Some(a) = after {
            start.extend_from_slice(a.as_bytes());
            // Strictly after the cursor.
            start.push(0);
        }
        let budget = limit
            .saturating_mul(FILTER_SCAN_PER_ITEM)
            .min(FILTER_SCAN_MAX)
            .max(limit);
        let (mut items, mut read, mut last_key) = (Vec::new(), 0usize, Vec::new());
        // Set when there may be more: where the next page starts.
        let mut next = None;
        self.snap.scan(Table::Devices, &prefix, &start, |k, v| {
            if connection.is_some() && read == budget {
                // As many entries read as a filtered page may: the next page goes on after
                // the last one read.
                next = Some(last_part(&last_key).to_string());
                return Ok(false);
            }
            read += 1;
            last_key.clear();
            last_key.extend_from_slice(k);
            let c = self.device_connection(account, last_part(k))?;
            let status = c
                .as_ref()
                .map_or(ConnectionStatus::NeverConnected, |c| c.status);
            if connection.is_some_and(|want| want != status) {
                return Ok(true);
            }
            if items.len() == limit {
                next = items.last().map(|(d, _): &(Device, _)| d.client_id.clone());
                return Ok(false);
            }
            items.push((decode_keyed(k, v)?, c));
            Ok(true)
        })?;
        Ok(Page { items, next })
    }

    /// Every device user of the instance (a replica's snapshot).
    pub fn all_device_users(&self) -> Result<Vec<DeviceUser>, StoreError> {
        self.values(Table::DeviceUsers, b"", decode_keyed)
    }

    /// Every account user of the instance (a replica's snapshot).
    pub fn all_account_users(&self) -> Result<Vec<AccountUser>, StoreError> {
        self.values(Table::AccountUsers, b"", |_, v| decode(v))
    }

    /// Every device-connection entry of the instance (a replica's snapshot).
    pub fn all_device_connections(&self) -> Result<Vec<DeviceConnection>, StoreError> {
        self.values(Table::DeviceConnections, b"", decode_keyed)
    }

    /// The account and client ID of every registry entry of the instance (a replica's
    /// snapshot needs their existence only, so the entries are not decoded).
    pub fn all_device_keys(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        self.snap.scan(Table::Devices, b"", b"", |k, _| {
            out.push(two_parts(k));
            Ok(true)
        })?;
        Ok(out)
    }

    /// Every record whose key starts with `prefix`, decoded by `decode` from key and value.
    fn values<T>(
        &self,
        table: Table,
        prefix: &[u8],
        decode: impl Fn(&[u8], &[u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.snap.scan(table, prefix, b"", |k, v| {
            out.push(decode(k, v)?);
            Ok(true)
        })?;
        Ok(out)
    }
}
