//! The processes a benchmark runs: the release `kanade-backend` and `kanade-sim`, their
//! output, and CPU / memory samples read from `/proc`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A binary next to this one (all are built into the same target dir).
pub fn sibling(name: &str) -> PathBuf {
    let me = std::env::current_exe().expect("own path");
    me.with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

pub struct Backend {
    child: Child,
    pub port: u16,
}

impl Backend {
    /// `db_line`: the `[db]` setting (`sqlite_path = …` or `url = …`); every stream, bucket and
    /// store with `replicas` replicas (3 on a cluster).
    pub fn start(dir: &Path, nats_url: &str, replicas: u8, db_line: &str) -> anyhow::Result<Self> {
        let port = kanade_testkit::free_port().map_err(anyhow::Error::msg)?;
        let config = dir.join("backend.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nbind = \"127.0.0.1:{port}\"\ndata_dir = {data:?}\n[nats]\nurl = {nats_url:?}\nreplicas = {replicas}\n[db]\n{db_line}\n[log]\npath = {logs:?}\nlevel = {level:?}\n",
                data = dir.join("data"),
                logs = dir.join("logs"),
                // More of the backend's log, for looking into one run.
                level = std::env::var("KANADE_BENCH_BACKEND_LOG").unwrap_or_else(|_| "warn".into()),
            ),
        )?;
        let child = Command::new(sibling("kanade-backend"))
            .arg("--config")
            .arg(&config)
            .env("KANADE_AUTH_DISABLE", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start kanade-backend (build it with --release first)")?;
        let backend = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while crate::api::get(port, "/health").is_err() {
            if Instant::now() > deadline {
                bail!("kanade-backend did not answer /health within 60 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(backend)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which count of heard agents to wait on.
#[derive(Debug, Clone, Copy)]
pub enum Window {
    /// Within the simulator's alive window.
    Alive,
    /// Since the watcher's connection came back for the `n`th time.
    SinceReconnect(u64),
}

/// What the simulator last reported.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimState {
    pub heartbeating: usize,
    /// Heard from since the simulator's watcher reconnected (after a broker restart).
    pub back: usize,
    /// How often the watcher's connection came back; `back` counts since the latest.
    pub reconnects: u64,
    pub runs: u64,
    pub doubles: u64,
    pub started: bool,
}

pub struct Sim {
    child: Child,
    pub state: Arc<Mutex<SimState>>,
    data_dir: PathBuf,
}

/// What a simulator process runs.
pub enum SimKind {
    /// The floor's bare subscribers.
    Floor,
    /// Agents that verify every command against the backend's key (base64), as deployed ones do.
    Agents { trusted_key: String },
}

impl Sim {
    /// Agents `first .. first + agents` of a fleet of `fleet`; the simulator's log goes to `log`,
    /// a copy of its reports next to it (`.out`). `watch`: this process counts the whole
    /// fleet's heartbeats (one per fleet: each watcher is another subscriber to every heartbeat,
    /// load on the broker and the simulator that a deployment does not carry).
    pub fn start(
        nats_url: &str,
        (first, agents, fleet): (usize, usize, usize),
        sizes: &[usize],
        data_dir: &Path,
        log: &Path,
        (kind, watch): (&SimKind, bool),
    ) -> anyhow::Result<Self> {
        let _ = std::fs::remove_dir_all(data_dir);
        let create =
            |p: &Path| std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()));
        let mut report_copy = create(&log.with_extension("out"))?;
        let log = create(log)?;
        let sizes: Vec<String> = sizes.iter().map(ToString::to_string).collect();
        let mut child = Command::new(sibling("kanade-sim"))
            .args(["--nats-url", nats_url, "--agents", &agents.to_string(), "--heartbeat", "30s"])
            .args(["--first", &first.to_string(), "--fleet", &fleet.to_string()])
            .args(["--report", "1s", "--start-rate", "1000", "--size-groups", &sizes.join(",")])
            .arg("--data-dir")
            .arg(data_dir)
            .args(match kind {
                SimKind::Floor => vec!["--floor"],
                SimKind::Agents { trusted_key } => vec!["--trusted-key", trusted_key.as_str()],
            })
            .args((!watch).then_some("--no-watch"))
            // The agents log as deployed ones do by default (a quick run's "run finished" at `info`), not at
            // the simulator's own quieter default: that would be a shortcut real agents do not
            // take.
            .env("KANADE_LOG", kanade_shared::config::DEFAULT_LOG_LEVEL)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("cannot start kanade-sim (build it with --release first)")?;
        let state = Arc::new(Mutex::new(SimState::default()));
        let out = child.stdout.take().expect("piped");
        let shared = state.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = writeln!(report_copy, "{line}");
                let mut s = shared.lock().unwrap();
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["started", _] => s.started = true,
                    [
                        "heartbeating",
                        n,
                        "recent",
                        _,
                        "back",
                        back,
                        "reconnects",
                        k,
                        "runs",
                        r,
                        "doubles",
                        d,
                    ] => {
                        s.reconnects = k.parse().unwrap_or(0);
                        s.heartbeating = n.split('/').next().and_then(|x| x.parse().ok()).unwrap_or(0);
                        s.back = back.parse().unwrap_or(0);
                        s.runs = r.parse().unwrap_or(0);
                        s.doubles = d.parse().unwrap_or(0);
                    }
                    ["runs", r, "doubles", d] => {
                        s.runs = r.parse().unwrap_or(0);
                        s.doubles = d.parse().unwrap_or(0);
                    }
                    _ => {}
                }
            }
        });
        Ok(Self { child, state, data_dir: data_dir.to_path_buf() })
    }

    pub fn now(&self) -> SimState {
        *self.state.lock().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until the process said every one of its agents (or floor subscribers) started.
    pub fn wait_started(&self, within: Duration) -> anyhow::Result<()> {
        let t0 = Instant::now();
        while !self.now().started {
            if t0.elapsed() > within {
                bail!("the simulator did not start all of its agents within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Wait until `agents` are heard from (within `window`).
    pub fn wait_heartbeating(
        &self,
        agents: usize,
        window: Window,
        within: Duration,
    ) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let count = |s: SimState| match window {
            Window::Alive => s.heartbeating,
            Window::SinceReconnect(n) if s.reconnects >= n => s.back,
            Window::SinceReconnect(_) => 0,
        };
        while count(self.now()) < agents {
            if t0.elapsed() > within {
                bail!(
                    "only {} of {agents} simulated agents heartbeating after {within:?}",
                    count(self.now())
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(t0.elapsed())
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

pub use kanade_testkit::proc::cpu_time;

/// CPU time (user + system) and resident memory (KiB) of a process.
fn sample(pid: u32) -> Option<(Duration, u64)> {
    let cpu = cpu_time(pid)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some((cpu, rss_kib))
}

/// Average CPU % (of one core) and peak RSS (MiB) of each pid over `span`.
pub fn usage(pids: &[u32], span: Duration) -> Vec<(f64, f64)> {
    let before: Vec<_> = pids.iter().map(|&p| sample(p)).collect();
    let mut peak = vec![0u64; pids.len()];
    let t0 = Instant::now();
    while t0.elapsed() < span {
        std::thread::sleep(Duration::from_millis(500));
        for (i, &p) in pids.iter().enumerate() {
            if let Some((_, rss)) = sample(p) {
                peak[i] = peak[i].max(rss);
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    pids.iter()
        .enumerate()
        .map(|(i, &p)| match (before[i], sample(p)) {
            (Some((a, _)), Some((b, _))) => {
                (100.0 * b.saturating_sub(a).as_secs_f64() / secs, peak[i] as f64 / 1024.0)
            }
            _ => (f64::NAN, f64::NAN),
        })
        .collect()
}
