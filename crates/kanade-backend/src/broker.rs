//! Broker accounts per role, as nats-server configuration. An agent may publish only under its
//! own PC tokens (results, started events and notification acknowledgements, heartbeat, inventory) and use the JetStream API
//! calls its intake needs; it cannot publish commands or another PC's results. The backend may
//! do everything; an operator's CLI may publish commands (its `run` is signed anyway), kills and
//! manage JetStream. Each account replies only through its own inbox prefix.

use kanade_shared::PcId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub password: String,
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

fn inbox(user: &str) -> String {
    format!("_INBOX_{user}.>")
}

pub fn agent(pc: &PcId, password: &str) -> Account {
    let mut publish: Vec<String> = vec![
        format!("results.{pc}.>"),
        format!("events.*.{pc}.>"),
        format!("heartbeat.{pc}"),
        format!("host_perf.{pc}"),
        format!("process_perf.{pc}"),
        format!("inventory.{pc}"),
        format!("obs.{pc}"),
        "$JS.API.INFO".into(),
        // Catch-up: direct gets on EXEC; the ephemeral consumer (fetched, acked, deleted when
        // done) only when EXEC does not answer direct gets. Neither reads more than the other.
        "$JS.API.DIRECT.GET.EXEC".into(),
        "$JS.API.STREAM.INFO.EXEC".into(),
        "$JS.API.CONSUMER.CREATE.EXEC".into(),
        "$JS.API.CONSUMER.CREATE.EXEC.>".into(),
        "$JS.API.CONSUMER.INFO.EXEC.>".into(),
        "$JS.API.CONSUMER.MSG.NEXT.EXEC.>".into(),
        "$JS.API.CONSUMER.DELETE.EXEC.>".into(),
        "$JS.ACK.EXEC.>".into(),
        // Notifications: caught up with direct gets, like EXEC.
        "$JS.API.DIRECT.GET.NOTIFICATIONS".into(),
        // Scripts by reference.
        "$JS.API.STREAM.INFO.OBJ_scripts".into(),
        "$JS.API.DIRECT.GET.OBJ_scripts.>".into(),
        "$JS.API.STREAM.MSG.GET.OBJ_scripts".into(),
        "$JS.API.CONSUMER.CREATE.OBJ_scripts.>".into(),
        "$JS.API.CONSUMER.MSG.NEXT.OBJ_scripts.>".into(),
        "$JS.API.CONSUMER.DELETE.OBJ_scripts.>".into(),
        "$JS.ACK.OBJ_scripts.>".into(),
    ];
    // Agent releases (self-update downloads), read only.
    publish.extend(
        [
            "$JS.API.STREAM.INFO.OBJ_agent_releases",
            "$JS.API.DIRECT.GET.OBJ_agent_releases.>",
            "$JS.API.STREAM.MSG.GET.OBJ_agent_releases",
            "$JS.API.CONSUMER.CREATE.OBJ_agent_releases.>",
            "$JS.API.CONSUMER.MSG.NEXT.OBJ_agent_releases.>",
            "$JS.API.CONSUMER.DELETE.OBJ_agent_releases.>",
            "$JS.ACK.OBJ_agent_releases.>",
        ]
        .map(String::from),
    );
    // The fleet view, kills recorded for returning agents, its own groups and config, read only.
    for bucket in [
        "script_current",
        "script_status",
        kanade_shared::jetstream::EXEC_KILLS,
        "agent_groups",
        "agent_config",
    ] {
        publish.push(format!("$JS.API.STREAM.INFO.KV_{bucket}"));
        publish.push(format!("$JS.API.DIRECT.GET.KV_{bucket}.>"));
        publish.push(format!("$JS.API.STREAM.MSG.GET.KV_{bucket}"));
    }
    let subscribe = vec![
        "commands.all.>".into(),
        format!("commands.pc.{pc}.>"),
        "commands.group.*.>".into(),
        "kill.*".into(),
        // Requests it answers: ping, a running script's output, its log.
        kanade_shared::subjects::ping(pc),
        kanade_shared::subjects::tail(pc),
        kanade_shared::subjects::logs(pc),
        format!("notify.agent_groups.{pc}"),
        "notify.agent_config.>".into(),
        "notifications.all".into(),
        format!("notifications.pc.{pc}"),
        "notifications.group.*".into(),
        inbox(pc.as_str()),
    ];
    Account { user: pc.to_string(), password: password.to_owned(), publish, subscribe }
}

