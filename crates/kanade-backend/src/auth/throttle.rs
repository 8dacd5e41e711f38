//! Login throttling: failures are counted per user and per source address over a window;
//! past the limit, further attempts are refused until the oldest failure leaves the window.
//! A success clears the user's count (not the address's: one good password must not unlock
//! guessing at others from the same place).

use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub window_ms: i64,
    pub per_user: usize,
    pub per_source: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { window_ms: 5 * 60_000, per_user: 5, per_source: 20 }
    }
}

#[derive(Debug, Default)]
pub struct Throttle {
    limits: Limits,
    users: HashMap<String, VecDeque<i64>>,
    sources: HashMap<String, VecDeque<i64>>,
}

impl Throttle {
    pub fn new(limits: Limits) -> Self {
        Self { limits, ..Self::default() }
    }

    /// `Some(ms)` to wait when this attempt must be refused without checking the password.
    pub fn blocked(&mut self, user: &str, source: &str, now_ms: i64) -> Option<i64> {
        let window = self.limits.window_ms;
        let wait = |q: &mut VecDeque<i64>, limit: usize| {
            while q.front().is_some_and(|t| now_ms - t >= window) {
                q.pop_front();
            }
            (q.len() >= limit).then(|| q.front().map_or(0, |t| t + window - now_ms))
        };
        let u = self.users.get_mut(user).and_then(|q| wait(q, self.limits.per_user));
        let s = self.sources.get_mut(source).and_then(|q| wait(q, self.limits.per_source));
        u.into_iter().chain(s).max()
    }

    pub fn failed(&mut self, user: &str, source: &str, now_ms: i64) {
        self.users.entry(user.to_owned()).or_default().push_back(now_ms);
        self.sources.entry(source.to_owned()).or_default().push_back(now_ms);
    }

    pub fn succeeded(&mut self, user: &str) {
        self.users.remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_user_and_per_source() {
        let mut t = Throttle::new(Limits { window_ms: 1000, per_user: 3, per_source: 5 });
        for i in 0..3 {
            assert_eq!(t.blocked("alice", "10.0.0.1", i), None);
            t.failed("alice", "10.0.0.1", i);
        }
        assert_eq!(t.blocked("alice", "10.0.0.9", 10), Some(990), "the user is locked from anywhere");
        assert_eq!(t.blocked("alice", "10.0.0.1", 1000), None, "the oldest failure left the window");
        // Guessing many users from one address hits the source limit.
        t.failed("bob", "10.0.0.1", 500);
        t.failed("carol", "10.0.0.1", 501);
        assert_eq!(t.blocked("dave", "10.0.0.1", 600), None, "four failures in the window");
        t.failed("erin", "10.0.0.1", 502);
        assert_eq!(t.blocked("dave", "10.0.0.1", 600), Some(401), "five: wait for the one at t=1 to expire");
        assert_eq!(t.blocked("dave", "10.0.0.2", 600), None);
        t.succeeded("alice");
        assert_eq!(t.blocked("alice", "10.0.0.2", 600), None);
    }
}
