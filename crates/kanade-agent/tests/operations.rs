//! Operations settings on the real agent binary: `[log] keep_days = 0` logs to stdout only and
//! writes no log file (what a container or a journald-managed service wants), and a fleet-wide
//! `KANADE_NATS_TOKEN` is how it authenticates when its config names no credentials.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn keep_days_zero_logs_to_stdout_only() {
    let fleet = common::Fleet::start().await;
    let dir = fleet.dir.path();
    let logs = dir.join("logs");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"PC-LOG\"\nnats_url = {:?}\ndata_dir = {:?}\n[inventory]\nenabled = false\n[update]\nenabled = false\n[notifications]\nsocket = {:?}\n[log]\npath = {logs:?}\nkeep_days = 0\n",
            fleet.server.url(),
            dir.join("data"),
            dir.join("n.sock"),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kanade-agent"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("agent running")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no `agent running` on stdout within 30 s: {seen:#?}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.iter().any(|l| l.contains("kanade-agent starting")), "{seen:#?}");
    assert!(!logs.exists(), "keep_days = 0 made {}", logs.display());
}

#[tokio::test]
async fn the_fleet_wide_token_from_the_environment_lets_it_in() {
    let server = kanade_testkit::NatsServer::start_with("authorization { token: \"fleet-secret\" }");
    let auth = kanade_shared::nats::BrokerAuth { token: Some("fleet-secret".into()), ..Default::default() };
    let client = kanade_shared::nats::connect_once(&server.url(), &auth, "test").await.unwrap();
    let mut beats = client.subscribe("heartbeat.PC-TOKEN").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"PC-TOKEN\"\nnats_url = {:?}\ndata_dir = {:?}\nheartbeat_interval = \"1s\"\n[inventory]\nenabled = false\n[update]\nenabled = false\n[notifications]\nsocket = {:?}\n[log]\npath = {:?}\n",
            server.url(),
            dir.path().join("data"),
            dir.path().join("n.sock"),
            dir.path().join("logs"),
        ),
    )
    .unwrap();
    let spawn = |token: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kanade-agent"));
        c.arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env_remove("KANADE_NATS_TOKEN");
        if let Some(t) = token {
            c.env("KANADE_NATS_TOKEN", t);
        }
        c.spawn().unwrap()
    };
    // A wrong token: the server turns it away (the agent says so), and no heartbeat arrives.
    let mut wrong = spawn(Some("guess"));
    use futures::StreamExt;
    let logs = dir.path().join("logs");
    let said = || {
        std::fs::read_dir(&logs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect::<String>()
            .to_lowercase()
    };
    kanade_testkit::wait_until("the agent to be refused", Duration::from_secs(30), || {
        said().contains("authorization violation")
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(500), beats.next()).await.is_err(),
        "a wrong token got in"
    );
    let _ = wrong.kill();
    let _ = wrong.wait();
    let mut right = spawn(Some("fleet-secret"));
    let beat = tokio::time::timeout(Duration::from_secs(30), beats.next()).await;
    let _ = right.kill();
    let _ = right.wait();
    assert!(matches!(beat, Ok(Some(_))), "no heartbeat with the fleet-wide token");
}
