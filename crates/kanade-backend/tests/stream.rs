//! `GET /api/stream` against a real stack: an agent coming up, results and execution progress
//! arrive as server-sent events while they happen.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

#[tokio::test]
async fn live_events_follow_agents_and_executions() {
    let s = common::stack(&[("PC-1", &[])]).await;
    let response =
        s.app.clone().oneshot(Request::get("/api/stream").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();

    s.spawn_agent("PC-2", &[]);
    let exec = s
        .deploy("id: live\nversion: '1'\nexecute: { shell: sh, script: 'true' }\ntarget: { pcs: [PC-1] }\n")
        .await;
    let wanted = [
        "event: agent_up\ndata: {\"type\":\"agent_up\",\"pc_id\":\"PC-2\"}".to_owned(),
        format!("event: execution\ndata: {{\"type\":\"execution\",\"exec_id\":\"{exec}\"}}"),
        format!(
            "event: result\ndata: {{\"type\":\"result\",\"exec_id\":\"{exec}\",\"pc_id\":\"PC-1\",\"status\":\"succeeded\"}}"
        ),
    ];
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !wanted.iter().all(|w| seen.contains(w.as_str())) {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .unwrap_or_else(|_| panic!("missing events; got:\n{seen}"))
            .expect("stream ended")
            .unwrap();
        if let Some(data) = frame.data_ref() {
            seen.push_str(&String::from_utf8_lossy(data));
        }
    }
}

#[tokio::test]
async fn the_stream_closes_when_its_caller_is_disabled() {
    let auth = kanade_backend::auth::Auth::with_secret(common::SECRET.to_vec(), Duration::from_secs(600))
        .with_recheck(Duration::from_millis(300));
    let s = common::stack_with(&[], auth).await;
    assert!(
        kanade_backend::auth::bootstrap_admin(
            &s.state.db,
            Some(&kanade_shared::secrets::Secret::env(
                kanade_shared::secrets::BOOTSTRAP_ADMIN_PASSWORD,
                common::ADMIN_PASSWORD
            ))
        )
        .await
        .unwrap()
    );
    let admin = s.login("admin", common::ADMIN_PASSWORD).await;
    let (status, body) = s
        .send_as(
            "POST",
            "/api/users",
            Some(&admin),
            serde_json::json!({ "name": "vera", "role": "viewer", "password": "vera's first password" }),
        )
        .await;
    assert_eq!(status, axum::http::StatusCode::CREATED, "{body:#}");
    let first = s.login("vera", "vera's first password").await;
    let change = serde_json::json!({ "current": "vera's first password", "new": "vera's own password" });
    assert_eq!(
        s.send_as("POST", "/api/auth/password", Some(&first), change).await.0,
        axum::http::StatusCode::OK
    );
    let vera = s.login("vera", "vera's own password").await;
    let response = s
        .app
        .clone()
        .oneshot(Request::get(format!("/api/stream?access_token={vera}")).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let (status, _) =
        s.send_as("PATCH", "/api/users/vera", Some(&admin), serde_json::json!({ "disabled": true })).await;
    assert_eq!(status, axum::http::StatusCode::OK);
    let mut seen = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.unwrap().data_ref() {
                seen.push_str(&String::from_utf8_lossy(data));
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream stayed open; got:\n{seen}");
    assert!(
        seen.contains(
            "event: session_ended\ndata: {\"error\":\"user vera is disabled\",\"type\":\"session_ended\"}"
        ),
        "{seen}"
    );
}

/// The stream's frames until `done` says so (or the deadline passes, which fails the test with
/// what came). `on_frame` sees each frame's text as it arrives.
async fn read_until(
    body: &mut Body,
    within: Duration,
    mut on_frame: impl AsyncFnMut(&str) -> bool,
) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .unwrap_or_else(|_| panic!("the awaited event did not come; got:\n{seen}"))
            .expect("stream ended")
            .unwrap();
        let Some(data) = frame.data_ref() else { continue };
        let text = String::from_utf8_lossy(data).into_owned();
        seen.push_str(&text);
        if on_frame(&text).await {
            return seen;
        }
    }
}

/// Agents announce a run with a `started` event only once it has run past a grace (1 s): a run
/// that takes longer still shows `running` before its result arrives, a long one shows
/// `running` while it runs, and a quick one sends its result alone.
#[tokio::test]
async fn runs_past_the_start_grace_show_running_and_quick_ones_only_finish() {
    let s = common::stack(&[("PC-1", &[])]).await;
    let response =
        s.app.clone().oneshot(Request::get("/api/stream").body(Body::empty()).unwrap()).await.unwrap();
    let mut body = response.into_body();
    let row_of = async |exec: &str| {
        let (_, v) = s.get(&format!("/api/executions/{exec}")).await;
        (
            v["execution"]["status"].as_str().unwrap_or("").to_owned(),
            v["pcs"][0]["status"].as_str().unwrap_or("").to_owned(),
        )
    };

    // 2 s: past the grace. Each `execution` event makes the page read the execution again;
    // one of those reads must find PC-1 running, and before its result.
    let exec = s
        .deploy("id: two-seconds\nversion: '1'\nexecute: { shell: sh, script: 'sleep 2' }\ntarget: { pcs: [PC-1] }\n")
        .await;
    let execution = format!("event: execution\ndata: {{\"type\":\"execution\",\"exec_id\":\"{exec}\"}}");
    let result =
        format!("\"type\":\"result\",\"exec_id\":\"{exec}\",\"pc_id\":\"PC-1\",\"status\":\"succeeded\"");
    let mut running_seen = false;
    read_until(&mut body, Duration::from_secs(30), async |frame| {
        if frame.contains(&execution) && row_of(&exec).await == ("running".into(), "running".into()) {
            running_seen = true;
        }
        frame.contains(&result)
    })
    .await;
    assert!(running_seen, "a 2 s run never showed as running before its result");
    assert_eq!(row_of(&exec).await, ("completed".into(), "succeeded".into()));

    // A long run shows running while it runs.
    let long = s
        .deploy(
            "id: long\nversion: '1'\nexecute: { shell: sh, script: 'sleep 60' }\ntarget: { pcs: [PC-1] }\n",
        )
        .await;
    let execution = format!("event: execution\ndata: {{\"type\":\"execution\",\"exec_id\":\"{long}\"}}");
    let t0 = std::time::Instant::now();
    read_until(&mut body, Duration::from_secs(30), async |frame| {
        frame.contains(&execution) && row_of(&long).await == ("running".into(), "running".into())
    })
    .await;
    assert!(t0.elapsed() < Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(row_of(&long).await, ("running".into(), "running".into()), "still running 2 s later");

    // A quick run: its result, and no `started` event in EVENTS for it.
    let quick = s
        .deploy("id: quick\nversion: '1'\nexecute: { shell: sh, script: 'true' }\ntarget: { pcs: [PC-1] }\n")
        .await;
    let result =
        format!("\"type\":\"result\",\"exec_id\":\"{quick}\",\"pc_id\":\"PC-1\",\"status\":\"succeeded\"");
    read_until(&mut body, Duration::from_secs(30), async |frame| frame.contains(&result)).await;
    let js = async_nats::jetstream::new(async_nats::connect(s.server.url()).await.unwrap());
    let events = js.get_stream("EVENTS").await.unwrap();
    let started = kanade_shared::subjects::event_started(&"PC-1".parse().unwrap(), quick.parse().unwrap());
    assert!(
        events.get_last_raw_message_by_subject(&started).await.is_err(),
        "a run that ended within the grace sent a started event"
    );
    let two = kanade_shared::subjects::event_started(&"PC-1".parse().unwrap(), exec.parse().unwrap());
    assert!(
        events.get_last_raw_message_by_subject(&two).await.is_ok(),
        "the 2 s run's started event is in EVENTS"
    );
}
