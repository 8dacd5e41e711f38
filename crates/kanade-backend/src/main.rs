//! `kanade-backend`: the API server. Start-up order: config → logging → NATS (retrying) →
//! JetStream bootstrap → HTTP. Projectors, the exec pipeline, the scheduler and auth hang off
//! this skeleton as they are built.

use kanade_backend::http;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kanade_shared::config::{BackendConfig, Environment, load_backend};

#[derive(Debug, Parser)]
#[command(name = "kanade-backend", version, about = "kanade API server, projector and scheduler")]
struct Cli {
    /// Config file (else KANADE_BACKEND_CONFIG, else the OS config dir)
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config (after template rendering) and exit
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = Environment::from_process();
    let loaded = load_backend(cli.config.as_deref(), &env);
    match cli.command {
        Some(Command::CheckConfig) => match loaded {
            Ok((config, found)) => {
                println!("{}: ok", found.path.display());
                println!("  bind      {}", config.bind);
                println!("  nats      {}", config.nats_url);
                println!("  db        {:?}", config.db);
                println!("  data dir  {}", config.data_dir.display());
                println!("  logs      {}", config.log.path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        None => match loaded.map_err(anyhow::Error::from).and_then(|(config, _)| serve(config)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(config: BackendConfig) -> anyhow::Result<()> {
    let _log_guard =
        kanade_shared::logging::init_daemon(&config.log, "kanade-backend").map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: BackendConfig) -> anyhow::Result<()> {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), bind = %config.bind, nats = %config.nats_url, "kanade-backend starting");
    let client = tokio::select! {
        client = kanade_shared::nats::connect_forever(&config.nats_url, "kanade-backend") => client,
        () = kanade_shared::shutdown::signal() => return Ok(()),
    };
    let js = async_nats::jetstream::new(client.clone());
    kanade_shared::jetstream::ensure_jetstream_resources(&js, config.replicas)
        .await
        .context("JetStream bootstrap failed")?;

    let listener = tokio::net::TcpListener::bind(config.bind).await.with_context(|| {
        format!("cannot listen on {} (server.bind); is another process using it?", config.bind)
    })?;
    tracing::info!("listening on http://{}", config.bind);
    let app = http::app(http::AppState { nats: client, js });
    axum::serve(listener, app)
        .with_graceful_shutdown(kanade_shared::shutdown::signal())
        .await
        .context("HTTP server failed")?;
    tracing::info!("kanade-backend stopped");
    Ok(())
}
