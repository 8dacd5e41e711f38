//! Watching agents at work: `kanade tail` (a run's output as it is written) and `kanade agents
//! logs` (the end of an agent's log, or following it).

use std::io::Write;
use std::process::ExitCode;

use kanade_shared::api::fleet::LogsQuery;
use std::time::Duration;

use anyhow::anyhow;
use kanade_shared::wire::{ChunkStream, LogReply, TailEvent, Timestamp};
use kanade_shared::{ExecId, HumanDuration, PcId};

use crate::api::Api;
use crate::cli::{Format, Global};

/// How often `agents logs --follow` asks for more.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

pub async fn tail(exec: &str, pc: &str, global: &Global) -> anyhow::Result<ExitCode> {
    let exec: ExecId =
        exec.parse().map_err(|_| anyhow!("{exec:?} is not an execution id (see kanade executions list)"))?;
    let pc: PcId = pc.parse().map_err(|e| anyhow!("{pc:?} is not a PC id: {e}"))?;
    let api = Api::new(global)?;
    let mut exit = None;
    api.events(&format!("/api/executions/{exec}/pcs/{pc}/tail"), |name, data| {
        if name == "open" {
            return Ok(true);
        }
        let event: TailEvent = serde_json::from_str(data)
            .map_err(|e| anyhow!("the backend sent a {name} event this CLI cannot read ({e}): {data}"))?;
        if !global.output.is_table() {
            println!("{}", serde_json::to_string(&event)?);
        } else {
            show(&event);
        }
        if let TailEvent::SessionEnded { error } = &event {
            return Err(anyhow!("{error}; sign in again with `kanade login` and run the command again"));
        }
        if let TailEvent::End { status, exit_code, .. } = &event {
            exit = Some(match (status.as_str(), exit_code) {
                ("succeeded" | "failed", Some(code)) => {
                    ExitCode::from(super::exit_status(i32::try_from(*code).unwrap_or(1)))
                }
                _ => ExitCode::FAILURE,
            });
            return Ok(false);
        }
        Ok(true)
    })
    .await?;
    exit.ok_or_else(|| {
        anyhow!("the backend ended the stream before the run ended (is it stopping?); run the command again")
    })
}

/// One event for people: the script's output as it is, kanade's own lines on stderr.
fn show(event: &TailEvent) {
    match event {
        TailEvent::Output { stream: ChunkStream::Stdout, text } => {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
        TailEvent::Output { stream: ChunkStream::Stderr, text } => eprint!("{text}"),
        TailEvent::Output { text, .. } => eprint!("{text}"),
        TailEvent::Skipped { bytes } => {
            eprintln!("[kanade] {bytes} bytes of output skipped (the agent keeps the last 64 KiB of a run)")
        }
        TailEvent::Waiting { reason } => eprintln!("[kanade] waiting: {reason}"),
        TailEvent::SessionEnded { error } => eprintln!("[kanade] {error}"),
        TailEvent::End { status, exit_code, message } => eprintln!(
            "[kanade] {status}{}{}",
            exit_code.map(|c| format!(" (exit {c})")).unwrap_or_default(),
            message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
        ),
    }
}

pub async fn logs(
    pc: &str,
    lines: u32,
    since: Option<HumanDuration>,
    follow: bool,
    global: &Global,
) -> anyhow::Result<ExitCode> {
    let pc: PcId = pc.parse().map_err(|e| anyhow!("{pc:?} is not a PC id: {e}"))?;
    let api = Api::new(global)?;
    let since = match since {
        Some(d) => {
            Some((Timestamp::now_utc() - d.get()).format(&time::format_description::well_known::Rfc3339)?)
        }
        None => None,
    };
    let reply: LogReply =
        fetch(&api, &pc, &LogsQuery { lines: Some(lines), since, ..Default::default() }).await?;
    if !follow {
        if !crate::output::structured(global.output, &reply) {
            print_lines(&reply);
        }
        return Ok(ExitCode::SUCCESS);
    }
    emit_follow(&reply, global.output);
    let Some(mut cursor) = reply.cursor else {
        return Err(anyhow!("{pc} keeps no log file to follow"));
    };
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let after =
            LogsQuery { file: Some(cursor.file.clone()), offset: Some(cursor.offset), ..Default::default() };
        let reply: LogReply = fetch(&api, &pc, &after).await?;
        emit_follow(&reply, global.output);
        if let Some(next) = reply.cursor {
            cursor = next;
        }
    }
}

async fn fetch(api: &Api, pc: &PcId, query: &LogsQuery) -> anyhow::Result<LogReply> {
    api.get(&format!("/api/agents/{pc}/logs{}", super::query_of(query)?)).await
}

fn print_lines(reply: &LogReply) {
    if let Some(note) = &reply.note {
        eprintln!("[kanade] {note}");
    }
    if reply.truncated {
        eprintln!("[kanade] older lines left out; ask for more with -n or narrow with --since");
    }
    for line in &reply.lines {
        println!("{line}");
    }
}

/// Following: each poll's lines as they are, or one compact JSON object per poll for scripts.
fn emit_follow(reply: &LogReply, format: Format) {
    if format.is_table() {
        print_lines(reply);
    } else if !reply.lines.is_empty() || reply.note.is_some() {
        println!("{}", serde_json::to_string(reply).unwrap_or_default());
    }
    let _ = std::io::stdout().flush();
}
