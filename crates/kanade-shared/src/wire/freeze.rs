//! A fleet freeze (a change window closed): while it lasts, scheduled runs are skipped with
//! the reason, rollouts hold their later waves, and a manual run needs an explicit override.
//! HTTP bodies of `/api/freeze`, shared by backend, CLI and dashboard.

use serde::{Deserialize, Serialize};
use time::Duration;

use super::Timestamp;

/// The longest freeze: a quarter. Longer is a fleet switched off, not a change window.
pub const MAX_FREEZE: Duration = Duration::days(90);
pub const MAX_REASON: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Freeze {
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub from: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub until: Timestamp,
    pub reason: String,
    pub set_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub set_at: Timestamp,
}

impl Freeze {
    /// Whether `now` falls inside the window.
    pub fn covers(&self, now: Timestamp) -> bool {
        self.from <= now && now < self.until
    }

    /// One line: until when, why, who.
    pub fn describe(&self) -> String {
        let until = self.until.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        format!("the fleet is frozen until {until} ({}, set by {})", self.reason, self.set_by)
    }
}

/// `GET /api/freeze`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FreezeStatus {
    /// The window set (past, current or future), if any.
    pub freeze: Option<Freeze>,
    /// Whether it covers now.
    pub frozen: bool,
}

/// `PUT /api/freeze`: `until` or `for` (e.g. `2h`), a reason, and optionally a later start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SetFreeze {
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub from: Option<Timestamp>,
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub until: Option<Timestamp>,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    pub reason: String,
}

impl SetFreeze {
    /// The freeze this request sets, or every problem, each naming its field.
    pub fn validate(&self, now: Timestamp, set_by: &str) -> Result<Freeze, Vec<String>> {
        let mut problems = Vec::new();
        let reason = self.reason.trim();
        if reason.is_empty() {
            problems.push("reason: say why the fleet is frozen (it is shown on every page)".to_owned());
        } else if reason.chars().count() > MAX_REASON {
            problems.push(format!("reason: {} characters; at most {MAX_REASON}", reason.chars().count()));
        }
        let from = self.from.unwrap_or(now);
        let until = match (self.until, self.duration.as_deref()) {
            (Some(_), Some(_)) => {
                problems.push("until/for: give one of them, not both".to_owned());
                None
            }
            (None, None) => {
                problems
                    .push("until: say when the freeze ends (until: <RFC 3339 time>, or for: 2h)".to_owned());
                None
            }
            (Some(u), None) => Some(u),
            (None, Some(text)) => match text.parse::<crate::HumanDuration>() {
                Ok(d) => Some(from + d.get()),
                Err(e) => {
                    problems.push(format!("for: {e}"));
                    None
                }
            },
        };
        if let Some(until) = until {
            if until <= from {
                problems.push("until: must be after from".to_owned());
            } else if until <= now {
                problems.push("until: is in the past; nothing would be frozen".to_owned());
            } else if until - from > MAX_FREEZE {
                problems.push("until: a freeze lasts at most 90 days".to_owned());
            }
        }
        match until {
            Some(until) if problems.is_empty() => {
                Ok(Freeze { from, until, reason: reason.to_owned(), set_by: set_by.to_owned(), set_at: now })
            }
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn a_freeze_request_is_checked_field_by_field() {
        let now = datetime!(2026-12-01 10:00 UTC);
        let req = |from: Option<Timestamp>, until: Option<Timestamp>, dur: Option<&str>, reason: &str| {
            SetFreeze { from, until, duration: dur.map(str::to_owned), reason: reason.to_owned() }
        };
        let ok = req(None, None, Some("2h"), " year-end ").validate(now, "admin").unwrap();
        assert_eq!(
            (ok.from, ok.until, ok.reason.as_str()),
            (now, datetime!(2026-12-01 12:00 UTC), "year-end")
        );
        assert!(ok.covers(now) && !ok.covers(ok.until) && !ok.covers(now - Duration::seconds(1)));
        // (request) → the problems named
        let cases = [
            (
                req(None, None, None, "x"),
                vec!["until: say when the freeze ends (until: <RFC 3339 time>, or for: 2h)"],
            ),
            (req(None, Some(now), Some("1h"), "x"), vec!["until/for: give one of them, not both"]),
            (
                req(None, None, Some("soon"), ""),
                vec![
                    "reason: say why the fleet is frozen (it is shown on every page)",
                    "for: \"soon\" is not a duration (write a number with a unit, e.g. 30s, 10m, 24h)",
                ],
            ),
            (req(None, Some(now - Duration::hours(1)), None, "x"), vec!["until: must be after from"]),
            (
                req(Some(now - Duration::hours(3)), Some(now - Duration::hours(1)), None, "x"),
                vec!["until: is in the past; nothing would be frozen"],
            ),
            (req(None, None, Some("100d"), "x"), vec!["until: a freeze lasts at most 90 days"]),
        ];
        for (r, want) in cases {
            assert_eq!(r.validate(now, "admin").unwrap_err(), want, "{r:?}");
        }
    }
}
