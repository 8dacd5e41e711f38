//! The rollout dispatcher: publishes waves whose time has come, after a restart too (waves live
//! in `rollout_waves`), and aborts a rollout whose failure ratio passed `max_failure_ratio`.
//! Publishing first and recording after is safe: agents run an exec at most once, so a wave
//! republished after a crash is absorbed by their ledgers.

use std::time::Duration;

use kanade_shared::manifest::Target;
use tokio::sync::watch;

use super::{ExecError, Pipeline, Stored, audit, plan, publish_commands};
use crate::db::projection::{Ended, ExecStep};
use crate::db::{now_ms, queries};
use crate::lease::Leadership;

const TICK: Duration = Duration::from_secs(1);

/// Abort when failures / reported results exceed the ratio (only once something has reported).
pub fn should_abort(max_failure_ratio: Option<f64>, failures: i64, reported: i64) -> bool {
    match max_failure_ratio {
        Some(max) if reported > 0 => failures as f64 / reported as f64 > max,
        _ => false,
    }
}

/// Publish due waves while `is_leader` (one backend publishes each wave).
pub async fn dispatcher(p: Pipeline, is_leader: Leadership, mut stop: watch::Receiver<bool>) {
    loop {
        if is_leader.leads()
            && let Err(e) = tick(&p, &is_leader).await
        {
            tracing::warn!(error = %e, "rollout dispatcher tick failed; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Every due wave, each on its own: one that can never be published (an unreadable plan or
/// target, commands the broker refuses) aborts its own execution with the reason and the others go on; a broker failure is
/// retried at the next tick.
async fn tick(p: &Pipeline, is_leader: &Leadership) -> Result<(), ExecError> {
    let now = now_ms();
    let due_waves = p.db.due_waves(now).await?;
    if due_waves.is_empty() {
        return Ok(());
    }
    // A frozen fleet holds later waves: they stay due and go out once the freeze ends.
    if let Some(f) = p.db.freeze().await?.filter(|f| f.covers(kanade_shared::wire::Timestamp::now_utc())) {
        tracing::debug!(waves = due_waves.len(), until = %f.until, "fleet frozen; later waves held");
        return Ok(());
    }
    for due in due_waves {
        // Asked before each wave: a backend that froze mid-tick publishes nothing more.
        if !is_leader.leads() {
            break;
        }
        let (exec_id, wave) = (due.exec_id, due.wave);
        match one_wave(p, due, now).await {
            Ok(()) => {}
            Err(ExecError::Invalid(why) | ExecError::Refused(why)) => {
                tracing::error!(%exec_id, wave, why, "wave cannot be published; aborting its execution");
                let step = ExecStep {
                    exec_id,
                    wave: Some(wave),
                    targets: Vec::new(),
                    message: Some(format!("wave {wave} cannot be published: {why}")),
                };
                let detail = serde_json::to_value(&step).unwrap_or_default();
                audit(&p.js, "rollout", "exec.aborted", Some(exec_id.to_string()), None, "backend", detail)
                    .await?;
                p.db.ended_early(step, Ended::Aborted, now).await?;
            }
            Err(e) => tracing::warn!(%exec_id, wave, error = %e, "wave not published; retrying next tick"),
        }
    }
    Ok(())
}

async fn one_wave(p: &Pipeline, due: queries::DueWave, now: i64) -> Result<(), ExecError> {
    {
        let stored: Stored = serde_json::from_str(&due.plan_json).map_err(|e| {
            ExecError::Invalid(format!("execution {} has an unreadable plan: {e}", due.exec_id))
        })?;
        let failures = due.failed + due.other;
        if should_abort(stored.max_failure_ratio, failures, due.done) {
            let message = format!(
                "stopped before wave {}: {failures} of {} results failed, above max_failure_ratio {}",
                due.wave,
                due.done,
                stored.max_failure_ratio.unwrap_or_default()
            );
            tracing::warn!(exec_id = %due.exec_id, "{message}");
            let step = ExecStep {
                exec_id: due.exec_id,
                wave: Some(due.wave),
                targets: Vec::new(),
                message: Some(message),
            };
            audit(
                &p.js,
                "rollout",
                "exec.aborted",
                Some(due.exec_id.to_string()),
                None,
                "backend",
                serde_json::to_value(&step).unwrap_or_default(),
            )
            .await?;
            p.db.ended_early(step, Ended::Aborted, now).await?;
            return Ok(());
        }
        let target: Target = queries::parse_target(&due.target_json)
            .map_err(|e| ExecError::Invalid(format!("execution {} wave {}: {e}", due.exec_id, due.wave)))?;
        // A kill since the wave was read cancelled it: never publish it.
        if !p.db.wave_still_due(due.exec_id, due.wave).await? {
            return Ok(());
        }
        let agents = p.db.known_agents().await?;
        let pcs: Vec<kanade_shared::PcId> = plan::expected_pcs(&target, &agents, now).into_iter().collect();
        publish_commands(&p.js, p.signer.as_deref(), &stored.command, &target).await?;
        let step = ExecStep { exec_id: due.exec_id, wave: Some(due.wave), targets: pcs, message: None };
        let detail = serde_json::to_value(&step).unwrap_or_default();
        p.db.wave_published(step, now, now).await?;
        // The wave is out and recorded: a failed audit event must not abort it.
        let audited = audit(
            &p.js,
            "rollout",
            "exec.wave_published",
            Some(due.exec_id.to_string()),
            None,
            "backend",
            detail,
        );
        if let Err(e) = audited.await {
            tracing::warn!(exec_id = %due.exec_id, wave = due.wave, error = %e, "wave published; its audit event was not taken");
        }
        tracing::info!(exec_id = %due.exec_id, wave = due.wave, "wave published");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::should_abort;

    #[test]
    fn abort_rule() {
        assert!(!should_abort(None, 10, 10));
        assert!(!should_abort(Some(0.2), 0, 0));
        assert!(!should_abort(Some(0.2), 1, 5));
        assert!(should_abort(Some(0.2), 2, 5));
        assert!(should_abort(Some(0.0), 1, 100));
        assert!(!should_abort(Some(1.0), 5, 5));
    }
}
