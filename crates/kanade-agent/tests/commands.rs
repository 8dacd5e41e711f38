//! The agent end to end: real nats-server, real agent processes, real shells.

mod common;

use std::time::Duration;

use common::*;
use kanade_shared::wire::{ExecStatus, SkipReason, Timestamp};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_command_produces_exactly_one_result_with_output_and_timings() {
    let fleet = Fleet::start().await;
    let agent = fleet.agent("PC-1", &[]).start();
    ready(&agent).await;

    let ok = command("hello", "echo out; echo err >&2");
    fleet.publish(pc("PC-1"), &ok).await;
    let bad = command("boom", "exit 7");
    fleet.publish(all(), &bad).await;

    let r = fleet.wait_result(ok.exec_id, WAIT).await;
    assert_eq!((r.status, r.exit_code), (ExecStatus::Succeeded, Some(0)));
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("out\n", "err\n"));
    assert_eq!(r.pc_id.as_str(), "PC-1");
    assert!(r.started_at.unwrap() <= r.finished_at);
    let r = fleet.wait_result(bad.exec_id, WAIT).await;
    assert_eq!((r.status, r.exit_code), (ExecStatus::Failed, Some(7)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fleet.results().await.len(), 2);
    assert_eq!((runs_of(&agent, ok.exec_id), runs_of(&agent, bad.exec_id)), (1, 1), "{}", agent.log());
}

#[tokio::test]
async fn offline_catch_up_runs_once_and_never_again() {
    let fleet = Fleet::start().await;
    let marker = fleet.marker("catch-up");
    let cmd = command("catch-up", &format!("echo ran >> {}", marker.display()));
    let mut agent = fleet.agent("PC-2", &[]);
    // Published while the agent has never been up.
    fleet.publish(pc("PC-2"), &cmd).await;
    agent.spawn();
    let r = fleet.wait_result(cmd.exec_id, WAIT).await;
    assert_eq!(r.status, ExecStatus::Succeeded);
    for restart in 1..=3 {
        agent.stop();
        agent.spawn();
        kanade_testkit::wait_until_async("the restarted agent to catch up", WAIT, || async {
            agent.log().matches("intake ready").count() > restart
        })
        .await;
    }
    assert_eq!(runs(&marker), 1, "the command ran more than once:\n{}", agent.log());
    assert_eq!(fleet.results_for(cmd.exec_id).await.len(), 1);
}

#[tokio::test]
async fn agents_run_only_what_is_addressed_to_them() {
    let fleet = Fleet::start().await;
    let a = fleet.agent("PC-A", &["canary"]).start();
    let b = fleet.agent("PC-B", &["wave1"]).start();
    ready(&a).await;
    ready(&b).await;
    let to_canary = command("g-canary", "true");
    let to_wave1 = command("g-wave1", "true");
    let to_b = command("only-b", "true");
    fleet.publish(group("canary"), &to_canary).await;
    fleet.publish(group("wave1"), &to_wave1).await;
    fleet.publish(pc("PC-B"), &to_b).await;
    let r = fleet.wait_result(to_canary.exec_id, WAIT).await;
    assert_eq!(r.pc_id.as_str(), "PC-A");
    let r = fleet.wait_result(to_wave1.exec_id, WAIT).await;
    assert_eq!(r.pc_id.as_str(), "PC-B");
    let r = fleet.wait_result(to_b.exec_id, WAIT).await;
    assert_eq!(r.pc_id.as_str(), "PC-B");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fleet.results().await.len(), 3);
    let ran = |agent: &Agent| [&to_canary, &to_wave1, &to_b].map(|c| runs_of(agent, c.exec_id));
    assert_eq!(ran(&a), [1, 0, 0], "{}", a.log());
    assert_eq!(ran(&b), [0, 1, 1], "{}", b.log());
}

