//! kanade on a 3-node nats-server cluster, every stream, bucket and object store with 3
//! replicas: agents and a backend are given the node list and keep working while nodes die.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use kanade_backend::http::{self, AppState};
use kanade_shared::wire;
use kanade_shared::{ExecId, PcId};
use kanade_testkit::NatsCluster;
use tokio::sync::watch;

const WHOLE_WITHIN: Duration = Duration::from_secs(60);

struct Setup {
    cluster: NatsCluster,
    client: async_nats::Client,
    js: jetstream::Context,
    api: common::Client,
    runs: kanade_agent::exec::RunLog,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

/// A cluster, a backend (workers and router in this process, its store per `KANADE_TEST_DB`)
/// and `agents` simulated agents (the real agent runtime, a fake executor), all given the list
/// of the three nodes.
async fn setup(agents: usize) -> Setup {
    let cluster = NatsCluster::start(3);
    let client = kanade_shared::nats::connect_forever(&cluster.url(), &Default::default(), "backend").await;
    let js = jetstream::new(client.clone());
    cluster.wait_whole(&js, WHOLE_WITHIN).await;
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 3).await.unwrap();
    cluster.wait_whole(&js, WHOLE_WITHIN).await;
    let dir = tempfile::tempdir().unwrap();
    let db = common::test_db(dir.path()).await;
    let state = AppState::new(client.clone(), db, kanade_backend::auth::Auth::disabled());
    let (stop, stop_rx) = watch::channel(false);
    kanade_backend::workers::spawn(&state, Default::default(), stop_rx.clone()).await.detach_all();
    let api = common::Client(http::app(state));
    let executor = kanade_agent::exec::FakeExecutor {
        duration: Duration::from_millis(300),
        output_bytes: 4,
        ..Default::default()
    };
    let runs = executor.runs.clone();
    if agents > 0 {
        let sim =
            kanade_sim::SimConfig::small_fleet(cluster.url(), agents, dir.path().join("agents"), executor);
        kanade_sim::start(&sim, stop_rx).await.unwrap();
        let api = &api;
        kanade_testkit::wait_until_async("every agent known to the backend", WHOLE_WITHIN, || async move {
            api.get("/api/agents").await.1["items"].as_array().is_some_and(|a| a.len() == agents)
        })
        .await;
    }
    Setup { cluster, client, js, api, runs, _dir: dir, _stop: stop }
}

