//! `kanade executions`, `results`, `agents`, `ping`: reading the fleet over HTTP.

use std::process::ExitCode;

use kanade_shared::api::executions::{Execution, ExecutionDetail, ExecutionsQuery, JobKilled, PcRun};
use kanade_shared::api::fleet::{
    Agent, AgentDetail, AgentPage, AgentsQuery, AuditEntry, AuditQuery, GroupsSet, HostPerfQuery, Pong,
    ResultQuery, RunResult, SetGroups,
};
use kanade_shared::{AuditId, ExecId, JobId, ResultId, api};
use serde::de::DeserializeOwned;

use super::{done, now_ms, query_of, when_ms};
use crate::api::Api;
use crate::cli::{AgentsCommand, ExecutionsCommand, Format, Global, GroupsCommand};
use crate::output;

/// How much of a list: one page of `limit`, or every page.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: u32,
    pub all: bool,
}

/// A page of a list route: its items and the cursor that continues it.
pub(super) trait Paged: DeserializeOwned {
    type Item;
    fn items(&mut self) -> &mut Vec<Self::Item>;
    fn cursor(&self) -> Option<String>;
}

impl<T: DeserializeOwned, C: DeserializeOwned + std::fmt::Display> Paged for api::Page<T, C> {
    type Item = T;
    fn items(&mut self) -> &mut Vec<T> {
        &mut self.items
    }
    fn cursor(&self) -> Option<String> {
        self.next_cursor.as_ref().map(ToString::to_string)
    }
}

impl Paged for AgentPage {
    type Item = Agent;
    fn items(&mut self) -> &mut Vec<Agent> {
        &mut self.items
    }
    fn cursor(&self) -> Option<String> {
        self.next_cursor.as_ref().map(ToString::to_string)
    }
}

/// A list route's query: its filters, and where the page starts and how long it is.
pub(super) trait PageQuery: serde::Serialize {
    fn page(&mut self, limit: u32, cursor: Option<String>);
}

macro_rules! page_query {
    ($($t:ty),*) => {$(
        impl PageQuery for $t {
            fn page(&mut self, limit: u32, cursor: Option<String>) {
                (self.limit, self.cursor) = (Some(i64::from(limit)), cursor);
            }
        }
    )*};
}

page_query!(ExecutionsQuery, ResultQuery, AgentsQuery, AuditQuery);

/// A list route's answer filtered by `q`: one page, or with `all` every page in turn (their
/// items together). Says on stderr when a page left some out.
pub(super) async fn list<P: Paged>(
    api: &Api,
    path: &str,
    mut q: impl PageQuery,
    page: Page,
    what: &str,
) -> anyhow::Result<P> {
    let limit = if page.all { 500 } else { page.limit };
    q.page(limit, None);
    let mut answer: P = api.get(&format!("{path}{}", query_of(&q)?)).await?;
    if !page.all {
        if answer.cursor().is_some() {
            eprintln!("(more {what} than --limit {limit}: --all lists every one)");
        }
        return Ok(answer);
    }
    let mut items = std::mem::take(answer.items());
    let mut seen = std::collections::HashSet::new();
    while let Some(cursor) = answer.cursor() {
        if !seen.insert(cursor.clone()) {
            anyhow::bail!("{path}: the backend gave cursor {cursor} twice; stopping instead of looping");
        }
        q.page(limit, Some(cursor));
        answer = api.get(&format!("{path}{}", query_of(&q)?)).await?;
        items.append(answer.items());
    }
    *answer.items() = items;
    Ok(answer)
}

/// `-` for nothing.
fn or_dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

pub fn progress_cell(e: &Execution) -> String {
    format!("{}/{}", e.succeeded + e.failed + e.skipped + e.other, e.target_count)
}

pub const EXECUTION_HEADERS: [&str; 6] = ["EXEC", "JOB", "STATUS", "DONE", "FAILED", "CREATED"];

pub fn execution_rows(list: &[Execution]) -> Vec<Vec<String>> {
    list.iter()
        .map(|e| {
            vec![
                e.exec_id.to_string(),
                job_cell(&e.job_id, e.title.as_deref()),
                e.status.clone(),
                progress_cell(e),
                (e.failed + e.other).to_string(),
                when_ms(Some(e.created_ms)),
            ]
        })
        .collect()
}

