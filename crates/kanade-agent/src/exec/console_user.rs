//! `run_as: user` on Windows (SPEC §13): the script runs as whoever is signed in at the
//! console, in their session, with their token and environment — started by the agent
//! (SYSTEM) with `CreateProcessAsUserW`, which std's `Command` cannot do. The process is created
//! suspended and put in the run's job object before its first instruction, so a kill or
//! timeout ends everything it starts. Nobody signed in → the gate skips the run (122) first.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::path::{Path, PathBuf};

use windows_sys::Win32::Foundation::{
    FALSE, HANDLE, HANDLE_FLAG_INHERIT, LocalFree, SetHandleInformation, TRUE,
};
use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
use windows_sys::Win32::Security::{GetTokenInformation, SECURITY_ATTRIBUTES, TOKEN_USER, TokenUser};
use windows_sys::Win32::System::Environment::{CreateEnvironmentBlock, DestroyEnvironmentBlock};
use windows_sys::Win32::System::Pipes::CreatePipe;
use windows_sys::Win32::System::RemoteDesktop::{WTSGetActiveConsoleSessionId, WTSQueryUserToken};
use windows_sys::Win32::System::Threading::{
    CREATE_NO_WINDOW, CREATE_SUSPENDED, CREATE_UNICODE_ENVIRONMENT, CreateProcessAsUserW,
    DeleteProcThreadAttributeList, EXTENDED_STARTUPINFO_PRESENT, GetExitCodeProcess, INFINITE,
    InitializeProcThreadAttributeList, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, PROCESS_INFORMATION, ResumeThread,
    STARTF_USESTDHANDLES, STARTUPINFOEXW, TerminateProcess, UpdateProcThreadAttribute, WaitForSingleObject,
};

use super::{ExecError, Identity, Pipe, Started, tree};

/// The signed-in console user: their primary token and SID.
pub struct User {
    token: OwnedHandle,
    sid: String,
}

const NO_SESSION: u32 = 0xFFFF_FFFF;

