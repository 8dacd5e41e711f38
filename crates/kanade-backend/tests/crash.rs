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
    // Rows are keyed by result id, so a result projected twice shows only in the counters.
    kanade_testkit::wait_until("every result to be projected", Duration::from_secs(60), || {
        count(&db) == RESULTS
    });
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

/// A backend process armed with `failpoint` (authentication off) and 5 simulated agents it
/// knows; the agents run until the returned sender is dropped.
struct Armed {
    server: NatsServer,
    dir: tempfile::TempDir,
    backend: common::process::BackendProcess,
    runs: kanade_agent::exec::RunLog,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn armed(failpoint: &str) -> Armed {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = [("KANADE_AUTH_DISABLE", "1"), ("KANADE_FAILPOINT", failpoint)];
    let backend = common::process::BackendProcess::start_env(&dir.path().join("b"), &server.url(), &env);
    let executor =
        kanade_agent::exec::FakeExecutor { duration: Duration::from_millis(100), ..Default::default() };
    let runs = executor.runs.clone();
    let sim = kanade_sim::SimConfig::small_fleet(server.url(), 5, dir.path().join("agents"), executor);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    kanade_sim::start(&sim, stop).await.unwrap();
    let db = backend.db.clone();
    kanade_testkit::wait_until("the backend to know the 5 agents", Duration::from_secs(60), || {
        query(&db, "SELECT CAST(COUNT(*) AS TEXT) FROM agents") == ["5"]
    });
    Armed { server, dir, backend, runs, _stop: stop_tx }
}

const DEPLOY: &str =
    "id: once\nversion: '1'\nexecute: { shell: sh, script: 'true' }\ntarget: { all: true }\n";

impl Armed {
    /// Nothing was published: EXEC holds no command.
    async fn nothing_published(&self) -> bool {
        let js = async_nats::jetstream::new(async_nats::connect(self.server.url()).await.unwrap());
        let mut exec = js.get_stream("EXEC").await.unwrap();
        exec.info().await.unwrap().state.messages == 0
    }

    /// The execution completes with 5 of 5, each PC ran it once, and AUDIT has its creation.
    fn completes_once(&self, exec: &str) {
        let db = &self.backend.db;
        let done = format!("SELECT status FROM executions WHERE exec_id = '{exec}'");
        kanade_testkit::wait_until("the execution to complete", Duration::from_secs(120), || {
            query(db, &done) == ["completed"]
        });
        let counters =
            format!("SELECT target_count || ' ' || succeeded FROM executions WHERE exec_id = '{exec}'");
        assert_eq!(query(db, &counters), ["5 5"]);
        assert_eq!((self.runs.total(), self.runs.doubles()), (5, 0), "each PC runs once");
        let audited = format!(
            "SELECT action FROM audit_log WHERE action = 'exec.create' AND detail_json LIKE '%{exec}%'"
        );
        kanade_testkit::wait_until("exec.create in the audit log", Duration::from_secs(30), || {
            query(db, &audited).len() == 1
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_killed_between_storing_an_execution_and_publishing_it_publishes_it_after_restart() {
    // The backend dies right after the execution and its audit event are committed, before
    // any command goes out.
    let mut a = armed("exec.stored").await;
    let answer = kanade_testkit::http::request(
        a.backend.port,
        "POST",
        "/api/deploy",
        DEPLOY.as_bytes(),
        "application/yaml",
    );
    assert!(!matches!(answer, Ok((201, _))), "the deploy was answered: the failpoint was not reached");
    kanade_testkit::wait_until("the backend to die at the failpoint", Duration::from_secs(10), || {
        a.backend.exited()
    });
    let db = a.backend.db.clone();
    let stored = query(&db, "SELECT exec_id || ' ' || status FROM executions");
    assert_eq!(stored.len(), 1, "{stored:?}");
    let (exec, status) = stored[0].split_once(' ').unwrap();
    assert_eq!(status, "pending");
    assert_eq!(query(&db, "SELECT subject FROM audit_outbox"), ["audit.exec.create"]);
    assert!(a.nothing_published().await, "a command went out before the crash: the test proves nothing");

    a.backend.unset_env("KANADE_FAILPOINT");
    a.backend.restart();
    a.completes_once(exec);
    drop(a.dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_execution_whose_commands_were_not_confirmed_goes_out_from_the_dispatcher_once() {
    // The request stores the execution, then its publish fails (nothing sent).
    let a = armed("exec.unconfirmed").await;
    let (status, body) = kanade_testkit::http::request(
        a.backend.port,
        "POST",
        "/api/deploy",
        DEPLOY.as_bytes(),
        "application/yaml",
    )
    .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 201, "{body}");
    assert!(body["note"].as_str().unwrap_or_default().contains("dispatcher"), "{body}");
    assert!(a.nothing_published().await, "a command went out: the test proves nothing");
    a.completes_once(body["exec_id"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_backend_outlives_its_broker_and_works_when_it_returns() {
    let mut a = armed("none").await;
    a.server.stop();
    // Long enough for every worker to have hit the outage (the projector's fetch, the lease
    // renewal every second, the dispatcher's tick, the outbox drain).
    std::thread::sleep(Duration::from_secs(5));
    assert!(!a.backend.exited(), "the backend exited with its broker:\n{}", a.backend.log_text());
    // Started while the broker is down: it waits for it instead of exiting.
    a.backend.kill();
    a.backend.restart();
    std::thread::sleep(Duration::from_secs(3));
    assert!(!a.backend.exited(), "the backend gave up on an absent broker:\n{}", a.backend.log_text());
    a.server.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (status, body) = loop {
        // Until the backend is connected and listening again.
        assert!(
            std::time::Instant::now() < deadline,
            "not listening 60 s after the broker returned:\n{}",
            a.backend.log_text()
        );
        match kanade_testkit::http::request(
            a.backend.port,
            "POST",
            "/api/deploy",
            DEPLOY.as_bytes(),
            "application/yaml",
        ) {
            Ok(answer) => break answer,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 201, "{body}");
    a.completes_once(body["exec_id"].as_str().unwrap());
}
