//! `kanade agent publish|releases|rollout|current|clear-quarantine`: self-update through the
//! backend; `kanade agent config show|set`: the `agent_config` scopes.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use kanade_shared::api::Items;
use kanade_shared::api::releases::FleetVersions;
use kanade_shared::api::releases::PublishQuery;
use kanade_shared::api::releases::QuarantineCleared;
use kanade_shared::api::releases::Release;
use kanade_shared::api::releases::ReleasePublished;
use kanade_shared::api::releases::Rollout;
use kanade_shared::api::releases::RolloutSet;
use kanade_shared::api::releases::Scope;
use kanade_shared::wire::agent_config::{AgentConfigScopes, ScopeConfig};
use serde_json::{Map, Value};

use super::{done, text};
use crate::api::Api;
use crate::cli::{AgentCommand, AgentConfigCommand, Global};
use crate::output;

pub async fn run(cmd: AgentCommand, global: &Global) -> anyhow::Result<ExitCode> {
    let api = Api::new(global)?;
    match cmd {
        AgentCommand::Publish { binary, version, target } => {
            check_version(&binary, &version)?;
            let bytes =
                std::fs::read(&binary).with_context(|| format!("cannot read {}", binary.display()))?;
            let path = format!("/api/agent/releases{}", super::query_of(&PublishQuery { version, target })?);
            let v: ReleasePublished = api.post_bytes(&path, bytes).await?;
            let digest = v.digest.as_deref().unwrap_or("-");
            done(
                global.output,
                &v,
                &format!("published {}/{} ({} bytes, {digest})", v.version, v.target, v.size),
            );
        }
        AgentCommand::Releases => {
            let list: Items<Release> = api.get("/api/agent/releases").await?;
            let rows = list
                .items
                .iter()
                .map(|r| {
                    let published = r.published.clone().unwrap_or_else(|| "-".into());
                    vec![r.version.clone(), r.target.clone(), r.size.to_string(), published]
                })
                .collect();
            output::print(global.output, &list, &["VERSION", "TARGET", "BYTES", "PUBLISHED"], rows);
        }
        AgentCommand::Rollout { version, group, pc } => {
            let v: RolloutSet = api.put_json("/api/agent/rollout", &Rollout { version, group, pc }).await?;
            done(global.output, &v, &format!("{} now asks for {}", v.scope, v.target_version));
        }
        AgentCommand::Current => {
            let v: FleetVersions = api.get("/api/agent/current").await?;
            if crate::output::structured(global.output, &v) {
                return Ok(ExitCode::SUCCESS);
            }
            let scopes: Vec<Vec<String>> =
                v.target_versions.iter().map(|(k, t)| vec![k.clone(), t.clone()]).collect();
            print!("{}", output::table(&["SCOPE", "TARGET VERSION"], &scopes));
            println!();
            let running: Vec<Vec<String>> =
                v.running.iter().map(|(k, n)| vec![k.clone(), n.to_string()]).collect();
            print!("{}", output::table(&["RUNNING", "AGENTS"], &running));
            let quarantined: Vec<Vec<String>> =
                v.quarantined.iter().map(|(version, pcs)| vec![version.clone(), pcs.join(", ")]).collect();
            if !quarantined.is_empty() {
                println!();
                print!("{}", output::table(&["QUARANTINED", "ON"], &quarantined));
            }
            let pending: Vec<Vec<String>> =
                v.update_status.iter().map(|p| vec![p.pc_id.to_string(), p.status.clone()]).collect();
            if !pending.is_empty() {
                println!();
                print!("{}", output::table(&["PC", "UPDATE STATUS"], &pending));
            }
        }
        AgentCommand::Config(AgentConfigCommand::Show) => {
            let list: AgentConfigScopes = api.get("/api/agent/config").await?;
            let rows: Vec<Vec<String>> = list
                .scopes
                .iter()
                .flat_map(|s| s.config.iter().map(|(k, v)| vec![s.scope.clone(), k.clone(), text(v)]))
                .collect();
            if rows.is_empty() && global.output.is_table() {
                println!("no scope sets anything: agents use their agent.toml and the built-in defaults");
            } else {
                output::print(global.output, &list, &["SCOPE", "FIELD", "VALUE"], rows);
            }
        }
        AgentCommand::Config(AgentConfigCommand::Set { fields, group, pc }) => {
            let edit = edit_from_args(&fields)?;
            let scope = match (group, pc) {
                (Some(g), _) => format!("group:{g}"),
                (None, Some(p)) => format!("pc:{p}"),
                (None, None) => "global".to_owned(),
            };
            let set: ScopeConfig =
                api.patch_json(&format!("/api/agent/config/{scope}"), &Value::Object(edit)).await?;
            let now: Vec<String> = set.config.iter().map(|(k, v)| format!("{k} = {}", text(v))).collect();
            let now =
                if now.is_empty() { "nothing (the wider scope applies)".to_owned() } else { now.join(", ") };
            done(global.output, &set, &format!("{} now sets {now}", set.scope));
        }
        AgentCommand::ClearQuarantine { group, pc } => {
            let v: QuarantineCleared =
                api.post_json("/api/agent/clear-quarantine", &Scope { group, pc }).await?;
            let sentence = format!(
                "{}: versions quarantined before {} may be installed again",
                v.scope, v.clear_quarantine
            );
            done(global.output, &v, &sentence);
        }
    }
    Ok(ExitCode::SUCCESS)
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

/// `KEY=VALUE` arguments as the JSON edit the API takes: `KEY=` removes the field (null).
fn edit_from_args(args: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut edit = Map::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            bail!("{arg:?}: write KEY=VALUE (e.g. heartbeat_interval=30s), or KEY= to remove a field");
        };
        if key.is_empty() {
            bail!("{arg:?}: the field name before = is missing");
        }
        let value = if value.is_empty() {
            Value::Null
        } else {
            kanade_shared::wire::agent_config::typed_value(key, value)
        };
        if edit.insert(key.to_owned(), value).is_some() {
            bail!("{key} is given twice");
        }
    }
    Ok(edit)
}

#[cfg(test)]
mod config_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_value_arguments_become_the_edit() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let edit = edit_from_args(&args(&["heartbeat_interval=2s", "target_version="])).unwrap();
        assert_eq!(Value::Object(edit), json!({ "heartbeat_interval": "2s", "target_version": null }));
        for (bad, says) in [
            (&["heartbeat_interval"][..], "write KEY=VALUE"),
            (&["=2s"][..], "the field name before = is missing"),
            (&["a=1", "a=2"][..], "a is given twice"),
        ] {
            let err = edit_from_args(&args(bad)).unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }
}
