//! Host-performance telemetry at fleet scale (issue 22), against a real nats-server, a real
//! SQLite file and the backend's own HTTP stack on a socket, all in one run:
//! 1. ingest CPU: `KANADE_BENCH_AGENTS` (10,000) agents' samples at a 60 s interval, published
//!    on their own subjects at the steady rate that makes (agents / 60 per second) for
//!    `KANADE_BENCH_TELEMETRY_SECS` (60); once with only the publisher running (the baseline)
//!    and once with the backend's host-perf projector writing them (samples and rollups). The
//!    difference of this process's CPU time is the backend's share, as % of one core;
//! 2. storage: one simulated day at 60 s for 100 PCs written through the store, measured with
//!    SQLite's `dbstat` per table and index, and the bytes an endpoint costs per year with the
//!    retention of SPEC §12 (raw 30 days, 5-minute buckets 30 days, hourly buckets a year);
//! 3. the perf API for 7 days of one agent (10,080 samples at 60 s), 300 sequential requests
//!    over HTTP: the resolution the backend picks (5-minute averages) and forced raw.
//!
//! Prints a markdown table. Run with `cargo bench -p kanade-backend --bench telemetry`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kanade_backend::db::{Db, now_ms};
use kanade_backend::projector::{self, Projectors};
use kanade_shared::wire::{self, DiskPerf, HostPerf, Timestamp};
use kanade_testkit::NatsServer;

const DAY_MS: i64 = 86_400_000;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn sample(pc: usize, i: usize) -> HostPerf {
    HostPerf {
        schema: 1,
        pc_id: format!("SIM-{pc:05}").parse().unwrap(),
        at: Timestamp::now_utc(),
        cpu_pct: (i % 100) as f32,
        mem_used_bytes: 4_000_000_000 + (i as u64 % 1000) * 1_000_000,
        mem_total_bytes: 16_000_000_000,
        swap_used_bytes: 0,
        swap_total_bytes: 2_000_000_000,
        load: Some(0.5),
        net_rx_bytes_per_s: 20_000 + i as u64,
        net_tx_bytes_per_s: 5_000,
        // A typical desktop: a system disk and a data disk.
        disks: ["C:", "D:"]
            .map(|name| DiskPerf {
                name: name.into(),
                read_bytes_per_s: 100_000,
                write_bytes_per_s: 50_000,
                free_bytes: Some(100_000_000_000),
            })
            .to_vec(),
    }
}

/// This process's CPU time (user + system) so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Publish each agent's sample once per `interval` spread evenly, for `secs`; returns the CPU
/// time this process spent meanwhile.
async fn publish_for(client: &async_nats::Client, agents: usize, secs: u64) -> Duration {
    let per_tick = agents.div_ceil(60).max(1); // one tick per second, 60 s interval
    let before = cpu_time();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut next = 0usize;
    for _ in 0..secs {
        tick.tick().await;
        for _ in 0..per_tick {
            let pc = next % agents;
            let s = sample(pc, next);
            let subject = kanade_shared::subjects::host_perf(&s.pc_id);
            client.publish(subject, wire::encode(&s).unwrap().into()).await.unwrap();
            next += 1;
        }
        client.flush().await.unwrap();
    }
    cpu_time() - before
}

async fn ingest_cpu(agents: usize, secs: u64) -> Vec<Vec<String>> {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let baseline = publish_for(&client, agents, secs).await;

    let db = Db::open(&dir.path().join("backend.db")).unwrap();
    let p = Arc::new(Projectors {
        db: db.clone(),
        js: async_nats::jetstream::new(client.clone()),
        stats: Default::default(),
        bus: Default::default(),
        offline_after_ms: kanade_backend::fleet::ALIVE_WINDOW_MS,
        event_budget: Default::default(),
    });
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let projector = tokio::spawn(projector::host_perf_projector(p, client.clone(), stop));
    tokio::time::sleep(Duration::from_millis(500)).await; // subscribed
    let with = publish_for(&client, agents, secs).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // the last flush
    let _ = stop_tx.send(true);
    projector.await.unwrap();
    let rows = scalar(&dir.path().join("backend.db"), "SELECT COUNT(*) FROM host_perf_samples");
    let share = with.saturating_sub(baseline);
    let pct = |d: Duration| 100.0 * d.as_secs_f64() / secs as f64;
    let goal = if pct(share) <= 5.0 { "met" } else { "**missed**" };
    vec![
        vec![
            format!("publishing {agents} agents' samples at 60 s, {secs} s (baseline)"),
            format!("{:.2} % of a core", pct(baseline)),
            String::new(),
        ],
        vec![
            format!("the same with the host-perf projector writing them ({rows} rows)"),
            format!("{:.2} % of a core", pct(with)),
            String::new(),
        ],
        vec![
            "backend's share (difference)".into(),
            format!("{:.2} % of a core", pct(share)),
            format!("≤ 5 %: {goal}"),
        ],
    ]
}

