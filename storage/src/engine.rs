//! The redb engine: tables, record codec, the group-commit writer thread, write contexts and
//! read snapshots.
//!
//! One writer thread owns every write. Callers submit closures; the thread takes every closure
//! waiting in its queue, runs them in one redb write transaction and commits once, then answers
//! each caller. A closure sees the effects of the closures before it in the same batch. A
//! closure that returns an error leaves nothing behind: its writes are staged in a private
//! overlay that is applied to the transaction only when the closure succeeds (redb's ephemeral
//! savepoints can only be taken before a table is opened, so they cannot isolate one closure of
//! a batch).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::journal::{ChangeKind, ChangedKey, Journal};
use crate::space::Space;
use crate::{CorruptRecord, StoreError};

/// Version byte of every record encoded today.
const RECORD_VERSION: u8 = 1;

/// Most closures one commit takes; bounds the latency of the first caller of a batch.
const MAX_BATCH: usize = 4096;

/// The tables. Keys are byte strings; composite keys join their parts with a 0 byte (validated
/// names never contain one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// name -> Account
    Accounts,
    /// username -> ProvisionUser
    ProvisionUsers,
    /// id -> ProvisionRequest
    Requests,
    /// client id -> id of its open request
    OpenRequestByClient,
    /// client id, request id -> ()
    RequestsByClient,
    /// account, request id -> ()
    RequestsByAccount,
    /// account, status, request id -> ()
    RequestsByAccountStatus,
    /// request id, execution id -> Execution: the layout before issue 17's second turn, read
    /// only to move its entries to [`Table::ExecutionsById`] when the store opens
    Executions,
    /// username -> DeviceUser
    DeviceUsers,
    /// account, username -> ()
    UsersByAccount,
    /// account, client id -> DeviceConnection
    DeviceConnections,
    /// account, client id -> Device
    Devices,
    /// id -> ApiToken
    Tokens,
    /// key -> raw value
    Meta,
    /// broker space, topic -> StoredMessage
    Retained,
    /// broker space, account, client id -> StoredSession
    BrokerSessions,
    /// broker space, account, client id, sequence (16 hex digits) -> StoredMessage: what a
    /// persistent session has been given and not yet acknowledged
    BrokerQueue,
    /// username -> AccountUser
    AccountUsers,
    /// account, username -> ()
    AccountUsersByAccount,
    /// name -> BrokerEndpoint
    Endpoints,
    /// account, job id -> Job
    Jobs,
    /// job id, client id -> JobTarget
    JobTargets,
    /// job id, client id, execution id -> JobExecution
    JobExecutions,
    /// audit key (time, sequence) -> AuditEntry; append-only, oldest pruned
    Audit,
    /// account, audit key -> ()
    AuditByAccount,
    /// source account, client id, move id -> Move
    Moves,
    /// request id -> RunningExchange: the exchange holding a `RUNNING` request, kept out of
    /// the request record so that the record keeps its size through its lifecycle
    RunningExchanges,
    /// execution id -> Execution. Ids grow in commit order, so every execution is appended
    /// past the end of the tree and the leaves stay packed; a running execution is written
    /// with room for its end ([`encode_with_room`]).
    ExecutionsById,
    /// request id, execution id -> ()
    ExecutionsByRequest,
}

impl Table {
    /// Every table (a backup copies them all).
    pub const ALL: [Table; 29] = [
        Table::Accounts,
        Table::ProvisionUsers,
        Table::Requests,
        Table::OpenRequestByClient,
        Table::RequestsByClient,
        Table::RequestsByAccount,
        Table::RequestsByAccountStatus,
        Table::Executions,
        Table::DeviceUsers,
        Table::UsersByAccount,
        Table::DeviceConnections,
        Table::Devices,
        Table::Tokens,
        Table::Meta,
        Table::Retained,
        Table::BrokerSessions,
        Table::BrokerQueue,
        Table::AccountUsers,
        Table::AccountUsersByAccount,
        Table::Endpoints,
        Table::Jobs,
        Table::JobTargets,
        Table::JobExecutions,
        Table::Audit,
        Table::AuditByAccount,
        Table::Moves,
        Table::RunningExchanges,
        Table::ExecutionsById,
        Table::ExecutionsByRequest,
    ];

