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

/// Connection and output flags, accepted by every subcommand; listed under their own heading so
/// each subcommand's help starts with its own options.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// NATS server for the direct paths (jetstream, run, kill); a cluster as a comma-separated list
    #[arg(
        long,
        global = true,
        env = "KANADE_NATS_URL",
        hide_env_values = true,
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// NATS user for the direct paths (with --nats-password)
    #[arg(long, global = true, env = "KANADE_NATS_USER", hide_env_values = true)]
    pub nats_user: Option<String>,
    /// NATS password
    #[arg(long, global = true, env = "KANADE_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// NATS token for the direct paths (the fleet-wide one), when no user is given
    #[arg(long, global = true, env = "KANADE_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// CA certificate to verify a tls:// NATS server with
    #[arg(long, global = true, env = "KANADE_NATS_CA", hide_env_values = true)]
    pub nats_ca: Option<PathBuf>,
    /// kanade-backend base URL
    #[arg(
        long,
        global = true,
        env = "KANADE_BACKEND_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8080"
    )]
    pub backend_url: String,
    /// CA certificate (PEM) to check an https:// backend's certificate with, when a private CA
    /// signed it (only its certificates are then trusted)
    #[arg(long, global = true, env = "KANADE_CA_FILE", hide_env_values = true)]
    pub ca_file: Option<PathBuf>,
    /// API token or session token for the backend (else the one `kanade login` kept)
    #[arg(long, global = true, env = "KANADE_AUTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Private key file that `run` and `kill` sign with (see `kanade keygen`)
    #[arg(long, global = true, env = "KANADE_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<PathBuf>,
    /// Run (exec, deploy, run) even while the fleet is frozen; the override is audited
    #[arg(long, global = true)]
    pub override_freeze: bool,
    /// Output format: aligned tables for people (wide: with more columns), JSON or YAML for
    /// scripts
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

