//! Compliance checks end to end (SPEC §12): a real nats-server, the real agent runtime, the
//! RESULTS projector and the API. The gate runs this suite on SQLite and again on Postgres.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// A check that passes until `dir/fail` exists.
fn disk_check(dir: &std::path::Path, target: &str) -> String {
    format!(
        r#"id: disk-space
version: '1'
check: {{ name: disk-space, status_field: result.status, detail_field: detail }}
execute:
  shell: sh
  script: |
    if [ -f "{}/fail" ]; then echo '{{"result":{{"status":"fail"}},"detail":"C: 2% free"}}'
    else echo '{{"result":{{"status":"pass"}},"detail":"80% free"}}'; fi
target: {{ pcs: [{target}] }}
"#,
        dir.display()
    )
}

async fn summary(s: &common::Stack) -> Value {
    let (status, body) = s.get("/api/checks").await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    body["checks"].as_array().and_then(|a| a.first()).cloned().unwrap_or(Value::Null)
}

async fn changed_events(s: &common::Stack) -> usize {
    s.get("/api/events?kind=check.changed&limit=500").await.1["events"].as_array().map_or(0, Vec::len)
}

async fn run(s: &common::Stack, yaml: &str) -> String {
    let exec = s.deploy(yaml).await;
    s.wait_status(&exec, "completed").await;
    exec
}

#[tokio::test]
async fn a_check_moves_pass_fail_unknown_and_a_change_is_recorded_once() {
    let s = common::stack(&[("PC-1", &[]), ("PC-2", &[])]).await;
    let dir = tempfile::tempdir().unwrap();
    run(&s, &disk_check(dir.path(), "PC-1, PC-2")).await;
    let c = summary(&s).await;
    assert_eq!(
        (c["name"].as_str(), c["pass"].as_i64(), c["fail"].as_i64()),
        (Some("disk-space"), Some(2), Some(0)),
        "{c:#}"
    );
    assert_eq!(changed_events(&s).await, 0, "passing is no change worth an event");

    // PC-1 fails: one check.changed; failing again is no new change, and `since` stays.
    std::fs::write(dir.path().join("fail"), "").unwrap();
    run(&s, &disk_check(dir.path(), "PC-1")).await;
    let (_, failing) = s.get("/api/checks/disk-space?status=fail").await;
    let pcs = failing["pcs"].as_array().unwrap();
    assert_eq!(
        (pcs.len(), pcs[0]["pc_id"].as_str(), pcs[0]["detail"].as_str()),
        (1, Some("PC-1"), Some("C: 2% free"))
    );
    let since = pcs[0]["since"].as_i64().unwrap();
    kanade_testkit::wait_until_async("one check.changed", WAIT, || async { changed_events(&s).await == 1 })
        .await;
    run(&s, &disk_check(dir.path(), "PC-1")).await;
    let (_, again) = s.get("/api/checks/disk-space?status=fail").await;
    assert_eq!(again["pcs"][0]["since"].as_i64(), Some(since), "{again:#}");
    assert!(again["pcs"][0]["updated"].as_i64().unwrap() >= since);
    assert_eq!(changed_events(&s).await, 1);

    // A check that crashes is unknown, with why.
    let crash = s
        .deploy("id: disk-space\nversion: '2'\ncheck: { name: disk-space, status_field: result.status }\nexecute: { shell: sh, script: 'exit 3' }\ntarget: { pcs: [PC-2] }\n")
        .await;
    s.wait_status(&crash, "failed").await;
    let (_, unknown) = s.get("/api/checks/disk-space?status=unknown").await;
    assert_eq!(unknown["pcs"][0]["pc_id"], "PC-2", "{unknown:#}");
    assert_eq!(unknown["pcs"][0]["detail"], "the check exited 3");
    let c = summary(&s).await;
    assert_eq!(
        [c["pass"].as_i64(), c["warn"].as_i64(), c["fail"].as_i64(), c["unknown"].as_i64()],
        [Some(0), Some(0), Some(1), Some(1)]
    );

    // Replayed from the streams, the same statuses and still one event.
    let _workers = common::wipe_and_restart(&s).await;
    kanade_testkit::wait_until_async("the replayed statuses", WAIT, || async {
        let c = summary(&s).await;
        c["fail"].as_i64() == Some(1) && c["unknown"].as_i64() == Some(1)
    })
    .await;
    assert_eq!(changed_events(&s).await, 1);

    // Bad input is named; a check nobody reported is a 404.
    for (path, status, says) in [
        ("/api/checks/nope", StatusCode::NOT_FOUND, "no PC has reported check \"nope\""),
        (
            "/api/checks/disk-space?status=red",
            StatusCode::UNPROCESSABLE_ENTITY,
            "status: \"red\" is not one of",
        ),
        ("/api/checks/Disk%20Space", StatusCode::UNPROCESSABLE_ENTITY, "is not a check name"),
    ] {
        let (got, body) = s.get(path).await;
        assert_eq!(got, status, "{path}: {body:#}");
        assert!(body["error"].as_str().unwrap_or_default().contains(says), "{path}: {body:#}");
    }
}