    /// Tables added after stores and backups were first written: a backup taken before may
    /// lack them (a store opening creates every missing table).
    pub const ADDED_LATER: [Table; 3] = [
        Table::RunningExchanges,
        Table::ExecutionsById,
        Table::ExecutionsByRequest,
    ];

    pub(crate) fn definition(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(match self {
            Table::Accounts => "accounts",
            Table::ProvisionUsers => "provision_users",
            Table::Requests => "requests",
            Table::OpenRequestByClient => "open_request_by_client",
            Table::RequestsByClient => "requests_by_client",
            Table::RequestsByAccount => "requests_by_account",
            Table::RequestsByAccountStatus => "requests_by_account_status",
            Table::Executions => "executions",
            Table::DeviceUsers => "device_users",
            Table::UsersByAccount => "users_by_account",
            Table::DeviceConnections => "device_connections",
            Table::Devices => "devices",
            Table::Tokens => "tokens",
            Table::Meta => "meta",
            Table::Retained => "retained",
            Table::BrokerSessions => "broker_sessions",
            Table::BrokerQueue => "broker_queue",
            Table::AccountUsers => "account_users",
            Table::AccountUsersByAccount => "account_users_by_account",
            Table::Endpoints => "endpoints",
            Table::Jobs => "jobs",
            Table::JobTargets => "job_targets",
            Table::JobExecutions => "job_executions",
            Table::Audit => "audit",
            Table::AuditByAccount => "audit_by_account",
            Table::Moves => "moves",
            Table::RunningExchanges => "running_exchanges",
            Table::ExecutionsById => "executions_by_id",
            Table::ExecutionsByRequest => "executions_by_request",
        })
    }
}

/// Joins key parts with a 0 byte.
pub fn key(parts: &[&str]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p.as_bytes());
    }
    k
}

/// The last part of a composite key.
pub fn last_part(k: &[u8]) -> &str {
    let start = k.iter().rposition(|b| *b == 0).map_or(0, |p| p + 1);
    std::str::from_utf8(&k[start..]).unwrap_or("")
}

/// Encodes a record: version byte + JSON.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    serde_json::to_writer(&mut out, value).expect("records serialise to JSON");
    out
}

/// Encodes a record that will be rewritten once, larger (a running execution and its end):
/// spaces after the JSON fill it to `room` bytes, so that the rewrite keeps its size and
/// redb patches it in place instead of splitting a packed leaf. JSON allows the spaces.
pub fn encode_with_room<T: Serialize>(value: &T, room: usize) -> Vec<u8> {
    let mut out = encode(value);
    if out.len() < room {
        out.resize(room, b' ');
    }
    out
}

/// The JSON body of a record after its version byte.
fn body(bytes: &[u8]) -> Result<&[u8], StoreError> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, body)) => Ok(body),
        Some((v, _)) => Err(CorruptRecord::UnknownVersion(*v).into()),
        None => Err(CorruptRecord::Empty.into()),
    }
}

/// Decodes a record written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    Ok(serde_json::from_slice(body(bytes)?).map_err(CorruptRecord::from)?)
}

