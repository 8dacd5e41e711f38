//! Catching up on EXEC at start, after a reconnect and after a group change: every command stored
//! for this agent's subjects after the last stream sequence it processed, admitted in stream
//! order. Read with direct gets (one request per filter and message, answered by the stream
//! itself), so a whole fleet reconnecting at once costs the broker no consumers and puts nothing
//! in its JetStream API queue, which serves one request at a time. An EXEC stream without direct
//! gets (a broker the backend has not updated yet) is read with a short-lived filtered consumer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::StatusCode;
use async_nats::jetstream::consumer::{AckPolicy, Consumer, DeliverPolicy, pull};
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{DirectGetErrorKind, Stream};
use futures::StreamExt;
use kanade_shared::subjects;

use super::Ctx;
use super::admit::admit;
use super::runner::Via;

/// The store key of the last EXEC sequence this agent processed.
const WATERMARK: &str = "exec_stream_seq";

/// Replay what was missed. Returns how many commands were read (admitted or found already in
/// the ledger); errors leave the watermark at the last command fully recorded.
pub(crate) async fn catch_up(ctx: &Arc<Ctx>) -> anyhow::Result<usize> {
    let groups = ctx.groups.read().await.clone();
    let filters = subjects::agent_command_filters(&ctx.settings.pc, &groups);
    let from = ctx.store.meta(WATERMARK)?.and_then(|s| s.parse::<u64>().ok()).map_or(1, |seq| seq + 1);
    let stream = ctx.js.get_stream_no_info("EXEC").await.map_err(|e| anyhow::anyhow!("EXEC stream: {e}"))?;
    match direct(ctx, &stream, &filters, from).await {
        Err(Failure::NotDirect) => {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "the EXEC stream does not answer direct gets; catching up with a consumer (start kanade-backend once to update the stream)"
                );
            }
            with_consumer(ctx, &stream, filters, from).await
        }
        Err(Failure::Other(e)) => Err(e),
        Ok(n) => Ok(n),
    }
}

/// Merge the filters' messages by sequence and admit each, moving the watermark past it.
async fn direct(
    ctx: &Arc<Ctx>,
    stream: &Stream<()>,
    filters: &[String],
    from: u64,
) -> Result<usize, Failure> {
    let mut merged = Merged::open(stream, "EXEC", filters, from).await?;
    let mut total = 0;
    while let Some(msg) = merged.next().await? {
        admit(ctx, msg.subject.as_str(), Some(&msg.headers), &msg.payload, Via::CatchUp).await?;
        ctx.store.set_meta(WATERMARK, &msg.sequence.to_string())?;
        total += 1;
    }
    Ok(total)
}

pub(crate) enum Failure {
    /// The stream does not answer direct gets.
    NotDirect,
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::Other(e.into())
    }
}

/// Several subject filters of one stream read with direct gets as one sequence-ordered list:
/// the next message of each filter is held, the lowest handed out, that filter's following one
/// fetched. One request per filter and message, answered by the stream itself (no consumer, no
/// JetStream API call).
pub(crate) struct Merged<'a> {
    stream: &'a Stream<()>,
    name: &'static str,
    filters: &'a [String],
    heads: Vec<Option<StreamMessage>>,
}

impl<'a> Merged<'a> {
    pub async fn open(
        stream: &'a Stream<()>,
        name: &'static str,
        filters: &'a [String],
        from: u64,
    ) -> Result<Self, Failure> {
        let mut heads = Vec::with_capacity(filters.len());
        for filter in filters {
            heads.push(next(stream, name, filter, from).await?);
        }
        Ok(Self { stream, name, filters, heads })
    }

    /// The next message of any filter, in stream order.
    pub async fn next(&mut self) -> Result<Option<StreamMessage>, Failure> {
        let Some(i) = lowest(self.heads.iter().map(|h| h.as_ref().map(|m| m.sequence))) else {
            return Ok(None);
        };
        let msg = self.heads[i].take().expect("lowest points at a held message");
        self.heads[i] = next(self.stream, self.name, &self.filters[i], msg.sequence + 1).await?;
        Ok(Some(msg))
    }
}

/// The first message on `filter` at or after `seq`, if any.
async fn next(
    stream: &Stream<()>,
    name: &str,
    filter: &str,
    seq: u64,
) -> Result<Option<StreamMessage>, Failure> {
    match stream.direct_get_next_for_subject(filter, Some(seq)).await {
        Ok(msg) => Ok(Some(msg)),
        Err(e) => match e.kind() {
            DirectGetErrorKind::NotFound => Ok(None),
            DirectGetErrorKind::ErrorResponse(StatusCode::NO_RESPONDERS, _) => Err(Failure::NotDirect),
            _ => Err(Failure::Other(anyhow::anyhow!("reading {name} after sequence {seq} on {filter}: {e}"))),
        },
    }
}

/// Which of the held messages (by sequence) comes first in the stream.
fn lowest(heads: impl IntoIterator<Item = Option<u64>>) -> Option<usize> {
    heads.into_iter().enumerate().filter_map(|(i, seq)| seq.map(|s| (s, i))).min().map(|(_, i)| i)
}

async fn with_consumer(
    ctx: &Arc<Ctx>,
    stream: &Stream<()>,
    filters: Vec<String>,
    from: u64,
) -> anyhow::Result<usize> {
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subjects: filters,
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from },
            ack_policy: AckPolicy::Explicit,
            // An agent that dies mid catch-up leaves nothing behind on the broker for long.
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating the catch-up consumer: {e}"))?;
    let name = consumer.cached_info().name.clone();
    let result = drain(ctx, &consumer).await;
    if let Err(e) = stream.delete_consumer(&name).await {
        tracing::debug!(error = %e, "catch-up consumer not deleted; it expires on its own");
    }
    result
}

async fn drain(ctx: &Arc<Ctx>, consumer: &Consumer<pull::Config>) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(256)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("fetching from EXEC: {e}"))?;
        let mut got = 0;
        let mut pending = None;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| anyhow::anyhow!("reading from EXEC: {e}"))?;
            let info = msg.info().map_err(|e| anyhow::anyhow!("message info: {e}"))?;
            let (seq, left) = (info.stream_sequence, info.pending);
            // Ack only after the ledger has it: a failure here means redelivery, not loss.
            admit(ctx, msg.subject.as_str(), msg.headers.as_ref(), &msg.payload, Via::CatchUp).await?;
            msg.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
            ctx.store.set_meta(WATERMARK, &seq.to_string())?;
            got += 1;
            pending = Some(left);
        }
        total += got;
        if got == 0 || pending == Some(0) {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lowest;

    #[test]
    fn the_lowest_sequence_goes_first_and_exhausted_filters_are_skipped() {
        assert_eq!(lowest([]), None);
        assert_eq!(lowest([None, None]), None);
        assert_eq!(lowest([Some(9), None, Some(4), Some(7)]), Some(2));
        assert_eq!(lowest([None, Some(1)]), Some(1));
    }
}
