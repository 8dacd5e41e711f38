//! Embedded, ordered migrations. Each runs once, in its own transaction, recorded in
//! `schema_migrations`.

use rusqlite::Connection;

use super::DbError;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "projection", include_str!("migrations/0001_projection.sql")),
    (2, "schedules", include_str!("migrations/0002_schedules.sql")),
    (3, "accounts", include_str!("migrations/0003_accounts.sql")),
    (4, "agent_updates", include_str!("migrations/0004_agent_updates.sql")),
    (5, "agent_clock", include_str!("migrations/0005_agent_clock.sql")),
    (6, "execution_title", include_str!("migrations/0006_execution_title.sql")),
];

pub fn run(conn: &Connection) -> Result<(), DbError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL)")?;
    let current: i64 =
        conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?;
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > latest {
        return Err(DbError::Migration(format!(
            "database schema is at version {current}, newer than this kanade-backend knows ({latest}); upgrade the backend"
        )));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        conn.execute_batch(&format!(
            "BEGIN; {sql}; INSERT INTO schema_migrations VALUES ({version}, '{name}', {}); COMMIT;",
            super::now_ms()
        ))
        .map_err(|e| DbError::Migration(format!("migration {version} ({name}) failed: {e}")))?;
    }
    Ok(())
}
