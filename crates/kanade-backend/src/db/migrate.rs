//! Embedded, ordered migrations, one folder per engine. Each runs once, in its own transaction,
//! recorded in `schema_migrations` with the sha256 of its text: a migration changed after it
//! was applied, or a database newer than this binary, stops the start with the reason.

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use super::DbError;

#[derive(Debug)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

const SQLITE: &[Migration] = &[
    Migration { version: 1, name: "projection", sql: include_str!("migrations/sqlite/0001_projection.sql") },
    Migration { version: 2, name: "schedules", sql: include_str!("migrations/sqlite/0002_schedules.sql") },
    Migration { version: 3, name: "accounts", sql: include_str!("migrations/sqlite/0003_accounts.sql") },
    Migration {
        version: 4,
        name: "agent_updates",
        sql: include_str!("migrations/sqlite/0004_agent_updates.sql"),
    },
    Migration {
        version: 5,
        name: "agent_clock",
        sql: include_str!("migrations/sqlite/0005_agent_clock.sql"),
    },
    Migration {
        version: 6,
        name: "execution_title",
        sql: include_str!("migrations/sqlite/0006_execution_title.sql"),
    },
    Migration {
        version: 7,
        name: "backend_secrets",
        sql: include_str!("migrations/sqlite/0007_backend_secrets.sql"),
    },
    Migration {
        version: 8,
        name: "lease_fences",
        sql: include_str!("migrations/sqlite/0008_lease_fences.sql"),
    },
    Migration {
        version: 9,
        name: "audit_outbox",
        sql: include_str!("migrations/sqlite/0009_audit_outbox.sql"),
    },
    Migration {
        version: 10,
        name: "outbox_refused",
        sql: include_str!("migrations/sqlite/0010_outbox_refused.sql"),
    },
    Migration { version: 11, name: "host_perf", sql: include_str!("migrations/sqlite/0011_host_perf.sql") },
    Migration { version: 12, name: "obs_events", sql: include_str!("migrations/sqlite/0012_obs_events.sql") },
    Migration {
        version: 13,
        name: "process_perf",
        sql: include_str!("migrations/sqlite/0013_process_perf.sql"),
    },
    Migration {
        version: 14,
        name: "host_perf_rollups",
        sql: include_str!("migrations/sqlite/0014_host_perf_rollups.sql"),
    },
    Migration {
        version: 15,
        name: "checks_facts",
        sql: include_str!("migrations/sqlite/0015_checks_facts.sql"),
    },
    Migration {
        version: 16,
        name: "notifications",
        sql: include_str!("migrations/sqlite/0016_notifications.sql"),
    },
    Migration {
        version: 17,
        name: "audit_client",
        sql: include_str!("migrations/sqlite/0017_audit_client.sql"),
    },
    Migration {
        version: 18,
        name: "fleet_freeze",
        sql: include_str!("migrations/sqlite/0018_fleet_freeze.sql"),
    },
    Migration { version: 19, name: "user_mfa", sql: include_str!("migrations/sqlite/0019_user_mfa.sql") },
    Migration {
        version: 20,
        name: "dynamic_groups",
        sql: include_str!("migrations/sqlite/0020_dynamic_groups.sql"),
    },
    Migration { version: 21, name: "enrolment", sql: include_str!("migrations/sqlite/0021_enrolment.sql") },
    Migration {
        version: 22,
        name: "timeline_from_results",
        sql: include_str!("migrations/sqlite/0022_timeline_from_results.sql"),
    },
    Migration {
        version: 23,
        name: "results_in_arrival_order",
        sql: include_str!("migrations/sqlite/0023_results_in_arrival_order.sql"),
    },
];

const POSTGRES: &[Migration] = &[
    Migration { version: 1, name: "schema", sql: include_str!("migrations/postgres/0001_schema.sql") },
    Migration {
        version: 2,
        name: "backend_secrets",
        sql: include_str!("migrations/postgres/0002_backend_secrets.sql"),
    },
    Migration {
        version: 3,
        name: "lease_fences",
        sql: include_str!("migrations/postgres/0003_lease_fences.sql"),
    },
    Migration {
        version: 4,
        name: "audit_outbox",
        sql: include_str!("migrations/postgres/0004_audit_outbox.sql"),
    },
    Migration {
        version: 5,
        name: "outbox_refused",
        sql: include_str!("migrations/postgres/0005_outbox_refused.sql"),
    },
    Migration { version: 6, name: "host_perf", sql: include_str!("migrations/postgres/0006_host_perf.sql") },
    Migration {
        version: 7,
        name: "obs_events",
        sql: include_str!("migrations/postgres/0007_obs_events.sql"),
    },
    Migration {
        version: 8,
        name: "process_perf",
        sql: include_str!("migrations/postgres/0008_process_perf.sql"),
    },
    Migration {
        version: 9,
        name: "host_perf_rollups",
        sql: include_str!("migrations/postgres/0009_host_perf_rollups.sql"),
    },
    Migration {
        version: 10,
        name: "checks_facts",
        sql: include_str!("migrations/postgres/0010_checks_facts.sql"),
    },
    Migration {
        version: 11,
        name: "notifications",
        sql: include_str!("migrations/postgres/0011_notifications.sql"),
    },
    Migration {
        version: 12,
        name: "audit_client",
        sql: include_str!("migrations/postgres/0012_audit_client.sql"),
    },
    Migration {
        version: 13,
        name: "fleet_freeze",
        sql: include_str!("migrations/postgres/0013_fleet_freeze.sql"),
    },
    Migration { version: 14, name: "user_mfa", sql: include_str!("migrations/postgres/0014_user_mfa.sql") },
    Migration {
        version: 15,
        name: "dynamic_groups",
        sql: include_str!("migrations/postgres/0015_dynamic_groups.sql"),
    },
    Migration { version: 16, name: "enrolment", sql: include_str!("migrations/postgres/0016_enrolment.sql") },
    Migration {
        version: 17,
        name: "timeline_from_results",
        sql: include_str!("migrations/postgres/0017_timeline_from_results.sql"),
    },
];

