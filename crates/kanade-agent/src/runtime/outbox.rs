//! Drains the outbox in order: publish with `Nats-Msg-Id`, wait for the JetStream acks, hand
//! the acked ones to the store (which deletes them with the next run's start or end, or when
//! idle: [`crate::store::Store::acked`]).
//! A transient failure (no broker, no ack) stops the pass at that message and the rest is sent
//! again after it, so nothing is lost across outages of any length. A permanent one (the message
//! is larger than the broker accepts) never blocks what is behind it: a result is cut down to
//! fit, or replaced by a small `failed` result saying why; anything else too large is dropped
//! with an error in the log. Observability events (`obs.<pc>`) never hold up a result either:
//! when one gets no ack (a broker without stream OBS, an `auth.conf` from before it), the rest
//! of the pass skips the events and the results behind them still go; events are tried again
//! after a backoff of their own, in order among themselves.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use kanade_shared::wire::{self, ExecResult};

use super::Ctx;
use crate::store::Outgoing;

const ACK_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_POLL: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long events wait after one went unacked: doubling up to this.
const MAX_EVENTS_BACKOFF: Duration = Duration::from_secs(300);

pub(crate) async fn publish_loop(ctx: Arc<Ctx>) {
    let mut stop = ctx.shutdown.clone();
    let mut backoff = Duration::from_millis(200);
    let mut events = EventsLane::default();
    loop {
        let again = match drain_once(&ctx, events.open()).await {
            Ok(pass) => {
                backoff = Duration::from_millis(200);
                events.after(pass.events_failed);
                pass.again()
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
        if !again {
            tokio::select! {
                () = ctx.outbox_wake.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => settle(&ctx),
                () = super::stopped(&mut stop) => return,
            }
        }
    }
}

/// Delete what the broker acked now: nothing was written for a while to carry the delete (see
/// [`crate::store::Store::acked`]). A failure only means those messages may go again after a
/// crash, under the same ids.
pub(crate) fn settle(ctx: &Ctx) {
    if let Err(e) = ctx.store.settle() {
        tracing::warn!(error = %e, "cannot delete acked messages from the outbox; will retry");
    }
}

/// Whether observability events are sent this pass, and their own backoff.
#[derive(Debug, Default)]
pub(crate) struct EventsLane {
    paused_until: Option<std::time::Instant>,
    backoff: Duration,
}

impl EventsLane {
    pub fn open(&self) -> bool {
        self.paused_until.is_none_or(|t| std::time::Instant::now() >= t)
    }

    fn after(&mut self, failed: bool) {
        if !failed {
            if self.open() {
                *self = Self::default();
            }
            return;
        }
        self.backoff = (self.backoff * 2).clamp(IDLE_POLL, MAX_EVENTS_BACKOFF);
        tracing::warn!(retry_in = ?self.backoff, "observability events get no ack from the broker (stream OBS missing, or auth.conf without obs.<pc>?); results still go, events are tried again later");
        self.paused_until = Some(std::time::Instant::now() + self.backoff);
    }
}

/// Messages read per pass.
const BATCH: usize = 64;

/// What one pass did.
pub(crate) struct Pass {
    pub delivered: usize,
    /// An event got no ack: the rest of the pass left events alone.
    pub events_failed: bool,
    /// The read came back full: more may be waiting behind it.
    pub full: bool,
}

impl Pass {
    /// Whether to read the outbox again now rather than wait for a wake. A pass that read
    /// fewer than [`BATCH`] handed out everything queued before its read, and everything
    /// queued since wakes the loop (`outbox_wake` keeps a wake that finds nobody waiting), so
    /// reading again would only find the rows it just acked: one query a run for nothing.
    /// A full pass that delivered nothing waits too (its events are backing off).
    fn again(&self) -> bool {
        self.full && self.delivered > 0
    }
}

fn is_event(m: &Outgoing) -> bool {
    m.subject.starts_with("obs.")
}

/// One pass over the oldest queued messages (only non-events when `with_events` is false):
/// publish each and wait for its ack, in order, then hand the acked ones to the store.
/// The first result without an ack ends the pass; it and everything after it are sent again
/// next pass, under the same `Nats-Msg-Id`. An event without an ack only stops the events.
pub(crate) async fn drain_once(ctx: &Ctx, with_events: bool) -> anyhow::Result<Pass> {
    let batch =
        if with_events { ctx.store.outbox(BATCH)? } else { ctx.store.outbox_except_prefix("obs.", BATCH)? };
    let full = batch.len() == BATCH;
    let mut acked = Vec::with_capacity(batch.len());
    let mut failure = None;
    let mut events_failed = false;
    for message in &batch {
        if events_failed && is_event(message) {
            continue;
        }
        let mut payload = message.payload.clone();
        // At most twice: as queued, then (when the broker cannot take it) as fitted to its limit,
        // so the fitted message still goes out before the ones behind it.
        let outcome = loop {
            match publish(ctx, message, &payload).await {
                Err(Failure::TooLarge(e)) if payload == message.payload => {
                    match settle_oversized(ctx, message, &e) {
                        Ok(Some(fitted)) => payload = fitted,
                        Ok(None) => break Ok(false),
                        Err(store) => break Err(anyhow::anyhow!("{}: {store}", message.msg_id)),
                    }
                }
                Err(Failure::TooLarge(e)) => {
                    break Err(anyhow::anyhow!("{} still too large after fitting: {e}", message.msg_id));
                }
                Err(Failure::Transient(e)) => break Err(e),
                Ok(()) => break Ok(true),
            }
        };
        match outcome {
            Ok(true) => acked.push(message.seq),
            Ok(false) => {}
            Err(e) if is_event(message) => {
                tracing::debug!(error = %e, "observability event not acked; events wait");
                events_failed = true;
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if !acked.is_empty() {
        ctx.store.acked(&acked)?;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(Pass { delivered: acked.len(), events_failed, full }),
    }
}

enum Failure {
    /// The broker will never take this message as it is.
    TooLarge(PublishError),
    /// No broker, no ack: send it (and what follows) again later.
    Transient(anyhow::Error),
}

async fn publish(ctx: &Ctx, message: &Outgoing, payload: &[u8]) -> Result<(), Failure> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", message.msg_id.as_str());
    let ack = async {
        ctx.js.publish_with_headers(message.subject.clone(), headers, payload.to_vec().into()).await?.await
    };
    match tokio::time::timeout(ACK_TIMEOUT, ack).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == PublishErrorKind::MaxPayloadExceeded => Err(Failure::TooLarge(e)),
        Ok(Err(e)) => {
            Err(Failure::Transient(anyhow::anyhow!("{} on {}: {e}", message.msg_id, message.subject)))
        }
        Err(_) => Err(Failure::Transient(anyhow::anyhow!(
            "{} on {}: no ack within {ACK_TIMEOUT:?}",
            message.msg_id,
            message.subject
        ))),
    }
}

/// A message the broker will never take as it is (written before the server's limit was known,
/// or the limit shrank): a result is fitted to the current limit and rewritten in place, so it
/// keeps its place and its `Nats-Msg-Id`; anything else is dropped (`None`).
fn settle_oversized(
    ctx: &Ctx,
    message: &Outgoing,
    error: &PublishError,
) -> Result<Option<Vec<u8>>, crate::store::StoreError> {
    let budget = super::fit::payload_budget(ctx);
    match wire::decode::<ExecResult>(&message.payload) {
        Ok(mut result) if message.subject.starts_with("results.") => {
            let payload = super::fit::fit_result(&mut result, budget);
            tracing::warn!(
                msg_id = message.msg_id,
                size = message.payload.len(),
                budget,
                %error,
                "result too large for the broker; output cut to fit"
            );
            ctx.store.replace_payload(message.seq, &payload)?;
            Ok(Some(payload))
        }
        _ => {
            tracing::error!(
                msg_id = message.msg_id,
                subject = message.subject,
                size = message.payload.len(),
                budget,
                %error,
                "message too large for the broker; dropped"
            );
            ctx.store.acked(&[message.seq])?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_reads_again_only_after_a_full_read_that_delivered() {
        // (delivered, full) → read again now
        let table = [
            ((0, false), false),
            ((3, false), false),
            ((0, true), false),
            ((BATCH, true), true),
            ((1, true), true),
        ];
        for ((delivered, full), again) in table {
            let pass = Pass { delivered, events_failed: false, full };
            assert_eq!(pass.again(), again, "delivered {delivered}, full {full}");
        }
    }
}
