//! The real `kanade-backend` binary as a child process, for tests that kill it with SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A backend process with its own data dir and SQLite file; killed with SIGKILL when dropped
/// (also when an assertion fails).
pub struct BackendProcess {
    child: Child,
    pub config: PathBuf,
    pub db: PathBuf,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    logs: PathBuf,
    env: Vec<(String, String)>,
}

impl BackendProcess {
    /// Write a config for `dir` (free HTTP port, SQLite in `dir`) and start the binary.
    pub fn start(dir: &Path, nats_url: &str) -> Self {
        let db = dir.join("backend.db");
        Self::start_with(dir, nats_url, &format!("sqlite_path = {db:?}"), db)
    }

    /// [`start`](Self::start) with these environment variables.
    pub fn start_env(dir: &Path, nats_url: &str, env: &[(&str, &str)]) -> Self {
        let db = dir.join("backend.db");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::start_with_env(dir, &format!("{nats_url:?}"), &format!("sqlite_path = {db:?}"), db, env)
    }

    /// The same on the Postgres database at `url` (`db` is then meaningless).
    pub fn start_postgres(dir: &Path, nats_url: &str, url: &str) -> Self {
        Self::start_with(dir, nats_url, &format!("url = {url:?}"), PathBuf::new())
    }

    /// [`start_postgres`](Self::start_postgres) with these environment variables.
    pub fn start_postgres_env(dir: &Path, nats_url: &str, url: &str, env: &[(&str, &str)]) -> Self {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::start_with_env(dir, &format!("{nats_url:?}"), &format!("url = {url:?}"), PathBuf::new(), env)
    }

    /// With `lines` after `[nats] url` (credentials, enrolment) and these environment variables.
    pub fn start_nats_lines(dir: &Path, nats_url: &str, lines: &str, env: &[(&str, &str)]) -> Self {
        let db = dir.join("backend.db");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let nats = format!("{nats_url:?}\n{lines}");
        Self::start_with_env(dir, &nats, &format!("sqlite_path = {db:?}"), db, env)
    }

    /// On a cluster: `nats_url` lists its nodes, every stream with `replicas` replicas.
    pub fn start_clustered(
        dir: &Path,
        nats_url: &str,
        replicas: u8,
        url: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let nats = format!("{nats_url:?}\nreplicas = {replicas}");
        Self::start_with_env(dir, &nats, &format!("url = {url:?}"), PathBuf::new(), env)
    }

    fn start_with(dir: &Path, nats_url: &str, db_line: &str, db: PathBuf) -> Self {
        Self::start_with_env(dir, &format!("{nats_url:?}"), db_line, db, Vec::new())
    }

    /// `nats`: the value of `[nats] url`, and any lines to follow it.
    fn start_with_env(
        dir: &Path,
        nats: &str,
        db_line: &str,
        db: PathBuf,
        env: Vec<(String, String)>,
    ) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let port = kanade_testkit::free_port().unwrap();
        let config = dir.join("backend.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nbind = \"127.0.0.1:{port}\"\ndata_dir = {data:?}\n[nats]\nurl = {nats}\n[db]\n{db_line}\n[log]\npath = {logs:?}\n",
                data = dir,
                logs = dir.join("logs"),
            ),
        )
        .unwrap();
        Self { child: spawn(&config, &env), config, db, port, logs: dir.join("logs"), env }
    }

    /// Everything the backend logged so far.
    pub fn log_text(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(&self.logs).into_iter().flatten().flatten() {
            out.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
        out
    }

    /// Start the binary again on the same config (after `kill`).
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(&self.config, &self.env);
    }

    /// Start without `name` in the environment from the next (re)start on.
    pub fn unset_env(&mut self, name: &str) {
        self.env.retain(|(k, _)| k != name);
    }

    /// Whether the process has ended on its own.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(config: &Path, env: &[(String, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kanade-backend"))
        .arg("--config")
        .arg(config)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

impl Drop for BackendProcess {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what the backend said.
        if std::thread::panicking() {
            for entry in std::fs::read_dir(&self.logs).into_iter().flatten().flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("--- {} (last lines)", entry.path().display());
                tail.iter().rev().for_each(|l| eprintln!("{l}"));
            }
        }
    }
}
