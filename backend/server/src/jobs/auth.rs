//! Admin login and API keys. The admin password is stored as a PBKDF2-HMAC-SHA256 hash
//! (`cemiface hash-password`); sessions and keys are random tokens of which the store keeps only
//! the SHA-256. Admin sessions live in an HttpOnly SameSite=Strict cookie, and every state-changing
//! admin request must carry the session's CSRF token in `X-CSRF-Token`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Iterations of new password hashes (OWASP's 2023 figure for PBKDF2-HMAC-SHA256).
pub const PBKDF2_ITERATIONS: u32 = 600_000;

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `n` random bytes from the operating system.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the OS random source works");
    b
}

/// SHA-256 of a token, hex (what the store keeps).
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Compares without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// PBKDF2-HMAC-SHA256 (RFC 8018) with one 32-byte block.
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mac = Hmac::<Sha256>::new_from_slice(password).expect("HMAC takes any key length");
    let mut m = mac.clone();
    m.update(salt);
    m.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = m.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        let mut m = mac.clone();
        m.update(&u);
        u = m.finalize().into_bytes().into();
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

/// A new password hash: `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`.
pub fn hash_password(password: &str) -> String {
    let salt = random_bytes(16);
    let h = pbkdf2_sha256(password.as_bytes(), &salt, PBKDF2_ITERATIONS);
    format!("pbkdf2-sha256${PBKDF2_ITERATIONS}${}${}", hex(&salt), hex(&h))
}

/// Checks that a configured hash is well formed (so a typo fails at start, not at login).
pub fn parse_hash(stored: &str) -> Result<(u32, Vec<u8>, Vec<u8>), String> {
    let parts: Vec<&str> = stored.trim().split('$').collect();
    match parts.as_slice() {
        ["pbkdf2-sha256", iters, salt, hash] => {
            let iters: u32 = iters.parse().map_err(|_| "the iteration count is not a number".to_string())?;
            let salt = unhex(salt).ok_or("the salt is not hex")?;
            let hash = unhex(hash).filter(|h| h.len() == 32).ok_or("the hash is not 32 bytes of hex")?;
            if iters == 0 {
                return Err("the iteration count is 0".into());
            }
            Ok((iters, salt, hash))
        }
        _ => Err("expected pbkdf2-sha256$<iterations>$<salt hex>$<hash hex> (see `cemiface hash-password`)".into()),
    }
}

/// Whether `password` matches the stored hash.
pub fn verify_password(stored: &str, password: &str) -> bool {
    match parse_hash(stored) {
        Ok((iters, salt, hash)) => constant_time_eq(&pbkdf2_sha256(password.as_bytes(), &salt, iters), &hash),
        Err(_) => false,
    }
}

/// HMAC-SHA256 of a webhook body, as `sha256=<hex>` (the `X-CemiFace-Signature` header).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    m.update(body);
    format!("sha256={}", hex(&m.finalize().into_bytes()))
}

/// Scopes an API key can hold.
pub const SCOPES: [&str; 2] = ["generate", "read"];

/// Fixed-window counters (per key, per client address): at most `limit` events a minute.
#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    /// Counts an event for `who`; Err(seconds to wait) when over `limit` this minute.
    pub fn hit(&self, who: &str, limit: u32) -> Result<(), u64> {
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let e = w.entry(who.to_owned()).or_insert((now, 0));
        if now.duration_since(e.0) >= Duration::from_secs(60) {
            *e = (now, 0);
        }
        if e.1 >= limit {
            return Err(60u64.saturating_sub(now.duration_since(e.0).as_secs()).max(1));
        }
        e.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_rfc7914_vector() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256("passwd", "salt", 1, 64), first 32 bytes.
        assert_eq!(
            hex(&pbkdf2_sha256(b"passwd", b"salt", 1)),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        // RFC 7914 §11: ("Password", "NaCl", 80000), first 32 bytes.
        assert_eq!(
            hex(&pbkdf2_sha256(b"Password", b"NaCl", 80000)),
            "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
        );
    }

    #[test]
    fn password_round_trip_and_malformed_hashes() {
        let h = format!("pbkdf2-sha256$1000${}${}", hex(b"0123456789abcdef"), hex(&pbkdf2_sha256(b"pw", b"0123456789abcdef", 1000)));
        assert!(verify_password(&h, "pw"));
        assert!(!verify_password(&h, "pW"));
        assert!(parse_hash("plain").is_err());
        assert!(parse_hash("pbkdf2-sha256$x$00$00").is_err());
        assert!(!verify_password("pbkdf2-sha256$1$00$00", "pw"));
    }

    #[test]
    fn hmac_signature_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn rate_limiter_counts_per_client() {
        let r = RateLimiter::default();
        assert!(r.hit("a", 2).is_ok() && r.hit("a", 2).is_ok());
        assert!(r.hit("a", 2).is_err());
        assert!(r.hit("b", 2).is_ok());
    }
}
