//! Agent presence for the live stream: every few seconds the agents table is compared with the
//! previous look, and agents that crossed the alive window are announced up or down. Cheaper
//! than one event per heartbeat, and it notices silence, which heartbeats alone cannot.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use kanade_shared::PcId;

use tokio::sync::watch;

use crate::db::{Db, now_ms};
use crate::events::Bus;
use crate::pipeline::plan::ALIVE_WINDOW_MS;

const EVERY: Duration = Duration::from_secs(2);

/// Who is online now, and who came up or went down since `before`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Transitions {
    pub online: HashSet<PcId>,
    pub up: Vec<PcId>,
    pub down: Vec<PcId>,
}

pub fn transitions(before: &HashSet<PcId>, last_seen: &[(PcId, i64)], now_ms: i64) -> Transitions {
    let online: HashSet<PcId> = last_seen
        .iter()
        .filter(|(_, seen)| now_ms - seen <= ALIVE_WINDOW_MS)
        .map(|(pc, _)| pc.clone())
        .collect();
    let mut up: Vec<PcId> = online.difference(before).cloned().collect();
    let mut down: Vec<PcId> = before.difference(&online).cloned().collect();
    up.sort();
    down.sort();
    Transitions { online, up, down }
}

/// On the first look after a start, PCs that went silent within this long are recorded offline
/// too (a backend that was down when they went quiet); the event's id makes it once.
const CATCH_UP_MS: i64 = 24 * 3600 * 1000;

/// Who gets an `agent.offline` event now, with their last beat: every PC silent longer than
/// `after` that is not in `recorded` with that same beat. `recorded` is `None` on the first
/// look, which records only PCs that went silent within [`CATCH_UP_MS`] (a backend that was
/// down when they went quiet); older silences are history. The event's id is the last beat's
/// time, so two backends that both notice store it once.
pub fn newly_silent(
    recorded: Option<&HashMap<PcId, i64>>,
    last_seen: &[(PcId, i64)],
    now_ms: i64,
    after: i64,
) -> Vec<(PcId, i64)> {
    last_seen
        .iter()
        .filter(|(pc, seen)| {
            now_ms - seen > after
                && match recorded {
                    None => now_ms - seen <= CATCH_UP_MS + after,
                    Some(r) => r.get(pc) != Some(seen),
                }
        })
        .cloned()
        .collect()
}

pub async fn worker(db: Db, bus: Bus, offline_after_ms: i64, mut stop: watch::Receiver<bool>) {
    let mut online: Option<HashSet<PcId>> = None;
    let mut recorded: Option<HashMap<PcId, i64>> = None;
    loop {
        // Taken before the read: a beat that lands after it is newer than `now`, never judged
        // silent by it.
        let now = now_ms();
        match db.last_seen().await {
            Ok(seen) => {
                let silent = newly_silent(recorded.as_ref(), &seen, now, offline_after_ms);
                match db.record_offline(silent, offline_after_ms).await {
                    Ok(()) => {
                        let all = seen.iter().filter(|(_, s)| now - s > offline_after_ms).cloned();
                        recorded = Some(all.collect());
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot record agents going offline; retrying"),
                }
                let t = transitions(online.as_ref().unwrap_or(&HashSet::new()), &seen, now);
                // The first look only learns the state; announcing the whole fleet as "up" at every
                // backend start would be noise.
                if online.is_some() {
                    t.up.into_iter().for_each(|pc| bus.agent_up(pc));
                    t.down.into_iter().for_each(|pc| bus.agent_down(pc));
                }
                online = Some(t.online);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read agent presence; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_crossing_the_window_are_announced_once() {
        let now = 10 * ALIVE_WINDOW_MS;
        let pc = |s: &str| s.parse::<PcId>().unwrap();
        let before: HashSet<PcId> = [pc("A"), pc("B")].into();
        let seen = vec![
            (pc("A"), now - ALIVE_WINDOW_MS),     // still online at the edge
            (pc("B"), now - ALIVE_WINDOW_MS - 1), // went quiet
            (pc("C"), now),                       // new
        ];
        let t = transitions(&before, &seen, now);
        assert_eq!(t.up, [pc("C")]);
        assert_eq!(t.down, [pc("B")]);
        assert_eq!(t.online, [pc("A"), pc("C")].into());
        let b_gone = (pc("B"), now - ALIVE_WINDOW_MS - 1);
        let long_gone = (pc("D"), now - CATCH_UP_MS - 2 * ALIVE_WINDOW_MS);
        let with_old = [seen.clone(), vec![long_gone.clone()]].concat();
        // First look: only the recent silence; later looks: whoever was not recorded as it is.
        assert_eq!(newly_silent(None, &with_old, now, ALIVE_WINDOW_MS), std::slice::from_ref(&b_gone));
        let recorded: HashMap<PcId, i64> = [b_gone.clone(), long_gone].into_iter().collect();
        assert!(newly_silent(Some(&recorded), &with_old, now, ALIVE_WINDOW_MS).is_empty());
        assert_eq!(newly_silent(Some(&HashMap::new()), &seen, now, ALIVE_WINDOW_MS), [b_gone]);
        let again = transitions(&t.online, &seen, now);
        assert!(again.up.is_empty() && again.down.is_empty());
        // A forgotten agent (pruned) that was online is announced down.
        assert_eq!(transitions(&again.online, &[], now).down, [pc("A"), pc("C")]);
    }
}