impl Global {
    pub fn broker(&self) -> kanade_shared::nats::BrokerAuth {
        kanade_shared::nats::BrokerAuth {
            user: self.nats_user.clone(),
            password: self.nats_password.clone(),
            // A user's own credentials win over the fleet-wide token.
            token: self.nats_token.clone().filter(|t| !t.is_empty() && self.nats_user.is_none()),
            inbox_prefix: self.nats_user.as_ref().map(|u| format!("_INBOX_{u}")),
            ca_file: self.nats_ca.clone(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    // A table with more columns where a list has them (agents, executions, results).
    Wide,
    Json,
    Yaml,
}

impl Format {
    /// Text for people (a table, wide or not), not data for scripts.
    pub fn is_table(self) -> bool {
        matches!(self, Format::Table | Format::Wide)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and inspect the streams, buckets and object stores kanade needs
    #[command(subcommand)]
    Jetstream(JetstreamCommand),
    /// Sign in to the backend and keep the session for later commands
    Login {
        /// User name (asked when missing)
        #[arg(long)]
        user: Option<String>,
        /// Read the password from standard input instead of prompting
        #[arg(long)]
        password_stdin: bool,
        /// The authenticator app's current code (or a recovery code), for an account with a
        /// second factor (asked for when needed and missing)
        #[arg(long)]
        code: Option<String>,
    },
    /// Your account's second factor (TOTP): set up, turn off; an admin's reset for a user
    #[command(subcommand)]
    Mfa(MfaCommand),
    /// Run a script on one PC now and print its output; exits with the script's exit code
    Run {
        /// The PC's id
        pc: String,
        /// sh, bash, powershell, pwsh or cmd (default: powershell on Windows, else sh)
        #[arg(long)]
        shell: Option<String>,
        /// Give up on the script after this long (e.g. 30s, 5m)
        #[arg(long, default_value = "60s")]
        timeout: String,
        /// Give up when the PC has not started the script within this long (it then skips it)
        #[arg(long, default_value = "20s")]
        start_within: String,
        /// The script; put it after `--`
        #[arg(last = true, required = true, num_args = 1..)]
        script: Vec<String>,
    },
    /// Ask an agent for a fresh heartbeat
    Ping {
        /// The PC's id
        pc: String,
    },
    /// Follow one PC's output of a run as it is written; exits with the script's exit code
    Tail {
        /// From `kanade executions list`
        exec_id: String,
        /// The PC's id
        pc: String,
    },
    /// Stop a running execution on every PC, or every unfinished execution of a job
    Kill {
        /// From `kanade executions list`
        #[arg(required_unless_present = "job", conflicts_with = "job")]
        exec_id: Option<String>,
        /// Kill every unfinished execution of this job instead
        #[arg(long, value_name = "JOB_ID")]
        job: Option<String>,
    },
    /// Revoke a job: agents skip it from now on
    Revoke { job_id: String },
    /// Lift a revoke
    Unrevoke { job_id: String },
    /// Work with job manifests
    #[command(subcommand)]
    Job(JobCommand),
    /// Run a catalog job: on the target given, or on the one stored with it
    Exec {
        job_id: String,
        /// Comma-separated PCs
        #[arg(long, value_delimiter = ',')]
        pcs: Vec<String>,
        /// Comma-separated groups
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Every agent
        #[arg(long)]
        all: bool,
        /// Spread starts over this long (e.g. 5m)
        #[arg(long)]
        jitter: Option<String>,
        /// Follow progress until every PC reported or the rest are offline; exit non-zero if
        /// any failed or never answered
        #[arg(long)]
        wait: bool,
        /// Accept PCs that have never sent a heartbeat (not installed yet)
        #[arg(long)]
        allow_unknown: bool,
    },
    /// Register a manifest with its plan and run it
    #[command(disable_version_flag = true)]
    Deploy {
        manifest: PathBuf,
        /// Override the manifest's version
        #[arg(long = "version", id = "manifest_version", value_name = "V")]
        version: Option<String>,
        /// Follow progress until every PC reported or the rest are offline; exit non-zero if
        /// any failed or never answered
        #[arg(long)]
        wait: bool,
        /// Accept PCs that have never sent a heartbeat (not installed yet)
        #[arg(long)]
        allow_unknown: bool,
    },
    /// Executions, newest first
    #[command(subcommand)]
    Executions(ExecutionsCommand),
    /// Results, newest first
    Results {
        /// Only this PC's results
        #[arg(long)]
        pc: Option<String>,
        /// Only this job's results
        #[arg(long)]
        job: Option<String>,
        /// Only failed, timed out, killed or unknown runs
        #[arg(long)]
        failed: bool,
        /// At most this many (1-500)
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Every one, page after page (else at most --limit, and a note when more exist)
        #[arg(long)]
        all: bool,
    },
    /// The fleet's agents: list, show, groups, performance, investigation mode
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Facts jobs report (facts.explode): the tables, or one table's rows
    Facts {
        /// A table's name: its rows
        table: Option<String>,
        /// With a table: only this PC's rows
        #[arg(long, requires = "table")]
        pc: Option<String>,
        /// With a table: only rows where COLUMN is VALUE (repeatable)
        #[arg(long = "where", value_name = "COLUMN=VALUE", requires = "table")]
        filters: Vec<String>,
        /// At most this many rows (1-10000)
        #[arg(long, default_value_t = 500)]
        limit: u32,
        /// Drop the table and its rows (admins; the job's next result makes it again, as the job
        /// now defines it)
        #[arg(long, requires = "table", conflicts_with_all = ["pc", "filters"])]
        drop: bool,
    },
    /// Run one read-only SELECT over the backend's database (admins; audited)
    Query {
        /// The query, e.g. "SELECT pc_id, last_seen_ms FROM agents"
        sql: String,
        /// At most this many rows (1-10000; 1000 by default)
        #[arg(long)]
        max_rows: Option<u32>,
    },
    /// Compliance: every check with its PCs counted by status, or one check's PCs
    Checks {
        /// A check's name: its PCs, their status and since when
        name: Option<String>,
        /// With a name: only PCs in this status (pass, warn, fail, unknown)
        #[arg(long, requires = "name")]
        status: Option<String>,
        /// Forget every PC's status for this check (admins; a renamed or retired check)
        #[arg(long, requires = "name", conflicts_with = "status")]
        forget: bool,
    },
    /// The events timeline, newest first: agents starting, stopping, updating, going offline and
    /// coming back, jobs starting and finishing, and what jobs with `emit: events` reported
    Events {
        /// Only this PC's events
        #[arg(long)]
        pc: Option<String>,
        /// A kind (agent.offline) or a prefix of kinds (agent, job)
        #[arg(long)]
        kind: Option<String>,
        /// Only events of the last ... (e.g. 15m, 1h, 7d)
        #[arg(long)]
        since: Option<kanade_shared::HumanDuration>,
        /// At most this many (1-500)
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// The audit trail, newest first: who did what, from where, with which client
    Audit {
        /// Only this actor (a user, `token:<name>`, `scheduler`)
        #[arg(long)]
        actor: Option<String>,
        /// An action (exec.create) or a prefix of actions (exec)
        #[arg(long)]
        action: Option<String>,
        /// Only what this client did: cli, dashboard, api, scheduler or backend
        #[arg(long)]
        client: Option<String>,
        /// At most this many (1-500)
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Every one, page after page (else at most --limit, and a note when more exist)
        #[arg(long)]
        all: bool,
    },
    /// Agent settings (config) and releases: publish, roll out, quarantine
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Notifications for the people at the endpoints: send, list, show who acknowledged, withdraw
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Dynamic groups: PCs that match a rule over agent fields and facts, kept up to date
    #[command(subcommand)]
    Group(GroupCommand),
    /// Show the fleet freeze, or freeze the fleet: schedules skip, rollouts hold, manual runs
    /// need --override-freeze
    Freeze {
        /// When the freeze ends (RFC 3339, e.g. 2026-12-27T08:00:00Z)
        #[arg(long, conflicts_with = "for_")]
        until: Option<String>,
        /// How long it lasts (e.g. 2h, 3d)
        #[arg(long = "for", id = "for_", value_name = "DURATION")]
        for_: Option<String>,
        /// When it starts (RFC 3339; default now)
        #[arg(long)]
        from: Option<String>,
        /// Why (shown on every dashboard page)
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift the fleet freeze
    Unfreeze,
    /// Enrolment tokens: a one-line install that enrols a PC with its own broker credentials
    #[command(subcommand)]
    Enroll(EnrollCommand),
    /// Scripts that jobs run by reference (`execute.script_object: <name>/<version>`)
    #[command(subcommand)]
    Script(ScriptCommand),
    /// Create an operator signing key for `run` and `kill`, and print the public key agents pin
    Keygen {
        /// Where to write the private key (created with mode 0600; never overwritten)
        file: PathBuf,
    },
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
        /// Accept PCs that have never sent a heartbeat (not installed yet)
        #[arg(long)]
        allow_unknown: bool,
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
    /// Add a manifest to the catalog, or replace the one with the same id
    Create {
        /// Manifest YAML; `script_file:` is resolved relative to it and inlined
        file: PathBuf,
    },
    /// The job catalog
    List,
    /// One job's manifest and revoke state
    Show { id: String },
    /// Delete a job (refused while a schedule uses it)
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ScriptCommand {
    /// Upload a script file; prints its sha256. A stored version never changes: a new content
    /// needs a new version
    #[command(disable_version_flag = true)]
    Upload {
        /// The script (UTF-8 text, at most 1 MiB)
        file: PathBuf,
        /// Its name (default: the file name without extension)
        #[arg(long)]
        name: Option<String>,
        /// Its version, e.g. 1.0.0
        #[arg(long = "version", id = "script_version", value_name = "V")]
        version: String,
    },
    /// Uploaded scripts with size and sha256
    List,
    /// A script's text
    Show {
        name: String,
        #[arg(id = "script_version", value_name = "VERSION")]
        version: String,
    },
    /// Delete a script no catalog job runs
    Delete {
        name: String,
        #[arg(id = "script_version", value_name = "VERSION")]
        version: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExecutionsCommand {
    /// Executions, newest first
    List {
        /// Only executions of this job
        #[arg(long)]
        job: Option<String>,
        /// pending, running, completed, failed, expired, aborted or killed
        #[arg(long)]
        status: Option<String>,
        /// At most this many (1-500)
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Every one, page after page (else at most --limit, and a note when more exist)
        #[arg(long)]
        all: bool,
    },
    /// One execution: counters, waves and every PC's outcome and output
    Show {
        exec_id: String,
        /// Every PC's whole stdout and stderr, not only their first line
        #[arg(long)]
        full: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create one: e.g. --rule "os.family = windows and facts.volumes.free_pct < 10"
    Create {
        name: String,
        /// Fields: pc, hostname, os.family, os.name, os.version, arch, agent.version, groups,
        /// facts.<table>.<column>; operators = != < <= > >= ~ (contains); and, or, not, ( )
        #[arg(long)]
        rule: String,
    },
    /// Every dynamic group with its rule and member count
    List,
    /// One group's rule and members
    Show { name: String },
    /// One group's members, one PC per line
    Members { name: String },
    /// Change a group's rule (members follow at once)
    SetRule {
        name: String,
        #[arg(long)]
        rule: String,
    },
    /// Delete a group; its members leave it
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum MfaCommand {
    /// Set up a second factor: asks for your password, shows a QR code and secret for an
    /// authenticator app, then asks for its current code and prints the recovery codes (once)
    Setup {
        /// The app's current code, instead of being asked
        #[arg(long)]
        code: Option<String>,
    },
    /// Turn your second factor off (asks for your password)
    Disable {
        /// Read the password from standard input instead of prompting
        #[arg(long)]
        password_stdin: bool,
    },
    /// Take a user's second factor away, e.g. a lost phone (admin)
    Reset { user: String },
}

#[derive(Debug, Subcommand)]
pub enum EnrollCommand {
    /// Make a token and print the install line for Linux and Windows (admin; shown once)
    Create {
        /// How long it is valid (e.g. 30m, 24h, 7d; at most 30d)
        #[arg(long, default_value = "24h")]
        expires_in: String,
        /// How many PCs may enrol with it
        #[arg(long, default_value_t = 1)]
        max_uses: u32,
        /// A group every PC enrolled with it joins (repeat for more)
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// Every token: uses, expiry, groups (never its value)
    List,
    /// Revoke a token: no PC enrols with it any more (enrolled PCs keep their credentials)
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Every agent with status, OS, version and groups
    List {
        #[arg(long)]
        group: Option<String>,
        /// At most this many (1-500)
        #[arg(long, default_value_t = 500)]
        limit: u32,
        /// Every one, page after page (else at most --limit, and a note when more exist)
        #[arg(long)]
        all: bool,
    },
    /// One agent with inventory and recent results
    Show { pc: String },
    /// The end of an agent's log file, or follow it
    Logs {
        pc: String,
        /// The last this many lines (1-10000)
        #[arg(short = 'n', long, default_value_t = 200)]
        lines: u32,
        /// Only lines from this far back (e.g. 10m, 2h)
        #[arg(long)]
        since: Option<kanade_shared::HumanDuration>,
        /// Keep printing new lines as the agent writes them (Ctrl-C stops)
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// One agent's fact documents: the latest whole output of each job with facts:
    Facts { pc: String },
    /// Revoke an enrolled agent's broker credentials and disconnect it (admin); it can enrol
    /// again with a new token
    Revoke { pc: String },
    /// Host performance samples of one agent (CPU, memory, swap, load, network, disks)
    Perf {
        pc: String,
        /// How far back (e.g. 15m, 1h, 7d)
        #[arg(long, default_value = "1h")]
        since: kanade_shared::HumanDuration,
    },
    /// Investigation mode's busiest processes of one agent (the latest sample, or --all)
    Processes {
        pc: String,
        /// How far back (e.g. 15m, 1h, 7d)
        #[arg(long, default_value = "1h")]
        since: kanade_shared::HumanDuration,
        /// Every sample in the range, not only the latest
        #[arg(long)]
        all: bool,
    },
    /// Turn investigation mode on for one agent (its top processes are sampled until it ends)
    Investigate {
        pc: String,
        /// How long (e.g. 30m, 2h; at most 7d)
        #[arg(long = "for", default_value = "2h", conflicts_with = "off")]
        duration: kanade_shared::HumanDuration,
        /// Processes by CPU and by memory per sample (1-100; default 20)
        #[arg(long)]
        top_n: Option<u32>,
        /// End an investigation now
        #[arg(long)]
        off: bool,
    },
    /// Operator-assigned groups
    #[command(subcommand)]
    Groups(GroupsCommand),
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a notification to --all, --group or --pc; prints its id
    #[command(group = clap::ArgGroup::new("to").required(true).args(["all", "group", "pc"]))]
    Send {
        /// The headline users see
        #[arg(long)]
        title: String,
        /// The text (markdown); `-` reads it from stdin
        #[arg(long, default_value = "")]
        body: String,
        /// info, warn or urgent
        #[arg(long, default_value = "info")]
        priority: String,
        /// Every PC
        #[arg(long, conflicts_with_all = ["group", "pc"])]
        all: bool,
        /// Members of this group (repeatable)
        #[arg(long, conflicts_with = "pc")]
        group: Vec<String>,
        /// This PC (repeatable)
        #[arg(long)]
        pc: Vec<String>,
        /// Agents drop it after this long (e.g. 2h, 7d; at most 90d; a week by default)
        #[arg(long)]
        expires_in: Option<String>,
        /// Accept --pc names never seen by the backend (a PC not installed yet)
        #[arg(long, requires = "pc")]
        allow_unknown: bool,
    },
    /// Notifications, newest first: addressed and acknowledged PCs
    List,
    /// One notification: per PC, acknowledged (by whom, when) or outstanding
    Show { id: String },
    /// Withdraw a notification: agents drop it, also those offline now when they return
    Withdraw { id: String },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Upload an agent binary as a release
    #[command(disable_version_flag = true)]
    Publish {
        binary: PathBuf,
        /// The version it is (checked against `<binary> --version` when it runs here)
        #[arg(long = "version", id = "release_version", value_name = "V")]
        version: String,
        /// Target triple (detected from the binary when absent)
        #[arg(long)]
        target: Option<String>,
    },
    /// Published releases
    Releases,
    /// Ask the fleet, a group or one PC to run a published version
    Rollout {
        /// A published version
        #[arg(id = "target_version", value_name = "VERSION")]
        version: String,
        /// Only this group
        #[arg(long, conflicts_with = "pc")]
        group: Option<String>,
        /// Only this PC
        #[arg(long)]
        pc: Option<String>,
    },
    /// What each scope asks for, which versions the fleet runs, quarantines and pending updates
    Current,
    /// Agent settings per scope (global, group, PC): show them, or set fields
    #[command(subcommand)]
    Config(AgentConfigCommand),
    /// Let the fleet, a group or one PC install versions it quarantined so far again
    ClearQuarantine {
        /// Only this group
        #[arg(long, conflicts_with = "pc")]
        group: Option<String>,
        /// Only this PC
        #[arg(long)]
        pc: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentConfigCommand {
    /// What every scope sets (a PC's own beats its groups', which beat the fleet's)
    Show,
    /// Set fields of the fleet's scope, a group's or one PC's: KEY=VALUE (durations like 30s,
    /// 1h); KEY= removes the field, so the wider scope applies again
    Set {
        /// heartbeat_interval, inventory_interval, host_perf_interval (0s: off), target_version
        /// (a published version) or clear_quarantine (an RFC 3339 instant)
        #[arg(value_name = "KEY=VALUE", required = true)]
        fields: Vec<String>,
        /// Only this group
        #[arg(long, conflicts_with = "pc")]
        group: Option<String>,
        /// Only this PC
        #[arg(long)]
        pc: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Replace the groups assigned to a PC here (none clears them); its agent.toml groups add to them
    Set { pc: String, groups: Vec<String> },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_tree_is_consistent() {
        super::Cli::command().debug_assert();
    }

    /// Every command's `--help` against `tests/snapshots/help/`; `KANADE_UPDATE_SNAPSHOTS=1`
    /// rewrites them (review the diff).
    #[test]
    fn help_snapshots() {
        fn walk(cmd: &mut clap::Command, path: &str, out: &mut Vec<(String, String)>) {
            out.push((path.to_owned(), cmd.render_help().to_string()));
            let names: Vec<String> =
                cmd.get_subcommands().map(|c| c.get_name().to_owned()).filter(|n| n != "help").collect();
            for name in names {
                let sub = cmd.find_subcommand_mut(&name).expect("listed");
                walk(sub, &format!("{path} {name}"), out);
            }
        }
        let mut root = super::Cli::command().term_width(100);
        root.build();
        let mut all = Vec::new();
        walk(&mut root, "kanade", &mut all);
        let dir = kanade_testkit::manifest_dir().join("tests/snapshots/help");
        let update = std::env::var("KANADE_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1");
        let mut stale = Vec::new();
        for (path, help) in &all {
            let file = dir.join(format!("{}.txt", path.replace(' ', "_")));
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&file, help).unwrap();
            } else if std::fs::read_to_string(&file).ok().as_deref() != Some(help.as_str()) {
                stale.push(file.display().to_string());
            }
        }
        assert!(stale.is_empty(), "help changed (KANADE_UPDATE_SNAPSHOTS=1 to accept): {stale:#?}");
        assert!(all.len() >= 30, "{} commands", all.len());
    }
}
