//! The agent's delivery invariants on the real binary (ARCHITECTURE, "Architecture Invariant"):
//! EXEC is read past a command only once the ledger holds it; the outbox sends in order, stops
//! at the first message without an ack and sends it again under the same `Nats-Msg-Id`; and an
//! agent makes no JetStream API call but direct gets when it starts, reconnects or runs a
//! command.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use kanade_shared::wire::{self, ExecResult, ExecStatus};
use kanade_testkit::Gate;

const WAIT: Duration = Duration::from_secs(30);

/// The debug build's `KANADE_AGENT_TEST_LEDGER_FULL` for `agent` (from its next spawn): while
/// the returned file exists, every ledger insert fails as a full disk would. The running agent
/// holds its store locked, so the fault is switched from outside by that file.
fn ledger_switch(agent: &mut Agent) -> std::path::PathBuf {
    let switch = agent.data_dir.with_file_name("ledger-full");
    agent.env.push(("KANADE_AGENT_TEST_LEDGER_FULL".into(), switch.clone()));
    switch
}

fn break_ledger(switch: &std::path::Path) {
    std::fs::write(switch, b"").unwrap();
}

fn mend_ledger(switch: &std::path::Path) {
    std::fs::remove_file(switch).unwrap();
}

/// Published while the agent was away, read by catch-up while the ledger cannot record it: it
/// must still run once the ledger works, so the catch-up did not move past it.
async fn missed_while_the_ledger_fails(fleet: &Fleet, id: &str) -> Agent {
    let marker = fleet.marker(id);
    let cmd = command("missed", &format!("echo ran >> {}", marker.display()));
    fleet.publish(pc(id), &cmd).await;
    let mut agent = fleet.agent(id, &[]);
    let switch = ledger_switch(&mut agent);
    break_ledger(&switch);
    agent.spawn();
    kanade_testkit::wait_until_async("a catch-up to fail on the ledger", WAIT, || async {
        agent.log().contains("catch-up failed")
    })
    .await;
    mend_ledger(&switch);
    let r = fleet.wait_result(cmd.exec_id, WAIT).await;
    assert_eq!(r.status, ExecStatus::Succeeded, "{}", agent.log());
    assert_eq!((runs(&marker), runs_of(&agent, cmd.exec_id)), (1, 1));
    agent
}

#[tokio::test]
async fn exec_is_read_past_a_command_only_once_the_ledger_holds_it() {
    let fleet = Fleet::start().await;
    // Direct gets (the normal path).
    missed_while_the_ledger_fails(&fleet, "PC-LD").await;

    // A consumer (brokers that do not answer direct gets): acked only after the ledger.
    let mut config = fleet.js.get_stream("EXEC").await.unwrap().info().await.unwrap().config.clone();
    config.allow_direct = false;
    fleet.js.update_stream(config).await.unwrap();
    let agent = missed_while_the_ledger_fails(&fleet, "PC-LC").await;
    assert!(agent.log().contains("does not answer direct gets"), "{}", agent.log());
}

#[tokio::test]
async fn a_live_command_the_ledger_could_not_record_is_replayed_without_a_reconnect() {
    let fleet = Fleet::start().await;
    let mut agent = fleet.agent("PC-LL", &[]);
    // Broken after the first catch-up, so only the live delivery meets it.
    let switch = ledger_switch(&mut agent);
    agent.spawn();
    ready(&agent).await;
    break_ledger(&switch);
    let marker = fleet.marker("live");
    let cmd = command("live", &format!("echo ran >> {}", marker.display()));
    fleet.publish(pc("PC-LL"), &cmd).await;
    kanade_testkit::wait_until_async("the live admission to fail", WAIT, || async {
        agent.log().contains("cannot record command")
    })
    .await;
    mend_ledger(&switch);
    let r = fleet.wait_result(cmd.exec_id, WAIT).await;
    assert_eq!(r.status, ExecStatus::Succeeded, "{}", agent.log());
    assert_eq!((runs(&marker), runs_of(&agent, cmd.exec_id)), (1, 1));
}

