//! The agent across broker restarts: it says it is back at once, and replays what was published
//! while it was away, whichever way the broker lets it read EXEC.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use kanade_shared::wire::ExecStatus;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn after_a_broker_restart_the_agent_beats_at_once_and_runs_what_it_missed() {
    let mut fleet = Fleet::start().await;
    // An interval far beyond the test: any heartbeat after the restart is the reconnect's.
    let agent = fleet.agent_with_heartbeat("PC-R", "1h").start();
    ready(&agent).await;
    let marker = fleet.marker("missed");
    fleet.server.stop();
    // Long enough for the agent's reconnect attempts to be seconds apart, so the command
    // below is stored before it is back and reaches it only by catching up.
    tokio::time::sleep(Duration::from_secs(12)).await;
    fleet.restart_server().await;
    let mut beats = fleet.client.subscribe("heartbeat.PC-R").await.unwrap();
    fleet.client.flush().await.unwrap();
    let cmd = command("missed", &format!("echo ran >> {}", marker.display()));
    fleet.publish(pc("PC-R"), &cmd).await;

    let beat = tokio::time::timeout(Duration::from_secs(15), beats.next()).await;
    assert!(beat.is_ok(), "no heartbeat within 15 s of the broker's return:\n{}", agent.log());
    let r = fleet.wait_result(cmd.exec_id, WAIT).await;
    assert_eq!(r.status, ExecStatus::Succeeded);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(runs(&marker), 1);
    assert_eq!(fleet.results_for(cmd.exec_id).await.len(), 1);
}

#[tokio::test]
async fn an_exec_stream_without_direct_gets_is_caught_up_with_a_consumer() {
    let fleet = Fleet::start().await;
    let mut config = fleet.js.get_stream("EXEC").await.unwrap().info().await.unwrap().config.clone();
    config.allow_direct = false;
    fleet.js.update_stream(config).await.unwrap();
    let marker = fleet.marker("old-exec");
    let cmd = command("old-exec", &format!("echo ran >> {}", marker.display()));
    fleet.publish(pc("PC-C"), &cmd).await;
    let mut agent = fleet.agent("PC-C", &[]);
    agent.spawn();
    assert_eq!(fleet.wait_result(cmd.exec_id, WAIT).await.status, ExecStatus::Succeeded);
    assert!(agent.log().contains("does not answer direct gets"), "{}", agent.log());
    // A restart replays from the watermark: nothing runs twice.
    agent.stop();
    agent.spawn();
    ready(&agent).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(runs(&marker), 1);
}
