//! A fixed-window rate budget: at most `per_window` events in each window. Pure (the caller
//! passes the clock), used where an outsider could make the agent do work per message it sends.

#[derive(Debug, Clone)]
pub struct Budget {
    window_ms: i64,
    per_window: u32,
    start_ms: i64,
    used: u32,
}

impl Budget {
    pub const fn new(window_ms: i64, per_window: u32) -> Self {
        Self { window_ms, per_window, start_ms: i64::MIN, used: 0 }
    }

    /// Spend one unit at `now_ms`; `false` when this window's budget is gone.
    pub fn allow(&mut self, now_ms: i64) -> bool {
        if now_ms.saturating_sub(self.start_ms) >= self.window_ms {
            self.start_ms = now_ms;
            self.used = 0;
        }
        if self.used >= self.per_window {
            return false;
        }
        self.used += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_window_allows_its_budget_and_no_more() {
        let mut b = Budget::new(1_000, 2);
        let got: Vec<bool> =
            [0, 10, 20, 999, 1_000, 1_001, 1_002, 5_000].iter().map(|t| b.allow(*t)).collect();
        assert_eq!(got, [true, true, false, false, true, true, false, true]);
    }
}
