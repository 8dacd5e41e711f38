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
fn a_new_store_has_small_pages_and_an_old_one_keeps_its_own() {
    let page_size = |path: &std::path::Path| -> i64 {
        Connection::open(path).unwrap().query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("agent.db");
    drop(Store::open(&fresh).unwrap());
    assert_eq!(page_size(&fresh), 1024);
    let old = dir.path().join("old.db");
    Connection::open(&old).unwrap().execute_batch("CREATE TABLE t (x); PRAGMA journal_mode = WAL;").unwrap();
    let store = Store::open(&old).unwrap();
    store.enqueue(&result(1)).unwrap();
    assert_eq!(store.outbox(10).unwrap().len(), 1);
    drop(store);
    assert_eq!(page_size(&old), 4096);
}

#[test]
fn notifications_are_kept_once_dropped_when_withdrawn_and_acked_once_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ack = |n: u8| Outgoing {
        seq: 0,
        msg_id: format!("ack-{n}"),
        subject: "events.notify_ack.pc.n".into(),
        payload: vec![n],
    };
    assert!(store.notification_received("n1", b"one", 5_000, 1_000).unwrap(), "new");
    assert!(!store.notification_received("n1", b"one", 5_000, 1_100).unwrap(), "second subject: not new");
    assert!(!store.notification_received("n0", b"old", 900, 1_000).unwrap(), "expired: never kept");
    // A withdrawal that overtook its notification keeps it from ever showing.
    assert!(store.notification_withdrawn("n2", 1_000).unwrap());
    assert!(!store.notification_received("n2", b"two", 5_000, 1_200).unwrap());
    let ids = |now| store.notifications(now).unwrap().into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    assert_eq!(ids(1_300), ["n1"]);

    assert_eq!(store.ack_notification("n1", "alice", 2_000, &ack(1)).unwrap(), AckOutcome::Acked);
    assert_eq!(store.ack_notification("n1", "alice", 2_100, &ack(2)).unwrap(), AckOutcome::Already);
    assert_eq!(store.ack_notification("n1", "bob", 2_200, &ack(3)).unwrap(), AckOutcome::Acked);
    assert_eq!(store.ack_notification("n2", "alice", 2_200, &ack(4)).unwrap(), AckOutcome::Unknown);
    assert_eq!(
        store.ack_notification("n1", "carol", 5_000, &ack(5)).unwrap(),
        AckOutcome::Unknown,
        "expired"
    );
    let queued: Vec<String> = store.outbox(10).unwrap().into_iter().map(|m| m.msg_id).collect();
    assert_eq!(queued, ["ack-1", "ack-3"], "one message per recorded acknowledgement");
    let kept = store.notifications(2_300).unwrap();
    assert_eq!(kept[0].1.acks, [("alice".to_owned(), 2_000), ("bob".to_owned(), 2_200)]);

    assert!(store.notification_withdrawn("n1", 2_400).unwrap());
    assert!(!store.notification_withdrawn("n1", 2_500).unwrap(), "once");
    assert!(ids(2_600).is_empty());
    // Expired rows go; a tombstone stays for the stream's retention.
    assert_eq!(store.prune_notifications(6_000).unwrap(), 1);
    assert!(!store.notification_received("n2", b"two", 9_000, 6_000).unwrap());
    assert_eq!(store.prune_notifications(1_000 + TOMBSTONE_MS + 1).unwrap(), 1);
}

