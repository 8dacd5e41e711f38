//! A broadcast seen over time (`KANADE_BENCH_TIMELINE=1`): every 5 ms the CPU each component
//! has used, every 10 ms how far RESULTS and its projector consumer have got (two threads, so a
//! slow `/jsz` answer does not stretch the CPU samples), printed per 25 ms. For telling where a
//! slow broadcast waits: cores idle while results trickle, or the projector behind the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Whether `KANADE_BENCH_TIMELINE` asks for timelines.
pub fn on() -> bool {
    std::env::var_os("KANADE_BENCH_TIMELINE").is_some()
}

/// Time on a CPU of every thread of `pid`, in nanoseconds (`schedstat`: finer than `stat`'s
/// 10 ms ticks, which a 25 ms bucket cannot use).
fn run_time(pid: u32) -> Duration {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten();
    let ns: u64 = tasks
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// RESULTS' last sequence, and the furthest delivered and acked of its consumers, at `at`.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    at: Duration,
    stream: u64,
    delivered: u64,
    acked: u64,
}

pub struct Sampler {
    stop: Arc<AtomicBool>,
    cpu: JoinHandle<Vec<(Duration, Vec<Duration>)>>,
    progress: JoinHandle<Vec<Progress>>,
    names: Vec<&'static str>,
}

const BUCKET: Duration = Duration::from_millis(25);

impl Sampler {
    pub fn start(components: Vec<(&'static str, Vec<u32>)>, monitor: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let names = components.iter().map(|(n, _)| *n).collect();
        let t0 = Instant::now();
        let flag = stop.clone();
        let cpu = std::thread::spawn(move || {
            let mut out = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let cpu =
                    components.iter().map(|(_, pids)| pids.iter().map(|&p| run_time(p)).sum()).collect();
                out.push((t0.elapsed(), cpu));
                std::thread::sleep(Duration::from_millis(5));
            }
            out
        });
        let flag = stop.clone();
        let progress = std::thread::spawn(move || {
            let mut out = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Some((stream, delivered, acked)) = results_progress(monitor) {
                    out.push(Progress { at: t0.elapsed(), stream, delivered, acked });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            out
        });
        Self { stop, cpu, progress, names }
    }

    /// Stop sampling; the timeline as text, one line per 25 ms.
    pub fn finish(self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.cpu.join().unwrap_or_default();
        let progress = self.progress.join().unwrap_or_default();
        let Some(first) = samples.first() else { return String::new() };
        let base = progress.first().copied().unwrap_or_default();
        let mut out = format!(
            "    t ms | {} (% of one core) | results stored / delivered / acked\n",
            self.names.join(" / ")
        );
        let mut last = first;
        for s in &samples {
            if s.0 < last.0 + BUCKET {
                continue;
            }
            let span = (s.0 - last.0).as_secs_f64();
            let cpu: Vec<String> =
                s.1.iter()
                    .zip(&last.1)
                    .map(|(a, b)| format!("{:3.0}", a.saturating_sub(*b).as_secs_f64() / span * 100.0))
                    .collect();
            let p = progress.iter().take_while(|p| p.at <= s.0).last().copied().unwrap_or(base);
            out.push_str(&format!(
                "{:9} | {} | {} / {} / {}\n",
                s.0.as_millis(),
                cpu.join(" "),
                p.stream.saturating_sub(base.stream),
                p.delivered.saturating_sub(base.delivered),
                p.acked.saturating_sub(base.acked)
            ));
            last = s;
        }
        out
    }
}

/// RESULTS' last sequence and the furthest delivered and acked over its consumers; `None` when
/// the monitoring port does not answer.
fn results_progress(monitor: u16) -> Option<(u64, u64, u64)> {
    let (status, body) =
        kanade_testkit::http::request(monitor, "GET", "/jsz?streams=true&consumers=true", b"", "text/plain")
            .ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    for account in v["account_details"].as_array()? {
        for stream in account["stream_detail"].as_array().into_iter().flatten() {
            if stream["name"] != "RESULTS" {
                continue;
            }
            let consumers = stream["consumer_detail"].as_array().cloned().unwrap_or_default();
            let max =
                |f: &str| consumers.iter().filter_map(|c| c[f]["stream_seq"].as_u64()).max().unwrap_or(0);
            return Some((stream["state"]["last_seq"].as_u64()?, max("delivered"), max("ack_floor")));
        }
    }
    None
}
