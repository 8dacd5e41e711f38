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
