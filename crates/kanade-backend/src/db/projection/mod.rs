//! Applying stream messages to the projection, one batch per transaction.
//!
//! Every function is idempotent and order-independent: applying the same messages twice, or in
//! another order, leaves the same rows. A `started` event only ever creates a `running` row; a
//! result only ever replaces a `running` row, never a final one; counters move only when a row
//! first becomes final, so redelivery cannot double-count.

use std::collections::{BTreeMap, BTreeSet};

use kanade_shared::wire::{AuditEvent, ExecResult, Heartbeat, Inventory, StartedEvent};
use kanade_shared::{ExecId, JobId, PcId};
use rusqlite::{OptionalExtension, Transaction, params};

use super::{DbError, ts_ms};

pub fn apply_results(tx: &Transaction<'_>, results: &[ExecResult], now_ms: i64) -> Result<(), DbError> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO execution_results (result_id, exec_id, pc_id, request_id, job_id, version, status, exit_code,
             skip_reason, message, stdout, stderr, truncated, attempt, started_ms, finished_ms, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
         ON CONFLICT(result_id) DO NOTHING",
    )?;
    let mut finish = tx.prepare_cached(
        "UPDATE execution_results SET
             request_id = ?4, status = ?7, exit_code = ?8, skip_reason = ?9, message = ?10, stdout = ?11,
             stderr = ?12, truncated = ?13, attempt = ?14, started_ms = COALESCE(?15, started_ms),
             finished_ms = ?16, received_ms = ?17
         WHERE result_id = ?1 AND status = 'running'",
    )?;
    // Counters move by what this batch newly finished: a row goes from absent or `running` to a
    // final status exactly once, and a final row is never touched again, so a redelivered
    // result adds nothing. Recounting every row instead costs a scan per execution per batch.
    let mut deltas: BTreeMap<String, Counts> = BTreeMap::new();
    // A PC that was not expected (it joined a group, or came online, after the exec was
    // published) but ran it through catch-up becomes one of its targets.
    let mut late = tx.prepare_cached(
        "INSERT INTO execution_targets (exec_id, pc_id, wave)
         SELECT ?1, ?2, 0 WHERE EXISTS (SELECT 1 FROM executions WHERE exec_id = ?1) ON CONFLICT DO NOTHING",
    )?;
    for r in results.iter().filter(|r| r.result_id.is_run_of(r.exec_id, &r.pc_id)) {
        let at = r.started_at.map_or(ts_ms(r.finished_at), ts_ms);
        adhoc_execution(tx, r.exec_id, &r.job_id, r.version.as_str(), &r.pc_id, at)?;
    }
    for r in results {
        let skip = r
            .skip_reason
            .and_then(|s| serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_owned)));
        let values = params![
            r.result_id.to_string(),
            r.exec_id.to_string(),
            r.pc_id.as_str(),
            r.request_id.to_string(),
            r.job_id.as_str(),
            r.version.as_str(),
            r.status.as_str(),
            r.exit_code,
            skip,
            r.message,
            r.stdout,
            r.stderr,
            r.truncated,
            r.attempt,
            r.started_at.map(ts_ms),
            ts_ms(r.finished_at),
            now_ms,
        ];
        // The common case is a new row; otherwise only a `running` row may take the result.
        let changed = insert.execute(values)? == 1 || finish.execute(values)? == 1;
        // A refused command's answer is kept for operators but is not a run of that exec.
        let own = r.result_id.is_run_of(r.exec_id, &r.pc_id);
        if changed && own {
            late.execute(params![r.exec_id.to_string(), r.pc_id.as_str()])?;
            deltas.entry(r.exec_id.to_string()).or_default().add(r.status.as_str());
        }
    }
    let mut bump = tx.prepare_cached(
        "UPDATE executions SET succeeded = succeeded + ?2, failed = failed + ?3, skipped = skipped + ?4, other = other + ?5,
             target_count = (SELECT COUNT(*) FROM execution_targets WHERE exec_id = ?1)
         WHERE exec_id = ?1 RETURNING status, target_count, succeeded, failed, skipped, other",
    )?;
    for (exec_id, d) in deltas {
        // Results for an exec this backend did not create (a CLI `run`) are kept, not counted.
        let Some((status, target_count, counts)) = bump
            .query_row(params![exec_id, d.succeeded, d.failed, d.skipped, d.other], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    Counts { succeeded: r.get(2)?, failed: r.get(3)?, skipped: r.get(4)?, other: r.get(5)? },
                ))
            })
            .optional()?
        else {
            continue;
        };
        settle(tx, &exec_id, &status, target_count, &counts, true, now_ms)?;
    }
    Ok(())
}

