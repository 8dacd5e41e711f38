//! The fleet simulator: N agents in one process, each the real `kanade-agent` runtime (its own
//! NATS connection, subscriptions, catch-up, ledger, gates, outbox, heartbeats) with a fake
//! executor in place of processes. Agents start paced, so a big fleet does not hit the broker
//! with a connect storm of its own making.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use kanade_agent::exec::FakeExecutor;
use kanade_agent::runtime::Settings;
use kanade_shared::{GroupName, PcId};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nats_url: String,
    /// Agents this process runs: indexes `first .. first + count` of a fleet of `fleet`
    /// (several processes share one fleet: a process can only hold so many open files).
    pub first: usize,
    pub count: usize,
    pub fleet: usize,
    /// Ids are `<prefix>-00001` …
    pub prefix: String,
    /// Every agent is in `fleet`; this share of them (evenly spread) also in `canary`.
    pub canary_share: f64,
    /// For each size s, the first s agents are also in group `first-<s>` (benchmarks address
    /// 1,000 of 10,000 agents this way).
    pub size_groups: Vec<usize>,
    pub heartbeat: Duration,
    /// Parent of the agents' data dirs (a tmpfs keeps a 10,000-agent run off the disk).
    pub data_dir: PathBuf,
    /// Agents started per second.
    pub start_rate: u32,
    pub executor: FakeExecutor,
    /// The keys commands must be signed with (`security.trusted_keys`): a benchmark pins the
    /// backend's, so every simulated agent verifies every command as a deployed one does.
    pub trusted_keys: Vec<ed25519_dalek::VerifyingKey>,
}

impl SimConfig {
    /// A whole fleet of `count` agents `sim-00001…` in this process, all only in group `fleet`,
    /// heartbeating every 500 ms: what a test needs.
    pub fn small_fleet(nats_url: String, count: usize, data_dir: PathBuf, executor: FakeExecutor) -> Self {
        Self {
            nats_url,
            first: 0,
            count,
            fleet: count,
            prefix: "sim".into(),
            canary_share: 0.0,
            size_groups: Vec::new(),
            heartbeat: Duration::from_millis(500),
            data_dir,
            start_rate: 200,
            executor,
            trusted_keys: Vec::new(),
        }
    }
}

/// `sim-00001`, `sim-00002`, …
pub fn agent_id(prefix: &str, i: usize) -> PcId {
    format!("{prefix}-{:05}", i + 1).parse().expect("simulator ids are valid pc ids")
}

/// Groups of agent `i` of `n`: all are in `fleet`; `canary_share` of them, evenly spread, also
/// in `canary`.
pub fn groups_of(i: usize, n: usize, canary_share: f64) -> Vec<GroupName> {
    let mut groups = vec!["fleet".parse().expect("valid group")];
    let canaries = (n as f64 * canary_share.clamp(0.0, 1.0)).round() as usize;
    // Agent i is a canary when the running count of canaries steps up at i.
    if canaries > 0 && (i * canaries) / n != ((i + 1) * canaries) / n {
        groups.push("canary".parse().expect("valid group"));
    }
    groups
}

/// Start the fleet; agents run until `stop` turns true. Returns once every agent was started.
pub async fn start(config: &SimConfig, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    let pause = Duration::from_secs_f64(1.0 / f64::from(config.start_rate.max(1)));
    let mut next = tokio::time::Instant::now();
    for i in config.first..config.first + config.count {
        let pc = agent_id(&config.prefix, i);
        let mut settings =
            Settings::new(pc.clone(), config.nats_url.clone(), config.data_dir.join(pc.as_str()));
        settings.groups = groups_of(i, config.fleet.max(config.first + config.count), config.canary_share);
        for &size in config.size_groups.iter().filter(|&&s| i < s) {
            settings.groups.push(format!("first-{size}").parse()?);
        }
        settings.heartbeat_interval = config.heartbeat;
        settings.max_concurrent_jobs = 2;
        settings.fake_executor = Some(config.executor.clone());
        settings.host_perf = false;
        settings.trusted_keys = config.trusted_keys.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = kanade_agent::runtime::run(settings, stop).await {
                tracing::error!(%pc, error = %format!("{e:#}"), "simulated agent stopped");
            }
        });
        next += pause;
        tokio::time::sleep_until(next).await;
    }
    Ok(())
}

/// Subject of the floor's command for the first `size` subscribers.
pub fn floor_command(size: usize) -> String {
    format!("floor.cmd.{size}")
}

/// Subjects of the floor's results (one per subscriber); the benchmark's stream takes these.
pub const FLOOR_RESULTS: &str = "floor.results.>";

/// Bytes of each floor result: about what a no-op run's result weighs on the wire.
pub const FLOOR_RESULT_BYTES: usize = 450;

/// The floor the fan-out benchmark compares with: `count` bare connections (indexes `first ..`),
/// each answering a core-NATS message on [`floor_command`] with one acknowledged JetStream
/// publish of a result-sized message, and nothing else: no ledger, no gates, no outbox. Subscriber
/// `i` listens for every size in `sizes` above `i`. Returns once every one is subscribed.
pub async fn start_floor(
    nats_url: &str,
    (first, count): (usize, usize),
    sizes: &[usize],
    start_rate: u32,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    let pause = Duration::from_secs_f64(1.0 / f64::from(start_rate.max(1)));
    let mut next = tokio::time::Instant::now();
    let payload = bytes::Bytes::from(vec![b'r'; FLOOR_RESULT_BYTES]);
    for i in first..first + count {
        let client = async_nats::connect(nats_url)
            .await
            .with_context(|| format!("floor subscriber {i} cannot connect to {nats_url}"))?;
        let js = async_nats::jetstream::new(client.clone());
        let mut subs = Vec::new();
        for &size in sizes.iter().filter(|&&s| i < s) {
            subs.push(client.subscribe(floor_command(size)).await?);
        }
        let mut commands = futures::stream::select_all(subs);
        let subject = format!("floor.results.{i}");
        let payload = payload.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(_) = commands.next() => {
                        let acked = match js.publish(subject.clone(), payload.clone()).await {
                            Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                        if let Err(e) = acked {
                            tracing::warn!(subscriber = i, error = %e, "floor result not acknowledged");
                        }
                    }
                    () = async { let _ = stop.wait_for(|s| *s).await; } => return,
                }
            }
        });
        next += pause;
        tokio::time::sleep_until(next).await;
    }
    Ok(())
}

