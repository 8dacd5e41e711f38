//! `kanade-agent`: the endpoint daemon. Start-up: config (an invalid pc_id stops here, naming the
//! value and the rule) → logging → the runtime (store, NATS retried forever, intake, runners,
//! outbox, presence) until Ctrl-C or SIGTERM. A broker outage never makes the agent exit.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use kanade_agent::runtime::Settings;
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
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            pc_id = %config.id,
            groups = ?config.groups,
            nats = %config.nats_url,
            "kanade-agent starting"
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            kanade_shared::shutdown::signal().await;
            tracing::info!("stopping");
            let _ = stop_tx.send(true);
        });
        let result = kanade_agent::runtime::run(Settings::from_config(&config), stop_rx).await;
        tracing::info!("kanade-agent stopped");
        result
    })
}
