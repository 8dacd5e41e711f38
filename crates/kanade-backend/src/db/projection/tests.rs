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

impl Msg {
    /// The same message about another execution (its result id follows).
    fn for_exec(self, exec: ExecId) -> Self {
        match self {
            Msg::Started(mut e) => {
                e.exec_id = exec;
                e.result_id = ResultId::derive(exec, &e.pc_id);
                Msg::Started(e)
            }
            Msg::Result(mut r) => {
                r.exec_id = exec;
                r.result_id = ResultId::derive(exec, &r.pc_id);
                Msg::Result(r)
            }
        }
    }
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

/// A store of each engine: SQLite in a temp dir, Postgres in a fresh database of the test
/// binary's cluster.
pub(crate) async fn engines() -> Vec<(Option<tempfile::TempDir>, Db)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Db::open(&dir.path().join("backend.db")).unwrap();
    let url = kanade_testkit::PgCluster::shared().fresh_database();
    let pg = Db::connect_postgres(&url).await.unwrap();
    vec![(Some(dir), sqlite), (None, pg)]
}

fn created(exec: ExecId, targets: &[&str]) -> ExecCreated {
    ExecCreated {
        exec_id: exec.to_string(),
        job_id: "j".into(),
        version: "1".into(),
        plan: serde_json::json!({}),
        target_count: targets.len() as i64,
        targets: targets.iter().map(|pc| (pc.to_string(), 0)).collect(),
        waves: Vec::new(),
        schedule_id: None,
        title: None,
    }
}

/// Each engine with the execution `exec` created (targets PC-A and PC-B).
async fn fresh(exec: ExecId) -> Vec<(Option<tempfile::TempDir>, Db)> {
    let mut out = engines().await;
    for (_, db) in &mut out {
        db.insert_execution(created(exec, &["PC-A", "PC-B"]), "test".into(), NOW).await.unwrap();
    }
    out
}

async fn apply(db: &Db, batch: Vec<Msg>) {
    for m in batch {
        match m {
            Msg::Started(e) => db.apply_started(vec![e], NOW, None).await.unwrap(),
            Msg::Result(r) => db.apply_results(vec![r], NOW, None).await.unwrap(),
        }
    }
}

type Snapshot =
    (Vec<(kanade_shared::PcId, String, Option<String>, Option<i64>)>, (String, i64, i64, i64, i64));

async fn snapshot(db: &Db, exec: ExecId) -> Snapshot {
    let (e, pcs, _) = db.execution(exec, true).await.unwrap().expect("the execution");
    let rows = pcs.into_iter().map(|p| (p.pc_id, p.status, p.stdout, p.attempt)).collect();
    (rows, (e.status, e.succeeded, e.failed, e.other, e.target_count))
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
    for (_d, db) in fresh(exec).await {
        apply(&db, messages.clone()).await;
        let expected = snapshot(&db, exec).await;
        assert_eq!(expected.1, ("failed".to_owned(), 1, 1, 0, 2), "{}", db.engine_name());
        assert_eq!(expected.0.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(), ["succeeded", "failed"]);
        for order in permutations(&messages) {
            let exec = ExecId::new();
            let order: Vec<Msg> = order.into_iter().map(|m| m.for_exec(exec)).collect();
            db.insert_execution(created(exec, &["PC-A", "PC-B"]), "test".into(), NOW).await.unwrap();
            // Every message twice, the second copy after all the first ones (a redelivery).
            let mut twice = order.clone();
            twice.extend(order.iter().rev().cloned());
            apply(&db, twice).await;
            assert_eq!(snapshot(&db, exec).await, expected, "{} order {order:?}", db.engine_name());
        }
    }
}