/// Result rows of one execution by final status.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    succeeded: i64,
    failed: i64,
    skipped: i64,
    other: i64,
}

impl Counts {
    fn add(&mut self, status: &str) {
        match status {
            "succeeded" => self.succeeded += 1,
            "failed" => self.failed += 1,
            "skipped" => self.skipped += 1,
            "running" => {}
            _ => self.other += 1,
        }
    }

    fn done(&self) -> i64 {
        self.succeeded + self.failed + self.skipped + self.other
    }
}

/// `kanade run` goes straight to the agent over NATS, so no execution is created for it: the
/// first word from its run (started or result) makes one, with the PC as its only target, so
/// links to it work and its output shows like any other. Only for ad-hoc job ids; idempotent.
fn adhoc_execution(
    tx: &Transaction<'_>,
    exec_id: ExecId,
    job: &JobId,
    version: &str,
    pc: &PcId,
    at_ms: i64,
) -> Result<(), DbError> {
    if !job.is_adhoc() {
        return Ok(());
    }
    let made = tx.prepare_cached(
        "INSERT INTO executions (exec_id, job_id, version, status, target_count, created_by, plan_json, created_ms,
             updated_ms, title)
         VALUES (?1, ?2, ?3, 'pending', 1, 'kanade run', 'null', ?4, ?4, ?5) ON CONFLICT(exec_id) DO NOTHING",
    )?
    .execute(params![exec_id.to_string(), job.as_str(), version, at_ms, format!("kanade run on {pc}")])?;
    if made == 1 {
        tx.prepare_cached(
            "INSERT INTO execution_targets (exec_id, pc_id, wave) VALUES (?1, ?2, 0) ON CONFLICT DO NOTHING",
        )?
        .execute(params![exec_id.to_string(), pc.as_str()])?;
    }
    Ok(())
}

/// Name an execution made up from an ad-hoc run by what it ran (only such rows: plan `null`).
pub fn name_adhoc_execution(tx: &Transaction<'_>, exec_id: ExecId, title: &str) -> Result<(), DbError> {
    tx.execute(
        "UPDATE executions SET title = ?2 WHERE exec_id = ?1 AND plan_json = 'null'",
        params![exec_id.to_string(), title],
    )?;
    Ok(())
}

pub fn apply_started(tx: &Transaction<'_>, events: &[StartedEvent], now_ms: i64) -> Result<(), DbError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO execution_results (result_id, exec_id, pc_id, request_id, job_id, version, status, attempt,
             started_ms, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, COALESCE((SELECT version FROM executions WHERE exec_id = ?2), ''), 'running', ?6, ?7, ?8)
         ON CONFLICT(result_id) DO UPDATE SET attempt = MAX(execution_results.attempt, excluded.attempt)
         WHERE execution_results.status = 'running'",
    )?;
    let mut touched = BTreeSet::new();
    for e in events.iter().filter(|e| e.result_id.is_run_of(e.exec_id, &e.pc_id)) {
        // A started event carries no version; `kanade run` always sends version 1.
        adhoc_execution(tx, e.exec_id, &e.job_id, "1", &e.pc_id, ts_ms(e.started_at))?;
    }
    for e in events {
        stmt.execute(params![
            e.result_id.to_string(),
            e.exec_id.to_string(),
            e.pc_id.as_str(),
            e.request_id.to_string(),
            e.job_id.as_str(),
            e.attempt,
            ts_ms(e.started_at),
            now_ms,
        ])?;
        touched.insert(e.exec_id.to_string());
    }
    // A start changes no counter; it only shows that a pending execution is under way.
    let mut started = tx.prepare_cached(
        "UPDATE executions SET status = 'running', updated_ms = ?2 WHERE exec_id = ?1 AND status = 'pending'",
    )?;
    for exec_id in touched {
        started.execute(params![exec_id, now_ms])?;
    }
    Ok(())
}

