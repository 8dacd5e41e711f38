//! `kanade agent publish|releases|rollout|current|clear-quarantine`: self-update through the
//! backend.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::catalog::items;
use super::{done, text};
use crate::api::Api;
use crate::cli::{AgentCommand, Global};
use crate::output;

pub async fn run(cmd: AgentCommand, global: &Global) -> anyhow::Result<ExitCode> {
    let api = Api::new(global)?;
    match cmd {
        AgentCommand::Publish { binary, version, target } => {
            check_version(&binary, &version)?;
            let bytes =
                std::fs::read(&binary).with_context(|| format!("cannot read {}", binary.display()))?;
            let mut path = format!("/api/agent/releases?version={version}");
            if let Some(t) = target {
                path.push_str(&format!("&target={t}"));
            }
            let v = api.post_bytes(&path, bytes).await?;
            done(
                global.output,
                &v,
                &format!(
                    "published {}/{} ({} bytes, {})",
                    text(&v["version"]),
                    text(&v["target"]),
                    text(&v["size"]),
                    text(&v["digest"])
                ),
            );
        }
        AgentCommand::Releases => {
            let list = api.get("/api/agent/releases").await?;
            let rows = items(&list)
                .iter()
                .map(|r| {
                    vec![text(&r["version"]), text(&r["target"]), text(&r["size"]), text(&r["published"])]
                })
                .collect();
            output::print(global.output, &list, &["VERSION", "TARGET", "BYTES", "PUBLISHED"], rows);
        }
        AgentCommand::Rollout { version, group, pc } => {
            let v = api
                .put_json("/api/agent/rollout", &json!({ "version": version, "group": group, "pc": pc }))
                .await?;
            done(
                global.output,
                &v,
                &format!("{} now asks for {}", text(&v["scope"]), text(&v["target_version"])),
            );
        }
        AgentCommand::Current => {
            let v = api.get("/api/agent/current").await?;
            if global.output == crate::cli::Format::Json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let scopes: Vec<Vec<String>> = obj(&v["target_versions"]).map(|(k, t)| vec![k, t]).collect();
            print!("{}", output::table(&["SCOPE", "TARGET VERSION"], &scopes));
            println!();
            let running: Vec<Vec<String>> = obj(&v["running"]).map(|(k, n)| vec![k, n]).collect();
            print!("{}", output::table(&["RUNNING", "AGENTS"], &running));
            let quarantined: Vec<Vec<String>> = v["quarantined"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(version, pcs)| {
                    vec![version.clone(), array(pcs).iter().map(text).collect::<Vec<_>>().join(", ")]
                })
                .collect();
            if !quarantined.is_empty() {
                println!();
                print!("{}", output::table(&["QUARANTINED", "ON"], &quarantined));
            }
            let pending: Vec<Vec<String>> = array(&v["update_status"])
                .iter()
                .map(|p| vec![text(&p["pc_id"]), text(&p["status"])])
                .collect();
            if !pending.is_empty() {
                println!();
                print!("{}", output::table(&["PC", "UPDATE STATUS"], &pending));
            }
        }
        AgentCommand::ClearQuarantine { group, pc } => {
            let v =
                api.post_json("/api/agent/clear-quarantine", &json!({ "group": group, "pc": pc })).await?;
            done(
                global.output,
                &v,
                &format!(
                    "{}: versions quarantined before {} may be installed again",
                    text(&v["scope"]),
                    text(&v["clear_quarantine"])
                ),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn obj(v: &Value) -> impl Iterator<Item = (String, String)> + '_ {
    v.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), text(v)))
}

/// When the binary runs on this machine, it must say it is `version`.
fn check_version(binary: &Path, version: &str) -> anyhow::Result<()> {
    let Ok(out) = std::process::Command::new(binary).arg("--version").output() else {
        return Ok(()); // another platform's binary: nothing to ask
    };
    let said = String::from_utf8_lossy(&out.stdout);
    if !said.split_whitespace().any(|w| w == version) {
        bail!(
            "{} says it is {:?}, not version {version}; publish it under its own version",
            binary.display(),
            said.trim()
        );
    }
    Ok(())
}
