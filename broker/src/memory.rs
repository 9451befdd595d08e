//! Gives the memory glibc's allocator holds free back to the system, every few seconds.
//!
//! A long-running server that writes a lot frees most of what it allocates (redb's page cache
//! turning over, exchange and connection state), but glibc keeps freed memory inside its
//! heaps and releases only what lies at a heap's top. After 100,000 enrollments a server
//! with a 64 MiB store cache held 264 MiB; `malloc_trim(0)` brought it to 117 MiB
//! (docs/benchmarks.md, "Issue 17: the million-device store"). `malloc_trim` walks the free
//! lists and hands whole free pages back, locking one arena at a time as `malloc` does: 5 to
//! 24 ms per call during that enrollment load (logged at debug level), so a thread that
//! allocates meanwhile may wait that long, once per period.

use std::time::{Duration, Instant};

/// How often the free memory is given back.
const EVERY: Duration = Duration::from_secs(10);

/// Starts the thread that trims, for the life of the process. Other allocators, and other
/// C libraries, need nothing of this: it does nothing there.
pub fn start() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    let started = std::thread::Builder::new()
        .name("fleetgate-trim".into())
        .spawn(|| {
            loop {
                std::thread::sleep(EVERY);
                let began = Instant::now();
                let released = trim();
                tracing::debug!(
                    released,
                    took_us = began.elapsed().as_micros() as u64,
                    "malloc_trim"
                );
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "could not start the memory trim thread");
    }
}

/// `malloc_trim(0)`: true when memory went back to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointer and is thread-safe (it locks each arena as malloc
    // does); it only releases pages that hold no allocation.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}
