//! Pure decisions of the exec pipeline: which PCs a target expects, which subjects a target is
//! published on, and the command every subject carries.

use std::collections::BTreeSet;

use kanade_shared::manifest::{Manifest, Plan, Target};
use kanade_shared::subjects::CommandTarget;
use kanade_shared::wire::{Command, Retry, Timestamp};
use kanade_shared::{ExecId, PcId, RequestId};

pub use crate::fleet::{ALIVE_WINDOW_MS, KnownAgent};

/// The PCs a target expects results from: explicit pcs always (an offline PC catches up later);
/// group members and `all` only when alive now.
pub fn expected_pcs(target: &Target, agents: &[KnownAgent], now_ms: i64) -> Vec<PcId> {
    let alive = |a: &&KnownAgent| now_ms - a.last_seen_ms <= ALIVE_WINDOW_MS;
    let mut out: BTreeSet<PcId> = target.pcs.iter().cloned().collect();
    for a in agents.iter().filter(alive) {
        if target.all || a.groups.iter().any(|g| target.groups.contains(g)) {
            out.insert(a.pc.clone());
        }
    }
    out.into_iter().collect()
}

/// The PCs a plan names one by one (its target and every wave) that have never sent a
/// heartbeat, sorted.
pub fn unknown_pcs(plan: &Plan, agents: &[KnownAgent]) -> Vec<PcId> {
    let waves = plan.rollout.iter().flat_map(|r| r.waves.iter().flat_map(|w| w.pcs.iter()));
    let named: BTreeSet<&PcId> = plan.target.pcs.iter().chain(waves).collect();
    named.into_iter().filter(|pc| !agents.iter().any(|a| &a.pc == *pc)).cloned().collect()
}

/// Why a plan naming PCs nobody has heard from is refused, and how to go ahead anyway.
pub fn unknown_pcs_problem(unknown: &[PcId]) -> String {
    let names: Vec<&str> = unknown.iter().map(|p| p.as_str()).collect();
    format!(
        "target.pcs: never seen by this backend (no heartbeat yet): {}. Check the names with `kanade agents list`; to target a PC that is not installed yet, pass --allow-unknown (API: ?allow_unknown=true)",
        names.join(", ")
    )
}

/// The subjects a target is published on: one for `all`, one per group, one per pc.
pub fn subjects_for(target: &Target) -> Vec<CommandTarget> {
    if target.all {
        return vec![CommandTarget::All];
    }
    target
        .groups
        .iter()
        .map(|g| CommandTarget::Group(g.clone()))
        .chain(target.pcs.iter().map(|p| CommandTarget::Pc(p.clone())))
        .collect()
}

/// The command for one exec. Every subject gets a copy with its own `request_id`; all other
/// fields are identical so the agents' ledger fingerprint matches across subjects.
pub fn command(
    manifest: &Manifest,
    exec_id: ExecId,
    script: (Option<String>, Option<String>, Option<String>),
    jitter_secs: u64,
    retry: Option<Retry>,
    issued_at: Timestamp,
) -> Command {
    let (inline, object, sha256) = script;
    Command {
        schema: kanade_shared::wire::SCHEMA,
        job_id: manifest.id.clone(),
        version: manifest.version.clone(),
        exec_id,
        request_id: RequestId::new(),
        shell: manifest.execute.shell,
        script: inline,
        script_object: object,
        script_sha256: sha256,
        timeout_secs: manifest.execute.timeout.as_secs(),
        jitter_secs,
        cwd: manifest.execute.cwd.clone(),
        env: manifest.execute.env.clone(),
        run_as: manifest.execute.run_as,
        deadline_at: None,
        staleness: manifest.staleness.to_wire(),
        retry,
        issued_at,
        emit: manifest.emit,
        issued_view: None,
    }
}

