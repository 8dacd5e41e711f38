//! Projectors: durable pull consumers that turn streams into rows. Each fetches a batch, writes
//! it in one transaction, then acks it with one cumulative ack (ack policy `all`) of its last
//! message: one message per batch instead of one per row. That is safe because one process
//! pulls from a consumer at a time and batches are written and acked in stream order, and
//! because a consumer found with acks pending (a crashed process had fetched past what it wrote)
//! is recreated from its ack floor before anything is pulled, so a new process's first ack
//! never covers messages nobody wrote; and because a delivery lost on the way (a node killed
//! with it in flight) shows as a skipped consumer sequence number ([`Deliveries`]), upon which
//! the projector starts over from the ack floor rather than ack past it. A message that cannot be decoded is logged and skipped,
//! never retried forever. Each projector is supervised: an error restarts it with backoff.

mod budget;
mod heartbeats;
mod samples;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use futures::StreamExt;
use kanade_shared::wire::{
    self, AuditEvent, ExecResult, Inventory, NotificationMessage, NotifyAck, ObsEvent, StartedEvent,
};
use tokio::sync::watch;

pub use heartbeats::heartbeat_projector;
pub use samples::{host_perf_projector, process_perf_projector};

use crate::db::fence::Fence;
use crate::db::projection::{ProjectionName, ResultRows};
use crate::db::{Db, DbError, now_ms};
use crate::events::Bus;
use crate::lease::Leadership;

const BATCH: usize = 5000;
/// The least a fetch in progress hands to a waiting writer: fewer would cost a transaction
/// for a handful of rows.
const HANDOVER_MIN: usize = 250;
/// A fetch returns as soon as anything is there, so while a broadcast's results trickle in each
/// batch would hold a handful, and each costs a fetch request, a transaction, its share of WAL
/// checkpoints and an ack. After a batch that drained the consumer the next fetch waits this
/// long (the batch is written meanwhile), gathering what arrives: a run's result waits at most
/// this much more; a full batch is followed at once.
const LINGER: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Results,
    Events,
    Audit,
    Inventory,
    Obs,
    Notifications,
}

/// How many streams are projected (the size of the per-stream counters).
pub const KINDS: usize = 6;

impl Kind {
    pub const ALL: [Kind; KINDS] =
        [Kind::Results, Kind::Events, Kind::Audit, Kind::Inventory, Kind::Obs, Kind::Notifications];

