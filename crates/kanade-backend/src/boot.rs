//! The boot sentinel for `kanade-backend` upgrades. The backend is installed from outside (a
//! package, a copied binary), so the trial starts when a version other than the last healthy
//! one starts. A version that fails [`MAX_BOOT_ATTEMPTS`] starts without running healthy is
//! quarantined and refuses to start from then on, naming the version to reinstall; install
//! scripts ask `kanade-backend check-quarantine <version>` before installing one. State:
//! `<data_dir>/boot.json`.

use std::path::{Path, PathBuf};

use kanade_shared::Version;
use kanade_shared::boot::{Boot, BootState, BootStateError, MAX_BOOT_ATTEMPTS, Quarantine, on_boot};
use kanade_shared::wire::Timestamp;

pub fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("boot.json")
}

/// Record this start of `running`; `Err` with the reason when it must not start.
pub fn on_start(data_dir: &Path, running: &Version) -> Result<Result<(), String>, BootStateError> {
    let path = state_path(data_dir);
    let mut state = BootState::load(&path)?;
    if let Some(q) = state.quarantined(running) {
        return Ok(Err(refusal(running, q, state.last_good.as_ref())));
    }
    state.begin_trial_if_upgraded(running);
    // The backend is swapped by its operator, never staged by itself.
    let verdict = on_boot(&state, running, false);
    state.apply(&verdict, Timestamp::now_utc());
    state.save(&path)?;
    Ok(match verdict {
        Boot::RollBack { .. } => {
            let q = state.quarantined(running).expect("a rollback quarantines the version");
            Err(refusal(running, q, state.last_good.as_ref()))
        }
        Boot::Trial { attempts } => {
            tracing::info!(version = %running, attempts, max = MAX_BOOT_ATTEMPTS, "new version on trial");
            Ok(())
        }
        Boot::Normal | Boot::SwapDidNotTake { .. } | Boot::SwapNeverRan { .. } => Ok(()),
    })
}

fn refusal(running: &Version, q: &Quarantine, last_good: Option<&Version>) -> String {
    let back = last_good.map_or("the previous version".to_owned(), |v| format!("version {v}"));
    format!(
        "kanade-backend {running} is quarantined ({}); reinstall {back}, or run `kanade-backend clear-quarantine {running}` to try it again",
        q.reason
    )
}

/// `running` has served healthy: it is the last good version.
pub fn confirm(data_dir: &Path, running: &Version) -> Result<(), BootStateError> {
    let path = state_path(data_dir);
    let mut state = BootState::load(&path)?;
    if state.last_good.as_ref() != Some(running) || state.trial.is_some() {
        state.confirm(running);
        state.save(&path)?;
    }
    Ok(())
}

pub fn check(data_dir: &Path, version: &Version) -> Result<Option<Quarantine>, BootStateError> {
    Ok(BootState::load(&state_path(data_dir))?.quarantined(version).cloned())
}

/// Forget `version`'s quarantine. Returns whether it was quarantined.
pub fn clear(data_dir: &Path, version: &Version) -> Result<bool, BootStateError> {
    let path = state_path(data_dir);
    let mut state = BootState::load(&path)?;
    let before = state.quarantined.len();
    state.quarantined.retain(|q| &q.version != version);
    if state.quarantined.len() == before {
        return Ok(false);
    }
    state.save(&path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn an_upgrade_that_never_runs_healthy_is_quarantined_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        // First install: not on trial, confirmed once healthy.
        assert_eq!(on_start(dir.path(), &v("1.0.0")).unwrap(), Ok(()));
        confirm(dir.path(), &v("1.0.0")).unwrap();
        for _ in 0..MAX_BOOT_ATTEMPTS {
            assert_eq!(on_start(dir.path(), &v("2.0.0")).unwrap(), Ok(()));
        }
        let refused = on_start(dir.path(), &v("2.0.0")).unwrap().unwrap_err();
        assert!(
            refused.contains("2.0.0 is quarantined") && refused.contains("reinstall version 1.0.0"),
            "{refused}"
        );
        // Stays refused, and the old version starts normally.
        assert!(on_start(dir.path(), &v("2.0.0")).unwrap().is_err());
        assert!(check(dir.path(), &v("2.0.0")).unwrap().is_some());
        assert_eq!(on_start(dir.path(), &v("1.0.0")).unwrap(), Ok(()));
        // Cleared: a fresh trial.
        assert!(clear(dir.path(), &v("2.0.0")).unwrap());
        assert!(!clear(dir.path(), &v("2.0.0")).unwrap());
        assert_eq!(on_start(dir.path(), &v("2.0.0")).unwrap(), Ok(()));
        confirm(dir.path(), &v("2.0.0")).unwrap();
        assert_eq!(BootState::load(&state_path(dir.path())).unwrap().last_good, Some(v("2.0.0")));
    }
}
