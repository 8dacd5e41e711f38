//! Drains the outbox in order: publish with `Nats-Msg-Id`, wait for the JetStream ack, delete.
//! A failure stops the pass at that message, so order is kept across outages of any length.

use std::sync::Arc;
use std::time::Duration;

use super::Ctx;

const ACK_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_POLL: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(crate) async fn publish_loop(ctx: Arc<Ctx>) {
    let mut stop = ctx.shutdown.clone();
    let mut backoff = Duration::from_millis(200);
    loop {
        let delivered = match drain_once(&ctx).await {
            Ok(n) => {
                backoff = Duration::from_millis(200);
                n
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "outbox publish failed; will retry");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = super::stopped(&mut stop) => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if delivered == 0 {
            tokio::select! {
                () = ctx.outbox_wake.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
                () = super::stopped(&mut stop) => return,
            }
        }
    }
}

async fn drain_once(ctx: &Ctx) -> anyhow::Result<usize> {
    let batch = ctx.store.outbox(64)?;
    let mut delivered = 0;
    for message in batch {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", message.msg_id.as_str());
        let ack = async {
            ctx.js
                .publish_with_headers(message.subject.clone(), headers, message.payload.clone().into())
                .await?
                .await
                .map_err(anyhow::Error::from)
        };
        match tokio::time::timeout(ACK_TIMEOUT, ack).await {
            Ok(Ok(_)) => {
                ctx.store.acked(message.seq)?;
                delivered += 1;
            }
            Ok(Err(e)) => anyhow::bail!("{} on {}: {e}", message.msg_id, message.subject),
            Err(_) => {
                anyhow::bail!("{} on {}: no ack within {ACK_TIMEOUT:?}", message.msg_id, message.subject)
            }
        }
    }
    Ok(delivered)
}
