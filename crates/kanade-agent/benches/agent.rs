//! Agent benchmark against a real nats-server and the real `kanade-agent` binary:
//! 1. idle RSS and CPU over `KANADE_BENCH_IDLE_SECS` (default 60) seconds (host performance
//!    sampled at the default 60 s, or `KANADE_BENCH_HOST_PERF`, e.g. `0s` for off);
//! 2. per-command overhead, publish → result acked into RESULTS, for the script `true`,
//!    `KANADE_BENCH_COMMANDS` (default 200) commands one after another, p50/p99.
//!
//! Prints a markdown table. Needs a built agent: `cargo build -p kanade-agent` first.

use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kanade_shared::subjects::{self, CommandTarget};
use kanade_shared::wire::{self, Command, ExecResult, Shell};
use kanade_testkit::NatsServer;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn agent_binary() -> PathBuf {
    // benches/agent.rs runs from target/<profile>/deps; the binary sits one level up.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    // The shipped build (`--profile agent`) first: its size is part of what is measured.
    ["agent", "release", "debug"]
        .iter()
        .map(|p| dir.parent().unwrap().join(p).join("kanade-agent"))
        .chain(std::iter::once(dir.join("kanade-agent")))
        .find(|p| p.is_file())
        .expect("kanade-agent binary not found: run `cargo build --profile agent -p kanade-agent` first")
}

fn proc_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn proc_cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit(") ").next().unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after "pid (comm)".
    fields.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn clock_ticks() -> u64 {
    Process::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn command(n: usize) -> Command {
    let mut cmd =
        Command::inline(format!("bench-{n}").parse().unwrap(), "1".parse().unwrap(), Shell::Sh, "true");
    cmd.timeout_secs = 30;
    cmd
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let idle_secs = env_num("KANADE_BENCH_IDLE_SECS", 60);
    let commands = env_num("KANADE_BENCH_COMMANDS", 200) as usize;
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 1).await.unwrap();
    // KANADE_BENCH_HOST_PERF=0s (off) or a period: the fleet-wide host_perf_interval (default 60 s).
    if let Ok(every) = std::env::var("KANADE_BENCH_HOST_PERF") {
        let kv = js.get_key_value("agent_config").await.unwrap();
        kv.put("global", format!(r#"{{"host_perf_interval":"{every}"}}"#).into()).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"BENCH\"\nnats_url = {:?}\ndata_dir = {:?}\n[log]\npath = {:?}\nlevel = \"warn\"\n",
            server.url(),
            dir.path().join("data"),
            dir.path().join("logs")
        ),
    )
    .unwrap();
    let binary = agent_binary();
    let mut agent: Child = Process::new(&binary)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = agent.id();

    // Wait until it answers a ping, then let start-up work (inventory) settle.
    let started = Instant::now();
    while client.request(subjects::ping(&"BENCH".parse().unwrap()), "".into()).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "agent did not answer pings");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    let ticks0 = proc_cpu_ticks(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let idle_cpu =
        (proc_cpu_ticks(pid) - ticks0) as f64 / clock_ticks() as f64 / t0.elapsed().as_secs_f64() * 100.0;
    let idle_rss = proc_rss_kib(pid);

    let mut results = client.subscribe("results.BENCH.>").await.unwrap();
    let mut samples = Vec::with_capacity(commands);
    for n in 0..commands {
        let cmd = command(n);
        let subject = subjects::command(&CommandTarget::All, &cmd.job_id);
        let sent = Instant::now();
        js.publish(subject, wire::encode(&cmd).unwrap().into()).await.unwrap().await.unwrap();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), results.next())
                .await
                .expect("no result")
                .unwrap();
            let result: ExecResult = wire::decode(&msg.payload).unwrap();
            if result.exec_id == cmd.exec_id {
                break;
            }
        }
        samples.push(sent.elapsed());
    }
    samples.sort();
    let busy_rss = proc_rss_kib(pid);
    let _ = agent.kill();
    let _ = agent.wait();

    println!("| measure | value |");
    println!("|---|---|");
    println!("| agent binary | `{}` |", binary.display());
    println!("| idle RSS after {idle_secs} s | {:.1} MiB |", idle_rss as f64 / 1024.0);
    println!("| idle CPU over {idle_secs} s | {idle_cpu:.3} % of one core |");
    println!(
        "| command `true`, publish → result in RESULTS, n = {commands} | p50 {:.1} ms, p99 {:.1} ms |",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3
    );
    println!("| RSS after the commands | {:.1} MiB |", busy_rss as f64 / 1024.0);
}
