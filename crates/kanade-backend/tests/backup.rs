//! Backups on the real binary: `kanade-backend backup` while the backend projects a stream of
//! results, `restore` into another backend's place (refused there until `--force`, which keeps
//! what it replaces), and that backend starts with the same accounts, API token, session secret
//! and command-signing key, and catches up on every result, also those after the backup.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kanade_testkit::NatsServer;
use serde_json::{Value, json};

const BEFORE: usize = 6_000;
const AFTER: usize = 1_500;
const PASSWORD: &str = "first admin password";
const WAIT: Duration = Duration::from_secs(90);

/// `PRAGMA integrity_check` of a database file: "ok" when whole.
fn integrity(db: &Path) -> String {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap()
}

/// Results the executions count as succeeded (the counters, not the rows).
fn counted(db: &Path) -> i64 {
    let Ok(c) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return -1;
    };
    c.query_row("SELECT COALESCE(SUM(succeeded), 0) FROM executions", [], |r| r.get(0)).unwrap_or(-1)
}

fn users(db: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut q = c.prepare("SELECT name FROM users ORDER BY name").unwrap();
    q.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

fn count(db: &Path) -> usize {
    let Ok(c) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return 0;
    };
    c.query_row("SELECT COUNT(*) FROM execution_results", [], |r| r.get::<_, i64>(0))
        .map_or(0, |n| n as usize)
}

