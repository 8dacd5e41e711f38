//! The agent's observability events (SPEC §12) on `obs.<pc>`, queued in the durable outbox like
//! results, so an event raised while the broker is away is sent when it is back, once.
//! `job.started` / `job.finished` are not sent from here: the backend derives them from the
//! run's `started` event and result, which travel anyway (two fewer messages per run).

use kanade_shared::boot::Quarantine;
use kanade_shared::wire::{self, ObsEvent, Timestamp};
use kanade_shared::{ExecId, subjects};
use serde_json::{Map, Value};

use super::Ctx;
use crate::store::Outgoing;

/// Store key: the newest quarantine already reported as `agent.rolled_back` (epoch ms).
const REPORTED_QUARANTINE: &str = "obs_quarantine_reported_ms";

fn ms(t: Timestamp) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The outbox message for `event`; `None` only if it cannot be encoded.
pub(crate) fn outgoing(ctx: &Ctx, event: &ObsEvent) -> Option<Outgoing> {
    Some(Outgoing {
        seq: 0,
        // Per stream, not per subject, so the PC is part of it; the secret keeps others from
        // claiming the id first.
        msg_id: format!("obs.{}.{}.{}", event.pc_id, event.event_id, ctx.msg_secret),
        subject: subjects::obs(&event.pc_id),
        payload: wire::encode(event).ok()?,
    })
}

/// A new event of this agent, with a fresh id.
pub(crate) fn event(ctx: &Ctx, kind: &str, exec_id: Option<ExecId>, data: Map<String, Value>) -> ObsEvent {
    ObsEvent {
        schema: wire::SCHEMA,
        event_id: uuid::Uuid::now_v7().to_string(),
        pc_id: ctx.settings.pc.clone(),
        kind: kind.to_owned(),
        at: Timestamp::now_utc(),
        exec_id,
        data,
    }
}

/// Queue an event of this agent and wake the publisher; `false` when the store could not take
/// it (logged), which costs the event, never the caller's work.
pub(crate) fn send(ctx: &Ctx, kind: &str, data: Map<String, Value>) -> bool {
    let Some(message) = outgoing(ctx, &event(ctx, kind, None, data)) else { return false };
    let queued = match ctx.store.enqueue(&message) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(kind, error = %e, "cannot queue an observability event");
            false
        }
    };
    ctx.outbox_wake.notify_one();
    queued
}

/// Quarantines recorded after `reported_ms`: each is a rollback not yet on the timeline.
pub fn unreported(quarantined: &[Quarantine], reported_ms: i64) -> Vec<&Quarantine> {
    let mut out: Vec<&Quarantine> = quarantined.iter().filter(|q| ms(q.at) > reported_ms).collect();
    out.sort_by_key(|q| q.at);
    out
}

/// `Some(previous version)` when this is the first start of `running` after an update (its
/// trial's first attempt): the moment the timeline says "updated". Later starts of the same
/// trial (crashes) say nothing new.
pub fn first_start_of_update(
    boot: &kanade_shared::boot::BootState,
    running: &kanade_shared::Version,
) -> Option<Option<kanade_shared::Version>> {
    boot.trial.as_ref().filter(|t| &t.version == running && t.attempts <= 1).map(|t| t.previous.clone())
}

/// At start: `agent.started`, `agent.updated` on a new version's first start, and `agent.rolled_back` for every quarantine since the last start
/// (the boot sentinel rolls back before the runtime, and the store, exist).
pub(crate) fn at_start(ctx: &Ctx) {
    let boot = ctx.update.lock().unwrap_or_else(|p| p.into_inner()).boot.clone();
    let reported = ctx.store.meta(REPORTED_QUARANTINE).ok().flatten().and_then(|v| v.parse().ok());
    // A store from before events existed: its old quarantines are history, not news.
    let reported = reported.unwrap_or_else(|| boot.quarantined.iter().map(|q| ms(q.at)).max().unwrap_or(0));
    // The mark moves only past rollbacks that were queued: one the store refused is reported
    // at the next start.
    let mut newest = reported;
    for q in unreported(&boot.quarantined, reported) {
        let data = Map::from_iter([
            ("version".to_owned(), Value::from(q.version.to_string())),
            ("reason".to_owned(), Value::from(q.reason.clone())),
            ("running".to_owned(), Value::from(ctx.version.to_string())),
        ]);
        if !send(ctx, wire::obs::AGENT_ROLLED_BACK, data) {
            break;
        }
        newest = ms(q.at);
    }
    if let Err(e) = ctx.store.set_meta(REPORTED_QUARANTINE, &newest.to_string()) {
        tracing::warn!(error = %e, "cannot record which rollbacks were reported");
    }
    let mut data = Map::from_iter([
        ("version".to_owned(), Value::from(ctx.version.to_string())),
        ("os".to_owned(), Value::from(std::env::consts::OS)),
    ]);
    if let Some(trial) = &boot.trial {
        data.insert("on_trial".into(), Value::from(trial.version.to_string()));
    }
    send(ctx, wire::obs::AGENT_STARTED, data);
    if let Some(from) = first_start_of_update(&boot, &ctx.version) {
        let data = Map::from_iter([
            ("version".to_owned(), Value::from(ctx.version.to_string())),
            ("from".to_owned(), from.map_or(Value::Null, |v| Value::from(v.to_string()))),
        ]);
        send(ctx, wire::obs::AGENT_UPDATED, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_is_news_at_its_first_start_only() {
        use kanade_shared::boot::{BootState, Trial};
        let v = |s: &str| s.parse::<kanade_shared::Version>().unwrap();
        let trial = |attempts| BootState {
            trial: Some(Trial { version: v("2"), previous: Some(v("1")), attempts }),
            ..Default::default()
        };
        assert_eq!(first_start_of_update(&trial(1), &v("2")), Some(Some(v("1"))));
        assert_eq!(first_start_of_update(&trial(2), &v("2")), None, "a crash restart");
        assert_eq!(first_start_of_update(&trial(1), &v("1")), None, "the old binary started again");
        assert_eq!(first_start_of_update(&BootState::default(), &v("2")), None);
    }

    #[test]
    fn only_quarantines_after_the_last_report_are_news() {
        let at = |s: i64| Timestamp::from_unix_timestamp(s).unwrap();
        let q = |v: &str, s: i64| Quarantine { version: v.parse().unwrap(), at: at(s), reason: "x".into() };
        let list = [q("3", 300), q("1", 100), q("2", 200)];
        let versions =
            |r: i64| unreported(&list, r).iter().map(|q| q.version.to_string()).collect::<Vec<_>>();
        assert_eq!(versions(0), ["1", "2", "3"]);
        assert_eq!(versions(200_000), ["3"]);
        assert!(versions(300_000).is_empty());
    }
}
