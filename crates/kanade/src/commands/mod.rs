//! One module per command group; each turns parsed arguments into IO and output.

mod agent;
mod catalog;
mod compliance;
mod direct;
mod enroll;
mod exec;
mod fleet;
mod groups;
mod jetstream;
pub mod job;
mod login;
mod mfa;
mod notify;
mod schedule;
mod telemetry;
mod watch;

use std::process::ExitCode;

use clap::CommandFactory;
use serde_json::Value;

use crate::cli::{Cli, Command, Format, JobCommand};
use fleet::Page;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Jetstream(cmd) => jetstream::run(cmd, g).await,
        Command::Job(JobCommand::Validate { file }) => job::validate(&file, g),
        Command::Job(JobCommand::Create { file }) => catalog::create(&file, g).await,
        Command::Job(JobCommand::List) => catalog::list(g).await,
        Command::Job(JobCommand::Show { id }) => catalog::show(&id, g).await,
        Command::Job(JobCommand::Delete { id }) => catalog::delete(&id, g).await,
        Command::Revoke { job_id } => catalog::revoke(&job_id, true, g).await,
        Command::Unrevoke { job_id } => catalog::revoke(&job_id, false, g).await,
        Command::Schedule(cmd) => schedule::run(cmd, g).await,
        Command::Login { user, password_stdin, code } => login::run(user, password_stdin, code, g).await,
        Command::Mfa(cmd) => mfa::run(cmd, g).await,
        Command::Group(cmd) => groups::run(cmd, g).await,
        Command::Run { pc, shell, timeout, start_within, script } => {
            direct::run(&pc, shell, (&timeout, &start_within), &script, g).await
        }
        Command::Kill { exec_id: Some(exec_id), .. } => direct::kill(&exec_id, g).await,
        Command::Kill { exec_id: None, job } => fleet::kill_job(job.as_deref().unwrap_or_default(), g).await,
        Command::Ping { pc } => fleet::ping(&pc, g).await,
        Command::Tail { exec_id, pc } => watch::tail(&exec_id, &pc, g).await,
        Command::Exec { job_id, pcs, groups, all, jitter, wait, allow_unknown } => {
            let target = exec::Target { pcs, groups, all, jitter, allow_unknown };
            exec::exec(&job_id, target, wait, g).await
        }
        Command::Deploy { manifest, version, wait, allow_unknown } => {
            exec::deploy(&manifest, version, (wait, allow_unknown), g).await
        }
        Command::Executions(cmd) => fleet::executions(cmd, g).await,
        Command::Results { pc, job, failed, limit, all } => {
            fleet::results(pc, job, failed, Page { limit, all }, g).await
        }
        Command::Agents(cmd) => fleet::agents(cmd, g).await,
        Command::Checks { name, status, forget } => compliance::checks(name, status, forget, g).await,
        Command::Query { sql, max_rows } => compliance::run_query(sql, max_rows, g).await,
        Command::Facts { table, pc, filters, limit, drop } => {
            compliance::facts(table, pc, filters, limit, drop, g).await
        }
        Command::Events { pc, kind, since, limit } => telemetry::events(pc, kind, since, limit, g).await,
        Command::Audit { actor, action, client, limit, all } => {
            fleet::audit(actor, action, client, Page { limit, all }, g).await
        }
        Command::Agent(cmd) => agent::run(cmd, g).await,
        Command::Notify(cmd) => notify::run(cmd, g).await,
        Command::Script(cmd) => catalog::script(cmd, g).await,
        Command::Freeze { until, for_, from, reason } => fleet::freeze(until, for_, from, reason, g).await,
        Command::Unfreeze => fleet::unfreeze(g).await,
        Command::Enroll(cmd) => enroll::run(cmd, g).await,
        Command::Keygen { file } => direct::keygen(&file, g),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kanade", &mut script);
            // `kanade completions bash | head` closes the pipe early: that is not an error.
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(ExitCode::SUCCESS),
            }
        }
    }
}

/// A JSON value as a table cell.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Epoch ms as UTC to the second (`2026-11-24 03:00:00Z`), or `-`. JSON output keeps the ms.
pub fn when(ms: &Value) -> String {
    when_ms(ms.as_i64())
}

/// Epoch ms as UTC to the second, or `-`.
pub fn when_ms(ms: Option<i64>) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    ms.and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "-".to_owned())
}

/// The outcome of a change: a sentence for people, the API's answer for scripts.
pub fn done<T: serde::Serialize>(format: Format, json: &T, sentence: &str) {
    match format {
        Format::Json | Format::Yaml => crate::output::emit(format, json),
        Format::Table | Format::Wide => println!("{sentence}"),
    }
}

/// `?k=v&…` of a route's query type (`kanade_shared::api`); fields without a value are left out.
pub fn query_of<Q: serde::Serialize>(q: &Q) -> anyhow::Result<String> {
    let text = serde_urlencoded::to_string(q)
        .map_err(|e| anyhow::anyhow!("cannot encode the query {}: {e}", std::any::type_name::<Q>()))?;
    Ok(if text.is_empty() { text } else { format!("?{text}") })
}

/// `?k=v&...` of the pairs that have a value, each value percent-encoded (a facts table's
/// filters, whose names are its columns).
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let encode = |v: &str| -> String {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let parts: Vec<String> =
        pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v)))).collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

pub fn now_ms() -> i64 {
    (kanade_shared::wire::Timestamp::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The process exit status for a script's exit code: the code itself when it fits, otherwise
/// (Windows crash codes such as 0xC0000005 are negative, others exceed 255) 1, never 0: a
/// crashed script must not look like a success.
pub fn exit_status(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(1)
}
