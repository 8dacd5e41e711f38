//! `kanade schedule …` end to end: the real CLI binary against a real backend (the library's
//! router and workers on a real socket), a real nats-server and an in-process agent.

use std::time::Duration;

mod common;

use common::{backend, kanade, stderr, stdout};

#[tokio::test(flavor = "multi_thread")]
async fn create_list_show_disable_delete() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path()).await;
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    // Each run appends a line: the runs that really happened, which result counts cannot show.
    let ran = dir.path().join("runs");
    let script = format!("echo scheduled >> {}\n", ran.display());
    std::fs::write(dir.path().join("scripts/hi.sh"), &script).unwrap();
    let file = dir.path().join("hourly.yaml");
    std::fs::write(
        &file,
        "id: every-second\ncron: '* * * * * *'\nmanifest:\n  id: hi\n  version: '1'\n  execute: { shell: sh, script_file: scripts/hi.sh }\nplan: { target: { groups: [lab] } }\nmode: once_per_pc\n",
    )
    .unwrap();

    let out = kanade(&b.url, &["schedule", "create", file.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("every-second"), "{}", stdout(&out));

    // The schedule fires once on PC-1 (once_per_pc), then reports done.
    let mut shown = String::new();
    for _ in 0..100 {
        let out = kanade(&b.url, &["schedule", "show", "every-second"]).await;
        shown = stdout(&out);
        if shown.contains("24 h ok/failed  1/0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(shown.contains("24 h ok/failed  1/0"), "{shown}");
    assert!(shown.contains("last fire"), "{shown}");
    let runs = || std::fs::read_to_string(&ran).map(|t| t.lines().count()).unwrap_or(0);
    assert_eq!(runs(), 1, "once_per_pc runs once on PC-1");

    let out = kanade(&b.url, &["schedule", "list"]).await;
    let list = stdout(&out);
    let lines: Vec<&str> = list.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("NEXT FIRE") && lines[0].contains("LAST OUTCOME"),
        "{list}"
    );
    assert!(
        lines[1].starts_with("every-second  yes") && lines[1].contains("hi") && lines[1].contains("1/0"),
        "{list}"
    );

    let out = kanade(&b.url, &["-o", "json", "schedule", "list"]).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["items"][0]["manifest"]["execute"]["script"], script.as_str());

    let out = kanade(&b.url, &["schedule", "disable", "every-second"]).await;
    assert_eq!(stdout(&out), "schedule every-second disabled\n");
    let out = kanade(&b.url, &["schedule", "disable", "every-second"]).await;
    assert_eq!(stdout(&out), "schedule every-second was already disabled\n");
    let out = kanade(&b.url, &["schedule", "preview", "every-second", "-n", "2"]).await;
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));
    let out = kanade(&b.url, &["schedule", "delete", "every-second"]).await;
    assert_eq!(stdout(&out), "schedule every-second deleted\n");
    let out = kanade(&b.url, &["schedule", "show", "every-second"]).await;
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        "error: schedule every-second does not exist (GET /api/schedules lists them) (404)\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "id: bad\ncron: '0 0 25 * * *'\njob_id: x\nplan: { target: { all: true } }\nmode: sometimes\n",
    )
    .unwrap();
    // Checked offline first: no server needed to see every problem.
    let out = kanade("http://127.0.0.1:1", &["schedule", "create", file.to_str().unwrap()]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(err.contains(r#"cron: "0 0 25 * * *": field 3 (hour) value 25 is out of range 0-23"#), "{err}");
    assert!(
        err.contains(r#"mode: "sometimes" is not one of every_tick, once_per_pc, once_per_target"#),
        "{err}"
    );

    let port = kanade_testkit::free_port().unwrap();
    let out = kanade(&format!("http://127.0.0.1:{port}"), &["schedule", "list"]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("error: cannot reach the backend at http://127.0.0.1:{port} (")),
        "{err}"
    );
    assert!(
        err.trim_end().ends_with("is kanade-backend running? (set --backend-url or KANADE_BACKEND_URL)"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let b = backend(dir.path()).await;
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "id: good\ncron: '@daily'\njob_id: missing\nplan: { target: { all: true } }\n")
        .unwrap();
    let out = kanade(&b.url, &["schedule", "create", good.to_str().unwrap()]).await;
    assert_eq!(
        stderr(&out),
        "error: invalid: job_id: job missing is not in the catalog (kanade job create, or POST /api/deploy)\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_config_set_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path()).await;
    let out = kanade(&b.url, &["agent", "config", "show"]).await;
    assert_eq!(
        stdout(&out),
        "no scope sets anything: agents use their agent.toml and the built-in defaults\n"
    );

    let out = kanade(
        &b.url,
        &["agent", "config", "set", "heartbeat_interval=2s", "inventory_interval=1h", "--pc", "PC-1"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "pc:PC-1 now sets heartbeat_interval = 2s, inventory_interval = 1h\n");
    let out = kanade(&b.url, &["agent", "config", "set", "inventory_interval=6h", "--group", "lab"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = kanade(&b.url, &["agent", "config", "show"]).await;
    let lines: Vec<String> =
        stdout(&out).lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(
        lines,
        [
            "SCOPE FIELD VALUE",
            "group:lab inventory_interval 6h",
            "pc:PC-1 heartbeat_interval 2s",
            "pc:PC-1 inventory_interval 1h",
        ],
        "{}",
        stdout(&out)
    );

    // A typo is named with the fields that exist; KEY= removes a field.
    let out = kanade(&b.url, &["agent", "config", "set", "heartbeat=2s"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("heartbeat: unknown field (known: heartbeat_interval"), "{}", stderr(&out));
    let out = kanade(
        &b.url,
        &["agent", "config", "set", "heartbeat_interval=", "inventory_interval=", "--pc", "PC-1"],
    )
    .await;
    assert_eq!(stdout(&out), "pc:PC-1 now sets nothing (the wider scope applies)\n", "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_perf_shows_samples_once_sampling_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path()).await;
    // A PC nobody has heard from is named as such; once it heartbeats, it has no samples yet.
    let out = kanade(&b.url, &["agents", "perf", "NOPE"]).await;
    assert!(stderr(&out).contains("agent NOPE has never sent a heartbeat"), "{}", stderr(&out));
    let mut out = kanade(&b.url, &["agents", "perf", "PC-1", "--since", "5m"]).await;
    for _ in 0..50 {
        if out.status.success() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        out = kanade(&b.url, &["agents", "perf", "PC-1", "--since", "5m"]).await;
    }
    assert!(
        stdout(&out).starts_with("no samples from PC-1 in the last 5m"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = kanade(&b.url, &["agent", "config", "set", "host_perf_interval=1s", "--pc", "PC-1"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let mut table = String::new();
    for _ in 0..50 {
        table = stdout(&kanade(&b.url, &["agents", "perf", "PC-1"]).await);
        if table.lines().count() >= 2 && table.starts_with("TIME") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines.len() >= 2 && lines[0].contains("CPU") && lines[0].contains("DISK WRITE/s"), "{table}");
    assert!(lines[1].contains('%') && lines[1].contains(" / "), "{table}");
    let out = kanade(&b.url, &["agents", "perf", "PC-1", "--since", "soon"]).await;
    assert_eq!(out.status.code(), Some(2), "a bad --since is a usage error: {}", stderr(&out));
}
