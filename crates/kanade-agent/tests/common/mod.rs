//! Harness for agent tests: a real nats-server with kanade's resources, real `kanade-agent`
//! processes, and helpers to publish commands and read results.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use kanade_shared::ExecId;
use kanade_shared::subjects::{self, CommandTarget};
use kanade_shared::wire::{self, Command, ExecResult, Shell};
use kanade_testkit::NatsServer;

pub struct Fleet {
    pub server: NatsServer,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub dir: tempfile::TempDir,
}

impl Fleet {
    pub async fn start() -> Self {
        let server = NatsServer::start();
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = jetstream::new(client.clone());
        kanade_shared::jetstream::ensure_jetstream_resources(&js, 1).await.unwrap();
        Self { server, client, js, dir: tempfile::tempdir().unwrap() }
    }

    /// Start the stopped (or running) server again and reconnect the test's own client.
    pub async fn restart_server(&mut self) {
        self.server.restart();
        let client = async_nats::connect(self.server.url()).await.unwrap();
        self.js = jetstream::new(client.clone());
        self.client = client;
    }

    pub fn agent(&self, id: &str, groups: &[&str]) -> Agent {
        Agent::new(self, id, groups, "1s")
    }

    pub fn agent_with_heartbeat(&self, id: &str, heartbeat: &str) -> Agent {
        Agent::new(self, id, &[], heartbeat)
    }

    /// An agent whose `[agent]` section gets `extra` appended.
    pub fn agent_with(&self, id: &str, extra: &str) -> Agent {
        let agent = Agent::new(self, id, &[], "1s");
        let text =
            std::fs::read_to_string(&agent.config).unwrap().replacen("[log]", &format!("{extra}\n[log]"), 1);
        std::fs::write(&agent.config, text).unwrap();
        agent
    }

    /// A file a test script appends to, to count how often it really ran.
    /// An agent that reaches the broker through `gate` (see [`kanade_testkit::Gate`]).
    pub fn agent_behind(&self, id: &str, heartbeat: &str, gate: &kanade_testkit::Gate) -> Agent {
        let agent = Agent::new(self, id, &[], heartbeat);
        let text = std::fs::read_to_string(&agent.config).unwrap();
        std::fs::write(&agent.config, text.replace(&self.server.url(), &gate.url())).unwrap();
        agent
    }

    pub fn marker(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.runs"))
    }

    pub async fn publish(&self, target: CommandTarget, cmd: &Command) {
        let subject = subjects::command(&target, &cmd.job_id);
        self.js.publish(subject, wire::encode(cmd).unwrap().into()).await.unwrap().await.unwrap();
    }

    pub async fn kv_put(&self, bucket: &str, key: &str, value: &str) {
        self.js.get_key_value(bucket).await.unwrap().put(key, value.to_owned().into()).await.unwrap();
    }

    /// Every result in RESULTS so far.
    pub async fn results(&self) -> Vec<ExecResult> {
        let stream = self.js.get_stream("RESULTS").await.unwrap();
        let consumer = stream
            .create_consumer(pull::Config {
                inactive_threshold: Duration::from_secs(10),
                ..Default::default()
            })
            .await
            .unwrap();
        let pending = consumer.cached_info().num_pending as usize;
        let mut out = Vec::new();
        if pending > 0 {
            let mut batch = consumer.fetch().max_messages(pending).messages().await.unwrap();
            while let Some(Ok(msg)) = batch.next().await {
                out.push(wire::decode(&msg.payload).unwrap());
                let _ = msg.ack().await;
            }
        }
        out
    }

    pub async fn results_for(&self, exec: ExecId) -> Vec<ExecResult> {
        self.results().await.into_iter().filter(|r| r.exec_id == exec).collect()
    }

