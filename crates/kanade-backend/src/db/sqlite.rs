//! The embedded engine: one writer connection (SQLite allows one writer at a time anyway) and
//! a few readers (WAL lets them read while the writer writes). A whole operation runs on the
//! blocking pool, never on the async workers; its statements run synchronously, so the
//! operation's future is ready at its first poll.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use rusqlite::types::{ToSqlOutput, ValueRef};

use super::DbError;
use super::sql::{BulkInsert, BulkUpsert, Dialect, Row, Sql, Value, value_lists};

const READERS: usize = 4;

/// Page cache per connection, KiB. SQLite's default (2 MiB) holds little of a fleet's tables:
/// every batch of results then reads its index pages back from the file.
const WRITER_CACHE: i64 = 64 * 1024;
const READER_CACHE: i64 = 16 * 1024;
/// Statements kept prepared per connection (rusqlite keeps 16; the store has many more, and a
/// statement pushed out is parsed again the next time).
const PREPARED: usize = 256;

/// WAL pages after which a checkpoint copies them into the database file (SQLite's own default).
const CHECKPOINT_PAGES: i32 = 1000;
/// WAL pages after which the writer checkpoints itself, inline: the background checkpointer has
/// fallen behind (a reader holding an old snapshot, a disk slower than the writes).
const WRITER_CHECKPOINT_PAGES: i32 = 10 * CHECKPOINT_PAGES;

fn tune(conn: &Connection, cache_kib: i64) -> Result<(), DbError> {
    conn.execute_batch(&format!("PRAGMA cache_size = -{cache_kib};"))?;
    conn.set_prepared_statement_cache_capacity(PREPARED);
    Ok(())
}

#[derive(Clone)]
pub struct Sqlite {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<AtomicUsize>,
    /// `None` on a read-only copy.
    checkpointer: Option<Arc<Checkpointer>>,
}