#[test]
fn a_store_with_the_old_outbox_and_ledger_keeps_its_queue_order_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    {
        let old = Connection::open(&path).unwrap();
        old.execute_batch(&(
            "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT NOT NULL UNIQUE,
                                  subject TEXT NOT NULL, payload BLOB NOT NULL);
             CREATE TABLE ledger (exec_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
                                  subject TEXT NOT NULL, command BLOB NOT NULL, state TEXT NOT NULL,
                                  admitted_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER) WITHOUT ROWID;
             CREATE INDEX ledger_state ON ledger(state);
             INSERT INTO outbox (seq, msg_id, subject, payload) VALUES (7, 'result-7', 'results.pc.7', x'07');
             INSERT INTO outbox (seq, msg_id, subject, payload) VALUES (9, 'result-9', 'results.pc.9', x'09');"
            .to_owned()
                + &format!(
                    "INSERT INTO ledger VALUES ('{}', 'r1', 'fp1', 'commands.all.j', x'01', 'running', 1, 2, NULL);
                     INSERT INTO ledger VALUES ('{}', 'r2', 'fp2', 'commands.all.j', x'02', 'done', 1, 2, 3);",
                    exec(1),
                    exec(2)
                )),
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
    let ledger: String = store
        .with(|c| c.query_row("SELECT sql FROM sqlite_master WHERE name = 'ledger'", [], |r| r.get(0)))
        .unwrap();
    assert!(!ledger.contains("WITHOUT ROWID"), "{ledger}");
    // The runs came over: the finished one is still a duplicate, the interrupted one is found.
    assert_eq!(store.state(exec(2)).unwrap(), Some(RunState::Done));
    assert_eq!(store.admit(exec(2), "r9", "fp2", "commands.all.j", b"{}", 9).unwrap(), Admission::Duplicate);
    let (pending, interrupted) = store.recover().unwrap();
    assert!(pending.is_empty());
    assert_eq!(
        interrupted,
        [Interrupted { exec_id: exec(1).to_string(), command: vec![1], started_at_ms: Some(2) }]
    );
    drop(store);
    Store::open(&path).expect("a second open finds nothing to upgrade");
}

#[test]
fn an_upgrade_that_fails_halfway_leaves_the_old_ledger_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    // A row the new layout refuses (no command): the copy fails after the rename and the create.
    Connection::open(&path)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE ledger (exec_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
                                  subject TEXT NOT NULL, command BLOB, state TEXT NOT NULL,
                                  admitted_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER) WITHOUT ROWID;
             INSERT INTO ledger VALUES ('{}', 'r1', 'fp1', 'commands.all.j', x'01', 'running', 1, 2, NULL);
             INSERT INTO ledger VALUES ('{}', 'r2', 'fp2', 'commands.all.j', NULL, 'done', 1, 2, 3);",
            exec(1),
            exec(2)
        ))
        .unwrap();
    assert!(Store::open(&path).is_err(), "the copy cannot go through");
    let c = Connection::open(&path).unwrap();
    let tables: Vec<String> = c
        .prepare("SELECT name || ': ' || sql FROM sqlite_master WHERE name LIKE 'ledger%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tables.len(), 1, "{tables:?}");
    assert!(tables[0].starts_with("ledger: ") && tables[0].contains("WITHOUT ROWID"), "{tables:?}");
    let rows: i64 = c.query_row("SELECT count(*) FROM ledger", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 2);
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
fn a_run_admitted_started_is_running_at_once_and_interrupted_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        assert_eq!(
            store.admit_started(exec(1), "r1", "fp", "commands.all.j", b"one", 7).unwrap(),
            Admission::New
        );
        assert_eq!(store.state(exec(1)).unwrap(), Some(RunState::Running));
        // The same exec again, either way, is a duplicate (never a second start) or a conflict.
        assert_eq!(
            store.admit_started(exec(1), "r2", "fp", "commands.pc.p.j", b"one", 8).unwrap(),
            Admission::Duplicate
        );
        assert_eq!(
            store.admit(exec(1), "r3", "fp", "commands.all.j", b"one", 9).unwrap(),
            Admission::Duplicate
        );
        assert_eq!(
            store.admit_started(exec(1), "r4", "other", "commands.all.j", b"x", 9).unwrap(),
            Admission::Conflict
        );
        assert_eq!(store.state(exec(1)).unwrap(), Some(RunState::Running));
    }
    let (pending, interrupted) = open(&dir).recover().unwrap();
    assert!(pending.is_empty(), "{pending:?}");
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0].started_at_ms, Some(7));
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