/// When the commands of an exec stop being startable: `start_within` (the plan's, else the
/// backend's default) after issue, counted from the last wave's publication so every wave gets
/// the whole window. One instant for every wave, because every subject of one exec must carry
/// the same command (the agents' fingerprint). A re-imaged PC therefore never replays old
/// commands from EXEC.
pub fn deadline(plan: &Plan, default: std::time::Duration, issued_at: Timestamp) -> Timestamp {
    let window = plan.start_within.map_or(default, |d| d.get());
    let last_wave =
        plan.rollout.as_ref().and_then(|r| r.waves.iter().map(|w| w.delay.get()).max()).unwrap_or_default();
    issued_at + window + last_wave
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(pc: &str, groups: &[&str], seen: i64) -> KnownAgent {
        KnownAgent {
            pc: pc.parse().unwrap(),
            groups: groups.iter().map(|g| g.parse().unwrap()).collect(),
            last_seen_ms: seen,
        }
    }

    fn target(pcs: &[&str], groups: &[&str], all: bool) -> Target {
        Target {
            pcs: pcs.iter().map(|p| p.parse().unwrap()).collect(),
            groups: groups.iter().map(|g| g.parse().unwrap()).collect(),
            all,
        }
    }

    fn names(pcs: Vec<PcId>) -> Vec<String> {
        pcs.into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn explicit_pcs_never_seen_are_named_wherever_the_plan_names_them() {
        let agents = [agent("A", &["canary"], 0), agent("B", &[], 1)];
        let cases: &[(&str, &[&str])] = &[
            ("target: { pcs: [A, B] }", &[]),
            ("target: { pcs: [A, nosuchpc] }", &["nosuchpc"]),
            // Groups and `all` name nobody in particular: an empty group is not a typo here.
            ("target: { groups: [nosuchgroup], all: false }", &[]),
            ("target: { all: true }", &[]),
            (
                "rollout: { waves: [{ group: canary, delay: 0s }, { pcs: [zz, B, aa], delay: 1m }, { pcs: [zz], delay: 2m }] }",
                &["aa", "zz"],
            ),
        ];
        for (yaml, want) in cases {
            let plan = kanade_shared::manifest::plan_from_yaml(yaml).unwrap();
            assert_eq!(names(unknown_pcs(&plan, &agents)), *want, "{yaml}");
        }
    }

    #[test]
    fn expected_pcs_follow_liveness_except_explicit_ones() {
        let now = 10_000_000;
        let agents = [
            agent("A", &["canary"], now - 1_000),
            agent("B", &["canary", "wave1"], now - ALIVE_WINDOW_MS),
            agent("C", &["wave1"], now - ALIVE_WINDOW_MS - 1),
            agent("D", &[], now),
        ];
        let check =
            |t: Target, want: &[&str]| assert_eq!(names(expected_pcs(&t, &agents, now)), want, "{t:?}");
        check(target(&[], &[], true), &["A", "B", "D"]);
        check(target(&[], &["canary"], false), &["A", "B"]);
        check(target(&[], &["wave1"], false), &["B"]);
        check(target(&["C", "Z"], &[], false), &["C", "Z"]);
        check(target(&["A"], &["canary"], false), &["A", "B"]);
    }

    #[test]
    fn every_command_has_a_start_deadline() {
        let issued = time::macros::datetime!(2026-12-01 12:00 UTC);
        let day = std::time::Duration::from_secs(86_400);
        let check = |yaml: &str, want: Timestamp| {
            let plan = kanade_shared::manifest::plan_from_yaml(yaml).unwrap();
            assert_eq!(deadline(&plan, 7 * day, issued), want, "{yaml}");
        };
        check("target: { all: true }\n", issued + 7 * day);
        check("target: { all: true }\nstart_within: 10m\n", issued + std::time::Duration::from_secs(600));
        check(
            "rollout: { waves: [{ group: a }, { group: b, delay: 1h }] }\nstart_within: 10m\n",
            issued + std::time::Duration::from_secs(4_200),
        );
    }

    #[test]
    fn subjects_are_one_per_group_and_pc_or_one_for_all() {
        let s = |t: Target| {
            subjects_for(&t)
                .iter()
                .map(|t| kanade_shared::subjects::command(t, &"j".parse().unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(s(target(&["P"], &["g"], false)), ["commands.group.g.j", "commands.pc.P.j"]);
        assert_eq!(s(target(&[], &[], true)), ["commands.all.j"]);
    }
}
