//! Applying stream messages to the projection, one batch per transaction.
//!
//! Every function is idempotent and order-independent: applying the same messages twice, or in
//! another order, leaves the same rows. Functions that move an execution's state take the
//! projection's writer lock first ([`one_writer`]): on Postgres the RESULTS and AUDIT projectors
//! (and the pipeline) write at the same time, and a count made while another transaction's
//! rows are still invisible would be lost. A `started` event only ever creates a `running` row; a
//! result only ever replaces a `running` row, never a final one; counters move only when a row
//! first becomes final, so redelivery cannot double-count.

pub mod checks;
pub mod facts;
pub mod notifications;
pub mod obs;
pub mod rollups;
pub mod targets;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;

use super::sql::{BulkInsert, BulkUpsert, ColType, Row, Sql, Value, opt_row, scalar, vals};
use super::{DbError, ts_ms};
use kanade_shared::manifest::outputs::Outputs;
use kanade_shared::wire::{AuditEvent, ExecResult, Heartbeat, Inventory, StartedEvent};
use kanade_shared::{ExecId, JobId, PcId};
use targets::{Ask, Pcs, TargetMemo};

/// Wait for every other transaction that moves execution state to end, as SQLite's single
/// writer does by itself.
pub async fn one_writer<S: Sql>(s: &mut S) -> Result<(), DbError> {
    match s.dialect().one_writer() {
        Some(sql) => s.batch(sql).await,
        None => Ok(()),
    }
}

/// A batch of results with its rows built: building them is a good part of the write's work
/// outside the database, and the projector does it while the batch before is being written.
pub struct ResultRows {
    results: Vec<ExecResult>,
    /// Indexes in `results` of each result id's first copy, the one that is written: a result
    /// twice in one batch counts once (the first copy lands, the second would find it final).
    unique: Vec<usize>,
    rows: Vec<Vec<Value>>,
}

impl ResultRows {
    /// `received_ms`: when the backend received them.
    pub fn new(results: Vec<ExecResult>, received_ms: i64) -> Self {
        let skip = |r: &ExecResult| {
            r.skip_reason
                .and_then(|s| serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_owned)))
        };
        let mut seen = HashSet::with_capacity(results.len());
        let unique: Vec<usize> = (0..results.len()).filter(|&i| seen.insert(results[i].result_id)).collect();
        let rows = unique
            .iter()
            .map(|&i| {
                let r = &results[i];
                vals![
                    r.result_id.to_string(),
                    r.exec_id.to_string(),
                    r.pc_id.as_str(),
                    r.request_id.to_string(),
                    r.job_id.as_str(),
                    r.version.as_str(),
                    r.status.as_str(),
                    r.exit_code,
                    skip(r),
                    r.message.clone(),
                    r.stdout.as_str(),
                    r.stderr.as_str(),
                    r.truncated,
                    r.attempt,
                    r.started_at.map(ts_ms),
                    ts_ms(r.finished_at),
                    received_ms,
                ]
            })
            .collect();
        Self { results, unique, rows }
    }

    pub fn results(&self) -> &[ExecResult] {
        &self.results
    }
}

