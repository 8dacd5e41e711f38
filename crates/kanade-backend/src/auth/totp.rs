//! The second factor: time-based one-time codes (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps —
//! what every authenticator app reads from an `otpauth://` URI) and single-use recovery codes.
//! Pure but for the randomness of new secrets and recovery codes.

use totp_rs::{Algorithm, Secret, TOTP};

const DIGITS: usize = 6;
const STEP_SECS: u64 = 30;
/// Codes of the step before and after also count: phones' clocks drift.
const SKEW_STEPS: u64 = 1;
/// 160 bits, the HMAC-SHA1 block RFC 4226 recommends.
const SECRET_BYTES: usize = 20;
pub const RECOVERY_CODES: usize = 10;
/// The name authenticator apps show for the account.
const ISSUER: &str = "kanade";

/// A fresh secret, base32 as authenticator apps and the `otpauth://` URI carry it.
pub fn new_secret() -> Result<String, String> {
    let mut raw = vec![0u8; SECRET_BYTES];
    getrandom::getrandom(&mut raw).map_err(|e| format!("no randomness available: {e}"))?;
    Ok(Secret::Raw(raw).to_encoded().to_string())
}

fn totp(secret: &str, account: &str) -> Result<TOTP, String> {
    let raw = Secret::Encoded(secret.to_owned())
        .to_bytes()
        .map_err(|e| format!("stored secret unreadable: {e:?}"))?;
    // Unchecked: a user name may hold characters the URI encodes anyway.
    Ok(TOTP::new_unchecked(
        Algorithm::SHA1,
        DIGITS,
        SKEW_STEPS as u8,
        STEP_SECS,
        raw,
        Some(ISSUER.into()),
        account.into(),
    ))
}

/// `otpauth://totp/kanade:<account>?secret=…&issuer=kanade` for the app (as text or QR code).
pub fn uri(secret: &str, account: &str) -> Result<String, String> {
    Ok(totp(secret, account)?.get_url())
}

/// The code for one time step (a test's authenticator).
pub fn code_at(secret: &str, unix_secs: u64) -> Result<String, String> {
    Ok(totp(secret, "")?.generate(unix_secs))
}

/// The time step `code` belongs to, within the allowed skew of `now`; `None` for a wrong code.
/// The step is what the caller remembers so the same code cannot be used twice.
pub fn matching_step(secret: &str, code: &str, now_secs: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret, "").ok()?;
    let now = now_secs / STEP_SECS;
    let mut found = None;
    // Every candidate is computed and compared, found or not: no early exit to time.
    for step in now.saturating_sub(SKEW_STEPS)..=now + SKEW_STEPS {
        let expected = totp.generate(step * STEP_SECS);
        let same = expected.bytes().zip(code.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if same && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// Ten fresh recovery codes, `xxxxx-xxxxx` in lowercase base32.
pub fn new_recovery_codes() -> Result<Vec<String>, String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut raw = [0u8; 10];
            getrandom::getrandom(&mut raw).map_err(|e| format!("no randomness available: {e}"))?;
            let chars: String = raw.iter().map(|b| ALPHABET[usize::from(b % 32)] as char).collect();
            Ok(format!("{}-{}", &chars[..5], &chars[5..]))
        })
        .collect()
}

/// A recovery code as stored and compared: lowercase, no dashes or spaces.
pub fn normalise_recovery(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

/// Whether `code` looks like a recovery code rather than a 6-digit one.
pub fn is_recovery(code: &str) -> bool {
    normalise_recovery(code).len() == 10
}

/// A QR code as rows of `1` (dark) and `0` (light) modules, for the dashboard to draw with SVG
/// shapes and the CLI with block characters (no image format, no markup to inject).
pub fn qr_rows(text: &str) -> Result<Vec<String>, String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| format!("cannot make a QR code: {e}"))?;
    let width = code.width();
    let colors = code.to_colors();
    Ok(colors
        .chunks(width)
        .map(|row| row.iter().map(|c| if *c == qrcode::Color::Dark { '1' } else { '0' }).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238's SHA1 seed, "12345678901234567890", in base32.
    const RFC_SEED: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn codes_match_rfc_6238() {
        // The RFC's 8-digit values, cut to their last 6 digits.
        for (t, want) in
            [(59, "287082"), (1_111_111_109, "081804"), (1_234_567_890, "005924"), (2_000_000_000, "279037")]
        {
            assert_eq!(code_at(RFC_SEED, t).unwrap(), want, "t = {t}");
        }
    }

    #[test]
    fn a_code_is_accepted_one_step_either_side_and_says_which_step() {
        let now = 1_234_567_890;
        let step = now / 30;
        let code = |t: u64| code_at(RFC_SEED, t).unwrap();
        let cases = [
            ("this step", code(now), Some(step)),
            ("the step before", code(now - 30), Some(step - 1)),
            ("the step after", code(now + 30), Some(step + 1)),
            ("two steps old", code(now - 60), None),
            ("spaces are ignored", format!("{} {}", &code(now)[..3], &code(now)[3..]), Some(step)),
            ("too short", "12345".to_owned(), None),
            ("not digits", "12345a".to_owned(), None),
        ];
        for (name, code, want) in cases {
            assert_eq!(matching_step(RFC_SEED, &code, now), want, "{name}");
        }
    }

    #[test]
    fn secrets_uris_recovery_codes_and_qr() {
        let secret = new_secret().unwrap();
        assert_eq!(secret.len(), 32, "160 bits in base32");
        let uri = uri(&secret, "alice").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/kanade:alice?secret=") && uri.contains("issuer=kanade"),
            "{uri}"
        );
        let codes = new_recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert!(codes.iter().all(|c| c.len() == 11 && is_recovery(c)));
        assert_eq!(normalise_recovery(" ABCDE-fghij "), "abcdefghij");
        assert!(!is_recovery("123456"));
        let rows = qr_rows(&uri).unwrap();
        assert!(rows.len() >= 21 && rows.iter().all(|r| r.len() == rows.len()));
    }
}
