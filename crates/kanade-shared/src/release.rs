//! Agent releases in the `agent_releases` object store, keyed `<version>/<target-triple>`.

use crate::Version;

/// The object key of a release.
pub fn key(version: &Version, target: &str) -> String {
    format!("{version}/{target}")
}

/// A target triple: lowercase letters, digits, `_` and `-`, 3 or 4 parts.
pub fn check_target(target: &str) -> Result<(), String> {
    let parts = target.split('-').count();
    let ok = (3..=4).contains(&parts)
        && target.len() <= 64
        && target.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("{target:?} is not a target triple (e.g. x86_64-unknown-linux-gnu)"))
    }
}

/// The target triple of an executable, from its header: ELF (Linux, glibc assumed), PE
/// (Windows, MSVC assumed: a GNU build must be published with an explicit target) or 64-bit
/// Mach-O. `None` when the bytes are none of these.
pub fn detect_target(bytes: &[u8]) -> Option<&'static str> {
    let u16_at = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if bytes.starts_with(b"\x7fELF") {
        return match u16_at(0x12)? {
            0x3e => Some("x86_64-unknown-linux-gnu"),
            0xb7 => Some("aarch64-unknown-linux-gnu"),
            _ => None,
        };
    }
    if bytes.starts_with(b"MZ") {
        let pe = u32_at(0x3c)? as usize;
        if bytes.get(pe..pe + 4)? != b"PE\0\0" {
            return None;
        }
        return match u16_at(pe + 4)? {
            0x8664 => Some("x86_64-pc-windows-msvc"),
            0xaa64 => Some("aarch64-pc-windows-msvc"),
            _ => None,
        };
    }
    if bytes.starts_with(&[0xcf, 0xfa, 0xed, 0xfe]) {
        return match u32_at(4)? {
            0x0100_0007 => Some("x86_64-apple-darwin"),
            0x0100_000c => Some("aarch64-apple-darwin"),
            _ => None,
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_name_their_target() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[0x12] = 0x3e;
        assert_eq!(detect_target(&elf), Some("x86_64-unknown-linux-gnu"));
        elf[0x12] = 0xb7;
        assert_eq!(detect_target(&elf), Some("aarch64-unknown-linux-gnu"));
        let mut pe = vec![0u8; 256];
        pe[..2].copy_from_slice(b"MZ");
        pe[0x3c] = 0x80;
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        pe[0x84..0x86].copy_from_slice(&0x8664u16.to_le_bytes());
        assert_eq!(detect_target(&pe), Some("x86_64-pc-windows-msvc"));
        let mut macho = vec![0u8; 32];
        macho[..4].copy_from_slice(&[0xcf, 0xfa, 0xed, 0xfe]);
        macho[4..8].copy_from_slice(&0x0100_000cu32.to_le_bytes());
        assert_eq!(detect_target(&macho), Some("aarch64-apple-darwin"));
        assert_eq!(detect_target(b"#!/bin/sh\necho"), None);
        assert_eq!(detect_target(b"MZ"), None);
        // This very test binary.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(detect_target(&me), Some("x86_64-unknown-linux-gnu"));
        }
    }

    #[test]
    fn keys_and_targets() {
        assert_eq!(
            key(&"2.0.1".parse().unwrap(), "x86_64-unknown-linux-gnu"),
            "2.0.1/x86_64-unknown-linux-gnu"
        );
        assert!(check_target("x86_64-pc-windows-gnu").is_ok());
        assert_eq!(
            check_target("linux").unwrap_err(),
            r#""linux" is not a target triple (e.g. x86_64-unknown-linux-gnu)"#
        );
    }
}