#[tokio::test]
async fn status_moves_pending_running_completed() {
    let exec = ExecId::new();
    for (_d, db) in fresh(exec).await {
        assert_eq!(snapshot(&db, exec).await.1.0, "pending");
        apply(&db, vec![started(exec, "PC-A")]).await;
        assert_eq!(snapshot(&db, exec).await.1.0, "running");
        apply(
            &db,
            vec![result(exec, "PC-A", ExecStatus::Succeeded), result(exec, "PC-B", ExecStatus::Skipped)],
        )
        .await;
        assert_eq!(snapshot(&db, exec).await.1.0, "completed", "{}", db.engine_name());
    }
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
            let (e, _, _) = db.execution(exec, false).await.unwrap().unwrap();
            (e.target_count, e.status)
        }
    };
    // PC-C was not expected (it came online later) and ran the exec through catch-up. The
    // backend that created the execution holds its targets and checks only PC-C. Another (a
    // restarted backend, a second one on Postgres) reads them all with the first result it
    // projects: PC-C's own, or PC-A's (PC-C is then checked against what it holds).
    for another in [false, true] {
        for first in [["PC-C", "PC-A"], ["PC-A", "PC-C"]] {
            for (_d, db) in fresh(exec).await {
                assert_eq!(db.targets_held(exec, NOW), Some(2), "held from the execution's creation");
                let db = if another { db.as_another_process() } else { db };
                apply(&db, first.map(|pc| result(exec, pc, ExecStatus::Succeeded)).to_vec()).await;
                assert_eq!(target_count(&db).await, (3, "running".to_owned()), "{first:?} {another}");
                assert_eq!(db.targets_held(exec, NOW), Some(3), "{first:?} {another}");
                apply(
                    &db,
                    vec![
                        result(exec, "PC-B", ExecStatus::Succeeded),
                        result(exec, "PC-C", ExecStatus::Succeeded),
                    ],
                )
                .await;
                assert_eq!(target_count(&db).await, (3, "completed".to_owned()), "{}", db.engine_name());
            }
        }
    }

    // The same results replayed before the execution row exists (a rebuild) end the same way.
    for (_d, db) in engines().await {
        apply(&db, ["PC-C", "PC-A", "PC-B"].map(|pc| result(exec, pc, ExecStatus::Succeeded)).to_vec()).await;
        db.insert_execution(created(exec, &["PC-A", "PC-B"]), "test".into(), NOW).await.unwrap();
        assert_eq!(target_count(&db).await, (3, "completed".to_owned()), "{}", db.engine_name());
    }
}

#[tokio::test]
async fn liveness_follows_the_backends_clock_whatever_the_agents_says() {
    let golden: kanade_shared::wire::Heartbeat = kanade_shared::wire::decode(include_bytes!(
        "../../../../kanade-shared/test-data/wire/v1/heartbeat.json"
    ))
    .unwrap();
    for (_dir, db) in engines().await {
        // (received by us, the agent's clock offset in seconds) -> last_seen, skew
        let steps = [(NOW, -3_600), (NOW + 30_000, 86_400), (NOW + 60_000, 0)];
        for (received, offset) in steps {
            let mut beat = golden.clone();
            beat.pc_id = "PC-A".parse().unwrap();
            beat.at = Timestamp::from_unix_timestamp_nanos(i128::from(received + offset * 1000) * 1_000_000)
                .unwrap();
            db.apply_heartbeats(vec![beat], received, crate::pipeline::plan::ALIVE_WINDOW_MS).await.unwrap();
            let (agent, _, _) = db.agent("PC-A".parse().unwrap(), 0).await.unwrap().unwrap();
            // A clock an hour slow is still online now; one that ran a day ahead does not freeze
            // the next, correct, beats.
            assert_eq!((agent.last_seen_ms, agent.clock_skew_ms), (received, Some(offset * 1000)));
        }
    }
}

#[tokio::test]
async fn backends_starting_together_on_one_postgres_both_open_it() {
    let url = kanade_testkit::PgCluster::shared().fresh_database();
    let open = || tokio::time::timeout(std::time::Duration::from_secs(20), Db::connect_postgres(&url));
    let (a, b) = tokio::join!(open(), open());
    let (a, b) = (a.expect("first open hangs").unwrap(), b.expect("second open hangs").unwrap());
    assert_eq!(a.projection_name().await.unwrap(), b.projection_name().await.unwrap());
    // The first to ask stores the session secret; the other gets that one, not its own.
    let first = a.shared_secret("jwt".into(), "a".repeat(64)).await.unwrap();
    let second = b.shared_secret("jwt".into(), "b".repeat(64)).await.unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("a".repeat(64).as_str(), "a".repeat(64).as_str()));
}

