//! Endpoint telemetry end to end (SPEC §12): a real nats-server, the real agent runtime, the
//! backend's projectors and API. The gate runs this suite on SQLite and again on Postgres.

mod common;

use std::time::Duration;

use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// Two events and a line that is not one.
const EMITTER: &str = r#"id: emitter
version: '1'
emit: events
execute:
  shell: sh
  script: |
    echo '{"kind":"disk.low","data":{"free":5}}'
    echo '{"kind":"backup.done"}'
    echo 'not json'
target: { pcs: [PC-1] }
"#;

async fn events(s: &common::Stack, query: &str) -> Vec<Value> {
    let (status, body) = s.get(&format!("/api/events?limit=500&{query}")).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{body:#}");
    body["events"].as_array().cloned().unwrap_or_default()
}

async fn count(s: &common::Stack, query: &str) -> usize {
    events(s, query).await.len()
}

async fn wait_count(s: &common::Stack, query: &str, want: usize) {
    kanade_testkit::wait_until_async(&format!("{want} event(s) for {query}"), WAIT, || async {
        count(s, query).await == want
    })
    .await;
}

#[tokio::test]
async fn events_are_recorded_once_through_redelivery_restarts_and_silence() {
    let s =
        common::stack_tuned(&[("PC-1", &[])], |state| state.with_offline_after(Duration::from_secs(3))).await;
    wait_count(&s, "pc=PC-1&kind=agent.started", 1).await;
    wait_count(&s, "pc=PC-1&kind=agent.online", 1).await;

    // A job whose stdout is events: two events, one line that is not one, no output kept.
    let exec = s.deploy(EMITTER).await;
    s.wait_status(&exec, "completed").await;
    let (_, result) = s.get(&format!("/api/results?exec={exec}")).await;
    let result = &result["items"][0];
    assert_eq!(result["stdout"], "", "{result:#}");
    assert!(result["stderr"].as_str().unwrap().contains("line 3: not a JSON object"), "{result:#}");
    kanade_testkit::wait_until_async("the job's events", WAIT, || async {
        let all = events(&s, "pc=PC-1").await;
        let of_exec =
            |k: &str| all.iter().filter(|e| e["kind"] == k && e["exec_id"] == exec.as_str()).count();
        [of_exec("disk.low"), of_exec("backup.done"), of_exec("job.started"), of_exec("job.finished")]
            == [1; 4]
    })
    .await;
    let low = events(&s, "kind=disk.low").await;
    assert_eq!(low[0]["data"]["free"], 5, "{low:#?}");
    let finished = events(&s, "kind=job.finished").await;
    assert_eq!(finished[0]["data"]["status"], "succeeded", "{finished:#?}");
    let before = events(&s, "").await;

    // Redelivery: every stream is projected again from the start; nothing doubles.
    let _workers = common::wipe_and_restart(&s).await;
    common::wait_for_audit(&s, "exec.create").await;
    kanade_testkit::wait_until_async("the replayed result", WAIT, || async {
        s.get(&format!("/api/executions/{exec}")).await.1["execution"]["status"] == "completed"
    })
    .await;
    let again = events(&s, "").await;
    let ids = |v: &[Value]| {
        let mut ids: Vec<String> = v.iter().map(|e| format!("{}/{}", e["pc_id"], e["event_id"])).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&again), ids(&before), "the replay changed the timeline");

    kanade_testkit::wait_until_async("the agent back in the wiped projection", WAIT, || async {
        s.get("/api/agents").await.1["items"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    assert_eq!(count(&s, "pc=PC-1&kind=agent.online").await, 1, "a wipe is not the agent coming back");

    // The agent stops, stays silent past the offline threshold, and comes back.
    s.agents_stop.send_replace(true);
    wait_count(&s, "pc=PC-1&kind=agent.stopping", 1).await;
    wait_count(&s, "pc=PC-1&kind=agent.offline", 1).await;
    s.agents_stop.send_replace(false);
    s.spawn_agent("PC-1", &[]);
    wait_count(&s, "pc=PC-1&kind=agent.started", 2).await;
    wait_count(&s, "pc=PC-1&kind=agent.online", 2).await;
    // Still once each: the restart sent nothing twice.
    for kind in ["disk.low", "backup.done", "job.started", "job.finished", "agent.offline", "agent.stopping"]
    {
        assert_eq!(count(&s, &format!("pc=PC-1&kind={kind}")).await, 1, "{kind}");
    }
    // Newest first, and the timeline reads in order: offline before the second online.
    let timeline = events(&s, "pc=PC-1&kind=agent").await;
    let kinds: Vec<&str> = timeline.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    let at = |k: &str| timeline.iter().position(|e| e["kind"] == k).unwrap();
    assert!(at("agent.online") < at("agent.offline"), "{kinds:?}");
    assert!(timeline.windows(2).all(|w| w[0]["at"].as_i64() >= w[1]["at"].as_i64()), "{kinds:?}");
}

#[tokio::test]
async fn the_events_api_pages_filters_and_names_bad_input() {
    let s = common::stack(&[("PC-1", &[]), ("PC-2", &[])]).await;
    wait_count(&s, "kind=agent.started", 2).await;
    // Pages of one walk every event exactly once.
    let all = events(&s, "").await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor.as_ref().map_or(String::new(), |c| format!("&cursor={}", urlencode(c)));
        let (_, page) = s.get(&format!("/api/events?limit=1{q}")).await;
        let items = page["events"].as_array().unwrap();
        seen.extend(items.iter().map(|e| e["event_id"].clone()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(seen.len() <= all.len() + 1, "paging does not end");
    }
    // Every event once, in the same order (the last full page may point at an empty one).
    let want: Vec<Value> = all.iter().map(|e| e["event_id"].clone()).collect();
    assert_eq!(seen, want);
    assert_eq!(count(&s, "pc=PC-2&kind=agent").await, events(&s, "pc=PC-2&kind=agent").await.len());
    assert!(events(&s, "pc=PC-2").await.iter().all(|e| e["pc_id"] == "PC-2"));
    // A PC nobody has heard from is named, not shown as a quiet one.
    for path in ["/api/agents/NOPE/perf", "/api/agents/NOPE/processes"] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, axum::http::StatusCode::NOT_FOUND, "{path}: {body:#}");
        assert!(body["error"].as_str().unwrap().contains("NOPE has never sent a heartbeat"), "{body:#}");
    }
    // A prefix is a whole dotted part, not a wildcard.
    assert_eq!(count(&s, "kind=agent.start").await, 0);
    assert_eq!(
        count(&s, "kind=agent").await,
        count(&s, "kind=agent.started").await + count(&s, "kind=agent.online").await
    );
    for (query, says) in [
        ("cursor=nonsense", "next_cursor"),
        ("pc=my%20pc", "pc:"),
        ("since=9&until=8", "since (9) is after until (8)"),
        ("limit=0", "limit"),
        ("kind=Agent%25", "write 1-64 of a-z"),
    ] {
        let (status, body) = s.get(&format!("/api/events?{query}")).await;
        assert_eq!(status, axum::http::StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body:#}");
        assert!(body.to_string().contains(says), "{query}: {body:#}");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn investigation_mode_samples_the_top_processes_and_ends_by_itself() {
    let s = common::stack(&[("PC-1", &[])]).await;
    let until = kanade_shared::wire::Timestamp::now_utc() + Duration::from_secs(5);
    let until = until.format(&time::format_description::well_known::Rfc3339).unwrap();
    let body = serde_json::json!({
        "host_perf_interval": "1s", "process_perf_enabled": true,
        "process_perf_expires_at": until, "process_perf_top_n": 3,
    });
    let req = axum::http::Request::patch("/api/agent/config/pc:PC-1")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let (status, answer) = s.call(req).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{answer:#}");
    let samples =
        || async { s.get("/api/agents/PC-1/processes?since=0").await.1["samples"].as_array().cloned() };
    kanade_testkit::wait_until_async("two process samples", WAIT, || async {
        samples().await.is_some_and(|a| a.len() >= 2)
    })
    .await;
    for sample in samples().await.unwrap() {
        let list = sample["processes"].as_array().unwrap();
        // The top 3 by CPU and the top 3 by memory, each process once.
        assert!((1..=6).contains(&list.len()), "{sample:#}");
        let mut pids: Vec<i64> = list.iter().map(|p| p["pid"].as_i64().unwrap()).collect();
        pids.sort_unstable();
        pids.dedup();
        assert_eq!(pids.len(), list.len(), "{sample:#}");
        assert!(list.iter().all(|p| p["mem_bytes"].as_i64().unwrap() > 0 || p["cpu_pct"].as_f64().is_some()));
    }
    // Past the expiry nothing new arrives, though nobody turned it off.
    let expiry = time::OffsetDateTime::parse(&until, &time::format_description::well_known::Rfc3339).unwrap();
    let past = expiry - kanade_shared::wire::Timestamp::now_utc() + time::Duration::seconds(2);
    tokio::time::sleep(Duration::try_from(past).unwrap_or_default()).await;
    let ended = samples().await.unwrap().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(samples().await.unwrap().len(), ended, "process samples after the investigation's expiry");
    // Host samples go on: only investigation mode ended.
    let (_, perf) = s.get("/api/agents/PC-1/perf").await;
    let last = perf["samples"].as_array().unwrap().last().unwrap()["at"].as_i64().unwrap();
    assert!(kanade_backend::db::now_ms() - last < 3_000, "{perf:#}");
}
