//! A VFS shim that writes each commit's WAL frames with one write call instead of two per page.
//!
//! SQLite writes a WAL frame as two calls, its 24-byte header and then its page, so a run's two
//! commits (about six frames) cost a dozen write system calls plus two syncs, and on an endpoint
//! each is a trip through the file system (on Windows, through its filter drivers too). This
//! VFS wraps the platform's default one and, for WAL files only, keeps writes that follow each
//! other in memory, handing them to the real file as one write before anything else touches
//! that file: before its sync, read, size, truncate, lock, file control or close. Every other
//! file (the database, temporary files) passes straight through.
//!
//! What this relies on: the store commits with `synchronous = FULL`, so every commit ends with
//! a sync of the WAL, which writes the held bytes out before the commit returns; a crash after
//! a commit finds it in the file exactly as without the shim. A crash before the sync loses
//! only a commit that never returned, as it could without the shim. With `synchronous` below
//! FULL no sync would follow a commit and its frames could stay held: [`Store::open`] sets FULL.
//!
//! Hand-written FFI rather than a crate: the available VFS crates implement a whole file system
//! in Rust; this is a pass-through of the platform's own, changing one method.
//!
//! [`Store::open`]: super::Store::open
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name the store opens its file with.
pub const NAME: &CStr = c"kanade-wal-batch";

/// Held bytes at most: a larger run of writes (a big transaction, a cache spill) goes out in
/// pieces of about this size.
const LIMIT: usize = 64 * 1024;
/// Buffer kept between commits: a run's commit fits; a big one's buffer is let go.
const KEPT: usize = 8 * 1024;

#[cfg(test)]
thread_local! {
    /// Writes the WAL files got from the shim on this thread (a store's calls run on its
    /// caller's thread): a test's handle on whether writes are being joined.
    static WAL_WRITES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
pub fn wal_writes_on_this_thread() -> u64 {
    WAL_WRITES.with(|w| w.get())
}

fn count_write() {
    #[cfg(test)]
    WAL_WRITES.with(|w| w.set(w.get() + 1));
}

/// Register the VFS (once per process); `Err` carries SQLite's code when that failed.
pub fn register() -> Result<(), c_int> {
    static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find initializes SQLite if needed and returns the default VFS,
        // which lives as long as the process; the VFS built here is leaked, so it does too.
        unsafe {
            let inner = ffi::sqlite3_vfs_find(std::ptr::null());
            if inner.is_null() {
                return Err(ffi::SQLITE_ERROR);
            }
            let vfs = Box::leak(Box::new(ffi::sqlite3_vfs {
                iVersion: 2,
                szOsFile: (HEADER + (*inner).szOsFile as usize) as c_int,
                mxPathname: (*inner).mxPathname,
                pNext: std::ptr::null_mut(),
                zName: NAME.as_ptr(),
                pAppData: inner.cast(),
                xOpen: Some(open),
                xDelete: Some(delete),
                xAccess: Some(access),
                xFullPathname: Some(full_pathname),
                xDlOpen: Some(dl_open),
                xDlError: Some(dl_error),
                xDlSym: Some(dl_sym),
                xDlClose: Some(dl_close),
                xRandomness: Some(randomness),
                xSleep: Some(sleep),
                xCurrentTime: Some(current_time),
                xGetLastError: Some(get_last_error),
                xCurrentTimeInt64: Some(current_time_int64),
                xSetSystemCall: None,
                xGetSystemCall: None,
                xNextSystemCall: None,
            }));
            match ffi::sqlite3_vfs_register(vfs, 0) {
                ffi::SQLITE_OK => Ok(()),
                code => Err(code),
            }
        }
    })
}

/// The file SQLite allocates `szOsFile` bytes for: this header, then the wrapped VFS's file.
#[repr(C)]
struct File {
    /// First, as SQLite requires: it calls the methods with a pointer to this.
    base: ffi::sqlite3_file,
    /// Writes held for a WAL file; null for every other file.
    held: *mut Held,
    inner: *mut ffi::sqlite3_file,
}

