//! `kanade-agent`: the endpoint daemon. Start-up: config (an invalid pc_id stops here, naming the
//! value and the rule) → logging → the boot sentinel (a version on trial counts a start; one
//! that failed too often is rolled back) → the runtime (store, NATS retried forever, intake,
//! runners, outbox, presence, self-update) until Ctrl-C, SIGTERM or the Windows SCM's Stop, or
//! until a new binary is installed and the agent restarts into it. A broker outage never makes
//! the agent exit. `service install|uninstall` registers it with the Windows SCM; the SCM starts
//! it as `service run`, which runs the same start-up as a console run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use kanade_agent::runtime::{Exit, Settings};
use kanade_agent::update::{self, boot::BootAction, stamp};
use kanade_shared::Version;
use kanade_shared::config::{
    AgentConfig, Environment, RESTART_EXIT_CODE, RestartMode, Role, load_agent, log_format,
};

#[derive(Debug, Parser)]
#[command(name = "kanade-agent", version = kanade_agent::update::stamp::version(), about = "kanade endpoint agent")]
struct Cli {
    /// Config file (else KANADE_AGENT_CONFIG, else the OS config dir)
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Validate the config (after template rendering) and say where each setting and secret
    /// came from, never a secret's value
    CheckConfig,
    /// Windows: run the agent as a service of the Service Control Manager
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Notifications sent to this PC: list them, acknowledge one (as the user running this)
    Notifications {
        /// The running agent's socket (Windows: pipe); else KANADE_AGENT_SOCKET, else the
        /// config's [notifications] socket, else the default
        #[arg(long, global = true)]
        socket: Option<PathBuf>,
        #[command(subcommand)]
        command: NotificationsCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
enum NotificationsCommand {
    /// The notifications kept for this PC, newest last
    List {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge a notification as the user running this command
    Ack {
        /// Its id (the first column of `list`)
        id: String,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ServiceCommand {
    /// Register (automatic start, restart on failure) and start the service, with this config
    Install,
    /// Stop and remove the service
    Uninstall,
    /// The service's entry point; the SCM starts the agent this way
    #[command(hide = true)]
    Run,
}

const SERVICE: &str = "kanade-agent";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => config(&cli).and_then(|c| start(c, Stop::Signals)).map(ExitCode::from),
        Some(Command::CheckConfig) => check_config(&cli),
        Some(Command::Service(ServiceCommand::Install)) => install(&cli),
        Some(Command::Service(ServiceCommand::Uninstall)) => kanade_shared::service::uninstall(SERVICE)
            .map(|()| {
                println!("service {SERVICE} stopped and removed");
                ExitCode::SUCCESS
            })
            .map_err(anyhow::Error::from),
        Some(Command::Service(ServiceCommand::Run)) => kanade_shared::service::run(SERVICE, service_body)
            .map(|()| ExitCode::SUCCESS)
            .map_err(|e| anyhow::Error::from(e).context("`service run` is how the SCM starts the agent; run `kanade-agent --config …` in a console instead")),
        Some(Command::Notifications { ref socket, ref command }) => notifications(&cli, socket.clone(), command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `kanade-agent notifications …`: a local user's side of the agent's socket or pipe.
fn notifications(
    cli: &Cli,
    socket: Option<PathBuf>,
    command: &NotificationsCommand,
) -> anyhow::Result<ExitCode> {
    use kanade_agent::local_ipc::{Request, call};
    // The config is often readable only by the agent's account; then the default applies.
    let socket = socket
        .or_else(|| std::env::var_os("KANADE_AGENT_SOCKET").map(PathBuf::from))
        .or_else(|| config(cli).ok().map(|c| c.notifications_socket))
        .unwrap_or_else(kanade_shared::config::default_notifications_socket);
    let request = match command {
        NotificationsCommand::List { .. } => Request::List,
        NotificationsCommand::Ack { id } => Request::Ack { id: id.clone() },
    };
    let response = call(&socket, &request)?;
    if let Some(error) = response.error {
        anyhow::bail!("{error}");
    }
    match command {
        NotificationsCommand::List { json: true } => {
            println!("{}", serde_json::to_string_pretty(&response.notifications)?);
        }
        NotificationsCommand::List { json: false } => {
            if response.notifications.is_empty() {
                println!("no notifications for this PC");
            }
            for n in &response.notifications {
                let note = &n.notification;
                let when = note
                    .created_at
                    .format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC"))
                    .unwrap_or_default();
                let acked = if n.acked_by_you { "  (acknowledged by you)" } else { "" };
                println!("{}  [{}]  {when}  {}{acked}", note.id, note.priority.as_str(), note.title);
                for line in note.body.lines() {
                    println!("    {line}");
                }
                if n.acked_by_you {
                    println!("    — {}", note.created_by);
                } else {
                    println!(
                        "    — {}; acknowledge with: kanade-agent notifications ack {}",
                        note.created_by, note.id
                    );
                }
            }
        }
        NotificationsCommand::Ack { id } => match response.ack.as_deref() {
            Some("already") => println!("{id} was already acknowledged by {}", response.user),
            _ => println!("acknowledged {id} as {}", response.user),
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn config(cli: &Cli) -> anyhow::Result<AgentConfig> {
    Ok(load_agent(cli.config.as_deref(), &environment())?.0)
}

/// The process environment with the agent's registry secrets (Windows).
fn environment() -> Environment {
    Environment::from_process().with_machine_secrets(Role::Agent)
}

fn check_config(cli: &Cli) -> anyhow::Result<ExitCode> {
    let env = environment();
    let (config, found) = load_agent(cli.config.as_deref(), &env)?;
    println!("{}: ok", found.path.display());
    println!("  id        {}", config.id);
    println!("  groups    {}", config.groups.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
    println!("  nats      {}", kanade_shared::config::redact(&config.nats_url));
    println!("  nats auth {}", kanade_shared::config::describe_broker_auth(&config.broker, &env.machine));
    println!("  data dir  {}", config.data_dir.display());
    if config.log.keep_days == 0 {
        println!("  logs      stdout only (keep_days = 0){}", log_format(&config.log));
    } else {
        println!("  logs      {}{}", config.log.path.display(), log_format(&config.log));
    }
    Ok(ExitCode::SUCCESS)
}

/// Register the service to start this binary with the config found now (checked first, so a
/// broken config fails here and not at the next boot).
fn install(cli: &Cli) -> anyhow::Result<ExitCode> {
    let env = environment();
    let (_, found) = load_agent(cli.config.as_deref(), &env)?;
    let config = std::path::absolute(&found.path)
        .with_context(|| format!("cannot make {} absolute", found.path.display()))?;
    let exe = std::env::current_exe().context("cannot tell where this binary is")?;
    let spec = kanade_shared::service::ServiceSpec {
        name: SERVICE,
        display_name: "kanade agent",
        description: "kanade fleet agent: runs the jobs the kanade backend sends this PC",
        exe: exe.clone(),
        args: vec!["service".into(), "run".into(), "--config".into(), config.clone().into()],
    };
    kanade_shared::service::install(&spec)?;
    println!(
        "service {SERVICE} installed and started: {} service run --config {}",
        exe.display(),
        config.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The service's body: the console start-up, stopped by the SCM, with a self-update restart
/// turned into exit 75 for the recovery actions.
fn service_body(stop: kanade_shared::service::StopSignal) -> u32 {
    let cli = Cli::parse();
    match config(&cli).and_then(|c| start(c, Stop::Scm(stop))) {
        Ok(code) => u32::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            tracing::error!(error = %format!("{e:#}"), "kanade-agent service failed");
            1
        }
    }
}

/// What ends a run.
enum Stop {
    /// Ctrl-C or SIGTERM (console, systemd).
    Signals,
    /// The Windows SCM's Stop or Shutdown.
    Scm(kanade_shared::service::StopSignal),
}

fn start(config: AgentConfig, stop: Stop) -> anyhow::Result<u8> {
    let log_guard = kanade_shared::logging::init_daemon(&config.log, kanade_agent::runtime::LOG_PREFIX)
        .map_err(anyhow::Error::msg)?;
    let version: Version =
        stamp::version().parse().context("this binary's version is not a valid version")?;
    // Taken before anything is swapped: the path the next binary is installed at.
    let exe = std::env::current_exe().ok();
    if let Some(exe) = &exe
        && update::boot::guard(&config.data_dir, exe, &version)? == BootAction::Restart
    {
        drop(log_guard);
        return restart(exe, restart_mode(&config, &stop));
    }
    kanade_agent::testfault::fail_at_start(&version)?;
    let settings = Settings::from_config(&config, exe.clone());
    // Two workers whatever the core count: an agent mostly waits, its jobs are child processes
    // and blocking work (inventory) has its own pool, while every extra worker is a thread with
    // its own stack and allocator arena on each of thousands of endpoints.
    kanade_agent::memory::few_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mode = restart_mode(&config, &stop);
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
            match stop {
                Stop::Signals => kanade_shared::shutdown::signal().await,
                Stop::Scm(scm) => {
                    // A detached thread, not the blocking pool: a pool thread still waiting
                    // for the SCM would keep the runtime (and the process) from ending when
                    // the run ends on its own (a self-update restart, a start-up error).
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    std::thread::spawn(move || {
                        let _ = scm.recv();
                        let _ = tx.send(());
                    });
                    let _ = rx.await;
                }
            }
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
        (Exit::Restart, Some(exe)) => restart(&exe, mode),
        _ => Ok(0),
    }
}

/// Under the SCM a restart is always an exit (75): the recovery actions start the new binary.
fn restart_mode(config: &AgentConfig, stop: &Stop) -> RestartMode {
    match stop {
        Stop::Scm(_) => RestartMode::Exit,
        Stop::Signals => config.update.restart,
    }
}

/// Start the binary now installed at `exe`.
fn restart(exe: &Path, mode: RestartMode) -> anyhow::Result<u8> {
    let under_systemd = std::env::var_os("INVOCATION_ID").is_some();
    if mode == RestartMode::Exit || (mode == RestartMode::Auto && under_systemd) {
        return Ok(RESTART_EXIT_CODE);
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
        Ok(0)
    }
}
