//! The engine against a real store and a fake broker whose devices answer every request
//! after a delay: throttling by `max_in_flight`, timed firings on a clock the test sets,
//! deletion. (Not tokio's paused time: the store commits on its own thread, and paused time
//! would jump to the steps' timeouts while a commit is awaited.)

use std::collections::HashSet;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{TimeZone, Utc};
use fleetgate_devmgmt::Transport;
use fleetgate_kura::Payload;
use fleetgate_storage::jobs::{JobSpec, JobStep, Schedule};
use fleetgate_storage::ops as store_ops;
use fleetgate_storage::validate::{AccountInput, DeviceSpec};
use fleetgate_storage::{StoreOptions, Timestamp};

use super::*;

/// Devices that are all online and subscribed, answering 200 after `delay`; counts requests
/// in flight and the most seen at once.
struct Fleet {
    requester: OnceLock<Weak<Requester>>,
    online: Mutex<HashSet<String>>,
    delay: Duration,
    in_flight: Arc<AtomicUsize>,
    most: AtomicUsize,
    sent: AtomicUsize,
}

impl Transport for Fleet {
    fn subscribed(&self, _: &str, client_id: &str, _: &str) -> Option<bool> {
        self.online.lock().contains(client_id).then_some(true)
    }

    fn publish(&self, topic: String, payload: Vec<u8>) {
        let request = Payload::decode(&payload).unwrap();
        let id = request.metric_str("request.id").unwrap().to_string();
        let client_id = topic.split('/').nth(2).unwrap().to_string();
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        self.sent.fetch_add(1, Ordering::SeqCst);
        let requester = self.requester.get().unwrap().upgrade().unwrap();
        let in_flight = self.in_flight.clone();
        let delay = self.delay;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let reply = Payload::new().with_i32("response.code", 200).encode();
            requester.on_publish(
                "acme",
                &client_id,
                &format!("$EDC/acme/fleetgate/CMD-V1/REPLY/{id}"),
                &reply,
            );
        });
    }
}

/// A clock the test sets.
struct SetClock(Mutex<Timestamp>);

impl Clock for SetClock {
    fn now(&self) -> Timestamp {
        *self.0.lock()
    }
}

impl SetClock {
    fn set(&self, h: u32, m: u32) {
        *self.0.lock() = Utc.with_ymd_and_hms(2026, 12, 2, h, m, 0).unwrap();
    }
}

struct Setup {
    jobs: Jobs,
    store: Store,
    fleet: Arc<Fleet>,
    clock: Arc<SetClock>,
    _dir: tempfile::TempDir,
}

fn setup(devices: usize, max_in_flight: usize, delay: Duration) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("t.redb"),
        &StoreOptions {
            durable: false,
            ..StoreOptions::default()
        },
        None,
    )
    .unwrap();
    let clock = Arc::new(SetClock(Mutex::new(
        Utc.with_ymd_and_hms(2026, 12, 2, 2, 0, 0).unwrap(),
    )));
    store
        .write(store_ops::create_account(
            AccountInput::named("acme").validate().unwrap(),
            clock.now(),
        ))
        .unwrap();
    for i in 0..devices {
        store
            .write(store_ops::create_device(
                "acme".into(),
                DeviceSpec {
                    client_id: format!("d{i}"),
                    display_name: None,
                },
            ))
            .unwrap();
    }
    let requester = Arc::new(Requester::new("fleetgate"));
    let fleet = Arc::new(Fleet {
        requester: OnceLock::new(),
        online: Mutex::new(HashSet::new()),
        delay,
        in_flight: Arc::new(AtomicUsize::new(0)),
        most: AtomicUsize::new(0),
        sent: AtomicUsize::new(0),
    });
    fleet
        .requester
        .set(Arc::downgrade(&requester))
        .ok()
        .unwrap();
    requester.attach(fleet.clone());
    let jobs = Jobs::start_on(
        Handle::current(),
        store.clone(),
        requester,
        clock.clone(),
        Metrics::new(),
        max_in_flight,
    )
    .unwrap();
    Setup {
        jobs,
        store,
        fleet,
        clock,
        _dir: dir,
    }
}

fn spec(targets: usize, schedule: Schedule) -> JobSpec {
    JobSpec {
        account: "acme".into(),
        name: "t".into(),
        steps: vec![JobStep::Command {
            command: "uname".into(),
            arguments: vec![],
            environment: Default::default(),
        }],
        schedule,
        max_attempts: 1,
        step_timeout: 30,
        targets: (0..targets).map(|i| format!("d{i}")).collect(),
    }
}

impl Setup {
    fn create(&self, spec: JobSpec) -> Job {
        let targets = spec.targets.clone();
        let job = self
            .store
            .write(ops::create_job(spec, self.clock.now()))
            .unwrap();
        self.jobs.created(job.clone(), &targets).unwrap();
        job
    }

    fn connect(&self, client_id: &str) {
        self.fleet.online.lock().insert(client_id.to_string());
        self.jobs
            .inner
            .requester
            .on_subscribe("acme", client_id, "$EDC/acme/+/#");
    }

    fn statuses(&self, job: &Job) -> Vec<(u32, JobStatus)> {
        self.store
            .read()
            .unwrap()
            .job_executions(&job.id, None, None)
            .unwrap()
            .iter()
            .map(|e| (e.run, e.status))
            .collect()
    }

    async fn settle(&self) {
        for _ in 0..10_000 {
            if self.jobs.running() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("attempts never ended");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn thousands_of_ready_targets_are_throttled_by_max_in_flight() {
    let t = setup(300, 16, Duration::from_millis(50));
    let job = t.create(spec(300, Schedule::DeviceConnect));
    for i in 0..300 {
        t.connect(&format!("d{i}"));
    }
    t.settle().await;
    let s = t.statuses(&job);
    assert_eq!(s.len(), 300);
    assert!(s.iter().all(|(_, st)| *st == JobStatus::Completed), "{s:?}");
    assert_eq!(t.fleet.sent.load(Ordering::SeqCst), 300);
    assert_eq!(
        t.fleet.most.load(Ordering::SeqCst),
        16,
        "never more than max_in_flight"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn timed_jobs_fire_on_the_engines_clock_and_stop_when_deleted() {
    let t = setup(2, 4, Duration::from_millis(10));
    t.connect("d0");
    t.connect("d1");
    // 02:00 now: the interval fires at 02:20, 02:40, ...
    let interval = t.create(spec(
        2,
        Schedule::Interval {
            every: "PT20M".into(),
            starts_on: None,
        },
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(t.statuses(&interval).is_empty(), "nothing before 02:20");
    t.clock.set(2, 20);
    let fired = async {
        while t.statuses(&interval).len() < 2 || t.jobs.running() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fired)
        .await
        .unwrap();
    assert_eq!(
        t.statuses(&interval),
        [(1, JobStatus::Completed), (1, JobStatus::Completed)]
    );
    t.jobs.deleted("acme", &interval.id);
    t.store
        .write(ops::delete_job("acme".into(), interval.id.clone()))
        .unwrap();
    let sent = t.fleet.sent.load(Ordering::SeqCst);
    t.clock.set(3, 0);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        t.fleet.sent.load(Ordering::SeqCst),
        sent,
        "a deleted job fires no more"
    );
}
