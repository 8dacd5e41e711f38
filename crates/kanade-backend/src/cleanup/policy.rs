//! Cleanup decisions, free of IO: when an execution counts as stalled, and what retention cuts.

use kanade_shared::config::RetentionConfig;

use crate::db::maintenance::{Cutoffs, Quiet};

fn ms(d: kanade_shared::HumanDuration) -> i64 {
    i64::try_from(d.get().as_millis()).unwrap_or(i64::MAX)
}

/// An unfinished execution is stalled when nothing happened for `stall_after`, counting a wave
/// still waiting for its time as something that will happen: a rollout paused between waves
/// is not stalled until its next wave is overdue by as long.
pub fn is_stalled(q: &Quiet, now_ms: i64, stall_after_ms: i64) -> bool {
    let since = q.next_wave_due_ms.map_or(q.last_activity_ms, |due| due.max(q.last_activity_ms));
    now_ms.saturating_sub(since) > stall_after_ms
}

/// The message an expired execution carries, for the operator reading it later.
pub fn expiry_message(q: &Quiet, stall_after: kanade_shared::HumanDuration) -> String {
    format!(
        "expired: no progress for {stall_after} (retention.stall_after); {} of {} expected results arrived",
        q.reported, q.target_count
    )
}

pub fn stall_after_ms(r: &RetentionConfig) -> i64 {
    ms(r.stall_after)
}

/// Raw host performance samples are kept 30 days (SPEC §12).
pub const HOST_PERF_KEPT_MS: i64 = 30 * 24 * 3_600_000;

/// Host performance rollups: 5-minute buckets 30 days, hourly ones a year (SPEC §12).
pub const ROLLUP_5M_KEPT_MS: i64 = 30 * 24 * 3_600_000;
pub const ROLLUP_1H_KEPT_MS: i64 = 365 * 24 * 3_600_000;

/// Investigation mode's process samples are kept 7 days (SPEC §12).
pub const PROCESS_PERF_KEPT_MS: i64 = 7 * 24 * 3_600_000;

/// Observability events are kept 90 days (SPEC §12, as long as the OBS stream).
pub const OBS_KEPT_MS: i64 = 90 * 24 * 3_600_000;

pub fn cutoffs(now_ms: i64, r: &RetentionConfig) -> Cutoffs {
    Cutoffs {
        results_ms: now_ms.saturating_sub(ms(r.results)),
        executions_ms: now_ms.saturating_sub(ms(r.executions)),
        audit_ms: now_ms.saturating_sub(ms(r.audit)),
        agents_ms: now_ms.saturating_sub(ms(r.agents)),
        host_perf_ms: now_ms.saturating_sub(HOST_PERF_KEPT_MS),
        obs_ms: now_ms.saturating_sub(OBS_KEPT_MS),
        process_perf_ms: now_ms.saturating_sub(PROCESS_PERF_KEPT_MS),
        rollup_5m_ms: now_ms.saturating_sub(ROLLUP_5M_KEPT_MS),
        rollup_1h_ms: now_ms.saturating_sub(ROLLUP_1H_KEPT_MS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn quiet(last: i64, due: Option<i64>) -> Quiet {
        Quiet {
            exec_id: kanade_shared::ExecId::new(),
            last_activity_ms: last,
            next_wave_due_ms: due,
            reported: 1,
            target_count: 3,
        }
    }

    #[test]
    fn stalled_only_after_the_whole_window_without_progress() {
        let now = 100 * H;
        let cases = [
            // (last activity, next wave due, stalled?)
            (now - 24 * H, None, false),
            (now - 24 * H - 1, None, true),
            (now - 48 * H, Some(now + H), false),
            (now - 48 * H, Some(now - 24 * H), false),
            (now - 48 * H, Some(now - 24 * H - 1), true),
            (now - 2 * H, Some(now - 30 * H), false),
            (now + H, None, false),
        ];
        for (last, due, want) in cases {
            assert_eq!(is_stalled(&quiet(last, due), now, 24 * H), want, "last={last} due={due:?}");
        }
    }

    #[test]
    fn cutoffs_subtract_each_retention() {
        let r = RetentionConfig {
            stall_after: "1h".parse().unwrap(),
            results: "2h".parse().unwrap(),
            executions: "3h".parse().unwrap(),
            audit: "4h".parse().unwrap(),
            agents: "5h".parse().unwrap(),
            check_stale: "6h".parse().unwrap(),
        };
        let c = cutoffs(10 * H, &r);
        assert_eq!((c.results_ms, c.executions_ms, c.audit_ms, c.agents_ms), (8 * H, 7 * H, 6 * H, 5 * H));
        assert_eq!(stall_after_ms(&r), H);
        assert_eq!(
            expiry_message(&quiet(0, None), r.stall_after),
            "expired: no progress for 1h (retention.stall_after); 1 of 3 expected results arrived"
        );
    }
}