/// `n` results queued by an earlier life of the agent, oldest first.
fn queue_results(agent: &Agent, n: usize) -> Vec<ExecResult> {
    std::fs::create_dir_all(&agent.data_dir).unwrap();
    let store = kanade_agent::store::Store::open(&agent.data_dir.join("agent.db")).unwrap();
    let pc: kanade_shared::PcId = agent.id.parse().unwrap();
    let mut queued: Vec<ExecResult> =
        (0..n).map(|i| succeeded(&command("queued", "true"), &pc, format!("{i}\n"))).collect();
    // Against id order, so only the queue's own order can explain the order they arrive in.
    queued.reverse();
    for r in &queued {
        store.enqueue(&queued_message(r)).unwrap();
    }
    queued
}

#[tokio::test]
async fn queued_results_go_out_in_order_once_each_under_their_ids() {
    let fleet = Fleet::start().await;
    let mut agent = fleet.agent("PC-OQ", &[]);
    let queued = queue_results(&agent, 20);
    // The first one reached the broker before the agent died, its ack lost: sent again, it
    // must be dropped as the duplicate it is.
    let first = queued_message(&queued[0]);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", first.msg_id.as_str());
    fleet.js.publish_with_headers(first.subject, headers, first.payload.into()).await.unwrap().await.unwrap();

    agent.spawn();
    kanade_testkit::wait_until_async("every queued result", WAIT, || async {
        fleet.results().await.len() == queued.len()
    })
    .await;
    assert_eq!(agent.stop_and_count_outbox(), 0, "messages left in the outbox");
    let arrived: Vec<_> = fleet.results().await.into_iter().map(|r| r.exec_id).collect();
    let sent: Vec<_> = queued.iter().map(|r| r.exec_id).collect();
    assert_eq!(arrived, sent, "RESULTS holds each once, in the order they were queued");
}

#[tokio::test]
async fn the_outbox_stops_at_the_first_message_without_an_ack() {
    let fleet = Fleet::start().await;
    let mut agent = fleet.agent("PC-OS", &[]);
    // A result (its stream is gone: no ack), then a `started` event whose stream is there.
    let queued = queue_results(&agent, 1);
    let store = kanade_agent::store::Store::open(&agent.data_dir.join("agent.db")).unwrap();
    let started = kanade_agent::store::Outgoing {
        seq: 0,
        msg_id: "started-after".into(),
        subject: kanade_shared::subjects::event_started(&"PC-OS".parse().unwrap(), queued[0].exec_id),
        payload: b"{}".to_vec(),
    };
    store.enqueue(&started).unwrap();
    drop(store);
    fleet.js.delete_stream("RESULTS").await.unwrap();

    agent.spawn();
    kanade_testkit::wait_until_async("a failed publish", WAIT, || async {
        agent.log().matches("outbox publish failed").count() >= 2
    })
    .await;
    let mut events = fleet.js.get_stream("EVENTS").await.unwrap();
    assert_eq!(events.info().await.unwrap().state.messages, 0, "the event went out before the result");
    // Both still queued, in order (behind them whatever the agent queued since it started),
    // also after a clean stop, whose last pass meets the same missing stream.
    agent.stop();
    let head: Vec<String> = kanade_agent::store::Store::open(&agent.data_dir.join("agent.db"))
        .unwrap()
        .outbox(2)
        .unwrap()
        .into_iter()
        .map(|m| m.msg_id)
        .collect();
    assert_eq!(head, [queued_message(&queued[0]).msg_id, "started-after".to_owned()]);

    kanade_shared::jetstream::ensure_jetstream_resources(&fleet.js, 1).await.unwrap();
    agent.spawn();
    kanade_testkit::wait_until_async("the queued result", Duration::from_secs(60), || async {
        !fleet.results().await.is_empty()
    })
    .await;
    kanade_testkit::wait_until_async("the queued event", Duration::from_secs(60), || async {
        fleet.js.get_stream("EVENTS").await.unwrap().info().await.unwrap().state.messages >= 1
    })
    .await;
    assert_eq!(agent.stop_and_count_outbox(), 0, "messages left in the outbox");
    let arrived: Vec<_> = fleet.results().await.into_iter().map(|r| r.exec_id).collect();
    assert_eq!(arrived, [queued[0].exec_id]);
    assert_eq!(events.info().await.unwrap().state.messages, 1);
}

