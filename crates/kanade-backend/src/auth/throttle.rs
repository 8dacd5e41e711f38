//! Login throttling: failures are counted per user and per source address over a window; past
//! the limit, further attempts are refused until the oldest failure leaves the window. Checking
//! and counting are one step ([`Throttle::attempt`] counts the attempt as a failure before the
//! password is checked, and a success takes it back), so concurrent guesses cannot all slip in
//! between a check and a count. A success clears the user's count (not the address's: one good
//! password must not unlock guessing at others from the same place). Memory is bounded: entries
//! leave with their window, and at most [`MAX_KEYS`] users and addresses are tracked each.
//! Refused attempts are summarised: the first per address per window is reported for the audit
//! log, the rest only counted.

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

/// Users and addresses tracked at most (each). Expired entries are swept after every
/// `MAX_KEYS / 4` new names (so a sweep costs each attempt a constant share); when a map is
/// still full of live entries, new names are not tracked until a sweep makes room (the other
/// limit still applies to them). Never a lockout of everyone, never unbounded memory.
pub const MAX_KEYS: usize = 50_000;
const SWEEP_EVERY: usize = MAX_KEYS / 4;

#[derive(Debug, Default)]
pub struct Throttle {
    limits: Limits,
    users: HashMap<String, VecDeque<i64>>,
    sources: HashMap<String, VecDeque<i64>>,
    /// source -> (start of its current refusal window, refusals in it).
    refused: HashMap<String, (i64, u64)>,
    /// Names seen that no map held, since the last sweep.
    new_since_sweep: usize,
}

/// An attempt let through to the password check, counted as a failure until [`Throttle::succeeded`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    user: String,
    source: String,
    at_ms: i64,
}

/// A refused attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Milliseconds until an attempt can succeed again.
    pub wait_ms: i64,
    /// The first refusal for this address in this window: the one to audit. `Some(n)` carries
    /// how many refusals the previous window of this address had beyond its first.
    pub report: Option<u64>,
}

impl Throttle {
    pub fn new(limits: Limits) -> Self {
        Self { limits, ..Self::default() }
    }

    /// Check and count in one step: `Ok` lets the attempt reach the password check (already
    /// counted as a failure), `Err` refuses it.
    pub fn attempt(&mut self, user: &str, source: &str, now_ms: i64) -> Result<Ticket, Refused> {
        let window = self.limits.window_ms;
        let wait = |q: &mut VecDeque<i64>, limit: usize| {
            while q.front().is_some_and(|t| now_ms - t >= window) {
                q.pop_front();
            }
            (q.len() >= limit).then(|| q.front().map_or(0, |t| t + window - now_ms))
        };
        let u = self.users.get_mut(user).and_then(|q| wait(q, self.limits.per_user));
        let s = self.sources.get_mut(source).and_then(|q| wait(q, self.limits.per_source));
        if let Some(wait_ms) = u.into_iter().chain(s).max() {
            return Err(Refused { wait_ms, report: self.refusal(source, now_ms) });
        }
        self.note_new(!self.users.contains_key(user) || !self.sources.contains_key(source), now_ms);
        if self.users.len() < MAX_KEYS || self.users.contains_key(user) {
            self.users.entry(user.to_owned()).or_default().push_back(now_ms);
        }
        if self.sources.len() < MAX_KEYS || self.sources.contains_key(source) {
            self.sources.entry(source.to_owned()).or_default().push_back(now_ms);
        }
        Ok(Ticket { user: user.to_owned(), source: source.to_owned(), at_ms: now_ms })
    }

    /// The password was right: forget the user's failures and take this attempt back from the
    /// address's count.
    pub fn succeeded(&mut self, ticket: &Ticket) {
        self.users.remove(&ticket.user);
        if let Some(q) = self.sources.get_mut(&ticket.source)
            && let Some(i) = q.iter().rposition(|t| *t == ticket.at_ms)
        {
            q.remove(i);
        }
    }

    /// How many users and addresses are tracked now.
    pub fn tracked(&self) -> (usize, usize) {
        (self.users.len(), self.sources.len())
    }

    fn refusal(&mut self, source: &str, now_ms: i64) -> Option<u64> {
        let window = self.limits.window_ms;
        if !self.refused.contains_key(source) {
            self.note_new(true, now_ms);
            if self.refused.len() >= MAX_KEYS {
                // Untracked: only counted (the caller's metric), never audited, so a flood from
                // more addresses than we track cannot grow the trail either.
                return None;
            }
        }
        let entry = self.refused.entry(source.to_owned()).or_insert((i64::MIN / 2, 0));
        if now_ms - entry.0 >= window {
            let before = entry.1.saturating_sub(1);
            *entry = (now_ms, 1);
            return Some(before);
        }
        entry.1 += 1;
        None
    }

