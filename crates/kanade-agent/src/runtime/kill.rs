//! The kill switch. One subscription to every kill (`kill.*`), made before intake starts and
//! kept for the agent's lifetime; each run registers its exec id before anything of it starts
//! and is told when a trusted kill for it arrives. Kills are rare, so hearing every one of them
//! costs an agent nothing, while a subscription per run would add and remove one on the broker
//! for every PC of every broadcast.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kanade_shared::{ExecId, subjects};
use tokio::sync::watch;

use super::{Ctx, now_ms};

/// The runs that can be killed now.
#[derive(Default)]
pub(crate) struct Kills {
    runs: Mutex<HashMap<ExecId, watch::Sender<bool>>>,
}

/// A run's registration; the run is forgotten when this is dropped.
pub(crate) struct Registered<'a> {
    kills: &'a Kills,
    exec: ExecId,
    pub killed: watch::Receiver<bool>,
}

impl Kills {
    pub fn register(&self, exec: ExecId) -> Registered<'_> {
        let (tx, killed) = watch::channel(false);
        self.lock().insert(exec, tx);
        Registered { kills: self, exec, killed }
    }

    /// Tell the run of `exec`, if there is one here. Returns whether there was.
    pub fn kill(&self, exec: ExecId) -> bool {
        self.lock().get(&exec).map(|tx| tx.send(true)).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ExecId, watch::Sender<bool>>> {
        // A poisoned map is still a valid map: a panic cannot leave an insert half done.
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.kills.lock().remove(&self.exec);
    }
}

/// Hand every trusted kill to its run. With pinned keys a kill must be signed too, or anyone
/// who can publish could stop any run.
pub(crate) async fn listen(ctx: Arc<Ctx>, mut sub: async_nats::Subscriber) {
    let mut stop = ctx.shutdown.clone();
    loop {
        let msg = tokio::select! {
            Some(msg) = sub.next() => msg,
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
        if ctx.kills.kill(exec) {
            tracing::info!(exec_id = %exec, "kill received");
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
        assert!(!kills.kill(exec(1)), "nothing runs yet");
        let run = kills.register(exec(1));
        let other = kills.register(exec(2));
        assert!(kills.kill(exec(1)));
        assert!(*run.killed.borrow());
        assert!(!*other.killed.borrow(), "a kill reaches only its own exec");
        drop(run);
        assert!(!kills.kill(exec(1)), "a finished run is forgotten");
        assert!(kills.kill(exec(2)));
    }
}
