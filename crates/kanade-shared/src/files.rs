//! Files that hold secrets (keys, tokens, passwords): readable by their owner only from the
//! moment they exist.

use std::io::Write;
use std::path::Path;

/// Whether an existing file may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Fail instead: a key that agents pin must never be overwritten by accident.
    Keep,
    /// Replace it atomically (a private temp file renamed over it).
    Replace,
}

pub fn write_private(path: &Path, bytes: &[u8], existing: Existing) -> std::io::Result<()> {
    let target = match existing {
        Existing::Keep => path.to_path_buf(),
        Existing::Replace => path.with_extension("tmp"),
    };
    if existing == Existing::Replace {
        let _ = std::fs::remove_file(&target);
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(&target)?.write_all(bytes)?;
    if existing == Existing::Replace {
        std::fs::rename(&target, path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_keep_or_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, b"one", Existing::Keep).unwrap();
        assert!(write_private(&path, b"two", Existing::Keep).is_err());
        write_private(&path, b"three", Existing::Replace).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"three");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