/// Recompute an execution's counters and status from all its result rows (when it is created
/// or a wave goes out; batches of results move the counters incrementally instead).
pub fn refresh_execution(tx: &Transaction<'_>, exec_id: &str, now_ms: i64) -> Result<(), DbError> {
    let Some(status): Option<String> = tx
        .query_row("SELECT status FROM executions WHERE exec_id = ?1", [exec_id], |r| r.get(0))
        .optional()?
    else {
        return Ok(());
    };
    // Only a run's own result counts (a refused command's answer is kept for operators but is
    // not a run of this exec), exactly as in `apply_results`. Results that arrived before the
    // execution row (a replay after a wipe) add their PCs as targets now.
    let reported: Vec<(String, String, String)> = tx
        .prepare_cached("SELECT result_id, pc_id, status FROM execution_results WHERE exec_id = ?1")?
        .query_map([exec_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let exec: Option<kanade_shared::ExecId> = exec_id.parse().ok();
    let is_run = |result_id: &str, pc: &str| {
        let (Some(exec), Ok(pc)) = (exec, pc.parse::<kanade_shared::PcId>()) else { return false };
        result_id.parse::<kanade_shared::ResultId>().is_ok_and(|id| id.is_run_of(exec, &pc))
    };
    let mut late = tx.prepare_cached(
        "INSERT INTO execution_targets (exec_id, pc_id, wave) VALUES (?1, ?2, 0) ON CONFLICT DO NOTHING",
    )?;
    let mut counts = Counts::default();
    let mut running = false;
    for (_, pc, status) in reported.iter().filter(|(id, pc, _)| is_run(id, pc)) {
        late.execute(params![exec_id, pc])?;
        running |= status == "running";
        counts.add(status);
    }
    let target_count: i64 =
        tx.query_row("SELECT COUNT(*) FROM execution_targets WHERE exec_id = ?1", [exec_id], |r| r.get(0))?;
    tx.execute(
        "UPDATE executions SET succeeded = ?2, failed = ?3, skipped = ?4, other = ?5, target_count = ?6 WHERE exec_id = ?1",
        params![exec_id, counts.succeeded, counts.failed, counts.skipped, counts.other, target_count],
    )?;
    settle(tx, exec_id, &status, target_count, &counts, running, now_ms)
}

/// Write the status that follows from the counters (and `finished_ms` when it just finished).
fn settle(
    tx: &Transaction<'_>,
    exec_id: &str,
    status: &str,
    target_count: i64,
    counts: &Counts,
    active: bool,
    now_ms: i64,
) -> Result<(), DbError> {
    let waves_pending: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM rollout_waves WHERE exec_id = ?1 AND status = 'pending')",
        )?
        .query_row([exec_id], |r| r.get(0))?;
    let failures = counts.failed + counts.other;
    let next = next_status(status, target_count, counts.done(), i64::from(active), failures, waves_pending);
    let finished = matches!(next, "completed" | "failed") && !matches!(status, "completed" | "failed");
    tx.prepare_cached(
        "UPDATE executions SET status = ?2, updated_ms = ?3, finished_ms = CASE WHEN ?4 THEN ?3 ELSE finished_ms END
         WHERE exec_id = ?1",
    )?
    .execute(params![exec_id, next, now_ms, finished])?;
    Ok(())
}

/// The status rule: terminal states stay; all expected results in and no wave left to publish →
/// completed (no failures) or failed; any activity → running.
pub fn next_status(
    current: &str,
    target_count: i64,
    done: i64,
    running: i64,
    failures: i64,
    waves_pending: bool,
) -> &'static str {
    match current {
        "aborted" => "aborted",
        "expired" => "expired",
        "killed" => "killed",
        _ if target_count > 0 && done >= target_count && waves_pending => "running",
        _ if target_count > 0 && done >= target_count => {
            if failures == 0 {
                "completed"
            } else {
                "failed"
            }
        }
        _ if done + running > 0 => "running",
        "running" => "running",
        _ => "pending",
    }
}

