//! End-user notifications (SPEC §12): what an operator tells the people at the endpoints, and
//! their acknowledgements. A notification travels on stream NOTIFICATIONS, once per subject its
//! target names (`notifications.all`, `notifications.group.<g>`, `notifications.pc.<pc>`); its
//! withdrawal follows on the same subjects. Agents keep both by id, so a notification reaching an
//! agent on two subjects (two of its groups) is one notification. An acknowledgement travels
//! `events.notify_ack.<pc>.<id>` through the agent's outbox.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Timestamp, schema_v1};
use crate::ids::{GroupName, NotificationId, PcId};

pub const MAX_TITLE: usize = 200;
/// Markdown; the broker's message limit is far above it.
pub const MAX_BODY: usize = 16 * 1024;
/// Without `expires_in`, a notification is shown for a week.
pub const DEFAULT_EXPIRES: Duration = Duration::from_secs(7 * 86_400);
/// The stream keeps notifications 90 days: one that lived longer would vanish from the stream
/// while agents returning from an outage still expect to catch up on it.
pub const MAX_EXPIRES: Duration = Duration::from_secs(90 * 86_400);
/// PCs or groups one notification may name.
pub const MAX_TARGETS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Info,
    Warn,
    Urgent,
    #[serde(other, skip_serializing)]
    Unknown,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Urgent => "urgent",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "info" => Some(Self::Info),
            "warn" => Some(Self::Warn),
            "urgent" => Some(Self::Urgent),
            _ => None,
        }
    }
}

/// Who a notification is for: everyone, or members of any of `groups`, or the PCs in `pcs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NotificationTarget {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupName>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pcs: Vec<PcId>,
}

impl NotificationTarget {
    /// Is a PC in `groups` one of the recipients?
    pub fn addresses(&self, pc: &PcId, groups: &[GroupName]) -> bool {
        self.all || self.pcs.contains(pc) || self.groups.iter().any(|g| groups.contains(g))
    }

    /// How the dashboard and CLI say it: `all`, `groups: a, b`, `pcs: PC-1, PC-2`.
    pub fn describe(&self) -> String {
        if self.all {
            return "all".into();
        }
        let join = |v: Vec<String>| v.join(", ");
        let mut parts = Vec::new();
        if !self.groups.is_empty() {
            parts.push(format!("groups: {}", join(self.groups.iter().map(|g| g.to_string()).collect())));
        }
        if !self.pcs.is_empty() {
            parts.push(format!("pcs: {}", join(self.pcs.iter().map(|p| p.to_string()).collect())));
        }
        parts.join("; ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Notification {
    #[serde(default = "schema_v1")]
    pub schema: u32,
    pub id: NotificationId,
    pub title: String,
    /// Markdown.
    pub body: String,
    pub priority: Priority,
    pub target: NotificationTarget,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub created_at: Timestamp,
    /// Agents drop it then; the API shows it as expired.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub expires_at: Timestamp,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Withdrawal {
    #[serde(default = "schema_v1")]
    pub schema: u32,
    pub id: NotificationId,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub at: Timestamp,
    pub by: String,
}

/// One message on NOTIFICATIONS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum NotificationMessage {
    Send(Notification),
    Withdraw(Withdrawal),
    /// An operation a newer backend sends; older agents skip it.
    #[serde(other, skip_serializing)]
    Unknown,
}

/// A local user acknowledged a notification on a PC (`events.notify_ack.<pc>.<id>`). The user is
/// the name the agent's OS gave for the caller of its local socket or pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NotifyAck {
    #[serde(default = "schema_v1")]
    pub schema: u32,
    pub notification_id: NotificationId,
    pub pc_id: PcId,
    pub user: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub at: Timestamp,
}

/// `POST /api/notifications`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SendNotification {
    pub title: String,
    #[serde(default)]
    pub body: String,
    /// `info` (default), `warn` or `urgent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    pub target: TargetRequest,
    /// A humantime duration (`"2h"`, `"7d"`), at most 90 days; a week when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

/// Exactly one of the three.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TargetRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcs: Option<Vec<String>>,
}