pub fn backend(user: &str, password: &str) -> Account {
    Account {
        user: user.to_owned(),
        password: password.to_owned(),
        publish: vec![">".into()],
        subscribe: vec![">".into()],
    }
}

pub fn operator(user: &str, password: &str) -> Account {
    Account {
        user: user.to_owned(),
        password: password.to_owned(),
        publish: vec![
            "commands.>".into(),
            "kill.*".into(),
            "agents.*.ping".into(),
            "$JS.API.>".into(),
            "$JS.ACK.>".into(),
        ],
        subscribe: vec!["results.>".into(), "events.>".into(), inbox(user)],
    }
}

fn list(items: &[String]) -> String {
    items.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>().join(", ")
}

/// An `authorization { users = [...] }` block for nats-server. `allow_responses` lets an agent
/// answer pings on the requester's inbox.
pub fn render(accounts: &[Account]) -> String {
    let mut out = String::from("authorization {\n  users = [\n");
    for a in accounts {
        out.push_str(&format!(
            "    {{ user: {:?}, password: {:?}, permissions: {{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }}, allow_responses: true }} }}\n",
            a.user,
            a.password,
            list(&a.publish),
            list(&a.subscribe)
        ));
    }
    out.push_str("  ]\n}\n");
    out
}

/// Accounts for a backend (`backend`), `operators` and `agents`, with passwords from
/// `password`: the nats-server block and, per account, the `[nats]` section its config needs.
pub fn bundle(
    agents: &[PcId],
    operators: &[String],
    mut password: impl FnMut() -> String,
) -> (String, Vec<(String, String)>) {
    let mut accounts = vec![backend("backend", &password())];
    accounts.extend(operators.iter().map(|o| operator(o, &password())));
    accounts.extend(agents.iter().map(|pc| agent(pc, &password())));
    let snippets = accounts
        .iter()
        .map(|a| (a.user.clone(), format!("[nats]\nuser = {:?}\npassword = {:?}\n", a.user, a.password)))
        .collect();
    (render(&accounts), snippets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_publishes_only_under_its_own_name() {
        let a = agent(&"PC-7".parse().unwrap(), "pw");
        assert!(a.publish.iter().all(|p| !p.starts_with("commands") && !p.starts_with("kill")));
        let own: Vec<&String> = a.publish.iter().filter(|p| !p.starts_with('$')).collect();
        assert_eq!(
            own,
            [
                "results.PC-7.>",
                "events.*.PC-7.>",
                "heartbeat.PC-7",
                "host_perf.PC-7",
                "process_perf.PC-7",
                "inventory.PC-7",
                "obs.PC-7"
            ]
        );
        assert!(a.subscribe.contains(&"_INBOX_PC-7.>".to_owned()));
        let text = render(&[a]);
        assert!(
            text.starts_with("authorization {\n  users = [\n    { user: \"PC-7\", password: \"pw\""),
            "{text}"
        );
    }

    #[test]
    fn a_bundle_has_every_account_and_its_config_section() {
        let mut n = 0;
        let (conf, files) = bundle(&["PC-1".parse().unwrap()], &["alice".into()], || {
            n += 1;
            format!("pw{n}")
        });
        assert_eq!(conf.matches("{ user:").count(), 3);
        let users: Vec<&str> = files.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(users, ["backend", "alice", "PC-1"]);
        assert_eq!(files[2].1, "[nats]\nuser = \"PC-1\"\npassword = \"pw3\"\n");
    }
}
