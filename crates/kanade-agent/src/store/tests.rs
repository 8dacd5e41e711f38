//! Ledger and outbox: unit tests, and a model-based test with crash points.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;

use super::*;

fn exec(n: u8) -> ExecId {
    ExecId::from_uuid(uuid::Uuid::from_bytes([0x01, 0x90, 0, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, n]))
}

fn result(e: u8) -> Outgoing {
    Outgoing { seq: 0, msg_id: format!("result-{e}"), subject: format!("results.pc.{e}"), payload: vec![e] }
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("agent.db")).unwrap()
}

#[test]
fn a_store_with_the_old_outbox_keeps_its_queue_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    {
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT NOT NULL UNIQUE,
                                  subject TEXT NOT NULL, payload BLOB NOT NULL);
             CREATE TABLE ledger (exec_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
                                  subject TEXT NOT NULL, command BLOB NOT NULL, state TEXT NOT NULL,
                                  admitted_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER) WITHOUT ROWID;
             CREATE INDEX ledger_state ON ledger(state);
             INSERT INTO outbox (seq, msg_id, subject, payload) VALUES (7, 'result-7', 'results.pc.7', x'07');
             INSERT INTO outbox (seq, msg_id, subject, payload) VALUES (9, 'result-9', 'results.pc.9', x'09');",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    store.enqueue(&result(10)).unwrap();
    let queued: Vec<(i64, String)> =
        store.outbox(10).unwrap().into_iter().map(|m| (m.seq, m.msg_id)).collect();
    assert_eq!(queued, [(7, "result-7".into()), (9, "result-9".into()), (10, "result-10".into())]);
    let sql: String = store
        .with(|c| c.query_row("SELECT group_concat(sql, ';') FROM sqlite_master", [], |r| r.get(0)))
        .unwrap();
    assert!(!sql.contains("AUTOINCREMENT") && !sql.contains("ledger_state"), "{sql}");
    drop(store);
    Store::open(&path).expect("a second open finds nothing to upgrade");
}

#[test]
fn admission_rule() {
    assert_eq!(decide_admission(None, "a"), Admission::New);
    assert_eq!(decide_admission(Some("a"), "a"), Admission::Duplicate);
    assert_eq!(decide_admission(Some("a"), "b"), Admission::Conflict);
}

#[test]
fn a_run_goes_admitted_running_done_with_its_result_queued() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert_eq!(store.admit(exec(1), "r1", "fp", "commands.all.j", b"{}", 1).unwrap(), Admission::New);
    assert_eq!(
        store.admit(exec(1), "r2", "fp", "commands.group.g.j", b"{}", 2).unwrap(),
        Admission::Duplicate
    );
    assert_eq!(store.admit(exec(1), "r3", "other", "commands.all.j", b"{}", 3).unwrap(), Admission::Conflict);
    assert_eq!(store.state(exec(1)).unwrap(), Some(RunState::Admitted));
    store.mark_running(exec(1), 4, None).unwrap();
    store.finish(exec(1), &result(1), 5).unwrap();
    assert_eq!(store.state(exec(1)).unwrap(), Some(RunState::Done));
    let out = store.outbox(10).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].msg_id, "result-1");
    store.acked(&[out[0].seq]).unwrap();
    assert!(store.outbox(10).unwrap().is_empty());
}

#[test]
fn the_same_message_is_queued_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.enqueue(&result(1)).unwrap();
    store.enqueue(&result(1)).unwrap();
    assert_eq!(store.outbox(10).unwrap().len(), 1);
}

#[test]
fn recover_separates_never_started_from_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        store.admit(exec(1), "r1", "fp", "commands.all.a", b"one", 1).unwrap();
        store.admit(exec(2), "r2", "fp", "commands.all.b", b"two", 2).unwrap();
        store.mark_running(exec(2), 3, None).unwrap();
    }
    let store = open(&dir);
    let (pending, interrupted) = store.recover().unwrap();
    assert_eq!(pending, [Pending { subject: "commands.all.a".into(), command: b"one".to_vec() }]);
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0].command, b"two");
    assert_eq!(interrupted[0].started_at_ms, Some(3));
}

