//! The real backend binary killed with SIGKILL while results flow in: after a restart every
//! result is in the database exactly once, and the execution's counters count each once (a
//! result applied again after the crash — its batch committed, its ack lost — must not). And
//! killed between storing an execution and publishing it: after a restart it goes out, once.

use std::time::Duration;

use kanade_shared::ExecId;
use kanade_testkit::NatsServer;

mod common;

const RESULTS: usize = 20_000;

/// (succeeded, target_count) of the execution; (-1, -1) while it is not there.
fn counters(db: &std::path::Path, exec: ExecId) -> (i64, i64) {
    let Ok(c) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return (-1, -1);
    };
    c.query_row(
        "SELECT succeeded, target_count FROM executions WHERE exec_id = ?1",
        [exec.to_string()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap_or((-1, -1))
}

fn count(db: &std::path::Path) -> usize {
    let Ok(c) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return 0;
    };
    c.query_row("SELECT COUNT(*) FROM execution_results", [], |r| r.get::<_, i64>(0))
        .map_or(0, |n| n as usize)
}

#[tokio::test]
async fn a_killed_backend_projects_every_result_exactly_once_after_restart() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 1).await.unwrap();
    let exec = common::flood(&js, RESULTS).await;

    let dir = tempfile::tempdir().unwrap();
    let mut backend = common::process::BackendProcess::start(dir.path(), &server.url());
    let db = backend.db.clone();
    kanade_testkit::wait_until("the backend to start projecting", Duration::from_secs(60), || count(&db) > 0);
    backend.kill();
    let at_kill = count(&db);
    assert!(at_kill < RESULTS, "ingest finished before the kill ({at_kill}); the test proves nothing");

    backend.restart();
    kanade_testkit::wait_until("every result to be projected", Duration::from_secs(60), || {
        count(&db) >= RESULTS
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(&db), RESULTS);
    kanade_testkit::wait_until("the execution to be projected", Duration::from_secs(30), || {
        counters(&db, exec).1 == RESULTS as i64
    });
    assert_eq!(counters(&db, exec), (RESULTS as i64, RESULTS as i64), "counters differ from the rows");
}

fn query(db: &std::path::Path, sql: &str) -> Vec<String> {
    let Ok(c) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return Vec::new();
    };
    let Ok(mut stmt) = c.prepare(sql) else { return Vec::new() };
    stmt.query_map([], |r| r.get::<_, String>(0)).map(|rows| rows.flatten().collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_killed_between_storing_an_execution_and_publishing_it_publishes_it_after_restart() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    // The backend dies right after the execution and its audit event are committed, before
    // any command goes out.
    let env = [("KANADE_AUTH_DISABLE", "1"), ("KANADE_FAILPOINT", "exec.stored")];
    let mut backend = common::process::BackendProcess::start_env(&dir.path().join("b"), &server.url(), &env);
    let db = backend.db.clone();
    let executor =
        kanade_agent::exec::FakeExecutor { duration: Duration::from_millis(100), ..Default::default() };
    let runs = executor.runs.clone();
    let sim = kanade_sim::SimConfig::small_fleet(server.url(), 5, dir.path().join("agents"), executor);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    kanade_sim::start(&sim, stop).await.unwrap();
    kanade_testkit::wait_until("the backend to know the 5 agents", Duration::from_secs(60), || {
        query(&db, "SELECT CAST(COUNT(*) AS TEXT) FROM agents") == ["5"]
    });

    let yaml = "id: once\nversion: '1'\nexecute: { shell: sh, script: 'true' }\ntarget: { all: true }\n";
    let answer = kanade_testkit::http::request(
        backend.port,
        "POST",
        "/api/deploy",
        yaml.as_bytes(),
        "application/yaml",
    );
    assert!(!matches!(answer, Ok((201, _))), "the deploy was answered: the failpoint was not reached");
    kanade_testkit::wait_until("the backend to die at the failpoint", Duration::from_secs(10), || {
        backend.exited()
    });
    let stored = query(&db, "SELECT exec_id || ' ' || status FROM executions");
    assert_eq!(stored.len(), 1, "{stored:?}");
    let (exec, status) = stored[0].split_once(' ').unwrap();
    assert_eq!(status, "pending");
    assert_eq!(query(&db, "SELECT subject FROM audit_outbox"), ["audit.exec.create"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs.total(), 0, "a command went out before the crash: the test proves nothing");

    backend.unset_env("KANADE_FAILPOINT");
    backend.restart();
    let done = format!("SELECT status FROM executions WHERE exec_id = '{exec}'");
    kanade_testkit::wait_until(
        "the execution to complete after the restart",
        Duration::from_secs(120),
        || query(&db, &done) == ["completed"],
    );
    let counters =
        format!("SELECT target_count || ' ' || succeeded FROM executions WHERE exec_id = '{exec}'");
    assert_eq!(query(&db, &counters), ["5 5"]);
    assert_eq!((runs.total(), runs.doubles()), (5, 0), "each PC runs once");
    let audited =
        format!("SELECT action FROM audit_log WHERE action = 'exec.create' AND detail_json LIKE '%{exec}%'");
    kanade_testkit::wait_until("exec.create in the audit log", Duration::from_secs(30), || {
        query(&db, &audited).len() == 1
    });
}