    pub fn stream(self) -> &'static str {
        match self {
            Self::Results => "RESULTS",
            Self::Events => "EVENTS",
            Self::Audit => "AUDIT",
            Self::Inventory => "INVENTORY",
            Self::Obs => "OBS",
            Self::Notifications => "NOTIFICATIONS",
        }
    }

    fn durable_prefix(self) -> String {
        format!("backend-{}-", self.stream().to_ascii_lowercase())
    }

    /// The durable consumer of this projection for this stream.
    pub fn durable(self, name: &ProjectionName) -> String {
        format!("{}{}-{}", self.durable_prefix(), name.id, name.generation)
    }

    /// The name consumers had before they carried the projection's id.
    fn legacy_durable(self, name: &ProjectionName) -> String {
        format!("{}{}", self.durable_prefix(), name.generation)
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Stats {
    pub projected: [AtomicU64; KINDS],
    pub malformed: [AtomicU64; KINDS],
    /// Bodies naming another PC than their subject; dropped.
    pub forged: ForgeryLog,
    pub batches: [AtomicU64; KINDS],
    /// Messages the database refused for what they hold; skipped so the stream goes on.
    pub refused: [AtomicU64; KINDS],
    pub lag: [AtomicU64; KINDS],
    pub heartbeats: AtomicU64,
    /// Observability events over their PC's budget; dropped.
    pub events_over_budget: AtomicU64,
}

pub struct Projectors {
    pub db: Db,
    pub js: jetstream::Context,
    pub stats: Arc<Stats>,
    pub bus: Bus,
    /// A heartbeat after this much silence records `agent.offline` / `agent.online`.
    pub offline_after_ms: i64,
    /// Observability events per PC (see `budget.rs`).
    pub event_budget: std::sync::Mutex<budget::EventBudget>,
}

#[cfg(test)]
mod tests {
    use super::{ack_fits_subject, sent_by_own_pc};

    #[test]
    fn a_skipped_delivery_stops_the_cumulative_ack_and_a_repeated_one_does_not() {
        use super::Deliveries;
        let mut d = Deliveries::after(0);
        assert_eq!((1..=5).map(|n| d.next(n)).collect::<Result<Vec<_>, _>>(), Ok(vec![(); 5]));
        // A new consumer leader sends 4 and 5 again, then goes on.
        assert_eq!(d.next(4), Ok(()));
        assert_eq!(d.next(5), Ok(()));
        assert_eq!(d.next(6), Ok(()));
        // 7 and 8 were lost on the way.
        assert_eq!(d.next(9), Err("deliveries 7 to 8 never arrived (got 9)".to_owned()));
        // A consumer that delivered 41 before this process opened it.
        let mut resumed = Deliveries::after(41);
        assert_eq!(resumed.next(42), Ok(()));
        assert!(Deliveries::after(41).next(43).is_err());
    }

    #[test]
    fn an_acknowledgement_names_the_notification_of_its_subject() {
        let id: kanade_shared::NotificationId = "0190f5c2-6c1e-7a4b-9d2e-1f2a3b4c5d6e".parse().unwrap();
        let ack = kanade_shared::wire::NotifyAck {
            schema: 1,
            notification_id: id,
            pc_id: "PC-A".parse().unwrap(),
            user: "u".into(),
            at: kanade_shared::wire::Timestamp::UNIX_EPOCH,
        };
        assert!(ack_fits_subject(&format!("events.notify_ack.PC-A.{id}"), &ack));
        let other = kanade_shared::NotificationId::new();
        assert!(!ack_fits_subject(&format!("events.notify_ack.PC-A.{other}"), &ack));
    }

    #[test]
    fn a_body_must_name_the_pc_of_its_subject() {
        let pc = |s: &str| s.parse::<kanade_shared::PcId>().unwrap();
        let cases = [
            ("results.PC-A.0190f5c2-6c1f-7000-8000-000000000001", Some(pc("PC-A")), true),
            ("results.PC-A.0190f5c2-6c1f-7000-8000-000000000001", Some(pc("PC-B")), false),
            ("events.started.PC-A.x", Some(pc("PC-A")), true),
            ("events.started.PC-A.x", Some(pc("pc-a")), false),
            ("events.notify_ack.PC-A.0190f5c2-6c1e-7a4b-9d2e-1f2a3b4c5d6e", Some(pc("PC-A")), true),
            ("events.notify_ack.PC-A.0190f5c2-6c1e-7a4b-9d2e-1f2a3b4c5d6e", Some(pc("PC-B")), false),
            ("inventory.PC-A", Some(pc("PC-B")), false),
            ("audit.exec.create", None, true),
            ("something.else", Some(pc("PC-A")), false),
        ];
        for (subject, body, want) in cases {
            assert_eq!(sent_by_own_pc(subject, body.as_ref()), want, "{subject} {body:?}");
        }
    }
}

/// Run one projector until shutdown; with a `gate` (a shared projection), only while it says
/// this backend leads, each term's writes fenced against a later term's.
pub async fn supervise(
    p: Arc<Projectors>,
    kind: Kind,
    gate: Option<Leadership>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(mut gate) = gate else { return keep_running(p, kind, None, stop).await };
    loop {
        tokio::select! {
            led = gate.until_leading() => if !led { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(fence) = gate.fence() else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        match p.db.claim_fence(fence.clone()).await {
            Ok(true) => {}
            Ok(false) if gate.fence().as_ref() == Some(&fence) => {
                // A higher revision is recorded although this term is live and no other can
                // be: the lease bucket was recreated (or the broker replaced) and revisions
                // started over. Waiting would stop the projection for good.
                match p.db.take_over_fence(fence.clone()).await {
                    Ok(before) => tracing::warn!(
                        stream = kind.stream(),
                        lease = fence.lease,
                        recorded = before,
                        revision = fence.revision,
                        "the projection's fence recorded a higher lease revision than this live term's; the lease bucket was recreated, taking the fence over"
                    ),
                    Err(e) => {
                        tracing::warn!(stream = kind.stream(), error = %e, "cannot take the projection's fence over; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            Ok(false) => {
                // The term ended before it was claimed.
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(stream = kind.stream(), error = %e, "cannot claim the projection's fence; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        tracing::info!(stream = kind.stream(), "leading: projecting the shared projection");
        tokio::select! {
            () = keep_running(p.clone(), kind, Some(gate.clone()), stop.clone()) => return,
            () = gate.until_not_leading() => {
                tracing::info!(stream = kind.stream(), "no longer leading: projector stopped");
            }
        }
    }
}

/// Run one projector until shutdown, restarting it with backoff when it fails.
async fn keep_running(
    p: Arc<Projectors>,
    kind: Kind,
    gate: Option<Leadership>,
    mut stop: watch::Receiver<bool>,
) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(250);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = std::time::Instant::now();
        let result = tokio::select! {
            r = run(&p, kind, gate.as_ref()) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        // A projector that ran a while before failing (its stream changed leader) starts over
        // quickly rather than waiting as long as after a string of failures.
        if started.elapsed() > Duration::from_secs(10) {
            backoff = FIRST_BACKOFF;
        }
        if let Err(e) = result {
            tracing::warn!(stream = kind.stream(), error = %e, retry_in = ?backoff, "projector failed; restarting");
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn run(p: &Projectors, kind: Kind, gate: Option<&Leadership>) -> anyhow::Result<()> {
    let name = p.db.projection_name().await?;
    let stream =
        p.js.get_stream(kind.stream()).await.map_err(|e| anyhow::anyhow!("{}: {e}", kind.stream()))?;
    let durable = kind.durable(&name);
    let legacy = kind.legacy_durable(&name);
    remove_stale_consumers(&stream, kind, &name, &durable).await;
    let mut consumer = open_consumer(&stream, &durable, &legacy, p.db.shared()).await?;
    let mut deliveries = Deliveries::after(consumer.info().await?.delivered.consumer_sequence);
    tracing::info!(stream = kind.stream(), durable, "projector running");
    let (batches, mut ready) = tokio::sync::mpsc::channel::<Batch>(2);
    // Fetching and decoding the next batch overlaps with writing the current one: the broker
    // side and SQLite side each take about half the time of the pair. While the writer waits
    // with nothing to write (a backlog's first fetch, or the fetcher fell behind), the fetcher
    // hands over what has arrived so far rather than the whole fetch.
    let writer_waits = &std::sync::atomic::AtomicBool::new(false);
    let fetcher = async move {
        loop {
            let mut fetched = consumer
                .fetch()
                .max_messages(BATCH)
                .expires(Duration::from_millis(500))
                .messages()
                .await
                .map_err(|e| anyhow::anyhow!("fetch: {e}"))?;
            let (mut messages, mut received) = (Vec::new(), 0);
            while let Some(m) = fetched.next().await {
                let m = m.map_err(|e| anyhow::anyhow!("fetch: {e}"))?;
                let delivery = m.info().map_err(|e| anyhow::anyhow!("fetch: {e}"))?.consumer_sequence;
                if let Err(lost) = deliveries.next(delivery) {
                    // A cumulative ack past a lost delivery would ack what nobody wrote: start
                    // over from the ack floor instead.
                    anyhow::bail!("{lost}; resuming from the ack floor");
                }
                messages.push(m);
                received += 1;
                if messages.len() >= HANDOVER_MIN && writer_waits.swap(false, Ordering::Relaxed) {
                    let batch = decode(kind, std::mem::take(&mut messages), &p.stats.forged);
                    if batches.send(batch).await.is_err() {
                        return Ok(());
                    }
                }
            }
            if received == 0 {
                continue;
            }
            if !messages.is_empty() && batches.send(decode(kind, messages, &p.stats.forged)).await.is_err() {
                return Ok::<(), anyhow::Error>(());
            }
            let drained = received < BATCH;
            if drained {
                tokio::time::sleep(LINGER).await;
            }
        }
    };
    let (written, mut to_ack) = tokio::sync::mpsc::channel::<Vec<jetstream::Message>>(2);
    let writer = async move {
        let i = kind as usize;
        loop {
            writer_waits.store(true, Ordering::Relaxed);
            let Some(batch) = ready.recv().await else { break };
            writer_waits.store(false, Ordering::Relaxed);
            if let Some(info) = batch.messages.last().and_then(|m| m.info().ok()) {
                p.stats.lag[i].store(info.pending, Ordering::Relaxed);
            }
            let count = batch.messages.len() as u64;
            let (malformed, forged) = (batch.malformed, batch.forged);
            // Checked again as late as possible: a backend that froze past its term writes
            // nothing when it wakes (the fence catches what slips between check and write).
            let fence = match gate {
                Some(g) => Some(g.fence().ok_or_else(|| {
                    anyhow::anyhow!("the projection lease ended before this batch was written")
                })?),
                None => None,
            };
            let refused = write_splitting(p, kind, &batch.messages, batch.decoded, fence).await?;
            p.stats.refused[i].fetch_add(refused, Ordering::Relaxed);
            p.stats.projected[i].fetch_add(count - malformed - forged - refused, Ordering::Relaxed);
            p.stats.malformed[i].fetch_add(malformed, Ordering::Relaxed);
            p.stats.batches[i].fetch_add(1, Ordering::Relaxed);
            if written.send(batch.messages).await.is_err() {
                break;
            }
        }
        Ok::<(), anyhow::Error>(())
    };
    // Acks go out while the next batch is written; only written messages are ever acked.
    let acker = async {
        while let Some(messages) = to_ack.recv().await {
            if let Some(last) = messages.last() {
                last.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
            }
        }
        Ok::<(), anyhow::Error>(())
    };
    tokio::try_join!(fetcher, writer, acker)?;
    Ok(())
}

/// The consumer's deliveries as this process received them. Every delivery, redeliveries
/// included, takes the consumer's next sequence number, and one process pulls: a number
/// skipped means deliveries were lost on the way (a broker node died with them in flight, a
/// fetch expired as they came), and a cumulative ack must not pass them. A number seen before
/// (a new consumer leader repeating what its predecessor sent) is fine: written twice, counted
/// once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deliveries {
    expected: u64,
}

impl Deliveries {
    /// For a consumer whose last delivery so far was `last`.
    pub fn after(last: u64) -> Self {
        Self { expected: last + 1 }
    }

    /// Note a delivery; `Err` names the deliveries that never came.
    pub fn next(&mut self, delivery: u64) -> Result<(), String> {
        if delivery > self.expected {
            return Err(format!(
                "deliveries {} to {} never arrived (got {delivery})",
                self.expected,
                delivery - 1
            ));
        }
        self.expected = self.expected.max(delivery + 1);
        Ok(())
    }
}

/// One fetched batch: the messages (to ack once written) and what decoded from them.
struct Batch {
    messages: Vec<jetstream::Message>,
    decoded: Decoded,
    malformed: u64,
    forged: u64,
}

enum Decoded {
    /// With their rows built as they are decoded, off the writer's path.
    Results(ResultRows),
    /// EVENTS carries runs' `started` events and notification acknowledgements.
    Events(Vec<StartedEvent>, Vec<NotifyAck>),
    Notifications(Vec<NotificationMessage>),
    Audit(Vec<AuditEvent>),
    Inventory(Vec<Inventory>),
    Obs(Vec<ObsEvent>),
}

/// Decode a batch; a malformed message is logged, counted and skipped, and so is a message whose
/// body names another PC than its subject: broker permissions hold an agent to its own subject
/// token, never to what it writes in a body, so the subject says who sent it.
fn decode(kind: Kind, messages: Vec<jetstream::Message>, forged: &ForgeryLog) -> Batch {
    let (decoded, malformed, forgeries) = decode_items(kind, &messages, forged);
    Batch { messages, decoded, malformed, forged: forgeries }
}

fn decode_items(kind: Kind, messages: &[jetstream::Message], forged: &ForgeryLog) -> (Decoded, u64, u64) {
    fn all<T: serde::de::DeserializeOwned>(
        kind: Kind,
        messages: &[jetstream::Message],
        pc_of: impl Fn(&T) -> Option<&kanade_shared::PcId>,
        forged: &ForgeryLog,
        fits: impl Fn(&str, &T) -> bool,
    ) -> (Vec<T>, u64, u64) {
        let mut ok = Vec::with_capacity(messages.len());
        let (mut bad, mut forgeries) = (0, 0);
        for m in messages {
            match wire::decode::<T>(&m.payload) {
                Ok(v) if sent_by_own_pc(m.subject.as_str(), pc_of(&v)) && fits(m.subject.as_str(), &v) => {
                    ok.push(v)
                }
                Ok(v) => {
                    forgeries += 1;
                    forged.note(kind, m.subject.as_str(), pc_of(&v));
                }
                Err(e) => {
                    bad += 1;
                    tracing::warn!(stream = kind.stream(), subject = %m.subject, error = %e, "skipping malformed message");
                }
            }
        }
        (ok, bad, forgeries)
    }
    match kind {
        Kind::Results => {
            let (v, bad, f) = all(kind, messages, |r: &ExecResult| Some(&r.pc_id), forged, |_, _| true);
            (Decoded::Results(ResultRows::new(v, now_ms())), bad, f)
        }
        Kind::Events => {
            let (acks, started): (Vec<_>, Vec<_>) =
                messages.iter().cloned().partition(|m| m.subject.starts_with("events.notify_ack."));
            let (v, bad, f) = all(kind, &started, |e: &StartedEvent| Some(&e.pc_id), forged, |_, _| true);
            let (a, bad_acks, f_acks) =
                all(kind, &acks, |a: &NotifyAck| Some(&a.pc_id), forged, ack_fits_subject);
            (Decoded::Events(v, a), bad + bad_acks, f + f_acks)
        }
        Kind::Notifications => {
            // Published by the backend only (agents may not); nothing to hold to a subject.
            let (v, bad, f) = all(kind, messages, |_: &NotificationMessage| None, forged, |_, _| true);
            (Decoded::Notifications(v), bad, f)
        }
        Kind::Audit => {
            let (v, bad, f) = all(kind, messages, |_: &AuditEvent| None, forged, |_, _| true);
            (Decoded::Audit(v), bad, f)
        }
        Kind::Inventory => {
            let (v, bad, f) = all(kind, messages, |i: &Inventory| Some(&i.pc_id), forged, |_, _| true);
            (Decoded::Inventory(v), bad, f)
        }
        Kind::Obs => {
            let (v, bad, f) = all(kind, messages, |e: &ObsEvent| Some(&e.pc_id), forged, |_, _| true);
            (Decoded::Obs(v), bad, f)
        }
    }
}

/// Pure: an acknowledgement's subject (`events.notify_ack.<pc>.<id>`) names the notification its
/// body acknowledges.
pub fn ack_fits_subject(subject: &str, ack: &NotifyAck) -> bool {
    subject.rsplit('.').next() == Some(ack.notification_id.to_string().as_str())
}

/// Pure: a body that names a PC must name the one its subject belongs to. Bodies without a PC
/// (audit events, published by the backend itself) pass.
pub fn sent_by_own_pc(subject: &str, body_pc: Option<&kanade_shared::PcId>) -> bool {
    match body_pc {
        None => true,
        Some(pc) => kanade_shared::subjects::sender_pc(subject) == Some(pc.as_str()),
    }
}

/// Forged messages are counted for `/metrics` and logged at most once per [`FORGERY_LOG_EVERY`]
/// per stream, so a misbehaving endpoint cannot flood the log either.
#[derive(Default)]
pub struct ForgeryLog {
    pub count: [AtomicU64; KINDS],
    last_logged_ms: [std::sync::atomic::AtomicI64; KINDS],
}

const FORGERY_LOG_EVERY_MS: i64 = 10_000;

impl ForgeryLog {
    fn note(&self, kind: Kind, subject: &str, body_pc: Option<&kanade_shared::PcId>) {
        let i = kind as usize;
        let total = self.count[i].fetch_add(1, Ordering::Relaxed) + 1;
        let now = now_ms();
        let last = self.last_logged_ms[i].load(Ordering::Relaxed);
        if now - last >= FORGERY_LOG_EVERY_MS
            && self.last_logged_ms[i]
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                stream = kind.stream(),
                subject,
                body_pc = body_pc.map(|p| p.as_str()),
                total,
                "dropped a message whose body names another PC than its subject (counted in kanade_projector_forged_total)"
            );
        }
    }
}

/// The ad-hoc runs (`kanade run`) among a batch's runs, once each.
fn adhoc_runs<'a>(
    runs: impl Iterator<Item = (kanade_shared::ExecId, &'a kanade_shared::PcId, &'a kanade_shared::JobId)>,
) -> Vec<(kanade_shared::ExecId, kanade_shared::PcId, kanade_shared::JobId)> {
    let mut out: Vec<_> =
        runs.filter(|(_, _, job)| job.is_adhoc()).map(|(e, pc, job)| (e, pc.clone(), job.clone())).collect();
    out.sort_by_key(|(e, _, _)| *e);
    out.dedup_by_key(|(e, _, _)| *e);
    out
}

/// An execution the projector made for a `kanade run` is named by what ran: the command is
/// still in EXEC (one per ad-hoc subject), so its script's first line is read from there. Best
/// effort: without it the execution keeps the name `kanade run on <pc>`.
async fn name_adhoc_runs(
    p: &Projectors,
    runs: Vec<(kanade_shared::ExecId, kanade_shared::PcId, kanade_shared::JobId)>,
) {
    if runs.is_empty() {
        return;
    }
    let Ok(exec) = p.js.get_stream("EXEC").await else { return };
    for (exec_id, pc, job) in runs {
        let subject = kanade_shared::subjects::command_pc(&pc, &job);
        let Ok(message) = exec.direct_get_last_for_subject(&subject).await else { continue };
        let Ok(cmd) = wire::decode::<kanade_shared::wire::Command>(&message.payload) else { continue };
        let Some(script) = cmd.script.filter(|_| cmd.exec_id == exec_id) else { continue };
        let title = kanade_shared::JobId::adhoc_title(&script);
        if let Err(e) = p.db.name_adhoc_execution(exec_id, title).await {
            tracing::debug!(%exec_id, error = %e, "cannot name an ad-hoc execution");
        }
    }
}

/// Write a batch; when the database refuses it for what it holds (not for being unreachable or
/// busy), write its halves in stream order, down to the one message it refuses, which is logged
/// with its stream sequence, counted and skipped: one bad message never stops a stream. The
/// halves are decoded again from the messages (only on this path, so the common one copies
/// nothing). Returns how many messages were refused.
async fn write_splitting(
    p: &Projectors,
    kind: Kind,
    messages: &[jetstream::Message],
    decoded: Decoded,
    fence: Option<Fence>,
) -> anyhow::Result<u64> {
    let mut todo = std::collections::VecDeque::from([(0..messages.len(), Some(decoded))]);
    let mut refused = 0;
    while let Some((range, decoded)) = todo.pop_front() {
        // Forgeries were counted with the whole batch; a re-decode does not count them again.
        let decoded =
            decoded.unwrap_or_else(|| decode_items(kind, &messages[range.clone()], &ForgeryLog::default()).0);
        let Err(e) = write(p, decoded, fence.clone()).await else { continue };
        if !e.downcast_ref::<DbError>().is_some_and(DbError::refuses_content) {
            return Err(e);
        }
        if range.len() > 1 {
            let mid = range.start + range.len() / 2;
            todo.push_front((mid..range.end, None));
            todo.push_front((range.start..mid, None));
            continue;
        }
        refused += 1;
        let m = &messages[range.start];
        tracing::error!(
            stream = kind.stream(),
            subject = %m.subject,
            sequence = m.info().map(|i| i.stream_sequence).unwrap_or_default(),
            error = %e,
            "the database refused this message; skipped (counted in kanade_projector_refused_total, the message stays in the stream)"
        );
    }
    Ok(refused)
}

/// Write one decoded batch in one transaction.
async fn write(p: &Projectors, decoded: Decoded, fence: Option<Fence>) -> anyhow::Result<()> {
    let now = now_ms();
    match decoded {
        Decoded::Results(batch) => {
            let items = batch.results();
            let events: Vec<_> = items.iter().map(|r| (r.exec_id, r.pc_id.clone(), r.status)).collect();
            let adhoc = adhoc_runs(items.iter().map(|r| (r.exec_id, &r.pc_id, &r.job_id)));
            p.db.apply_result_rows(batch, now, fence).await?;
            name_adhoc_runs(p, adhoc).await;
            for (exec_id, pc, status) in events {
                p.bus.result(exec_id, pc, status);
            }
        }
        Decoded::Events(items, acks) => {
            // A PC started a run: the execution's page shows it running without a reload.
            let mut started: Vec<_> = items.iter().map(|e| e.exec_id).collect();
            started.sort_unstable();
            started.dedup();
            let mut acked: Vec<_> = acks.iter().map(|a| a.notification_id).collect();
            acked.sort_unstable();
            acked.dedup();
            let adhoc = adhoc_runs(items.iter().map(|e| (e.exec_id, &e.pc_id, &e.job_id)));
            p.db.apply_events(items, acks, now, fence).await?;
            name_adhoc_runs(p, adhoc).await;
            started.into_iter().for_each(|exec_id| p.bus.execution(exec_id));
            acked.into_iter().for_each(|id| p.bus.notification(id));
        }
        Decoded::Notifications(items) => {
            let mut ids: Vec<_> = items
                .iter()
                .filter_map(|m| match m {
                    NotificationMessage::Send(n) => Some(n.id),
                    NotificationMessage::Withdraw(w) => Some(w.id),
                    NotificationMessage::Unknown => None,
                })
                .collect();
            ids.sort_unstable();
            ids.dedup();
            p.db.apply_notifications(items, fence).await?;
            ids.into_iter().for_each(|id| p.bus.notification(id));
        }
        Decoded::Audit(items) => p.db.apply_audit(items, now, fence).await?,
        Decoded::Inventory(items) => p.db.apply_inventory(items, fence).await?,
        Decoded::Obs(items) => {
            let total = items.len();
            let items: Vec<ObsEvent> = {
                let mut budget = p.event_budget.lock().unwrap_or_else(|e| e.into_inner());
                items.into_iter().filter(|e| budget.allow(&e.pc_id, now)).collect()
            };
            if items.len() < total {
                let dropped = (total - items.len()) as u64;
                p.stats.events_over_budget.fetch_add(dropped, Ordering::Relaxed);
                tracing::warn!(
                    dropped,
                    "observability events over their PC's budget dropped (kanade_obs_events_over_budget_total)"
                );
            }
            p.db.apply_obs(items, now, fence).await?
        }
    }
    Ok(())
}

/// See the module's doc.
const ACK_POLICY: AckPolicy = AckPolicy::All;

/// A consumer nobody pulled from for this long (its database is gone) is removed by the broker.
const ABANDONED_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

fn consumer_config(durable: &str, deliver_policy: DeliverPolicy) -> pull::Config {
    pull::Config {
        durable_name: Some(durable.to_owned()),
        ack_policy: ACK_POLICY,
        deliver_policy,
        ack_wait: Duration::from_secs(60),
        max_ack_pending: 100_000,
        inactive_threshold: ABANDONED_AFTER,
        ..Default::default()
    }
}

/// The durable consumer, positioned so nothing fetched by a previous process and left unacked
/// waits out `ack_wait`: such a consumer is recreated from its ack floor (what lies above the
/// floor is projected again, which the idempotent writes absorb). Only one process pulls from
/// it at a time: the backend that owns the projection, or with a shared one, the leader. A
/// consumer still named the old way (`legacy`) hands its position over and goes.
async fn open_consumer(
    stream: &jetstream::stream::Stream,
    durable: &str,
    legacy: &str,
    shared: bool,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("consumer {durable}: {e}");
    if let Ok(mut existing) = stream.get_consumer::<pull::Config>(durable).await {
        let info = existing.info().await.map_err(|e| fail(&e))?;
        // A consumer made with another ack policy (acks used to be one per message) cannot be
        // changed to this one: it is replaced at its position, like one with acks pending.
        let same_policy = info.config.ack_policy == ACK_POLICY;
        if info.num_ack_pending == 0 && same_policy {
            return Ok(existing);
        }
        let resume = info.ack_floor.stream_sequence + 1;
        tracing::info!(
            durable,
            resume,
            unacked = info.num_ack_pending,
            shared,
            same_policy,
            "resuming projector from its ack floor"
        );
        stream.delete_consumer(durable).await.map_err(|e| fail(&e))?;
        let policy = DeliverPolicy::ByStartSequence { start_sequence: resume };
        return stream.create_consumer(consumer_config(durable, policy)).await.map_err(|e| fail(&e));
    }
    if !shared && let Ok(mut old) = stream.get_consumer::<pull::Config>(legacy).await {
        let resume = old.info().await.map_err(|e| fail(&e))?.ack_floor.stream_sequence + 1;
        tracing::info!(durable, legacy, resume, "renaming projector consumer");
        let policy = DeliverPolicy::ByStartSequence { start_sequence: resume };
        let created = stream.create_consumer(consumer_config(durable, policy)).await.map_err(|e| fail(&e))?;
        if let Err(e) = stream.delete_consumer(legacy).await {
            tracing::warn!(consumer = legacy, error = %e, "cannot remove the old-named consumer");
        }
        return Ok(created);
    }
    stream
        .get_or_create_consumer(durable, consumer_config(durable, DeliverPolicy::All))
        .await
        .map_err(|e| fail(&e))
}

/// Consumers of this projection's older generations (before a wipe) would keep their position
/// and waste broker memory: remove them. Other projections' consumers (other backends' SQLite
/// databases) are never touched.
async fn remove_stale_consumers(
    stream: &jetstream::stream::Stream,
    kind: Kind,
    name: &ProjectionName,
    current: &str,
) {
    let ours = format!("{}{}-", kind.durable_prefix(), name.id);
    let mut names = stream.consumer_names();
    while let Some(Ok(consumer)) = names.next().await {
        if consumer.starts_with(&ours) && consumer != current {
            match stream.delete_consumer(&consumer).await {
                Ok(_) => tracing::info!(consumer, "removed consumer of an older projection"),
                Err(e) => tracing::warn!(consumer, error = %e, "cannot remove old consumer"),
            }
        }
    }
}

/// The core-NATS subscription of a micro-batching projector (heartbeats, host performance):
/// backends sharing a database share the messages too (a queue group: each reaches one of them);
/// with its own database each backend takes them all. `None` (logged, naming what is lost
/// then) when the broker refuses the subscription.
pub(crate) async fn core_subscription(
    p: &Projectors,
    client: &async_nats::Client,
    subject: &'static str,
    queue: &'static str,
    lost: &str,
) -> Option<async_nats::Subscriber> {
    let sub = if p.db.shared() {
        client.queue_subscribe(subject, queue.into()).await
    } else {
        client.subscribe(subject).await
    };
    sub.map_err(|e| tracing::error!(subject, error = %e, "cannot subscribe; {lost}")).ok()
}
