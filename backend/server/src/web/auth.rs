//! Admin login and API keys. The admin password is configured as an Argon2id hash
//! (`cemiface hash-password`; PBKDF2 hashes of earlier versions still verify and are upgraded to
//! Argon2id in the store at the next login); sessions and keys are random tokens of which the store keeps only
//! the SHA-256. Admin sessions live in an HttpOnly SameSite=Strict cookie, and every state-changing
//! admin request must carry the session's CSRF token in `X-CSRF-Token`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

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

/// PBKDF2-HMAC-SHA256 (RFC 8018), 32 bytes: what hashes of earlier versions used.
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations)
}

/// A new password hash: Argon2id with the `argon2` crate's defaults (19 MiB, 2 passes, 1 lane:
/// OWASP's first choice), in PHC string format (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::from_b64(&b64_salt()).expect("16 random bytes in base64 form a salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 hashes any password with the default parameters")
        .to_string()
}

fn b64_salt() -> String {
    use argon2::password_hash::Encoding;
    let mut buf = [0u8; 32];
    Encoding::B64
        .encode(&random_bytes(16), &mut buf)
        .expect("22 characters fit")
        .to_owned()
}

/// A configured password hash: Argon2 (PHC string) or, from earlier versions,
/// `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredHash {
    Argon2(String),
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

impl StoredHash {
    /// Whether a successful login should replace it by an Argon2id hash.
    pub fn needs_upgrade(&self) -> bool {
        matches!(self, Self::Pbkdf2 { .. })
    }
}

/// Checks that a configured hash is well formed (so a typo fails at start, not at login).
pub fn parse_hash(stored: &str) -> Result<StoredHash, String> {
    let stored = stored.trim();
    if stored.starts_with("$argon2") {
        let h = PasswordHash::new(stored).map_err(|e| format!("not a valid Argon2 PHC string: {e}"))?;
        argon2::Algorithm::try_from(h.algorithm).map_err(|e| format!("not an Argon2 variant: {e}"))?;
        argon2::Params::try_from(&h).map_err(|e| format!("its Argon2 parameters are invalid: {e}"))?;
        if h.salt.is_none() || h.hash.is_none() {
            return Err("the Argon2 PHC string has no salt or no hash".into());
        }
        return Ok(StoredHash::Argon2(stored.to_owned()));
    }
    let parts: Vec<&str> = stored.split('$').collect();
    match parts.as_slice() {
        ["pbkdf2-sha256", iters, salt, hash] => {
            let iterations: u32 = iters.parse().map_err(|_| "the iteration count is not a number".to_string())?;
            let salt = unhex(salt).ok_or("the salt is not hex")?;
            let hash = unhex(hash).filter(|h| h.len() == 32).ok_or("the hash is not 32 bytes of hex")?;
            if iterations == 0 {
                return Err("the iteration count is 0".into());
            }
            Ok(StoredHash::Pbkdf2 { iterations, salt, hash })
        }
        _ => Err("expected an Argon2 PHC string ($argon2id$...) or pbkdf2-sha256$<iterations>$<salt hex>$<hash hex> \
                  (make one with `cemiface hash-password`)"
            .into()),
    }
}

/// Whether `password` matches the stored hash (Argon2 or PBKDF2).
pub fn verify_password(stored: &str, password: &str) -> bool {
    match parse_hash(stored) {
        Ok(StoredHash::Argon2(phc)) => PasswordHash::new(&phc)
            .is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok()),
        Ok(StoredHash::Pbkdf2 {
            iterations,
            salt,
            hash,
        }) => constant_time_eq(&pbkdf2_sha256(password.as_bytes(), &salt, iterations), &hash),
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

/// A cookie of a request.
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Refuses cross-site upgrades: a page on another origin must not drive this server.
pub fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let Some(origin) = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return true; // not a browser (scripts, tests)
    };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin.split_once("://").map(|(_, h)| h) == Some(host)
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
    fn new_hashes_are_argon2id_phc_strings_that_verify() {
        let h = hash_password("a long passphrase");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_ne!(h, hash_password("a long passphrase"), "a fresh salt each time");
        assert!(verify_password(&h, "a long passphrase"));
        assert!(!verify_password(&h, "a long passphrasE"));
        assert!(!parse_hash(&h).unwrap().needs_upgrade());
        assert!(parse_hash("$argon2id$v=19$garbage").is_err());
    }

    #[test]
    fn argon2id_matches_the_reference_implementation() {
        // scripts/reference/argon2_golden.py (argon2-cffi, the reference C code).
        let phc = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$K13EBUiG7JV+9ZxztmHFTdb7J0WQsnj2V8bZaqyPptE";
        let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
        assert_eq!(
            Argon2::default()
                .hash_password(b"password", &salt)
                .unwrap()
                .to_string(),
            phc
        );
        assert!(verify_password(phc, "password") && !verify_password(phc, "Password"));
    }

    #[test]
    fn password_round_trip_and_malformed_hashes() {
        let h = format!(
            "pbkdf2-sha256$1000${}${}",
            hex(b"0123456789abcdef"),
            hex(&pbkdf2_sha256(b"pw", b"0123456789abcdef", 1000))
        );
        assert!(verify_password(&h, "pw"));
        assert!(!verify_password(&h, "pW"));
        assert!(parse_hash("plain").is_err());
        assert!(parse_hash("pbkdf2-sha256$x$00$00").is_err());
        assert!(!verify_password("pbkdf2-sha256$1$00$00", "pw"));
        assert!(parse_hash(&h).unwrap().needs_upgrade());
    }

    #[test]
    fn hmac_signature_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
