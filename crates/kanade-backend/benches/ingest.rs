//! Projection benchmark against a real nats-server and a real SQLite file, all in one run so
//! the figures compare as ratios on the same machine:
//! 1. raw SQLite: the same result rows inserted with one prepared statement, 2,000 rows per
//!    transaction (the ceiling for this schema);
//! 2. JetStream alone: the RESULTS projector's consumer settings, fetch + decode + ack, no
//!    database;
//! 3. the RESULTS projector: stream → decode → upsert + counters of the 10 executions (created
//!    beforehand with every PC as a target) → ack, until every row is in. With the CPU this
//!    process and nats-server spent meanwhile, and from it the ratio the round would reach with
//!    every core busy throughout (the raw insert has a core to itself and no broker to feed);
//! 4. heartbeats: one micro-batch of `KANADE_BENCH_AGENTS` (default 10,000) heartbeats upserted;
//! 5. on Postgres (a throwaway cluster, `KANADE_BENCH_POSTGRES=0` skips it): the same rows
//!    inserted raw, 5,000 per statement with `INSERT … SELECT FROM UNNEST(arrays)` and 5,000 per
//!    `COPY`, and the RESULTS projector writing into Postgres.
//!
//! `KANADE_BENCH_RESULTS` (default 100,000) results spread over 10 executions; 1–3 are run
//! `KANADE_BENCH_REPEAT` (default 5) times on fresh files and the medians reported, with the
//! spread of the per-round projector ratio. Prints a markdown table. Run with `cargo bench -p kanade-backend --bench ingest`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, pull};
use futures::StreamExt;
use kanade_backend::db::{Db, now_ms, projection};
use kanade_backend::projector::{self, Kind, Projectors};
use kanade_shared::wire::{self, ExecResult, ExecStatus, Heartbeat, Timestamp};
use kanade_shared::{ExecId, PcId, RequestId, ResultId};
use kanade_testkit::NatsServer;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn results(n: usize) -> Vec<ExecResult> {
    let execs: Vec<ExecId> = (0..10).map(|_| ExecId::new()).collect();
    (0..n)
        .map(|i| {
            let exec = execs[i % execs.len()];
            let pc: PcId = format!("SIM-{:05}", i / execs.len()).parse().unwrap();
            ExecResult {
                schema: 1,
                result_id: ResultId::derive(exec, &pc),
                request_id: RequestId::new(),
                exec_id: exec,
                job_id: "bench".parse().unwrap(),
                version: "1".parse().unwrap(),
                pc_id: pc,
                exit_code: Some(0),
                status: ExecStatus::Succeeded,
                skip_reason: None,
                message: None,
                stdout: "ok\n".to_owned(),
                stderr: String::new(),
                truncated: false,
                started_at: Some(Timestamp::now_utc()),
                finished_at: Timestamp::now_utc(),
                attempt: 1,
            }
        })
        .collect()
}