#[tokio::test]
async fn an_agent_calls_no_jetstream_api_but_direct_gets_to_start_reconnect_and_run() {
    let mut fleet = Fleet::start().await;
    let gate = Gate::start(&format!("127.0.0.1:{}", fleet.server.port())).await;
    let calls = |client: async_nats::Client| async move {
        let spy = client.subscribe("$JS.API.>").await.unwrap();
        client.flush().await.unwrap();
        spy
    };
    let drain = |mut spy: async_nats::Subscriber| async move {
        let mut subjects = Vec::new();
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(300), spy.next()).await {
            subjects.push(msg.subject.to_string());
        }
        subjects
    };
    // From here on the test's own client calls no JetStream API either (results are read
    // from a core subscription), so every call the spy sees is the agent's.
    let spy = calls(fleet.client.clone()).await;
    let agent = fleet.agent_behind("PC-JS", "1h", &gate).start();
    ready(&agent).await;
    let mut results = fleet.client.subscribe("results.PC-JS.>").await.unwrap();
    fleet.client.flush().await.unwrap();
    let cmd = command("inline", "echo hi");
    let payload = wire::encode(&cmd).unwrap();
    let subject = kanade_shared::subjects::command(&pc("PC-JS"), &cmd.job_id);
    fleet.client.publish(subject, payload.into()).await.unwrap();
    let result = tokio::time::timeout(WAIT, results.next()).await.expect("no result").unwrap();
    let result: ExecResult = wire::decode(&result.payload).unwrap();
    assert_eq!(result.stdout, "hi\n");
    let mut seen = drain(spy).await;

    // A reconnect after a broker restart, with the catch-up it triggers.
    let caught_up = catch_ups(&agent);
    gate.close();
    fleet.server.stop();
    fleet.restart_server().await;
    let spy = calls(fleet.client.clone()).await;
    gate.open();
    kanade_testkit::wait_until_async("the catch-up after the reconnect", WAIT, || async {
        catch_ups(&agent) > caught_up
    })
    .await;
    seen.extend(drain(spy).await);

    assert!(!seen.is_empty(), "the spy saw no call: it proves nothing");
    let other: Vec<&String> = seen.iter().filter(|s| !s.starts_with("$JS.API.DIRECT.GET.")).collect();
    assert!(other.is_empty(), "JetStream API calls besides direct gets: {other:?}\n{}", agent.log());
    let mut exec = fleet.js.get_stream("EXEC").await.unwrap();
    assert_eq!(exec.info().await.unwrap().state.consumer_count, 0);
}

/// An acked result's row is deleted with the agent's next write that queues a message or after a
/// few idle seconds, not in a commit of its own: an agent killed in between still holds it,
/// sends it again when it comes back, under the same `Nats-Msg-Id`, and RESULTS keeps it once.
#[tokio::test]
async fn a_result_acked_just_before_a_crash_goes_again_and_is_stored_once() {
    let fleet = Fleet::start().await;
    // Without inventory nothing else is queued after the run: a slow first collection would
    // otherwise carry the delete and leave this test nothing to send again.
    let mut agent = fleet.agent_with("PC-AC", "[inventory]\nenabled = false").start();
    ready(&agent).await;
    let cmd = command("acked-then-crash", "echo once");
    fleet.publish(pc("PC-AC"), &cmd).await;
    fleet.wait_result(cmd.exec_id, WAIT).await;
    agent.crash();
    let kept =
        kanade_agent::store::Store::open(&agent.data_dir.join("agent.db")).unwrap().outbox(10).unwrap();
    let results = kept.iter().filter(|m| m.subject.starts_with("results.")).count();
    assert_eq!(
        results, 1,
        "the acked result's row outlived the crash (killed within 5 s of the ack): {kept:?}"
    );

    agent.spawn();
    kanade_testkit::wait_until_async("the agent back and connected", WAIT, || async {
        agent.log().matches("intake ready").count() >= 2
    })
    .await;
    assert_eq!(agent.stop_and_count_outbox(), 0, "sent again and acked again");
    assert_eq!(fleet.results_for(cmd.exec_id).await.len(), 1, "RESULTS holds it once");
    assert_eq!(runs_of(&agent, cmd.exec_id), 1, "and it ran once");
}
