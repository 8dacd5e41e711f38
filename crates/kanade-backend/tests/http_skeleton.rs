//! The router against a real nats-server, driven without a socket.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use kanade_testkit::NatsServer;
use tower::ServiceExt;

use kanade_backend::http;

async fn get(app: axum::Router, path: &str) -> (StatusCode, serde_json::Value) {
    let response = app.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn health_and_jetstream_status() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = kanade_backend::db::Db::open(&dir.path().join("backend.db")).unwrap();
    let app = http::app(http::AppState::new(client, db, kanade_backend::auth::Auth::disabled()));

    let (status, body) = get(app.clone(), "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["nats"], "connected");

    let (status, body) = get(app.clone(), "/api/jetstream/status").await;
    assert_eq!(status, StatusCode::OK);
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), kanade_shared::jetstream::definitions(1).len());

    let (status, body) = get(app, "/api/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["error"], "no route for /api/nope");
}