/// What the agent's runtime does with its store, plus crashes: between calls, and inside a
/// call's transaction (its `k`-th write fails, then the process is gone). The runtime only
/// knows what it has in memory (admitted runs it may start, runs it is running) and what the
/// store tells it after a restart — so a store that loses or resurrects a run is caught by the
/// start count, not by the model's own bookkeeping.
#[derive(Debug, Clone)]
enum Op {
    Admit(u8, bool),
    /// Admitted and started in one write (a live command that starts at once).
    AdmitStarted(u8, bool),
    Start(usize),
    Finish(usize),
    Ack(usize),
    /// The outbox loop found nothing to send for a while: acked rows are deleted now.
    Settle,
    Crash,
    CrashInside(Box<Op>, u8),
}

fn step() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..6, any::<bool>()).prop_map(|(e, fp)| Op::Admit(e, fp)),
        2 => (0u8..6, any::<bool>()).prop_map(|(e, fp)| Op::AdmitStarted(e, fp)),
        2 => any::<usize>().prop_map(Op::Start),
        2 => any::<usize>().prop_map(Op::Finish),
        2 => (1usize..4).prop_map(Op::Ack),
        1 => Just(Op::Settle),
        1 => Just(Op::Crash),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => step(),
        2 => (step(), 0u8..3).prop_map(|(inner, k)| Op::CrashInside(Box::new(inner), k)),
    ]
}

fn started(e: u8) -> Outgoing {
    Outgoing { seq: 0, msg_id: format!("started-{e}"), subject: format!("events.pc.{e}"), payload: vec![e] }
}

/// Make the `k`-th write (0-based) this connection makes from now on fail, as if the process
/// died there: the call's transaction never commits. Temp objects vanish with the connection.
fn fail_write(store: &Store, k: u8) {
    let mut sql =
        format!("CREATE TEMP TABLE crash_after (n INTEGER NOT NULL); INSERT INTO crash_after VALUES ({k});");
    for (event, table) in
        [("INSERT", "ledger"), ("UPDATE", "ledger"), ("INSERT", "outbox"), ("DELETE", "outbox")]
    {
        sql.push_str(&format!(
            "CREATE TEMP TRIGGER crash_{event}_{table} BEFORE {event} ON {table} BEGIN
                 SELECT RAISE(ABORT, 'injected crash') WHERE (SELECT n FROM crash_after) = 0;
                 UPDATE crash_after SET n = n - 1;
             END;"
        ));
    }
    store.with(|c| c.execute_batch(&sql)).unwrap();
}

