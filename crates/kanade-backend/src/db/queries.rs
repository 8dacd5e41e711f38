//! Reads for the API and the pipeline. Timestamps leave here as epoch ms; the HTTP layer
//! renders them.

pub use kanade_shared::api::executions::{Execution as ExecutionRow, PcRun as PcRow, Wave as WaveRow};
pub use kanade_shared::api::fleet::{
    Agent as AgentRow, AuditEntry as AuditRow, RunResult as ResultRow, SoftwareHit,
};
use kanade_shared::manifest::Target;
use kanade_shared::{ExecId, JobId, PcId, ResultId};

use super::DbError;
use super::projection::obs::AHEAD_MS;
use super::sql::{Row, Sql, opt_row, scalar, vals};
use crate::fleet::KnownAgent;

/// Self-update as one agent last reported it.
#[derive(Debug)]
pub struct AgentUpdateState {
    pub pc_id: PcId,
    pub agent_version: String,
    pub quarantined: Vec<kanade_shared::boot::Quarantine>,
    pub update_status: Option<String>,
}

pub async fn agent_update_states<S: Sql>(s: &mut S) -> Result<Vec<AgentUpdateState>, DbError> {
    s.rows("SELECT pc_id, agent_version, quarantined_json, update_status FROM agents ORDER BY pc_id", vals![])
        .await?
        .iter()
        .map(|r| {
            Ok(AgentUpdateState {
                pc_id: r.get(0)?,
                agent_version: r.get(1)?,
                quarantined: serde_json::from_str(&r.get::<String>(2)?).unwrap_or_default(),
                update_status: r.get(3)?,
            })
        })
        .collect()
}

pub async fn known_agents<S: Sql>(s: &mut S) -> Result<Vec<KnownAgent>, DbError> {
    let mut out = Vec::new();
    for r in s.rows("SELECT pc_id, groups_json, last_seen_ms FROM agents", vals![]).await? {
        let Ok(pc) = r.get::<String>(0)?.parse() else { continue };
        out.push(KnownAgent {
            pc,
            groups: serde_json::from_str(&r.get::<String>(1)?).unwrap_or_default(),
            last_seen_ms: r.get(2)?,
        });
    }
    Ok(out)
}

/// When the backend last heard from `pc` and the groups it reported then; `None`: never.
pub async fn agent_presence<S: Sql>(s: &mut S, pc: &PcId) -> Result<Option<(i64, Vec<String>)>, DbError> {
    let Some(r) =
        opt_row(s, "SELECT last_seen_ms, groups_json FROM agents WHERE pc_id = ?1", vals![pc]).await?
    else {
        return Ok(None);
    };
    Ok(Some((r.get(0)?, serde_json::from_str(&r.get::<String>(1)?).unwrap_or_default())))
}

pub struct DueWave {
    pub exec_id: ExecId,
    pub wave: i64,
    pub target_json: String,
    pub plan_json: String,
    pub done: i64,
    pub failed: i64,
    pub other: i64,
}

pub async fn due_waves<S: Sql>(s: &mut S, now_ms: i64) -> Result<Vec<DueWave>, DbError> {
    s.rows(
        "SELECT w.exec_id, w.wave, w.target_json, e.plan_json, e.succeeded + e.failed + e.skipped + e.other, e.failed, e.other
         FROM rollout_waves w JOIN executions e ON e.exec_id = w.exec_id
         WHERE w.status = 'pending' AND w.due_ms <= ?1 AND e.status NOT IN ('aborted', 'expired', 'killed')
           -- Not before the execution's own exec.create is in AUDIT: a rebuild from AUDIT must
           -- meet the creation before the wave (the outbox is nearly always empty).
           -- A creation the broker refused for good holds nothing back.
           AND NOT EXISTS (SELECT 1 FROM audit_outbox o
                           WHERE o.subject = 'audit.exec.create' AND o.refused_ms IS NULL
                             AND o.payload LIKE '%' || w.exec_id || '%')
         ORDER BY w.due_ms, w.exec_id, w.wave",
        vals![now_ms],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(DueWave {
            exec_id: r.get(0)?,
            wave: r.get(1)?,
            target_json: r.get(2)?,
            plan_json: r.get(3)?,
            done: r.get(4)?,
            failed: r.get(5)?,
            other: r.get(6)?,
        })
    })
    .collect()
}

/// Whether wave `wave` of `exec_id` is still waiting to go out (not cancelled by a kill or an
/// abort since it was read).
pub async fn wave_still_due<S: Sql>(s: &mut S, exec_id: ExecId, wave: i64) -> Result<bool, DbError> {
    scalar(
        s,
        "SELECT EXISTS (SELECT 1 FROM rollout_waves w JOIN executions e ON e.exec_id = w.exec_id
         WHERE w.exec_id = ?1 AND w.wave = ?2 AND w.status = 'pending' AND e.status IN ('pending', 'running'))",
        vals![exec_id, wave],
    )
    .await
}

