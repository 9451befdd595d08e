//! Opaque, time-ordered identifiers: 48 bits of milliseconds and 80 random bits in Crockford
//! base32 (26 characters), so ids sort by creation time and key scans page in that order.

use std::sync::Mutex;

use rand::RngCore;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

static LAST: Mutex<(u64, u128)> = Mutex::new((0, 0));

/// A new id, strictly greater than every id this process made before.
pub fn new_id() -> String {
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
    )
    .unwrap_or(u64::MAX)
        & 0xffff_ffff_ffff;
    let mut random = [0u8; 16];
    rand::rng().fill_bytes(&mut random);
    let random = u128::from_be_bytes(random) & ((1u128 << 80) - 1);
    let value = {
        let mut last = LAST
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let candidate = (u128::from(now_ms) << 80) | random;
        let last_value = (u128::from(last.0) << 80) | last.1;
        // Within one millisecond (or if the clock stepped back), count up from the last id.
        let v = if candidate > last_value {
            candidate
        } else {
            last_value + 1
        };
        *last = (
            u64::try_from(v >> 80).unwrap_or(u64::MAX),
            v & ((1u128 << 80) - 1),
        );
        v
    };
    encode(value)
}

fn encode(mut v: u128) -> String {
    let mut out = [0u8; 26];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[usize::try_from(v & 31).unwrap_or(0)];
        v >>= 5;
    }
    String::from_utf8(out.to_vec()).expect("alphabet is ASCII")
}

/// Whether `s` looks like an id this module made (used to reject garbage cursors early).
pub fn is_id(s: &str) -> bool {
    s.len() == 26 && s.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_ordered_and_unique() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
        }
        assert!(ids.iter().all(|i| is_id(i)));
        assert!(!is_id("not-an-id"));
    }
}
