//! SPEC §14 on the real agent binary: a result always fits the broker and a permanent failure
//! never blocks the outbox; revoke is checked again after the jitter wait; a kill heard before
//! its command, or while the PC was away, stops the run before it starts; `run_as: user` is
//! never run as someone else; the data dir is private.

mod common;

use std::time::Duration;

use common::*;
use kanade_shared::subjects;
use kanade_shared::wire::{self, ExecResult, ExecStatus, SkipReason};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn big_and_binary_output_never_stops_the_results_behind_it() {
    let fleet = Fleet::start().await;
    let mut agent = fleet.agent("PC-BIG", &[]).start();
    ready(&agent).await;
    // 1.1 MB of `a` on stdout and 900 KB of random bytes on stderr (mostly invalid UTF-8: each
    // bad byte becomes three), then invalid UTF-8 alone, then a plain job behind both.
    let big = command("big", "head -c 1100000 /dev/zero | tr '\\0' a; head -c 900000 /dev/urandom >&2");
    let binary = command("binary", "head -c 700000 /dev/urandom");
    let ok = command("ok", "echo ok");
    for c in [&big, &binary, &ok] {
        fleet.publish(pc("PC-BIG"), c).await;
    }
    let limit = fleet.client.max_payload();
    for c in [&big, &binary] {
        let r = fleet.wait_result(c.exec_id, WAIT).await;
        assert_eq!(r.status, ExecStatus::Succeeded, "{}", r.message.unwrap_or_default());
        assert!(r.truncated, "{} was not cut", c.job_id);
        let size = wire::encode(&r).unwrap().len();
        assert!(size <= limit && size > limit / 2, "{} bytes against a limit of {limit}", size);
    }
    let r = fleet.wait_result(big.exec_id, WAIT).await;
    assert!(r.stdout.bytes().all(|b| b == b'a') && r.stdout.len() > 100_000, "{}", r.stdout.len());
    assert_eq!(fleet.wait_result(ok.exec_id, WAIT).await.stdout, "ok\n");
    assert_eq!(agent.stop_and_count_outbox(), 0, "messages left in the outbox");
}

#[tokio::test]
async fn an_oversized_queued_result_is_cut_to_fit_and_the_next_one_still_goes() {
    let fleet = Fleet::start().await;
    let mut agent = fleet.agent("PC-OVER", &[]);
    // Queued by an earlier life of the agent, before it knew the broker's limit.
    std::fs::create_dir_all(&agent.data_dir).unwrap();
    let store = kanade_agent::store::Store::open(&agent.data_dir.join("agent.db")).unwrap();
    let pc: kanade_shared::PcId = "PC-OVER".parse().unwrap();
    let queued: Vec<ExecResult> =
        [3_000_000, 10].iter().map(|n| succeeded(&command("queued", "true"), &pc, "x".repeat(*n))).collect();
    for r in &queued {
        store.enqueue(&queued_message(r)).unwrap();
    }
    drop(store);
    agent.spawn();
    let first = fleet.wait_result(queued[0].exec_id, WAIT).await;
    assert!(first.truncated && first.stdout.len() < 1_100_000 && first.stdout.len() > 500_000);
    assert_eq!(fleet.wait_result(queued[1].exec_id, WAIT).await.stdout, "x".repeat(10));
    assert_eq!(agent.stop_and_count_outbox(), 0, "messages left in the outbox");
    assert!(agent.log().contains("result too large for the broker; output cut to fit"));
}

/// What changes while a run waits out its jitter.
#[derive(Clone, Copy)]
enum Change {
    Revoke,
    Pin,
    Kill,
}

