//! The boot sentinel guards backend upgrades: the real binary, upgraded from a recorded last
//! good version, fails at start three times and is then quarantined; install scripts see it
//! with `check-quarantine`, an operator clears it.

use std::path::Path;
use std::process::{Command, Output};

fn backend(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kanade-backend"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_upgrade_that_keeps_failing_is_quarantined_until_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // The previous install ran 0.0.9 healthy.
    std::fs::write(data.join("boot.json"), r#"{"last_good":"0.0.9"}"#).unwrap();
    // This install cannot start: its database path is a directory.
    let config = dir.path().join("backend.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = {data:?}\n[db]\nsqlite_path = {db:?}\n[log]\npath = {logs:?}\n",
            db = dir.path(),
            logs = dir.path().join("logs"),
        ),
    )
    .unwrap();
    let version = env!("CARGO_PKG_VERSION");
    for _ in 0..3 {
        let out = backend(&config, &[]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("cannot open the database"), "{}", stderr(&out));
    }
    let out = backend(&config, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("kanade-backend {version} is quarantined (did not run healthy within 3 starts); reinstall version 0.0.9")),
        "{}",
        stderr(&out)
    );

    let out = backend(&config, &["check-quarantine", version]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("is quarantined since"));
    let out = backend(&config, &["check-quarantine", "0.0.9"]);
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).trim()),
        (Some(0), "kanade-backend 0.0.9 is not quarantined")
    );
    let out = backend(&config, &["check-quarantine", "not a version"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = backend(&config, &["clear-quarantine", version]);
    assert_eq!(out.status.code(), Some(0));
    // On trial again: it gets as far as the database.
    let out = backend(&config, &[]);
    assert!(stderr(&out).contains("cannot open the database"), "{}", stderr(&out));
}

/// What backup scripts and operators read off the real binary: where the database is, where
/// each secret came from (never its value), and logs going to stdout only.
#[test]
fn resolve_db_path_and_check_config_say_where_things_are_never_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("backend.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = {:?}\n[db]\nsqlite_path = \"relative/backend.db\"\n[log]\nkeep_days = 0\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kanade-backend"))
            .current_dir(dir.path())
            .env("KANADE_NATS_TOKEN", "fleet-secret")
            .env("KANADE_BOOTSTRAP_ADMIN_PASSWORD", "first-admin-password")
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        run(&["resolve-db-path"]).trim(),
        dir.path().join("relative/backend.db").display().to_string()
    );
    let checked = run(&["check-config"]);
    assert!(checked.contains("nats auth token (from environment KANADE_NATS_TOKEN)"), "{checked}");
    assert!(checked.contains("jwt secret generated (kept in the data dir"), "{checked}");
    assert!(
        checked.contains("bootstrap admin password from environment KANADE_BOOTSTRAP_ADMIN_PASSWORD"),
        "{checked}"
    );
    assert!(!checked.contains("first-admin-password"), "{checked}");
    assert!(checked.contains("logs      stdout only (keep_days = 0)"), "{checked}");
    assert!(!checked.contains("fleet-secret"), "{checked}");
}
