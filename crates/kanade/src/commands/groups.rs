//! `kanade group …`: dynamic groups.

use std::process::ExitCode;

use kanade_shared::api::Items;
use kanade_shared::api::groups::CreateGroup;
use kanade_shared::api::groups::DynamicGroup;
use kanade_shared::api::groups::GroupDeleted;
use kanade_shared::api::groups::GroupDetail;
use kanade_shared::api::groups::GroupMembers;
use kanade_shared::api::groups::SetRule;

use super::{done, when_ms};
use crate::api::Api;
use crate::cli::{Format, Global, GroupCommand};
use crate::output;

pub async fn run(cmd: GroupCommand, global: &Global) -> anyhow::Result<ExitCode> {
    let api = Api::new(global)?;
    match cmd {
        GroupCommand::Create { name, rule } => {
            let v: GroupDetail =
                api.post_json("/api/groups", &CreateGroup { name: name.clone(), rule }).await?;
            done(
                global.output,
                &v,
                &format!("dynamic group {name} created: {} members now", v.members.len()),
            );
        }
        GroupCommand::SetRule { name, rule } => {
            let v: GroupDetail = api.put_json(&format!("/api/groups/{name}"), &SetRule { rule }).await?;
            done(
                global.output,
                &v,
                &format!("dynamic group {name} changed: {} members now", v.members.len()),
            );
        }
        GroupCommand::List => {
            let v: Items<DynamicGroup> = api.get("/api/groups").await?;
            let rows = v
                .items
                .iter()
                .map(|g| vec![g.name.clone(), g.members.to_string(), when_ms(g.evaluated_ms), g.rule.clone()])
                .collect();
            output::print(global.output, &v, &["NAME", "MEMBERS", "EVALUATED", "RULE"], rows);
        }
        GroupCommand::Show { name } => {
            let v: GroupDetail = api.get(&format!("/api/groups/{name}")).await?;
            if output::structured(global.output, &v) {
                return Ok(ExitCode::SUCCESS);
            }
            let g = &v.group;
            for (k, val) in [
                ("name", g.name.clone()),
                ("rule", g.rule.clone()),
                ("members", v.members.len().to_string()),
                ("evaluated", when_ms(g.evaluated_ms)),
                ("created", format!("{} by {}", when_ms(Some(g.created_ms)), g.created_by)),
            ] {
                println!("{k:<10} {val}");
            }
        }
        GroupCommand::Members { name } => {
            let v: GroupMembers = api.get(&format!("/api/groups/{name}/members")).await?;
            match global.output {
                Format::Table | Format::Wide => {
                    for m in &v.members {
                        println!("{}", m.pc_id);
                    }
                }
                _ => output::emit(global.output, &v.members),
            }
        }
        GroupCommand::Delete { name } => {
            let v: GroupDeleted = api.delete(&format!("/api/groups/{name}")).await?;
            done(
                global.output,
                &v,
                &format!("dynamic group {name} deleted; {} PCs left it", v.members_removed),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