/// A record whose stored form leaves out what its key holds (issue 17: a request's id, a
/// registry entry's account and client ID, ...). It is read only together with its key
/// ([`decode_keyed`], [`Tx::get_keyed`], [`Snapshot::get_keyed`]), which puts those fields
/// back; such a type implements no `Deserialize` of its own, so that it cannot be read
/// without its key by mistake. Records written before still hold those fields and read the
/// same.
pub trait Keyed: Sized {
    /// Reads the JSON of the record stored under `key`.
    fn read_keyed(key: &[u8], json: &mut JsonReader<'_>) -> serde_json::Result<Self>;
}

/// What [`Keyed::read_keyed`] reads from.
pub type JsonReader<'a> = serde_json::Deserializer<serde_json::de::SliceRead<'a>>;

/// Decodes a [`Keyed`] record stored under `key`.
pub fn decode_keyed<T: Keyed>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let mut json = serde_json::Deserializer::from_slice(body(bytes)?);
    let value = T::read_keyed(key, &mut json).map_err(CorruptRecord::from)?;
    json.end().map_err(CorruptRecord::from)?;
    Ok(value)
}

/// A key part as text (keys are built from validated UTF-8 names).
pub fn text(part: &[u8]) -> String {
    String::from_utf8_lossy(part).into_owned()
}

/// The two parts of a key `a\0b`; `b` is empty when there is no 0 byte.
pub fn two_parts(k: &[u8]) -> (String, String) {
    let mut parts = k.splitn(2, |b| *b == 0);
    let first = text(parts.next().unwrap_or_default());
    (first, text(parts.next().unwrap_or_default()))
}

/// What the decisions read of a stored device connection (its field names as
/// [`crate::DeviceConnection`] stores them, and as records written before issue 17 did).
#[derive(serde::Deserialize, PartialEq)]
struct CouplingOf {
    #[serde(rename = "cp", alias = "coupling")]
    coupling: crate::Coupling,
    #[serde(rename = "r", alias = "reservedUser", default)]
    reserved_user: Option<String>,
}

