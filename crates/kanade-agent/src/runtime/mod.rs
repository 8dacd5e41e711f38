//! The agent's IO shell: wires the broker, the store, the gates and the executor together.
//!
//! Tasks: intake (live subscriptions + catch-up), admission, runners (one per admitted run,
//! bounded by the concurrency cap), the outbox publisher, and presence (heartbeat + ping).
//! Each task ends when the shutdown signal fires.

mod admit;
mod catch_up;
mod fit;
mod follow;
pub mod host_perf;
mod intake;
mod kill;
mod kv;
mod notifications;
pub(crate) mod obs;
mod outbox;
mod presence;
mod process_perf;
mod runner;
mod updates;
mod view;
mod watchers;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use kanade_shared::config::AgentConfig;
use kanade_shared::wire::AgentConfigPatch;
use kanade_shared::{GroupName, PcId, Version};
use tokio::sync::{Notify, RwLock, Semaphore, watch};

use crate::store::Store;

/// Output kept per stream per run; the rest is dropped and the result flagged `truncated`.
pub const OUTPUT_CAP: usize = 1024 * 1024;
/// Finished runs are remembered this long: well past the EXEC stream's 7-day retention, so a
/// replayed command always finds its ledger row.
pub const LEDGER_RETENTION: Duration = Duration::from_secs(21 * 86_400);

/// Refused commands answered per minute; more are only logged.
const REFUSALS_PER_MINUTE: u32 = 20;

/// What the runtime needs, independent of where it came from (agent.toml or the simulator).
#[derive(Debug, Clone)]
pub struct Settings {
    pub pc: PcId,
    pub groups: Vec<GroupName>,
    pub nats_url: String,
    pub data_dir: PathBuf,
    pub max_concurrent_jobs: usize,
    pub heartbeat_interval: Duration,
    /// `None` when inventory is disabled; otherwise the interval and the jitter added to it.
    pub inventory: Option<(Duration, Duration)>,
    /// Whether to sample host (and, in investigation mode, process) performance at all. The
    /// simulator turns it off: thousands of in-process agents on one host would sample it
    /// thousands of times and skew every benchmark.
    pub host_perf: bool,
    pub output_cap: usize,
    /// Keys whose signatures commands must carry; empty accepts unsigned commands.
    pub trusted_keys: Vec<ed25519_dalek::VerifyingKey>,
    /// Credentials and TLS for the broker.
    pub broker: kanade_shared::nats::BrokerAuth,
    /// The version this agent reports and compares `target_version` with.
    pub version: Version,
    /// `None`: do not self-update (agents run in-process by tests and the simulator).
    pub update: Option<UpdateSettings>,
    /// The simulator's stand-in for running scripts; `None` runs them for real.
    pub fake_executor: Option<crate::exec::FakeExecutor>,
    /// `[exec] user`: who `run_as: user` jobs run as on Unix; `None` skips them (122).
    pub exec_user: Option<String>,
    /// Where local users list and acknowledge notifications; `None`: nowhere (in-process agents
    /// of the tests and the simulator), notifications are still kept.
    pub notifications_socket: Option<PathBuf>,
    /// Where the agent's log files are, for `agents.<pc>.logs`; `None`: stdout only.
    pub log_dir: Option<crate::logfile::LogDir>,
}

#[derive(Debug, Clone)]
pub struct UpdateSettings {
    /// The installed binary that an update replaces.
    pub exe: PathBuf,
    pub jitter: Duration,
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Stopped,
    /// A new binary was swapped in: start it.
    Restart,
}

impl Settings {
    /// The defaults for `pc` on `nats_url` keeping its state in `data_dir`: no groups, four
    /// concurrent jobs, 30 s heartbeats, no inventory, unsigned commands accepted, anonymous
    /// plain broker connection. Callers adjust the fields they care about.
    pub fn new(pc: PcId, nats_url: String, data_dir: PathBuf) -> Self {
        Self {
            pc,
            groups: Vec::new(),
            nats_url,
            data_dir,
            max_concurrent_jobs: 4,
            heartbeat_interval: Duration::from_secs(30),
            inventory: None,
            host_perf: true,
            output_cap: OUTPUT_CAP,
            trusted_keys: Vec::new(),
            broker: Default::default(),
            version: crate::update::stamp::version().parse().expect("the agent's own version is valid"),
            update: None,
            fake_executor: None,
            exec_user: None,
            notifications_socket: None,
            log_dir: None,
        }
    }

