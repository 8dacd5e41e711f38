//! `kanade exec` and `kanade deploy`, with `--wait`: a live progress line (done / failed /
//! expected, elapsed) and failures listed as they arrive. Ctrl-C stops following, never the
//! execution.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kanade_shared::api::LiveEvent;
use kanade_shared::api::executions::{
    Execution, ExecutionDetail, ExecutionQuery, LaunchQuery, Launched, PcRun,
};
use kanade_shared::{ExecId, PcId};
use serde_json::json;

use super::catalog::manifest_json;
use super::done;
use crate::api::Api;
use crate::cli::{Format, Global};

pub struct Target {
    pub pcs: Vec<String>,
    pub groups: Vec<String>,
    pub all: bool,
    pub jitter: Option<String>,
    /// Accept explicit PCs that have never sent a heartbeat.
    pub allow_unknown: bool,
}

/// How long `--wait` keeps waiting once every PC still to answer is offline (or never seen).
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);
/// How often a follow reads the execution when no event says it changed.
const RECHECK: Duration = Duration::from_secs(3);
/// How long after a change event a follow reads, gathering the events of a burst into one read.
const SETTLE: Duration = Duration::from_millis(150);

fn launch_path(path: &str, allow_unknown: bool, global: &Global) -> anyhow::Result<String> {
    let q = LaunchQuery {
        allow_unknown: allow_unknown.then_some(true),
        override_freeze: global.override_freeze.then_some(true),
    };
    Ok(format!("{path}{}", super::query_of(&q)?))
}

pub async fn exec(job: &str, t: Target, wait: bool, global: &Global) -> anyhow::Result<ExitCode> {
    let path = launch_path(&format!("/api/exec/{job}"), t.allow_unknown, global)?;
    let api = Api::new(global)?;
    // No target: the one stored with the job, if it has one.
    let launched: Launched = if t.pcs.is_empty() && t.groups.is_empty() && !t.all {
        if t.jitter.is_some() {
            anyhow::bail!("--jitter goes with a target: --pcs a,b, --groups g or --all");
        }
        api.post(&path).await.map_err(|e| match e.to_string().contains("has no stored target") {
            true => anyhow::anyhow!(
                "job {job} has no stored target; say where to run it: --pcs a,b, --groups g or --all"
            ),
            false => e,
        })?
    } else {
        let mut plan = json!({ "target": { "pcs": t.pcs, "groups": t.groups, "all": t.all } });
        if let Some(j) = t.jitter {
            plan["jitter"] = json!(j);
        }
        api.post_json(&path, &plan).await?
    };
    follow(&api, &launched, wait, global).await
}

pub async fn deploy(
    file: &Path,
    version: Option<String>,
    (wait, allow_unknown): (bool, bool),
    global: &Global,
) -> anyhow::Result<ExitCode> {
    let job = manifest_json(file)?;
    if job.plan.is_none() {
        anyhow::bail!("{}: a deploy needs a plan in the file (target or rollout.waves)", file.display());
    }
    let mut body = super::catalog::job_body(&job)?;
    if let Some(v) = version {
        body["version"] = json!(v);
    }
    let api = Api::new(global)?;
    let launched: Launched =
        api.post_json(&launch_path("/api/deploy", allow_unknown, global)?, &body).await?;
    follow(&api, &launched, wait, global).await
}

