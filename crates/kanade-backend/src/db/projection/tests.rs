//! Projection is idempotent and order-independent: every permutation of a set of messages,
//! with duplicates, ends in the same rows as in-order delivery.

use kanade_shared::wire::{ExecResult, ExecStatus, StartedEvent, Timestamp};
use kanade_shared::{ExecId, PcId, RequestId, ResultId};

use super::*;
use crate::db::Db;

const NOW: i64 = 1_800_000_000_000;

#[derive(Clone, Debug)]
enum Msg {
    Started(StartedEvent),
    Result(ExecResult),
}

fn started(exec: ExecId, pc: &str) -> Msg {
    let pc: PcId = pc.parse().unwrap();
    Msg::Started(StartedEvent {
        schema: 1,
        result_id: ResultId::derive(exec, &pc),
        request_id: RequestId::from_uuid(uuid::Uuid::nil()),
        exec_id: exec,
        job_id: "j".parse().unwrap(),
        pc_id: pc,
        attempt: 1,
        started_at: Timestamp::from_unix_timestamp(1_800_000_000).unwrap(),
    })
}

fn result(exec: ExecId, pc: &str, status: ExecStatus) -> Msg {
    let pc: PcId = pc.parse().unwrap();
    Msg::Result(ExecResult {
        schema: 1,
        result_id: ResultId::derive(exec, &pc),
        request_id: RequestId::from_uuid(uuid::Uuid::nil()),
        exec_id: exec,
        job_id: "j".parse().unwrap(),
        version: "1".parse().unwrap(),
        pc_id: pc,
        exit_code: Some(if status == ExecStatus::Succeeded { 0 } else { 1 }),
        status,
        skip_reason: None,
        message: None,
        stdout: "out".into(),
        stderr: String::new(),
        truncated: false,
        started_at: Some(Timestamp::from_unix_timestamp(1_800_000_000).unwrap()),
        finished_at: Timestamp::from_unix_timestamp(1_800_000_005).unwrap(),
        attempt: 1,
    })
}

async fn fresh(exec: ExecId) -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("backend.db")).unwrap();
    let exec_id = exec.to_string();
    db.write(move |tx| {
        insert_execution(
            tx,
            &NewExecution {
                exec_id: &exec_id,
                job_id: "j",
                version: "1",
                created_by: "test",
                plan_json: "{}",
                targets: &[("PC-A".into(), 0), ("PC-B".into(), 0)],
                waves: &[],
                target_count: 2,
                schedule_id: None,
                title: None,
            },
            NOW,
        )
    })
    .await
    .unwrap();
    (dir, db)
}

async fn apply(db: &Db, batch: Vec<Msg>) {
    db.write(move |tx| {
        for m in batch {
            match m {
                Msg::Started(e) => apply_started(tx, &[e], NOW)?,
                Msg::Result(r) => apply_results(tx, &[r], NOW)?,
            }
        }
        Ok(())
    })
    .await
    .unwrap();
}

type Snapshot = (Vec<(String, String, String, i64)>, (String, i64, i64, i64));

async fn snapshot(db: &Db) -> Snapshot {
    db.read(|c| {
        let mut stmt =
            c.prepare("SELECT pc_id, status, stdout, attempt FROM execution_results ORDER BY pc_id")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        let exec = c.query_row("SELECT status, succeeded, failed, other FROM executions", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        Ok((rows, exec))
    })
    .await
    .unwrap()
}

fn permutations(items: &[Msg]) -> Vec<Vec<Msg>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first.clone());
            out.push(tail);
        }
    }
    out
}

#[tokio::test]
async fn every_order_with_duplicates_gives_the_in_order_rows() {
    let exec = ExecId::new();
    let messages = vec![
        started(exec, "PC-A"),
        result(exec, "PC-A", ExecStatus::Succeeded),
        started(exec, "PC-B"),
        result(exec, "PC-B", ExecStatus::Failed),
    ];
    let (_d, db) = fresh(exec).await;
    apply(&db, messages.clone()).await;
    let expected = snapshot(&db).await;
    assert_eq!(expected.1, ("failed".to_owned(), 1, 1, 0));
    assert_eq!(expected.0.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(), ["succeeded", "failed"]);

    for order in permutations(&messages) {
        let (_d, db) = fresh(exec).await;
        // Every message twice, the second copy after all the first ones (a redelivery).
        let mut twice = order.clone();
        twice.extend(order.iter().rev().cloned());
        apply(&db, twice).await;
        assert_eq!(snapshot(&db).await, expected, "order {order:?}");
    }
}