fn cli(config: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kanade-backend"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

fn call(port: u16, method: &str, path: &str, body: Value, token: Option<&str>) -> Option<(u16, Value)> {
    let body = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
    let (status, bytes) =
        kanade_testkit::http::request_as(port, method, path, &body, "application/json", token).ok()?;
    Some((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

fn login(port: u16) -> Option<String> {
    login_as(port, PASSWORD)
}

fn login_as(port: u16, password: &str) -> Option<String> {
    let (status, body) =
        call(port, "POST", "/api/auth/login", json!({ "name": "admin", "password": password }), None)?;
    (status == 200).then(|| body["token"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_under_load_restores_accounts_and_keys_and_the_copy_catches_up() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = [("KANADE_BOOTSTRAP_ADMIN_PASSWORD", PASSWORD)];
    let mut a = common::process::BackendProcess::start_env(&dir.path().join("a"), &server.url(), &env);
    kanade_testkit::wait_until("backend a to sign in its admin", WAIT, || login(a.port).is_some());
    let admin = login(a.port).unwrap();
    let (status, created) =
        call(a.port, "POST", "/api/tokens", json!({ "name": "ci", "role": "viewer" }), Some(&admin)).unwrap();
    assert_eq!(status, 201, "{created}");
    let api_token = created["token"].as_str().unwrap().to_owned();
    let (_, key) = call(a.port, "GET", "/api/signing-key", Value::Null, None).unwrap();

    // Taken while results are being projected.
    let load = tokio::spawn({
        let js = js.clone();
        async move { common::flood(&js, BEFORE).await }
    });
    let db_a = a.db.clone();
    // Counted, not only stored: results projected before their execution's `exec.create`
    // (another stream, another projector) are counted when it lands, so a copy taken before
    // that holds rows no counter covers yet, and the one-moment check below would prove nothing.
    kanade_testkit::wait_until("results to be projected and counted", WAIT, || counted(&db_a) > 0);
    let archive = dir.path().join("kanade.backup");
    let (ok, said) = cli(&a.config, &["backup", archive.to_str().unwrap()]);
    assert!(ok && said.starts_with("wrote "), "{said}");
    let in_backup = {
        let unpacked = dir.path().join("unpacked.db");
        let (_, parts) = kanade_backend::backup::read(&archive).unwrap();
        std::fs::write(&unpacked, &parts.iter().find(|(n, _)| n == "backend.db").unwrap().1).unwrap();
        assert_eq!(integrity(&unpacked), "ok", "the copy taken under load is a whole database");
        // One snapshot: the counters agree with the rows they count (pages copied at different
        // moments would not).
        assert_eq!(counted(&unpacked), count(&unpacked) as i64, "counters and rows of one moment");
        count(&unpacked)
    };
    load.await.unwrap();
    assert!(in_backup < BEFORE, "the backup was taken after the load ({in_backup}); it proves nothing");
    let (ok, said) = cli(&a.config, &["backup", archive.to_str().unwrap()]);
    assert!(!ok && said.contains("exists; name a new file"), "{said}");
    // More after the backup: the restored copy must catch up on these too.
    common::flood(&js, AFTER).await;
    a.kill();

    // Another backend's place, already used (its own admin password): refused until --force,
    // which keeps the old files.
    const B_PASSWORD: &str = "b's own admin password";
    let b_env = [("KANADE_BOOTSTRAP_ADMIN_PASSWORD", B_PASSWORD)];
    let mut b = common::process::BackendProcess::start_env(&dir.path().join("b"), &server.url(), &b_env);
    kanade_testkit::wait_until("backend b to start", WAIT, || login_as(b.port, B_PASSWORD).is_some());
    b.kill();
    let (ok, said) = cli(&b.config, &["restore", archive.to_str().unwrap()]);
    assert!(!ok && said.contains("pass --force"), "{said}");
    let (ok, said) = cli(&b.config, &["restore", archive.to_str().unwrap(), "--force"]);
    assert!(ok && said.contains("kept the previous"), "{said}");
    // b's own database is kept whole beside the restored one.
    let aside = said
        .lines()
        .find_map(|l| l.trim().strip_prefix("kept the previous "))
        .filter(|p| p.contains("backend.db"))
        .unwrap_or_else(|| panic!("{said}"))
        .to_owned();
    assert_eq!(
        (integrity(Path::new(&aside)), users(Path::new(&aside))),
        ("ok".to_owned(), vec!["admin".to_owned()])
    );

    b.restart();
    kanade_testkit::wait_until("the restored backend to sign in a's admin", WAIT, || login(b.port).is_some());
    assert!(login_as(b.port, B_PASSWORD).is_none(), "b's accounts were replaced by a's");
    let (status, _) = call(b.port, "GET", "/api/agents", Value::Null, Some(&api_token)).unwrap();
    assert_eq!(status, 200, "a's API token works on the restored backend");
    let (status, _) = call(b.port, "GET", "/api/agents", Value::Null, Some(&admin)).unwrap();
    assert_eq!(status, 200, "a's session works: the session secret came along");
    assert_eq!(call(b.port, "GET", "/api/signing-key", Value::Null, None).unwrap().1, key);
    let db_b = b.db.clone();
    kanade_testkit::wait_until("the restored copy to catch up", WAIT, || count(&db_b) == BEFORE + AFTER);
    // Replayed into what the copy held, each result counted once.
    kanade_testkit::wait_until("the counters to catch up", WAIT, || {
        counted(&db_b) == (BEFORE + AFTER) as i64
    });

    // A damaged archive is refused before anything is written.
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let damaged = dir.path().join("damaged.backup");
    std::fs::write(&damaged, bytes).unwrap();
    b.kill();
    let (ok, said) = cli(&b.config, &["restore", damaged.to_str().unwrap(), "--force"]);
    assert!(!ok && (said.contains("damaged") || said.contains("not a kanade")), "{said}");
}

/// Figures for the operator docs, not a timed test: with `KANADE_BACKUP_FIGURES=1` (and
/// optionally `KANADE_BACKEND_BIN`, the binary whose `backup` / `restore` are timed, e.g. a
/// release build), a projection of 100,000 results is backed up and restored, and the sizes and
/// times printed.
#[tokio::test(flavor = "multi_thread")]
async fn backup_figures_at_100k_results() {
    if std::env::var_os("KANADE_BACKUP_FIGURES").is_none() {
        return;
    }
    const N: usize = 100_000;
    let bin = std::env::var("KANADE_BACKEND_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_kanade-backend").to_owned());
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut a = common::process::BackendProcess::start(&dir.path().join("a"), &server.url());
    common::flood(&js, N).await;
    let db = a.db.clone();
    kanade_testkit::wait_until("100,000 results projected", Duration::from_secs(600), || count(&db) == N);
    let timed = |args: &[&str], config: &Path| {
        let started = std::time::Instant::now();
        let out = Command::new(&bin).arg("--config").arg(config).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        started.elapsed()
    };
    let archive = dir.path().join("figures.backup");
    let took = timed(&["backup", archive.to_str().unwrap()], &a.config);
    let db_bytes = std::fs::metadata(&db).unwrap().len();
    let archive_bytes = std::fs::metadata(&archive).unwrap().len();
    a.kill();
    let b = dir.path().join("b");
    std::fs::create_dir_all(&b).unwrap();
    let config = b.join("backend.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = {:?}\n[db]\nsqlite_path = {:?}\n",
            b.join("data"),
            b.join("backend.db")
        ),
    )
    .unwrap();
    let restored = timed(&["restore", archive.to_str().unwrap()], &config);
    assert_eq!(count(&b.join("backend.db")), N);
    println!(
        "backup of {N} results: database {db_bytes} bytes, archive {archive_bytes} bytes, backup {took:.2?}, restore {restored:.2?} ({bin})"
    );
}