/// A run waiting out its jitter sees `change` when the wait ends: it is skipped with `want`,
/// never run. The wait holds no concurrency slot meanwhile.
async fn changed_during_the_jitter(id: &str, change: Change, want: SkipReason) {
    let fleet = Fleet::start().await;
    let agent = fleet.agent_with(id, "max_concurrent_jobs = 1").start();
    ready(&agent).await;
    let marker = fleet.marker("jitter");
    // The delay is random in [0, jitter): a draw too short to act within (3 of 8) is run and
    // the test tries again with a new job (twelve short draws in a row: about once in 130,000).
    for attempt in 0..12 {
        let job = format!("jittered-{attempt}");
        let mut jittered = command(&job, &format!("echo ran >> {}", marker.display()));
        jittered.jitter_secs = 8;
        fleet.publish(pc(id), &jittered).await;
        let exec = jittered.exec_id.to_string();
        let draw = |log: String| {
            log.lines()
                .find(|l| l.contains("waiting out the jitter") && l.contains(&exec))
                .and_then(|l| l.split("delay_ms=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
        };
        kanade_testkit::wait_until_async("the jitter draw", WAIT, || async { draw(agent.log()).is_some() })
            .await;
        let delay_ms = draw(agent.log()).unwrap();
        if delay_ms < 3_000 {
            fleet.wait_result(jittered.exec_id, WAIT).await;
            continue;
        }
        // The jitter wait holds no concurrency slot: another job runs meanwhile.
        let other = command("meanwhile", "echo meanwhile");
        fleet.publish(pc(id), &other).await;
        let r = fleet.wait_result(other.exec_id, WAIT).await;
        assert_eq!(r.stdout, "meanwhile\n");
        assert!(fleet.results_for(jittered.exec_id).await.is_empty(), "the jittered run is still waiting");
        let runs_before = runs(&marker);
        match change {
            Change::Revoke => fleet.kv_put("script_status", &job, "REVOKED").await,
            Change::Pin => fleet.kv_put("script_current", &job, "2").await,
            Change::Kill => {
                fleet.client.publish(subjects::kill(jittered.exec_id), "kill".into()).await.unwrap()
            }
        }
        let r = fleet.wait_result(jittered.exec_id, WAIT).await;
        assert_eq!(
            (r.status, r.skip_reason, r.exit_code),
            (ExecStatus::Skipped, Some(want), want.exit_code())
        );
        assert_eq!(runs(&marker), runs_before, "the run ran");
        return;
    }
    panic!("twelve jitter draws in a row were too short to act within");
}

#[tokio::test]
async fn a_revoke_during_the_jitter_wait_stops_the_run() {
    changed_during_the_jitter("PC-J", Change::Revoke, SkipReason::Revoked).await;
}

#[tokio::test]
async fn a_version_pinned_during_the_jitter_wait_stops_the_run() {
    changed_during_the_jitter("PC-JP", Change::Pin, SkipReason::VersionPin).await;
}

#[tokio::test]
async fn a_kill_during_the_jitter_wait_stops_the_run() {
    changed_during_the_jitter("PC-JK", Change::Kill, SkipReason::Killed).await;
}

#[tokio::test]
async fn a_kill_heard_before_its_command_stops_the_run_before_it_starts() {
    let fleet = Fleet::start().await;
    let agent = fleet.agent("PC-EARLY", &[]).start();
    ready(&agent).await;
    let marker = fleet.marker("early");
    let cmd = command("early", &format!("echo ran >> {}", marker.display()));
    fleet.client.publish(subjects::kill(cmd.exec_id), "kill".into()).await.unwrap();
    fleet.client.flush().await.unwrap();
    kanade_testkit::wait_until_async("the agent to hear the kill", WAIT, || async {
        agent.log().contains("kill for a run not seen yet")
    })
    .await;
    fleet.publish(pc("PC-EARLY"), &cmd).await;
    let r = fleet.wait_result(cmd.exec_id, WAIT).await;
    assert_eq!((r.status, r.skip_reason), (ExecStatus::Skipped, Some(SkipReason::Killed)), "{r:?}");
    assert_eq!(runs(&marker), 0);
}

#[tokio::test]
async fn a_pc_away_during_a_kill_skips_the_exec_when_it_returns() {
    let fleet = Fleet::start().await;
    let mut agent = fleet.agent("PC-AWAY", &[]).start();
    ready(&agent).await;
    agent.stop();
    let marker = fleet.marker("away");
    let cmd = command("away", &format!("echo ran >> {}", marker.display()));
    fleet.publish(pc("PC-AWAY"), &cmd).await;
    // What POST /api/executions/{id}/kill records for PCs that are not listening.
    fleet.kv_put(kanade_shared::jetstream::EXEC_KILLS, &cmd.exec_id.to_string(), "killed by test").await;
    agent.spawn();
    let r = fleet.wait_result(cmd.exec_id, WAIT).await;
    assert_eq!(
        (r.status, r.skip_reason, r.exit_code),
        (ExecStatus::Skipped, Some(SkipReason::Killed), Some(126))
    );
    assert!(r.message.unwrap().contains("killed by test"));
    assert_eq!(runs(&marker), 0);
}

#[tokio::test]
async fn run_as_user_without_a_configured_user_is_skipped_never_run_as_the_agent() {
    let fleet = Fleet::start().await;
    let agent = fleet.agent("PC-U", &[]).start();
    ready(&agent).await;
    let marker = fleet.marker("run-as");
    let mut cmd = command("as-user", &format!("echo ran >> {}", marker.display()));
    cmd.run_as = kanade_shared::wire::RunAs::User;
    fleet.publish(pc("PC-U"), &cmd).await;
    let r = fleet.wait_result(cmd.exec_id, WAIT).await;
    assert_eq!(
        (r.status, r.skip_reason, r.exit_code),
        (ExecStatus::Skipped, Some(SkipReason::NoUser), Some(122))
    );
    assert!(r.message.unwrap().contains("[exec] user"), "the reason names the fix");
    assert_eq!(runs(&marker), 0);
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_and_the_ledger_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let fleet = Fleet::start().await;
    let agent = fleet.agent("PC-P", &[]).start();
    ready(&agent).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&agent.data_dir), 0o700);
    assert_eq!(mode(&agent.data_dir.join("agent.db")), 0o600);
    // A staged script is private while it runs.
    let cmd = command("staged", "stat -c %a \"$0\"");
    fleet.publish(pc("PC-P"), &cmd).await;
    assert_eq!(fleet.wait_result(cmd.exec_id, WAIT).await.stdout, "600\n");
}

