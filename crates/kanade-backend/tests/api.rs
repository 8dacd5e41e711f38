//! The rest of the API surface against a real stack.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::stack;
use kanade_backend::http::routes;
use serde_json::{Value, json};

#[tokio::test]
async fn every_route_in_the_table_is_served_and_documented() {
    let s = stack(&[]).await;
    let (status, doc) = s.get("/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = 0;
    for route in routes::table() {
        let op = &doc["paths"][routes::doc_path(route.path)][route.method.to_lowercase()];
        assert!(
            op["responses"]["4XX"].is_object() && op["responses"]["2XX"].is_object(),
            "{} {} missing from the document",
            route.method,
            route.path
        );
        documented += 1;
        if route.path == "/api/stream" {
            continue; // never ends; covered by its own test
        }
        let path = route
            .path
            .replace("{pc}", "PC-NONE")
            .replace("{id}", "nojob")
            .replace("{job_id}", "nojob")
            .replace("{exec_id}", "0190f5c2-6c1e-7a4b-9d2e-1f2a3b4c5d6e")
            .replace("{result_id}", "0190f5c2-6c1e-7a4b-9d2e-1f2a3b4c5d6e");
        let req = Request::builder()
            .method(Method::from_bytes(route.method.as_bytes()).unwrap())
            .uri(&path)
            .body(Body::empty())
            .unwrap();
        let (status, body) = s.call(req).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{} {path}", route.method);
        let fell_through = body["error"].as_str().is_some_and(|e| e.starts_with("no route for"));
        assert!(!fell_through, "{} {path} is in the table but not routed", route.method);
    }
    let in_doc: usize =
        doc["paths"].as_object().unwrap().values().map(|ops| ops.as_object().unwrap().len()).sum();
    assert_eq!(in_doc, documented, "the document lists operations that are not in the table");
}

/// The document's bodies, query parameters and answers come from the handlers' own types: a
/// typed body is a `requestBody` schema, a query type its parameters, every route declares its
/// JSON answer (or the media types of another), and every schema reference resolves.
#[tokio::test]
async fn the_document_describes_bodies_and_queries_from_the_types() {
    let s = stack(&[]).await;
    let (_, doc) = s.get("/api/openapi.json").await;
    let mut bodies = 0;
    for route in routes::table() {
        let op = &doc["paths"][routes::doc_path(route.path)][route.method.to_lowercase()];
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(route.body.is_some(), schema.is_object(), "{} {}: {op}", route.method, route.path);
        bodies += usize::from(route.body.is_some());
        let success = &op["responses"]["2XX"];
        let media = success["content"].as_object().map_or(0, |c| c.len());
        match (route.response.is_some(), route.answers) {
            (false, None) => panic!(
                "{} {} must declare its JSON answer or the media types of another",
                route.method, route.path
            ),
            (json, other) => {
                let schema = success["content"]["application/json"]["schema"].is_object();
                assert_eq!(schema, json, "{} {}: {success}", route.method, route.path);
                let others = other.map_or(0, <[&str]>::len);
                assert_eq!(media, usize::from(json) + others, "{} {}: {success}", route.method, route.path);
            }
        }
        if route.query.is_some() {
            let params = op["parameters"].as_array().unwrap();
            assert!(
                params.iter().any(|p| p["in"] == "query"),
                "{} {}: no query parameters",
                route.method,
                route.path
            );
        }
    }
    assert!(bodies >= 19, "only {bodies} routes document their JSON body");
    let agents =
        &doc["paths"]["/api/agents"]["get"]["responses"]["2XX"]["content"]["application/json"]["schema"];
    assert_eq!(agents["$ref"], "#/components/schemas/AgentPage", "{agents}");
    let agent = &doc["components"]["schemas"]["Agent"];
    assert!(agent["required"].as_array().unwrap().contains(&json!("pc_id")), "{agent}");
    assert_eq!(agent["properties"]["online"]["type"], "boolean", "{agent}");
    let freeze = &doc["paths"]["/api/freeze"]["put"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(freeze["$ref"], "#/components/schemas/SetFreeze", "{freeze}");
    let set = &doc["components"]["schemas"]["SetFreeze"];
    assert_eq!(set["required"], json!(["reason"]), "{set}");
    let params = doc["paths"]["/api/executions"]["get"]["parameters"].as_array().unwrap();
    let limit = params.iter().find(|p| p["name"] == "limit").expect("limit is documented");
    assert_eq!((limit["in"].as_str(), limit["required"].as_bool()), (Some("query"), Some(false)));
    // Every reference names a schema the document has.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    out.push(r);
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 20, "{}", all.len());
    for r in all {
        let name =
            r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r} is not a component"));
        assert!(doc["components"]["schemas"][name].is_object(), "{r} does not resolve");
    }
}