/// Apply a batch of results; returns the targets it read or added (all of an execution's when
/// `memo` did not hold it), for the caller to hold once the transaction commits.
pub async fn apply_results<S: Sql>(
    s: &mut S,
    batch: &ResultRows,
    now_ms: i64,
    memo: &Mutex<TargetMemo>,
) -> Result<BTreeMap<targets::Exec, Pcs>, DbError> {
    one_writer(s).await?;
    for r in batch.results.iter().filter(|r| r.result_id.is_run_of(r.exec_id, &r.pc_id)) {
        let at = r.started_at.map_or(ts_ms(r.finished_at), ts_ms);
        adhoc_execution(s, r.exec_id, &r.job_id, r.version.as_str(), &r.pc_id, at).await?;
    }
    // A new row, or a `running` row taking its result; a final row is never touched again.
    let unique = batch.unique.iter().map(|&i| &batch.results[i]);
    let landed = s.upsert_rows(&RESULTS_UPSERT, &batch.rows).await?;
    // The timeline's `job.started` / `job.finished` are read from these rows
    // (`queries::obs_events`), not stored twice.
    // Counters move by what this batch newly finished: a row goes from absent or `running` to a
    // final status exactly once, and a final row is never touched again, so a redelivered
    // result adds nothing. Recounting every row instead costs a scan per execution per batch.
    // A refused command's answer is kept for operators but is not a run of that exec.
    let changed: Vec<&ExecResult> = unique
        .zip(landed)
        .filter(|(r, landed)| *landed && r.result_id.is_run_of(r.exec_id, &r.pc_id))
        .map(|(r, _)| r)
        .collect();
    // Keyed by the typed id, spelled once per execution, not once per result.
    let mut deltas: BTreeMap<ExecId, Counts> = BTreeMap::new();
    let mut reporting: BTreeMap<ExecId, Vec<&str>> = BTreeMap::new();
    for r in &changed {
        reporting.entry(r.exec_id).or_default().push(r.pc_id.as_str());
        deltas.entry(r.exec_id).or_default().add(r.status.as_str());
    }
    let names: BTreeMap<ExecId, String> = deltas.keys().map(|e| (*e, e.to_string())).collect();
    // A PC that was not expected (it joined a group, or came online, after the exec was
    // published) but ran it through catch-up becomes one of its targets (of executions this
    // projection knows; a batch names a handful).
    let execs: Vec<&String> = names.values().collect();
    // With each execution's plan (what its job's output feeds: checks, facts), target count and
    // creation time.
    let known: BTreeMap<String, (Outputs, i64, i64)> = if execs.is_empty() {
        BTreeMap::new()
    } else {
        // Padded with NULLs (which match nothing) to a power of two: a few statement shapes,
        // not one prepared per batch size.
        let width = execs.len().next_power_of_two();
        let list = (1..=width).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
        let mut params: Vec<Value> = execs.iter().map(|e| Value::from(e.as_str())).collect();
        params.resize(width, Value::Null);
        s.rows(
            &format!(
                "SELECT exec_id, plan_json, target_count, created_ms FROM executions WHERE exec_id IN ({list})"
            ),
            params,
        )
        .await?
        .iter()
        .map(|r| Ok((r.get(0)?, (outputs_of(&r.get::<String>(1)?), r.get(2)?, r.get(3)?))))
        .collect::<Result<_, DbError>>()?
    };
    // Almost every result comes from an expected PC. An execution's targets are read once, in
    // one range scan, and held (`targets`); PCs not held are checked with one anti-join.
    let not_targets = format!(
        "SELECT j.value FROM {} WHERE NOT EXISTS
             (SELECT 1 FROM execution_targets t WHERE t.exec_id = ?1 AND t.pc_id = j.value)",
        s.dialect().json_text_elements("?2", "j")
    );
    let mut late = Vec::new();
    let mut learned: BTreeMap<targets::Exec, Pcs> = BTreeMap::new();
    for (exec, pcs) in &reporting {
        let exec_id = &names[exec];
        let Some((_, target_count, created_ms)) = known.get(exec_id) else { continue };
        let held = (exec_id.clone(), *created_ms);
        let ask = memo.lock().unwrap_or_else(|p| p.into_inner()).ask(&held, *target_count, pcs);
        match ask {
            Ask::Nothing => {}
            Ask::Check(unknown) => {
                let unknown = serde_json::Value::from(unknown).to_string();
                for row in s.rows(&not_targets, vals![exec_id.as_str(), unknown]).await? {
                    late.push((exec_id.as_str(), row.get::<String>(0)?));
                }
            }
            Ask::Load => {
                let mut targets = Pcs::with_capacity_and_hasher(
                    usize::try_from(*target_count).unwrap_or(0),
                    Default::default(),
                );
                for row in s
                    .rows("SELECT pc_id FROM execution_targets WHERE exec_id = ?1", vals![exec_id.as_str()])
                    .await?
                {
                    targets.insert(row.get::<String>(0)?);
                }
                for pc in pcs.iter().filter(|pc| !targets.contains(**pc)) {
                    late.push((exec_id.as_str(), (*pc).to_owned()));
                }
                learned.insert(held, targets);
            }
        }
    }
    let rows: Vec<Vec<Value>> = late.iter().map(|(e, pc)| vals![*e, pc.as_str(), 0i64]).collect();
    let added = s.insert_rows(&LATE_TARGETS, &rows).await?;
    // Target counts are exact once an execution exists (its creation counts them) and move by
    // the late targets that really were added, so no batch recounts a large execution's targets.
    let mut new_targets: BTreeMap<&str, i64> = BTreeMap::new();
    for ((exec_id, pc), added) in late.iter().zip(added) {
        *new_targets.entry(exec_id).or_default() += i64::from(added);
        // Added now, or by another transaction first: a target either way once this commits.
        if let Some((_, _, created_ms)) = known.get(*exec_id) {
            learned.entry(((*exec_id).to_owned(), *created_ms)).or_default().insert(pc.clone());
        }
    }
    // In exec id order, so two backends' transactions lock execution rows in the same order.
    for (exec, d) in &deltas {
        let exec_id = &names[exec];
        // Results for an exec this backend did not create (a CLI `run`) are kept, not counted.
        let added = new_targets.get(exec_id.as_str()).copied().unwrap_or(0);
        let Some(row) = opt_row(
            s,
            "UPDATE executions SET succeeded = succeeded + ?2, failed = failed + ?3, skipped = skipped + ?4, other = other + ?5,
                 target_count = target_count + ?6
             WHERE exec_id = ?1 RETURNING status, target_count, succeeded, failed, skipped, other",
            vals![exec_id.as_str(), d.succeeded, d.failed, d.skipped, d.other, added],
        )
        .await?
        else {
            continue;
        };
        let status: String = row.get(0)?;
        let counts =
            Counts { succeeded: row.get(2)?, failed: row.get(3)?, skipped: row.get(4)?, other: row.get(5)? };
        settle(s, exec_id, &status, row.get(1)?, &counts, true, now_ms).await?;
    }
    // What the job's output feeds, once per newly final result (a redelivery never lands).
    for r in &changed {
        let Some((outputs, _, _)) = known.get(&names[&r.exec_id]) else { continue };
        if let Some(spec) = &outputs.check {
            checks::apply(s, spec, r, now_ms).await?;
        }
        if let Some(spec) = &outputs.facts {
            facts::apply(s, spec, r, now_ms).await?;
        }
    }
    Ok(learned)
}

