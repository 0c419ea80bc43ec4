//! Passwords and tokens: argon2id hashing, the password policy, one-time passwords, and the
//! random tokens behind sessions and CSRF protection.
//!
//! Parameters (OWASP Password Storage Cheat Sheet, 2024 minimum for argon2id): memory 19 MiB
//! (19 456 KiB), 2 iterations, 1 lane, 32-byte output, 16-byte salt from the system RNG. Each
//! hash is a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), so the parameters travel
//! with it: raising them later re-hashes nothing and still verifies old hashes.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use super::SecurityError;

/// argon2id memory cost in KiB.
pub const M_COST_KIB: u32 = 19_456;
/// argon2id iterations.
pub const T_COST: u32 = 2;
/// argon2id lanes.
pub const P_COST: u32 = 1;
/// Shortest password accepted.
pub const MIN_LEN: usize = 12;

fn hasher() -> Argon2<'static> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, Some(32)).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Bytes from the system random number generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], SecurityError> {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).map_err(|_| SecurityError::Random)?;
    Ok(b)
}

/// The PHC string of `password` under a fresh salt.
pub fn hash(password: &str) -> Result<String, SecurityError> {
    let salt = random_bytes::<16>()?;
    hasher()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| SecurityError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `phc` (with the parameters recorded in it).
pub fn verify(password: &str, phc: &str) -> bool {
    hasher().verify_password(password.as_bytes(), phc).is_ok()
}

/// A hash that no password matches, verified against when a user name is unknown so that
/// the answer takes as long as for a known one.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash(&hex(&random_bytes::<16>().unwrap_or([7; 16]))).unwrap_or_default())
}

/// Checks a new password against the policy; the error says what to change.
pub fn check_policy(password: &str, user: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!("the password must have at least {MIN_LEN} characters (it has {n})"));
    }
    if n > 256 {
        return Err("the password must have at most 256 characters".into());
    }
    if password.to_lowercase().contains(&user.to_lowercase()) && !user.is_empty() {
        return Err("the password must not contain the user name".into());
    }
    if password.chars().collect::<std::collections::HashSet<_>>().len() < 5 {
        return Err("the password must use at least 5 different characters".into());
    }
    Ok(())
}

/// A one-time password: 20 characters from an alphabet without look-alikes (no 0/O, 1/l/I),
/// in groups of five, about 100 bits.
pub fn one_time_password() -> Result<String, SecurityError> {
    const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
    let bytes = random_bytes::<20>()?;
    let mut out = String::with_capacity(23);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 5 == 0 {
            out.push('-');
        }
        // 256 % 55 leaves a bias below 0.5 % per character: immaterial at 100 bits.
        out.push(ALPHABET[*b as usize % ALPHABET.len()] as char);
    }
    Ok(out)
}

/// A 256-bit random token, hex encoded (session cookies, CSRF tokens).
pub fn token() -> Result<String, SecurityError> {
    Ok(hex(&random_bytes::<32>()?))
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_argon2id_with_documented_parameters_and_verifies() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("", &h));
        assert!(!verify("x", "not a phc string"));
        // A fresh salt each time.
        assert_ne!(h, hash("correct horse battery").unwrap());
        assert!(!verify("anything", dummy_hash()));
    }

    #[test]
    fn policy_names_the_problem() {
        assert!(check_policy("short", "ann").unwrap_err().contains("at least 12"));
        assert!(check_policy("ann-is-my-password", "ann").unwrap_err().contains("user name"));
        assert!(check_policy("aaaaaaaaaaaaaaaa", "bob").unwrap_err().contains("different"));
        assert!(check_policy("a long passphrase", "bob").is_ok());
    }

    #[test]
    fn one_time_passwords_and_tokens_are_random_and_well_formed() {
        let a = one_time_password().unwrap();
        assert_eq!(a.len(), 23);
        assert_eq!(a.matches('-').count(), 3);
        assert!(!a.contains(['0', 'O', '1', 'l', 'I']));
        assert_ne!(a, one_time_password().unwrap());
        let t = token().unwrap();
        assert_eq!(t.len(), 64);
        assert_ne!(t, token().unwrap());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