fn console_token() -> std::io::Result<OwnedHandle> {
    // SAFETY: no arguments.
    let session = unsafe { WTSGetActiveConsoleSessionId() };
    if session == NO_SESSION {
        return Err(std::io::Error::other("no session is attached to the console"));
    }
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: `token` is a valid out pointer; on success we own the returned handle.
    if unsafe { WTSQueryUserToken(session, &mut token) } == FALSE {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh handle returned to us above.
    Ok(unsafe { OwnedHandle::from_raw_handle(token) })
}

/// Someone is signed in at the console (the agent can get their token).
pub fn present() -> bool {
    console_token().is_ok()
}

/// `None`: run as the agent.
pub fn lookup(identity: Identity<'_>) -> Result<Option<User>, ExecError> {
    let fail = |why: String| ExecError::User { user: "the signed-in console user".into(), why };
    match identity {
        Identity::Agent => Ok(None),
        Identity::Account(name) => Err(ExecError::User {
            user: name.to_owned(),
            why: "Windows agents run run_as: user jobs as the signed-in console user only".into(),
        }),
        Identity::ConsoleUser => {
            let token = console_token().map_err(|e| fail(format!("nobody is signed in ({e})")))?;
            let sid = token_sid(&token).map_err(|e| fail(format!("cannot read the user's SID ({e})")))?;
            Ok(Some(User { token, sid }))
        }
    }
}

fn token_sid(token: &OwnedHandle) -> std::io::Result<String> {
    let mut needed = 0u32;
    // SAFETY: a size query with a null buffer; it fails with the size needed.
    unsafe { GetTokenInformation(token.as_raw_handle(), TokenUser, std::ptr::null_mut(), 0, &mut needed) };
    // u64s keep the buffer aligned for TOKEN_USER.
    let mut buffer = vec![0u64; (needed as usize).div_ceil(8).max(1)];
    // SAFETY: `buffer` holds `needed` bytes.
    let ok = unsafe {
        GetTokenInformation(token.as_raw_handle(), TokenUser, buffer.as_mut_ptr().cast(), needed, &mut needed)
    };
    if ok == FALSE {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: filled in by GetTokenInformation(TokenUser) above, aligned.
    let sid = unsafe { (*buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sid` points into `buffer`, alive here; `text` is freed with LocalFree below.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == FALSE {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a NUL-terminated string allocated by ConvertSidToStringSidW.
    let sid = unsafe {
        let len = (0..).take_while(|&i| *text.add(i) != 0).count();
        let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
        LocalFree(text.cast());
        s
    };
    Ok(sid)
}

/// A new directory for one run under the system temp dir, created exclusively with an ACL of
/// SYSTEM, Administrators and the user only.
pub fn fresh_dir(name: &str, user: &User) -> std::io::Result<PathBuf> {
    let dir = super::fresh_run_path(name)?;
    kanade_shared::files::create_dir_for(&dir, &user.sid)?;
    Ok(dir)
}

/// The directory's ACL already names the user; files inherit it.
pub fn hand_over(_paths: &[&Path], _user: &User) -> std::io::Result<()> {
    Ok(())
}

fn wide(text: &std::ffi::OsStr) -> Vec<u16> {
    text.encode_wide().chain(std::iter::once(0)).collect()
}

/// The user's own environment (as at sign-in), with the job's `env` on top.
fn environment(user: &User, extra: &BTreeMap<String, String>) -> std::io::Result<Vec<u16>> {
    let mut block: *mut std::ffi::c_void = std::ptr::null_mut();
    // SAFETY: `block` is a valid out pointer, freed with DestroyEnvironmentBlock below.
    if unsafe { CreateEnvironmentBlock(&mut block, user.token.as_raw_handle(), FALSE) } == FALSE {
        return Err(std::io::Error::last_os_error());
    }
    let mut vars: Vec<(String, String)> = Vec::new();
    // SAFETY: a block of NUL-terminated UTF-16 strings ending with an empty one, read before it
    // is freed below; nothing here can unwind.
    unsafe {
        let mut at = block.cast::<u16>();
        loop {
            let len = (0..).take_while(|&i| *at.add(i) != 0).count();
            if len == 0 {
                break;
            }
            let entry = String::from_utf16_lossy(std::slice::from_raw_parts(at, len));
            if let Some(pair) = super::env_entry(&entry) {
                vars.push(pair);
            }
            at = at.add(len + 1);
        }
        DestroyEnvironmentBlock(block);
    }
    for (key, value) in extra {
        vars.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        vars.push((key.clone(), value.clone()));
    }
    let mut out: Vec<u16> = Vec::new();
    for (key, value) in vars {
        out.extend(format!("{key}={value}").encode_utf16());
        out.push(0);
    }
    out.push(0);
    Ok(out)
}

/// An anonymous pipe: (our end, the child's end, inheritable).
fn pipe(child_writes: bool) -> std::io::Result<(OwnedHandle, OwnedHandle)> {
    let attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: std::ptr::null_mut(),
        bInheritHandle: FALSE,
    };
    let (mut read, mut write): (HANDLE, HANDLE) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: valid out pointers; both handles are owned below.
    if unsafe { CreatePipe(&mut read, &mut write, &attributes, 0) } == FALSE {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh handles from CreatePipe.
    let (read, write) = unsafe { (OwnedHandle::from_raw_handle(read), OwnedHandle::from_raw_handle(write)) };
    let (ours, theirs) = if child_writes { (read, write) } else { (write, read) };
    inheritable(&theirs)?;
    Ok((ours, theirs))
}

fn inheritable(handle: &OwnedHandle) -> std::io::Result<()> {
    // SAFETY: a valid handle we own.
    if unsafe { SetHandleInformation(handle.as_raw_handle(), HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT) }
        == FALSE
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Only these handles reach the child, even while other threads start processes.
struct HandleList {
    buffer: Vec<u64>,
    _handles: Box<[HANDLE; 3]>,
}

impl HandleList {
    fn new(handles: [HANDLE; 3]) -> std::io::Result<Self> {
        let handles = Box::new(handles);
        let mut size = 0usize;
        // SAFETY: a size query with a null list.
        unsafe { InitializeProcThreadAttributeList(std::ptr::null_mut(), 1, 0, &mut size) };
        let mut buffer = vec![0u64; size.div_ceil(8).max(1)];
        let list = buffer.as_mut_ptr().cast();
        // SAFETY: `buffer` holds `size` bytes; `handles` lives as long as the list (both in self).
        unsafe {
            if InitializeProcThreadAttributeList(list, 1, 0, &mut size) == FALSE {
                return Err(std::io::Error::last_os_error());
            }
            if UpdateProcThreadAttribute(
                list,
                0,
                PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
                handles.as_ptr().cast(),
                std::mem::size_of::<[HANDLE; 3]>(),
                std::ptr::null_mut(),
                std::ptr::null(),
            ) == FALSE
            {
                let error = std::io::Error::last_os_error();
                DeleteProcThreadAttributeList(list);
                return Err(error);
            }
        }
        Ok(Self { buffer, _handles: handles })
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        self.buffer.as_mut_ptr().cast()
    }
}

impl Drop for HandleList {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`.
        unsafe { DeleteProcThreadAttributeList(self.as_ptr()) };
    }
}

/// Start `program args script` as the user, suspended, in a job object, then let it run.
pub fn start(
    user: &User,
    program: &str,
    args: &[&str],
    script: &Path,
    env: &BTreeMap<String, String>,
    cwd: Option<&Path>,
) -> std::io::Result<Started> {
    let script = script.to_string_lossy();
    let words: Vec<&str> = std::iter::once(program).chain(args.iter().copied()).chain([&*script]).collect();
    let mut command_line = wide(super::command_line(&words).as_ref());
    let environment = environment(user, env)?;
    let cwd = cwd.map(|c| wide(c.as_os_str()));
    let mut desktop = wide("winsta0\\default".as_ref());

    let (stdout, child_stdout) = pipe(true)?;
    let (stderr, child_stderr) = pipe(true)?;
    let null = std::fs::OpenOptions::new().read(true).open("NUL")?;
    let null = OwnedHandle::from(null);
    inheritable(&null)?;
    let mut handles =
        HandleList::new([null.as_raw_handle(), child_stdout.as_raw_handle(), child_stderr.as_raw_handle()])?;

    // SAFETY: zeroed is a valid STARTUPINFOEXW (all integers and null pointers).
    let mut startup: STARTUPINFOEXW = unsafe { std::mem::zeroed() };
    startup.StartupInfo.cb = std::mem::size_of::<STARTUPINFOEXW>() as u32;
    startup.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    startup.StartupInfo.hStdInput = null.as_raw_handle();
    startup.StartupInfo.hStdOutput = child_stdout.as_raw_handle();
    startup.StartupInfo.hStdError = child_stderr.as_raw_handle();
    startup.StartupInfo.lpDesktop = desktop.as_mut_ptr();
    startup.lpAttributeList = handles.as_ptr();
    // SAFETY: zeroed is a valid PROCESS_INFORMATION.
    let mut info: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: every pointer is valid for the call: NUL-terminated wide strings, the environment
    // block (double-NUL terminated), the startup info with its attribute list, `info` out.
    let created = unsafe {
        CreateProcessAsUserW(
            user.token.as_raw_handle(),
            std::ptr::null(),
            command_line.as_mut_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            TRUE,
            CREATE_SUSPENDED | CREATE_UNICODE_ENVIRONMENT | CREATE_NO_WINDOW | EXTENDED_STARTUPINFO_PRESENT,
            environment.as_ptr().cast(),
            cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            &startup.StartupInfo,
            &mut info,
        )
    };
    if created == FALSE {
        return Err(std::io::Error::last_os_error());
    }
    // The child holds its own copies now; ours must close, or the pipes never end.
    drop((handles, child_stdout, child_stderr, null));
    // SAFETY: handles returned to us by CreateProcessAsUserW.
    let (process, thread) =
        unsafe { (OwnedHandle::from_raw_handle(info.hProcess), OwnedHandle::from_raw_handle(info.hThread)) };
    let tree = tree::Tree::attach_handle(process.as_raw_handle());
    if !tree.attached() {
        // Never let a script run where a kill could not reach what it starts.
        // SAFETY: our process handle; the process has not run an instruction yet.
        unsafe { TerminateProcess(process.as_raw_handle(), 1) };
        return Err(std::io::Error::other("cannot put the script in a job object; not started"));
    }
    // SAFETY: our thread handle of the suspended process.
    if unsafe { ResumeThread(thread.as_raw_handle()) } == u32::MAX {
        let error = std::io::Error::last_os_error();
        // SAFETY: as above.
        unsafe { TerminateProcess(process.as_raw_handle(), 1) };
        return Err(error);
    }
    tracing::info!(sid = %user.sid, "started as the signed-in console user");
    let reader = |h: OwnedHandle| -> Option<Pipe> {
        Some(Box::new(tokio::fs::File::from_std(std::fs::File::from(h))))
    };
    let exit = Box::pin(async move {
        tokio::task::spawn_blocking(move || wait(process)).await.map_err(std::io::Error::other)?
    });
    Ok(Started { stdout: reader(stdout), stderr: reader(stderr), exit, tree })
}

fn wait(process: OwnedHandle) -> std::io::Result<Option<i32>> {
    let handle = process.as_raw_handle();
    // SAFETY: our process handle, alive for both calls.
    unsafe {
        WaitForSingleObject(handle, INFINITE);
        let mut code = 0u32;
        if GetExitCodeProcess(handle, &mut code) == FALSE {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Some(code as i32))
    }
}
