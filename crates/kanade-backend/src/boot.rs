//! The boot sentinel for `kanade-backend` upgrades. The backend is installed from outside (a
//! package, a copied binary), so the trial starts when a version other than the last healthy
//! one starts. Before an upgrade, `kanade-backend arm-for-swap` keeps a copy of the installed
//! (healthy) binary; a version that then fails [`MAX_BOOT_ATTEMPTS`] starts without running
//! healthy is quarantined and the kept binary is put back where this one is, so the service
//! manager's next start runs the old version. Without a kept binary (or where this account may
//! not replace its own binary) it refuses to start, naming the version to reinstall;
//! `kanade-backend roll-back` run as a user who may write there (the systemd unit's
//! `ExecStartPre=+`) puts the kept one back. Install scripts ask `check-quarantine <version>`.
//! State: `<data_dir>/boot.json` and `<data_dir>/last-good/`.

use std::path::{Path, PathBuf};

use kanade_shared::Version;
use kanade_shared::boot::{Boot, BootState, BootStateError, MAX_BOOT_ATTEMPTS, Quarantine, on_boot};
use kanade_shared::files::sha256_hex;
use kanade_shared::wire::Timestamp;
use serde::{Deserialize, Serialize};

pub fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("boot.json")
}

fn kept_binary(data_dir: &Path) -> PathBuf {
    data_dir.join("last-good").join(format!("kanade-backend{}", std::env::consts::EXE_SUFFIX))
}

fn kept_manifest(data_dir: &Path) -> PathBuf {
    data_dir.join("last-good").join("kept.json")
}

/// What `arm-for-swap` kept: written after the binary, so it never describes a partial copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub version: Version,
    pub sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
}

/// How this start goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Started {
    Go,
    /// Must not run; the reason says what to do.
    Refused(String),
    /// `bad` is quarantined and the kept `to` is back at this binary's path: start again.
    RolledBack {
        bad: Version,
        to: Version,
    },
}

/// Record this start of `running`, installed at `exe` (None: unknown, so no rollback).
pub fn on_start(data_dir: &Path, exe: Option<&Path>, running: &Version) -> Result<Started, BootStateError> {
    let path = state_path(data_dir);
    let mut state = BootState::load(&path)?;
    if state.quarantined(running).is_none() {
        state.begin_trial_if_upgraded(running);
        // The backend is swapped by its operator, never staged by itself.
        let verdict = on_boot(&state, running, false);
        state.apply(&verdict, Timestamp::now_utc());
        state.save(&path)?;
        match verdict {
            Boot::RollBack { .. } => {}
            Boot::Trial { attempts } => {
                tracing::info!(version = %running, attempts, max = MAX_BOOT_ATTEMPTS, "new version on trial");
                return Ok(Started::Go);
            }
            Boot::Normal | Boot::SwapDidNotTake { .. } | Boot::SwapNeverRan { .. } => return Ok(Started::Go),
        }
    }
    let q = state.quarantined(running).expect("quarantined above or before");
    Ok(match exe.map(|exe| put_back(data_dir, exe, state.last_good.as_ref())) {
        Some(Ok(to)) => Started::RolledBack { bad: running.clone(), to },
        Some(Err(why)) => {
            Started::Refused(format!("{}; {why}", refusal(running, q, state.last_good.as_ref())))
        }
        None => Started::Refused(refusal(running, q, state.last_good.as_ref())),
    })
}

fn refusal(running: &Version, q: &Quarantine, last_good: Option<&Version>) -> String {
    let back = last_good.map_or("the previous version".to_owned(), |v| format!("version {v}"));
    format!(
        "kanade-backend {running} is quarantined ({}); reinstall {back}, or run `kanade-backend clear-quarantine {running}` to try it again",
        q.reason
    )
}

