//! `kanade-sim`: run N simulated agents against a broker and report how many are heartbeating.
//! Lines on stdout: `started N`, then every report interval `heartbeating N/M recent R back B
//! reconnects K runs X doubles D` (heard from within `--alive`; within the last 3 s; since the
//! watcher's connection last came back, which it did K times; fake runs so far; runs of an exec
//! on a PC beyond its first).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kanade_agent::exec::FakeExecutor;
use kanade_sim::SimConfig;

#[derive(Debug, Parser)]
#[command(name = "kanade-sim", version, about = "Simulated kanade agents (real runtime, fake executor)")]
struct Cli {
    /// The broker, or a cluster's nodes as a comma-separated list
    #[arg(long, env = "KANADE_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// How many agents
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Index of this process's first agent in the fleet (several processes share a fleet)
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// Size of the whole fleet (default: first + agents); canary and size groups use it
    #[arg(long)]
    fleet: Option<usize>,
    #[arg(long, default_value = "sim")]
    prefix: String,
    /// Share of agents also in group `canary` (all are in `fleet`)
    #[arg(long, default_value_t = 0.05)]
    canary_share: f64,
    /// Sizes s for groups `first-<s>` (the first s agents), comma-separated
    #[arg(long, value_delimiter = ',')]
    size_groups: Vec<usize>,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Agents started per second
    #[arg(long, default_value_t = 500)]
    start_rate: u32,
    /// Where the agents keep their state (one dir each)
    #[arg(long, default_value = "/dev/shm/kanade-sim")]
    data_dir: PathBuf,
    /// How long a fake run takes
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    run_time: Duration,
    /// Share of fake runs that exit 1
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// Bytes of stdout per fake run
    #[arg(long, default_value_t = 16)]
    output_bytes: usize,
    /// Append one line `<exec> <pc>` per run here, as it starts
    #[arg(long)]
    run_log: Option<PathBuf>,
    /// How often to report the heartbeating count
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    report: Duration,
    /// An agent counts as heartbeating when heard from within this window
    #[arg(long, default_value = "65s", value_parser = humantime::parse_duration)]
    alive: Duration,
    /// Run the benchmark's floor instead of agents: bare connections that answer a command
    /// with one JetStream publish (see `kanade_sim::start_floor`); prints `started N`
    #[arg(long)]
    floor: bool,
    /// A key commands must be signed with (base64, as `GET /api/signing-key` shows it), like an
    /// agent's `security.trusted_keys`; repeat for several. None: commands are not verified
    #[arg(long, value_parser = kanade_shared::signing::decode_public)]
    trusted_key: Vec<ed25519_dalek::VerifyingKey>,
    /// Leave the fleet's heartbeats to another process's watcher (a benchmark runs one for all
    /// its simulator processes): no subscription to `heartbeat.*`, and each report line is only
    /// `runs R doubles D`
    #[arg(long)]
    no_watch: bool,
}

// The simulator's allocator, not the agent's (the `kanade-agent` binary keeps the system one):
// thousands of agents' tasks, buffers and SQLite pages churn one process's heap, and on a box
// whose cores the broker and backend under test share, the harness's own overhead is CPU they
// lose. With mimalloc a 10,000-agent broadcast cost the simulators 1.65 CPU-s instead of 1.96
// and took 1,500 ms instead of 1,710 (two runs of each, alternated).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One thread per process: a benchmark runs several of these processes on a small box, and a
// real agent's runtime has its endpoint to itself; worker threads per process here would only
// steal work from each other across thousands of agents and the other processes. The floor's
// subscribers run on the same kind of runtime.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Warnings from 10,000 agents are the point when something goes wrong; KANADE_LOG for more.
    kanade_shared::logging::init_cli("warn");
    let config = SimConfig {
        nats_url: cli.nats_url.clone(),
        first: cli.first,
        count: cli.agents,
        fleet: cli.fleet.unwrap_or(cli.first + cli.agents),
        prefix: cli.prefix.clone(),
        canary_share: cli.canary_share,
        size_groups: cli.size_groups.clone(),
        heartbeat: cli.heartbeat,
        data_dir: cli.data_dir.clone(),
        start_rate: cli.start_rate,
        executor: FakeExecutor {
            duration: cli.run_time,
            failure_rate: cli.failure_rate,
            output_bytes: cli.output_bytes,
            runs: match &cli.run_log {
                Some(path) => kanade_agent::exec::RunLog::to_file(path)
                    .with_context(|| format!("cannot open the run log {}", path.display()))?,
                None => Default::default(),
            },
        },
        trusted_keys: cli.trusted_key.clone(),
    };
    let runs = config.executor.runs.clone();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    if cli.floor {
        kanade_sim::start_floor(
            &cli.nats_url,
            (cli.first, cli.agents),
            &cli.size_groups,
            cli.start_rate,
            stop,
        )
        .await?;
        println!("started {}", cli.agents);
        kanade_shared::shutdown::signal().await;
        let _ = stop_tx.send(true);
        return Ok(());
    }
    if cli.no_watch {
        tokio::spawn(report_runs(cli.report, runs, stop.clone()));
    } else {
        watch_heartbeats(&cli, config.fleet, runs, stop.clone()).await?;
    }
    kanade_sim::start(&config, stop).await?;
    println!("started {}", cli.agents);
    kanade_shared::shutdown::signal().await;
    let _ = stop_tx.send(true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

/// The fleet's heartbeats, counted and reported every `--report` with this process's runs.
async fn watch_heartbeats(
    cli: &Cli,
    total: usize,
    runs: kanade_agent::exec::RunLog,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let watcher = kanade_sim::watcher(&cli.nats_url).await?;
    tokio::spawn(kanade_sim::count_heartbeating(
        watcher,
        cli.prefix.clone(),
        cli.report,
        cli.alive,
        move |heard| {
            println!(
                "heartbeating {}/{total} recent {} back {} reconnects {} runs {} doubles {}",
                heard.alive,
                heard.recent,
                heard.back,
                heard.reconnects,
                runs.total(),
                runs.doubles()
            )
        },
        stop,
    ));
    Ok(())
}

/// `runs R doubles D` every `every` until `stop`, for a process that does not watch heartbeats.
async fn report_runs(
    every: Duration,
    runs: kanade_agent::exec::RunLog,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => println!("runs {} doubles {}", runs.total(), runs.doubles()),
            () = async { let _ = stop.wait_for(|s| *s).await; } => return,
        }
    }
}