fn scalar(path: &std::path::Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// One day of 60 s samples for `pcs` PCs, receipt times spread over the day, written in the
/// projector's per-second batches.
async fn one_day(db: &Db, pcs: usize, start_ms: i64) {
    let per_day = 1440;
    let mut batch = Vec::new();
    for minute in 0..per_day {
        for pc in 0..pcs {
            // Each PC on its own second within the minute, as a fleet's agents are.
            let at = start_ms + minute as i64 * 60_000 + (pc as i64 * 997) % 60_000;
            batch.push((at, sample(pc, minute)));
        }
        if batch.len() >= 2000 || minute == per_day - 1 {
            db.apply_host_perf(std::mem::take(&mut batch)).await.unwrap();
        }
    }
}

async fn storage() -> Vec<Vec<String>> {
    let pcs = 100;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backend.db");
    let db = Db::open(&path).unwrap();
    one_day(&db, pcs, now_ms() - DAY_MS).await;
    drop(db);
    let bytes = |names: &str| {
        scalar(&path, &format!("SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN ({names})")) as f64
    };
    let raw = bytes("'host_perf_samples', 'host_perf_samples_at'") / pcs as f64;
    let rollup_sql = |res: i64| {
        scalar(&path, &format!("SELECT COUNT(*) FROM host_perf_rollups WHERE res_ms = {res}")) as f64
    };
    // Rollup rows of both resolutions share a table: split its bytes by row count.
    let rollups = bytes("'host_perf_rollups', 'host_perf_rollups_age'");
    let (five, hour) = (rollup_sql(300_000), rollup_sql(3_600_000));
    let per_row = rollups / (five + hour);
    let five_day = per_row * five / pcs as f64;
    let hour_day = per_row * hour / pcs as f64;
    let year = 30.0 * raw + 30.0 * five_day + 365.0 * hour_day;
    let mb = |b: f64| format!("{:.2} MB", b / 1e6);
    let kb = |b: f64| format!("{:.1} kB", b / 1e3);
    let goal = if year <= 20e6 { "met" } else { "**missed**" };
    vec![
        vec!["raw samples (1,440 a day, 2 disks), per agent-day".into(), kb(raw), String::new()],
        vec!["5-minute buckets (288 a day), per agent-day".into(), kb(five_day), String::new()],
        vec!["hourly buckets (24 a day), per agent-day".into(), kb(hour_day), String::new()],
        vec![
            "per endpoint-year kept (raw 30 d + 5 min 30 d + 1 h 365 d)".into(),
            mb(year),
            format!("≤ 20 MB: {goal}"),
        ],
    ]
}

async fn api_latency() -> Vec<Vec<String>> {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("backend.db")).unwrap();
    // 7 days of one agent, ending now.
    let start = now_ms() - 7 * DAY_MS;
    let mut batch = Vec::new();
    for minute in 0..7 * 1440 {
        batch.push((start + minute as i64 * 60_000, sample(0, minute)));
        if batch.len() == 2000 {
            db.apply_host_perf(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    db.apply_host_perf(batch).await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let state = kanade_backend::http::AppState::new(client, db, kanade_backend::auth::Auth::disabled());
    let app = kanade_backend::http::app(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
    });
    let mut rows = Vec::new();
    for (label, extra) in [("7 days, as chosen", ""), ("7 days, forced raw", "&resolution=raw")] {
        let path = format!("/api/agents/SIM-00000/perf?since={start}{extra}");
        let (times, points) = tokio::task::spawn_blocking(move || {
            let mut times = Vec::new();
            let mut points = 0;
            for _ in 0..300 {
                let t0 = Instant::now();
                let (status, body) =
                    kanade_testkit::http::request(port, "GET", &path, b"", "application/json").unwrap();
                times.push(t0.elapsed());
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                points = v["samples"].as_array().map_or(0, Vec::len);
                if times.len() == 1 {
                    eprintln!("{path}: {} points at {}", points, v["resolution"]);
                }
            }
            (times, points)
        })
        .await
        .unwrap();
        let mut sorted = times.clone();
        sorted.sort();
        let p = |q: f64| sorted[((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1)];
        let goal = if p(0.99) <= Duration::from_millis(50) { "met" } else { "**missed**" };
        rows.push(vec![
            format!("GET /api/agents/{{pc}}/perf, {label} ({points} points), 300 requests"),
            format!("p50 {:.1} ms, p99 {:.1} ms", ms(p(0.5)), ms(p(0.99))),
            format!("p99 ≤ 50 ms: {goal}"),
        ]);
    }
    rows
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let agents = env_num("KANADE_BENCH_AGENTS", 10_000);
    let secs = env_num("KANADE_BENCH_TELEMETRY_SECS", 60) as u64;
    let mut rows = ingest_cpu(agents, secs).await;
    rows.extend(storage().await);
    rows.extend(api_latency().await);
    println!("| measure | value | target |");
    println!("|---|---|---|");
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
}
