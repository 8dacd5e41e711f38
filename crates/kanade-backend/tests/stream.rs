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
