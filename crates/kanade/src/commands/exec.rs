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
}

pub async fn exec(job: &str, t: Target, wait: bool, global: &Global) -> anyhow::Result<ExitCode> {
    if t.pcs.is_empty() && t.groups.is_empty() && !t.all {
        anyhow::bail!("say where to run {job}: --pcs a,b, --groups g or --all");
    }
    let mut plan = json!({ "target": { "pcs": t.pcs, "groups": t.groups, "all": t.all } });
    if let Some(j) = t.jitter {
        plan["jitter"] = json!(j);
    }
    let api = Api::new(global)?;
    let launched = api.post_json(&format!("/api/exec/{job}"), &plan).await?;
    follow(&api, &launched, wait, global).await
}

pub async fn deploy(
    file: &Path,
    version: Option<String>,
    wait: bool,
    global: &Global,
) -> anyhow::Result<ExitCode> {
    let job = manifest_json(file)?;
    let mut body = serde_json::to_value(&job.manifest)?;
    if let Some(plan) = &job.plan {
        if let Value::Object(p) = serde_json::to_value(plan)? {
            body.as_object_mut().expect("a manifest is an object").extend(p);
        }
    } else {
        anyhow::bail!("{}: a deploy needs a plan in the file (target or rollout.waves)", file.display());
    }
    if let Some(v) = version {
        body["version"] = json!(v);
    }
    let api = Api::new(global)?;
    let launched = api.post_json("/api/deploy", &body).await?;
    follow(&api, &launched, wait, global).await
}

async fn follow(api: &Api, launched: &Value, wait: bool, global: &Global) -> anyhow::Result<ExitCode> {
    let id = text(&launched["exec_id"]);
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
    let tty = std::io::stderr().is_terminal() && global.output == Format::Table;
    let started = Instant::now();
    let mut reported = BTreeSet::new();
    let path = format!("/api/executions/{id}");
    // One listener for the whole follow: a Ctrl-C between two polls must not be missed.
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    let mut first = true;
    loop {
        let pause = if first { Duration::ZERO } else { Duration::from_millis(500) };
        first = false;
        let v = tokio::select! {
            v = async { tokio::time::sleep(pause).await; api.get(&path).await } => v?,
            _ = &mut interrupted => {
                if tty { eprintln!(); }
                eprintln!("stopped following; execution {id} keeps running. Follow it with `kanade executions show {id}`");
                return Ok(ExitCode::from(130));
            }
        };
        let e = &v["execution"];
        for p in v["pcs"].as_array().into_iter().flatten() {
            let status = p["status"].as_str().unwrap_or("");
            if matches!(status, "failed" | "timed_out" | "killed" | "unknown")
                && reported.insert(text(&p["pc_id"]))
            {
                if tty {
                    eprint!("\r\x1b[2K");
                }
                let why =
                    p["stderr"].as_str().and_then(|s| s.lines().find(|l| !l.trim().is_empty())).unwrap_or("");
                eprintln!("{} {status} (exit {}) {why}", text(&p["pc_id"]), text(&p["exit_code"]));
            }
        }
        let status = e["status"].as_str().unwrap_or("");
        let line = progress(e, started.elapsed());
        if tty {
            eprint!("\r\x1b[2K{line}");
            std::io::stderr().flush()?;
        }
        if matches!(status, "completed" | "failed" | "expired" | "aborted" | "killed") {
            if tty {
                eprintln!();
            }
            let ok = status == "completed";
            match global.output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Format::Table => println!("execution {id} {status}: {line}"),
            }
            return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
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
