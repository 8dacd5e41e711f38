//! Dynamic groups end to end: a real nats-server, in-process agents running a real facts job,
//! the rule evaluated over agent fields and facts, members written into `agent_groups`, the
//! agents joining, and a deploy to the group reaching exactly its members. Both engines.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use kanade_shared::wire::AgentGroups;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// Each PC reports one volume: PC-B is nearly full (its script's path names its data dir).
const VOLUMES_JOB: &str = r#"id: volumes
version: '1'
facts:
  explode:
    - table: volumes
      path: volumes
      key: [mount]
      columns: { mount: text, free_pct: integer }
execute:
  shell: sh
  script: |
    case "$0" in *PC-B*) echo '{"volumes":[{"mount":"/","free_pct":3}]}';; *) echo '{"volumes":[{"mount":"/","free_pct":80}]}';; esac
target: { groups: [lab] }
"#;

async fn kv_groups(s: &common::Stack, pc: &str) -> AgentGroups {
    let kv = s.state.js.get_key_value("agent_groups").await.unwrap();
    kv.get(pc).await.unwrap().map(|b| serde_json::from_slice(&b).unwrap()).unwrap_or_default()
}

fn names(v: &AgentGroups) -> Vec<String> {
    v.groups.iter().map(ToString::to_string).collect()
}

fn members(v: &Value) -> Vec<String> {
    v["members"].as_array().unwrap().iter().map(|m| m["pc_id"].as_str().unwrap().to_owned()).collect()
}

async fn send(s: &common::Stack, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
    s.send_as(method, path, None, body).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_over_facts_makes_a_group_that_commands_reach() {
    let s = common::stack(&[("PC-A", &["lab"]), ("PC-B", &["lab"])]).await;
    let exec = s.deploy(VOLUMES_JOB).await;
    s.wait_status(&exec, "completed").await;

    // Mistakes are named: the rule's syntax, a facts table or column that does not exist.
    for (rule, says) in [
        ("os.family = ", "rule: at character 12: expected a value"),
        ("facts.disks.free = 1", "there is no facts table \"disks\""),
        ("facts.volumes.size < 1", "table volumes has no column \"size\"; it has free_pct, mount"),
    ] {
        let (status, body) = send(&s, "POST", "/api/groups", json!({ "name": "x", "rule": rule })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{rule}: {body:#}");
        assert!(body["error"].as_str().unwrap().contains(says), "{rule}: {body:#}");
    }

    let rule = format!("os.family = {} and facts.volumes.free_pct < 10", std::env::consts::OS);
    let (status, created) =
        send(&s, "POST", "/api/groups", json!({ "name": "low-disk", "rule": rule })).await;
    assert_eq!(status, StatusCode::CREATED, "{created:#}");
    assert_eq!(members(&created), ["PC-B"]);
    let (status, _) = send(&s, "POST", "/api/groups", json!({ "name": "low-disk", "rule": rule })).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(names(&kv_groups(&s, "PC-B").await), ["low-disk"]);
    assert!(kv_groups(&s, "PC-A").await.groups.is_empty());

    // The agent joins it (its heartbeat says so), and a deploy to the group reaches PC-B only.
    kanade_testkit::wait_until_async("PC-B to report low-disk", WAIT, || async {
        s.get("/api/agents/PC-B").await.1["agent"]["groups"].to_string().contains("low-disk")
    })
    .await;
    let exec = s
        .deploy("id: tidy\nversion: '1'\nexecute: { shell: sh, script: 'echo tidy' }\ntarget: { groups: [low-disk] }\n")
        .await;
    let done = s.wait_status(&exec, "completed").await;
    let pcs: Vec<&str> =
        done["pcs"].as_array().unwrap().iter().map(|p| p["pc_id"].as_str().unwrap()).collect();
    assert_eq!(pcs, ["PC-B"], "{done:#}");

    // Groups an operator assigns and dynamic ones live side by side.
    let (status, body) = send(&s, "PUT", "/api/agents/PC-B/groups", json!({ "groups": ["kiosk"] })).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(names(&kv_groups(&s, "PC-B").await), ["kiosk", "low-disk"]);
    let (_, shown) = s.get("/api/agents/PC-B").await;
    assert_eq!(
        (shown["assigned_groups"].clone(), shown["dynamic_groups"].clone()),
        (json!(["kiosk"]), json!(["low-disk"]))
    );

    // A new rule moves the members at once; assigned groups stay.
    let (status, changed) =
        send(&s, "PUT", "/api/groups/low-disk", json!({ "rule": "facts.volumes.free_pct > 50" })).await;
    assert_eq!(status, StatusCode::OK, "{changed:#}");
    assert_eq!(members(&changed), ["PC-A"]);
    assert_eq!(names(&kv_groups(&s, "PC-B").await), ["kiosk"]);
    assert_eq!(names(&kv_groups(&s, "PC-A").await), ["low-disk"]);
    let (_, list) = s.get("/api/groups").await;
    assert_eq!(list["items"][0]["members"], 1, "{list:#}");

    // A pass with nothing new writes nothing.
    let pass = kanade_backend::dynamic_groups::run_pass(&s.state.db, &s.state.buckets, true).await.unwrap();
    assert_eq!(pass, Default::default());

    // Deleted: its members leave it.
    let (status, body) = send(&s, "DELETE", "/api/groups/low-disk", Value::Null).await;
    assert_eq!((status, body["members_removed"].as_u64()), (StatusCode::OK, Some(1)), "{body:#}");
    assert!(kv_groups(&s, "PC-A").await.groups.is_empty());
    let (status, _) = s.get("/api/groups/low-disk").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    common::wait_for_audit(&s, "group.delete").await;
    assert_eq!(common::audit_count(&s, "group.create").await, 1);
}
