//! Dynamic groups made real: each pass evaluates every group's rule over the agents' fields and
//! facts, records who is in, and writes the changed PCs' `agent_groups` values (the KV every
//! agent already follows), so commands, waves and schedules aimed at a group reach its members
//! with nothing else changed. Runs every minute on the leader, and right after a group is
//! created, changed or deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kanade_shared::rule::{Field, Rule};
use kanade_shared::wire::AgentGroups;
use kanade_shared::{GroupName, PcId};
use tokio::sync::watch;

use crate::buckets::Buckets;
use crate::db::groups::RuleInputs;
use crate::db::{Db, DbError, now_ms};
use crate::lease::Leadership;

const EVERY: Duration = Duration::from_secs(60);
/// Passes between two that check every PC's `agent_groups` value.
const FULL_EVERY: u64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("agent_groups: {0}")]
    Broker(String),
}

/// What one pass changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Group → (joined, left).
    pub changes: BTreeMap<String, (Vec<PcId>, Vec<PcId>)>,
    /// PCs whose agent_groups value was written.
    pub written: usize,
}

/// The PCs whose values match `rule` (pure).
pub fn members(rule: &Rule, inputs: &RuleInputs) -> BTreeSet<PcId> {
    inputs
        .iter()
        .filter(|(_, values)| rule.matches(&|f: &Field| values.get(f).cloned().unwrap_or_default()))
        .map(|(pc, _)| pc.clone())
        .collect()
}

/// One pass: every group's members recomputed and stored; the `agent_groups` value of each PC
/// that joined or left rewritten — of every known PC when `full`, which repairs a value a
/// failed or interrupted write left behind.
pub async fn run_pass(db: &Db, buckets: &Buckets, full: bool) -> Result<Pass, PassError> {
    let groups = db.dynamic_groups().await?;
    let mut rules = Vec::new();
    for g in groups {
        match kanade_shared::rule::parse(&g.rule) {
            Ok(rule) => rules.push((g.name, rule)),
            // Stored rules were checked when stored; one that no longer parses is left as it is.
            Err(e) => {
                tracing::warn!(group = g.name, error = %e, "skipping a dynamic group whose rule does not parse")
            }
        }
    }
    let fields: BTreeSet<Field> = rules.iter().flat_map(|(_, r)| r.fields()).collect();
    let inputs = db.rule_inputs(fields.into_iter().collect()).await?;
    let now = now_ms();
    let mut pass = Pass::default();
    let mut touched = BTreeSet::new();
    for (name, rule) in &rules {
        let (joined, left) = db.set_dynamic_members(name.clone(), members(rule, &inputs), now).await?;
        touched.extend(joined.iter().chain(&left).cloned());
        if !joined.is_empty() || !left.is_empty() {
            pass.changes.insert(name.clone(), (joined, left));
        }
    }
    if full {
        touched.extend(inputs.keys().cloned());
    }
    pass.written = write_groups(db, buckets, touched).await?;
    Ok(pass)
}

/// Rewrite the `agent_groups` value of each of `pcs` with its dynamic groups as stored now,
/// keeping what operators assigned; the number written (unchanged values are not).
pub async fn write_groups(
    db: &Db,
    buckets: &Buckets,
    pcs: impl IntoIterator<Item = PcId>,
) -> Result<usize, PassError> {
    let kv = buckets.get("agent_groups").await.map_err(|e| PassError::Broker(e.to_string()))?;
    let mut written = 0;
    for pc in pcs {
        let dynamic: Vec<GroupName> =
            db.dynamic_groups_of(pc.clone()).await?.iter().filter_map(|g| g.parse().ok()).collect();
        let changed = update_agent_groups(&kv, &pc, |now| {
            AgentGroups::compose(now.assigned().to_vec(), dynamic.clone())
        })
        .await
        .map_err(PassError::Broker)?;
        written += usize::from(changed.1);
    }
    Ok(written)
}

/// How often a compare-and-set on one `agent_groups` key is tried before giving up.
const CAS_TRIES: usize = 8;

/// Change one PC's `agent_groups` value with `edit`, compare-and-set on the key's revision so
/// an operator's assignment and a dynamic-group pass never drop each other's part. The value
/// now, and whether it was written (`false`: `edit` left it as it was).
pub async fn update_agent_groups(
    kv: &async_nats::jetstream::kv::Store,
    pc: &PcId,
    edit: impl Fn(AgentGroups) -> AgentGroups,
) -> Result<(AgentGroups, bool), String> {
    use async_nats::jetstream::kv::{CreateErrorKind, Operation, UpdateErrorKind};
    for _ in 0..CAS_TRIES {
        let entry = kv.entry(pc.as_str()).await.map_err(|e| e.to_string())?;
        let live = entry.as_ref().filter(|e| e.operation == Operation::Put);
        let now: AgentGroups = live.and_then(|e| serde_json::from_slice(&e.value).ok()).unwrap_or_default();
        let next = edit(now.clone());
        if live.is_some() && next == now {
            return Ok((now, false));
        }
        let body = serde_json::to_vec(&next).unwrap_or_default();
        let raced = match entry {
            Some(e) => match kv.update(pc.as_str(), body.into(), e.revision).await {
                Ok(_) => false,
                Err(err) if err.kind() == UpdateErrorKind::WrongLastRevision => true,
                Err(err) => return Err(err.to_string()),
            },
            None => match kv.create(pc.as_str(), body.into()).await {
                Ok(_) => false,
                Err(err) if err.kind() == CreateErrorKind::AlreadyExists => true,
                Err(err) => return Err(err.to_string()),
            },
        };
        if !raced {
            return Ok((next, true));
        }
    }
    Err(format!("agent_groups {pc}: changed by others {CAS_TRIES} times in a row; try again"))
}

/// A pass every minute while this backend leads (a lone backend always does).
pub async fn worker(db: Db, buckets: Buckets, mut is_leader: Leadership, mut stop: watch::Receiver<bool>) {
    let _ = tokio::time::timeout(Duration::from_secs(5), is_leader.changed()).await;
    let mut passes: u64 = 0;
    loop {
        if is_leader.leads() || !db.shared() {
            // Every tenth pass (and the first) checks every PC's value, not only the changed.
            let full = passes.is_multiple_of(FULL_EVERY);
            passes += 1;
            match run_pass(&db, &buckets, full).await {
                Ok(pass) if !pass.changes.is_empty() => {
                    tracing::info!(changes = ?pass.changes, written = pass.written, "dynamic groups updated")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "dynamic group pass failed; retrying at the next one"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn members_are_the_pcs_whose_values_match() {
        let mut inputs: RuleInputs = BTreeMap::new();
        for (pc, family, free) in
            [("PC-A", "windows", vec![80, 3]), ("PC-B", "windows", vec![50]), ("PC-C", "linux", vec![1])]
        {
            let mut values = HashMap::new();
            values.insert(Field::Agent("os.family".into()), vec![json!(family)]);
            values.insert(
                Field::Fact { table: "volumes".into(), column: "free_pct".into() },
                free.into_iter().map(|f| json!(f)).collect(),
            );
            inputs.insert(pc.parse().unwrap(), values);
        }
        let rule = kanade_shared::rule::parse("os.family = windows and facts.volumes.free_pct < 10").unwrap();
        let got: Vec<String> = members(&rule, &inputs).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["PC-A"]);
        let none = kanade_shared::rule::parse("facts.volumes.free_pct > 100").unwrap();
        assert!(members(&none, &inputs).is_empty());
    }
}
