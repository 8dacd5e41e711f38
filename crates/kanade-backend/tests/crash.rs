//! The real backend binary killed with SIGKILL while results flow in: after a restart every
//! result is in the database exactly once, and the execution's counters count each once (a
//! result applied again after the crash — its batch committed, its ack lost — must not).

use std::time::Duration;

use kanade_shared::wire::{self, ExecResult, ExecStatus, Timestamp};
use kanade_shared::{ExecId, PcId, RequestId, ResultId};
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
    let exec = ExecId::new();
    // The execution, as the backend would have created it: its counters move with every result
    // newly projected (every PC joins as a late target).
    let created = serde_json::json!({
        "exec_id": exec, "job_id": "flood", "version": "1", "plan": {}, "target_count": 0,
        "targets": [], "waves": [],
    });
    let event = kanade_shared::wire::AuditEvent {
        schema: 1,
        id: kanade_shared::AuditId::new(),
        at: Timestamp::now_utc(),
        actor: "test".into(),
        action: "exec.create".into(),
        target: Some("flood".into()),
        source: None,
        detail: created,
    };
    let subject = kanade_shared::subjects::audit("exec.create").unwrap();
    js.publish(subject, wire::encode(&event).unwrap().into()).await.unwrap().await.unwrap();
    // Acks are awaited per chunk: the client caps acks in flight and would stall otherwise.
    let mut acks = Vec::with_capacity(1000);
    for i in 0..RESULTS {
        let pc: PcId = format!("SIM-{i:05}").parse().unwrap();
        let r = ExecResult {
            schema: 1,
            result_id: ResultId::derive(exec, &pc),
            request_id: RequestId::new(),
            exec_id: exec,
            job_id: "flood".parse().unwrap(),
            version: "1".parse().unwrap(),
            pc_id: pc.clone(),
            exit_code: Some(0),
            status: ExecStatus::Succeeded,
            skip_reason: None,
            message: None,
            stdout: String::new(),
            stderr: String::new(),
            truncated: false,
            started_at: None,
            finished_at: Timestamp::now_utc(),
            attempt: 1,
        };
        let subject = kanade_shared::subjects::result(&pc, r.request_id);
        acks.push(js.publish(subject, wire::encode(&r).unwrap().into()).await.unwrap());
        if acks.len() == 1000 || i + 1 == RESULTS {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }

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
