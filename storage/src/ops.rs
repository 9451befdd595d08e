//! Write operations: each function returns a closure for [`crate::Store::write`] /
//! [`crate::Store::write_async`]. The closures hold the domain rules that must be checked
//! inside the write (uniqueness, lifecycle) and check everything before they write, so an error
//! leaves nothing behind.

use crate::engine::{Table, Tx, decode_keyed, encode, encode_with_room, key, last_part};
use crate::ids::new_id;
use crate::records::*;
use crate::validate::{AccountSpec, FieldError, RequestSpec};
use crate::{RecordKind, StoreError};

mod registry;
mod users;

pub use registry::*;
pub use users::*;

/// A boxed write operation.
pub type Op<T> = Box<dyn FnOnce(&mut Tx<'_, '_>) -> Result<T, StoreError> + Send>;

fn not_found(what: RecordKind) -> StoreError {
    StoreError::NotFound(what)
}

/// Creates the provisioning account if it does not exist yet. Returns true when created.
pub fn ensure_provisioning_account(name: String, now: Timestamp) -> Op<bool> {
    Box::new(move |tx| {
        if tx.get_raw(Table::Accounts, name.as_bytes())?.is_some() {
            return Ok(false);
        }
        let account = Account {
            name: name.clone(),
            min_password_length: 20,
            default_coupling: Coupling::Loose,
            provisioning: true,
            created_on: now,
        };
        tx.put(Table::Accounts, name.into_bytes(), &account);
        Ok(true)
    })
}

/// Creates a target account; 409 when the name is taken (the provisioning account's included).
pub fn create_account(spec: AccountSpec, now: Timestamp) -> Op<Account> {
    Box::new(move |tx| {
        if tx.get_raw(Table::Accounts, spec.name.as_bytes())?.is_some() {
            return Err(StoreError::conflict(
                "name",
                "an account with this name exists",
            ));
        }
        let account = Account {
            name: spec.name,
            min_password_length: spec.min_password_length,
            default_coupling: spec.default_coupling,
            provisioning: false,
            created_on: now,
        };
        tx.put(Table::Accounts, account.name.as_bytes().to_vec(), &account);
        Ok(account)
    })
}

/// Adds a known broker endpoint; its name is unique and `fleetgate` is Fleetgate's own (409).
pub fn create_endpoint(spec: crate::EndpointSpec, now: Timestamp) -> Op<BrokerEndpoint> {
    Box::new(move |tx| {
        if spec.name == crate::validate::OWN_ENDPOINT
            || tx
                .get_raw(Table::Endpoints, spec.name.as_bytes())?
                .is_some()
        {
            return Err(StoreError::conflict(
                "name",
                "an endpoint with this name exists",
            ));
        }
        let endpoint = BrokerEndpoint {
            name: spec.name,
            url: spec.url,
            kind: spec.kind,
            created_on: now,
        };
        tx.put(
            Table::Endpoints,
            endpoint.name.as_bytes().to_vec(),
            &endpoint,
        );
        Ok(endpoint)
    })
}

/// Removes a known broker endpoint (requests naming its URL keep it).
pub fn delete_endpoint(name: String) -> Op<()> {
    Box::new(move |tx| {
        if tx.get_raw(Table::Endpoints, name.as_bytes())?.is_none() {
            return Err(not_found(RecordKind::Endpoint));
        }
        tx.delete(Table::Endpoints, name.into_bytes());
        Ok(())
    })
}

/// Stores a new API token of an existing account.
pub fn create_token(token: ApiToken) -> Op<ApiToken> {
    Box::new(move |tx| {
        let account: Option<Account> = tx.get(Table::Accounts, token.account.as_bytes())?;
        if account.is_none_or(|a| a.provisioning) {
            return Err(not_found(RecordKind::Account));
        }
        tx.put(Table::Tokens, token.id.as_bytes().to_vec(), &token);
        Ok(token)
    })
}

/// Revokes an account's token.
pub fn delete_token(account: String, id: String) -> Op<()> {
    Box::new(move |tx| {
        let token: Option<ApiToken> = tx.get(Table::Tokens, id.as_bytes())?;
        if token.is_none_or(|t| t.account != account) {
            return Err(not_found(RecordKind::Token));
        }
        tx.delete(Table::Tokens, id.into_bytes());
        Ok(())
    })
}

/// How a request's provision user is settled, decided by the caller after checking the
/// password against a snapshot (argon2 runs outside the writer).
#[derive(Clone, Debug, PartialEq)]
pub enum UserPlan {
    /// The user exists with this hash and the password matched it.
    Existing {
        /// The hash the password was verified against.
        hash: String,
    },
    /// The user does not exist: create it with this hash.
    New {
        /// Hash of the new password.
        hash: String,
    },
    /// The user exists and only the request being updated uses it: replace its password.
    Replace {
        /// The hash seen in the snapshot.
        old_hash: String,
        /// Hash of the new password.
        new_hash: String,
    },
}

