//! The targets of recent executions, as this process last read them committed.
//!
//! A result from a PC that is not yet a target of its execution (it joined a group, or came
//! online, after the execution was published) makes it one. Asking the database about every
//! result costs an index probe each, and a broadcast's results come almost all from expected
//! PCs. The backend that creates an execution holds its targets from then on; another reads
//! them once, in one range scan, with the first result it projects, and answers later batches
//! from memory. A target is never removed while its execution exists (retention
//! deletes an execution with its targets, and its id is never used again), so a PC the memo
//! holds is always a target; a PC it does not hold is asked of the database. An execution is
//! held under its id and the `created_ms` of its row: an id made again (a pruned ad-hoc
//! execution that a very late result brings back) is another execution, never answered from
//! what its namesake held. Only committed targets are learned (the caller learns after its
//! transaction commits), and a wipe empties it.

use std::collections::{HashMap, VecDeque};

/// PCs held across all executions. At about 60 bytes each, some 12 MB at most; a broadcast to
/// 10,000 PCs takes 10,000.
pub const CAPACITY: usize = 200_000;

/// An execution's PCs. Every result of a batch is looked up here, on the writer's path: a
/// fast hasher (still seeded per process) took the lookups of a 5,000-result batch from
/// 0.71–0.80 ms to 0.38–0.46 ms (SipHash before).
pub type Pcs = std::collections::HashSet<String, foldhash::fast::RandomState>;

/// What to read from the database about one execution's reporting PCs.
#[derive(Debug, PartialEq, Eq)]
pub enum Ask<'a> {
    /// Every reporting PC is a known target.
    Nothing,
    /// Ask the database which of these PCs are not targets yet.
    Check(Vec<&'a str>),
    /// Read all the execution's targets (it is not held, and small enough to keep).
    Load,
}

/// An execution: its id and its row's `created_ms`.
pub type Exec = (String, i64);

pub struct TargetMemo {
    execs: HashMap<Exec, Pcs>,
    /// Executions in the order they were learned: the oldest are dropped first.
    order: VecDeque<Exec>,
    pcs: usize,
    capacity: usize,
}

impl Default for TargetMemo {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl TargetMemo {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { execs: HashMap::new(), order: VecDeque::new(), pcs: 0, capacity }
    }

    /// What to read about `pcs` reporting for `exec`, which has `target_count` targets.
    pub fn ask<'a>(&self, exec: &Exec, target_count: i64, pcs: &[&'a str]) -> Ask<'a> {
        match self.execs.get(exec) {
            Some(known) => {
                let unknown: Vec<&str> = pcs.iter().copied().filter(|pc| !known.contains(*pc)).collect();
                if unknown.is_empty() { Ask::Nothing } else { Ask::Check(unknown) }
            }
            None if usize::try_from(target_count).is_ok_and(|n| n <= self.capacity) => Ask::Load,
            None => Ask::Check(pcs.to_vec()),
        }
    }

    /// Hold `targets` as targets of `exec` (committed ones: read, created or added), beside
    /// those held already, dropping the oldest executions to stay within capacity. Only what is
    /// held is trusted: a PC not held is checked, so a partial set is never wrong.
    pub fn learn(&mut self, exec: Exec, targets: Pcs) {
        if targets.len() > self.capacity {
            return;
        }
        match self.execs.get_mut(&exec) {
            Some(known) => {
                let before = known.len();
                known.extend(targets);
                self.pcs += known.len() - before;
            }
            None => {
                self.pcs += targets.len();
                self.order.push_back(exec.clone());
                self.execs.insert(exec, targets);
            }
        }
        while self.pcs > self.capacity {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(gone) = self.execs.remove(&oldest) {
                self.pcs -= gone.len();
            }
        }
    }

    /// How many targets of `exec` are held.
    pub fn held(&self, exec: &Exec) -> Option<usize> {
        self.execs.get(exec).map(Pcs::len)
    }

    pub fn clear(&mut self) {
        *self = Self::with_capacity(self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::{Ask, TargetMemo};

    /// Execution `id`, created at 1.
    fn e(id: &str) -> super::Exec {
        (id.to_owned(), 1)
    }

    fn set(pcs: &[&str]) -> super::Pcs {
        pcs.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn only_what_the_memo_does_not_hold_is_asked() {
        let mut memo = TargetMemo::with_capacity(4);
        memo.learn(e("e1"), set(&["A", "B"]));
        let cases: [(&str, i64, &[&str], Ask); 5] = [
            ("e1", 2, &["A", "B"], Ask::Nothing),
            ("e1", 2, &["A", "C"], Ask::Check(vec!["C"])),
            ("e2", 3, &["A"], Ask::Load),
            ("e2", 4, &["A"], Ask::Load),
            // Too large to hold: each result is checked, as without a memo.
            ("e2", 5, &["A", "B"], Ask::Check(vec!["A", "B"])),
        ];
        for (exec, count, pcs, want) in cases {
            assert_eq!(memo.ask(&e(exec), count, pcs), want, "{exec} {count} {pcs:?}");
        }
        // The same id made again later is another execution.
        assert_eq!(memo.ask(&("e1".to_owned(), 2), 1, &["A"]), Ask::Load);
    }

    #[test]
    fn the_oldest_executions_go_first_and_the_count_stays_exact() {
        let mut memo = TargetMemo::with_capacity(4);
        memo.learn(e("e1"), set(&["A", "B"]));
        memo.learn(e("e2"), set(&["A"]));
        // Learning again what is held adds only what is new.
        memo.learn(e("e1"), set(&["B"]));
        assert_eq!(memo.pcs, 3);
        memo.learn(e("e3"), set(&["A", "B"]));
        assert_eq!(memo.ask(&e("e1"), 2, &["A"]), Ask::Load, "e1 was the oldest");
        assert_eq!(memo.ask(&e("e2"), 1, &["A"]), Ask::Nothing);
        assert_eq!(memo.ask(&e("e3"), 2, &["B"]), Ask::Nothing);
        assert_eq!(memo.pcs, 3);
        // More than the whole memo is never held.
        memo.learn(e("e4"), set(&["A", "B", "C", "D", "E"]));
        assert_eq!(memo.ask(&e("e4"), 5, &["A"]), Ask::Check(vec!["A"]));
        memo.clear();
        assert_eq!((memo.pcs, memo.ask(&e("e2"), 1, &["A"])), (0, Ask::Load));
    }
}