/// The header's size, rounded up so the wrapped file after it is aligned for anything.
const HEADER: usize = std::mem::size_of::<File>().div_ceil(16) * 16;

#[derive(Default)]
struct Held {
    offset: i64,
    bytes: Vec<u8>,
}

/// The wrapped VFS, kept in this one's `pAppData`.
unsafe fn inner_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    unsafe { (*vfs).pAppData.cast() }
}

/// The wrapped file's methods (the wrapped VFS sets them when it opens the file).
unsafe fn inner_methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    unsafe { &*(*(*file.cast::<File>()).inner).pMethods }
}

unsafe fn inner(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    unsafe { (*file.cast::<File>()).inner }
}

/// Write what is held, if anything, to the wrapped file.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let held = (*file.cast::<File>()).held;
        if held.is_null() || (*held).bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let bytes = &mut (*held).bytes;
        let write = inner_methods(file).xWrite.expect("every VFS writes");
        let code = write(inner(file), bytes.as_ptr().cast(), bytes.len() as c_int, (*held).offset);
        // Dropped on failure too: SQLite fails the operation that flushed, and a commit that
        // fails is rolled back, so these frames are never counted as written.
        bytes.clear();
        if bytes.capacity() > 4 * KEPT {
            *bytes = Vec::with_capacity(KEPT);
        }
        count_write();
        code
    }
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    unsafe {
        let inner_vfs = inner_vfs(vfs);
        let f = file.cast::<File>();
        let inner = file.cast::<u8>().add(HEADER).cast::<ffi::sqlite3_file>();
        (*f).base.pMethods = std::ptr::null();
        (*f).held = std::ptr::null_mut();
        (*f).inner = inner;
        (*inner).pMethods = std::ptr::null();
        let code = ((*inner_vfs).xOpen.expect("every VFS opens"))(inner_vfs, name, inner, flags, out_flags);
        if (*inner).pMethods.is_null() {
            // Nothing to close: SQLite calls no method of a file whose methods are null.
            return if code == ffi::SQLITE_OK { ffi::SQLITE_CANTOPEN } else { code };
        }
        if code == ffi::SQLITE_OK && flags & ffi::SQLITE_OPEN_WAL != 0 {
            (*f).held = Box::into_raw(Box::default());
        }
        // Set even when the open failed with methods set: SQLite then closes the file.
        (*f).base.pMethods = &METHODS;
        code
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    unsafe {
        let held = (*file.cast::<File>()).held;
        let pass_on =
            |file| (inner_methods(file).xWrite.expect("every VFS writes"))(inner(file), buf, amount, offset);
        if held.is_null() {
            return pass_on(file);
        }
        let len = amount as usize;
        let joins = {
            let h = &*held;
            !h.bytes.is_empty() && offset == h.offset + h.bytes.len() as i64 && h.bytes.len() + len <= LIMIT
        };
        if !joins {
            let code = flush(file);
            if code != ffi::SQLITE_OK {
                return code;
            }
            if len > LIMIT {
                count_write();
                return pass_on(file);
            }
            (*held).offset = offset;
        }
        (*held).bytes.extend_from_slice(std::slice::from_raw_parts(buf.cast::<u8>(), len));
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let flushed = flush(file);
        let closed = (inner_methods(file).xClose.expect("every VFS closes"))(inner(file));
        let held = std::mem::replace(&mut (*file.cast::<File>()).held, std::ptr::null_mut());
        if !held.is_null() {
            drop(Box::from_raw(held));
        }
        if flushed != ffi::SQLITE_OK { flushed } else { closed }
    }
}

/// A method that writes held bytes out first, then passes the call on.
macro_rules! after_flush {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            unsafe {
                let code = flush(file);
                if code != ffi::SQLITE_OK {
                    return code;
                }
                match inner_methods(file).$field {
                    Some(method) => method(inner(file) $(, $arg)*),
                    None => ffi::SQLITE_IOERR,
                }
            }
        }
    };
}

