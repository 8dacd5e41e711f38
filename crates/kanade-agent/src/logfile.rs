//! The end of the agent's own log, for `GET /api/agents/{pc}/logs`: the daily files
//! `<prefix>.<date>.log` in the log directory, read from the back, size-capped, optionally from a
//! point in time or from where an earlier read stopped (following).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use kanade_shared::wire::{LogCursor, LogReply, LogRequest, SCHEMA};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Bytes of log one reply carries at most (a NATS message is 1 MiB by default).
pub const REPLY_BYTES: usize = 256 * 1024;

/// Where the agent writes its log; `None` in [`read`]: stdout only.
#[derive(Debug, Clone)]
pub struct LogDir {
    pub dir: PathBuf,
    pub prefix: String,
}

pub fn read(dir: Option<&LogDir>, req: &LogRequest) -> LogReply {
    let Some(dir) = dir else {
        return note(
            "this agent logs to stdout only (log.keep_days = 0 in agent.toml): read it where its service manager keeps stdout",
        );
    };
    let files = match files(dir) {
        Ok(files) if !files.is_empty() => files,
        Ok(_) => return note(&format!("no log file in {} yet", dir.dir.display())),
        Err(e) => return note(&format!("cannot list the log directory {}: {e}", dir.dir.display())),
    };
    let result = match &req.after {
        Some(cursor) => follow(&dir.dir, &files, cursor),
        None => last(&dir.dir, &files, req),
    };
    result.unwrap_or_else(|e| note(&format!("cannot read the log in {}: {e}", dir.dir.display())))
}

fn note(why: &str) -> LogReply {
    LogReply { schema: SCHEMA, lines: Vec::new(), cursor: None, truncated: false, note: Some(why.to_owned()) }
}

/// The log files, oldest first (their names end in the date).
fn files(dir: &LogDir) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(&dir.dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&format!("{}.", dir.prefix)) && n.ends_with(".log"))
        .collect();
    names.sort();
    Ok(names)
}

/// The last `req.lines` whole lines (since `req.since`), reading back through the newest files.
fn last(dir: &Path, files: &[String], req: &LogRequest) -> std::io::Result<LogReply> {
    let newest = files.last().expect("not empty");
    let mut text: Vec<u8> = Vec::new();
    let mut budget = REPLY_BYTES as u64;
    let mut cut = false;
    let mut end = 0;
    for name in files.iter().rev() {
        let path = dir.join(name);
        let len = std::fs::metadata(&path)?.len();
        let from = len.saturating_sub(budget);
        let mut part = read_range(&path, from, len)?;
        budget -= len - from;
        if name == newest {
            // A line still being written is not a line yet; following picks it up whole.
            part.truncate(part.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1));
            end = from + part.len() as u64;
        }
        if from > 0 {
            // The first line is only partly read.
            part.drain(..part.iter().position(|b| *b == b'\n').map_or(part.len(), |i| i + 1));
            cut = true;
        }
        part.extend_from_slice(&text);
        text = part;
        if budget == 0 || text.iter().filter(|b| **b == b'\n').count() > req.lines as usize {
            break;
        }
    }
    let text = String::from_utf8_lossy(&text);
    let since = req.since.as_deref().and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok());
    let (lines, more) = select(&text, req.lines as usize, since);
    Ok(LogReply {
        schema: SCHEMA,
        lines,
        cursor: Some(LogCursor { file: newest.clone(), offset: end }),
        truncated: more || (cut && since.is_none_or(|s| first_stamp(&text).is_some_and(|t| t > s))),
        note: None,
    })
}

/// Whole lines written after `cursor`: the rest of its file, then any newer file.
fn follow(dir: &Path, files: &[String], cursor: &LogCursor) -> std::io::Result<LogReply> {
    let mut lines = Vec::new();
    let mut at = cursor.clone();
    let mut budget = REPLY_BYTES;
    let mut truncated = false;
    for name in files.iter().filter(|n| **n >= cursor.file) {
        let path = dir.join(name);
        let len = std::fs::metadata(&path)?.len();
        let mut from = if *name == cursor.file { cursor.offset } else { 0 };
        if from > len {
            from = 0; // the file was replaced
        }
        let to = len.min(from + budget as u64);
        let bytes = read_range(&path, from, to)?;
        // Only whole lines: a line being written is sent next time — unless one line is longer
        // than a whole reply, which then goes out in pieces rather than never.
        let whole = match bytes.iter().rposition(|b| *b == b'\n') {
            Some(i) => i + 1,
            None if bytes.len() == budget => bytes.len(),
            None => 0,
        };
        lines.extend(String::from_utf8_lossy(&bytes[..whole]).lines().map(str::to_owned));
        budget -= whole;
        at = LogCursor { file: name.clone(), offset: from + whole as u64 };
        if to < len {
            truncated = true;
            break;
        }
    }
    Ok(LogReply { schema: SCHEMA, lines, cursor: Some(at), truncated, note: None })
}

