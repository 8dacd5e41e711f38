//! The fire decision, free of IO: given a schedule's mode and what the fleet has done, what does
//! this tick do?

use std::collections::{BTreeMap, BTreeSet};

use kanade_shared::PcId;
use kanade_shared::manifest::FireMode;

pub struct Inputs<'a> {
    pub mode: FireMode,
    /// `None`: a success counts forever (once means once).
    pub cooldown_ms: Option<i64>,
    /// The plan has rollout waves, which only run as written.
    pub has_rollout: bool,
    /// The PCs the plan's target expects now.
    pub expected: &'a [PcId],
    /// Latest success per PC among this schedule's runs (epoch ms).
    pub last_success: &'a BTreeMap<PcId, i64>,
    /// PCs dispatched by this schedule that have not reported yet.
    pub in_flight: &'a BTreeSet<PcId>,
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run the plan as written.
    Whole,
    /// Run on exactly these PCs.
    Pcs(Vec<PcId>),
    /// Nothing to do at this tick, and why.
    Skip(String),
    /// Every expected PC has a recent success (once_per_pc, once_per_target).
    Done,
}

pub fn decide(i: &Inputs<'_>) -> Decision {
    if i.expected.is_empty() {
        return Decision::Skip("no expected PC: the target matches no agent that is online".into());
    }
    let recent = |pc: &PcId| {
        i.last_success.get(pc).is_some_and(|at| i.cooldown_ms.is_none_or(|cool| i.now_ms - at < cool))
    };
    let free: Vec<PcId> = i.expected.iter().filter(|pc| !i.in_flight.contains(*pc)).cloned().collect();
    let due: Vec<PcId> = match i.mode {
        FireMode::EveryTick => free.clone(),
        FireMode::OncePerPc | FireMode::OncePerTarget if i.expected.iter().all(recent) => {
            return Decision::Done;
        }
        FireMode::OncePerPc => free.iter().filter(|pc| !recent(pc)).cloned().collect(),
        FireMode::OncePerTarget => free.clone(),
    };
    if due.is_empty() {
        return Decision::Skip(format!("{} PC(s) still running the previous fire", i.in_flight.len()));
    }
    if i.has_rollout {
        // Waves cannot be narrowed to a PC list; a rollout runs whole, once nothing is in flight.
        return if i.in_flight.is_empty() {
            Decision::Whole
        } else {
            Decision::Skip(format!("the previous rollout is still in flight on {} PC(s)", i.in_flight.len()))
        };
    }
    if due.len() == i.expected.len() && matches!(i.mode, FireMode::EveryTick | FireMode::OncePerTarget) {
        Decision::Whole
    } else {
        Decision::Pcs(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000_000;
    const H: i64 = 3_600_000;

    fn pcs(names: &[&str]) -> Vec<PcId> {
        names.iter().map(|n| n.parse().unwrap()).collect()
    }

    struct Case {
        mode: FireMode,
        cooldown: Option<i64>,
        rollout: bool,
        expected: &'static [&'static str],
        success: &'static [(&'static str, i64)],
        in_flight: &'static [&'static str],
        want: Decision,
    }

    fn pc_list(names: &[&str]) -> Decision {
        Decision::Pcs(pcs(names))
    }

    #[test]
    fn fire_decisions() {
        use FireMode::*;
        let skip_busy = |n: usize| Decision::Skip(format!("{n} PC(s) still running the previous fire"));
        let cases = [
            // every_tick fires the whole target, minus PCs still busy with the last fire.
            Case {
                mode: EveryTick,
                cooldown: None,
                rollout: false,
                expected: &["A", "B"],
                success: &[("A", NOW)],
                in_flight: &[],
                want: Decision::Whole,
            },
            Case {
                mode: EveryTick,
                cooldown: None,
                rollout: false,
                expected: &["A", "B"],
                success: &[],
                in_flight: &["A"],
                want: pc_list(&["B"]),
            },
            Case {
                mode: EveryTick,
                cooldown: None,
                rollout: false,
                expected: &["A", "B"],
                success: &[],
                in_flight: &["A", "B"],
                want: skip_busy(2),
            },
            // once_per_pc: only PCs without a success within the cooldown.
            Case {
                mode: OncePerPc,
                cooldown: None,
                rollout: false,
                expected: &["A", "B"],
                success: &[],
                in_flight: &[],
                want: pc_list(&["A", "B"]),
            },
            Case {
                mode: OncePerPc,
                cooldown: None,
                rollout: false,
                expected: &["A", "B"],
                success: &[("A", 0)],
                in_flight: &[],
                want: pc_list(&["B"]),
            },
            Case {
                mode: OncePerPc,
                cooldown: None,
                rollout: false,
                expected: &["A", "B"],
                success: &[("A", 0), ("B", 0)],
                in_flight: &[],
                want: Decision::Done,
            },
            Case {
                mode: OncePerPc,
                cooldown: Some(H),
                rollout: false,
                expected: &["A", "B"],
                success: &[("A", NOW - H + 1), ("B", NOW - H)],
                in_flight: &[],
                want: pc_list(&["B"]),
            },
            Case {
                mode: OncePerPc,
                cooldown: Some(H),
                rollout: false,
                expected: &["A", "B"],
                success: &[("A", NOW - H + 1)],
                in_flight: &["B"],
                want: skip_busy(1),
            },
            // once_per_target: the whole target until every PC succeeded.
            Case {
                mode: OncePerTarget,
                cooldown: None,
                rollout: false,
                expected: &["A", "B"],
                success: &[("A", 0)],
                in_flight: &[],
                want: Decision::Whole,
            },
            Case {
                mode: OncePerTarget,
                cooldown: None,
                rollout: false,
                expected: &["A", "B"],
                success: &[("A", 0)],
                in_flight: &["B"],
                want: pc_list(&["A"]),
            },
            Case {
                mode: OncePerTarget,
                cooldown: None,
                rollout: false,
                expected: &["A", "B"],
                success: &[("A", 0), ("B", 5)],
                in_flight: &[],
                want: Decision::Done,
            },
            Case {
                mode: OncePerTarget,
                cooldown: Some(H),
                rollout: false,
                expected: &["A", "B"],
                success: &[("A", NOW - H), ("B", NOW)],
                in_flight: &[],
                want: Decision::Whole,
            },
            // Rollouts run whole, and never over a previous one.
            Case {
                mode: OncePerPc,
                cooldown: None,
                rollout: true,
                expected: &["A", "B"],
                success: &[("A", 0)],
                in_flight: &[],
                want: Decision::Whole,
            },
            Case {
                mode: EveryTick,
                cooldown: None,
                rollout: true,
                expected: &["A", "B"],
                success: &[],
                in_flight: &["A"],
                want: Decision::Skip("the previous rollout is still in flight on 1 PC(s)".into()),
            },
            // Nobody to run on.
            Case {
                mode: EveryTick,
                cooldown: None,
                rollout: false,
                expected: &[],
                success: &[],
                in_flight: &[],
                want: Decision::Skip("no expected PC: the target matches no agent that is online".into()),
            },
        ];
        for (n, c) in cases.into_iter().enumerate() {
            let expected = pcs(c.expected);
            let last_success = c.success.iter().map(|(p, t)| (p.parse().unwrap(), *t)).collect();
            let in_flight = pcs(c.in_flight).into_iter().collect();
            let inputs = Inputs {
                mode: c.mode,
                cooldown_ms: c.cooldown,
                has_rollout: c.rollout,
                expected: &expected,
                last_success: &last_success,
                in_flight: &in_flight,
                now_ms: NOW,
            };
            assert_eq!(decide(&inputs), c.want, "case {n}");
        }
    }
}