/// Heartbeats counted within this window are "recent".
pub const RECENT: Duration = Duration::from_secs(3);

/// What the heartbeat watcher heard: distinct agents heard within the alive window, within the
/// last [`RECENT`], and since the watcher's own connection last came back (`back`: after a
/// broker restart, the agents that are back); `reconnects` counts the watcher's reconnects, so a
/// reader knows `back` is counting since the restart it caused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heard {
    pub alive: usize,
    pub recent: usize,
    pub back: usize,
    pub reconnects: u64,
}

/// After its own reconnect the watcher waits this long, then pings the agents it has not heard
/// from: one that reconnected and heartbeated before the watcher did said so into the void, and
/// answers a ping only from the moment the watcher asks, so the wait is what a storm's figure
/// overstates for such an agent. One that is not back yet heartbeats on its own when it is.
const PING_AFTER: Duration = Duration::from_secs(1);

/// A connection for [`count_heartbeating`], retrying every 20 ms after an outage.
pub async fn watcher(url: &str) -> anyhow::Result<(async_nats::Client, kanade_shared::nats::Reconnects)> {
    let servers = kanade_shared::nats::servers(url).map_err(anyhow::Error::msg)?;
    let client = async_nats::ConnectOptions::new()
        .name("kanade-sim watcher")
        .reconnect_delay_callback(|_| Duration::from_millis(20))
        .connect(servers)
        .await
        .with_context(|| format!("cannot connect to {url} to count heartbeats"))?;
    let reconnects = kanade_shared::nats::Reconnects::new(kanade_shared::nats::connection_count(&client));
    Ok((client, reconnects))
}

/// Report the agents with `prefix` heard from every `every` until `stop`. Heartbeats and ping
/// replies (a fresh heartbeat) both count.
pub async fn count_heartbeating(
    (client, mut reconnects): (async_nats::Client, kanade_shared::nats::Reconnects),
    prefix: String,
    every: Duration,
    alive: Duration,
    report: impl Fn(Heard) + Send + 'static,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    use tokio::time::Instant;
    let mut beats = client.subscribe("heartbeat.*").await?;
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(format!("{inbox}.*")).await?;
    let mut last_seen: std::collections::HashMap<String, Instant> = std::collections::HashMap::new();
    let mut back_since = Instant::now();
    let mut reconnected = 0u64;
    // "Not armed": far off, but not so far that adding it to now overflows.
    const NEVER: Duration = Duration::from_secs(10 * 365 * 86_400);
    let ping_at = tokio::time::sleep(NEVER);
    tokio::pin!(ping_at);
    let mut tick = tokio::time::interval(every);
    let own = format!("heartbeat.{prefix}-");
    let own_reply = format!("{inbox}.{prefix}-");
    loop {
        tokio::select! {
            Some(msg) = beats.next() => {
                if let Some(id) = msg.subject.as_str().strip_prefix(&own) {
                    last_seen.insert(id.to_owned(), Instant::now());
                }
            }
            Some(msg) = replies.next() => {
                if let Some(id) = msg.subject.as_str().strip_prefix(&own_reply) {
                    last_seen.insert(id.to_owned(), Instant::now());
                }
            }
            () = reconnects.next() => {
                back_since = Instant::now();
                reconnected += 1;
                ping_at.as_mut().reset(back_since + PING_AFTER);
            }
            () = &mut ping_at => {
                ping_at.as_mut().reset(Instant::now() + NEVER);
                for (id, _) in last_seen.iter().filter(|&(_, &t)| t < back_since) {
                    let Ok(pc) = format!("{prefix}-{id}").parse::<PcId>() else { continue };
                    let reply = format!("{inbox}.{pc}");
                    let _ = client.publish_with_reply(kanade_shared::subjects::ping(&pc), reply, "".into()).await;
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let within = |d: Duration| last_seen.values().filter(|&&t| now - t <= d).count();
                let back = last_seen.values().filter(|&&t| t >= back_since).count();
                report(Heard { alive: within(alive), recent: within(RECENT), back, reconnects: reconnected });
            }
            // The guard wait_for returns is not Send: drop it inside.
            () = async { let _ = stop.wait_for(|s| *s).await; } => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_canary_groups() {
        assert_eq!(agent_id("sim", 0).as_str(), "sim-00001");
        assert_eq!(agent_id("sim", 9_999).as_str(), "sim-10000");
        let n = 1_000;
        let canaries = (0..n).filter(|&i| groups_of(i, n, 0.05).len() == 2).count();
        assert_eq!(canaries, 50);
        assert!((0..n).all(|i| groups_of(i, n, 0.05)[0].as_str() == "fleet"));
        // Spread out, not the first 50.
        assert!(groups_of(999, n, 0.05).len() == 2 && groups_of(1, n, 0.05).len() == 1);
        assert_eq!((0..10).filter(|&i| groups_of(i, 10, 0.0).len() == 2).count(), 0);
        assert_eq!((0..10).filter(|&i| groups_of(i, 10, 1.0).len() == 2).count(), 10);
    }
}
