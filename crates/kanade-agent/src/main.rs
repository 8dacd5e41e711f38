//! `kanade-agent`: the endpoint daemon. Start-up: config (an invalid pc_id stops here, naming the
//! value and the rule) → logging → data dir → NATS, retried forever: a broker outage never makes
//! the agent exit. Command intake, results, heartbeats and inventory build on this skeleton.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use kanade_shared::config::{AgentConfig, Environment, load_agent};

#[derive(Debug, Parser)]
#[command(name = "kanade-agent", version, about = "kanade endpoint agent")]
struct Cli {
    /// Config file (else KANADE_AGENT_CONFIG, else the OS config dir)
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = Environment::from_process();
    let result =
        load_agent(cli.config.as_deref(), &env).map_err(anyhow::Error::from).and_then(|(c, _)| start(c));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(config: AgentConfig) -> anyhow::Result<()> {
    let _log_guard =
        kanade_shared::logging::init_daemon(&config.log, "kanade-agent").map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {} (agent.data_dir)", config.data_dir.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(run(config));
    Ok(())
}

async fn run(config: AgentConfig) {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        pc_id = %config.id,
        groups = ?config.groups,
        nats = %config.nats_url,
        "kanade-agent starting"
    );
    let name = format!("kanade-agent/{}", config.id);
    tokio::select! {
        _client = kanade_shared::nats::connect_forever(&config.nats_url, &name) => {
            kanade_shared::shutdown::signal().await;
        }
        () = kanade_shared::shutdown::signal() => {}
    }
    tracing::info!("kanade-agent stopped");
}
