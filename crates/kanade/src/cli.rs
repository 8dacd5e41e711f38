//! Command-line shape: global flags (each with its environment variable) and subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "kanade", version, about = "Operate a kanade fleet", propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// NATS server for the direct paths (jetstream, run, kill)
    #[arg(long, global = true, env = "KANADE_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// kanade-backend base URL
    #[arg(long, global = true, env = "KANADE_BACKEND_URL", default_value = "http://127.0.0.1:8080")]
    pub backend_url: String,
    /// API token or JWT for the backend
    #[arg(long, global = true, env = "KANADE_AUTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format: aligned tables for people, JSON for scripts
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and inspect the streams, buckets and object stores kanade needs
    #[command(subcommand)]
    Jetstream(JetstreamCommand),
    /// Work with job manifests
    #[command(subcommand)]
    Job(JobCommand),
    /// Create, list and control cron schedules
    #[command(subcommand)]
    Schedule(ScheduleCommand),
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule from YAML, or replace the one with the same id
    Create {
        /// Schedule YAML; an inline manifest's `script_file:` is resolved relative to it
        file: PathBuf,
    },
    /// Every schedule with its next fire and last outcome
    List,
    /// One schedule: definition, next fires, last tick, outcomes over 24 h
    Show { id: String },
    /// Delete a schedule; it stops firing at once
    Delete { id: String },
    /// Enable a schedule
    Enable { id: String },
    /// Disable a schedule; it stops firing at once
    Disable { id: String },
    /// The next fire times in the schedule's time zone
    Preview {
        id: String,
        /// How many (1-100)
        #[arg(short = 'n', long, default_value_t = 10)]
        count: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum JetstreamCommand {
    /// Create every stream, bucket and store, or update their limits (safe to repeat)
    Setup {
        /// JetStream replicas (3 on a cluster)
        #[arg(long, default_value_t = 1)]
        replicas: usize,
    },
    /// Show every stream, bucket and store with usage against its limits
    Status,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Check a manifest offline and list every problem with its field path
    Validate {
        /// Manifest YAML; `script_file:` is resolved relative to it
        file: PathBuf,
    },
}
