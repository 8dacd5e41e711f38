//! The agent across broker restarts: it says it is back at once, and replays what was published
//! while it was away, whichever way the broker lets it read EXEC.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use kanade_shared::wire::ExecStatus;
use kanade_testkit::Gate;

const WAIT: Duration = Duration::from_secs(30);

/// The line the agent logs when it admits `exec` from a catch-up (not a live delivery).
fn admitted_by_catch_up(agent: &Agent, exec: kanade_shared::ExecId) -> bool {
    agent
        .log()
        .lines()
        .any(|l| l.contains("command admitted") && l.contains(&exec.to_string()) && l.contains("CatchUp"))
}

#[tokio::test]
async fn after_a_broker_restart_the_agent_beats_at_once_and_runs_what_it_missed() {
    let mut fleet = Fleet::start().await;
    let gate = Gate::start(&format!("127.0.0.1:{}", fleet.server.port())).await;
    // An interval far beyond the test: any heartbeat after the restart is the reconnect's.
    let agent = fleet.agent_behind("PC-R", "1h", &gate).start();
    ready(&agent).await;
    let marker = fleet.marker("missed");
    fleet.server.stop();
    // The gate keeps the agent away until the command below is stored: it can only reach the
    // agent by catching up, however fast the agent retries.
    gate.close();
    fleet.restart_server().await;
    let mut beats = fleet.client.subscribe("heartbeat.PC-R").await.unwrap();
    fleet.client.flush().await.unwrap();
    let cmd = command("missed", &format!("echo ran >> {}", marker.display()));
    fleet.publish(pc("PC-R"), &cmd).await;
    gate.open();

    let beat = tokio::time::timeout(Duration::from_secs(15), beats.next()).await;
    assert!(beat.is_ok(), "no heartbeat within 15 s of the broker's return:\n{}", agent.log());
    let r = fleet.wait_result(cmd.exec_id, WAIT).await;
    assert_eq!(r.status, ExecStatus::Succeeded);
    assert!(admitted_by_catch_up(&agent, cmd.exec_id), "not admitted by catch-up:\n{}", agent.log());
    // Room for a second delivery (live and catch-up both) to have run too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(runs(&marker), 1);
}

#[tokio::test]
async fn a_command_sent_during_a_sub_second_outage_arrives_by_catch_up() {
    let fleet = Fleet::start().await;
    let gate = Gate::start(&format!("127.0.0.1:{}", fleet.server.port())).await;
    let agent = fleet.agent_behind("PC-B", "1h", &gate).start();
    ready(&agent).await;
    let marker = fleet.marker("blip");
    let cut = std::time::Instant::now();
    gate.close();
    let cmd = command("blip", &format!("echo ran >> {}", marker.display()));
    fleet.publish(pc("PC-B"), &cmd).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.open();
    let outage = cut.elapsed();
    assert!(outage < Duration::from_secs(1), "the outage took {outage:?}, not under a second");

    let r = fleet.wait_result(cmd.exec_id, WAIT).await;
    assert_eq!(r.status, ExecStatus::Succeeded);
    assert!(admitted_by_catch_up(&agent, cmd.exec_id), "not admitted by catch-up:\n{}", agent.log());
    // Room for a second delivery (live and catch-up both) to have run too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(runs(&marker), 1);
    assert!(gate.carried() >= 2, "the agent never reconnected through the gate");
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
    kanade_testkit::wait_until_async("the restarted agent to catch up", WAIT, || async {
        agent.log().matches("intake ready").count() >= 2
    })
    .await;
    assert_eq!(runs(&marker), 1);
}
