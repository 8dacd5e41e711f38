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
}

impl Sqlite {
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let writer = Connection::open(path)?;
        writer.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")?;
        tune(&writer, WRITER_CACHE)?;
        super::migrate::run_sqlite(&writer)?;
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
        })
    }

    /// Run `f` in one write transaction.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteSql<'_>) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn.transaction()?;
            let out = f(&mut SqliteSql { conn: &tx })?;
            tx.commit()?;
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
