//! Passwords: argon2id hashes in PHC string form, and the rule new passwords must meet.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

pub const MIN_LEN: usize = 10;

pub fn hash(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Why a new password is refused, if it is.
pub fn check_new(name: &str, password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_LEN {
        return Err(format!("password: must be at least {MIN_LEN} characters"));
    }
    if password.eq_ignore_ascii_case(name) {
        return Err("password: must not be the user name".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify("correct horse", &a) && verify("correct horse", &b));
        assert!(!verify("wrong horse", &a));
        assert!(!verify("correct horse", "not a hash"));
        assert_eq!(check_new("alice", "short"), Err("password: must be at least 10 characters".into()));
        assert_eq!(
            check_new("administrator", "Administrator"),
            Err("password: must not be the user name".into())
        );
        assert_eq!(check_new("alice", "long enough pass"), Ok(()));
    }
}