/// The agent as the test drives it: its store, its memory, and the model of what the store
/// must hold.
struct World {
    dir: tempfile::TempDir,
    store: Store,
    /// Runtime memory: admitted runs it will start, and runs it has started.
    startable: Vec<u8>,
    running: Vec<u8>,
    /// The model: ledger state per exec (with its fingerprint) and the outbox in order.
    ledger: BTreeMap<u8, (bool, RunState)>,
    queued: VecDeque<String>,
    /// Acked by the broker, their delete not committed yet (it rides on the next start or end): a
    /// crash puts them back at the head of the outbox, to go again under the same id.
    unsettled: Vec<String>,
    /// Messages a crash put back after the broker had acked them.
    resent: Vec<String>,
    /// Evidence: every start the store committed, every message the broker acked.
    starts: BTreeMap<u8, u32>,
    /// Runs whose start queued a `started` event.
    announced: Vec<u8>,
    delivered: Vec<String>,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        Self {
            dir,
            store,
            startable: vec![],
            running: vec![],
            ledger: BTreeMap::new(),
            queued: VecDeque::new(),
            unsettled: vec![],
            resent: vec![],
            starts: BTreeMap::new(),
            announced: vec![],
            delivered: vec![],
        }
    }

    /// What the ledger must answer for exec `e` with fingerprint `fp`.
    fn expected_admission(&self, e: u8, fp: bool) -> Admission {
        match self.ledger.get(&e) {
            None => Admission::New,
            Some((f, _)) if *f == fp => Admission::Duplicate,
            Some(_) => Admission::Conflict,
        }
    }

    /// One runtime step. `Err` means the store call failed (the injected crash); the model is
    /// only advanced once the call returned `Ok`.
    fn run(&mut self, op: &Op) -> Result<(), StoreError> {
        match op {
            Op::Admit(e, fp) => {
                let (e, fp) = (*e, *fp);
                let want = self.expected_admission(e, fp);
                let got = self.store.admit(exec(e), "r", if fp { "A" } else { "B" }, "s", &[e], 0)?;
                assert_eq!(got, want, "admission of {e}");
                if got == Admission::New {
                    self.ledger.insert(e, (fp, RunState::Admitted));
                    self.startable.push(e);
                }
            }
            Op::AdmitStarted(e, fp) => {
                let (e, fp) = (*e, *fp);
                let want = self.expected_admission(e, fp);
                let got = self.store.admit_started(exec(e), "r", if fp { "A" } else { "B" }, "s", &[e], 0)?;
                assert_eq!(got, want, "admission of {e} started");
                if got == Admission::New {
                    self.ledger.insert(e, (fp, RunState::Running));
                    self.running.push(e);
                    *self.starts.entry(e).or_default() += 1;
                }
            }
            Op::Start(i) => {
                if !self.startable.is_empty() {
                    let e = self.startable[i % self.startable.len()];
                    self.store.mark_running(exec(e), 1, Some(&started(e)))?;
                    self.unsettled.clear();
                    self.startable.retain(|x| *x != e);
                    self.running.push(e);
                    *self.starts.entry(e).or_default() += 1;
                    self.ledger.get_mut(&e).unwrap().1 = RunState::Running;
                    self.queued.push_back(started(e).msg_id);
                    self.announced.push(e);
                }
            }
            Op::Finish(i) => {
                if !self.running.is_empty() {
                    let e = self.running[i % self.running.len()];
                    self.store.finish(exec(e), &result(e), 2)?;
                    self.unsettled.clear();
                    self.running.retain(|x| *x != e);
                    self.ledger.get_mut(&e).unwrap().1 = RunState::Done;
                    self.queued.push_back(result(e).msg_id);
                }
            }
            Op::Ack(n) => {
                let out = self.store.outbox(*n)?;
                let ids: Vec<String> = out.iter().map(|o| o.msg_id.clone()).collect();
                let want: Vec<String> = self.queued.iter().take(*n).cloned().collect();
                assert_eq!(ids, want, "the outbox hands out its messages in order");
                if !out.is_empty() {
                    self.store.acked(&out.iter().map(|o| o.seq).collect::<Vec<_>>())?;
                    for _ in &out {
                        let id = self.queued.pop_front().unwrap();
                        self.delivered.push(id.clone());
                        self.unsettled.push(id);
                    }
                }
            }
            Op::Settle => {
                self.store.settle()?;
                self.unsettled.clear();
            }
            Op::Crash => self.restart(),
            Op::CrashInside(inner, k) => {
                fail_write(&self.store, *k);
                // Whether the k-th write came inside this call or not, the process ends here.
                let _ = self.run(inner);
                self.restart();
            }
        }
        Ok(())
    }

    /// The process is gone: reopen, and do what the runtime does at start with what the store
    /// reports — never-started runs are started again, interrupted ones reported `unknown`.
    fn restart(&mut self) {
        // The gone process's handle first: it held the file locked.
        drop(std::mem::replace(&mut self.store, Store::open(Path::new(":memory:")).unwrap()));
        self.store = open(&self.dir);
        for id in self.unsettled.drain(..).rev() {
            self.resent.push(id.clone());
            self.queued.push_front(id);
        }
        let (pending, interrupted) = self.store.recover().unwrap();
        self.startable = pending.iter().map(|p| p.command[0]).collect();
        self.running.clear();
        for run in interrupted {
            let e = run.command[0];
            self.store.finish(exec(e), &result(e), 3).unwrap();
            self.ledger.get_mut(&e).unwrap().1 = RunState::Done;
            self.queued.push_back(result(e).msg_id);
        }
    }

    /// The store holds exactly what the model says: every ledger state, the outbox in order.
    fn check(&self) {
        for (e, (_, state)) in &self.ledger {
            assert_eq!(self.store.state(exec(*e)).unwrap(), Some(*state), "ledger state of {e}");
        }
        let out: Vec<String> = self.store.outbox(1000).unwrap().into_iter().map(|o| o.msg_id).collect();
        assert_eq!(out, Vec::from(self.queued.clone()), "outbox");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn every_admitted_run_starts_exactly_once_and_every_message_goes_out_under_one_id(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        let mut world = World::new();
        for op in &ops {
            // A failed call is the injected crash; `CrashInside` restarts right after it.
            let _ = world.run(op);
            world.check();
        }
        // Drain: a last restart, then everything still to run is run and everything sent.
        world.restart();
        while let Some(&e) = world.startable.first() {
            world.run(&Op::Start(0)).unwrap();
            world.run(&Op::Finish(world.running.iter().position(|x| *x == e).unwrap())).unwrap();
        }
        while !world.queued.is_empty() {
            world.run(&Op::Ack(3)).unwrap();
        }
        world.check();

        // Every run the agent ever admitted was started exactly once: none lost by a crash,
        // none started again after one.
        let admitted: Vec<u8> = world.ledger.keys().copied().collect();
        let once: Vec<u8> = world.starts.iter().filter(|(_, n)| **n == 1).map(|(e, _)| *e).collect();
        prop_assert_eq!(once, admitted.clone(), "starts per exec: {:?}", world.starts);
        // Every message delivered: a result per run, and a started event per run that queued one
        // (admitted and started in one write, a run queues none). Once each, but for the ones a
        // crash put back after their ack: those went again under the same id, which the broker
        // drops as a duplicate.
        let mut seen = std::collections::BTreeSet::new();
        for id in &world.delivered {
            prop_assert!(seen.insert(id.clone()) || world.resent.contains(id), "{} delivered twice", id);
        }
        let mut want: Vec<String> = admitted
            .iter()
            .map(|e| result(*e).msg_id)
            .chain(world.announced.iter().map(|e| started(*e).msg_id))
            .collect();
        let mut got: Vec<String> = seen.into_iter().collect();
        want.sort();
        got.sort();
        prop_assert_eq!(got, want);
    }
}

