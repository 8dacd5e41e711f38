//! `kanade jetstream setup | status` as an operator runs them, against a real nats-server.

use std::process::{Command, Output};

use kanade_shared::jetstream::definitions;
use kanade_testkit::NatsServer;

fn kanade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kanade")).args(args).env_remove("KANADE_NATS_URL").output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn setup_then_status_lists_every_resource() {
    let server = NatsServer::start();
    let url = server.url();

    let before = kanade(&["--nats-url", &url, "jetstream", "status"]);
    assert!(!before.status.success(), "status must fail while resources are missing");
    assert!(String::from_utf8_lossy(&before.stderr).contains("run `kanade jetstream setup`"));

    let setup = kanade(&["--nats-url", &url, "jetstream", "setup"]);
    assert!(setup.status.success(), "{setup:?}");
    assert_eq!(stdout(&setup).matches("created").count(), definitions(1).len());
    let again = kanade(&["--nats-url", &url, "jetstream", "setup"]);
    assert_eq!(stdout(&again).matches("unchanged").count(), definitions(1).len());

    let status = kanade(&["--nats-url", &url, "jetstream", "status"]);
    assert!(status.status.success(), "{status:?}");
    let table = stdout(&status);
    for r in definitions(1) {
        assert!(
            table.lines().any(|l| l.split_whitespace().any(|w| w == r.name)),
            "{} missing from\n{table}",
            r.name
        );
    }

    let json = kanade(&["--nats-url", &url, "-o", "json", "jetstream", "status"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(rows.len(), definitions(1).len());
    assert!(rows.iter().all(|r| r["present"] == true && r["max_bytes"].as_i64().unwrap() > 0));
}

#[test]
fn an_unreachable_server_is_one_clear_line() {
    let out = kanade(&["--nats-url", "nats://127.0.0.1:1", "jetstream", "status"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: cannot connect to NATS at nats://127.0.0.1:1"), "{err}");
    assert!(err.contains("is nats-server running there?"), "{err}");
}