/// Whether two encoded device connections couple their client ID the same way (an entry
/// that does not decode counts as changed).
fn same_coupling(old: &[u8], new: &[u8]) -> bool {
    match (decode::<CouplingOf>(old), decode::<CouplingOf>(new)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Observes each durable commit: batch size and commit latency (fed to metrics).
pub type CommitObserver = Arc<dyn Fn(usize, Duration) + Send + Sync>;

type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Job = Box<dyn FnOnce(Option<&mut Tx<'_, '_>>) -> Reply + Send>;

/// The open database and its writer thread, until [`Engine::close`].
pub struct Engine {
    /// `None` once closed, or while the writer reopens the database after a write met a full
    /// disk. Readers clone the `Arc` only for as long as they open a snapshot.
    db: Arc<RwLock<Option<Arc<redb::Database>>>>,
    /// [`Engine::close`] was called (tells `Closed` from a reopen in progress).
    closed: AtomicBool,
    /// `None` once closed: the writer finishes the queued jobs and exits.
    jobs: RwLock<Option<Sender<Job>>>,
    /// `None` once closed: writes that ride the next batch ([`Engine::submit_lazy`]).
    lazy: RwLock<Option<Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    journal: Arc<Journal>,
}

/// Options for [`Engine::open`].
#[derive(Clone)]
pub struct EngineOptions {
    /// redb page cache size in bytes.
    pub cache_size: usize,
    /// Durable commits (fsync) when true.
    pub durable: bool,
    /// Called after each commit.
    pub observer: Option<CommitObserver>,
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("cache_size", &self.cache_size)
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens or creates the database file, creates missing tables and starts the writer.
    pub fn open(path: &Path, options: EngineOptions) -> Result<Engine, StoreError> {
        let db = open_db(path, &options)?;
        let txn = db.begin_write()?;
        for t in Table::ALL {
            txn.open_table(t.definition())?;
        }
        move_legacy_executions(&txn)?;
        txn.commit()?;
        let shared = Arc::new(RwLock::new(Some(Arc::new(db))));
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let (lazy_tx, lazy_rx) = crossbeam_channel::unbounded::<Job>();
        let writer = Writer {
            shared: shared.clone(),
            path: path.to_path_buf(),
            space: Space::new(path),
            options,
            journal: Arc::new(Journal::default()),
        };
        let journal = writer.journal.clone();
        let writer = std::thread::Builder::new()
            .name("fleetgate-writer".into())
            .spawn(move || writer.run(&rx, &lazy_rx))?;
        Ok(Engine {
            db: shared,
            closed: AtomicBool::new(false),
            jobs: RwLock::new(Some(tx)),
            lazy: RwLock::new(Some(lazy_tx)),
            writer: Mutex::new(Some(writer)),
            journal,
        })
    }

    /// Submits a write; `done` is called with its result after the batch holding it committed
    /// (or with the error that made it fail).
    pub fn submit<T, F, D>(&self, f: F, done: D)
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_, '_>) -> Result<T, StoreError> + Send + 'static,
        D: FnOnce(Result<T, StoreError>) + Send + 'static,
    {
        enqueue(&self.jobs, job(f, done));
    }

    /// Submits a write nobody waits for (the audit log): it does not start a commit of its
    /// own but rides the next batch, or commits after [`LAZY_WAIT`] when no other write comes.
    /// So it adds no fsync to a busy store and at most one a `LAZY_WAIT` to an idle one. A
    /// failure is logged.
    pub fn submit_lazy<F>(&self, what: &'static str, f: F)
    where
        F: FnOnce(&mut Tx<'_, '_>) -> Result<(), StoreError> + Send + 'static,
    {
        enqueue(
            &self.lazy,
            job(f, move |r| {
                if let Err(e) = r {
                    tracing::warn!(error = %e, what, "a background write failed");
                }
            }),
        );
    }

    /// The change journal of the records the decisions read.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// A consistent read snapshot.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let db = db.as_ref().ok_or_else(|| {
            if self.closed.load(Ordering::Acquire) {
                StoreError::Closed
            } else {
                // The writer is reopening the database after a full disk.
                StoreError::Full
            }
        })?;
        Ok(Snapshot {
            txn: db.begin_read()?,
        })
    }

    /// Closes the store: the writer commits what is queued and stops, then the database is
    /// released, whoever still holds the engine. Later reads and writes answer `Closed`.
    /// Snapshots still open keep the file until they are dropped. Idempotent.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Closing the channels lets the writer finish the queued jobs and exit.
        for queue in [&self.lazy, &self.jobs] {
            queue.write().unwrap_or_else(PoisonError::into_inner).take();
        }
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = writer {
            let _ = w.join();
        }
        self.db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.close();
    }
}

/// A job answering `done` once its batch committed (or failed).
fn job<T, F, D>(f: F, done: D) -> Job
where
    T: Send + 'static,
    F: FnOnce(&mut Tx<'_, '_>) -> Result<T, StoreError> + Send + 'static,
    D: FnOnce(Result<T, StoreError>) + Send + 'static,
{
    Box::new(move |tx: Option<&mut Tx<'_, '_>>| -> Reply {
        let Some(tx) = tx else {
            // The batch could not even begin: answer with the batch's error.
            return Box::new(move |commit: Result<(), StoreError>| {
                done(Err(commit.err().unwrap_or(StoreError::BatchAborted)));
            });
        };
        match tx.run(f) {
            Ok(value) => Box::new(move |commit: Result<(), StoreError>| {
                done(commit.map(|()| value));
            }),
            Err(e) => Box::new(move |_| done(Err(e))),
        }
    })
}

/// Sends `job` to the writer through `queue`, or answers it `Closed` when the store is closed.
fn enqueue(queue: &RwLock<Option<Sender<Job>>>, job: Job) {
    let queue = queue.read().unwrap_or_else(PoisonError::into_inner);
    let refused = match queue.as_ref() {
        Some(sender) => sender.send(job).err().map(|e| e.0),
        None => Some(job),
    };
    if let Some(job) = refused {
        // Closed: the job answers its caller with `Closed` instead of running.
        job(None)(Err(StoreError::Closed));
    }
}

