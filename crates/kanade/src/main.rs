//! `kanade`: the operator CLI. Talks to NATS directly for the break-glass paths (`jetstream`,
//! and later `run`, `kill`) and to the backend over HTTP for everything else.

mod api;
mod cli;
mod commands;
mod credentials;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// `kanade … | head` ends quietly with exit 0 when the reader goes away, as `completions`
/// does, instead of a panic message: `println!` panics on a broken pipe, and that one panic is
/// the reader having left, not a fault.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    quiet_on_broken_pipe();
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