/// `received_ms`: when the backend received these beats, by its own clock. That, never the
/// agent's `at`, is the agent's last sign of life: a slow agent clock would show it offline (and
/// leave it out of targets), and one that once ran ahead would pin it online and make its later
/// beats look older than the stored one. The agent's clock is kept as its offset from ours.
pub fn apply_heartbeats(tx: &Transaction<'_>, beats: &[Heartbeat], received_ms: i64) -> Result<(), DbError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO agents (pc_id, hostname, os_family, os_name, os_version, arch, agent_version, groups_json,
             uptime_secs, rss_bytes, cpu_pct, running_jobs, first_seen_ms, last_seen_ms, quarantined_json,
             update_status, clock_skew_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14, ?15, ?16)
         ON CONFLICT(pc_id) DO UPDATE SET hostname = excluded.hostname, os_family = excluded.os_family,
             os_name = excluded.os_name, os_version = excluded.os_version, arch = excluded.arch,
             agent_version = excluded.agent_version, groups_json = excluded.groups_json,
             uptime_secs = excluded.uptime_secs, rss_bytes = excluded.rss_bytes, cpu_pct = excluded.cpu_pct,
             running_jobs = excluded.running_jobs, last_seen_ms = excluded.last_seen_ms,
             quarantined_json = excluded.quarantined_json, update_status = excluded.update_status,
             clock_skew_ms = excluded.clock_skew_ms
         WHERE excluded.last_seen_ms >= agents.last_seen_ms",
    )?;
    for b in beats {
        let groups = serde_json::to_string(&b.groups).unwrap_or_else(|_| "[]".into());
        stmt.execute(params![
            b.pc_id.as_str(),
            b.hostname,
            b.os.family,
            b.os.name,
            b.os.version,
            b.arch,
            b.agent_version.as_str(),
            groups,
            b.uptime_secs as i64,
            b.agent_rss_bytes as i64,
            f64::from(b.agent_cpu_pct),
            b.running_jobs,
            received_ms,
            serde_json::to_string(&b.quarantined).unwrap_or_else(|_| "[]".into()),
            b.update_status,
            ts_ms(b.at) - received_ms,
        ])?;
    }
    Ok(())
}

/// The newest inventory per PC wins by stream order (INVENTORY delivers in order and keeps the
/// latest per PC), never by the agent's clock: one that once ran ahead would freeze the row.
pub fn apply_inventory(tx: &Transaction<'_>, items: &[Inventory]) -> Result<(), DbError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO inventory (pc_id, collected_ms, body_json) VALUES (?1, ?2, ?3)
         ON CONFLICT(pc_id) DO UPDATE SET collected_ms = excluded.collected_ms, body_json = excluded.body_json",
    )?;
    for inv in items {
        let body = serde_json::to_string(inv).unwrap_or_default();
        stmt.execute(params![inv.pc_id.as_str(), ts_ms(inv.collected_at), body])?;
    }
    Ok(())
}

/// What an `exec.create` audit event carries, so the AUDIT stream alone can rebuild an
/// execution after a wipe.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExecCreated {
    pub exec_id: String,
    pub job_id: String,
    pub version: String,
    pub plan: serde_json::Value,
    pub target_count: i64,
    /// (pc_id, wave)
    pub targets: Vec<(String, i64)>,
    /// (wave, due_ms, target_json)
    pub waves: Vec<(i64, i64, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// `exec.wave_published`, `exec.aborted` and `exec.expired` carry this.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExecStep {
    pub exec_id: String,
    #[serde(default)]
    pub wave: Option<i64>,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub message: Option<String>,
}

pub fn apply_audit(tx: &Transaction<'_>, events: &[AuditEvent], now_ms: i64) -> Result<(), DbError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO audit_log (id, at_ms, actor, action, target, source, detail_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(id) DO NOTHING",
    )?;
    for e in events {
        stmt.execute(params![
            e.id.to_string(),
            ts_ms(e.at),
            e.actor,
            e.action,
            e.target,
            e.source,
            e.detail.to_string()
        ])?;
        apply_exec_audit(tx, e, now_ms)?;
    }
    Ok(())
}

