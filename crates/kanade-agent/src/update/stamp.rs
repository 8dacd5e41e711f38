//! The agent's version and build target.
//!
//! The version is `CARGO_PKG_VERSION` unless the binary was stamped after the build: a 64-byte
//! slot starting with [`STAMP_MARKER`] holds an optional version (NUL-padded). Packagers can
//! stamp a build number without rebuilding, and tests make "version 2" and "version 3" of the
//! real binary by copying and stamping it ([`stamp`]), which a second cargo build would make
//! slow.

use std::sync::OnceLock;

/// What precedes the version in the slot. The marker appears in the binary exactly once.
pub const STAMP_MARKER: &[u8; 24] = b"kanade-version-stamp:v1=";
const SLOT: usize = 64;

static STAMP: [u8; SLOT] = {
    let mut slot = [0u8; SLOT];
    let mut i = 0;
    while i < STAMP_MARKER.len() {
        slot[i] = STAMP_MARKER[i];
        i += 1;
    }
    slot
};

/// The triple this binary was built for (the release key's second part).
pub const TARGET: &str = env!("KANADE_AGENT_TARGET");

/// This binary's version: the stamp when there is one, else the crate version.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        // Read through an opaque reference so the optimizer cannot fold in the all-zero slot.
        let slot: &[u8; SLOT] = std::hint::black_box(&STAMP);
        stamped(&slot[STAMP_MARKER.len()..]).unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned())
    })
}

fn stamped(area: &[u8]) -> Option<String> {
    let end = area.iter().position(|&b| b == 0).unwrap_or(area.len());
    let text = std::str::from_utf8(&area[..end]).ok()?;
    (!text.is_empty()).then(|| text.to_owned())
}

/// A copy of `binary` that reports `version`. Fails when the slot is not found exactly once or
/// the version does not fit.
pub fn stamp(binary: &[u8], version: &str) -> Result<Vec<u8>, String> {
    let room = SLOT - STAMP_MARKER.len();
    if version.is_empty() || version.len() >= room {
        return Err(format!("version {version:?} must be 1 to {} bytes", room - 1));
    }
    let mut at = binary.windows(STAMP_MARKER.len()).enumerate().filter(|(_, w)| w == STAMP_MARKER);
    let (Some((start, _)), None) = (at.next(), at.next()) else {
        return Err("the binary has no version slot, or more than one; is it kanade-agent?".into());
    };
    let area = start + STAMP_MARKER.len();
    let mut out = binary.to_vec();
    out[area..area + room].fill(0);
    out[area..area + version.len()].copy_from_slice(version.as_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unstamped_builds_report_the_crate_version() {
        assert_eq!(version(), env!("CARGO_PKG_VERSION"));
        assert!(!TARGET.is_empty());
    }

    #[test]
    fn stamping_writes_the_slot_once() {
        let mut fake = b"head".to_vec();
        fake.extend_from_slice(&STAMP);
        fake.extend_from_slice(b"tail");
        let out = stamp(&fake, "2.0.0").unwrap();
        assert_eq!(out.len(), fake.len());
        let area = 4 + STAMP_MARKER.len();
        assert_eq!(stamped(&out[area..area + SLOT - STAMP_MARKER.len()]).as_deref(), Some("2.0.0"));
        // Restamping replaces, it does not append.
        let again = stamp(&out, "3").unwrap();
        assert_eq!(stamped(&again[area..area + SLOT - STAMP_MARKER.len()]).as_deref(), Some("3"));
        assert!(stamp(b"no slot here", "2").unwrap_err().contains("no version slot"));
        let mut twice = fake.clone();
        twice.extend_from_slice(&STAMP);
        assert!(stamp(&twice, "2").is_err());
        assert!(stamp(&fake, &"9".repeat(40)).unwrap_err().contains("1 to 39 bytes"));
    }
}