pub fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Pure: which of `known` still have to run, given what the database recorded as applied
/// (`(version, checksum)`; no checksum for rows written before checksums were kept).
pub fn pending<'a>(
    applied: &[(i64, Option<String>)],
    known: &'a [Migration],
) -> Result<Vec<&'a Migration>, String> {
    let latest = known.last().map_or(0, |m| m.version);
    if let Some((newest, _)) = applied.iter().max_by_key(|(v, _)| *v)
        && *newest > latest
    {
        return Err(format!(
            "database schema is at version {newest}, newer than this kanade-backend knows ({latest}); upgrade the backend"
        ));
    }
    for (version, sum) in applied {
        let Some(m) = known.iter().find(|m| m.version == *version) else {
            return Err(format!(
                "database records migration {version}, which this kanade-backend does not have"
            ));
        };
        if let Some(sum) = sum
            && *sum != checksum(m.sql)
        {
            return Err(format!(
                "migration {version} ({}) differs from the one applied to this database; restore the original migration or the database",
                m.name
            ));
        }
    }
    Ok(known.iter().filter(|m| !applied.iter().any(|(v, _)| *v == m.version)).collect())
}

pub fn run_sqlite(conn: &Connection) -> Result<(), DbError> {
    run_sqlite_up_to(conn, SQLITE)
}

/// `migrations`, a prefix of [`SQLITE`] (tests stop at an older schema).
fn run_sqlite_up_to(conn: &Connection, migrations: &[Migration]) -> Result<(), DbError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL, checksum TEXT)",
    )?;
    let has_checksum: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('schema_migrations') WHERE name = 'checksum')",
        [],
        |r| r.get(0),
    )?;
    if !has_checksum {
        conn.execute_batch("ALTER TABLE schema_migrations ADD COLUMN checksum TEXT")?;
    }
    let applied: Vec<(i64, Option<String>)> = conn
        .prepare("SELECT version, checksum FROM schema_migrations")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for m in pending(&applied, migrations).map_err(DbError::Migration)? {
        let sql = format!(
            "BEGIN; {}; INSERT INTO schema_migrations VALUES ({}, '{}', {}, '{}'); COMMIT;",
            m.sql,
            m.version,
            m.name,
            super::now_ms(),
            checksum(m.sql)
        );
        conn.execute_batch(&sql)
            .map_err(|e| DbError::Migration(format!("migration {} ({}) failed: {e}", m.version, m.name)))?;
    }
    // Rows from before checksums were kept get theirs now.
    for m in migrations {
        conn.execute(
            "UPDATE schema_migrations SET checksum = ?2 WHERE version = ?1 AND checksum IS NULL",
            rusqlite::params![m.version, checksum(m.sql)],
        )?;
    }
    Ok(())
}