/// One request to create: validated body, settled user and optional activation-key hash.
#[derive(Clone, Debug)]
pub struct NewRequest {
    /// Validated body.
    pub spec: RequestSpec,
    /// How to settle the provision user.
    pub user: UserPlan,
    /// Keyed hash of the generated activation key, if any.
    pub activation_key_hash: Option<String>,
}

/// Takes a reference on the provision user per `plan`, creating or re-hashing it. `own` is the
/// request being updated (for `Replace`).
fn settle_user(
    tx: &mut Tx<'_, '_>,
    account: &str,
    username: &str,
    plan: &UserPlan,
    now: Timestamp,
) -> Result<(), StoreError> {
    let existing: Option<ProvisionUser> = tx.get(Table::ProvisionUsers, username.as_bytes())?;
    let user = match (existing, plan) {
        (Some(u), _) if u.account != account => {
            return Err(StoreError::conflict(
                "provisionUsername",
                "this provision username belongs to another account",
            ));
        }
        (Some(mut u), UserPlan::Existing { hash } | UserPlan::New { hash }) => {
            if u.password_hash != *hash {
                // Created or changed since the caller's snapshot: the caller verifies again.
                return Err(StoreError::Stale);
            }
            u.request_count += 1;
            u
        }
        (Some(mut u), UserPlan::Replace { old_hash, new_hash }) => {
            if u.password_hash != *old_hash {
                return Err(StoreError::Stale);
            }
            u.password_hash = new_hash.clone();
            u.request_count += 1;
            u
        }
        (None, UserPlan::New { hash }) => ProvisionUser {
            username: username.to_string(),
            account: account.to_string(),
            password_hash: hash.clone(),
            request_count: 1,
            created_on: now,
        },
        (None, _) => return Err(StoreError::Stale),
    };
    tx.put(Table::ProvisionUsers, username.as_bytes().to_vec(), &user);
    Ok(())
}

/// Drops a request's reference on its provision user, removing the user at zero.
fn release_user(tx: &mut Tx<'_, '_>, username: &str) -> Result<(), StoreError> {
    let user: Option<ProvisionUser> = tx.get(Table::ProvisionUsers, username.as_bytes())?;
    if let Some(mut u) = user {
        u.request_count = u.request_count.saturating_sub(1);
        if u.request_count == 0 {
            tx.delete(Table::ProvisionUsers, username.as_bytes().to_vec());
        } else {
            tx.put(Table::ProvisionUsers, username.as_bytes().to_vec(), &u);
        }
    }
    Ok(())
}

/// Fails with 409 when the client ID has an open request other than `except`.
fn check_client_free(
    tx: &Tx<'_, '_>,
    client_id: &str,
    except: Option<&str>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let Some(id) = tx.get_raw(Table::OpenRequestByClient, client_id.as_bytes())? else {
        return Ok(());
    };
    let id = String::from_utf8_lossy(&id).into_owned();
    if except == Some(id.as_str()) {
        return Ok(());
    }
    let other = load_request(tx, &id)?;
    match other {
        Some(r) if !r.is_closed(now) => Err(StoreError::conflict(
            "clientId",
            "another open provision request exists for this client ID",
        )),
        _ => Ok(()),
    }
}

/// Fails with 409 when the device username `CID@ACCOUNT` a request would create is an account
/// user's (API.md "Account users": usernames are unique in the instance).
fn check_not_account_user(
    tx: &Tx<'_, '_>,
    account: &str,
    client_id: &str,
) -> Result<(), StoreError> {
    let username = format!("{client_id}@{account}");
    if tx
        .get_raw(Table::AccountUsers, username.as_bytes())?
        .is_some()
    {
        return Err(StoreError::conflict(
            "clientId",
            format!("{username} is the username of an account user"),
        ));
    }
    Ok(())
}

