//! Drains the outbox in order: publish with `Nats-Msg-Id`, wait for the JetStream acks, delete.
//! A failure stops the pass at that message and the rest is sent again after it, so nothing is
//! lost across outages of any length and a message is never dropped for a later one's sake.

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

/// One pass over the oldest queued messages: publish each and wait for its ack, in order, then
/// delete the acked ones in one transaction. The first message without an ack ends the pass; it
/// and everything after it are sent again next pass, under the same `Nats-Msg-Id`.
async fn drain_once(ctx: &Ctx) -> anyhow::Result<usize> {
    let batch = ctx.store.outbox(64)?;
    let mut acked = Vec::with_capacity(batch.len());
    let mut failure = None;
    for message in &batch {
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
            Ok(Ok(_)) => acked.push(message.seq),
            Ok(Err(e)) => {
                failure = Some(anyhow::anyhow!("{} on {}: {e}", message.msg_id, message.subject));
                break;
            }
            Err(_) => {
                failure = Some(anyhow::anyhow!(
                    "{} on {}: no ack within {ACK_TIMEOUT:?}",
                    message.msg_id,
                    message.subject
                ));
                break;
            }
        }
    }
    if !acked.is_empty() {
        ctx.store.acked(&acked)?;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(acked.len()),
    }
}