#[test]
fn prune_keeps_unfinished_and_recent_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for (n, finished) in [(1u8, Some(10)), (2, Some(100)), (3, None)] {
        store.admit(exec(n), "r", "fp", "s", b"", 1).unwrap();
        if let Some(at) = finished {
            store.mark_running(exec(n), at, None).unwrap();
            store.finish(exec(n), &result(n), at).unwrap();
        }
    }
    assert_eq!(store.prune(50).unwrap(), 1);
    assert_eq!(store.state(exec(1)).unwrap(), None);
    assert_eq!(store.state(exec(2)).unwrap(), Some(RunState::Done));
    assert_eq!(store.state(exec(3)).unwrap(), Some(RunState::Admitted));
}

/// Operations the agent performs, plus crashes. The runtime only starts admitted runs and only
/// finishes running ones; the model encodes the same.
#[derive(Debug, Clone)]
enum Op {
    Admit(u8, bool),
    Start(u8),
    Finish(u8),
    Ack,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4, any::<bool>()).prop_map(|(e, fp)| Op::Admit(e, fp)),
        (0u8..4).prop_map(Op::Start),
        (0u8..4).prop_map(Op::Finish),
        Just(Op::Ack),
        Just(Op::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn ledger_and_outbox_match_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        let mut model: BTreeMap<u8, (bool, RunState)> = BTreeMap::new();
        let mut queued: VecDeque<String> = VecDeque::new();
        let mut starts: BTreeMap<u8, u32> = BTreeMap::new();
        let mut delivered: Vec<String> = Vec::new();

        for op in ops {
            match op {
                Op::Admit(e, fp) => {
                    let fp_text = if fp { "A" } else { "B" };
                    let want = match model.get(&e) {
                        None => Admission::New,
                        Some((f, _)) if *f == fp => Admission::Duplicate,
                        Some(_) => Admission::Conflict,
                    };
                    prop_assert_eq!(store.admit(exec(e), "r", fp_text, "s", &[e], 0).unwrap(), want);
                    if want == Admission::New {
                        model.insert(e, (fp, RunState::Admitted));
                    }
                }
                Op::Start(e) => {
                    if let Some((_, state @ RunState::Admitted)) = model.get_mut(&e) {
                        store.mark_running(exec(e), 1, None).unwrap();
                        *state = RunState::Running;
                        *starts.entry(e).or_default() += 1;
                    }
                }
                Op::Finish(e) => {
                    if let Some((_, state @ RunState::Running)) = model.get_mut(&e) {
                        store.finish(exec(e), &result(e), 2).unwrap();
                        *state = RunState::Done;
                        queued.push_back(result(e).msg_id);
                    }
                }
                Op::Ack => {
                    let out = store.outbox(1).unwrap();
                    prop_assert_eq!(out.first().map(|o| o.msg_id.clone()), queued.front().cloned());
                    if let Some(first) = out.first() {
                        store.acked(&[first.seq]).unwrap();
                        delivered.push(queued.pop_front().unwrap());
                    }
                }
                Op::Crash => {
                    drop(store);
                    store = open(&dir);
                    let (_, interrupted) = store.recover().unwrap();
                    // What the runtime does with an interrupted run: report `unknown`, never rerun.
                    for run in interrupted {
                        let e = run.command[0];
                        store.finish(exec(e), &result(e), 3).unwrap();
                        model.insert(e, (model[&e].0, RunState::Done));
                        queued.push_back(result(e).msg_id);
                    }
                }
            }
            for (e, (_, state)) in &model {
                prop_assert_eq!(store.state(exec(*e)).unwrap(), Some(*state));
            }
        }
        // Every run started at most once, and no result is delivered twice.
        prop_assert!(starts.values().all(|n| *n <= 1));
        let mut unique = delivered.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), delivered.len());
        let pending: Vec<String> = store.outbox(100).unwrap().into_iter().map(|o| o.msg_id).collect();
        prop_assert_eq!(pending, Vec::from(queued));
    }
}