    /// Wait until `exec` has a result and return it.
    pub async fn wait_result(&self, exec: ExecId, within: Duration) -> ExecResult {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(r) = self.results_for(exec).await.into_iter().next() {
                return r;
            }
            assert!(std::time::Instant::now() < deadline, "no result for {exec} within {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub fn command(job: &str, script: &str) -> Command {
    let mut cmd = Command::inline(job.parse().unwrap(), "1".parse().unwrap(), Shell::Sh, script);
    cmd.timeout_secs = 60;
    cmd
}

/// A succeeded result of `cmd` on `pc`, as the agent would report it.
pub fn succeeded(cmd: &Command, pc: &kanade_shared::PcId, stdout: String) -> ExecResult {
    ExecResult {
        schema: 1,
        result_id: kanade_shared::ResultId::derive(cmd.exec_id, pc),
        request_id: cmd.request_id,
        exec_id: cmd.exec_id,
        job_id: cmd.job_id.clone(),
        version: cmd.version.clone(),
        pc_id: pc.clone(),
        exit_code: Some(0),
        status: kanade_shared::wire::ExecStatus::Succeeded,
        skip_reason: None,
        message: None,
        stdout,
        stderr: String::new(),
        truncated: false,
        started_at: None,
        finished_at: kanade_shared::wire::Timestamp::now_utc(),
        attempt: 1,
    }
}

/// `result` as the outbox queues it: under its result id, on its subject.
pub fn queued_message(result: &ExecResult) -> kanade_agent::store::Outgoing {
    kanade_agent::store::Outgoing {
        seq: 0,
        msg_id: result.result_id.to_string(),
        subject: kanade_shared::subjects::result(&result.pc_id, result.request_id),
        payload: wire::encode(result).unwrap(),
    }
}

pub fn all() -> CommandTarget {
    CommandTarget::All
}

pub fn pc(id: &str) -> CommandTarget {
    CommandTarget::Pc(id.parse().unwrap())
}

pub fn group(g: &str) -> CommandTarget {
    CommandTarget::Group(g.parse().unwrap())
}

pub fn runs(marker: &Path) -> usize {
    std::fs::read_to_string(marker).map(|s| s.lines().count()).unwrap_or(0)
}

/// A real `kanade-agent` process. Killed on drop.
pub struct Agent {
    pub id: String,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    /// Extra environment for the process (the debug build's fault switches, `testfault`).
    pub env: Vec<(String, PathBuf)>,
    child: Option<Child>,
}

impl Agent {
    fn new(fleet: &Fleet, id: &str, groups: &[&str], heartbeat: &str) -> Self {
        let root = fleet.dir.path().join(id);
        std::fs::create_dir_all(&root).unwrap();
        let config = root.join("agent.toml");
        let groups: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
        std::fs::write(
            &config,
            format!(
                "[agent]\nid = {id:?}\nnats_url = {url:?}\ngroups = [{groups}]\ndata_dir = {data:?}\nheartbeat_interval = {heartbeat:?}\n[log]\npath = {logs:?}\nlevel = \"info,kanade_agent=debug\"\n",
                url = fleet.server.url(),
                groups = groups.join(", "),
                data = root.join("data"),
                logs = root.join("logs"),
            ),
        )
        .unwrap();
        Self { id: id.to_owned(), config, data_dir: root.join("data"), env: Vec::new(), child: None }
    }

    pub fn start(mut self) -> Self {
        self.spawn();
        self
    }

    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "agent {} already running", self.id);
        let child = Process::new(env!("CARGO_BIN_EXE_kanade-agent"))
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGTERM and wait: the clean shutdown path.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }

    /// SIGKILL: a crash or power loss from the agent's point of view.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Messages still queued in the outbox. The running agent holds its store locked, so this
    /// stops it first (the clean way: its last pass sends what it can).
    pub fn stop_and_count_outbox(&mut self) -> usize {
        self.stop();
        kanade_agent::store::Store::open(&self.data_dir.join("agent.db")).unwrap().outbox(1000).unwrap().len()
    }

    pub fn log(&self) -> String {
        let dir = self.data_dir.parent().unwrap().join("logs");
        let mut out = String::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            out.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
        out
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.crash();
    }
}

/// Runs of `exec` this agent finished, from its log: run evidence that result counts cannot
/// give (a rerun reuses its result's message id, and the broker drops the copy).
pub fn runs_of(agent: &Agent, exec: kanade_shared::ExecId) -> usize {
    agent.log().matches(&format!("run finished exec_id={exec}")).count()
}

/// Catch-ups over EXEC the agent completed so far (at start and after each reconnect).
pub fn catch_ups(agent: &Agent) -> usize {
    agent.log().matches("caught up with EXEC").count()
}

/// Wait until the agent's log shows it is subscribed and caught up (first start only: the log
/// keeps the line across restarts).
pub async fn ready(agent: &Agent) {
    kanade_testkit::wait_until_async(
        &format!("agent {} to be running", agent.id),
        Duration::from_secs(30),
        || async { agent.log().contains("intake ready") },
    )
    .await;
}
