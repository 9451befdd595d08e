//! Disk-full handling of the writer: the free space of the data dir's filesystem is checked
//! before every batch, and below [`RESERVE`] the batch is refused with [`StoreError::Full`]
//! without touching redb. redb latches its file after a failed write (every later operation
//! answers `PreviousIo` until the database is opened again), so refusing early keeps the store
//! readable and lets writes resume by themselves once space returns. A write that still meets
//! ENOSPC (space taken between the check and the commit) is mapped to `Full` too, and the
//! engine reopens the database before the next batch.
//!
//! Refusals are logged at most once a minute, with how many writes were refused since the last
//! line, so that a full disk does not also flood the log (which often lives on the same disk).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::StoreError;

/// Free bytes below which writes are refused: room for a batch's pages and redb's own
/// bookkeeping, so that the database never meets a full disk in the middle of a commit.
pub const RESERVE: u64 = 2 * 1024 * 1024;

/// How often a full disk is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Whether a commit error is the filesystem being full (ENOSPC, or EDQUOT for a quota).
pub(crate) fn is_no_space(e: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// The writer's view of the data dir's free space and of the refusals it made.
pub(crate) struct Space {
    dir: PathBuf,
    /// Writes refused since the last log line.
    refused: u64,
    last_log: Option<Instant>,
    /// Refusing now (a "space is back" line is logged when that ends).
    full: bool,
}

impl Space {
    pub(crate) fn new(db_file: &Path) -> Space {
        Space {
            dir: db_file
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf(),
            refused: 0,
            last_log: None,
            full: false,
        }
    }

    /// Free bytes for an unprivileged writer; `None` if the filesystem cannot tell (then the
    /// write goes ahead, and ENOSPC still maps to `Full`).
    fn available(&self) -> Option<u64> {
        let s = rustix::fs::statvfs(&self.dir).ok()?;
        Some(s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// `Err(Full)` when the free space is below [`RESERVE`].
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        match self.available() {
            Some(free) if free < RESERVE => Err(StoreError::Full),
            _ => Ok(()),
        }
    }

    /// `n` writes were refused for want of space.
    pub(crate) fn refused(&mut self, n: usize) {
        self.full = true;
        self.refused += n as u64;
        if self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            tracing::error!(
                refused_writes = self.refused,
                free_bytes = self.available(),
                reserve_bytes = RESERVE,
                dir = %self.dir.display(),
                "the data dir's filesystem is full: writes are refused until space returns \
                 (logged at most once a minute)"
            );
            self.refused = 0;
            self.last_log = Some(Instant::now());
        }
    }

    /// A batch committed: if writes were being refused, say that they are accepted again.
    pub(crate) fn committed(&mut self) {
        if self.full {
            self.full = false;
            tracing::warn!(
                refused_writes = self.refused,
                "space is back on the data dir's filesystem: writes are accepted again"
            );
            self.refused = 0;
            self.last_log = None;
        }
    }
}