impl SendNotification {
    /// The notification this request describes, or every problem with it, each naming its field.
    pub fn validate(
        &self,
        id: NotificationId,
        now: Timestamp,
        created_by: &str,
    ) -> Result<Notification, Vec<String>> {
        let mut problems = Vec::new();
        let title = self.title.trim();
        if title.is_empty() {
            problems.push("title: must not be empty".to_owned());
        } else if title.chars().count() > MAX_TITLE {
            problems.push(format!("title: {} characters; at most {MAX_TITLE}", title.chars().count()));
        }
        if self.body.len() > MAX_BODY {
            problems.push(format!("body: {} bytes; at most {MAX_BODY}", self.body.len()));
        }
        if self.title.contains('\0') || self.body.contains('\0') {
            problems.push("title/body: must not contain NUL characters".to_owned());
        }
        let priority = match self.priority.as_deref() {
            None => Priority::Info,
            Some(p) => Priority::parse(p).unwrap_or_else(|| {
                problems.push(format!("priority: {p:?} is not one of info, warn, urgent"));
                Priority::Info
            }),
        };
        let target = self.target.validate(&mut problems);
        let expires_in = match self.expires_in.as_deref() {
            None => DEFAULT_EXPIRES,
            Some(text) => match text.parse::<crate::HumanDuration>() {
                Ok(d) if d.get().is_zero() => {
                    problems.push("expires_in: must be longer than 0s".to_owned());
                    DEFAULT_EXPIRES
                }
                Ok(d) if d.get() > MAX_EXPIRES => {
                    problems.push(format!(
                        "expires_in: {text:?} is longer than 90 days, which NOTIFICATIONS keeps messages"
                    ));
                    DEFAULT_EXPIRES
                }
                Ok(d) => d.get(),
                Err(e) => {
                    problems.push(format!("expires_in: {e}"));
                    DEFAULT_EXPIRES
                }
            },
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Notification {
            schema: super::SCHEMA,
            id,
            title: title.to_owned(),
            body: self.body.clone(),
            priority,
            target,
            created_at: now,
            expires_at: now + expires_in,
            created_by: created_by.to_owned(),
        })
    }
}

impl TargetRequest {
    fn validate(&self, problems: &mut Vec<String>) -> NotificationTarget {
        let named = [self.all == Some(true), self.groups.is_some(), self.pcs.is_some()];
        if named.iter().filter(|n| **n).count() != 1 {
            problems.push(
                "target: name exactly one of {\"all\": true}, {\"groups\": [...]}, {\"pcs\": [...]}"
                    .to_owned(),
            );
            return NotificationTarget::default();
        }
        fn list<T: std::str::FromStr<Err = crate::IdError> + PartialEq>(
            field: &str,
            items: &[String],
            problems: &mut Vec<String>,
        ) -> Vec<T> {
            if items.is_empty() {
                problems.push(format!("target.{field}: must name at least one"));
            } else if items.len() > MAX_TARGETS {
                problems.push(format!("target.{field}: {} named; at most {MAX_TARGETS}", items.len()));
            }
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.parse::<T>() {
                    Ok(v) if !out.contains(&v) => out.push(v),
                    Ok(_) => {}
                    Err(e) => problems.push(format!("target.{field}[{i}]: {e}")),
                }
            }
            out
        }
        NotificationTarget {
            all: self.all == Some(true),
            groups: self.groups.as_deref().map(|g| list("groups", g, problems)).unwrap_or_default(),
            pcs: self.pcs.as_deref().map(|p| list("pcs", p, problems)).unwrap_or_default(),
        }
    }
}

/// `POST /api/notifications` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NotificationSent {
    pub id: NotificationId,
    /// The NOTIFICATIONS subjects it was published on.
    pub subjects: Vec<String>,
}

/// One notification as the API lists it; times are epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NotificationSummary {
    pub id: NotificationId,
    pub title: String,
    pub priority: String,
    pub target: NotificationTarget,
    pub created_at: i64,
    pub expires_at: i64,
    pub created_by: String,
    /// `active`, `expired` or `withdrawn`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn_by: Option<String>,
    /// Known PCs it addresses now (agents' current groups) plus any PC that acknowledged it.
    pub recipients: i64,
    /// Of those, the PCs where someone acknowledged it.
    pub acked: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Notifications {
    pub notifications: Vec<NotificationSummary>,
}

