//! `kanade-backend`: the API server. Start-up order: config → logging → boot sentinel (an
//! upgraded version starts on trial; a quarantined one refuses) → NATS (retrying) → JetStream
//! bootstrap → HTTP, projectors, pipeline, scheduler.

use kanade_backend::http;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kanade_backend::auth::{self, Auth};
use kanade_backend::boot::Started;
use kanade_backend::db::Db;
use kanade_shared::Version;
use kanade_shared::config::{
    BackendConfig, DbConfig, Environment, RESTART_EXIT_CODE, load_backend, log_format,
};
use kanade_shared::files::{Existing, write_private};

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
    /// Print where the database is (the SQLite file, or the Postgres URL without its password),
    /// for backup scripts
    ResolveDbPath,
    /// Write nats-server accounts (backend, operators, one per agent), the auth callout that
    /// admits enrolled agents, and each account's `[nats]` config section. New passwords and
    /// keys every run: update the configs it writes.
    NatsConfig {
        /// Agents (PC ids), comma-separated
        #[arg(long, value_delimiter = ',')]
        agents: Vec<String>,
        /// Operator accounts for the CLI's NATS paths, comma-separated
        #[arg(long, value_delimiter = ',', default_value = "operator")]
        operators: Vec<String>,
        /// Directory to write `auth.conf` and `credentials/<user>.toml` into
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a consistent copy of the database and the data dir's secrets (command-signing key,
    /// session secret) into one archive, while the backend runs (SQLite; Postgres: pg_dump)
    Backup {
        /// The archive to write (a new file)
        #[arg(value_name = "FILE")]
        out: PathBuf,
    },
    /// Restore an archive `backup` wrote into this config's database and data dir; the next
    /// start replays the streams to catch up. Run it with the backend stopped.
    Restore {
        #[arg(value_name = "FILE")]
        archive: PathBuf,
        /// Restore over an existing database and keys (they are moved aside, not deleted)
        #[arg(long)]
        force: bool,
    },
    /// Empty the projection (agents, executions, results, audit, inventory) so the next start
    /// rebuilds it from the streams. Run it with the backend stopped.
    WipeProjector,
    /// Copy accounts, API tokens and schedule state from a SQLite database into Postgres. Start
    /// the backends on Postgres afterwards: they rebuild the projection from the streams.
    MigrateToPostgres {
        /// The SQLite file (db.sqlite_path of the old config)
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// postgres://user:pw@host:port/db (the new db.url)
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Exit 1 when VERSION failed to start after an upgrade and is quarantined (ask before
    /// installing it), 0 otherwise
    CheckQuarantine {
        #[arg(value_name = "VERSION")]
        version: String,
    },
    /// Let a quarantined VERSION start again (on trial)
    ClearQuarantine {
        #[arg(value_name = "VERSION")]
        version: String,
    },
    /// Before an upgrade: keep a copy of this (healthy) binary, to be put back if the new
    /// version fails to start 3 times
    ArmForSwap,
    /// When this binary's version is quarantined, put the binary arm-for-swap kept back in its
    /// place (the systemd unit runs it as root before each start); otherwise nothing
    RollBack,
    /// Windows: run the backend as a service of the Service Control Manager
    #[command(subcommand)]
    Service(ServiceCommand),
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Register (automatic start, restart on failure) and start the service, with this config
    Install,
    /// Stop and remove the service
    Uninstall,
    /// The service's entry point; the SCM starts the backend this way
    #[command(hide = true)]
    Run,
}

const SERVICE: &str = "kanade-backend";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = Environment::from_process().with_machine_secrets(kanade_shared::config::Role::Backend);
    let loaded = load_backend(cli.config.as_deref(), &env);
    match cli.command {
        Some(Command::CheckConfig) => match loaded {
            Ok((config, found)) => {
                println!("{}: ok", found.path.display());
                println!("  bind      {}", config.bind);
                println!("  nats      {}", kanade_shared::config::redact(&config.nats_url));
                match &config.db {
                    DbConfig::Sqlite(path) => println!("  db        sqlite {}", path.display()),
                    DbConfig::Postgres(url) => {
                        println!("  db        postgres {}", kanade_shared::config::redact(url))
                    }
                }
                println!("  nats auth {}", kanade_shared::config::describe_broker_auth(&config.broker, &env.machine));
                let source = |s: &Option<kanade_shared::secrets::Secret>| s.as_ref().map(|s| s.source.to_string());
                println!(
                    "  jwt secret {}",
                    source(&config.auth.jwt_secret).map_or("generated (kept in the data dir, or in a shared database)".to_owned(), |s| format!("from {s}"))
                );
                println!(
                    "  bootstrap admin password {}",
                    source(&config.auth.bootstrap_admin_password).map_or("not set".to_owned(), |s| format!("from {s}"))
                );
                match enroll_settings(&config) {
                    Ok(e) => println!(
                        "  enrolment agents dial {}{}; {}; {}",
                        e.agent_nats_url,
                        if e.agent_nats_url.contains("127.0.0.1") || e.agent_nats_url.contains("localhost") {
                            " (loopback: PCs elsewhere cannot reach it; set [enroll] nats_url)"
                        } else {
                            ""
                        },
                        e.callout.as_ref().map_or("no auth callout key (enrolled agents' credentials admit nobody on a broker that checks them)".to_owned(), |k| format!("auth callout issuer {}", k.public_key())),
                        if e.system.is_some() { "revoked agents are disconnected (system account set)" } else { "no system account: a revoked agent stays connected until its connection drops" }
                    ),
                    Err(e) => {
                        eprintln!("{e:#}");
                        return ExitCode::FAILURE;
                    }
                }
                println!("  data dir  {}", config.data_dir.display());
                if config.log.keep_days == 0 {
                    println!("  logs      stdout only (keep_days = 0){}", log_format(&config.log));
                } else {
                    println!("  logs      {}{}", config.log.path.display(), log_format(&config.log));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::ResolveDbPath) => match loaded {
            Ok((config, _)) => {
                match &config.db {
                    DbConfig::Sqlite(path) => {
                        // Relative to where the backend runs from is how it opens it.
                        println!("{}", std::path::absolute(path).unwrap_or_else(|_| path.clone()).display())
                    }
                    DbConfig::Postgres(url) => println!("{}", kanade_shared::config::redact(url)),
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::NatsConfig { agents, operators, out }) => {
            match nats_config(&agents, &operators, &out) {
                Ok(n) => {
                    println!(
                        "wrote {} ({n} accounts) and {}/*.toml; add `include auth.conf` to nats-server.conf and give each daemon its [nats] section",
                        out.join("auth.conf").display(),
                        out.join("credentials").display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Backup { out }) => match loaded.map_err(anyhow::Error::from).and_then(|(config, _)| {
            let DbConfig::Sqlite(db) = &config.db else {
                anyhow::bail!(
                    "the database is Postgres: back it up with pg_dump and copy command-signing.key and jwt.secret from the data dir (README: Backups)"
                );
            };
            let started = std::time::Instant::now();
            let written = kanade_backend::backup::backup(db, &config.data_dir, &out, env!("CARGO_PKG_VERSION"))?;
            Ok((written, started.elapsed()))
        }) {
            Ok((w, took)) => {
                let parts: Vec<String> = w.manifest.parts.iter().map(|p| format!("{} ({} bytes)", p.name, p.bytes)).collect();
                println!("wrote {} ({} bytes in {took:.1?}): {}", out.display(), w.archive_bytes, parts.join(", "));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Restore { archive, force }) => match loaded.map_err(anyhow::Error::from).and_then(|(config, _)| {
            let DbConfig::Sqlite(db) = config.db.clone() else {
                anyhow::bail!("the database is Postgres: restore it with pg_restore (README: Backups)");
            };
            let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(kanade_backend::backup::restore(&archive, &db, &config.data_dir, force))
        }) {
            Ok((manifest, aside)) => {
                println!(
                    "restored the backup of {} (kanade {}); start kanade-backend: it replays the streams to catch up",
                    manifest.created_at, manifest.kanade_version
                );
                for p in aside {
                    println!("  kept the previous {}", p.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::WipeProjector) => {
            match loaded.map_err(anyhow::Error::from).and_then(|(config, _)| wipe(&config)) {
                Ok(()) => {
                    println!("projection wiped; start kanade-backend to rebuild it from the streams");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::MigrateToPostgres { from, to }) => match migrate_to_postgres(&from, &to) {
            Ok(c) => {
                println!(
                    "copied into {}: {} users, {} second factors, {} API tokens, {} schedule states, {} dynamic groups, {} enrolment tokens, {} agent credentials ({} already there, kept as they were)",
                    kanade_shared::config::redact(&to),
                    c.users.0,
                    c.mfa.0,
                    c.tokens.0,
                    c.schedules.0,
                    c.groups.0,
                    c.enroll_tokens.0,
                    c.credentials.0,
                    c.users.1
                        + c.mfa.1
                        + c.tokens.1
                        + c.schedules.1
                        + c.groups.1
                        + c.enroll_tokens.1
                        + c.credentials.1
                );
                println!(
                    "next: set [db] url = \"{}\" in backend.toml (instead of sqlite_path) and start kanade-backend; it rebuilds the projection from the streams",
                    kanade_shared::config::redact(&to)
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::CheckQuarantine { version }) => {
            let checked = loaded.map_err(anyhow::Error::from).and_then(|(config, _)| {
                let version: Version = version.parse()?;
                Ok((kanade_backend::boot::check(&config.data_dir, &version)?, version))
            });
            match checked {
                Ok((Some(q), v)) => {
                    let at = q.at.replace_nanosecond(0).unwrap_or(q.at);
                    let at = at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
                    println!("kanade-backend {v} is quarantined since {at}: {}", q.reason);
                    ExitCode::FAILURE
                }
                Ok((None, v)) => {
                    println!("kanade-backend {v} is not quarantined");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Some(Command::ClearQuarantine { version }) => {
            let cleared = loaded.map_err(anyhow::Error::from).and_then(|(config, _)| {
                let version: Version = version.parse()?;
                Ok((kanade_backend::boot::clear(&config.data_dir, &version)?, version))
            });
            match cleared {
                Ok((true, v)) => {
                    println!("kanade-backend {v} may start again (on trial)");
                    ExitCode::SUCCESS
                }
                Ok((false, v)) => {
                    println!("kanade-backend {v} was not quarantined");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::ArmForSwap) => {
            let armed = loaded.map_err(anyhow::Error::from).and_then(|(config, _)| {
                let exe = installed_path().context("cannot tell where this binary is")?;
                let kept = kanade_backend::boot::arm(&config.data_dir, &exe, &this_version()?)
                    .map_err(anyhow::Error::msg)?;
                Ok((kept, exe))
            });
            match armed {
                Ok(((kept, at), exe)) => {
                    println!("kept kanade-backend {} ({}) at {}", kept.version, exe.display(), at.display());
                    println!(
                        "next: stop the service, install the new binary at {}, start the service; if the new version fails to start {} times it is quarantined and {} is put back",
                        exe.display(),
                        kanade_shared::boot::MAX_BOOT_ATTEMPTS,
                        kept.version
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::RollBack) => {
            let rolled = loaded.map_err(anyhow::Error::from).and_then(|(config, _)| {
                let exe = installed_path().context("cannot tell where this binary is")?;
                let version = this_version()?;
                let to = kanade_backend::boot::roll_back(&config.data_dir, &exe, &version)
                    .map_err(anyhow::Error::msg)?;
                Ok((to, version, exe))
            });
            match rolled {
                Ok((Some(to), bad, exe)) => {
                    println!("kanade-backend {bad} is quarantined: put the kept {to} back at {}", exe.display());
                    ExitCode::SUCCESS
                }
                Ok((None, v, _)) => {
                    println!("kanade-backend {v} is not quarantined: nothing to roll back");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Service(ServiceCommand::Install)) => {
            match loaded.map_err(anyhow::Error::from).and_then(|(_, found)| install(&found.path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Service(ServiceCommand::Uninstall)) => match kanade_shared::service::uninstall(SERVICE)
        {
            Ok(()) => {
                println!("service {SERVICE} stopped and removed");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {:#}", anyhow::Error::from(e));
                ExitCode::FAILURE
            }
        },
        Some(Command::Service(ServiceCommand::Run)) => {
            match kanade_shared::service::run(SERVICE, service_body) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!(
                        "error: {e}; `service run` is how the SCM starts the backend: run kanade-backend in a console instead"
                    );
                    ExitCode::FAILURE
                }
            }
        }
        None => match loaded.map_err(anyhow::Error::from).and_then(|(config, _)| serve(config, env, None)) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Register the service to start this binary with the config found now.
fn install(config: &std::path::Path) -> anyhow::Result<()> {
    let config =
        std::path::absolute(config).with_context(|| format!("cannot make {} absolute", config.display()))?;
    let exe = std::env::current_exe().context("cannot tell where this binary is")?;
    kanade_shared::service::install(&kanade_shared::service::ServiceSpec {
        name: SERVICE,
        display_name: "kanade backend",
        description: "kanade fleet manager: API, dashboard, projector and scheduler",
        exe: exe.clone(),
        args: vec!["service".into(), "run".into(), "--config".into(), config.clone().into()],
    })?;
    println!(
        "service {SERVICE} installed and started: {} service run --config {}",
        exe.display(),
        config.display()
    );
    Ok(())
}

/// The service's body: the console start-up, stopped by the SCM.
fn service_body(stop: kanade_shared::service::StopSignal) -> u32 {
    let cli = Cli::parse();
    let env = Environment::from_process().with_machine_secrets(kanade_shared::config::Role::Backend);
    let served = load_backend(cli.config.as_deref(), &env)
        .map_err(anyhow::Error::from)
        .and_then(|(config, _)| serve(config, env, Some(stop)));
    match served {
        Ok(code) => u32::from(code),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "kanade-backend service failed");
            1
        }
    }
}

/// Where this binary is installed as the service runs it: the path it was started by when that
/// is absolute (a symlink stays a symlink's place, so a rollback replaces what the service
/// starts, not the link's target), else the resolved executable.
fn installed_path() -> std::io::Result<PathBuf> {
    match std::env::args_os().next().map(PathBuf::from) {
        Some(invoked) if invoked.is_absolute() && invoked.exists() => Ok(invoked),
        _ => std::env::current_exe(),
    }
}

fn this_version() -> anyhow::Result<Version> {
    env!("CARGO_PKG_VERSION").parse().context("this binary's version is invalid")
}

/// `scm`: the SCM's stop signal when running as a Windows service; Ctrl-C / SIGTERM otherwise.
/// The exit code: 0, or [`RESTART_EXIT_CODE`] after a rollback put the previous binary back.
fn serve(
    config: BackendConfig,
    env: Environment,
    scm: Option<kanade_shared::service::StopSignal>,
) -> anyhow::Result<u8> {
    let _log_guard =
        kanade_shared::logging::init_daemon(&config.log, "kanade-backend").map_err(anyhow::Error::msg)?;
    // Private: it holds the JWT secret and the command-signing key (SYSTEM and Administrators
    // only on Windows, 0700 on Unix).
    kanade_shared::files::private_dir(&config.data_dir)
        .with_context(|| format!("cannot create data dir {} (owner-only)", config.data_dir.display()))?;
    let version = this_version()?;
    let exe = installed_path().ok();
    match kanade_backend::boot::on_start(&config.data_dir, exe.as_deref(), &version)? {
        Started::Go => {}
        Started::Refused(refused) => {
            tracing::error!("{refused}");
            anyhow::bail!(refused);
        }
        Started::RolledBack { bad, to } => {
            let said = format!(
                "kanade-backend {bad} did not run healthy within {} starts: it is quarantined and the kept {to} is back in its place; the service manager's next start runs {to} (in a console: start it again)",
                kanade_shared::boot::MAX_BOOT_ATTEMPTS
            );
            tracing::error!("{said}");
            eprintln!("{said}");
            return Ok(RESTART_EXIT_CODE);
        }
    }
    let data_dir = config.data_dir.clone();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (quit_tx, quit_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            match scm {
                None => kanade_shared::shutdown::signal().await,
                Some(scm) => {
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
            let _ = quit_tx.send(true);
        });
        run(config, env, quit_rx).await
    })?;
    // Told to stop and stopped cleanly: not a failed start of a version on trial.
    if let Err(e) = kanade_backend::boot::stopped_cleanly(&data_dir, &version) {
        tracing::warn!(error = %e, "cannot record the clean stop in the boot state");
    }
    Ok(0)
}

/// Resolves once the backend is told to stop.
async fn quit(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|q| *q).await;
}

async fn open_db(config: &BackendConfig) -> anyhow::Result<Db> {
    match &config.db {
        DbConfig::Sqlite(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            Db::open(path)
                .with_context(|| format!("cannot open the database {} (db.sqlite_path)", path.display()))
        }
        DbConfig::Postgres(url) => Db::connect_postgres(url).await.with_context(|| {
            format!(
                "cannot open the Postgres database {} (db.url); is it running, and may this user create tables there?",
                kanade_shared::config::redact(url)
            )
        }),
    }
}

fn nats_config(agents: &[String], operators: &[String], out: &std::path::Path) -> anyhow::Result<usize> {
    let pcs = agents
        .iter()
        .map(|a| a.parse().map_err(|e| anyhow::anyhow!("--agents: {e}")))
        .collect::<anyhow::Result<Vec<kanade_shared::PcId>>>()?;
    let mut failed = None;
    let issuer = nkeys::KeyPair::new_account();
    let seed = issuer.seed().map_err(|e| anyhow::anyhow!("cannot make the enrolment key: {e}"))?;
    let public = issuer.public_key();
    let (conf, files) = kanade_backend::broker::bundle(&pcs, operators, (&public, &seed), || {
        auth::random_hex(24).unwrap_or_else(|e| {
            failed = Some(e);
            String::new()
        })
    });
    if let Some(e) = failed {
        anyhow::bail!("cannot make passwords: {e}");
    }
    let dir = out.join("credentials");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Passwords inside: readable by the owner only; a rerun replaces them.
    let write = |path: std::path::PathBuf, text: &str| {
        write_private(&path, text.as_bytes(), Existing::Replace)
            .with_context(|| format!("cannot write {}", path.display()))
    };
    write(out.join("auth.conf"), &conf)?;
    for (user, toml) in &files {
        write(dir.join(format!("{user}.toml")), toml)?;
    }
    Ok(files.len())
}

/// What enrolment needs from the config: the callout key (checked here, so a bad seed stops
/// the start), the broker URL for new agents, the system account.
fn enroll_settings(config: &BackendConfig) -> anyhow::Result<kanade_backend::enroll::Settings> {
    let e = &config.enroll;
    if let Some(url) = &e.public_url {
        anyhow::ensure!(
            kanade_backend::enroll::is_script_safe_url(url),
            "enroll.public_url {url:?}: only letters, digits and . - _ : / [ ] may appear in it (it is pasted into install scripts)"
        );
    }
    let callout = match &e.callout_seed {
        Some(seed) => Some(std::sync::Arc::new(nkeys::KeyPair::from_seed(seed).map_err(|err| {
            anyhow::anyhow!("nats.auth_callout_seed is not a valid account seed ({err}); copy it from the credentials/backend.toml that kanade-backend nats-config wrote")
        })?)),
        None => None,
    };
    let system = match (&e.system_user, &e.system_password) {
        (Some(user), Some(password)) => {
            let auth = kanade_shared::nats::BrokerAuth {
                user: Some(user.clone()),
                password: Some(password.clone()),
                ..config.broker.clone()
            };
            let auth = kanade_shared::nats::BrokerAuth {
                token: None,
                token_source: None,
                inbox_prefix: None,
                ..auth
            };
            Some((config.nats_url.clone(), auth))
        }
        _ => None,
    };
    Ok(kanade_backend::enroll::Settings {
        agent_nats_url: kanade_backend::enroll::without_credentials(
            e.agent_nats_url.as_deref().unwrap_or(&config.nats_url),
        ),
        public_url: e.public_url.clone(),
        callout,
        system,
    })
}

/// Serving and connected to the broker for a while: this version is good (it ends a trial).
fn confirm_when_healthy(state: &http::AppState, data_dir: PathBuf) {
    let client = state.nats.clone();
    tokio::spawn(async move {
        tokio::time::sleep(kanade_shared::boot::HEALTHY_AFTER).await;
        while client.connection_state() != async_nats::connection::State::Connected {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        let version: Result<Version, _> = env!("CARGO_PKG_VERSION").parse();
        if let Ok(v) = version {
            match kanade_backend::boot::confirm(&data_dir, &v) {
                Ok(true) => {
                    tracing::info!(version = %v, "running healthy: this is the last good version now")
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "cannot record this version as healthy"),
            }
        }
    });
}

fn migrate_to_postgres(from: &std::path::Path, to: &str) -> anyhow::Result<kanade_backend::db::Copied> {
    anyhow::ensure!(from.is_file(), "--from {}: no such SQLite database", from.display());
    anyhow::ensure!(
        to.starts_with("postgres://") || to.starts_with("postgresql://"),
        "--to {}: expected a postgres:// URL",
        kanade_shared::config::redact(to)
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let source = Db::open_read_only(from).with_context(|| format!("cannot open {}", from.display()))?;
        let kept = source.kept_state().await?;
        let target = Db::connect_postgres(to)
            .await
            .with_context(|| format!("cannot open {}", kanade_shared::config::redact(to)))?;
        Ok(target.restore_kept_state(kept).await?)
    })
}

fn wipe(config: &BackendConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime
        .block_on(async { open_db(config).await?.wipe_projection().await.map_err(anyhow::Error::from) })?;
    Ok(())
}

async fn run(
    config: BackendConfig,
    env: Environment,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), bind = %config.bind, nats = %config.nats_url, "kanade-backend starting");
    let db = open_db(&config).await?;
    tracing::info!(engine = db.engine_name(), shared = db.shared(), "database open");
    let auth = if env.var("KANADE_AUTH_DISABLE") == Some("1") {
        tracing::warn!(
            "AUTHENTICATION IS DISABLED (KANADE_AUTH_DISABLE=1): anyone who can reach {} is an admin; development only",
            config.bind
        );
        Auth::disabled()
    } else {
        let secret = if db.shared() {
            auth::shared_session_secret(config.auth.jwt_secret.as_ref().map(|s| s.value.as_str()), &db)
                .await?
        } else {
            auth::load_or_create_secret(
                config.auth.jwt_secret.as_ref().map(|s| s.value.as_str()),
                &config.data_dir,
            )?
        };
        auth::bootstrap_admin(&db, config.auth.bootstrap_admin_password.as_ref()).await?;
        Auth::with_secret(secret, config.auth.token_ttl.get())
            .with_trusted_proxies(config.auth.trusted_proxies.clone())
            .requiring_mfa_for_admins(config.auth.require_mfa_for_admins)
    };
    let client = tokio::select! {
        client = kanade_shared::nats::connect_forever(&config.nats_url, &config.broker, "kanade-backend") => client,
        () = quit(stop.clone()) => return Ok(()),
    };
    let js = async_nats::jetstream::new(client.clone());
    // A broker that went away again, or a cluster still electing its meta leader, cannot be
    // read: wait for it as for the connection. One that answers and refuses (a replica count the
    // cluster cannot hold) is a configuration error: stop and say so.
    let mut retry = std::time::Duration::from_secs(1);
    loop {
        match kanade_shared::jetstream::ensure_jetstream_resources(&js, config.replicas).await {
            Ok(_) => break,
            Err(e @ kanade_shared::jetstream::BootstrapError::Lookup { .. }) => {
                tracing::warn!(error = %e, retry_in = ?retry, "JetStream is not answering; retrying the bootstrap");
                tokio::select! {
                    () = tokio::time::sleep(retry) => {}
                    () = quit(stop.clone()) => return Ok(()),
                }
                retry = (retry * 2).min(std::time::Duration::from_secs(30));
            }
            Err(e) => return Err(e).context("JetStream bootstrap failed"),
        }
    }

    let listener = tokio::net::TcpListener::bind(config.bind).await.with_context(|| {
        format!("cannot listen on {} (server.bind); is another process using it?", config.bind)
    })?;
    tracing::info!("listening on http://{}", config.bind);
    let signer = auth::load_or_create_signing_key(&config.data_dir)?;
    if db.shared() {
        // Agents pin one key: backends sharing a database must sign with the same one.
        let mine = kanade_shared::signing::encode_public(&signer.verifying_key());
        let first = db.shared_secret("command-signing-public-key".into(), mine.clone()).await?;
        if first != mine {
            tracing::error!(
                this_backend = mine,
                the_others = first,
                key = %config.data_dir.join("command-signing.key").display(),
                "this backend's command-signing key differs from the other backends' of this database: agents that pin theirs refuse the commands this one signs; copy command-signing.key from another backend's data dir here and restart"
            );
        }
    }
    let state = http::AppState::new(client, db, auth)
        .with_enroll(enroll_settings(&config)?)
        .with_signer(signer)
        .with_start_within(config.exec.start_within.get())
        .with_check_stale(config.retention.check_stale.get())
        .with_stopping(stop.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    confirm_when_healthy(&state, config.data_dir.clone());
    let mut workers = kanade_backend::workers::spawn(&state, config.retention, stop_rx).await;
    let app = http::app(state);
    http::serve::serve(listener, app, http::serve::HEADER_READ_TIMEOUT, quit(stop))
        .await
        .context("HTTP server failed")?;
    let _ = stop_tx.send(true);
    while workers.join_next().await.is_some() {}
    tracing::info!("kanade-backend stopped");
    Ok(())
}
