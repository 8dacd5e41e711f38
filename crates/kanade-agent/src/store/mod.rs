//! The agent's durable state: admission ledger and result outbox in one SQLite file.
//!
//! Invariants kept here:
//! - one row per `exec_id`; a second command with the same exec_id and the same fingerprint is a
//!   duplicate (acked, not run), with a different fingerprint a conflict (refused, not run);
//! - a run is marked `running` before its process is spawned, and a `running` row found at start
//!   is never relaunched: [`Store::recover`] turns it into an `unknown` result;
//! - finishing a run writes the ledger state and the outbox row in one transaction, so a crash
//!   can never leave a finished run without a result to send;
//! - an outbox row is deleted only after the broker acked it. The delete rides on the next write
//!   that queues a message (a run's start or end, an event) or [`Store::settle`] rather than a
//!   commit of its own: a
//!   crash before then sends the message again under the same `Nats-Msg-Id`, which the broker
//!   and the projection drop as a duplicate, and back-to-back runs cost two synchronous commits
//!   each instead of three, and fewer WAL frames.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use kanade_shared::ExecId;

mod wal_batch;

#[derive(Debug, thiserror::Error)]
#[error("agent store: {0}")]
pub struct StoreError(#[from] rusqlite::Error);

impl StoreError {
    /// Another process holds the store: an agent already running on this data dir.
    pub fn in_use(&self) -> bool {
        self.0.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
    }
}

/// What the ledger says about an incoming command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// First sight of this exec: recorded, to be run.
    New,
    /// Seen before with the same fingerprint: ack and drop.
    Duplicate,
    /// Seen before with different content: refuse, never run.
    Conflict,
}

/// The pure admission rule.
pub fn decide_admission(existing_fingerprint: Option<&str>, fingerprint: &str) -> Admission {
    match existing_fingerprint {
        None => Admission::New,
        Some(fp) if fp == fingerprint => Admission::Duplicate,
        Some(_) => Admission::Conflict,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Admitted,
    Running,
    Done,
}

impl RunState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Admitted => "admitted",
            Self::Running => "running",
            Self::Done => "done",
        }
    }
}

/// A message waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub seq: i64,
    pub msg_id: String,
    pub subject: String,
    pub payload: Vec<u8>,
}

/// A run that was admitted but had not started when the agent stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub subject: String,
    pub command: Vec<u8>,
}

/// A run that had started but not finished when the agent stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    pub exec_id: String,
    pub command: Vec<u8>,
    pub started_at_ms: Option<i64>,
}

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Open>>,
    /// `meta` as read or written through this handle: the fleet view cached per job is looked
    /// at for every command, and a read is a transaction with its file locks.
    meta: Arc<Mutex<std::collections::HashMap<String, Option<String>>>>,
}

/// The connection, and the outbox rows the broker acked whose delete has not committed yet.
struct Open {
    conn: Connection,
    /// Left out of every outbox read; deleted by the next write that queues a message, at most
    /// [`UNSETTLED_MAX`] of them before a commit of their own.
    acked: Vec<i64>,
    /// The outbox as a read would return it (every row not in `acked`, oldest first), when that
    /// is known without reading: learnt from a read that saw the whole table, then kept by
    /// every write that queues or acks. A run's result is then handed out without a query (a
    /// read transaction of its own, about a third of what its `finish` costs). `None` after
    /// any write that failed, and once it would hold more than [`KNOWN_MAX`] rows or
    /// [`KNOWN_MAX_BYTES`]: a backlog (the broker away for days) is read from the table.
    known: Option<Vec<Outgoing>>,
}

const KNOWN_MAX: usize = 256;
const KNOWN_MAX_BYTES: usize = 1 << 20;

/// Acked rows kept back from their delete at most. An outbox read asks for this many rows more
/// than it hands out, so a full page of waiting messages is never hidden behind acked ones.
const UNSETTLED_MAX: usize = 64;

/// Statements kept prepared (rusqlite keeps 16 by default; the store has more than that, and a
/// re-prepared statement is parsed again).
const PREPARED: usize = 64;