/// An execution's final results as the agents sent them (what a check or facts read), with
/// when each was received.
async fn final_results_of<S: Sql>(
    s: &mut S,
    exec_id: &str,
    version: &str,
) -> Result<Vec<(ExecResult, i64)>, DbError> {
    let rows = s
        .rows(
            // A row started before its execution was known has no version: the execution's.
            "SELECT result_id, request_id, exec_id, job_id, COALESCE(NULLIF(version, ''), CAST(?2 AS TEXT)), pc_id, status,
                    exit_code, stdout, truncated, attempt, finished_ms, received_ms
             FROM execution_results WHERE exec_id = ?1 AND status <> 'running'",
            vals![exec_id, version],
        )
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let json = serde_json::json!({
            "result_id": r.get::<String>(0)?, "request_id": r.get::<String>(1)?, "exec_id": r.get::<String>(2)?,
            "job_id": r.get::<String>(3)?, "version": r.get::<String>(4)?, "pc_id": r.get::<String>(5)?,
            "status": r.get::<String>(6)?, "exit_code": r.get::<Option<i64>>(7)?, "stdout": r.get::<String>(8)?,
            "truncated": r.get::<bool>(9)?, "attempt": r.get::<i64>(10)?,
            "finished_at": time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.get::<Option<i64>>(11)?.unwrap_or(0)) * 1_000_000)
                .ok()
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        });
        // A row that does not read back as a result (an older backend's) is left alone.
        if let Ok(result) = serde_json::from_value::<ExecResult>(json)
            && result.result_id.is_run_of(result.exec_id, &result.pc_id)
        {
            out.push((result, r.get::<i64>(12)?));
        }
    }
    Ok(out)
}

/// The `outputs` of an execution's stored plan; none for plans without them (most) or that
/// do not parse (an older backend's).
fn outputs_of(plan_json: &str) -> Outputs {
    if !plan_json.contains("\"outputs\"") {
        return Outputs::default();
    }
    serde_json::from_str::<serde_json::Value>(plan_json)
        .ok()
        .and_then(|v| serde_json::from_value(v.get("outputs")?.clone()).ok())
        .unwrap_or_default()
}

/// Results land as new rows, or take a `running` row's place.
const RESULTS_UPSERT: BulkUpsert<'static> = BulkUpsert {
    table: "execution_results",
    columns: &[
        ("result_id", ColType::Text),
        ("exec_id", ColType::Text),
        ("pc_id", ColType::Text),
        ("request_id", ColType::Text),
        ("job_id", ColType::Text),
        ("version", ColType::Text),
        ("status", ColType::Text),
        ("exit_code", ColType::Int),
        ("skip_reason", ColType::Text),
        ("message", ColType::Text),
        ("stdout", ColType::Text),
        ("stderr", ColType::Text),
        ("truncated", ColType::Int),
        ("attempt", ColType::Int),
        ("started_ms", ColType::Int),
        ("finished_ms", ColType::Int),
        ("received_ms", ColType::Int),
    ],
    set: &[
        ("request_id", "{new}.request_id"),
        ("status", "{new}.status"),
        ("exit_code", "{new}.exit_code"),
        ("skip_reason", "{new}.skip_reason"),
        ("message", "{new}.message"),
        ("stdout", "{new}.stdout"),
        ("stderr", "{new}.stderr"),
        ("truncated", "{new}.truncated"),
        ("attempt", "{new}.attempt"),
        ("started_ms", "COALESCE({new}.started_ms, {old}.started_ms)"),
        ("finished_ms", "{new}.finished_ms"),
        ("received_ms", "{new}.received_ms"),
    ],
    when: "{old}.status = 'running'",
};