pub fn parse_target(json: &str) -> Result<Target, String> {
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(default)]
        pcs: Vec<kanade_shared::PcId>,
        #[serde(default)]
        groups: Vec<kanade_shared::GroupName>,
        #[serde(default)]
        all: bool,
    }
    let raw: Raw = serde_json::from_str(json).map_err(|e| format!("unreadable wave target: {e}"))?;
    Ok(Target { pcs: raw.pcs, groups: raw.groups, all: raw.all })
}

const EXECUTION_COLUMNS: &str = "exec_id, job_id, version, status, target_count, succeeded, failed, skipped, other, message, created_ms, finished_ms, title";

fn execution_row(r: &Row) -> Result<ExecutionRow, DbError> {
    Ok(ExecutionRow {
        exec_id: r.get(0)?,
        job_id: r.get(1)?,
        version: r.get(2)?,
        status: r.get(3)?,
        target_count: r.get(4)?,
        succeeded: r.get(5)?,
        failed: r.get(6)?,
        skipped: r.get(7)?,
        other: r.get(8)?,
        message: r.get(9)?,
        created_ms: r.get(10)?,
        finished_ms: r.get(11)?,
        title: r.get(12)?,
    })
}

#[derive(Debug, Default, Clone)]
pub struct ExecutionFilter {
    pub job: Option<String>,
    pub status: Option<String>,
    pub since_ms: Option<i64>,
    /// Exclusive upper bound on exec_id (time-ordered): the cursor of the previous page.
    pub before: Option<String>,
    pub limit: i64,
}

pub async fn list_executions<S: Sql>(s: &mut S, f: &ExecutionFilter) -> Result<Vec<ExecutionRow>, DbError> {
    let sql = format!(
        "SELECT {EXECUTION_COLUMNS} FROM executions
         WHERE (CAST(?1 AS TEXT) IS NULL OR job_id = ?1) AND (CAST(?2 AS TEXT) IS NULL OR status = ?2) AND (CAST(?3 AS BIGINT) IS NULL OR created_ms >= ?3)
           AND (CAST(?4 AS TEXT) IS NULL OR exec_id < ?4)
         ORDER BY exec_id DESC LIMIT ?5"
    );
    s.rows(&sql, vals![f.job.clone(), f.status.clone(), f.since_ms, f.before.clone(), f.limit])
        .await?
        .iter()
        .map(execution_row)
        .collect()
}

/// One execution with its per-pc rows and its rollout waves.
pub type ExecutionDetail = (ExecutionRow, Vec<PcRow>, Vec<WaveRow>);