// Every page a commit touches is written to the WAL again, so the schema keeps what a command
// changes small: no index on `ledger.state` (only start-up reads by state, and a scan of three
// weeks of runs is cheap), no AUTOINCREMENT on the outbox (it rewrites `sqlite_sequence` on
// every insert; a plain rowid is always above every queued row, which is all the order needs),
// and a rowid ledger: its leaf keeps a ~500-byte command inline, where a WITHOUT ROWID leaf on
// 1 KiB pages keeps at most ~230 bytes of a row and puts the rest on an overflow page, which
// finishing the run (an UPDATE rewrites the whole row) would free and write again.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger (
    exec_id      TEXT NOT NULL PRIMARY KEY,
    request_id   TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    subject      TEXT NOT NULL,
    command      BLOB NOT NULL,
    state        TEXT NOT NULL,
    admitted_at  INTEGER NOT NULL,
    started_at   INTEGER,
    finished_at  INTEGER
);
DROP INDEX IF EXISTS ledger_state;
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, msg_id TEXT NOT NULL UNIQUE,
                                   subject TEXT NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notifications (
    id           TEXT PRIMARY KEY,
    message      BLOB,
    received_ms  INTEGER NOT NULL,
    expires_ms   INTEGER,
    withdrawn    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notification_acks (
    id           TEXT NOT NULL,
    user_name    TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    PRIMARY KEY (id, user_name)
) WITHOUT ROWID;
";

/// How long a withdrawal that arrived before its notification (two subjects, two paths) is
/// remembered: as long as NOTIFICATIONS could still hand the notification over.
const TOMBSTONE_MS: i64 = 90 * 86_400_000;

/// A notification this PC keeps for its users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptNotification {
    /// The `Notification` as it came from the broker.
    pub message: Vec<u8>,
    pub received_ms: i64,
    /// Who on this PC acknowledged it, and when.
    pub acks: Vec<(String, i64)>,
}

/// What a local user's acknowledgement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// Recorded, and the acknowledgement queued for the backend in the same transaction.
    Acked,
    /// This user had acknowledged it before.
    Already,
    /// Not kept here: never sent to this PC, withdrawn or expired.
    Unknown,
}

/// Tables whose layout changed, with a mark only the old layout's SQL has and the columns that
/// move over. An old table is set aside, `SCHEMA` creates the new one, and its rows move over
/// (the outbox's with their sequence numbers), one transaction per table: a failure leaves that
/// table as it was.
const UPGRADES: [(&str, &str, &str); 2] = [
    ("outbox", "AUTOINCREMENT", "seq, msg_id, subject, payload"),
    (
        "ledger",
        "WITHOUT ROWID",
        "exec_id, request_id, fingerprint, subject, command, state, admitted_at, started_at, finished_at",
    ),
];

fn upgrade(conn: &Connection) -> rusqlite::Result<()> {
    for (table, old_mark, columns) in UPGRADES {
        let sql: String = conn.query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )?;
        if !sql.contains(old_mark) {
            continue;
        }
        // Dropped without a commit (any error below), the transaction rolls back.
        let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(&format!("ALTER TABLE {table} RENAME TO {table}_old;"))?;
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch(&format!(
            "INSERT INTO {table} ({columns}) SELECT {columns} FROM {table}_old; DROP TABLE {table}_old;"
        ))?;
        tx.commit()?;
    }
    Ok(())
}

/// Outbox filters for [`outbox_sql`]: every message, or those whose subject does not start with
/// the bound `?1`.
const EVERY_MESSAGE: &str = "";
const EXCEPT_PREFIX: &str = "WHERE substr(subject, 1, length(?1)) <> ?1";

