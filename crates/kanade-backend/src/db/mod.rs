//! The backend's store. Handlers, projectors and workers call its named operations; no SQL and
//! no engine type lives outside this module. Two engines: SQLite (embedded, one backend) and
//! Postgres (several backends on one database). Each operation is written once, against
//! [`sql::Sql`]; the engines differ only in how a statement reaches the database.

pub mod accounts;
pub mod adhoc;
pub mod enroll;
pub mod fence;
pub mod freeze;
pub mod groups;
pub mod maintenance;
mod migrate;
pub mod outbox;
pub mod overview;
mod pg_tls;
mod postgres;
pub mod projection;
pub mod queries;
pub mod schedules;
pub mod sql;
mod sqlite;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use kanade_shared::wire::{AuditEvent, ExecResult, Heartbeat, Inventory, StartedEvent};
use kanade_shared::{ExecId, JobId, PcId, ResultId};

use crate::fleet::KnownAgent;
use fence::Fence;
use postgres::{PgSql, Postgres};
use sqlite::Sqlite;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("postgres: {}", pg_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("database returned an unexpected value: {0}")]
    Decode(String),
    #[error("database task failed: {0}")]
    Task(String),
    #[error("{0}")]
    Migration(String),
    /// An enrolment the store refused (nothing of it was written).
    #[error("{0}")]
    Enrol(enroll::Refused),
    #[error(
        "lease {lease}: this backend's term (revision {mine}) ended and a newer one (revision {newest}) has written; nothing was written"
    )]
    Fenced { lease: String, mine: i64, newest: i64 },
}

impl DbError {
    /// Whether the database refused a write for what it holds (a value it cannot store, a
    /// constraint), so writing the same again fails again; not for being unreachable, busy, or
    /// for a schema that does not fit (those pass or need an operator, and skipping would lose
    /// every message).
    pub fn refuses_content(&self) -> bool {
        match self {
            DbError::Postgres(e) => e.code().is_some_and(|c| {
                // 22 data exception, 23 integrity constraint, 54 program limit (a value too big
                // for an index row).
                matches!(&c.code()[..2], "22" | "23" | "54")
            }),
            DbError::Sql(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::ConstraintViolation
                    | rusqlite::ErrorCode::TooBig
                    | rusqlite::ErrorCode::TypeMismatch
            ),
            DbError::Sql(rusqlite::Error::ToSqlConversionFailure(_)) => true,
            _ => false,
        }
    }
}

/// What Postgres said, not only "db error".
pub(crate) fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => error_chain(e),
    }
}

/// An error and its causes on one line: a driver's "error performing TLS handshake" alone
/// does not say that the certificate was not trusted.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

#[derive(Clone)]
enum Engine {
    Sqlite(Sqlite),
    Postgres(Postgres),
}

/// A new execution's targets, taken before its creation is written (which consumes it).
struct Targets {
    exec: projection::targets::Exec,
    pcs: projection::targets::Pcs,
}

impl Targets {
    /// Of `c`, created at `created_ms`.
    fn of(c: &projection::ExecCreated, created_ms: i64) -> Self {
        Self {
            exec: (c.exec_id.clone(), created_ms),
            pcs: c.targets.iter().map(|(pc, _)| pc.clone()).collect(),
        }
    }
}

#[derive(Clone)]
pub struct Db {
    engine: Engine,
    /// Shared by every clone: what the RESULTS projector learned of executions' targets.
    targets: Arc<Mutex<projection::targets::TargetMemo>>,
}

/// Run `$body` (an operation's future, using `$s: &mut impl Sql`) in one write transaction.
/// SQLite runs it on the blocking pool; Postgres on this task, again when two backends'
/// transactions deadlocked or failed to serialize.
macro_rules! write {
    ($db:expr, |$s:ident| $body:expr) => {
        match &$db.engine {
            Engine::Sqlite(e) => e.write(move |$s| sqlite::now($body)?).await,
            Engine::Postgres(pg) => {
                let mut attempt = 0;
                loop {
                    let mut client = pg.client().await?;
                    let tx = client.transaction().await?;
                    let out = {
                        let $s = &mut PgSql::Tx(&tx);
                        $body.await
                    };
                    let out = match out {
                        Ok(v) => tx.commit().await.map(|()| v).map_err(DbError::from),
                        Err(e) => Err(e),
                    };
                    match out {
                        Err(e) if postgres::retryable(&e) && attempt < 5 => attempt += 1,
                        out => break out,
                    }
                }
            }
        }
    };
}

/// Run `$body` on a reader (SQLite) or a pooled connection (Postgres).
macro_rules! read {
    ($db:expr, |$s:ident| $body:expr) => {
        match &$db.engine {
            Engine::Sqlite(e) => e.read(move |$s| sqlite::now($body)?).await,
            Engine::Postgres(pg) => {
                let client = pg.client().await?;
                let $s = &mut PgSql::Client(&client);
                $body.await
            }
        }
    };
}