    /// From agent.toml; `exe` is the installed binary (self-update replaces it), `None` when
    /// it cannot be known.
    pub fn from_config(config: &AgentConfig, exe: Option<PathBuf>) -> Self {
        Self {
            groups: config.groups.clone(),
            max_concurrent_jobs: config.max_concurrent_jobs as usize,
            heartbeat_interval: config.heartbeat_interval.get(),
            inventory: config
                .inventory
                .enabled
                .then(|| (config.inventory.interval.get(), config.inventory.jitter.get())),
            trusted_keys: config.trusted_keys.clone(),
            broker: config.broker.clone(),
            update: exe
                .filter(|_| config.update.enabled)
                .map(|exe| UpdateSettings { exe, jitter: config.update.jitter.get() }),
            exec_user: config.exec_user.clone(),
            notifications_socket: Some(config.notifications_socket.clone()),
            log_dir: (config.log.keep_days > 0)
                .then(|| crate::logfile::LogDir { dir: config.log.path.clone(), prefix: LOG_PREFIX.into() }),
            ..Self::new(config.id.clone(), config.nats_url.clone(), config.data_dir.clone())
        }
    }
}

/// The agent's log files are `<log.path>/kanade-agent.<date>.log`.
pub const LOG_PREFIX: &str = "kanade-agent";

/// Shared by every task of one agent.
pub(crate) struct Ctx {
    pub settings: Settings,
    pub version: Version,
    pub groups: RwLock<Vec<GroupName>>,
    /// Fired when group membership changed: resubscribe and catch up on the new subjects.
    pub groups_changed: Notify,
    /// The same, for the notifications task.
    pub notification_groups_changed: Notify,
    /// Send a heartbeat now (the backend targets groups by what heartbeats report).
    pub beat_now: Notify,
    /// Settings operators push through `agent_config` (pc beats group beats global).
    pub live_config: watch::Sender<AgentConfigPatch>,
    pub store: Store,
    pub client: async_nats::Client,
    /// The client's connection count; see [`kanade_shared::nats::Reconnects`].
    pub connects: watch::Receiver<u64>,
    pub js: async_nats::jetstream::Context,
    pub slots: Arc<Semaphore>,
    /// Runs a kill can reach, fed by the one `kill.*` subscription.
    pub kills: kill::Kills,
    pub outbox_wake: Notify,
    /// Random, kept in the store: the suffix of every `Nats-Msg-Id` this agent publishes. Result
    /// ids can be derived by anyone; a forger who published first under a derived id would make
    /// JetStream drop the real result as a duplicate. Nobody else knows this suffix.
    pub msg_secret: String,
    /// Answers to refused commands (see `runner::report_refusal`).
    pub refusals: std::sync::Mutex<crate::budget::Budget>,
    pub running: AtomicU32,
    /// Output of the runs going now, for watchers.
    pub live: Arc<watchers::LiveRuns>,
    pub started: Instant,
    /// Heartbeats published since start (a version on trial needs one to be confirmed).
    pub beats_sent: AtomicU64,
    /// Quarantined versions and the update status, as heartbeats report them.
    pub update: std::sync::Mutex<UpdateView>,
    /// Stops every task (the caller's shutdown, or a restart into a new binary).
    pub stop: watch::Sender<bool>,
    pub restart: AtomicBool,
    pub shutdown: watch::Receiver<bool>,
}

#[derive(Debug, Default)]
pub(crate) struct UpdateView {
    pub boot: kanade_shared::boot::BootState,
    pub status: Option<String>,
}

impl Ctx {
    pub fn staging_dir(&self) -> PathBuf {
        self.settings.data_dir.join("staging")
    }
}

