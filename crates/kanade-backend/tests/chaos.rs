//! Chaos: a 3-node nats-server cluster (every stream, bucket and store with 3 replicas), two
//! backends sharing one Postgres, and agents in two simulator processes (the real agent
//! runtime; a fake executor that appends every run to a file as it starts). A seeded workload
//! (broadcasts, two-wave rollouts, kills, and a schedule firing every 2 s) runs while a seeded
//! fault injector SIGKILLs and restarts a simulator process, a backend, or one broker node at a
//! time. Then everything is brought back, the schedule disabled, the fleet left to settle, and
//! the invariants counted:
//! - each (exec, pc) ran at most once (the run logs);
//! - every run has exactly one result row, and it is final;
//! - each execution's counters equal its result rows;
//! - no execution is still pending or running;
//! - every execution has its `exec.create` in the audit log;
//! - each tick of the schedule fired at most once.
//!
//! The seed is printed; `KANADE_CHAOS_SEED=<seed>` replays the same choices (the machine's
//! timing still varies). `KANADE_CHAOS_SECS` (60) and `KANADE_CHAOS_AGENTS` (6) size the run.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::BackendProcess;
use kanade_testkit::{NatsCluster, PgCluster};

const WHOLE_WITHIN: Duration = Duration::from_secs(60);

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One simulator process with `count` agents from index `first`; killed and restarted whole,
/// on the same data dirs and run log.
struct Sim {
    args: Vec<String>,
    stderr: PathBuf,
    child: Option<Child>,
}

