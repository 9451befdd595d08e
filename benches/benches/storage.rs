//! Durable writes: one commit for one writer vs 64 writers sharing group commits.
//!
//! Every iteration writes fresh keys into a durable (fsync) store in a tempdir. Throughput is
//! set to the number of writes so criterion also reports writes/s; the per-write cost is the
//! iteration time divided by the element count.

// `criterion_group!` generates an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use fleetgate_storage::engine::Table;
use fleetgate_storage::{Store, StoreOptions};

const WRITERS: usize = 64;

/// One small durable write under a fresh key.
fn write_one(store: &Store, n: u64) {
    store
        .write(move |tx| {
            tx.put_raw(
                Table::Meta,
                format!("bench-{n:016}").into_bytes(),
                vec![0x5a; 64],
            );
            Ok(())
        })
        .unwrap();
}

/// 64 parked threads; each round releases them together, each does one write, and the round
/// ends when all 64 are answered.
struct Writers {
    start: Arc<Barrier>,
    done: Arc<Barrier>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Writers {
    fn new(store: &Store, counter: &Arc<AtomicU64>) -> Writers {
        let start = Arc::new(Barrier::new(WRITERS + 1));
        let done = Arc::new(Barrier::new(WRITERS + 1));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..WRITERS)
            .map(|_| {
                let (store, counter) = (store.clone(), counter.clone());
                let (start, done, stop) = (start.clone(), done.clone(), stop.clone());
                std::thread::spawn(move || {
                    loop {
                        start.wait();
                        if stop.load(Ordering::Acquire) {
                            return;
                        }
                        write_one(&store, counter.fetch_add(1, Ordering::Relaxed));
                        done.wait();
                    }
                })
            })
            .collect();
        Writers {
            start,
            done,
            stop,
            threads,
        }
    }

    fn round(&self) -> Duration {
        let t = Instant::now();
        self.start.wait();
        self.done.wait();
        t.elapsed()
    }

    fn shutdown(self) {
        self.stop.store(true, Ordering::Release);
        self.start.wait();
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

fn durable_writes(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join(fleetgate_storage::DB_FILE),
        &StoreOptions::default(),
        None,
    )
    .unwrap();
    assert!(StoreOptions::default().durable);
    let counter = Arc::new(AtomicU64::new(0));

    let mut g = c.benchmark_group("storage_durable_write");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    g.throughput(Throughput::Elements(1));
    g.bench_function("single_writer_1_write", |b| {
        b.iter(|| write_one(&store, counter.fetch_add(1, Ordering::Relaxed)));
    });

    g.throughput(Throughput::Elements(WRITERS as u64));
    g.bench_function("single_writer_64_sequential_writes", |b| {
        b.iter(|| {
            for _ in 0..WRITERS {
                write_one(&store, counter.fetch_add(1, Ordering::Relaxed));
            }
        });
    });

    let writers = Writers::new(&store, &counter);
    g.bench_function("64_threads_1_write_each_group_commit", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| writers.round()).sum());
    });
    writers.shutdown();
    g.finish();
}

criterion_group!(benches, durable_writes);
criterion_main!(benches);
