//! `kanade-bench`: starts nats-server, the release backend and the fleet simulator, runs the
//! fleet scenarios and writes a markdown report (`scripts/bench.sh` adds the ingest and real
//! agent benches and writes `BENCHMARKS.md`). Figures are as measured; targets say met/missed.

mod api;
mod floor;
mod meter;
mod procs;
mod report;
mod timeline;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use meter::{Meter, Spent};
use procs::{Backend, Sim, SimKind, Window};
use report::{ms, percentile, table, verdict};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "kanade-bench",
    about = "kanade fleet benchmarks (simulated agents, real broker and backend)"
)]
struct Cli {
    /// Simulated agents
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// Fan-out sizes (each at most --agents), comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    sizes: Vec<usize>,
    /// Broadcasts per size (the median is reported)
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Where the simulated agents keep their state
    #[arg(long, default_value = "/dev/shm/kanade-bench")]
    data_dir: PathBuf,
    /// Write the report here (stdout too)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Agents per simulator process (each agent holds a socket and its SQLite files, and a
    /// process may only open so many files)
    #[arg(long, default_value_t = 4000)]
    per_process: usize,
    /// Which scenarios to run, comma-separated (they always run in this order)
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "fanout,api,heartbeats,storm,cluster-storm"
    )]
    scenarios: Vec<Scenario>,
    /// The backend's store: an SQLite file, or a throwaway Postgres cluster
    #[arg(long, value_enum, default_value = "sqlite")]
    db: Store,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Store {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    Fanout,
    Api,
    Heartbeats,
    Storm,
    /// On a fleet of its own, after the others: a 3-node cluster that loses a node.
    ClusterStorm,
}

/// The simulator processes of one fleet.
struct Fleet(Vec<Sim>);

impl Fleet {
    fn start(
        nats_url: &str,
        agents: usize,
        per: usize,
        sizes: &[usize],
        dir: &std::path::Path,
        logs: &std::path::Path,
        kind: &SimKind,
    ) -> anyhow::Result<Self> {
        let mut sims = Vec::new();
        let mut first = 0;
        while first < agents {
            let n = per.min(agents - first);
            sims.push(Sim::start(
                nats_url,
                (first, n, agents),
                sizes,
                &dir.join(format!("p{}", sims.len())),
                &logs.join(format!("sim-{}.log", sims.len())),
                (kind, sims.is_empty()),
            )?);
            first += n;
        }
        Ok(Self(sims))
    }

    /// The first process watches the whole fleet's heartbeats.
    fn watcher(&self) -> anyhow::Result<&Sim> {
        self.0.first().context("no simulator process")
    }

    /// Wait until the watcher hears `n` agents.
    fn wait_heartbeating(&self, n: usize, window: Window, within: Duration) -> anyhow::Result<Duration> {
        self.watcher()?.wait_heartbeating(n, window, within)
    }

    fn runs(&self) -> (u64, u64) {
        self.0.iter().map(Sim::now).fold((0, 0), |(r, d), s| (r + s.runs, d + s.doubles))
    }

    /// How often the watcher's connection came back.
    fn reconnects(&self) -> u64 {
        self.watcher().map_or(0, |s| s.now().reconnects)
    }

    fn pids(&self) -> Vec<u32> {
        self.0.iter().map(Sim::pid).collect()
    }
}

/// One benchmark run's moving parts.
struct Rig {
    nats: kanade_testkit::NatsServer,
    backend: Backend,
    sim: Fleet,
    rt: tokio::runtime::Runtime,
    js: async_nats::jetstream::Context,
    agents: usize,
    /// The latest (largest) broadcast, for the API scenario.
    last_exec: Option<String>,
    /// nats-server's monitoring port (`/varz`).
    monitor: u16,
    /// The floor at each fan-out size, measured before the fleet started.
    floor: std::collections::BTreeMap<usize, FloorAt>,
    /// Where the simulated agents keep their stores.
    agents_dir: PathBuf,
}