/// The execution-lifecycle audit events also (re)build execution state; all idempotent.
fn apply_exec_audit(tx: &Transaction<'_>, e: &AuditEvent, now_ms: i64) -> Result<(), DbError> {
    match e.action.as_str() {
        "exec.create" => {
            let Ok(c) = serde_json::from_value::<ExecCreated>(e.detail.clone()) else {
                tracing::warn!(id = %e.id, "exec.create audit event without a readable execution; skipped");
                return Ok(());
            };
            let plan = c.plan.to_string();
            let new = NewExecution {
                exec_id: &c.exec_id,
                job_id: &c.job_id,
                version: &c.version,
                created_by: &e.actor,
                plan_json: &plan,
                targets: &c.targets,
                waves: &c.waves,
                target_count: c.target_count,
                schedule_id: c.schedule_id.as_deref(),
                title: c.title.as_deref(),
            };
            insert_execution(tx, &new, ts_ms(e.at))
        }
        "exec.wave_published" => match serde_json::from_value::<ExecStep>(e.detail.clone()) {
            Ok(step) => wave_published(tx, &step, ts_ms(e.at), now_ms),
            Err(_) => Ok(()),
        },
        "exec.aborted" => match serde_json::from_value::<ExecStep>(e.detail.clone()) {
            Ok(step) => ended_early(tx, &step, Ended::Aborted, ts_ms(e.at)),
            Err(_) => Ok(()),
        },
        "exec.expired" => match serde_json::from_value::<ExecStep>(e.detail.clone()) {
            Ok(step) => ended_early(tx, &step, Ended::Expired, ts_ms(e.at)),
            Err(_) => Ok(()),
        },
        "exec.kill" => match serde_json::from_value::<ExecStep>(e.detail.clone()) {
            Ok(step) => ended_early(tx, &killed_step(step, &e.actor), Ended::Killed, ts_ms(e.at)),
            Err(_) => Ok(()),
        },
        "job.kill" => {
            let execs = e.detail["executions"].as_array().cloned().unwrap_or_default();
            for exec_id in execs.iter().filter_map(|v| v.as_str()) {
                let step =
                    ExecStep { exec_id: exec_id.to_owned(), wave: None, targets: Vec::new(), message: None };
                ended_early(tx, &killed_step(step, &e.actor), Ended::Killed, ts_ms(e.at))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

pub fn wave_published(tx: &Transaction<'_>, s: &ExecStep, at_ms: i64, now_ms: i64) -> Result<(), DbError> {
    let wave = s.wave.unwrap_or_default();
    tx.execute(
        "UPDATE rollout_waves SET status = 'published', published_ms = ?3 WHERE exec_id = ?1 AND wave = ?2 AND status = 'pending'",
        params![s.exec_id, wave, at_ms],
    )?;
    let mut target = tx.prepare_cached(
        "INSERT INTO execution_targets (exec_id, pc_id, wave) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    )?;
    for pc in &s.targets {
        target.execute(params![s.exec_id, pc, wave])?;
    }
    tx.execute(
        "UPDATE executions SET target_count = (SELECT COUNT(*) FROM execution_targets WHERE exec_id = ?1) WHERE exec_id = ?1",
        [&s.exec_id],
    )?;
    refresh_execution(tx, &s.exec_id, now_ms)
}

fn killed_step(mut step: ExecStep, actor: &str) -> ExecStep {
    step.message.get_or_insert_with(|| format!("killed by {actor}"));
    step
}

/// How an execution can end before every result is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// An operator killed it: no later wave goes out, agents that come back skip it.
    Killed,
    /// The rollout dispatcher stopped it (failure ratio).
    Aborted,
    /// Cleanup gave up on it (no progress for `retention.stall_after`).
    Expired,
}

/// Mark an unfinished execution killed, aborted or expired and cancel its pending waves. An execution
/// that already finished keeps its outcome (a replayed event must not overwrite it).
pub fn ended_early(tx: &Transaction<'_>, s: &ExecStep, how: Ended, at_ms: i64) -> Result<(), DbError> {
    let status = match how {
        Ended::Killed => "killed",
        Ended::Aborted => "aborted",
        Ended::Expired => "expired",
    };
    tx.execute(
        "UPDATE executions SET status = ?4, message = ?2, updated_ms = ?3, finished_ms = COALESCE(finished_ms, ?3)
         WHERE exec_id = ?1 AND status IN ('pending', 'running')",
        params![s.exec_id, s.message, at_ms, status],
    )?;
    tx.execute(
        "UPDATE rollout_waves SET status = 'cancelled' WHERE exec_id = ?1 AND status = 'pending'",
        [&s.exec_id],
    )?;
    Ok(())
}

/// A new execution: its row, the PCs it expects, and the waves still to publish.
pub struct NewExecution<'a> {
    pub exec_id: &'a str,
    pub job_id: &'a str,
    pub version: &'a str,
    pub created_by: &'a str,
    pub plan_json: &'a str,
    /// (pc_id, wave index)
    pub targets: &'a [(String, i64)],
    /// Rollout waves, wave 0 included: (index, due_ms, target_json)
    pub waves: &'a [(i64, i64, String)],
    pub target_count: i64,
    pub schedule_id: Option<&'a str>,
    /// What ran, where the job id does not say (ad-hoc runs).
    pub title: Option<&'a str>,
}

pub fn insert_execution(tx: &Transaction<'_>, e: &NewExecution<'_>, now_ms: i64) -> Result<(), DbError> {
    // A row the projector made up from an ad-hoc run's result (its plan is `null`) gives way to
    // the real one, which a rebuild may replay after that result.
    tx.execute(
        "INSERT INTO executions (exec_id, job_id, version, status, target_count, created_by, plan_json, created_ms,
             updated_ms, schedule_id, title)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?7, ?8, ?9)
         ON CONFLICT(exec_id) DO UPDATE SET created_by = excluded.created_by, plan_json = excluded.plan_json,
             created_ms = excluded.created_ms, schedule_id = excluded.schedule_id, title = excluded.title
         WHERE executions.plan_json = 'null'",
        params![e.exec_id, e.job_id, e.version, e.target_count, e.created_by, e.plan_json, now_ms, e.schedule_id, e.title],
    )?;
    let mut target = tx.prepare_cached(
        "INSERT INTO execution_targets (exec_id, pc_id, wave) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    )?;
    for (pc, wave) in e.targets {
        target.execute(params![e.exec_id, pc, wave])?;
    }
    // Wave 0 goes out with the execution itself; the others wait for the dispatcher.
    let mut wave = tx.prepare_cached(
        "INSERT INTO rollout_waves (exec_id, wave, due_ms, target_json, status, published_ms)
         VALUES (?1, ?2, ?3, ?4, CASE WHEN ?2 = 0 THEN 'published' ELSE 'pending' END, CASE WHEN ?2 = 0 THEN ?3 END)
         ON CONFLICT DO NOTHING",
    )?;
    for (index, due, json) in e.waves {
        wave.execute(params![e.exec_id, index, due, json])?;
    }
    // Results may already be in (a replayed stream after a wipe): count them now.
    refresh_execution(tx, e.exec_id, now_ms)
}

/// The projection generation, created on first use. Durable consumer names carry it.
pub fn generation(tx: &Transaction<'_>) -> Result<String, DbError> {
    let existing: Option<String> = tx
        .query_row("SELECT value FROM projection_meta WHERE key = 'generation'", [], |r| r.get(0))
        .optional()?;
    if let Some(g) = existing {
        return Ok(g);
    }
    // The random tail of a v7 id: its first 12 digits are only the millisecond, and two
    // backends whose databases start in the same one would share projector consumers.
    let g = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
    tx.execute("INSERT INTO projection_meta (key, value) VALUES ('generation', ?1)", [&g])?;
    Ok(g)
}

/// Empty every projected table and start a new generation, so the streams replay into it.
pub fn wipe(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.execute_batch(
        "DELETE FROM agents; DELETE FROM executions; DELETE FROM execution_targets; DELETE FROM execution_results;
         DELETE FROM rollout_waves; DELETE FROM audit_log; DELETE FROM inventory;
         DELETE FROM projection_meta WHERE key = 'generation';",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
