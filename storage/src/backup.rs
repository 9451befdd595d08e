//! Backups of the whole store, taken while serving, and their offline restore.
//!
//! A backup is a redb file of its own: one read transaction of the live store (an MVCC
//! snapshot: every write committed before it, none after) copied table by table into a new
//! database, plus a marker in its `meta` table. Writers are never blocked: redb keeps the
//! snapshot's pages until the copy ends. Restoring checks the file (redb's integrity check, the
//! marker, every table) on a private copy before anything is written into the data dir.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable};

use crate::engine::Table;
use crate::records::Timestamp;
use crate::{DB_FILE, Store, StoreError};

/// Key of the marker in the backup's `meta` table; its value is the time of the snapshot.
pub const MARKER: &[u8] = b"fleetgate.backup";

/// Why a backup could not be taken or restored.
#[derive(Clone, Debug, thiserror::Error)]
pub enum BackupError {
    /// A file or directory could not be created, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Arc<io::Error>,
    },
    /// The restore target exists and is not an empty directory.
    #[error("{} is not an empty directory", .0.display())]
    NotEmpty(PathBuf),
    /// The file is not a redb database, or lacks Fleetgate's tables or the backup marker.
    #[error("not a Fleetgate backup: {0}")]
    NotABackup(#[source] Arc<redb::Error>),
    /// The file is a redb database without the backup marker (a store, not a backup).
    #[error("not a Fleetgate backup: no backup marker")]
    NoMarker,
    /// redb's integrity check found damage.
    #[error("the backup fails redb's integrity check")]
    Damaged,
}

impl BackupError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
        move |e| BackupError::Io {
            path: path.to_path_buf(),
            source: Arc::new(e),
        }
    }

    fn redb(e: impl Into<redb::Error>) -> BackupError {
        BackupError::NotABackup(Arc::new(e.into()))
    }
}

/// Creates `path` (which must not exist) with mode 0600.
fn create_private(path: &Path) -> Result<File, BackupError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(BackupError::io(path))
}

impl Store {
    /// Writes a consistent snapshot of the whole store to `path`, a new file (mode 0600),
    /// marked as a backup taken at `now`. Blocking: call it off the event loop.
    pub fn backup_to(&self, path: &Path, now: Timestamp) -> Result<(), StoreError> {
        let snapshot = self.engine.snapshot()?;
        drop(create_private(path)?);
        let db = redb::Database::builder()
            .set_cache_size(16 << 20)
            .create(path)?;
        let txn = db.begin_write()?;
        for table in Table::ALL {
            let source = snapshot.txn.open_table(table.definition())?;
            let mut copy = txn.open_table(table.definition())?;
            for item in source.iter()? {
                let (k, v) = item?;
                copy.insert(k.value(), v.value())?;
            }
        }
        txn.open_table(Table::Meta.definition())?
            .insert(MARKER, now.to_rfc3339().as_bytes())?;
        txn.commit()?;
        Ok(())
    }
}

/// What [`restore`] restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The database file written.
    pub file: PathBuf,
    /// When the backup's snapshot was taken (the marker's text).
    pub taken: String,
}

/// Checks the backup at `path` in place: redb's integrity check (which needs a database it may
/// write, so callers pass a private copy), every table, the marker. Returns the marker's text.
fn check(path: &Path) -> Result<String, BackupError> {
    let mut db = redb::Database::open(path).map_err(BackupError::redb)?;
    if !db.check_integrity().map_err(BackupError::redb)? {
        return Err(BackupError::Damaged);
    }
    let txn = db.begin_read().map_err(BackupError::redb)?;
    for table in Table::ALL {
        match txn.open_table(table.definition()) {
            // A backup taken before this table existed: the store creates it when it opens.
            Err(redb::TableError::TableDoesNotExist(_)) if Table::ADDED_LATER.contains(&table) => {}
            opened => {
                opened.map_err(BackupError::redb)?;
            }
        }
    }
    let meta = txn
        .open_table(Table::Meta.definition())
        .map_err(BackupError::redb)?;
    let marker = meta.get(MARKER).map_err(BackupError::redb)?;
    marker
        .map(|m| String::from_utf8_lossy(m.value()).into_owned())
        .ok_or(BackupError::NoMarker)
}

/// Restores the backup `from` into `data_dir`, which must not exist or be empty: the file is
/// first copied to a private temporary file and checked there ([`check`]); only a sound
/// backup is then written, as `DATA_DIR/fleetgate.redb` (0600) in a 0700 directory. Offline:
/// no server may use `data_dir`.
pub fn restore(from: &Path, data_dir: &Path) -> Result<Restored, BackupError> {
    match std::fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty(data_dir.to_path_buf()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(BackupError::io(data_dir)(e)),
    }
    let scratch = std::env::temp_dir().join(format!(
        "fleetgate-restore-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    ));
    let checked = copy_private(from, &scratch).and_then(|()| check(&scratch));
    let result = checked.and_then(|taken| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(BackupError::io(data_dir))?;
        let file = data_dir.join(DB_FILE);
        copy_private(&scratch, &file)?;
        Ok(Restored { file, taken })
    });
    let _ = std::fs::remove_file(&scratch);
    result
}

/// Copies `from` to the new file `to` (mode 0600) and syncs it.
fn copy_private(from: &Path, to: &Path) -> Result<(), BackupError> {
    let mut source = File::open(from).map_err(BackupError::io(from))?;
    let mut dest = create_private(to)?;
    io::copy(&mut source, &mut dest).map_err(BackupError::io(to))?;
    dest.sync_all().map_err(BackupError::io(to))
}
