//! The Windows agent under wine (SPEC §13): the real `kanade-agent.exe` built for
//! x86_64-pc-windows-gnu, a real nats-server and the backend on Linux. It heartbeats as Windows,
//! runs `cmd` jobs (output clean, exit code its own), a kill ends a `ping` process tree, a
//! result finished while the broker was down and the agent killed arrives exactly once after
//! both come back, and a missing PowerShell fails with a reason instead of hanging.
//!
//! Its `check-config` takes the broker token from `HKLM\SOFTWARE\Kanade\agent` before the
//! environment. Then the same agent is installed as a Windows service (`service install`), runs under wine's
//! Service Control Manager, and stops and is removed with `service uninstall`.
//!
//! `run_as: user` runs as wine's one user, whom wine reports signed in at the console; a
//! notification is listed and acknowledged through the agent's named pipe as that user.
//!
//! What wine cannot show (a second account, so that the token really changes identity; ACLs
//! being enforced; SCM recovery actions firing) is covered by unit tests of the decision code.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kanade_testkit::wine::{Wine, windows_exe, windows_path};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

struct WindowsAgent {
    dir: PathBuf,
    config: PathBuf,
    child: Option<std::process::Child>,
    starts: u32,
}

impl WindowsAgent {
    fn new(root: &Path, url: &str, pinned: &str) -> Self {
        let dir = root.join("WIN-1");
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "[agent]\nid = \"WIN-1\"\nnats_url = {url:?}\ngroups = [\"win\"]\ndata_dir = {data:?}\nheartbeat_interval = \"1s\"\n[security]\ntrusted_keys = [{pinned:?}]\n[log]\npath = {logs:?}\nlevel = \"info,kanade_agent=debug\"\n",
                data = windows_path(&dir.join("data")),
                logs = windows_path(&dir.join("logs")),
            ),
        )
        .unwrap();
        Self { dir, config, child: None, starts: 0 }
    }

    fn start(&mut self, wine: &Wine) {
        self.starts += 1;
        let log = self.dir.join(format!("console-{}.log", self.starts));
        let args = vec!["--config".to_owned(), windows_path(&self.config)];
        self.child = Some(wine.spawn("kanade-agent.exe", &args, &log).unwrap_or_else(|e| panic!("{e}")));
    }

    fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The agent's log file(s) (what it also printed to its console is not read twice).
    fn log(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.join("logs")).into_iter().flatten().flatten() {
            out.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
        out
    }

    fn finished(&self, exec: &str) -> bool {
        self.log().lines().any(|l| l.contains("run finished") && l.contains(exec))
    }
}

impl Drop for WindowsAgent {
    fn drop(&mut self) {
        self.crash();
    }
}

