//! Connects and disconnects reported to Fleetgate (`POST /hooks/emqx/events`, HOOKS.md 2.1),
//! so that the registry's connection status follows devices on Mosquitto. Mosquitto's thread
//! only queues; a thread of ours posts, in batches: whatever queued up while the previous post
//! was in flight, and in the 50 ms after the batch's first event, goes in the next one (an
//! array of events), so that thousands of connects a second cost a few requests, not one each.
//! The queue is bounded: when Fleetgate is slow or away, events beyond it are dropped and
//! counted rather than held in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Sender, TrySendError};
use serde::Serialize;

use crate::Error;
use crate::feed::Endpoint;
use crate::plugin::log;

/// The events route of the hook listener.
const EVENTS_PATH: &str = "/hooks/emqx/events";

/// Events waiting to be posted, at most.
const QUEUE: usize = 65_536;

/// Events in one post, at most (the hook listener takes up to 5,000).
const BATCH: usize = 2_000;

/// How long a batch waits for more events after its first. A device that connects, publishes
/// and leaves within it has both events in one post, which Fleetgate folds into one registry
/// write; the registry's status lags the broker by at most this much more.
const LINGER: Duration = Duration::from_millis(50);

/// A session began or ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `client.connected`.
    Connected,
    /// `client.disconnected`.
    Disconnected,
}

/// The body EMQX's webhook sends, which the hook listener understands.
#[derive(Debug, Serialize)]
struct Event {
    event: &'static str,
    clientid: String,
    username: String,
    peername: String,
    timestamp: u128,
}

/// The queue and its poster thread.
pub(crate) struct Reporter {
    queue: Option<Sender<Event>>,
    dropped: Arc<AtomicU64>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reporter {
    pub(crate) fn start(endpoint: Endpoint) -> Result<Reporter, Error> {
        let (queue, events) = crossbeam_channel::bounded::<Event>(QUEUE);
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("fleetgate-events".into())
            .spawn(move || {
                let mut failing = false;
                while let Ok(first) = events.recv() {
                    if stop.load(Ordering::Relaxed) {
                        // Shutting down: what is left is dropped rather than making Mosquitto
                        // wait for a Fleetgate that may be away.
                        return;
                    }
                    // Asleep rather than waiting on the queue: a receiver that waits is woken
                    // by every event sent, a system call on Mosquitto's thread each time.
                    std::thread::sleep(LINGER);
                    let mut batch = vec![first];
                    batch.extend(events.try_iter().take(BATCH - 1));
                    match endpoint.post(EVENTS_PATH, &batch) {
                        Ok(()) if failing => {
                            log("connection events reach Fleetgate again");
                            failing = false;
                        }
                        Ok(()) => {}
                        Err(e) if !failing => {
                            log(&format!(
                                "connection events are not reaching Fleetgate ({e})"
                            ));
                            failing = true;
                        }
                        Err(_) => {}
                    }
                }
            })?;
        Ok(Reporter {
            queue: Some(queue),
            dropped: Arc::default(),
            stopping,
            thread: Some(thread),
        })
    }

    /// Queues an event without waiting; a full queue drops it.
    pub(crate) fn report(&self, kind: Kind, client_id: &str, username: &str, peer: &str) {
        let Some(queue) = &self.queue else {
            return;
        };
        let event = Event {
            event: match kind {
                Kind::Connected => "client.connected",
                Kind::Disconnected => "client.disconnected",
            },
            clientid: client_id.to_string(),
            username: username.to_string(),
            peername: peer.to_string(),
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
        };
        if let Err(TrySendError::Full(_)) = queue.try_send(event) {
            let before = self.dropped.fetch_add(1, Ordering::Relaxed);
            if before.is_power_of_two() || before == 0 {
                log(&format!("event queue full: {} events dropped", before + 1));
            }
        }
    }

    /// Stops the thread after the post in flight, if any; queued events are dropped.
    pub(crate) fn stop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
