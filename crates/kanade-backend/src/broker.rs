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

/// Enrolment on the broker: clients that are none of the configured users are asked about at
/// the backend (the auth callout, answered with keys `issuer` names), and a system-account user
/// lets the backend disconnect an agent whose credentials it revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// The public account key (`A…`) whose seed the backend signs its answers with.
    pub issuer: String,
    pub system_user: String,
    pub system_password: String,
}

/// [`render`] plus the auth callout and the system account. Every configured user (and the
/// system user) is an `auth_users` entry: the server sends anyone else to the callout.
pub fn render_enrolled(accounts: &[Account], e: &Enrolment) -> String {
    let users = render(accounts);
    let body = users.trim_end().strip_suffix('}').unwrap_or(&users);
    let mut auth_users: Vec<String> = accounts.iter().map(|a| a.user.clone()).collect();
    auth_users.push(e.system_user.clone());
    format!(
        "{body}  # The backend answers for enrolled agents (kanade enroll); replies in time or the client is refused.\n  timeout: 5\n  auth_callout {{\n    issuer: {:?}\n    auth_users: [{}]\n  }}\n}}\naccounts {{\n  SYS {{ users = [ {{ user: {:?}, password: {:?} }} ] }}\n}}\nsystem_account: SYS\n",
        e.issuer,
        list(&auth_users),
        e.system_user,
        e.system_password,
    )
}

/// The system-account user the backend disconnects revoked agents with.
pub const SYSTEM_USER: &str = "kanade-sys";

/// Accounts for a backend (`backend`), `operators` and `agents`, with passwords from
/// `password`, and enrolment answered with the account key `issuer_seed`: the nats-server
/// block and, per account, the `[nats]` section its config needs.
pub fn bundle(
    agents: &[PcId],
    operators: &[String],
    issuer: (&str, &str),
    mut password: impl FnMut() -> String,
) -> (String, Vec<(String, String)>) {
    let (issuer_public, issuer_seed) = issuer;
    let mut accounts = vec![backend("backend", &password())];
    accounts.extend(operators.iter().map(|o| operator(o, &password())));
    accounts.extend(agents.iter().map(|pc| agent(pc, &password())));
    let enrolment = Enrolment {
        issuer: issuer_public.to_owned(),
        system_user: SYSTEM_USER.to_owned(),
        system_password: password(),
    };
    let snippets = accounts
        .iter()
        .map(|a| {
            let mut toml = format!("[nats]\nuser = {:?}\npassword = {:?}\n", a.user, a.password);
            if a.user == "backend" {
                toml.push_str(&format!(
                    "# Enrolment: the key the broker trusts for agents' credentials, and its system account.\nauth_callout_seed = {issuer_seed:?}\nsystem_user = {:?}\nsystem_password = {:?}\n",
                    enrolment.system_user, enrolment.system_password
                ));
            }
            (a.user.clone(), toml)
        })
        .collect();
    (render_enrolled(&accounts, &enrolment), snippets)
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
        let (conf, files) =
            bundle(&["PC-1".parse().unwrap()], &["alice".into()], ("AISSUER", "SASEED"), || {
                n += 1;
                format!("pw{n}")
            });
        assert_eq!(conf.matches("{ user:").count(), 4);
        assert!(
            conf.contains("auth_callout {\n    issuer: \"AISSUER\"\n    auth_users: [\"backend\", \"alice\", \"PC-1\", \"kanade-sys\"]"),
            "{conf}"
        );
        assert!(conf.contains("SYS { users = [ { user: \"kanade-sys\", password: \"pw4\" } ] }"), "{conf}");
        assert!(conf.ends_with("system_account: SYS\n"), "{conf}");
        let users: Vec<&str> = files.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(users, ["backend", "alice", "PC-1"]);
        assert_eq!(files[2].1, "[nats]\nuser = \"PC-1\"\npassword = \"pw3\"\n");
        assert!(files[0].1.contains(
            "auth_callout_seed = \"SASEED\"\nsystem_user = \"kanade-sys\"\nsystem_password = \"pw4\""
        ));
    }
}