/// Each outbox pass runs the cached statement as prepared: a query parsed again on every pass
/// (as SQLite does with a bound `LIMIT ?`) costs more than the query.
#[test]
fn outbox_passes_do_not_parse_their_query_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for e in 0..3 {
        store.enqueue(&result(e)).unwrap();
        // Read from the table each time, not from what the store knows it holds.
        store.forget_known();
        assert!(!store.outbox_except_prefix("obs.", 64).unwrap().is_empty());
        store.forget_known();
        assert!(!store.outbox(64).unwrap().is_empty());
    }
    for sql in [outbox_sql(EVERY_MESSAGE, 64), outbox_sql(EXCEPT_PREFIX, 64)] {
        let reprepared = store
            .with(|c| Ok(c.prepare_cached(&sql)?.get_status(rusqlite::StatementStatus::RePrepare)))
            .unwrap();
        assert_eq!(reprepared, 0, "{sql}");
    }
}

/// The WAL is checkpointed and rewritten in place every hundred pages or so, not left to grow
/// to SQLite's default of a thousand.
#[test]
fn the_wal_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for i in 0..300u32 {
        let exec = ExecId::from_uuid(uuid::Uuid::from_u128(1 << 100 | u128::from(i)));
        store
            .admit_started(exec, &format!("req-{i}"), &format!("{i:064}"), "commands.all.j", &[b'c'; 500], 1)
            .unwrap();
        store.finish(exec, &result(i as u8), 2).unwrap();
        let queued = store.outbox(64).unwrap();
        store.acked(&queued.iter().map(|m| m.seq).collect::<Vec<_>>()).unwrap();
    }
    let wal = std::fs::metadata(dir.path().join("agent.db-wal")).unwrap().len();
    assert!(wal < 200 * 1024, "WAL is {wal} bytes after 300 runs");
}

