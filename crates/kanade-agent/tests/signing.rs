//! An agent that pins a key runs only commands signed with it, answers everything else with a
//! `failed` result saying why (never running it), runs a replayed signed command once, and
//! obeys only signed kills. Real nats-server, real agent process.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use kanade_shared::signing;
use kanade_shared::subjects;
use kanade_shared::wire::{self, Command, ExecStatus};

const WAIT: Duration = Duration::from_secs(30);

async fn publish_signed(
    fleet: &Fleet,
    key: &ed25519_dalek::SigningKey,
    cmd: &Command,
) -> (String, async_nats::HeaderMap, Vec<u8>) {
    let subject = subjects::command_pc(&"PC-1".parse().unwrap(), &cmd.job_id);
    let payload = wire::encode(cmd).unwrap();
    let headers = signing::signed_headers(
        Some(key),
        &subject,
        &payload,
        kanade_shared::wire::Timestamp::now_utc().unix_timestamp() * 1000,
    );
    fleet
        .js
        .publish_with_headers(subject.clone(), headers.clone(), payload.clone().into())
        .await
        .unwrap()
        .await
        .unwrap();
    (subject, headers, payload)
}

#[tokio::test]
async fn only_commands_signed_by_a_pinned_key_run() {
    let fleet = Fleet::start().await;
    let backend = signing::generate().unwrap();
    let rogue = signing::generate().unwrap();
    let pinned = signing::encode_public(&backend.verifying_key());
    let agent = fleet.agent_with("PC-1", &format!("[security]\ntrusted_keys = [{pinned:?}]")).start();
    ready(&agent).await;
    let marker = fleet.marker("signed");
    let script = format!("echo ran >> {}", marker.display());

    // Signed by the pinned key: runs.
    let good = command("good", &script);
    let (subject, headers, payload) = publish_signed(&fleet, &backend, &good).await;
    let r = fleet.wait_result(good.exec_id, WAIT).await;
    assert_eq!(r.status, ExecStatus::Succeeded, "{r:?}");

    // The same signed message replayed (a second copy in EXEC): the ledger runs it once.
    fleet.js.publish_with_headers(subject, headers, payload.into()).await.unwrap().await.unwrap();

    // Unsigned, and signed by a key the agent does not pin: refused with a reason, never run.
    let unsigned = command("forged", &script);
    fleet.publish(pc("PC-1"), &unsigned).await;
    let r = fleet.wait_result(unsigned.exec_id, WAIT).await;
    assert_eq!(
        (r.status, r.message.as_deref()),
        (ExecStatus::Failed, Some("refused: the command is not signed"))
    );
    assert_ne!(
        r.result_id,
        kanade_shared::ResultId::derive(unsigned.exec_id, &"PC-1".parse().unwrap()),
        "a refusal never takes the exec's own result identity"
    );
    let foreign = command("forged", &script);
    publish_signed(&fleet, &rogue, &foreign).await;
    let r = fleet.wait_result(foreign.exec_id, WAIT).await;
    assert_eq!(r.status, ExecStatus::Failed);
    assert!(
        r.message.as_deref().unwrap().starts_with("refused: signed by a key this agent does not trust"),
        "{r:?}"
    );

    // A rogue broadcast on commands.all, signed with its own key: refused as well.
    let broadcast = command("forged-all", &script);
    let subject = subjects::command(&all(), &broadcast.job_id);
    let payload = wire::encode(&broadcast).unwrap();
    let now = kanade_shared::wire::Timestamp::now_utc().unix_timestamp() * 1000;
    let headers = signing::signed_headers(Some(&rogue), &subject, &payload, now);
    fleet.js.publish_with_headers(subject, headers, payload.into()).await.unwrap().await.unwrap();
    let r = fleet.wait_result(broadcast.exec_id, WAIT).await;
    assert_eq!(r.status, ExecStatus::Failed);
    assert!(
        r.message.as_deref().unwrap().starts_with("refused: signed by a key this agent does not trust"),
        "{r:?}"
    );

    kanade_testkit::wait_until_async("the replayed signed copy to be seen as a duplicate", WAIT, || async {
        agent.log().contains(&format!("already admitted exec_id={}", good.exec_id))
    })
    .await;
    assert_eq!(runs(&marker), 1, "{}", agent.log());
    assert_eq!(fleet.results_for(good.exec_id).await.len(), 1);

    // Kills: an unsigned one is ignored, a signed one stops the run.
    // Both kills go out while the run is really running: after its `started` event.
    let long = command("long", "sleep 30");
    let mut started = fleet
        .client
        .subscribe(subjects::event_started(&"PC-1".parse().unwrap(), long.exec_id))
        .await
        .unwrap();
    publish_signed(&fleet, &backend, &long).await;
    tokio::time::timeout(WAIT, started.next()).await.expect("the long run never started");
    let kill = subjects::kill(long.exec_id);
    fleet.client.publish(kill.clone(), "kill".into()).await.unwrap();
    kanade_testkit::wait_until_async("the unsigned kill to be ignored", WAIT, || async {
        agent.log().contains("ignoring kill")
    })
    .await;
    assert!(fleet.results_for(long.exec_id).await.is_empty(), "an unsigned kill stopped the run");
    let now = kanade_shared::wire::Timestamp::now_utc().unix_timestamp() * 1000;
    let headers = signing::signed_headers(Some(&backend), &kill, b"kill", now);
    fleet.client.publish_with_headers(kill, headers, "kill".into()).await.unwrap();
    let r = fleet.wait_result(long.exec_id, WAIT).await;
    assert_eq!(r.status, ExecStatus::Killed, "{r:?}");
}