/// One execution; its per-pc rows only when `with_pcs` (10,000 of them are megabytes).
pub async fn get_execution<S: Sql>(
    s: &mut S,
    exec_id: ExecId,
    with_pcs: bool,
) -> Result<Option<ExecutionDetail>, DbError> {
    let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE exec_id = ?1");
    let Some(exec) = opt_row(s, &sql, vals![exec_id]).await? else { return Ok(None) };
    let exec = execution_row(&exec)?;
    if !with_pcs {
        return Ok(Some((exec, Vec::new(), waves_of(s, exec_id).await?)));
    }
    // Expected pcs without a row yet, plus every pc that reported (expected or not).
    let pcs = s
        .rows(
            "SELECT t.pc_id, t.wave, COALESCE(r.status, 'pending'), r.result_id, r.exit_code, r.message, r.stdout, r.stderr,
                    COALESCE(r.truncated, 0), r.attempt, r.started_ms, r.finished_ms, r.skip_reason,
                    (SELECT a.last_seen_ms FROM agents a WHERE a.pc_id = t.pc_id)
             FROM execution_targets t LEFT JOIN execution_results r ON r.exec_id = t.exec_id AND r.pc_id = t.pc_id
             WHERE t.exec_id = ?1
             UNION ALL
             SELECT r.pc_id, NULL, r.status, r.result_id, r.exit_code, r.message, r.stdout, r.stderr, r.truncated, r.attempt,
                    r.started_ms, r.finished_ms, r.skip_reason,
                    (SELECT a.last_seen_ms FROM agents a WHERE a.pc_id = r.pc_id)
             FROM execution_results r
             WHERE r.exec_id = ?1 AND NOT EXISTS (SELECT 1 FROM execution_targets t WHERE t.exec_id = r.exec_id AND t.pc_id = r.pc_id)
             ORDER BY 1",
            vals![exec_id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(PcRow {
                pc_id: r.get(0)?,
                wave: r.get(1)?,
                status: r.get(2)?,
                result_id: r.get(3)?,
                exit_code: r.get(4)?,
                message: r.get(5)?,
                stdout: r.get(6)?,
                stderr: r.get(7)?,
                truncated: r.get(8)?,
                attempt: r.get(9)?,
                started_ms: r.get(10)?,
                finished_ms: r.get(11)?,
                skip_reason: r.get(12)?,
                last_seen_ms: r.get(13)?,
                online: None,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    // A refused command's answer is not a run of this exec (it is listed with the results).
    let is_run = |p: &PcRow| p.result_id.is_none_or(|id| id.is_run_of(exec_id, &p.pc_id));
    let mut pcs: Vec<PcRow> = pcs
        .into_iter()
        .filter_map(|p| match (is_run(&p), p.wave) {
            (true, _) => Some(p),
            // An expected PC whose only row is a refusal has not reported yet.
            (false, Some(wave)) => Some(PcRow::pending(p.pc_id, wave, p.last_seen_ms)),
            (false, None) => None,
        })
        .collect();
    // One row per PC: its own result when there is one.
    pcs.sort_by(|a, b| a.pc_id.cmp(&b.pc_id).then(a.result_id.is_none().cmp(&b.result_id.is_none())));
    pcs.dedup_by(|later, first| later.pc_id == first.pc_id);
    Ok(Some((exec, pcs, waves_of(s, exec_id).await?)))
}

async fn waves_of<S: Sql>(s: &mut S, exec_id: ExecId) -> Result<Vec<WaveRow>, DbError> {
    s.rows(
        // Every execution has a wave 0; alone, it is worth showing only while it waits to go out.
        "SELECT wave, status, due_ms, published_ms FROM rollout_waves w WHERE exec_id = ?1
           AND (w.status = 'pending' OR EXISTS (SELECT 1 FROM rollout_waves x WHERE x.exec_id = ?1 AND x.wave > 0))
         ORDER BY wave",
        vals![exec_id],
    )
    .await?
    .iter()
    .map(|r| Ok(WaveRow { wave: r.get(0)?, status: r.get(1)?, due_ms: r.get(2)?, published_ms: r.get(3)? }))
    .collect()
}

/// Which agents, in which order, which page: the agents list at fleet scale is filtered,
/// sorted and paged in SQL.
#[derive(Debug, Default, Clone)]
pub struct AgentFilter {
    pub pc: Option<String>,
    pub group: Option<String>,
    /// Substring of the pc id or host name (case-insensitive).
    pub text: Option<String>,
    /// `Some(true)`: heartbeat at or after `alive_since_ms`; `Some(false)`: before.
    pub online: Option<bool>,
    pub alive_since_ms: i64,
    pub sort: AgentSort,
    pub descending: bool,
    /// Keyset cursor for the default order (pc id).
    pub after: Option<String>,
    pub offset: i64,
    pub limit: i64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum AgentSort {
    #[default]
    PcId,
    Hostname,
    Version,
    LastSeen,
}

impl AgentSort {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pc_id" => Self::PcId,
            "hostname" => Self::Hostname,
            "agent_version" => Self::Version,
            "last_seen" => Self::LastSeen,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            Self::PcId => "pc_id",
            Self::Hostname => "hostname",
            Self::Version => "agent_version",
            Self::LastSeen => "last_seen_ms",
        }
    }
}

/// One page of agents and how many match in all.
pub async fn list_agents<S: Sql>(s: &mut S, f: &AgentFilter) -> Result<(Vec<AgentRow>, i64), DbError> {
    let d = s.dialect();
    let filter = format!(
        "(CAST(?1 AS TEXT) IS NULL OR {}) AND (CAST(?2 AS TEXT) IS NULL OR pc_id = ?2)
           AND (CAST(?3 AS TEXT) IS NULL OR {} OR {})
           AND (CAST(?4 AS BIGINT) IS NULL OR (?4 = 1 AND last_seen_ms >= ?5) OR (?4 = 0 AND last_seen_ms < ?5))",
        d.json_array_has("groups_json", "?1"),
        d.contains_ci("pc_id", "?3"),
        d.contains_ci("hostname", "?3"),
    );
    let args = vals![f.group.clone(), f.pc.clone(), f.text.clone(), f.online, f.alive_since_ms];
    let total: i64 = scalar(s, &format!("SELECT COUNT(*) FROM agents WHERE {filter}"), args.clone()).await?;
    // The column comes from a closed enum, never from the request.
    let order = format!("{} {}, pc_id", f.sort.column(), if f.descending { "DESC" } else { "ASC" });
    let sql = format!(
        "SELECT pc_id, hostname, os_family, os_name, os_version, arch, agent_version, groups_json, running_jobs, last_seen_ms,
             quarantined_json, update_status, clock_skew_ms
         FROM agents WHERE {filter} AND (CAST(?6 AS TEXT) IS NULL OR pc_id > ?6)
         ORDER BY {order} LIMIT ?7 OFFSET ?8"
    );
    let mut page_args = args;
    page_args.extend(vals![f.after.clone(), f.limit, f.offset]);
    let rows = s
        .rows(&sql, page_args)
        .await?
        .iter()
        .map(|r| {
            let groups: String = r.get(7)?;
            let last_seen_ms: i64 = r.get(9)?;
            Ok(AgentRow {
                pc_id: r.get(0)?,
                hostname: r.get(1)?,
                os_family: r.get(2)?,
                os_name: r.get(3)?,
                os_version: r.get(4)?,
                arch: r.get(5)?,
                agent_version: r.get(6)?,
                groups: serde_json::from_str(&groups).unwrap_or_default(),
                running_jobs: r.get(8)?,
                last_seen_ms,
                online: last_seen_ms >= f.alive_since_ms,
                quarantined: serde_json::from_str(&r.get::<String>(10)?).unwrap_or_default(),
                update_status: r.get(11)?,
                clock_skew_ms: r.get(12)?,
            })
        })
        .collect::<Result<_, DbError>>()?;
    Ok((rows, total))
}

pub async fn unfinished_executions<S: Sql>(s: &mut S, job: &JobId) -> Result<Vec<ExecId>, DbError> {
    s.rows(
        "SELECT exec_id FROM executions WHERE job_id = ?1 AND status IN ('pending', 'running')",
        vals![job],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect()
}

const RESULT_COLUMNS: &str =
    "result_id, exec_id, pc_id, job_id, version, status, exit_code, skip_reason, message, stdout, stderr,
    truncated, attempt, started_ms, finished_ms,
    (SELECT e.title FROM executions e WHERE e.exec_id = execution_results.exec_id), facts_error";

fn result_row(r: &Row) -> Result<ResultRow, DbError> {
    Ok(ResultRow {
        result_id: r.get(0)?,
        exec_id: r.get(1)?,
        pc_id: r.get(2)?,
        job_id: r.get(3)?,
        version: r.get(4)?,
        status: r.get(5)?,
        exit_code: r.get(6)?,
        skip_reason: r.get(7)?,
        message: r.get(8)?,
        stdout: r.get(9)?,
        stderr: r.get(10)?,
        truncated: r.get(11)?,
        attempt: r.get(12)?,
        started_ms: r.get(13)?,
        finished_ms: r.get(14)?,
        title: r.get(15)?,
        facts_error: r.get(16)?,
    })
}

#[derive(Debug, Default, Clone)]
pub struct ResultFilter {
    pub pc: Option<String>,
    pub job: Option<String>,
    pub exec: Option<String>,
    /// A status, or `failed` for every unsuccessful final status.
    pub status: Option<String>,
    pub since_ms: Option<i64>,
    pub before: Option<String>,
    pub limit: i64,
}

pub async fn list_results<S: Sql>(s: &mut S, f: &ResultFilter) -> Result<Vec<ResultRow>, DbError> {
    let sql = format!(
        "SELECT {RESULT_COLUMNS} FROM execution_results
         WHERE (CAST(?1 AS TEXT) IS NULL OR pc_id = ?1) AND (CAST(?2 AS TEXT) IS NULL OR job_id = ?2) AND (CAST(?3 AS TEXT) IS NULL OR exec_id = ?3)
           AND (CAST(?4 AS TEXT) IS NULL OR status = ?4 OR (?4 = 'failed' AND status IN ('failed', 'timed_out', 'killed', 'unknown')))
           AND (CAST(?5 AS BIGINT) IS NULL OR received_ms >= ?5) AND (CAST(?6 AS TEXT) IS NULL OR result_id < ?6)
         ORDER BY result_id DESC LIMIT ?7"
    );
    let args = vals![
        f.pc.clone(),
        f.job.clone(),
        f.exec.clone(),
        f.status.clone(),
        f.since_ms,
        f.before.clone(),
        f.limit
    ];
    s.rows(&sql, args).await?.iter().map(result_row).collect()
}

pub async fn get_result<S: Sql>(s: &mut S, id: ResultId) -> Result<Option<ResultRow>, DbError> {
    let sql = format!("SELECT {RESULT_COLUMNS} FROM execution_results WHERE result_id = ?1");
    opt_row(s, &sql, vals![id]).await?.as_ref().map(result_row).transpose()
}

/// An agent, its latest inventory, and its 20 most recent results.
pub type AgentDetail = (AgentRow, Option<serde_json::Value>, Vec<ResultRow>);

/// The agent counts as online with a heartbeat at or after `alive_since_ms`.
pub async fn get_agent<S: Sql>(
    s: &mut S,
    pc: &PcId,
    alive_since_ms: i64,
) -> Result<Option<AgentDetail>, DbError> {
    let filter = AgentFilter { pc: Some(pc.to_string()), alive_since_ms, limit: 1, ..Default::default() };
    let Some(agent) = list_agents(s, &filter).await?.0.into_iter().next() else { return Ok(None) };
    let inventory: Option<String> =
        match opt_row(s, "SELECT body_json FROM inventory WHERE pc_id = ?1", vals![pc]).await? {
            Some(r) => Some(r.get(0)?),
            None => None,
        };
    let recent =
        list_results(s, &ResultFilter { pc: Some(pc.to_string()), limit: 20, ..Default::default() }).await?;
    Ok(Some((agent, inventory.and_then(|s| serde_json::from_str(&s).ok()), recent)))
}

#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub client: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub before: Option<String>,
    pub limit: i64,
}

pub async fn list_audit<S: Sql>(s: &mut S, f: &AuditFilter) -> Result<Vec<AuditRow>, DbError> {
    let args = vals![
        f.actor.clone(),
        f.action.clone(),
        f.target.clone(),
        f.since_ms,
        f.until_ms,
        f.before.clone(),
        f.limit,
        f.client.clone()
    ];
    s.rows(
        "SELECT id, at_ms, actor, action, target, source, detail_json, client FROM audit_log
         WHERE (CAST(?1 AS TEXT) IS NULL OR actor = ?1) AND (CAST(?2 AS TEXT) IS NULL OR action = ?2 OR action LIKE ?2 || '.%') AND (CAST(?3 AS TEXT) IS NULL OR target = ?3)
           AND (CAST(?4 AS BIGINT) IS NULL OR at_ms >= ?4) AND (CAST(?5 AS BIGINT) IS NULL OR at_ms < ?5) AND (CAST(?6 AS TEXT) IS NULL OR id < ?6)
           AND (CAST(?8 AS TEXT) IS NULL OR client = ?8)
         ORDER BY id DESC LIMIT ?7",
        args,
    )
    .await?
    .iter()
    .map(|r| {
        let detail: String = r.get(6)?;
        Ok(AuditRow {
            id: r.get(0)?,
            at_ms: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            source: r.get(5)?,
            client: r.get(7)?,
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        })
    })
    .collect()
}

/// Which PCs have software whose name contains `name` (any case) and whose version starts with
/// `version`, by name, version and PC; at most `limit`.
pub async fn find_software<S: Sql>(
    s: &mut S,
    name: &str,
    version: Option<&str>,
    limit: i64,
) -> Result<Vec<SoftwareHit>, DbError> {
    // LIKE wildcards in what the operator typed match themselves.
    let literal = |s: &str| s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    let sql = match s.dialect() {
        super::sql::Dialect::Sqlite => {
            "SELECT i.pc_id, json_extract(s.value, '$.name'), COALESCE(json_extract(s.value, '$.version'), ''),
                    COALESCE(json_extract(s.value, '$.publisher'), '')
             FROM inventory i, json_each(i.body_json, '$.software') s
             WHERE json_extract(s.value, '$.name') LIKE '%' || ?1 || '%' ESCAPE '\\'
               AND (?2 IS NULL OR json_extract(s.value, '$.version') LIKE ?2 || '%' ESCAPE '\\')
             ORDER BY 2, 3, 1 LIMIT ?3"
        }
        // SQLite's LIKE ignores ASCII case; ILIKE does here.
        super::sql::Dialect::Postgres => {
            "SELECT i.pc_id, s.value ->> 'name', COALESCE(s.value ->> 'version', ''), COALESCE(s.value ->> 'publisher', '')
             FROM inventory i, jsonb_array_elements(COALESCE(i.body_json::jsonb -> 'software', '[]'::jsonb)) s
             WHERE s.value ->> 'name' ILIKE '%' || CAST(?1 AS TEXT) || '%' ESCAPE '\\'
               AND (CAST(?2 AS TEXT) IS NULL OR s.value ->> 'version' ILIKE CAST(?2 AS TEXT) || '%' ESCAPE '\\')
             ORDER BY s.value ->> 'name' COLLATE \"C\", COALESCE(s.value ->> 'version', '') COLLATE \"C\", i.pc_id LIMIT ?3"
        }
    };
    s.rows(sql, vals![literal(name), version.map(literal), limit])
        .await?
        .iter()
        .map(|r| {
            Ok(SoftwareHit { pc_id: r.get(0)?, name: r.get(1)?, version: r.get(2)?, publisher: r.get(3)? })
        })
        .collect()
}

/// `host_perf_samples` rows of one PC received in `[since_ms, until_ms]`: the newest `limit`,
/// oldest first.
pub async fn host_perf<S: Sql>(
    s: &mut S,
    pc: &PcId,
    since_ms: i64,
    until_ms: i64,
    limit: i64,
) -> Result<Vec<kanade_shared::wire::PerfSample>, DbError> {
    s.rows(
        "SELECT at_ms, cpu_pct, mem_used_bytes, mem_total_bytes, swap_used_bytes, swap_total_bytes, load,
                net_rx_bps, net_tx_bps, disks_json
         FROM host_perf_samples WHERE pc_id = ?1 AND at_ms >= ?2 AND at_ms <= ?3 ORDER BY at_ms DESC LIMIT ?4",
        vals![pc, since_ms, until_ms, limit],
    )
    .await?
    .iter()
    .map(|r| {
        let disks: Vec<kanade_shared::wire::DiskPerf> =
            serde_json::from_str(&r.get::<String>(9)?).unwrap_or_default();
        let total = |f: fn(&kanade_shared::wire::DiskPerf) -> u64| disks.iter().map(f).sum::<u64>() as i64;
        Ok(kanade_shared::wire::PerfSample {
            at: r.get(0)?,
            cpu_pct: r.get(1)?,
            cpu_max_pct: None,
            samples: None,
            disk_read_bytes_per_s: total(|d| d.read_bytes_per_s),
            disk_write_bytes_per_s: total(|d| d.write_bytes_per_s),
            mem_used_bytes: r.get(2)?,
            mem_total_bytes: r.get(3)?,
            swap_used_bytes: r.get(4)?,
            swap_total_bytes: r.get(5)?,
            load: r.get(6)?,
            net_rx_bytes_per_s: r.get(7)?,
            net_tx_bytes_per_s: r.get(8)?,
            disks,
        })
    })
    .collect::<Result<Vec<_>, DbError>>()
    .map(|mut rows| {
        rows.reverse();
        rows
    })
}

/// `GET /api/events`: which observability events, newest first.
#[derive(Debug, Default, Clone)]
pub struct ObsFilter {
    pub pc: Option<String>,
    /// A kind, or a prefix of dotted kinds (`agent` matches `agent.started`); compared as text,
    /// no wildcards.
    pub kind: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// The last row of the previous page: `(at_ms, pc_id, event_id)`.
    pub before: Option<(i64, String, String)>,
    pub limit: i64,
}

/// The timeline: agents' events and the backend's stored ones (`obs_events`), and each run's
/// `job.started` / `job.finished`, read from its `execution_results` row rather than stored a
/// second time (two more rows per result were most of what a result cost the projector). Each
/// source is ordered and cut to the page on its own index, then the pages are merged.
pub async fn obs_events<S: Sql>(
    s: &mut S,
    f: &ObsFilter,
) -> Result<Vec<kanade_shared::wire::ObsEventRow>, DbError> {
    use kanade_shared::wire::obs::{JOB_FINISHED, JOB_STARTED};
    let d = s.dialect();
    let mut params: Vec<super::sql::Value> = Vec::new();
    let mut param = |v: super::sql::Value| {
        params.push(v);
        format!("?{}", params.len())
    };
    let limit = param(f.limit.into());
    let pc = f.pc.clone().map(|pc| param(pc.into()));
    let since = f.since_ms.map(|v| param(v.into()));
    let until = f.until_ms.map(|v| param(v.into()));
    let before = f.before.clone().map(|(at, pc, id)| (param(at.into()), param(pc.into()), param(id.into())));
    let kind = f.kind.clone().map(|k| (param(k.clone().into()), param(format!("{k}.").into())));
    // One source's page: `at` and `event_id` are that source's expressions for them.
    let page = |name: &str, select: &str, from: &str, at: &str, event_id: &str, own: &[&str]| {
        let mut wh: Vec<String> = own.iter().map(|c| (*c).to_owned()).collect();
        if let Some(p) = &pc {
            wh.push(format!("pc_id = {p}"));
        }
        if let Some(p) = &since {
            wh.push(format!("{at} >= {p}"));
        }
        if let Some(p) = &until {
            wh.push(format!("{at} <= {p}"));
        }
        if let Some((b_at, b_pc, b_id)) = &before {
            wh.push(format!(
                "{at} <= {b_at} AND ({at}, {}, {}) < ({b_at}, {}, {})",
                d.bytewise("pc_id"),
                d.bytewise(event_id),
                d.bytewise(b_pc),
                d.bytewise(b_id)
            ));
        }
        let wh = if wh.is_empty() { String::new() } else { format!(" WHERE {}", wh.join(" AND ")) };
        format!(
            "SELECT * FROM (SELECT {select} FROM {from}{wh} ORDER BY {at} DESC, {} DESC, {} DESC LIMIT {limit}) AS {name}",
            d.bytewise("pc_id"),
            d.bytewise(event_id)
        )
    };
    let stored_kind = kind.as_ref().map(|(k, prefix)| {
        format!("(kind = {k} OR substr(kind, 1, length(CAST({prefix} AS TEXT))) = CAST({prefix} AS TEXT))")
    });
    let mut pages = vec![page(
        "stored",
        &format!(
            "{} AS pc_id, {} AS event_id, kind, at_ms, received_ms, exec_id, data_json, CAST(NULL AS TEXT) AS job_id,
             CAST(NULL AS TEXT) AS version, CAST(NULL AS TEXT) AS status, CAST(NULL AS BIGINT) AS exit_code,
             CAST(NULL AS TEXT) AS message, CAST(NULL AS BIGINT) AS started_ms, CAST(NULL AS BIGINT) AS finished_ms,
             CAST(NULL AS BIGINT) AS attempt",
            d.bytewise("pc_id"),
            d.bytewise("event_id")
        ),
        "obs_events",
        "at_ms",
        "event_id",
        &stored_kind.iter().map(String::as_str).collect::<Vec<_>>(),
    )];
    // Each run's events, from its result row: (kind, its time column, its id, what it shows,
    // which rows have one).
    let finished_id = format!("'{JOB_FINISHED}.' || result_id");
    let started_id = format!("'{JOB_STARTED}.' || exec_id || '.1'");
    let derived = [
        (
            JOB_FINISHED,
            "finished_ms",
            finished_id.as_str(),
            "version, status, exit_code, message, started_ms, finished_ms, attempt",
            &["finished_ms IS NOT NULL", "status <> 'running'"][..],
        ),
        (
            JOB_STARTED,
            "started_ms",
            started_id.as_str(),
            "CAST(NULL AS TEXT) AS version, CAST(NULL AS TEXT) AS status, CAST(NULL AS BIGINT) AS exit_code,
             CAST(NULL AS TEXT) AS message, CAST(NULL AS BIGINT) AS started_ms,
             CAST(NULL AS BIGINT) AS finished_ms, CAST(NULL AS BIGINT) AS attempt",
            &["started_ms IS NOT NULL"][..],
        ),
    ];
    for (kind, time, id, shows, has) in derived {
        if f.kind.as_deref().is_some_and(|k| !kind_selects(k, kind)) {
            continue;
        }
        let at = d.least(time, &format!("received_ms + {AHEAD_MS}"));
        pages.push(page(
            time,
            &format!(
                "pc_id, {id} AS event_id, '{kind}' AS kind, {at} AS at_ms, received_ms, exec_id,
                 CAST(NULL AS TEXT) AS data_json, job_id, {shows}"
            ),
            "execution_results",
            &at,
            id,
            has,
        ));
    }
    let sql =
        format!("{} ORDER BY at_ms DESC, pc_id DESC, event_id DESC LIMIT {limit}", pages.join(" UNION ALL "));
    s.rows(&sql, params)
        .await?
        .iter()
        .map(|r| {
            let kind: String = r.get(2)?;
            let data = match r.get::<Option<String>>(6)? {
                Some(stored) => serde_json::from_str(&stored).unwrap_or_default(),
                None if kind == JOB_FINISHED => finished_data(&FinishedRun {
                    job_id: r.get(7)?,
                    version: r.get(8)?,
                    status: r.get(9)?,
                    exit_code: r.get(10)?,
                    message: r.get(11)?,
                    started_ms: r.get(12)?,
                    finished_ms: r.get(13)?,
                    attempt: r.get(14)?,
                }),
                None => {
                    let mut data = serde_json::Map::new();
                    data.insert("job_id".into(), r.get::<String>(7)?.into());
                    data.insert("attempt".into(), 1.into());
                    data
                }
            };
            Ok(kanade_shared::wire::ObsEventRow {
                pc_id: r.get(0)?,
                event_id: r.get(1)?,
                kind,
                at: r.get(3)?,
                received_at: r.get(4)?,
                exec_id: r.get(5)?,
                data,
            })
        })
        .collect()
}

/// Pure: a `kind` filter selects a kind when it is that kind or a dotted prefix of it.
pub fn kind_selects(filter: &str, kind: &str) -> bool {
    kind == filter || kind.strip_prefix(filter).is_some_and(|rest| rest.starts_with('.'))
}

/// What a `job.finished` event shows of its run.
struct FinishedRun {
    job_id: String,
    version: String,
    status: String,
    exit_code: Option<i64>,
    message: Option<String>,
    started_ms: Option<i64>,
    finished_ms: i64,
    attempt: i64,
}

fn finished_data(r: &FinishedRun) -> serde_json::Map<String, serde_json::Value> {
    let mut data = serde_json::Map::new();
    data.insert("job_id".into(), r.job_id.clone().into());
    data.insert("version".into(), r.version.clone().into());
    data.insert("status".into(), r.status.clone().into());
    data.insert("exit_code".into(), r.exit_code.into());
    data.insert("attempt".into(), r.attempt.into());
    if let Some(m) = &r.message {
        data.insert("message".into(), m.chars().take(500).collect::<String>().into());
    }
    if let Some(started) = r.started_ms {
        data.insert("duration_ms".into(), (r.finished_ms - started).into());
    }
    data
}

/// `process_perf_samples` of one PC received in `[since_ms, until_ms]`: the newest `limit`,
/// oldest first.
pub async fn process_perf<S: Sql>(
    s: &mut S,
    pc: &PcId,
    since_ms: i64,
    until_ms: i64,
    limit: i64,
) -> Result<Vec<kanade_shared::wire::ProcessSample>, DbError> {
    s.rows(
        "SELECT at_ms, processes_json FROM process_perf_samples
         WHERE pc_id = ?1 AND at_ms >= ?2 AND at_ms <= ?3 ORDER BY at_ms DESC LIMIT ?4",
        vals![pc, since_ms, until_ms, limit],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(kanade_shared::wire::ProcessSample {
            at: r.get(0)?,
            processes: serde_json::from_str(&r.get::<String>(1)?).unwrap_or_default(),
        })
    })
    .collect::<Result<Vec<_>, DbError>>()
    .map(|mut rows| {
        rows.reverse();
        rows
    })
}

/// How many host samples of one PC were received in `[since_ms, until_ms]` (to choose the
/// resolution that shows the whole range).
pub async fn host_perf_count<S: Sql>(
    s: &mut S,
    pc: &PcId,
    since_ms: i64,
    until_ms: i64,
) -> Result<i64, DbError> {
    s.rows(
        "SELECT COUNT(*) FROM host_perf_samples WHERE pc_id = ?1 AND at_ms >= ?2 AND at_ms <= ?3",
        vals![pc, since_ms, until_ms],
    )
    .await?
    .first()
    .map_or(Ok(0), |r| r.get(0))
}

/// Every check with its PCs counted by status; a status last confirmed before `stale_before_ms`
/// counts as unknown.
pub async fn check_summary<S: Sql>(
    s: &mut S,
    stale_before_ms: i64,
) -> Result<Vec<kanade_shared::wire::CheckSummary>, DbError> {
    s.rows(
        "SELECT check_name,
                SUM(CASE WHEN status = 'pass' AND received_ms >= ?1 THEN 1 ELSE 0 END),
                SUM(CASE WHEN status = 'warn' AND received_ms >= ?1 THEN 1 ELSE 0 END),
                SUM(CASE WHEN status = 'fail' AND received_ms >= ?1 THEN 1 ELSE 0 END),
                SUM(CASE WHEN status NOT IN ('pass', 'warn', 'fail') OR received_ms < ?1 THEN 1 ELSE 0 END)
         FROM check_status GROUP BY check_name ORDER BY check_name",
        vals![stale_before_ms],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(kanade_shared::wire::CheckSummary {
            name: r.get(0)?,
            pass: r.get(1)?,
            warn: r.get(2)?,
            fail: r.get(3)?,
            unknown: r.get(4)?,
        })
    })
    .collect()
}

/// One check's PCs in pc order after `after_pc`, optionally only those in `status` (as shown:
/// stale ones are unknown).
pub async fn check_pcs<S: Sql>(
    s: &mut S,
    name: &str,
    status: Option<&str>,
    stale_before_ms: i64,
    after_pc: Option<&str>,
    limit: i64,
) -> Result<Vec<kanade_shared::wire::CheckPc>, DbError> {
    s.rows(
        "SELECT pc_id, CASE WHEN received_ms < ?2 THEN 'unknown' ELSE status END, detail, since_ms, updated_ms, exec_id,
                received_ms < ?2
         FROM check_status
         WHERE check_name = ?1 AND (CAST(?4 AS TEXT) IS NULL OR pc_id > ?4)
           AND (CAST(?3 AS TEXT) IS NULL OR CASE WHEN received_ms < ?2 THEN 'unknown' ELSE status END = ?3)
         ORDER BY pc_id LIMIT ?5",
        vals![name, stale_before_ms, status, after_pc, limit],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(kanade_shared::wire::CheckPc {
            pc_id: r.get(0)?,
            status: r.get(1)?,
            detail: r.get(2)?,
            since: r.get(3)?,
            updated: r.get(4)?,
            exec_id: r.get(5)?,
            stale: r.get(6)?,
        })
    })
    .collect()
}