std::thread_local! {
    /// Pages in the write-ahead log after the last commit on this thread (set by [`wal_pages`]).
    static WAL_PAGES: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

/// The writer's WAL hook, called inside each commit on the committing thread. Registering it
/// turns SQLite's automatic checkpoint off: [`Sqlite::write`] decides instead.
fn wal_pages(_: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    Ok(())
}

/// Copies the write-ahead log into the database file on a thread and connection of its own.
/// A checkpoint done by the committing writer (SQLite's default) stalls the next write by
/// ~10 ms (the copy and two fsyncs) every 1,000 pages; done here it runs beside the writes
/// (a passive checkpoint never blocks the writer, and the log starts over at the next write
/// once it has all been copied).
struct Checkpointer {
    wake: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Checkpoints it has run (the tests watch it).
    #[cfg_attr(not(test), allow(dead_code))]
    done: Arc<AtomicUsize>,
}

/// What a commit that left `pages` in the write-ahead log calls for.
#[derive(Debug, PartialEq, Eq)]
enum Checkpoint {
    No,
    /// On the checkpointer's thread.
    Beside,
    /// By the writer, before it writes again.
    Now,
}

fn checkpoint_after(pages: i32) -> Checkpoint {
    match pages {
        p if p >= WRITER_CHECKPOINT_PAGES => Checkpoint::Now,
        p if p >= CHECKPOINT_PAGES => Checkpoint::Beside,
        _ => Checkpoint::No,
    }
}

/// Copy what the write-ahead log holds into the database file, as far as no reader still
/// needs it; never waits for anyone.
fn checkpoint(conn: &Connection) -> Result<(), DbError> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    Ok(())
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self, DbError> {
        let conn = Connection::open(path)?;
        let done = Arc::new(AtomicUsize::new(0));
        // Wakes coming while a checkpoint runs fold into one more.
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let counted = done.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    match checkpoint(&conn) {
                        Ok(()) => {
                            counted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot checkpoint the database's write-ahead log")
                        }
                    }
                }
            })
            .map_err(|e| DbError::Task(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Self { wake: Some(wake), thread: Some(thread), done })
    }

    fn wake(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    /// Waits for a checkpoint under way, so the file is left alone once the store is dropped.
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Sqlite {
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let writer = Connection::open(path)?;
        writer.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")?;
        tune(&writer, WRITER_CACHE)?;
        super::migrate::run_sqlite(&writer)?;
        writer.wal_hook(Some(wal_pages));
        let checkpointer = Some(Arc::new(Checkpointer::start(path)?));
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open(path)?;
            r.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")?;
            tune(&r, READER_CACHE)?;
            readers.push(Mutex::new(r));
        }
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(readers),
            next_reader: Arc::new(AtomicUsize::new(0)),
            checkpointer,
        })
    }

    /// A consistent copy of the database at `src` into a new file `dst`, taken with SQLite's
    /// online backup while other connections (a running backend) go on writing.
    pub fn online_backup(src: &Path, dst: &Path) -> Result<(), DbError> {
        let from = Connection::open_with_flags(src, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        from.execute_batch("PRAGMA busy_timeout = 5000;")?;
        let mut to = Connection::open(dst)?;
        let copy = rusqlite::backup::Backup::new(&from, &mut to)?;
        // Every page in one step, under one read transaction: a consistent snapshot however busy
        // the writer is (a stepped copy restarts whenever another connection commits).
        for _ in 0..50 {
            match copy.step(-1)? {
                rusqlite::backup::StepResult::Done => return Ok(()),
                _ => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
        Err(DbError::Decode(format!("{} stayed locked; try the backup again", src.display())))
    }

    /// Fold the write-ahead log of the database at `path` into the file (its `-wal` may hold
    /// committed writes of a backend that was killed), so the file alone is the whole database.
    pub fn checkpoint(path: &Path) -> Result<(), DbError> {
        let conn = Connection::open(path)?;
        conn.execute_batch("PRAGMA busy_timeout = 5000;")?;
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy != 0 {
            return Err(DbError::Decode(format!(
                "{} is in use (is the backend still running?); stop it and try again",
                path.display()
            )));
        }
        Ok(())
    }

    /// An existing file, read only and left at its schema version (a source to copy from, which
    /// the binary it belongs to must still be able to open).
    pub fn open_read_only(path: &Path) -> Result<Self, DbError> {
        let open = || -> Result<Connection, DbError> {
            let c = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            c.execute_batch("PRAGMA busy_timeout = 5000;")?;
            Ok(c)
        };
        Ok(Self {
            writer: Arc::new(Mutex::new(open()?)),
            readers: Arc::new(vec![Mutex::new(open()?)]),
            next_reader: Arc::new(AtomicUsize::new(0)),
            checkpointer: None,
        })
    }

    /// Run `f` in one write transaction.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteSql<'_>) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let writer = self.writer.clone();
        let checkpointer = self.checkpointer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn.transaction()?;
            let out = f(&mut SqliteSql { conn: &tx })?;
            WAL_PAGES.set(0);
            tx.commit()?;
            match (checkpoint_after(WAL_PAGES.get()), &checkpointer) {
                (Checkpoint::Beside, Some(c)) => c.wake(),
                (Checkpoint::No | Checkpoint::Beside, _) => {}
                (Checkpoint::Now, _) => {
                    // Committed already: a checkpoint that fails is tried again after the next commit.
                    if let Err(e) = checkpoint(&conn) {
                        tracing::warn!(error = %e, "cannot checkpoint the database's write-ahead log");
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteSql<'_>) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let readers = self.readers.clone();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            // Take the first free reader, starting from a rotating offset; wait on one if all are busy.
            for i in 0..readers.len() {
                if let Ok(conn) = readers[(start + i) % readers.len()].try_lock() {
                    return f(&mut SqliteSql { conn: &conn });
                }
            }
            let conn = readers[start % readers.len()].lock().unwrap_or_else(|p| p.into_inner());
            f(&mut SqliteSql { conn: &conn })
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }
}

impl Sqlite {
    /// An admin's ad-hoc SELECT on a `query_only` reader (see `adhoc`).
    pub async fn adhoc(
        &self,
        sql: String,
        max_rows: usize,
        limit: std::time::Duration,
    ) -> Result<super::adhoc::Outcome, super::adhoc::QueryError> {
        let readers = self.readers.clone();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let conn = readers[start % readers.len()].lock().unwrap_or_else(|p| p.into_inner());
            super::adhoc::sqlite(&conn, &sql, max_rows, limit)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }
}

/// Drive an operation whose every await is already complete (SQLite's statements run
/// synchronously). One that waits on something else is a bug in the engine, reported as such.
pub fn now<F: Future>(f: F) -> Result<F::Output, DbError> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => Ok(out),
        std::task::Poll::Pending => Err(DbError::Task("a SQLite operation waited on something".into())),
    }
}

pub struct SqliteSql<'a> {
    conn: &'a Connection,
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Real(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

impl SqliteSql<'_> {
    fn exec_now(&self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let n = self.conn.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params))?;
        Ok(n as u64)
    }

    /// One statement run once per parameter list, looked up in the statement cache once rather
    /// than per row (each lookup hashes the whole SQL text).
    fn exec_each(&self, sql: &str, params: &[Vec<Value>]) -> Result<Vec<u64>, DbError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        params.iter().map(|p| Ok(stmt.execute(rusqlite::params_from_iter(p))? as u64)).collect()
    }

    /// [`Sql::insert_rows`]: whether each row was written.
    fn insert_now(&self, b: &BulkInsert<'_>, rows: &[Vec<Value>]) -> Result<Vec<bool>, DbError> {
        let columns: Vec<&str> = b.columns.iter().map(|(name, _)| *name).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {} {}",
            b.table,
            columns.join(", "),
            value_lists(1, columns.len()),
            b.tail
        );
        self.exec_each(&sql, rows).map(|counts| counts.into_iter().map(|n| n == 1).collect())
    }

    fn rows_now(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let width = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(width);
            for i in 0..width {
                row.push(value(r.get_ref(i)?));
            }
            out.push(Row(row));
        }
        Ok(out)
    }
}