#[tokio::test]
async fn a_term_fenced_off_by_a_later_one_writes_nothing() {
    use crate::db::DbError;
    use crate::db::fence::Fence;
    let exec = ExecId::new();
    let term = |revision| Some(Fence { lease: "projection-x".into(), revision });
    let Msg::Result(a) = result(exec, "PC-A", ExecStatus::Succeeded) else { unreachable!() };
    let Msg::Result(b) = result(exec, "PC-B", ExecStatus::Failed) else { unreachable!() };
    for (_dir, db) in fresh(exec).await {
        assert!(db.claim_fence(term(5).unwrap()).await.unwrap());
        // Several projectors of one term each claim it.
        assert!(db.claim_fence(term(5).unwrap()).await.unwrap());
        db.apply_results(vec![a.clone()], NOW, term(5)).await.unwrap();
        // A later holder took the lease and claimed it: the old term, waking up, writes nothing.
        assert!(db.claim_fence(term(9).unwrap()).await.unwrap());
        let e = db.apply_results(vec![b.clone()], NOW, term(5)).await.unwrap_err();
        assert!(matches!(e, DbError::Fenced { mine: 5, newest: 9, .. }), "{e}");
        assert_eq!(snapshot(&db, exec).await.1, ("running".into(), 1, 0, 0, 2), "{}", db.engine_name());
        assert!(!db.claim_fence(term(5).unwrap()).await.unwrap(), "an old term cannot claim back");
        db.apply_results(vec![b.clone()], NOW, term(9)).await.unwrap();
        assert_eq!(snapshot(&db, exec).await.1, ("failed".into(), 1, 1, 0, 2), "{}", db.engine_name());
    }
}

#[test]
fn wave_0_is_published_when_replayed_and_pending_until_its_deadline_when_stored_by_its_request() {
    let cases = [
        (0, 100, FirstWave::Published, (100, "published", Some(100))),
        (0, 100, FirstWave::PublishBy(130), (130, "pending", None)),
        (1, 500, FirstWave::Published, (500, "pending", None)),
        (1, 500, FirstWave::PublishBy(130), (500, "pending", None)),
    ];
    for (index, due, first, want) in cases {
        assert_eq!(wave_row(index, due, first), want, "wave {index}, {first:?}");
    }
}

fn host_sample(pc: &str, cpu: f32, mem: u64) -> kanade_shared::wire::HostPerf {
    kanade_shared::wire::HostPerf {
        schema: 1,
        pc_id: pc.parse().unwrap(),
        at: Timestamp::from_unix_timestamp(1_800_000_000).unwrap(),
        cpu_pct: cpu,
        mem_used_bytes: mem,
        mem_total_bytes: 1000,
        swap_used_bytes: 0,
        swap_total_bytes: 0,
        load: Some(cpu / 10.0),
        net_rx_bytes_per_s: 100,
        net_tx_bytes_per_s: 0,
        disks: vec![kanade_shared::wire::DiskPerf {
            name: "d".into(),
            read_bytes_per_s: 10,
            write_bytes_per_s: 20,
            free_bytes: None,
        }],
    }
}

#[tokio::test]
async fn rollups_average_each_bucket_and_count_a_sample_once() {
    use super::rollups::{FIVE_MINUTES_MS, HOUR_MS};
    let start = NOW - NOW % HOUR_MS;
    let batch = vec![
        (start + 1_000, host_sample("PC-R", 10.0, 100)),
        (start + 61_000, host_sample("PC-R", 30.0, 300)),
        (start + FIVE_MINUTES_MS + 5, host_sample("PC-R", 50.0, 500)),
        (start + 1_000, host_sample("PC-OTHER", 99.0, 999)),
    ];
    for (_dir, db) in engines().await {
        // The same batch twice (a retried write): the sums do not move.
        db.apply_host_perf(batch.clone()).await.unwrap();
        db.apply_host_perf(batch.clone()).await.unwrap();
        let pc: PcId = "PC-R".parse().unwrap();
        let five =
            db.host_perf(pc.clone(), start, start + HOUR_MS, 100, Some(FIVE_MINUTES_MS)).await.unwrap();
        let got: Vec<_> = five.iter().map(|p| (p.at - start, p.samples, p.cpu_pct, p.cpu_max_pct)).collect();
        assert_eq!(
            got,
            [(0, Some(2), 20.0, Some(30.0)), (FIVE_MINUTES_MS, Some(1), 50.0, Some(50.0))],
            "{}",
            db.engine_name()
        );
        assert_eq!(
            (five[0].mem_used_bytes, five[0].disk_write_bytes_per_s, five[0].load),
            (200, 20, Some(2.0))
        );
        let hour = db.host_perf(pc.clone(), start, start + HOUR_MS, 100, Some(HOUR_MS)).await.unwrap();
        assert_eq!(hour.len(), 1);
        assert_eq!((hour[0].samples, hour[0].cpu_pct, hour[0].net_rx_bytes_per_s), (Some(3), 30.0, 100));
        let raw = db.host_perf(pc, start, start + HOUR_MS, 100, None).await.unwrap();
        assert_eq!(raw.len(), 3);
        assert_eq!((raw[0].disk_read_bytes_per_s, raw[0].samples), (10, None));
    }
}