#[tokio::test]
async fn a_kill_stops_the_run_within_a_second() {
    let fleet = Fleet::start().await;
    let agent = fleet.agent("PC-K", &[]).start();
    ready(&agent).await;
    let marker = fleet.marker("kill");
    let cmd = command("long", &format!("echo started >> {}; sleep 120", marker.display()));
    fleet.publish(all(), &cmd).await;
    kanade_testkit::wait_until_async("the script to start", WAIT, || async { runs(&marker) == 1 }).await;
    let sent = std::time::Instant::now();
    fleet.client.publish(kanade_shared::subjects::kill(cmd.exec_id), "".into()).await.unwrap();
    let r = fleet.wait_result(cmd.exec_id, WAIT).await;
    assert_eq!(r.status, ExecStatus::Killed);
    let took = r.finished_at - Timestamp::now_utc() + sent.elapsed();
    assert!(took < time::Duration::seconds(1), "kill took {took}");
}

#[tokio::test]
async fn a_crash_mid_run_is_reported_unknown_and_not_rerun() {
    let fleet = Fleet::start().await;
    let mut agent = fleet.agent("PC-C", &[]).start();
    ready(&agent).await;
    let marker = fleet.marker("crash");
    let cmd = command("crashy", &format!("echo ran >> {}; sleep 120", marker.display()));
    fleet.publish(all(), &cmd).await;
    kanade_testkit::wait_until_async("the script to start", WAIT, || async { runs(&marker) == 1 }).await;
    agent.crash();
    agent.spawn();
    let r = fleet.wait_result(cmd.exec_id, WAIT).await;
    assert_eq!(r.status, ExecStatus::Unknown);
    assert!(r.message.unwrap().contains("not run again"));
    assert!(r.started_at.is_some());
    // The restarted agent's catch-up is where a rerun would come from: wait until it is done.
    kanade_testkit::wait_until_async("the restarted agent to catch up", WAIT, || async {
        agent.log().matches("intake ready").count() >= 2
    })
    .await;
    assert_eq!(runs(&marker), 1);
}

#[tokio::test]
async fn a_result_survives_a_broker_outage_and_arrives_once() {
    let mut fleet = Fleet::start().await;
    let agent = fleet.agent("PC-O", &[]).start();
    ready(&agent).await;
    let marker = fleet.marker("outage");
    let cmd = command("outage", &format!("echo ran >> {}; sleep 2; echo done", marker.display()));
    fleet.publish(all(), &cmd).await;
    kanade_testkit::wait_until_async("the script to start", WAIT, || async { runs(&marker) == 1 }).await;
    let caught_up = catch_ups(&agent);
    fleet.server.stop();
    // The job finishes while the broker is away; its result waits in the outbox.
    kanade_testkit::wait_until_async("the run to finish with the broker away", WAIT, || async {
        agent.log().contains(&format!("run finished exec_id={}", cmd.exec_id))
    })
    .await;
    fleet.restart_server().await;
    let r = fleet.wait_result(cmd.exec_id, Duration::from_secs(60)).await;
    assert_eq!((r.status, r.stdout.as_str()), (ExecStatus::Succeeded, "done\n"));
    // The catch-up after the reconnect reads the command again: wait for it, then count runs.
    kanade_testkit::wait_until_async("the catch-up after the outage", WAIT, || async {
        catch_ups(&agent) > caught_up
    })
    .await;
    assert_eq!(runs(&marker), 1);
    assert_eq!(runs_of(&agent, cmd.exec_id), 1);
}

