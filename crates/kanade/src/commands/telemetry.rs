//! Endpoint telemetry: investigation mode's processes and the observability-events timeline.

use std::process::ExitCode;

use kanade_shared::wire::{ObsEventRow, ObsEvents, ProcessSample, ProcessSamples};
use serde_json::Value;

use super::when;
use crate::api::Api;
use crate::cli::Global;
use crate::output;
use kanade_shared::api::fleet::{EventsQuery, ProcessQuery};

/// The longest `DETAIL` cell; JSON output keeps everything.
const DETAIL_WIDTH: usize = 80;

pub async fn events(
    pc: Option<String>,
    kind: Option<String>,
    since: Option<kanade_shared::HumanDuration>,
    limit: u32,
    global: &Global,
) -> anyhow::Result<ExitCode> {
    let since = since.map(|d| super::now_ms() - d.get().as_millis() as i64);
    let q = EventsQuery { pc, kind, since, limit: Some(i64::from(limit)), ..Default::default() };
    let path = format!("/api/events{}", super::query_of(&q)?);
    let page: ObsEvents = Api::new(global)?.get(&path).await?;
    if page.events.is_empty() && global.output.is_table() {
        println!("no events match");
        return Ok(ExitCode::SUCCESS);
    }
    let rows = page.events.iter().map(event_row).collect();
    output::print(global.output, &page, &["TIME", "PC", "KIND", "EXEC", "DETAIL"], rows);
    Ok(ExitCode::SUCCESS)
}

pub async fn processes(
    api: &Api,
    pc: &str,
    since: kanade_shared::HumanDuration,
    all: bool,
    global: &Global,
) -> anyhow::Result<()> {
    let from = super::now_ms() - since.get().as_millis() as i64;
    // Without --all only the newest sample is fetched: a sample holds up to 200 processes.
    let limit = if all { 2000 } else { 1 };
    let mut page: ProcessSamples = api
        .get(&format!(
            "/api/agents/{pc}/processes{}",
            super::query_of(&ProcessQuery { since: Some(from), until: None, limit: Some(limit) })?
        ))
        .await?;
    if !all && let Some(latest) = page.samples.pop() {
        page.samples = vec![latest];
    }
    if page.samples.is_empty() && global.output.is_table() {
        println!(
            "no process samples from {pc} in the last {since}; start an investigation: kanade agents investigate {pc} --for 2h"
        );
        return Ok(());
    }
    let rows = page.samples.iter().flat_map(process_rows).collect();
    output::print(global.output, &page, &["TIME", "PID", "NAME", "CPU", "MEMORY"], rows);
    Ok(())
}

/// One sample's processes as rows, busiest first.
fn process_rows(s: &ProcessSample) -> Vec<Vec<String>> {
    s.processes
        .iter()
        .map(|p| {
            vec![
                super::when_ms(Some(s.at)),
                p.pid.to_string(),
                p.name.clone(),
                format!("{:.1}%", p.cpu_pct),
                output::bytes(p.mem_bytes as i64),
            ]
        })
        .collect()
}

pub async fn investigate(
    api: &Api,
    pc: &str,
    duration: kanade_shared::HumanDuration,
    top_n: Option<u32>,
    off: bool,
    global: &Global,
) -> anyhow::Result<()> {
    if !off && duration.get().is_zero() {
        anyhow::bail!(
            "--for 0s: say how long the investigation lasts (e.g. 30m, 2h; at most 7d), or end one with --off"
        );
    }
    // A typo in the PC's name is an error here, not a scope for a PC that does not exist.
    api.get::<serde::de::IgnoredAny>(&format!("/api/agents/{pc}")).await?;
    let until = kanade_shared::wire::Timestamp::now_utc() + duration.get();
    let until_text = until.format(&time::format_description::well_known::Rfc3339)?;
    // Off at the PC's own scope beats an investigation set for its group or the fleet.
    let body = if off {
        serde_json::json!({ "process_perf_enabled": false, "process_perf_expires_at": null })
    } else {
        let mut body =
            serde_json::json!({ "process_perf_enabled": true, "process_perf_expires_at": until_text });
        if let Some(n) = top_n {
            body["process_perf_top_n"] = Value::from(n);
        }
        body
    };
    let v: kanade_shared::wire::agent_config::ScopeConfig =
        api.patch_json(&format!("/api/agent/config/pc:{pc}"), &body).await?;
    let sentence = if off {
        format!("investigation of {pc} ended (process_perf_enabled=false at pc:{pc})")
    } else {
        format!(
            "investigating {pc} until {until_text} (its top processes every host_perf_interval): kanade agents processes {pc}"
        )
    };
    super::done(global.output, &v, &sentence);
    Ok(())
}

fn event_row(e: &ObsEventRow) -> Vec<String> {
    let detail: Vec<String> = e
        .data
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            // Epoch milliseconds read as a time.
            Value::Number(n) if k.ends_with("_ms") && n.as_i64().is_some_and(|ms| ms > 1_000_000_000_000) => {
                format!("{}={}", k.trim_end_matches("_ms"), when(v))
            }
            other => format!("{k}={other}"),
        })
        .collect();
    let mut detail = detail.join(" ");
    if detail.chars().count() > DETAIL_WIDTH {
        detail = detail.chars().take(DETAIL_WIDTH - 1).collect::<String>() + "…";
    }
    vec![
        super::when_ms(Some(e.at)),
        e.pc_id.clone(),
        e.kind.clone(),
        e.exec_id.clone().unwrap_or_else(|| "-".to_owned()),
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

    #[test]
    fn processes_table_snapshot() {
        let sample: ProcessSample =
            serde_json::from_value(serde_json::json!({ "at": 1795490690996_i64, "processes": [
                { "pid": 4242, "name": "backup.exe", "cpu_pct": 187.5, "mem_bytes": 734003200_i64 },
                { "pid": 1, "name": "systemd", "cpu_pct": 0.0, "mem_bytes": 12582912 }
            ]}))
            .unwrap();
        assert_snapshot(
            "processes",
            &output::table(&["TIME", "PID", "NAME", "CPU", "MEMORY"], &process_rows(&sample)),
        );
    }
}
