//! The scheduler against a real stack (nats-server, SQLite, in-process agents): fire modes,
//! cooldown, auto-disable, live edits, and no re-fire across a restart. Each test uses its own
//! job id and counts that job's results.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::Stack;

/// Results of `job` per PC (only final ones).
async fn per_pc(s: &Stack, job: &str) -> BTreeMap<String, usize> {
    per_pc_with(s, job, "").await
}

/// Final results of `job` per PC, with `status` when not empty.
async fn per_pc_with(s: &Stack, job: &str, status: &str) -> BTreeMap<String, usize> {
    let filter = if status.is_empty() { String::new() } else { format!("&status={status}") };
    let (_, body) = s.get(&format!("/api/results?job={job}{filter}&limit=500")).await;
    let mut out = BTreeMap::new();
    for r in body["items"].as_array().unwrap() {
        if r["status"] != "running" {
            *out.entry(r["pc_id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    out
}

async fn total(s: &Stack, job: &str) -> usize {
    per_pc(s, job).await.values().sum()
}

async fn wait_for(s: &Stack, what: &str, secs: u64, check: impl AsyncFn(&Stack) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check(s).await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The executions of `job`, oldest first.
async fn fires(s: &Stack, job: &str) -> Vec<serde_json::Value> {
    let (_, execs) = s.get(&format!("/api/executions?job={job}&limit=500")).await;
    let mut items = execs["items"].as_array().unwrap().clone();
    items.sort_by_key(|e| e["created_ms"].as_i64());
    items
}

/// Lines in a file each run appends to: the runs that really happened.
fn runs(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0)
}

/// Each fire counted once in the audit, and one result per PC it targeted (no more: a
/// redelivered command would show as a run line, a double dispatch as an execution).
async fn fires_match_results(s: &Stack, job: &str, ran: &std::path::Path) -> Vec<serde_json::Value> {
    let fired = fires(s, job).await;
    wait_for(s, "every fire in the audit log", 20, async |s| {
        let (_, audit) = s.get("/api/audit?action=exec.create&actor=scheduler&limit=500").await;
        let ids: Vec<&str> = fired.iter().map(|e| e["exec_id"].as_str().unwrap()).collect();
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| ids.iter().any(|id| a.to_string().contains(id)))
            .count()
            == fired.len()
    })
    .await;
    let targeted: i64 = fired.iter().map(|e| e["target_count"].as_i64().unwrap()).sum();
    assert_eq!(total(s, job).await as i64, targeted, "one result per targeted PC: {fired:#?}");
    assert_eq!(runs(ran) as i64, targeted, "one run per targeted PC");
    fired
}

async fn schedule(s: &Stack, yaml: &str) {
    let (status, body) = s.post_yaml("/api/schedules", yaml).await;
    assert!(status == StatusCode::CREATED || status == StatusCode::OK, "{status}: {body:#}");
}

async fn job(s: &Stack, id: &str, script: &str) {
    let yaml = format!("id: {id}\nversion: '1'\nexecute: {{ shell: sh, script: {script:?} }}\n");
    let (status, body) = s.post_yaml("/api/jobs", &yaml).await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
}

async fn post(s: &Stack, path: &str) -> serde_json::Value {
    let (status, body) = s.call(Request::post(path).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    body
}

#[tokio::test]
async fn once_per_pc_runs_once_per_pc_and_again_after_the_cooldown() {
    let s = common::stack(&[("PC-1", &["lab"]), ("PC-2", &["lab"])]).await;
    let ran = s.dir.path().join("once.runs");
    job(&s, "once", &format!("echo ran >> {}", ran.display())).await;
    schedule(&s, "id: every-second\ncron: '* * * * * *'\njob_id: once\nplan: { target: { groups: [lab] } }\nmode: once_per_pc\ncooldown: 4s\n").await;
    wait_for(&s, "one run per PC", 20, async |s| total(s, "once").await == 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(per_pc(&s, "once").await, BTreeMap::from([("PC-1".into(), 1), ("PC-2".into(), 1)]));
    wait_for(&s, "the second round after the cooldown", 20, async |s| total(s, "once").await == 4).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(per_pc(&s, "once").await, BTreeMap::from([("PC-1".into(), 2), ("PC-2".into(), 2)]));

    let (_, shown) = s.get("/api/schedules/every-second").await;
    assert!(
        shown["state"]["last_outcome"].as_str().unwrap().starts_with("skipped")
            || shown["state"]["last_outcome"].as_str().unwrap().starts_with("done"),
        "{shown:#}"
    );
    assert_eq!(shown["last_24h"]["succeeded"], 4);
    assert_eq!(shown["next_fires_ms"].as_array().unwrap().len(), 5);
    // How many fires a round takes depends on when each PC's last result landed (one fire for
    // both, or one each); what is exact is that the fires together targeted each PC twice.
    fires_match_results(&s, "once", &ran).await;
}

#[tokio::test]
async fn once_per_target_fires_until_every_pc_succeeded_then_disables_itself() {
    let s = common::stack(&[("PC-1", &["lab"]), ("PC-2", &["lab"])]).await;
    // Fails until a marker exists; the first run creates it, so the first fire has a failure.
    let marker = s.dir.path().join("marker");
    let ran = s.dir.path().join("flaky.runs");
    job(
        &s,
        "flaky",
        &format!(
            "echo ran >> {r}; test -f {m} || {{ touch {m}; exit 1; }}",
            r = ran.display(),
            m = marker.display()
        ),
    )
    .await;
    schedule(&s, "id: until-done\ncron: '* * * * * *'\njob_id: flaky\nplan: { target: { groups: [lab] } }\nmode: once_per_target\nauto_disable_when_done: true\n").await;
    wait_for(&s, "the schedule to disable itself", 30, async |s| {
        s.get("/api/schedules/until-done").await.1["enabled"] == false
    })
    .await;
    common::wait_for_audit(&s, "schedule.auto_disabled").await;
    let fired = fires_match_results(&s, "flaky", &ran).await;
    // Refired (for the whole target: a PC that succeeded runs again) until a fire succeeded
    // everywhere.
    assert!(fired.len() >= 2, "a failure must have been fired again: {fired:#?}");
    assert!(fired[0]["failed"].as_i64().unwrap() >= 1, "the first fire failed somewhere: {fired:#?}");
    let last = fired.last().unwrap();
    assert_eq!(last["succeeded"], last["target_count"], "{fired:#?}");
    let mut done = per_pc_with(&s, "flaky", "succeeded").await;
    done.retain(|_, n| *n > 0);
    assert_eq!(done.len(), 2, "every PC succeeded: {done:?}");

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fires(&s, "flaky").await.len(), fired.len(), "a disabled schedule fired");
}

#[tokio::test]
async fn disable_edit_and_delete_take_effect_at_once() {
    let s = common::stack(&[("PC-1", &[])]).await;
    job(&s, "tick", "true").await;
    let every_second = "id: ticker\ncron: '* * * * * *'\njob_id: tick\nplan: { target: { pcs: [PC-1] } }\n";
    schedule(&s, every_second).await;
    wait_for(&s, "a few ticks", 20, async |s| total(s, "tick").await >= 2).await;

    // Ticks are every second and the scheduler looks every 200 ms: 1.5 s without a new
    // execution shows it stopped. (Executions, not results: a tick fired just before the
    // change may still be reporting.)
    async fn quiet_for_2s(s: &Stack) {
        let before = fires(s, "tick").await.len();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(fires(s, "tick").await.len(), before, "fired while it should not");
    }
    let body = post(&s, "/api/schedules/ticker/disable").await;
    assert_eq!((body["enabled"].as_bool(), body["changed"].as_bool()), (Some(false), Some(true)));
    quiet_for_2s(&s).await;
    post(&s, "/api/schedules/ticker/enable").await;
    let now = total(&s, "tick").await;
    wait_for(&s, "ticks after enabling", 10, async |s| total(s, "tick").await > now).await;

    // Editing the cron to once a year: the next tick is next January.
    schedule(&s, &every_second.replace("'* * * * * *'", "'0 0 0 1 1 *'")).await;
    quiet_for_2s(&s).await;
    schedule(&s, every_second).await;
    let now = total(&s, "tick").await;
    wait_for(&s, "ticks after editing back", 10, async |s| total(s, "tick").await > now).await;

    let (status, _) = s.call(Request::delete("/api/schedules/ticker").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    quiet_for_2s(&s).await;
    let (status, body) = s.get("/api/schedules/ticker").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");
}

#[tokio::test]
async fn a_restart_does_not_dispatch_again_what_is_in_flight() {
    let s = common::stack(&[("PC-1", &[])]).await;
    let ran = s.dir.path().join("slow.runs");
    job(&s, "slow", &format!("echo ran >> {}; sleep 3", ran.display())).await;
    schedule(&s, "id: slow-once\ncron: '* * * * * *'\njob_id: slow\nplan: { target: { pcs: [PC-1] } }\nmode: once_per_pc\n").await;
    wait_for(&s, "the first dispatch", 20, async |s| {
        s.get("/api/executions?job=slow").await.1["items"].as_array().is_some_and(|i| !i.is_empty())
    })
    .await;
    let _workers = common::restart(&s).await;
    wait_for(&s, "the run to finish", 20, async |s| total(s, "slow").await == 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, execs) = s.get("/api/executions?job=slow").await;
    assert_eq!(execs["items"].as_array().unwrap().len(), 1, "dispatched twice: {execs:#}");
    assert_eq!(total(&s, "slow").await, 1);
    assert_eq!(runs(&ran), 1, "ran again after the restart");
}

#[tokio::test]
async fn bad_schedules_are_refused_with_the_field_and_reason() {
    let s = common::stack(&[]).await;
    job(&s, "known", "true").await;
    let cases = [
        (
            "id: a\ncron: '0 0 25 * * *'\njob_id: known\nplan: { target: { all: true } }\n",
            r#"cron: "0 0 25 * * *": field 3 (hour) value 25 is out of range 0-23"#,
        ),
        (
            "id: a\ncron: '@daily'\njob_id: known\nplan: { target: { all: true } }\ntimezone: Mars/Olympus\n",
            r#"timezone: "Mars/Olympus" is not a known time zone (e.g. UTC, Europe/Paris, Asia/Tokyo)"#,
        ),
        (
            "id: a\ncron: '0 0 0 31 2 *'\njob_id: known\nplan: { target: { all: true } }\n",
            r#"cron: "0 0 0 31 2 *" never fires (no such date)"#,
        ),
        (
            "id: a\ncron: '@daily'\njob_id: unknown\nplan: { target: { all: true } }\n",
            "job_id: job unknown is not in the catalog (kanade job create, or POST /api/deploy)",
        ),
    ];
    for (yaml, want) in cases {
        let (status, body) = s.post_yaml("/api/schedules", yaml).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body:#}");
        assert!(body["detail"]["problems"].as_array().unwrap().iter().any(|p| p == want), "{want}\n{body:#}");
    }
    let (_, list) = s.get("/api/schedules").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);

    // An inline manifest is registered into the catalog.
    schedule(&s, "id: inline\ncron: '0 0 3 * * *'\nmanifest: { id: inline-job, version: '2', execute: { shell: sh, script: 'true' } }\nplan: { target: { all: true } }\ntimezone: Asia/Tokyo\n").await;
    let (status, job) = s.get("/api/jobs/inline-job").await;
    assert_eq!(status, StatusCode::OK, "{job:#}");
    let (_, preview) = s.get("/api/schedules/inline/preview?n=3").await;
    let fires: Vec<&str> = preview["fires"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(fires.len(), 3);
    assert!(fires.iter().all(|f| f.contains("T03:00:00+09:00[Asia/Tokyo]")), "{fires:?}");
}