impl Sql for SqliteSql<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn exec(&mut self, sql: &str, params: Vec<Value>) -> impl Future<Output = Result<u64, DbError>> + Send {
        std::future::ready(self.exec_now(sql, &params))
    }

    fn exec_many(
        &mut self,
        sql: &str,
        params: Vec<Vec<Value>>,
    ) -> impl Future<Output = Result<Vec<u64>, DbError>> + Send {
        std::future::ready(self.exec_each(sql, &params))
    }

    /// One prepared statement, run per row: in-process there is no round trip to save, and
    /// 500-row statements measured slower (0.38 vs 0.46 of the raw insert in the ingest bench).
    fn insert_rows(
        &mut self,
        b: &BulkInsert<'_>,
        rows: &[Vec<Value>],
    ) -> impl Future<Output = Result<Vec<bool>, DbError>> + Send {
        std::future::ready(self.insert_now(b, rows))
    }

    /// `INSERT … ON CONFLICT DO UPDATE`, one row at a time, as [`Sql::insert_rows`].
    fn upsert_rows(
        &mut self,
        u: &BulkUpsert<'_>,
        rows: &[Vec<Value>],
    ) -> impl Future<Output = Result<Vec<bool>, DbError>> + Send {
        let tail = u.on_conflict();
        std::future::ready(
            self.insert_now(&BulkInsert { table: u.table, columns: u.columns, key: 1, tail: &tail }, rows),
        )
    }

    fn rows(
        &mut self,
        sql: &str,
        params: Vec<Value>,
    ) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send {
        std::future::ready(self.rows_now(sql, &params))
    }

    fn batch(&mut self, sql: &str) -> impl Future<Output = Result<(), DbError>> + Send {
        std::future::ready(self.conn.execute_batch(sql).map_err(DbError::from))
    }
}

#[cfg(test)]
mod tests {
    use super::{CHECKPOINT_PAGES, Checkpoint, Sqlite, WRITER_CHECKPOINT_PAGES, checkpoint_after};
    use std::sync::atomic::Ordering;

    #[test]
    fn the_log_is_copied_beside_the_writer_and_by_it_only_past_the_backstop() {
        let cases = [
            (0, Checkpoint::No),
            (CHECKPOINT_PAGES - 1, Checkpoint::No),
            (CHECKPOINT_PAGES, Checkpoint::Beside),
            (WRITER_CHECKPOINT_PAGES - 1, Checkpoint::Beside),
            (WRITER_CHECKPOINT_PAGES, Checkpoint::Now),
            (i32::MAX, Checkpoint::Now),
        ];
        for (pages, want) in cases {
            assert_eq!(checkpoint_after(pages), want, "{pages} pages");
        }
    }

    /// `pages` pages of rows (one row fills a page), `per_tx` in each write transaction.
    async fn fill(db: &Sqlite, pages: usize, per_tx: usize) {
        db.write(|s| Ok(s.conn.execute_batch("CREATE TABLE IF NOT EXISTS filler (b BLOB)")?)).await.unwrap();
        for _ in 0..pages / per_tx {
            db.write(move |s| {
                s.conn.execute(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                     INSERT INTO filler SELECT randomblob(3000) FROM n",
                    [per_tx as i64],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        }
    }

    fn file_pages(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).unwrap().len() / 4096
    }

    #[tokio::test]
    async fn a_busy_writer_leaves_its_checkpoints_to_the_checkpointer_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kanade.db");
        let db = Sqlite::open(&path).unwrap();
        let before = file_pages(&path);
        fill(&db, 3 * CHECKPOINT_PAGES as usize, 300).await;
        let done = &db.checkpointer.as_ref().unwrap().done;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while done.load(Ordering::Relaxed) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(done.load(Ordering::Relaxed) > 0, "the checkpointer thread never ran");
        // What it copied is in the database file itself, the store still open.
        let grown = file_pages(&path) - before;
        assert!(grown >= CHECKPOINT_PAGES as u64, "the file grew by {grown} pages only");
    }

    #[tokio::test]
    async fn without_its_checkpointer_the_writer_checkpoints_itself_past_the_backstop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kanade.db");
        let mut db = Sqlite::open(&path).unwrap();
        db.checkpointer = None;
        let before = file_pages(&path);
        fill(&db, WRITER_CHECKPOINT_PAGES as usize + 2000, 500).await;
        let grown = file_pages(&path) - before;
        assert!(grown >= WRITER_CHECKPOINT_PAGES as u64, "the file grew by {grown} pages only");
        // The log started over after that checkpoint instead of holding everything.
        let wal = std::fs::metadata(dir.path().join("kanade.db-wal")).unwrap().len() / 4096;
        assert!(wal < WRITER_CHECKPOINT_PAGES as u64 + 1000, "the log holds {wal} pages");
    }
}
