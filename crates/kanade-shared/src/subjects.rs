//! NATS subject builders and the one parser agents use to decide whether a command is theirs.
//! Subjects are only ever built here, from validated ids, so no token can smuggle a `.`, `*` or `>`.

use crate::ids::{ExecId, GroupName, JobId, NotificationId, PcId, RequestId};
use crate::wire::NotificationTarget;

pub const COMMANDS_ALL_PREFIX: &str = "commands.all";

pub fn command_all(job: &JobId) -> String {
    format!("commands.all.{job}")
}

pub fn command_group(group: &GroupName, job: &JobId) -> String {
    format!("commands.group.{group}.{job}")
}

pub fn command_pc(pc: &PcId, job: &JobId) -> String {
    format!("commands.pc.{pc}.{job}")
}

/// The subject a command for `target` and `job` is published on.
pub fn command(target: &CommandTarget, job: &JobId) -> String {
    match target {
        CommandTarget::All => command_all(job),
        CommandTarget::Group(g) => command_group(g, job),
        CommandTarget::Pc(pc) => command_pc(pc, job),
    }
}

/// Every command subject filter an agent listens on: all, its pc, each of its groups.
/// Used for the live subscriptions and for the catch-up consumer's filter alike, so the two can
/// never disagree.
pub fn agent_command_filters(pc: &PcId, groups: &[GroupName]) -> Vec<String> {
    let mut filters = vec!["commands.all.>".to_owned(), format!("commands.pc.{pc}.>")];
    filters.extend(groups.iter().map(|g| format!("commands.group.{g}.>")));
    filters
}

pub fn kill(exec: ExecId) -> String {
    format!("kill.{exec}")
}

/// Every kill: an agent holds one subscription on it for its lifetime instead of one per run
/// (a broadcast would otherwise add and remove 10,000 subscriptions on the broker).
pub const KILL_ALL: &str = "kill.*";

/// The exec a kill subject names; `None` for anything else.
pub fn parse_kill(subject: &str) -> Option<ExecId> {
    subject.strip_prefix("kill.")?.parse().ok()
}

pub fn result(pc: &PcId, request: RequestId) -> String {
    format!("results.{pc}.{request}")
}

pub fn event_started(pc: &PcId, exec: ExecId) -> String {
    format!("events.started.{pc}.{exec}")
}

/// A local user's acknowledgement of a notification (stream EVENTS, through the outbox).
pub fn notify_ack(pc: &PcId, id: NotificationId) -> String {
    format!("events.notify_ack.{pc}.{id}")
}

pub const NOTIFICATIONS_ALL: &str = "notifications.all";

/// The NOTIFICATIONS subjects a notification for `target` is published on (its withdrawal too).
pub fn notification_subjects(target: &NotificationTarget) -> Vec<String> {
    if target.all {
        return vec![NOTIFICATIONS_ALL.to_owned()];
    }
    let groups = target.groups.iter().map(|g| format!("notifications.group.{g}"));
    groups.chain(target.pcs.iter().map(|pc| format!("notifications.pc.{pc}"))).collect()
}

/// Every NOTIFICATIONS subject an agent listens on: all, its pc, each of its groups; used for
/// its live subscriptions and its catch-up alike.
pub fn agent_notification_filters(pc: &PcId, groups: &[GroupName]) -> Vec<String> {
    let mut filters = vec![NOTIFICATIONS_ALL.to_owned(), format!("notifications.pc.{pc}")];
    filters.extend(groups.iter().map(|g| format!("notifications.group.{g}")));
    filters
}

pub fn heartbeat(pc: &PcId) -> String {
    format!("heartbeat.{pc}")
}

pub const HEARTBEAT_ALL: &str = "heartbeat.*";

/// Host performance samples (core NATS, like heartbeats).
pub fn host_perf(pc: &PcId) -> String {
    format!("host_perf.{pc}")
}

pub const HOST_PERF_ALL: &str = "host_perf.*";

/// Investigation mode's process samples (core NATS, like host performance).
pub fn process_perf(pc: &PcId) -> String {
    format!("process_perf.{pc}")
}

pub const PROCESS_PERF_ALL: &str = "process_perf.*";

/// Observability events (stream OBS), sent through the agent's outbox.
pub fn obs(pc: &PcId) -> String {
    format!("obs.{pc}")
}