/// Writes a request and its indexes; `previous` is its stored version, if any (written by this
/// function, so its index entries exist). Index entries whose key did not change are not
/// rewritten: each redb insert copies the B-tree path it touches, and the two writes of every
/// enrollment would otherwise rewrite two unchanged index entries each.
fn put_request(
    tx: &mut Tx<'_, '_>,
    r: &ProvisionRequest,
    previous: Option<&ProvisionRequest>,
    now: Timestamp,
) -> Vec<u8> {
    let (mut status_indexed, mut client_indexed, mut account_indexed) = (false, false, false);
    if let Some(p) = previous {
        if p.status != r.status {
            tx.delete(
                Table::RequestsByAccountStatus,
                key(&[&p.account, p.status.as_str(), &p.id]),
            );
        }
        if p.client_id != r.client_id {
            tx.delete(Table::RequestsByClient, key(&[&p.client_id, &p.id]));
            tx.delete(Table::OpenRequestByClient, p.client_id.as_bytes().to_vec());
        }
        // Same key as the stored entry: nothing to write.
        let same = p.id == r.id && p.account == r.account;
        status_indexed = same && p.status == r.status;
        client_indexed = p.id == r.id && p.client_id == r.client_id;
        account_indexed = same;
    }
    if !status_indexed {
        tx.put_index(
            Table::RequestsByAccountStatus,
            key(&[&r.account, r.status.as_str(), &r.id]),
        );
    }
    if !client_indexed {
        tx.put_index(Table::RequestsByClient, key(&[&r.client_id, &r.id]));
    }
    if !account_indexed {
        tx.put_index(Table::RequestsByAccount, key(&[&r.account, &r.id]));
    }
    if r.is_closed(now) {
        tx.delete(Table::OpenRequestByClient, r.client_id.as_bytes().to_vec());
    } else {
        tx.put_raw(
            Table::OpenRequestByClient,
            r.client_id.as_bytes().to_vec(),
            r.id.as_bytes().to_vec(),
        );
    }
    let was_running = previous.and_then(|p| p.running.as_ref());
    match &r.running {
        Some(running) if was_running != Some(running) => {
            tx.put(Table::RunningExchanges, r.id.as_bytes().to_vec(), running);
        }
        None if was_running.is_some() => {
            tx.delete(Table::RunningExchanges, r.id.as_bytes().to_vec());
        }
        _ => {}
    }
    let bytes = encode(r);
    tx.put_raw(Table::Requests, r.id.as_bytes().to_vec(), bytes.clone());
    bytes
}

/// A request as the batch sees it, with its running exchange put back.
fn load_request(tx: &Tx<'_, '_>, id: &str) -> Result<Option<ProvisionRequest>, StoreError> {
    let Some(mut r) = tx.get_keyed::<ProvisionRequest>(Table::Requests, id.as_bytes())? else {
        return Ok(None);
    };
    r.restore_running(|k| tx.get(Table::RunningExchanges, k))?;
    Ok(Some(r))
}

fn target_account(tx: &Tx<'_, '_>, name: &str) -> Result<Account, StoreError> {
    let account: Option<Account> = tx.get(Table::Accounts, name.as_bytes())?;
    account
        .filter(|a| !a.provisioning)
        .ok_or_else(|| not_found(RecordKind::Account))
}

/// A `CREATED` request holding the fields of `spec`.
fn new_request(
    account: String,
    spec: RequestSpec,
    activation_key_hash: Option<String>,
    now: Timestamp,
) -> ProvisionRequest {
    ProvisionRequest {
        id: new_id(),
        account,
        client_id: spec.client_id,
        provision_username: spec.provision_username,
        broker_url: spec.broker_url,
        activates_on: spec.activates_on,
        expires_on: spec.expires_on,
        activation_key_hash,
        reserve_user: spec.reserve_user,
        connection_coupling: spec.connection_coupling,
        vpn_access: spec.vpn_access,
        password_length: spec.password_length,
        additional_configuration: spec.additional_configuration,
        status: RequestStatus::Created,
        created_on: now,
        modified_on: now,
        last_rejection: None,
        warnings: spec.warnings,
        running: None,
    }
}

/// Creates requests all or nothing. Errors name the row index when `bulk` is true.
pub fn create_requests(
    account: String,
    rows: Vec<NewRequest>,
    bulk: bool,
    now: Timestamp,
) -> Op<Vec<ProvisionRequest>> {
    Box::new(move |tx| {
        target_account(tx, &account)?;
        let mut created = Vec::with_capacity(rows.len());
        let mut errors: Vec<FieldError> = Vec::new();
        for (i, row) in rows.into_iter().enumerate() {
            let spec = row.spec;
            let checked = check_client_free(tx, &spec.client_id, None, now)
                .and_then(|()| check_not_account_user(tx, &account, &spec.client_id))
                .and_then(|()| settle_user(tx, &account, &spec.provision_username, &row.user, now));
            match checked {
                Ok(()) => {}
                Err(StoreError::Conflict(es)) if bulk => {
                    errors.extend(es.into_iter().map(|e| e.at(i)));
                    continue;
                }
                Err(e) => return Err(e),
            }
            let r = new_request(account.clone(), spec, row.activation_key_hash, now);
            // Staged writes are visible to the next row, so two rows for one client ID clash.
            put_request(tx, &r, None, now);
            created.push(r);
        }
        if errors.is_empty() {
            Ok(created)
        } else {
            Err(StoreError::Conflict(errors))
        }
    })
}

