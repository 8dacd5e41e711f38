//! The cron scheduler. Every backend follows the `schedules` bucket (`store.rs`); only the
//! holder of the leader lease (`crate::lease`) fires. Each due tick is decided by a pure policy
//! (`policy.rs`) over what the schedule's earlier runs achieved, then goes through the exec
//! pipeline like an operator's exec, audited with actor `scheduler`.
//!
//! No double fire: a tick is handled once (the last handled tick is persisted, and ticks missed
//! while busy or down are skipped, not replayed), a schedule's next tick waits for its previous
//! one to finish, and PCs with a dispatched run that has not reported are not dispatched again
//! (derived from `executions.schedule_id`, so it survives restarts).

pub mod policy;
pub mod store;
pub mod times;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kanade_shared::manifest::{Plan, Schedule, ScheduleJob, Target};
use kanade_shared::wire::Retry;
use tokio::sync::watch;

use crate::db::now_ms;
use crate::lease::Leadership;
use crate::pipeline::{ExecError, Origin, Pipeline, audit, catalog, plan};
use policy::Decision;
pub use store::Schedules;

/// How often due ticks are looked for; also the worst-case lateness of a fire.
const POLL: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct Scheduler {
    pub pipeline: Pipeline,
    pub schedules: Schedules,
    /// Names this backend in the lease and the logs.
    pub instance: String,
    /// Whether this backend holds the lease right now.
    pub is_leader: Leadership,
}