impl Db {
    fn on(engine: Engine) -> Self {
        Self { engine, targets: Arc::default() }
    }

    /// The embedded engine, on the SQLite file at `path` (made if missing).
    pub fn open(path: &Path) -> Result<Self, DbError> {
        Ok(Self::on(Engine::Sqlite(Sqlite::open(path)?)))
    }

    /// An existing SQLite file, read only, without migrating it (`migrate-to-postgres` reads
    /// the old database this way, so the old binary can still open it).
    pub fn open_read_only(path: &Path) -> Result<Self, DbError> {
        Ok(Self::on(Engine::Sqlite(Sqlite::open_read_only(path)?)))
    }

    /// Postgres at `url` (`postgres://user:pw@host:port/db`).
    pub async fn connect_postgres(url: &str) -> Result<Self, DbError> {
        Ok(Self::on(Engine::Postgres(Postgres::open(url).await?)))
    }

    /// The same database as another process sees it: nothing held in memory.
    #[cfg(test)]
    pub(crate) fn as_another_process(&self) -> Self {
        Self::on(self.engine.clone())
    }

    /// How many targets of `exec`, created at `created_ms`, this process holds in memory.
    #[cfg(test)]
    pub(crate) fn targets_held(&self, exec: kanade_shared::ExecId, created_ms: i64) -> Option<usize> {
        self.targets.lock().unwrap_or_else(|p| p.into_inner()).held(&(exec.to_string(), created_ms))
    }