/// Two disks until `dir/fewer` exists, then one; garbage once `dir/garbage` exists.
fn disks_job(dir: &std::path::Path) -> String {
    format!(
        r#"id: disks
version: '1'
facts:
  explode:
    - {{ table: disks, path: disks, key: [mount], columns: {{ mount: text, free: integer, ok: bool }} }}
execute:
  shell: sh
  script: |
    if [ -f "{d}/garbage" ]; then echo 'not json'
    elif [ -f "{d}/fewer" ]; then echo '{{"disks":[{{"mount":"C:","free":5,"ok":false}}]}}'
    else echo '{{"disks":[{{"mount":"C:","free":50,"ok":true}},{{"mount":"D:","free":70,"ok":true}}]}}'; fi
target: {{ pcs: [PC-1, PC-2] }}
"#,
        d = dir.display()
    )
}

async fn rows(s: &common::Stack, query: &str) -> Vec<Value> {
    let (status, body) = s.get(&format!("/api/facts/disks{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    body["rows"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_job_s_output_fills_its_facts_table_per_pc_and_bad_output_keeps_the_rows() {
    let s = common::stack(&[("PC-1", &[]), ("PC-2", &[])]).await;
    let dir = tempfile::tempdir().unwrap();
    run(&s, &disks_job(dir.path())).await;
    assert_eq!(rows(&s, "").await.len(), 4);
    let pc1 = rows(&s, "?pc=PC-1").await;
    assert_eq!(pc1.len(), 2);
    assert_eq!(
        (pc1[0]["mount"].as_str(), pc1[0]["free"].as_i64(), pc1[0]["ok"].as_bool()),
        (Some("C:"), Some(50), Some(true))
    );
    assert_eq!(rows(&s, "?mount=C:").await.len(), 2, "one C: per PC");
    let (_, tables) = s.get("/api/facts").await;
    assert_eq!(
        (tables["tables"][0]["name"].as_str(), tables["tables"][0]["rows"].as_i64()),
        (Some("disks"), Some(4)),
        "{tables:#}"
    );

    // A rerun with fewer elements leaves only those.
    std::fs::write(dir.path().join("fewer"), "").unwrap();
    run(&s, &disks_job(dir.path())).await;
    let now = rows(&s, "").await;
    assert_eq!(now.len(), 2, "{now:#?}");
    assert!(now.iter().all(|r| r["mount"] == "C:" && r["free"] == 5 && r["ok"] == false), "{now:#?}");

    // Output that is not JSON: the rows stay, the result says why.
    std::fs::write(dir.path().join("garbage"), "").unwrap();
    let exec = run(&s, &disks_job(dir.path())).await;
    assert_eq!(rows(&s, "").await.len(), 2);
    let (_, results) = s.get(&format!("/api/results?exec={exec}")).await;
    for r in results["items"].as_array().unwrap() {
        assert!(r["facts_error"].as_str().unwrap_or_default().contains("the output is not JSON"), "{r:#}");
    }

    // SQL words are plain names; a value the database could not hold is a facts_error, and the
    // result is still there.
    let words = r#"id: words
version: '1'
facts: { explode: [{ table: order, path: x, key: [group], columns: { group: text, user: text } }] }
execute:
  shell: sh
  script: |
    if [ -f "DIR/nul" ]; then echo '{"x":[{"group":"a\u0000b"}]}'; else echo '{"x":[{"group":"a","user":"b"}]}'; fi
target: { pcs: [PC-1] }
"#
    .replace("DIR", &dir.path().display().to_string());
    run(&s, &words).await;
    let (_, order) = s.get("/api/facts/order?group=a").await;
    assert_eq!(order["rows"][0]["user"], "b", "{order:#}");
    std::fs::write(dir.path().join("nul"), "").unwrap();
    let exec = run(&s, &words).await;
    let (_, results) = s.get(&format!("/api/results?exec={exec}")).await;
    let refused = results["items"][0]["facts_error"].as_str().unwrap_or_default().to_owned();
    assert!(refused.contains("NUL"), "{results:#}");
    assert_eq!(s.get("/api/facts/order").await.1["rows"].as_array().map(Vec::len), Some(1));

    // Replayed from the streams, the same rows.
    let _workers = common::wipe_and_restart(&s).await;
    kanade_testkit::wait_until_async("the replayed facts", WAIT, || async {
        s.get("/api/facts/disks").await.1["rows"].as_array().map_or(0, Vec::len) == 2
    })
    .await;

    // Bad input is named.
    for (path, status, says) in [
        ("/api/facts/nope", StatusCode::NOT_FOUND, "no facts table \"nope\""),
        (
            "/api/facts/disks?size=1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "size: not a column of disks (columns: free, mount, ok",
        ),
        ("/api/facts/disks?free=lots", StatusCode::UNPROCESSABLE_ENTITY, "free:"),
        ("/api/facts/disks?limit=0", StatusCode::UNPROCESSABLE_ENTITY, "limit:"),
    ] {
        let (got, body) = s.get(path).await;
        assert_eq!(got, status, "{path}: {body:#}");
        assert!(body["error"].as_str().unwrap_or_default().contains(says), "{path}: {body:#}");
    }
}

#[tokio::test]
async fn a_redefined_table_is_refused_when_stored_and_made_anew_after_a_drop() {
    let s = common::stack(&[("PC-1", &[]), ("PC-2", &[])]).await;
    let dir = tempfile::tempdir().unwrap();
    run(&s, &disks_job(dir.path())).await;
    // The same table with another column: refused by name wherever a job is stored or checked,
    // before any PC runs it.
    let wider = disks_job(dir.path())
        .replace("ok: bool }", "ok: bool, fs: text }")
        .replace("id: disks", "id: disks-2");
    for path in ["/api/deploy", "/api/jobs", "/api/jobs/validate"] {
        let (status, body) = s.post_yaml(path, &wider).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body:#}");
        let says = body["error"].as_str().unwrap_or_default();
        assert!(
            says.starts_with(
                "facts.explode[0].table: disks exists with other columns or key (made by job disks"
            ),
            "{path}: {says}"
        );
    }
    let (status, body) = s.post_yaml("/api/jobs", &disks_job(dir.path())).await;
    assert_eq!(status, StatusCode::CREATED, "the same definition again is fine: {body:#}");

    // Each PC keeps its latest whole output per job.
    let (status, docs) = s.get("/api/agents/PC-1/facts").await;
    assert_eq!(status, StatusCode::OK, "{docs:#}");
    assert_eq!(
        (docs["documents"][0]["job_id"].as_str(), docs["documents"][0]["body"]["disks"][1]["mount"].as_str()),
        (Some("disks"), Some("D:")),
        "{docs:#}"
    );

    // Dropped (audited), the next run of the new definition makes the table anew.
    let (status, body) = s.send_as("DELETE", "/api/facts/disks", None, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(common::audit_count(&s, "facts.drop").await, 1);
    assert_eq!(s.get("/api/facts/disks").await.0, StatusCode::NOT_FOUND);
    let wider = wider.replace(r#""ok":true}"#, r#""ok":true,"fs":"ntfs"}"#);
    run(&s, &wider).await;
    let (_, table) = s.get("/api/facts/disks?fs=ntfs").await;
    assert_eq!(table["rows"].as_array().map(Vec::len), Some(4), "{table:#}");
    assert_eq!(s.send_as("DELETE", "/api/facts/nope", None, Value::Null).await.0, StatusCode::NOT_FOUND);

    // A retired check is forgotten on every PC (audited); forgetting it again is a 404.
    run(&s, &disk_check(dir.path(), "PC-1, PC-2")).await;
    let (status, body) = s.send_as("DELETE", "/api/checks/disk-space", None, Value::Null).await;
    assert_eq!((status, body["forgotten"].as_i64()), (StatusCode::OK, Some(2)), "{body:#}");
    assert_eq!(s.get("/api/checks").await.1["checks"], serde_json::json!([]));
    assert_eq!(common::audit_count(&s, "check.forget").await, 1);
    assert_eq!(
        s.send_as("DELETE", "/api/checks/disk-space", None, Value::Null).await.0,
        StatusCode::NOT_FOUND
    );
}

async fn query(s: &common::Stack, body: Value) -> (StatusCode, Value) {
    let req = axum::http::Request::post("/api/query")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    s.call(req).await
}

#[tokio::test]
async fn an_admin_query_reads_and_never_writes_and_a_runaway_one_is_stopped() {
    let s = common::stack(&[("PC-1", &[])]).await;
    let (status, answer) =
        query(&s, serde_json::json!({ "sql": "SELECT pc_id FROM agents ORDER BY pc_id;" })).await;
    assert_eq!(status, StatusCode::OK, "{answer:#}");
    assert_eq!(
        (&answer["columns"], &answer["rows"]),
        (&serde_json::json!(["pc_id"]), &serde_json::json!([["PC-1"]]))
    );
    common::wait_for_audit(&s, "query.run").await;

    let counting =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50) SELECT x FROM c";
    let (_, capped) = query(&s, serde_json::json!({ "sql": counting, "max_rows": 10 })).await;
    assert_eq!(
        (capped["rows"].as_array().map(Vec::len), capped["truncated"].as_bool()),
        (Some(10), Some(true)),
        "{capped:#}"
    );

    for (sql, says) in [
        ("INSERT INTO agents (pc_id) VALUES ('X')", "\"INSERT\" is not read-only"),
        ("ATTACH DATABASE '/tmp/x.db' AS x", "\"ATTACH\" is not read-only"),
        ("PRAGMA query_only = OFF", "\"PRAGMA\" is not read-only"),
        ("SELECT 1; DELETE FROM agents", "one statement only"),
        // Past the check, the engine's read-only mode refuses a write.
        ("WITH d AS (DELETE FROM agents RETURNING pc_id) SELECT * FROM d", "the database refused the query"),
    ] {
        let (status, body) = query(&s, serde_json::json!({ "sql": sql })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{sql}: {body:#}");
        assert!(body["error"].as_str().unwrap_or_default().contains(says), "{sql}: {body:#}");
    }
    let (_, still) = query(&s, serde_json::json!({ "sql": "SELECT COUNT(*) AS n FROM agents" })).await;
    assert_eq!(still["rows"][0][0].to_string().trim_matches('"'), "1", "{still:#}");

    let runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c";
    let t0 = std::time::Instant::now();
    let (status, body) = query(&s, serde_json::json!({ "sql": runaway })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body:#}");
    assert!(body["error"].as_str().unwrap_or_default().contains("ran longer than 5s"), "{body:#}");
    assert!(t0.elapsed() < Duration::from_secs(30), "stopped after {:?}", t0.elapsed());
}