/// Replaces a `CREATED` request's fields (PUT). `activation_key_hash` is the hash to keep or
/// set (`None` when no key is wanted).
pub fn update_request(
    account: String,
    id: String,
    row: NewRequest,
    now: Timestamp,
) -> Op<ProvisionRequest> {
    Box::new(move |tx| {
        let old: ProvisionRequest = load_request(tx, &id)?
            .filter(|r| r.account == account)
            .ok_or_else(|| not_found(RecordKind::ProvisionRequest))?;
        if old.status != RequestStatus::Created {
            return Err(StoreError::conflict(
                "status",
                format!(
                    "only a CREATED request can be modified (it is {})",
                    old.status.as_str()
                ),
            ));
        }
        let spec = row.spec;
        check_client_free(tx, &spec.client_id, Some(&old.id), now)?;
        check_not_account_user(tx, &account, &spec.client_id)?;
        // Settle before releasing: when the username is unchanged and this request is its
        // only user, releasing first would delete the user and turn the plan stale.
        settle_user(tx, &account, &spec.provision_username, &row.user, now)?;
        release_user(tx, &old.provision_username)?;
        let fresh = new_request(account.clone(), spec, row.activation_key_hash, now);
        let r = ProvisionRequest {
            id: old.id.clone(),
            status: old.status,
            created_on: old.created_on,
            last_rejection: old.last_rejection.clone(),
            running: old.running.clone(),
            ..fresh
        };
        put_request(tx, &r, Some(&old), now);
        Ok(r)
    })
}

/// Deletes a request with its executions; 409 while `RUNNING` unless `force`.
pub fn delete_request(account: String, id: String, force: bool) -> Op<()> {
    Box::new(move |tx| {
        let r: ProvisionRequest = load_request(tx, &id)?
            .filter(|r| r.account == account)
            .ok_or_else(|| not_found(RecordKind::ProvisionRequest))?;
        if r.status == RequestStatus::Running && !force {
            return Err(StoreError::conflict(
                "status",
                "the request is RUNNING; use force=true to delete it anyway",
            ));
        }
        let executions = tx.keys_with_prefix(Table::ExecutionsByRequest, &key(&[&r.id, ""]))?;
        for k in executions {
            tx.delete(Table::ExecutionsById, last_part(&k).as_bytes().to_vec());
            tx.delete(Table::ExecutionsByRequest, k);
        }
        if r.running.is_some() {
            tx.delete(Table::RunningExchanges, r.id.as_bytes().to_vec());
        }
        release_user(tx, &r.provision_username)?;
        tx.delete(
            Table::RequestsByAccountStatus,
            key(&[&r.account, r.status.as_str(), &r.id]),
        );
        tx.delete(Table::RequestsByClient, key(&[&r.client_id, &r.id]));
        tx.delete(Table::RequestsByAccount, key(&[&r.account, &r.id]));
        let open = tx.get_raw(Table::OpenRequestByClient, r.client_id.as_bytes())?;
        if open.as_deref() == Some(r.id.as_bytes()) {
            tx.delete(Table::OpenRequestByClient, r.client_id.as_bytes().to_vec());
        }
        tx.delete(Table::Requests, r.id.into_bytes());
        Ok(())
    })
}

/// Records a refusal with wrong credentials on the request (no execution, PROTOCOL.md 2).
pub fn record_rejection(request_id: String, reason: String, now: Timestamp) -> Op<()> {
    Box::new(move |tx| {
        let Some(mut r) = load_request(tx, &request_id)? else {
            return Ok(());
        };
        r.last_rejection = Some(Rejection { at: now, reason });
        // The running exchange, if any, stays where it is.
        tx.put(Table::Requests, r.id.as_bytes().to_vec(), &r);
        Ok(())
    })
}

/// Who attempted an exchange.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The provision request matched.
    pub request_id: String,
    /// `3.1.1` or `5.0`.
    pub protocol: String,
    /// Peer `ip:port`.
    pub peer: String,
    /// When.
    pub now: Timestamp,
}

fn line(at: Timestamp, level: LogLevel, message: impl Into<String>) -> LogLine {
    LogLine {
        at,
        level,
        message: message.into(),
    }
}

fn new_execution(
    id: String,
    a: &Attempt,
    account: &str,
    outcome: Outcome,
    log: Vec<LogLine>,
) -> Execution {
    Execution {
        id,
        request_id: a.request_id.clone(),
        account: account.to_string(),
        started_on: a.now,
        ended_on: (outcome != Outcome::Running).then_some(a.now),
        outcome,
        protocol: a.protocol.clone(),
        provisioning_protocol: ProvisioningProtocol::ProvV1,
        peer: a.peer.clone(),
        log,
        operational_connected_on: None,
    }
}

/// Writes a new execution and its index entry, `room` bytes long at least (see
/// [`encode_with_room`]); returns its encoded bytes. Its id was made in this write, so it is
/// appended past the end of [`Table::ExecutionsById`].
fn put_execution(tx: &mut Tx<'_, '_>, e: &Execution, room: usize) -> Vec<u8> {
    let bytes = encode_with_room(e, room);
    tx.put_raw(
        Table::ExecutionsById,
        e.id.as_bytes().to_vec(),
        bytes.clone(),
    );
    tx.put_index(Table::ExecutionsByRequest, key(&[&e.request_id, &e.id]));
    bytes
}