    /// Whether other backends may share this projection (and so its consumers and duties).
    pub fn shared(&self) -> bool {
        matches!(self.engine, Engine::Postgres(_))
    }

    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite(_) => "sqlite",
            Engine::Postgres(_) => "postgres",
        }
    }

    // --- projection ---

    pub async fn projection_name(&self) -> Result<projection::ProjectionName, DbError> {
        write!(self, |s| projection::projection_name(s))
    }

    /// See [`sqlite::Sqlite::online_backup`]: a consistent copy of a SQLite database file, while
    /// it is in use.
    pub fn sqlite_online_backup(src: &Path, dst: &Path) -> Result<(), DbError> {
        sqlite::Sqlite::online_backup(src, dst)
    }

    /// See [`sqlite::Sqlite::checkpoint`].
    pub fn sqlite_checkpoint(path: &Path) -> Result<(), DbError> {
        sqlite::Sqlite::checkpoint(path)
    }

    /// Start a new projection generation without emptying anything: the next start replays
    /// every stream into what is there (idempotently), so a restored copy catches up on what
    /// happened after it was taken.
    pub async fn replay_streams(&self) -> Result<(), DbError> {
        write!(self, |s| projection::new_generation(s))
    }

    pub async fn wipe_projection(&self) -> Result<(), DbError> {
        write!(self, |s| projection::wipe(s))?;
        self.targets.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }

    pub async fn apply_results(
        &self,
        items: Vec<ExecResult>,
        now: i64,
        fence: Option<Fence>,
    ) -> Result<(), DbError> {
        self.apply_result_rows(projection::ResultRows::new(items, now), now, fence).await
    }

    /// Results whose rows were built already (by the projector, while the batch before was
    /// written).
    pub async fn apply_result_rows(
        &self,
        batch: projection::ResultRows,
        now: i64,
        fence: Option<Fence>,
    ) -> Result<(), DbError> {
        let memo = self.targets.clone();
        // Freed once the database is released, not while the writer holds it (other writers
        // wait on it): 1.3 ms of a 5,000-result batch's ~26 ms.
        let batch = Arc::new(batch);
        let rows = batch.clone();
        let learned = write!(self, |s| async {
            fence::check(s, fence.as_ref()).await?;
            projection::apply_results(s, &rows, now, &memo).await
        })?;
        drop(batch);
        // Committed: what was read and added is now known to be targets.
        let mut memo = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        for (exec_id, targets) in learned {
            memo.learn(exec_id, targets);
        }
        Ok(())
    }

    pub async fn apply_started(
        &self,
        items: Vec<StartedEvent>,
        now: i64,
        fence: Option<Fence>,
    ) -> Result<(), DbError> {
        write!(self, |s| async {
            fence::check(s, fence.as_ref()).await?;
            projection::apply_started(s, &items, now).await
        })
    }

    /// One EVENTS batch: runs' `started` events and local users' notification acknowledgements.
    pub async fn apply_events(
        &self,
        started: Vec<StartedEvent>,
        acks: Vec<kanade_shared::wire::NotifyAck>,
        now: i64,
        fence: Option<Fence>,
    ) -> Result<(), DbError> {
        write!(self, |s| async {
            fence::check(s, fence.as_ref()).await?;
            if !started.is_empty() {
                projection::apply_started(s, &started, now).await?;
            }
            projection::notifications::apply_acks(s, &acks, now).await
        })
    }

    /// Notifications and withdrawals from NOTIFICATIONS.
    pub async fn apply_notifications(
        &self,
        items: Vec<kanade_shared::wire::NotificationMessage>,
        fence: Option<Fence>,
    ) -> Result<(), DbError> {
        write!(self, |s| async {
            fence::check(s, fence.as_ref()).await?;
            projection::notifications::apply_messages(s, &items).await
        })
    }

    /// A notification the API just sent (the projector writes the same row again, harmlessly).
    pub async fn record_notification(&self, n: kanade_shared::wire::Notification) -> Result<(), DbError> {
        write!(self, |s| projection::notifications::insert(s, &n))
    }

    /// Withdraw it; `false` when it already was.
    pub async fn withdraw_notification(
        &self,
        id: kanade_shared::NotificationId,
        at_ms: i64,
        by: String,
    ) -> Result<bool, DbError> {
        write!(self, |s| projection::notifications::withdraw(s, id, at_ms, &by))
    }

    pub async fn notifications(
        &self,
        limit: i64,
    ) -> Result<Vec<projection::notifications::StoredNotification>, DbError> {
        read!(self, |s| projection::notifications::list(s, limit))
    }

    pub async fn notification(
        &self,
        id: kanade_shared::NotificationId,
    ) -> Result<Option<projection::notifications::StoredNotification>, DbError> {
        read!(self, |s| projection::notifications::get(s, id))
    }

    pub async fn notification_acks(
        &self,
        ids: Vec<kanade_shared::NotificationId>,
    ) -> Result<
        std::collections::BTreeMap<kanade_shared::NotificationId, Vec<projection::notifications::Ack>>,
        DbError,
    > {
        read!(self, |s| projection::notifications::acks(s, &ids))
    }

    pub async fn apply_audit(
        &self,
        items: Vec<AuditEvent>,
        now: i64,
        fence: Option<Fence>,
    ) -> Result<(), DbError> {
        write!(self, |s| async {
            fence::check(s, fence.as_ref()).await?;
            projection::apply_audit(s, &items, now).await
        })
    }

    pub async fn apply_inventory(&self, items: Vec<Inventory>, fence: Option<Fence>) -> Result<(), DbError> {
        write!(self, |s| async {
            fence::check(s, fence.as_ref()).await?;
            projection::apply_inventory(s, &items).await
        })
    }

    /// Record a lease term as the newest to write here; whether it is (see [`fence::claim`]).
    pub async fn claim_fence(&self, f: Fence) -> Result<bool, DbError> {
        write!(self, |s| fence::claim(s, &f))
    }

    /// See [`fence::take_over`]; returns the revision it replaced.
    pub async fn take_over_fence(&self, f: Fence) -> Result<i64, DbError> {
        write!(self, |s| async {
            let before = fence::newest(s, &f.lease).await?;
            fence::take_over(s, &f).await?;
            Ok(before)
        })
    }

    pub async fn apply_host_perf(
        &self,
        samples: Vec<(i64, kanade_shared::wire::HostPerf)>,
    ) -> Result<(), DbError> {
        write!(self, |s| projection::apply_host_perf(s, &samples))
    }

    /// Agents' observability events from OBS.
    pub async fn apply_obs(
        &self,
        items: Vec<kanade_shared::wire::ObsEvent>,
        now: i64,
        fence: Option<Fence>,
    ) -> Result<(), DbError> {
        write!(self, |s| async {
            fence::check(s, fence.as_ref()).await?;
            projection::obs::apply_agent_events(s, &items, now).await
        })
    }

    /// `agent.offline` for PCs silent since their last beat (`(pc, last_seen_ms)`).
    pub async fn record_offline(
        &self,
        silent: Vec<(PcId, i64)>,
        alive_window_ms: i64,
    ) -> Result<(), DbError> {
        if silent.is_empty() {
            return Ok(());
        }
        write!(self, |s| projection::obs::record_offline(s, &silent, alive_window_ms, now_ms()))
    }

    pub async fn check_summary(
        &self,
        stale_before_ms: i64,
    ) -> Result<Vec<kanade_shared::wire::CheckSummary>, DbError> {
        read!(self, |s| queries::check_summary(s, stale_before_ms))
    }

    pub async fn check_pcs(
        &self,
        name: String,
        status: Option<String>,
        stale_before_ms: i64,
        after_pc: Option<String>,
        limit: i64,
    ) -> Result<Vec<kanade_shared::wire::CheckPc>, DbError> {
        read!(self, |s| queries::check_pcs(
            s,
            &name,
            status.as_deref(),
            stale_before_ms,
            after_pc.as_deref(),
            limit
        ))
    }

    /// An admin's ad-hoc read-only query (already through `adhoc::check`).
    pub async fn adhoc_query(
        &self,
        sql: String,
        max_rows: usize,
        limit: std::time::Duration,
    ) -> Result<adhoc::Outcome, adhoc::QueryError> {
        match &self.engine {
            Engine::Sqlite(e) => e.adhoc(sql, max_rows, limit).await,
            Engine::Postgres(pg) => {
                let client = pg.client().await?;
                adhoc::postgres(&client, &sql, max_rows, limit).await
            }
        }
    }

    /// Problems for `specs` naming tables that exist defined otherwise.
    pub async fn facts_redefinitions(
        &self,
        specs: Vec<kanade_shared::manifest::outputs::ExplodeSpec>,
    ) -> Result<Vec<String>, DbError> {
        read!(self, |s| projection::facts::redefinitions(s, &specs))
    }

    /// Drop a facts table; `false` when there is none of that name.
    pub async fn drop_fact_table(&self, name: String) -> Result<bool, DbError> {
        write!(self, |s| projection::facts::drop_table(s, &name))
    }

    pub async fn fact_documents(&self, pc: PcId) -> Result<Vec<kanade_shared::wire::FactDocument>, DbError> {
        read!(self, |s| projection::facts::documents(s, pc.as_str()))
    }

    /// Forget a check's statuses; how many PCs had one.
    pub async fn forget_check(&self, name: String) -> Result<u64, DbError> {
        write!(self, |s| projection::checks::forget(s, &name))
    }

    pub async fn fact_table(&self, name: String) -> Result<Option<kanade_shared::wire::FactTable>, DbError> {
        read!(self, |s| projection::facts::table(s, &name))
    }

    pub async fn fact_tables(&self) -> Result<Vec<kanade_shared::wire::FactTable>, DbError> {
        read!(self, |s| projection::facts::tables(s))
    }

    pub async fn fact_rows(
        &self,
        table: kanade_shared::wire::FactTable,
        pc: Option<String>,
        filters: Vec<(String, sql::Value)>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, DbError> {
        read!(self, |s| projection::facts::page(s, &table, pc.as_deref(), &filters, limit, offset))
    }

    /// Observability events, newest first (see [`queries::obs_events`]).
    pub async fn obs_events(
        &self,
        filter: queries::ObsFilter,
    ) -> Result<Vec<kanade_shared::wire::ObsEventRow>, DbError> {
        read!(self, |s| queries::obs_events(s, &filter))
    }

    pub async fn apply_process_perf(
        &self,
        samples: Vec<(i64, kanade_shared::wire::ProcessPerf)>,
    ) -> Result<(), DbError> {
        write!(self, |s| projection::apply_process_perf(s, &samples))
    }

    pub async fn host_perf_count(&self, pc: PcId, since_ms: i64, until_ms: i64) -> Result<i64, DbError> {
        read!(self, |s| queries::host_perf_count(s, &pc, since_ms, until_ms))
    }

    /// One PC's process samples in `[since_ms, until_ms]`, oldest first.
    pub async fn process_perf(
        &self,
        pc: PcId,
        since_ms: i64,
        until_ms: i64,
        limit: i64,
    ) -> Result<Vec<kanade_shared::wire::ProcessSample>, DbError> {
        read!(self, |s| queries::process_perf(s, &pc, since_ms, until_ms, limit))
    }

    /// One PC's host performance in `[since_ms, until_ms]`, oldest first: every sample
    /// (`rollup_ms` `None`) or one averaged point per rollup bucket of that size.
    pub async fn host_perf(
        &self,
        pc: PcId,
        since_ms: i64,
        until_ms: i64,
        limit: i64,
        rollup_ms: Option<i64>,
    ) -> Result<Vec<kanade_shared::wire::PerfSample>, DbError> {
        match rollup_ms {
            None => read!(self, |s| queries::host_perf(s, &pc, since_ms, until_ms, limit)),
            Some(res) => read!(self, |s| projection::rollups::read(s, &pc, res, since_ms, until_ms, limit)),
        }
    }

    /// Heartbeats received at `now`; a beat after more than `alive_window_ms` of silence also
    /// records the PC's `agent.offline` / `agent.online` events.
    pub async fn apply_heartbeats(
        &self,
        beats: Vec<Heartbeat>,
        now: i64,
        alive_window_ms: i64,
    ) -> Result<(), DbError> {
        write!(self, |s| projection::apply_heartbeats(s, &beats, now, alive_window_ms))
    }

    pub async fn name_adhoc_execution(&self, exec_id: ExecId, title: String) -> Result<(), DbError> {
        write!(self, |s| projection::name_adhoc_execution(s, exec_id, &title))
    }

    /// A new execution (its row, targets and waves), as its `exec.create` event describes it.
    pub async fn insert_execution(
        &self,
        created: projection::ExecCreated,
        created_by: String,
        now: i64,
    ) -> Result<(), DbError> {
        let targets = Targets::of(&created, now);
        write!(self, |s| projection::insert_created(
            s,
            &created,
            &created_by,
            now,
            projection::FirstWave::Published
        ))?;
        self.hold(targets);
        Ok(())
    }

    /// [`insert_execution`](Self::insert_execution) and its audit event in the outbox, in one
    /// transaction, for the request that publishes wave 0 next (or, if it dies first, the
    /// dispatcher from `publish_by` on).
    pub async fn insert_execution_audited(
        &self,
        created: projection::ExecCreated,
        created_by: String,
        now: i64,
        publish_by: i64,
        audit: outbox::Outgoing,
    ) -> Result<(), DbError> {
        let first = projection::FirstWave::PublishBy(publish_by);
        let targets = Targets::of(&created, now);
        write!(self, |s| async {
            projection::insert_created(s, &created, &created_by, now, first).await?;
            outbox::put(s, &audit, now).await
        })?;
        self.hold(targets);
        Ok(())
    }

    /// A new execution's targets, once committed: its results find them in memory, so the
    /// first batch of a broadcast's results does not read them all back.
    fn hold(&self, t: Targets) {
        self.targets.lock().unwrap_or_else(|p| p.into_inner()).learn(t.exec, t.pcs);
    }

    /// [`ended_early`](Self::ended_early) and its audit event in the outbox, in one transaction.
    pub async fn ended_early_audited(
        &self,
        step: projection::ExecStep,
        how: projection::Ended,
        at: i64,
        audit: outbox::Outgoing,
    ) -> Result<(), DbError> {
        write!(self, |s| async {
            projection::ended_early(s, &step, how, at).await?;
            outbox::put(s, &audit, at).await
        })
    }

    pub async fn audit_sent(&self, id: String) -> Result<(), DbError> {
        write!(self, |s| outbox::sent(s, &id))
    }

    pub async fn audit_due(&self, before_ms: i64, limit: i64) -> Result<Vec<outbox::Outgoing>, DbError> {
        read!(self, |s| outbox::due(s, before_ms, limit))
    }

    pub async fn audit_refused(&self, id: String) -> Result<(), DbError> {
        write!(self, |s| outbox::refused(s, &id, now_ms()))
    }

    pub async fn ended_early(
        &self,
        step: projection::ExecStep,
        how: projection::Ended,
        at: i64,
    ) -> Result<(), DbError> {
        write!(self, |s| projection::ended_early(s, &step, how, at))
    }

    /// Wave 0 of the execution created at `created` went out (the request that stored it).
    pub async fn first_wave_published(&self, exec_id: ExecId, created: i64) -> Result<(), DbError> {
        let exec_id = exec_id.to_string();
        write!(self, |s| projection::first_wave_published(s, &exec_id, created, now_ms()))
    }

    pub async fn wave_published(&self, step: projection::ExecStep, at: i64, now: i64) -> Result<(), DbError> {
        write!(self, |s| projection::wave_published(s, &step, at, now))
    }

    // --- fleet and executions ---

    pub async fn known_agents(&self) -> Result<Vec<KnownAgent>, DbError> {
        read!(self, |s| queries::known_agents(s))
    }

    pub async fn agent_presence(&self, pc: PcId) -> Result<Option<(i64, Vec<String>)>, DbError> {
        read!(self, |s| queries::agent_presence(s, &pc))
    }

    pub async fn agent_update_states(&self) -> Result<Vec<queries::AgentUpdateState>, DbError> {
        read!(self, |s| queries::agent_update_states(s))
    }

    pub async fn agents_page(
        &self,
        f: queries::AgentFilter,
    ) -> Result<(Vec<queries::AgentRow>, i64), DbError> {
        read!(self, |s| queries::list_agents(s, &f))
    }

    pub async fn agent(
        &self,
        pc: PcId,
        alive_since_ms: i64,
    ) -> Result<Option<queries::AgentDetail>, DbError> {
        read!(self, |s| queries::get_agent(s, &pc, alive_since_ms))
    }

    pub async fn executions(
        &self,
        f: queries::ExecutionFilter,
    ) -> Result<Vec<queries::ExecutionRow>, DbError> {
        read!(self, |s| queries::list_executions(s, &f))
    }

    pub async fn execution(
        &self,
        exec_id: ExecId,
        with_pcs: bool,
    ) -> Result<Option<queries::ExecutionDetail>, DbError> {
        read!(self, |s| queries::get_execution(s, exec_id, with_pcs))
    }

    pub async fn unfinished_executions(&self, job: JobId) -> Result<Vec<ExecId>, DbError> {
        read!(self, |s| queries::unfinished_executions(s, &job))
    }

    pub async fn results(&self, f: queries::ResultFilter) -> Result<Vec<queries::ResultRow>, DbError> {
        read!(self, |s| queries::list_results(s, &f))
    }

    pub async fn result(&self, id: ResultId) -> Result<Option<queries::ResultRow>, DbError> {
        read!(self, |s| queries::get_result(s, id))
    }

    pub async fn audit(&self, f: queries::AuditFilter) -> Result<Vec<queries::AuditRow>, DbError> {
        read!(self, |s| queries::list_audit(s, &f))
    }

    pub async fn overview(&self, since: i64, alive_since: i64) -> Result<overview::Overview, DbError> {
        read!(self, |s| overview::overview(s, since, alive_since))
    }

    pub async fn find_software(
        &self,
        name: String,
        version: Option<String>,
        limit: i64,
    ) -> Result<Vec<queries::SoftwareHit>, DbError> {
        read!(self, |s| queries::find_software(s, &name, version.as_deref(), limit))
    }

    pub async fn due_waves(&self, now: i64) -> Result<Vec<queries::DueWave>, DbError> {
        read!(self, |s| queries::due_waves(s, now))
    }

    pub async fn wave_still_due(&self, exec_id: ExecId, wave: i64) -> Result<bool, DbError> {
        read!(self, |s| queries::wave_still_due(s, exec_id, wave))
    }

    // --- cleanup and presence ---

    pub async fn quiet_executions(&self, before: i64) -> Result<Vec<maintenance::Quiet>, DbError> {
        read!(self, |s| maintenance::quiet_executions(s, before))
    }

    pub async fn prune(&self, cut: maintenance::Cutoffs) -> Result<maintenance::Pruned, DbError> {
        write!(self, |s| maintenance::prune(s, &cut))
    }

    pub async fn last_seen(&self) -> Result<Vec<(PcId, i64)>, DbError> {
        read!(self, |s| maintenance::last_seen(s))
    }

    // --- schedules ---

    pub async fn schedule_state(&self, id: String) -> Result<Option<schedules::State>, DbError> {
        read!(self, |s| schedules::state(s, &id))
    }

    pub async fn schedule_outcomes(
        &self,
        id: String,
        since: i64,
    ) -> Result<(Option<schedules::State>, BTreeMap<String, i64>), DbError> {
        read!(self, |s| async {
            let state = schedules::state(s, &id).await?;
            Ok((state, schedules::outcomes_since(s, &id, since).await?))
        })
    }

    pub async fn schedule_history(&self, id: String) -> Result<schedules::History, DbError> {
        read!(self, |s| schedules::history(s, &id))
    }

    pub async fn record_tick(
        &self,
        id: String,
        tick: i64,
        fired: Option<(i64, String)>,
        outcome: String,
    ) -> Result<(), DbError> {
        write!(self, |s| schedules::record_tick(
            s,
            &id,
            tick,
            fired.as_ref().map(|(at, exec)| (*at, exec.as_str())),
            &outcome
        ))
    }

    pub async fn forget_schedule(&self, id: String) -> Result<(), DbError> {
        write!(self, |s| schedules::forget(s, &id))
    }

    // --- accounts ---

    pub async fn user(&self, name: String) -> Result<Option<accounts::User>, DbError> {
        read!(self, |s| accounts::user(s, &name))
    }

    pub async fn users(&self) -> Result<Vec<accounts::User>, DbError> {
        read!(self, |s| accounts::users(s))
    }

    pub async fn user_count(&self) -> Result<i64, DbError> {
        read!(self, |s| accounts::user_count(s))
    }

    pub async fn active_admins(&self) -> Result<i64, DbError> {
        read!(self, |s| accounts::active_admins(s))
    }

    /// Insert a user; false when the name is taken.
    pub async fn create_user(
        &self,
        name: String,
        hash: String,
        role: String,
        must_change: bool,
        now: i64,
    ) -> Result<bool, DbError> {
        write!(self, |s| accounts::create_user(s, &name, &hash, &role, must_change, now))
    }

    pub async fn set_password(
        &self,
        name: String,
        hash: String,
        must_change: bool,
        now: i64,
    ) -> Result<bool, DbError> {
        write!(self, |s| accounts::set_password(s, &name, &hash, must_change, now))
    }

    pub async fn update_user(
        &self,
        name: String,
        role: Option<String>,
        disabled: Option<bool>,
        password_hash: Option<String>,
        now: i64,
    ) -> Result<bool, DbError> {
        write!(self, |s| accounts::update_user(
            s,
            &name,
            role.as_deref(),
            disabled,
            password_hash.as_deref(),
            now
        ))
    }

    pub async fn delete_user(&self, name: String) -> Result<bool, DbError> {
        write!(self, |s| accounts::delete_user(s, &name))
    }

    pub async fn dynamic_groups(&self) -> Result<Vec<groups::DynamicGroup>, DbError> {
        read!(self, |s| groups::list(s))
    }

    pub async fn dynamic_group(&self, name: String) -> Result<Option<groups::DynamicGroup>, DbError> {
        read!(self, |s| groups::get(s, &name))
    }

    pub async fn create_dynamic_group(
        &self,
        name: String,
        rule: String,
        by: String,
        now: i64,
    ) -> Result<bool, DbError> {
        write!(self, |s| groups::create(s, &name, &rule, &by, now))
    }

    pub async fn set_dynamic_rule(&self, name: String, rule: String, now: i64) -> Result<bool, DbError> {
        write!(self, |s| groups::set_rule(s, &name, &rule, now))
    }

    pub async fn delete_dynamic_group(&self, name: String) -> Result<Option<Vec<PcId>>, DbError> {
        write!(self, |s| groups::delete(s, &name))
    }

    pub async fn dynamic_members(&self, name: String) -> Result<Vec<(PcId, i64)>, DbError> {
        read!(self, |s| groups::members(s, &name))
    }

    pub async fn set_dynamic_members(
        &self,
        name: String,
        pcs: std::collections::BTreeSet<PcId>,
        now: i64,
    ) -> Result<(Vec<PcId>, Vec<PcId>), DbError> {
        write!(self, |s| groups::set_members(s, &name, &pcs, now))
    }

    pub async fn dynamic_groups_of(&self, pc: PcId) -> Result<Vec<String>, DbError> {
        read!(self, |s| groups::groups_of(s, &pc))
    }

    pub async fn rule_problems(
        &self,
        fields: Vec<kanade_shared::rule::Field>,
    ) -> Result<Vec<String>, DbError> {
        read!(self, |s| groups::unknown_fields(s, &fields))
    }

    pub async fn rule_inputs(
        &self,
        fields: Vec<kanade_shared::rule::Field>,
    ) -> Result<groups::RuleInputs, DbError> {
        read!(self, |s| groups::inputs(s, &fields))
    }

    pub async fn mfa(&self, name: String) -> Result<Option<accounts::Mfa>, DbError> {
        read!(self, |s| accounts::mfa(s, &name))
    }

    pub async fn begin_mfa(&self, name: String, secret: String, now: i64) -> Result<bool, DbError> {
        write!(self, |s| accounts::begin_mfa(s, &name, &secret, now))
    }

    pub async fn enable_mfa(
        &self,
        name: String,
        step: i64,
        recovery_sha256: Vec<String>,
        now: i64,
    ) -> Result<bool, DbError> {
        write!(self, |s| accounts::enable_mfa(s, &name, step, &recovery_sha256, now))
    }

    pub async fn use_mfa_step(&self, name: String, step: i64) -> Result<bool, DbError> {
        write!(self, |s| accounts::use_step(s, &name, step))
    }

    pub async fn use_recovery_code(&self, name: String, sha256: String, now: i64) -> Result<bool, DbError> {
        write!(self, |s| accounts::use_recovery(s, &name, &sha256, now))
    }

    pub async fn delete_mfa(&self, name: String) -> Result<bool, DbError> {
        write!(self, |s| accounts::delete_mfa(s, &name))
    }

    pub async fn token(&self, id: String) -> Result<Option<accounts::Token>, DbError> {
        read!(self, |s| accounts::token(s, &id))
    }

    pub async fn tokens(&self) -> Result<Vec<accounts::Token>, DbError> {
        read!(self, |s| accounts::tokens(s))
    }

    pub async fn create_token(&self, t: accounts::Token) -> Result<bool, DbError> {
        write!(self, |s| accounts::create_token(s, &t))
    }

    /// The fleet freeze window, if one is set (past, current or future).
    pub async fn freeze(&self) -> Result<Option<kanade_shared::wire::freeze::Freeze>, DbError> {
        read!(self, |s| freeze::get(s))
    }

    pub async fn set_freeze(&self, f: kanade_shared::wire::freeze::Freeze) -> Result<(), DbError> {
        write!(self, |s| freeze::set(s, &f))
    }

    /// Returns whether a freeze was set.
    pub async fn clear_freeze(&self) -> Result<bool, DbError> {
        write!(self, |s| freeze::clear(s))
    }

    /// The secret `name` all backends of this database share (`fresh` if it is the first ask).
    pub async fn shared_secret(&self, name: String, fresh: String) -> Result<String, DbError> {
        write!(self, |s| accounts::shared_secret(s, &name, &fresh))
    }

    pub async fn revoke_token(&self, id: String, now: i64) -> Result<bool, DbError> {
        write!(self, |s| accounts::revoke_token(s, &id, now))
    }

    /// A new token and its audit event (in the outbox), in one transaction.
    pub async fn create_enroll_token(
        &self,
        id: String,
        sha256: String,
        by: String,
        now_ms: i64,
        spec: kanade_shared::wire::enroll::TokenSpec,
        audit: outbox::Outgoing,
    ) -> Result<(), DbError> {
        write!(self, |s| enroll::create_token(s, &id, &sha256, &by, now_ms, &spec, &audit))
    }

    pub async fn enroll_tokens(&self) -> Result<Vec<enroll::StoredToken>, DbError> {
        read!(self, |s| enroll::tokens(s))
    }

    pub async fn enroll_token_by_hash(&self, sha256: String) -> Result<Option<enroll::StoredToken>, DbError> {
        read!(self, |s| enroll::token_by_hash(s, &sha256))
    }

    pub async fn revoke_enroll_token(
        &self,
        id: String,
        now_ms: i64,
        audit: outbox::Outgoing,
    ) -> Result<bool, DbError> {
        write!(self, |s| enroll::revoke_token(s, &id, now_ms, &audit))
    }

    pub async fn enrol(
        &self,
        token_sha256: String,
        pc: PcId,
        secret_sha256: String,
        now: time::OffsetDateTime,
        audit: outbox::Outgoing,
    ) -> Result<Result<kanade_shared::wire::enroll::TokenInfo, enroll::Refused>, DbError> {
        match write!(self, |s| enroll::enrol(s, &token_sha256, &pc, &secret_sha256, now, &audit)) {
            Ok(t) => Ok(Ok(t)),
            Err(DbError::Enrol(refused)) => Ok(Err(refused)),
            Err(e) => Err(e),
        }
    }

    pub async fn authorize_agent(
        &self,
        pc: PcId,
        secret_sha256: String,
        server_id: String,
        client_id: u64,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        write!(self, |s| enroll::authorize(s, &pc, &secret_sha256, &server_id, client_id, now_ms))
    }

    pub async fn revoke_agent_credentials(
        &self,
        pc: PcId,
        by: String,
        now_ms: i64,
        audit: outbox::Outgoing,
    ) -> Result<enroll::Revoked, DbError> {
        write!(self, |s| enroll::revoke(s, &pc, &by, now_ms, &audit))
    }
}

