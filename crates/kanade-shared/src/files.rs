//! Files that hold secrets (keys, tokens, passwords): readable by their owner only from the
//! moment they exist.

use std::io::Write;
use std::path::Path;

/// Lower-case hex sha256 of `bytes`: how manifests and archives name a file's content.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A JetStream object's `SHA-256=<base64url>` digest as [`sha256_hex`] would write it.
pub fn object_digest_hex(digest: &str) -> Option<String> {
    use base64::Engine;
    let b64 = digest.strip_prefix("SHA-256=")?;
    let bytes = base64::engine::general_purpose::URL_SAFE.decode(b64).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

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

/// Create `path` (and missing parents) and make it private: 0700 on Unix, whether it existed or
/// not; on Windows an ACL of SYSTEM and Administrators only, protected from inheritance and
/// inherited by everything created inside, set when the directory is created (a directory that
/// already exists is checked instead, see [`writable_by_others`]). It holds command bodies,
/// their `env`, staged scripts and keys.
pub fn private_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::create_dir_all(path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    #[cfg(windows)]
    windows::create_private_dir(path)?;
    Ok(())
}

/// Windows: a new directory (it must not exist) for SYSTEM, Administrators and the account
/// `sid` only, inherited by what is created inside — where a job run as that user is staged.
#[cfg(windows)]
pub fn create_dir_for(path: &Path, sid: &str) -> std::io::Result<()> {
    windows::create_dir_for(path, sid)
}

/// Who an allow-ACE on a directory names, as far as the check cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trustee {
    /// Anyone but SYSTEM, Administrators and the account the process runs as: a group, another
    /// account, Creator Owner.
    Ordinary,
    /// SYSTEM, Administrators, or this process's own account (SYSTEM for the service; under
    /// wine, the prefix's user).
    Other,
}

/// Access bits that let a holder change what is in a directory or who may.
pub const WRITE_BITS: u32 = 0x2 /* write data / add file */
    | 0x4 /* append data / add subdirectory */
    | 0x40 /* delete child */
    | 0x1_0000 /* delete */
    | 0x4_0000 /* write DAC */
    | 0x8_0000 /* write owner */
    | 0x4000_0000 /* generic write */
    | 0x1000_0000 /* generic all */;

/// Pure: whether allow-ACEs (`trustee`, access mask; inherit-only ones already left out) let
/// ordinary users write.
pub fn grants_ordinary_write(aces: &[(Trustee, u32)]) -> bool {
    aces.iter().any(|(who, mask)| *who == Trustee::Ordinary && mask & WRITE_BITS != 0)
}

/// Whether ordinary users may write into `path` (Windows: its DACL; Unix: group or other write
/// bits). An agent refuses to start on such a data dir.
pub fn writable_by_others(path: &Path) -> std::io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o022 != 0)
    }
    #[cfg(windows)]
    {
        windows::writable_by_others(path)
    }
}

#[cfg(windows)]
#[allow(unsafe_code)]
mod windows {
    //! The Win32 calls behind [`super::private_dir`] and [`super::writable_by_others`].
    use std::os::windows::ffi::OsStrExt;
    use std::path::Path;

    use windows_sys::Win32::Foundation::{CloseHandle, ERROR_ALREADY_EXISTS, HANDLE, LocalFree};
    use windows_sys::Win32::Security::Authorization::{
        ConvertStringSecurityDescriptorToSecurityDescriptorW, GetNamedSecurityInfoW, SDDL_REVISION_1,
        SE_FILE_OBJECT,
    };
    use windows_sys::Win32::Security::{
        ACCESS_ALLOWED_ACE, ACL, ACL_SIZE_INFORMATION, AclSizeInformation, DACL_SECURITY_INFORMATION,
        EqualSid, GetAce, GetAclInformation, GetTokenInformation, INHERIT_ONLY_ACE, IsWellKnownSid,
        PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES, TOKEN_QUERY, TOKEN_USER, TokenUser,
        WinBuiltinAdministratorsSid, WinLocalSystemSid,
    };
    use windows_sys::Win32::Storage::FileSystem::CreateDirectoryW;
    use windows_sys::Win32::System::SystemServices::ACCESS_ALLOWED_ACE_TYPE;
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

