//! The runtime's self-update task: confirm a version on trial once it runs healthy, follow the
//! effective `target_version`, and when it names another version: wait the jitter, wait for
//! running jobs to finish, download this target's release, verify it, stage it, swap it in and
//! ask the runtime to restart. Failures are reported in heartbeats (`update_status`) and retried
//! with backoff; nothing is swapped unless the whole binary was verified and staged.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, anyhow};
use kanade_shared::boot::{BootState, HEALTHY_AFTER, Trial};
use kanade_shared::{Version, release};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::{Ctx, stopped};
use crate::update::install::{self, Layout};
use crate::update::policy::{self, Wish};
use crate::update::stamp::TARGET;

/// Jobs running at the moment an update is due get this long to finish before the swap.
const IDLE_WAIT_MAX: Duration = Duration::from_secs(3600);

pub(crate) async fn update_loop(ctx: Arc<Ctx>) {
    let Some(exe) = ctx.settings.update.as_ref().map(|u| u.exe.clone()) else { return };
    let layout = Layout::new(&ctx.settings.data_dir);
    let mut stop = ctx.shutdown.clone();
    let mut live = ctx.live_config.subscribe();
    let mut confirmed = false;
    let confirm_at = Instant::now() + HEALTHY_AFTER;
    // The version the current wait is for, and when it ends (drawn once per version).
    let mut pending: Option<(Version, Instant)> = None;
    let mut failures = 0u32;
    loop {
        if !confirmed && Instant::now() >= confirm_at && healthy(&ctx) {
            confirmed = true;
            edit_state(&ctx, &layout, |s| s.confirm(&ctx.version));
        }
        let patch = live.borrow_and_update().clone();
        if let Some(cleared) = patch.clear_quarantine {
            edit_state(&ctx, &layout, |s| {
                let gone = s.clear_before(cleared);
                if !gone.is_empty() {
                    tracing::info!(versions = ?gone, "quarantine cleared by an operator");
                }
            });
        }
        let wish =
            policy::wanted(patch.target_version.as_ref(), &ctx.version, &ctx.update.lock().unwrap().boot);
        // When to look again without a config change.
        let mut wake =
            if confirmed { None } else { Some(confirm_at.max(Instant::now() + Duration::from_secs(1))) };
        match wish {
            Wish::Stay => {
                pending = None;
                failures = 0;
                set_status(&ctx, None);
            }
            Wish::Refuse(_, why) => {
                pending = None;
                set_status(&ctx, Some(why));
            }
            Wish::Install(version) => {
                let due = match &pending {
                    Some((v, due)) if *v == version => *due,
                    _ => {
                        failures = 0;
                        let max = ctx.settings.update.as_ref().map_or(Duration::ZERO, |u| u.jitter);
                        let delay = policy::jitter(max, fastrand::f64());
                        tracing::info!(%version, delay_ms = delay.as_millis() as u64, "new version wanted; waiting the update jitter before downloading");
                        let due = Instant::now() + delay;
                        pending = Some((version.clone(), due));
                        due
                    }
                };
                if Instant::now() < due {
                    set_status(&ctx, Some(format!("installing {version} after the update jitter")));
                    wake = Some(wake.map_or(due, |w| w.min(due)));
                } else if let Some(busy_until) = busy(&ctx, due) {
                    set_status(&ctx, Some(format!("installing {version} once running jobs finish")));
                    wake = Some(wake.map_or(busy_until, |w| w.min(busy_until)));
                } else {
                    set_status(&ctx, Some(format!("installing {version}")));
                    // In its own task, so even a panic deep in a download ends as a retry.
                    let attempt = tokio::spawn({
                        let (ctx, exe, version) = (ctx.clone(), exe.clone(), version.clone());
                        async move { install(&ctx, &exe, &Layout::new(&ctx.settings.data_dir), &version).await }
                    });
                    let outcome =
                        attempt.await.unwrap_or_else(|e| Err(anyhow!("the update task failed: {e}")));
                    match outcome {
                        Ok(()) => {
                            tracing::info!(%version, "update installed; restarting into it");
                            ctx.restart.store(true, Ordering::SeqCst);
                            let _ = ctx.stop.send(true);
                            return;
                        }
                        Err(e) => {
                            failures += 1;
                            let retry = policy::retry_after(failures);
                            tracing::error!(%version, error = %format!("{e:#}"), ?retry, "update failed");
                            set_status(
                                &ctx,
                                Some(format!("{e:#}; retrying in {}", humantime::format_duration(retry))),
                            );
                            pending = Some((version, Instant::now() + retry));
                            wake = Some(Instant::now() + retry);
                        }
                    }
                }
            }
        }
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = live.changed() => {}
            () = sleep => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// Connected, and heartbeats have gone out.
fn healthy(ctx: &Ctx) -> bool {
    ctx.client.connection_state() == async_nats::connection::State::Connected
        && ctx.beats_sent.load(Ordering::Relaxed) > 0
}

/// When jobs are running and the idle wait since `due` is not over: when to look again.
fn busy(ctx: &Ctx, due: Instant) -> Option<Instant> {
    let running = ctx.running.load(Ordering::Relaxed) > 0;
    (running && Instant::now() < due + IDLE_WAIT_MAX).then(|| Instant::now() + Duration::from_secs(1))
}

async fn install(ctx: &Ctx, exe: &Path, layout: &Layout, version: &Version) -> anyhow::Result<()> {
    let key = release::key(version, TARGET);
    let store = ctx.js.get_object_store("agent_releases").await.context("cannot open agent_releases")?;
    let info = store.info(&key).await.map_err(|e| match e.kind() {
        async_nats::jetstream::object_store::InfoErrorKind::NotFound => anyhow!(
            "release {key} is not published (kanade agent publish <binary> --version {version} --target {TARGET})"
        ),
        _ => anyhow!("cannot read release {key}: {e}"),
    })?;
    let digest =
        info.digest.clone().ok_or_else(|| anyhow!("release {key} has no digest; refusing to install"))?;
    let mut body = Vec::with_capacity(info.size);
    // The object store checks the digest at the end of the read as well; either check refuses.
    // (Read in chunks: the object reader can fail after filling the buffer, which
    // `read_to_end` treats as a bug and panics on.)
    let read = async {
        let mut object = store.get(&key).await?;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match object.read(&mut chunk).await? {
                0 => break,
                n => body.extend_from_slice(&chunk[..n]),
            }
        }
        anyhow::Ok(())
    };
    if let Err(e) = read.await {
        if e.to_string().contains("digest") {
            return Err(anyhow!(
                "release {key} does not match its sha256 (corrupted or altered); not installed"
            ));
        }
        return Err(e.context(format!("cannot download release {key}")));
    }
    policy::verify_digest(&digest, &body).map_err(|e| anyhow!("release {key}: {e}"))?;
    // With pinned keys only a release the backend signed is installed: whoever holds broker
    // credentials that can write the store still cannot ship a binary to the fleet.
    let trusted = &ctx.settings.trusted_keys;
    if !trusted.is_empty() {
        kanade_shared::signing::verify_release(trusted, &key, &body, &info.metadata)
            .map_err(|e| anyhow!("release {key}: {e}; not installed"))?;
    }

    let staged = layout.staged(version);
    install::write_complete(&staged, &body).with_context(|| {
        format!("cannot stage {key} at {} (disk full?); nothing was swapped", staged.display())
    })?;
    // The trial is recorded before the swap, so the new binary's first start already counts.
    edit_state(ctx, layout, |s| {
        s.trial = Some(Trial { version: version.clone(), previous: Some(ctx.version.clone()), attempts: 0 });
    });
    crate::testfault::crash_before_swap(&staged);
    let swapped = install::swap_in(exe, &staged, &layout.last_good());
    let _ = std::fs::remove_file(&staged);
    if let Err(e) = swapped {
        edit_state(ctx, layout, |s| s.trial = None);
        return Err(anyhow!("cannot swap {} for {key}: {e}; the running binary is unchanged", exe.display()));
    }
    Ok(())
}

fn edit_state(ctx: &Ctx, layout: &Layout, edit: impl FnOnce(&mut BootState)) {
    let mut view = ctx.update.lock().unwrap();
    let before = view.boot.clone();
    edit(&mut view.boot);
    if view.boot != before
        && let Err(e) = view.boot.save(&layout.boot_state())
    {
        tracing::error!(error = %e, "cannot record the update state");
    }
}

fn set_status(ctx: &Ctx, status: Option<String>) {
    let mut view = ctx.update.lock().unwrap();
    if view.status != status {
        view.status = status;
        drop(view);
        ctx.beat_now.notify_one();
    }
}
