//! A token bucket per PC for observability events: agents send a few a day, a job with
//! `emit: events` a burst of up to 1,000; nothing more than [`BURST`] at once and [`PER_SECOND`]
//! sustained is stored, so one endpoint cannot grow `obs_events` (or push others' events out of
//! stream OBS) at any rate it likes. Pure: the caller passes the time.

use std::collections::HashMap;

use kanade_shared::PcId;

/// Two full `emit: events` runs.
pub const BURST: f64 = 2000.0;
pub const PER_SECOND: f64 = 1.0;
/// Buckets full again after this long without events are forgotten.
const IDLE_MS: i64 = (BURST / PER_SECOND * 1000.0) as i64;

#[derive(Debug, Default)]
pub struct EventBudget {
    buckets: HashMap<PcId, (f64, i64)>,
}

impl EventBudget {
    /// Take one token for `pc` at `now_ms`; `false` when it has none left.
    pub fn allow(&mut self, pc: &PcId, now_ms: i64) -> bool {
        if self.buckets.len() > 50_000 {
            self.buckets.retain(|_, (_, at)| now_ms - *at < IDLE_MS);
        }
        let (tokens, at) = self.buckets.entry(pc.clone()).or_insert((BURST, now_ms));
        *tokens = (*tokens + (now_ms - *at).max(0) as f64 / 1000.0 * PER_SECOND).min(BURST);
        *at = now_ms;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pc_gets_a_burst_then_one_a_second_and_others_are_not_affected() {
        let mut b = EventBudget::default();
        let (a, other): (PcId, PcId) = ("PC-A".parse().unwrap(), "PC-B".parse().unwrap());
        let allowed = (0..BURST as usize + 10).filter(|_| b.allow(&a, 1_000)).count();
        assert_eq!(allowed, BURST as usize);
        assert!(b.allow(&other, 1_000));
        assert!(!b.allow(&a, 1_500), "half a second refills half a token");
        assert!(b.allow(&a, 2_000));
        assert!(!b.allow(&a, 2_000));
    }
}
