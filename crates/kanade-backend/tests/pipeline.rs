//! Deploy → real agents (the kanade-agent library, in process) → results projected into a real
//! SQLite file, all through the router.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::stack;
use serde_json::Value;

#[tokio::test]
async fn deploy_projects_every_result_and_completes() {
    let s = stack(&[("PC-1", &["canary"]), ("PC-2", &["canary"]), ("PC-3", &["other"])]).await;
    let exec = s.deploy("id: hello\nversion: '1'\nexecute: { shell: sh, script: 'echo hi' }\ntarget: { groups: [canary] }\n").await;
    let body = s.wait_status(&exec, "completed").await;
    let e = &body["execution"];
    assert_eq!(
        (e["target_count"].as_i64(), e["succeeded"].as_i64(), e["failed"].as_i64()),
        (Some(2), Some(2), Some(0))
    );
    let pcs = body["pcs"].as_array().unwrap();
    assert_eq!(pcs.iter().map(|p| p["pc_id"].as_str().unwrap()).collect::<Vec<_>>(), ["PC-1", "PC-2"]);
    assert!(pcs.iter().all(|p| p["status"] == "succeeded" && p["stdout"] == "hi\n"));

    let failing = s
        .deploy("id: boom\nversion: '1'\nexecute: { shell: sh, script: 'exit 3' }\ntarget: { all: true }\n")
        .await;
    let body = s.wait_status(&failing, "failed").await;
    assert_eq!(body["execution"]["failed"].as_i64(), Some(3));
    assert!(body["pcs"].as_array().unwrap().iter().all(|p| p["exit_code"] == 3));

    let (_, list) = s.get("/api/executions?limit=1").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["exec_id"], failing.as_str());
    let cursor = list["next_cursor"].as_str().unwrap();
    let (_, page2) = s.get(&format!("/api/executions?limit=1&cursor={cursor}")).await;
    assert_eq!(page2["items"][0]["exec_id"], exec.as_str());
}

#[tokio::test]
async fn waves_go_out_after_their_delay_and_failures_stop_the_rest() {
    let s = stack(&[("PC-A", &["a"]), ("PC-B", &["b"])]).await;
    let exec = s
        .deploy("id: waved\nversion: '1'\nexecute: { shell: sh, script: 'true' }\nrollout: { waves: [{ group: a }, { group: b, delay: 2s }] }\n")
        .await;
    let (_, early) = s.get(&format!("/api/executions/{exec}")).await;
    assert_eq!(early["waves"][1]["status"], "pending");
    let body = s.wait_status(&exec, "completed").await;
    assert_eq!(body["execution"]["succeeded"].as_i64(), Some(2));
    assert_eq!(body["waves"][1]["status"], "published");
    let published = body["waves"][1]["published_ms"].as_i64().unwrap();
    let due = body["waves"][1]["due_ms"].as_i64().unwrap();
    assert!(published >= due);

    let stopped = s
        .deploy("id: bad-wave\nversion: '1'\nexecute: { shell: sh, script: 'exit 1' }\nrollout: { waves: [{ group: a }, { group: b, delay: 2s }], max_failure_ratio: 0.0 }\n")
        .await;
    let body = s.wait_status(&stopped, "aborted").await;
    assert_eq!(body["waves"][1]["status"], "cancelled");
    assert!(body["execution"]["message"].as_str().unwrap().contains("max_failure_ratio"));
    // Past the cancelled wave's due time (and a dispatcher tick), nothing for it ever reached
    // EXEC and PC-B never ran it: checked after it would have gone out, not before.
    let due = body["waves"][1]["due_ms"].as_i64().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000;
    tokio::time::sleep(Duration::from_millis((due - now).max(0) as u64 + 2_000)).await;
    let js = async_nats::jetstream::new(async_nats::connect(s.server.url()).await.unwrap());
    let exec_stream = js.get_stream("EXEC").await.unwrap();
    let sent = exec_stream.direct_get_last_for_subject("commands.group.b.bad-wave").await;
    assert!(sent.is_err(), "the cancelled wave was published: {:?}", sent.map(|m| m.subject));
    let (_, body) = s.get(&format!("/api/executions/{stopped}")).await;
    assert!(body["pcs"].as_array().unwrap().iter().all(|p| p["pc_id"] != "PC-B"), "wave 2 ran: {body:#}");
}