#[test]
fn a_second_open_of_a_store_in_use_is_refused_as_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let path = dir.path().join("agent.db");
    let started = std::time::Instant::now();
    let second = Store::open(&path).err().expect("a second agent on the same data dir is refused");
    assert!(second.in_use(), "{second}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(4), "it waited out the busy timeout first");
    drop(store);
    Store::open(&path).expect("free again once the first is closed");
}

/// WAL bytes a run costs (admitted and started, finished with its result queued, result acked),
/// in frames: the figure the schema is shaped for. Deterministic for a given SQLite; a layout
/// that makes finishing rewrite the command again (an overflow page) fails it.
#[test]
fn a_run_writes_few_wal_frames() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.with(|c| c.execute_batch("PRAGMA wal_autocheckpoint = 0;")).unwrap();
    let wal = dir.path().join("agent.db-wal");
    let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    // A command and a result of the sizes a real no-op run has.
    let command = vec![b'c'; 500];
    let run = |i: u32| {
        let exec = ExecId::from_uuid(uuid::Uuid::from_u128(1 << 100 | u128::from(i)));
        let fp = format!("{i:064}");
        assert_eq!(
            store
                .admit_started(exec, &format!("req-{i}"), &fp, "commands.all.bench-noop", &command, 1)
                .unwrap(),
            Admission::New
        );
        let out = Outgoing {
            seq: 0,
            msg_id: format!("result-{exec}"),
            subject: format!("results.sim-00001.{exec}"),
            payload: vec![b'r'; 400],
        };
        store.finish(exec, &out, 2).unwrap();
        let queued = store.outbox(1).unwrap();
        store.acked(&[queued[0].seq]).unwrap();
    };
    (0..20).for_each(run);
    let before = size();
    let writes = super::wal_batch::wal_writes_on_this_thread();
    (20..220).for_each(run);
    let frames = (size() - before) as f64 / (1024.0 + 24.0) / 200.0;
    println!("{frames:.2} WAL frames per run");
    assert!(frames <= 6.7, "{frames:.2} WAL frames per run");
    // Two commits a run, each one write to the WAL (two a frame without the VFS shim).
    assert_eq!(super::wal_batch::wal_writes_on_this_thread() - writes, 2 * 200);
}

