//! Fleetgate's storage: the domain records (accounts, provision users, provision requests,
//! executions, device users, account users, device connections, registry entries with their
//! BIRTH facts, API tokens, batch jobs and their executions), the field rules
//! of the admin API applied to typed values ([`validate`]), the lifecycle rules of provision
//! requests, and their persistence in redb.
//!
//! It takes typed, validated values and never parses a wire format: the admin API turns its
//! JSON into [`RequestInput`] / [`AccountInput`], and `validate()` returns the specs the write
//! operations ([`ops`]) take. Its errors are [`StoreError`], which keeps redb's and serde_json's
//! errors as sources rather than strings.
//!
//! Writes go through one writer thread that groups the mutations of many callers into one
//! durable commit ([`Store::write`], [`Store::write_async`]); a caller is answered only after
//! the commit holding its mutation. Uniqueness rules are checked inside that write, so two racing
//! writers cannot both win. Reads use MVCC snapshots ([`Store::read`]).
//!
//! This crate owns no network code and never sees a secret in clear: callers hash passwords,
//! keys and tokens before handing them over.

pub mod audit;
pub mod backup;
pub mod broker;
pub mod engine;
pub mod ids;
pub mod jobs;
pub mod journal;
pub mod moves;
pub mod ops;
pub mod read;
pub mod records;
pub mod sizes;
mod space;
pub mod validate;

use std::path::Path;
use std::sync::Arc;

pub use engine::{CommitObserver, Tx};
pub use read::Reader;
pub use records::*;
pub use space::RESERVE;
pub use validate::{
    AccountInput, AccountSpec, AccountUserInput, AccountUserSpec, DeviceInput, DeviceSpec,
    EndpointInput, EndpointSpec, FieldError, RequestInput, RequestSpec, UserPatchInput,
    UserPatchSpec,
};

/// Errors of the store. Domain refusals carry field-level detail for the admin API.
///
/// Engine failures keep their cause (redb's or serde_json's error) behind an `Arc`: one failed
/// group commit answers every caller of the batch with the same error, so the error is `Clone`.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed (I/O, transaction, table, commit).
    #[error("storage error: {0}")]
    Db(#[source] Arc<redb::Error>),
    /// The writer thread could not be started.
    #[error("cannot start the writer thread: {0}")]
    Writer(#[source] Arc<std::io::Error>),
    /// A write was queued in a batch that failed before reaching it.
    #[error("the write transaction of the batch could not be opened")]
    BatchAborted,
    /// A stored record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(#[from] CorruptRecord),
    /// The addressed record does not exist (or is not visible to the caller).
    #[error("{0} not found")]
    NotFound(RecordKind),
    /// The change conflicts with the current state (HTTP 409).
    #[error("conflict: {}", join(.0))]
    Conflict(Vec<FieldError>),
    /// Input failed validation (HTTP 422).
    #[error("invalid: {}", join(.0))]
    Invalid(Vec<FieldError>),
    /// A precondition read outside the transaction changed before the write; read again and
    /// retry.
    #[error("stale precondition, retry")]
    Stale,
    /// The store is shutting down.
    #[error("store closed")]
    Closed,
    /// A backup could not be written.
    #[error("backup failed: {0}")]
    Backup(#[from] backup::BackupError),
    /// The data dir's filesystem is full (free space below the writer's reserve, or a write
    /// met ENOSPC): writes are refused until space returns, reads go on. Admin API 503,
    /// provisioning reply 500, CONNACK Server busy where a CONNECT needs a write.
    #[error("no space left on the data dir's filesystem")]
    Full,
}

/// The kind of an addressed record, named in [`StoreError::NotFound`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordKind {
    /// A target account.
    #[error("account")]
    Account,
    /// An account API token.
    #[error("token")]
    Token,
    /// A provision request.
    #[error("provision request")]
    ProvisionRequest,
    /// A device user or account user.
    #[error("user")]
    User,
    /// A registry entry.
    #[error("device")]
    Device,
    /// A known broker endpoint.
    #[error("endpoint")]
    Endpoint,
    /// A batch job.
    #[error("job")]
    Job,
}

/// Why a stored record could not be decoded.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CorruptRecord {
    /// The value is empty (not even a version byte).
    #[error("empty record")]
    Empty,
    /// The version byte is not one this build reads.
    #[error("unknown record version {0}")]
    UnknownVersion(u8),
    /// The JSON body does not decode into the record type.
    #[error("{0}")]
    Json(#[source] Arc<serde_json::Error>),
    /// A key does not have the parts the keys of its table have.
    #[error("malformed key")]
    Key,
}

impl From<serde_json::Error> for CorruptRecord {
    fn from(e: serde_json::Error) -> Self {
        CorruptRecord::Json(Arc::new(e))
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match &e {
            redb::Error::Io(io) if space::is_no_space(io) => StoreError::Full,
            _ => StoreError::Db(Arc::new(e)),
        }
    }
}

/// Every specific redb error converts through [`redb::Error`], so `?` works on each call.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::from(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CompactionError
);

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Writer(Arc::new(e))
    }
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl StoreError {
    /// A conflict on one field.
    pub fn conflict(field: &str, message: impl Into<String>) -> Self {
        StoreError::Conflict(vec![FieldError::new(field, message)])
    }
}