/// The answers parse as the shared types the CLI reads them into: a drift between what a
/// handler builds and what `kanade_shared::api` declares fails here, not at a user's terminal.
#[tokio::test]
async fn answers_parse_as_the_shared_types() {
    use kanade_shared::api::executions::{Execution, ExecutionDetail, JobDetail, JobSummary, Launched};
    use kanade_shared::api::fleet::{AgentDetail, AgentPage, AuditEntry, Overview, RunResult};
    use kanade_shared::api::{ErrorBody, Items, Page, accounts::Me};
    use kanade_shared::{AuditId, ExecId, ResultId};
    fn typed<T: serde::de::DeserializeOwned>((status, v): (StatusCode, Value)) -> T {
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{status} {v}: {e}"))
    }
    let s = stack(&[("PC-T", &["t"])]).await;
    let deployed = s
        .post_yaml(
            "/api/deploy",
            "id: typed\nversion: '1'\nexecute: { shell: sh, script: 'echo hi' }\ntarget: { groups: [t] }\n",
        )
        .await;
    assert_eq!(deployed.0, StatusCode::CREATED, "{}", deployed.1);
    let launched: Launched = typed(deployed);
    assert_eq!((launched.job_id.as_str(), launched.target_count), ("typed", 1));
    s.wait_status(&launched.exec_id.to_string(), "completed").await;
    let detail: ExecutionDetail = typed(s.get(&format!("/api/executions/{}", launched.exec_id)).await);
    assert_eq!((detail.execution.succeeded, detail.pcs.len()), (1, 1));
    let list: Page<Execution, ExecId> = typed(s.get("/api/executions").await);
    assert_eq!(list.items[0].exec_id, launched.exec_id);
    let results: Page<RunResult, ResultId> = typed(s.get("/api/results").await);
    assert_eq!(results.items[0].pc_id.as_str(), "PC-T");
    let agents: AgentPage = typed(s.get("/api/agents").await);
    assert!(agents.items[0].online && agents.total == 1, "{agents:?}");
    let agent: AgentDetail = typed(s.get("/api/agents/PC-T").await);
    assert_eq!(agent.recent_results.len(), 1);
    let overview: Overview = typed(s.get("/api/overview").await);
    assert_eq!(overview.agents_total, 1);
    let _: Page<AuditEntry, AuditId> = typed(s.get("/api/audit").await);
    let jobs: Items<JobSummary> = typed(s.get("/api/jobs").await);
    assert_eq!(jobs.items[0].shell, "sh");
    let job: JobDetail = typed(s.get("/api/jobs/typed").await);
    assert!(!job.revoked);
    let _: Me = typed(s.get("/api/auth/me").await);
    let refused: ErrorBody = typed(s.get("/api/jobs/nojob").await);
    assert_eq!(refused.code, "not_found");
    let wrong =
        s.call(Request::builder().method(Method::PATCH).uri("/api/jobs").body(Body::empty()).unwrap()).await;
    let wrong: ErrorBody = typed(wrong);
    assert_eq!(wrong.code, "method_not_allowed", "{wrong:?}");

    // What a typo would otherwise have reported as done, or answered with nothing.
    let refusals = [
        ("POST", format!("/api/executions/{}/kill", launched.exec_id), 409, "already ended (completed)"),
        ("POST", format!("/api/executions/{}/kill", ExecId::new()), 404, "not found"),
        ("POST", "/api/jobs/nosuchjob/revoke".to_owned(), 404, "not in the catalog"),
        ("GET", "/api/executions?status=bogus".to_owned(), 422, "status: \"bogus\" is not one of pending"),
        ("GET", "/api/results?status=bogus".to_owned(), 422, "is not one of running, succeeded"),
        ("GET", "/api/executions?cursor=garbage".to_owned(), 422, "cursor: \"garbage\" is not a cursor"),
        ("GET", "/api/audit?cursor=garbage".to_owned(), 422, "not a cursor this list gave"),
    ];
    for (method, path, status, says) in refusals {
        let req = Request::builder().method(method).uri(&path).body(Body::empty()).unwrap();
        let (got, body) = s.call(req).await;
        let refused: ErrorBody = typed((got, body));
        assert_eq!(got.as_u16(), status, "{method} {path}: {refused:?}");
        assert!(refused.error.contains(says), "{method} {path}: {refused:?}");
    }
}

