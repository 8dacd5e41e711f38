//! The CLI end to end against a real stack, as an operator would use it: login, jobs, deploy
//! and exec with --wait, executions, results, agents, ping, run, kill, revoke.

mod common;

use futures::StreamExt;
use std::time::Duration;

use common::{ADMIN_PASSWORD, backend, kanade, kanade_in, secured, stderr, stdout};

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operators_day() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path()).await;
    let url = b.url.as_str();
    let nats = b.server.url();

    // Agents and ping.
    let mut list = String::new();
    for _ in 0..50 {
        list = stdout(&kanade(url, &["agents", "list"]).await);
        if list.contains("PC-1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(list.lines().next().unwrap().starts_with("PC  "), "{list}");
    assert!(list.contains("PC-1") && list.contains("online") && list.contains("lab"), "{list}");
    let out = kanade(url, &["ping", "PC-1"]).await;
    assert!(stdout(&out).starts_with("PC-1 answered in "), "{}{}", stdout(&out), stderr(&out));
    let out = kanade(url, &["agents", "show", "PC-1"]).await;
    assert!(stdout(&out).contains("groups          lab"), "{}", stdout(&out));

    // Jobs: create (script_file inlined), list, show.
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::fs::write(dir.path().join("scripts/hello.sh"), "echo hello from $0\n").unwrap();
    let job = write(
        dir.path(),
        "hello.yaml",
        "id: hello\nversion: '1'\nexecute: { shell: sh, script_file: scripts/hello.sh }\ntarget: { groups: [lab] }\n",
    );
    // Its target is kept with it, and the file as written (comments too).
    let job_text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(&job, format!("# says hello\n{job_text}")).unwrap();
    assert_eq!(
        stdout(&kanade(url, &["job", "create", &job]).await),
        "job hello version 1 stored with its target (`kanade exec hello` runs it there)\n"
    );
    let out = stdout(&kanade(url, &["job", "list"]).await);
    assert!(out.contains("hello") && out.contains("sh"), "{out}");
    let out = stdout(&kanade(url, &["job", "show", "hello"]).await);
    assert!(out.contains("echo hello from $0"), "{out}");
    // The audit trail says the CLI did it.
    let mut audit = String::new();
    for _ in 0..100 {
        audit = stdout(&kanade(url, &["-o", "json", "audit", "--action", "job.create"]).await);
        if audit.contains("\"client\": \"cli\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(audit.contains("\"client\": \"cli\""), "{audit}");

    // Deploy with --wait: exit 0, the summary line; a failing deploy exits non-zero.
    let out = kanade(url, &["deploy", &job, "--version", "2", "--wait"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("completed: [####################] 1/1 done, 0 failed"),
        "{}",
        stdout(&out)
    );
    let bad = write(
        dir.path(),
        "bad.yaml",
        "id: boom\nversion: '1'\nexecute: { shell: sh, script: 'echo broken >&2; exit 7' }\ntarget: { pcs: [PC-1] }\n",
    );
    let out = kanade(url, &["deploy", &bad, "--wait"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("PC-1 failed (exit 7) broken"), "{}", stderr(&out));
    assert!(stdout(&out).contains("failed: [####################] 1/1 done, 1 failed"), "{}", stdout(&out));

    // A group just assigned is in effect when `groups set` returns: a deploy to it finds the PC.
    let out = kanade(url, &["agents", "groups", "set", "PC-1", "fresh"]).await;
    assert!(
        stdout(&out).starts_with("PC-1 groups assigned: fresh. It is now in: "),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = kanade(url, &["exec", "hello", "--groups", "fresh", "--wait"]).await;
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // Nobody online in the target: --wait says so at once instead of waiting forever.
    let out = kanade(url, &["exec", "hello", "--groups", "nobody", "--wait"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("no online agent matches the target of execution "), "{}", stderr(&out));

    // A PC name nobody has heard of is refused with the name, at once; accepted with
    // --allow-unknown, --wait then stops on its own, naming the PC that never answered.
    let out = kanade(url, &["exec", "hello", "--pcs", "PC-1,nosuchpc", "--wait"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("never seen by this backend (no heartbeat yet): nosuchpc.")
            && stderr(&out).contains("--allow-unknown"),
        "{}",
        stderr(&out)
    );
    let out = kanade(url, &["exec", "hello", "--pcs", "ghost", "--allow-unknown", "--wait"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("ghost never answered: this backend has never heard from it")
            && stdout(&out).contains("1 never answered"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // Killing that still-pending execution shows it killed (nothing was running to stop).
    let ghost_id = stdout(&out).split_whitespace().nth(1).unwrap().to_owned();
    let out = kanade(url, &["--nats-url", &nats, "kill", &ghost_id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&kanade(url, &["-o", "json", "executions", "show", &ghost_id]).await))
            .unwrap();
    assert_eq!(v["execution"]["status"], "killed", "{v:#}");
    // A run that cannot start says why on the --wait line, not only in `executions show`.
    let nocwd = write(
        dir.path(),
        "nocwd.yaml",
        "id: nocwd\nversion: '1'\nexecute: { shell: sh, script: 'true', cwd: /no/such/dir }\ntarget: { pcs: [PC-1] }\n",
    );
    let out = kanade(url, &["deploy", &nocwd, "--wait"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("PC-1 failed (exit -) working directory /no/such/dir does not exist on this PC"),
        "{}",
        stderr(&out)
    );

    // Exec of a catalog job, executions and results.
    let out = kanade(url, &["exec", "hello", "--pcs", "PC-1", "--wait", "-o", "json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["execution"]["status"], "completed");
    let exec_id = json["execution"]["exec_id"].as_str().unwrap().to_owned();
    let out = stdout(&kanade(url, &["executions", "show", &exec_id]).await);
    assert!(out.contains("completed") && out.contains("PC-1") && out.contains("hello from"), "{out}");
    let out = stdout(&kanade(url, &["executions", "show", &exec_id, "--full"]).await);
    assert!(out.contains("\n== PC-1 succeeded (exit 0) ==\n-- stdout --\nhello from "), "{out}");
    let out = stdout(&kanade(url, &["executions", "list", "--job", "hello"]).await);
    assert_eq!(
        out.lines().count(),
        6,
        "five hello executions (one to nobody, one to a PC never seen): {out}"
    );
    let out = stdout(&kanade(url, &["results", "--failed"]).await);
    assert!(out.contains("boom") && !out.contains("hello"), "{out}");
    // Without a target, `exec` runs the job where its file said; a job without one says so.
    let out = kanade(url, &["exec", "hello", "--wait"]).await;
    assert!(out.status.success() && stdout(&out).contains("1/1 done"), "{}{}", stdout(&out), stderr(&out));
    let bare_yaml =
        "# kept as written\nid: bare\nversion: '1'\nexecute: { shell: sh, script: 'true', timeout: 60s }\n";
    let bare = write(dir.path(), "bare.yaml", bare_yaml);
    assert_eq!(stdout(&kanade(url, &["job", "create", &bare]).await), "job bare version 1 stored\n");
    assert_eq!(stdout(&kanade(url, &["job", "show", "bare"]).await), bare_yaml);
    let out = kanade(url, &["exec", "bare"]).await;
    assert_eq!(
        stderr(&out),
        "error: job bare has no stored target; say where to run it: --pcs a,b, --groups g or --all\n"
    );

    // Revoke: the agent skips the job; unrevoke lifts it.
    assert_eq!(
        stdout(&kanade(url, &["revoke", "hello"]).await),
        "job hello revoked: agents skip it from now on\n"
    );
    let out = kanade(url, &["exec", "hello", "--pcs", "PC-1", "--wait", "-o", "json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["pcs"][0]["status"], "skipped", "{json:#}");
    assert_eq!(stdout(&kanade(url, &["unrevoke", "hello"]).await), "job hello active again\n");

    // run: the script's output and exit code, straight through NATS.
    let out =
        kanade(url, &["--nats-url", &nats, "run", "PC-1", "--", "echo out; echo err >&2; exit 3"]).await;
    assert_eq!(
        (stdout(&out).as_str(), stderr(&out).as_str(), out.status.code()),
        ("out\n", "err\n", Some(3))
    );
    // The run is an execution like any other, named by what ran, not by its ad-hoc job id.
    let mut out = String::new();
    for _ in 0..50 {
        out = stdout(&kanade(url, &["results", "--pc", "PC-1"]).await);
        if out.contains("echo out; echo err >&2; exit 3") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(out.contains("echo out; echo err >&2; exit 3") && !out.contains("adhoc-"), "{out}");
    // Words after `--` keep their boundaries; a crash code never becomes success.
    let out = kanade(url, &["--nats-url", &nats, "run", "PC-1", "--", "printf", "[%s]", "b c", "it's"]).await;
    assert_eq!((stdout(&out).as_str(), out.status.code()), ("[b c][it's]", Some(0)), "{}", stderr(&out));
    let out = kanade(url, &["--nats-url", &nats, "run", "PC-1", "--", "kill -SEGV $$"]).await;
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    // A PC that never connected is named at once, not after the start timeout.
    let started = std::time::Instant::now();
    let out = kanade(url, &["--nats-url", &nats, "run", "PC-404", "--", "true"]).await;
    assert_eq!(
        stderr(&out),
        "error: PC-404 is not connected and has never connected to this fleet (no inventory from it); check the name with `kanade agents list` (names are case-sensitive)\n"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let out = kanade(url, &["ping", "PC-404"]).await;
    assert!(stderr(&out).contains("agent PC-404 has never sent a heartbeat"), "{}", stderr(&out));

    // kill: a long deploy stops.
    let slow = write(
        dir.path(),
        "slow.yaml",
        "id: slow\nversion: '1'\nexecute: { shell: sh, script: 'sleep 30' }\ntarget: { pcs: [PC-1] }\n",
    );
    let out = kanade(url, &["deploy", &slow, "-o", "json"]).await;
    let launched: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let slow_id = launched["exec_id"].as_str().unwrap().to_owned();
    // Killed while it runs, not before it started.
    let mut running = false;
    for _ in 0..100 {
        let v: serde_json::Value = serde_json::from_str(&stdout(
            &kanade(url, &["-o", "json", "executions", "show", &slow_id]).await,
        ))
        .unwrap();
        running = v["pcs"][0]["status"] == "running";
        if running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(running, "the slow job never started");
    let out = kanade(url, &["--nats-url", &nats, "kill", &slow_id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "execution {slow_id} killed: running PCs stop it, later waves are cancelled, PCs that come back skip it\n"
        )
    );
    let out = stdout(&kanade(url, &["executions", "show", &slow_id, "-o", "json"]).await);
    let mut status = String::new();
    for _ in 0..50 {
        let v: serde_json::Value = serde_json::from_str(&stdout(
            &kanade(url, &["-o", "json", "executions", "show", &slow_id]).await,
        ))
        .unwrap();
        status = v["pcs"][0]["status"].as_str().unwrap_or("").to_owned();
        if status == "killed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, "killed", "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&kanade(url, &["-o", "json", "executions", "show", &slow_id]).await))
            .unwrap();
    assert_eq!(v["execution"]["status"], "killed");

    // Ctrl-C while following leaves the execution running and says how to follow it.
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kanade"))
        .args(["--backend-url", url, "deploy", &slow, "--wait"])
        .env("KANADE_CONFIG_DIR", dir.path().join("none"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("stopped following; execution ")
            && err.contains("keeps running. Follow it with `kanade executions show "),
        "{err}"
    );

    // Delete a job.
    assert_eq!(stdout(&kanade(url, &["job", "delete", "boom"]).await), "job boom deleted\n");
    let out = kanade(url, &["job", "show", "boom"]).await;
    assert!(!out.status.success() && stderr(&out).starts_with("error: job boom"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn login_keeps_a_private_token_and_errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let b = secured(dir.path()).await;
    let config = dir.path().join("cli-config");

    let out = kanade_in(&config, &b.url, &["job", "list"], None).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: missing \"Authorization: Bearer <token>\""), "{err}");
    assert!(err.trim_end().ends_with("run `kanade login`"), "{err}");

    let out = kanade_in(
        &config,
        &b.url,
        &["login", "--user", "admin", "--password-stdin"],
        Some("wrong password\n"),
    )
    .await;
    assert_eq!(stderr(&out), "error: wrong user name or password, or the account is disabled\n");

    let out = kanade_in(
        &config,
        &b.url,
        &["login", "--user", "admin", "--password-stdin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("signed in to {} as admin (admin); token kept in ", b.url)),
        "{}",
        stdout(&out)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(config.join("credentials.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = kanade_in(&config, &b.url, &["job", "list"], None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // A viewer is told which role a change needs.
    let hash = kanade_backend::auth::password::hash("viewer password").unwrap();
    let now = kanade_backend::db::now_ms();
    b.db.create_user("victor".into(), hash, "viewer".into(), false, now).await.unwrap();
    let viewer = dir.path().join("viewer-config");
    let out = kanade_in(
        &viewer,
        &b.url,
        &["login", "--user", "victor", "--password-stdin"],
        Some("viewer password\n"),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = kanade_in(&viewer, &b.url, &["revoke", "hello"], None).await;
    assert_eq!(stderr(&out), "error: this needs the operator role; victor is viewer\n");
    let out = kanade_in(&viewer, &b.url, &["job", "list"], None).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // A flag beats the stored session.
    let out = kanade_in(&config, &b.url, &["--token", "kanade_nope_nope", "job", "list"], None).await;
    assert!(stderr(&out).starts_with("error: API token unknown or revoked"), "{}", stderr(&out));
}

#[test]
fn completions_for_every_shell() {
    for (shell, marker) in [
        ("bash", "_kanade()"),
        ("zsh", "#compdef kanade"),
        ("fish", "complete -c kanade"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kanade"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(marker) && text.contains("schedule"),
            "{shell}: {}",
            &text[..text.len().min(200)]
        );
    }
    // `kanade completions bash | head -1`: the reader leaves early; no panic, exit 0.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kanade"))
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_signs_with_the_operators_key_when_agents_pin_it() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("operator.key");
    let out = kanade("http://127.0.0.1:1", &["-o", "json", "keygen", key_file.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let public: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let again = kanade("http://127.0.0.1:1", &["keygen", key_file.to_str().unwrap()]).await;
    assert!(stderr(&again).contains("an existing key is never overwritten"), "{}", stderr(&again));

    let server = kanade_testkit::NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    kanade_shared::jetstream::ensure_jetstream_resources(&async_nats::jetstream::new(client.clone()), 1)
        .await
        .unwrap();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut settings =
        kanade_agent::runtime::Settings::new("PC-K".parse().unwrap(), server.url(), dir.path().join("agent"));
    settings.max_concurrent_jobs = 2;
    settings.heartbeat_interval = Duration::from_secs(1);
    settings.trusted_keys =
        vec![kanade_shared::signing::decode_public(public["public_key"].as_str().unwrap()).unwrap()];
    let mut beats = client.subscribe("heartbeat.PC-K").await.unwrap();
    client.flush().await.unwrap();
    tokio::spawn(kanade_agent::runtime::run(settings, stop_rx));
    // Connected (and subscribed: it beats once its intake is up).
    tokio::time::timeout(Duration::from_secs(30), beats.next()).await.expect("PC-K never connected");
    let nats = server.url();

    let out = kanade(
        "http://127.0.0.1:1",
        &[
            "--nats-url",
            &nats,
            "--signing-key",
            key_file.to_str().unwrap(),
            "run",
            "PC-K",
            "--",
            "echo signed",
        ],
    )
    .await;
    assert_eq!((stdout(&out).as_str(), out.status.code()), ("signed\n", Some(0)), "{}", stderr(&out));
    let out =
        kanade("http://127.0.0.1:1", &["--nats-url", &nats, "run", "PC-K", "--", "echo unsigned"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "PC-K: failed: refused: the command is not signed\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_releases_and_rollout_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path()).await;
    let url = b.url.as_str();
    // Any executable that answers --version with this version will do: the CLI itself.
    let binary = env!("CARGO_BIN_EXE_kanade");
    let version = env!("CARGO_PKG_VERSION");
    let out = kanade(url, &["agent", "publish", binary, "--version", "9.9.9"]).await;
    assert!(stderr(&out).contains("not version 9.9.9"), "{}", stderr(&out));
    let out = kanade(url, &["agent", "rollout", version]).await;
    assert!(stderr(&out).contains("has no published release"), "{}", stderr(&out));

    let out = kanade(url, &["agent", "publish", binary, "--version", version]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("published {version}/x86_64-unknown-linux-gnu (")),
        "{}",
        stdout(&out)
    );
    let out = stdout(&kanade(url, &["agent", "releases"]).await);
    assert!(out.contains(version) && out.contains("x86_64-unknown-linux-gnu"), "{out}");

    assert_eq!(
        stdout(&kanade(url, &["agent", "rollout", version, "--pc", "PC-1"]).await),
        format!("pcs.PC-1 now asks for {version}\n")
    );
    assert_eq!(
        stdout(&kanade(url, &["agent", "rollout", version, "--group", "lab"]).await),
        format!("groups.lab now asks for {version}\n")
    );
    let mut v = serde_json::Value::Null;
    for _ in 0..50 {
        v = serde_json::from_slice(&kanade(url, &["-o", "json", "agent", "current"]).await.stdout).unwrap();
        if !v["running"][version].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(v["target_versions"]["pcs.PC-1"], version);
    assert_eq!(v["target_versions"]["groups.lab"], version);
    // The in-process agent heartbeats its own version.
    assert_eq!(v["running"][version], 1, "{v:#}");

    // A PC that quarantined a version and cannot install another one: both shown.
    let client = async_nats::connect(b.server.url()).await.unwrap();
    let beat = serde_json::json!({
        "pc_id": "PC-Q", "hostname": "q", "os": {"family": "linux"}, "arch": "x86_64",
        "agent_version": "2.0.0", "at": "2026-11-24T10:00:00Z",
        "quarantined": [{"version": "3.0.0", "at": "2026-11-24T09:00:00Z", "reason": "did not run healthy within 3 starts"}],
        "update_status": "version 3.0.0 is quarantined on this PC",
    });
    client.publish("heartbeat.PC-Q", serde_json::to_vec(&beat).unwrap().into()).await.unwrap();
    client.flush().await.unwrap();
    let mut table = String::new();
    for _ in 0..50 {
        table = stdout(&kanade(url, &["agent", "current"]).await);
        if table.contains("QUARANTINED") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(table.contains("3.0.0        PC-Q"), "{table}");
    assert!(table.contains("PC-Q  version 3.0.0 is quarantined on this PC"), "{table}");
    let agents: serde_json::Value =
        serde_json::from_slice(&kanade(url, &["-o", "json", "agents", "list"]).await.stdout).unwrap();
    let q = agents["items"].as_array().unwrap().iter().find(|a| a["pc_id"] == "PC-Q").unwrap().clone();
    assert_eq!(q["quarantined"][0]["version"], "3.0.0", "{q:#}");

    let out = stdout(&kanade(url, &["agent", "clear-quarantine", "--pc", "PC-Q"]).await);
    assert!(out.starts_with("pcs.PC-Q: versions quarantined before 20"), "{out}");
    // The rollout of the same scope is kept.
    let out = stdout(&kanade(url, &["agent", "clear-quarantine", "--pc", "PC-1"]).await);
    assert!(out.starts_with("pcs.PC-1: versions quarantined before"), "{out}");
    let v: serde_json::Value =
        serde_json::from_slice(&kanade(url, &["-o", "json", "agent", "current"]).await.stdout).unwrap();
    assert_eq!(v["target_versions"]["pcs.PC-1"], version);
}

/// Lists page: one page says on stderr when more exist, `--all` follows the cursor to the end;
/// `-o yaml` is data a script can read; `kill --job` kills a job's unfinished executions.
#[tokio::test(flavor = "multi_thread")]
async fn lists_follow_the_cursor_with_all_yaml_output_and_kill_by_job() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path()).await;
    let url = b.url.as_str();
    for i in 0..3 {
        let job = write(
            dir.path(),
            &format!("j{i}.yaml"),
            &format!("id: paged-{i}\nversion: '1'\nexecute: {{ shell: sh, script: 'true' }}\n"),
        );
        assert!(kanade(url, &["job", "create", &job]).await.status.success());
    }
    let count = |out: &std::process::Output| -> usize {
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)));
        v["items"].as_array().map_or(0, Vec::len)
    };
    // The three creations reach the audit trail through its stream.
    let mut total = 0;
    for _ in 0..100 {
        total = count(&kanade(url, &["-o", "json", "audit", "--action", "job", "--limit", "500"]).await);
        if total >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(total >= 3, "{total} job audit events");
    let one = kanade(url, &["-o", "json", "audit", "--action", "job", "--limit", "1"]).await;
    assert_eq!(count(&one), 1);
    assert!(
        stderr(&one).contains("(more audit events than --limit 1: --all lists every one)"),
        "{}",
        stderr(&one)
    );
    let all = kanade(url, &["-o", "json", "audit", "--action", "job", "--limit", "1", "--all"]).await;
    assert_eq!((count(&all), stderr(&all)), (total, String::new()));

    let yaml = kanade(url, &["-o", "yaml", "job", "list"]).await;
    let doc: serde_json::Value =
        serde_yaml_ng::from_slice(&yaml.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&yaml)));
    let ids: Vec<&str> = doc["items"].as_array().unwrap().iter().filter_map(|j| j["id"].as_str()).collect();
    assert!(ids.contains(&"paged-2"), "{ids:?}");

    // Scripts: upload (name from the file), list, show, delete.
    let script = write(dir.path(), "tool.sh", "echo tool\n");
    let out = kanade(url, &["script", "upload", &script, "--version", "1.0.0"]).await;
    let sha = kanade_shared::files::sha256_hex(b"echo tool\n");
    assert_eq!(
        stdout(&out),
        format!("script tool/1.0.0 stored, sha256 {sha}; a job runs it with `script_object: tool/1.0.0`\n"),
        "{}",
        stderr(&out)
    );
    let out = stdout(&kanade(url, &["script", "list"]).await);
    assert!(out.contains("tool/1.0.0") && out.contains(&sha), "{out}");
    assert_eq!(stdout(&kanade(url, &["script", "show", "tool", "1.0.0"]).await), "echo tool\n");
    assert_eq!(
        stdout(&kanade(url, &["script", "delete", "tool", "1.0.0"]).await),
        "script tool/1.0.0 deleted\n"
    );
    let out = kanade(url, &["script", "show", "tool", "1.0.0"]).await;
    assert!(stderr(&out).contains("script tool/1.0.0 is not uploaded"), "{}", stderr(&out));

    // A freeze: set, shown, a run refused until overridden, lifted. (paged-1: paged-0 must
    // never run, for the kill below.)
    let out = kanade(url, &["freeze", "--for", "1h", "--reason", "change window"]).await;
    assert!(stdout(&out).starts_with("the fleet is frozen until "), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("(change window, set by "), "{}", stdout(&out));
    assert!(stdout(&kanade(url, &["freeze"]).await).contains("change window"));
    let out = kanade(url, &["exec", "paged-1", "--pcs", "PC-1", "--allow-unknown"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("(kanade: --override-freeze)"), "{}", stderr(&out));
    let out =
        kanade(url, &["--override-freeze", "exec", "paged-1", "--pcs", "PC-1", "--allow-unknown"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&kanade(url, &["unfreeze"]).await), "the fleet freeze is lifted\n");
    assert_eq!(stdout(&kanade(url, &["freeze"]).await), "the fleet is not frozen\n");
    let out = kanade(url, &["freeze", "--reason", "no end"]).await;
    assert!(stderr(&out).contains("--until <RFC 3339 time> or --for <duration>"), "{}", stderr(&out));

    let out = kanade(url, &["kill", "--job", "paged-0"]).await;
    assert_eq!(
        stdout(&out),
        "job paged-0 has no unfinished execution: nothing to kill\n",
        "{}",
        stderr(&out)
    );
    let long = write(
        dir.path(),
        "long.yaml",
        "id: long\nversion: '1'\nexecute: { shell: sh, script: 'sleep 60' }\n",
    );
    assert!(kanade(url, &["job", "create", &long]).await.status.success());
    assert!(kanade(url, &["exec", "long", "--pcs", "PC-1", "--allow-unknown"]).await.status.success());
    let out = kanade(url, &["kill", "--job", "long"]).await;
    assert!(
        stdout(&out).starts_with("job long: 1 unfinished execution(s) killed"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = kanade(url, &["kill"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