#[tokio::test]
async fn bad_input_gets_the_documented_status_and_shape() {
    let s = stack(&[]).await;
    let (status, body) = s.post_yaml("/api/deploy", "id: [unclosed\n").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("malformed")));
    let (status, body) = s
        .post_yaml("/api/deploy", "id: x\nversion: '1'\nexecute: { shell: zsh, script: x, timeout: 5 }\n")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let problems: Vec<&str> =
        body["detail"]["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(
        problems,
        [
            r#"execute.shell: "zsh" is not a shell (one of powershell, pwsh, cmd, bash, sh)"#,
            "execute.timeout: 5 is not a duration (write a number with a unit, e.g. 30s, 10m, 24h)",
        ]
    );
    let (status, body) =
        s.post_yaml("/api/deploy", "id: x\nversion: '1'\nexecute: { shell: sh, script: x }\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"].as_str().unwrap().contains("a deploy needs a plan"));
    let (status, body) = s.post_yaml("/api/exec/nope", "target: { all: true }\n").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let req = Request::post("/api/exec/nope")
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    assert_eq!(s.call(req).await.0, StatusCode::BAD_REQUEST);
    let (status, _) = s.get("/api/executions/not-a-uuid").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn wipe_projector_rebuilds_executions_and_results_from_the_streams() {
    let s = stack(&[("PC-W", &["w"])]).await;
    let exec = s
        .deploy(
            "id: keep\nversion: '1'\nexecute: { shell: sh, script: 'echo kept' }\ntarget: { groups: [w] }\n",
        )
        .await;
    let before = s.wait_status(&exec, "completed").await;
    // An aborted rollout and its cancelled wave must come back too.
    let aborted = s
        .deploy("id: stopper\nversion: '1'\nexecute: { shell: sh, script: 'exit 1' }\nrollout: { waves: [{ group: w }, { group: later, delay: 2s }], max_failure_ratio: 0.0 }\n")
        .await;
    let aborted_before = s.wait_status(&aborted, "aborted").await;
    assert_eq!(aborted_before["waves"][1]["status"], "cancelled");

    // A second set of workers stands in for the restarted backend; the first set is stopped.
    let _workers = common::wipe_and_restart(&s).await;
    let aborted_after = s.wait_status(&aborted, "aborted").await;
    assert_eq!(
        (&aborted_after["waves"], &aborted_after["execution"]["message"]),
        (&aborted_before["waves"], &aborted_before["execution"]["message"])
    );

    let after = s.wait_status(&exec, "completed").await;
    assert_eq!(after["execution"]["succeeded"], before["execution"]["succeeded"]);
    // The agent's liveness moves on between the two reads; everything projected must not.
    let projected = |v: &serde_json::Value| {
        let mut pcs = v["pcs"].clone();
        for p in pcs.as_array_mut().unwrap() {
            let p = p.as_object_mut().unwrap();
            p.remove("last_seen_ms");
            p.remove("online");
        }
        pcs
    };
    assert_eq!(projected(&after), projected(&before));
    assert_eq!(after["pcs"][0]["stdout"], "kept\n");
}

