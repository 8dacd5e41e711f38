//! Scripts run by reference, end to end: uploaded through the API (immutable per version), a
//! job naming `script_object` is stored with the script's sha256 pinned in, the agent fetches,
//! checks and runs it; a script a job runs cannot be deleted, an execution of a job whose
//! script is gone is refused, and a job naming a missing script or another sha256 is refused
//! when stored.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::stack;
use serde_json::Value;

const SCRIPT: &str = "echo \"from the store: $((6 * 7))\"\n";

async fn upload(s: &common::Stack, key: &str, body: &str) -> (StatusCode, Value) {
    s.call(Request::post(format!("/api/scripts/{key}")).body(Body::from(body.to_owned())).unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_an_uploaded_script_pinned_by_sha256_and_gone_scripts_are_refused() {
    let s = stack(&[("PC-S", &["lab"])]).await;
    let (status, body) = upload(&s, "answer/1.0.0", SCRIPT).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let sha = kanade_shared::files::sha256_hex(SCRIPT.as_bytes());
    assert_eq!(body["sha256"], sha.as_str());
    // The same content again changes nothing; another content under that version is refused.
    assert_eq!(upload(&s, "answer/1.0.0", SCRIPT).await.0, StatusCode::OK);
    let (status, body) = upload(&s, "answer/1.0.0", "echo other\n").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("upload it as a new version"), "{body}");
    let (status, body) = upload(&s, "Bad%20Name/1", SCRIPT).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (_, list) = s.get("/api/scripts").await;
    assert_eq!(list["items"][0]["key"], "answer/1.0.0", "{list}");
    assert_eq!(list["items"][0]["sha256"], sha.as_str(), "{list}");
    let (status, text) = s.get_text("/api/scripts/answer/1.0.0").await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, SCRIPT));

    // Stored with the sha256 pinned in.
    let job = "id: answer\nversion: '1'\nexecute: { shell: sh, script_object: answer/1.0.0 }\ntarget: { pcs: [PC-S] }\n";
    let exec = s.deploy(job).await;
    let body = s.wait_status(&exec, "completed").await;
    assert_eq!(body["pcs"][0]["stdout"], "from the store: 42\n", "{body:#}");
    let (_, shown) = s.get("/api/jobs/answer").await;
    assert_eq!(shown["manifest"]["execute"]["script_sha256"], sha.as_str(), "{shown}");

    // In use: not deletable through the API.
    let req = Request::delete("/api/scripts/answer/1.0.0").body(Body::empty()).unwrap();
    let (status, body) = s.call(req).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("run by job(s) answer"), "{body}");

    // Gone from the store behind the API's back: a new execution is refused up front, naming
    // it, instead of every agent failing to fetch it (the agent's cache is tested with the
    // agent: kanade-agent/tests/commands.rs).
    let store = s.state.js.get_object_store("scripts").await.unwrap();
    store.delete("answer/1.0.0").await.unwrap();
    let (status, body) = s.post_yaml("/api/exec/answer", "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("answer/1.0.0"), "{body}");

    // A job naming a script that is not uploaded, or another sha256, is refused when stored.
    let missing = "id: nope\nversion: '1'\nexecute: { shell: sh, script_object: nope/1 }\n";
    let (status, body) = s.post_yaml("/api/jobs", missing).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("kanade script upload"), "{body}");
    assert_eq!(upload(&s, "other/2", "echo two\n").await.0, StatusCode::CREATED);
    let wrong = format!(
        "id: wrong\nversion: '1'\nexecute: {{ shell: sh, script_object: other/2, script_sha256: {sha} }}\n"
    );
    let (status, body) = s.post_yaml("/api/jobs", &wrong).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("is not the sha256 of script other/2"), "{body}");

    // Not used by any job: deleted.
    let req = Request::delete("/api/scripts/other/2").body(Body::empty()).unwrap();
    assert_eq!(s.call(req).await.0, StatusCode::NO_CONTENT);
    assert_eq!(s.get_text("/api/scripts/other/2").await.0, StatusCode::NOT_FOUND);
}
