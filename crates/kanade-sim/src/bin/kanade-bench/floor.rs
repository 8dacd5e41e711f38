//! The floor every fan-out figure is compared with, measured on the same box and broker in the
//! same run: one core-NATS publish reaches N bare subscribers (one connection each, in
//! simulator processes, as the fleet's agents are), each answers with one acknowledged
//! JetStream publish of a result-sized message, and one pull consumer writes them into SQLite
//! in batches (one transaction and one cumulative ack per batch). Nothing of kanade runs: no
//! ledger, gates, outbox or projection. What kanade adds on top is the ratio to this.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream::{self, consumer::AckPolicy, consumer::pull};
use futures::StreamExt;

use crate::meter::{Meter, Spent};

/// One floor round's time and what it cost.
#[derive(Debug, Clone)]
pub struct Round {
    pub took: Duration,
    pub spent: Spent,
}

/// A command-sized message (a no-op job's signed command weighs about this).
const COMMAND_BYTES: usize = 900;
/// Most messages written per SQLite transaction.
const BATCH: usize = 1_000;

pub struct Floor {
    client: async_nats::Client,
    messages: pull::Stream,
    db: rusqlite::Connection,
    written: u64,
}

impl Floor {
    /// The FLOOR stream (file storage, like RESULTS), its pull consumer and the SQLite file.
    pub async fn open(nats_url: &str, dir: &Path) -> anyhow::Result<Self> {
        let client = async_nats::connect(nats_url).await.context("floor: cannot connect")?;
        let js = jetstream::new(client.clone());
        let stream = js
            .get_or_create_stream(jetstream::stream::Config {
                name: "FLOOR".into(),
                subjects: vec![kanade_sim::FLOOR_RESULTS.into()],
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .context("floor: cannot create the FLOOR stream")?;
        let consumer = stream
            .get_or_create_consumer(
                "floor",
                pull::Config {
                    durable_name: Some("floor".into()),
                    ack_policy: AckPolicy::All,
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await
            .context("floor: cannot create the consumer")?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(BATCH)
            .messages()
            .await
            .context("floor: cannot consume")?;
        let db = rusqlite::Connection::open(dir.join("floor.db"))?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS results (seq INTEGER PRIMARY KEY, subject TEXT NOT NULL, payload BLOB NOT NULL);",
        )?;
        Ok(Self { client, messages, db, written: 0 })
    }

    /// Publish the command to the first `n` subscribers; wait until `n` results are written.
    pub async fn round(&mut self, n: usize, meter: &Meter) -> anyhow::Result<Round> {
        let before = meter.read();
        let t0 = Instant::now();
        self.client
            .publish(kanade_sim::floor_command(n), vec![b'c'; COMMAND_BYTES].into())
            .await
            .context("floor: cannot publish the command")?;
        self.client.flush().await?;
        let mut got = 0;
        while got < n {
            let first = tokio::time::timeout(Duration::from_secs(60), self.messages.next())
                .await
                .with_context(|| format!("floor: {got} of {n} results after 60 s"))?
                .context("floor: the consumer ended")??;
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match futures::FutureExt::now_or_never(self.messages.next()) {
                    Some(Some(Ok(m))) => batch.push(m),
                    _ => break,
                }
            }
            let tx = self.db.transaction()?;
            {
                let mut insert =
                    tx.prepare_cached("INSERT INTO results (seq, subject, payload) VALUES (?1, ?2, ?3)")?;
                for m in &batch {
                    self.written += 1;
                    insert.execute(rusqlite::params![
                        self.written,
                        m.subject.as_str(),
                        m.payload.as_ref()
                    ])?;
                }
            }
            tx.commit()?;
            if let Some(last) = batch.last() {
                last.ack().await.map_err(|e| anyhow::anyhow!("floor: cannot ack: {e}"))?;
            }
            got += batch.len();
        }
        if got != n {
            bail!("floor: {got} results for {n} subscribers");
        }
        let took = t0.elapsed();
        Ok(Round { took, spent: meter.read().since(&before) })
    }
}
