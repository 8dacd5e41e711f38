//! Watching agents from the terminal against a real stack (nats-server, the backend's router and
//! workers, an in-process agent running real shells): `kanade tail` follows a run line by line
//! while it goes, and `kanade agents logs` reads and follows an agent's log file.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{backend, kanade, stderr, stdout};
use tokio::io::{AsyncBufReadExt, BufReader};

const WAIT: Duration = Duration::from_secs(30);

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn spawn_cli(url: &str, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kanade"))
        .arg("--backend-url")
        .arg(url)
        .args(args)
        .env("KANADE_CONFIG_DIR", std::env::temp_dir().join("kanade-cli-tests-no-credentials"))
        .env_remove("KANADE_AUTH_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn next_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    what: &str,
) -> String {
    tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
        .unwrap()
        .unwrap_or_else(|| panic!("the output ended before {what}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_follows_a_run_while_it_goes() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path()).await;
    let url = b.url.as_str();
    let gate = dir.path().join("gate");
    // Each line waits for the test to open a gate: a line the CLI shows before its gate opens
    // was shown while the run was still going, not collected at the end.
    let script = format!(
        "for i in 1 2 3; do echo line $i; while [ ! -e {g}$i ]; do sleep 0.05; done; done; echo oops >&2; exit 3",
        g = gate.display()
    );
    let job = write(
        dir.path(),
        "lines.yaml",
        &format!(
            "id: lines\nversion: '1'\nexecute: {{ shell: sh, script: {script:?}, timeout: 2m }}\ntarget: {{ pcs: [PC-1] }}\n"
        ),
    );
    kanade_testkit::wait_until_async("PC-1 known", WAIT, || async {
        stdout(&kanade(url, &["agents", "list"]).await).contains("PC-1")
    })
    .await;
    let out = kanade(url, &["deploy", &job, "-o", "json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let exec = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["exec_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut tail = spawn_cli(url, &["tail", &exec, "PC-1"]);
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    let mut latency = Vec::new();
    let mut tail_err = tail.stderr.take().unwrap();
    for i in 1..=3 {
        let shown = Instant::now();
        let line = tokio::time::timeout(WAIT, lines.next_line()).await.expect("no line in time").unwrap();
        if line.as_deref() != Some(format!("line {i}").as_str()) {
            let mut err = String::new();
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::io::AsyncReadExt::read_to_string(&mut tail_err, &mut err),
            )
            .await;
            panic!("line {i}: got {line:?}; kanade tail said: {err}");
        }
        latency.push(shown.elapsed());
        std::fs::write(gate.with_file_name(format!("gate{i}")), "").unwrap();
    }
    assert_eq!(lines.next_line().await.unwrap(), None, "nothing after the last line");
    let status =
        tokio::time::timeout(WAIT, tail.wait()).await.expect("tail did not end with the run").unwrap();
    let mut err = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut tail_err, &mut err).await.unwrap();
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(err.contains("oops") && err.contains("[kanade] failed (exit 3)"), "{err}");
    eprintln!("gate opened → next line shown: {:?} (lines 2 and 3)", &latency[1..]);

    // A finished run: the stored output, the same exit status.
    let out = kanade(url, &["tail", &exec, "PC-1"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), "line 1\nline 2\nline 3\n");
    let out = kanade(url, &["-o", "json", "tail", &exec, "PC-1"]).await;
    let events: Vec<serde_json::Value> =
        stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.last().unwrap()["type"], "end", "{events:?}");

    // Mistakes are named.
    let out = kanade(url, &["tail", "not-an-id", "PC-1"]).await;
    assert!(stderr(&out).contains("\"not-an-id\" is not an execution id"), "{}", stderr(&out));
    let unknown = kanade_shared::ExecId::new().to_string();
    let out = kanade(url, &["tail", &unknown, "PC-1"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_logs_reads_and_follows_the_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path()).await;
    let url = b.url.as_str();
    // A second agent that keeps a log directory.
    let logs = dir.path().join("pc2-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let file = logs.join("kanade-agent.2026-12-02.log");
    std::fs::write(
        &file,
        "2026-12-02T10:00:00.000000Z  INFO kanade_agent: old\n2026-12-02T10:00:01.000000Z  INFO kanade_agent: started\n",
    )
    .unwrap();
    let mut settings =
        kanade_agent::runtime::Settings::new("PC-2".parse().unwrap(), b.server.url(), dir.path().join("pc2"));
    settings.heartbeat_interval = Duration::from_millis(500);
    settings.log_dir =
        Some(kanade_agent::logfile::LogDir { dir: logs.clone(), prefix: "kanade-agent".into() });
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(kanade_agent::runtime::run(settings, stop_rx));
    kanade_testkit::wait_until_async("PC-2 known", WAIT, || async {
        stdout(&kanade(url, &["agents", "list"]).await).contains("PC-2")
    })
    .await;

    let out = kanade(url, &["agents", "logs", "PC-2", "-n", "1"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "2026-12-02T10:00:01.000000Z  INFO kanade_agent: started\n");
    assert!(stderr(&out).contains("older lines left out"), "{}", stderr(&out));
    // The in-process PC-1 logs nowhere but stdout: said so, not an empty success.
    let out = kanade(url, &["agents", "logs", "PC-1"]).await;
    assert!(stderr(&out).contains("logs to stdout only"), "{}", stderr(&out));
    let out = kanade(url, &["agents", "logs", "PC-2", "-n", "0"]).await;
    assert!(stderr(&out).contains("lines: 0 is out of range"), "{}", stderr(&out));

    // Following prints what is appended, and nothing twice.
    let mut follow = spawn_cli(url, &["agents", "logs", "PC-2", "-n", "1", "--follow"]);
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    assert!(next_line(&mut lines, "the last line").await.ends_with("started"));
    let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
    std::io::Write::write_all(&mut f, b"2026-12-02T10:00:02.000000Z  WARN kanade_agent: appended\n").unwrap();
    assert!(next_line(&mut lines, "the appended line").await.ends_with("appended"));
    // A new day's file is followed into.
    std::fs::write(
        logs.join("kanade-agent.2026-12-03.log"),
        "2026-12-03T00:00:00.000000Z  INFO kanade_agent: new day\n",
    )
    .unwrap();
    assert!(next_line(&mut lines, "the next day's line").await.ends_with("new day"));
    follow.kill().await.unwrap();
}
