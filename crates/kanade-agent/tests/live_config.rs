//! Operator changes in `agent_groups` and `agent_config` reach a running agent without restart.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use kanade_shared::wire::{self, ExecStatus, Heartbeat};

#[tokio::test]
async fn a_group_assigned_in_kv_receives_the_next_group_command() {
    let fleet = Fleet::start().await;
    let agent = fleet.agent("PC-L", &["base"]).start();
    ready(&agent).await;
    fleet.kv_put("agent_groups", "PC-L", r#"{"groups":["late"]}"#).await;
    kanade_testkit::wait_until_async("the agent to join the group", Duration::from_secs(15), || async {
        agent.log().contains("group membership changed")
    })
    .await;
    // Live: published after the change, received on the new subscription.
    let cmd = command("late-job", "echo hi");
    fleet.publish(group("late"), &cmd).await;
    let r = fleet.wait_result(cmd.exec_id, Duration::from_secs(30)).await;
    assert_eq!((r.status, r.pc_id.as_str()), (ExecStatus::Succeeded, "PC-L"));

    // And out of it again: a command for the old group is no longer its business.
    fleet.kv_put("agent_groups", "PC-L", r#"{"groups":[]}"#).await;
    kanade_testkit::wait_until_async("the agent to leave the group", Duration::from_secs(15), || async {
        agent.log().matches("group membership changed").count() >= 2
    })
    .await;
    let after = command("late-job-2", "echo hi");
    fleet.publish(group("late"), &after).await;
    let control = command("base-job", "echo hi");
    fleet.publish(group("base"), &control).await;
    fleet.wait_result(control.exec_id, Duration::from_secs(30)).await;
    assert!(fleet.results_for(after.exec_id).await.is_empty());
}

#[tokio::test]
async fn heartbeat_interval_follows_agent_config() {
    let fleet = Fleet::start().await;
    let mut beats = fleet.client.subscribe("heartbeat.PC-H").await.unwrap();
    let agent = fleet.agent_with_heartbeat("PC-H", "1h").start();
    ready(&agent).await;
    // The first beat is sent at start; with a 1h interval the next would take an hour.
    let first = tokio::time::timeout(Duration::from_secs(10), beats.next()).await.unwrap().unwrap();
    let first: Heartbeat = wire::decode(&first.payload).unwrap();
    assert_eq!(first.pc_id.as_str(), "PC-H");
    fleet.kv_put("agent_config", "pcs.PC-H", r#"{"heartbeat_interval":"1s"}"#).await;
    for _ in 0..2 {
        let beat = tokio::time::timeout(Duration::from_secs(10), beats.next())
            .await
            .expect("no heartbeat after the interval was lowered to 1s")
            .unwrap();
        let beat: Heartbeat = wire::decode(&beat.payload).unwrap();
        assert!(beat.agent_rss_bytes > 0, "the agent reports its own memory");
    }
}

#[tokio::test]
async fn ping_is_answered_with_a_fresh_heartbeat() {
    let fleet = Fleet::start().await;
    let agent = fleet.agent("PC-P", &["g1"]).start();
    ready(&agent).await;
    let reply =
        tokio::time::timeout(Duration::from_secs(5), fleet.client.request("agents.PC-P.ping", "".into()))
            .await
            .unwrap()
            .unwrap();
    let beat: Heartbeat = wire::decode(&reply.payload).unwrap();
    assert_eq!(beat.pc_id.as_str(), "PC-P");
    assert_eq!(beat.groups.iter().map(|g| g.as_str()).collect::<Vec<_>>(), ["g1"]);
    assert_eq!(beat.os.family, std::env::consts::OS);
}

#[tokio::test]
async fn inventory_is_published_at_start() {
    let fleet = Fleet::start().await;
    let agent = fleet.agent("PC-I", &[]).start();
    ready(&agent).await;
    let stream = fleet.js.get_stream("INVENTORY").await.unwrap();
    kanade_testkit::wait_until_async("an inventory for PC-I", Duration::from_secs(30), || async {
        stream.get_last_raw_message_by_subject("inventory.PC-I").await.is_ok()
    })
    .await;
    let found = stream.get_last_raw_message_by_subject("inventory.PC-I").await.unwrap().payload;
    let inv: kanade_shared::wire::Inventory = wire::decode(&found).unwrap();
    assert_eq!(inv.pc_id.as_str(), "PC-I");
    assert!(inv.cpu.cores >= 1 && inv.memory_total_bytes > 0);
}

#[tokio::test]
async fn a_group_change_is_heartbeated_at_once() {
    let fleet = Fleet::start().await;
    // An hour between heartbeats: only the immediate one can carry the change in time.
    let agent = fleet.agent_with_heartbeat("PC-G", "1h").start();
    ready(&agent).await;
    let mut beats = fleet.client.subscribe("heartbeat.PC-G").await.unwrap();
    fleet.kv_put("agent_groups", "PC-G", r#"{"groups":["fresh"]}"#).await;
    let beat = tokio::time::timeout(Duration::from_secs(10), beats.next())
        .await
        .expect("no heartbeat after the group change")
        .unwrap();
    let beat: Heartbeat = wire::decode(&beat.payload).unwrap();
    assert_eq!(beat.groups.iter().map(|g| g.as_str()).collect::<Vec<_>>(), ["fresh"]);
}

#[tokio::test]
async fn host_performance_is_sampled_at_the_configured_interval_and_stops_at_zero() {
    let fleet = Fleet::start().await;
    let mut samples = fleet.client.subscribe("host_perf.PC-HP").await.unwrap();
    fleet.client.flush().await.unwrap();
    let agent = fleet.agent("PC-HP", &[]).start();
    ready(&agent).await;
    // The default is a minute: nothing this soon.
    assert!(
        tokio::time::timeout(Duration::from_secs(2), samples.next()).await.is_err(),
        "a sample before the first minute"
    );
    fleet.kv_put("agent_config", "pcs.PC-HP", r#"{"host_perf_interval":"1s"}"#).await;
    let mut last = None;
    for _ in 0..2 {
        let msg = tokio::time::timeout(Duration::from_secs(10), samples.next())
            .await
            .unwrap_or_else(|_| panic!("no sample at a 1 s interval:\n{}", agent.log()))
            .unwrap();
        let sample: wire::HostPerf = wire::decode(&msg.payload).unwrap();
        assert_eq!(sample.pc_id.as_str(), "PC-HP");
        assert!((0.0..=100.0).contains(&sample.cpu_pct), "{sample:?}");
        assert!(sample.mem_total_bytes > 0 && sample.mem_used_bytes <= sample.mem_total_bytes, "{sample:?}");
        assert!(sample.load.is_some(), "Unix reports a load average: {sample:?}");
        if let Some(prev) = last.replace(sample.at) {
            let gap = sample.at - prev;
            assert!(gap >= time::Duration::milliseconds(900), "samples {gap} apart at a 1 s interval");
        }
    }
    fleet.kv_put("agent_config", "pcs.PC-HP", r#"{"host_perf_interval":"0s"}"#).await;
    kanade_testkit::wait_until_async("sampling to stop", Duration::from_secs(10), || async {
        agent.log().contains("host performance sampling off")
    })
    .await;
    // Drain what was on its way, then nothing more.
    while tokio::time::timeout(Duration::from_millis(200), samples.next()).await.is_ok() {}
    assert!(
        tokio::time::timeout(Duration::from_secs(3), samples.next()).await.is_err(),
        "a sample after host_perf_interval was set to 0s"
    );
}