/// Who acknowledged it on a PC, and when (epoch ms, the agent's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AckBy {
    pub user: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NotificationPc {
    pub pc_id: String,
    /// `acked` or `outstanding`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acks: Vec<AckBy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NotificationDetail {
    #[serde(flatten)]
    pub summary: NotificationSummary,
    pub body: String,
    pub pcs: Vec<NotificationPc>,
}

/// `GET /api/notifications`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NotificationsQuery {
    /// 1–500; 100 by default.
    pub limit: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_unix_timestamp(s).unwrap()
    }

    fn request(target: TargetRequest) -> SendNotification {
        SendNotification { title: "Reboot tonight".into(), target, ..Default::default() }
    }

    #[test]
    fn a_request_becomes_a_notification_or_names_every_problem() {
        let id = NotificationId::new();
        let ok =
            request(TargetRequest { groups: Some(vec!["lab".into(), "lab".into()]), ..Default::default() })
                .validate(id, at(1000), "alice")
                .unwrap();
        assert_eq!(ok.target.groups, vec!["lab".parse::<GroupName>().unwrap()], "duplicates dropped");
        assert_eq!((ok.priority, ok.expires_at), (Priority::Info, at(1000) + DEFAULT_EXPIRES));

        let cases: [(SendNotification, &[&str]); 6] = [
            (request(TargetRequest::default()), &["target: name exactly one"]),
            (
                request(TargetRequest {
                    all: Some(true),
                    pcs: Some(vec!["PC-1".into()]),
                    ..Default::default()
                }),
                &["target: name exactly one"],
            ),
            (
                request(TargetRequest { pcs: Some(vec![]), ..Default::default() }),
                &["target.pcs: must name at least one"],
            ),
            (
                request(TargetRequest { pcs: Some(vec!["PC-1".into(), "a.b".into()]), ..Default::default() }),
                &["target.pcs[1]:"],
            ),
            (
                SendNotification {
                    title: " ".into(),
                    priority: Some("loud".into()),
                    expires_in: Some("100d".into()),
                    target: TargetRequest { all: Some(true), ..Default::default() },
                    ..Default::default()
                },
                &[
                    "title: must not be empty",
                    "priority: \"loud\" is not one of",
                    "expires_in: \"100d\" is longer",
                ],
            ),
            (
                SendNotification {
                    title: "x".repeat(201),
                    body: "y".repeat(MAX_BODY + 1),
                    expires_in: Some("soon".into()),
                    target: TargetRequest { all: Some(true), ..Default::default() },
                    ..Default::default()
                },
                &["title: 201 characters", "body: 16385 bytes", "expires_in:"],
            ),
        ];
        for (req, want) in cases {
            let problems = req.validate(id, at(0), "alice").unwrap_err();
            assert_eq!(problems.len(), want.len(), "{problems:?}");
            for (p, w) in problems.iter().zip(want) {
                assert!(p.starts_with(w), "{p:?} should start with {w:?}");
            }
        }
    }

    #[test]
    fn a_target_addresses_its_pcs_and_group_members() {
        let pc = |s: &str| s.parse::<PcId>().unwrap();
        let g = |s: &str| s.parse::<GroupName>().unwrap();
        let groups = NotificationTarget { groups: vec![g("lab")], ..Default::default() };
        assert!(groups.addresses(&pc("PC-1"), &[g("x"), g("lab")]));
        assert!(!groups.addresses(&pc("PC-1"), &[g("x")]));
        let pcs = NotificationTarget { pcs: vec![pc("PC-2")], ..Default::default() };
        assert!(pcs.addresses(&pc("PC-2"), &[]) && !pcs.addresses(&pc("PC-1"), &[]));
        assert!(NotificationTarget { all: true, ..Default::default() }.addresses(&pc("Z"), &[]));
        assert_eq!(groups.describe(), "groups: lab");
    }

    #[test]
    fn an_unknown_operation_is_skipped_not_an_error() {
        let m: NotificationMessage = serde_json::from_str(r#"{"op":"pin","id":"x"}"#).unwrap();
        assert_eq!(m, NotificationMessage::Unknown);
    }
}
