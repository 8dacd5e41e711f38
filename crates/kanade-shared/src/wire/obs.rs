//! Observability events (SPEC §12): what happened on an endpoint, on a timeline. Agents send
//! theirs on `obs.<pc>` (stream OBS) through the durable outbox; the backend adds the ones it
//! derives (`job.started` / `job.finished` from the run's own messages, `agent.online` /
//! `agent.offline` from heartbeat gaps). Every event has an id unique within its PC, so a
//! redelivered one is stored once.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Timestamp, schema_v1};
use crate::ids::{ExecId, PcId};

pub const AGENT_STARTED: &str = "agent.started";
pub const AGENT_STOPPING: &str = "agent.stopping";
pub const AGENT_UPDATED: &str = "agent.updated";
pub const AGENT_ROLLED_BACK: &str = "agent.rolled_back";
pub const AGENT_ONLINE: &str = "agent.online";
pub const AGENT_OFFLINE: &str = "agent.offline";
pub const JOB_STARTED: &str = "job.started";
pub const JOB_FINISHED: &str = "job.finished";

/// Kinds a job may not emit: they are kanade's own, and a script claiming them would forge the
/// agent's or the backend's part of the timeline.
pub const RESERVED_PREFIXES: [&str; 4] = ["agent.", "job.", "check.", "kanade."];
/// The longest kind, event id and (encoded) `data` accepted.
pub const MAX_KIND: usize = 64;
pub const MAX_EVENT_ID: usize = 128;
pub const MAX_DATA_BYTES: usize = 16 * 1024;
/// Events one run may emit; lines past it are reported, not sent.
pub const MAX_EMITTED: usize = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ObsEvent {
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// Unique within the PC: a redelivery carries the same id.
    pub event_id: String,
    pub pc_id: PcId,
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_id: Option<ExecId>,
    #[serde(default)]
    pub data: Map<String, Value>,
}

/// `kind`: 1–64 of `a-z 0-9 . _ -`, starting with a letter.
pub fn check_kind(kind: &str) -> Result<(), String> {
    let ok = !kind.is_empty()
        && kind.len() <= MAX_KIND
        && kind.starts_with(|c: char| c.is_ascii_lowercase())
        && kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("kind {kind:?}: write 1-{MAX_KIND} of a-z 0-9 . _ - starting with a letter"))
    }
}

/// What a job wrote with `emit: events`: one event per NDJSON line
/// `{"kind": "...", "at": <epoch ms or RFC 3339>, "data": {...}}` (`at` and `data` optional).
/// Blank lines are skipped; every other line that is not an event is named in the problems, and
/// so are the lines past [`MAX_EMITTED`]. Ids are `<exec_id>.<line>`, so the same output always
/// yields the same events.
pub fn parse_emitted(stdout: &str, exec: ExecId, pc: &PcId, now: Timestamp) -> (Vec<ObsEvent>, Vec<String>) {
    let mut events = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in stdout.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        if events.len() == MAX_EMITTED {
            problems.push(format!(
                "line {line_no} and after: more than {MAX_EMITTED} events; the rest is dropped"
            ));
            break;
        }
        match emitted(line, now) {
            Ok((kind, at, data)) => events.push(ObsEvent {
                schema: super::SCHEMA,
                event_id: format!("{exec}.{line_no}"),
                pc_id: pc.clone(),
                kind,
                at,
                exec_id: Some(exec),
                data,
            }),
            Err(e) => problems.push(format!("line {line_no}: {e}")),
        }
    }
    (events, problems)
}

fn emitted(line: &str, now: Timestamp) -> Result<(String, Timestamp, Map<String, Value>), String> {
    let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(line) else {
        return Err("not a JSON object".into());
    };
    let kind = match object.remove("kind") {
        Some(Value::String(k)) => k,
        _ => return Err("no \"kind\" string".into()),
    };
    check_kind(&kind)?;
    if let Some(reserved) = RESERVED_PREFIXES.iter().find(|p| kind.starts_with(*p)) {
        return Err(format!("kind {kind:?}: {reserved}* is kanade's own"));
    }
    let at = match object.remove("at") {
        None | Some(Value::Null) => now,
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|ms| Timestamp::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
            .ok_or_else(|| format!("at {n}: not epoch milliseconds"))?,
        Some(Value::String(s)) => Timestamp::parse(&s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("at {s:?}: not RFC 3339 ({e})"))?,
        Some(other) => return Err(format!("at {other}: write epoch milliseconds or RFC 3339")),
    };
    let data = match object.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(d)) => d,
        Some(other) => return Err(format!("data {other}: must be an object")),
    };
    let size = serde_json::to_string(&data).map_or(0, |s| s.len());
    if size > MAX_DATA_BYTES {
        return Err(format!("data is {size} bytes; at most {MAX_DATA_BYTES}"));
    }
    Ok((kind, at, data))
}

/// `GET /api/events`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ObsEvents {
    pub events: Vec<ObsEventRow>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One stored event; times are epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ObsEventRow {
    pub event_id: String,
    pub pc_id: String,
    pub kind: String,
    pub at: i64,
    /// When the backend stored it.
    pub received_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_id: Option<String>,
    pub data: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_short_lowercase_names() {
        for good in ["disk.low", "a", "backup_done-2"] {
            assert_eq!(check_kind(good), Ok(()), "{good}");
        }
        for bad in ["", "Disk.low", "1abc", "with space", "x*", &"a".repeat(65)] {
            assert!(check_kind(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emitted_lines_become_events_and_every_bad_line_is_named() {
        let exec = ExecId::new();
        let pc: PcId = "PC-1".parse().unwrap();
        let now: Timestamp = time::macros::datetime!(2026-12-02 12:00 UTC);
        let stdout = [
            r#"{"kind":"disk.low","at":1764676800000,"data":{"free":5}}"#,
            "",
            r#"{"kind":"backup.done","at":"2026-12-02T11:00:00Z"}"#,
            "hello",
            r#"{"kind":"agent.started"}"#,
            r#"{"kind":"x","data":[1]}"#,
            r#"{"kind":"x","at":"yesterday"}"#,
            r#"{"data":{}}"#,
            r#"{"kind":"plain"}"#,
        ]
        .join("\n");
        let (events, problems) = parse_emitted(&stdout, exec, &pc, now);
        let got: Vec<_> = events.iter().map(|e| (e.event_id.clone(), e.kind.as_str(), e.at)).collect();
        assert_eq!(
            got,
            [
                (format!("{exec}.1"), "disk.low", time::macros::datetime!(2025-12-02 12:00 UTC)),
                (format!("{exec}.3"), "backup.done", time::macros::datetime!(2026-12-02 11:00 UTC)),
                (format!("{exec}.9"), "plain", now),
            ]
        );
        assert_eq!(events[0].data["free"], 5);
        let starts: Vec<_> = problems.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(starts, ["line 4", "line 5", "line 6", "line 7", "line 8"], "{problems:?}");
        assert!(problems[1].contains("agent.* is kanade's own"), "{problems:?}");
    }

    #[test]
    fn a_run_emits_at_most_the_cap() {
        let stdout = "{\"kind\":\"k\"}\n".repeat(MAX_EMITTED + 5);
        let (events, problems) =
            parse_emitted(&stdout, ExecId::new(), &"PC".parse().unwrap(), Timestamp::now_utc());
        assert_eq!(events.len(), MAX_EMITTED);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with(&format!("line {} and after", MAX_EMITTED + 1)));
    }
}