#[tokio::test]
async fn enrolment_counts_uses_admits_only_the_current_secret_and_revocation_wins() {
    use crate::db::enroll::{Refused, Revoked};
    use kanade_shared::wire::enroll::TokenSpec;
    let now = time::macros::datetime!(2026-12-01 10:00 UTC);
    let ms = crate::db::ts_ms(now);
    let spec = TokenSpec {
        expires_at: now + time::Duration::hours(1),
        max_uses: 2,
        groups: vec!["lab".parse().unwrap()],
    };
    let mut n = 0;
    let mut audit = move || {
        n += 1;
        crate::db::outbox::Outgoing {
            id: format!("audit-{n}"),
            subject: "audit.x".into(),
            payload: "{}".into(),
        }
    };
    for (_dir, db) in engines().await {
        let e = db.engine_name();
        db.create_enroll_token("t1".into(), "hash1".into(), "admin".into(), ms, spec.clone(), audit())
            .await
            .unwrap();
        let pc = |s: &str| s.parse::<PcId>().unwrap();
        let t = db.enrol("hash1".into(), pc("PC-A"), "sA".into(), now, audit()).await.unwrap().unwrap();
        assert_eq!((t.uses, t.groups.len()), (1, 1), "{e}");
        // Enrolled already: refused, and the refusal costs the token no use.
        let again = db.enrol("hash1".into(), pc("PC-A"), "sX".into(), now, audit()).await.unwrap();
        assert_eq!(again, Err(Refused::Enrolled(pc("PC-A"))), "{e}");
        db.enrol("hash1".into(), pc("PC-B"), "sB".into(), now, audit()).await.unwrap().unwrap();
        match db.enrol("hash1".into(), pc("PC-C"), "sC".into(), now, audit()).await.unwrap() {
            Err(Refused::Token(why)) => assert!(why.contains("used up (2 of 2 uses)"), "{e}: {why}"),
            other => panic!("{e}: {other:?}"),
        }
        let late = now + time::Duration::hours(2);
        db.create_enroll_token("t2".into(), "hash2".into(), "admin".into(), ms, spec.clone(), audit())
            .await
            .unwrap();
        match db.enrol("hash2".into(), pc("PC-C"), "sC".into(), late, audit()).await.unwrap() {
            Err(Refused::Token(why)) => assert!(why.contains("expired"), "{e}: {why}"),
            other => panic!("{e}: {other:?}"),
        }
        assert!(matches!(
            db.enrol("nope".into(), pc("PC-C"), "s".into(), now, audit()).await.unwrap(),
            Err(Refused::Token(_))
        ));

        // Only the PC's own current secret is admitted; the connection is recorded.
        assert!(db.authorize_agent(pc("PC-A"), "sA".into(), "S1".into(), 7, ms).await.unwrap(), "{e}");
        assert!(!db.authorize_agent(pc("PC-A"), "sB".into(), "S1".into(), 8, ms).await.unwrap(), "{e}");
        assert!(!db.authorize_agent(pc("PC-Z"), "sA".into(), "S1".into(), 9, ms).await.unwrap(), "{e}");
        let revoked = db.revoke_agent_credentials(pc("PC-A"), "admin".into(), ms, audit()).await.unwrap();
        assert_eq!(revoked, Revoked::Now(Some(("S1".into(), 7))), "{e}");
        assert!(!db.authorize_agent(pc("PC-A"), "sA".into(), "S1".into(), 10, ms).await.unwrap(), "{e}");
        assert_eq!(
            db.revoke_agent_credentials(pc("PC-A"), "admin".into(), ms, audit()).await.unwrap(),
            Revoked::Already
        );
        assert_eq!(
            db.revoke_agent_credentials(pc("PC-Q"), "admin".into(), ms, audit()).await.unwrap(),
            Revoked::NotEnrolled
        );
        // A revoked PC enrols again with a new secret (a reinstalled PC); the old one stays out.
        db.create_enroll_token("t3".into(), "hash3".into(), "admin".into(), ms, spec.clone(), audit())
            .await
            .unwrap();
        db.enrol("hash3".into(), pc("PC-A"), "sA2".into(), now, audit()).await.unwrap().unwrap();
        assert!(!db.authorize_agent(pc("PC-A"), "sA".into(), "S1".into(), 11, ms).await.unwrap(), "{e}");
        assert!(db.authorize_agent(pc("PC-A"), "sA2".into(), "S1".into(), 12, ms).await.unwrap(), "{e}");

        // Revoked tokens enrol nobody; kept state carries tokens and credentials.
        assert!(db.revoke_enroll_token("t3".into(), ms, audit()).await.unwrap());
        assert!(!db.revoke_enroll_token("t3".into(), ms, audit()).await.unwrap());
        let kept = db.kept_state().await.unwrap();
        assert_eq!((kept.enroll_tokens.len(), kept.credentials.len()), (3, 2), "{e}");
        // Every change that was made left its audit event in the outbox; refusals left none.
        let stored = db.audit_due(i64::MAX, 100).await.unwrap().len();
        assert_eq!(
            stored,
            3 + 3 + 1 + 1,
            "{e}: three tokens, three enrolments, one revoked PC, one revoked token"
        );
    }
}

