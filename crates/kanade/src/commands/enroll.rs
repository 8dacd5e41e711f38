//! `kanade enroll …` and `kanade agents revoke`: enrolment tokens and agents' broker
//! credentials. Bodies are the shared wire types.

use std::process::ExitCode;

use kanade_shared::wire::enroll::{CreateToken, CreatedToken, RevokedCredentials, TokenInfo, TokenList};

use super::done;
use crate::api::Api;
use crate::cli::{EnrollCommand, Global};
use crate::output;

fn rfc(t: kanade_shared::wire::Timestamp) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

pub async fn run(cmd: EnrollCommand, global: &Global) -> anyhow::Result<ExitCode> {
    let api = Api::new(global)?;
    match cmd {
        EnrollCommand::Create { expires_in, max_uses, groups } => {
            let groups = groups
                .iter()
                .map(|g| g.parse().map_err(|e| anyhow::anyhow!("--group {g:?}: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let body = CreateToken { expires_in: Some(expires_in), max_uses: Some(max_uses), groups };
            let t: CreatedToken = api.post_json("/api/enroll/tokens", &body).await?;
            if output::structured(global.output, &t) {
                return Ok(ExitCode::SUCCESS);
            }
            let groups = t.info.groups.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            println!(
                "enrolment token {} ({} use{}, expires {}{})",
                t.info.id,
                t.info.max_uses,
                if t.info.max_uses == 1 { "" } else { "s" },
                rfc(t.info.expires_at),
                if groups.is_empty() { String::new() } else { format!(", joins {groups}") }
            );
            println!("\nOn a Linux PC, as root:\n  {}", t.install.linux);
            println!("\nOn a Windows PC, in an elevated PowerShell:\n  {}", t.install.windows);
            println!(
                "\nThe token is in these lines and is not shown again; revoke it with: kanade enroll revoke {}",
                t.info.id
            );
        }
        EnrollCommand::List => {
            let list: TokenList = api.get("/api/enroll/tokens").await?;
            let now = kanade_shared::wire::Timestamp::now_utc();
            let rows = list
                .items
                .iter()
                .map(|t: &TokenInfo| {
                    let state = match t.refusal(now) {
                        None => "usable".to_owned(),
                        Some(_) if t.revoked_at.is_some() => "revoked".to_owned(),
                        Some(_) if now >= t.expires_at => "expired".to_owned(),
                        Some(_) => "used up".to_owned(),
                    };
                    let groups = t.groups.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
                    vec![
                        t.id.clone(),
                        state,
                        format!("{}/{}", t.uses, t.max_uses),
                        rfc(t.expires_at),
                        groups,
                        t.created_by.clone(),
                    ]
                })
                .collect();
            output::print(global.output, &list, &["ID", "STATE", "USES", "EXPIRES", "GROUPS", "BY"], rows);
        }
        EnrollCommand::Revoke { id } => {
            api.delete::<()>(&format!("/api/enroll/tokens/{id}")).await?;
            done(
                global.output,
                &serde_json::json!({ "revoked": id }),
                &format!("enrolment token {id} revoked; PCs enrolled with it keep their credentials"),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kanade agents revoke <pc>`.
pub async fn revoke_agent(pc: &str, global: &Global) -> anyhow::Result<ExitCode> {
    let api = Api::new(global)?;
    let r: RevokedCredentials = api.delete(&format!("/api/agents/{pc}/credentials")).await?;
    if output::structured(global.output, &r) {
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}: {}", r.pc_id, r.detail);
    Ok(ExitCode::SUCCESS)
}
