//! `kanade exec` and `kanade deploy`, with `--wait`: a live progress line (done / failed /
//! expected, elapsed) and failures listed as they arrive. Ctrl-C stops following, never the
//! execution.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::catalog::manifest_json;
use super::{done, text};
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

fn launch_path(path: &str, allow_unknown: bool, global: &Global) -> String {
    let flags: Vec<&str> =
        [(allow_unknown, "allow_unknown=true"), (global.override_freeze, "override_freeze=true")]
            .into_iter()
            .filter_map(|(on, flag)| on.then_some(flag))
            .collect();
    if flags.is_empty() { path.to_owned() } else { format!("{path}?{}", flags.join("&")) }
}

pub async fn exec(job: &str, t: Target, wait: bool, global: &Global) -> anyhow::Result<ExitCode> {
    let path = launch_path(&format!("/api/exec/{job}"), t.allow_unknown, global);
    let api = Api::new(global)?;
    // No target: the one stored with the job, if it has one.
    let launched = if t.pcs.is_empty() && t.groups.is_empty() && !t.all {
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
    let launched = api.post_json(&launch_path("/api/deploy", allow_unknown, global), &body).await?;
    follow(&api, &launched, wait, global).await
}

async fn follow(api: &Api, launched: &Value, wait: bool, global: &Global) -> anyhow::Result<ExitCode> {
    let id = text(&launched["exec_id"]);
    if let Some(note) = launched["note"].as_str() {
        eprintln!("note: execution {id}: {note}");
    }
    if launched["target_count"] == 0 && launched["waves"].as_i64().unwrap_or(1) <= 1 {
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
                text(&launched["target_count"])
            ),
        );
        return Ok(ExitCode::SUCCESS);
    }
    let tty = std::io::stderr().is_terminal() && global.output.is_table();
    let started = Instant::now();
    let mut reported = BTreeSet::new();
    // Without output: the rows' status and first stderr line are all the follow shows.
    let path = format!("/api/executions/{id}?output=false");
    // Scripts asking for data get the whole execution at the end, outputs included.
    let full = format!("/api/executions/{id}");
    // One listener for the whole follow: a Ctrl-C between two reads must not be missed.
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    let mut changed = changes(api.clone(), id.clone());
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
        let v = api.get(&path).await?;
        let e = &v["execution"];
        for p in v["pcs"].as_array().into_iter().flatten() {
            let status = p["status"].as_str().unwrap_or("");
            if matches!(status, "failed" | "timed_out" | "killed" | "unknown")
                && reported.insert(text(&p["pc_id"]))
            {
                if tty {
                    eprint!("\r\x1b[2K");
                }
                eprintln!("{} {status} (exit {}) {}", text(&p["pc_id"]), text(&p["exit_code"]), reason(p));
            }
        }
        let status = e["status"].as_str().unwrap_or("");
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
                    Format::Json | Format::Yaml => crate::output::emit(global.output, &api.get(&full).await?),
                    Format::Table | Format::Wide => {
                        println!("execution {id} {status}: {line}, {} never answered", gone.len())
                    }
                }
                return Ok(ExitCode::FAILURE);
            }
            (Some(_), Some(_)) => {}
        }
        if matches!(status, "completed" | "failed" | "expired" | "aborted" | "killed") {
            if tty {
                eprintln!();
            }
            let ok = status == "completed";
            match global.output {
                Format::Json | Format::Yaml => crate::output::emit(global.output, &api.get(&full).await?),
                Format::Table | Format::Wide => println!("execution {id} {status}: {line}"),
            }
            return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
    }
}

/// Wakes a follow when `/api/stream` says execution `id` changed (or the stream skipped events,
/// or just connected); closed when the stream ends.
fn changes(api: Api, id: String) -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let _ = api
            .events("/api/stream", |name, data| {
                let relevant = match name {
                    "open" | "lagged" => true,
                    "result" | "execution" => serde_json::from_str::<Value>(data)
                        .is_ok_and(|v| v["exec_id"].as_str() == Some(id.as_str())),
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
fn reason(p: &Value) -> String {
    let first_line = |k: &str| p[k].as_str().and_then(|s| s.lines().map(str::trim).find(|l| !l.is_empty()));
    match (first_line("message"), first_line("stderr")) {
        (Some(m), Some(e)) => format!("{m}: {e}"),
        (Some(one), None) | (None, Some(one)) => one.to_owned(),
        (None, None) => String::new(),
    }
}

/// The PCs still to answer when every one of them is offline and no wave is still to go
/// out; `None` while any of them is online (or a wave is pending) — worth waiting for.
fn unanswered(v: &Value) -> Option<Vec<String>> {
    let rows = v["pcs"].as_array()?;
    if v["waves"].as_array().into_iter().flatten().any(|w| w["status"] == "pending") {
        return None;
    }
    let mut gone = Vec::new();
    for p in rows.iter().filter(|p| matches!(p["status"].as_str(), Some("pending" | "running"))) {
        if p["online"] != false {
            return None;
        }
        gone.push(text(&p["pc_id"]));
    }
    (!gone.is_empty()).then_some(gone)
}

fn pc_state(v: &Value, pc: &str) -> String {
    let row = v["pcs"].as_array().into_iter().flatten().find(|p| text(&p["pc_id"]) == pc);
    match row.map(|p| &p["last_seen_ms"]) {
        Some(seen) if seen.is_i64() => format!("offline, last heard from {}", super::when(seen)),
        _ => "this backend has never heard from it".to_owned(),
    }
}

/// `[#######-------]  7/12 done, 1 failed, 4.2s`
pub fn progress(e: &Value, elapsed: Duration) -> String {
    let n = |k: &str| e[k].as_i64().unwrap_or(0);
    let expected = n("target_count");
    let done = n("succeeded") + n("failed") + n("skipped") + n("other");
    let failed = n("failed") + n("other");
    let width = 20;
    let filled = if expected > 0 { (done * width / expected).min(width) } else { 0 } as usize;
    format!(
        "[{}{}] {done}/{expected} done, {failed} failed, {:.1}s",
        "#".repeat(filled),
        "-".repeat(width as usize - filled),
        elapsed.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(reason(&row), want, "{row}");
        }
    }

    #[test]
    fn waiting_stops_only_when_everyone_left_is_offline_and_no_wave_is_due() {
        let pc =
            |id: &str, status: &str, online: bool| json!({ "pc_id": id, "status": status, "online": online });
        let exec =
            |pcs: Vec<Value>, wave: &str| json!({ "pcs": pcs, "waves": [{ "wave": 1, "status": wave }] });
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
            (json!({ "pcs": [{ "pc_id": "A", "status": "pending" }] }), None),
        ];
        for (v, want) in cases {
            let want = want.map(|w| w.into_iter().map(str::to_owned).collect::<Vec<_>>());
            assert_eq!(unanswered(&v), want, "{v}");
        }
    }

    #[test]
    fn progress_line() {
        let e = json!({ "target_count": 4, "succeeded": 2, "failed": 1, "skipped": 0, "other": 0 });
        assert_eq!(
            progress(&e, Duration::from_millis(4200)),
            "[###############-----] 3/4 done, 1 failed, 4.2s"
        );
        let none = json!({ "target_count": 0 });
        assert_eq!(progress(&none, Duration::ZERO), "[--------------------] 0/0 done, 0 failed, 0.0s");
    }
}
