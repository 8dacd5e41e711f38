//! One module per command group; each turns parsed arguments into IO and output.

mod jetstream;
mod job;
mod schedule;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Jetstream(cmd) => jetstream::run(cmd, &cli.global).await,
        Command::Job(cmd) => job::run(cmd, &cli.global),
        Command::Schedule(cmd) => schedule::run(cmd, &cli.global).await,
    }
}