/// The job, or what ran for an ad-hoc run (whose job id says nothing).
fn job_cell(job: &JobId, title: Option<&str>) -> String {
    title.map_or_else(|| job.to_string(), |t| t.chars().take(40).collect())
}

pub const RESULT_HEADERS: [&str; 6] = ["PC", "JOB", "STATUS", "EXIT", "FINISHED", "OUTPUT"];

pub fn result_rows(list: &[RunResult]) -> Vec<Vec<String>> {
    list.iter()
        .map(|r| {
            vec![
                r.pc_id.to_string(),
                job_cell(&r.job_id, r.title.as_deref()),
                r.status.clone(),
                or_dash(r.exit_code),
                when_ms(r.finished_ms),
                first_line(&Run::of_result(r)),
            ]
        })
        .collect()
}

pub const AGENT_HEADERS: [&str; 6] = ["PC", "STATUS", "OS", "AGENT", "GROUPS", "LAST HEARTBEAT"];

/// `-o wide`'s further columns.
pub const AGENT_WIDE: [&str; 5] = ["HOSTNAME", "ARCH", "RUNNING", "CLOCK SKEW MS", "UPDATE"];

pub fn agent_wide(list: &[Agent]) -> Vec<Vec<String>> {
    list.iter()
        .map(|a| {
            vec![
                a.hostname.clone(),
                a.arch.clone(),
                a.running_jobs.to_string(),
                or_dash(a.clock_skew_ms),
                or_dash(a.update_status.as_deref()),
            ]
        })
        .collect()
}

pub const EXECUTION_WIDE: [&str; 4] = ["SKIPPED", "TARGETS", "FINISHED", "MESSAGE"];

pub fn execution_wide(list: &[Execution]) -> Vec<Vec<String>> {
    list.iter()
        .map(|e| {
            vec![
                e.skipped.to_string(),
                e.target_count.to_string(),
                when_ms(e.finished_ms),
                or_dash(e.message.as_deref()),
            ]
        })
        .collect()
}

pub const RESULT_WIDE: [&str; 4] = ["EXEC", "ATTEMPT", "STARTED", "MESSAGE"];

pub fn result_wide(list: &[RunResult]) -> Vec<Vec<String>> {
    list.iter()
        .map(|r| {
            let message = r.message.as_deref().or(r.skip_reason.as_deref()).unwrap_or("-");
            vec![r.exec_id.to_string(), r.attempt.to_string(), when_ms(r.started_ms), message.to_owned()]
        })
        .collect()
}

pub fn agent_rows(list: &[Agent]) -> Vec<Vec<String>> {
    list.iter()
        .map(|a| {
            vec![
                a.pc_id.to_string(),
                if a.online { "online".into() } else { "offline".into() },
                format!("{} {}", a.os_name, a.os_version),
                a.agent_version.clone(),
                a.groups.join(","),
                when_ms(Some(a.last_seen_ms)),
            ]
        })
        .collect()
}

