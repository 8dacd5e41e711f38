//! The agents list at fleet scale: 10,000 agents in a real SQLite file and a real Postgres
//! database, filtered, sorted and paged by the query the dashboard and `GET /api/agents` use.

use kanade_backend::db::Db;
use kanade_backend::db::queries::{AgentFilter, AgentSort};
use kanade_shared::wire::{self, Heartbeat};

const NOW: i64 = 1_800_000_000_000;

#[tokio::test]
async fn ten_thousand_agents_filter_sort_and_page() {
    let dir = tempfile::tempdir().unwrap();
    check(Db::open(&dir.path().join("backend.db")).unwrap()).await;
    let url = kanade_testkit::PgCluster::shared().fresh_database();
    check(Db::connect_postgres(&url).await.unwrap()).await;
}

async fn check(db: Db) {
    let golden: Heartbeat =
        wire::decode(include_bytes!("../../kanade-shared/test-data/wire/v1/heartbeat.json")).unwrap();
    let beats: Vec<(i64, Heartbeat)> = (0..10_000)
        .map(|i| {
            let mut b = golden.clone();
            b.pc_id = format!("PC-{i:05}").parse().unwrap();
            b.hostname = format!("host{i:05}.corp");
            b.groups = if i % 20 == 0 { vec!["canary".parse().unwrap()] } else { vec![] };
            b.agent_version = if i % 2 == 0 { "1.0.0" } else { "1.1.0" }.parse().unwrap();
            // Every third PC was last heard from 10 minutes ago; the rest just now.
            let age = if i % 3 == 0 { 600 } else { 0 };
            b.at = wire::Timestamp::from_unix_timestamp(NOW / 1000 - age).unwrap();
            (age, b)
        })
        .collect();
    for age in [600, 0] {
        let batch: Vec<Heartbeat> = beats.iter().filter(|(a, _)| *a == age).map(|(_, b)| b.clone()).collect();
        db.apply_heartbeats(batch, NOW - age * 1000, kanade_backend::pipeline::plan::ALIVE_WINDOW_MS)
            .await
            .unwrap();
    }

    let page = |f: AgentFilter| {
        let db = db.clone();
        async move { db.agents_page(f).await.unwrap() }
    };
    let base = AgentFilter { alive_since_ms: NOW - 120_000, limit: 50, ..Default::default() };

    let (rows, total) = page(base.clone()).await;
    assert_eq!((rows.len(), total, rows[0].pc_id.as_str()), (50, 10_000, "PC-00000"));
    let (rows, _) = page(AgentFilter { offset: 9_990, ..base.clone() }).await;
    assert_eq!((rows.len(), rows[9].pc_id.as_str()), (10, "PC-09999"));

    let (rows, total) = page(AgentFilter { online: Some(false), ..base.clone() }).await;
    assert_eq!(total, 3_334);
    assert!(rows.iter().all(|r| r.last_seen_ms < NOW - 120_000));
    let (_, total) = page(AgentFilter { online: Some(true), ..base.clone() }).await;
    assert_eq!(total, 6_666);

    let (rows, total) = page(AgentFilter { group: Some("canary".into()), ..base.clone() }).await;
    assert_eq!((total, rows[1].pc_id.as_str()), (500, "PC-00020"));
    // Substring of the host name, any case.
    let (rows, total) = page(AgentFilter { text: Some("HOST0999".into()), ..base.clone() }).await;
    assert_eq!((total, rows[0].pc_id.as_str()), (10, "PC-09990"));

    let (rows, _) = page(AgentFilter { sort: AgentSort::Version, descending: true, ..base.clone() }).await;
    assert_eq!((rows[0].agent_version.as_str(), rows[0].pc_id.as_str()), ("1.1.0", "PC-00001"));
    let (rows, _) = page(AgentFilter { sort: AgentSort::LastSeen, ..base.clone() }).await;
    assert_eq!(rows[0].pc_id.as_str(), "PC-00000");
    assert!(rows[0].last_seen_ms < NOW - 120_000);
    // Keyset paging (the CLI's cursor) continues where the last page ended.
    let (rows, _) = page(AgentFilter { after: Some("PC-00049".into()), ..base }).await;
    assert_eq!(rows[0].pc_id.as_str(), "PC-00050");
}