/// How long a lazy write ([`Engine::submit_lazy`]) waits for a write that commits anyway.
pub const LAZY_WAIT: Duration = Duration::from_secs(1);

/// Waits for the next batch's first jobs: a write that commits, or a lazy write followed by
/// [`LAZY_WAIT`] for company. `false` once both queues are closed and empty.
fn first_jobs(rx: &Receiver<Job>, lazy: &Receiver<Job>, batch: &mut Vec<Job>) -> bool {
    crossbeam_channel::select! {
        recv(rx) -> job => match job {
            Ok(job) => batch.push(job),
            // Closed: the lazy writes left commit in a last batch.
            Err(_) => batch.extend(lazy.try_iter()),
        },
        recv(lazy) -> job => match job {
            Ok(job) => {
                batch.push(job);
                if let Ok(job) = rx.recv_timeout(LAZY_WAIT) {
                    batch.push(job);
                }
            }
            // The lazy queue closes first at shutdown: wait on the other alone.
            Err(_) => {
                if let Ok(job) = rx.recv() {
                    batch.push(job);
                }
            }
        },
    }
    !batch.is_empty()
}

/// Moves the executions of a store written before issue 17's second turn
/// ([`Table::Executions`], keyed by request and execution id, in the order requests were
/// created rather than the order executions were written) to [`Table::ExecutionsById`] and
/// its index, once, when the store opens. The values move as they are: the keyed decode reads
/// the fields they still hold.
fn move_legacy_executions(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let legacy = txn.open_table(Table::Executions.definition())?;
    if legacy.is_empty()? {
        return Ok(());
    }
    {
        let mut by_id = txn.open_table(Table::ExecutionsById.definition())?;
        let mut by_request = txn.open_table(Table::ExecutionsByRequest.definition())?;
        for item in legacy.iter()? {
            let (k, v) = item?;
            by_id.insert(last_part(k.value()).as_bytes(), v.value())?;
            by_request.insert(k.value(), &[][..])?;
        }
    }
    drop(legacy);
    txn.delete_table(Table::Executions.definition())?;
    txn.open_table(Table::Executions.definition())?;
    Ok(())
}

fn open_db(path: &Path, options: &EngineOptions) -> Result<redb::Database, StoreError> {
    Ok(redb::Database::builder()
        .set_cache_size(options.cache_size)
        .create(path)?)
}

/// The writer thread's state.
struct Writer {
    /// The engine's handle on the database, taken away while it is reopened.
    shared: Arc<RwLock<Option<Arc<redb::Database>>>>,
    path: PathBuf,
    space: Space,
    options: EngineOptions,
    journal: Arc<Journal>,
}