fn read_range(path: &Path, from: u64, to: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::with_capacity((to - from) as usize);
    f.take(to - from).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The last `n` lines stamped at or after `since`, and whether more matched. A line without a
/// stamp (a panic's backtrace) goes with the line before it.
fn select(text: &str, n: usize, since: Option<OffsetDateTime>) -> (Vec<String>, bool) {
    let mut keep = since.is_none();
    let mut picked: Vec<&str> = Vec::new();
    for line in text.lines() {
        if let (Some(since), Some(at)) = (since, stamp(line)) {
            keep = at >= since;
        }
        if keep {
            picked.push(line);
        }
    }
    let more = picked.len() > n;
    (picked[picked.len().saturating_sub(n)..].iter().map(|l| (*l).to_owned()).collect(), more)
}

fn first_stamp(text: &str) -> Option<OffsetDateTime> {
    text.lines().find_map(stamp)
}

/// When a log line was written: the text format starts with the time, the JSON format has a
/// `"timestamp"` field.
fn stamp(line: &str) -> Option<OffsetDateTime> {
    let word = match line.split_once("\"timestamp\":\"") {
        Some((_, rest)) => rest.split('"').next()?,
        None => line.split_whitespace().next()?,
    };
    OffsetDateTime::parse(word, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2026-12-03T01:00:00.100000Z  INFO kanade_agent: started
2026-12-03T01:00:05.000000Z ERROR kanade_agent: panic
   0: backtrace line
2026-12-03T01:00:10.000000Z  INFO kanade_agent: run finished
{\"timestamp\":\"2026-12-03T01:00:20.5Z\",\"level\":\"INFO\",\"message\":\"json line\"}
";

    fn at(s: &str) -> Option<OffsetDateTime> {
        Some(OffsetDateTime::parse(s, &Rfc3339).unwrap())
    }

    #[test]
    fn select_picks_the_last_lines_since_an_instant() {
        type Case<'a> = (&'a str, usize, Option<OffsetDateTime>, &'a [&'a str], bool);
        let cases: [Case; 5] = [
            (
                "the last two",
                2,
                None,
                &[
                    "2026-12-03T01:00:10.000000Z  INFO kanade_agent: run finished",
                    "{\"timestamp\":\"2026-12-03T01:00:20.5Z\",\"level\":\"INFO\",\"message\":\"json line\"}",
                ],
                true,
            ),
            (
                "all of them",
                10,
                None,
                &[
                    "2026-12-03T01:00:00.100000Z  INFO kanade_agent: started",
                    "2026-12-03T01:00:05.000000Z ERROR kanade_agent: panic",
                    "   0: backtrace line",
                    "2026-12-03T01:00:10.000000Z  INFO kanade_agent: run finished",
                    "{\"timestamp\":\"2026-12-03T01:00:20.5Z\",\"level\":\"INFO\",\"message\":\"json line\"}",
                ],
                false,
            ),
            (
                "an unstamped line goes with the one before",
                10,
                at("2026-12-03T01:00:05Z"),
                &[
                    "2026-12-03T01:00:05.000000Z ERROR kanade_agent: panic",
                    "   0: backtrace line",
                    "2026-12-03T01:00:10.000000Z  INFO kanade_agent: run finished",
                    "{\"timestamp\":\"2026-12-03T01:00:20.5Z\",\"level\":\"INFO\",\"message\":\"json line\"}",
                ],
                false,
            ),
            (
                "fractional seconds compare as time, not text",
                10,
                at("2026-12-03T01:00:20Z"),
                &["{\"timestamp\":\"2026-12-03T01:00:20.5Z\",\"level\":\"INFO\",\"message\":\"json line\"}"],
                false,
            ),
            ("nothing that new", 10, at("2026-12-04T00:00:00Z"), &[], false),
        ];
        for (name, n, since, want, more) in cases {
            let (lines, got_more) = select(LOG, n, since);
            assert_eq!(lines, want, "{name}");
            assert_eq!(got_more, more, "{name}");
        }
    }

    fn request(lines: u32, after: Option<LogCursor>) -> LogRequest {
        LogRequest { schema: SCHEMA, lines, since: None, after }
    }

    #[test]
    fn following_reads_whole_lines_across_a_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LogDir { dir: tmp.path().to_owned(), prefix: "kanade-agent".into() };
        let day1 = tmp.path().join("kanade-agent.2026-12-02.log");
        std::fs::write(&day1, "a\nb\npartial").unwrap();
        std::fs::write(tmp.path().join("other.log"), "not ours\n").unwrap();
        let first = read(Some(&dir), &request(1, None));
        assert_eq!(first.lines, ["b"], "a line still being written is not a line yet");
        assert!(first.truncated);
        let cursor = LogCursor { file: "kanade-agent.2026-12-02.log".into(), offset: 2 };
        let next = read(Some(&dir), &request(1, Some(cursor)));
        assert_eq!(next.lines, ["b"]);
        assert_eq!(next.cursor, first.cursor);
        std::fs::write(&day1, "a\nb\npartial line\n").unwrap();
        std::fs::write(tmp.path().join("kanade-agent.2026-12-03.log"), "c\n").unwrap();
        let after = read(Some(&dir), &request(1, next.cursor));
        assert_eq!(after.lines, ["partial line", "c"]);
        let cursor = after.cursor.unwrap();
        assert_eq!((cursor.file.as_str(), cursor.offset), ("kanade-agent.2026-12-03.log", 2));
    }

    #[test]
    fn the_last_lines_reach_into_yesterday_when_today_is_short() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LogDir { dir: tmp.path().to_owned(), prefix: "kanade-agent".into() };
        std::fs::write(tmp.path().join("kanade-agent.2026-12-02.log"), "a\nb\n").unwrap();
        std::fs::write(tmp.path().join("kanade-agent.2026-12-03.log"), "c\n").unwrap();
        let r = read(Some(&dir), &request(2, None));
        assert_eq!(r.lines, ["b", "c"]);
        assert!(r.truncated);
        let none = read(None, &request(2, None));
        assert!(none.note.unwrap().contains("keep_days = 0"));
    }
}