    use super::Trustee;

    /// SYSTEM and Administrators, full control, inherited by files and subdirectories, and
    /// protected (`P`) from what the parent (`C:\ProgramData`) grants ordinary users.
    const PRIVATE_SDDL: &str = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";

    fn wide(text: &str) -> Vec<u16> {
        text.encode_utf16().chain(std::iter::once(0)).collect()
    }

    fn wide_path(path: &Path) -> Vec<u16> {
        path.as_os_str().encode_wide().chain(std::iter::once(0)).collect()
    }

    pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
        if path.is_dir() {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match create_dir_with(path, PRIVATE_SDDL) {
            Err(e) if e.raw_os_error() == Some(ERROR_ALREADY_EXISTS as i32) => Ok(()),
            made => made,
        }
    }

    /// A new directory (it must not exist) that SYSTEM, Administrators and the account `sid`
    /// may use, protected from what its parent grants.
    pub fn create_dir_for(path: &Path, sid: &str) -> std::io::Result<()> {
        if !sid.starts_with("S-") || !sid[2..].chars().all(|c| c.is_ascii_digit() || c == '-') {
            return Err(std::io::Error::other(format!("{sid:?} is not a SID")));
        }
        create_dir_with(path, &format!("{PRIVATE_SDDL}(A;OICI;FA;;;{sid})"))
    }