/// Follow the schedules and fire due ticks while `is_leader`.
pub async fn run(
    pipeline: Pipeline,
    schedules: Schedules,
    instance: String,
    is_leader: Leadership,
    mut stop: watch::Receiver<bool>,
) {
    let sched_kv = loop {
        match pipeline.buckets.get("schedules").await {
            Ok(kv) => break kv,
            Err(e) => {
                tracing::warn!(error = %e, "scheduler cannot open its bucket; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    };
    tokio::spawn(store::follow(sched_kv, schedules.clone(), stop.clone()));
    let s = Scheduler { pipeline, schedules, instance, is_leader };
    ticker(&s, &mut stop).await;
}

async fn ticker(s: &Scheduler, stop: &mut watch::Receiver<bool>) {
    // Per schedule: the last tick handled (or skipped); the next fire is the first after it.
    let mut cursors: HashMap<String, i64> = HashMap::new();
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        let now = now_ms();
        let leader = s.is_leader.leads();
        let snapshot = s.schedules.snapshot();
        let known: HashSet<String> = snapshot.iter().map(|x| x.id.to_string()).collect();
        cursors.retain(|id, _| known.contains(id));
        for sch in snapshot {
            let id = sch.id.to_string();
            if !cursors.contains_key(&id) {
                let key = id.clone();
                let persisted = s.pipeline.db.schedule_state(key).await.ok().flatten();
                cursors.insert(id.clone(), persisted.map_or(now, |p| p.last_tick_ms.max(now)));
            }
            let cursor = cursors.get_mut(&id).expect("inserted above");
            // Followers and disabled schedules do not bank ticks to fire later.
            if !leader || !sch.enabled {
                *cursor = now;
                continue;
            }
            let Ok(tz) = times::zone(&sch.timezone) else {
                *cursor = now;
                continue;
            };
            let Some(due) = times::next_after(&sch.cron, &tz, *cursor).filter(|t| *t <= now) else {
                continue;
            };
            let mut tick = due;
            let mut missed = 0;
            while let Some(next) = times::next_after(&sch.cron, &tz, tick).filter(|t| *t <= now) {
                tick = next;
                missed += 1;
            }
            *cursor = tick;
            if missed > 0 {
                tracing::warn!(schedule = id, missed, "ticks missed; firing the latest only");
            }
            // Asked again after the awaits above: a backend that froze meanwhile fires nothing.
            if !s.is_leader.leads() {
                continue;
            }
            if !busy.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone()) {
                tracing::info!(schedule = id, "previous tick still running; this tick is skipped");
                continue;
            }
            let (s2, busy2) = (s.clone(), busy.clone());
            tokio::spawn(async move {
                let outcome = match fire(&s2, &sch, tick).await {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        tracing::warn!(schedule = %sch.id, error = %e, "schedule tick failed");
                        format!("error: {e}")
                    }
                };
                let (key, fired) = (sch.id.to_string(), outcome.strip_prefix("fired ").map(str::to_owned));
                let fired_exec =
                    fired.as_deref().and_then(|f| f.split_whitespace().next()).map(|e| (tick, e.to_owned()));
                let record = s2.pipeline.db.record_tick(key, tick, fired_exec, outcome);
                if let Err(e) = record.await {
                    tracing::warn!(schedule = %sch.id, error = %e, "cannot record the tick");
                }
                busy2.lock().unwrap_or_else(|p| p.into_inner()).remove(&sch.id.to_string());
            });
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = s.schedules.changed() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Everyone a plan can reach: its target, or the union of its waves.
pub fn reach(plan: &Plan) -> Target {
    let mut t = plan.target.clone();
    for w in plan.rollout.iter().flat_map(|r| &r.waves) {
        t.pcs.extend(w.pcs.iter().cloned());
        t.groups.extend(w.group.iter().cloned());
    }
    t
}

/// Handle one tick; returns what happened, starting with `fired <exec_id>` when it fired.
async fn fire(s: &Scheduler, sch: &Schedule, tick_ms: i64) -> Result<String, ExecError> {
    let p = &s.pipeline;
    // A frozen fleet runs nothing on schedule; the tick is recorded as skipped with the reason.
    if let Some(f) = p.db.freeze().await?.filter(|f| f.covers(kanade_shared::wire::Timestamp::now_utc())) {
        tracing::info!(schedule = %sch.id, until = %f.until, "fleet frozen; tick skipped");
        return Ok(format!("skipped: {}", f.describe()));
    }
    let manifest = match &sch.job {
        ScheduleJob::Id(id) => catalog::load(&p.buckets, id).await?,
        ScheduleJob::Inline(m) => (**m).clone(),
    };
    let agents = p.db.known_agents().await?;
    let now = now_ms();
    let expected = plan::expected_pcs(&reach(&sch.plan), &agents, now);
    let id = sch.id.to_string();
    let key = id.clone();
    let history = p.db.schedule_history(key).await?;
    let decision = policy::decide(&policy::Inputs {
        mode: sch.mode,
        cooldown_ms: sch.cooldown.map(|d| d.get().as_millis() as i64),
        has_rollout: sch.plan.rollout.is_some(),
        expected: &expected,
        last_success: &history.last_success,
        in_flight: &history.in_flight,
        now_ms: now,
    });
    let origin = Origin {
        actor: "scheduler".to_owned(),
        source: Some(format!("schedule {id} tick {tick_ms} by {}", s.instance)),
        client: "scheduler".to_owned(),
        schedule_id: Some(id.clone()),
        retry: sch.on_failure.map(|f| Retry { max: f.retry.max, backoff_secs: f.retry.backoff.as_secs() }),
        // Checked when the schedule was saved (http/schedules.rs); a PC retired since must not
        // stop the others.
        allow_unknown: true,
    };
    let plan = match decision {
        Decision::Whole => sch.plan.clone(),
        Decision::Pcs(pcs) => Plan {
            target: Target {
                pcs: pcs.into_iter().collect::<BTreeSet<_>>().into_iter().collect(),
                groups: vec![],
                all: false,
            },
            jitter: sch.plan.jitter,
            rollout: None,
            start_within: sch.plan.start_within,
            override_freeze: false,
        },
        Decision::Skip(why) => return Ok(format!("skipped: {why}")),
        Decision::Done if sch.auto_disable_when_done && sch.enabled => {
            set_enabled(p, &id, false, "scheduler", (None, "scheduler"), "schedule.auto_disabled").await?;
            tracing::info!(schedule = id, "every expected PC succeeded; schedule disabled");
            return Ok("done: every expected PC succeeded; schedule disabled".to_owned());
        }
        Decision::Done => return Ok("done: every expected PC succeeded".to_owned()),
    };
    let launched = p.exec(&manifest, &plan, &origin).await?;
    tracing::info!(schedule = id, exec_id = %launched.exec_id, pcs = launched.target_count, "schedule fired");
    Ok(format!("fired {} on {} PC(s)", launched.exec_id, launched.target_count))
}

/// Enable or disable a stored schedule (compare-and-set on its revision), audited.
pub async fn set_enabled(
    p: &Pipeline,
    id: &str,
    enabled: bool,
    actor: &str,
    from: (Option<String>, &str),
    action: &str,
) -> Result<bool, ExecError> {
    let kv = p.buckets.get("schedules").await.map_err(|e| ExecError::broker("opening KV schedules", e))?;
    let entry = kv
        .entry(id)
        .await
        .map_err(|e| ExecError::broker(format!("reading schedule {id}"), e))?
        .filter(|e| e.operation == async_nats::jetstream::kv::Operation::Put)
        .ok_or_else(|| ExecError::NotFound(format!("schedule {id} does not exist (kanade schedule list)")))?;
    let mut sch = kanade_shared::manifest::schedule_from_json(&entry.value)
        .map_err(|p| ExecError::Invalid(format!("stored schedule {id} does not validate: {p}")))?;
    if sch.enabled == enabled {
        return Ok(false);
    }
    sch.enabled = enabled;
    let json = serde_json::to_vec(&sch).map_err(|e| ExecError::Invalid(e.to_string()))?;
    kv.update(id, json.into(), entry.revision)
        .await
        .map_err(|e| ExecError::broker(format!("schedule {id} changed while being updated; try again"), e))?;
    audit(
        &p.js,
        actor,
        action,
        Some(id.to_owned()),
        from.0,
        from.1,
        serde_json::json!({ "enabled": enabled }),
    )
    .await?;
    Ok(true)
}