after_flush!(read, xRead, (buf: *mut c_void, amount: c_int, offset: i64));
after_flush!(truncate, xTruncate, (size: i64));
after_flush!(sync, xSync, (flags: c_int));
after_flush!(file_size, xFileSize, (size: *mut i64));
after_flush!(lock, xLock, (level: c_int));
after_flush!(unlock, xUnlock, (level: c_int));
after_flush!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int));
after_flush!(file_control, xFileControl, (op: c_int, arg: *mut c_void));
after_flush!(shm_map, xShmMap, (region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void));
after_flush!(shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int));
after_flush!(shm_unmap, xShmUnmap, (delete: c_int));
after_flush!(unfetch, xUnfetch, (offset: i64, page: *mut c_void));

unsafe extern "C" fn fetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    unsafe {
        let code = flush(file);
        if code != ffi::SQLITE_OK {
            return code;
        }
        match inner_methods(file).xFetch {
            Some(method) if inner_methods(file).iVersion >= 3 => method(inner(file), offset, amount, out),
            // No memory map: SQLite reads the page instead.
            _ => {
                *out = std::ptr::null_mut();
                ffi::SQLITE_OK
            }
        }
    }
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe { inner_methods(file).xSectorSize.map_or(4096, |m| m(inner(file))) }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe { inner_methods(file).xDeviceCharacteristics.map_or(0, |m| m(inner(file))) }
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    unsafe {
        if let Some(method) = inner_methods(file).xShmBarrier {
            method(inner(file));
        }
    }
}

/// A VFS method passed on to the wrapped VFS unchanged.
macro_rules! pass_vfs {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(vfs: *mut ffi::sqlite3_vfs $(, $arg: $ty)*) -> $ret {
            unsafe {
                let inner = inner_vfs(vfs);
                match (*inner).$field {
                    Some(method) => method(inner $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

pass_vfs!(delete, xDelete, (name: *const c_char, sync_dir: c_int) -> c_int, ffi::SQLITE_IOERR_DELETE);
pass_vfs!(access, xAccess, (name: *const c_char, flags: c_int, out: *mut c_int) -> c_int, ffi::SQLITE_IOERR_ACCESS);
pass_vfs!(full_pathname, xFullPathname, (name: *const c_char, n: c_int, out: *mut c_char) -> c_int, ffi::SQLITE_CANTOPEN);
pass_vfs!(dl_open, xDlOpen, (name: *const c_char) -> *mut c_void, std::ptr::null_mut());
pass_vfs!(randomness, xRandomness, (n: c_int, out: *mut c_char) -> c_int, 0);
pass_vfs!(sleep, xSleep, (micros: c_int) -> c_int, 0);
pass_vfs!(current_time, xCurrentTime, (out: *mut f64) -> c_int, ffi::SQLITE_ERROR);
pass_vfs!(get_last_error, xGetLastError, (n: c_int, out: *mut c_char) -> c_int, 0);

unsafe extern "C" fn dl_error(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) {
    unsafe {
        let inner = inner_vfs(vfs);
        if let Some(method) = (*inner).xDlError {
            method(inner, n, out);
        }
    }
}

unsafe extern "C" fn dl_close(vfs: *mut ffi::sqlite3_vfs, handle: *mut c_void) {
    unsafe {
        let inner = inner_vfs(vfs);
        if let Some(method) = (*inner).xDlClose {
            method(inner, handle);
        }
    }
}

type DlSym = unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char);

unsafe extern "C" fn dl_sym(
    vfs: *mut ffi::sqlite3_vfs,
    handle: *mut c_void,
    symbol: *const c_char,
) -> Option<DlSym> {
    unsafe {
        let inner = inner_vfs(vfs);
        (*inner).xDlSym.and_then(|m| m(inner, handle, symbol))
    }
}

unsafe extern "C" fn current_time_int64(vfs: *mut ffi::sqlite3_vfs, out: *mut i64) -> c_int {
    unsafe {
        let inner = inner_vfs(vfs);
        match (*inner).xCurrentTimeInt64 {
            Some(method) if (*inner).iVersion >= 2 => method(inner, out),
            _ => {
                let mut days = 0.0;
                let code = current_time(vfs, &mut days);
                *out = (days * 86_400_000.0) as i64;
                code
            }
        }
    }
}