/// What a database holds that the streams cannot rebuild: accounts with their second factors,
/// API tokens, the scheduler's bookkeeping, dynamic groups' rules, enrolment tokens and agents'
/// broker credentials.
#[derive(Debug, Default)]
pub struct KeptState {
    pub users: Vec<accounts::User>,
    pub mfa: Vec<accounts::Mfa>,
    pub tokens: Vec<accounts::Token>,
    pub schedules: Vec<(String, schedules::State)>,
    /// Dynamic groups' rules (their members are recomputed by the next pass).
    pub groups: Vec<groups::DynamicGroup>,
    pub enroll_tokens: Vec<enroll::StoredToken>,
    /// Enrolled agents' broker credentials (hashes): without them no enrolled agent connects.
    pub credentials: Vec<enroll::Credentials>,
}

/// How many of each kind a copy added, and how many the target already had.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub users: (usize, usize),
    pub mfa: (usize, usize),
    pub tokens: (usize, usize),
    pub schedules: (usize, usize),
    pub groups: (usize, usize),
    pub enroll_tokens: (usize, usize),
    pub credentials: (usize, usize),
}

impl Db {
    pub async fn kept_state(&self) -> Result<KeptState, DbError> {
        read!(self, |s| async {
            Ok(KeptState {
                users: accounts::users(s).await?,
                mfa: accounts::all_mfa(s).await?,
                tokens: accounts::tokens(s).await?,
                schedules: schedules::all_states(s).await?,
                groups: groups::list(s).await?,
                enroll_tokens: enroll::tokens(s).await?,
                credentials: enroll::all_credentials(s).await?,
            })
        })
    }

