//! `kanade schedule …`: schedules through the backend's `/api/schedules`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use kanade_shared::api::Items;
use kanade_shared::api::schedules::PreviewQuery;
use kanade_shared::api::schedules::SchedulePreview;
use kanade_shared::api::schedules::ScheduleView;
use serde_json::Value;
use serde_yaml_ng::Value as Yaml;

use super::{text, when_ms};
use crate::api::Api;
use crate::cli::{Format, Global, ScheduleCommand};
use crate::output;

pub async fn run(cmd: ScheduleCommand, global: &Global) -> anyhow::Result<ExitCode> {
    let api = Api::new(global)?;
    match cmd {
        ScheduleCommand::Create { file, allow_unknown } => {
            let body = load(&file)?;
            let q = kanade_shared::api::executions::LaunchQuery {
                allow_unknown: allow_unknown.then_some(true),
                ..Default::default()
            };
            let created: ScheduleView =
                api.post_json(&format!("/api/schedules{}", super::query_of(&q)?), &body).await?;
            show(global.output, &created);
        }
        ScheduleCommand::List => {
            let list: Items<ScheduleView> = api.get("/api/schedules").await?;
            let rows = list.items.iter().map(row).collect();
            output::print(
                global.output,
                &list,
                &["ID", "ENABLED", "CRON", "TZ", "JOB", "MODE", "NEXT FIRE", "LAST OUTCOME", "24H OK/FAIL"],
                rows,
            );
        }
        ScheduleCommand::Show { id } => {
            show(global.output, &api.get::<ScheduleView>(&format!("/api/schedules/{id}")).await?)
        }
        ScheduleCommand::Delete { id } => {
            api.delete::<()>(&format!("/api/schedules/{id}")).await?;
            done(global.output, &id, "deleted");
        }
        ScheduleCommand::Enable { id } => {
            let v: ScheduleView = api.post(&format!("/api/schedules/{id}/enable")).await?;
            done(global.output, &id, if v.changed == Some(true) { "enabled" } else { "was already enabled" });
        }
        ScheduleCommand::Disable { id } => {
            let v: ScheduleView = api.post(&format!("/api/schedules/{id}/disable")).await?;
            done(
                global.output,
                &id,
                if v.changed == Some(true) { "disabled" } else { "was already disabled" },
            );
        }
        ScheduleCommand::Preview { id, count } => {
            let v: SchedulePreview = api
                .get(&format!(
                    "/api/schedules/{id}/preview{}",
                    super::query_of(&PreviewQuery { n: Some(count) })?
                ))
                .await?;
            let rows = v.fires.iter().map(|f| vec![f.clone()]).collect();
            output::print(global.output, &v, &["NEXT FIRES"], rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Read a schedule YAML, inline an inline manifest's `script_file`, and check it offline so
/// every problem shows before anything is sent.
fn load(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read schedule {}", path.display()))?;
    let mut doc: Yaml =
        serde_yaml_ng::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))?;
    if let Some(execute) =
        doc.get_mut("manifest").and_then(|m| m.get_mut("execute")).and_then(Yaml::as_mapping_mut)
        && let Some(rel) = execute.remove("script_file")
    {
        let rel = rel.as_str().unwrap_or_default().to_owned();
        let script_path = path.parent().unwrap_or(Path::new(".")).join(&rel);
        let body = std::fs::read_to_string(&script_path).with_context(|| {
            format!(
                "manifest.execute.script_file: cannot read {rel:?} (resolved to {})",
                script_path.display()
            )
        })?;
        execute.insert("script".into(), body.into());
    }
    let json = serde_json::to_value(&doc).context("schedule YAML does not map to JSON")?;
    if let Err(problems) = kanade_shared::manifest::schedule_from_json(json.to_string().as_bytes()) {
        let list = problems.messages();
        bail!("{}: {} problem(s):\n  {}", path.display(), list.len(), list.join("\n  "));
    }
    Ok(json)
}

fn row(v: &ScheduleView) -> Vec<String> {
    // The schedule document's own fields, as stored.
    let s = |k: &str| v.schedule.get(k).unwrap_or(&Value::Null);
    let job = v.schedule.get("job_id").or_else(|| s("manifest").get("id")).map(text).unwrap_or_default();
    let ok = v.last_24h.get("succeeded").copied().unwrap_or(0);
    let failed: i64 = v
        .last_24h
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "succeeded" | "skipped" | "running"))
        .map(|(_, n)| n)
        .sum();
    vec![
        text(s("id")),
        if s("enabled") == &Value::Bool(true) { "yes".into() } else { "no".into() },
        text(s("cron")),
        text(s("timezone")),
        job,
        text(s("mode")),
        when_ms(v.next_fires_ms.first().copied()),
        v.state.as_ref().map_or_else(|| "-".to_owned(), |st| st.last_outcome.clone()),
        format!("{ok}/{failed}"),
    ]
}

fn show(format: Format, s: &ScheduleView) {
    if crate::output::structured(format, s) {
        return;
    }
    let next: Vec<String> = s.next_fires_ms.iter().map(|ms| when_ms(Some(*ms))).collect();
    let r = row(s);
    let fields = [
        ("id", r[0].clone()),
        ("enabled", r[1].clone()),
        ("cron", format!("{} ({})", r[2], r[3])),
        ("job", r[4].clone()),
        ("mode", r[5].clone()),
        ("next fires", if next.is_empty() { "-".into() } else { next.join(", ") }),
        ("last tick", when_ms(s.state.as_ref().map(|st| st.last_tick_ms))),
        (
            "last fire",
            format!(
                "{} {}",
                when_ms(s.state.as_ref().and_then(|st| st.last_fire_ms)),
                s.state.as_ref().and_then(|st| st.last_exec_id.clone()).unwrap_or_else(|| "-".into())
            ),
        ),
        ("last outcome", r[7].clone()),
        ("24 h ok/failed", r[8].clone()),
    ];
    for (k, v) in fields {
        println!("{k:<15} {v}");
    }
}

fn done(format: Format, id: &str, what: &str) {
    super::done(format, &serde_json::json!({ "id": id, "result": what }), &format!("schedule {id} {what}"));
}
