//! A real nats-server running the generated accounts: an agent's credentials are refused by
//! the server (an error, not a timeout) when they publish commands or another PC's results,
//! while the normal flow — backend deploys, agent runs, result projected — works.

mod common;

use std::time::Duration;

use kanade_backend::broker;
use kanade_shared::nats::BrokerAuth;
use kanade_testkit::NatsServer;

fn creds(user: &str, password: &str) -> BrokerAuth {
    BrokerAuth {
        user: Some(user.into()),
        password: Some(password.into()),
        inbox_prefix: Some(format!("_INBOX_{user}")),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_publish_only_as_themselves() {
    let accounts = [
        broker::backend("backend", "backend-pw"),
        broker::agent(&"PC-1".parse().unwrap(), "pc1-pw"),
        broker::agent(&"PC-2".parse().unwrap(), "pc2-pw"),
    ];
    let server = NatsServer::start_with(&broker::render(&accounts));
    let url = server.url();

    // Anonymous clients are turned away.
    assert!(kanade_shared::nats::connect_once(&url, &BrokerAuth::default(), "anon").await.is_err());

    let backend =
        kanade_shared::nats::connect_once(&url, &creds("backend", "backend-pw"), "backend").await.unwrap();
    let js = async_nats::jetstream::new(backend.clone());
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 1).await.unwrap();

    // PC-1's credentials: publishing a command or PC-2's result is a server error.
    let mut rogue = common::Checked::connect(&url, "PC-1", "pc1-pw").await;
    for subject in ["commands.all.evil", "commands.pc.PC-2.evil", "results.PC-2.x", "kill.x"] {
        rogue.assert_refused(subject).await;
    }
    // Through JetStream the command is refused too, not silently stored.
    let rogue_js = async_nats::jetstream::new(rogue.client.clone());
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        match rogue_js.publish("commands.all.evil", "x".into()).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    assert!(matches!(refused, Ok(Err(_)) | Err(_)), "a command from an agent was stored: {refused:?}");
    let exec = js.get_stream("EXEC").await.unwrap().info().await.unwrap().state.messages;
    assert_eq!(exec, 0, "the rogue command reached EXEC");

    // The normal flow with the same restricted credentials.
    let dir = tempfile::tempdir().unwrap();
    let mut settings =
        kanade_agent::runtime::Settings::new("PC-1".parse().unwrap(), url.clone(), dir.path().join("agent"));
    settings.groups = vec!["lab".parse().unwrap()];
    settings.max_concurrent_jobs = 2;
    settings.heartbeat_interval = Duration::from_millis(500);
    settings.inventory = Some((Duration::from_secs(3600), Duration::ZERO));
    settings.broker = creds("PC-1", "pc1-pw");
    let (s, _stop) = common::backend_and_agent(backend.clone(), dir.path(), settings).await;
    let body = s
        .deploy_and_wait("id: allowed\nversion: '1'\nexecute: { shell: sh, script: 'echo fine' }\ntarget: { groups: [lab] }\n")
        .await;
    assert_eq!(body["pcs"][0]["stdout"], "fine\n", "{body:#}");
    // A run that waited out a jitter reads the fleet view and exec_kills again before it starts.
    let body = s
        .deploy_and_wait("id: waited\nversion: '1'\nexecute: { shell: sh, script: 'echo waited' }\ntarget: { groups: [lab] }\njitter: 1s\n")
        .await;
    assert_eq!(body["pcs"][0]["stdout"], "waited\n", "{body:#}");
    // Inventory went through the agent's outbox too.
    kanade_testkit::wait_until_async("the inventory", Duration::from_secs(30), || async {
        !s.get("/api/agents/PC-1").await.1["inventory"].is_null()
    })
    .await;
    // It answers requests for its output and its log on its own subjects: the tail of a run it
    // does not hold, and a log it keeps on stdout only.
    let tail = kanade_shared::wire::TailRequest { schema: 1, exec_id: kanade_shared::ExecId::new(), from: 0 };
    let reply = backend
        .request(
            kanade_shared::subjects::tail(&"PC-1".parse().unwrap()),
            kanade_shared::wire::encode(&tail).unwrap().into(),
        )
        .await
        .unwrap();
    let reply: kanade_shared::wire::TailReply = kanade_shared::wire::decode(&reply.payload).unwrap();
    assert!(!reply.known);
    let (status, logs) = s.get("/api/agents/PC-1/logs?lines=5").await;
    assert_eq!(status, 200, "{logs}");
    assert!(logs["note"].as_str().unwrap().contains("stdout only"), "{logs}");
    // The agent's own flows (intake, catch-up, results, events, heartbeats, inventory, KV reads,
    // watch requests) never tripped a permission: the only violations are the rogue publishes above.
    let log = server.log();
    let violations: Vec<&str> =
        log.lines().filter(|l| l.contains("Violation")).filter_map(|l| l.rsplit("Subject ").next()).collect();
    assert_eq!(
        violations,
        [
            "\"commands.all.evil\"",
            "\"commands.pc.PC-2.evil\"",
            "\"results.PC-2.x\"",
            "\"kill.x\"",
            "\"commands.all.evil\""
        ],
        "{log}"
    );
}