impl Writer {
    fn run(mut self, rx: &Receiver<Job>, lazy: &Receiver<Job>) {
        let mut db = self
            .shared
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut batch: Vec<Job> = Vec::new();
        while first_jobs(rx, lazy, &mut batch) {
            while batch.len() < MAX_BATCH {
                match rx.try_recv().or_else(|_| lazy.try_recv()) {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let size = batch.len();
            let started = Instant::now();
            if db.is_none() {
                db = self.reopen();
            }
            let ready = self
                .space
                .check()
                .and_then(|()| db.clone().ok_or(StoreError::Full));
            let ran_in_redb = ready.is_ok();
            let (replies, result, changed) = match ready {
                Ok(d) => run_batch(&d, self.options.durable, batch.drain(..)),
                // Refused without touching redb: each job answers with the refusal.
                Err(e) => (
                    batch.drain(..).map(|job| job(None)).collect(),
                    Err(e),
                    Vec::new(),
                ),
            };
            if let Some(observer) = &self.options.observer {
                observer(size, started.elapsed());
            }
            match &result {
                Ok(()) => {
                    self.space.committed();
                    // Before the replies: a caller that saw its write acknowledged finds it in
                    // the journal.
                    self.journal.record(changed);
                }
                Err(StoreError::Full) => {
                    self.space.refused(size);
                    if ran_in_redb {
                        // redb latched its file after the failed write: open it again (once
                        // every snapshot is gone) before the next batch.
                        db = None;
                        self.shared
                            .write()
                            .unwrap_or_else(PoisonError::into_inner)
                            .take();
                    }
                }
                Err(_) => {}
            }
            for reply in replies {
                reply(result.clone());
            }
        }
    }

    /// Opens the database again after a write met a full disk; `None` (and the next batch
    /// refused) while that fails, e.g. while a snapshot still holds the old handle.
    fn reopen(&mut self) -> Option<Arc<redb::Database>> {
        self.space.check().ok()?;
        let db = Arc::new(open_db(&self.path, &self.options).ok()?);
        *self.shared.write().unwrap_or_else(PoisonError::into_inner) = Some(db.clone());
        tracing::warn!("the database was opened again after a write met a full disk");
        Some(db)
    }
}

/// The replies of a batch, its commit's result and the journal keys it changed.
type BatchOutcome = (Vec<Reply>, Result<(), StoreError>, Vec<ChangedKey>);

fn run_batch(db: &redb::Database, durable: bool, jobs: impl Iterator<Item = Job>) -> BatchOutcome {
    let mut replies = Vec::new();
    let mut txn = match db.begin_write() {
        Ok(t) => t,
        Err(e) => {
            let err = StoreError::from(e);
            for job in jobs {
                // Each job still answers its caller, with the failure of the batch.
                replies.push(job(None));
            }
            return (replies, Err(err), Vec::new());
        }
    };
    if !durable {
        let _ = txn.set_durability(redb::Durability::None);
    }
    let mut result = Ok(());
    let changed;
    {
        let mut tables = match Tables::open(&txn) {
            Ok(t) => t,
            Err(e) => {
                for job in jobs {
                    replies.push(job(None));
                }
                return (replies, Err(e), Vec::new());
            }
        };
        for job in jobs {
            let mut tx = Tx {
                tables: &mut tables,
                staged: BTreeMap::new(),
                failed: None,
            };
            replies.push(job(Some(&mut tx)));
            if let Some(e) = tx.failed {
                result = Err(e);
            }
        }
        changed = tables.changed;
    }
    if result.is_ok() {
        result = txn.commit().map_err(StoreError::from);
    }
    (replies, result, changed)
}

struct Tables<'txn> {
    open: BTreeMap<Table, redb::Table<'txn, &'static [u8], &'static [u8]>>,
    /// The journal keys the applied closures changed, in order.
    changed: Vec<ChangedKey>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn redb::WriteTransaction) -> Result<Self, StoreError> {
        let mut open = BTreeMap::new();
        for t in Table::ALL {
            open.insert(t, txn.open_table(t.definition())?);
        }
        Ok(Tables {
            open,
            changed: Vec::new(),
        })
    }

    // `open` opened every table of `Table::ALL`, so a lookup cannot miss.
    fn get(&self, table: Table) -> &redb::Table<'txn, &'static [u8], &'static [u8]> {
        &self.open[&table]
    }

    fn get_mut(&mut self, table: Table) -> &mut redb::Table<'txn, &'static [u8], &'static [u8]> {
        self.open
            .get_mut(&table)
            .expect("Tables::open opens every table")
    }
}

/// A write context: reads see the batch so far plus this closure's own staged writes; writes
/// are staged and reach the transaction only if the closure succeeds.
pub struct Tx<'t, 'txn> {
    tables: &'t mut Tables<'txn>,
    staged: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>,
    failed: Option<StoreError>,
}

