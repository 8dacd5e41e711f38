//! Publishing commands to a broker too busy to ack in time (as right after a restart under a
//! fleet): the command is retried under the same `Nats-Msg-Id`, so the exec succeeds and EXEC
//! holds it once.

use std::time::Duration;

use kanade_backend::pipeline::{plan, publish_commands};
use kanade_shared::ExecId;
use kanade_shared::manifest::{Target, job_from_yaml};
use kanade_shared::wire::Timestamp;
use kanade_testkit::NatsServer;

#[tokio::test]
async fn a_command_whose_ack_was_lost_is_stored_once_and_reported_sent() {
    let server = NatsServer::start();
    let client = async_nats::ConnectOptions::new()
        .reconnect_delay_callback(|_| Duration::from_millis(50))
        .connect(server.url())
        .await
        .unwrap();
    let mut js = async_nats::jetstream::new(client);
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 1).await.unwrap();
    // Short acks, so the outage below outlasts the first ack and one retry.
    js.set_timeout(Duration::from_millis(700));

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

    // Frozen, the server reads nothing: the first publish and a retry wait in the socket, the
    // first ack times out; thawed, it stores the first and must see the retry as a duplicate.
    let signal = |sig: &str| {
        let pid = server.pid().unwrap().to_string();
        assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
    };
    signal("-STOP");
    let publishing = tokio::spawn({
        let js = js.clone();
        async move { publish_commands(&js, None, &command, &target).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal("-CONT");
    let sent = tokio::time::timeout(Duration::from_secs(20), publishing).await.unwrap().unwrap();
    assert_eq!(sent.unwrap(), 1, "the exec must be reported sent once the broker is back");

    let mut stream = js.get_stream("EXEC").await.unwrap();
    // EXEC keeps one message per subject: a second copy would show as a second sequence.
    let state = &stream.info().await.unwrap().state;
    assert_eq!((state.messages, state.last_sequence), (1, 1), "the command must be stored exactly once");
}
