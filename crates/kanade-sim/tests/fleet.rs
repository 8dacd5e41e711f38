//! The simulator against a real nats-server: its agents connect, heartbeat, and run each
//! command addressed to them exactly once through the real intake path, reporting to RESULTS.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kanade_agent::exec::FakeExecutor;
use kanade_shared::subjects::{self, CommandTarget};
use kanade_shared::wire::{self, Command, Shell};
use kanade_sim::SimConfig;

#[tokio::test(flavor = "multi_thread")]
async fn simulated_agents_run_each_command_once() {
    let mut server = kanade_testkit::NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let executor = FakeExecutor { output_bytes: 5, ..Default::default() };
    let runs = executor.runs.clone();
    let config = SimConfig {
        nats_url: server.url(),
        first: 0,
        count: 20,
        fleet: 20,
        prefix: "sim".into(),
        canary_share: 0.1,
        size_groups: vec![5],
        heartbeat: Duration::from_millis(500),
        data_dir: dir.path().to_path_buf(),
        start_rate: 200,
        executor,
        trusted_keys: Vec::new(),
    };
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    // The latest report and how many came.
    let seen = Arc::new(Mutex::new((kanade_sim::Heard::default(), 0u64)));
    let report = seen.clone();
    tokio::spawn(kanade_sim::count_heartbeating(
        kanade_sim::watcher(&server.url()).await.unwrap(),
        "sim".into(),
        Duration::from_millis(200),
        Duration::from_secs(5),
        move |heard| {
            let mut seen = report.lock().unwrap();
            *seen = (heard, seen.1 + 1);
        },
        stop.clone(),
    ));
    kanade_sim::start(&config, stop).await.unwrap();
    kanade_testkit::wait_until_async("20 agents heartbeating", Duration::from_secs(30), || async {
        seen.lock().unwrap().0.alive == 20
    })
    .await;

    // One command for the group of the first 5, one for everyone: 25 runs.
    publish(&js, CommandTarget::Group("first-5".parse().unwrap()), "five").await;
    publish(&js, CommandTarget::All, "all").await;
    kanade_testkit::wait_until_async("25 results in RESULTS", Duration::from_secs(30), || {
        let js = js.clone();
        async move { js.get_stream("RESULTS").await.unwrap().info().await.unwrap().state.messages >= 25 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((runs.total(), runs.doubles()), (25, 0));

    // A broker crash: every agent says it is back (the 500 ms cadence alone would not prove it,
    // so the watcher counts only what it heard since its own reconnect) and nothing reruns.
    server.restart();
    kanade_testkit::wait_until_async("20 agents back after the restart", Duration::from_secs(30), || async {
        let heard = seen.lock().unwrap().0;
        heard.reconnects == 1 && heard.back == 20
    })
    .await;
    // The watcher keeps reporting past its ping round (1 s after its reconnect).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reports = seen.lock().unwrap().1;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(seen.lock().unwrap().1 > reports, "the watcher stopped reporting");
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    publish(&js, CommandTarget::All, "again").await;
    kanade_testkit::wait_until_async("20 more runs", Duration::from_secs(30), || async {
        runs.total() >= 45
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((runs.total(), runs.doubles()), (45, 0));
    let _ = stop_tx.send(true);
}

async fn publish(js: &async_nats::jetstream::Context, target: CommandTarget, job: &str) {
    let mut cmd = Command::inline(job.parse().unwrap(), "1".parse().unwrap(), Shell::Sh, "true");
    cmd.timeout_secs = 60;
    js.publish(subjects::command(&target, &cmd.job_id), wire::encode(&cmd).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
}