impl Tx<'_, '_> {
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let value = f(self)?;
        let staged = std::mem::take(&mut self.staged);
        for ((table, k), v) in staged {
            let t = self.tables.get_mut(table);
            // Whether a key existed before and after: redb hands the old value back for free.
            // For a device connection, also whether what the decisions read of it (coupling,
            // reserved user) stayed the same.
            let kind = ChangeKind::of(table);
            let r = match v {
                Some(v) => t.insert(k.as_slice(), v.as_slice()).map(|old| {
                    let same = kind == Some(ChangeKind::DeviceConnection)
                        && old.as_ref().is_some_and(|o| same_coupling(o.value(), &v));
                    (old.is_some(), true, same)
                }),
                None => t
                    .remove(k.as_slice())
                    .map(|old| (old.is_some(), false, false)),
            };
            let (existed, exists, same_decision) = match r {
                Ok(e) => e,
                Err(e) => {
                    // A storage error half-way through applying: the whole batch must not
                    // commit.
                    let e = StoreError::from(e);
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            };
            match kind {
                // The decisions read only a registry entry's existence; its status and BIRTH
                // facts change on every connect and must not flood the journal.
                Some(ChangeKind::Device) if existed == exists => {}
                // Nor a connection entry's status, peer and times: only its coupling and
                // reserved user.
                Some(ChangeKind::DeviceConnection) if same_decision => {}
                // Deleting what was not there changes nothing.
                Some(_) if !existed && !exists => {}
                Some(kind) => self.tables.changed.push(ChangedKey::from_raw(kind, k)),
                None => {}
            }
        }
        Ok(value)
    }

    /// Reads a raw value.
    pub fn get_raw(&self, table: Table, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.staged.get(&(table, k.to_vec())) {
            return Ok(v.clone());
        }
        let t = self.tables.get(table);
        Ok(t.get(k)?.map(|g| g.value().to_vec()))
    }

    /// Reads and decodes a record.
    pub fn get<T: DeserializeOwned>(
        &self,
        table: Table,
        k: &[u8],
    ) -> Result<Option<T>, StoreError> {
        self.get_raw(table, k)?.map(|b| decode(&b)).transpose()
    }

    /// Reads and decodes a [`Keyed`] record.
    pub fn get_keyed<T: Keyed>(&self, table: Table, k: &[u8]) -> Result<Option<T>, StoreError> {
        self.get_raw(table, k)?
            .map(|b| decode_keyed(k, &b))
            .transpose()
    }

    /// Stages a raw write.
    pub fn put_raw(&mut self, table: Table, k: Vec<u8>, v: Vec<u8>) {
        self.staged.insert((table, k), Some(v));
    }

    /// Stages an encoded record write.
    pub fn put<T: Serialize>(&mut self, table: Table, k: Vec<u8>, v: &T) {
        self.put_raw(table, k, encode(v));
    }

    /// Stages an index entry (empty value).
    pub fn put_index(&mut self, table: Table, k: Vec<u8>) {
        self.put_raw(table, k, Vec::new());
    }

    /// Stages a delete.
    pub fn delete(&mut self, table: Table, k: Vec<u8>) {
        self.staged.insert((table, k), None);
    }

    /// Entries in `table` as the batch sees them (committed + earlier closures of the batch).
    pub fn len(&self, table: Table) -> Result<u64, StoreError> {
        Ok(self.tables.get(table).len()?)
    }

    /// The first `limit` keys of `table` as the batch sees them, in order.
    pub fn first_keys(&self, table: Table, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::with_capacity(limit);
        for item in self.tables.get(table).iter()?.take(limit) {
            out.push(item?.0.value().to_vec());
        }
        Ok(out)
    }