/// Ends an execution: its last log line, outcome and end time.
fn end_execution(e: &mut Execution, outcome: Outcome, message: String, now: Timestamp) {
    let level = if outcome == Outcome::Completed {
        LogLevel::Info
    } else {
        LogLevel::Error
    };
    e.log.push(line(now, level, message));
    e.outcome = outcome;
    e.ended_on = Some(now);
}

/// Records a CONNECT refused although the credentials matched: a `REJECTED` execution.
pub fn record_rejected_connect(attempt: Attempt, reason: String) -> Op<()> {
    Box::new(move |tx| {
        let Some(r) = load_request(tx, &attempt.request_id)? else {
            return Ok(());
        };
        let log = vec![
            line(
                attempt.now,
                LogLevel::Info,
                format!("CONNECT from {} (MQTT {})", attempt.peer, attempt.protocol),
            ),
            line(
                attempt.now,
                LogLevel::Error,
                format!("CONNECT refused: {reason}"),
            ),
        ];
        put_execution(
            tx,
            &new_execution(new_id(), &attempt, &r.account, Outcome::Rejected, log),
            0,
        );
        Ok(())
    })
}

/// The device identity an exchange writes into the target account (PROTOCOL.md 4.3, 4.4).
#[derive(Clone)]
pub struct IdentityPlan {
    /// `CID@ACCOUNT`.
    pub username: String,
    /// Keyed hash of the freshly generated password.
    pub password_hash: String,
    /// Number of configurations in the document sent to the device (for the log).
    pub configurations: usize,
}

impl std::fmt::Debug for IdentityPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityPlan")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What the caller decided, from a snapshot, to do with a valid-looking exchange.
#[derive(Clone, Debug)]
pub enum ExchangeAction {
    /// Fail the exchange at once (bad request 400, activation key 403, build error 500).
    Fail {
        /// PROV-V1 response code.
        code: u16,
        /// Exact reason for the log (no secret).
        reason: String,
    },
    /// Write the identity and wait for the device's PUBACK.
    Provision(IdentityPlan),
}

/// Result of [`begin_exchange`].
#[derive(Debug)]
pub enum ExchangeStart {
    /// Execution started. For `Provision` it is running: send the reply, then end it with
    /// [`finish_exchange`] and `running`. For `Fail` it already ended FAILED (`running` is
    /// `None`): send the failure reply.
    Started {
        /// The execution id.
        execution_id: String,
        /// The running exchange, when there is one to finish.
        running: Option<Box<RunningExchangeHandle>>,
    },
    /// Same `request.id` already running: a redelivery, ignore it.
    Duplicate,
    /// Another exchange with a different `request.id` is running: 409, no change.
    Busy,
    /// The request is closed, gone, or outside its window: nothing to do.
    NotOpen,
}

/// A running exchange, as [`begin_exchange`] wrote it; [`finish_exchange`] ends it.
///
/// It keeps the request and the execution with their encoded bytes: ending the exchange
/// compares the stored bytes with these and decodes only what changed in between, so the second
/// commit of an enrollment costs no JSON decoding in the writer thread, which every write of
/// every enrollment goes through.
pub struct RunningExchangeHandle {
    request: ProvisionRequest,
    request_bytes: Vec<u8>,
    execution: Execution,
    execution_bytes: Vec<u8>,
}

impl RunningExchangeHandle {
    /// The provision request's id.
    pub fn request_id(&self) -> &str {
        &self.request.id
    }

    /// The running execution's id.
    pub fn execution_id(&self) -> &str {
        &self.execution.id
    }
}

impl std::fmt::Debug for RunningExchangeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningExchangeHandle")
            .field("request", &self.request.id)
            .field("execution", &self.execution.id)
            .finish_non_exhaustive()
    }
}

/// Starts an exchange (PROTOCOL.md 4.3) and, for `Provision`, writes the device user, the
/// device connection and the registry entry in the same commit, so the reply is sent only
/// after all of it is durable. This is the first of the exchange's two commits. `protocol`
/// is recorded on the execution: a PROV-V1 exchange is named by the device's `request.id`; a
/// Kura-native one (PROTOCOL.md 8.1), started by the device's BIRTH, by the id of the CONF-V1
/// PUT it sends (a Kura device sends no request id of its own).
pub fn begin_exchange(
    attempt: Attempt,
    device_request_id: String,
    action: ExchangeAction,
    protocol: ProvisioningProtocol,
) -> Op<ExchangeStart> {
    Box::new(move |tx| start_exchange(tx, attempt, device_request_id, action, protocol))
}

