//! `POST /api/query` (SPEC §12): an admin's own SELECT over the projection, read-only by the
//! engine (SQLite: a `query_only` reader; Postgres: a READ ONLY transaction), with a time limit
//! and a row cap. The pure check refuses anything but one SELECT or WITH statement before the
//! engine sees it, so a write is refused twice.

use std::time::Duration;

use serde_json::Value as Json;

use super::DbError;

/// The longest statement taken.
pub const MAX_SQL: usize = 64 * 1024;
/// Postgres functions that reach past the projection (files, other servers) when the
/// backend's database user may call them.
const OUTSIDE: [&str; 6] = ["pg_read_file", "pg_read_binary_file", "pg_ls_", "pg_stat_file", "lo_", "dblink"];

/// What a query returned: column names, rows (at most the cap; `truncated` says more matched).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Json>>,
    pub truncated: bool,
}

/// Why a query was not answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Not one read-only statement: never sent to the engine.
    #[error("{0}")]
    Refused(String),
    #[error("the query ran longer than {0:?} and was stopped; narrow it (WHERE, LIMIT)")]
    TimedOut(Duration),
    /// The engine refused it (syntax, unknown table, an attempt to write).
    #[error("the database refused the query: {0}")]
    Engine(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Pure: the statement to run, or why not. One statement (a trailing `;` is fine), starting
/// with SELECT or WITH, no comments (they could hide a second statement from this check).
pub fn check(sql: &str) -> Result<String, String> {
    let sql = sql.trim();
    let sql = sql.strip_suffix(';').unwrap_or(sql).trim_end();
    if sql.is_empty() {
        return Err("the query is empty; write one SELECT".into());
    }
    if sql.len() > MAX_SQL {
        return Err(format!("the query is {} bytes; at most {MAX_SQL}", sql.len()));
    }
    if sql.contains(';') {
        return Err("one statement only: the query holds a `;` (also inside a string, which this check cannot tell apart)".into());
    }
    if sql.contains("--") || sql.contains("/*") {
        return Err("no comments in the query".into());
    }
    let first = sql.split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or_default().to_ascii_uppercase();
    if first != "SELECT" && first != "WITH" {
        return Err(format!("{first:?} is not read-only here: write a SELECT (or WITH … SELECT)"));
    }
    let lower = sql.to_ascii_lowercase();
    if let Some(f) = OUTSIDE.iter().find(|f| lower.contains(*f)) {
        return Err(format!("{f}… reaches outside the projection and is refused"));
    }
    Ok(sql.to_owned())
}

/// SQLite: on a `query_only` reader, interrupted by a watchdog thread at `limit`.
pub fn sqlite(
    conn: &rusqlite::Connection,
    sql: &str,
    max_rows: usize,
    limit: Duration,
) -> Result<Outcome, QueryError> {
    let handle = conn.get_interrupt_handle();
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
            handle.interrupt();
        }
    });
    let out = (|| {
        let mut stmt = conn.prepare(sql)?;
        if !stmt.readonly() {
            return Err(QueryError::Refused("the statement would write".into()));
        }
        let columns: Vec<String> = stmt.column_names().iter().map(|c| (*c).to_owned()).collect();
        let mut rows = Vec::new();
        let mut truncated = false;
        let mut cursor = stmt.query([])?;
        while let Some(row) = cursor.next()? {
            if rows.len() == max_rows {
                truncated = true;
                break;
            }
            let mut out = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                out.push(match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => Json::Null,
                    rusqlite::types::ValueRef::Integer(v) => Json::from(v),
                    rusqlite::types::ValueRef::Real(v) => Json::from(v),
                    rusqlite::types::ValueRef::Text(t) => Json::from(String::from_utf8_lossy(t).into_owned()),
                    rusqlite::types::ValueRef::Blob(b) => Json::from(format!("<{} bytes>", b.len())),
                });
            }
            rows.push(out);
        }
        Ok(Outcome { columns, rows, truncated })
    })();
    drop(done);
    let _ = watchdog.join();
    out.map_err(|e: QueryError| match e {
        QueryError::Db(DbError::Sql(rusqlite::Error::SqliteFailure(f, _)))
            if f.code == rusqlite::ErrorCode::OperationInterrupted =>
        {
            QueryError::TimedOut(limit)
        }
        QueryError::Db(DbError::Sql(e)) => QueryError::Engine(e.to_string()),
        other => other,
    })
}

impl From<rusqlite::Error> for QueryError {
    fn from(e: rusqlite::Error) -> Self {
        QueryError::Db(DbError::Sql(e))
    }
}

/// Postgres: in a READ ONLY transaction with a statement timeout; values as the server prints
/// them (text), NULL as null.
pub async fn postgres(
    client: &tokio_postgres::Client,
    sql: &str,
    max_rows: usize,
    limit: Duration,
) -> Result<Outcome, QueryError> {
    let pg = |e: tokio_postgres::Error| match e.code() {
        Some(c) if c.code() == "57014" => QueryError::TimedOut(limit),
        _ => QueryError::Engine(super::pg_message(&e)),
    };
    client
        .batch_execute(&format!("BEGIN READ ONLY; SET LOCAL statement_timeout = {}", limit.as_millis()))
        .await
        .map_err(pg)?;
    let answer = client.simple_query(sql).await;
    let _ = client.batch_execute("ROLLBACK").await;
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    let mut truncated = false;
    for message in answer.map_err(pg)? {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            if columns.is_empty() {
                columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
            }
            if rows.len() == max_rows {
                truncated = true;
                break;
            }
            rows.push((0..row.len()).map(|i| row.get(i).map_or(Json::Null, Json::from)).collect());
        }
    }
    Ok(Outcome { columns, rows, truncated })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_read_only_statement_passes() {
        for ok in
            ["SELECT 1", "  select * from agents;  ", "WITH x AS (SELECT 1) SELECT * FROM x", "select'a'"]
        {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("", "empty"),
            ("INSERT INTO agents VALUES (1)", "\"INSERT\" is not read-only"),
            ("ATTACH DATABASE 'x' AS y", "\"ATTACH\" is not read-only"),
            ("PRAGMA writable_schema = 1", "\"PRAGMA\" is not read-only"),
            ("SELECT 1; DELETE FROM agents", "one statement only"),
            ("SELECT 1 -- hi", "no comments"),
            ("SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
        ] {
            let err = check(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
