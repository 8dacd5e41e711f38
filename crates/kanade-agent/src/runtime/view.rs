//! What the gates and the executor need from the broker: the job's fleet view (`script_status`,
//! `script_current`) and, for `script_object` commands, the script body. The fleet view is read
//! live and cached in the store, so a run started while the broker is down (an admitted run
//! resumed after a restart) is judged on the last known view and its age.

use std::time::Duration;

use kanade_shared::JobId;
use kanade_shared::wire::Command;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::{Ctx, kv, now_ms};
use crate::gates::FleetView;

const LIVE_TIMEOUT: Duration = Duration::from_secs(3);
/// An unchanged view is written back at most this often: every write is a synchronous commit,
/// and one per command would double an idle job's disk flushes. The cost is that a strict
/// staleness check made while the broker is unreachable sees the view up to this much older
/// than it was.
const REFRESH: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cached {
    revoked: bool,
    current: Option<String>,
    fetched_at_ms: i64,
}

/// How long after `issued_at` a live command's own view ([`Command::issued_view`]) stands in for
/// reading the buckets. A command heard live is normally milliseconds old, but the bound is
/// judged by the agent's clock, and Windows endpoints are often seconds off their backend; and
/// a loaded machine works through a broadcast's commands late. Later than this (a wave the
/// dispatcher published later, a clock far off) the agent reads the buckets.
pub(crate) const ISSUED_VIEW_FRESH: Duration = Duration::from_secs(10);

/// The view a command heard live carries, when it is fresh enough to judge by: the backend read
/// `script_status` and pinned `script_current` to the command's version when it issued it.
/// `None` (read the buckets) for a command without one, older than [`ISSUED_VIEW_FRESH`] by
/// this agent's clock, or under `staleness: strict`, which asks for a read of its own.
pub(crate) fn issued(cmd: &Command, now: kanade_shared::wire::Timestamp) -> Option<FleetView> {
    let view = cmd.issued_view?;
    if cmd.staleness.mode == kanade_shared::wire::StalenessMode::Strict {
        return None;
    }
    let age = now - cmd.issued_at;
    let bound = time::Duration::try_from(ISSUED_VIEW_FRESH).ok()?;
    if age > bound || age < -bound {
        return None;
    }
    Some(FleetView {
        revoked: view.revoked,
        current_version: Some(cmd.version.clone()),
        age: Some(Duration::try_from(age).unwrap_or(Duration::ZERO)),
        killed: None,
    })
}

/// The fleet view of a command's job: the command's own when [`issued`] takes it (and then
/// cached like a read one), else read live.
pub(crate) async fn for_command(ctx: &Ctx, cmd: &Command, live: bool) -> FleetView {
    match issued(cmd, kanade_shared::wire::Timestamp::now_utc()).filter(|_| live) {
        Some(view) => {
            remember_issued(ctx, cmd);
            view
        }
        None => read(ctx, &cmd.job_id).await,
    }
}

/// Cache the view a command carries, as if read at its `issued_at`.
pub(crate) fn remember_issued(ctx: &Ctx, cmd: &Command) {
    let Some(view) = cmd.issued_view else { return };
    let fresh = Cached {
        revoked: view.revoked,
        current: Some(cmd.version.to_string()),
        fetched_at_ms: (cmd.issued_at.unix_timestamp_nanos() / 1_000_000) as i64,
    };
    remember(ctx, &format!("view.{}", cmd.job_id), &fresh);
}

/// Cache a view when [`needs_write`] says so.
fn remember(ctx: &Ctx, key: &str, fresh: &Cached) {
    if needs_write(cached(ctx, key).as_ref(), fresh)
        && let Ok(json) = serde_json::to_string(fresh)
        && let Err(e) = ctx.store.set_meta(key, &json)
    {
        tracing::warn!(error = %e, "cannot cache the fleet view");
    }
}

