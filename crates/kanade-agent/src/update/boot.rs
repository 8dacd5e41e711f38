//! The boot sentinel, applied before the runtime starts: count this start of a version on
//! trial, or roll back to the last good binary once a version has failed too often.

use std::path::Path;

use kanade_shared::Version;
use kanade_shared::boot::{Boot, BootState, on_boot};
use kanade_shared::wire::Timestamp;

use super::install::{self, Layout};

#[derive(Debug, PartialEq, Eq)]
pub enum BootAction {
    Continue,
    /// The last good binary is back in place: restart into it.
    Restart,
}

/// Apply the sentinel for this start of `running` (installed at `exe`).
pub fn guard(data_dir: &Path, exe: &Path, running: &Version) -> anyhow::Result<BootAction> {
    let layout = Layout::new(data_dir);
    let path = layout.boot_state();
    let mut state = match BootState::load(&path) {
        Ok(s) => s,
        Err(e) => {
            // A broken sentinel must not keep the agent from starting: set it aside.
            tracing::error!(error = %e, "starting with a fresh boot state");
            let _ = std::fs::rename(&path, path.with_extension("json.bad"));
            BootState::default()
        }
    };
    let staged = state.trial.as_ref().map(|t| layout.staged(&t.version));
    let verdict = on_boot(&state, running, staged.as_ref().is_some_and(|p| p.exists()));
    state.apply(&verdict, Timestamp::now_utc());
    let action = match &verdict {
        Boot::Normal => BootAction::Continue,
        Boot::Trial { attempts } => {
            tracing::info!(version = %running, attempts, "new version on trial");
            BootAction::Continue
        }
        Boot::SwapNeverRan { wanted } => {
            tracing::warn!(%wanted, %running, "stopped before the update was swapped in; it will be tried again");
            if let Some(staged) = &staged {
                let _ = std::fs::remove_file(staged);
            }
            BootAction::Continue
        }
        Boot::SwapDidNotTake { wanted } => {
            tracing::error!(%wanted, %running, "the update did not take; {wanted} is quarantined");
            BootAction::Continue
        }
        Boot::RollBack { bad, to } => {
            let kept = layout.last_good();
            match install::replace(exe, &kept) {
                Ok(()) => {
                    tracing::error!(%bad, to = ?to.as_ref().map(ToString::to_string), "version failed to start {} times: quarantined, rolled back", kanade_shared::boot::MAX_BOOT_ATTEMPTS);
                    BootAction::Restart
                }
                Err(e) => {
                    // Keep running what we have; it stays quarantined so it is not fetched again.
                    tracing::error!(%bad, error = %e, kept = %kept.display(), "cannot restore the last good binary");
                    BootAction::Continue
                }
            }
        }
    };
    state.save(&path)?;
    Ok(action)
}

#[cfg(test)]
mod tests {
    use kanade_shared::boot::Trial;

    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn three_failed_starts_restore_last_good_and_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let exe = dir.path().join("kanade-agent");
        install::write_complete(&exe, b"v3").unwrap();
        install::write_complete(&layout.last_good(), b"v2").unwrap();
        BootState {
            last_good: Some(v("2")),
            trial: Some(Trial { version: v("3"), previous: Some(v("2")), attempts: 0 }),
            quarantined: vec![],
        }
        .save(&layout.boot_state())
        .unwrap();
        for attempt in 1..=3 {
            assert_eq!(guard(dir.path(), &exe, &v("3")).unwrap(), BootAction::Continue);
            let s = BootState::load(&layout.boot_state()).unwrap();
            assert_eq!(s.trial.unwrap().attempts, attempt);
        }
        assert_eq!(guard(dir.path(), &exe, &v("3")).unwrap(), BootAction::Restart);
        assert_eq!(std::fs::read(&exe).unwrap(), b"v2");
        let s = BootState::load(&layout.boot_state()).unwrap();
        assert!(s.quarantined(&v("3")).is_some() && s.trial.is_none());
        // Back on the good version: a normal start.
        assert_eq!(guard(dir.path(), &exe, &v("2")).unwrap(), BootAction::Continue);
    }

    #[test]
    fn a_broken_state_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        install::write_complete(&layout.boot_state(), b"{oops").unwrap();
        let exe = dir.path().join("kanade-agent");
        assert_eq!(guard(dir.path(), &exe, &v("1")).unwrap(), BootAction::Continue);
        assert!(layout.boot_state().with_extension("json.bad").exists());
        assert_eq!(BootState::load(&layout.boot_state()).unwrap(), BootState::default());
    }
}