fn start_exchange(
    tx: &mut Tx<'_, '_>,
    attempt: Attempt,
    device_request_id: String,
    action: ExchangeAction,
    protocol: ProvisioningProtocol,
) -> Result<ExchangeStart, StoreError> {
    let now = attempt.now;
    let Some(mut r) = load_request(tx, &attempt.request_id)? else {
        return Ok(ExchangeStart::NotOpen);
    };
    if r.is_closed(now) || !r.in_window(now) {
        return Ok(ExchangeStart::NotOpen);
    }
    if let Some(running) = &r.running {
        return Ok(if running.device_request_id == device_request_id {
            ExchangeStart::Duplicate
        } else {
            ExchangeStart::Busy
        });
    }
    let previous = r.clone();
    let started = match protocol {
        ProvisioningProtocol::ProvV1 => "exchange started: request.id",
        ProvisioningProtocol::Kura => "Kura-native exchange started on BIRTH: exchange",
    };
    let mut log = vec![line(
        now,
        LogLevel::Info,
        format!(
            "{started} {device_request_id}, MQTT {}, peer {}",
            attempt.protocol, attempt.peer
        ),
    )];
    let execution_id = new_id();
    let outcome = match action {
        ExchangeAction::Fail { code, reason } => {
            log.push(line(
                now,
                LogLevel::Error,
                format!("failed with {code}: {reason}"),
            ));
            r.status = RequestStatus::Failed;
            Outcome::Failed
        }
        ExchangeAction::Provision(plan) => {
            let account = target_account(tx, &r.account)?;
            write_identity(tx, &r, &account, &plan, &execution_id, now, &mut log)?;
            r.status = RequestStatus::Running;
            Outcome::Running
        }
    };
    let mut execution = new_execution(execution_id, &attempt, &r.account, outcome, log);
    execution.provisioning_protocol = protocol;
    if outcome == Outcome::Running {
        r.running = Some(RunningExchange {
            execution_id: execution.id.clone(),
            device_request_id,
        });
    }
    r.modified_on = now;
    // A running execution is rewritten once, when it ends: written with room for the end it
    // has when it succeeds, that rewrite keeps its size and does not split the packed leaf.
    // It ends later than it started, so its last log line carries its own time.
    let room = if outcome == Outcome::Running {
        let mut ended = execution.clone();
        let fate = ReplyFate::success(protocol);
        end_execution(
            &mut ended,
            fate.outcome(),
            fate.log_message().into_owned(),
            now + chrono::Duration::nanoseconds(1),
        );
        encode(&ended).len()
    } else {
        0
    };
    let execution_bytes = put_execution(tx, &execution, room);
    let request_bytes = put_request(tx, &r, Some(&previous), now);
    if outcome != Outcome::Running {
        return Ok(ExchangeStart::Started {
            execution_id: execution.id,
            running: None,
        });
    }
    Ok(ExchangeStart::Started {
        execution_id: execution.id.clone(),
        running: Some(Box::new(RunningExchangeHandle {
            request: r,
            request_bytes,
            execution,
            execution_bytes,
        })),
    })
}