pub(crate) async fn read(ctx: &Ctx, job: &JobId) -> FleetView {
    let key = format!("view.{job}");
    match tokio::time::timeout(LIVE_TIMEOUT, read_live(ctx, job)).await {
        Ok(Ok((revoked, current))) => {
            remember(ctx, &key, &Cached { revoked, current: current.clone(), fetched_at_ms: now_ms() });
            FleetView {
                revoked,
                current_version: current.and_then(|v| v.parse().ok()),
                age: Some(Duration::ZERO),
                killed: None,
            }
        }
        live => {
            if let Ok(Err(e)) = live {
                tracing::warn!(job_id = %job, error = %e, "cannot read the fleet view; using the cached one");
            }
            match cached(ctx, &key) {
                Some(c) => FleetView {
                    revoked: c.revoked,
                    current_version: c.current.and_then(|v| v.parse().ok()),
                    age: Some(Duration::from_millis(now_ms().saturating_sub(c.fetched_at_ms).max(0) as u64)),
                    killed: None,
                },
                None => FleetView::default(),
            }
        }
    }
}

/// Why an operator killed `exec`, from `exec_kills`; `None` when they did not or the broker
/// cannot say now (the run then goes ahead, as a live agent that missed nothing would).
pub(crate) async fn kill_record(ctx: &Ctx, exec: kanade_shared::ExecId) -> Option<String> {
    let key = exec.to_string();
    match tokio::time::timeout(LIVE_TIMEOUT, kv::get(ctx, kanade_shared::jetstream::EXEC_KILLS, &key)).await {
        Ok(Ok(value)) => value.map(|v| String::from_utf8_lossy(&v).into_owned()),
        Ok(Err(e)) => {
            tracing::warn!(exec_id = %exec, error = %e, "cannot read exec_kills; assuming not killed");
            None
        }
        Err(_) => None,
    }
}

fn cached(ctx: &Ctx, key: &str) -> Option<Cached> {
    ctx.store.meta(key).ok().flatten().and_then(|s| serde_json::from_str(&s).ok())
}

/// Write the fresh view back when it differs from the stored one or the stored one is older
/// than [`REFRESH`].
fn needs_write(stored: Option<&Cached>, fresh: &Cached) -> bool {
    stored.is_none_or(|old| {
        old.revoked != fresh.revoked
            || old.current != fresh.current
            || fresh.fetched_at_ms.saturating_sub(old.fetched_at_ms) >= REFRESH.as_millis() as i64
    })
}

async fn read_live(ctx: &Ctx, job: &JobId) -> anyhow::Result<(bool, Option<String>)> {
    let (status, current) = tokio::try_join!(
        kv::get(ctx, "script_status", job.as_str()),
        kv::get(ctx, "script_current", job.as_str())
    )?;
    let revoked = status.is_some_and(|v| v.as_ref().eq_ignore_ascii_case(b"REVOKED"));
    let current = current.map(|v| String::from_utf8_lossy(&v).trim().to_owned()).filter(|v| !v.is_empty());
    Ok((revoked, current))
}

/// The script body: inline, or a `script_object` checked against the sha256 the command
/// carries: from this agent's cache (`<data_dir>/scripts/<sha256>`, private like the rest of
/// the data dir) when it has that content, else fetched from the `scripts` object store and
/// kept there for the next run.
pub(crate) async fn script(ctx: &Ctx, cmd: &Command) -> Result<String, String> {
    if let Some(script) = &cmd.script {
        return Ok(script.clone());
    }
    let Some(key) = &cmd.script_object else {
        return Err("command has neither script nor script_object".into());
    };
    let Some(want) = &cmd.script_sha256 else {
        return Err(format!(
            "script_object {key} comes without script_sha256; refusing to run an unverified script"
        ));
    };
    let want = want.to_ascii_lowercase();
    let cached = script_cache(&ctx.settings.data_dir, &want);
    if let Some(path) = &cached
        && let Ok(body) = std::fs::read(path)
        && kanade_shared::files::sha256_hex(&body) == want
    {
        tracing::debug!(key, sha256 = want, "script from the cache");
        return String::from_utf8(body).map_err(|_| format!("script {key} is not UTF-8 text"));
    }
    let store = ctx
        .js
        .get_object_store("scripts")
        .await
        .map_err(|e| format!("cannot open the scripts store: {e}"))?;
    let mut object = store.get(key).await.map_err(|e| format!("cannot fetch script {key}: {e}"))?;
    let mut body = Vec::new();
    object.read_to_end(&mut body).await.map_err(|e| format!("cannot read script {key}: {e}"))?;
    let got = kanade_shared::files::sha256_hex(&body);
    if got != want {
        return Err(format!("script {key} has sha256 {got}, command expects {want}; not run"));
    }
    let text = String::from_utf8(body).map_err(|_| format!("script {key} is not UTF-8 text"))?;
    if let Some(path) = &cached {
        keep_script(path, text.as_bytes());
    }
    tracing::debug!(key, sha256 = want, "script fetched");
    Ok(text)
}

