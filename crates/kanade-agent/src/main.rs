//! `kanade-agent`: the endpoint daemon. Start-up: config (an invalid pc_id stops here, naming the
//! value and the rule) → logging → the boot sentinel (a version on trial counts a start; one
//! that failed too often is rolled back) → the runtime (store, NATS retried forever, intake,
//! runners, outbox, presence, self-update) until Ctrl-C or SIGTERM, or until a new binary is
//! installed and the agent restarts into it. A broker outage never makes the agent exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use kanade_agent::runtime::{Exit, Settings};
use kanade_agent::update::{self, boot::BootAction, stamp};
use kanade_shared::Version;
use kanade_shared::config::{AgentConfig, Environment, RESTART_EXIT_CODE, RestartMode, load_agent};

#[derive(Debug, Parser)]
#[command(name = "kanade-agent", version = kanade_agent::update::stamp::version(), about = "kanade endpoint agent")]
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
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(config: AgentConfig) -> anyhow::Result<ExitCode> {
    let log_guard =
        kanade_shared::logging::init_daemon(&config.log, "kanade-agent").map_err(anyhow::Error::msg)?;
    let version: Version =
        stamp::version().parse().context("this binary's version is not a valid version")?;
    // Taken before anything is swapped: the path the next binary is installed at.
    let exe = std::env::current_exe().ok();
    if let Some(exe) = &exe
        && update::boot::guard(&config.data_dir, exe, &version)? == BootAction::Restart
    {
        drop(log_guard);
        return restart(exe, config.update.restart);
    }
    fail_at_start_for_tests(&version)?;
    let settings = Settings::from_config(&config, exe.clone());
    // Two workers whatever the core count: an agent mostly waits, its jobs are child processes
    // and blocking work (inventory) has its own pool, while every extra worker is a thread with
    // its own stack and allocator arena on each of thousands of endpoints.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let exit = runtime.block_on(async {
        tracing::info!(
            version = %version,
            target = stamp::TARGET,
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
        let exit = kanade_agent::runtime::run(settings, stop_rx).await;
        tracing::info!(?exit, "kanade-agent stopped");
        exit
    })?;
    drop(runtime);
    drop(log_guard);
    match (exit, exe) {
        (Exit::Restart, Some(exe)) => restart(&exe, config.update.restart),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Start the binary now installed at `exe`.
fn restart(exe: &Path, mode: RestartMode) -> anyhow::Result<ExitCode> {
    let under_systemd = std::env::var_os("INVOCATION_ID").is_some();
    if mode == RestartMode::Exit || (mode == RestartMode::Auto && under_systemd) {
        return Ok(ExitCode::from(RESTART_EXIT_CODE));
    }
    let mut next = std::process::Command::new(exe);
    next.args(std::env::args_os().skip(1));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Same pid, same arguments; only returns on failure.
        let err = next.exec();
        Err(anyhow::Error::new(err).context(format!("cannot restart into {}", exe.display())))
    }
    #[cfg(not(unix))]
    {
        next.spawn().with_context(|| format!("cannot restart into {}", exe.display()))?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Fault injection for the self-update tests (debug builds only): a version that dies at start.
fn fail_at_start_for_tests(version: &Version) -> anyhow::Result<()> {
    if cfg!(debug_assertions)
        && std::env::var("KANADE_AGENT_TEST_FAIL_AT_START").is_ok_and(|v| v == version.as_str())
    {
        anyhow::bail!("version {version} was told to fail at start (KANADE_AGENT_TEST_FAIL_AT_START)");
    }
    Ok(())
}
