//! The kill switch. One subscription to every kill (`kill.*`), made before intake starts and
//! kept for the agent's lifetime; each run registers its exec id before anything of it starts
//! and is told when a trusted kill for it arrives. Kills are rare, so hearing every one of them
//! costs an agent nothing, while a subscription per run would add and remove one on the broker
//! for every PC of every broadcast. A kill for an exec with no run here yet is remembered for
//! [`REMEMBER_MS`] (its command may still be on its way, or in a later wave): a run registered
//! for it starts out killed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kanade_shared::{ExecId, subjects};
use tokio::sync::watch;

use super::{Ctx, now_ms};

/// How long a kill for an exec not seen yet is remembered, and how many such kills at most.
pub(crate) const REMEMBER_MS: i64 = 15 * 60_000;
const REMEMBER_MAX: usize = 4096;

/// The runs that can be killed now, and kills that came before their run.
#[derive(Default)]
pub(crate) struct Kills {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    runs: HashMap<ExecId, watch::Sender<bool>>,
    /// exec -> when its kill was heard (ms).
    early: HashMap<ExecId, i64>,
}

/// A run's registration; the run is forgotten when this is dropped.
pub(crate) struct Registered<'a> {
    kills: &'a Kills,
    exec: ExecId,
    pub killed: watch::Receiver<bool>,
}

impl Kills {
    pub fn register(&self, exec: ExecId, now_ms: i64) -> Registered<'_> {
        let mut inner = self.lock();
        let already = inner.early.remove(&exec).is_some_and(|at| now_ms - at < REMEMBER_MS);
        let (tx, killed) = watch::channel(already);
        inner.runs.insert(exec, tx);
        Registered { kills: self, exec, killed }
    }

    /// Tell the run of `exec`; with none here, remember the kill for a run that may come.
    /// Returns whether a run was told.
    pub fn kill(&self, exec: ExecId, now_ms: i64) -> bool {
        let mut inner = self.lock();
        if let Some(tx) = inner.runs.get(&exec) {
            let _ = tx.send(true);
            return true;
        }
        inner.early.retain(|_, at| now_ms - *at < REMEMBER_MS);
        if inner.early.len() >= REMEMBER_MAX
            && let Some(oldest) = inner.early.iter().min_by_key(|(_, at)| **at).map(|(e, _)| *e)
        {
            inner.early.remove(&oldest);
        }
        inner.early.insert(exec, now_ms);
        false
    }

    /// The execs with a run here now.
    pub fn registered(&self) -> Vec<ExecId> {
        self.lock().runs.keys().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned map is still a valid map: a panic cannot leave an insert half done.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.kills.lock().runs.remove(&self.exec);
    }
}

/// Hand every trusted kill to its run. With pinned keys a kill must be signed too, or anyone
/// who can publish could stop any run. Kills are core messages: one sent while this agent was
/// disconnected is lost, so after every reconnect the runs going here look their exec up in
/// `exec_kills`, where the backend records every kill.
pub(crate) async fn listen(ctx: Arc<Ctx>, mut sub: async_nats::Subscriber) {
    let mut stop = ctx.shutdown.clone();
    let mut reconnects = kanade_shared::nats::Reconnects::new(ctx.connects.clone());
    loop {
        let msg = tokio::select! {
            Some(msg) = sub.next() => msg,
            () = reconnects.next() => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let mut stop = ctx.shutdown.clone();
                    if super::spread_after_reconnect(&mut stop).await {
                        recheck(&ctx).await;
                    }
                });
                continue;
            }
            () = super::stopped(&mut stop) => return,
            else => return,
        };
        let Some(exec) = subjects::parse_kill(msg.subject.as_str()) else {
            tracing::warn!(subject = %msg.subject, "ignoring a kill that names no exec id");
            continue;
        };
        let trusted = &ctx.settings.trusted_keys;
        if !trusted.is_empty()
            && let Err(refusal) = kanade_shared::signing::verify_message(
                trusted,
                msg.subject.as_str(),
                &msg.payload,
                msg.headers.as_ref(),
                now_ms(),
            )
        {
            tracing::warn!(subject = %msg.subject, reason = %refusal, "ignoring kill");
            continue;
        }
        if ctx.kills.kill(exec, now_ms()) {
            tracing::info!(exec_id = %exec, "kill received");
        } else {
            tracing::info!(exec_id = %exec, "kill for a run not seen yet; remembered");
        }
    }
}

/// Stop every run here whose exec was killed while this agent could not hear it.
async fn recheck(ctx: &Ctx) {
    for exec in ctx.kills.registered() {
        if let Some(why) = super::view::kill_record(ctx, exec).await
            && ctx.kills.kill(exec, now_ms())
        {
            tracing::info!(exec_id = %exec, why, "kill missed while disconnected; stopping the run");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(n: u8) -> ExecId {
        ExecId::from_uuid(uuid::Uuid::from_bytes([
            0x01, 0x90, 0, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, n,
        ]))
    }

    #[test]
    fn only_a_registered_run_is_told_and_only_while_registered() {
        let kills = Kills::default();
        let run = kills.register(exec(1), 0);
        let other = kills.register(exec(2), 0);
        assert!(kills.kill(exec(1), 0));
        assert!(*run.killed.borrow());
        assert!(!*other.killed.borrow(), "a kill reaches only its own exec");
        drop(run);
        assert!(!kills.kill(exec(1), 0), "a finished run is forgotten");
        assert!(kills.kill(exec(2), 0));
    }

    #[test]
    fn a_kill_before_its_run_is_remembered_for_a_while() {
        let kills = Kills::default();
        assert!(!kills.kill(exec(3), 1_000), "nothing runs yet");
        assert!(*kills.register(exec(3), 1_000 + REMEMBER_MS - 1).killed.borrow(), "starts killed");
        assert!(!*kills.register(exec(3), 1_000).killed.borrow(), "remembered once, then forgotten");
        kills.kill(exec(4), 0);
        assert!(!*kills.register(exec(4), REMEMBER_MS).killed.borrow(), "too old");
    }

    #[test]
    fn remembered_kills_are_bounded() {
        let kills = Kills::default();
        for i in 0..(REMEMBER_MAX as i64 + 10) {
            let id = ExecId::from_uuid(uuid::Uuid::from_u128(
                0x0190_0000_0000_7000_8000_0000_0000_0000 + i as u128,
            ));
            kills.kill(id, i);
        }
        assert_eq!(kills.lock().early.len(), REMEMBER_MAX);
    }
}