/// Scripts kept at most: the oldest go first.
const CACHED_SCRIPTS: usize = 64;

/// Where a script of this sha256 is cached; `None` for a hash that is not 64 hex digits (never
/// a path of its own making).
fn script_cache(data_dir: &std::path::Path, sha256: &str) -> Option<std::path::PathBuf> {
    (sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| data_dir.join("scripts").join(sha256))
}

/// Keep a verified script (a failed write only costs a fetch next time), then prune the cache
/// to [`CACHED_SCRIPTS`].
fn keep_script(path: &std::path::Path, body: &[u8]) {
    if let Err(e) = kanade_shared::binary::write_complete(path, body) {
        tracing::warn!(path = %path.display(), error = %e, "cannot cache the script");
        return;
    }
    let Some(dir) = path.parent() else { return };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if files.len() > CACHED_SCRIPTS {
        files.sort();
        for (_, old) in &files[..files.len() - CACHED_SCRIPTS] {
            let _ = std::fs::remove_file(old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(revoked: bool, current: Option<&str>, at: i64) -> Cached {
        Cached { revoked, current: current.map(str::to_owned), fetched_at_ms: at }
    }

    #[test]
    fn a_live_command_is_judged_on_its_own_view_only_while_fresh() {
        use kanade_shared::wire::{IssuedView, Shell, StalenessMode, Timestamp};
        let issued_at = Timestamp::UNIX_EPOCH + time::Duration::seconds(1_000);
        let command = |view: Option<IssuedView>, strict: bool| {
            let mut cmd = Command::inline("j".parse().unwrap(), "3".parse().unwrap(), Shell::Sh, "true");
            cmd.issued_at = issued_at;
            cmd.issued_view = view;
            if strict {
                cmd.staleness.mode = StalenessMode::Strict;
            }
            cmd
        };
        let at = |ms: i64| issued_at + time::Duration::milliseconds(ms);
        let fresh = |revoked: bool, age_ms: u64| {
            Some(FleetView {
                revoked,
                current_version: Some("3".parse().unwrap()),
                age: Some(Duration::from_millis(age_ms)),
                killed: None,
            })
        };
        let active = Some(IssuedView { revoked: false });
        let revoked = Some(IssuedView { revoked: true });
        for (cmd, now, want) in [
            (command(active, false), at(15), fresh(false, 15)),
            (command(revoked, false), at(15), fresh(true, 15)),
            (command(active, false), at(10_000), fresh(false, 10_000)),
            // Older than the bound: read the buckets.
            (command(active, false), at(10_001), None),
            // A clock behind the backend's counts as age zero, within the same bound.
            (command(active, false), at(-500), fresh(false, 0)),
            (command(active, false), at(-10_001), None),
            // Nothing carried (an older backend, `kanade run`), or strict staleness: read.
            (command(None, false), at(15), None),
            (command(active, true), at(15), None),
        ] {
            assert_eq!(issued(&cmd, now), want, "{:?} at {now}", cmd.issued_view);
        }
    }

    #[test]
    fn an_unchanged_view_is_written_back_once_a_minute() {
        let stored = view(false, Some("1.0"), 1_000);
        assert!(needs_write(None, &view(false, None, 0)), "nothing stored yet");
        assert!(!needs_write(Some(&stored), &view(false, Some("1.0"), 1_000 + 59_999)));
        assert!(needs_write(Some(&stored), &view(false, Some("1.0"), 1_000 + 60_000)));
        assert!(needs_write(Some(&stored), &view(true, Some("1.0"), 1_001)), "revoked");
        assert!(needs_write(Some(&stored), &view(false, Some("1.1"), 1_001)), "new version");
        assert!(needs_write(Some(&stored), &view(false, None, 1_001)), "pin removed");
    }
}