    /// Add `kept` in one transaction; rows the target already has (same name or id) stay as
    /// they are.
    pub async fn restore_kept_state(&self, kept: KeptState) -> Result<Copied, DbError> {
        write!(self, |s| async {
            let mut c = Copied::default();
            let count =
                |slot: &mut (usize, usize), added: bool| if added { slot.0 += 1 } else { slot.1 += 1 };
            for u in &kept.users {
                count(&mut c.users, accounts::put_user(s, u).await?);
            }
            for m in &kept.mfa {
                count(&mut c.mfa, accounts::put_mfa(s, m).await?);
            }
            for t in &kept.tokens {
                count(&mut c.tokens, accounts::put_token(s, t).await?);
            }
            for (id, st) in &kept.schedules {
                count(&mut c.schedules, schedules::put_state(s, id, st).await?);
            }
            for g in &kept.groups {
                count(&mut c.groups, groups::create(s, &g.name, &g.rule, &g.created_by, g.created_ms).await?);
            }
            for t in &kept.enroll_tokens {
                count(&mut c.enroll_tokens, enroll::put_token(s, t).await?);
            }
            for cr in &kept.credentials {
                count(&mut c.credentials, enroll::put_credentials(s, cr).await?);
            }
            Ok(c)
        })
    }
}

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The time `ms` epoch milliseconds name (the epoch itself for a value out of range).
pub fn ms_ts(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

pub fn ts_ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}
