//! Drives N simulated clients through a scenario under the closed or open arrival model,
//! bounded by `--duration`, and collects their outcomes.
//!
//! Hot path: a device task sends one [`Outcome`] over an unbounded channel when it ends; a
//! single collector task owns the histograms, so recording takes no lock. Progress counters
//! are relaxed atomics.

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::{Load, RunOptions};
use crate::ramp::Ramp;
use crate::stats::{Failure, FailureKind, Outcome, Stats};

/// What a run produced.
#[derive(Debug)]
pub struct RunResult {
    /// Aggregated outcomes (devices never started are counted as `timeout`).
    pub stats: Stats,
    /// Devices the run was asked for.
    pub attempted: u64,
    /// From the first start to the last outcome (or to the stop).
    pub elapsed: Duration,
    /// The run was stopped (`--duration` reached or interrupted) rather than run to its end.
    pub stopped: bool,
}

#[derive(Default)]
struct Counters {
    started: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
}

/// Runs `device(i)` for `i` in `0..n` under `options` and collects the outcomes.
pub async fn run<F, Fut>(n: usize, phase_count: usize, options: &RunOptions, device: F) -> RunResult
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let device = Arc::new(device);
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let controller = tokio::spawn(stop_controller(
        options.duration,
        options.interrupt,
        stop_tx,
    ));

    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let start = Instant::now();
    let collector = {
        let counters = counters.clone();
        tokio::spawn(async move {
            let mut stats = Stats::new(phase_count);
            while let Some(outcome) = rx.recv().await {
                if outcome.failure.is_some() {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                } else {
                    counters.completed.fetch_add(1, Ordering::Relaxed);
                }
                // Timed when the collector sees it: the channel adds microseconds, not seconds.
                stats.record_at(start.elapsed(), &outcome);
            }
            stats
        })
    };
    let finished = Arc::new(AtomicBool::new(false));
    let progress = options.progress.then(|| {
        tokio::spawn(progress_line(
            counters.clone(),
            finished.clone(),
            start,
            n as u64,
        ))
    });

    // The open models run on an arrival schedule; the closed one runs its workers here.
    let schedule = match &options.load {
        &Load::Closed { concurrency } => {
            let next = Arc::new(AtomicUsize::new(0));
            let mut workers = JoinSet::new();
            for _ in 0..concurrency.clamp(1, n.max(1)) {
                let (device, next, tx, counters) =
                    (device.clone(), next.clone(), tx.clone(), counters.clone());
                let stop = stop_rx.clone();
                workers.spawn(async move {
                    loop {
                        if *stop.borrow() {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        counters.started.fetch_add(1, Ordering::Relaxed);
                        let outcome = until_stopped(device(i), stop.clone()).await;
                        let _ = tx.send(outcome);
                    }
                });
            }
            while workers.join_next().await.is_some() {}
            None
        }
        Load::Open { rate } => Some(Ramp::constant(*rate)),
        Load::Ramp(ramp) => Some(ramp.clone()),
    };
    if let Some(schedule) = schedule {
        let mut stop = stop_rx.clone();
        let mut i = 0usize;
        while i < n && !*stop.borrow() {
            // Device i is due when the schedule's arrivals reach i (at i / rate seconds for
            // a constant rate); start every device already due.
            let due = ((schedule.arrivals_by(start.elapsed().as_secs_f64())) as usize + 1).min(n);
            while i < due {
                counters.started.fetch_add(1, Ordering::Relaxed);
                let (fut, tx, stop) = (device(i), tx.clone(), stop_rx.clone());
                tokio::spawn(async move {
                    let _ = tx.send(until_stopped(fut, stop).await);
                });
                i += 1;
            }
            if i >= n {
                break;
            }
            let at = start + Duration::from_secs_f64(schedule.time_of_arrival(i as f64));
            tokio::select! {
                _ = tokio::time::sleep_until(at.into()) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }
    // Every device task holds a sender; the collector ends when the last one finishes.
    drop(tx);
    let mut stats = collector.await.unwrap_or_else(|_| Stats::new(phase_count));
    let elapsed = start.elapsed();
    controller.abort();
    let stopped = *stop_rx.borrow();
    finished.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.await;
    }
    let started = counters.started.load(Ordering::Relaxed);
    let never_started = (n as u64).saturating_sub(started);
    stats.record_failure(
        FailureKind::Timeout,
        "the run ended (--duration or interrupt) before the device started",
        never_started,
    );
    stats
        .timeline
        .record_failures(elapsed, FailureKind::Timeout, never_started);
    RunResult {
        stats,
        attempted: n as u64,
        elapsed,
        stopped,
    }
}

/// Runs a device until it finishes or the run is stopped; a stopped device is a `timeout`.
async fn until_stopped<Fut>(device: Fut, mut stop: watch::Receiver<bool>) -> Outcome
where
    Fut: Future<Output = Outcome>,
{
    tokio::select! {
        biased;
        outcome = device => outcome,
        _ = stop.wait_for(|s| *s) => Outcome::default().fail(Failure::new(
            FailureKind::Timeout,
            "the run ended (--duration or interrupt) before the device finished",
        )),
    }
}

async fn stop_controller(duration: Option<Duration>, interrupt: bool, stop: watch::Sender<bool>) {
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let interrupted = async {
        if interrupt && tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: stopping the run and reporting");
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = deadline => {}
        _ = interrupted => {}
    }
    let _ = stop.send(true);
}

/// The live progress line: `\r`-updated every 250 ms, ended with a newline.
async fn progress_line(counters: Arc<Counters>, finished: Arc<AtomicBool>, start: Instant, n: u64) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let done = finished.load(Ordering::Relaxed);
        let started = counters.started.load(Ordering::Relaxed);
        let completed = counters.completed.load(Ordering::Relaxed);
        let failed = counters.failed.load(Ordering::Relaxed);
        let secs = start.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            completed as f64 / secs
        } else {
            0.0
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{completed}/{n} completed, {failed} failed, {} in flight, {rate:.0}/s, {secs:.1} s   ",
            started.saturating_sub(completed + failed)
        );
        if done {
            let _ = writeln!(err);
            return;
        }
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(load: Load, duration: Option<Duration>) -> RunOptions {
        RunOptions {
            load,
            duration,
            ..RunOptions::default()
        }
    }

    fn ok(ms: u64) -> Outcome {
        Outcome {
            phases: [Some(Duration::from_millis(ms)), None, None, None],
            failure: None,
        }
    }

    #[tokio::test]
    async fn closed_model_caps_in_flight() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (f, p) = (in_flight.clone(), peak.clone());
        let r = run(
            50,
            1,
            &options(Load::Closed { concurrency: 4 }, None),
            move |i| {
                let (f, p) = (f.clone(), p.clone());
                async move {
                    let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    f.fetch_sub(1, Ordering::SeqCst);
                    if i % 10 == 0 {
                        Outcome::default().fail(Failure::new(FailureKind::BadReply, "x"))
                    } else {
                        ok(2)
                    }
                }
            },
        )
        .await;
        assert_eq!(r.attempted, 50);
        assert_eq!(r.stats.completed, 45);
        assert_eq!(r.stats.failed, 5);
        assert!(peak.load(Ordering::SeqCst) <= 4);
        assert!(!r.stopped);
        assert!(r.stats.phase(0).is_some());
    }

    #[tokio::test]
    async fn open_model_starts_on_schedule_regardless_of_slow_devices() {
        // 20 devices at 200/s take ~100 ms to start even though each lasts 300 ms.
        let t0 = Instant::now();
        let r = run(
            20,
            1,
            &options(Load::Open { rate: 200.0 }, None),
            |_| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                ok(300)
            },
        )
        .await;
        assert_eq!(r.stats.completed, 20);
        let elapsed = t0.elapsed();
        assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
        assert!(elapsed >= Duration::from_millis(390), "{elapsed:?}");
    }

    #[tokio::test]
    async fn a_ramp_starts_devices_on_its_schedule() {
        // 0 -> 200/s over 0.5 s: 50 arrivals by 0.5 s, then 200/s: 60 devices need ~0.55 s.
        let t0 = Instant::now();
        let r = run(
            60,
            1,
            &options(Load::Ramp(Ramp::parse("0:0,0.5:200").unwrap()), None),
            |_| async { ok(1) },
        )
        .await;
        assert_eq!(r.stats.completed, 60);
        let elapsed = t0.elapsed();
        assert!(elapsed >= Duration::from_millis(530), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(2000), "{elapsed:?}");
    }

    #[tokio::test]
    async fn duration_bounds_the_run() {
        let r = run(
            1000,
            1,
            &options(
                Load::Closed { concurrency: 2 },
                Some(Duration::from_millis(100)),
            ),
            |_| async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                ok(30)
            },
        )
        .await;
        assert_eq!(r.attempted, 1000);
        assert!(
            r.stats.completed > 0 && r.stats.completed < 20,
            "{}",
            r.stats.completed
        );
        assert_eq!(r.stats.completed + r.stats.failed, 1000);
        assert_eq!(
            r.stats.failures[&FailureKind::Timeout],
            1000 - r.stats.completed
        );
        assert!(r.elapsed < Duration::from_secs(2));
        assert!(r.stopped);
    }
}
