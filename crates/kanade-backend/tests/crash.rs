//! The real backend binary killed with SIGKILL while results flow in: after a restart every
//! result is in the database exactly once, and the execution's counters count each once (a
//! result applied again after the crash — its batch committed, its ack lost — must not).

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