#[cfg(unix)]
#[tokio::test]
async fn run_as_user_runs_as_the_configured_account() {
    let fleet = Fleet::start().await;
    // `[exec] user` is a section of its own, after [agent].
    let mut agent = fleet.agent_with("PC-AS2", "");
    let text = std::fs::read_to_string(&agent.config).unwrap().replacen(
        "[log]",
        "[exec]\nuser = \"nobody\"\n[log]",
        1,
    );
    std::fs::write(&agent.config, text).unwrap();
    agent.spawn();
    ready(&agent).await;
    let mut cmd = command("as-nobody", "id -un; echo \"$HOME\"; test -r \"$0\" && echo readable");
    cmd.run_as = kanade_shared::wire::RunAs::User;
    fleet.publish(pc("PC-AS2"), &cmd).await;
    let r = fleet.wait_result(cmd.exec_id, WAIT).await;
    if nix::unistd::geteuid().is_root() {
        assert_eq!(r.status, ExecStatus::Succeeded, "{r:?}");
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        assert_eq!(r.stdout, format!("nobody\n{}\nreadable\n", nobody.dir.display()), "{r:?}");
    } else {
        // Only root can become another user: the run fails saying so, it never runs as us.
        assert_eq!(r.status, ExecStatus::Failed, "{r:?}");
        assert!(r.message.unwrap_or_default().contains("Operation not permitted"));
    }
    // The run's staging directory is gone afterwards.
    let prefix = format!("kanade-run-{}-", cmd.exec_id);
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "{left:?} was left behind");
}

#[tokio::test]
async fn a_kill_sent_while_the_agent_was_disconnected_still_stops_its_run() {
    let mut fleet = Fleet::start().await;
    let agent = fleet.agent("PC-GAP", &[]).start();
    ready(&agent).await;
    let marker = fleet.marker("gap");
    let cmd = command("long-gap", &format!("echo started >> {}; sleep 120", marker.display()));
    fleet.publish(pc("PC-GAP"), &cmd).await;
    kanade_testkit::wait_until_async("the script to start", WAIT, || async { runs(&marker) == 1 }).await;
    // The broker goes away; the kill is recorded while the agent cannot hear it (its core
    // `kill.*` message would be lost), before it has reconnected and looked.
    fleet.server.stop();
    fleet.restart_server().await;
    fleet
        .kv_put(kanade_shared::jetstream::EXEC_KILLS, &cmd.exec_id.to_string(), "killed during the gap")
        .await;
    let r = fleet.wait_result(cmd.exec_id, WAIT).await;
    assert_eq!(r.status, ExecStatus::Killed, "{r:?}");
    assert!(agent.log().contains("kill missed while disconnected"), "{}", agent.log());
}

#[tokio::test]
async fn events_the_broker_does_not_take_never_hold_up_a_result() {
    let fleet = Fleet::start().await;
    // A broker without stream OBS (an older backend, `jetstream setup` not run yet): the
    // agent's `agent.started` is first in its outbox and gets no ack.
    fleet.js.delete_stream("OBS").await.unwrap();
    let mut agent = fleet.agent("PC-OBS", &[]).start();
    ready(&agent).await;
    let mut emits = command("emits", "echo '{\"kind\":\"disk.low\"}'");
    emits.emit = wire::Emit::Events;
    let plain = command("plain", "echo ok");
    for c in [&emits, &plain] {
        fleet.publish(pc("PC-OBS"), c).await;
    }
    assert_eq!(fleet.wait_result(plain.exec_id, WAIT).await.stdout, "ok\n");
    let r = fleet.wait_result(emits.exec_id, WAIT).await;
    assert_eq!((r.status, r.stdout.as_str()), (ExecStatus::Succeeded, ""), "{r:?}");
    // Once the stream exists the events follow, each once.
    kanade_shared::jetstream::ensure_jetstream_resources(&fleet.js, 1).await.unwrap();
    let kinds = || async {
        let mut stream = fleet.js.get_stream("OBS").await.unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        let mut kinds = Vec::new();
        for seq in 1..=last {
            if let Ok(m) = stream.get_raw_message(seq).await {
                kinds.push(wire::decode::<wire::ObsEvent>(&m.payload).unwrap().kind);
            }
        }
        kinds
    };
    kanade_testkit::wait_until_async("the queued events on OBS", Duration::from_secs(60), || async {
        let k = kinds().await;
        k.contains(&"agent.started".to_owned()) && k.contains(&"disk.low".to_owned())
    })
    .await;
    assert_eq!(agent.stop_and_count_outbox(), 0, "messages left in the outbox");
    let k = kinds().await;
    assert_eq!(k.iter().filter(|k| *k == "agent.started").count(), 1, "{k:?}");
}
