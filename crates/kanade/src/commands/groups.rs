//! `kanade group …`: dynamic groups.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::{done, text, when};
use crate::api::Api;
use crate::cli::{Format, Global, GroupCommand};
use crate::output;

pub async fn run(cmd: GroupCommand, global: &Global) -> anyhow::Result<ExitCode> {
    let api = Api::new(global)?;
    match cmd {
        GroupCommand::Create { name, rule } => {
            let v = api.post_json("/api/groups", &json!({ "name": name, "rule": rule })).await?;
            done(
                global.output,
                &v,
                &format!("dynamic group {name} created: {} members now", member_count(&v)),
            );
        }
        GroupCommand::SetRule { name, rule } => {
            let v = api.put_json(&format!("/api/groups/{name}"), &json!({ "rule": rule })).await?;
            done(
                global.output,
                &v,
                &format!("dynamic group {name} changed: {} members now", member_count(&v)),
            );
        }
        GroupCommand::List => {
            let v = api.get("/api/groups").await?;
            let items = v["items"].as_array().cloned().unwrap_or_default();
            let rows = items
                .iter()
                .map(|g| {
                    vec![text(&g["name"]), text(&g["members"]), when(&g["evaluated_ms"]), text(&g["rule"])]
                })
                .collect();
            output::print(global.output, &v, &["NAME", "MEMBERS", "EVALUATED", "RULE"], rows);
        }
        GroupCommand::Show { name } => {
            let v = api.get(&format!("/api/groups/{name}")).await?;
            if output::structured(global.output, &v) {
                return Ok(ExitCode::SUCCESS);
            }
            let g = &v["group"];
            for (k, val) in [
                ("name", text(&g["name"])),
                ("rule", text(&g["rule"])),
                ("members", member_count(&v).to_string()),
                ("evaluated", when(&g["evaluated_ms"])),
                ("created", format!("{} by {}", when(&g["created_ms"]), text(&g["created_by"]))),
            ] {
                println!("{k:<10} {val}");
            }
        }
        GroupCommand::Members { name } => {
            let v = api.get(&format!("/api/groups/{name}/members")).await?;
            match global.output {
                Format::Table | Format::Wide => {
                    for m in v["members"].as_array().into_iter().flatten() {
                        println!("{}", text(&m["pc_id"]));
                    }
                }
                _ => output::emit(global.output, &v["members"]),
            }
        }
        GroupCommand::Delete { name } => {
            let v = api.delete(&format!("/api/groups/{name}")).await?;
            done(
                global.output,
                &v,
                &format!("dynamic group {name} deleted; {} PCs left it", text(&v["members_removed"])),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn member_count(v: &Value) -> usize {
    v["members"].as_array().map_or(0, Vec::len)
}