/// The timeline of one engine under `filter`, as `(kind, pc, event_id, at)`.
async fn timeline(db: &Db, filter: crate::db::queries::ObsFilter) -> Vec<(String, String, String, i64)> {
    db.obs_events(filter).await.unwrap().into_iter().map(|e| (e.kind, e.pc_id, e.event_id, e.at)).collect()
}

#[tokio::test]
async fn the_timeline_merges_stored_events_with_each_runs_start_and_finish() {
    use crate::db::queries::ObsFilter;
    let exec = ExecId::new();
    let all = ObsFilter { limit: 100, ..Default::default() };
    for (_d, db) in fresh(exec).await {
        let engine = db.engine_name();
        let Msg::Started(mut retry) = started(exec, "PC-B") else { unreachable!() };
        retry.attempt = 2;
        retry.started_at = Timestamp::from_unix_timestamp(1_800_000_002).unwrap();
        apply(
            &db,
            vec![started(exec, "PC-A"), result(exec, "PC-A", ExecStatus::Failed), started(exec, "PC-B")],
        )
        .await;
        db.apply_started(vec![retry], NOW, None).await.unwrap();
        let event = kanade_shared::wire::ObsEvent {
            schema: 1,
            event_id: "e-1".into(),
            pc_id: "PC-A".parse().unwrap(),
            kind: "disk.low".into(),
            at: Timestamp::from_unix_timestamp(1_800_000_003).unwrap(),
            exec_id: None,
            data: serde_json::Map::new(),
        };
        db.apply_obs(vec![event], NOW, None).await.unwrap();
        // A redelivered result changes nothing.
        apply(&db, vec![result(exec, "PC-A", ExecStatus::Failed)]).await;

        let events = db.obs_events(all.clone()).await.unwrap();
        let got: Vec<(&str, &str, &str)> =
            events.iter().map(|e| (e.kind.as_str(), e.pc_id.as_str(), e.event_id.as_str())).collect();
        let ra = ResultId::derive(exec, &"PC-A".parse().unwrap());
        assert_eq!(
            got,
            [
                ("job.finished", "PC-A", format!("job.finished.{ra}").as_str()),
                ("disk.low", "PC-A", "e-1"),
                ("job.started", "PC-B", format!("job.started.{exec}.2").as_str()),
                ("job.started", "PC-B", format!("job.started.{exec}.1").as_str()),
                ("job.started", "PC-A", format!("job.started.{exec}.1").as_str()),
            ],
            "{engine}"
        );
        let finished = &events[0].data;
        assert_eq!(
            (&finished["status"], &finished["exit_code"], &finished["duration_ms"], &finished["attempt"]),
            (&"failed".into(), &1.into(), &5000.into(), &1.into()),
            "{engine}: {finished:?}"
        );
        assert_eq!(events[4].data["job_id"], "j", "{engine}");

        // Pages of one walk the same rows in the same order.
        let mut walked = Vec::new();
        let mut before = None;
        loop {
            let page =
                timeline(&db, ObsFilter { limit: 1, before: before.clone(), ..Default::default() }).await;
            let Some((kind, pc, id, at)) = page.into_iter().next() else { break };
            before = Some((at, pc.clone(), id.clone()));
            walked.push((kind, pc, id, at));
            assert!(walked.len() <= 5, "{engine}: paging does not end");
        }
        assert_eq!(walked, timeline(&db, all.clone()).await, "{engine}");

        // Filters apply to every source.
        let kinds = |f: ObsFilter| {
            let db = &db;
            async move { timeline(db, f).await.into_iter().map(|e| e.2).collect::<Vec<_>>() }
        };
        let job = kinds(ObsFilter { kind: Some("job".into()), ..all.clone() }).await;
        assert_eq!(job.len(), 4, "{engine}: {job:?}");
        let fin = kinds(ObsFilter { kind: Some("job.finished".into()), ..all.clone() }).await;
        assert_eq!(fin, [format!("job.finished.{ra}")], "{engine}");
        assert!(kinds(ObsFilter { kind: Some("jo".into()), ..all.clone() }).await.is_empty(), "{engine}");
        let b = kinds(ObsFilter { pc: Some("PC-B".into()), ..all.clone() }).await;
        assert_eq!(b.len(), 2, "{engine}: {b:?}");
        let window = kinds(ObsFilter {
            since_ms: Some(1_800_000_001_000),
            until_ms: Some(1_800_000_004_000),
            ..all.clone()
        })
        .await;
        assert_eq!(window, ["e-1".to_owned(), format!("job.started.{exec}.2")], "{engine}");
    }
}