pub async fn executions(cmd: ExecutionsCommand, global: &Global) -> anyhow::Result<ExitCode> {
    let api = Api::new(global)?;
    match cmd {
        ExecutionsCommand::List { job, status, limit, all } => {
            let q = ExecutionsQuery { job, status, ..Default::default() };
            let list: api::Page<Execution, ExecId> =
                list(&api, "/api/executions", q, Page { limit, all }, "executions").await?;
            output::print_wide(
                global.output,
                &list,
                (&EXECUTION_HEADERS, execution_rows(&list.items)),
                (&EXECUTION_WIDE, execution_wide(&list.items)),
            );
        }
        ExecutionsCommand::Show { exec_id, full } => {
            let v: ExecutionDetail = api.get(&format!("/api/executions/{exec_id}")).await?;
            if crate::output::structured(global.output, &v) {
                return Ok(ExitCode::SUCCESS);
            }
            let e = &v.execution;
            println!(
                "{}  {} v{}  {}  {} done, {} ok, {} failed{}",
                e.exec_id,
                e.job_id,
                e.version,
                e.status,
                progress_cell(e),
                e.succeeded,
                e.failed + e.other,
                e.message.as_deref().map(|m| format!("  ({m})")).unwrap_or_default()
            );
            for w in &v.waves {
                println!("wave {}: {} (due {})", w.wave, w.status, when_ms(Some(w.due_ms)));
            }
            let rows: Vec<Vec<String>> = v
                .pcs
                .iter()
                .map(|p| {
                    vec![
                        p.pc_id.to_string(),
                        p.status.clone(),
                        or_dash(p.exit_code),
                        output_cell(&Run::of_pc(p), full),
                    ]
                })
                .collect();
            print!("{}", output::table(&["PC", "STATUS", "EXIT", "OUTPUT"], &rows));
            if full {
                for p in &v.pcs {
                    print!("{}", full_output(&Run::of_pc(p)));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What the output cells read of a PC's run or a result.
pub struct Run<'a> {
    pub pc_id: &'a str,
    pub status: &'a str,
    pub exit_code: Option<i64>,
    pub message: Option<&'a str>,
    pub stdout: &'a str,
    pub stderr: &'a str,
    pub truncated: bool,
}

impl<'a> Run<'a> {
    pub fn of_pc(p: &'a PcRun) -> Self {
        Self {
            pc_id: p.pc_id.as_str(),
            status: &p.status,
            exit_code: p.exit_code,
            message: p.message.as_deref(),
            stdout: p.stdout.as_deref().unwrap_or_default(),
            stderr: p.stderr.as_deref().unwrap_or_default(),
            truncated: p.truncated,
        }
    }

    pub fn of_result(r: &'a RunResult) -> Self {
        Self {
            pc_id: r.pc_id.as_str(),
            status: &r.status,
            exit_code: r.exit_code,
            message: r.message.as_deref(),
            stdout: &r.stdout,
            stderr: &r.stderr,
            truncated: r.truncated,
        }
    }
}

/// The first line of stderr if the run failed, else of stdout.
fn first_line(p: &Run) -> String {
    let failed = p.status != "succeeded";
    let stream = if failed && !p.stderr.trim().is_empty() { p.stderr } else { p.stdout };
    let line = |t: &str| t.lines().find(|l| !l.trim().is_empty()).map(str::to_owned);
    line(stream).or_else(|| p.message.and_then(line)).unwrap_or_default().chars().take(80).collect()
}

/// The table's OUTPUT cell: the first line, and how much more there is when it is not all.
fn output_cell(p: &Run, full: bool) -> String {
    let line = first_line(p);
    let lines = |s: &str| s.lines().filter(|l| !l.trim().is_empty()).count();
    let more = (lines(p.stdout) + lines(p.stderr)).saturating_sub(usize::from(!line.is_empty()));
    match (more, p.truncated, full) {
        (_, _, true) | (0, false, _) => line,
        (0, true, false) => format!("{line} (cut by the agent)"),
        (n, _, false) => format!("{line} (+{n} lines: --full)"),
    }
}

/// One PC's whole output under a heading, for `executions show --full`.
fn full_output(p: &Run) -> String {
    let mut out = format!("\n== {} {} (exit {}) ==\n", p.pc_id, p.status, or_dash(p.exit_code));
    if let Some(m) = p.message {
        out.push_str(&format!("{m}\n"));
    }
    for (name, body) in [("stdout", p.stdout), ("stderr", p.stderr)] {
        if !body.is_empty() {
            out.push_str(&format!("-- {name} --\n{body}"));
            if !body.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    if p.truncated {
        out.push_str("(output cut by the agent to fit a result message)\n");
    }
    out
}

/// `kanade kill --job <id>`: every unfinished execution of a job, through the backend.
pub async fn kill_job(job: &str, global: &Global) -> anyhow::Result<ExitCode> {
    let answer: JobKilled = Api::new(global)?.post(&format!("/api/jobs/{job}/kill")).await?;
    let killed = answer.killed.len();
    let sentence = if killed == 0 {
        format!("job {job} has no unfinished execution: nothing to kill")
    } else {
        format!(
            "job {job}: {killed} unfinished execution(s) killed; running PCs stop, later waves are cancelled"
        )
    };
    crate::commands::done(global.output, &answer, &sentence);
    Ok(ExitCode::SUCCESS)
}

pub async fn results(
    pc: Option<String>,
    job: Option<String>,
    failed: bool,
    page: Page,
    global: &Global,
) -> anyhow::Result<ExitCode> {
    // `failed` is every unsuccessful final status, filtered by the backend so a page is full.
    let q = ResultQuery { pc, job, status: failed.then(|| "failed".to_owned()), ..Default::default() };
    let list: api::Page<RunResult, ResultId> =
        list(&Api::new(global)?, "/api/results", q, page, "results").await?;
    output::print_wide(
        global.output,
        &list,
        (&RESULT_HEADERS, result_rows(&list.items)),
        (&RESULT_WIDE, result_wide(&list.items)),
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn agents(cmd: AgentsCommand, global: &Global) -> anyhow::Result<ExitCode> {
    let api = Api::new(global)?;
    match cmd {
        AgentsCommand::List { group, limit, all } => {
            let list: AgentPage = list(
                &api,
                "/api/agents",
                AgentsQuery { group, ..Default::default() },
                Page { limit, all },
                "agents",
            )
            .await?;
            output::print_wide(
                global.output,
                &list,
                (&AGENT_HEADERS, agent_rows(&list.items)),
                (&AGENT_WIDE, agent_wide(&list.items)),
            );
        }
        AgentsCommand::Logs { pc, lines, since, follow } => {
            return super::watch::logs(&pc, lines, since, follow, global).await;
        }
        AgentsCommand::Show { pc } => {
            let v: AgentDetail = api.get(&format!("/api/agents/{pc}")).await?;
            if crate::output::structured(global.output, &v) {
                return Ok(ExitCode::SUCCESS);
            }
            let a = &v.agent;
            for (k, val) in [
                ("pc", a.pc_id.to_string()),
                ("status", if a.online { "online".into() } else { "offline".into() }),
                ("hostname", a.hostname.clone()),
                ("os", format!("{} {} ({})", a.os_name, a.os_version, a.arch)),
                ("agent", a.agent_version.clone()),
                ("groups", a.groups.join(", ")),
                ("last heartbeat", when_ms(Some(a.last_seen_ms))),
            ] {
                println!("{k:<15} {val}");
            }
            let rows: Vec<Vec<String>> = v
                .recent_results
                .iter()
                .map(|r| {
                    vec![r.job_id.to_string(), r.status.clone(), or_dash(r.exit_code), when_ms(r.finished_ms)]
                })
                .collect();
            if !rows.is_empty() {
                println!();
                print!("{}", output::table(&["JOB", "STATUS", "EXIT", "FINISHED"], &rows));
            }
        }
        AgentsCommand::Perf { pc, since } => {
            let from = now_ms() - since.get().as_millis() as i64;
            let perf: kanade_shared::wire::PerfSamples = api
                .get(&format!(
                    "/api/agents/{pc}/perf{}",
                    query_of(&HostPerfQuery { since: Some(from), ..Default::default() })?
                ))
                .await?;
            if perf.samples.is_empty() && global.output.is_table() {
                println!(
                    "no samples from {pc} in the last {since} (is host_perf_interval off? kanade agent config show)"
                );
                return Ok(ExitCode::SUCCESS);
            }
            let bucket = match perf.resolution.as_str() {
                "5m" => Some("5-minute"),
                "1h" => Some("hourly"),
                _ => None,
            };
            if let Some(bucket) = bucket
                && global.output.is_table()
            {
                println!("{bucket} averages, one row each (the range is too long for every sample)");
            }
            let rows = perf.samples.iter().map(perf_row).collect();
            output::print(
                global.output,
                &perf,
                &[
                    "TIME",
                    "CPU",
                    "MEMORY",
                    "SWAP",
                    "LOAD",
                    "NET IN/s",
                    "NET OUT/s",
                    "DISK READ/s",
                    "DISK WRITE/s",
                ],
                rows,
            );
        }
        AgentsCommand::Revoke { pc } => return super::enroll::revoke_agent(&pc, global).await,
        AgentsCommand::Facts { pc } => {
            let docs: kanade_shared::wire::FactDocuments =
                api.get(&format!("/api/agents/{pc}/facts")).await?;
            match global.output {
                Format::Json | Format::Yaml => crate::output::emit(global.output, &docs),
                Format::Table | Format::Wide if docs.documents.is_empty() => {
                    println!("no fact documents for {pc}: a job with `facts:` keeps its latest output here")
                }
                Format::Table | Format::Wide => {
                    for d in &docs.documents {
                        println!("{} (finished {}):", d.job_id, when_ms(Some(d.finished_at)));
                        println!("{}", serde_json::to_string_pretty(&d.body)?);
                    }
                }
            }
        }
        AgentsCommand::Processes { pc, since, all } => {
            super::telemetry::processes(&api, &pc, since, all, global).await?
        }
        AgentsCommand::Investigate { pc, duration, top_n, off } => {
            super::telemetry::investigate(&api, &pc, duration, top_n, off, global).await?
        }
        AgentsCommand::Groups(GroupsCommand::Set { pc, groups }) => {
            let v: GroupsSet = api
                .put_json(&format!("/api/agents/{pc}/groups"), &SetGroups { groups: groups.clone() })
                .await?;
            let list = |g: &[String]| if g.is_empty() { "(none)".to_owned() } else { g.join(", ") };
            let mut reported = v.reported_groups.clone();
            // A connected agent heartbeats the change at once: wait for it (5 s at most), so a
            // deploy to a group just added finds the PC in it.
            let has_all =
                |r: &Option<Vec<String>>| r.as_ref().is_some_and(|r| groups.iter().all(|g| r.contains(g)));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while reported.is_some() && !has_all(&reported) && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                let now: AgentDetail = api.get(&format!("/api/agents/{pc}")).await?;
                reported = Some(now.agent.groups);
            }
            let sentence = match reported {
                None => format!(
                    "{pc} groups assigned: {}. {pc} has never sent a heartbeat: they apply when it first connects (check the name with `kanade agents list`)",
                    list(&groups)
                ),
                Some(reported) if has_all(&Some(reported.clone())) => format!(
                    "{pc} groups assigned: {}. It is now in: {} (its agent.toml groups add to the assigned ones)",
                    list(&groups),
                    list(&reported)
                ),
                Some(reported) => format!(
                    "{pc} groups assigned: {}. Its last heartbeat reported: {} (its agent.toml groups add to the assigned ones; the next heartbeat shows the change)",
                    list(&groups),
                    list(&reported)
                ),
            };
            done(global.output, &v, &sentence);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn ping(pc: &str, global: &Global) -> anyhow::Result<ExitCode> {
    let v: Pong = Api::new(global)?.post(&format!("/api/agents/{pc}/ping")).await?;
    done(
        global.output,
        &v,
        &format!("{pc} answered in {} ms (agent {})", v.round_trip_ms, v.heartbeat.agent_version),
    );
    Ok(ExitCode::SUCCESS)
}

/// One sample (or rollup point) as a table row; every disk together.
fn perf_row(p: &kanade_shared::wire::PerfSample) -> Vec<String> {
    let (read, write) = (p.disk_read_bytes_per_s, p.disk_write_bytes_per_s);
    vec![
        when_ms(Some(p.at)),
        format!("{:.1}%", p.cpu_pct),
        format!("{} / {}", output::bytes(p.mem_used_bytes), output::bytes(p.mem_total_bytes)),
        output::bytes(p.swap_used_bytes),
        p.load.map_or("-".to_owned(), |l| format!("{l:.2}")),
        output::bytes(p.net_rx_bytes_per_s),
        output::bytes(p.net_tx_bytes_per_s),
        output::bytes(read),
        output::bytes(write),
    ]
}

/// `kanade audit`: the audit trail, newest first.
pub async fn audit(
    actor: Option<String>,
    action: Option<String>,
    client: Option<String>,
    page: Page,
    global: &Global,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(global)?;
    let q = AuditQuery { actor, action, client, ..Default::default() };
    let v: api::Page<AuditEntry, AuditId> = list(&api, "/api/audit", q, page, "audit events").await?;
    let rows = v
        .items
        .iter()
        .map(|a| {
            vec![
                when_ms(Some(a.at_ms)),
                a.actor.clone(),
                a.action.clone(),
                or_dash(a.target.as_deref()),
                or_dash(a.client.as_deref()),
                or_dash(a.source.as_deref()),
            ]
        })
        .collect();
    output::print(global.output, &v, &["AT", "ACTOR", "ACTION", "TARGET", "CLIENT", "FROM"], rows);
    Ok(ExitCode::SUCCESS)
}

/// `kanade freeze`: show the window, or set it when `--until`/`--for` is given.
pub async fn freeze(
    until: Option<String>,
    duration: Option<String>,
    from: Option<String>,
    reason: Option<String>,
    global: &Global,
) -> anyhow::Result<ExitCode> {
    use kanade_shared::wire::freeze::{FreezeStatus, SetFreeze};
    let api = Api::new(global)?;
    let status = if until.is_none() && duration.is_none() {
        if from.is_some() || reason.is_some() {
            anyhow::bail!("say how long the freeze lasts: --until <RFC 3339 time> or --for <duration>");
        }
        api.get::<FreezeStatus>("/api/freeze").await?
    } else {
        let body = SetFreeze {
            from: rfc3339("--from", from)?,
            until: rfc3339("--until", until)?,
            duration,
            reason: reason.unwrap_or_default(),
        };
        api.put_json("/api/freeze", &body).await?
    };
    if output::structured(global.output, &status) {
        return Ok(ExitCode::SUCCESS);
    }
    match (&status.freeze, status.frozen) {
        (None, _) => println!("the fleet is not frozen"),
        (Some(f), true) => println!("{}", f.describe()),
        (Some(f), false) => println!(
            "not frozen now; a freeze is set from {} until {} ({}, set by {})",
            show_time(f.from),
            show_time(f.until),
            f.reason,
            f.set_by
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn rfc3339(flag: &str, text: Option<String>) -> anyhow::Result<Option<kanade_shared::wire::Timestamp>> {
    text.map(|t| {
        time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).map_err(|e| {
            anyhow::anyhow!("{flag} {t:?} is not an RFC 3339 time such as 2026-12-27T08:00:00Z ({e})")
        })
    })
    .transpose()
}

fn show_time(t: kanade_shared::wire::Timestamp) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

pub async fn unfreeze(global: &Global) -> anyhow::Result<ExitCode> {
    Api::new(global)?.delete::<()>("/api/freeze").await?;
    crate::commands::done(
        global.output,
        &serde_json::json!({ "frozen": false }),
        "the fleet freeze is lifted",
    );
    Ok(ExitCode::SUCCESS)
}

/// `kanade run` goes to the broker directly; while the backend says the fleet is frozen it
/// needs `--override-freeze` too. A backend that cannot be asked does not stop a break-glass run.
pub async fn refuse_when_frozen(global: &Global) -> anyhow::Result<()> {
    if global.override_freeze {
        return Ok(());
    }
    let Ok(api) = Api::new(global) else { return Ok(()) };
    let Ok(status) = api.get::<kanade_shared::wire::freeze::FreezeStatus>("/api/freeze").await else {
        return Ok(());
    };
    match status.freeze.filter(|_| status.frozen) {
        Some(f) => anyhow::bail!("{}; to run anyway pass --override-freeze", f.describe()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::output::tests::assert_snapshot;

    use serde_json::Value;

    /// The output cells' view of a row given as JSON.
    fn run(v: &Value) -> Run<'_> {
        Run {
            pc_id: v["pc_id"].as_str().unwrap_or("PC"),
            status: v["status"].as_str().unwrap_or_default(),
            exit_code: v["exit_code"].as_i64(),
            message: v["message"].as_str(),
            stdout: v["stdout"].as_str().unwrap_or_default(),
            stderr: v["stderr"].as_str().unwrap_or_default(),
            truncated: v["truncated"] == true,
        }
    }

    /// `items` as typed rows, each completed with `defaults` for the fields a table ignores.
    fn typed<T: serde::de::DeserializeOwned>(items: Value, defaults: Value) -> Vec<T> {
        let rows = items.as_array().unwrap().iter().map(|row| {
            let mut full = defaults.clone();
            full.as_object_mut().unwrap().extend(row.as_object().unwrap().clone());
            serde_json::from_value(full).unwrap()
        });
        rows.collect()
    }

    #[test]
    fn output_cells_say_when_there_is_more() {
        let cases = [
            (json!({ "status": "succeeded", "stdout": "one\n" }), false, "one"),
            (
                json!({ "status": "succeeded", "stdout": "one\ntwo\n\nthree\n" }),
                false,
                "one (+2 lines: --full)",
            ),
            (
                json!({ "status": "failed", "stdout": "a\n", "stderr": "bad\n" }),
                false,
                "bad (+1 lines: --full)",
            ),
            (
                json!({ "status": "succeeded", "stdout": "aaaa", "truncated": true }),
                false,
                "aaaa (cut by the agent)",
            ),
            (json!({ "status": "succeeded", "stdout": "one\ntwo\n" }), true, "one"),
        ];
        for (p, full, want) in cases {
            assert_eq!(output_cell(&run(&p), full), want, "{p}");
        }
        let p = json!({ "pc_id": "PC-1", "status": "failed", "exit_code": 2, "stdout": "x\ny", "stderr": "", "truncated": true });
        assert_eq!(
            full_output(&run(&p)),
            "\n== PC-1 failed (exit 2) ==\n-- stdout --\nx\ny\n(output cut by the agent to fit a result message)\n"
        );
    }

    #[test]
    fn table_snapshots() {
        let executions: Vec<Execution> = typed(
            json!([
                { "exec_id": "01a20b95-b7b4-7177-8e7b-16c2e0aeb267", "job_id": "cleanup-disk-temp", "status": "running",
                  "target_count": 120, "succeeded": 80, "failed": 2, "skipped": 1, "other": 1, "created_ms": 1795490690996_i64 },
                { "exec_id": "01a20b95-0000-7177-8e7b-16c2e0aeb267", "job_id": "hello", "status": "completed",
                  "target_count": 1, "succeeded": 1, "failed": 0, "skipped": 0, "other": 0, "created_ms": 1795490600000_i64 },
            ]),
            json!({ "version": "1" }),
        );
        assert_snapshot(
            "tables/executions.txt",
            &output::table(&EXECUTION_HEADERS, &execution_rows(&executions)),
        );
        let agents: Vec<Agent> = typed(
            json!([
                { "pc_id": "PC-0001", "online": true, "os_name": "Windows 11 Pro", "os_version": "23H2", "agent_version": "0.1.0",
                  "groups": ["canary", "floor-3"], "last_seen_ms": 1795490668910_i64 },
                { "pc_id": "LAB-SRV-2", "online": false, "os_name": "Debian GNU/Linux", "os_version": "12", "agent_version": "0.1.0",
                  "groups": [], "last_seen_ms": 1795400000000_i64, "hostname": "lab-srv-2", "running_jobs": 1,
                  "update_status": "waiting for jitter" },
            ]),
            json!({ "hostname": "pc-0001", "os_family": "windows", "arch": "x86_64", "running_jobs": 0, "quarantined": [] }),
        );
        assert_snapshot("tables/agents.txt", &output::table(&AGENT_HEADERS, &agent_rows(&agents)));
        let (wide, rows) =
            output::widen((&AGENT_HEADERS, agent_rows(&agents)), (&AGENT_WIDE, agent_wide(&agents)));
        assert_snapshot("tables/agents-wide.txt", &output::table(&wide, &rows));
        let results: Vec<RunResult> = typed(
            json!([
                { "pc_id": "PC-0001", "job_id": "boom", "status": "failed", "exit_code": 7, "finished_ms": 1795490691151_i64,
                  "stdout": "", "stderr": "\nbroken pipe\nmore" },
                { "pc_id": "PC-0002", "job_id": "hello", "status": "succeeded", "exit_code": 0, "finished_ms": 1795490691151_i64,
                  "stdout": "hello\n", "stderr": "" },
                { "pc_id": "PC-0003", "job_id": "hello", "status": "skipped", "exit_code": null, "finished_ms": 1795490691151_i64,
                  "stdout": "", "stderr": "", "message": "job revoked" },
            ]),
            json!({ "result_id": "0190f5c2-6c1e-7a4b-9d2e-1f2a3b4c5d6e", "exec_id": "0190f5c2-6c1e-7a4b-9d2e-1f2a3b4c5d6e",
                    "version": "1", "truncated": false, "attempt": 1 }),
        );
        assert_snapshot("tables/results.txt", &output::table(&RESULT_HEADERS, &result_rows(&results)));
    }
}
