//! The bounded credential-verification pool: argon2 runs on a fixed set of threads (one per
//! core by default) fed by a bounded queue. A job that cannot start before its deadline is
//! answered `Busy` instead of waiting: a storm of CONNECTs costs a bounded amount of memory and
//! each device hears "Server busy" rather than hanging.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

/// Why a verification did not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// Queue full or deadline passed before a worker took the job.
    Busy,
}

struct Job {
    deadline: Instant,
    work: Box<dyn FnOnce() -> bool + Send>,
    reply: tokio::sync::oneshot::Sender<Result<bool, PoolError>>,
}

/// Counters of the pool, for metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Verifications run.
    pub verified: AtomicU64,
    /// Jobs refused as busy.
    pub busy: AtomicU64,
    /// Total verification time in microseconds.
    pub busy_micros: AtomicU64,
    /// Recent verification time in microseconds (moving average over about 8 jobs), for
    /// admission.
    pub recent_micros: AtomicU64,
}

/// The pool; cheap to clone.
#[derive(Clone)]
pub struct VerifyPool {
    jobs: Sender<Job>,
    deadline: Duration,
    threads: u64,
    stats: Arc<PoolStats>,
}

/// Jobs run before the average verify time is trusted for admission.
const ADMISSION_WARMUP: u64 = 8;

impl VerifyPool {
    /// Starts `threads` workers with a queue of `queue` jobs and a queueing deadline.
    pub fn new(threads: usize, queue: usize, deadline: Duration) -> VerifyPool {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue.max(1));
        let stats = Arc::new(PoolStats::default());
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name(format!("fleetgate-verify-{i}"))
                .spawn(move || {
                    for job in rx {
                        if Instant::now() > job.deadline {
                            stats.busy.fetch_add(1, Ordering::Relaxed);
                            let _ = job.reply.send(Err(PoolError::Busy));
                            continue;
                        }
                        let started = Instant::now();
                        let ok = (job.work)();
                        stats.verified.fetch_add(1, Ordering::Relaxed);
                        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        stats.busy_micros.fetch_add(took, Ordering::Relaxed);
                        // Racy read-modify-write between workers: an average, not a count.
                        let recent = stats.recent_micros.load(Ordering::Relaxed);
                        let next = if recent == 0 {
                            took
                        } else {
                            recent - recent / 8 + took / 8
                        };
                        stats.recent_micros.store(next, Ordering::Relaxed);
                        let _ = job.reply.send(Ok(ok));
                    }
                })
                .expect("spawn verification worker");
        }
        VerifyPool {
            jobs: tx,
            deadline,
            threads: threads.max(1) as u64,
            stats,
        }
    }

    /// The pool's counters.
    pub fn stats(&self) -> &Arc<PoolStats> {
        &self.stats
    }

    /// How long a job submitted now would wait before a worker takes it: the jobs queued
    /// ahead of it times the recent average verify time, spread over the workers. Zero until a few
    /// verifications have run (no estimate yet).
    pub fn expected_wait(&self) -> Duration {
        let verified = self.stats.verified.load(Ordering::Relaxed);
        if verified < ADMISSION_WARMUP {
            return Duration::ZERO;
        }
        // The recent average, not the lifetime one: the verify time depends on what else the
        // cores run at the moment (an earlier burst of hashing on a busy machine must not make
        // the pool refuse work it can now do in time).
        let avg_micros = self.stats.recent_micros.load(Ordering::Relaxed);
        let ahead = self.jobs.len() as u64;
        Duration::from_micros(ahead.saturating_mul(avg_micros) / self.threads)
    }

    /// Jobs waiting for a thread now (for metrics).
    pub fn queued(&self) -> usize {
        self.jobs.len()
    }

    /// Runs `work` on the pool; resolves to its result, or `Busy` when it could not start in
    /// time. The future is runtime-agnostic.
    pub fn run(
        &self,
        work: impl FnOnce() -> bool + Send + 'static,
    ) -> impl std::future::Future<Output = Result<bool, PoolError>> + 'static {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            deadline: Instant::now() + self.deadline,
            work: Box::new(work),
            reply,
        };
        // Admission: a job that would start only after its deadline (the queue ahead of it
        // times the average verify time, shared by the workers) is refused now, rather than
        // after waiting out the whole deadline in the queue. Below that bound nothing is
        // refused; the dequeue-time deadline check stays as the backstop.
        let queued = if self.expected_wait() > self.deadline {
            self.stats.busy.fetch_add(1, Ordering::Relaxed);
            false
        } else {
            match self.jobs.try_send(job) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.stats.busy.fetch_add(1, Ordering::Relaxed);
                    false
                }
            }
        };
        async move {
            if !queued {
                return Err(PoolError::Busy);
            }
            rx.await.unwrap_or(Err(PoolError::Busy))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn runs_jobs() {
        let pool = VerifyPool::new(2, 10, Duration::from_secs(1));
        assert_eq!(block_on(pool.run(|| true)), Ok(true));
        assert_eq!(block_on(pool.run(|| false)), Ok(false));
    }

    #[test]
    fn past_the_deadline_is_busy_not_a_hang() {
        let pool = VerifyPool::new(1, 100, Duration::from_millis(20));
        let futures: Vec<_> = (0..10)
            .map(|_| {
                pool.run(|| {
                    std::thread::sleep(Duration::from_millis(30));
                    true
                })
            })
            .collect();
        let results: Vec<_> = futures.into_iter().map(block_on).collect();
        assert_eq!(results[0], Ok(true));
        assert!(results.contains(&Err(PoolError::Busy)));
        assert!(pool.stats().busy.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn a_queue_longer_than_the_deadline_is_busy_at_once() {
        let pool = VerifyPool::new(1, 100, Duration::from_millis(50));
        // Teach the pool that a job takes about 20 ms.
        for _ in 0..ADMISSION_WARMUP {
            assert_eq!(
                block_on(pool.run(|| {
                    std::thread::sleep(Duration::from_millis(20));
                    true
                })),
                Ok(true)
            );
        }
        // Occupy the worker, then queue 5 jobs (about 100 ms of work, twice the deadline).
        let _running = pool.run(|| {
            std::thread::sleep(Duration::from_millis(200));
            true
        });
        std::thread::sleep(Duration::from_millis(20));
        let _queued: Vec<_> = (0..5).map(|_| pool.run(|| true)).collect();
        assert!(pool.expected_wait() > Duration::from_millis(50));
        // Refused at submission: counted busy before anything waited in the queue.
        let before = pool.stats().busy.load(Ordering::Relaxed);
        let refused = pool.run(|| true);
        assert_eq!(pool.stats().busy.load(Ordering::Relaxed), before + 1);
        assert_eq!(block_on(refused), Err(PoolError::Busy));
    }

    #[test]
    fn full_queue_is_busy_at_once() {
        let pool = VerifyPool::new(1, 1, Duration::from_secs(5));
        let _a = pool.run(|| {
            std::thread::sleep(Duration::from_millis(100));
            true
        });
        std::thread::sleep(Duration::from_millis(10));
        let _b = pool.run(|| true);
        let started = Instant::now();
        assert_eq!(block_on(pool.run(|| true)), Err(PoolError::Busy));
        assert!(started.elapsed() < Duration::from_millis(50));
    }
}
