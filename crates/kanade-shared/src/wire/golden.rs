//! Golden payloads: every file under `test-data/wire/` must keep parsing, and everything a
//! current writer emits must read back unchanged.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::*;

fn golden(name: &str) -> Vec<u8> {
    let path = kanade_testkit::manifest_dir().join("test-data/wire").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Parse a golden file, write it back, read that again: the value must survive unchanged.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(name: &str) -> T {
    let parsed: T = decode(&golden(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let written = encode(&parsed).unwrap_or_else(|e| panic!("{name}: {e}"));
    let reread: T = decode(&written).unwrap();
    assert_eq!(parsed, reread, "{name} changed on a round trip");
    parsed
}

#[test]
fn every_v1_golden_file_round_trips() {
    let c: Command = round_trip("v1/command.json");
    assert_eq!(c.shell, Shell::Powershell);
    assert_eq!(c.retry, Some(Retry { max: 2, backoff_secs: 300 }));
    let m: Command = round_trip("v1/command-minimal.json");
    assert_eq!(m.schema, 1);
    assert_eq!(m.run_as, RunAs::System);
    assert_eq!(m.staleness.mode, StalenessMode::Cached);
    let r: ExecResult = round_trip("v1/result.json");
    assert_eq!(r.status, ExecStatus::Succeeded);
    let s: ExecResult = round_trip("v1/result-skipped.json");
    assert_eq!(s.skip_reason.and_then(SkipReason::exit_code), Some(124));
    assert_eq!(s.attempt, 1);
    round_trip::<Heartbeat>("v1/heartbeat.json");
    round_trip::<Inventory>("v1/inventory.json");
    round_trip::<AuditEvent>("v1/audit.json");
    round_trip::<StartedEvent>("v1/started.json");
    round_trip::<HostPerf>("v1/host-perf.json");
    let p: ProcessPerf = round_trip("v1/process-perf.json");
    assert_eq!(p.processes[0].name, "backup.exe");
    let e: ObsEvent = round_trip("v1/obs-event.json");
    assert_eq!((e.kind.as_str(), e.data["bytes"].as_i64()), ("backup.done", Some(1_048_576)));
    let emit: Command = round_trip("v1/command-emit-events.json");
    assert_eq!((emit.emit, m.emit), (Emit::Events, Emit::Output));
}

#[test]
fn unknown_fields_and_enum_values_are_tolerated_on_read() {
    let c: Command = decode(&golden("v1/command-from-the-future.json")).unwrap();
    assert_eq!(c.schema, 2);
    assert_eq!(c.shell, Shell::Unknown);
    assert_eq!(c.run_as, RunAs::Unknown);
    assert_eq!(c.staleness.mode, StalenessMode::Unknown);
    let later: Command = serde_json::from_str(r#"{"job_id":"j","version":"1","exec_id":"0190f5c2-6c1e-7a4b-9d2e-1f2a3b4c5d6e","request_id":"0190f5c2-6c1f-7000-8000-000000000002","shell":"sh","timeout_secs":1,"issued_at":"2026-11-23T23:00:00Z","emit":"facts"}"#).unwrap();
    assert_eq!(later.emit, Emit::Unknown, "a newer emit mode keeps its stdout as output");
    let r: ExecResult = decode(&golden("v1/result-from-the-future.json")).unwrap();
    assert_eq!(r.status, ExecStatus::Unknown);
    assert_eq!(r.skip_reason, Some(SkipReason::Unknown));
    assert!(!r.status.is_success());
}

#[test]
fn strict_writers_refuse_placeholder_values() {
    let c: Command = decode(&golden("v1/command-from-the-future.json")).unwrap();
    let err = encode(&c).unwrap_err();
    assert!(err.to_string().contains("cannot be serialized"), "{err}");
}

#[test]
fn malformed_messages_name_the_type_and_field() {
    let err = decode::<Heartbeat>(br#"{"pc_id":"a b","hostname":"h"}"#).unwrap_err();
    assert_eq!(err.type_name, "Heartbeat");
    assert_eq!(err.path, "pc_id");
    assert!(err.to_string().starts_with("malformed Heartbeat at `pc_id`: pc_id \"a b\" is invalid"));
    let err = decode::<Command>(b"not json").unwrap_err();
    assert!(err.to_string().starts_with("malformed Command"), "{err}");
}

#[test]
fn fingerprint_ignores_request_id_and_issue_time_only() {
    let c: Command = decode(&golden("v1/command.json")).unwrap();
    let mut other_subject = c.clone();
    other_subject.request_id = crate::RequestId::new();
    other_subject.issued_at += time::Duration::seconds(3);
    assert_eq!(c.fingerprint(), other_subject.fingerprint());
    let mut changed = c.clone();
    changed.script = Some("Remove-Item C:\\ -Recurse".into());
    assert_ne!(c.fingerprint(), changed.fingerprint());
    assert_eq!(c.fingerprint().len(), 64);
}

#[test]
fn a_commands_fingerprint_stays_what_ledgers_already_hold() {
    // Ledgers keep fingerprints across agent upgrades: a redelivered command must match the
    // one an older build recorded.
    let c: Command = decode(&golden("v1/command.json")).unwrap();
    assert_eq!(c.fingerprint(), "5540421cde3cfc7265892ae5f6acffdbfd1035d970a94d7b3a555ba9db66826a");
}
