//! Command intake. Live commands arrive on core subscriptions (cheap, interest-based); what was
//! missed while offline is replayed from EXEC by [`catch_up`](super::catch_up), starting after
//! the last stream sequence it processed. Both paths go through [`admit`]; the ledger makes the
//! overlap harmless.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kanade_shared::wire::{self, Command};
use kanade_shared::{signing, subjects};
use tokio::sync::{Notify, oneshot};

use super::catch_up::catch_up;
use super::runner::Via;
use super::{Ctx, now_ms, runner};
use crate::store::{Admission, StoreError};

pub(crate) async fn intake_loop(ctx: Arc<Ctx>) {
    let resubscribe = Arc::new(Notify::new());
    let replay = Arc::new(Notify::new());
    let (ready_tx, ready_rx) = oneshot::channel();
    let live = tokio::spawn(live_loop(ctx.clone(), resubscribe.clone(), replay.clone(), ready_tx));
    // Live subscriptions first, so nothing published during the catch-up falls in between.
    let _ = ready_rx.await;
    catch_up_supervisor(ctx.clone(), resubscribe, replay).await;
    let _ = live.await;
}

async fn live_loop(ctx: Arc<Ctx>, resubscribe: Arc<Notify>, replay: Arc<Notify>, ready: oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let mut stop = ctx.shutdown.clone();
    loop {
        let groups = ctx.groups.read().await.clone();
        let filters = subjects::agent_command_filters(&ctx.settings.pc, &groups);
        let subs = super::subscribe_each(&ctx, filters, "commands").await;
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        let mut merged = futures::stream::select_all(subs);
        loop {
            tokio::select! {
                Some(msg) = merged.next() => {
                    if let Err(e) = admit(&ctx, msg.subject.as_str(), msg.headers.as_ref(), &msg.payload, Via::Live).await {
                        // A live message has no redelivery: a catch-up replays it from EXEC (the
                        // watermark moves only past what the ledger recorded).
                        tracing::error!(error = %e, subject = %msg.subject, "cannot record command; it will be replayed");
                        replay.notify_one();
                    }
                }
                () = resubscribe.notified() => break,
                () = super::stopped(&mut stop) => return,
            }
        }
    }
}

/// Catch up at start and after every reconnect (or group change), retrying until it succeeds.
async fn catch_up_supervisor(ctx: Arc<Ctx>, resubscribe: Arc<Notify>, replay: Arc<Notify>) {
    let mut stop = ctx.shutdown.clone();
    let mut reconnects = kanade_shared::nats::Reconnects::new(ctx.connects.clone());
    let mut needed = true;
    let mut backoff = Duration::from_millis(250);
    let mut announced = false;
    loop {
        if needed {
            match catch_up(&ctx).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(replayed = n, "caught up with EXEC");
                    } else {
                        tracing::debug!(replayed = n, "caught up with EXEC");
                    }
                    if !announced {
                        tracing::info!("intake ready");
                        announced = true;
                    }
                    needed = false;
                    backoff = Duration::from_millis(250);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "catch-up failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        let retry = super::retry_pause(needed, backoff);
        tokio::select! {
            () = retry => {}
            () = reconnects.next() => {
                if !super::spread_after_reconnect(&mut stop).await {
                    return;
                }
                needed = true;
            }
            () = ctx.groups_changed.notified() => {
                resubscribe.notify_one();
                needed = true;
            }
            () = replay.notified() => needed = true,
            () = super::stopped(&mut stop) => return,
        }
    }
}

/// Addressed to me → well-formed → signed by a trusted key → ledger → run. A refused command is
/// never recorded or run; it is answered with a `failed` result saying why. Errors only when
/// the ledger could not be written (the caller must then not ack).
pub(crate) async fn admit(
    ctx: &Arc<Ctx>,
    subject: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
    via: Via,
) -> Result<(), StoreError> {
    let (target, job) = match subjects::parse_command(subject) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring message");
            return Ok(());
        }
    };
    let groups = ctx.groups.read().await.clone();
    if !target.addresses(&ctx.settings.pc, &groups) {
        tracing::debug!(subject, "not addressed to this agent");
        return Ok(());
    }
    let cmd: Command = match wire::decode(payload) {
        Ok(cmd) => cmd,
        Err(e) => {
            tracing::warn!(subject, error = %e, "refusing malformed command");
            return Ok(());
        }
    };
    if cmd.job_id != job {
        tracing::warn!(subject, job_id = %cmd.job_id, "refusing command whose job_id does not match its subject");
        return Ok(());
    }
    if !ctx.settings.trusted_keys.is_empty()
        && let Err(refusal) =
            signing::verify_message(&ctx.settings.trusted_keys, subject, payload, headers, now_ms())
    {
        tracing::warn!(subject, exec_id = %cmd.exec_id, reason = %refusal, "refusing command");
        return runner::report_refusal(ctx, &cmd, subject, payload, &refusal.to_string());
    }
    match ctx.store.admit(
        cmd.exec_id,
        &cmd.request_id.to_string(),
        &cmd.fingerprint(),
        subject,
        payload,
        now_ms(),
    )? {
        Admission::New => {
            tracing::info!(exec_id = %cmd.exec_id, job_id = %cmd.job_id, subject, ?via, "command admitted");
            tokio::spawn(runner::execute(ctx.clone(), cmd, via));
        }
        Admission::Duplicate => tracing::debug!(exec_id = %cmd.exec_id, subject, "already admitted"),
        Admission::Conflict => tracing::warn!(
            exec_id = %cmd.exec_id,
            subject,
            "exec_id arrived again with different content; refused, not run"
        ),
    }
    Ok(())
}