#[tokio::test]
async fn catalog_revoke_and_delete_rules() {
    let s = stack(&[("PC-C", &["c"])]).await;
    let (status, _) =
        s.post_yaml("/api/jobs", "id: cat\nversion: '2'\nexecute: { shell: sh, script: 'echo cat' }\n").await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, list) = s.get("/api/jobs").await;
    assert_eq!(list["items"][0]["id"], "cat");
    let (status, _) = s.post_yaml("/api/jobs/cat/revoke", "").await;
    assert_eq!(status, StatusCode::OK);
    let (_, job) = s.get("/api/jobs/cat").await;
    assert_eq!((job["revoked"].as_bool(), job["manifest"]["version"].as_str()), (Some(true), Some("2")));

    // A revoked job still goes out, and every agent skips it with 126.
    let (status, launched) = s.post_yaml("/api/exec/cat", "target: { groups: [c] }\n").await;
    assert_eq!(status, StatusCode::CREATED, "{launched}");
    let exec = launched["exec_id"].as_str().unwrap();
    let body = s.wait_status(exec, "completed").await;
    assert_eq!(body["pcs"][0]["status"], "skipped");
    assert_eq!(body["pcs"][0]["exit_code"], 126);
    // Status only: the same counters, no per-pc rows.
    let (_, brief) = s.get(&format!("/api/executions/{exec}?pcs=false")).await;
    assert_eq!(
        (brief["execution"]["skipped"].as_i64(), brief["pcs"].as_array().map(Vec::len)),
        (Some(1), Some(0))
    );

    let (_, failed) = s.get("/api/results?status=skipped&pc=PC-C").await;
    assert_eq!(failed["items"].as_array().unwrap().len(), 1);
    let id = failed["items"][0]["result_id"].as_str().unwrap();
    let (status, one) = s.get(&format!("/api/results/{id}")).await;
    assert_eq!((status, one["exit_code"].as_i64()), (StatusCode::OK, Some(126)));

    let js = &s.state.js;
    js.get_key_value("schedules")
        .await
        .unwrap()
        .put(
            "nightly",
            r#"{"id":"nightly","cron":"@daily","job_id":"cat","plan":{"target":{"all":true}}}"#.into(),
        )
        .await
        .unwrap();
    let req = Request::delete("/api/jobs/cat").body(Body::empty()).unwrap();
    let (status, body) = s.call(req).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
    assert!(body["error"].as_str().unwrap().contains("schedule nightly"));
    js.get_key_value("schedules").await.unwrap().delete("nightly").await.unwrap();
    let (status, _) = s.call(Request::delete("/api/jobs/cat").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.get("/api/jobs/cat").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The AUDIT projector writes asynchronously: wait for the last event before reading them all.
    common::wait_for_audit(&s, "job.delete").await;
    let (_, audit) = s.get("/api/audit?action=job").await;
    let actions: Vec<&str> =
        audit["items"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"job.revoke") && actions.contains(&"job.delete"), "{actions:?}");
    // Which client acted: what our clients say, `api` for anything else, never the backend's.
    for header in [Some("dashboard"), Some("scheduler"), None] {
        let mut req = Request::post("/api/jobs/cat/unrevoke");
        if let Some(h) = header {
            req = req.header("x-kanade-source", h);
        }
        let (status, body) = s.call(req.body(Body::empty()).unwrap()).await;
        assert!(status.is_success(), "{status} {body}");
    }
    common::wait_for_audit(&s, "job.unrevoke").await;
    kanade_testkit::wait_until_async("three job.unrevoke", std::time::Duration::from_secs(20), || async {
        s.get("/api/audit?action=job.unrevoke").await.1["items"].as_array().map_or(0, Vec::len) == 3
    })
    .await;
    let (_, dashboard) = s.get("/api/audit?action=job.unrevoke&client=dashboard").await;
    assert_eq!(dashboard["items"].as_array().map(Vec::len), Some(1), "{dashboard:#}");
    let (_, api) = s.get("/api/audit?action=job.unrevoke&client=api").await;
    assert_eq!(api["items"].as_array().map(Vec::len), Some(2), "{api:#}");
    let (status, bad) = s.get("/api/audit?client=robot").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:#}");
}