fn write_identity(
    tx: &mut Tx<'_, '_>,
    r: &ProvisionRequest,
    account: &Account,
    plan: &IdentityPlan,
    execution_id: &str,
    now: Timestamp,
    log: &mut Vec<LogLine>,
) -> Result<(), StoreError> {
    if tx
        .get_raw(Table::AccountUsers, plan.username.as_bytes())?
        .is_some()
    {
        return Err(StoreError::conflict(
            "username",
            "the device username is an account user's",
        ));
    }
    let mut permissions = vec![PERMISSION_BROKER_CONNECT.to_string()];
    if r.vpn_access {
        permissions.push(PERMISSION_VPN_CONNECT.to_string());
    }
    let reserved_for = r.reserve_user.then(|| r.client_id.clone());
    let existing: Option<DeviceUser> =
        tx.get_keyed(Table::DeviceUsers, plan.username.as_bytes())?;
    let user = match existing {
        Some(u) if u.account != account.name => {
            return Err(StoreError::conflict(
                "username",
                "the device username exists in another account",
            ));
        }
        Some(u) => {
            log.push(line(
                now,
                LogLevel::Info,
                format!("device user {} exists: password rotated", u.username),
            ));
            DeviceUser {
                password_hash: plan.password_hash.clone(),
                permissions,
                reserved_for,
                modified_on: now,
                ..u
            }
        }
        None => {
            log.push(line(
                now,
                LogLevel::Info,
                format!("device user {} created", plan.username),
            ));
            DeviceUser {
                username: plan.username.clone(),
                account: account.name.clone(),
                password_hash: plan.password_hash.clone(),
                permissions,
                reserved_for,
                enabled: true,
                created_on: now,
                modified_on: now,
            }
        }
    };
    log.push(line(
        now,
        LogLevel::Info,
        format!("permissions granted: {}", user.permissions.join(", ")),
    ));
    tx.put(Table::DeviceUsers, user.username.as_bytes().to_vec(), &user);
    tx.put_index(Table::UsersByAccount, key(&[&account.name, &user.username]));

    let ck = key(&[&account.name, &r.client_id]);
    let connection: Option<DeviceConnection> = tx.get_keyed(Table::DeviceConnections, &ck)?;
    let connection = DeviceConnection {
        account: account.name.clone(),
        client_id: r.client_id.clone(),
        coupling: r.connection_coupling,
        reserved_user: r.reserve_user.then(|| user.username.clone()),
        status: connection
            .as_ref()
            .map_or(ConnectionStatus::NeverConnected, |c| c.status),
        last_connected_on: connection.as_ref().and_then(|c| c.last_connected_on),
        peer: connection.as_ref().and_then(|c| c.peer.clone()),
        last_authenticated_on: connection.as_ref().and_then(|c| c.last_authenticated_on),
        protocol: connection.and_then(|c| c.protocol),
    };
    log.push(line(
        now,
        LogLevel::Info,
        format!(
            "device connection: coupling {} (effective {}), reserved user {}",
            connection.coupling.as_str(),
            connection
                .coupling
                .resolve(account.default_coupling)
                .as_str(),
            connection.reserved_user.as_deref().unwrap_or("none")
        ),
    ));
    tx.put(Table::DeviceConnections, ck.clone(), &connection);
    // An entry created with the API, or by an earlier provisioning, keeps what it knows
    // (display name, BIRTH facts); the new identity waits for its first operational CONNECT.
    let existing: Option<Device> = tx.get_keyed(Table::Devices, &ck)?;
    let existed = existing.is_some();
    let device = Device {
        status: DeviceStatus::Enabled,
        provisioned_on: Some(now),
        provision_request_id: Some(r.id.clone()),
        awaiting_execution: Some(execution_id.to_string()),
        ..existing.unwrap_or_else(|| Device::new(account.name.clone(), r.client_id.clone()))
    };
    log.push(line(
        now,
        LogLevel::Info,
        if existed {
            "registry entry updated"
        } else {
            "registry entry created"
        },
    ));
    tx.put(Table::Devices, ck, &device);
    log.push(line(
        now,
        LogLevel::Info,
        format!(
            "configuration built: {} configuration(s)",
            plan.configurations
        ),
    ));
    // Nothing about the reply here: this commit precedes it, and its fate is logged by
    // `finish_exchange` once known.
    Ok(())
}

/// What became of an exchange's success reply. It decides how [`finish_exchange`] ends the
/// execution, and the words of the execution's last log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyFate {
    /// The device acknowledged the QoS 1 reply: COMPLETED.
    Acknowledged,
    /// The reply was written to a QoS 0 subscription, which has nothing to wait for: COMPLETED.
    Written,
    /// The connection closed before the reply was acknowledged: FAILED.
    Disconnected,
    /// No acknowledgement within `provisioning.reply_timeout`: FAILED.
    TimedOut,
    /// The device answered the reply with this MQTT 5.0 error reason code: FAILED.
    Refused(u8),
    /// A Kura-native device answered the CONF-V1 PUT with this `response.code`: COMPLETED on
    /// 200, FAILED otherwise (PROTOCOL.md 8.1).
    Answered(i32),
    /// A Kura-native device sent no CONF-V1 reply within `provisioning.reply_timeout`: FAILED.
    NotAnswered,
}

impl ReplyFate {
    /// The fate of a reply the device took as it should in `protocol`.
    fn success(protocol: ProvisioningProtocol) -> ReplyFate {
        match protocol {
            ProvisioningProtocol::ProvV1 => ReplyFate::Acknowledged,
            ProvisioningProtocol::Kura => ReplyFate::Answered(200),
        }
    }

    /// The execution outcome this fate leads to.
    pub fn outcome(self) -> Outcome {
        match self {
            ReplyFate::Acknowledged | ReplyFate::Written | ReplyFate::Answered(200) => {
                Outcome::Completed
            }
            ReplyFate::Disconnected
            | ReplyFate::TimedOut
            | ReplyFate::Refused(_)
            | ReplyFate::Answered(_)
            | ReplyFate::NotAnswered => Outcome::Failed,
        }
    }

    fn log_message(self) -> std::borrow::Cow<'static, str> {
        match self {
            ReplyFate::Acknowledged => "PUBACK received".into(),
            ReplyFate::Written => "reply written to a QoS 0 subscription".into(),
            ReplyFate::Disconnected => {
                "the device disconnected before acknowledging the reply".into()
            }
            ReplyFate::TimedOut => "no PUBACK within provisioning.reply_timeout".into(),
            ReplyFate::Refused(code) => {
                format!("the device refused the reply (reason code 0x{code:02x})").into()
            }
            ReplyFate::Answered(200) => "the device answered the CONF-V1 PUT with 200".into(),
            ReplyFate::Answered(code) => {
                format!("the device answered the CONF-V1 PUT with {code}").into()
            }
            ReplyFate::NotAnswered => "no CONF-V1 reply within provisioning.reply_timeout".into(),
        }
    }
}