/// The execution once it is `completed`, waiting up to `within`.
async fn completed(api: &common::Client, exec: &str, within: Duration) -> serde_json::Value {
    let path = format!("/api/executions/{exec}");
    let mut last = serde_json::Value::Null;
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        let (_, body) = api.get(&path).await;
        if body["execution"]["status"] == "completed" {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("execution {exec} not completed within {within:?}: {last:#}");
}

/// The node leading `stream`; empty while it has none (or the question times out mid-election).
async fn stream_leader(js: &jetstream::Context, stream: &str) -> String {
    let Ok(mut stream) = js.get_stream(stream).await else { return String::new() };
    let Ok(info) = stream.info().await else { return String::new() };
    info.cluster.clone().and_then(|c| c.leader).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_goes_on_when_the_backends_node_and_then_the_results_leader_die() {
    let mut s = setup(20).await;
    let pcs = |r: std::ops::Range<usize>| {
        r.map(|i| kanade_sim::agent_id("sim", i).to_string()).collect::<Vec<_>>().join(", ")
    };
    let yaml = format!(
        "id: clustered\nversion: '1'\nexecute: {{ shell: sh, script: 'true' }}\nrollout: {{ waves: [{{ pcs: [{}] }}, {{ pcs: [{}], delay: 25s }}] }}\n",
        pcs(0..10),
        pcs(10..20)
    );
    let (status, body) = s.api.post_yaml("/api/deploy", &yaml).await;
    assert_eq!(status, axum::http::StatusCode::CREATED, "{body}");
    let exec = body["exec_id"].as_str().unwrap().to_owned();

    // The node the backend is connected to dies; the backend carries on through another.
    let mine = s.client.server_info().server_name;
    let i = s.cluster.index_of(&mine).unwrap();
    s.cluster.kill(i);
    kanade_testkit::wait_until("the backend to reconnect to another node", WHOLE_WITHIN, || {
        s.client.connection_state() == async_nats::connection::State::Connected
            && s.client.server_info().server_name != mine
    });
    s.cluster.restart(i);
    s.cluster.wait_whole(&s.js, WHOLE_WITHIN).await;

    // Then the node leading RESULTS dies, with the second wave's results still to come.
    let leader = stream_leader(&s.js, "RESULTS").await;
    let j = s.cluster.index_of(&leader).unwrap();
    s.cluster.kill(j);
    let (_, body) = s.api.get(&format!("/api/executions/{exec}")).await;
    let in_before = body["execution"]["succeeded"].as_i64().unwrap_or_default();
    assert!(in_before < 20, "every result was in before the RESULTS leader died; the test proves nothing");
    let (js, leader) = (&s.js, &leader);
    kanade_testkit::wait_until_async("another RESULTS leader", WHOLE_WITHIN, || async move {
        let now = stream_leader(js, "RESULTS").await;
        !now.is_empty() && now != *leader
    })
    .await;
    s.cluster.restart(j);

    let body = completed(&s.api, &exec, Duration::from_secs(90)).await;
    let e = &body["execution"];
    assert_eq!((e["target_count"].as_i64(), e["succeeded"].as_i64()), (Some(20), Some(20)), "{body:#}");
    assert_eq!(body["pcs"].as_array().map(Vec::len), Some(20), "one row per PC: {body:#}");
    assert_eq!((s.runs.total(), s.runs.doubles()), (20, 0), "each PC runs once");
}

/// Publish results of one new execution until `stop`, each under its own `Nats-Msg-Id`,
/// retrying a publish until the stream acknowledges it (through node loss); returns the
/// execution and how many results were acknowledged.
async fn publish_acked(
    js: jetstream::Context,
    pace: Duration,
    stop: watch::Receiver<bool>,
) -> (ExecId, usize) {
    let exec = ExecId::new();
    let event = common::exec_created(exec, "load");
    let subject = kanade_shared::subjects::audit("exec.create").unwrap();
    publish_until_acked(&js, subject, event.id.to_string(), wire::encode(&event).unwrap()).await;
    let mut i = 0;
    while !*stop.borrow() {
        let pc: PcId = format!("LOAD-{i:05}").parse().unwrap();
        let r = common::succeeded(exec, "load", &pc, String::new());
        let subject = kanade_shared::subjects::result(&pc, r.request_id);
        publish_until_acked(&js, subject, r.result_id.to_string(), wire::encode(&r).unwrap()).await;
        i += 1;
        tokio::time::sleep(pace).await;
    }
    (exec, i)
}

async fn publish_until_acked(js: &jetstream::Context, subject: String, id: String, body: Vec<u8>) {
    let deadline = std::time::Instant::now() + WHOLE_WITHIN;
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        let sent = js.publish_with_headers(subject.clone(), headers, body.clone().into()).await;
        let acked = match sent {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        if acked {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{subject} never acknowledged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The backend reads the job catalog through any replica: an exec sent the moment the node
/// leading the catalog's stream dies is taken (it waits for leaders only where it writes), not
/// refused as "broker unavailable" while that stream elects a new leader.
#[tokio::test(flavor = "multi_thread")]
async fn an_exec_the_moment_the_catalogs_leader_dies_is_taken() {
    let mut s = setup(3).await;
    // A backend in service has run something. (A stream's followers answer direct gets only
    // once they have applied a write since they started.)
    let yaml =
        "id: right-after\nversion: '1'\nexecute: { shell: sh, script: 'true' }\ntarget: { all: true }\n";
    let (status, body) = s.api.post_yaml("/api/deploy", yaml).await;
    assert_eq!(status, axum::http::StatusCode::CREATED, "{body}");
    completed(&s.api, body["exec_id"].as_str().unwrap(), WHOLE_WITHIN).await;

    let leader = stream_leader(&s.js, "KV_jobs").await;
    let i = s.cluster.index_of(&leader).unwrap();
    s.cluster.kill(i);
    let (status, body) = s.api.post_yaml("/api/exec/right-after", "target: { all: true }\n").await;
    assert_eq!(status, axum::http::StatusCode::CREATED, "{body}");
    let body = completed(&s.api, body["exec_id"].as_str().unwrap(), Duration::from_secs(90)).await;
    assert_eq!(body["execution"]["succeeded"].as_i64(), Some(3), "{body:#}");
    s.cluster.restart(i);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_of_every_node_under_load_loses_no_result() {
    let mut s = setup(0).await;
    let (stop_load, stop) = watch::channel(false);
    let load = tokio::spawn(publish_acked(s.js.clone(), Duration::from_millis(5), stop));
    for i in 0..s.cluster.len() {
        s.cluster.kill(i);
        tokio::time::sleep(Duration::from_secs(2)).await;
        s.cluster.restart(i);
        s.cluster.wait_whole(&s.js, WHOLE_WITHIN).await;
    }
    stop_load.send_replace(true);
    let (exec, published) = load.await.unwrap();
    assert!(published > 500, "only {published} results went out during the restarts");
    // Every PC joins as a late target, so the execution looks complete after any batch: wait
    // for the count instead.
    let path = format!("/api/executions/{exec}");
    let want = (Some(published as i64), Some(published as i64));
    let (api, path) = (&s.api, path.as_str());
    kanade_testkit::wait_until_async(
        "every acknowledged result projected",
        Duration::from_secs(90),
        || async move { counts(api, path).await == want },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(counts(&s.api, path).await, want, "every acknowledged result projected once");
}

/// An execution's (target count, succeeded).
async fn counts(api: &common::Client, path: &str) -> (Option<i64>, Option<i64>) {
    let (_, body) = api.get(path).await;
    let e = &body["execution"];
    (e["target_count"].as_i64(), e["succeeded"].as_i64())
}