/// Options for [`Store::open`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// redb page cache in bytes (redb's own default is 1 GiB, too much for an edge box).
    pub cache_size: usize,
    /// fsync every commit. Off only for experiments; an acknowledged enrollment must be durable.
    pub durable: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_size: 64 * 1024 * 1024,
            durable: true,
        }
    }
}

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "fleetgate.redb";

/// redb's integrity check of the database file at `path` (which nothing else may have open,
/// e.g. after the server stopped): `Ok(true)` when every page and checksum is consistent.
pub fn check_integrity(path: &Path) -> Result<bool, StoreError> {
    let mut db = redb::Database::open(path)?;
    Ok(db.check_integrity()?)
}

/// The store: cheap to clone, shared by every listener.
#[derive(Clone)]
pub struct Store {
    engine: Arc<engine::Engine>,
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(
        path: &Path,
        options: &StoreOptions,
        observer: Option<CommitObserver>,
    ) -> Result<Store, StoreError> {
        let engine = engine::Engine::open(
            path,
            engine::EngineOptions {
                cache_size: options.cache_size,
                durable: options.durable,
                observer,
            },
        )?;
        Ok(Store {
            engine: Arc::new(engine),
        })
    }

    /// Closes the store for every clone: queued writes are committed, the writer stops and the
    /// database file is released, so it can be opened again at once. Later reads and writes
    /// answer [`StoreError::Closed`].
    pub fn close(&self) {
        self.engine.close();
    }

    /// The journal of changes to what the connect and topic decisions read (a replica's
    /// feed follows it).
    pub fn journal(&self) -> &journal::Journal {
        self.engine.journal()
    }

    /// Runs `f` in the next group commit without waiting for it, nor starting a commit for it
    /// alone: it rides the next batch (see [`engine::Engine::submit_lazy`]). For records
    /// nobody waits for, such as the audit log; a failure is logged as `what`.
    pub fn write_lazy<F>(&self, what: &'static str, f: F)
    where
        F: FnOnce(&mut Tx<'_, '_>) -> Result<(), StoreError> + Send + 'static,
    {
        self.engine.submit_lazy(what, f);
    }

    /// A consistent read view.
    pub fn read(&self) -> Result<Reader, StoreError> {
        Ok(Reader::new(self.engine.snapshot()?))
    }

    /// Runs `f` in the next group commit and blocks until that commit is durable. Must not be
    /// called from an async event loop (use [`Store::write_async`]).
    pub fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_, '_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.engine.submit(f, move |r| {
            let _ = tx.send(r);
        });
        rx.recv().unwrap_or(Err(StoreError::Closed))
    }

    /// [`Store::write_async`] for a write whose caller may not wait for it: a failure is also
    /// logged, as `what` (a full disk only by the store's own line, once a minute). Unlike
    /// [`Store::write_lazy`], it keeps its place in the order of the other writes.
    pub fn write_logged<F>(
        &self,
        what: &'static str,
        f: F,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + 'static + use<F>
    where
        F: FnOnce(&mut Tx<'_, '_>) -> Result<(), StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.engine.submit(f, move |r: Result<(), StoreError>| {
            if let Err(e) = &r
                && !matches!(e, StoreError::Full)
            {
                tracing::warn!(error = %e, what, "a write failed");
            }
            let _ = tx.send(r);
        });
        async move { rx.await.unwrap_or(Err(StoreError::Closed)) }
    }

    /// Runs `f` in the next group commit; the future resolves once that commit is durable.
    pub fn write_async<T, F>(
        &self,
        f: F,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> + 'static
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_, '_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.engine.submit(f, move |r| {
            let _ = tx.send(r);
        });
        async move { rx.await.unwrap_or(Err(StoreError::Closed)) }
    }
}
