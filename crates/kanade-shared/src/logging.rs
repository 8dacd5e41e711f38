//! Daemon logging: stdout plus a daily-rotated file, old files pruned after `keep_days` (0:
//! stdout only, for a container or a journald-managed service), and panics logged with a
//! backtrace so a crash on an unattended PC leaves a trace.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

use crate::config::{LogConfig, LogFormat};

/// Lines the file writer may fall behind by.
const LOG_QUEUE_LINES: usize = 8192;

/// Install the global subscriber. Keep the returned guard alive for the life of the process:
/// dropping it flushes and stops the file writer (`None`: no file, `keep_days = 0`).
pub fn init_daemon(config: &LogConfig, file_prefix: &str) -> Result<Option<WorkerGuard>, String> {
    let filter = EnvFilter::try_new(&config.level)
        .map_err(|e| format!("log.level {:?} is not a valid filter: {e}", config.level))?;
    if config.keep_days == 0 {
        install(filter, config.format, std::io::stdout)?;
        install_panic_hook();
        return Ok(None);
    }
    std::fs::create_dir_all(&config.path)
        .map_err(|e| format!("cannot create log directory {}: {e}", config.path.display()))?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(file_prefix)
        .filename_suffix("log")
        .max_log_files(config.keep_days as usize)
        .build(&config.path)
        .map_err(|e| format!("cannot open log files in {}: {e}", config.path.display()))?;
    // The writer thread's queue is allocated and touched whole up front: the default 128,000
    // lines cost every process 4 MiB of resident memory (an idle agent's largest allocation).
    // A burst beyond this many lines before the file catches up drops lines rather than
    // blocking the daemon.
    let (file, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .finish(appender);
    install(filter, config.format, std::io::stdout.and(file))?;
    install_panic_hook();
    Ok(Some(guard))
}

fn install<W>(filter: EnvFilter, format: LogFormat, writer: W) -> Result<(), String>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(false);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        // One JSON object per line: the event's fields flattened beside time, level and target.
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}

/// Plain stderr logging for commands that run and exit (`check-config`, the CLI).
pub fn init_cli(default_level: &str) {
    let filter = EnvFilter::try_from_env("KANADE_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::force_capture();
        tracing::error!(%info, %backtrace, "panic");
    }));
}
