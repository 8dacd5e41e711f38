//! Command intake. Live commands arrive on core subscriptions (cheap, interest-based); what was
//! missed while offline is replayed from EXEC by [`catch_up`](super::catch_up), starting after
//! the last stream sequence it processed. Both paths go through [`admit`]; the ledger makes the
//! overlap harmless.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kanade_shared::subjects;
use tokio::sync::{Notify, oneshot};

use super::Ctx;
use super::admit::admit;
use super::catch_up::catch_up;
use super::runner::Via;

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