#[tokio::test]
async fn each_gate_skips_with_its_code() {
    let fleet = Fleet::start().await;
    let agent = fleet.agent("PC-G", &[]).start();
    ready(&agent).await;

    let mut late = command("late", "true");
    late.deadline_at = Some(Timestamp::now_utc() - time::Duration::minutes(1));
    fleet.kv_put("script_status", "revoked-job", "REVOKED").await;
    let revoked = command("revoked-job", "true");
    fleet.kv_put("script_current", "pinned", "2").await;
    let pinned = command("pinned", "true");
    let mut strict = command("strict", "true");
    strict.staleness = kanade_shared::wire::Staleness {
        mode: kanade_shared::wire::StalenessMode::Strict,
        max_cache_age_secs: Some(60),
    };
    for c in [&late, &revoked, &pinned, &strict] {
        fleet.publish(all(), c).await;
    }
    let expect = [
        (late.exec_id, SkipReason::DeadlinePassed, 125),
        (revoked.exec_id, SkipReason::Revoked, 126),
        (pinned.exec_id, SkipReason::VersionPin, 124),
    ];
    for (exec, reason, code) in expect {
        let r = fleet.wait_result(exec, WAIT).await;
        assert_eq!((r.status, r.skip_reason, r.exit_code), (ExecStatus::Skipped, Some(reason), Some(code)));
        assert!(r.message.is_some());
    }
    // A live, fresh view satisfies strict staleness.
    assert_eq!(fleet.wait_result(strict.exec_id, WAIT).await.status, ExecStatus::Succeeded);
}

#[tokio::test]
async fn a_revoked_job_replayed_to_a_returning_agent_is_skipped() {
    let fleet = Fleet::start().await;
    let mut agent = fleet.agent("PC-R", &[]).start();
    ready(&agent).await;
    agent.stop();
    let marker = fleet.marker("revoked");
    let cmd = command("bad-job", &format!("echo ran >> {}", marker.display()));
    fleet.publish(pc("PC-R"), &cmd).await;
    fleet.kv_put("script_status", "bad-job", "REVOKED").await;
    agent.spawn();
    let r = fleet.wait_result(cmd.exec_id, WAIT).await;
    assert_eq!((r.status, r.exit_code), (ExecStatus::Skipped, Some(126)));
    assert_eq!(runs(&marker), 0);
}

#[tokio::test]
async fn retry_reruns_failures_but_never_a_kill() {
    let fleet = Fleet::start().await;
    let agent = fleet.agent("PC-Y", &[]).start();
    ready(&agent).await;
    let marker = fleet.marker("retry");
    let mut flaky =
        command("flaky", &format!("echo try >> {m}; [ $(wc -l < {m}) -ge 3 ]", m = marker.display()));
    flaky.retry = Some(kanade_shared::wire::Retry { max: 2, backoff_secs: 0 });
    fleet.publish(all(), &flaky).await;
    let r = fleet.wait_result(flaky.exec_id, WAIT).await;
    assert_eq!((r.status, r.attempt), (ExecStatus::Succeeded, 3));
    assert_eq!(runs(&marker), 3);

    let killed_marker = fleet.marker("killed-retry");
    let mut long = command("long-retry", &format!("echo try >> {}; sleep 120", killed_marker.display()));
    long.retry = Some(kanade_shared::wire::Retry { max: 3, backoff_secs: 0 });
    fleet.publish(all(), &long).await;
    kanade_testkit::wait_until_async("the script to start", WAIT, || async { runs(&killed_marker) == 1 })
        .await;
    fleet.client.publish(kanade_shared::subjects::kill(long.exec_id), "".into()).await.unwrap();
    let r = fleet.wait_result(long.exec_id, WAIT).await;
    assert_eq!((r.status, r.attempt), (ExecStatus::Killed, 1));
    assert_eq!(runs(&killed_marker), 1);
}

#[tokio::test]
async fn an_agent_started_while_the_broker_is_down_connects_when_it_returns() {
    let mut fleet = Fleet::start().await;
    fleet.server.stop();
    let agent = fleet.agent("PC-D", &[]).start();
    kanade_testkit::wait_until_async("the agent to retry the absent broker", WAIT, || async {
        agent.log().contains("cannot reach NATS")
    })
    .await;
    fleet.restart_server().await;
    ready(&agent).await;
    let cmd = command("after-outage", "echo back");
    fleet.publish(pc("PC-D"), &cmd).await;
    assert_eq!(fleet.wait_result(cmd.exec_id, WAIT).await.stdout, "back\n");
}

