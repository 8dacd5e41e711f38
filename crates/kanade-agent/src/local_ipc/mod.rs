//! The agent's local door for the people at the PC: `kanade-agent notifications list|ack` talk
//! to the running agent over a Unix socket or a Windows named pipe, one JSON line each way. The
//! caller's identity comes from the OS (the socket's peer credentials, the pipe client's token),
//! never from the request, so one user cannot acknowledge for another.

#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kanade_shared::wire::{AckBy, Notification};
use serde::{Deserialize, Serialize};

#[cfg(unix)]
pub use unix::serve;
#[cfg(windows)]
pub use windows::serve;

/// The longest request line read; anything longer is refused.
const MAX_REQUEST: u64 = 64 * 1024;
/// A client that has not sent its line (or read the answer) by then is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients served at once; more wait, so a local user opening connections in a loop cannot use
/// up the agent's file handles.
const MAX_CLIENTS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    List,
    Ack { id: String },
}

/// One kept notification as a local user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub notification: Notification,
    pub received_ms: i64,
    /// Everyone on this PC who acknowledged it.
    pub acks: Vec<AckBy>,
    pub acked_by_you: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Who the agent took the caller for.
    #[serde(default)]
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<Listed>,
    /// After an ack: `acked`, or `already` when this user had acknowledged it before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<String>,
}

impl Response {
    pub fn error(user: &str, why: impl Into<String>) -> Self {
        Self { user: user.to_owned(), error: Some(why.into()), ..Default::default() }
    }
}

/// What the agent does with a request from `user`.
pub type Handler = Arc<dyn Fn(&str, Request) -> Response + Send + Sync>;

/// The answer to one request line from `user`. Blocking (the store, a user lookup): servers
/// call it off the async workers.
pub(crate) fn answer(handler: &Handler, user: &str, line: &[u8]) -> Vec<u8> {
    let response = match serde_json::from_slice::<Request>(line) {
        Ok(request) => handler(user, request),
        Err(e) => Response::error(
            user,
            format!("not a request this agent understands ({e}); is the agent older than this command?"),
        ),
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Serve one client in its own task within [`IO_TIMEOUT`], holding `slot` until done.
fn spawn_client(
    work: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    tokio::spawn(async move {
        let done = tokio::time::timeout(IO_TIMEOUT, work).await;
        if let Err(e) = done.unwrap_or_else(|_| Err(anyhow::anyhow!("timed out"))) {
            tracing::debug!(error = %e, "local request not answered");
        }
        drop(slot);
    });
}

/// Resolves once `stop` turns true (the guard `wait_for` returns is dropped here, so callers'
/// futures stay `Send`).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Send one request to the agent listening at `socket` and read its answer.
pub fn call(socket: &Path, request: &Request) -> anyhow::Result<Response> {
    use std::io::{BufRead, Write};
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    let hint = || {
        format!(
            "cannot reach the kanade agent at {}: is it running, and is this the socket its [notifications] socket names? (--socket or KANADE_AGENT_SOCKET choose another)",
            socket.display()
        )
    };
    #[cfg(unix)]
    let (mut writer, reader) = {
        use anyhow::Context;
        let stream = std::os::unix::net::UnixStream::connect(socket).with_context(hint)?;
        stream.set_read_timeout(Some(IO_TIMEOUT * 2))?;
        (stream.try_clone()?, stream)
    };
    #[cfg(windows)]
    let (mut writer, reader) = {
        use anyhow::Context;
        use std::os::windows::fs::OpenOptionsExt;
        // Identification only: whoever serves the pipe may learn who we are, never act as us.
        const SECURITY_IDENTIFICATION: u32 = 0x0001_0000;
        let pipe = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .security_qos_flags(SECURITY_IDENTIFICATION)
            .open(socket)
            .with_context(hint)?;
        (pipe.try_clone()?, pipe)
    };
    writer.write_all(&line)?;
    writer.flush()?;
    let mut answer = String::new();
    std::io::BufReader::new(reader).read_line(&mut answer)?;
    if answer.is_empty() {
        anyhow::bail!("the agent at {} closed the connection without answering", socket.display());
    }
    Ok(serde_json::from_str(&answer)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_line_is_answered_with_why() {
        let handler: Handler = Arc::new(|user, request| match request {
            Request::List => Response { user: user.to_owned(), ..Default::default() },
            Request::Ack { id } => Response { user: user.to_owned(), ack: Some(id), ..Default::default() },
        });
        let read = |line: &str| {
            serde_json::from_slice::<Response>(&answer(&handler, "alice", line.as_bytes())).unwrap()
        };
        assert_eq!(read(r#"{"op":"ack","id":"n1"}"#).ack.as_deref(), Some("n1"));
        let bad = read("garbage");
        assert!(bad.error.unwrap().starts_with("not a request"));
    }
}
