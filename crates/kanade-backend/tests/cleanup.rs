//! Cleanup against a real stack: stalled executions expire (and stay expired after a rebuild),
//! retention empties each table once its rows are old enough. Passes run "in the future" by
//! handing `run_once` a later instant.

mod common;

use kanade_backend::cleanup::{self, Cleanup};
use kanade_backend::db::now_ms;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

#[tokio::test]
async fn stalled_executions_expire_and_retention_prunes_every_table() {
    let s = common::stack(&[("PC-1", &[])]).await;
    let done = s
        .deploy("id: fine\nversion: '1'\nexecute: { shell: sh, script: 'true' }\ntarget: { pcs: [PC-1] }\n")
        .await;
    s.wait_status(&done, "completed").await;
    let ghost = s.deploy_allowing_unknown("id: lost\nversion: '1'\nexecute: { shell: sh, script: 'true' }\ntarget: { pcs: [PC-1, GHOST] }\n").await;
    // Running once PC-1 started; its result may still be on its way: the expiry message
    // below counts it.
    kanade_testkit::wait_until_async("PC-1's result", std::time::Duration::from_secs(30), || async {
        let (_, body) = s.get(&format!("/api/executions/{ghost}")).await;
        body["execution"]["status"] == "running" && body["execution"]["succeeded"] == 1
    })
    .await;
    let c = Cleanup {
        db: s.state.db.clone(),
        js: s.state.js.clone(),
        bus: s.state.bus.clone(),
        retention: Default::default(),
    };

    // Within the stall window nothing happens.
    let pass = cleanup::run_once(&c, now_ms() + 23 * HOUR).await.unwrap();
    assert!(pass.expired.is_empty(), "{pass:?}");
    let pass = cleanup::run_once(&c, now_ms() + 25 * HOUR).await.unwrap();
    assert_eq!(pass.expired, [ghost.parse::<kanade_shared::ExecId>().unwrap()]);
    let (_, body) = s.get(&format!("/api/executions/{ghost}")).await;
    assert_eq!(body["execution"]["status"], "expired");
    assert_eq!(
        body["execution"]["message"],
        "expired: no progress for 1day (retention.stall_after); 1 of 2 expected results arrived"
    );
    let (_, body) = s.get(&format!("/api/executions/{done}")).await;
    assert_eq!(body["execution"]["status"], "completed", "a finished execution never expires");
    common::wait_for_audit(&s, "exec.expired").await;

    // Results go after 90 days, agents after 90 days without a heartbeat, executions 180 days
    // after they ended (the expired one ended "25 h from now"); the audit log stays a year.
    let pass = cleanup::run_once(&c, now_ms() + 91 * DAY).await.unwrap();
    assert_eq!((pass.pruned.results, pass.pruned.agents, pass.pruned.executions), (2, 1, 0));
    let (_, results) = s.get("/api/results").await;
    assert_eq!(results["items"].as_array().unwrap().len(), 0);
    let pass = cleanup::run_once(&c, now_ms() + 182 * DAY).await.unwrap();
    assert_eq!(pass.pruned.executions, 2);
    assert_eq!(pass.pruned.audit, 0);
    let (_, list) = s.get("/api/executions").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let pass = cleanup::run_once(&c, now_ms() + 366 * DAY).await.unwrap();
    assert!(pass.pruned.audit >= 3, "{pass:?}");
    let (_, audit) = s.get("/api/audit").await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn an_expired_execution_stays_expired_when_the_projection_is_rebuilt() {
    let s = common::stack(&[("PC-1", &[])]).await;
    let ghost = s
        .deploy_allowing_unknown(
            "id: lost\nversion: '1'\nexecute: { shell: sh, script: 'true' }\ntarget: { pcs: [GHOST] }\n",
        )
        .await;
    let c = Cleanup {
        db: s.state.db.clone(),
        js: s.state.js.clone(),
        bus: s.state.bus.clone(),
        retention: Default::default(),
    };
    let pass = cleanup::run_once(&c, now_ms() + 25 * HOUR).await.unwrap();
    assert_eq!(pass.expired, [ghost.parse::<kanade_shared::ExecId>().unwrap()]);
    common::wait_for_audit(&s, "exec.expired").await;

    let _workers = common::wipe_and_restart(&s).await;
    s.wait_status(&ghost, "expired").await;
}

#[tokio::test]
async fn telemetry_is_kept_as_long_as_spec_12_says() {
    let s = common::stack(&[]).await;
    let db = &s.state.db;
    let now = now_ms();
    let host: kanade_shared::wire::HostPerf = serde_json::from_value(serde_json::json!({
        "pc_id": "PC-T", "at": "2026-12-02T12:00:00Z", "cpu_pct": 5.0, "mem_used_bytes": 1, "mem_total_bytes": 2
    }))
    .unwrap();
    let procs: kanade_shared::wire::ProcessPerf = serde_json::from_value(serde_json::json!({
        "pc_id": "PC-T", "at": "2026-12-02T12:00:00Z", "processes": [{ "pid": 1, "name": "init", "cpu_pct": 0.0, "mem_bytes": 5 }]
    }))
    .unwrap();
    db.apply_host_perf(vec![(now, host)]).await.unwrap();
    db.apply_process_perf(vec![(now, procs)]).await.unwrap();
    let event = kanade_shared::wire::ObsEvent {
        schema: 1,
        event_id: "e-1".into(),
        pc_id: "PC-T".parse().unwrap(),
        kind: "disk.low".into(),
        at: kanade_shared::wire::Timestamp::now_utc(),
        exec_id: None,
        data: Default::default(),
    };
    db.apply_obs(vec![event], now, None).await.unwrap();
    let c = Cleanup {
        db: db.clone(),
        js: s.state.js.clone(),
        bus: s.state.bus.clone(),
        retention: Default::default(),
    };
    let pruned = |at| {
        let c = &c;
        async move {
            let p = cleanup::run_once(c, at).await.unwrap().pruned;
            (p.process_perf, p.host_perf, p.rollups, p.obs)
        }
    };
    // Process samples 7 days; raw samples and 5-minute buckets 30; events 90; hourly buckets a year.
    assert_eq!(pruned(now + 6 * DAY).await, (0, 0, 0, 0));
    assert_eq!(pruned(now + 8 * DAY).await, (1, 0, 0, 0));
    assert_eq!(pruned(now + 31 * DAY).await, (0, 1, 1, 0));
    assert_eq!(pruned(now + 91 * DAY).await, (0, 0, 0, 1));
    assert_eq!(pruned(now + 366 * DAY).await, (0, 0, 1, 0));
}