/// The outbox query, oldest first, for `limit` messages beside the acked ones still in the table.
/// The limit is written into the SQL: SQLite parses a statement with a bound `LIMIT ?` again on
/// every execution, and at one query per result that parse was about a ninth of a simulated
/// agent's CPU.
fn outbox_sql(filter: &str, limit: usize) -> String {
    let limit = limit + UNSETTLED_MAX;
    format!("SELECT seq, msg_id, subject, payload FROM outbox {filter} ORDER BY seq LIMIT {limit}")
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // The WAL's writes of a commit go out as one (see `wal_batch`), which needs a sync at
        // every commit: `synchronous = FULL` below.
        wal_batch::register().map_err(|code| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                Some("cannot register the store's VFS".into()),
            )
        })?;
        let conn =
            Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::default(), wal_batch::NAME)?;
        // FULL: a committed ledger or outbox row must survive power loss, not just a crash.
        // Every page a transaction changes is written whole to the WAL, and a run's two or three
        // transactions each change a few rows of a few hundred bytes: small pages write fewer
        // bytes per run. Only a new file takes it; a store made before keeps its page size.
        // A checkpoint every 100 pages (about sixteen runs) keeps the WAL at ~100 KB, rewritten in
        // place, instead of growing to 1 MB first: each new page of a growing file is memory
        // and blocks the system must find (10,000 simulated agents on tmpfs spent 12% less CPU
        // per broadcast with it).
        // EXCLUSIVE, set before WAL is entered: the agent holds the file locked for as long as it
        // runs. A second agent started on the same data dir fails to open it instead of sharing
        // the ledger, and with no other process to coordinate with, SQLite keeps the WAL index
        // in memory and takes no file locks per transaction (a third less CPU per run in a
        // three-transaction run over 3,300 stores on tmpfs, 65 to 45 µs).
        conn.execute_batch(
            "PRAGMA busy_timeout = 5000; PRAGMA locking_mode = EXCLUSIVE; PRAGMA page_size = 1024;
             PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 100;",
        )?;
        // The lock is taken now, so "in use" is the error of `open`, not of the first command.
        conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;")?;
        conn.execute_batch(SCHEMA)?;
        upgrade(&conn)?;
        conn.set_prepared_statement_cache_capacity(PREPARED);
        let open = Open { conn, acked: Vec::new(), known: None };
        Ok(Self { conn: Arc::new(Mutex::new(open)), meta: Arc::default() })
    }

    fn open_lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // A poisoned lock only means another thread panicked mid-call; SQLite's own transaction
        // rolled that call back, so the connection is still consistent (and rows it may have
        // deleted are still in `acked`, deleted again at the next write).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        Ok(f(&mut self.open_lock().conn)?)
    }

    /// `f` in one transaction, which queues no messages.
    fn write<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        Ok(in_transaction(&self.open_lock().conn, f)?)
    }

    /// `f`, which queues messages (through [`insert_outgoing`], into the list it is handed), in
    /// one transaction that also deletes the acked outbox rows: the outbox pages it rewrites
    /// are those the deletes change, so a run's result and the delete of the one before it
    /// cost the WAL those pages once.
    fn write_outbox<T>(
        &self,
        f: impl FnOnce(&Connection, &mut Vec<Outgoing>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut open = self.open_lock();
        let Open { conn, acked, known } = &mut *open;
        let mut queued = Vec::new();
        let done = in_transaction(conn, |tx| {
            delete_acked(tx, acked)?;
            f(tx, &mut queued)
        });
        // Forgotten after a failure too: those messages then go again under their ids, where a
        // list kept past a commit that failed but persisted could name a row number a later
        // message took.
        acked.clear();
        match &done {
            Ok(_) => learn(known, queued),
            Err(_) => *known = None,
        }
        Ok(done?)
    }

    /// Record a command before it is acked. Returns what to do with it.
    pub fn admit(
        &self,
        exec_id: ExecId,
        request_id: &str,
        fingerprint: &str,
        subject: &str,
        command: &[u8],
        now_ms: i64,
    ) -> Result<Admission, StoreError> {
        self.record(exec_id, request_id, fingerprint, subject, command, now_ms, None)
    }

    /// [`Store::admit`] and [`Store::mark_running`] in one transaction, for a command that
    /// starts the moment it is admitted: when it is new, it is recorded as started at
    /// `now_ms` (a crash from here on reports it `unknown`, never runs it again).
    pub fn admit_started(
        &self,
        exec_id: ExecId,
        request_id: &str,
        fingerprint: &str,
        subject: &str,
        command: &[u8],
        now_ms: i64,
    ) -> Result<Admission, StoreError> {
        self.record(exec_id, request_id, fingerprint, subject, command, now_ms, Some(now_ms))
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        exec_id: ExecId,
        request_id: &str,
        fingerprint: &str,
        subject: &str,
        command: &[u8],
        now_ms: i64,
        started_ms: Option<i64>,
    ) -> Result<Admission, StoreError> {
        let state = if started_ms.is_some() { RunState::Running } else { RunState::Admitted };
        if crate::testfault::ledger_full() {
            let full = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL);
            return Err(
                rusqlite::Error::SqliteFailure(full, Some("KANADE_AGENT_TEST_LEDGER_FULL".into())).into()
            );
        }
        self.write(|tx| {
            let existing: Option<String> = tx
                .prepare_cached("SELECT fingerprint FROM ledger WHERE exec_id = ?1")?
                .query_row([exec_id.to_string()], |r| r.get(0))
                .optional()?;
            let decision = decide_admission(existing.as_deref(), fingerprint);
            if decision == Admission::New {
                tx.prepare_cached(
                    "INSERT INTO ledger (exec_id, request_id, fingerprint, subject, command, state, admitted_at, started_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    exec_id.to_string(),
                    request_id,
                    fingerprint,
                    subject,
                    command,
                    state.as_str(),
                    now_ms,
                    started_ms
                ])?;
            }
            Ok(decision)
        })
    }

    /// Mark a run as started, and queue its `started` event in the same transaction (one
    /// synchronous commit instead of two). Must happen before the process is spawned.
    pub fn mark_running(
        &self,
        exec_id: ExecId,
        now_ms: i64,
        event: Option<&Outgoing>,
    ) -> Result<(), StoreError> {
        self.write_outbox(|tx, queued| {
            tx.prepare_cached("UPDATE ledger SET state = 'running', started_at = ?2 WHERE exec_id = ?1")?
                .execute(params![exec_id.to_string(), now_ms])?;
            if let Some(event) = event {
                insert_outgoing(tx, event, queued)?;
            }
            Ok(())
        })
    }

    /// Close a run and queue its result, atomically.
    pub fn finish(&self, exec_id: ExecId, result: &Outgoing, now_ms: i64) -> Result<(), StoreError> {
        self.finish_with(exec_id, &[], result, now_ms)
    }

    /// Close a run and queue its result, then the messages it produced (its emitted events),
    /// atomically: a crash leaves either all of them queued or the run still `running`.
    pub fn finish_with(
        &self,
        exec_id: ExecId,
        events: &[Outgoing],
        result: &Outgoing,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.write_outbox(|tx, queued| {
            // A finished run's command is never read again (only admitted and running ones are,
            // at `recover`): emptied, the row leaves room in its page for the next admission,
            // which then rewrites that page instead of adding one (9.5 to 8.2 WAL frames a run).
            tx.prepare_cached(
                "UPDATE ledger SET state = 'done', finished_at = ?2, command = x'' WHERE exec_id = ?1",
            )?
            .execute(params![exec_id.to_string(), now_ms])?;
            // The result first: its events never delay it.
            insert_outgoing(tx, result, queued)?;
            for message in events {
                insert_outgoing(tx, message, queued)?;
            }
            Ok(())
        })
    }

    /// Queue a message that is not the end of a run (a `started` event).
    pub fn enqueue(&self, message: &Outgoing) -> Result<(), StoreError> {
        self.write_outbox(|tx, queued| insert_outgoing(tx, message, queued))
    }

    pub fn state(&self, exec_id: ExecId) -> Result<Option<RunState>, StoreError> {
        self.with(|c| {
            let state: Option<String> = c
                .prepare_cached("SELECT state FROM ledger WHERE exec_id = ?1")?
                .query_row([exec_id.to_string()], |r| r.get(0))
                .optional()?;
            Ok(state.map(|s| match s.as_str() {
                "admitted" => RunState::Admitted,
                "running" => RunState::Running,
                _ => RunState::Done,
            }))
        })
    }

    /// At start: runs that were admitted but never started (safe to run now) and runs that were
    /// started but never finished (must be reported `unknown`, never relaunched).
    pub fn recover(&self) -> Result<(Vec<Pending>, Vec<Interrupted>), StoreError> {
        self.with(|c| {
            let mut pending = Vec::new();
            let mut stmt = c.prepare_cached(
                "SELECT subject, command FROM ledger WHERE state = ?1 ORDER BY admitted_at, exec_id",
            )?;
            let rows = stmt.query_map([RunState::Admitted.as_str()], |r| {
                Ok(Pending { subject: r.get(0)?, command: r.get(1)? })
            })?;
            for row in rows {
                pending.push(row?);
            }
            let mut interrupted = Vec::new();
            let mut stmt = c.prepare_cached(
                "SELECT exec_id, command, started_at FROM ledger WHERE state = ?1 ORDER BY admitted_at, exec_id",
            )?;
            let rows = stmt.query_map([RunState::Running.as_str()], |r| {
                Ok(Interrupted { exec_id: r.get(0)?, command: r.get(1)?, started_at_ms: r.get(2)? })
            })?;
            for row in rows {
                interrupted.push(row?);
            }
            Ok((pending, interrupted))
        })
    }

    /// Oldest first, at most `limit`, none the broker acked already.
    pub fn outbox(&self, limit: usize) -> Result<Vec<Outgoing>, StoreError> {
        self.waiting(None, limit)
    }

    /// Oldest first, at most `limit`, leaving out subjects that start with `prefix` (results go
    /// on while events wait).
    pub fn outbox_except_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Outgoing>, StoreError> {
        self.waiting(Some(prefix), limit)
    }

    fn waiting(&self, except: Option<&str>, limit: usize) -> Result<Vec<Outgoing>, StoreError> {
        let mut open = self.open_lock();
        if let Some(known) = &open.known {
            let wanted = |m: &&Outgoing| except.is_none_or(|prefix| !m.subject.starts_with(prefix));
            return Ok(known.iter().filter(wanted).take(limit).cloned().collect());
        }
        let Open { conn, acked, known } = &mut *open;
        let (filter, params) = match except {
            None => (EVERY_MESSAGE, Vec::new()),
            Some(prefix) => (EXCEPT_PREFIX, vec![prefix]),
        };
        let mut stmt = conn.prepare_cached(&outbox_sql(filter, limit))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
            Ok(Outgoing { seq: r.get(0)?, msg_id: r.get(1)?, subject: r.get(2)?, payload: r.get(3)? })
        })?;
        let (mut out, mut read) = (Vec::with_capacity(limit.min(UNSETTLED_MAX)), 0);
        for row in rows {
            let row = row?;
            read += 1;
            if !acked.contains(&row.seq) {
                out.push(row);
            }
            if out.len() == limit {
                return Ok(out);
            }
        }
        // The whole table was read (fewer rows than the query's limit, none left out but the
        // acked): from now on it is known.
        if except.is_none() && read < limit + UNSETTLED_MAX && within_bounds(&out) {
            *known = Some(out.clone());
        }
        Ok(out)
    }

    /// Forget what the outbox holds, so the next pass reads it (a test's way onto that path).
    #[cfg(test)]
    fn forget_known(&self) {
        self.open_lock().known = None;
    }

    /// Rewrite a queued message's payload, keeping its place and id (a result cut to fit the
    /// broker's size limit).
    pub fn replace_payload(&self, seq: i64, payload: &[u8]) -> Result<(), StoreError> {
        let mut open = self.open_lock();
        let done = open
            .conn
            .prepare_cached("UPDATE outbox SET payload = ?2 WHERE seq = ?1")
            .and_then(|mut update| update.execute(params![seq, payload]));
        match (&done, open.known.as_mut()) {
            (Ok(_), Some(known)) => {
                known.iter_mut().filter(|m| m.seq == seq).for_each(|m| m.payload = payload.to_vec())
            }
            (Ok(_), None) => {}
            (Err(_), _) => open.known = None,
        }
        done?;
        Ok(())
    }

    /// Messages the broker has acked: never handed out again, and deleted with the next write
    /// that queues a message, or now when [`UNSETTLED_MAX`] are waiting.
    pub fn acked(&self, seqs: &[i64]) -> Result<(), StoreError> {
        let mut open = self.open_lock();
        open.acked.extend_from_slice(seqs);
        if let Some(known) = &mut open.known {
            known.retain(|m| !seqs.contains(&m.seq));
        }
        if open.acked.len() < UNSETTLED_MAX {
            return Ok(());
        }
        drop(open);
        self.settle()
    }

    /// Delete the acked messages now, in one transaction of their own (the agent is idle, or
    /// stopping).
    pub fn settle(&self) -> Result<(), StoreError> {
        if self.open_lock().acked.is_empty() {
            return Ok(());
        }
        self.write_outbox(|_, _| Ok(()))
    }

    /// Forget finished runs older than `before_ms`. Must stay longer than the EXEC stream's
    /// retention, or a replayed command could be admitted again.
    pub fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.with(|c| {
            c.prepare_cached("DELETE FROM ledger WHERE state = 'done' AND finished_at < ?1")?
                .execute([before_ms])
        })
    }

    /// Keep a notification; `true` when it is new here (not seen before, not withdrawn already,
    /// not expired): the moment to show it.
    pub fn notification_received(
        &self,
        id: &str,
        message: &[u8],
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        if expires_ms <= now_ms {
            return Ok(false);
        }
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO notifications (id, message, received_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO NOTHING",
            )?
            .execute(params![id, message, now_ms, expires_ms])
            .map(|n| n == 1)
        })
    }

    /// Drop a notification (its text too); remembered as withdrawn, so the notification arriving
    /// later on another subject stays dropped.
    pub fn notification_withdrawn(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO notifications (id, message, received_ms, withdrawn) VALUES (?1, NULL, ?2, 1)
                 ON CONFLICT(id) DO UPDATE SET message = NULL, withdrawn = 1 WHERE withdrawn = 0",
            )?
            .execute(params![id, now_ms])
            .map(|n| n == 1)
        })
    }

    /// Every notification not withdrawn and not expired at `now_ms`, oldest first.
    pub fn notifications(&self, now_ms: i64) -> Result<Vec<(String, KeptNotification)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, message, received_ms FROM notifications
                 WHERE withdrawn = 0 AND expires_ms > ?1 ORDER BY received_ms, id",
            )?;
            let rows = stmt.query_map([now_ms], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, message, received_ms) = row?;
                out.push((id, KeptNotification { message, received_ms, acks: Vec::new() }));
            }
            let mut acks = c.prepare_cached(
                "SELECT user_name, at_ms FROM notification_acks WHERE id = ?1 ORDER BY at_ms, user_name",
            )?;
            for (id, kept) in &mut out {
                let rows = acks.query_map([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
                kept.acks = rows.collect::<Result<_, _>>()?;
            }
            Ok(out)
        })
    }

    /// A local user acknowledges a kept notification: the acknowledgement and its outbox message
    /// are written together, so it reaches the backend exactly when it is recorded here.
    pub fn ack_notification(
        &self,
        id: &str,
        user: &str,
        now_ms: i64,
        message: &Outgoing,
    ) -> Result<AckOutcome, StoreError> {
        self.write_outbox(|tx, queued| {
            let kept: Option<i64> = tx
                .prepare_cached(
                    "SELECT 1 FROM notifications WHERE id = ?1 AND withdrawn = 0 AND expires_ms > ?2",
                )?
                .query_row(params![id, now_ms], |r| r.get(0))
                .optional()?;
            if kept.is_none() {
                return Ok(AckOutcome::Unknown);
            }
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO notification_acks (id, user_name, at_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT(id, user_name) DO NOTHING",
                )?
                .execute(params![id, user, now_ms])?;
            if inserted == 0 {
                return Ok(AckOutcome::Already);
            }
            insert_outgoing(tx, message, queued)?;
            Ok(AckOutcome::Acked)
        })
    }

    /// Forget notifications past their expiry (withdrawals that came first: after
    /// [`TOMBSTONE_MS`]) and their acknowledgements.
    pub fn prune_notifications(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.write(|tx| {
            tx.prepare_cached(
                "DELETE FROM notification_acks WHERE id IN (SELECT id FROM notifications
                 WHERE coalesce(expires_ms, received_ms + ?2) < ?1)",
            )?
            .execute(params![now_ms, TOMBSTONE_MS])?;
            tx.prepare_cached("DELETE FROM notifications WHERE coalesce(expires_ms, received_ms + ?2) < ?1")?
                .execute(params![now_ms, TOMBSTONE_MS])
        })
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        if let Some(known) = self.meta_cache().get(key) {
            return Ok(known.clone());
        }
        let value: Option<String> = self.with(|c| {
            c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()
        })?;
        self.meta_cache().insert(key.to_owned(), value.clone());
        Ok(value)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        // Forgotten first: a failed write must not leave the cache saying what the file does not.
        self.meta_cache().remove(key);
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute(
                params![key, value],
            )
            .map(drop)
        })?;
        self.meta_cache().insert(key.to_owned(), Some(value.to_owned()));
        Ok(())
    }

    fn meta_cache(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Option<String>>> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The acked rows' delete, inside the caller's transaction. (Relaxing `synchronous` for it would
/// save a flush as well, but changing that pragma expires every prepared statement.)
fn delete_acked(tx: &Connection, acked: &[i64]) -> rusqlite::Result<()> {
    for seq in acked {
        tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?.execute([seq])?;
    }
    Ok(())
}

/// Queue `m` (its row number is the table's next, above every queued row), noting it in
/// `queued` for [`Store::write_outbox`] to add to what it knows once the transaction commits.
fn insert_outgoing(c: &Connection, m: &Outgoing, queued: &mut Vec<Outgoing>) -> rusqlite::Result<()> {
    // A msg_id already queued means this exact message is already on its way.
    let inserted = c
        .prepare_cached(
            "INSERT INTO outbox (msg_id, subject, payload) VALUES (?1, ?2, ?3) ON CONFLICT(msg_id) DO NOTHING",
        )?
        .execute(params![m.msg_id, m.subject, m.payload])?;
    if inserted == 1 {
        queued.push(Outgoing { seq: c.last_insert_rowid(), ..m.clone() });
    }
    Ok(())
}

/// Add what a committed transaction queued to the known outbox, forgetting it instead once it
/// grows past its bounds.
fn learn(known: &mut Option<Vec<Outgoing>>, queued: Vec<Outgoing>) {
    let Some(list) = known else { return };
    list.extend(queued);
    if !within_bounds(list) {
        *known = None;
    }
}

/// Small enough to keep in memory as the known outbox.
fn within_bounds(messages: &[Outgoing]) -> bool {
    messages.len() <= KNOWN_MAX && messages.iter().map(|m| m.payload.len()).sum::<usize>() <= KNOWN_MAX_BYTES
}

/// `f` in one transaction. `BEGIN` and `COMMIT` are kept prepared: parsed again for each of a
/// run's two commits, they were a tenth of its store time at 10,000 simulated agents.
fn in_transaction<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached("BEGIN")?.execute([])?;
    let done = f(conn).and_then(|out| conn.prepare_cached("COMMIT")?.execute([]).map(|_| out));
    if done.is_err() && !conn.is_autocommit() {
        // Rolled back here, or the next BEGIN fails; a rollback that fails leaves SQLite's own.
        let _ = conn.prepare_cached("ROLLBACK").and_then(|mut rollback| rollback.execute([]));
    }
    done
}

#[cfg(test)]
mod tests;