/// Run one agent until `shutdown` turns true or a new binary was installed. Never returns because
/// the broker is down.
pub async fn run(settings: Settings, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<Exit> {
    kanade_shared::files::private_dir(&settings.data_dir)
        .with_context(|| format!("cannot create data dir {} (owner-only)", settings.data_dir.display()))?;
    // A data dir ordinary users can write (Windows: one made by hand under C:\ProgramData
    // keeps its inherited ACL) would let them plant commands in the ledger or swap binaries.
    let open = kanade_shared::files::writable_by_others(&settings.data_dir)
        .with_context(|| format!("cannot read who may write the data dir {}", settings.data_dir.display()))?;
    if open {
        anyhow::bail!(
            "data dir {} is writable by ordinary users; restrict it to SYSTEM and Administrators (icacls \"{}\" /inheritance:r /grant:r SYSTEM:(OI)(CI)F Administrators:(OI)(CI)F) or delete it to have the agent create it locked down",
            settings.data_dir.display(),
            settings.data_dir.display()
        );
    }
    let db = settings.data_dir.join("agent.db");
    kanade_shared::files::private_file(&db)
        .with_context(|| format!("cannot make the agent store {} owner-only", db.display()))?;
    let store = Store::open(&db).map_err(|e| {
        let why = if e.in_use() {
            format!(
                "another kanade-agent is running with data_dir {} (it holds {} locked); stop it first, or give this one a data_dir of its own",
                settings.data_dir.display(),
                db.display()
            )
        } else {
            format!("cannot open agent store {}", db.display())
        };
        anyhow::Error::new(e).context(why)
    })?;
    let now = kanade_shared::wire::Timestamp::now_utc();
    let cutoff = now - LEDGER_RETENTION;
    store.prune((cutoff.unix_timestamp_nanos() / 1_000_000) as i64)?;

    let msg_secret = msg_secret(&store)?;
    let boot_state = crate::update::install::Layout::new(&settings.data_dir).boot_state();
    let boot = kanade_shared::boot::BootState::load(&boot_state).unwrap_or_default();

    let name = format!("kanade-agent/{}", settings.pc);
    let client = tokio::select! {
        client = kanade_shared::nats::connect_forever(&settings.nats_url, &settings.broker, &name) => client,
        () = stopped(&mut shutdown) => return Ok(Exit::Stopped),
    };
    let js = async_nats::jetstream::new(client.clone());
    let (stop, stop_rx) = watch::channel(false);
    let mut outer = shutdown;
    let forward = stop.clone();
    tokio::spawn(async move {
        stopped(&mut outer).await;
        let _ = forward.send(true);
    });
    let ctx = Arc::new(Ctx {
        groups: RwLock::new(settings.groups.clone()),
        groups_changed: Notify::new(),
        notification_groups_changed: Notify::new(),
        beat_now: Notify::new(),
        live_config: watch::Sender::new(AgentConfigPatch::default()),
        slots: Arc::new(Semaphore::new(settings.max_concurrent_jobs.max(1))),
        version: settings.version.clone(),
        settings,
        store,
        connects: kanade_shared::nats::connection_count(&client),
        client,
        js,
        kills: kill::Kills::default(),
        outbox_wake: Notify::new(),
        msg_secret,
        refusals: std::sync::Mutex::new(crate::budget::Budget::new(60_000, REFUSALS_PER_MINUTE)),
        running: AtomicU32::new(0),
        live: Default::default(),
        started: Instant::now(),
        beats_sent: AtomicU64::new(0),
        update: std::sync::Mutex::new(UpdateView { boot, status: None }),
        stop,
        restart: AtomicBool::new(false),
        shutdown: stop_rx,
    });

    // Kills are heard before any run can start, including the resumed ones.
    let kills = ctx
        .client
        .subscribe(kanade_shared::subjects::KILL_ALL)
        .await
        .context("cannot subscribe to the kill switch")?;
    // Groups from agent_groups must be known before intake subscribes and catches up.
    follow::refresh(&ctx).await;
    runner::recover(&ctx).await?;
    obs::at_start(&ctx);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(kill::listen(ctx.clone(), kills));
    tasks.spawn(follow::follow_loop(ctx.clone()));
    tasks.spawn(outbox::publish_loop(ctx.clone()));
    tasks.spawn(presence::heartbeat_loop(ctx.clone()));
    if ctx.settings.host_perf {
        tasks.spawn(host_perf::host_perf_loop(ctx.clone()));
        tasks.spawn(process_perf::process_perf_loop(ctx.clone()));
    }
    tasks.spawn(presence::ping_responder(ctx.clone()));
    tasks.spawn(watchers::responder(ctx.clone()));
    tasks.spawn(presence::inventory_loop(ctx.clone()));
    tasks.spawn(intake::intake_loop(ctx.clone()));
    tasks.spawn(notifications::notifications_loop(ctx.clone()));
    if let Some(socket) = ctx.settings.notifications_socket.clone() {
        let (handler, stop) = (notifications::handler(ctx.clone()), ctx.shutdown.clone());
        tasks.spawn(async move {
            // Without it notifications are still kept and shown; only the local list is missing.
            if let Err(e) = crate::local_ipc::serve(&socket, handler, stop).await {
                tracing::warn!(error = %format!("{e:#}"), "local users cannot list or acknowledge notifications (set [notifications] socket to a path this agent may create)");
            }
        });
    }
    tasks.spawn(updates::update_loop(ctx.clone()));
    tracing::info!(pc = %ctx.settings.pc, "agent running");
    if ctx.settings.trusted_keys.is_empty() {
        tracing::warn!(
            "COMMANDS ARE NOT VERIFIED: no security.trusted_keys configured, so anyone who can publish to the broker can run scripts here; pin the backend's key (GET /api/signing-key)"
        );
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "agent task failed");
        }
    }
    let restart = ctx.restart.load(Ordering::SeqCst);
    let why = if restart { "restart into a new version" } else { "stop" };
    obs::send(
        &ctx,
        kanade_shared::wire::obs::AGENT_STOPPING,
        [("reason".to_owned(), why.into())].into_iter().collect(),
    );
    // Let the outbox send what it can within a moment; the rest goes at next start.
    let _ = tokio::time::timeout(Duration::from_secs(2), outbox::drain_once(&ctx, true)).await;
    outbox::settle(&ctx);
    let _ = tokio::time::timeout(Duration::from_secs(1), ctx.client.flush()).await;
    Ok(if restart { Exit::Restart } else { Exit::Stopped })
}

