//! `kanade notify`: notifications for the people at the endpoints — send one, list them, see per
//! PC who acknowledged it, withdraw it.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use kanade_shared::wire::{
    NotificationDetail, NotificationSent, NotificationSummary, Notifications, SendNotification, TargetRequest,
};

use super::done;
use crate::api::Api;
use crate::cli::{Global, NotifyCommand};
use crate::output;

pub async fn run(cmd: NotifyCommand, global: &Global) -> anyhow::Result<ExitCode> {
    let api = Api::new(global)?;
    match cmd {
        NotifyCommand::Send { title, body, priority, all, group, pc, expires_in, allow_unknown } => {
            let body = if body == "-" {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).context("reading the body from stdin")?;
                text
            } else {
                body
            };
            let target = if all {
                TargetRequest { all: Some(true), ..Default::default() }
            } else if !group.is_empty() {
                TargetRequest { groups: Some(group), ..Default::default() }
            } else {
                TargetRequest { pcs: Some(pc), ..Default::default() }
            };
            let request = SendNotification { title, body, priority: Some(priority), target, expires_in };
            let q = kanade_shared::api::executions::LaunchQuery {
                allow_unknown: allow_unknown.then_some(true),
                ..Default::default()
            };
            let path = &format!("/api/notifications{}", super::query_of(&q)?);
            let sent: NotificationSent = api.post_json(path, &request).await?;
            done(
                global.output,
                &sent,
                &format!(
                    "sent notification {} on {}; see who acknowledged it with: kanade notify show {}",
                    sent.id,
                    sent.subjects.join(", "),
                    sent.id
                ),
            );
        }
        NotifyCommand::List => {
            let list: Notifications = api.get("/api/notifications").await?;
            if list.notifications.is_empty() && global.output.is_table() {
                println!("no notifications yet: kanade notify send --title ... --all sends one");
                return Ok(ExitCode::SUCCESS);
            }
            let rows = list.notifications.iter().map(row).collect();
            output::print(
                global.output,
                &list,
                &["ID", "STATE", "PRIORITY", "TARGET", "ACKED", "SENT", "BY", "TITLE"],
                rows,
            );
        }
        NotifyCommand::Show { id } => {
            let detail: NotificationDetail = api.get(&format!("/api/notifications/{id}")).await?;
            if global.output.is_table() {
                let s = &detail.summary;
                println!("{} [{}] {}: {}", s.id, s.priority, s.state, s.title);
                println!(
                    "sent {} by {} to {}; expires {}",
                    super::when_ms(Some(s.created_at)),
                    s.created_by,
                    s.target.describe(),
                    super::when_ms(Some(s.expires_at))
                );
                if let (Some(at), Some(by)) = (s.withdrawn_at, &s.withdrawn_by) {
                    println!("withdrawn {} by {by}", super::when_ms(Some(at)));
                }
                for line in detail.body.lines() {
                    println!("    {line}");
                }
                println!();
            }
            let rows = detail
                .pcs
                .iter()
                .map(|p| {
                    let by: Vec<String> = p
                        .acks
                        .iter()
                        .map(|a| format!("{} at {}", a.user, super::when_ms(Some(a.at))))
                        .collect();
                    vec![p.pc_id.clone(), p.status.clone(), by.join(", ")]
                })
                .collect();
            output::print(global.output, &detail, &["PC", "STATUS", "ACKNOWLEDGED BY"], rows);
        }
        NotifyCommand::Withdraw { id } => {
            let v: NotificationSummary = api.delete(&format!("/api/notifications/{id}")).await?;
            done(
                global.output,
                &v,
                &format!(
                    "withdrew notification {id}; agents drop it, and those offline drop it when they return"
                ),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn row(n: &NotificationSummary) -> Vec<String> {
    vec![
        n.id.to_string(),
        n.state.clone(),
        n.priority.clone(),
        n.target.describe(),
        format!("{}/{}", n.acked, n.recipients),
        super::when_ms(Some(n.created_at)),
        n.created_by.clone(),
        n.title.clone(),
    ]
}
