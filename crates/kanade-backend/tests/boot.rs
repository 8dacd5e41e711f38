//! The boot sentinel guards backend upgrades: the real binary, upgraded from a recorded last
//! good version, fails at start three times and is then quarantined; install scripts see it
//! with `check-quarantine`, an operator clears it. With a binary kept by `arm-for-swap`, the
//! fourth start puts the kept one back in its place instead (and `roll-back` does the same for
//! a start that could not).

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

/// A copy of the real backend binary in `dir/bin`, so a rollback replaces the copy.
fn installed_copy(dir: &Path) -> std::path::PathBuf {
    let exe = dir.join("bin").join("kanade-backend");
    std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_kanade-backend"), &exe).unwrap();
    exe
}

fn run(exe: &Path, config: &Path, args: &[&str]) -> Output {
    // A binary just written can still be open for writing in a child another test thread
    // forked meanwhile (it holds the fd until its own exec): Linux then refuses to run it.
    for _ in 0..50 {
        match Command::new(exe).arg("--config").arg(config).args(args).output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            out => return out.unwrap(),
        }
    }
    panic!("{} stayed busy (text file busy) for a second", exe.display());
}

/// A config whose database cannot open (its path is a directory): every start fails.
fn failing_config(dir: &Path, data: &Path) -> std::path::PathBuf {
    let config = dir.join("backend.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = {data:?}\n[db]\nsqlite_path = {db:?}\n[log]\nkeep_days = 0\n",
            db = dir,
        ),
    )
    .unwrap();
    config
}

#[test]
fn arm_for_swap_keeps_only_the_healthy_installed_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let exe = installed_copy(dir.path());
    let config = failing_config(dir.path(), &data);
    let version = env!("CARGO_PKG_VERSION");

    let out = run(&exe, &config, &["arm-for-swap"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("has not run healthy here yet"), "{}", stderr(&out));

    std::fs::write(data.join("boot.json"), format!(r#"{{"last_good":"{version}"}}"#)).unwrap();
    let out = run(&exe, &config, &["arm-for-swap"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("kept kanade-backend {version}")), "{said}");
    assert_eq!(std::fs::read(data.join("last-good/kanade-backend")).unwrap(), std::fs::read(&exe).unwrap());
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("last-good/kept.json")).unwrap()).unwrap();
    assert_eq!(kept["version"], version);

    std::fs::write(data.join("boot.json"), r#"{"last_good":"0.0.9"}"#).unwrap();
    let out = run(&exe, &config, &["arm-for-swap"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("last ran healthy here is 0.0.9"), "{}", stderr(&out));
}

#[cfg(unix)]
#[test]
fn an_armed_upgrade_that_keeps_failing_is_rolled_back_to_the_kept_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let kept_dir = data.join("last-good");
    std::fs::create_dir_all(&kept_dir).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&kept_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let real = installed_copy(dir.path());
    // The service starts it through a symlink (`/usr/local/bin/… → /opt/…`): the link's place
    // is what gets the old binary back, the new version's file stays as it was.
    let exe = dir.path().join("bin").join("kanade-backend-link");
    std::os::unix::fs::symlink(&real, &exe).unwrap();
    let config = failing_config(dir.path(), &data);
    let version = env!("CARGO_PKG_VERSION");
    // What arm-for-swap kept while 0.0.9 was installed and healthy: a stand-in that says so.
    let old = b"#!/bin/sh\necho kanade-backend 0.0.9 \"$@\"\n".to_vec();
    std::fs::write(kept_dir.join("kanade-backend"), &old).unwrap();
    let kept = serde_json::json!({
        "version": "0.0.9",
        "sha256": kanade_shared::files::sha256_hex(&old),
        "at": "2026-12-01T00:00:00Z",
    });
    std::fs::write(kept_dir.join("kept.json"), kept.to_string()).unwrap();
    std::fs::write(data.join("boot.json"), r#"{"last_good":"0.0.9"}"#).unwrap();

    for _ in 0..3 {
        let out = run(&exe, &config, &[]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("cannot open the database"), "{}", stderr(&out));
    }
    let out = run(&exe, &config, &[]);
    assert_eq!(out.status.code(), Some(75), "the service manager's cue to start again: {}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "kanade-backend {version} did not run healthy within 3 starts: it is quarantined and the kept 0.0.9 is back in its place"
        )),
        "{}",
        stderr(&out)
    );
    // The next start runs what was kept.
    let out = run(&exe, &config, &[]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("kanade-backend 0.0.9"));
    assert!(!std::fs::symlink_metadata(&exe).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&real).unwrap(), std::fs::read(env!("CARGO_BIN_EXE_kanade-backend")).unwrap());
    let out = backend(&config, &["check-quarantine", version]);
    assert_eq!(out.status.code(), Some(1));

    // A start that could not put it back (another account): `roll-back` does it later.
    let exe = installed_copy(dir.path());
    let out = run(&exe, &config, &["roll-back"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("kanade-backend {version} is quarantined: put the kept 0.0.9 back")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(std::fs::read(&exe).unwrap(), old);
    // The old binary's own `roll-back` (a real one) would find nothing to do; the real binary
    // when not quarantined says so.
    let out = backend(&config, &["clear-quarantine", version]);
    assert!(out.status.success());
    let exe = installed_copy(dir.path());
    let out = run(&exe, &config, &["roll-back"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("kanade-backend {version} is not quarantined: nothing to roll back")
    );
}

/// `[log] format = "json"`: every line the daemon writes is one JSON object (a log collector's
/// input); a format it does not know is refused naming the key.
#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Upgraded from 0.0.9: the start logs that the version is on trial, then fails.
    std::fs::write(data.join("boot.json"), r#"{"last_good":"0.0.9"}"#).unwrap();
    let config = failing_config(dir.path(), &data);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("keep_days = 0", "keep_days = 0\nformat = \"json\"");
    std::fs::write(&config, text).unwrap();
    let out = backend(&config, &["check-config"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("stdout only (keep_days = 0), json lines"));
    let out = backend(&config, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "new version on trial" && l["version"] == env!("CARGO_PKG_VERSION")),
        "{stdout}"
    );

    let text = std::fs::read_to_string(&config).unwrap().replace("\"json\"", "\"xml\"");
    std::fs::write(&config, text).unwrap();
    let out = backend(&config, &["check-config"]);
    assert!(stderr(&out).contains(r#"log.format: "xml" is not text or json"#), "{}", stderr(&out));
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
