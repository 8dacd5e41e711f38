//! Pure self-update rules.
//!
//! A version is installed when the fleet asks for one this agent does not run and has not
//! quarantined. The new binary boots "on trial": a sentinel in the data dir counts its starts;
//! once it has been connected and heartbeating for `HEALTHY_AFTER` it is confirmed. A version
//! that fails `MAX_BOOT_ATTEMPTS` starts without confirming is rolled back to the last good
//! binary and quarantined, and never installed again until an operator clears it. A swap that
//! comes back still running the old version stops there and reports, instead of looping.

use std::collections::BTreeSet;
use std::time::Duration;

use kanade_shared::Version;
use serde::{Deserialize, Serialize};
use sha2::Digest;

pub const MAX_BOOT_ATTEMPTS: u32 = 3;
pub const HEALTHY_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wish {
    /// Nothing to do.
    Stay,
    Install(Version),
    /// The fleet asks for a version this agent will not install, and why (reported).
    Refuse(Version, String),
}

/// What to do about the effective `target_version` (pc beats group beats global).
pub fn wanted(target: Option<&Version>, running: &Version, quarantined: &BTreeSet<Version>) -> Wish {
    match target {
        None => Wish::Stay,
        Some(t) if t == running => Wish::Stay,
        Some(t) if quarantined.contains(t) => Wish::Refuse(
            t.clone(),
            format!("version {t} is quarantined on this PC (it failed to start); an operator must clear it"),
        ),
        Some(t) => Wish::Install(t.clone()),
    }
}

/// Kept in the data dir across the restart that a swap causes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sentinel {
    /// The version on trial.
    pub version: Version,
    /// The last good version, whose binary was kept.
    pub previous: Version,
    /// Starts of `version` so far.
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// No update pending.
    Normal,
    /// The new version's n-th start: record it, then confirm after `HEALTHY_AFTER`.
    Trial { attempts: u32 },
    /// Too many starts without confirming: restore `to` and quarantine `bad`.
    RollBack { bad: Version, to: Version },
    /// The swap did not take (the old binary started again): stop trying `wanted`, report it.
    SwapDidNotTake { wanted: Version },
}

pub fn on_boot(sentinel: Option<&Sentinel>, running: &Version) -> Boot {
    let Some(s) = sentinel else { return Boot::Normal };
    if &s.version != running {
        return if &s.previous == running {
            Boot::SwapDidNotTake { wanted: s.version.clone() }
        } else {
            // Someone installed another version by hand; the trial no longer applies.
            Boot::Normal
        };
    }
    if s.attempts >= MAX_BOOT_ATTEMPTS {
        Boot::RollBack { bad: s.version.clone(), to: s.previous.clone() }
    } else {
        Boot::Trial { attempts: s.attempts + 1 }
    }
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
        let quarantined: BTreeSet<Version> = [v("3")].into();
        assert_eq!(wanted(None, &v("1"), &quarantined), Wish::Stay);
        assert_eq!(wanted(Some(&v("1")), &v("1"), &quarantined), Wish::Stay);
        assert_eq!(wanted(Some(&v("2")), &v("1"), &quarantined), Wish::Install(v("2")));
        // Downgrades are installs too: the operator decides.
        assert_eq!(wanted(Some(&v("0.9")), &v("1"), &quarantined), Wish::Install(v("0.9")));
        assert!(
            matches!(wanted(Some(&v("3")), &v("2"), &quarantined), Wish::Refuse(ref x, _) if *x == v("3"))
        );
    }

    #[test]
    fn boots_on_trial_roll_back_after_three() {
        let s = |attempts| Sentinel { version: v("3"), previous: v("2"), attempts };
        assert_eq!(on_boot(None, &v("2")), Boot::Normal);
        assert_eq!(on_boot(Some(&s(0)), &v("3")), Boot::Trial { attempts: 1 });
        assert_eq!(on_boot(Some(&s(2)), &v("3")), Boot::Trial { attempts: 3 });
        assert_eq!(on_boot(Some(&s(3)), &v("3")), Boot::RollBack { bad: v("3"), to: v("2") });
        assert_eq!(on_boot(Some(&s(1)), &v("2")), Boot::SwapDidNotTake { wanted: v("3") });
        assert_eq!(on_boot(Some(&s(1)), &v("4")), Boot::Normal);
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
