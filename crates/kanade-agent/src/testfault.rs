//! Fault injection for the self-update tests, compiled into debug builds only: release binaries
//! ignore these variables. Each names the version (or arms a file) it applies to, so the test's
//! other versions run normally.

use std::path::Path;

use kanade_shared::Version;

fn armed_for(var: &str, version: &Version) -> bool {
    cfg!(debug_assertions) && std::env::var(var).is_ok_and(|v| v == version.as_str())
}

/// `KANADE_AGENT_TEST_FAIL_AT_START=<version>`: that version exits before its runtime starts.
pub fn fail_at_start(version: &Version) -> anyhow::Result<()> {
    if armed_for("KANADE_AGENT_TEST_FAIL_AT_START", version) {
        anyhow::bail!("version {version} was told to fail at start (KANADE_AGENT_TEST_FAIL_AT_START)");
    }
    Ok(())
}

/// `KANADE_AGENT_TEST_DIE_AFTER_UP=<version>`: that version aborts right after its first
/// heartbeat went out — up and connected, but before it is confirmed healthy.
pub fn dies_after_up(version: &Version) -> bool {
    armed_for("KANADE_AGENT_TEST_DIE_AFTER_UP", version)
}

pub fn die_after_up(version: &Version) {
    eprintln!("version {version} was told to die once up (KANADE_AGENT_TEST_DIE_AFTER_UP)");
    std::process::abort();
}

/// `KANADE_AGENT_TEST_CRASH_BEFORE_SWAP=<file>`: while that file exists, an update aborts the
/// process between staging the new binary and swapping it in. The file is removed first, so the
/// crash happens once per arming.
pub fn crash_before_swap(staged: &Path) {
    if !cfg!(debug_assertions) {
        return;
    }
    let Some(arm) = std::env::var_os("KANADE_AGENT_TEST_CRASH_BEFORE_SWAP") else { return };
    if std::fs::remove_file(&arm).is_ok() {
        eprintln!("crashing with {} staged, before the swap", staged.display());
        std::process::abort();
    }
}

/// `KANADE_AGENT_TEST_LEDGER_FULL=<file>`: while that file exists, recording a command in the
/// ledger fails as on a full disk. The running agent holds its store locked, so a test cannot
/// break the ledger from beside it.
pub fn ledger_full() -> bool {
    cfg!(debug_assertions)
        && std::env::var_os("KANADE_AGENT_TEST_LEDGER_FULL").is_some_and(|f| Path::new(&f).exists())
}