/// Put the kept binary at `exe` when it is `last_good`, unchanged since it was kept.
fn put_back(data_dir: &Path, exe: &Path, last_good: Option<&Version>) -> Result<Version, String> {
    let manifest = kept_manifest(data_dir);
    // Only what the binary's own owner kept may replace it: under systemd the data dir belongs
    // to the service's account while root runs `roll-back`, and a binary that account planted
    // must never be installed by root.
    for path in [data_dir.join("last-good"), manifest.clone(), kept_binary(data_dir)] {
        if path.exists() {
            trusted_as(&path, exe)?;
        }
    }
    let kept: Kept = match std::fs::read(&manifest) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is malformed ({e}); no binary was put back", manifest.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(
                "no binary was kept to go back to (run `kanade-backend arm-for-swap` before an upgrade)"
                    .into(),
            );
        }
        Err(e) => return Err(format!("cannot read {}: {e}", manifest.display())),
    };
    if last_good != Some(&kept.version) {
        let good = last_good.map_or("unknown".to_owned(), ToString::to_string);
        return Err(format!(
            "the kept binary is version {}, not the last good version ({good}); it was not put back",
            kept.version
        ));
    }
    let binary = kept_binary(data_dir);
    let bytes = std::fs::read(&binary)
        .map_err(|e| format!("cannot read the kept binary {}: {e}", binary.display()))?;
    if sha256_hex(&bytes) != kept.sha256 {
        return Err(format!(
            "the kept binary {} changed since it was kept; it was not put back",
            binary.display()
        ));
    }
    kanade_shared::binary::replace(exe, &binary).map_err(|e| {
        format!(
            "cannot put the kept {} back at {} ({e}); run `kanade-backend roll-back` as a user who may write there",
            kept.version,
            exe.display()
        )
    })?;
    Ok(kept.version)
}

/// `path` belongs to the owner of `exe` and no one else may write it (Unix). Windows relies on
/// the data dir's ACL (SYSTEM and Administrators only).
fn trusted_as(path: &Path, exe: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = |p: &Path| std::fs::metadata(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let (file, owner) = (meta(path)?, meta(exe)?);
        let verdict = kept_file_trust(file.uid(), file.mode(), owner.uid());
        if let Err(why) = verdict {
            return Err(format!(
                "{} {why}; run `kanade-backend arm-for-swap` as the owner of {} (root under systemd)",
                path.display(),
                exe.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, exe);
    Ok(())
}

/// Pure: may a kept file owned by `uid` with `mode` replace a binary owned by `exe_uid`?
pub fn kept_file_trust(uid: u32, mode: u32, exe_uid: u32) -> Result<(), String> {
    if uid != exe_uid {
        return Err(format!("belongs to user {uid}, not to the binary's owner {exe_uid}"));
    }
    if mode & 0o022 != 0 {
        return Err(format!("may be written by others (mode {:o})", mode & 0o777));
    }
    Ok(())
}

/// `kanade-backend roll-back`: when `running` is quarantined, put the kept binary back at `exe`.
/// `Ok(None)`: nothing to roll back.
pub fn roll_back(data_dir: &Path, exe: &Path, running: &Version) -> Result<Option<Version>, String> {
    let state = BootState::load(&state_path(data_dir)).map_err(|e| e.to_string())?;
    if state.quarantined(running).is_none() {
        return Ok(None);
    }
    put_back(data_dir, exe, state.last_good.as_ref()).map(Some)
}

/// Whether the installed `running` may be kept as the version to go back to: only one that ran
/// healthy here and is not on trial.
pub fn may_arm(state: &BootState, running: &Version) -> Result<(), String> {
    if state.quarantined(running).is_some() {
        return Err(format!(
            "kanade-backend {running} is quarantined; install a version that runs healthy first"
        ));
    }
    if state.trial.as_ref().is_some_and(|t| &t.version == running) {
        return Err(format!(
            "kanade-backend {running} is on trial: it has not yet served {} s healthy; arm once it has",
            kanade_shared::boot::HEALTHY_AFTER.as_secs()
        ));
    }
    match &state.last_good {
        Some(good) if good == running => Ok(()),
        Some(good) => Err(format!(
            "this binary is {running} but the version that last ran healthy here is {good}; run arm-for-swap with the binary the service runs"
        )),
        None => Err(format!(
            "kanade-backend {running} has not run healthy here yet: start it and let it serve {} s, then arm",
            kanade_shared::boot::HEALTHY_AFTER.as_secs()
        )),
    }
}

/// `kanade-backend arm-for-swap`: keep a copy of `exe` (version `running`) to go back to.
pub fn arm(data_dir: &Path, exe: &Path, running: &Version) -> Result<(Kept, PathBuf), String> {
    let state = BootState::load(&state_path(data_dir)).map_err(|e| e.to_string())?;
    may_arm(&state, running)?;
    let bytes = std::fs::read(exe).map_err(|e| format!("cannot read this binary {}: {e}", exe.display()))?;
    // Made anew by whoever arms (the binary's owner), writable by no one else: what a rollback
    // run as root will trust.
    let dir = data_dir.join("last-good");
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("cannot clear {}: {e}", dir.display()));
        }
        _ => {}
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))?;
    }
    let binary = kept_binary(data_dir);
    kanade_shared::binary::write_complete(&binary, &bytes)
        .map_err(|e| format!("cannot keep a copy at {}: {e}", binary.display()))?;
    let kept = Kept { version: running.clone(), sha256: sha256_hex(&bytes), at: Timestamp::now_utc() };
    let manifest = kept_manifest(data_dir);
    let text = serde_json::to_vec_pretty(&kept).expect("the kept manifest serializes");
    kanade_shared::files::write_private(&manifest, &text, kanade_shared::files::Existing::Replace)
        .map_err(|e| format!("cannot write {}: {e}", manifest.display()))?;
    Ok((kept, binary))
}