/// What a crash right after a commit leaves: the files as they are. Every commit is in them the
/// moment it returns, with the WAL's writes joined until the commit's sync; a copy of the files
/// taken then (no checkpoint has run) opens with the row in it.
#[test]
fn a_commit_is_in_the_files_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.with(|c| c.execute_batch("PRAGMA wal_autocheckpoint = 0;")).unwrap();
    let copy = |n: u32| {
        let to = dir.path().join(format!("copy-{n}"));
        std::fs::create_dir(&to).unwrap();
        for file in ["agent.db", "agent.db-wal"] {
            std::fs::copy(dir.path().join(file), to.join(file)).unwrap();
        }
        Connection::open(to.join("agent.db")).unwrap()
    };
    let command = vec![b'c'; 500];
    for i in 0..30u32 {
        let exec = ExecId::from_uuid(uuid::Uuid::from_u128(7 << 100 | u128::from(i)));
        store
            .admit_started(exec, &format!("req-{i}"), &format!("{i:064}"), "commands.all.j", &command, 1)
            .unwrap();
        let state: String = copy(2 * i)
            .query_row("SELECT state FROM ledger WHERE exec_id = ?1", [exec.to_string()], |r| r.get(0))
            .unwrap();
        assert_eq!(state, "running", "run {i}: its admission is in the files");
        let out = Outgoing {
            seq: 0,
            msg_id: format!("m-{i}"),
            subject: "results.PC1.x".into(),
            payload: vec![b'r'; 400],
        };
        store.finish(exec, &out, 2).unwrap();
        let queued: i64 = copy(2 * i + 1)
            .query_row("SELECT COUNT(*) FROM outbox WHERE msg_id = ?1", [&out.msg_id], |r| r.get(0))
            .unwrap();
        assert_eq!(queued, 1, "run {i}: its result is in the files");
    }
}

/// Transactions larger than the shim holds at once come back whole: written in pieces, read
/// from the WAL by the checkpoint at close, and read again after the store reopens.
#[test]
fn large_transactions_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let message = |i: usize| Outgoing {
        seq: 0,
        msg_id: format!("big-{i}"),
        subject: "results.PC1.x".into(),
        payload: (0..300_000).map(|b| (b * 7 + i) as u8).collect(),
    };
    for i in 0..4 {
        store.enqueue(&message(i)).unwrap();
    }
    drop(store);
    let store = open(&dir);
    let queued = store.outbox(10).unwrap();
    assert_eq!(queued.len(), 4);
    for (i, m) in queued.iter().enumerate() {
        assert_eq!(m.payload, message(i).payload, "message {i}");
    }
}

/// Once a read saw the whole outbox, a run's result is handed out without reading it again, and
/// what is handed out is what a read of the table returns, through every kind of write.
#[test]
fn the_outbox_is_handed_out_from_memory_as_the_table_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let from_table = |s: &Store, except: Option<&str>| {
        s.forget_known();
        match except {
            Some(prefix) => s.outbox_except_prefix(prefix, 64).unwrap(),
            None => s.outbox(64).unwrap(),
        }
    };
    let same = |s: &Store, step: &str| {
        let events_left_out = s.outbox_except_prefix("obs.", 64).unwrap();
        let all = s.outbox(64).unwrap();
        assert_eq!(all, from_table(s, None), "{step}");
        // Learnt again from that read.
        assert_eq!(events_left_out, s.outbox_except_prefix("obs.", 64).unwrap(), "{step}");
        assert_eq!(events_left_out, from_table(s, Some("obs.")), "{step}");
        s.outbox(64).unwrap();
    };
    assert!(store.outbox(64).unwrap().is_empty());
    let runs_of_the_query = || {
        store
            .with(|c| {
                Ok(c.prepare_cached(&outbox_sql(EVERY_MESSAGE, 64))?
                    .get_status(rusqlite::StatementStatus::Run))
            })
            .unwrap()
    };
    let before = runs_of_the_query();
    let command = vec![b'c'; 100];
    for i in 0..20u32 {
        let exec = ExecId::from_uuid(uuid::Uuid::from_u128(9 << 100 | u128::from(i)));
        store
            .admit_started(exec, &format!("req-{i}"), &format!("{i:064}"), "commands.all.j", &command, 1)
            .unwrap();
        let event = Outgoing {
            seq: 0,
            msg_id: format!("ev-{i}"),
            subject: "obs.PC1".into(),
            payload: vec![b'e'; 50],
        };
        store.finish_with(exec, &[event], &result(i as u8), 2).unwrap();
        let queued = store.outbox(64).unwrap();
        assert_eq!(queued.len(), 2, "run {i}: its result and its event, the ones before acked");
        store.acked(&[queued[0].seq]).unwrap();
        store.acked(&[queued[1].seq]).unwrap();
    }
    assert_eq!(runs_of_the_query(), before, "twenty runs' results handed out without a query");
    store.enqueue(&result(100)).unwrap();
    store.enqueue(&result(100)).unwrap();
    same(&store, "a message queued twice is there once");
    let queued = store.outbox(64).unwrap();
    store.replace_payload(queued[0].seq, b"fitted").unwrap();
    same(&store, "a payload rewritten");
    assert_eq!(store.outbox(64).unwrap()[0].payload, b"fitted");
    assert!(store.notification_received("n1", b"{}", i64::MAX, 1).unwrap());
    assert_eq!(store.ack_notification("n1", "alice", 2, &result(101)).unwrap(), AckOutcome::Acked);
    same(&store, "a notification's acknowledgement queued");
    store.acked(&[queued[0].seq]).unwrap();
    same(&store, "acked, its delete not written yet");
    store.settle().unwrap();
    same(&store, "settled");
}

