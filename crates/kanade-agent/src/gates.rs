//! Admission gates: killed by an operator (126) → deadline passed (125) → revoked (126) →
//! version pin (124) → stale view under `staleness: strict` (127) → `run_as: user` with no user
//! to run as (122). Pure: the caller gathers the fleet view (live from KV, or the cached copy
//! when the broker is unreachable), whether a user is there to run as, and the clock. The runner
//! checks them when a run is admitted and again right before it starts when it had to wait.

use std::time::Duration;

use kanade_shared::Version;
use kanade_shared::wire::{Command, RunAs, SkipReason, StalenessMode, Timestamp};

/// What the agent knows about a job's fleet-wide state, and how old that knowledge is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FleetView {
    /// `script_status` says `REVOKED`.
    pub revoked: bool,
    /// `script_current`: the version the fleet must run, when pinned.
    pub current_version: Option<Version>,
    /// Age of this view; `None` when the agent has never read it.
    pub age: Option<Duration>,
    /// Why an operator killed this exec, when they did (`exec_kills`, or a kill heard here).
    pub killed: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub reason: SkipReason,
    pub message: String,
}

/// `user`: whether this agent has a user to run `run_as: user` commands as.
pub fn check(cmd: &Command, view: &FleetView, user: bool, now: Timestamp) -> Result<(), Skip> {
    if let Some(why) = &view.killed {
        return Err(Skip { reason: SkipReason::Killed, message: format!("killed before it started: {why}") });
    }
    if let Some(deadline) = cmd.deadline_at.filter(|d| now > *d) {
        let deadline = deadline.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        return Err(Skip {
            reason: SkipReason::DeadlinePassed,
            message: format!("deadline {deadline} passed before the run could start"),
        });
    }
    if view.revoked {
        return Err(Skip { reason: SkipReason::Revoked, message: format!("job {} is revoked", cmd.job_id) });
    }
    if let Some(current) = view.current_version.as_ref().filter(|v| **v != cmd.version) {
        return Err(Skip {
            reason: SkipReason::VersionPin,
            message: format!(
                "fleet must run version {current} of {}, command carries {}",
                cmd.job_id, cmd.version
            ),
        });
    }
    if cmd.staleness.mode == StalenessMode::Strict {
        let max = Duration::from_secs(cmd.staleness.max_cache_age_secs.unwrap_or(0));
        match view.age {
            Some(age) if age <= max => {}
            Some(age) => {
                return Err(Skip {
                    reason: SkipReason::Stale,
                    message: format!(
                        "fleet view is {}s old, strict staleness allows {}s",
                        age.as_secs(),
                        max.as_secs()
                    ),
                });
            }
            None => {
                return Err(Skip {
                    reason: SkipReason::Stale,
                    message: "no fleet view could be read and staleness is strict".into(),
                });
            }
        }
    }
    match cmd.run_as {
        RunAs::System => {}
        RunAs::User if user => {}
        RunAs::User => {
            return Err(Skip {
                reason: SkipReason::NoUser,
                message: "run_as: user, and this agent has no user to run it as (Unix: set [exec] user in agent.toml; Windows: nobody is signed in); it never runs a job as another identity".into(),
            });
        }
        RunAs::Unknown => {
            return Err(Skip {
                reason: SkipReason::NoUser,
                message: "run_as names an identity this agent does not know; not run".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kanade_shared::wire::{Shell, Staleness};
    use time::macros::datetime;

    use super::*;

    fn command() -> Command {
        let mut cmd = Command::inline("j".parse().unwrap(), "2".parse().unwrap(), Shell::Sh, "true");
        cmd.deadline_at = Some(datetime!(2026-11-24 03:00 UTC));
        cmd
    }

    fn check_case(cmd: &Command, view: FleetView, now: Timestamp, expected: Option<(i32, &str)>) {
        let got = check(cmd, &view, false, now).err().map(|s| (s.reason.exit_code().unwrap(), s.message));
        assert_eq!(got.as_ref().map(|(c, m)| (*c, m.as_str())), expected, "{view:?}");
    }

    #[test]
    fn each_gate_yields_its_code_in_order() {
        let before = datetime!(2026-11-24 01:00 UTC);
        let after = datetime!(2026-11-24 03:00:01 UTC);
        let cmd = command();
        let pinned = |v: &str| FleetView {
            current_version: Some(v.parse().unwrap()),
            age: Some(Duration::ZERO),
            ..Default::default()
        };
        check_case(&cmd, FleetView::default(), before, None);
        check_case(
            &cmd,
            FleetView::default(),
            after,
            Some((125, "deadline 2026-11-24T03:00:00Z passed before the run could start")),
        );
        // Deadline wins over revoke; revoke wins over the version pin.
        check_case(
            &cmd,
            FleetView { revoked: true, ..pinned("1") },
            after,
            Some((125, "deadline 2026-11-24T03:00:00Z passed before the run could start")),
        );
        check_case(&cmd, FleetView { revoked: true, ..pinned("1") }, before, Some((126, "job j is revoked")));
        check_case(
            &cmd,
            pinned("1"),
            before,
            Some((124, "fleet must run version 1 of j, command carries 2")),
        );
        check_case(&cmd, pinned("2"), before, None);
        // A kill wins over everything: the operator said stop.
        check_case(
            &cmd,
            FleetView { killed: Some("by alice".into()), revoked: true, ..pinned("1") },
            after,
            Some((126, "killed before it started: by alice")),
        );
    }

    #[test]
    fn run_as_user_needs_a_user_and_an_unknown_identity_never_runs() {
        let now = datetime!(2026-11-24 01:00 UTC);
        let mut cmd = command();
        cmd.run_as = RunAs::User;
        let skip = check(&cmd, &FleetView::default(), false, now).unwrap_err();
        assert_eq!((skip.reason, skip.reason.exit_code()), (SkipReason::NoUser, Some(122)));
        assert!(skip.message.contains("[exec] user"), "{}", skip.message);
        assert_eq!(check(&cmd, &FleetView::default(), true, now), Ok(()));
        cmd.run_as = RunAs::Unknown;
        assert_eq!(check(&cmd, &FleetView::default(), true, now).unwrap_err().reason, SkipReason::NoUser);
        cmd.run_as = RunAs::System;
        assert_eq!(check(&cmd, &FleetView::default(), false, now), Ok(()));
    }

    #[test]
    fn strict_staleness_needs_a_fresh_enough_view() {
        let now = datetime!(2026-11-24 01:00 UTC);
        let mut cmd = command();
        cmd.staleness = Staleness { mode: StalenessMode::Strict, max_cache_age_secs: Some(60) };
        let aged = |s| FleetView { age: Some(Duration::from_secs(s)), ..Default::default() };
        check_case(&cmd, aged(60), now, None);
        check_case(&cmd, aged(61), now, Some((127, "fleet view is 61s old, strict staleness allows 60s")));
        check_case(
            &cmd,
            FleetView::default(),
            now,
            Some((127, "no fleet view could be read and staleness is strict")),
        );
        cmd.staleness.mode = StalenessMode::Cached;
        check_case(&cmd, aged(86_400), now, None);
    }
}