/// Prefix of KV change notifications (see `jetstream::resources`): `notify.<bucket>.<key>`.
pub const NOTIFY_PREFIX: &str = "notify";

/// Where this pc's operator-assigned groups change.
pub fn notify_agent_groups(pc: &PcId) -> String {
    format!("{NOTIFY_PREFIX}.agent_groups.{pc}")
}

/// Every `agent_config` key that applies to `pc`, least specific first, with its notification
/// subject: `global`, `groups.<g>` for each group, `pcs.<pc>`.
pub fn agent_config_keys(pc: &PcId, groups: &[GroupName]) -> Vec<(String, String)> {
    let mut keys = vec!["global".to_owned()];
    keys.extend(groups.iter().map(|g| format!("groups.{g}")));
    keys.push(format!("pcs.{pc}"));
    keys.into_iter().map(|k| (format!("{NOTIFY_PREFIX}.agent_config.{k}"), k)).collect()
}

/// The PC an agent-published subject belongs to: `results.<pc>.…`, `events.<kind>.<pc>.…`,
/// `inventory.<pc>`, `heartbeat.<pc>`. Broker permissions let an agent publish only under its
/// own token, so this — not the body — says who sent a message. `None` for any other subject.
pub fn sender_pc(subject: &str) -> Option<&str> {
    let mut tokens = subject.split('.');
    let pc = match tokens.next()? {
        "results" | "inventory" | "heartbeat" | "obs" | "host_perf" | "process_perf" => tokens.next()?,
        "events" => {
            tokens.next()?;
            tokens.next()?
        }
        _ => return None,
    };
    Some(pc)
}

pub fn inventory(pc: &PcId) -> String {
    format!("inventory.{pc}")
}

pub fn ping(pc: &PcId) -> String {
    format!("agents.{pc}.ping")
}

/// Request/reply: a running script's output so far (`wire::TailRequest`).
pub fn tail(pc: &PcId) -> String {
    format!("agents.{pc}.tail")
}

/// Request/reply: the end of the agent's log file (`wire::LogRequest`).
pub fn logs(pc: &PcId) -> String {
    format!("agents.{pc}.logs")
}

/// `audit.<action>`; the action's dots become subject tokens (`exec.create`).
pub fn audit(action: &str) -> Result<String, SubjectError> {
    let ok = !action.is_empty()
        && action
            .split('.')
            .all(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    if ok { Ok(format!("audit.{action}")) } else { Err(SubjectError::BadAuditAction(action.to_owned())) }
}

/// Who a command subject addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandTarget {
    All,
    Group(GroupName),
    Pc(PcId),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error(
        "{0:?} is not a command subject (expected commands.all.<job>, commands.group.<g>.<job> or commands.pc.<pc>.<job>)"
    )]
    NotACommand(String),
    #[error("audit action {0:?} is invalid: use dot-separated tokens of A-Z a-z 0-9 _ -")]
    BadAuditAction(String),
}

/// Parse `commands.{all|group.<g>|pc.<pc>}.<job>`.
pub fn parse_command(subject: &str) -> Result<(CommandTarget, JobId), SubjectError> {
    let bad = || SubjectError::NotACommand(subject.to_owned());
    let tokens: Vec<&str> = subject.split('.').collect();
    let (target, job) = match tokens.as_slice() {
        ["commands", "all", job] => (CommandTarget::All, job),
        ["commands", "group", g, job] => (CommandTarget::Group(g.parse().map_err(|_| bad())?), job),
        ["commands", "pc", pc, job] => (CommandTarget::Pc(pc.parse().map_err(|_| bad())?), job),
        _ => return Err(bad()),
    };
    Ok((target, job.parse().map_err(|_| bad())?))
}

