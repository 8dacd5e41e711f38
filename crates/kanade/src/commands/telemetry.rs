//! Endpoint telemetry: the observability-events timeline.

use std::process::ExitCode;

use anyhow::Context;
use kanade_shared::wire::{ObsEventRow, ObsEvents};
use serde_json::Value;

use super::fleet::query;
use super::when;
use crate::api::Api;
use crate::cli::{Format, Global};
use crate::output;

/// The longest `DETAIL` cell; JSON output keeps everything.
const DETAIL_WIDTH: usize = 80;

pub async fn events(
    pc: Option<String>,
    kind: Option<String>,
    since: Option<kanade_shared::HumanDuration>,
    limit: u32,
    global: &Global,
) -> anyhow::Result<ExitCode> {
    let since = since.map(|d| (super::fleet::now_ms() - d.get().as_millis() as i64).to_string());
    let path = format!(
        "/api/events{}",
        query(&[("pc", pc), ("kind", kind), ("since", since), ("limit", Some(limit.to_string()))])
    );
    let v = Api::new(global)?.get(&path).await?;
    let page: ObsEvents =
        serde_json::from_value(v).context("the backend's events are not what this CLI reads")?;
    if page.events.is_empty() && global.output == Format::Table {
        println!("no events match");
        return Ok(ExitCode::SUCCESS);
    }
    let rows = page.events.iter().map(event_row).collect();
    output::print(global.output, &page, &["TIME", "PC", "KIND", "EXEC", "DETAIL"], rows);
    Ok(ExitCode::SUCCESS)
}

fn event_row(e: &ObsEventRow) -> Vec<String> {
    let detail: Vec<String> = e
        .data
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    let mut detail = detail.join(" ");
    if detail.chars().count() > DETAIL_WIDTH {
        detail = detail.chars().take(DETAIL_WIDTH - 1).collect::<String>() + "…";
    }
    vec![
        when(&Value::from(e.at)),
        e.pc_id.clone(),
        e.kind.clone(),
        e.exec_id.as_deref().map_or("-".to_owned(), |x| x.chars().take(8).collect()),
        detail,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::assert_snapshot;

    #[test]
    fn events_table_snapshot() {
        let page: ObsEvents = serde_json::from_value(serde_json::json!({ "events": [
            { "event_id": "job.finished.x", "pc_id": "PC-1", "kind": "job.finished", "at": 1795490690996_i64,
              "received_at": 1795490691000_i64, "exec_id": "01a20b95-b7b4-7177-8e7b-16c2e0aeb267",
              "data": { "job_id": "hello", "status": "succeeded", "exit_code": 0 } },
            { "event_id": "agent.offline.1", "pc_id": "PC-2", "kind": "agent.offline", "at": 1795490600000_i64,
              "received_at": 1795490600000_i64, "data": { "last_seen_ms": 1795490570000_i64 } },
            { "event_id": "e", "pc_id": "PC-3", "kind": "backup.done", "at": 1795490500000_i64,
              "received_at": 1795490500000_i64, "data": { "note": "x".repeat(100) } }
        ]}))
        .unwrap();
        let rows: Vec<_> = page.events.iter().map(event_row).collect();
        assert_snapshot("events", &output::table(&["TIME", "PC", "KIND", "EXEC", "DETAIL"], &rows));
    }
}