/// Ends a running exchange once its reply's fate is known: the exchange's second commit.
/// Does nothing when that exchange is no longer the running one (a restart or an operator
/// ended it first). Returns whether it changed anything.
pub fn finish_exchange(
    running: Box<RunningExchangeHandle>,
    fate: ReplyFate,
    now: Timestamp,
) -> Op<bool> {
    Box::new(move |tx| {
        end_exchange(
            tx,
            Ending::Tracked(running),
            fate.outcome(),
            fate.log_message(),
            now,
        )
    })
}

/// PROTOCOL.md 5: fails the exchange `execution_id` that a previous process left running on
/// request `request_id`. Does nothing when it is no longer the running one; returns whether it
/// changed anything.
pub fn fail_exchange_after_restart(
    request_id: String,
    execution_id: String,
    now: Timestamp,
) -> Op<bool> {
    Box::new(move |tx| {
        end_exchange(
            tx,
            Ending::ByIds {
                request_id,
                execution_id,
            },
            Outcome::Failed,
            "Fleetgate restarted while this exchange was running".into(),
            now,
        )
    })
}

/// Which running exchange [`end_exchange`] ends.
enum Ending {
    /// One this process started: the kept copies save decoding when unchanged.
    Tracked(Box<RunningExchangeHandle>),
    /// One known only by its ids (restart recovery).
    ByIds {
        request_id: String,
        execution_id: String,
    },
}

fn is_running(r: &ProvisionRequest, execution_id: &str) -> bool {
    r.running
        .as_ref()
        .is_some_and(|x| x.execution_id == execution_id)
}

fn end_exchange(
    tx: &mut Tx<'_, '_>,
    ending: Ending,
    outcome: Outcome,
    message: std::borrow::Cow<'static, str>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let (mut r, execution) = match ending {
        Ending::Tracked(handle) => {
            let RunningExchangeHandle {
                request,
                request_bytes,
                execution,
                execution_bytes,
            } = *handle;
            let Some(raw) = tx.get_raw(Table::Requests, request.id.as_bytes())? else {
                return Ok(false);
            };
            let mut r = if raw == request_bytes {
                request
            } else {
                decode_keyed::<ProvisionRequest>(request.id.as_bytes(), &raw)?
            };
            // The running exchange is read afresh: it is kept apart from the request.
            r.running = None;
            r.restore_running(|k| tx.get(Table::RunningExchanges, k))?;
            if !is_running(&r, &execution.id) {
                return Ok(false);
            }
            let execution = match tx.get_raw(Table::ExecutionsById, execution.id.as_bytes())? {
                None => None,
                Some(raw) if raw == execution_bytes => Some(execution),
                Some(raw) => Some(decode_keyed::<Execution>(execution.id.as_bytes(), &raw)?),
            };
            (r, execution)
        }
        Ending::ByIds {
            request_id,
            execution_id,
        } => {
            let Some(r) = load_request(tx, &request_id)? else {
                return Ok(false);
            };
            if !is_running(&r, &execution_id) {
                return Ok(false);
            }
            let execution =
                tx.get_keyed::<Execution>(Table::ExecutionsById, execution_id.as_bytes())?;
            (r, execution)
        }
    };
    let previous = r.clone();
    if let Some(mut e) = execution {
        end_execution(&mut e, outcome, message.into_owned(), now);
        tx.put(Table::ExecutionsById, e.id.as_bytes().to_vec(), &e);
    }
    r.status = if outcome == Outcome::Completed {
        RequestStatus::Completed
    } else {
        RequestStatus::Failed
    };
    r.running = None;
    r.modified_on = now;
    put_request(tx, &r, Some(&previous), now);
    Ok(true)
}

/// Marks a device-connection entry CONNECTED or DISCONNECTED (creating it for a device that
/// connects without having been provisioned, under LOOSE coupling).
pub fn set_connection_status(
    account: String,
    client_id: String,
    status: ConnectionStatus,
    now: Timestamp,
) -> Op<()> {
    Box::new(move |tx| {
        let ck = key(&[&account, &client_id]);
        let mut c = tx
            .get_keyed::<DeviceConnection>(Table::DeviceConnections, &ck)?
            .unwrap_or_else(|| unprovisioned_connection(&account, &client_id));
        c.status = status;
        if status == ConnectionStatus::Connected {
            c.last_connected_on = Some(now);
        }
        tx.put(Table::DeviceConnections, ck, &c);
        Ok(())
    })
}

/// The connection entry of a device that connects without having been provisioned (LOOSE
/// coupling let it in with another user of its account).
fn unprovisioned_connection(account: &str, client_id: &str) -> DeviceConnection {
    DeviceConnection {
        account: account.to_string(),
        client_id: client_id.to_string(),
        coupling: Coupling::Inherited,
        reserved_user: None,
        status: ConnectionStatus::NeverConnected,
        last_connected_on: None,
        peer: None,
        protocol: None,
        last_authenticated_on: None,
    }
}