#[tokio::test]
async fn status_moves_pending_running_completed() {
    let exec = ExecId::new();
    let (_d, db) = fresh(exec).await;
    assert_eq!(snapshot(&db).await.1.0, "pending");
    apply(&db, vec![started(exec, "PC-A")]).await;
    assert_eq!(snapshot(&db).await.1.0, "running");
    apply(&db, vec![result(exec, "PC-A", ExecStatus::Succeeded), result(exec, "PC-B", ExecStatus::Skipped)])
        .await;
    assert_eq!(snapshot(&db).await.1.0, "completed");
}

#[test]
fn status_rule_table() {
    let check = |current, target, done, running, failures, waves, want| {
        let got = next_status(current, target, done, running, failures, waves);
        assert_eq!(got, want, "{current} {target} {done} {running} {failures} {waves}");
    };
    check("pending", 3, 0, 0, 0, false, "pending");
    check("pending", 3, 0, 1, 0, false, "running");
    check("running", 3, 2, 0, 0, false, "running");
    check("running", 3, 3, 0, 0, false, "completed");
    check("running", 3, 3, 0, 1, false, "failed");
    check("running", 3, 3, 0, 0, true, "running");
    check("aborted", 3, 3, 0, 0, false, "aborted");
    check("expired", 3, 1, 0, 0, false, "expired");
    check("pending", 0, 0, 0, 0, false, "pending");
}

#[tokio::test]
async fn a_late_pc_becomes_a_target_in_any_order() {
    let exec = ExecId::new();
    let target_count = |db: &Db| {
        let db = db.clone();
        async move {
            db.read(|c| {
                Ok(c.query_row("SELECT target_count, status FROM executions", [], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?)
            })
            .await
            .unwrap()
        }
    };
    // PC-C was not expected (it came online later) and ran the exec through catch-up.
    let (_d, db) = fresh(exec).await;
    apply(
        &db,
        vec![result(exec, "PC-C", ExecStatus::Succeeded), result(exec, "PC-A", ExecStatus::Succeeded)],
    )
    .await;
    assert_eq!(target_count(&db).await, (3, "running".to_owned()));
    apply(
        &db,
        vec![result(exec, "PC-B", ExecStatus::Succeeded), result(exec, "PC-C", ExecStatus::Succeeded)],
    )
    .await;
    assert_eq!(target_count(&db).await, (3, "completed".to_owned()));

    // The same results replayed before the execution row exists (a rebuild) end the same way.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("backend.db")).unwrap();
    apply(&db, ["PC-C", "PC-A", "PC-B"].map(|pc| result(exec, pc, ExecStatus::Succeeded)).to_vec()).await;
    let exec_id = exec.to_string();
    db.write(move |tx| {
        let targets = [("PC-A".to_owned(), 0), ("PC-B".to_owned(), 0)];
        let new = NewExecution {
            exec_id: &exec_id,
            job_id: "j",
            version: "1",
            created_by: "test",
            plan_json: "{}",
            targets: &targets,
            waves: &[],
            target_count: 2,
            schedule_id: None,
            title: None,
        };
        insert_execution(tx, &new, NOW)
    })
    .await
    .unwrap();
    assert_eq!(target_count(&db).await, (3, "completed".to_owned()));
}

#[tokio::test]
async fn liveness_follows_the_backends_clock_whatever_the_agents_says() {
    let (_dir, db) = fresh(ExecId::new()).await;
    let golden: kanade_shared::wire::Heartbeat = kanade_shared::wire::decode(include_bytes!(
        "../../../../kanade-shared/test-data/wire/v1/heartbeat.json"
    ))
    .unwrap();
    // (received by us, the agent's clock offset in seconds) -> last_seen, skew
    let steps = [(NOW, -3_600), (NOW + 30_000, 86_400), (NOW + 60_000, 0)];
    for (received, offset) in steps {
        let mut beat = golden.clone();
        beat.pc_id = "PC-A".parse().unwrap();
        beat.at =
            Timestamp::from_unix_timestamp_nanos(i128::from(received + offset * 1000) * 1_000_000).unwrap();
        db.write(move |tx| apply_heartbeats(tx, &[beat], received)).await.unwrap();
        let row = db
            .read(|c| {
                Ok(c.query_row(
                    "SELECT last_seen_ms, clock_skew_ms FROM agents WHERE pc_id = 'PC-A'",
                    [],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                )?)
            })
            .await
            .unwrap();
        // A clock an hour slow is still online now; one that ran a day ahead does not freeze
        // the next, correct, beats.
        assert_eq!(row, (received, offset * 1000));
    }
}
