//! Secrets: generation (CSPRNG) and hashing. Human-chosen provision passwords get argon2id;
//! generated device passwords, activation keys and API tokens are long random strings, so a
//! keyed fast hash (HMAC-SHA-256 under a per-record salt) is as strong and costs microseconds.

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use hmac::{Hmac, Mac};
use rand::{Rng, RngCore};
use sha2::Sha256;

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for Argon2Params {
    /// OWASP's argon2id baseline: m=19456 KiB, t=2, p=1.
    fn default() -> Self {
        Argon2Params {
            m_cost: 19_456,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

impl Argon2Params {
    /// Cheap parameters for tests only (never the default).
    pub fn cheap_for_tests() -> Self {
        Argon2Params {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    fn hasher(self) -> Result<Argon2<'static>, HashError> {
        let params = Params::new(self.m_cost, self.t_cost, self.p_cost, None)
            .map_err(HashError::Parameters)?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Hashes a password into a PHC string.
    pub fn hash(self, password: &str) -> Result<String, HashError> {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        self.hasher()?
            .hash_password_with_salt(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(HashError::Hashing)
    }
}

/// Why a password could not be hashed (never carries the password).
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The configured argon2 parameters are out of range.
    #[error("invalid argon2 parameters: {0}")]
    Parameters(argon2::Error),
    /// argon2 refused the input.
    #[error("argon2 hashing failed: {0}")]
    Hashing(argon2::password_hash::Error),
}

/// Verifies a password against a PHC string (the parameters come from the string).
pub fn argon2_verify(password: &[u8], phc: &str) -> bool {
    Argon2::default().verify_password(password, phc).is_ok()
}

const FAST_PREFIX: &str = "hs256";

/// Hashes a generated secret with HMAC-SHA-256 under a fresh 16-byte salt:
/// `hs256$SALT$MAC` (base64).
pub fn fast_hash(secret: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let mac = hmac(&salt, secret.as_bytes());
    format!("{FAST_PREFIX}${}${}", B64.encode(salt), B64.encode(mac))
}

/// Whether `stored` is a [`fast_hash`] (a generated secret's), not an argon2 PHC string.
pub fn is_fast_hash(stored: &str) -> bool {
    stored
        .strip_prefix(FAST_PREFIX)
        .is_some_and(|rest| rest.starts_with('$'))
}

/// Verifies a secret against [`fast_hash`]'s output in constant time.
pub fn fast_verify(secret: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(FAST_PREFIX), Some(salt), Some(mac), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(salt), Ok(expected)) = (B64.decode(salt), B64.decode(mac)) else {
        return false;
    };
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&salt).expect("HMAC takes any key length");
    m.update(secret.as_bytes());
    m.verify_slice(&expected).is_ok()
}

/// HMAC-SHA-256 of `data` under `key`.
pub fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &[u8] = b"0123456789";
const SYMBOLS: &[u8] = b"!#%*+-_=";

/// A device password (PROTOCOL.md 4.4): `len` characters from a CSPRNG with at least one
/// lower-case letter, one upper-case letter, one digit and one of `!#%*+-_=`.
pub fn generate_password(len: usize) -> String {
    let len = len.max(4);
    let all: Vec<u8> = [LOWER, UPPER, DIGITS, SYMBOLS].concat();
    let mut rng = rand::rng();
    let mut out: Vec<u8> = (0..len)
        .map(|_| all[rng.random_range(0..all.len())])
        .collect();
    // Put one of each class at distinct random positions, then the rest stays uniform.
    let mut slots: Vec<usize> = (0..len).collect();
    for class in [LOWER, UPPER, DIGITS, SYMBOLS] {
        let pick = rng.random_range(0..slots.len());
        let pos = slots.swap_remove(pick);
        out[pos] = class[rng.random_range(0..class.len())];
    }
    String::from_utf8(out).expect("ASCII")
}

/// A random alphanumeric string of `len` characters (activation keys, token secrets).
pub fn random_alphanumeric(len: usize) -> String {
    let all: Vec<u8> = [UPPER, DIGITS, LOWER].concat();
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(all[rng.random_range(0..all.len())]))
        .collect()
}

/// An API token `fgt_ID_SECRET`; returns `(token, id, secret hash)`.
pub fn generate_token(id: &str) -> (String, String) {
    let secret = random_alphanumeric(40);
    (format!("fgt_{id}_{secret}"), fast_hash(&secret))
}

/// Splits an API token into `(id, secret)`.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("fgt_")?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

/// Constant-time equality of two byte strings (the admin token).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Compare MACs under a fixed key: equal-length digests compare in constant time.
    hmac(b"fleetgate-eq", a) == hmac(b"fleetgate-eq", b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_round_trip() {
        let p = Argon2Params::cheap_for_tests();
        let h = p.hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(argon2_verify(b"correct horse", &h));
        assert!(!argon2_verify(b"correct horsE", &h));
        assert!(!argon2_verify(b"x", "not a hash"));
        assert_ne!(h, p.hash("correct horse").unwrap(), "salted");
    }

    #[test]
    fn fast_hash_round_trip() {
        let h = fast_hash("s3cret");
        assert!(fast_verify("s3cret", &h));
        assert!(!fast_verify("s3cre", &h));
        assert!(!fast_verify("s3cret", "hs256$$"));
        assert!(!fast_verify("s3cret", "garbage"));
        assert_ne!(h, fast_hash("s3cret"));
        assert!(!h.contains("s3cret"));
        assert!(is_fast_hash(&h));
        let argon = Argon2Params::cheap_for_tests().hash("s3cret").unwrap();
        assert!(!is_fast_hash(&argon));
        assert!(!is_fast_hash("hs256"));
    }

    #[test]
    fn generated_passwords_have_every_class() {
        for len in [20usize, 24, 128] {
            for _ in 0..200 {
                let p = generate_password(len);
                assert_eq!(p.len(), len);
                assert!(p.bytes().any(|b| b.is_ascii_lowercase()));
                assert!(p.bytes().any(|b| b.is_ascii_uppercase()));
                assert!(p.bytes().any(|b| b.is_ascii_digit()));
                assert!(p.bytes().any(|b| SYMBOLS.contains(&b)));
                assert!(
                    p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || SYMBOLS.contains(&b))
                );
            }
        }
        assert_ne!(generate_password(20), generate_password(20));
    }

    #[test]
    fn tokens_parse() {
        let (t, h) = generate_token("abc");
        let (id, secret) = parse_token(&t).unwrap();
        assert_eq!(id, "abc");
        assert!(fast_verify(secret, &h));
        assert!(parse_token("fgt_abc").is_none());
        assert!(parse_token("bearer").is_none());
        assert!(constant_time_eq(b"a", b"a"));
        assert!(!constant_time_eq(b"a", b"b"));
    }
}
