//! `kanade`: the operator CLI. Talks to NATS directly for the break-glass paths (`jetstream`,
//! and later `run`, `kill`) and to the backend over HTTP for everything else.

mod api;
mod cli;
mod commands;
mod credentials;
mod output;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
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
