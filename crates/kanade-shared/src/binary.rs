//! Replacing a program's own binary (self-update, rollback to the kept last-good one). Every
//! step writes a temp file and renames it, so a crash or a full disk leaves either the old file
//! or the new one, never half of one; the running binary is only touched by the final rename.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` through a temp file; on any error the temp file is removed and
/// `path` is as it was.
pub fn write_complete(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = partial(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        make_executable(&tmp)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Keep a copy of the running binary as last-good, then put `new` in its place.
pub fn swap_in(exe: &Path, new: &Path, last_good: &Path) -> std::io::Result<()> {
    let current = std::fs::read(exe)?;
    write_complete(last_good, &current)?;
    replace(exe, new)
}

/// Put the binary at `from` where `exe` is. The new file is written next to `exe` first (same
/// file system, so the final rename is atomic).
pub fn replace(exe: &Path, from: &Path) -> std::io::Result<()> {
    let bytes = std::fs::read(from)?;
    let next = exe.with_file_name(format!(
        ".{}.next",
        exe.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    write_complete(&next, &bytes)?;
    // Windows cannot replace a running executable, but it can rename it out of the way.
    #[cfg(windows)]
    {
        let old = exe.with_extension("old");
        let _ = std::fs::remove_file(&old);
        if let Err(e) = std::fs::rename(exe, &old) {
            let _ = std::fs::remove_file(&next);
            return Err(e);
        }
    }
    let result = std::fs::rename(&next, exe);
    if result.is_err() {
        let _ = std::fs::remove_file(&next);
        // Never leave the program missing: the renamed-aside binary goes back.
        #[cfg(windows)]
        let _ = std::fs::rename(exe.with_extension("old"), exe);
    }
    result
}

fn partial(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    path.with_file_name(name)
}

fn make_executable(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_keeps_last_good_and_replaces_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("bin").join("kanade-agent");
        let staged = dir.path().join("staging").join("kanade-agent-2");
        let last_good = dir.path().join("last-good").join("kanade-agent");
        write_complete(&exe, b"v1").unwrap();
        write_complete(&staged, b"v2").unwrap();
        swap_in(&exe, &staged, &last_good).unwrap();
        assert_eq!(std::fs::read(&exe).unwrap(), b"v2");
        assert_eq!(std::fs::read(&last_good).unwrap(), b"v1");
        replace(&exe, &last_good).unwrap();
        assert_eq!(std::fs::read(&exe).unwrap(), b"v1");
        // Nothing half-written is left behind.
        let names: Vec<_> =
            std::fs::read_dir(exe.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["kanade-agent"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&exe).unwrap().permissions().mode() & 0o777, 0o755);
        }
    }
    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("kanade-agent");
        write_complete(&exe, b"v1").unwrap();
        // The staged source is missing: nothing changes.
        assert!(replace(&exe, &dir.path().join("absent")).is_err());
        assert_eq!(std::fs::read(&exe).unwrap(), b"v1");
        // The final rename fails (a directory stands where the file goes): the temp file is
        // removed and what was there is untouched.
        let taken = dir.path().join("taken");
        std::fs::create_dir(&taken).unwrap();
        std::fs::write(taken.join("inside"), b"kept").unwrap();
        assert!(write_complete(&taken, b"new").is_err());
        assert_eq!(std::fs::read(taken.join("inside")).unwrap(), b"kept");
        let mut names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        names.sort();
        assert_eq!(names, ["kanade-agent", "taken"], "no partial file left");
        assert_eq!(std::fs::read(&exe).unwrap(), b"v1");
    }
}
