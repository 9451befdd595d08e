//! Failed-attempt limiting (PROTOCOL.md 2.1): credential failures are counted per client ID and
//! per peer address, never per username, within a window; past the limit the key is banned for
//! a while. A banned attempt is refused before any password is verified.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use parking_lot::Mutex;

use crate::Timestamp;

/// Limits, from config `auth.*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitConfig {
    /// Failures per client ID within the window before a ban (`auth.max_failures`).
    pub max_failures: usize,
    /// Failures per peer address within the window before a ban.
    pub max_failures_per_address: usize,
    /// The counting window (`auth.failure_window`).
    pub window: Duration,
    /// Ban length (`auth.ban`).
    pub ban: Duration,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            max_failures: 5,
            max_failures_per_address: 100,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(300),
        }
    }
}

/// What is banned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BanKey {
    /// A client ID.
    ClientId(String),
    /// A peer address.
    Address(IpAddr),
}

impl BanKey {
    /// `client_id` or `address`, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            BanKey::ClientId(_) => "client_id",
            BanKey::Address(_) => "address",
        }
    }
}

impl std::fmt::Display for BanKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BanKey::ClientId(c) => write!(f, "client ID {c}"),
            BanKey::Address(a) => write!(f, "address {a}"),
        }
    }
}

#[derive(Default)]
struct Entry {
    failures: VecDeque<Timestamp>,
    banned_until: Option<Timestamp>,
}

/// Most keys tracked at once; past it, entries with nothing recent are dropped.
const MAX_ENTRIES: usize = 200_000;

/// The limiter.
pub struct FailureLimiter {
    config: LimitConfig,
    entries: Mutex<HashMap<BanKey, Entry>>,
}

