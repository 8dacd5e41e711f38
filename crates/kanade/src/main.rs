//! `kanade`: the operator CLI. Talks to NATS directly for the break-glass paths (`jetstream`,
//! and later `run`, `kill`) and to the backend over HTTP for everything else.

mod api;
mod cli;
mod commands;
mod credentials;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// `kanade … | head` ends quietly when the reader goes away, as Unix tools do, instead of
/// panicking on the broken pipe (Rust ignores SIGPIPE by default).
#[allow(unsafe_code)]
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: at the start of main, before any thread exists; SIG_DFL installs no handler code.
    unsafe {
        let _ =
            nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    restore_sigpipe();
    let cli = cli::Cli::parse();
    kanade_shared::logging::init_cli("warn");
    match commands::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            // One clear line: the outermost context, then its causes.
            let mut message = err.to_string();
            for cause in err.chain().skip(1) {
                let cause = cause.to_string();
                if !message.contains(&cause) {
                    message.push_str(": ");
                    message.push_str(&cause);
                }
            }
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