#[tokio::test]
async fn a_timeout_ends_the_script_and_its_grandchild() {
    let fleet = Fleet::start().await;
    let agent = fleet.agent("PC-T", &[]).start();
    ready(&agent).await;
    let mut cmd = command("hang", "sleep 300 & echo $!; sleep 300");
    cmd.timeout_secs = 1;
    fleet.publish(all(), &cmd).await;
    let r = fleet.wait_result(cmd.exec_id, WAIT).await;
    assert_eq!(r.status, ExecStatus::TimedOut);
    assert_eq!(r.message.as_deref(), Some("timed out after 1s"));
    let grandchild: i32 = r.stdout.trim().parse().unwrap();
    kanade_testkit::wait_until("the backgrounded sleep to be gone", Duration::from_secs(5), || {
        !kanade_testkit::process_running(grandchild)
    });
}

#[tokio::test]
async fn the_concurrency_cap_holds_runs_back() {
    let fleet = Fleet::start().await;
    let agent = fleet.agent_with("PC-S", "max_concurrent_jobs = 1").start();
    ready(&agent).await;
    let marker = fleet.marker("serial");
    let script = format!("echo start >> {m}; sleep 1; echo end >> {m}", m = marker.display());
    let (a, b) = (command("serial-a", &script), command("serial-b", &script));
    fleet.publish(all(), &a).await;
    fleet.publish(all(), &b).await;
    fleet.wait_result(a.exec_id, WAIT).await;
    fleet.wait_result(b.exec_id, WAIT).await;
    let lines = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(lines, "start\nend\nstart\nend\n", "runs overlapped");
}

/// A `script_object` command: the agent fetches the script, checks the sha256 the command
/// carries, runs it, and keeps it; once the store no longer has it, a later command with the
/// same sha256 runs from the agent's cache, while one naming another sha256 is refused.
#[tokio::test]
async fn a_script_object_is_checked_run_and_then_served_from_the_agents_cache() {
    let fleet = Fleet::start().await;
    let agent = fleet.agent("PC-1", &[]).start();
    ready(&agent).await;
    let body = "echo \"tool says $((40 + 2))\"\n";
    let sha = kanade_shared::files::sha256_hex(body.as_bytes());
    let store = fleet.js.get_object_store("scripts").await.unwrap();
    store.put("tool/1", &mut body.as_bytes()).await.unwrap();
    let by_reference = |sha: &str| {
        let mut cmd = command("tool", "");
        cmd.script = None;
        cmd.script_object = Some("tool/1".into());
        cmd.script_sha256 = Some(sha.to_owned());
        cmd
    };

    let first = by_reference(&sha);
    fleet.publish(pc("PC-1"), &first).await;
    let r = fleet.wait_result(first.exec_id, WAIT).await;
    assert_eq!((r.status, r.stdout.as_str()), (ExecStatus::Succeeded, "tool says 42\n"), "{r:?}");
    let cached = agent.data_dir.join("scripts").join(&sha);
    assert_eq!(std::fs::read_to_string(&cached).unwrap(), body);

    store.delete("tool/1").await.unwrap();
    let again = by_reference(&sha);
    fleet.publish(pc("PC-1"), &again).await;
    let r = fleet.wait_result(again.exec_id, WAIT).await;
    assert_eq!((r.status, r.stdout.as_str()), (ExecStatus::Succeeded, "tool says 42\n"), "{r:?}");

    // Content that is not what the command names: refused, never run.
    store.put("tool/1", &mut "echo tampered\n".as_bytes()).await.unwrap();
    let other = by_reference(&"0".repeat(64));
    fleet.publish(pc("PC-1"), &other).await;
    let r = fleet.wait_result(other.exec_id, WAIT).await;
    assert_ne!(r.status, ExecStatus::Succeeded, "{r:?}");
    let why = r.message.as_deref().unwrap_or_default();
    assert!(why.contains("command expects 0000") && why.contains("not run"), "{r:?}");
    assert!(!r.stdout.contains("tampered"), "{r:?}");
}