impl Sim {
    fn start(nats: &str, dir: &Path, first: usize, count: usize, fleet: usize) -> Self {
        let args = [
            "--nats-url",
            nats,
            "--agents",
            &count.to_string(),
            "--first",
            &first.to_string(),
            "--fleet",
            &fleet.to_string(),
            "--prefix",
            "chaos",
            "--canary-share",
            "0",
            "--heartbeat",
            "1s",
            "--start-rate",
            "100",
            "--run-time",
            "700ms",
            "--report",
            "1h",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(["--data-dir".into(), dir.join("agents").display().to_string()])
        .chain(["--run-log".into(), dir.join(format!("runs-{first}.log")).display().to_string()])
        .collect();
        let mut sim = Self { args, stderr: dir.join(format!("sim-{first}.stderr")), child: None };
        sim.spawn();
        sim
    }

    fn spawn(&mut self) {
        let binary = Path::new(env!("CARGO_BIN_EXE_kanade-backend")).with_file_name("kanade-sim");
        assert!(
            binary.is_file(),
            "{} is missing: build it with `cargo build -p kanade-sim` (`cargo test --workspace` does)",
            binary.display()
        );
        let stderr = std::fs::File::options().create(true).append(true).open(&self.stderr).unwrap();
        let child =
            Command::new(binary).args(&self.args).stdout(Stdio::null()).stderr(stderr).spawn().unwrap();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One API call; `None` when the backend did not answer (it is down).
fn api(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, serde_json::Value)> {
    let kind = if body.starts_with('{') { "application/json" } else { "application/yaml" };
    let (status, body) = kanade_testkit::http::request(port, method, path, body.as_bytes(), kind).ok()?;
    Some((status, serde_json::from_slice(&body).unwrap_or_default()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Sim(usize),
    Backend(usize),
    Broker(usize),
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_kills_agents_backends_and_broker_nodes_and_nothing_is_lost_or_run_twice() {
    let seed = std::env::var("KANADE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let secs = env_num("KANADE_CHAOS_SECS", 60);
    let agents = env_num("KANADE_CHAOS_AGENTS", 6) as usize;
    println!("chaos seed {seed} ({secs} s, {agents} agents): KANADE_CHAOS_SEED={seed} replays it");
    let mut rng = fastrand::Rng::with_seed(seed);

    let mut cluster = NatsCluster::start(3);
    let client = kanade_shared::nats::connect_forever(&cluster.url(), &Default::default(), "chaos").await;
    let js = async_nats::jetstream::new(client);
    cluster.wait_whole(&js, WHOLE_WITHIN).await;
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 3).await.unwrap();
    cluster.wait_whole(&js, WHOLE_WITHIN).await;

    let pg = PgCluster::shared();
    let url = pg.fresh_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let env = [("KANADE_AUTH_DISABLE", "1")];
    let mut backends: Vec<BackendProcess> = (0..2)
        .map(|i| {
            BackendProcess::start_clustered(&dir.path().join(format!("b{i}")), &cluster.url(), 3, &url, &env)
        })
        .collect();
    for b in &backends {
        let port = b.port;
        kanade_testkit::wait_until("a backend to answer", WHOLE_WITHIN, || {
            api(port, "GET", "/health", "").is_some_and(|(s, _)| s == 200)
        });
    }
    let half = agents / 2;
    let mut sims = [
        Sim::start(&cluster.url(), dir.path(), 0, half, agents),
        Sim::start(&cluster.url(), dir.path(), half, agents - half, agents),
    ];
    let count = |sql: &str| pg.psql(&db, sql).ok().and_then(|s| s.parse::<i64>().ok()).unwrap_or(-1);
    kanade_testkit::wait_until("every agent known", WHOLE_WITHIN, || {
        count("SELECT COUNT(*) FROM agents") == agents as i64
    });

    // A schedule firing every 2 s at the whole fleet, through whichever backend answers.
    let port0 = backends[0].port;
    let job = "id: tick\nversion: '1'\nexecute: { shell: sh, script: 'true' }\n";
    assert_eq!(api(port0, "POST", "/api/jobs", job).map(|r| r.0), Some(201));
    let schedule =
        "id: chaos-tick\ncron: '*/2 * * * * *'\njob_id: tick\nplan: { target: { groups: [fleet] } }\n";
    let created = api(port0, "POST", "/api/schedules", schedule);
    assert!(matches!(created, Some((200 | 201, _))), "{created:?}");

    let pcs = |r: std::ops::Range<usize>| {
        r.map(|i| kanade_sim::agent_id("chaos", i).to_string()).collect::<Vec<_>>().join(", ")
    };
    let mut down: BTreeMap<Fault, f64> = BTreeMap::new();
    let mut injected: BTreeMap<&str, u32> = BTreeMap::new();
    let (mut deployed, mut kills, mut refused) = (Vec::<String>::new(), 0u32, 0u32);
    let start = Instant::now();
    let (mut next_work, mut next_fault) = (0.5, 3.0);
    let mut n = 0;
    while start.elapsed().as_secs_f64() < secs as f64 {
        let now = start.elapsed().as_secs_f64();
        // Bring back what is due.
        let due: Vec<Fault> = down.iter().filter(|(_, at)| **at <= now).map(|(f, _)| *f).collect();
        for f in due {
            down.remove(&f);
            match f {
                Fault::Sim(i) => sims[i].restart(),
                Fault::Backend(i) => backends[i].restart(),
                Fault::Broker(i) => {
                    cluster.restart(i);
                    cluster.wait_whole(&js, WHOLE_WITHIN).await;
                }
            }
        }
        if now >= next_work {
            next_work = now + 0.5 + rng.f64();
            let up: Vec<u16> = (0..2)
                .filter(|i| !down.contains_key(&Fault::Backend(*i)))
                .map(|i| backends[i].port)
                .collect();
            let port = up[rng.usize(..up.len())];
            n += 1;
            let (path, body) = match rng.u8(..4) {
                0 | 1 => (
                    "/api/deploy".to_owned(),
                    format!(
                        "id: bc{n}\nversion: '1'\nexecute: {{ shell: sh, script: 'true' }}\ntarget: {{ groups: [fleet] }}\n"
                    ),
                ),
                2 => (
                    "/api/deploy".to_owned(),
                    format!(
                        "id: ro{n}\nversion: '1'\nexecute: {{ shell: sh, script: 'true' }}\nrollout: {{ waves: [{{ pcs: [{}] }}, {{ pcs: [{}], delay: 3s }}] }}\n",
                        pcs(0..half),
                        pcs(half..agents)
                    ),
                ),
                _ => match deployed.iter().rev().take(4).nth(rng.usize(..4)) {
                    Some(exec) => (format!("/api/executions/{exec}/kill"), "{}".to_owned()),
                    None => continue,
                },
            };
            match api(port, "POST", &path, &body) {
                Some((201, b)) => deployed.push(b["exec_id"].as_str().unwrap_or_default().to_owned()),
                Some((200 | 202, _)) if path.ends_with("/kill") => kills += 1,
                _ => refused += 1,
            }
        }
        if now >= next_fault {
            next_fault = now + 2.0 + rng.f64() * 4.0;
            let back_at = now + 1.0 + rng.f64() * 3.0;
            let fault = match rng.u8(..3) {
                0 => Some(Fault::Sim(rng.usize(..2))),
                // Never both backends, never two broker nodes: one fault of each kind at a time.
                1 => Some(Fault::Backend(rng.usize(..2)))
                    .filter(|_| !down.keys().any(|f| matches!(f, Fault::Backend(_)))),
                _ => Some(Fault::Broker(rng.usize(..3)))
                    .filter(|_| !down.keys().any(|f| matches!(f, Fault::Broker(_)))),
            };
            if let Some(f) = fault.filter(|f| !down.contains_key(f)) {
                match f {
                    Fault::Sim(i) => sims[i].kill(),
                    Fault::Backend(i) => backends[i].kill(),
                    Fault::Broker(i) => cluster.kill(i),
                }
                *injected
                    .entry(match f {
                        Fault::Sim(_) => "agents' process",
                        Fault::Backend(_) => "backend",
                        Fault::Broker(_) => "broker node",
                    })
                    .or_default() += 1;
                down.insert(f, back_at);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Quiet: everything back, no more ticks, the fleet settles.
    for f in std::mem::take(&mut down).into_keys() {
        match f {
            Fault::Sim(i) => sims[i].restart(),
            Fault::Backend(i) => backends[i].restart(),
            Fault::Broker(i) => cluster.restart(i),
        }
    }
    cluster.wait_whole(&js, WHOLE_WITHIN).await;
    let ports: Vec<u16> = backends.iter().map(|b| b.port).collect();
    let mut answers = Vec::new();
    let disable_by = Instant::now() + WHOLE_WITHIN;
    loop {
        let answer = api(ports[answers.len() % 2], "POST", "/api/schedules/chaos-tick/disable", "{}");
        if answer.as_ref().is_some_and(|(s, _)| *s == 200) {
            break;
        }
        answers.push(answer);
        assert!(Instant::now() < disable_by, "seed {seed}: the schedule could not be disabled: {answers:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "chaos: faults {injected:?}; {} executions deployed, {kills} kills, {refused} calls refused or unanswered",
        deployed.len()
    );
    let unfinished = "SELECT COUNT(*) FROM executions WHERE status IN ('pending', 'running')";
    let settle_by = Instant::now() + Duration::from_secs(120);
    let mut settled = count(unfinished) == 0;
    while !settled && Instant::now() < settle_by {
        tokio::time::sleep(Duration::from_millis(500)).await;
        settled = count(unfinished) == 0;
    }
    let dump = |sql: &str| pg.psql(&db, sql).unwrap_or_else(|e| e);
    // Audit events a failed request left in the outbox go out within seconds, then projected.
    let outbox_by = Instant::now() + Duration::from_secs(60);
    while count("SELECT COUNT(*) FROM audit_outbox") != 0 && Instant::now() < outbox_by {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The invariants.
    let mut runs: BTreeMap<(String, String), u32> = BTreeMap::new();
    for first in [0, half] {
        let text = std::fs::read_to_string(dir.path().join(format!("runs-{first}.log"))).unwrap_or_default();
        for line in text.lines() {
            let (exec, pc) = line.split_once(' ').unwrap();
            *runs.entry((exec.to_owned(), pc.to_owned())).or_default() += 1;
        }
    }
    let doubles: Vec<_> = runs.iter().filter(|(_, n)| **n > 1).collect();
    // The projection may still be catching up (a projector that lost its stream's leader
    // retries; a new lease holder waits out the old one's TTL): the checks are repeated until
    // they hold or a minute has passed.
    let check = || {
        let rows: BTreeMap<(String, String), String> =
            dump("SELECT exec_id, pc_id, status FROM execution_results")
                .lines()
                .filter_map(|l| {
                    let mut f = l.split('|');
                    Some(((f.next()?.to_owned(), f.next()?.to_owned()), f.next()?.to_owned()))
                })
                .collect();
        let unreported: Vec<(String, String)> =
            runs.keys().filter(|k| rows.get(*k).is_none_or(|status| status == "running")).cloned().collect();
        let miscounted = dump(
            "SELECT e.exec_id || ' ' || (e.succeeded + e.failed + e.skipped + e.other) || ' vs ' || COUNT(r.result_id)
             FROM executions e LEFT JOIN execution_results r ON r.exec_id = e.exec_id AND r.status <> 'running'
             GROUP BY e.exec_id HAVING e.succeeded + e.failed + e.skipped + e.other <> COUNT(r.result_id)",
        );
        let unaudited = dump(
            "SELECT exec_id || ' ' || job_id || ' ' || status || ' ' || created_by || ' ' || COALESCE(schedule_id, '-') FROM executions e WHERE NOT EXISTS (SELECT 1 FROM audit_log a
             WHERE a.action = 'exec.create' AND a.detail_json LIKE '%' || e.exec_id || '%')",
        );
        // The scheduler names the tick it fired in the creation's source.
        let double_ticks = dump(
            "SELECT split_part(source, ' ', 4) || ' x' || COUNT(*) FROM audit_log
             WHERE action = 'exec.create' AND source LIKE 'schedule chaos-tick tick %'
             GROUP BY split_part(source, ' ', 4) HAVING COUNT(*) > 1",
        );
        (unreported, miscounted, unaudited, double_ticks)
    };
    let checks_by = Instant::now() + Duration::from_secs(60);
    let (unreported, miscounted, unaudited, double_ticks) = loop {
        let found = check();
        let clean = found.0.is_empty() && found.1.is_empty() && found.2.is_empty() && found.3.is_empty();
        if clean || Instant::now() > checks_by {
            break found;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let executions = count("SELECT COUNT(*) FROM executions");
    let ticks = count("SELECT COUNT(*) FROM executions WHERE schedule_id = 'chaos-tick'");
    println!(
        "chaos: {executions} executions ({ticks} schedule ticks), {} runs, {} doubles, {} runs without a final result, miscounted [{miscounted}], unaudited [{unaudited}], ticks fired twice [{double_ticks}], settled {}",
        runs.len(),
        doubles.len(),
        unreported.len(),
        settled
    );
    if !settled {
        println!(
            "chaos: unfinished: {}",
            dump(
                "SELECT exec_id || ' ' || job_id || ' ' || status || ' ' || target_count || ' ' || (succeeded + failed + skipped + other) FROM executions WHERE status IN ('pending', 'running')"
            )
        );
    }
    assert!(doubles.is_empty(), "seed {seed}: ran twice: {doubles:?}");
    assert!(unreported.is_empty(), "seed {seed}: runs without a final result: {unreported:?}");
    assert!(miscounted.is_empty(), "seed {seed}: counters differ from rows: {miscounted}");
    assert!(unaudited.is_empty(), "seed {seed}: executions missing from the audit log: {unaudited}");
    assert!(double_ticks.is_empty(), "seed {seed}: schedule ticks fired more than once: {double_ticks}");
    assert!(ticks > 0, "seed {seed}: the schedule never fired: its ticks prove nothing");
    assert!(
        settled,
        "seed {seed}: executions still unfinished with every agent back: {}",
        dump(
            "SELECT exec_id || ' ' || job_id || ' ' || status || ' ' || target_count || ' ' || (succeeded + failed + skipped + other) FROM executions WHERE status IN ('pending', 'running')"
        )
    );
    assert!(executions > 5 && !runs.is_empty(), "seed {seed}: too little happened to prove anything");
}
