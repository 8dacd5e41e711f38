//! Publishing commands and audit events to a broker too busy to ack in time (as right after a
//! restart under a fleet): each is retried under the same `Nats-Msg-Id`, so the call succeeds
//! and the stream holds it once.

use std::time::Duration;

use kanade_backend::pipeline::{plan, publish_commands};
use kanade_shared::ExecId;
use kanade_shared::manifest::{Target, job_from_yaml};
use kanade_shared::wire::Timestamp;
use kanade_testkit::NatsServer;

/// A server and a JetStream context with short acks, so a 1.5 s freeze outlasts the first ack
/// and one retry.
async fn broker() -> (NatsServer, async_nats::jetstream::Context) {
    let server = NatsServer::start();
    let client = async_nats::ConnectOptions::new()
        .reconnect_delay_callback(|_| Duration::from_millis(50))
        .connect(server.url())
        .await
        .unwrap();
    let mut js = async_nats::jetstream::new(client);
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 1).await.unwrap();
    js.set_timeout(Duration::from_millis(700));
    (server, js)
}

/// Frozen, the server reads nothing: the first publish and a retry wait in the socket, the
/// first ack times out; thawed, it stores the first and must see the retry as a duplicate.
async fn frozen_while<T: Send + 'static>(
    server: &NatsServer,
    call: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let signal = |sig: &str| {
        let pid = server.pid().unwrap().to_string();
        assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
    };
    signal("-STOP");
    let running = tokio::spawn(call);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal("-CONT");
    tokio::time::timeout(Duration::from_secs(20), running).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_command_whose_ack_was_lost_is_stored_once_and_reported_sent() {
    let (server, js) = broker().await;

    let job = job_from_yaml("id: once\nversion: '1'\nexecute: { shell: sh, script: 'true' }\n").unwrap();
    let command = plan::command(
        &job.manifest,
        ExecId::new(),
        (Some("true".into()), None, None),
        0,
        None,
        Timestamp::now_utc(),
    );
    let target = Target { pcs: vec!["PC-1".parse().unwrap()], groups: Vec::new(), all: false };
    let sent = frozen_while(&server, {
        let js = js.clone();
        async move { publish_commands(&js, None, &command, &target).await }
    })
    .await;
    assert_eq!(sent.unwrap(), 1, "the exec must be reported sent once the broker is back");

    let mut stream = js.get_stream("EXEC").await.unwrap();
    // EXEC keeps one message per subject: a second copy would show as a second sequence.
    let state = &stream.info().await.unwrap().state;
    assert_eq!((state.messages, state.last_sequence), (1, 1), "the command must be stored exactly once");
}

#[tokio::test]
async fn an_audit_event_whose_ack_was_lost_is_stored_once_under_its_id() {
    let (server, js) = broker().await;
    let sent = frozen_while(&server, {
        let js = js.clone();
        async move {
            kanade_backend::pipeline::audit(
                &js,
                "tester",
                "job.delete",
                Some("once".into()),
                None,
                "api",
                serde_json::Value::Null,
            )
            .await
        }
    })
    .await;
    sent.expect("the audit event must be reported sent once the broker is back");

    // AUDIT keeps every message: a copy stored under another id would be a second one.
    let mut stream = js.get_stream("AUDIT").await.unwrap();
    let state = &stream.info().await.unwrap().state;
    assert_eq!((state.messages, state.last_sequence), (1, 1), "the audit event must be stored exactly once");
    let stored = stream.get_raw_message(1).await.unwrap();
    let event: serde_json::Value = serde_json::from_slice(&stored.payload).unwrap();
    let id = stored.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned());
    assert_eq!(id.as_deref(), event["id"].as_str(), "stored under the event's own id: {event}");
}