#[tokio::test]
async fn signed_commands_run_on_agents_that_pin_the_key_and_forgeries_do_not_count() {
    let (s, key) = common::signed_stack(&[("PC-S", &["s"])]).await;
    let (_, shown) = s.get("/api/signing-key").await;
    assert_eq!(shown["public_key"], kanade_shared::signing::encode_public(&key.verifying_key()));
    let exec = s
        .deploy(
            "id: signed\nversion: '1'\nexecute: { shell: sh, script: 'echo ok' }\ntarget: { groups: [s] }\n",
        )
        .await;
    let body = s.wait_status(&exec, "completed").await;
    assert_eq!(body["execution"]["succeeded"], 1);

    // A rogue publishes an unsigned command reusing the exec id of a live execution: the agent
    // refuses it, and the refusal does not count as that execution's result.
    let live = s
        .deploy(
            "id: slowish\nversion: '1'\nexecute: { shell: sh, script: 'sleep 2' }\ntarget: { pcs: [PC-S] }\n",
        )
        .await;
    let client = async_nats::connect(s.server.url()).await.unwrap();
    let mut forged = kanade_shared::wire::Command::inline(
        "slowish".parse().unwrap(),
        "1".parse().unwrap(),
        kanade_shared::wire::Shell::Sh,
        "echo pwned",
    );
    forged.exec_id = live.parse().unwrap();
    let js = async_nats::jetstream::new(client);
    let subject = kanade_shared::subjects::command_pc(&"PC-S".parse().unwrap(), &forged.job_id);
    js.publish(subject.clone(), kanade_shared::wire::encode(&forged).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
    // The same, with the live exec id as its request id too: a refusal identity derived from
    // the request id would then be the real run's key and displace the real result.
    forged.request_id = kanade_shared::RequestId::from_uuid(forged.exec_id.as_uuid());
    js.publish(subject, kanade_shared::wire::encode(&forged).unwrap().into()).await.unwrap().await.unwrap();
    let body = s.wait_status(&live, "completed").await;
    assert_eq!(
        (body["execution"]["succeeded"].as_i64(), body["execution"]["failed"].as_i64()),
        (Some(1), Some(0)),
        "{body:#}"
    );
    assert_eq!(body["pcs"][0]["stdout"], "", "the real run's result (sleep prints nothing): {body:#}");
    assert_eq!(body["pcs"][0]["status"], "succeeded", "{body:#}");
    kanade_testkit::wait_until_async("the refusal to be projected", Duration::from_secs(20), || async {
        s.get("/api/results?pc=PC-S&status=failed").await.1["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|r| r["message"] == "refused: the command is not signed"))
    })
    .await;
}

#[tokio::test]
async fn a_result_naming_another_pc_than_its_subject_is_dropped_and_counted() {
    let s = stack(&[("PC-B", &["b"])]).await;
    let exec = s
        .deploy("id: victim\nversion: '1'\nexecute: { shell: sh, script: 'sleep 1; echo real' }\ntarget: { pcs: [PC-B] }\n")
        .await;
    // PC-A (any agent: its broker account may publish under results.PC-A.>) claims PC-B failed,
    // under PC-B's own run key so it would land first and take the row.
    let exec_id: kanade_shared::ExecId = exec.parse().unwrap();
    let pc_b: kanade_shared::PcId = "PC-B".parse().unwrap();
    let forged = kanade_shared::wire::ExecResult {
        schema: 1,
        result_id: kanade_shared::ResultId::derive(exec_id, &pc_b),
        request_id: kanade_shared::RequestId::new(),
        exec_id,
        job_id: "victim".parse().unwrap(),
        version: "1".parse().unwrap(),
        pc_id: pc_b,
        exit_code: Some(1),
        status: kanade_shared::wire::ExecStatus::Failed,
        skip_reason: None,
        message: Some("forged".into()),
        stdout: "forged".into(),
        stderr: String::new(),
        truncated: false,
        started_at: None,
        finished_at: kanade_shared::wire::Timestamp::now_utc(),
        attempt: 1,
    };
    let js = async_nats::jetstream::new(async_nats::connect(s.server.url()).await.unwrap());
    let subject = kanade_shared::subjects::result(&"PC-A".parse().unwrap(), forged.request_id);
    js.publish(subject, kanade_shared::wire::encode(&forged).unwrap().into()).await.unwrap().await.unwrap();
    let body = s.wait_status(&exec, "completed").await;
    assert_eq!(body["pcs"][0]["stdout"], "real\n", "{body:#}");
    assert_eq!(body["execution"]["failed"], 0, "{body:#}");
    let (_, metrics) = s.get_text("/metrics").await;
    assert!(metrics.contains("kanade_projector_forged_total{stream=\"RESULTS\"} 1\n"), "{metrics}");
}

#[tokio::test]
async fn a_result_the_database_refuses_is_skipped_and_the_results_around_it_are_projected() {
    let s = stack(&[]).await;
    // A row the database will not take, whatever the engine: its own refusal, not ours.
    common::raw_sql(
        s.dir.path(),
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON execution_results WHEN NEW.stdout = 'poison'
         BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;",
        "ALTER TABLE execution_results ADD CONSTRAINT refuse_poison CHECK (stdout <> 'poison')",
    );
    let js = async_nats::jetstream::new(async_nats::connect(s.server.url()).await.unwrap());
    // Published together, so the refused one shares its batch with others.
    let exec =
        common::flood_with(&js, 40, |i| if i == 17 { "poison".into() } else { format!("ok {i}") }).await;
    // Its PCs join as they report, so it is `completed` after every batch: wait for all 39.
    let path = format!("/api/executions/{exec}");
    let all_in = || async { s.get(&path).await.1["execution"]["succeeded"].as_i64() >= Some(39) };
    kanade_testkit::wait_until_async("39 results", std::time::Duration::from_secs(30), all_in).await;
    let body = s.wait_status(&exec.to_string(), "completed").await;
    let e = &body["execution"];
    assert_eq!((e["succeeded"].as_i64(), e["target_count"].as_i64()), (Some(39), Some(39)), "{body:#}");
    let (_, metrics) = s.get_text("/metrics").await;
    assert!(metrics.contains("kanade_projector_refused_total{stream=\"RESULTS\"} 1\n"), "{metrics}");
    // The stream goes on after it.
    let later = common::flood_with(&js, 3, |_| "fine".into()).await;
    s.wait_status(&later.to_string(), "completed").await;
}

#[tokio::test]
async fn a_killed_rollout_never_sends_its_next_wave_and_an_absent_pc_skips_it_on_return() {
    let s = stack(&[("PC-K1", &["first"]), ("PC-K2", &["second"])]).await;
    // Wave 0 to PC-K1 and PC-AWAY (never heard from yet) by name; wave 1 three seconds in.
    let exec = s
        .deploy_allowing_unknown("id: to-kill\nversion: '1'\nexecute: { shell: sh, script: 'sleep 30' }\nrollout: { waves: [{ pcs: [PC-K1, PC-AWAY] }, { group: second, delay: 3s }] }\n")
        .await;
    kanade_testkit::wait_until_async("wave 0 to start", Duration::from_secs(20), || async {
        s.get(&format!("/api/executions/{exec}")).await.1["execution"]["status"] == "running"
    })
    .await;
    let (status, body) = s.send_as("POST", &format!("/api/executions/{exec}/kill"), None, Value::Null).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body:#}");
    let body = s.wait_status(&exec, "killed").await;
    assert_eq!(body["waves"][1]["status"], "cancelled", "{body:#}");
    // Past wave 1's due time: nothing for its subject ever reached EXEC, PC-K2 never ran it.
    let due = body["waves"][1]["due_ms"].as_i64().unwrap();
    kanade_testkit::wait_until("wave 1's due time to pass", Duration::from_secs(10), || {
        kanade_backend::db::now_ms() > due + 2_000
    });
    let js = async_nats::jetstream::new(async_nats::connect(s.server.url()).await.unwrap());
    let exec_stream = js.get_stream("EXEC").await.unwrap();
    assert!(
        exec_stream.direct_get_last_for_subject("commands.group.second.to-kill").await.is_err(),
        "wave 1 was published"
    );
    // PC-K1's answer to the kill is on its way (the kill itself is asynchronous).
    kanade_testkit::wait_until_async("PC-K1 to report its run killed", Duration::from_secs(20), || async {
        let (_, body) = s.get(&format!("/api/executions/{exec}")).await;
        body["pcs"].as_array().unwrap().iter().any(|p| p["pc_id"] == "PC-K1" && p["status"] == "killed")
    })
    .await;
    let (_, body) = s.get(&format!("/api/executions/{exec}")).await;
    assert!(body["pcs"].as_array().unwrap().iter().all(|p| p["pc_id"] != "PC-K2"), "{body:#}");
    assert_eq!(body["execution"]["status"], "killed");
    // A PC that was away during the kill comes back, catches the command up, and skips it.
    s.spawn_agent("PC-AWAY", &[]);
    kanade_testkit::wait_until_async("PC-AWAY to report", Duration::from_secs(30), || async {
        let (_, body) = s.get(&format!("/api/executions/{exec}")).await;
        body["pcs"].as_array().unwrap().iter().any(|p| p["pc_id"] == "PC-AWAY" && p["status"] == "skipped")
    })
    .await;
    let (_, body) = s.get(&format!("/api/executions/{exec}")).await;
    let away = body["pcs"].as_array().unwrap().iter().find(|p| p["pc_id"] == "PC-AWAY").unwrap().clone();
    assert_eq!(
        (away["exit_code"].as_i64(), away["skip_reason"].as_str()),
        (Some(126), Some("killed")),
        "{away:#}"
    );
    assert_eq!(body["execution"]["status"], "killed", "a late result does not revive it");
}

#[tokio::test]
async fn every_published_command_has_a_start_deadline_and_a_late_pc_skips_it() {
    let s = stack(&[("PC-D1", &["d"])]).await;
    let js = async_nats::jetstream::new(async_nats::connect(s.server.url()).await.unwrap());
    let exec_stream = js.get_stream("EXEC").await.unwrap();
    let command_on = |subject: &'static str| {
        let exec_stream = exec_stream.clone();
        async move {
            let msg = exec_stream.direct_get_last_for_subject(subject).await.unwrap();
            kanade_shared::wire::decode::<kanade_shared::wire::Command>(&msg.payload).unwrap()
        }
    };
    // The default (`[exec] start_within`, 7 days here) and a plan's own window.
    let before = kanade_shared::wire::Timestamp::now_utc();
    s.deploy(
        "id: dl-default\nversion: '1'\nexecute: { shell: sh, script: 'true' }\ntarget: { groups: [d] }\n",
    )
    .await;
    let cmd = command_on("commands.group.d.dl-default").await;
    let deadline = cmd.deadline_at.expect("a deadline");
    assert!(
        deadline >= before + time::Duration::days(7) && deadline <= cmd.issued_at + time::Duration::days(7)
    );
    // Ad-hoc runs: ten minutes.
    let (status, body) =
        s.send_as("POST", "/api/run", None, serde_json::json!({ "pcs": ["PC-D1"], "script": "true" })).await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
    let job = format!("commands.pc.PC-D1.{}", body["job_id"].as_str().unwrap());
    let msg = exec_stream.direct_get_last_for_subject(job).await.unwrap();
    let cmd: kanade_shared::wire::Command = kanade_shared::wire::decode(&msg.payload).unwrap();
    assert_eq!(cmd.deadline_at, Some(cmd.issued_at + time::Duration::minutes(10)));

    // A PC that starts (fresh, like a re-imaged one) after the window skips the command.
    let exec = s
        .deploy_allowing_unknown("id: dl-short\nversion: '1'\nexecute: { shell: sh, script: 'true' }\ntarget: { pcs: [PC-LATE] }\nstart_within: 1s\n")
        .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    s.spawn_agent("PC-LATE", &[]);
    let body = s.wait_status(&exec, "completed").await;
    let late = &body["pcs"][0];
    assert_eq!(
        (late["status"].as_str(), late["exit_code"].as_i64()),
        (Some("skipped"), Some(125)),
        "{body:#}"
    );
}

#[tokio::test]
async fn a_forger_cannot_take_a_real_results_dedup_slot() {
    let s = stack(&[("PC-V", &["v"])]).await;
    let exec = s
        .deploy("id: slot\nversion: '1'\nexecute: { shell: sh, script: 'sleep 1; echo real' }\ntarget: { pcs: [PC-V] }\n")
        .await;
    // Published first, under its own subject, with the victim's derivable result id as its
    // Nats-Msg-Id: the body is dropped by the projector, and the real result must still land.
    let exec_id: kanade_shared::ExecId = exec.parse().unwrap();
    let victim = kanade_shared::ResultId::derive(exec_id, &"PC-V".parse().unwrap());
    let js = async_nats::jetstream::new(async_nats::connect(s.server.url()).await.unwrap());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", victim.to_string().as_str());
    js.publish_with_headers("results.PC-EVIL.x", headers, "{}".into()).await.unwrap().await.unwrap();
    let body = s.wait_status(&exec, "completed").await;
    assert_eq!(body["pcs"][0]["stdout"], "real\n", "{body:#}");
}

#[tokio::test]
async fn adhoc_runs_are_executions_named_by_what_ran() {
    let s = stack(&[("PC-H", &[])]).await;
    // `kanade run` publishes straight to the agent: the projector makes the execution from its
    // run, so links to it resolve and its output shows.
    let request = kanade_shared::RequestId::new();
    let cmd = kanade_shared::wire::Command::inline(
        kanade_shared::JobId::adhoc(request),
        "1".parse().unwrap(),
        kanade_shared::wire::Shell::Sh,
        "echo direct",
    );
    let js = async_nats::jetstream::new(async_nats::connect(s.server.url()).await.unwrap());
    let subject = kanade_shared::subjects::command_pc(&"PC-H".parse().unwrap(), &cmd.job_id);
    js.publish(subject, kanade_shared::wire::encode(&cmd).unwrap().into()).await.unwrap().await.unwrap();
    let body = s.wait_status(&cmd.exec_id.to_string(), "completed").await;
    assert_eq!(
        (&body["execution"]["target_count"], &body["pcs"][0]["stdout"]),
        (&1.into(), &"direct\n".into())
    );
    // Named by its script (read back from EXEC), not by its ad-hoc job id.
    let title =
        || async { s.get(&format!("/api/executions/{}", cmd.exec_id)).await.1["execution"]["title"].clone() };
    kanade_testkit::wait_until_async("the run's title", Duration::from_secs(10), || async {
        title().await == "echo direct"
    })
    .await;
    let (_, list) = s.get("/api/results?pc=PC-H").await;
    assert_eq!(list["items"][0]["title"], "echo direct", "{list:#}");

    // POST /api/run: named by its script's first line.
    let (status, launched) = s
        .send_as(
            "POST",
            "/api/run",
            None,
            serde_json::json!({ "pcs": ["PC-H"], "script": "\n echo via api\necho more" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{launched:#}");
    let body = s.wait_status(launched["exec_id"].as_str().unwrap(), "completed").await;
    assert_eq!(body["execution"]["title"], "echo via api", "{body:#}");
    assert_eq!(body["pcs"][0]["stdout"], "via api\nmore\n");

    // A rebuild keeps both, each with its name.
    let _workers = common::wipe_and_restart(&s).await;
    s.wait_status(&cmd.exec_id.to_string(), "completed").await;
    kanade_testkit::wait_until_async(
        "the run's title after the rebuild",
        Duration::from_secs(10),
        || async { title().await == "echo direct" },
    )
    .await;
    let body = s.wait_status(launched["exec_id"].as_str().unwrap(), "completed").await;
    assert_eq!(body["execution"]["title"], "echo via api", "{body:#}");
}

#[tokio::test]
async fn an_audit_event_the_broker_refuses_does_not_hold_back_the_outbox() {
    use kanade_backend::db::{outbox::Outgoing, projection};
    use kanade_shared::wire::{self, AuditEvent, Timestamp};
    let s = stack(&[]).await;
    let event = |action: &str, detail: Value| {
        let e = AuditEvent {
            schema: wire::SCHEMA,
            id: kanade_shared::AuditId::new(),
            at: Timestamp::now_utc(),
            actor: "test".into(),
            action: action.into(),
            target: None,
            source: None,
            client: None,
            detail,
        };
        let payload = String::from_utf8(wire::encode(&e).unwrap()).unwrap();
        Outgoing { id: e.id.to_string(), subject: format!("audit.{action}"), payload }
    };
    // Stored a minute ago (past the drainer's grace), the one the broker cannot take first:
    // larger than its max_payload.
    let huge = event("exec.aborted", serde_json::json!({ "message": "x".repeat(2 << 20) }));
    let after = event("exec.expired", Value::Null);
    let step = |exec_id: kanade_shared::ExecId| projection::ExecStep {
        exec_id,
        wave: None,
        targets: Vec::new(),
        message: None,
    };
    let old = kanade_backend::db::now_ms() - 60_000;
    let db = &s.state.db;
    let (a, b) = (kanade_shared::ExecId::new(), kanade_shared::ExecId::new());
    db.ended_early_audited(step(a), projection::Ended::Aborted, old, huge.clone()).await.unwrap();
    db.ended_early_audited(step(b), projection::Ended::Expired, old + 1, after).await.unwrap();

    common::wait_for_audit(&s, "exec.expired").await;
    // The refused one is no longer due, but kept: unmarked, it is due again. (The drainer
    // clears a row after its ack, which can land after the projector has the event.)
    let due = || async { db.audit_due(kanade_backend::db::now_ms(), 10).await.unwrap() };
    kanade_testkit::wait_until_async(
        "nothing due in the outbox",
        std::time::Duration::from_secs(10),
        || async { due().await.is_empty() },
    )
    .await;
    let unmark = "UPDATE audit_outbox SET refused_ms = NULL";
    common::raw_sql(s.dir.path(), unmark, unmark);
    assert_eq!(due().await.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), [huge.id.as_str()]);
}

#[tokio::test]
async fn a_job_too_large_for_the_broker_is_refused_with_its_size_and_nothing_is_created() {
    let s = stack(&[("PC-1", &[])]).await;
    // Stored with its YAML source, a 600 KB script is over the broker's 1 MB max_payload.
    let script = format!("# {}\ntrue", "x".repeat(600_000));
    let yaml = format!(
        "id: huge\nversion: '1'\nexecute: {{ shell: sh, script: {script:?} }}\ntarget: {{ pcs: [PC-1] }}\n"
    );
    let (status, body) = s.post_yaml("/api/deploy", &yaml).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body:#}");
    let problems = body["detail"]["problems"].to_string();
    assert!(problems.contains("job huge is") && problems.contains("max_payload 1048576"), "{body:#}");
    let (_, execs) = s.get("/api/executions?job=huge").await;
    assert_eq!(execs["items"].as_array().map(Vec::len), Some(0), "{execs:#}");
    let (status, _) = s.get("/api/jobs/huge").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The buckets an exec reads are opened as the backend starts and read by direct gets: an exec
/// asks no bucket's stream for its info, which only the stream's leader answers (a cluster
/// that just lost a node has none for seconds).
#[tokio::test]
async fn an_exec_asks_no_buckets_stream_for_its_info() {
    use futures::StreamExt;
    let s = stack(&[("PC-Q", &[])]).await;
    let (status, body) =
        s.post_yaml("/api/jobs", "id: quiet\nversion: '1'\nexecute: { shell: sh, script: 'true' }\n").await;
    assert!(status.is_success(), "{status}: {body}");
    // Opened in the background as the workers started; on a busy machine that can take a moment.
    let buckets = &s.state.buckets;
    kanade_testkit::wait_until_async("the exec's buckets opened", Duration::from_secs(30), || async {
        kanade_backend::buckets::EXEC_READS.iter().all(|b| buckets.is_open(b))
    })
    .await;
    let spy_client = async_nats::connect(s.server.url()).await.unwrap();
    let mut spy = spy_client.subscribe("$JS.API.>").await.unwrap();
    spy_client.flush().await.unwrap();

    let (status, body) = s.post_yaml("/api/exec/quiet", "target: { pcs: [PC-Q] }\n").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut calls = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), spy.next()).await {
        calls.push(m.subject.to_string());
    }
    assert!(
        calls.iter().any(|c| c.starts_with("$JS.API.DIRECT.GET.KV_jobs")),
        "the spy did not see the catalog read; it proves nothing: {calls:?}"
    );
    // Only what the exec uses: another worker (the lease) opens its bucket each time.
    let exec_uses = kanade_backend::buckets::EXEC_READS.map(|b| format!("$JS.API.STREAM.INFO.KV_{b}"));
    let infos: Vec<&String> = calls.iter().filter(|c| exec_uses.contains(c)).collect();
    assert!(infos.is_empty(), "an exec asked for bucket streams' info: {infos:?}");
}
