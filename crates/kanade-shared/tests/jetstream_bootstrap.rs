//! `ensure_jetstream_resources` and `jetstream_status` against a real nats-server.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use kanade_shared::jetstream::{
    Outcome, ResourceKind, definitions, ensure_jetstream_resources, jetstream_status,
};
use kanade_testkit::NatsServer;

async fn connect(server: &NatsServer) -> jetstream::Context {
    let client = async_nats::connect(server.url()).await.expect("connect to test nats-server");
    jetstream::new(client)
}

#[tokio::test]
async fn bootstrap_creates_everything_then_is_a_no_op() {
    let server = NatsServer::start();
    let js = connect(&server).await;

    let first = ensure_jetstream_resources(&js, 1).await.unwrap();
    assert_eq!(first.len(), definitions(1).len());
    assert!(first.iter().all(|r| r.outcome == Outcome::Created), "{first:#?}");

    let second = ensure_jetstream_resources(&js, 1).await.unwrap();
    assert!(second.iter().all(|r| r.outcome == Outcome::Unchanged), "{second:#?}");

    // The resources are usable through the client's own KV and object store handles.
    let jobs = js.get_key_value("jobs").await.unwrap();
    jobs.put("j1", "{}".into()).await.unwrap();
    js.get_object_store("scripts").await.unwrap();
    let status = jobs.status().await.unwrap();
    assert_eq!(status.history(), 5);
}

/// A broker on a small disk (its default cap is 75% of the free space) cannot hold kanade's
/// limits: the error says how much is reserved and which setting to raise.
#[tokio::test]
async fn a_broker_whose_file_store_is_too_small_gets_an_error_naming_the_setting() {
    assert_eq!(kanade_shared::jetstream::reserved_bytes(1), 23 << 30, "README's Broker storage names 23 GiB");
    let server = NatsServer::start_with_file_store("1GB");
    let js = connect(&server).await;
    let err = ensure_jetstream_resources(&js, 1).await.unwrap_err().to_string();
    assert!(
        err.contains(
            "what kanade's streams reserve (23 GiB in all); set `jetstream { max_file_store: 32GB }`"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn pre_existing_resources_with_other_limits_are_updated_not_fatal() {
    let server = NatsServer::start();
    let js = connect(&server).await;

    js.create_stream(stream::Config {
        name: "RESULTS".into(),
        subjects: vec!["results.>".into()],
        max_age: Duration::from_secs(86_400),
        max_bytes: 1024 * 1024,
        max_consumers: 42,
        ..Default::default()
    })
    .await
    .unwrap();
    js.create_key_value(kv::Config { bucket: "jobs".into(), history: 1, ..Default::default() })
        .await
        .unwrap();
    // Storage type cannot change in place: the resource must be kept and reported, not crash.
    js.create_stream(stream::Config {
        name: "EVENTS".into(),
        subjects: vec!["events.>".into()],
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();

    let reports = ensure_jetstream_resources(&js, 1).await.unwrap();
    let outcome = |name: &str| reports.iter().find(|r| r.name == name).unwrap().outcome.clone();

    match outcome("RESULTS") {
        Outcome::Updated { changes } => assert_eq!(
            changes,
            ["max_age: 1d -> 30d", "max_bytes: 1048576 -> 8589934592", "duplicate_window: 2m -> 5m"]
        ),
        other => panic!("RESULTS: {other:?}"),
    }
    let results = js.get_stream("RESULTS").await.unwrap();
    let config = &results.cached_info().config;
    assert_eq!(config.max_age, Duration::from_secs(30 * 86_400));
    assert_eq!(config.max_consumers, 42, "a field kanade does not own was overwritten");

    assert!(matches!(outcome("jobs"), Outcome::Updated { .. }));
    assert_eq!(js.get_key_value("jobs").await.unwrap().status().await.unwrap().history(), 5);

    match outcome("EVENTS") {
        Outcome::Kept { differences, .. } => {
            assert!(differences.iter().any(|d| d.starts_with("storage: Memory -> File")), "{differences:?}")
        }
        other => panic!("EVENTS: {other:?}"),
    }
    // And the next run leaves everything alone except the one it cannot fix.
    let again = ensure_jetstream_resources(&js, 1).await.unwrap();
    for r in again {
        match r.name {
            "EVENTS" => assert!(matches!(r.outcome, Outcome::Kept { .. })),
            _ => assert_eq!(r.outcome, Outcome::Unchanged, "{}", r.name),
        }
    }
}

#[tokio::test]
async fn status_lists_every_resource_with_usage() {
    let server = NatsServer::start();
    let js = connect(&server).await;

    let before = jetstream_status(&js).await.unwrap();
    assert!(before.iter().all(|s| !s.present));

    ensure_jetstream_resources(&js, 1).await.unwrap();
    js.publish("audit.test.event", "{}".into()).await.unwrap().await.unwrap();

    let after = jetstream_status(&js).await.unwrap();
    assert_eq!(after.len(), definitions(1).len());
    assert!(after.iter().all(|s| s.present));
    let audit = after.iter().find(|s| s.name == "AUDIT").unwrap();
    assert_eq!(audit.messages, 1);
    assert!(audit.bytes > 0);
    assert_eq!(audit.max_age, "365d");
    let kinds: Vec<_> = after.iter().map(|s| s.kind.as_str()).collect();
    for kind in [ResourceKind::Stream, ResourceKind::KeyValue, ResourceKind::ObjectStore] {
        assert!(kinds.contains(&kind.as_str()));
    }
}
