//! The follower thread: asks Fleetgate's feed for what follows the replica's position, applies
//! each page to the shared replica, and keeps the last good replica while Fleetgate is away.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use fleetgate_replica::SharedReplica;
use fleetgate_replica::wire::{FEED_PATH, Position};
use parking_lot::Mutex;

use crate::Error;
use crate::plugin::log;

/// How long Fleetgate holds a feed request when nothing changed. A change answers at once
/// whatever the wait; the wait only bounds how long Mosquitto's shutdown waits for the thread.
const POLL_WAIT_SECS: u64 = 2;

/// The first retry after a failure; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest pause between attempts while Fleetgate is away: short, so a device provisioned
/// meanwhile connects soon after Fleetgate is back.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A snapshot of 100,000 users is a few tens of MB of JSON.
const MAX_PAGE: u64 = 1 << 30;

/// Where and how to reach Fleetgate's hook listener.
#[derive(Clone)]
pub(crate) struct Endpoint {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Endpoint {
    pub(crate) fn new(base: &str, token: &str) -> Endpoint {
        Endpoint {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(Duration::from_secs(2)))
                .timeout_global(Some(Duration::from_secs(POLL_WAIT_SECS + 30)))
                .build()
                .new_agent(),
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    /// One feed page, raw.
    fn page(&self, position: Option<Position>) -> Result<Vec<u8>, Error> {
        let url = match position {
            Some(p) => format!(
                "{}{FEED_PATH}?epoch={}&seq={}&wait={POLL_WAIT_SECS}",
                self.base, p.epoch, p.seq
            ),
            None => format!("{}{FEED_PATH}", self.base),
        };
        let mut res = self
            .agent
            .get(&url)
            .header("Authorization", format!("Bearer {}", self.token))
            .call()?;
        if res.status() != 200 {
            return Err(Error::Status(res.status().as_u16()));
        }
        Ok(res.body_mut().with_config().limit(MAX_PAGE).read_to_vec()?)
    }

    /// Posts a JSON body to `path`; any 2xx is success.
    pub(crate) fn post(&self, path: &str, body: &impl serde::Serialize) -> Result<(), Error> {
        let res = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .send_json(body)?;
        if !res.status().is_success() {
            return Err(Error::Status(res.status().as_u16()));
        }
        Ok(())
    }
}

/// The running follower; dropping the stop sender ends it.
pub(crate) struct Follower {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Starts following; waits up to `first` for the first snapshot so that Mosquitto does not
    /// start refusing everybody (it starts anyway, and decides once the snapshot arrives).
    /// Usernames whose sessions a page revoked are added to `revoked`, for Mosquitto's thread
    /// to end their connections.
    pub(crate) fn start(
        endpoint: Endpoint,
        replica: Arc<SharedReplica>,
        revoked: Arc<Mutex<Vec<String>>>,
        first: Duration,
    ) -> Result<Follower, Error> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let (ready, first_page) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("fleetgate-feed".into())
            .spawn(move || follow(&endpoint, &replica, &revoked, &stopped, &ready))?;
        if first_page.recv_timeout(first).is_err() {
            log(
                "no replica yet: Fleetgate's feed did not answer; clients are refused until it does",
            );
        }
        Ok(Follower {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it (at most one poll wait).
    pub(crate) fn stop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn follow(
    endpoint: &Endpoint,
    replica: &SharedReplica,
    revoked: &Mutex<Vec<String>>,
    stopped: &Receiver<()>,
    ready: &Sender<()>,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut away = false;
    loop {
        let result = endpoint
            .page(replica.position())
            .and_then(|page| Ok(replica.apply_json(&page)?));
        match result {
            Ok(ended) => {
                if !ended.is_empty() {
                    revoked.lock().extend(ended);
                }
                if away {
                    log("Fleetgate is reachable again: the replica caught up");
                    away = false;
                }
                let _ = ready.try_send(());
                backoff = FIRST_BACKOFF;
                if stopped.try_recv() != Err(crossbeam_channel::TryRecvError::Empty) {
                    return;
                }
                continue;
            }
            Err(e) => {
                if !away {
                    // Once per outage: the broker keeps deciding from what it has.
                    let had = replica.read();
                    log(&if had.position().is_some() {
                        format!(
                            "Fleetgate's feed failed ({e}): deciding from the last replica ({} users) until it is back",
                            had.users()
                        )
                    } else {
                        format!("Fleetgate's feed failed ({e}): no replica yet, retrying")
                    });
                    away = true;
                }
            }
        }
        match stopped.recv_timeout(backoff) {
            Err(RecvTimeoutError::Timeout) => backoff = (backoff * 2).min(MAX_BACKOFF),
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use fleetgate_replica::wire::{
        AccountRecord, Changes, Coupling, DeviceUserRecord, Page, Record, Snapshot,
    };

    use super::*;

    fn user(enabled: bool) -> Record {
        Record::DeviceUser(DeviceUserRecord {
            username: "dev-1@acme".into(),
            account: "acme".into(),
            password_hash: "hs256$c2FsdA$bWFj".into(),
            permissions: vec!["broker:connect".into()],
            reserved_for: None,
            enabled,
        })
    }

    /// A feed that answers a snapshot, then a changes page cut off mid-way (the connection
    /// closes before the announced length), then nothing but such pages.
    fn breaking_feed() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let position = Position { epoch: 7, seq: 1 };
        let snapshot = serde_json::to_vec(&Page::Snapshot(Snapshot {
            position,
            records: vec![
                Record::Account(AccountRecord {
                    name: "acme".into(),
                    default_coupling: Coupling::Loose,
                }),
                user(true),
            ],
        }))
        .unwrap();
        let disabled = serde_json::to_vec(&Page::Changes(Changes {
            position: Position { epoch: 7, seq: 2 },
            upserts: vec![user(false)],
            deletes: vec![],
        }))
        .unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                count.fetch_add(1, Ordering::Relaxed);
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|read| read > 2) {
                    line.clear();
                }
                let (body, sent) = if n == 0 {
                    (&snapshot, snapshot.len())
                } else {
                    (&disabled, disabled.len() / 2)
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body[..sent]);
            }
        });
        (format!("http://{addr}"), served)
    }

    #[test]
    fn a_feed_that_breaks_mid_way_keeps_the_last_good_replica() {
        let replica = Arc::new(SharedReplica::default());
        let revoked = Arc::new(Mutex::new(Vec::new()));
        let (url, served) = breaking_feed();
        let mut follower = Follower::start(
            Endpoint::new(&url, "token"),
            replica.clone(),
            revoked.clone(),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(replica.position(), Some(Position { epoch: 7, seq: 1 }));
        // Several broken pages later: still the snapshot, the user still enabled.
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            served.load(Ordering::Relaxed) >= 3,
            "the broken page was asked for again"
        );
        assert_eq!(replica.position(), Some(Position { epoch: 7, seq: 1 }));
        assert!(
            fleetgate_auth_hook::operational::identify(&*replica.read(), "dev-1", "dev-1@acme")
                .is_ok()
        );
        assert!(revoked.lock().is_empty());
        follower.stop();
    }
}