    fn create_dir_with(path: &Path, sddl: &str) -> std::io::Result<()> {
        let sddl = wide(sddl);
        let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `sddl` is NUL-terminated; on success `descriptor` points to memory we free
        // with LocalFree below.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let attributes = SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: descriptor,
            bInheritHandle: 0,
        };
        let name = wide_path(path);
        // SAFETY: `name` is NUL-terminated and `attributes` outlives the call.
        let created = unsafe { CreateDirectoryW(name.as_ptr(), &attributes) };
        let error = std::io::Error::last_os_error();
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW above.
        unsafe { LocalFree(descriptor) };
        if created == 0 {
            return Err(error);
        }
        Ok(())
    }

    pub fn writable_by_others(path: &Path) -> std::io::Result<bool> {
        let name = wide_path(path);
        let mut dacl: *mut ACL = std::ptr::null_mut();
        let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: out-pointers to locals; the descriptor is freed with LocalFree below and the
        // DACL points into it.
        let status = unsafe {
            GetNamedSecurityInfoW(
                name.as_ptr(),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut dacl,
                std::ptr::null_mut(),
                &mut descriptor,
            )
        };
        if status != 0 {
            return Err(std::io::Error::from_raw_os_error(status as i32));
        }
        let result = if dacl.is_null() {
            // No DACL at all: everyone has full access.
            Ok(true)
        } else {
            aces(dacl).map(|aces| super::grants_ordinary_write(&aces))
        };
        // SAFETY: allocated by GetNamedSecurityInfoW.
        unsafe { LocalFree(descriptor) };
        result
    }

    /// This process's own user SID, kept in the buffer `GetTokenInformation` filled.
    struct OwnSid(Vec<u64>);

    impl OwnSid {
        fn current() -> Option<Self> {
            let mut token: HANDLE = std::ptr::null_mut();
            // SAFETY: the pseudo-handle needs no closing; `token` is closed below.
            if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
                return None;
            }
            let mut buf = vec![0u64; 64];
            let mut needed = 0u32;
            // SAFETY: `buf` is 512 bytes, 8-aligned, which TOKEN_USER plus a SID fits.
            let ok = unsafe {
                GetTokenInformation(
                    token,
                    TokenUser,
                    buf.as_mut_ptr().cast(),
                    (buf.len() * 8) as u32,
                    &mut needed,
                )
            };
            // SAFETY: opened above.
            unsafe { CloseHandle(token) };
            (ok != 0).then_some(Self(buf))
        }

        fn sid(&self) -> PSID {
            // SAFETY: the buffer starts with the TOKEN_USER GetTokenInformation wrote.
            unsafe { (*(self.0.as_ptr() as *const TOKEN_USER)).User.Sid }
        }
    }

    fn aces(dacl: *mut ACL) -> std::io::Result<Vec<(Trustee, u32)>> {
        let own = OwnSid::current();
        let mut size = ACL_SIZE_INFORMATION::default();
        // SAFETY: `dacl` is a valid ACL from GetNamedSecurityInfoW; `size` is the struct the
        // AclSizeInformation class fills.
        let ok = unsafe {
            GetAclInformation(
                dacl,
                (&mut size as *mut ACL_SIZE_INFORMATION).cast(),
                std::mem::size_of::<ACL_SIZE_INFORMATION>() as u32,
                AclSizeInformation,
            )
        };
        if ok == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut out = Vec::new();
        for index in 0..size.AceCount {
            let mut ace: *mut core::ffi::c_void = std::ptr::null_mut();
            // SAFETY: index < AceCount; `ace` then points into the DACL.
            if unsafe { GetAce(dacl, index, &mut ace) } == 0 || ace.is_null() {
                continue;
            }
            // SAFETY: every ACE starts with an ACE_HEADER; only allow-ACEs are read further,
            // and those have the ACCESS_ALLOWED_ACE layout.
            let allowed = unsafe { &*(ace as *const ACCESS_ALLOWED_ACE) };
            if u32::from(allowed.Header.AceType) != ACCESS_ALLOWED_ACE_TYPE
                || u32::from(allowed.Header.AceFlags) & INHERIT_ONLY_ACE != 0
            {
                continue;
            }
            let sid = (&allowed.SidStart as *const u32) as PSID;
            // Only SYSTEM, Administrators and this process's own account may write; any other
            // SID (a group, an account that made the directory beforehand) counts as ordinary.
            let trusted = [WinLocalSystemSid, WinBuiltinAdministratorsSid]
                .into_iter()
                // SAFETY: `sid` points at the SID stored in the ACE.
                .any(|kind| unsafe { IsWellKnownSid(sid, kind) } != 0)
                // SAFETY: both point at valid SIDs (`own` lives in the buffer below).
                || own.as_ref().is_some_and(|own| unsafe { EqualSid(sid, own.sid()) } != 0);
            out.push((if trusted { Trustee::Other } else { Trustee::Ordinary }, allowed.Mask));
        }
        Ok(out)
    }
}

/// Make sure the file at `path` exists and is readable by its owner only (0600 on Unix), before
/// a database engine opens it: SQLite gives its WAL and shared-memory files the main file's mode.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        options.open(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    options.open(path)?;
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

    #[test]
    fn only_write_access_for_ordinary_users_counts() {
        use Trustee::{Ordinary, Other};
        let cases: [(&[(Trustee, u32)], bool); 6] = [
            (&[], false),
            (&[(Other, 0x1F01FF)], false),    // SYSTEM: full control
            (&[(Ordinary, 0x1200A9)], false), // Users: read and execute
            (&[(Ordinary, 0x2)], true),       // Users: create files
            (&[(Other, 0x1F01FF), (Ordinary, 0x4_0000)], true), // Users: change permissions
            (&[(Ordinary, 0x1000_0000)], true), // Everyone: generic all
        ];
        for (aces, want) in cases {
            assert_eq!(grants_ordinary_write(aces), want, "{aces:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn private_dirs_and_files_are_owner_only_even_when_they_existed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(writable_by_others(&data).unwrap());
        private_dir(&data).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert!(!writable_by_others(&data).unwrap());
        let db = data.join("agent.db");
        std::fs::write(&db, b"kept").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_file(&db).unwrap();
        assert_eq!((mode(&db), std::fs::read(&db).unwrap()), (0o600, b"kept".to_vec()));
        private_file(&data.join("new.db")).unwrap();
        assert_eq!(mode(&data.join("new.db")), 0o600);
    }
}