impl FailureLimiter {
    /// A limiter with these limits.
    pub fn new(config: LimitConfig) -> Self {
        FailureLimiter {
            config,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> LimitConfig {
        self.config
    }

    /// The first active ban among the client ID and the address, if any. A ban found ended is
    /// cleared and reported in the second value (for the log). An unspecified address (a door
    /// that does not know the peer) is no key: it would make every such door's clients one.
    pub fn check(
        &self,
        client_id: &str,
        address: IpAddr,
        now: Timestamp,
    ) -> (Option<BanKey>, Vec<BanKey>) {
        self.check_keys(self.keys(Some(client_id), address).map(|(k, _)| k), now)
    }

    /// [`FailureLimiter::check`] for a caller known by its address only (the HTTP hook
    /// listener's callers, whose failures are wrong tokens).
    pub fn check_address(&self, address: IpAddr, now: Timestamp) -> (Option<BanKey>, Vec<BanKey>) {
        self.check_keys(self.keys(None, address).map(|(k, _)| k), now)
    }

    /// When the ban of `address` ends, if it is banned at `now` (the admin API tells a banned
    /// caller when to come back: `Retry-After`).
    pub fn address_ban_ends(&self, address: IpAddr, now: Timestamp) -> Option<Timestamp> {
        self.entries
            .lock()
            .get(&BanKey::Address(address))
            .and_then(|e| e.banned_until)
            .filter(|until| now < *until)
    }

    /// Counts a credential failure; returns the keys that became banned by it.
    pub fn record_failure(&self, client_id: &str, address: IpAddr, now: Timestamp) -> Vec<BanKey> {
        self.record(self.keys(Some(client_id), address), now)
    }

    /// Counts a failure of a caller known by its address only, against
    /// `max_failures_per_address`.
    pub fn record_address_failure(&self, address: IpAddr, now: Timestamp) -> Vec<BanKey> {
        self.record(self.keys(None, address), now)
    }

    /// The keys of an attempt with their limits.
    fn keys(
        &self,
        client_id: Option<&str>,
        address: IpAddr,
    ) -> impl Iterator<Item = (BanKey, usize)> + use<> {
        let client = client_id.map(|c| (BanKey::ClientId(c.to_string()), self.config.max_failures));
        let address = (!address.is_unspecified()).then_some((
            BanKey::Address(address),
            self.config.max_failures_per_address,
        ));
        client.into_iter().chain(address)
    }

    fn check_keys(
        &self,
        keys: impl Iterator<Item = BanKey>,
        now: Timestamp,
    ) -> (Option<BanKey>, Vec<BanKey>) {
        let mut entries = self.entries.lock();
        let mut ended = Vec::new();
        let mut active = None;
        for key in keys {
            if let Some(e) = entries.get_mut(&key)
                && let Some(until) = e.banned_until
            {
                if now < until {
                    active.get_or_insert(key);
                } else {
                    e.banned_until = None;
                    e.failures.clear();
                    ended.push(key);
                }
            }
        }
        (active, ended)
    }

    fn record(&self, keys: impl Iterator<Item = (BanKey, usize)>, now: Timestamp) -> Vec<BanKey> {
        let window =
            chrono::Duration::from_std(self.config.window).unwrap_or(chrono::Duration::MAX);
        let ban = chrono::Duration::from_std(self.config.ban).unwrap_or(chrono::Duration::MAX);
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| {
                e.banned_until.is_some_and(|u| now < u)
                    || e.failures.back().is_some_and(|t| now - *t < window)
            });
        }
        let mut banned = Vec::new();
        for (key, limit) in keys {
            let e = entries.entry(key.clone()).or_default();
            while e.failures.front().is_some_and(|t| now - *t >= window) {
                e.failures.pop_front();
            }
            e.failures.push_back(now);
            if e.failures.len() >= limit && e.banned_until.is_none_or(|u| u <= now) {
                e.banned_until = Some(now + ban);
                e.failures.clear();
                banned.push(key);
            }
        }
        banned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn t(s: i64) -> Timestamp {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn client_id_banned_after_max_failures_in_window() {
        let l = FailureLimiter::new(LimitConfig::default());
        for i in 0..4 {
            assert!(l.record_failure("dev", ip(1), t(i)).is_empty());
        }
        assert_eq!(l.check("dev", ip(2), t(4)).0, None);
        assert_eq!(
            l.record_failure("dev", ip(1), t(4)),
            vec![BanKey::ClientId("dev".into())]
        );
        assert_eq!(
            l.check("dev", ip(2), t(5)).0,
            Some(BanKey::ClientId("dev".into()))
        );
        // Another client ID from the same address is not banned.
        assert_eq!(l.check("dev-2", ip(1), t(5)).0, None);
        // The ban ends.
        let (active, ended) = l.check("dev", ip(2), t(4 + 300));
        assert_eq!(active, None);
        assert_eq!(ended, vec![BanKey::ClientId("dev".into())]);
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let l = FailureLimiter::new(LimitConfig::default());
        for i in 0..10 {
            assert!(l.record_failure("dev", ip(1), t(i * 20)).is_empty(), "{i}");
        }
    }

    #[test]
    fn address_spraying_client_ids_is_banned() {
        let l = FailureLimiter::new(LimitConfig::default());
        let mut bans = Vec::new();
        for i in 0..100 {
            bans.extend(l.record_failure(&format!("c-{i}"), ip(9), t(0)));
        }
        assert_eq!(bans, vec![BanKey::Address(ip(9))]);
        assert_eq!(
            l.check("fresh", ip(9), t(1)).0,
            Some(BanKey::Address(ip(9)))
        );
        assert_eq!(l.check("fresh", ip(8), t(1)).0, None);
    }

    #[test]
    fn an_unspecified_address_is_never_banned() {
        let l = FailureLimiter::new(LimitConfig::default());
        let none = IpAddr::from([0, 0, 0, 0]);
        for i in 0..200 {
            for key in l.record_failure(&format!("c-{i}"), none, t(0)) {
                assert_ne!(key, BanKey::Address(none));
            }
        }
        assert_eq!(l.check("fresh", none, t(1)).0, None);
    }

    #[test]
    fn address_only_failures_ban_the_address() {
        let l = FailureLimiter::new(LimitConfig::default());
        let mut bans = Vec::new();
        for _ in 0..100 {
            bans.extend(l.record_address_failure(ip(7), t(0)));
        }
        assert_eq!(bans, vec![BanKey::Address(ip(7))]);
        assert_eq!(l.check_address(ip(7), t(1)).0, Some(BanKey::Address(ip(7))));
        assert_eq!(l.check_address(ip(6), t(1)).0, None);
        assert_eq!(l.address_ban_ends(ip(7), t(1)), Some(t(300)));
        assert_eq!(l.address_ban_ends(ip(7), t(300)), None);
        assert_eq!(l.address_ban_ends(ip(6), t(1)), None);
    }
}
