//! A fleet freeze on a real stack: set with every bad field named; manual runs refused with
//! the reason unless overridden (the override audited); a schedule's ticks recorded as skipped
//! with the reason; a rollout's later wave held until the freeze is lifted, then sent.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Stack, stack, wait_for_audit};
use serde_json::{Value, json};

async fn put_freeze(s: &Stack, body: Value) -> (StatusCode, Value) {
    s.send_as("PUT", "/api/freeze", None, body).await
}

async fn lift(s: &Stack) {
    let (status, body) = s.call(Request::delete("/api/freeze").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_freeze_refuses_manual_runs_skips_schedules_and_holds_later_waves() {
    let s = stack(&[("PC-F", &["lab"]), ("PC-G", &["late"])]).await;
    let (status, body) = put_freeze(&s, json!({ "reason": "" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["detail"]["problems"].as_array().unwrap().len(), 2, "{body}");
    let (status, body) = put_freeze(&s, json!({ "for": "1h", "reason": "year-end close" })).await;
    assert_eq!((status, &body["frozen"]), (StatusCode::OK, &json!(true)), "{body}");
    let (_, shown) = s.get("/api/freeze").await;
    assert_eq!(shown["freeze"]["reason"], "year-end close", "{shown}");

    // A manual run: refused naming the freeze, then run with the override, which is audited.
    let job =
        "id: frozen-job\nversion: '1'\nexecute: { shell: sh, script: 'echo ran' }\ntarget: { pcs: [PC-F] }\n";
    let (status, body) = s.post_yaml("/api/deploy", job).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("frozen")), "{body}");
    assert!(body["error"].as_str().unwrap().contains("year-end close"), "{body}");
    let (status, body) = s.post_yaml("/api/deploy?override_freeze=true", job).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_for_audit(&s, "freeze.override").await;
    // SPEC's form: `override_freeze: true` in the plan (here the deploy document's); the job
    // stored from it keeps no override, so a later exec of it is refused again.
    let (status, body) = s.post_yaml("/api/deploy", &format!("{job}override_freeze: true\n")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = s.post_yaml("/api/exec/frozen-job", "").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("frozen")), "{body}");
    let (status, body) =
        s.post_yaml("/api/exec/frozen-job", "target: { pcs: [PC-F] }\noverride_freeze: true\n").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A schedule cannot carry it.
    let (status, body) = s
        .post_yaml(
            "/api/schedules",
            "id: overriding\ncron: '0 3 * * *'\njob_id: frozen-job\nplan: { target: { pcs: [PC-F] }, override_freeze: true }\n",
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("plan.override_freeze"), "{body}");

    // A schedule fires nothing; its ticks say why.
    let (status, body) = s
        .post_yaml(
            "/api/schedules",
            "id: every-second\ncron: '* * * * * *'\njob_id: frozen-job\nplan: { target: { pcs: [PC-F] } }\n",
        )
        .await;
    assert!(status.is_success(), "{body}");
    let mut outcome = String::new();
    for _ in 0..100 {
        let (_, shown) = s.get("/api/schedules/every-second").await;
        outcome = shown["state"]["last_outcome"].as_str().unwrap_or_default().to_owned();
        if !outcome.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        outcome.starts_with("skipped: the fleet is frozen until") && outcome.contains("year-end close"),
        "{outcome}"
    );
    let (status, body) =
        s.call(Request::post("/api/schedules/every-second/disable").body(Body::empty()).unwrap()).await;
    assert!(status.is_success(), "{body}");

    // A rollout started with the override: its first wave goes, the later one waits out the
    // freeze and goes once it is lifted.
    let waved = "id: waved\nversion: '1'\nexecute: { shell: sh, script: 'true' }\nrollout: { waves: [{ pcs: [PC-F] }, { pcs: [PC-G], delay: 1s }] }\n";
    let (status, body) = s.post_yaml("/api/deploy?override_freeze=true", waved).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let exec = body["exec_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, held) = s.get(&format!("/api/executions/{exec}")).await;
    assert_eq!(held["waves"][1]["status"], "pending", "{held:#}");
    lift(&s).await;
    let (_, shown) = s.get("/api/freeze").await;
    assert_eq!(shown, json!({ "freeze": null, "frozen": false }));
    let body = s.wait_status(&exec, "completed").await;
    assert_eq!(body["waves"][1]["status"], "published", "{body:#}");
    wait_for_audit(&s, "freeze.lift").await;
}