/// One batch (as the projector writes them) with a result for a new row, one for a `running`
/// row and one for a row that is final already: the first two land, the final row stays as it
/// was, and the counters move once per row that landed.
#[tokio::test]
async fn one_batch_inserts_new_rows_finishes_running_ones_and_leaves_final_ones() {
    let exec = ExecId::new();
    let of = |m: Msg| match m {
        Msg::Result(r) => r,
        Msg::Started(_) => unreachable!(),
    };
    for (_d, db) in engines().await {
        db.insert_execution(created(exec, &["PC-A", "PC-B", "PC-C"]), "test".into(), NOW).await.unwrap();
        apply(&db, vec![started(exec, "PC-A"), result(exec, "PC-B", ExecStatus::Succeeded)]).await;
        // PC-A's result carries no start: the started event's stays.
        let mut a = of(result(exec, "PC-A", ExecStatus::Failed));
        a.started_at = None;
        a.stdout = "a\tline\\with\nbreaks\r".into();
        let mut b = of(result(exec, "PC-B", ExecStatus::Failed));
        b.stdout = "changed".into();
        // A new row's text goes by `COPY` on Postgres: its separators and escapes come back as
        // they were (NUL as U+FFFD, which Postgres text cannot hold).
        let mut c = of(result(exec, "PC-C", ExecStatus::Succeeded));
        let odd = "\\N alone\n\\.\nback\\slash\ttab\r\0nul";
        c.stdout = odd.into();
        c.exit_code = None;
        db.apply_results(vec![a, b, c], NOW, None).await.unwrap();

        let (e, pcs, _) = db.execution(exec, true).await.unwrap().unwrap();
        let stored_odd =
            if db.engine_name() == "postgres" { odd.replace('\0', "\u{FFFD}") } else { odd.to_owned() };
        assert_eq!(pcs[2].exit_code, None, "{}", db.engine_name());
        let rows: Vec<(&str, &str, Option<&str>, Option<i64>)> = pcs
            .iter()
            .map(|p| (p.pc_id.as_str(), p.status.as_str(), p.stdout.as_deref(), p.started_ms))
            .collect();
        let started_ms = Some(1_800_000_000_000);
        assert_eq!(
            rows,
            [
                ("PC-A", "failed", Some("a\tline\\with\nbreaks\r"), started_ms),
                ("PC-B", "succeeded", Some("out"), started_ms),
                ("PC-C", "succeeded", Some(stored_odd.as_str()), started_ms),
            ],
            "{}",
            db.engine_name()
        );
        assert_eq!((e.succeeded, e.failed, e.status.as_str()), (2, 1, "failed"), "{}", db.engine_name());
    }
}
