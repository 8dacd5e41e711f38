//! Several real `kanade-backend` processes on one broker. On one Postgres database they share
//! the projection: the leader projects, and when it is killed with SIGKILL mid-ingest the other
//! takes over and finishes, every result once and the counters equal to the rows. With a SQLite
//! database each, they leave each other's projector consumers alone.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use kanade_testkit::{NatsServer, PgCluster};

mod common;

use common::process::BackendProcess;

const RESULTS: usize = 20_000;
/// What the backend holding the projection's lease logs.
const LEADS: &str = "leading: projecting the shared projection";

fn count(pg: &PgCluster, db: &str, sql: &str) -> i64 {
    pg.psql(db, sql).ok().and_then(|s| s.parse().ok()).unwrap_or(-1)
}

#[tokio::test]
async fn backends_sharing_postgres_project_each_result_once_across_a_leader_kill() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 1).await.unwrap();
    let exec = common::flood(&js, RESULTS).await;

    let pg = PgCluster::shared();
    let url = pg.fresh_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut backends: Vec<BackendProcess> =
        dirs.iter().map(|d| BackendProcess::start_postgres(d.path(), &server.url(), &url)).collect();
    let rows = || count(pg, &db, "SELECT COUNT(*) FROM execution_results");
    kanade_testkit::wait_until("a backend to start projecting", Duration::from_secs(60), || rows() > 0);
    let leader = backends.iter().position(|b| b.log_text().contains(LEADS)).expect("one backend leads");
    assert!(
        !backends[1 - leader].log_text().contains(LEADS),
        "both backends claim to lead:\n{}",
        backends[1 - leader].log_text()
    );
    backends[leader].kill();
    let at_kill = rows();
    assert!(at_kill < RESULTS as i64, "ingest finished before the kill ({at_kill}); the test proves nothing");

    // The survivor takes the lease once it expires (30 s) and resumes from the ack floor.
    kanade_testkit::wait_until("the survivor to project every result", Duration::from_secs(120), || {
        rows() >= RESULTS as i64
    });
    assert!(backends[1 - leader].log_text().contains(LEADS), "the survivor never took over");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(rows(), RESULTS as i64, "a result was projected twice or lost");
    let counters =
        format!("SELECT succeeded || ',' || target_count FROM executions WHERE exec_id = '{exec}'");
    kanade_testkit::wait_until("the counters to catch up", Duration::from_secs(30), || {
        pg.psql(&db, &counters).unwrap_or_default() == format!("{RESULTS},{RESULTS}")
    });
}

/// Each projector consumer's creation time, by name.
async fn consumers(js: &async_nats::jetstream::Context) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stream in ["RESULTS", "EVENTS", "AUDIT", "INVENTORY"] {
        let stream = js.get_stream(stream).await.unwrap();
        let mut list = stream.consumers();
        while let Some(info) = list.next().await {
            let info = info.unwrap();
            if info.name.starts_with("backend-") {
                out.insert(info.name.clone(), info.created.to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn backends_with_their_own_sqlite_leave_each_others_consumers_alone() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 1).await.unwrap();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let _backends: Vec<BackendProcess> =
        dirs.iter().map(|d| BackendProcess::start(d.path(), &server.url())).collect();
    kanade_testkit::wait_until_async(
        "both backends' consumers (4 streams each)",
        Duration::from_secs(60),
        || {
            let js = js.clone();
            async move { consumers(&js).await.len() == 8 }
        },
    )
    .await;
    let first = consumers(&js).await;
    // Each projector restarts its consumer lookup on every failure, and a consumer deleted by the
    // other backend would come back with a new creation time.
    let watch_for: u64 =
        std::env::var("KANADE_SQLITE_PAIR_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let deadline = std::time::Instant::now() + Duration::from_secs(watch_for);
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(consumers(&js).await, first, "a projector consumer was deleted or recreated");
    }
}