const LATE_TARGETS: BulkInsert<'static> = BulkInsert {
    table: "execution_targets",
    columns: &[("exec_id", ColType::Text), ("pc_id", ColType::Text), ("wave", ColType::Int)],
    key: 2,
    tail: "ON CONFLICT DO NOTHING",
};

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
async fn adhoc_execution<S: Sql>(
    s: &mut S,
    exec_id: ExecId,
    job: &JobId,
    version: &str,
    pc: &PcId,
    at_ms: i64,
) -> Result<(), DbError> {
    if !job.is_adhoc() {
        return Ok(());
    }
    let made = s
        .exec(
            "INSERT INTO executions (exec_id, job_id, version, status, target_count, created_by, plan_json, created_ms,
                 updated_ms, title)
             VALUES (?1, ?2, ?3, 'pending', 1, 'kanade run', 'null', ?4, ?4, ?5) ON CONFLICT(exec_id) DO NOTHING",
            vals![exec_id.to_string(), job.as_str(), version, at_ms, format!("kanade run on {pc}")],
        )
        .await?;
    if made == 1 {
        s.exec(
            "INSERT INTO execution_targets (exec_id, pc_id, wave) VALUES (?1, ?2, 0) ON CONFLICT DO NOTHING",
            vals![exec_id.to_string(), pc.as_str()],
        )
        .await?;
    }
    Ok(())
}

/// Name an execution made up from an ad-hoc run by what it ran (only such rows: plan `null`).
pub async fn name_adhoc_execution<S: Sql>(s: &mut S, exec_id: ExecId, title: &str) -> Result<(), DbError> {
    s.exec(
        "UPDATE executions SET title = ?2 WHERE exec_id = ?1 AND plan_json = 'null'",
        vals![exec_id.to_string(), title],
    )
    .await?;
    Ok(())
}

pub async fn apply_started<S: Sql>(s: &mut S, events: &[StartedEvent], now_ms: i64) -> Result<(), DbError> {
    one_writer(s).await?;
    for e in events.iter().filter(|e| e.result_id.is_run_of(e.exec_id, &e.pc_id)) {
        // A started event carries no version; `kanade run` always sends version 1.
        adhoc_execution(s, e.exec_id, &e.job_id, "1", &e.pc_id, ts_ms(e.started_at)).await?;
    }
    s.exec_many(
        "INSERT INTO execution_results (result_id, exec_id, pc_id, request_id, job_id, version, status, attempt,
             started_ms, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, COALESCE((SELECT version FROM executions WHERE exec_id = ?2), ''), 'running', ?6, ?7, ?8)
         ON CONFLICT(result_id) DO UPDATE SET attempt = CASE WHEN excluded.attempt > execution_results.attempt
             THEN excluded.attempt ELSE execution_results.attempt END
         WHERE execution_results.status = 'running'",
        events
            .iter()
            .map(|e| {
                vals![
                    e.result_id.to_string(),
                    e.exec_id.to_string(),
                    e.pc_id.as_str(),
                    e.request_id.to_string(),
                    e.job_id.as_str(),
                    e.attempt,
                    ts_ms(e.started_at),
                    now_ms,
                ]
            })
            .collect(),
    )
    .await?;
    obs::insert(s, &obs::retry_started_rows(events), now_ms).await?;
    // A start changes no counter; it only shows that a pending execution is under way.
    let touched: BTreeSet<String> = events.iter().map(|e| e.exec_id.to_string()).collect();
    s.exec_many(
        "UPDATE executions SET status = 'running', updated_ms = ?2 WHERE exec_id = ?1 AND status = 'pending'",
        touched.into_iter().map(|exec_id| vals![exec_id, now_ms]).collect(),
    )
    .await?;
    Ok(())
}

const ADD_TARGET: &str =
    "INSERT INTO execution_targets (exec_id, pc_id, wave) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";

async fn count_targets<S: Sql>(s: &mut S, exec_id: &str) -> Result<i64, DbError> {
    scalar(s, "SELECT COUNT(*) FROM execution_targets WHERE exec_id = ?1", vals![exec_id]).await
}