/// `running` has served healthy: it is the last good version. Returns whether that is news
/// (it ended a trial, or it is the first healthy run here).
pub fn confirm(data_dir: &Path, running: &Version) -> Result<bool, BootStateError> {
    let path = state_path(data_dir);
    let mut state = BootState::load(&path)?;
    if state.last_good.as_ref() != Some(running) || state.trial.is_some() {
        state.confirm(running);
        state.save(&path)?;
        return Ok(true);
    }
    Ok(false)
}

/// `running` stopped cleanly (a signal, the SCM) before it was confirmed: that start does not
/// count against its trial, so restarting a new version by hand never quarantines it.
pub fn stopped_cleanly(data_dir: &Path, running: &Version) -> Result<(), BootStateError> {
    let path = state_path(data_dir);
    let mut state = BootState::load(&path)?;
    if let Some(t) = state.trial.as_mut().filter(|t| &t.version == running && t.attempts > 0) {
        t.attempts -= 1;
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
    use kanade_shared::boot::Trial;

    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn refused(started: Started) -> String {
        match started {
            Started::Refused(why) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn an_upgrade_that_never_runs_healthy_is_quarantined_and_refused_when_nothing_was_kept() {
        let dir = tempfile::tempdir().unwrap();
        // First install: not on trial, confirmed once healthy.
        assert_eq!(on_start(dir.path(), None, &v("1.0.0")).unwrap(), Started::Go);
        confirm(dir.path(), &v("1.0.0")).unwrap();
        for _ in 0..MAX_BOOT_ATTEMPTS {
            assert_eq!(on_start(dir.path(), None, &v("2.0.0")).unwrap(), Started::Go);
        }
        let why = refused(on_start(dir.path(), None, &v("2.0.0")).unwrap());
        assert!(why.contains("2.0.0 is quarantined") && why.contains("reinstall version 1.0.0"), "{why}");
        // Stays refused, and the old version starts normally.
        refused(on_start(dir.path(), None, &v("2.0.0")).unwrap());
        assert!(check(dir.path(), &v("2.0.0")).unwrap().is_some());
        assert_eq!(on_start(dir.path(), None, &v("1.0.0")).unwrap(), Started::Go);
        // Cleared: a fresh trial.
        assert!(clear(dir.path(), &v("2.0.0")).unwrap());
        assert!(!clear(dir.path(), &v("2.0.0")).unwrap());
        assert_eq!(on_start(dir.path(), None, &v("2.0.0")).unwrap(), Started::Go);
        confirm(dir.path(), &v("2.0.0")).unwrap();
        assert_eq!(BootState::load(&state_path(dir.path())).unwrap().last_good, Some(v("2.0.0")));
    }

    #[test]
    fn clean_stops_during_a_trial_do_not_count_as_failed_starts() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(on_start(dir.path(), None, &v("1.0.0")).unwrap(), Started::Go);
        assert!(confirm(dir.path(), &v("1.0.0")).unwrap(), "the first healthy run is news");
        assert!(!confirm(dir.path(), &v("1.0.0")).unwrap());
        // An operator starts and stops the new version many times: never quarantined.
        for _ in 0..2 * MAX_BOOT_ATTEMPTS {
            assert_eq!(on_start(dir.path(), None, &v("2.0.0")).unwrap(), Started::Go);
            stopped_cleanly(dir.path(), &v("2.0.0")).unwrap();
        }
        // Crashes still count.
        for _ in 0..MAX_BOOT_ATTEMPTS {
            assert_eq!(on_start(dir.path(), None, &v("2.0.0")).unwrap(), Started::Go);
        }
        refused(on_start(dir.path(), None, &v("2.0.0")).unwrap());
    }

    #[test]
    fn an_armed_upgrade_that_keeps_failing_puts_the_kept_binary_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let exe = dir.path().join("bin").join("kanade-backend");
        kanade_shared::binary::write_complete(&exe, b"binary 1.0.0").unwrap();
        assert_eq!(on_start(&data, Some(&exe), &v("1.0.0")).unwrap(), Started::Go);
        confirm(&data, &v("1.0.0")).unwrap();
        let (kept, _) = arm(&data, &exe, &v("1.0.0")).unwrap();
        assert_eq!(kept.version, v("1.0.0"));
        // The operator installs 2.0.0, which never runs healthy.
        kanade_shared::binary::write_complete(&exe, b"binary 2.0.0").unwrap();
        for _ in 0..MAX_BOOT_ATTEMPTS {
            assert_eq!(on_start(&data, Some(&exe), &v("2.0.0")).unwrap(), Started::Go);
        }
        assert_eq!(
            on_start(&data, Some(&exe), &v("2.0.0")).unwrap(),
            Started::RolledBack { bad: v("2.0.0"), to: v("1.0.0") }
        );
        assert_eq!(std::fs::read(&exe).unwrap(), b"binary 1.0.0");
        assert!(check(&data, &v("2.0.0")).unwrap().is_some());
        assert_eq!(on_start(&data, Some(&exe), &v("1.0.0")).unwrap(), Started::Go);
        // `roll-back` on the old binary has nothing to do.
        assert_eq!(roll_back(&data, &exe, &v("1.0.0")), Ok(None));
    }

    #[test]
    fn a_kept_binary_goes_back_only_when_it_is_the_last_good_one_and_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let exe = dir.path().join("kanade-backend");
        kanade_shared::binary::write_complete(&exe, b"binary 1.0.0").unwrap();
        let quarantined = |last_good: &str| {
            let mut state = BootState { last_good: Some(v(last_good)), ..BootState::default() };
            state.quarantine(v("2.0.0"), Timestamp::now_utc(), "did not run healthy".into());
            state.save(&state_path(&data)).unwrap();
        };
        quarantined("1.0.0");
        let none = roll_back(&data, &exe, &v("2.0.0")).unwrap_err();
        assert!(none.contains("run `kanade-backend arm-for-swap` before an upgrade"), "{none}");

        // Kept as 1.0.0 (armed while it was the healthy one).
        BootState { last_good: Some(v("1.0.0")), ..BootState::default() }.save(&state_path(&data)).unwrap();
        arm(&data, &exe, &v("1.0.0")).unwrap();
        kanade_shared::binary::write_complete(&exe, b"binary 2.0.0").unwrap();

        quarantined("1.5.0");
        let other = roll_back(&data, &exe, &v("2.0.0")).unwrap_err();
        assert!(
            other.contains("the kept binary is version 1.0.0, not the last good version (1.5.0)"),
            "{other}"
        );

        quarantined("1.0.0");
        std::fs::write(kept_binary(&data), b"tampered").unwrap();
        let changed = roll_back(&data, &exe, &v("2.0.0")).unwrap_err();
        assert!(changed.contains("changed since it was kept"), "{changed}");
        assert_eq!(std::fs::read(&exe).unwrap(), b"binary 2.0.0", "nothing put back");
    }

    #[test]
    fn only_files_of_the_binarys_owner_that_no_one_else_writes_are_put_back() {
        assert_eq!(kept_file_trust(0, 0o100755, 0), Ok(()));
        assert_eq!(kept_file_trust(0, 0o40700, 0), Ok(()));
        assert!(
            kept_file_trust(999, 0o100755, 0)
                .unwrap_err()
                .contains("belongs to user 999, not to the binary's owner 0")
        );
        assert!(kept_file_trust(0, 0o100775, 0).unwrap_err().contains("may be written by others (mode 775)"));
        assert!(kept_file_trust(0, 0o40777, 0).is_err());
    }

    #[test]
    fn only_a_healthy_installed_version_is_kept() {
        let quarantined = {
            let mut s = BootState { last_good: Some(v("1")), ..BootState::default() };
            s.quarantine(v("2"), Timestamp::now_utc(), "x".into());
            s
        };
        let on_trial = BootState {
            last_good: Some(v("1")),
            trial: Some(Trial { version: v("2"), previous: Some(v("1")), attempts: 1 }),
            quarantined: vec![],
        };
        // (state, running) → Ok or what the refusal says
        let cases = [
            (BootState { last_good: Some(v("1")), ..BootState::default() }, "1", None),
            (BootState::default(), "1", Some("has not run healthy here yet")),
            (
                BootState { last_good: Some(v("1")), ..BootState::default() },
                "2",
                Some("last ran healthy here is 1"),
            ),
            (on_trial, "2", Some("is on trial")),
            (quarantined, "2", Some("is quarantined")),
        ];
        for (state, running, want) in cases {
            match (may_arm(&state, &v(running)), want) {
                (Ok(()), None) => {}
                (Err(why), Some(want)) => assert!(why.contains(want), "{running}: {why}"),
                (got, want) => panic!("{running}: {got:?}, wanted {want:?}"),
            }
        }
    }
}
