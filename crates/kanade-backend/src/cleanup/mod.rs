//! Cleanup: expires executions that stopped making progress (audited as `exec.expired`, so a
//! rebuilt projection agrees) and applies retention to every table. Runs at start and every
//! few minutes.

pub mod policy;

use std::time::Duration;

use kanade_shared::config::RetentionConfig;
use tokio::sync::watch;

use crate::db::maintenance::Pruned;
use crate::db::projection::{Ended, ExecStep};
use crate::db::{Db, now_ms};
use crate::events::Bus;
use crate::lease::Leadership;
use crate::pipeline::{ExecError, audit};

const EVERY: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct Cleanup {
    pub db: Db,
    pub js: async_nats::jetstream::Context,
    pub bus: Bus,
    pub retention: RetentionConfig,
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub expired: Vec<kanade_shared::ExecId>,
    pub pruned: Pruned,
}

/// Passes at start and every few minutes. Only the leader expires (once across backends); each
/// backend prunes its own database, and with a shared one only the leader does.
pub async fn worker(c: Cleanup, mut is_leader: Leadership, mut stop: watch::Receiver<bool>) {
    // The first pass waits for the campaign's first answer, so a lone backend expires at start.
    let _ = tokio::time::timeout(Duration::from_secs(5), is_leader.changed()).await;
    loop {
        let leader = is_leader.leads();
        let pass =
            if leader || !c.db.shared() { run_pass(&c, now_ms(), leader).await } else { Ok(Pass::default()) };
        match pass {
            Ok(pass) if !pass.expired.is_empty() || pass.pruned != Pruned::default() => {
                tracing::info!(expired = pass.expired.len(), pruned = ?pass.pruned, "cleanup pass");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cleanup pass failed; retrying at the next one"),
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One pass as of `now_ms` (tests pass a future instant instead of waiting).
pub async fn run_once(c: &Cleanup, now_ms: i64) -> Result<Pass, ExecError> {
    run_pass(c, now_ms, true).await
}

async fn run_pass(c: &Cleanup, now_ms: i64, expire: bool) -> Result<Pass, ExecError> {
    let stall_after = policy::stall_after_ms(&c.retention);
    let quiet = if expire { c.db.quiet_executions(now_ms - stall_after).await? } else { Vec::new() };
    let mut expired = Vec::new();
    for q in quiet.into_iter().filter(|q| policy::is_stalled(q, now_ms, stall_after)) {
        let step = ExecStep {
            exec_id: q.exec_id,
            wave: None,
            targets: Vec::new(),
            message: Some(policy::expiry_message(&q, c.retention.stall_after)),
        };
        // Audited first: if the write below is lost, the AUDIT projector applies the same change.
        let detail = serde_json::to_value(&step).unwrap_or_default();
        audit(&c.js, "cleanup", "exec.expired", Some(q.exec_id.to_string()), None, "backend", detail).await?;
        c.db.ended_early(step, Ended::Expired, now_ms).await?;
        c.bus.execution(q.exec_id);
        expired.push(q.exec_id);
    }
    let cut = policy::cutoffs(now_ms, &c.retention);
    let pruned = c.db.prune(cut).await?;
    Ok(Pass { expired, pruned })
}