impl CommandTarget {
    /// Is a command for this target meant for `pc`, a member of `groups`?
    pub fn addresses(&self, pc: &PcId, groups: &[GroupName]) -> bool {
        match self {
            Self::All => true,
            Self::Pc(p) => p == pc,
            Self::Group(g) => groups.contains(g),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pc(s: &str) -> PcId {
        s.parse().unwrap()
    }
    fn group(s: &str) -> GroupName {
        s.parse().unwrap()
    }
    fn job(s: &str) -> JobId {
        s.parse().unwrap()
    }

    #[test]
    fn the_sender_is_read_from_the_subject() {
        let exec: ExecId = "0190f5c2-6c1e-7a4b-9d2e-1f2a3b4c5d6e".parse().unwrap();
        let req: RequestId = "0190f5c2-6c1f-7000-8000-000000000001".parse().unwrap();
        for (subject, want) in [
            (result(&pc("PC-1"), req), Some("PC-1")),
            (event_started(&pc("PC-2"), exec), Some("PC-2")),
            (inventory(&pc("PC-3")), Some("PC-3")),
            (heartbeat(&pc("PC-4")), Some("PC-4")),
            (obs(&pc("PC-5")), Some("PC-5")),
            ("commands.pc.PC-1.j".to_owned(), None),
            ("audit.exec.create".to_owned(), None),
            ("events".to_owned(), None),
        ] {
            assert_eq!(sender_pc(&subject), want, "{subject}");
        }
    }

    #[test]
    fn builders_produce_the_documented_subjects() {
        let exec: ExecId = "0190f5c2-6c1e-7a4b-9d2e-1f2a3b4c5d6e".parse().unwrap();
        let req: RequestId = "0190f5c2-6c1f-7000-8000-000000000001".parse().unwrap();
        assert_eq!(command_all(&job("j")), "commands.all.j");
        assert_eq!(command_group(&group("canary"), &job("j")), "commands.group.canary.j");
        assert_eq!(command_pc(&pc("PC1"), &job("j")), "commands.pc.PC1.j");
        assert_eq!(kill(exec), "kill.0190f5c2-6c1e-7a4b-9d2e-1f2a3b4c5d6e");
        assert_eq!(parse_kill(&kill(exec)), Some(exec));
        assert_eq!(parse_kill("kill.not-an-id"), None);
        assert_eq!(parse_kill("results.0190f5c2-6c1e-7a4b-9d2e-1f2a3b4c5d6e"), None);
        assert_eq!(result(&pc("PC1"), req), "results.PC1.0190f5c2-6c1f-7000-8000-000000000001");
        assert_eq!(event_started(&pc("PC1"), exec), format!("events.started.PC1.{exec}"));
        assert_eq!(heartbeat(&pc("PC1")), "heartbeat.PC1");
        assert_eq!(inventory(&pc("PC1")), "inventory.PC1");
        assert_eq!(ping(&pc("PC1")), "agents.PC1.ping");
        assert_eq!(audit("exec.create").unwrap(), "audit.exec.create");
        assert!(audit("exec..create").is_err());
        assert!(audit("exec.*").is_err());
    }

    #[test]
    fn agent_config_keys_go_from_least_to_most_specific() {
        let keys = agent_config_keys(&pc("PC1"), &[group("canary")]);
        assert_eq!(
            keys,
            [
                ("notify.agent_config.global".to_owned(), "global".to_owned()),
                ("notify.agent_config.groups.canary".to_owned(), "groups.canary".to_owned()),
                ("notify.agent_config.pcs.PC1".to_owned(), "pcs.PC1".to_owned()),
            ]
        );
        assert_eq!(notify_agent_groups(&pc("PC1")), "notify.agent_groups.PC1");
    }

    #[test]
    fn agent_filters_cover_exactly_its_own_subjects() {
        let filters = agent_command_filters(&pc("PC1"), &[group("canary")]);
        assert_eq!(filters, ["commands.all.>", "commands.pc.PC1.>", "commands.group.canary.>"]);
    }

    #[test]
    fn parse_command_round_trips_and_checks_addressing() {
        let me = pc("PC1");
        let groups = [group("canary")];
        let cases = [
            (command_all(&job("j")), true),
            (command_pc(&me, &job("j")), true),
            (command_pc(&pc("pc1"), &job("j")), false),
            (command_group(&group("canary"), &job("j")), true),
            (command_group(&group("wave1"), &job("j")), false),
        ];
        for (subject, expected) in cases {
            let (target, parsed_job) = parse_command(&subject).unwrap();
            assert_eq!(parsed_job, job("j"));
            assert_eq!(command(&target, &parsed_job), subject);
            assert_eq!(target.addresses(&me, &groups), expected, "{subject}");
        }
    }

    #[test]
    fn parse_command_rejects_foreign_shapes() {
        for s in
            ["commands.all", "commands.pc.PC1", "commands.other.x.j", "results.PC1.x", "commands.all.j.k"]
        {
            let err = parse_command(s).unwrap_err();
            assert!(err.to_string().starts_with(&format!("{s:?} is not a command subject")));
        }
    }
}