#[tokio::test]
async fn agents_detail_ping_and_groups() {
    let s = stack(&[("PC-Q", &["base"])]).await;
    let (status, ping) = s.call(Request::post("/api/agents/PC-Q/ping").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ping["heartbeat"]["pc_id"], "PC-Q");
    // A PC never heard from is not found (not "unavailable"), by name.
    let (status, body) = s.call(Request::post("/api/agents/PC-GONE/ping").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("agent PC-GONE has never sent a heartbeat"),
        "{body}"
    );
    // Groups for a PC not seen yet are kept (it may be installed later), and the answer says so.
    let req = Request::put("/api/agents/PC-LATER/groups")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"groups":["late"]}"#))
        .unwrap();
    let (status, body) = s.call(req).await;
    assert_eq!(
        (status, &body["known"], &body["reported_groups"]),
        (StatusCode::OK, &Value::Bool(false), &Value::Null)
    );

    let req = Request::put("/api/agents/PC-Q/groups")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"groups":["late","bad group"]}"#))
        .unwrap();
    let (status, body) = s.call(req).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["detail"]["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("groups[1]: group name \"bad group\" is invalid")
    );
    let req = Request::put("/api/agents/PC-Q/groups")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"groups":["late"]}"#))
        .unwrap();
    assert_eq!(s.call(req).await.0, StatusCode::OK);
    let mut groups = Value::Null;
    for _ in 0..100 {
        let (_, detail) = s.get("/api/agents/PC-Q").await;
        groups = detail["agent"]["groups"].clone();
        if groups == serde_json::json!(["base", "late"]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(groups, serde_json::json!(["base", "late"]));
    let (status, _) = s.get("/api/agents/PC-GONE").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = s.get("/api/agents?group=late").await;
    assert_eq!(list["items"][0]["online"], true);
    let req = Request::put("/api/agents/PC-Q/groups")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"groups":["late"]}"#))
        .unwrap();
    let (_, body) = s.call(req).await;
    assert_eq!(
        (&body["known"], &body["reported_groups"]),
        (&Value::Bool(true), &serde_json::json!(["base", "late"]))
    );

    let (status, metrics) = s.get_text("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for name in [
        "kanade_projected_messages_total",
        "kanade_agents{state=\"online\"} 1",
        "kanade_http_request_duration_seconds_bucket",
        "kanade_projector_lag_messages",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }

    // A PC that was seen and is gone: unavailable, with when it was last heard from.
    s.agents_stop.send(true).unwrap();
    let mut body = Value::Null;
    for _ in 0..100 {
        let (status, b) = s.call(Request::post("/api/agents/PC-Q/ping").body(Body::empty()).unwrap()).await;
        body = b;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // "is not connected" once it is gone; "did not answer within 3s" while it is shutting down.
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("agent PC-Q ") && error.contains("; last heard from ") && error.ends_with("s ago"),
        "{body}"
    );
}

/// Peak resident memory of this process (the backend runs in it), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_yaml_alias_bomb_is_refused_without_being_expanded() {
    let s = stack(&[]).await;
    // Ten levels of ten aliases each: 10^10 scalars once expanded, ~1.3 MB written out with a
    // long anchor at the bottom.
    let mut yaml = format!("a0: &a0 [\"{}\"]\n", "x".repeat(1_300_000));
    for level in 1..10 {
        let refs = vec![format!("*a{}", level - 1); 10].join(", ");
        yaml.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    yaml.push_str("id: bomb\nversion: '1'\nexecute: { shell: sh, script: *a9 }\n");
    let before = peak_rss_kib();
    for path in ["/api/jobs/validate", "/api/jobs", "/api/deploy", "/api/schedules"] {
        let (status, body) = s.post_yaml(path, &yaml).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body:#}");
        assert_eq!(
            body["error"],
            "malformed YAML: line 2 column 10: YAML aliases (*name) are not accepted; write the value out",
            "{path}"
        );
    }
    let grown_mib = (peak_rss_kib() - before) / 1024;
    assert!(grown_mib < 64, "peak RSS grew by {grown_mib} MiB reading a 1.3 MB body");
}

