//! Pure self-update rules: whether to install the version the fleet asks for, how long to wait
//! before downloading, how long to back off after a failure, and whether a download is the
//! release it claims to be. (Boot trials and quarantine: `kanade_shared::boot`.)

use std::time::Duration;

use kanade_shared::Version;
use kanade_shared::boot::BootState;
use sha2::Digest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wish {
    /// Nothing to do.
    Stay,
    Install(Version),
    /// The fleet asks for a version this agent will not install, and why (reported).
    Refuse(Version, String),
}

/// What to do about the effective `target_version` (pc beats group beats global).
pub fn wanted(target: Option<&Version>, running: &Version, boot: &BootState) -> Wish {
    match target {
        None => Wish::Stay,
        Some(t) if t == running => Wish::Stay,
        Some(t) => match boot.quarantined(t) {
            Some(q) => Wish::Refuse(
                t.clone(),
                format!(
                    "version {t} is quarantined on this PC ({}); not installing it until an operator runs `kanade agent clear-quarantine`",
                    q.reason
                ),
            ),
            None => Wish::Install(t.clone()),
        },
    }
}

/// How long to wait before trying again after `failures` failed attempts in a row (a missing
/// release, a bad download, a full disk): 1 min doubling to 1 h, so a fixed problem is picked up
/// soon and a lasting one costs little.
pub fn retry_after(failures: u32) -> Duration {
    let base = Duration::from_secs(60);
    base.saturating_mul(1 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(3600))
}

/// A random wait within `max` (so a fleet does not download at once); `unit` is in [0, 1).
pub fn jitter(max: Duration, unit: f64) -> Duration {
    max.mul_f64(unit.clamp(0.0, 1.0))
}

/// Check a download against the object store's digest (`SHA-256=<base64url>`, as NATS object
/// stores record it).
pub fn verify_digest(expected: &str, body: &[u8]) -> Result<(), String> {
    use base64::Engine;
    let Some(b64) = expected.strip_prefix("SHA-256=") else {
        return Err(format!("the release's digest {expected:?} is not SHA-256; refusing to install"));
    };
    let actual = sha2::Sha256::digest(body);
    let want = base64::engine::general_purpose::URL_SAFE
        .decode(b64)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64))
        .map_err(|_| format!("the release's digest {expected:?} is not base64"))?;
    if want.as_slice() == actual.as_slice() {
        Ok(())
    } else {
        Err("the download does not match the release's sha256 (corrupted or altered); not installed"
            .to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn what_the_fleet_asks_for() {
        let mut quarantined = BootState::default();
        quarantined.quarantine(v("3"), kanade_shared::wire::Timestamp::now_utc(), "crashed".into());
        assert_eq!(wanted(None, &v("1"), &quarantined), Wish::Stay);
        assert_eq!(wanted(Some(&v("1")), &v("1"), &quarantined), Wish::Stay);
        assert_eq!(wanted(Some(&v("2")), &v("1"), &quarantined), Wish::Install(v("2")));
        // Downgrades are installs too: the operator decides.
        assert_eq!(wanted(Some(&v("0.9")), &v("1"), &quarantined), Wish::Install(v("0.9")));
        assert!(
            matches!(wanted(Some(&v("3")), &v("2"), &quarantined), Wish::Refuse(ref x, ref why) if *x == v("3") && why.contains("crashed"))
        );
    }

    #[test]
    fn retries_back_off_to_an_hour() {
        assert_eq!(retry_after(1), Duration::from_secs(60));
        assert_eq!(retry_after(2), Duration::from_secs(120));
        assert_eq!(retry_after(6), Duration::from_secs(1920));
        assert_eq!(retry_after(7), Duration::from_secs(3600));
        assert_eq!(retry_after(500), Duration::from_secs(3600));
    }

    #[test]
    fn jitter_and_digests() {
        assert_eq!(jitter(Duration::from_secs(600), 0.5), Duration::from_secs(300));
        assert_eq!(jitter(Duration::ZERO, 0.9), Duration::ZERO);
        assert_eq!(jitter(Duration::from_secs(10), 7.0), Duration::from_secs(10));
        use base64::Engine;
        let body = b"agent binary";
        let digest = format!(
            "SHA-256={}",
            base64::engine::general_purpose::URL_SAFE.encode(sha2::Sha256::digest(body))
        );
        assert_eq!(verify_digest(&digest, body), Ok(()));
        assert!(
            verify_digest(&digest, b"agent binarY").unwrap_err().starts_with("the download does not match")
        );
        assert!(verify_digest("MD5=abc", body).unwrap_err().contains("not SHA-256"));
    }
}