async fn pc_row(s: &common::Stack, exec: &str) -> Value {
    s.get(&format!("/api/executions/{exec}")).await.1["pcs"][0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_windows_agent_runs_cmd_jobs_kills_trees_and_keeps_results_under_wine() {
    let (mut s, key) = common::signed_stack(&[]).await;
    let exe = windows_exe(Path::new(env!("CARGO_BIN_EXE_kanade-backend")), "kanade-agent");
    let wine = tokio::task::spawn_blocking(move || Wine::start(&[&exe]))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let pinned = kanade_shared::signing::encode_public(&key.verifying_key());
    let mut agent = WindowsAgent::new(s.dir.path(), &s.server.url(), &pinned);

    // Secrets where Windows admins keep them: the machine's registry key wins over the
    // environment, and check-config names where the token came from, never its value.
    let config = windows_path(&agent.config);
    let key = r"HKLM\SOFTWARE\Kanade\agent";
    let added = wine
        .command("wine")
        .args(["reg", "add", key, "/v", "KANADE_NATS_TOKEN", "/t", "REG_SZ"])
        .args(["/d", "registry-secret", "/f"])
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let checked = wine
        .command("wine")
        .arg(wine.bin.join("kanade-agent.exe"))
        .args(["--config", &config, "check-config"])
        .env("KANADE_NATS_TOKEN", "env-secret")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(
        said.contains(r"nats auth token (from registry HKLM\SOFTWARE\Kanade\agent\KANADE_NATS_TOKEN)")
            && !said.contains("registry-secret")
            && !said.contains("env-secret"),
        "{said}{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let removed = wine.command("wine").args(["reg", "delete", key, "/f"]).output().unwrap();
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));

    // As a service first (wine's SCM stops starting services once a process of the prefix was
    // killed, which the outage part below does): installed and started by the SCM, running a
    // job, then stopped (the graceful shutdown) and removed.
    let out = wine
        .command("wine")
        .arg(wine.bin.join("kanade-agent.exe"))
        .args(["service", "install", "--config", &config])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    kanade_testkit::wait_until("the service to start the agent", WAIT, || {
        agent.log().contains("kanade-agent starting")
    });
    let query = wine.run(&["sc", "query", "kanade-agent"]).unwrap();
    assert!(query.contains("RUNNING"), "{query}");
    let exec = s
        .deploy_allowing_unknown("id: win-service\nversion: '1'\nexecute: { shell: cmd, script: 'echo from the service' }\ntarget: { pcs: [WIN-1] }\n")
        .await;
    let body = s.wait_status(&exec, "completed").await;
    assert_eq!(body["pcs"][0]["stdout"], "from the service\r\n", "{body:#}");
    let out = wine
        .command("wine")
        .arg(wine.bin.join("kanade-agent.exe"))
        .args(["service", "uninstall"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // SCM Stop is the graceful shutdown.
    kanade_testkit::wait_until("the service's agent to stop", WAIT, || {
        agent.log().contains("kanade-agent stopped")
    });
    let query = wine.run(&["sc", "query", "kanade-agent"]).unwrap();
    assert!(!query.contains("RUNNING"), "{query}");

    // In a console from here on.
    agent.start(&wine);

    // It heartbeats as Windows.
    kanade_testkit::wait_until_async("the Windows agent to heartbeat", WAIT, || async {
        s.get("/api/agents/WIN-1").await.1["agent"]["os_family"] == "windows"
    })
    .await;

    // A notification reaches the Windows agent; the user at the PC lists it and acknowledges it
    // over the agent's named pipe, named by the pipe (wine's one user), not by an argument.
    let (status, sent) = s
        .send_as(
            "POST",
            "/api/notifications",
            None,
            serde_json::json!({ "title": "Patch night", "body": "Reboot at 22:00", "target": { "pcs": ["WIN-1"] } }),
        )
        .await;
    assert_eq!(status, axum::http::StatusCode::CREATED, "{sent:#}");
    let id = sent["id"].as_str().unwrap().to_owned();
    let notifications = |args: &[&str]| {
        let out = wine
            .command("wine")
            .arg(wine.bin.join("kanade-agent.exe"))
            .arg("notifications")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    kanade_testkit::wait_until("the notification in the agent's list", WAIT, || {
        notifications(&["list", "--json"]).1.contains(&id)
    });
    let (ok, out, err) = notifications(&["ack", &id]);
    assert!(ok && out.starts_with(&format!("acknowledged {id} as ")), "{out}{err}\n{}", agent.log());
    let user = out.trim().rsplit(" as ").next().unwrap().to_owned();
    let wine_user = wine.run(&["cmd", "/c", "echo %USERDOMAIN%\\%USERNAME%"]).unwrap();
    assert!(
        wine_user.trim().eq_ignore_ascii_case(&user),
        "the pipe named {user:?}; wine's user is {wine_user:?}"
    );
    kanade_testkit::wait_until_async("the acknowledgement at the API", WAIT, || async {
        let (_, detail) = s.get(&format!("/api/notifications/{id}")).await;
        detail["pcs"][0]["status"] == "acked" && detail["pcs"][0]["acks"][0]["user"] == user.as_str()
    })
    .await;

    // Inventory from the registry and the firmware table (wine reports its own build).
    kanade_testkit::wait_until_async("the Windows inventory", WAIT, || async {
        !s.get("/api/agents/WIN-1").await.1["inventory"]["os_build"].as_str().unwrap_or("").is_empty()
    })
    .await;
    let (_, detail) = s.get("/api/agents/WIN-1").await;
    let inventory = &detail["inventory"];
    assert!(
        inventory["os_build"].as_str().unwrap().chars().next().unwrap().is_ascii_digit(),
        "{inventory:#}"
    );
    assert!(inventory["hardware"].is_object(), "{inventory:#}");

    // A cmd job: its own output, no echoed prompts, exit code 0 although `chcp` fails under wine.
    let exec = s
        .deploy("id: win-hello\nversion: '1'\nexecute: { shell: cmd, script: 'echo hello %COMPUTERNAME% & ver' }\ntarget: { pcs: [WIN-1] }\n")
        .await;
    let body = s.wait_status(&exec, "completed").await;
    let out = body["pcs"][0]["stdout"].as_str().unwrap().to_owned();
    assert!(out.starts_with("hello ") && out.contains("Windows"), "{body:#}\n{}", agent.log());
    assert!(!out.contains('>'), "prompts were echoed: {out:?}");
    assert_eq!(body["pcs"][0]["exit_code"], 0);

    // A kill ends the whole tree: cmd and the ping it started.
    let exec = s
        .deploy("id: win-ping\nversion: '1'\nexecute: { shell: cmd, script: 'ping -n 60 127.0.0.1' }\ntarget: { pcs: [WIN-1] }\n")
        .await;
    kanade_testkit::wait_until("ping.exe to run", WAIT, || wine.runs("ping.exe"));
    let sent = Instant::now();
    let (status, _) = s.send_as("POST", &format!("/api/executions/{exec}/kill"), None, Value::Null).await;
    assert_eq!(status, axum::http::StatusCode::ACCEPTED);
    kanade_testkit::wait_until("ping.exe to be gone", Duration::from_secs(2), || !wine.runs("ping.exe"));
    let gone = sent.elapsed();
    kanade_testkit::wait_until_async("the killed result", WAIT, || async {
        pc_row(&s, &exec).await["status"] == "killed"
    })
    .await;
    eprintln!("kill to process tree gone under wine: {gone:?}");

    // run_as: user starts the script with the signed-in console user's token in their session
    // (CreateProcessAsUserW, created suspended inside a job object), with their environment
    // and the job's env on top; a kill still ends the tree it starts.
    let exec = s
        .deploy("id: win-user\nversion: '1'\nexecute: { shell: cmd, run_as: user, env: { KANADE_MARK: here }, script: 'echo user=%USERNAME% mark=%KANADE_MARK% profile=%USERPROFILE%' }\ntarget: { pcs: [WIN-1] }\n")
        .await;
    let body = s.wait_status(&exec, "completed").await;
    let out = body["pcs"][0]["stdout"].as_str().unwrap().to_owned();
    // An unset variable would be echoed as written, %NAME%.
    assert!(
        out.starts_with("user=")
            && out.contains(" mark=here profile=")
            && !out.contains('%')
            && agent.log().contains("started as the signed-in console user"),
        "{body:#}\n{}",
        agent.log()
    );
    let exec = s
        .deploy("id: win-user-ping\nversion: '1'\nexecute: { shell: cmd, run_as: user, script: 'ping -n 60 127.0.0.1' }\ntarget: { pcs: [WIN-1] }\n")
        .await;
    kanade_testkit::wait_until("the user's ping.exe to run", WAIT, || wine.runs("ping.exe"));
    let (status, _) = s.send_as("POST", &format!("/api/executions/{exec}/kill"), None, Value::Null).await;
    assert_eq!(status, axum::http::StatusCode::ACCEPTED);
    kanade_testkit::wait_until("the user's ping.exe to be gone", Duration::from_secs(2), || {
        !wine.runs("ping.exe")
    });

    // PowerShell is not there (wine's stub would exit 0 doing nothing): a clear failure.
    assert!(wine.remove_program("powershell.exe").unwrap() > 0, "no powershell.exe stub to remove");
    let exec = s
        .deploy("id: win-ps\nversion: '1'\nexecute: { shell: powershell, script: 'Write-Output hi' }\ntarget: { pcs: [WIN-1] }\n")
        .await;
    let body = s.wait_status(&exec, "failed").await;
    let message = body["pcs"][0]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("powershell"), "{body:#}");

    // A result finished while the broker is down, the agent killed before it could send it:
    // it arrives exactly once when both are back, and the job ran once.
    let exec = s
        .deploy("id: win-outage\nversion: '1'\nexecute: { shell: cmd, script: 'echo ran>> %TEMP%\\kanade-outage.txt & ping -n 4 127.0.0.1 >nul & echo done' }\ntarget: { pcs: [WIN-1] }\n")
        .await;
    kanade_testkit::wait_until_async("the run to start", WAIT, || async {
        pc_row(&s, &exec).await["status"] == "running"
    })
    .await;
    s.server.stop();
    kanade_testkit::wait_until("the run to finish into the outbox", WAIT, || agent.finished(&exec));
    agent.crash();
    s.server.restart();
    agent.start(&wine);
    let body = s.wait_status(&exec, "completed").await;
    assert_eq!(body["pcs"][0]["stdout"], "done\r\n", "{body:#}");
    // The restarted agent's catch-up is where a rerun would come from: wait until it is done.
    kanade_testkit::wait_until("the restarted agent to catch up", WAIT, || {
        agent.log().matches("intake ready").count() >= 2
    });
    let (_, results) = s.get("/api/results?pc=WIN-1&job=win-outage").await;
    assert_eq!(results["items"].as_array().unwrap().len(), 1, "{results:#}");
    let runs = wine.run(&["cmd", "/c", "type", "%TEMP%\\kanade-outage.txt"]).unwrap();
    assert_eq!(runs.matches("ran").count(), 1, "{runs:?}");
}