/// One number from the SQLite file, read beside the store (as an operator's `sqlite3` would).
fn scalar(path: &std::path::Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// CPU used over a timed window by this process (a raw insert, or the projector's fetch,
/// decode and writes) and by nats-server: on these shared cores a round can only be as short as
/// their sum divided by the cores.
#[derive(Clone, Copy)]
struct Cpu {
    here: Duration,
    broker: Duration,
}

impl Cpu {
    fn total(self) -> Duration {
        self.here + self.broker
    }
}

struct Meter {
    broker: u32,
    at_start: Cpu,
}

impl Meter {
    fn start(broker: u32) -> Self {
        Self { broker, at_start: Self::now(broker) }
    }

    fn now(broker: u32) -> Cpu {
        let of = |pid| kanade_testkit::proc::cpu_time(pid).expect("a running process's CPU time");
        Cpu { here: of(std::process::id()), broker: of(broker) }
    }

    fn stop(&self) -> Cpu {
        let now = Self::now(self.broker);
        Cpu { here: now.here - self.at_start.here, broker: now.broker - self.at_start.broker }
    }
}

async fn raw_insert(path: &std::path::Path, items: Vec<ExecResult>, broker: u32) -> (Duration, Cpu) {
    drop(Db::open(path).unwrap()); // the schema
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;").unwrap();
    let meter = Meter::start(broker);
    let start = Instant::now();
    for chunk in items.chunks(2000) {
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare_cached(
                "INSERT INTO execution_results (result_id, exec_id, pc_id, request_id, job_id, version, status,
                     exit_code, stdout, stderr, truncated, attempt, started_ms, finished_ms, received_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?13)",
            )
                .unwrap();
            for r in chunk {
                stmt.execute(rusqlite::params![
                    r.result_id.to_string(),
                    r.exec_id.to_string(),
                    r.pc_id.as_str(),
                    r.request_id.to_string(),
                    r.job_id.as_str(),
                    r.version.as_str(),
                    r.status.as_str(),
                    r.exit_code,
                    r.stdout,
                    r.stderr,
                    r.truncated,
                    r.attempt,
                    now_ms(),
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    (start.elapsed(), meter.stop())
}

/// The projector's database side alone: the same batches (5,000 decoded results) written as
/// the projector writes them, with no broker, to tell the write path from the pipeline around it.
async fn write_only(
    path: &std::path::Path,
    items: &[ExecResult],
    items_meta: &[(String, String)],
) -> Duration {
    let db = Db::open(path).unwrap();
    create_executions(&db, items_meta).await;
    let start = Instant::now();
    for chunk in items.chunks(5000) {
        db.apply_results(chunk.to_vec(), now_ms(), None).await.unwrap();
    }
    start.elapsed()
}

async fn jetstream_only(js: &async_nats::jetstream::Context, n: usize, name: &str) -> Duration {
    let stream = js.get_stream("RESULTS").await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(name.into()),
            ack_policy: AckPolicy::Explicit,
            max_ack_pending: 100_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let start = Instant::now();
    let mut seen = 0;
    while seen < n {
        let mut batch =
            consumer.fetch().max_messages(2000).expires(Duration::from_millis(500)).messages().await.unwrap();
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            wire::decode::<ExecResult>(&m.payload).unwrap();
            m.ack().await.unwrap();
            seen += 1;
        }
    }
    start.elapsed()
}

async fn heartbeats(dir: &std::path::Path, agents: usize) -> Duration {
    let db = Db::open(&dir.join("beats.db")).unwrap();
    let beat: Heartbeat =
        wire::decode(include_bytes!("../../kanade-shared/test-data/wire/v1/heartbeat.json"))
            .expect("golden heartbeat");
    let make = |round: u64| -> Vec<Heartbeat> {
        (0..agents)
            .map(|i| {
                let mut b = beat.clone();
                b.pc_id = format!("SIM-{i:05}").parse().unwrap();
                b.uptime_secs = round;
                b
            })
            .collect()
    };
    // The first batch inserts; the steady state is updates, so that is what is timed.
    let first = make(0);
    db.apply_heartbeats(first, now_ms(), kanade_backend::pipeline::plan::ALIVE_WINDOW_MS).await.unwrap();
    let beats = make(1);
    let start = Instant::now();
    db.apply_heartbeats(beats, now_ms(), kanade_backend::pipeline::plan::ALIVE_WINDOW_MS).await.unwrap();
    start.elapsed()
}

/// The executions the results belong to, with every PC as a target, as the exec pipeline
/// would have left them: the projector then also recomputes counters and status per batch.
async fn create_executions(db: &Db, results: &[(String, String)]) {
    let mut by_exec: std::collections::BTreeMap<String, Vec<(String, i64)>> = Default::default();
    for (exec, pc) in results {
        by_exec.entry(exec.clone()).or_default().push((pc.clone(), 0));
    }
    for (exec, targets) in by_exec {
        let created = projection::ExecCreated {
            exec_id: exec,
            job_id: "bench".into(),
            version: "1".into(),
            plan: serde_json::json!({}),
            target_count: targets.len() as i64,
            targets,
            waves: Vec::new(),
            schedule_id: None,
            title: None,
        };
        db.insert_execution(created, "bench".into(), now_ms()).await.unwrap();
    }
}

async fn publish(js: &async_nats::jetstream::Context, items: &[ExecResult]) {
    let mut acks = Vec::with_capacity(1000);
    for r in items {
        let subject = kanade_shared::subjects::result(&r.pc_id, r.request_id);
        acks.push(js.publish(subject, wire::encode(r).unwrap().into()).await.unwrap());
        if acks.len() == 1000 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

#[tokio::main]
async fn main() {
    let n = env_num("KANADE_BENCH_RESULTS", 100_000);
    let agents = env_num("KANADE_BENCH_AGENTS", 10_000);
    let server = NatsServer::start();
    let broker = server.pid().expect("nats-server's pid, to read its CPU time");
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rounds = env_num("KANADE_BENCH_REPEAT", 5).max(1);
    let items = results(n);
    let items_meta: Vec<(String, String)> =
        items.iter().map(|r| (r.exec_id.to_string(), r.pc_id.to_string())).collect();

    eprintln!("publishing {n} results…");
    publish(&js, &items).await;
    // Each measure is repeated on fresh files (and, for the projector, a fresh projection and
    // so a fresh consumer that replays the whole stream): one round on these shared 2 cores
    // varies by a factor of 1.5, a median of several does not.
    let (mut raws, mut pulls, mut projected, mut writes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut raw_cpu, mut projected_cpu) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        eprintln!("round {}/{rounds}: raw insert, JetStream fetch + ack, projector…", round + 1);
        let (took, cpu) =
            raw_insert(&dir.path().join(format!("raw-{round}.db")), items.clone(), broker).await;
        raws.push(took);
        raw_cpu.push(cpu);
        writes.push(write_only(&dir.path().join(format!("write-{round}.db")), &items, &items_meta).await);
        pulls.push(jetstream_only(&js, n, &format!("bench-pull-only-{round}")).await);
        let path = dir.path().join(format!("backend-{round}.db"));
        let (took, cpu) = project(&js, &path, &items_meta, n, broker).await;
        projected.push(took);
        projected_cpu.push(cpu);
    }
    let beats = heartbeats(dir.path(), agents).await;
    let postgres = std::env::var("KANADE_BENCH_POSTGRES").as_deref() != Ok("0");
    let (mut unnests, mut copies, mut pg_projected) = (Vec::new(), Vec::new(), Vec::new());
    if postgres {
        let cluster = kanade_testkit::PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
        for round in 0..rounds {
            eprintln!("Postgres round {}/{rounds}: raw UNNEST, raw COPY, projector…", round + 1);
            unnests.push(raw_pg(&cluster.fresh_database(), &items, Raw::Unnest).await);
            copies.push(raw_pg(&cluster.fresh_database(), &items, Raw::Copy).await);
            pg_projected.push(project_pg(&js, &cluster.fresh_database(), &items_meta, n, broker).await);
        }
    }

    let ratios: Vec<f64> =
        raws.iter().zip(&projected).map(|(r, p)| r.as_secs_f64() / p.as_secs_f64()).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Each round's raw insert against the shortest its projector round could have been, every
    // core busy throughout: what overlapping the pipeline better could still gain.
    let bounds: Vec<Duration> = raws
        .iter()
        .zip(&projected_cpu)
        .map(|(r, c)| Duration::from_secs_f64(r.as_secs_f64() * cores as f64 / c.total().as_secs_f64()))
        .collect();
    let bound = median(bounds).as_secs_f64();
    let busy: Vec<Duration> = projected
        .iter()
        .zip(&projected_cpu)
        .map(|(p, c)| Duration::from_secs_f64(c.total().as_secs_f64() / cores as f64 / p.as_secs_f64()))
        .collect();
    let busy = median(busy).as_secs_f64();
    let cpu = |all: Vec<Cpu>| {
        let here = median(all.iter().map(|c| c.here).collect()).as_secs_f64();
        let broker = median(all.iter().map(|c| c.broker).collect()).as_secs_f64();
        format!("{here:.2} / {broker:.2}")
    };
    let (raw_cpu, projected_cpu) = (cpu(raw_cpu), cpu(projected_cpu));
    let (raw, pull, projected, write) = (median(raws), median(pulls), median(projected), median(writes));
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "| measure ({n} results, {cores} cores, median of {rounds} rounds) | time | rows/s | vs raw insert | CPU s here / nats-server |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| raw SQLite insert, 2,000 rows/tx | {:.2} s | {:.0} | 1.00 | {raw_cpu} |",
        raw.as_secs_f64(),
        rate(raw)
    );
    for (name, d, cpu) in [
        ("JetStream fetch + decode + ack, no DB", pull, ""),
        ("the projector's writes alone (decoded batches of 5,000, no broker)", write, ""),
        ("RESULTS projector, stream → rows", projected, projected_cpu.as_str()),
    ] {
        println!(
            "| {name} | {:.2} s | {:.0} | {:.2} | {cpu} |",
            d.as_secs_f64(),
            rate(d),
            rate(d) / rate(raw)
        );
    }
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(0.0, f64::max);
    println!("| projector / raw insert, each round | | | {lo:.2} – {hi:.2} | |");
    println!(
        "| the projector with every core busy the whole round (raw time ÷ (its CPU ÷ {cores} cores)); the round kept them {:.0} % busy | | | {bound:.2} | |",
        busy * 100.0
    );
    println!(
        "| heartbeat micro-batch, {agents} agents in one tx | {:.1} ms | {:.0} | | |",
        beats.as_secs_f64() * 1000.0,
        agents as f64 / beats.as_secs_f64()
    );
    if postgres {
        let (unnest, copy, projected) = (median(unnests), median(copies), median(pg_projected));
        let raw = unnest.min(copy);
        println!();
        println!("| on Postgres ({n} results, same run) | time | rows/s | vs the faster raw insert |");
        println!("|---|---|---|---|");
        for (name, d) in [
            ("raw `INSERT … SELECT FROM UNNEST`, 5,000 rows/statement", unnest),
            ("raw `COPY`, 5,000 rows/tx", copy),
            ("RESULTS projector, stream → rows", projected),
        ] {
            println!("| {name} | {:.2} s | {:.0} | {:.2} |", d.as_secs_f64(), rate(d), rate(d) / rate(raw));
        }
    }
}

/// A plain client on `url`, for the raw baselines and for counting.
async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

#[derive(Clone, Copy)]
enum Raw {
    Unnest,
    Copy,
}

/// The rows the projector would write, inserted straight into a fresh Postgres schema.
async fn raw_pg(url: &str, items: &[ExecResult], how: Raw) -> Duration {
    drop(Db::connect_postgres(url).await.unwrap()); // the schema
    let mut client = pg_client(url).await;
    let columns = "result_id, exec_id, pc_id, request_id, job_id, version, status, exit_code, stdout, stderr,
                   truncated, attempt, started_ms, finished_ms, received_ms";
    let start = Instant::now();
    for chunk in items.chunks(5000) {
        let now = now_ms();
        let tx = client.transaction().await.unwrap();
        match how {
            Raw::Unnest => {
                let text = |f: &dyn Fn(&ExecResult) -> String| chunk.iter().map(f).collect::<Vec<String>>();
                let sql = format!(
                    "INSERT INTO execution_results ({columns})
                     SELECT r, e, p, q, j, v, s, x, o, err, t, a, $13, $13, $13
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                                 $8::int8[], $9::text[], $10::text[], $11::int8[], $12::int8[])
                       AS u(r, e, p, q, j, v, s, x, o, err, t, a)"
                );
                let exit: Vec<Option<i64>> = chunk.iter().map(|r| r.exit_code.map(i64::from)).collect();
                let truncated: Vec<i64> = chunk.iter().map(|r| i64::from(r.truncated)).collect();
                let attempt: Vec<i64> = chunk.iter().map(|r| i64::from(r.attempt)).collect();
                tx.execute(
                    &sql,
                    &[
                        &text(&|r| r.result_id.to_string()),
                        &text(&|r| r.exec_id.to_string()),
                        &text(&|r| r.pc_id.to_string()),
                        &text(&|r| r.request_id.to_string()),
                        &text(&|r| r.job_id.to_string()),
                        &text(&|r| r.version.to_string()),
                        &text(&|r| r.status.as_str().to_owned()),
                        &exit,
                        &text(&|r| r.stdout.clone()),
                        &text(&|r| r.stderr.clone()),
                        &truncated,
                        &attempt,
                        &now,
                    ],
                )
                .await
                .unwrap();
            }
            Raw::Copy => {
                // COPY's text format: tab-separated, \N for NULL, backslash escapes.
                let esc = |s: &str| {
                    s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").replace('\r', "\\r")
                };
                let mut body = String::with_capacity(chunk.len() * 200);
                for r in chunk {
                    let exit = r.exit_code.map_or("\\N".to_owned(), |c| c.to_string());
                    body.push_str(&format!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{exit}\t{}\t{}\t{}\t{}\t{now}\t{now}\t{now}\n",
                        r.result_id,
                        r.exec_id,
                        esc(r.pc_id.as_str()),
                        r.request_id,
                        esc(r.job_id.as_str()),
                        esc(r.version.as_str()),
                        r.status.as_str(),
                        esc(&r.stdout),
                        esc(&r.stderr),
                        i64::from(r.truncated),
                        r.attempt,
                    ));
                }
                let sink =
                    tx.copy_in(&format!("COPY execution_results ({columns}) FROM STDIN")).await.unwrap();
                let mut sink = std::pin::pin!(sink);
                futures::SinkExt::send(&mut sink, bytes::Bytes::from(body)).await.unwrap();
                sink.finish().await.unwrap();
            }
        }
        tx.commit().await.unwrap();
    }
    start.elapsed()
}

/// The RESULTS projector writing into a fresh Postgres projection, until every row is in.
async fn project_pg(
    js: &async_nats::jetstream::Context,
    url: &str,
    items_meta: &[(String, String)],
    n: usize,
    broker: u32,
) -> Duration {
    let db = Db::connect_postgres(url).await.unwrap();
    create_executions(&db, items_meta).await;
    let client = pg_client(url).await;
    let count = async |sql: &str| -> i64 { client.query_one(sql, &[]).await.unwrap().get(0) };
    let (took, _) = run_projector(db, js, n, broker).await;
    let rows = count("SELECT COUNT(*) FROM execution_results").await;
    assert_eq!(rows as usize, n, "every result is a row");
    let completed = count("SELECT COUNT(*) FROM executions WHERE status = 'completed'").await;
    assert_eq!(completed, 10, "every execution completes once its results are in");
    took
}

/// Run the RESULTS projector until it has written `n` results, and time it. Done is read from
/// its own counter, which moves after each batch commits: polling the database instead would
/// put a reader (and a `COUNT(*)` over the growing table) beside the writer being measured.
async fn run_projector(
    db: Db,
    js: &async_nats::jetstream::Context,
    n: usize,
    broker: u32,
) -> (Duration, Cpu) {
    let stats = Arc::new(projector::Stats::default());
    let p = Arc::new(Projectors {
        db,
        js: js.clone(),
        stats: stats.clone(),
        bus: Default::default(),
        offline_after_ms: kanade_backend::fleet::ALIVE_WINDOW_MS,
        event_budget: Default::default(),
    });
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let meter = Meter::start(broker);
    let start = Instant::now();
    let task = tokio::spawn(projector::supervise(p, Kind::Results, None, stop));
    while (stats.projected[Kind::Results as usize].load(std::sync::atomic::Ordering::Relaxed) as usize) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = (start.elapsed(), meter.stop());
    let _ = stop_tx.send(true);
    let _ = task.await;
    took
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Project the whole stream into a fresh database (its own generation, so its own consumer)
/// and time it until every row is in.
async fn project(
    js: &async_nats::jetstream::Context,
    path: &std::path::Path,
    items_meta: &[(String, String)],
    n: usize,
    broker: u32,
) -> (Duration, Cpu) {
    let db = Db::open(path).unwrap();
    create_executions(&db, items_meta).await;
    let took = run_projector(db, js, n, broker).await;
    assert_eq!(scalar(path, "SELECT COUNT(*) FROM execution_results") as usize, n, "every result is a row");
    let completed = scalar(path, "SELECT COUNT(*) FROM executions WHERE status = 'completed'");
    assert_eq!(completed, 10, "every execution completes once its results are in");
    took
}