    /// The last key of `table` as the batch sees it.
    pub fn last_key(&self, table: Table) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tables
            .get(table)
            .last()?
            .map(|(k, _)| k.value().to_vec()))
    }

    /// Keys with the given prefix as the batch sees them (committed + earlier closures of the
    /// batch), in order. Staged writes of the running closure are not included.
    pub fn keys_with_prefix(
        &self,
        table: Table,
        prefix: &[u8],
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let t = self.tables.get(table);
        let mut out = Vec::new();
        for item in t.range(prefix..)? {
            let (k, _) = item?;
            let k = k.value();
            if !k.starts_with(prefix) {
                break;
            }
            out.push(k.to_vec());
        }
        Ok(out)
    }
}

/// A consistent read view (MVCC snapshot).
pub struct Snapshot {
    pub(crate) txn: redb::ReadTransaction,
}

impl Snapshot {
    fn table(
        &self,
        table: Table,
    ) -> Result<redb::ReadOnlyTable<&'static [u8], &'static [u8]>, StoreError> {
        Ok(self.txn.open_table(table.definition())?)
    }

    /// Reads and decodes a record.
    pub fn get<T: DeserializeOwned>(
        &self,
        table: Table,
        k: &[u8],
    ) -> Result<Option<T>, StoreError> {
        let t = self.table(table)?;
        let v = t.get(k)?;
        v.map(|g| decode(g.value())).transpose()
    }

    /// Reads and decodes a [`Keyed`] record.
    pub fn get_keyed<T: Keyed>(&self, table: Table, k: &[u8]) -> Result<Option<T>, StoreError> {
        let t = self.table(table)?;
        let v = t.get(k)?;
        v.map(|g| decode_keyed(k, g.value())).transpose()
    }

    /// Reads a raw value.
    pub fn get_raw(&self, table: Table, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.table(table)?;
        Ok(t.get(k)?.map(|g| g.value().to_vec()))
    }

    /// Visits entries whose key starts with `prefix`, from `start` (inclusive) on, in key
    /// order, until `visit` returns false.
    pub fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let t = self.table(table)?;
        let from = if start > prefix { start } else { prefix };
        for item in t.range(from..)? {
            let (k, v) = item?;
            if !k.value().starts_with(prefix) {
                break;
            }
            if !visit(k.value(), v.value())? {
                break;
            }
        }
        Ok(())
    }

    /// Visits every entry whose key starts with `prefix`, in reverse key order, until `visit`
    /// returns false.
    pub fn scan_rev(
        &self,
        table: Table,
        prefix: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let t = self.table(table)?;
        let mut end = prefix.to_vec();
        end.push(0xff);
        for item in t.range(prefix..end.as_slice())?.rev() {
            let (k, v) = item?;
            if !visit(k.value(), v.value())? {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_join_and_split() {
        let k = key(&["acme", "dev-1"]);
        assert_eq!(k, b"acme\0dev-1");
        assert_eq!(last_part(&k), "dev-1");
        assert_eq!(last_part(b"single"), "single");
    }

    /// A connection entry rewritten in the compact form keeps its coupling for the journal.
    #[test]
    fn coupling_reads_in_both_forms() {
        let old = [
            &[RECORD_VERSION][..],
            br#"{"account":"a","clientId":"c","coupling":"STRICT","reservedUser":"c@a","status":"NEVER_CONNECTED","lastConnectedOn":null}"#,
        ]
        .concat();
        let mut connection: crate::DeviceConnection = decode_keyed(b"a\0c", &old).unwrap();
        assert!(same_coupling(&old, &encode(&connection)));
        connection.reserved_user = None;
        assert!(!same_coupling(&old, &encode(&connection)));
    }

    #[test]
    fn codec_is_versioned() {
        let bytes = encode(&vec![1, 2]);
        assert_eq!(bytes[0], RECORD_VERSION);
        assert_eq!(decode::<Vec<i32>>(&bytes).unwrap(), vec![1, 2]);
        assert!(matches!(
            decode::<Vec<i32>>(&[9, b'1']),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode::<Vec<i32>>(&[]),
            Err(StoreError::Corrupt(_))
        ));
    }
}
