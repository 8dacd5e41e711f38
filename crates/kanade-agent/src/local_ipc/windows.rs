//! The Windows side: a named pipe that signed-in users may read and write but not serve (only
//! SYSTEM and Administrators may create instances of it), local clients only; the caller is named
//! by impersonating the pipe client for the moment it takes to open its token, whose SID is
//! looked up as `DOMAIN\user`.
#![allow(unsafe_code)]

use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::AsRawHandle;
use std::path::Path;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use tokio::sync::watch;
use windows_sys::Win32::Foundation::{CloseHandle, FALSE, HANDLE, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, LookupAccountSidW, PSECURITY_DESCRIPTOR, RevertToSelf, SECURITY_ATTRIBUTES,
    SID_NAME_USE, TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::System::Pipes::ImpersonateNamedPipeClient;
use windows_sys::Win32::System::Threading::{GetCurrentThread, OpenThreadToken};

use super::{Handler, MAX_REQUEST, answer, stopped};

/// SYSTEM and Administrators: everything; authenticated users: read and write data, but not
/// FILE_CREATE_PIPE_INSTANCE (0x4, inside GENERIC_WRITE), so nobody else can serve the pipe's
/// name to other users: FILE_GENERIC_READ | FILE_WRITE_DATA | FILE_WRITE_EA |
/// FILE_WRITE_ATTRIBUTES.
const SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;0x12019b;;;AU)";

fn wide(s: &std::ffi::OsStr) -> Vec<u16> {
    s.encode_wide().chain(Some(0)).collect()
}

/// The pipe's security descriptor, freed when dropped.
struct Descriptor(PSECURITY_DESCRIPTOR);

impl Descriptor {
    fn new() -> std::io::Result<Self> {
        let sddl = wide(std::ffi::OsStr::new(SDDL));
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: a NUL-terminated string and a valid out pointer; we free the result.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        };
        if ok == FALSE {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self(sd))
    }
}

// SAFETY: the descriptor is a heap allocation this value alone owns and never changes; moving it
// to another thread is as safe as moving a Box.
unsafe impl Send for Descriptor {}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe { LocalFree(self.0 as _) };
    }
}

fn create(name: &Path, first: bool, sd: &Descriptor) -> std::io::Result<NamedPipeServer> {
    let mut attrs = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sd.0,
        bInheritHandle: FALSE,
    };
    // SAFETY: `attrs` points at a valid SECURITY_ATTRIBUTES whose descriptor outlives the call.
    unsafe {
        ServerOptions::new()
            .first_pipe_instance(first)
            .reject_remote_clients(true)
            .create_with_security_attributes_raw(name, (&mut attrs as *mut SECURITY_ATTRIBUTES).cast())
    }
}

/// Serve the pipe `name` until `stop`.
pub async fn serve(name: &Path, handler: Handler, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let sd = Descriptor::new().context("cannot build the notifications pipe's security descriptor")?;
    // The first instance refuses to open if another process already owns the name.
    let mut server = create(name, true, &sd)
        .with_context(|| format!("cannot create the pipe {} (is another agent running?)", name.display()))?;
    tracing::info!(pipe = %name.display(), "local users reach this agent's notifications here");
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(super::MAX_CLIENTS));
    loop {
        let connected = tokio::select! {
            connected = server.connect() => connected,
            () = stopped(&mut stop) => return Ok(()),
        };
        // A client that vanished between connecting and now costs its instance, not the pipe.
        let next = loop {
            match create(name, false, &sd) {
                Ok(next) => break next,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create the next pipe instance; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        };
        let client = std::mem::replace(&mut server, next);
        if let Err(e) = connected {
            tracing::debug!(error = %e, "a pipe client left before it was served");
            continue;
        }
        // Beyond the cap a client waits for a slot (its own 5 s budget still runs).
        let Ok(slot) = slots.clone().acquire_owned().await else { return Ok(()) };
        let handler = handler.clone();
        super::spawn_client(one(client, handler), slot);
    }
}

async fn one(mut pipe: NamedPipeServer, handler: Handler) -> anyhow::Result<()> {
    let mut line = Vec::new();
    {
        let mut reader = BufReader::new((&mut pipe).take(MAX_REQUEST));
        reader.read_until(b'\n', &mut line).await?;
    }
    // Impersonation needs the client to have written first; it binds this thread only, and
    // nothing awaits between it and the revert, so the task cannot move threads in between.
    let user = client_user(&pipe).context("cannot tell who is asking")?;
    let out = tokio::task::spawn_blocking(move || answer(&handler, &user, &line)).await?;
    pipe.write_all(&out).await?;
    pipe.flush().await?;
    Ok(())
}

fn client_user(pipe: &NamedPipeServer) -> std::io::Result<String> {
    // SAFETY: a connected pipe handle we own.
    if unsafe { ImpersonateNamedPipeClient(pipe.as_raw_handle()) } == FALSE {
        return Err(std::io::Error::last_os_error());
    }
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the current thread's impersonation token, opened as ourselves (the client may
    // allow identification only), into a valid out pointer.
    let opened = unsafe { OpenThreadToken(GetCurrentThread(), TOKEN_QUERY, 1, &mut token) };
    let error = std::io::Error::last_os_error();
    // SAFETY: ends the impersonation started above, on the same thread.
    if unsafe { RevertToSelf() } == FALSE {
        // Carrying on as the client would be worse than stopping.
        std::process::abort();
    }
    if opened == FALSE {
        return Err(error);
    }
    let name = account_of(token);
    // SAFETY: opened above, closed once.
    unsafe { CloseHandle(token) };
    name
}

/// `DOMAIN\user` of the token's user: two accounts of one name in different domains stay apart.
fn account_of(token: HANDLE) -> std::io::Result<String> {
    let mut needed = 0u32;
    // SAFETY: a size query with a null buffer; it fails with the size needed.
    unsafe { GetTokenInformation(token, TokenUser, std::ptr::null_mut(), 0, &mut needed) };
    // u64s keep the buffer aligned for TOKEN_USER.
    let mut buffer = vec![0u64; (needed as usize).div_ceil(8).max(1)];
    // SAFETY: `buffer` holds `needed` bytes.
    if unsafe { GetTokenInformation(token, TokenUser, buffer.as_mut_ptr().cast(), needed, &mut needed) }
        == FALSE
    {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: filled in by GetTokenInformation(TokenUser) above, aligned, alive below.
    let sid = unsafe { (*buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    let (mut name, mut domain) = ([0u16; 256], [0u16; 256]);
    let (mut name_len, mut domain_len) = (name.len() as u32, domain.len() as u32);
    let mut kind: SID_NAME_USE = 0;
    // SAFETY: buffers with their lengths in characters; `sid` points into `buffer`.
    let ok = unsafe {
        LookupAccountSidW(
            std::ptr::null(),
            sid,
            name.as_mut_ptr(),
            &mut name_len,
            domain.as_mut_ptr(),
            &mut domain_len,
            &mut kind,
        )
    };
    if ok == FALSE {
        return Err(std::io::Error::last_os_error());
    }
    let name = String::from_utf16_lossy(&name[..name_len as usize]);
    let domain = String::from_utf16_lossy(&domain[..domain_len as usize]);
    Ok(if domain.is_empty() { name } else { format!("{domain}\\{name}") })
}