    /// Count a name no map knew; sweep expired entries from every map every [`SWEEP_EVERY`].
    fn note_new(&mut self, new: bool, now_ms: i64) {
        if !new {
            return;
        }
        self.new_since_sweep += 1;
        if self.new_since_sweep < SWEEP_EVERY {
            return;
        }
        self.new_since_sweep = 0;
        let window = self.limits.window_ms;
        let live = |q: &VecDeque<i64>| q.back().is_some_and(|t| now_ms - t < window);
        self.users.retain(|_, q| live(q));
        self.sources.retain(|_, q| live(q));
        self.refused.retain(|_, (start, _)| now_ms - *start < window);
    }
}

/// A user name as it may appear in logs and the audit trail: at most 64 characters (anything
/// longer cannot be an account name and is cut, marked with `…`).
pub fn loggable_name(name: &str) -> String {
    const MAX: usize = 64;
    match name.char_indices().nth(MAX) {
        None => name.to_owned(),
        Some((end, _)) => format!("{}…", &name[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(t: &mut Throttle, user: &str, source: &str, at: i64) -> Result<(), i64> {
        t.attempt(user, source, at).map(drop).map_err(|r| r.wait_ms)
    }

    #[test]
    fn limits_per_user_and_per_source() {
        let mut t = Throttle::new(Limits { window_ms: 1000, per_user: 3, per_source: 5 });
        for i in 0..3 {
            assert_eq!(fail(&mut t, "alice", "10.0.0.1", i), Ok(()));
        }
        assert_eq!(fail(&mut t, "alice", "10.0.0.9", 10), Err(990), "the user is locked from anywhere");
        assert_eq!(fail(&mut t, "alice", "10.0.0.1", 1000), Ok(()), "the oldest failure left the window");
        // Guessing many users from one address hits the source limit.
        let mut t = Throttle::new(Limits { window_ms: 1000, per_user: 3, per_source: 5 });
        for (i, user) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            assert_eq!(fail(&mut t, user, "10.0.0.1", i as i64), Ok(()));
        }
        assert_eq!(fail(&mut t, "f", "10.0.0.1", 600), Err(400));
        assert_eq!(fail(&mut t, "f", "10.0.0.2", 600), Ok(()));
    }

    #[test]
    fn a_success_takes_its_attempt_back_and_clears_the_user_only() {
        let mut t = Throttle::new(Limits { window_ms: 1000, per_user: 2, per_source: 3 });
        fail(&mut t, "alice", "10.0.0.1", 0).unwrap();
        fail(&mut t, "bob", "10.0.0.1", 1).unwrap();
        let ticket = t.attempt("alice", "10.0.0.1", 2).unwrap();
        t.succeeded(&ticket);
        assert_eq!(fail(&mut t, "alice", "10.0.0.1", 3), Ok(()), "alice starts over");
        assert_eq!(fail(&mut t, "carol", "10.0.0.1", 4), Err(996), "bob's and alice's failures still count");
    }

    #[test]
    fn concurrent_guesses_are_counted_before_the_password_check() {
        // Tickets taken one after another without any result in between (what concurrent
        // requests do): only the limit gets through.
        let mut t = Throttle::new(Limits::default());
        let through = (0..200).filter(|_| t.attempt("admin", "10.0.0.1", 0).is_ok()).count();
        assert_eq!(through, 5);
    }

    #[test]
    fn refusals_are_reported_once_per_address_and_window() {
        let mut t = Throttle::new(Limits { window_ms: 1000, per_user: 1, per_source: 100 });
        fail(&mut t, "u", "s", 0).unwrap();
        let reports: Vec<Option<u64>> =
            [1, 2, 3, 999].iter().map(|at| t.attempt("u", "s", *at).unwrap_err().report).collect();
        assert_eq!(reports, [Some(0), None, None, None]);
        fail(&mut t, "u", "s", 1001).unwrap();
        assert_eq!(
            t.attempt("u", "s", 1002).unwrap_err().report,
            Some(3),
            "the next window tells how many were not reported"
        );
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_names() {
        let mut t = Throttle::new(Limits { window_ms: 1000, per_user: 5, per_source: usize::MAX });
        for i in 0..(MAX_KEYS as i64 * 2) {
            let _ = t.attempt(
                &format!("user-{i}"),
                &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                i / 100,
            );
        }
        let (users, sources) = t.tracked();
        assert!(users <= MAX_KEYS && sources <= MAX_KEYS, "{users} users, {sources} sources");
    }

    #[test]
    fn names_are_cut_for_logs() {
        assert_eq!(loggable_name("admin"), "admin");
        assert_eq!(loggable_name(&"x".repeat(64)), "x".repeat(64));
        assert_eq!(loggable_name(&"é".repeat(300_000)), format!("{}…", "é".repeat(64)));
    }
}
