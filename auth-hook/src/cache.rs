//! Cache of successful provision-password verifications. The key is an HMAC of username and
//! password under a per-process random key (the password is never kept); the value is the
//! stored hash that password verified against. A hit requires the current stored hash to equal
//! the cached one, so changing a provision password invalidates its entries at once.

use std::collections::HashMap;

use parking_lot::Mutex;
use rand::RngCore;

use crate::credentials::hmac;

/// Most entries kept; when full the cache starts over (entries are cheap to rebuild).
const MAX_ENTRIES: usize = 100_000;

/// The cache.
pub struct VerifyCache {
    key: [u8; 32],
    entries: Mutex<HashMap<[u8; 32], String>>,
}

impl Default for VerifyCache {
    fn default() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        VerifyCache {
            key,
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl VerifyCache {
    /// The cache key of a username/password pair (a keyed hash; the password is not kept).
    pub fn slot(&self, username: &str, password: &[u8]) -> [u8; 32] {
        let mut data = Vec::with_capacity(username.len() + 1 + password.len());
        data.extend_from_slice(username.as_bytes());
        data.push(0);
        data.extend_from_slice(password);
        hmac(&self.key, &data)
    }

    /// Whether this username/password verified against `stored_hash` before.
    pub fn hit(&self, username: &str, password: &[u8], stored_hash: &str) -> bool {
        let slot = self.slot(username, password);
        self.entries
            .lock()
            .get(&slot)
            .is_some_and(|h| h == stored_hash)
    }

    /// Remembers a successful verification.
    pub fn insert(&self, username: &str, password: &[u8], stored_hash: &str) {
        let slot = self.slot(username, password);
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(slot, stored_hash.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_needs_same_credentials_and_same_stored_hash() {
        let c = VerifyCache::default();
        c.insert("fleet", b"pw-1", "$argon2id$A");
        assert!(c.hit("fleet", b"pw-1", "$argon2id$A"));
        assert!(!c.hit("fleet", b"pw-2", "$argon2id$A"));
        assert!(!c.hit("fleet2", b"pw-1", "$argon2id$A"));
        // The stored hash changed (new password): the entry no longer matches.
        assert!(!c.hit("fleet", b"pw-1", "$argon2id$B"));
        // Username/password boundary is unambiguous.
        c.insert("ab", b"c", "h");
        assert!(!c.hit("a", b"bc", "h"));
    }
}
