//! The boot sentinel: a new version of a kanade binary starts "on trial". Each start counts an
//! attempt; once it has run healthy for [`HEALTHY_AFTER`] it is confirmed as the last good
//! version. A version that reaches [`MAX_BOOT_ATTEMPTS`] starts without confirming is rolled
//! back (where the previous binary was kept) and quarantined: never installed again until an
//! operator clears it. A swap that comes back still running the old version is quarantined too,
//! so an updater never loops on it; a crash before the swap ran (the staged binary is still
//! there) only ends the trial, so the update is tried again.
//!
//! The state lives in one small JSON file in the data dir, rewritten atomically.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Version;
// `wire::Timestamp` is this type; named directly so `boot` does not depend on `wire`.
use time::OffsetDateTime as Timestamp;

pub const MAX_BOOT_ATTEMPTS: u32 = 3;
pub const HEALTHY_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BootState {
    /// The last version that ran healthy.
    #[serde(default)]
    pub last_good: Option<Version>,
    /// The version on trial, if any.
    #[serde(default)]
    pub trial: Option<Trial>,
    #[serde(default)]
    pub quarantined: Vec<Quarantine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Trial {
    pub version: Version,
    /// What to go back to (its binary was kept), when known.
    pub previous: Option<Version>,
    /// Starts of `version` so far.
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Quarantine {
    pub version: Version,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub at: Timestamp,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// No trial pending.
    Normal,
    /// The trial version's n-th start: keep going, confirm once healthy.
    Trial { attempts: u32 },
    /// Too many starts without confirming: quarantine `bad`, go back to `to` where known.
    RollBack { bad: Version, to: Option<Version> },
    /// The old binary started again after a swap to `wanted`: stop trying it.
    SwapDidNotTake { wanted: Version },
    /// The agent stopped between staging `wanted` and swapping it in: the trial never began.
    SwapNeverRan { wanted: Version },
}

/// What this start of `running` means, given the recorded state. `staged` says whether the trial
/// version's staged binary is still waiting (it is removed once swapped in).
pub fn on_boot(state: &BootState, running: &Version, staged: bool) -> Boot {
    let Some(t) = &state.trial else { return Boot::Normal };
    if &t.version != running {
        return if t.previous.as_ref() == Some(running) {
            if staged {
                Boot::SwapNeverRan { wanted: t.version.clone() }
            } else {
                Boot::SwapDidNotTake { wanted: t.version.clone() }
            }
        } else {
            // Someone installed another version by hand; the trial no longer applies.
            Boot::Normal
        };
    }
    if t.attempts >= MAX_BOOT_ATTEMPTS {
        Boot::RollBack { bad: t.version.clone(), to: t.previous.clone() }
    } else {
        Boot::Trial { attempts: t.attempts + 1 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootStateError {
    #[error("cannot read boot state {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("boot state {path} is malformed ({source}); move it aside to start over")]
    Malformed { path: String, source: serde_json::Error },
    #[error("cannot write boot state {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

impl BootState {
    /// A missing file is an empty state (first start).
    pub fn load(path: &Path) -> Result<Self, BootStateError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| BootStateError::Malformed { path: path.display().to_string(), source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(BootStateError::Read { path: path.display().to_string(), source }),
        }
    }

    /// Written to a temp file and renamed over, so a crash leaves the old or the new state.
    pub fn save(&self, path: &Path) -> Result<(), BootStateError> {
        let err = |source| BootStateError::Write { path: path.display().to_string(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(self).expect("boot state serializes");
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }

    /// Record a boot verdict.
    pub fn apply(&mut self, boot: &Boot, now: Timestamp) {
        match boot {
            Boot::Normal => {}
            Boot::Trial { attempts } => {
                if let Some(t) = &mut self.trial {
                    t.attempts = *attempts;
                }
            }
            Boot::RollBack { bad, .. } => {
                let reason = format!("did not run healthy within {MAX_BOOT_ATTEMPTS} starts");
                self.quarantine(bad.clone(), now, reason);
            }
            Boot::SwapDidNotTake { wanted } => {
                let running = self.trial.as_ref().and_then(|t| t.previous.clone());
                let reason = match running {
                    Some(old) => format!("installed, but {old} started again (the swap did not take)"),
                    None => "installed, but the old binary started again (the swap did not take)".into(),
                };
                self.quarantine(wanted.clone(), now, reason);
            }
            Boot::SwapNeverRan { .. } => self.trial = None,
        }
    }

    /// `version` ran healthy: it is the last good one and no longer on trial.
    pub fn confirm(&mut self, version: &Version) {
        self.last_good = Some(version.clone());
        if self.trial.as_ref().is_some_and(|t| &t.version == version) {
            self.trial = None;
        }
    }

    pub fn quarantine(&mut self, version: Version, at: Timestamp, reason: String) {
        self.trial = None;
        self.quarantined.retain(|q| q.version != version);
        self.quarantined.push(Quarantine { version, at, reason });
    }

    pub fn quarantined(&self, version: &Version) -> Option<&Quarantine> {
        self.quarantined.iter().find(|q| &q.version == version)
    }

    /// Forget quarantines recorded at or before `before` (an operator cleared them). Returns
    /// the versions released.
    pub fn clear_before(&mut self, before: Timestamp) -> Vec<Version> {
        let (gone, kept) = std::mem::take(&mut self.quarantined).into_iter().partition(|q| q.at <= before);
        self.quarantined = kept;
        gone.into_iter().map(|q: Quarantine| q.version).collect()
    }

    /// For binaries installed from outside (a package upgrade): a start of a version other than
    /// the last good one begins a trial. The very first install is not on trial, so a
    /// misconfiguration on day one is not blamed on the version.
    pub fn begin_trial_if_upgraded(&mut self, running: &Version) {
        let Some(good) = &self.last_good else { return };
        let on_trial = self.trial.as_ref().is_some_and(|t| &t.version == running);
        if good != running && !on_trial {
            self.trial = Some(Trial { version: running.clone(), previous: Some(good.clone()), attempts: 0 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn trial(attempts: u32) -> BootState {
        BootState {
            last_good: Some(v("2")),
            trial: Some(Trial { version: v("3"), previous: Some(v("2")), attempts }),
            quarantined: vec![],
        }
    }

    #[test]
    fn boots_on_trial_roll_back_after_three() {
        // (state, running, staged binary still there) → verdict
        let cases = [
            (BootState::default(), "2", false, Boot::Normal),
            (trial(0), "3", false, Boot::Trial { attempts: 1 }),
            (trial(0), "3", true, Boot::Trial { attempts: 1 }),
            (trial(2), "3", false, Boot::Trial { attempts: 3 }),
            (trial(3), "3", false, Boot::RollBack { bad: v("3"), to: Some(v("2")) }),
            (trial(1), "2", false, Boot::SwapDidNotTake { wanted: v("3") }),
            (trial(0), "2", true, Boot::SwapNeverRan { wanted: v("3") }),
            (trial(1), "4", false, Boot::Normal),
            (trial(1), "4", true, Boot::Normal),
        ];
        for (state, running, staged, want) in cases {
            assert_eq!(
                on_boot(&state, &v(running), staged),
                want,
                "{state:?} running {running}, staged {staged}"
            );
        }
    }

    #[test]
    fn verdicts_are_recorded() {
        let now = Timestamp::now_utc();
        let mut s = trial(0);
        s.apply(&Boot::Trial { attempts: 1 }, now);
        assert_eq!(s.trial.as_ref().unwrap().attempts, 1);
        s.apply(&Boot::RollBack { bad: v("3"), to: Some(v("2")) }, now);
        assert!(s.trial.is_none());
        assert!(s.quarantined(&v("3")).unwrap().reason.contains("3 starts"));

        let mut s = trial(1);
        s.apply(&Boot::SwapDidNotTake { wanted: v("3") }, now);
        assert!(s.quarantined(&v("3")).unwrap().reason.contains("2 started again"));

        let mut s = trial(0);
        s.apply(&Boot::SwapNeverRan { wanted: v("3") }, now);
        assert_eq!((s.trial, s.quarantined.len()), (None, 0), "tried again, not quarantined");

        let mut s = trial(1);
        s.confirm(&v("3"));
        assert_eq!((s.last_good, s.trial), (Some(v("3")), None));
    }

    #[test]
    fn clearing_forgets_only_older_quarantines() {
        let t0 = Timestamp::now_utc();
        let mut s = BootState::default();
        s.quarantine(v("3"), t0, "x".into());
        s.quarantine(v("4"), t0 + Duration::from_secs(60), "y".into());
        assert_eq!(s.clear_before(t0 + Duration::from_secs(1)), vec![v("3")]);
        assert!(s.quarantined(&v("3")).is_none());
        assert!(s.quarantined(&v("4")).is_some());
    }

    #[test]
    fn upgrades_from_outside_start_a_trial_first_install_does_not() {
        let mut s = BootState::default();
        s.begin_trial_if_upgraded(&v("1"));
        assert_eq!(s.trial, None);
        s.confirm(&v("1"));
        s.begin_trial_if_upgraded(&v("1"));
        assert_eq!(s.trial, None);
        s.begin_trial_if_upgraded(&v("2"));
        assert_eq!(s.trial, Some(Trial { version: v("2"), previous: Some(v("1")), attempts: 0 }));
        // A later start of the same version keeps counting.
        s.apply(&on_boot(&s.clone(), &v("2"), false), Timestamp::now_utc());
        s.begin_trial_if_upgraded(&v("2"));
        assert_eq!(s.trial.as_ref().unwrap().attempts, 1);
    }

    #[test]
    fn state_file_round_trips_and_names_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("update").join("boot.json");
        assert_eq!(BootState::load(&path).unwrap(), BootState::default());
        let mut s = trial(2);
        s.quarantine(v("9"), Timestamp::now_utc(), "why".into());
        s.save(&path).unwrap();
        let back = BootState::load(&path).unwrap();
        assert_eq!(back.quarantined[0].version, v("9"));
        std::fs::write(&path, "{not json").unwrap();
        let err = BootState::load(&path).unwrap_err().to_string();
        assert!(err.contains("boot.json") && err.contains("malformed"), "{err}");
    }
}