fn rows_in_outbox(store: &Store) -> i64 {
    store.with(|c| c.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))).unwrap()
}

/// An acked message is never handed out again; its row goes with the next run's start or end, or
/// at `settle`, and a crash before either hands it out again under its id.
#[test]
fn acked_messages_leave_with_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.enqueue(&result(1)).unwrap();
    store.enqueue(&result(2)).unwrap();
    let first = store.outbox(1).unwrap();
    store.acked(&[first[0].seq]).unwrap();
    let ids = |s: &Store| s.outbox(10).unwrap().into_iter().map(|m| m.msg_id).collect::<Vec<_>>();
    assert_eq!(ids(&store), [result(2).msg_id]);
    assert_eq!(ids(&store), [result(2).msg_id], "not handed out again on the next pass either");
    assert_eq!(rows_in_outbox(&store), 2, "no commit of its own for the delete");

    // A crash now: the broker's ack is forgotten, the message goes again.
    drop(store);
    let store = open(&dir);
    assert_eq!(ids(&store), [result(1).msg_id, result(2).msg_id]);

    let first = store.outbox(1).unwrap();
    store.acked(&[first[0].seq]).unwrap();
    store.admit_started(exec(3), "r", "A", "s", &[3], 0).unwrap();
    assert_eq!(rows_in_outbox(&store), 2, "an admission queues nothing, and deletes nothing");
    store.finish(exec(3), &result(3), 1).unwrap();
    assert_eq!(rows_in_outbox(&store), 2, "deleted by the transaction that queued the next");
    drop(store);
    let store = open(&dir);
    assert_eq!(ids(&store), [result(2).msg_id, result(3).msg_id], "and that delete survives a crash");

    let both = store.outbox(2).unwrap();
    store.acked(&both.iter().map(|m| m.seq).collect::<Vec<_>>()).unwrap();
    store.settle().unwrap();
    assert_eq!(rows_in_outbox(&store), 0);
}

/// Acked rows waiting for their delete never hide waiting messages from a pass, and no more
/// than `UNSETTLED_MAX` wait.
#[test]
fn acked_rows_wait_for_their_delete_in_bounded_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let n = UNSETTLED_MAX + 10;
    for i in 0..n {
        store.enqueue(&started(i as u8)).unwrap();
    }
    let head = store.outbox(UNSETTLED_MAX - 1).unwrap();
    store.acked(&head.iter().map(|m| m.seq).collect::<Vec<_>>()).unwrap();
    assert_eq!(rows_in_outbox(&store), n as i64, "below the bound, nothing deleted yet");
    let rest = store.outbox(64).unwrap();
    assert_eq!(rest.len(), 11, "every message not acked, none acked");
    assert_eq!(rest[0].msg_id, started((UNSETTLED_MAX - 1) as u8).msg_id);
    store.acked(&[rest[0].seq]).unwrap();
    assert_eq!(rows_in_outbox(&store), 10, "at the bound, deleted at once");
}
