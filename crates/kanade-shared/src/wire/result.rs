//! `ExecResult`: the outcome of one run of one exec on one PC.

use serde::{Deserialize, Serialize};

use super::{Timestamp, schema_v1};
use crate::ids::{ExecId, JobId, PcId, RequestId, ResultId, Version};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecResult {
    #[serde(default = "schema_v1")]
    pub schema: u32,
    pub result_id: ResultId,
    pub request_id: RequestId,
    pub exec_id: ExecId,
    pub job_id: JobId,
    pub version: Version,
    pub pc_id: PcId,
    pub exit_code: Option<i32>,
    pub status: ExecStatus,
    #[serde(default)]
    pub skip_reason: Option<SkipReason>,
    /// Human-readable detail for skips, refusals and `unknown` runs.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    /// Set when stdout or stderr hit the agent's capture cap.
    #[serde(default)]
    pub truncated: bool,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: Timestamp,
    #[serde(default = "first_attempt")]
    pub attempt: u32,
}

impl ExecResult {
    /// Encode this result in at most `max_bytes` (the broker's `max_payload` less room for
    /// headers): when it does not fit, stdout and stderr are cut (from the end, on a character
    /// boundary) and `truncated` is set. The size is measured on the encoded JSON, never on the
    /// raw streams, because escaping can make a byte of output six bytes of message. Each stream
    /// gets half the room and a short one leaves its unused half to the other. `None` only when
    /// even a result with no output cannot fit (a limit below a few hundred bytes).
    pub fn encode_within(&mut self, max_bytes: usize) -> Option<Vec<u8>> {
        let whole = serde_json::to_vec(self).ok()?;
        if whole.len() <= max_bytes {
            return Some(whole);
        }
        let (stdout, stderr) = (std::mem::take(&mut self.stdout), std::mem::take(&mut self.stderr));
        self.truncated = true;
        let bare = serde_json::to_vec(self).ok()?.len();
        let room = max_bytes.checked_sub(bare)?;
        let (out_len, err_len) = (escaped_len(&stdout), escaped_len(&stderr));
        let half = room / 2;
        let (out_room, err_room) = if out_len <= half {
            (out_len, room - out_len)
        } else if err_len <= half {
            (room - err_len, err_len)
        } else {
            (half, room - half)
        };
        self.stdout = cut_to(stdout, out_room);
        self.stderr = cut_to(stderr, err_room);
        let fitted = serde_json::to_vec(self).ok()?;
        (fitted.len() <= max_bytes).then_some(fitted)
    }
}

/// What one character costs inside a JSON string as serde_json writes it.
fn escaped_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

fn escaped_len(s: &str) -> usize {
    s.chars().map(escaped_char_len).sum()
}

/// The longest prefix of `s` whose escaped form fits in `room` bytes.
fn cut_to(mut s: String, room: usize) -> String {
    let mut used = 0;
    let mut end = s.len();
    for (i, c) in s.char_indices() {
        used += escaped_char_len(c);
        if used > room {
            end = i;
            break;
        }
    }
    s.truncate(end);
    s
}

fn first_attempt() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    Succeeded,
    Failed,
    TimedOut,
    Killed,
    Skipped,
    /// The agent restarted while the run was in flight, or a newer status this build cannot name.
    #[serde(other)]
    Unknown,
}

impl ExecStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Killed => "killed",
            Self::Skipped => "skipped",
            Self::Unknown => "unknown",
        }
    }

    /// Only a real success counts as one; a skip never does.
    pub fn is_success(self) -> bool {
        self == Self::Succeeded
    }
}

/// Why a command was not run. Each reason has a reserved exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    VersionPin,
    DeadlinePassed,
    Revoked,
    Stale,
    /// An operator killed the execution before this PC started it.
    Killed,
    /// `run_as: user` and no user to run as (nobody signed in on Windows, no `[exec] user` on
    /// Unix): never run as another identity instead.
    NoUser,
    #[serde(other, skip_serializing)]
    Unknown,
}

impl SkipReason {
    pub fn exit_code(self) -> Option<i32> {
        match self {
            Self::VersionPin => Some(124),
            Self::DeadlinePassed => Some(125),
            Self::Revoked => Some(126),
            Self::Stale => Some(127),
            Self::Killed => Some(126),
            Self::NoUser => Some(122),
            Self::Unknown => None,
        }
    }
}

/// Which output stream a capture belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(stdout: &str, stderr: &str) -> ExecResult {
        let exec = ExecId::new();
        let pc: PcId = "PC-1".parse().unwrap();
        ExecResult {
            schema: 1,
            result_id: ResultId::derive(exec, &pc),
            request_id: RequestId::new(),
            exec_id: exec,
            job_id: "j".parse().unwrap(),
            version: "1".parse().unwrap(),
            pc_id: pc,
            exit_code: Some(0),
            status: ExecStatus::Succeeded,
            skip_reason: None,
            message: None,
            stdout: stdout.to_owned(),
            stderr: stderr.to_owned(),
            truncated: false,
            started_at: None,
            finished_at: Timestamp::UNIX_EPOCH,
            attempt: 1,
        }
    }

    #[test]
    fn output_is_cut_on_the_encoded_size_never_the_raw_one() {
        // (stdout, stderr, limit) -> fits, truncated flag, which stream kept more
        let controls = "\u{1}".repeat(50_000); // 6 bytes each once escaped
        let replacement = "\u{fffd}".repeat(100_000); // 3 bytes each
        let cases: [(&str, &str, usize, bool); 5] = [
            ("small", "", 10_000, false),
            (&"a".repeat(1_100_000), "", 1_000_000, true),
            (&controls, &replacement, 200_000, true),
            ("short", &"e".repeat(500_000), 100_000, true),
            ("\"quoted\"\\", "", 400, false),
        ];
        for (out, err, limit, cut) in cases {
            let mut r = result(out, err);
            let bytes = r.encode_within(limit).expect("fits");
            assert!(bytes.len() <= limit, "{} > {limit}", bytes.len());
            assert_eq!(r.truncated, cut);
            let back: ExecResult = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(back, r, "the encoded bytes are the result as cut");
            assert!(out.starts_with(&back.stdout) && err.starts_with(&back.stderr), "a prefix is kept");
            if cut {
                // Little room is left unused.
                assert!(bytes.len() + 16 > limit, "{} of {limit} used", bytes.len());
            }
        }
        let mut r = result("short", &"e".repeat(500_000));
        r.encode_within(100_000).unwrap();
        assert_eq!(r.stdout, "short", "a short stream keeps all of itself");
    }

    #[test]
    fn a_limit_below_the_bare_result_cannot_be_met() {
        assert_eq!(result("x", "y").encode_within(50), None);
    }
}
