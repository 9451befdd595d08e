//! argon2 password verification (provision passwords, account users' chosen passwords): the
//! cache first, else one argon2 run on the bounded pool, shared by every concurrent caller with
//! the same username, password and stored hash (single flight: a fleet sharing one credential
//! connecting at once pays one verify).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::AuthMetrics;
use crate::cache::VerifyCache;
use crate::credentials;
use crate::pool::{PoolError, VerifyPool};

type InflightKey = ([u8; 32], String);
type Waiter = tokio::sync::oneshot::Sender<Result<bool, PoolError>>;

/// The argon2 password verifier (CONNECTs of provisioning devices and account users, and the
/// admin API's provision-password checks).
pub struct Verifier {
    pool: VerifyPool,
    cache: VerifyCache,
    inflight: Mutex<HashMap<InflightKey, Vec<Waiter>>>,
    metrics: Arc<dyn AuthMetrics>,
}

impl Verifier {
    /// A verifier running argon2 on `pool`.
    pub fn new(pool: VerifyPool, metrics: Arc<dyn AuthMetrics>) -> Self {
        Verifier {
            pool,
            cache: VerifyCache::default(),
            inflight: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// The verification pool (shared with the admin API's password hashing).
    pub fn pool(&self) -> &VerifyPool {
        &self.pool
    }

    /// Verifies a password against its stored argon2 hash: from the cache, else on the pool. Concurrent verifications of the same username, password and hash share one
    /// argon2 run. `Err(Busy)` when the pool could not take it in time.
    pub async fn verify_password(
        &self,
        username: &str,
        password: &[u8],
        stored_hash: &str,
    ) -> Result<bool, PoolError> {
        if self.cache.hit(username, password, stored_hash) {
            self.metrics.cache_lookup(true);
            return Ok(true);
        }
        self.metrics.cache_lookup(false);
        let key = (self.cache.slot(username, password), stored_hash.to_string());
        let follower = {
            let mut inflight = self.inflight.lock();
            match inflight.get_mut(&key) {
                Some(waiters) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    inflight.insert(key.clone(), Vec::new());
                    None
                }
            }
        };
        if let Some(rx) = follower {
            return rx.await.unwrap_or(Err(PoolError::Busy));
        }
        // Leader: whatever happens (even if this future is dropped), the waiters hear.
        let mut leader = Leader {
            inflight: &self.inflight,
            key: Some(key),
        };
        let (pw, hash) = (password.to_vec(), stored_hash.to_string());
        let started = Instant::now();
        let result = self
            .pool
            .run(move || credentials::argon2_verify(&pw, &hash))
            .await;
        if result.is_ok() {
            self.metrics.verify_latency(started.elapsed().as_secs_f64());
        }
        if result == Ok(true) {
            self.cache.insert(username, password, stored_hash);
        }
        leader.finish(result);
        result
    }
}

/// The verification in flight for one key; answers its waiters when done or dropped.
struct Leader<'a> {
    inflight: &'a Mutex<HashMap<InflightKey, Vec<Waiter>>>,
    key: Option<InflightKey>,
}

impl Leader<'_> {
    fn finish(&mut self, result: Result<bool, PoolError>) {
        if let Some(key) = self.key.take() {
            let waiters = self.inflight.lock().remove(&key).unwrap_or_default();
            for w in waiters {
                let _ = w.send(result);
            }
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.finish(Err(PoolError::Busy));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoMetrics;
    use crate::credentials::Argon2Params;
    use std::sync::atomic::Ordering;

    fn verifier() -> Verifier {
        Verifier::new(
            VerifyPool::new(2, 100, std::time::Duration::from_secs(10)),
            Arc::new(NoMetrics),
        )
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn concurrent_verifications_of_one_credential_share_one_argon2_run() {
        let v = verifier();
        let hash = Argon2Params::cheap_for_tests().hash("shared-pass").unwrap();
        let results = block_on(async {
            // Polled together: all 20 are in flight before the first verification ends.
            futures::future::join_all(
                (0..20).map(|_| v.verify_password("fleet", b"shared-pass", &hash)),
            )
            .await
        });
        assert!(results.iter().all(|r| *r == Ok(true)));
        assert_eq!(v.pool().stats().verified.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_changed_password_stops_matching_at_once() {
        let v = verifier();
        let p = Argon2Params::cheap_for_tests();
        let old = p.hash("old-pass").unwrap();
        block_on(async {
            assert_eq!(
                v.verify_password("fleet", b"old-pass", &old).await,
                Ok(true)
            );
            // Cached now; the stored hash changes with the new password.
            let new = p.hash("new-pass").unwrap();
            assert_eq!(
                v.verify_password("fleet", b"old-pass", &new).await,
                Ok(false)
            );
            assert_eq!(
                v.verify_password("fleet", b"new-pass", &new).await,
                Ok(true)
            );
        });
    }

    #[test]
    fn a_second_verification_is_a_cache_hit_without_the_pool() {
        let v = verifier();
        let hash = Argon2Params::cheap_for_tests().hash("pw").unwrap();
        block_on(async {
            assert_eq!(v.verify_password("u", b"pw", &hash).await, Ok(true));
            assert_eq!(v.verify_password("u", b"pw", &hash).await, Ok(true));
            assert_eq!(v.verify_password("u", b"no", &hash).await, Ok(false));
        });
        // The hit skipped the pool; the wrong password ran (and is never cached).
        assert_eq!(v.pool().stats().verified.load(Ordering::Relaxed), 2);
    }
}