/// This agent's `Nats-Msg-Id` suffix (see `Ctx::msg_secret`), made once per data dir.
fn msg_secret(store: &Store) -> anyhow::Result<String> {
    const KEY: &str = "msg_id_secret";
    if let Some(secret) = store.meta(KEY)? {
        return Ok(secret);
    }
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for the message id secret: {e}"))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    store.set_meta(KEY, &secret)?;
    Ok(secret)
}

/// After a reconnect an agent heartbeats within a second; re-reading its bucket keys and
/// catching up on EXEC wait a random point of the next few seconds. A fleet reconnecting
/// together would otherwise send its ~10 direct gets per agent in the same second, and after a
/// broker restart under 10,000 agents those queued long enough to time out for 15 s, holding
/// the heartbeats up behind them.
const RECONNECT_SPREAD: std::ops::Range<u64> = 1_000..4_000;

/// Wait out this agent's share of [`RECONNECT_SPREAD`]; `false` when shutdown came first.
pub(crate) async fn spread_after_reconnect(stop: &mut watch::Receiver<bool>) -> bool {
    let wait = Duration::from_millis(fastrand::u64(RECONNECT_SPREAD));
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = stopped(stop) => false,
    }
}

/// A core subscription on each of `filters`; one that fails is logged (what it carries then
/// arrives by the caller's catch-up only, `what` says which) and left out.
pub(crate) async fn subscribe_each(
    ctx: &Ctx,
    filters: Vec<String>,
    what: &str,
) -> Vec<async_nats::Subscriber> {
    let mut subs = Vec::with_capacity(filters.len());
    for filter in filters {
        match ctx.client.subscribe(filter.clone()).await {
            Ok(sub) => subs.push(sub),
            Err(e) => {
                tracing::error!(filter, error = %e, "cannot subscribe; {what} on it arrive by catch-up only")
            }
        }
    }
    subs
}

/// When `needed`, wait about `backoff` (jittered between half and one and a half of it, so agents
/// that failed together — a congested broker — do not retry together); otherwise never resolve.
pub(crate) async fn retry_pause(needed: bool, backoff: Duration) {
    if needed {
        tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64())).await
    } else {
        std::future::pending().await
    }
}

pub(crate) fn now_ms() -> i64 {
    (kanade_shared::wire::Timestamp::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Resolves once shutdown is requested. (Dropping `wait_for`'s guard here keeps callers' futures
/// `Send`.)
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
