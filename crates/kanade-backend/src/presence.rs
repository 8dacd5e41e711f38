//! Agent presence for the live stream: every few seconds the agents table is compared with the
//! previous look, and agents that crossed the alive window are announced up or down. Cheaper
//! than one event per heartbeat, and it notices silence, which heartbeats alone cannot.

use std::collections::HashSet;
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

pub async fn worker(db: Db, bus: Bus, mut stop: watch::Receiver<bool>) {
    let mut online: Option<HashSet<PcId>> = None;
    loop {
        match db.last_seen().await {
            Ok(seen) => {
                let t = transitions(online.as_ref().unwrap_or(&HashSet::new()), &seen, now_ms());
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
        let again = transitions(&t.online, &seen, now);
        assert!(again.up.is_empty() && again.down.is_empty());
        // A forgotten agent (pruned) that was online is announced down.
        assert_eq!(transitions(&again.online, &[], now).down, [pc("A"), pc("C")]);
    }
}