impl Rig {
    fn set_heartbeat(&self, cadence: &str) -> anyhow::Result<()> {
        self.rt.block_on(async {
            let kv = self.js.get_key_value("agent_config").await?;
            kv.put("global", format!("{{\"heartbeat_interval\":\"{cadence}\"}}").into()).await?;
            anyhow::Ok(())
        })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sizes: Vec<usize> = cli.sizes.iter().copied().filter(|&s| s <= cli.agents).collect();
    let work = tempfile_dir()?;
    let measured = measure(&cli, &sizes, &work);
    // The simulated agents' logs run to ~100 MB a process: kept only when a run fails (to read
    // why) or when asked for.
    if measured.is_ok() && std::env::var_os("KANADE_BENCH_KEEP").is_none() {
        if let Err(e) = std::fs::remove_dir_all(&work) {
            eprintln!("cannot remove the run's work directory {}: {e}", work.display());
        }
    } else {
        eprintln!("the run's logs are kept in {}", work.display());
    }
    measured
}

/// Every scenario asked for, into `--out` and stdout; logs and databases in `work`.
fn measure(cli: &Cli, sizes: &[usize], work: &std::path::Path) -> anyhow::Result<()> {
    // Kept alive for the run; stopped when dropped.
    let pg = match cli.db {
        Store::Sqlite => None,
        Store::Postgres => Some(kanade_testkit::PgCluster::start().map_err(anyhow::Error::msg)?),
    };
    let db_line = |dir: &std::path::Path| match &pg {
        None => format!("sqlite_path = {:?}", dir.join("backend.db")),
        Some(c) => format!("url = {:?}", c.fresh_database()),
    };
    let mut out = String::new();
    if cli.scenarios.iter().any(|s| *s != Scenario::ClusterStorm) {
        single_server(cli, sizes, work, &db_line(work), &mut out)?;
    }
    if cli.scenarios.contains(&Scenario::ClusterStorm) {
        eprintln!("ClusterStorm");
        let dir = work.join("cluster");
        std::fs::create_dir_all(&dir)?;
        out.push_str(&cluster_storm(cli, &dir, &db_line(&dir))?);
        if let Some(path) = &cli.out {
            std::fs::write(path, &out).with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    print!("{out}");
    Ok(())
}

/// The scenarios on one nats-server, one fleet; `out` gains each section as it is measured.
fn single_server(
    cli: &Cli,
    sizes: &[usize],
    work: &std::path::Path,
    db_line: &str,
    out: &mut String,
) -> anyhow::Result<()> {
    let monitor = kanade_testkit::free_port().map_err(anyhow::Error::msg)?;
    let nats = kanade_testkit::NatsServer::try_start_with(format!("http: 127.0.0.1:{monitor}"))
        .map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut floors = std::collections::BTreeMap::new();
    if cli.scenarios.contains(&Scenario::Fanout) {
        eprintln!("Floor");
        let (section, medians) = floor_scenario(cli, sizes, &rt, &nats, monitor, work)?;
        out.push_str(&section);
        floors = medians;
    }
    let backend = Backend::start(work, &nats.url(), 1, db_line)?;
    // The context spawns a task: make it inside the runtime.
    let js = rt
        .block_on(async { anyhow::Ok(async_nats::jetstream::new(async_nats::connect(nats.url()).await?)) })?;
    eprintln!("starting {} simulated agents (their logs: {}/sim-*.log)", cli.agents, work.display());
    let agents = SimKind::Agents { trusted_key: signing_key(backend.port)? };
    let sim = Fleet::start(&nats.url(), cli.agents, cli.per_process, sizes, &cli.data_dir, work, &agents)?;
    let connect = sim.wait_heartbeating(cli.agents, Window::Alive, Duration::from_secs(900))?;
    wait_projected(backend.port, cli.agents)?;
    let mut rig = Rig {
        nats,
        backend,
        sim,
        rt,
        js,
        agents: cli.agents,
        last_exec: None,
        monitor,
        floor: floors,
        agents_dir: cli.data_dir.clone(),
    };
    out.insert_str(0, &format!(
        "Simulated agents: {} in {} processes (one NATS connection each, real agent runtime, fake executor), all heartbeating {} after start (paced at 1,000 starts/s per process). Backend store: {:?}.\n\n",
        cli.agents,
        rig.sim.0.len(),
        ms(connect),
        cli.db
    ));
    create_noop_job(rig.backend.port)?;
    for scenario in [Scenario::Fanout, Scenario::Api, Scenario::Heartbeats, Scenario::Storm] {
        if !cli.scenarios.contains(&scenario) {
            continue;
        }
        eprintln!("{scenario:?}");
        let section = match scenario {
            Scenario::Fanout => fanout(&mut rig, sizes, cli.repeat)?,
            Scenario::Api => api_latency(&mut rig)?,
            Scenario::Heartbeats => heartbeats(&rig)?,
            Scenario::Storm => storm(&mut rig, work)?,
            Scenario::ClusterStorm => continue,
        };
        out.push_str(&section);
        // Written after every scenario, so a run that fails late keeps what it measured.
        if let Some(path) = &cli.out {
            std::fs::write(path, &*out).with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}

/// 5b. Reconnect storm on a 3-node cluster (every stream, bucket and store R3), a fleet of its
/// own: SIGKILL the node holding the most client connections. Its clients reconnect to the
/// others from their URL lists; "back" is when the surviving nodes hold every client
/// connection the cluster had (their `/varz`), and a broadcast to the whole fleet then shows
/// every agent is working again.
fn cluster_storm(cli: &Cli, work: &std::path::Path, db_line: &str) -> anyhow::Result<String> {
    const WHOLE: Duration = Duration::from_secs(120);
    let agents = cli.agents;
    let mut cluster = kanade_testkit::NatsCluster::start(3);
    let url = cluster.url();
    // A runtime that runs between calls: this client reconnects like every other.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let js = rt.block_on(async {
        let client = kanade_shared::nats::connect_forever(&url, &Default::default(), "kanade-bench").await;
        let js = async_nats::jetstream::new(client);
        cluster.wait_whole(&js, WHOLE).await;
        js
    });
    let backend = Backend::start(work, &url, 3, db_line)?;
    eprintln!("starting {agents} simulated agents on the cluster (their logs: {}/sim-*.log)", work.display());
    let kind = SimKind::Agents { trusted_key: signing_key(backend.port)? };
    let sim =
        Fleet::start(&url, agents, cli.per_process, &[agents], &cli.data_dir.join("cluster"), work, &kind)?;
    let connect = sim.wait_heartbeating(agents, Window::Alive, Duration::from_secs(900))?;
    wait_projected(backend.port, agents)?;
    create_noop_job(backend.port)?;
    rt.block_on(cluster.wait_whole(&js, WHOLE));
    // The same broadcast on the whole cluster: what the one after the loss compares with.
    let (baseline, _) = broadcast(backend.port, &json!({ "all": true }), agents)?;
    let held = (0..cluster.len()).map(|i| cluster.connections(i)).collect::<Result<Vec<u64>, String>>();
    let held = held.map_err(anyhow::Error::msg)?;
    let total: u64 = held.iter().sum();
    let victim = (0..held.len()).max_by_key(|&i| held[i]).unwrap_or(0);
    let before = connections_by_name(&cluster, 0..cluster.len());
    let runs_before = sim.runs().0;

    cluster.kill(victim);
    let t0 = Instant::now();
    let survivors = || -> u64 {
        (0..cluster.len()).filter(|&i| i != victim).map(|i| cluster.connections(i).unwrap_or(0)).sum()
    };
    let back = loop {
        if survivors() >= total {
            break Ok(t0.elapsed());
        }
        if t0.elapsed() > Duration::from_secs(180) {
            break Err(format!(
                "the surviving nodes hold {} of {total} connections after 180 s",
                survivors()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let back_text = match &back {
        Ok(d) => format!("{} (≤ 30 s: {})", ms(*d), verdict(*d <= Duration::from_secs(30))),
        Err(e) => {
            let now = connections_by_name(&cluster, (0..cluster.len()).filter(|&i| i != victim));
            let missing: Vec<_> = before.iter().filter(|(n, k)| now.get(*n) < Some(k)).collect();
            eprintln!("cluster storm: {e}; connections missing by name: {missing:?}");
            format!("**missed**: {e}")
        }
    };
    let after = if back.is_ok() {
        broadcast(backend.port, &json!({ "all": true }), agents)
            .map(|(d, _)| format!("{} ({:.2} × before)", ms(d), d.as_secs_f64() / baseline.as_secs_f64()))
            .unwrap_or_else(|e| format!("failed: {e}"))
    } else {
        "not run (the fleet was not back)".to_owned()
    };
    let since_kill = ms(t0.elapsed());
    std::thread::sleep(Duration::from_secs(2));
    let (runs_after, doubles) = sim.runs();
    Ok(format!(
        "\n### 5b. Reconnect storm: one node of a 3-node cluster (R3) killed under {agents} agents\n\nAgents all heartbeating {} after start, spread over the nodes by their clients; node n{} held {} of {total} client connections when it was SIGKILLed.\n\n{}",
        ms(connect),
        victim + 1,
        held[victim],
        table(
            &[
                "every connection on the surviving nodes after",
                "broadcast to all before the kill",
                "broadcast to all after",
                "kill → broadcast complete",
                "runs before → after",
                "double runs"
            ],
            &[vec![
                back_text,
                ms(baseline),
                after,
                since_kill,
                format!("{runs_before} → {runs_after}"),
                format!("{doubles} ({})", verdict(doubles == 0)),
            ]],
        )
    ))
}

/// The floor's medians at one size: its time, and the CPU all its processes spent.
#[derive(Debug, Clone, Copy)]
struct FloorAt {
    took: Duration,
    cpu: Duration,
}

/// The floor at each size (see `floor.rs`), on the broker the fleet then uses, before the fleet
/// starts: its subscriber processes are gone when the fleet's are measured.
fn floor_scenario(
    cli: &Cli,
    sizes: &[usize],
    rt: &tokio::runtime::Runtime,
    nats: &kanade_testkit::NatsServer,
    monitor: u16,
    work: &std::path::Path,
) -> anyhow::Result<(String, std::collections::BTreeMap<usize, FloorAt>)> {
    let largest = sizes.iter().copied().max().unwrap_or(0);
    std::fs::create_dir_all(work.join("floor"))?;
    let subscribers = Fleet::start(
        &nats.url(),
        largest,
        cli.per_process,
        sizes,
        &cli.data_dir.join("floor"),
        &work.join("floor"),
        &SimKind::Floor,
    )?;
    for sim in &subscribers.0 {
        sim.wait_started(Duration::from_secs(300))?;
    }
    let meter = Meter {
        components: vec![
            ("nats-server", vec![nats.pid().context("nats-server is not running")?]),
            ("subscribers", subscribers.pids()),
            ("consumer", vec![std::process::id()]),
        ],
        monitor,
    };
    let mut floor = rt.block_on(floor::Floor::open(&nats.url(), work))?;
    let mut rows = Vec::new();
    let mut medians = std::collections::BTreeMap::new();
    for &n in sizes {
        for _ in 0..FLOOR_WARM_UP {
            let warm_up = rt.block_on(floor.round(n, &meter))?;
            eprintln!("floor warm-up round at {n}: {} ms", warm_up.took.as_millis());
        }
        let mut rounds = Vec::new();
        for _ in 0..cli.repeat {
            let round = rt.block_on(floor.round(n, &meter))?;
            eprintln!(
                "floor round at {n}: {} ms, CPU s {}",
                round.took.as_millis(),
                cpu_split(&round.spent.cpu)
            );
            rounds.push(round);
        }
        let times: Vec<Duration> = rounds.iter().map(|r| r.took).collect();
        let spent = meter::median(&rounds.iter().map(|r| r.spent.clone()).collect::<Vec<_>>());
        let median = percentile(&times, 50.0).unwrap_or_default();
        medians.insert(n, FloorAt { took: median, cpu: spent.total_cpu() });
        let mut row = vec![format!("{n}"), ms(median), spread(&times)];
        row.extend(spent.cpu.iter().map(|c| format!("{:.2}", c.as_secs_f64())));
        row.push(format!("{:.1}", spent.msgs as f64 / n as f64));
        rows.push(row);
    }
    drop(subscribers);
    Ok((
        format!(
            "### 0. Floor (one core-NATS publish → N bare subscribers → one acked JetStream publish each → one pull consumer writing SQLite in batches; same broker, before the fleet starts; at each size {FLOOR_WARM_UP} rounds first, not measured: the subscribers' first publishes)\n\n{}\n",
            table(
                &[
                    "agents",
                    "median of runs",
                    "min – max",
                    "CPU s nats-server",
                    "CPU s subscribers",
                    "CPU s consumer",
                    "broker msgs per run",
                ],
                &rows
            )
        ),
        medians,
    ))
}

/// Floor rounds run at each size before the measured ones, as the fan-out is measured only
/// after its warm-up broadcasts. The first is the subscribers' first JetStream publish (the
/// client sets up its reply subscription then) and takes 1.5–2 × the rounds after it; the
/// second still came out 10–20 % slower than those after it (455–479 ms against 372–445 ms at
/// 10,000 in five runs, leaving out the one round per run a broker pause made 485–566 ms), and
/// in a median of five it moved the floor up by one rank.
const FLOOR_WARM_UP: usize = 3;

fn spread(times: &[Duration]) -> String {
    let lo = times.iter().min().copied().unwrap_or_default();
    let hi = times.iter().max().copied().unwrap_or_default();
    format!("{} – {}", ms(lo), ms(hi))
}

/// How long the fleet is watched at rest before each broadcast, to take its idle cost out.
const IDLE_SAMPLE: Duration = Duration::from_secs(2);

/// 1. Broadcast fan-out, each size against the floor, with what it cost.
fn fanout(rig: &mut Rig, sizes: &[usize], repeat: usize) -> anyhow::Result<String> {
    let meter = Meter {
        components: vec![
            ("nats-server", vec![rig.nats.pid().context("nats-server is not running")?]),
            ("backend", vec![rig.backend.pid()]),
            ("simulator", rig.sim.pids()),
        ],
        monitor: rig.monitor,
    };
    let warm_up = warm_up(rig)?;
    let mut rows = Vec::new();
    for &n in sizes {
        let target = if n == rig.agents {
            json!({ "all": true })
        } else {
            json!({ "groups": [format!("first-{n}")] })
        };
        let mut times = Vec::new();
        let mut costs = Vec::new();
        let mut idle_rates = Vec::new();
        for _ in 0..repeat {
            let rest = meter.read();
            std::thread::sleep(IDLE_SAMPLE);
            let before = meter.read();
            let idle = before.since(&rest);
            let sampler =
                timeline::on().then(|| timeline::Sampler::start(meter.components.clone(), meter.monitor));
            let (took, id) = broadcast(rig.backend.port, &target, n)?;
            if let Some(sampler) = sampler {
                eprintln!("{}", sampler.finish());
            }
            let cost = meter.read().since(&before).minus_idle(took, &idle, IDLE_SAMPLE);
            // Each run as it goes, for telling a slow run's cause from noise (the report keeps
            // medians only).
            eprintln!("broadcast to {n}: {} ms, CPU s {}", took.as_millis(), cpu_split(&cost.cpu));
            costs.push(cost);
            idle_rates.push(idle.msgs as f64 / IDLE_SAMPLE.as_secs_f64());
            times.push(took);
            rig.last_exec = Some(id);
        }
        idle_rates.sort_by(f64::total_cmp);
        let idle_msgs_per_s = idle_rates.get(idle_rates.len() / 2).copied().unwrap_or(0.0);
        let median = percentile(&times, 50.0).unwrap_or_default();
        let spent: Spent = meter::median(&costs);
        let floor = rig.floor.get(&n).copied();
        let times_floor = floor.map(|f| median.as_secs_f64() / f.took.as_secs_f64().max(1e-6));
        // What bounds `× floor` on a box where every process shares the cores: with them all
        // busy throughout, the time ratio would be this.
        let cpu_floor = floor.map(|f| spent.total_cpu().as_secs_f64() / f.cpu.as_secs_f64().max(1e-6));
        // nats-server + backend, per agent-run.
        let server_ms = (spent.cpu[0] + spent.cpu[1]).as_secs_f64() * 1000.0 / n as f64;
        let per_run = spent.msgs as f64 / n as f64;
        let target_note = if n == 10_000 {
            format!(
                "≤ 2 s: {}; ≤ 3 × floor: {}; ≤ 0.15 ms: {}; ≤ 5 msgs: {}",
                verdict(median <= Duration::from_secs(2)),
                verdict(times_floor.is_some_and(|r| r <= 3.0)),
                verdict(server_ms <= 0.15),
                verdict(per_run <= 5.0),
            )
        } else {
            String::new()
        };
        rows.push(vec![
            format!("{n}"),
            ms(median),
            spread(&times),
            floor.map_or("-".into(), |f| ms(f.took)),
            times_floor.map_or("-".into(), |r| format!("{r:.2}")),
            cpu_split(&spent.cpu),
            cpu_floor.map_or("-".into(), |r| format!("{r:.2}")),
            format!("{server_ms:.3} ms"),
            format!("{per_run:.1}"),
            format!("{idle_msgs_per_s:.0}"),
            target_note,
        ]);
    }
    Ok(format!(
        "### 1. Broadcast fan-out (no-op job → execution `completed` in the database; medians of runs, CPU and messages per broadcast)\n\nCPU and messages are the broadcast's own: what each component spent at rest over the {} s before each broadcast (heartbeats, mostly) is taken out at its rate. `CPU × floor's CPU` is the broadcast's CPU, every process summed, over the floor's at the same size: on cores every process shares, the ratio `× floor` reaches when both keep every core busy. Measured once the fleet is past its first runs: {} broadcasts to all {} agents went first, until the agents' WAL files stopped growing (median {}, {}; see [`warm_up`](crates/kanade-sim/src/bin/kanade-bench/main.rs)).{}\n\n{}",
        IDLE_SAMPLE.as_secs(),
        warm_up.len(),
        rig.agents,
        percentile(&warm_up, 50.0).map_or("-".into(), ms),
        spread(&warm_up),
        if timeline::on() {
            " **Sampled with `KANADE_BENCH_TIMELINE`: its sampling cost CPU in every broadcast; not figures to compare.**"
        } else {
            ""
        },
        table(
            &[
                "agents",
                "median of runs",
                "min – max",
                "floor",
                "× floor",
                "CPU s nats-server / backend / simulator",
                "CPU × floor's CPU",
                "server CPU per agent-run",
                "broker msgs per agent-run",
                "idle broker msgs/s (taken out)",
                "target"
            ],
            &rows
        )
    ))
}

/// CPU seconds per component, in [`Meter::components`] order: `0.75 / 0.30 / 2.05`.
fn cpu_split(cpu: &[Duration]) -> String {
    cpu.iter().map(|c| format!("{:.2}", c.as_secs_f64())).collect::<Vec<_>>().join(" / ")
}

/// Most broadcasts [`warm_up`] makes before measuring anyway.
const WARM_UP_MAX: usize = 30;

/// A new fleet's first runs grow each agent's SQLite WAL to its steady size (after each
/// checkpoint it is rewritten in place, never grown again). Until then every broadcast also pays
/// for fresh file pages; on a VM that hands freed memory back to its host (virtio-balloon free
/// page reporting, as on the machine these figures were taken on) each is a host fault, which
/// added ~0.8 CPU-s to a broadcast at 10,000 agents on tmpfs and made its time swing 2×. A fleet
/// in service is past its first dozen runs, so broadcast to everyone until the agents' WAL files
/// grew by less than 1%; their times are reported beside the figures, not in them.
fn warm_up(rig: &mut Rig) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::new();
    let mut wal = wal_bytes(&rig.agents_dir);
    while times.len() < WARM_UP_MAX {
        let (took, id) = broadcast(rig.backend.port, &json!({ "all": true }), rig.agents)?;
        times.push(took);
        rig.last_exec = Some(id);
        let now = wal_bytes(&rig.agents_dir);
        eprintln!(
            "warm-up broadcast {}: {} ms; the agents' WAL files hold {} MB",
            times.len(),
            took.as_millis(),
            now >> 20
        );
        if wal_settled(wal, now) {
            break;
        }
        wal = now;
    }
    Ok(times)
}

/// Pure: over one broadcast the agents' WAL files grew by less than 1% (`before` → `after`
/// bytes), so they reached their steady size.
fn wal_settled(before: u64, after: u64) -> bool {
    after <= before + before / 100
}

/// Bytes in the `*-wal` files under `dir`, at any depth.
fn wal_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => wal_bytes(&e.path()),
            Ok(_) if e.file_name().to_string_lossy().ends_with("-wal") => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// 4. API under load, on the largest broadcast (one is made if fan-out did not run).
fn api_latency(rig: &mut Rig) -> anyhow::Result<String> {
    let exec = match rig.last_exec.clone() {
        Some(id) => id,
        None => broadcast(rig.backend.port, &json!({ "all": true }), rig.agents)?.1,
    };
    let paths = [
        ("/api/agents?limit=50".to_owned(), "agents page 1"),
        (
            format!("/api/agents?limit=50&sort=last_seen&desc=true&offset={}", rig.agents / 2),
            "agents, sorted, middle page",
        ),
        (format!("/api/executions/{exec}?pcs=false"), "one execution's status (largest)"),
        (format!("/api/executions/{exec}"), "one execution with every PC's row"),
    ];
    let mut rows = Vec::new();
    for (path, label) in &paths {
        let mut times = Vec::new();
        for _ in 0..300 {
            let t0 = Instant::now();
            api::get(rig.backend.port, path)?;
            times.push(t0.elapsed());
        }
        let p99 = percentile(&times, 99.0).unwrap_or_default();
        let target = if label.contains("every PC") {
            "(no target)".to_owned()
        } else {
            format!("p99 ≤ 50 ms: {}", verdict(p99 <= Duration::from_millis(50)))
        };
        rows.push(vec![label.to_string(), ms(percentile(&times, 50.0).unwrap_or_default()), ms(p99), target]);
    }
    Ok(format!(
        "\n### 4. API with {} agents registered (300 sequential requests each)\n\n{}",
        rig.agents,
        table(&["request", "p50", "p99", "target"], &rows)
    ))
}

/// 3. Heartbeat load at 30 s, then 1 s (pushed live through agent_config).
fn heartbeats(rig: &Rig) -> anyhow::Result<String> {
    let nats_pid = rig.nats.pid().context("nats-server is not running")?;
    let mut pids = vec![rig.backend.pid(), nats_pid];
    pids.extend(rig.sim.pids());
    let mut rows = Vec::new();
    for (cadence, settle) in [("30s", 5), ("1s", 10)] {
        rig.set_heartbeat(cadence)?;
        std::thread::sleep(Duration::from_secs(settle));
        let u = procs::usage(&pids, Duration::from_secs(30));
        for (name, (cpu, rss)) in ["kanade-backend", "nats-server", "kanade-sim (all agents)"].iter().zip(u) {
            rows.push(vec![
                cadence.to_owned(),
                name.to_string(),
                format!("{cpu:.1} %"),
                format!("{rss:.0} MiB"),
            ]);
        }
    }
    Ok(format!(
        "\n### 3. Heartbeats of {} agents (CPU % of one core, averaged over 30 s; peak RSS)\n\n{}",
        rig.agents,
        table(&["cadence", "process", "CPU", "RSS"], &rows)
    ))
}

/// Reconnect storm (5.), at the production cadence: a broker crash and restart; an agent is back
/// once it reconnected and said so (it heartbeats on reconnect), catch-up included.
fn storm(rig: &mut Rig, work: &std::path::Path) -> anyhow::Result<String> {
    let agents = rig.agents;
    rig.set_heartbeat("30s")?;
    std::thread::sleep(Duration::from_secs(5));
    let runs_before = rig.sim.runs().0;
    let next = rig.sim.reconnects() + 1;
    rig.nats.restart();
    let t0 = Instant::now();
    let back = rig
        .sim
        .wait_heartbeating(agents, Window::SinceReconnect(next), Duration::from_secs(180))
        .map(|_| t0.elapsed());
    let back_text = match &back {
        Ok(d) => format!("{} (≤ 15 s: {})", ms(*d), verdict(*d <= Duration::from_secs(15))),
        Err(e) => {
            let seen = rig.sim.watcher().ok().map(|s| (s.now().reconnects, s.now().back));
            eprintln!(
                "storm: {e:#}; the watcher's (reconnects, back): {seen:?} (wanted reconnects ≥ {next}); logs in {}; nats-server log:\n{}",
                work.display(),
                tail(&rig.nats.log(), 40)
            );
            format!("**missed**: {e}")
        }
    };
    let after = if back.is_ok() && wait_projected(rig.backend.port, agents).is_ok() {
        broadcast(rig.backend.port, &json!({ "all": true }), agents)
            .map(|(d, _)| ms(d))
            .unwrap_or_else(|e| format!("failed: {e}"))
    } else {
        "not run (the fleet was not back)".to_owned()
    };
    std::thread::sleep(Duration::from_secs(2));
    let (runs_after, doubles) = rig.sim.runs();
    Ok(format!(
        "\n### 5. Reconnect storm: nats-server restarted under {agents} agents\n\n{}",
        table(
            &[
                "all heartbeating again after",
                "broadcast after the storm",
                "runs before → after",
                "double runs"
            ],
            &[vec![
                back_text,
                after,
                format!("{runs_before} → {runs_after}"),
                format!("{doubles} ({})", verdict(doubles == 0)),
            ]],
        )
    ))
}

/// How many client connections of each name the `nodes` hold.
fn connections_by_name(
    cluster: &kanade_testkit::NatsCluster,
    nodes: impl Iterator<Item = usize>,
) -> std::collections::BTreeMap<String, usize> {
    let mut all = std::collections::BTreeMap::new();
    for i in nodes {
        for n in cluster.connection_names(i).unwrap_or_default() {
            *all.entry(n).or_default() += 1;
        }
    }
    all
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The public key the backend signs commands with, for the agents' `trusted_keys`.
fn signing_key(port: u16) -> anyhow::Result<String> {
    let body: kanade_shared::api::service::SigningKey =
        serde_json::from_value(api::get(port, "/api/signing-key")?)
            .context("GET /api/signing-key: not the signing-key body")?;
    Ok(body.public_key)
}

/// The job every broadcast runs.
fn create_noop_job(port: u16) -> anyhow::Result<()> {
    let job = json!({ "id": "bench-noop", "version": "1", "execute": { "shell": "sh", "script": "true", "timeout": "60s" } });
    api::post(port, "/api/jobs", &job).map(drop)
}

/// Exec the no-op job on `target`; time until the execution is `completed` with `n` results.
fn broadcast(port: u16, target: &serde_json::Value, n: usize) -> anyhow::Result<(Duration, String)> {
    let t0 = Instant::now();
    // Right after a broker restart the backend may not be reconnected yet: it refuses, retry.
    let launched = loop {
        match api::post(port, "/api/exec/bench-noop", &json!({ "target": target })) {
            Ok(v) => break v,
            Err(e) if t0.elapsed() < Duration::from_secs(60) => {
                eprintln!("exec refused ({e:#}); retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    };
    let id = launched["exec_id"].as_str().context("no exec_id")?.to_owned();
    if timeline::on() {
        eprintln!("POST /api/exec answered after {} ms", t0.elapsed().as_millis());
    }
    loop {
        let e = api::get(port, &format!("/api/executions/{id}?pcs=false"))?;
        let status = e["execution"]["status"].as_str().unwrap_or_default().to_owned();
        if status == "completed" || status == "failed" {
            let done = e["execution"]["succeeded"].as_u64().unwrap_or(0) as usize;
            if done != n {
                bail!("execution {id} ended {status} with {done} of {n} succeeded");
            }
            return Ok((t0.elapsed(), id));
        }
        if t0.elapsed() > Duration::from_secs(300) {
            bail!("execution {id} still {status} after 300 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait until the backend's projection shows `n` agents online.
fn wait_projected(port: u16, n: usize) -> anyhow::Result<()> {
    let t0 = Instant::now();
    loop {
        let v = api::get(port, "/api/agents?limit=1&status=online")?;
        if v["total"].as_u64().unwrap_or(0) as usize >= n {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(300) {
            bail!("the backend sees {} of {n} agents online after 300 s", v["total"]);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kanade-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::wal_settled;

    #[test]
    fn the_wal_files_have_settled_once_a_broadcast_grows_them_by_less_than_one_percent() {
        for (before, after, settled) in [
            (287 << 20, 359 << 20, false),
            (1003 << 20, 1009 << 20, true),
            (1000, 1010, true),
            (1000, 1011, false),
            (1000, 990, true),
            (0, 0, true),
        ] {
            assert_eq!(wal_settled(before, after), settled, "{before} → {after}");
        }
    }
}