#[tokio::test]
async fn fleet_software_search_finds_pcs_by_program() {
    let s = stack(&[("PC-SW", &[])]).await;
    // The PC reports two known programs (in-process test agents send no inventory of their own).
    let mut inv = kanade_agent::inventory::collect(&"PC-SW".parse().unwrap());
    inv.software = vec![
        kanade_shared::wire::Software {
            name: "Kanade Test Tool".into(),
            version: "3.0.7".into(),
            publisher: "kanade".into(),
        },
        kanade_shared::wire::Software {
            name: "other_thing".into(),
            version: "1.0".into(),
            publisher: String::new(),
        },
    ];
    let client = async_nats::connect(s.server.url()).await.unwrap();
    client.publish("inventory.PC-SW", kanade_shared::wire::encode(&inv).unwrap().into()).await.unwrap();
    client.flush().await.unwrap();
    let mut found = Value::Null;
    for _ in 0..100 {
        found = s.get("/api/software?name=test%20tool").await.1;
        if found["pcs"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found["items"][0]["pc_id"], "PC-SW", "{found:#}");
    assert_eq!(
        (&found["items"][0]["name"], &found["items"][0]["version"]),
        (&"Kanade Test Tool".into(), &"3.0.7".into())
    );
    let (_, none) = s.get("/api/software?name=test%20tool&version=2.").await;
    assert_eq!(none["pcs"], 0, "{none:#}");
    // LIKE wildcards in the query match only themselves: `_` is not "any character".
    let (_, under) = s.get("/api/software?name=other_").await;
    let (_, wild) = s.get("/api/software?name=other%25").await;
    assert_eq!((under["pcs"].as_u64(), wild["pcs"].as_u64()), (Some(1), Some(0)), "{under:#} {wild:#}");
    let (status, body) = s.get("/api/software").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn a_schedule_naming_a_pc_never_seen_is_refused_unless_allowed() {
    let s = stack(&[("PC-KNOWN", &[])]).await;
    let (status, body) =
        s.post_yaml("/api/jobs", "id: tick\nversion: '1'\nexecute: { shell: sh, script: 'true' }\n").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let yaml =
        "id: nightly\ncron: '0 0 3 * * *'\njob_id: tick\nplan: { target: { pcs: [PC-KNOWN, nosuchpc] } }\n";
    let (status, body) = s.post_yaml("/api/schedules", yaml).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let problem = body["detail"]["problems"][0].as_str().unwrap();
    assert!(
        problem.starts_with("target.pcs: never seen by this backend (no heartbeat yet): nosuchpc."),
        "{problem}"
    );
    let (status, body) = s.post_yaml("/api/schedules?allow_unknown=true", yaml).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// PATCH `/api/agent/config/{scope}` with a JSON body.
async fn patch_config(
    s: &common::Stack,
    scope: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let req = Request::patch(format!("/api/agent/config/{scope}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    s.call(req).await
}

#[tokio::test]
async fn agent_config_scopes_are_set_shown_removed_and_every_bad_field_is_named() {
    let s = common::stack(&[("PC-1", &["lab"])]).await;
    let (status, body) = patch_config(&s, "pc:PC-1", json!({ "heartbeat_interval": "2s" })).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body, json!({ "scope": "pc:PC-1", "config": { "heartbeat_interval": "2s" } }));
    let (status, _) = patch_config(&s, "group:lab", json!({ "inventory_interval": "1h" })).await;
    assert_eq!(status, StatusCode::OK);
    // Agents read the same bucket keys they always did.
    let kv = s.state.js.get_key_value("agent_config").await.unwrap();
    let stored: kanade_shared::wire::AgentConfigPatch =
        serde_json::from_slice(&kv.get("pcs.PC-1").await.unwrap().unwrap()).unwrap();
    assert_eq!(stored.heartbeat_interval.map(|d| d.as_secs()), Some(2));

    let (_, shown) = s.get("/api/agent/config").await;
    assert_eq!(
        shown,
        json!({ "scopes": [
            { "scope": "group:lab", "config": { "inventory_interval": "1h" } },
            { "scope": "pc:PC-1", "config": { "heartbeat_interval": "2s" } },
        ] })
    );

    // Every problem at once, named; nothing applied.
    let (status, body) = patch_config(
        &s,
        "pc:PC-1",
        json!({ "heartbeat": "1s", "inventory_interval": "soon", "heartbeat_interval": "9s" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body:#}");
    let problems: Vec<String> = body["detail"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("heartbeat: unknown field (known: heartbeat_interval"), "{problems:?}");
    assert!(problems[1].starts_with("inventory_interval: \"soon\" is not valid"), "{problems:?}");
    for (scope, body, says) in [
        ("everyone", json!({ "heartbeat_interval": "1s" }), "write global, group:<name> or pc:<id>"),
        ("pc:my pc", json!({ "heartbeat_interval": "1s" }), "scope \"pc:my pc\": pc:"),
        ("global", json!(["heartbeat_interval"]), "body: a JSON object of fields"),
        ("global", json!({}), "body: names no field to change"),
        ("global", json!({ "target_version": "9.9.9" }), "target_version: 9.9.9 has no published release"),
        ("global", json!({ "clear_quarantine": "2999-01-01T00:00:00Z" }), "in the future"),
        (
            "global",
            json!({ "inventory_interval": "0s" }),
            "inventory_interval: \"0s\" is not valid: at least 1m",
        ),
    ] {
        let (status, answer) = patch_config(&s, &scope.replace(' ', "%20"), body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{scope}: {answer:#}");
        assert!(answer["detail"]["problems"][0].as_str().unwrap().contains(says), "{scope}: {answer:#}");
    }
    let (_, shown) = s.get("/api/agent/config").await;
    assert_eq!(
        shown["scopes"][1]["config"],
        json!({ "heartbeat_interval": "2s" }),
        "a refused edit changed nothing"
    );

    // Clearing quarantines goes through the same edit: the scope's other fields stay.
    let req = Request::post("/api/agent/clear-quarantine")
        .header("content-type", "application/json")
        .body(Body::from(json!({ "pc": "PC-1" }).to_string()))
        .unwrap();
    let (status, body) = s.call(req).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let (_, shown) = s.get("/api/agent/config").await;
    let pc1 = &shown["scopes"][1]["config"];
    assert_eq!(pc1["heartbeat_interval"], "2s", "{shown:#}");
    assert!(pc1["clear_quarantine"].is_string(), "{shown:#}");
    let (status, _) = patch_config(&s, "pc:PC-1", json!({ "clear_quarantine": null })).await;
    assert_eq!(status, StatusCode::OK);

    // null removes a field; a scope that sets nothing is not listed.
    let (status, body) = patch_config(&s, "pc:PC-1", json!({ "heartbeat_interval": null })).await;
    assert_eq!((status, &body["config"]), (StatusCode::OK, &json!({})), "{body:#}");
    let (_, shown) = s.get("/api/agent/config").await;
    assert_eq!(shown["scopes"].as_array().unwrap().len(), 1, "{shown:#}");
    common::wait_for_audit(&s, "agent.config").await;
}

#[tokio::test]
async fn host_performance_samples_are_kept_and_served_by_range() {
    let s = common::stack(&[("PC-1", &[])]).await;
    let (status, body) = patch_config(&s, "pc:PC-1", json!({ "host_perf_interval": "1s" })).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let perf = loop {
        let (_, perf) = s.get("/api/agents/PC-1/perf").await;
        if perf["samples"].as_array().is_some_and(|a| a.len() >= 2) {
            break perf;
        }
        assert!(std::time::Instant::now() < deadline, "fewer than two samples within 10 s: {perf:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let first = &perf["samples"][0];
    assert!(first["mem_total_bytes"].as_i64().unwrap() > 0, "{perf:#}");
    assert!((0.0..=100.0).contains(&first["cpu_pct"].as_f64().unwrap()), "{perf:#}");
    let at = first["at"].as_i64().unwrap();
    // A range that ends before the first sample has none of them.
    let (_, earlier) = s.get(&format!("/api/agents/PC-1/perf?since={}&until={}", at - 60_000, at - 1)).await;
    assert_eq!(earlier["samples"].as_array().map(Vec::len), Some(0), "{earlier:#}");
    assert_eq!(perf["resolution"], "raw", "an hour is served raw");
    // The same samples as 5-minute averages (a week's range picks them by itself).
    let (_, rolled) = s.get(&format!("/api/agents/PC-1/perf?since={}", at - 7 * 86_400_000)).await;
    assert_eq!(rolled["resolution"], "5m", "{rolled:#}");
    let counted: i64 =
        rolled["samples"].as_array().unwrap().iter().map(|p| p["samples"].as_i64().unwrap()).sum();
    assert!(counted >= 2, "{rolled:#}");
    let (status, bad) = s.get("/api/agents/PC-1/perf?since=9&until=8").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:#}");
    let (status, bad) = s.get("/api/agents/PC-1/perf?from=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:#}");
}

/// Every route that takes a JSON body answers a malformed one with the API's error shape
/// (`{error, code, detail}`, 4xx) instead of plain text; one that answers 2xx to a malformed
/// body must be listed as reading no body. A field of the wrong type, a missing content type
/// and a bad query value name what is wrong, in the same shape.
#[tokio::test]
async fn malformed_bodies_and_queries_get_the_json_error_shape() {
    let s = stack(&[]).await;
    // Routes that read no JSON body: whatever is sent is ignored, or (a script upload) is the
    // raw text itself.
    const NO_BODY: &[&str] = &[
        "POST /api/scripts/{name}/{version}",
        "POST /api/jobs/{id}/revoke",
        "POST /api/jobs/{id}/unrevoke",
        "POST /api/jobs/{id}/kill",
        "POST /api/executions/{exec_id}/kill",
    ];
    let shaped = |body: &Value| body["error"].is_string() && body["code"].is_string();
    let mut checked = 0;
    for route in routes::table() {
        if !["POST", "PUT", "PATCH"].contains(&route.method) {
            continue;
        }
        let key = format!("{} {}", route.method, route.path);
        let path = route
            .path
            .replace("{pc}", "PC-NONE")
            .replace("{exec_id}", "0190f5c2-6c1e-7a4b-9d2e-1f2a3b4c5d6e")
            .replace("{id}", "0190f5c2-6c1e-7a4b-9d2e-1f2a3b4c5d6e")
            .replace(['{', '}'], "");
        let req = Request::builder()
            .method(Method::from_bytes(route.method.as_bytes()).unwrap())
            .uri(&path)
            .header("content-type", "application/json")
            .body(Body::from("{\"oops\": "))
            .unwrap();
        let (status, body) = s.call(req).await;
        assert!(!status.is_server_error(), "{key}: {status} {body}");
        if status.is_success() {
            assert!(NO_BODY.contains(&key.as_str()), "{key} took a malformed body: {status} {body}");
        } else {
            assert!(status.is_client_error() && shaped(&body), "{key}: {status} {body}");
            checked += 1;
        }
    }
    assert!(checked > 15, "only {checked} routes answered a malformed body");

    // (method, path, content type, body) → (status, code, what the message names)
    let cases = [
        (
            "POST",
            "/api/tokens",
            Some("application/json"),
            r#"{"name": 5, "role": "viewer"}"#,
            422,
            "invalid",
            "name: invalid type: integer `5`, expected a string",
        ),
        (
            "POST",
            "/api/tokens",
            None,
            r#"{"name": "t", "role": "viewer"}"#,
            415,
            "unsupported_media_type",
            "Content-Type: application/json",
        ),
        (
            "PUT",
            "/api/agents/PC-NONE/groups",
            Some("application/json"),
            "{\"groups\": [",
            400,
            "malformed",
            "malformed JSON",
        ),
        (
            "GET",
            "/api/executions?limit=many",
            None,
            "",
            400,
            "bad_query",
            "query string: limit: invalid digit",
        ),
    ];
    for (method, path, content_type, body, want_status, want_code, names) in cases {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let (status, got) = s.call(req.body(Body::from(body)).unwrap()).await;
        assert_eq!(
            (status.as_u16(), got["code"].as_str()),
            (want_status, Some(want_code)),
            "{method} {path}: {got}"
        );
        assert!(got["error"].as_str().is_some_and(|e| e.contains(names)), "{method} {path}: {got}");
    }
    // Over the body limit (2 MiB here), a JSON body and a raw one (a job document) alike; a path
    // segment that is not UTF-8 once decoded.
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(3 << 20));
    for (path, content_type) in [("/api/tokens", "application/json"), ("/api/jobs", "application/yaml")] {
        let req = Request::builder().method("POST").uri(path).header("content-type", content_type);
        let (status, got) = s.call(req.body(Body::from(big.clone())).unwrap()).await;
        assert_eq!((status.as_u16(), got["code"].as_str()), (413, Some("too_large")), "{path}: {got}");
    }
    let (status, got) = s.get("/api/jobs/%FF%FE").await;
    assert_eq!((status.as_u16(), got["code"].as_str()), (400, Some("bad_path")), "{got}");
}
