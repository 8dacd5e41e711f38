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
    assert_eq!(
        rows(),
        RESULTS as i64,
        "a result was lost (rows are keyed by result id; the counters below see a double)"
    );
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

const ADMIN_PASSWORD: &str = "several-backends-test-password";

/// One HTTP call to a backend process; the JSON body.
fn call(port: u16, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let kind = if path == "/api/deploy" { "application/yaml" } else { "application/json" };
    let (status, body) =
        kanade_testkit::http::request_as(port, method, path, body.as_bytes(), kind, token).unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_to_50_agents_through_two_backends_on_tls_postgres_runs_once_per_pc_across_a_leader_kill() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = kanade_testkit::pki::Ca::new(dir.path(), "ca");
    let (cert, key) = ca.issue(dir.path(), "db", &["localhost"]);
    // The cluster refuses plain TCP: both backends reach it over TLS, the server's name checked.
    let pg = PgCluster::start_tls(&cert, &key).unwrap();
    pg.psql("postgres", "CREATE DATABASE deploy").unwrap();
    let url = format!(
        "postgres://kanade@localhost:{}/deploy?sslmode=verify-full&sslrootcert={}",
        pg.port(),
        ca.path.display()
    );
    let env = [("KANADE_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    let mut backends: Vec<BackendProcess> = ["a", "b"]
        .iter()
        .map(|n| BackendProcess::start_postgres_env(&dir.path().join(n), &server.url(), &url, &env))
        .collect();

    let executor = kanade_agent::exec::FakeExecutor {
        duration: Duration::from_millis(200),
        output_bytes: 8,
        ..Default::default()
    };
    let runs = executor.runs.clone();
    let sim = kanade_sim::SimConfig::small_fleet(server.url(), 50, dir.path().join("agents"), executor);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    kanade_sim::start(&sim, stop).await.unwrap();
    let count_of = |sql: &str| count(&pg, "deploy", sql);
    kanade_testkit::wait_until("both backends to see the 50 agents", Duration::from_secs(60), || {
        count_of("SELECT COUNT(*) FROM agents") == 50
    });
    kanade_testkit::wait_until("a backend to lead the projection", Duration::from_secs(60), || {
        backends.iter().any(|b| b.log_text().contains(LEADS))
    });
    let leader = backends.iter().position(|b| b.log_text().contains(LEADS)).unwrap();
    let survivor = 1 - leader;

    // Deployed through the backend about to die: 10 PCs now, 40 more after 8 s.
    let pcs = |range: std::ops::Range<usize>| {
        range.map(|i| kanade_sim::agent_id("sim", i).to_string()).collect::<Vec<_>>().join(", ")
    };
    let yaml = format!(
        "id: across\nversion: '1'\nexecute: {{ shell: sh, script: 'true' }}\nrollout: {{ waves: [{{ pcs: [{}] }}, {{ pcs: [{}], delay: 8s }}] }}\n",
        pcs(0..10),
        pcs(10..50)
    );
    let port = backends[leader].port;
    let (status, body) = call(
        port,
        "POST",
        "/api/auth/login",
        &format!(r#"{{"name":"admin","password":"{ADMIN_PASSWORD}"}}"#),
        None,
    );
    assert_eq!(status, 200, "login: {body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let (status, body) = call(port, "POST", "/api/deploy", &yaml, Some(&token));
    assert_eq!(status, 201, "deploy: {body}");
    let exec = body["exec_id"].as_str().unwrap().to_owned();
    let rows = || count_of(&format!("SELECT COUNT(*) FROM execution_results WHERE exec_id = '{exec}'"));

    kanade_testkit::wait_until("the first wave's results", Duration::from_secs(60), || rows() >= 10);
    backends[leader].kill();
    let at_kill = rows();
    assert!(at_kill < 50, "every result was in before the kill ({at_kill}); the test proves nothing");

    // The survivor takes the leases after their TTL, sends the second wave if it was not out
    // yet, and projects the rest from the ack floor; it serves the same session.
    kanade_testkit::wait_until("the survivor to project all 50 results", Duration::from_secs(120), || {
        rows() >= 50
    });
    assert!(backends[survivor].log_text().contains(LEADS), "the survivor never took over");
    let path = format!("/api/executions/{exec}");
    kanade_testkit::wait_until("the execution to complete", Duration::from_secs(30), || {
        call(backends[survivor].port, "GET", &path, "", Some(&token)).1["execution"]["status"] == "completed"
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Rows are keyed by result id, so this sees a loss; the counters below see a double.
    assert_eq!(rows(), 50, "a result was lost");
    let (_, body) = call(backends[survivor].port, "GET", &path, "", Some(&token));
    let e = &body["execution"];
    assert_eq!((e["target_count"].as_i64(), e["succeeded"].as_i64()), (Some(50), Some(50)), "{body:#}");
    assert_eq!((runs.total(), runs.doubles()), (50, 0), "each PC runs once");
}
