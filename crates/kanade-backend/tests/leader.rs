//! Two real backend processes on one broker: exactly one fires each tick; SIGKILL the leader
//! and the other takes over within the lease TTL. Once with a SQLite database each, once
//! sharing one Postgres database.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use kanade_shared::manifest;
use kanade_shared::wire::{self, AuditEvent};
use kanade_testkit::NatsServer;

type Fires = Arc<Mutex<Vec<(i64, String)>>>;

/// Collect every scheduler fire, (tick ms, backend instance), from the `exec.create` audit
/// events, with one ordered consumer for the whole test.
async fn watch_fires(js: &jetstream::Context) -> Fires {
    let stream = js.get_stream("AUDIT").await.unwrap();
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: "audit.exec.create".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let fires: Fires = Arc::default();
    let sink = fires.clone();
    tokio::spawn(async move {
        let mut messages = consumer.messages().await.unwrap();
        // An ordered consumer reports transient trouble (a missed idle heartbeat while nothing
        // is published, a reset) as an error item and carries on: stopping at the first one
        // left the test counting no fires at all.
        while let Some(m) = messages.next().await {
            let Ok(m) = m else { continue };
            let e: AuditEvent = wire::decode(&m.payload).unwrap();
            // "schedule <id> tick <ms> by <instance>"
            let source = e.source.unwrap_or_default();
            let words: Vec<&str> = source.split_whitespace().collect();
            if let [_, _, "tick", tick, "by", instance] = words.as_slice() {
                sink.lock().unwrap().push((tick.parse().unwrap(), (*instance).to_owned()));
            }
        }
    });
    fires
}

fn fires(f: &Fires) -> Vec<(i64, String)> {
    f.lock().unwrap().clone()
}

fn assert_each_tick_once(fired: &[(i64, String)]) {
    let mut seen = BTreeMap::new();
    for (tick, who) in fired {
        if let Some(other) = seen.insert(*tick, who.clone()) {
            panic!("tick {tick} fired twice, by {other} and {who}");
        }
    }
}

use common::process::BackendProcess;

#[tokio::test(flavor = "multi_thread")]
async fn one_backend_fires_each_tick_and_another_takes_over_when_it_dies() {
    fires_once_and_takes_over(BackendProcess::start).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn backends_sharing_postgres_fire_each_tick_once_and_take_over() {
    let url = kanade_testkit::PgCluster::shared().fresh_database();
    fires_once_and_takes_over(move |dir, nats| BackendProcess::start_postgres(dir, nats, &url)).await;
}

async fn fires_once_and_takes_over(start: impl Fn(&std::path::Path, &str) -> BackendProcess) {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_agent_stop, agent_stop_rx) = tokio::sync::watch::channel(false);
    let mut settings =
        kanade_agent::runtime::Settings::new("PC-1".parse().unwrap(), server.url(), dir.path().join("agent"));
    settings.heartbeat_interval = Duration::from_millis(500);
    tokio::spawn(kanade_agent::runtime::run(settings, agent_stop_rx));

    let job =
        manifest::job_from_yaml("id: tick\nversion: '1'\nexecute: { shell: sh, script: 'true' }\n").unwrap();
    js.get_key_value("jobs")
        .await
        .unwrap()
        .put("tick", serde_json::to_vec(&job.manifest).unwrap().into())
        .await
        .unwrap();
    let schedule = manifest::schedule_from_yaml(
        "id: ticker\ncron: '* * * * * *'\njob_id: tick\nplan: { target: { pcs: [PC-1] } }\n",
    )
    .unwrap();
    let fired = watch_fires(&js).await;
    let mut a = start(&dir.path().join("a"), &server.url());
    let mut b = start(&dir.path().join("b"), &server.url());
    js.get_key_value("schedules")
        .await
        .unwrap()
        .put("ticker", serde_json::to_vec(&schedule).unwrap().into())
        .await
        .unwrap();

    kanade_testkit::wait_until_async("a few fires", Duration::from_secs(30), || async {
        fires(&fired).len() >= 5
    })
    .await;
    let before = fires(&fired);
    assert_each_tick_once(&before);
    let leaders: BTreeSet<&str> = before.iter().map(|(_, who)| who.as_str()).collect();
    assert_eq!(leaders.len(), 1, "more than one backend fired: {leaders:?}");
    let leader = leaders.into_iter().next().unwrap().to_owned();

    let (dead, survivor) = if leader.starts_with(&format!("backend-{}-", a.pid())) {
        (&mut a, b.pid())
    } else {
        (&mut b, a.pid())
    };
    dead.kill();
    let killed = Instant::now();
    let survivor_prefix = format!("backend-{survivor}-");
    kanade_testkit::wait_until_async("the other backend to take over", Duration::from_secs(45), || async {
        fires(&fired).iter().any(|(_, who)| who.starts_with(&survivor_prefix))
    })
    .await;
    let takeover = killed.elapsed();
    assert!(takeover <= Duration::from_secs(35), "takeover took {takeover:?}, more than the 30 s lease");
    // A few ticks by the survivor: a tick the dead leader fired would be fired again among them.
    kanade_testkit::wait_until_async("three fires by the survivor", Duration::from_secs(30), || async {
        fires(&fired).iter().filter(|(_, who)| who.starts_with(&survivor_prefix)).count() >= 3
    })
    .await;
    assert_each_tick_once(&fires(&fired));
    println!("takeover after SIGKILL: {takeover:?}");
}
