//! Watching an agent while it works: a running script's output (`agents.<pc>.tail`) and the
//! agent's own log file (`agents.<pc>.logs`). Both are request/reply, so nothing travels unless
//! somebody is looking.

use serde::{Deserialize, Serialize};

use crate::ids::ExecId;

/// "Send me run `exec_id`'s output from byte `from` on."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TailRequest {
    #[serde(default = "super::schema_v1")]
    pub schema: u32,
    pub exec_id: ExecId,
    /// Bytes of output (stdout and stderr together, in the order written) already received.
    pub from: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TailReply {
    #[serde(default = "super::schema_v1")]
    pub schema: u32,
    /// `false`: this agent holds no output of that run — not started yet, finished a while
    /// ago, or never here. The stored result is the place to look then.
    pub known: bool,
    /// Bytes after `from` that the agent's bounded buffer no longer holds.
    #[serde(default)]
    pub skipped: u64,
    #[serde(default)]
    pub chunks: Vec<OutputChunk>,
    /// Where to ask from next time.
    #[serde(default)]
    pub next: u64,
    /// The run is over: nothing will follow `next`.
    #[serde(default)]
    pub done: bool,
}

impl TailReply {
    pub fn unknown() -> Self {
        TailReply {
            schema: super::SCHEMA,
            known: false,
            skipped: 0,
            chunks: Vec::new(),
            next: 0,
            done: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct OutputChunk {
    pub stream: ChunkStream,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChunkStream {
    Stdout,
    Stderr,
    /// A line of the agent's own, e.g. that a retry starts.
    Note,
    #[serde(other, skip_serializing)]
    Unknown,
}

/// "Send me the end of your log."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogRequest {
    #[serde(default = "super::schema_v1")]
    pub schema: u32,
    /// At most this many of the last lines.
    pub lines: u32,
    /// Only lines stamped at or after this instant (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only what was written after this point of an earlier reply (following the log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<LogCursor>,
}

/// A place in the agent's log: the file's name and a byte offset in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogCursor {
    pub file: String,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogReply {
    #[serde(default = "super::schema_v1")]
    pub schema: u32,
    pub lines: Vec<String>,
    /// Where the next follow-up read starts; `None` when the agent keeps no log file.
    #[serde(default)]
    pub cursor: Option<LogCursor>,
    /// More matched than was sent (a line cap or the size cap): the oldest were left out.
    #[serde(default)]
    pub truncated: bool,
    /// Why there is nothing to read, e.g. the agent logs to stdout only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One event of `GET /api/executions/{id}/pcs/{pc}/tail` (server-sent events named by `type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TailEvent {
    Output {
        stream: ChunkStream,
        text: String,
    },
    /// Output the agent no longer held when asked (it keeps the last 64 KiB of a run).
    Skipped {
        bytes: u64,
    },
    /// Nothing to show yet, and why (not started, the agent not connected, …).
    Waiting {
        reason: String,
    },
    /// The caller's session ended (expired, signed out elsewhere, password changed, user
    /// disabled); the stream ends after this.
    SessionEnded {
        error: String,
    },
    /// The run is over; the stream ends after this.
    End {
        status: String,
        #[serde(default)]
        exit_code: Option<i64>,
        #[serde(default)]
        message: Option<String>,
    },
}

impl TailEvent {
    pub fn name(&self) -> &'static str {
        match self {
            TailEvent::Output { .. } => "output",
            TailEvent::Skipped { .. } => "skipped",
            TailEvent::Waiting { .. } => "waiting",
            TailEvent::SessionEnded { .. } => "session_ended",
            TailEvent::End { .. } => "end",
        }
    }
}
