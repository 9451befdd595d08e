//! Detached tasks that shutdown must wait for: a provisioning exchange runs detached from its
//! connection (so a disconnect cannot cancel it between its two commits), so stopping the
//! server waits for those still running, up to a deadline, before the workers are stopped.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Counts the detached tasks still running.
#[derive(Clone, Debug, Default)]
pub struct Tasks(Arc<(Mutex<usize>, Condvar)>);

/// Held by a running task; the task is done when it is dropped.
#[derive(Debug)]
pub struct TaskGuard(Tasks);

impl Tasks {
    /// Marks a task as running until the returned guard is dropped.
    pub fn track(&self) -> TaskGuard {
        *self.0.0.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        TaskGuard(self.clone())
    }

    /// Blocks until no task runs or `deadline` has passed; returns how many still run.
    pub fn wait_idle(&self, deadline: Duration) -> usize {
        let end = Instant::now() + deadline;
        let (count, idle) = &*self.0;
        let mut running = count.lock().unwrap_or_else(PoisonError::into_inner);
        while *running > 0 {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            running = idle
                .wait_timeout(running, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *running
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        let (count, idle) = &*self.0.0;
        let mut running = count.lock().unwrap_or_else(PoisonError::into_inner);
        *running -= 1;
        if *running == 0 {
            idle.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_running_tasks_and_no_longer_than_the_deadline() {
        let tasks = Tasks::default();
        assert_eq!(tasks.wait_idle(Duration::from_secs(5)), 0);
        let guard = tasks.track();
        let stuck = tasks.track();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(guard);
        });
        let started = Instant::now();
        assert_eq!(tasks.wait_idle(Duration::from_millis(300)), 1);
        assert!(started.elapsed() >= Duration::from_millis(300));
        t.join().unwrap();
        drop(stuck);
        assert_eq!(tasks.wait_idle(Duration::from_secs(5)), 0);
    }
}