pub async fn run_postgres(client: &mut deadpool_postgres::Client) -> Result<(), DbError> {
    let tx = client.transaction().await?;
    // Backends starting together: one migrates, the others wait here and then find nothing to do.
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7218331606);
         CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL, checksum TEXT)",
    )
    .await?;
    let applied: Vec<(i64, Option<String>)> = tx
        .query("SELECT version, checksum FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for m in pending(&applied, POSTGRES).map_err(DbError::Migration)? {
        let failed = |e: tokio_postgres::Error| {
            DbError::Migration(format!(
                "migration {} ({}) failed: {}",
                m.version,
                m.name,
                super::pg_message(&e)
            ))
        };
        tx.batch_execute(m.sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_ms, checksum) VALUES ($1, $2, $3, $4)",
            &[&m.version, &m.name, &super::now_ms(), &checksum(m.sql)],
        )
        .await
        .map_err(failed)?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table and index either engine creates, from its migrations' text (a table made
    /// under another name and renamed counts under its final name).
    fn created(migrations: &[Migration]) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        for m in migrations {
            // Padded, so that a short statement at the very end still fills a window.
            let words: Vec<&str> =
                m.sql.split_whitespace().map(|w| w.trim_end_matches(';')).chain([""; 5]).collect();
            for w in words.windows(6) {
                if w[0] == "CREATE" && (w[1] == "TABLE" || w[1] == "INDEX") {
                    names.insert(format!("{} {}", w[1], w[2].trim_end_matches('(')));
                }
                if let ["ALTER", "TABLE", from, "RENAME", "TO", to] = w {
                    names.remove(&format!("TABLE {from}"));
                    names.insert(format!("TABLE {to}"));
                }
            }
        }
        names
    }

    #[test]
    fn both_engines_create_the_same_tables_and_indexes() {
        let (sqlite, postgres) = (created(SQLITE), created(POSTGRES));
        let only = |a: &std::collections::BTreeSet<String>, b: &std::collections::BTreeSet<String>| {
            a.difference(b).cloned().collect::<Vec<_>>()
        };
        assert!(only(&sqlite, &postgres).is_empty(), "only on SQLite: {:?}", only(&sqlite, &postgres));
        assert!(only(&postgres, &sqlite).is_empty(), "only on Postgres: {:?}", only(&postgres, &sqlite));
    }

    #[test]
    fn results_stored_in_key_order_survive_the_move_to_arrival_order() {
        let conn = Connection::open_in_memory().unwrap();
        run_sqlite_up_to(&conn, &SQLITE[..22]).unwrap();
        let columns = "result_id, exec_id, pc_id, request_id, job_id, version, status, exit_code, skip_reason,
                       message, stdout, stderr, truncated, attempt, started_ms, finished_ms, received_ms, facts_error";
        let rows = [
            "('r2', 'e', 'PC-B', 'q2', 'j', '1', 'failed', 3, NULL, 'm', 'out', 'err', 1, 2, 10, 20, 30, 'bad')",
            "('r1', 'e', 'PC-A', 'q1', 'j', '1', 'running', NULL, NULL, NULL, '', '', 0, 1, 5, NULL, 40, NULL)",
        ];
        conn.execute_batch(&format!("INSERT INTO execution_results ({columns}) VALUES {}", rows.join(", ")))
            .unwrap();
        let read = |conn: &Connection| -> Vec<String> {
            let quoted: Vec<String> = columns.split(',').map(|c| format!("quote({})", c.trim())).collect();
            conn.prepare(&format!(
                "SELECT {} FROM execution_results ORDER BY result_id",
                quoted.join(" || ',' || ")
            ))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        let before = read(&conn);
        assert_eq!(before.len(), 2);
        run_sqlite(&conn).unwrap();
        assert_eq!(read(&conn), before, "every column of every row kept");
        let (table, indexes): (String, i64) = conn
            .query_row(
                "SELECT (SELECT sql FROM sqlite_master WHERE name = 'execution_results'),
                        (SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'execution_results'
                             AND name LIKE 'execution_results_%')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert!(!table.contains("WITHOUT ROWID"), "{table}");
        assert_eq!(indexes, 5, "every index made again");
        // The key still refuses a second row, and a missing one.
        let keyless = rows[1].replacen("'r1'", "NULL", 1);
        for row in [rows[0], keyless.as_str()] {
            let insert = format!("INSERT INTO execution_results ({columns}) VALUES {row}");
            assert!(conn.execute_batch(&insert).is_err(), "{row}");
        }
    }

    const KNOWN: &[Migration] = &[
        Migration { version: 1, name: "one", sql: "CREATE TABLE a (x INTEGER)" },
        Migration { version: 2, name: "two", sql: "CREATE TABLE b (x INTEGER)" },
    ];

    #[test]
    fn pending_migrations_and_refusals() {
        let sum = |i: usize| Some(checksum(KNOWN[i].sql));
        let versions = |p: Vec<&Migration>| p.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(versions(pending(&[], KNOWN).unwrap()), [1, 2]);
        assert_eq!(versions(pending(&[(1, sum(0))], KNOWN).unwrap()), [2]);
        assert_eq!(versions(pending(&[(1, None), (2, sum(1))], KNOWN).unwrap()), Vec::<i64>::new());
        let newer = pending(&[(1, sum(0)), (3, None)], KNOWN).unwrap_err();
        assert!(newer.contains("version 3, newer than this kanade-backend knows (2)"), "{newer}");
        let changed = pending(&[(1, Some("0".repeat(64)))], KNOWN).unwrap_err();
        assert!(changed.contains("migration 1 (one) differs"), "{changed}");
    }

    #[test]
    fn every_engine_numbers_its_migrations_from_one_without_gaps() {
        for list in [SQLITE, POSTGRES] {
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "{}", m.name);
            }
        }
    }
}
