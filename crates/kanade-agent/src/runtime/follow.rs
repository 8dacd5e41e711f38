//! Following this agent's own keys in `agent_groups` and `agent_config`: read with KV gets at
//! start, after every reconnect, and whenever a change notification arrives on the core subjects
//! the buckets republish to. No watcher, so no JetStream consumer, per agent.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kanade_shared::GroupName;
use kanade_shared::subjects;
use kanade_shared::wire::{AgentConfigPatch, AgentGroups};

use super::{Ctx, kv};

const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn follow_loop(ctx: Arc<Ctx>) {
    let mut stop = ctx.shutdown.clone();
    let mut reconnects = kanade_shared::nats::Reconnects::new(ctx.connects.clone());
    loop {
        let groups = ctx.groups.read().await.clone();
        let mut notify_subjects = vec![subjects::notify_agent_groups(&ctx.settings.pc)];
        notify_subjects
            .extend(subjects::agent_config_keys(&ctx.settings.pc, &groups).into_iter().map(|(s, _)| s));
        let mut subs = Vec::new();
        for subject in notify_subjects {
            match ctx.client.subscribe(subject.clone()).await {
                Ok(sub) => subs.push(sub),
                Err(e) => tracing::warn!(subject, error = %e, "cannot follow config changes"),
            }
        }
        let mut changes = futures::stream::select_all(subs);
        loop {
            tokio::select! {
                Some(_) = changes.next() => {}
                // Changes made while disconnected were not heard.
                () = reconnects.next() => if !super::spread_after_reconnect(&mut stop).await { return },
                () = super::stopped(&mut stop) => return,
            }
            if refresh(&ctx).await {
                // New groups: follow their config keys too.
                break;
            }
        }
    }
}

/// Re-read groups and config. Returns whether the group set changed.
pub(crate) async fn refresh(ctx: &Ctx) -> bool {
    let groups_changed = match tokio::time::timeout(READ_TIMEOUT, read_groups(ctx)).await {
        Ok(Ok(Some(groups))) => {
            let mut current = ctx.groups.write().await;
            if *current != groups {
                tracing::info!(from = ?*current, to = ?groups, "group membership changed");
                *current = groups;
                true
            } else {
                false
            }
        }
        Ok(Ok(None)) => false,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read agent_groups; keeping the current groups");
            false
        }
        Err(_) => false,
    };
    if groups_changed {
        ctx.groups_changed.notify_one();
        ctx.notification_groups_changed.notify_one();
        ctx.beat_now.notify_one();
    }
    match tokio::time::timeout(READ_TIMEOUT, read_config(ctx)).await {
        Ok(Ok(patch)) => {
            ctx.live_config.send_if_modified(|current| {
                let changed = *current != patch;
                if changed {
                    tracing::info!(config = ?patch, "agent_config changed");
                    *current = patch;
                }
                changed
            });
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot read agent_config; keeping the current settings"),
        Err(_) => {}
    }
    groups_changed
}

/// agent.toml's groups first, then the operator-assigned ones, without repeats. `None` when the
/// stored value is malformed (logged; the current groups stay).
async fn read_groups(ctx: &Ctx) -> anyhow::Result<Option<Vec<GroupName>>> {
    let assigned = match kv::get(ctx, "agent_groups", ctx.settings.pc.as_str()).await? {
        None => AgentGroups::default(),
        Some(bytes) if bytes.is_empty() => AgentGroups::default(),
        Some(bytes) => match kanade_shared::wire::decode::<AgentGroups>(&bytes) {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "agent_groups value for this pc is malformed; ignoring it");
                return Ok(None);
            }
        },
    };
    let mut groups = ctx.settings.groups.clone();
    for g in assigned.groups {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(Some(groups))
}

async fn read_config(ctx: &Ctx) -> anyhow::Result<AgentConfigPatch> {
    let groups = ctx.groups.read().await.clone();
    let mut patches = Vec::new();
    for (_, key) in subjects::agent_config_keys(&ctx.settings.pc, &groups) {
        if let Some(bytes) = kv::get(ctx, "agent_config", &key).await?.filter(|b| !b.is_empty()) {
            match kanade_shared::wire::decode::<AgentConfigPatch>(&bytes) {
                Ok(p) => patches.push(p),
                Err(e) => tracing::warn!(key, error = %e, "agent_config value is malformed; ignoring it"),
            }
        }
    }
    Ok(AgentConfigPatch::merge(&patches))
}
