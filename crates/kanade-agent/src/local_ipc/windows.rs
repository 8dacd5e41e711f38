//! The Windows side: a named pipe that signed-in users may read and write (SYSTEM and
//! Administrators own it), local clients only; the caller is named by impersonating the pipe
//! client for the moment it takes to read its user name.
#![allow(unsafe_code)]

use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::AsRawHandle;
use std::path::Path;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use tokio::sync::watch;
use windows_sys::Win32::Foundation::{FALSE, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{PSECURITY_DESCRIPTOR, RevertToSelf, SECURITY_ATTRIBUTES};
use windows_sys::Win32::System::Pipes::ImpersonateNamedPipeClient;
use windows_sys::Win32::System::WindowsProgramming::GetUserNameW;

use super::{Handler, IO_TIMEOUT, MAX_REQUEST, answer, stopped};

/// SYSTEM and Administrators: everything; authenticated users: read and write (to ask).
const SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GRGW;;;AU)";

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
    loop {
        let connected = tokio::select! {
            connected = server.connect() => connected,
            () = stopped(&mut stop) => return Ok(()),
        };
        connected.with_context(|| format!("pipe {}", name.display()))?;
        let client = std::mem::replace(&mut server, create(name, false, &sd)?);
        let handler = handler.clone();
        tokio::spawn(async move {
            let done = tokio::time::timeout(IO_TIMEOUT, one(client, handler)).await;
            if let Err(e) = done.unwrap_or_else(|_| Err(anyhow::anyhow!("timed out"))) {
                tracing::debug!(error = %e, "local request not answered");
            }
        });
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
    let out = answer(&handler, &user, &line);
    pipe.write_all(&out).await?;
    pipe.flush().await?;
    Ok(())
}

fn client_user(pipe: &NamedPipeServer) -> std::io::Result<String> {
    // SAFETY: a connected pipe handle we own.
    if unsafe { ImpersonateNamedPipeClient(pipe.as_raw_handle()) } == FALSE {
        return Err(std::io::Error::last_os_error());
    }
    let mut buffer = [0u16; 257];
    let mut len = buffer.len() as u32;
    // SAFETY: a buffer of `len` characters.
    let ok = unsafe { GetUserNameW(buffer.as_mut_ptr(), &mut len) };
    let error = std::io::Error::last_os_error();
    // SAFETY: ends the impersonation started above, on the same thread.
    if unsafe { RevertToSelf() } == FALSE {
        // Carrying on as the client would be worse than stopping.
        std::process::abort();
    }
    if ok == FALSE {
        return Err(error);
    }
    // `len` counts the terminating NUL.
    Ok(String::from_utf16_lossy(&buffer[..(len as usize).saturating_sub(1)]))
}