/// Recompute an execution's counters and status from all its result rows (when it is created
/// or a wave goes out; batches of results move the counters incrementally instead).
pub async fn refresh_execution<S: Sql>(s: &mut S, exec_id: &str, now_ms: i64) -> Result<(), DbError> {
    let Some(row) = opt_row(s, "SELECT status FROM executions WHERE exec_id = ?1", vals![exec_id]).await?
    else {
        return Ok(());
    };
    let status: String = row.get(0)?;
    // Only a run's own result counts (a refused command's answer is kept for operators but is
    // not a run of this exec), exactly as in `apply_results`. Results that arrived before the
    // execution row (a replay after a wipe) add their PCs as targets now.
    let reported = s
        .rows("SELECT result_id, pc_id, status FROM execution_results WHERE exec_id = ?1", vals![exec_id])
        .await?;
    let exec: Option<kanade_shared::ExecId> = exec_id.parse().ok();
    let is_run = |result_id: &str, pc: &str| {
        let (Some(exec), Ok(pc)) = (exec, pc.parse::<kanade_shared::PcId>()) else { return false };
        result_id.parse::<kanade_shared::ResultId>().is_ok_and(|id| id.is_run_of(exec, &pc))
    };
    let mut counts = Counts::default();
    let mut running = false;
    let mut late = Vec::new();
    for row in &reported {
        let (id, pc, status): (String, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
        if !is_run(&id, &pc) {
            continue;
        }
        late.push(vals![exec_id, pc, 0i64]);
        running |= status == "running";
        counts.add(&status);
    }
    s.exec_many(ADD_TARGET, late).await?;
    let target_count = count_targets(s, exec_id).await?;
    s.exec(
        "UPDATE executions SET succeeded = ?2, failed = ?3, skipped = ?4, other = ?5, target_count = ?6 WHERE exec_id = ?1",
        vals![exec_id, counts.succeeded, counts.failed, counts.skipped, counts.other, target_count],
    )
    .await?;
    settle(s, exec_id, &status, target_count, &counts, running, now_ms).await
}

/// Write the status that follows from the counters (and `finished_ms` when it just finished).
async fn settle<S: Sql>(
    s: &mut S,
    exec_id: &str,
    status: &str,
    target_count: i64,
    counts: &Counts,
    active: bool,
    now_ms: i64,
) -> Result<(), DbError> {
    let waves_pending: bool = scalar(
        s,
        "SELECT EXISTS (SELECT 1 FROM rollout_waves WHERE exec_id = ?1 AND status = 'pending')",
        vals![exec_id],
    )
    .await?;
    let failures = counts.failed + counts.other;
    let next = next_status(status, target_count, counts.done(), i64::from(active), failures, waves_pending);
    let finished = matches!(next, "completed" | "failed") && !matches!(status, "completed" | "failed");
    s.exec(
        "UPDATE executions SET status = ?2, updated_ms = ?3, finished_ms = CASE WHEN ?4 = 1 THEN ?3 ELSE finished_ms END
         WHERE exec_id = ?1",
        vals![exec_id, next, now_ms, finished],
    )
    .await?;
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

/// Host performance samples with the backend's receipt time (ms), each also added to its rollup
/// buckets; one already stored (same pc and receipt time) is kept as it was and counted once.
pub async fn apply_host_perf<S: Sql>(
    s: &mut S,
    samples: &[(i64, kanade_shared::wire::HostPerf)],
) -> Result<(), DbError> {
    rollups::add(s, samples).await?;
    s.exec_many(
        "INSERT INTO host_perf_samples (pc_id, at_ms, sampled_ms, cpu_pct, mem_used_bytes, mem_total_bytes,
             swap_used_bytes, swap_total_bytes, load, net_rx_bps, net_tx_bps, disks_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT(pc_id, at_ms) DO NOTHING",
        samples
            .iter()
            .map(|(received_ms, p)| {
                vals![
                    p.pc_id.as_str(),
                    *received_ms,
                    ts_ms(p.at),
                    f64::from(p.cpu_pct),
                    p.mem_used_bytes as i64,
                    p.mem_total_bytes as i64,
                    p.swap_used_bytes as i64,
                    p.swap_total_bytes as i64,
                    p.load.map(f64::from),
                    p.net_rx_bytes_per_s as i64,
                    p.net_tx_bytes_per_s as i64,
                    serde_json::to_string(&p.disks).unwrap_or_else(|_| "[]".into())
                ]
            })
            .collect(),
    )
    .await
    .map(drop)
}

/// Investigation mode's process samples with the backend's receipt time (ms); one already
/// stored (same pc and receipt time) is kept as it was.
pub async fn apply_process_perf<S: Sql>(
    s: &mut S,
    samples: &[(i64, kanade_shared::wire::ProcessPerf)],
) -> Result<(), DbError> {
    s.exec_many(
        "INSERT INTO process_perf_samples (pc_id, at_ms, sampled_ms, processes_json) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(pc_id, at_ms) DO NOTHING",
        samples
            .iter()
            .map(|(received_ms, p)| {
                vals![
                    p.pc_id.as_str(),
                    *received_ms,
                    ts_ms(p.at),
                    serde_json::to_string(&p.processes).unwrap_or_else(|_| "[]".into())
                ]
            })
            .collect(),
    )
    .await
    .map(drop)
}

/// `received_ms`: when the backend received these beats, by its own clock. That, never the
/// agent's `at`, is the agent's last sign of life: a slow agent clock would show it offline (and
/// leave it out of targets), and one that once ran ahead would pin it online and make its later
/// beats look older than the stored one. The agent's clock is kept as its offset from ours.
pub async fn apply_heartbeats<S: Sql>(
    s: &mut S,
    beats: &[Heartbeat],
    received_ms: i64,
    alive_window_ms: i64,
) -> Result<(), DbError> {
    let pcs: Vec<&PcId> = beats.iter().map(|b| &b.pc_id).collect();
    obs::heartbeat_transitions(s, &pcs, received_ms, alive_window_ms).await?;
    s.exec_many(
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
        beats
            .iter()
            .map(|b| {
                vals![
                    b.pc_id.as_str(),
                    b.hostname.as_str(),
                    b.os.family.as_str(),
                    b.os.name.as_str(),
                    b.os.version.as_str(),
                    b.arch.as_str(),
                    b.agent_version.as_str(),
                    serde_json::to_string(&b.groups).unwrap_or_else(|_| "[]".into()),
                    b.uptime_secs as i64,
                    b.agent_rss_bytes as i64,
                    f64::from(b.agent_cpu_pct),
                    b.running_jobs,
                    received_ms,
                    serde_json::to_string(&b.quarantined).unwrap_or_else(|_| "[]".into()),
                    b.update_status.clone(),
                    ts_ms(b.at) - received_ms,
                ]
            })
            .collect(),
    )
    .await?;
    Ok(())
}

/// The newest inventory per PC wins by stream order (INVENTORY delivers in order and keeps the
/// latest per PC), never by the agent's clock: one that once ran ahead would freeze the row.
pub async fn apply_inventory<S: Sql>(s: &mut S, items: &[Inventory]) -> Result<(), DbError> {
    s.exec_many(
        "INSERT INTO inventory (pc_id, collected_ms, body_json) VALUES (?1, ?2, ?3)
         ON CONFLICT(pc_id) DO UPDATE SET collected_ms = excluded.collected_ms, body_json = excluded.body_json",
        items
            .iter()
            .map(|inv| vals![inv.pc_id.as_str(), ts_ms(inv.collected_at), serde_json::to_string(inv).unwrap_or_default()])
            .collect(),
    )
    .await?;
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
    /// (wave, due_ms, target_json), wave 0 included (also without a rollout: its target).
    pub waves: Vec<(i64, i64, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// `exec.wave_published`, `exec.aborted` and `exec.expired` carry this.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExecStep {
    pub exec_id: ExecId,
    #[serde(default)]
    pub wave: Option<i64>,
    #[serde(default)]
    pub targets: Vec<PcId>,
    #[serde(default)]
    pub message: Option<String>,
}

pub async fn apply_audit<S: Sql>(s: &mut S, events: &[AuditEvent], now_ms: i64) -> Result<(), DbError> {
    one_writer(s).await?;
    s.exec_many(
        "INSERT INTO audit_log (id, at_ms, actor, action, target, source, detail_json, client)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(id) DO NOTHING",
        events
            .iter()
            .map(|e| {
                vals![
                    e.id.to_string(),
                    ts_ms(e.at),
                    e.actor.as_str(),
                    e.action.as_str(),
                    e.target.clone(),
                    e.source.clone(),
                    e.detail.to_string(),
                    e.client.clone()
                ]
            })
            .collect(),
    )
    .await?;
    for e in events {
        apply_exec_audit(s, e, now_ms).await?;
    }
    Ok(())
}

/// The execution-lifecycle audit events also (re)build execution state; all idempotent.
async fn apply_exec_audit<S: Sql>(s: &mut S, e: &AuditEvent, now_ms: i64) -> Result<(), DbError> {
    let step = || serde_json::from_value::<ExecStep>(e.detail.clone()).ok();
    match e.action.as_str() {
        "exec.create" => {
            let Ok(c) = serde_json::from_value::<ExecCreated>(e.detail.clone()) else {
                tracing::warn!(id = %e.id, "exec.create audit event without a readable execution; skipped");
                return Ok(());
            };
            // Known already (the pipeline stored it before publishing): its results got its
            // outputs as they landed.
            let known = opt_row(
                s,
                "SELECT 1 FROM executions WHERE exec_id = ?1 AND plan_json <> 'null'",
                vals![c.exec_id.as_str()],
            )
            .await?
            .is_some();
            insert_created(s, &c, &e.actor, ts_ms(e.at), FirstWave::Published).await?;
            let outputs = outputs_of(&c.plan.to_string());
            if known || outputs.is_empty() {
                return Ok(());
            }
            // Replayed streams can bring results before their execution: its outputs reach them now.
            for (r, received_ms) in final_results_of(s, &c.exec_id, &c.version).await? {
                if let Some(spec) = &outputs.check {
                    checks::apply(s, spec, &r, received_ms).await?;
                }
                if let Some(spec) = &outputs.facts {
                    facts::apply(s, spec, &r, received_ms).await?;
                }
            }
            Ok(())
        }
        "exec.wave_published" => match step() {
            Some(step) => wave_published(s, &step, ts_ms(e.at), now_ms).await,
            None => Ok(()),
        },
        "exec.aborted" => match step() {
            Some(step) => ended_early(s, &step, Ended::Aborted, ts_ms(e.at)).await,
            None => Ok(()),
        },
        "exec.expired" => match step() {
            Some(step) => ended_early(s, &step, Ended::Expired, ts_ms(e.at)).await,
            None => Ok(()),
        },
        "exec.kill" => match step() {
            Some(step) => ended_early(s, &killed_step(step, &e.actor), Ended::Killed, ts_ms(e.at)).await,
            None => Ok(()),
        },
        "job.kill" => {
            let execs = e.detail["executions"].as_array().cloned().unwrap_or_default();
            for exec_id in execs.iter().filter_map(|v| v.as_str()?.parse::<ExecId>().ok()) {
                let step = ExecStep { exec_id, wave: None, targets: Vec::new(), message: None };
                ended_early(s, &killed_step(step, &e.actor), Ended::Killed, ts_ms(e.at)).await?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

pub async fn wave_published<S: Sql>(
    s: &mut S,
    step: &ExecStep,
    at_ms: i64,
    now_ms: i64,
) -> Result<(), DbError> {
    one_writer(s).await?;
    let wave = step.wave.unwrap_or_default();
    s.exec(
        "UPDATE rollout_waves SET status = 'published', published_ms = ?3 WHERE exec_id = ?1 AND wave = ?2 AND status = 'pending'",
        vals![step.exec_id, wave, at_ms],
    )
    .await?;
    s.exec_many(ADD_TARGET, step.targets.iter().map(|pc| vals![step.exec_id, pc.as_str(), wave]).collect())
        .await?;
    refresh_execution(s, &step.exec_id.to_string(), now_ms).await
}

/// Wave 0 went out with its execution, created at `created_ms`: recorded as a replay of its
/// `exec.create` would record it.
pub async fn first_wave_published<S: Sql>(
    s: &mut S,
    exec_id: &str,
    created_ms: i64,
    now_ms: i64,
) -> Result<(), DbError> {
    one_writer(s).await?;
    s.exec(
        "UPDATE rollout_waves SET status = 'published', due_ms = ?2, published_ms = ?2
         WHERE exec_id = ?1 AND wave = 0 AND status = 'pending'",
        vals![exec_id, created_ms],
    )
    .await?;
    // Results may already be in: the status follows from the counters kept so far (no recount,
    // which would read every result under the writer's lock).
    let Some(row) = opt_row(
        s,
        "SELECT status, target_count, succeeded, failed, skipped, other,
             EXISTS (SELECT 1 FROM execution_results r WHERE r.exec_id = e.exec_id AND r.status = 'running')
         FROM executions e WHERE exec_id = ?1",
        vals![exec_id],
    )
    .await?
    else {
        return Ok(());
    };
    let counts =
        Counts { succeeded: row.get(2)?, failed: row.get(3)?, skipped: row.get(4)?, other: row.get(5)? };
    let status: String = row.get(0)?;
    settle(s, exec_id, &status, row.get(1)?, &counts, row.get(6)?, now_ms).await
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
pub async fn ended_early<S: Sql>(s: &mut S, step: &ExecStep, how: Ended, at_ms: i64) -> Result<(), DbError> {
    one_writer(s).await?;
    let status = match how {
        Ended::Killed => "killed",
        Ended::Aborted => "aborted",
        Ended::Expired => "expired",
    };
    s.exec(
        "UPDATE executions SET status = ?4, message = ?2, updated_ms = ?3, finished_ms = COALESCE(finished_ms, ?3)
         WHERE exec_id = ?1 AND status IN ('pending', 'running')",
        vals![step.exec_id, step.message.clone(), at_ms, status],
    )
    .await?;
    s.exec(
        "UPDATE rollout_waves SET status = 'cancelled' WHERE exec_id = ?1 AND status = 'pending'",
        vals![step.exec_id],
    )
    .await?;
    Ok(())
}

/// Insert the execution an `exec.create` event describes.
pub async fn insert_created<S: Sql>(
    s: &mut S,
    c: &ExecCreated,
    created_by: &str,
    at_ms: i64,
    first_wave: FirstWave,
) -> Result<(), DbError> {
    let plan = c.plan.to_string();
    let new = NewExecution {
        exec_id: &c.exec_id,
        job_id: &c.job_id,
        version: &c.version,
        created_by,
        plan_json: &plan,
        targets: &c.targets,
        waves: &c.waves,
        target_count: c.target_count,
        schedule_id: c.schedule_id.as_deref(),
        title: c.title.as_deref(),
        first_wave,
    };
    insert_execution(s, &new, at_ms).await
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
    pub first_wave: FirstWave,
}

/// Where wave 0 stands when its execution is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstWave {
    /// Replayed from an `exec.create` event: the request that sent the event published it.
    Published,
    /// Stored by the request that publishes it next: if that request's backend dies before it
    /// records the publication, the dispatcher publishes it from this time on (agents run an
    /// execution once, so a wave published twice runs once).
    PublishBy(i64),
}

/// (due_ms, status, published_ms) of a wave's row.
fn wave_row(index: i64, due_ms: i64, first: FirstWave) -> (i64, &'static str, Option<i64>) {
    match (index, first) {
        (0, FirstWave::Published) => (due_ms, "published", Some(due_ms)),
        (0, FirstWave::PublishBy(by)) => (by, "pending", None),
        _ => (due_ms, "pending", None),
    }
}

pub async fn insert_execution<S: Sql>(s: &mut S, e: &NewExecution<'_>, now_ms: i64) -> Result<(), DbError> {
    one_writer(s).await?;
    // A row the projector made up from an ad-hoc run's result (its plan is `null`) gives way to
    // the real one, which a rebuild may replay after that result.
    s.exec(
        "INSERT INTO executions (exec_id, job_id, version, status, target_count, created_by, plan_json, created_ms,
             updated_ms, schedule_id, title)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?7, ?8, ?9)
         ON CONFLICT(exec_id) DO UPDATE SET created_by = excluded.created_by, plan_json = excluded.plan_json,
             created_ms = excluded.created_ms, schedule_id = excluded.schedule_id, title = excluded.title
         WHERE executions.plan_json = 'null'",
        vals![e.exec_id, e.job_id, e.version, e.target_count, e.created_by, e.plan_json, now_ms, e.schedule_id, e.title],
    )
    .await?;
    s.exec_many(
        ADD_TARGET,
        e.targets.iter().map(|(pc, wave)| vals![e.exec_id, pc.as_str(), *wave]).collect(),
    )
    .await?;
    s.exec_many(
        "INSERT INTO rollout_waves (exec_id, wave, due_ms, target_json, status, published_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT DO NOTHING",
        e.waves
            .iter()
            .map(|(index, due, json)| {
                let (due, status, published) = wave_row(*index, *due, e.first_wave);
                vals![e.exec_id, *index, due, json.as_str(), status, published]
            })
            .collect(),
    )
    .await?;
    // Results may already be in (a replayed stream after a wipe): count them now.
    refresh_execution(s, e.exec_id, now_ms).await
}

/// The names a projection's durable consumers carry: `id` stays with the database (a wipe keeps
/// it), so backends with their own databases never take each other's consumers for old ones;
/// `generation` changes with every wipe, so a wiped projection replays the streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionName {
    pub id: String,
    pub generation: String,
}

/// This database's projection name, made on first use. Backends sharing one database (Postgres)
/// share it, and with it their consumers.
pub async fn projection_name<S: Sql>(s: &mut S) -> Result<ProjectionName, DbError> {
    // The random tail of a v7 id: its first 12 digits are only the millisecond, and two
    // databases made in the same one would share names.
    for key in ["projection_id", "generation"] {
        let fresh = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
        s.exec(
            "INSERT INTO projection_meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
            vals![key, fresh],
        )
        .await?;
    }
    let get = |rows: &[Row], key: &str| -> Result<String, DbError> {
        for r in rows {
            if r.get::<String>(0)? == key {
                return r.get(1);
            }
        }
        Err(DbError::Decode(format!("projection_meta has no {key}")))
    };
    let rows = s.rows("SELECT key, value FROM projection_meta", vals![]).await?;
    Ok(ProjectionName { id: get(&rows, "projection_id")?, generation: get(&rows, "generation")? })
}

/// A new generation over what is there: its consumers start from each stream's beginning.
pub async fn new_generation<S: Sql>(s: &mut S) -> Result<(), DbError> {
    s.batch("DELETE FROM projection_meta WHERE key = 'generation'").await
}

/// Empty every projected table and start a new generation, so the streams replay into it.
pub async fn wipe<S: Sql>(s: &mut S) -> Result<(), DbError> {
    // Not between another backend's read of which results are stored and its write of them.
    one_writer(s).await?;
    // Facts tables are rebuilt from RESULTS like the rest: dropped with their registry.
    for table in facts::tables_stored(s).await? {
        s.batch(&format!("DROP TABLE IF EXISTS {table}")).await?;
    }
    s.batch("DELETE FROM facts_tables; DELETE FROM facts_writes; DELETE FROM inventory_facts;").await?;
    s.batch(
        "DELETE FROM agents; DELETE FROM executions; DELETE FROM execution_targets; DELETE FROM execution_results;
         DELETE FROM rollout_waves; DELETE FROM audit_log; DELETE FROM inventory; DELETE FROM check_status;
         DELETE FROM projection_meta WHERE key = 'generation';",
    )
    .await
}

#[cfg(test)]
mod tests;