async fn follow(api: &Api, launched: &Launched, wait: bool, global: &Global) -> anyhow::Result<ExitCode> {
    let id = launched.exec_id;
    if let Some(note) = &launched.note {
        eprintln!("note: execution {id}: {note}");
    }
    if launched.target_count == 0 && launched.waves <= 1 {
        // Nothing to wait for: no online agent matched. Agents that come online later still
        // catch the command up from EXEC.
        eprintln!(
            "no online agent matches the target of execution {id}; agents that join later will run it. Check the target (kanade agents list)"
        );
        if wait {
            return Ok(ExitCode::FAILURE);
        }
    }
    if !wait {
        done(
            global.output,
            launched,
            &format!(
                "execution {id} started: {} PC(s) expected; follow it with `kanade executions show {id}`",
                launched.target_count
            ),
        );
        return Ok(ExitCode::SUCCESS);
    }
    let tty = std::io::stderr().is_terminal() && global.output.is_table();
    let started = Instant::now();
    let mut reported = BTreeSet::new();
    // Without output: the rows' status and first stderr line are all the follow shows.
    let light = ExecutionQuery { output: Some(false), ..Default::default() };
    let path = format!("/api/executions/{id}{}", super::query_of(&light)?);
    // Scripts asking for data get the whole execution at the end, outputs included.
    let full = format!("/api/executions/{id}");
    // One listener for the whole follow: a Ctrl-C between two reads must not be missed.
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    let mut changed = changes(api.clone(), id);
    let mut streaming = true;
    let mut first = true;
    let mut offline_since: Option<Instant> = None;
    loop {
        // Read again when the event stream says this execution moved (a little later, so a
        // burst of results is one read), else on a slow timer for what no event announces (a
        // PC going offline); every 500 ms if the stream is gone.
        let timer = match (first, streaming) {
            (true, _) => Duration::ZERO,
            (false, true) => RECHECK,
            (false, false) => Duration::from_millis(500),
        };
        first = false;
        tokio::select! {
            () = tokio::time::sleep(timer) => {}
            wake = changed.recv(), if streaming => match wake {
                Some(()) => tokio::time::sleep(SETTLE).await,
                None => streaming = false,
            },
            _ = &mut interrupted => {
                if tty { eprintln!(); }
                eprintln!("stopped following; execution {id} keeps running. Follow it with `kanade executions show {id}`");
                return Ok(ExitCode::from(130));
            }
        }
        let v: ExecutionDetail = api.get(&path).await?;
        let e = &v.execution;
        for p in &v.pcs {
            let status = p.status.as_str();
            if matches!(status, "failed" | "timed_out" | "killed" | "unknown")
                && reported.insert(p.pc_id.clone())
            {
                if tty {
                    eprint!("\r\x1b[2K");
                }
                let exit = p.exit_code.map_or_else(|| "-".to_owned(), |c| c.to_string());
                eprintln!("{} {status} (exit {exit}) {}", p.pc_id, reason(p));
            }
        }
        let status = e.status.as_str();
        let line = progress(e, started.elapsed());
        if tty {
            eprint!("\r\x1b[2K{line}");
            std::io::stderr().flush()?;
        }
        let gone = unanswered(&v);
        match (&gone, offline_since) {
            (None, _) => offline_since = None,
            (Some(_), None) => offline_since = Some(Instant::now()),
            (Some(gone), Some(since)) if since.elapsed() >= GIVE_UP_AFTER => {
                if tty {
                    eprintln!();
                }
                for pc in gone {
                    eprintln!("{pc} never answered: {}", pc_state(&v, pc));
                }
                eprintln!(
                    "stopped waiting: every PC still to answer is offline. They run it if they come back before its start deadline; `kanade kill {id}` stops that"
                );
                match global.output {
                    Format::Json | Format::Yaml => {
                        crate::output::emit(global.output, &api.get::<ExecutionDetail>(&full).await?)
                    }
                    Format::Table | Format::Wide => {
                        println!("execution {id} {status}: {line}, {} never answered", gone.len())
                    }
                }
                return Ok(ExitCode::FAILURE);
            }
            (Some(_), Some(_)) => {}
        }
        if e.ended() {
            if tty {
                eprintln!();
            }
            let ok = status == "completed";
            match global.output {
                Format::Json | Format::Yaml => {
                    crate::output::emit(global.output, &api.get::<ExecutionDetail>(&full).await?)
                }
                Format::Table | Format::Wide => println!("execution {id} {status}: {line}"),
            }
            return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
    }
}

/// Wakes a follow when `/api/stream` says execution `id` changed (or the stream skipped events,
/// or just connected); closed when the stream ends.
fn changes(api: Api, id: ExecId) -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let _ = api
            .events("/api/stream", |name, data| {
                let relevant = match name {
                    "open" | "lagged" => true,
                    "result" | "execution" => match serde_json::from_str::<LiveEvent>(data) {
                        Ok(LiveEvent::Result { exec_id, .. } | LiveEvent::Execution { exec_id }) => {
                            exec_id == id
                        }
                        _ => false,
                    },
                    _ => false,
                };
                // A full channel means a wake-up is already waiting.
                if relevant {
                    let _ = tx.try_send(());
                }
                Ok(!tx.is_closed())
            })
            .await;
    });
    rx
}

/// Why a PC's run did not succeed, in one line: the agent's message (a shell that cannot
/// start, a skip reason), else the first line of its stderr.
fn reason(p: &PcRun) -> String {
    fn first_line(t: &Option<String>) -> Option<&str> {
        t.as_deref().and_then(|s| s.lines().map(str::trim).find(|l| !l.is_empty()))
    }
    match (first_line(&p.message), first_line(&p.stderr)) {
        (Some(m), Some(e)) => format!("{m}: {e}"),
        (Some(one), None) | (None, Some(one)) => one.to_owned(),
        (None, None) => String::new(),
    }
}

/// The PCs still to answer when every one of them is offline and no wave is still to go
/// out; `None` while any of them is online (or a wave is pending) — worth waiting for.
fn unanswered(v: &ExecutionDetail) -> Option<Vec<PcId>> {
    if v.waves.iter().any(|w| w.status == "pending") {
        return None;
    }
    let mut gone = Vec::new();
    for p in v.pcs.iter().filter(|p| matches!(p.status.as_str(), "pending" | "running")) {
        if p.online != Some(false) {
            return None;
        }
        gone.push(p.pc_id.clone());
    }
    (!gone.is_empty()).then_some(gone)
}

fn pc_state(v: &ExecutionDetail, pc: &PcId) -> String {
    match v.pcs.iter().find(|p| &p.pc_id == pc).and_then(|p| p.last_seen_ms) {
        Some(seen) => format!("offline, last heard from {}", super::when_ms(Some(seen))),
        None => "this backend has never heard from it".to_owned(),
    }
}

/// `[#######-------]  7/12 done, 1 failed, 4.2s`; skipped runs (a revoked job, a PC that came
/// back too late) are named, since nothing ran there.
pub fn progress(e: &Execution, elapsed: Duration) -> String {
    let expected = e.target_count;
    let done = e.succeeded + e.failed + e.skipped + e.other;
    let failed = e.failed + e.other;
    let width = 20;
    let filled = if expected > 0 { (done * width / expected).min(width) } else { 0 } as usize;
    let skipped = match e.skipped {
        0 => String::new(),
        n => format!(", {n} skipped (kanade executions show {} says why)", e.exec_id),
    };
    format!(
        "[{}{}] {done}/{expected} done, {failed} failed{skipped}, {:.1}s",
        "#".repeat(filled),
        "-".repeat(width as usize - filled),
        elapsed.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use kanade_shared::api::executions::Wave;
    use serde_json::Value;

    /// A PC row from the fields a test cares about.
    fn row(v: Value) -> PcRun {
        let mut p = PcRun::pending(v["pc_id"].as_str().unwrap_or("PC").parse().unwrap(), 0, None);
        let text = |k: &str| v[k].as_str().map(str::to_owned);
        (p.message, p.stderr, p.stdout) = (text("message"), text("stderr"), text("stdout"));
        p.status = text("status").unwrap_or(p.status);
        p.online = v["online"].as_bool();
        p
    }

    fn execution(v: Value) -> Execution {
        let n = |k: &str| v[k].as_i64().unwrap_or(0);
        Execution {
            exec_id: ExecId::new(),
            job_id: "j".parse().unwrap(),
            version: "1".into(),
            status: "running".into(),
            target_count: n("target_count"),
            succeeded: n("succeeded"),
            failed: n("failed"),
            skipped: n("skipped"),
            other: n("other"),
            message: None,
            created_ms: 0,
            finished_ms: None,
            title: None,
        }
    }

    #[test]
    fn a_failure_says_why_in_one_line() {
        let cases = [
            (
                json!({ "message": "cannot start pwsh: No such file or directory" }),
                "cannot start pwsh: No such file or directory",
            ),
            (json!({ "stderr": "\n  broken\nmore" }), "broken"),
            (
                json!({ "message": "timed out after 5s", "stderr": "partial\n" }),
                "timed out after 5s: partial",
            ),
            (json!({ "stdout": "ok" }), ""),
        ];
        for (row, want) in cases {
            assert_eq!(reason(&self::row(row.clone())), want, "{row}");
        }
    }

    #[test]
    fn waiting_stops_only_when_everyone_left_is_offline_and_no_wave_is_due() {
        let pc = |id: &str, status: &str, online: bool| {
            row(json!({ "pc_id": id, "status": status, "online": online }))
        };
        let detail = |pcs: Vec<PcRun>, waves: Vec<Wave>| ExecutionDetail {
            execution: execution(json!({})),
            pcs,
            waves,
        };
        let exec = |pcs: Vec<PcRun>, wave: &str| {
            detail(pcs, vec![Wave { wave: 1, status: wave.into(), due_ms: 0, published_ms: None }])
        };
        let cases = [
            (
                exec(vec![pc("A", "succeeded", false), pc("B", "pending", false)], "published"),
                Some(vec!["B"]),
            ),
            (
                exec(vec![pc("A", "running", false), pc("B", "pending", false)], "published"),
                Some(vec!["A", "B"]),
            ),
            (exec(vec![pc("A", "pending", true), pc("B", "pending", false)], "published"), None),
            (exec(vec![pc("B", "pending", false)], "pending"), None),
            (exec(vec![pc("A", "failed", false)], "published"), None),
            (detail(vec![row(json!({ "pc_id": "A", "status": "pending" }))], vec![]), None),
        ];
        for (v, want) in cases {
            let want = want.map(|w| w.into_iter().map(|p| p.parse().unwrap()).collect::<Vec<PcId>>());
            assert_eq!(unanswered(&v), want, "{v:?}");
        }
    }

    #[test]
    fn progress_line() {
        let e =
            execution(json!({ "target_count": 4, "succeeded": 2, "failed": 1, "skipped": 0, "other": 0 }));
        assert_eq!(
            progress(&e, Duration::from_millis(4200)),
            "[###############-----] 3/4 done, 1 failed, 4.2s"
        );
        let skipped = execution(json!({ "target_count": 2, "succeeded": 1, "skipped": 1 }));
        let line = progress(&skipped, Duration::ZERO);
        assert!(line.contains("2/2 done, 0 failed, 1 skipped (kanade executions show "), "{line}");
        let none = execution(json!({ "target_count": 0 }));
        assert_eq!(progress(&none, Duration::ZERO), "[--------------------] 0/0 done, 0 failed, 0.0s");
    }
}
