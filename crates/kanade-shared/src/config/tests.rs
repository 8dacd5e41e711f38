//! Config rules, each run against a fake [`Environment`].

use std::path::{Path, PathBuf};

use super::*;

fn linux() -> Environment {
    Environment::fake(OsKind::Linux, "pc-lin-01")
}

fn windows() -> Environment {
    Environment::fake(OsKind::Windows, "PC-WIN-01").with_var("PROGRAMDATA", r"D:\PD")
}

#[test]
fn templates_render_host_env_and_os_conditions() {
    let env = linux().with_var("SITE", "osaka");
    let text = r#"id = "{{ system.host }}"
site = "{{ env(name="SITE", default="tokyo") }}"
other = "{{ env(name="MISSING", default="fallback") }}"
{% if is_windows() %}shell = "powershell"{% else %}shell = "sh"{% endif %}"#;
    let out = render(text, &env).unwrap();
    assert_eq!(out, "id = \"pc-lin-01\"\nsite = \"osaka\"\nother = \"fallback\"\nshell = \"sh\"");
    let out = render("{% if is_windows() %}win{% endif %}", &windows()).unwrap();
    assert_eq!(out, "win");
}

#[test]
fn template_errors_say_what_is_missing() {
    let err = render(r#"x = "{{ env(name="NOPE") }}""#, &linux()).unwrap_err();
    assert!(err.contains("environment variable NOPE is not set and env() was given no default"), "{err}");
    let err = render("x = \"{{ system.hots }}\"", &linux()).unwrap_err();
    assert!(err.starts_with("undefined value"), "{err}");
    assert!(err.ends_with("(line 1)"), "{err}");
}

#[test]
fn discovery_order_is_flag_then_env_var_then_config_dir() {
    let all = |_: &Path| true;
    let env = linux().with_var("KANADE_AGENT_CONFIG", "/from/env.toml");
    let found = discover(Role::Agent, Some(Path::new("/from/flag.toml")), &env, all).unwrap();
    assert_eq!((found.path, found.source), (PathBuf::from("/from/flag.toml"), Source::Flag));
    let found = discover(Role::Agent, None, &env, all).unwrap();
    assert_eq!((found.path, found.source), (PathBuf::from("/from/env.toml"), Source::EnvVar));
    let found = discover(Role::Backend, None, &linux(), all).unwrap();
    assert_eq!((found.path, found.source), (PathBuf::from("/etc/kanade/backend.toml"), Source::DefaultDir));
    let found = discover(Role::Agent, None, &windows(), all).unwrap();
    assert_eq!(found.path, PathBuf::from(r"D:\PD\Kanade\config\agent.toml"));
}

#[test]
fn discovery_errors_name_every_place_looked() {
    let none = |_: &Path| false;
    let err = discover(Role::Agent, None, &linux(), none).unwrap_err().to_string();
    assert_eq!(
        err,
        "no agent.toml config found; looked at:\n  1. --config <path>: not given\n  2. KANADE_AGENT_CONFIG: not set\n  3. /etc/kanade/agent.toml: does not exist\ncreate one (see the sample agent.toml in the kanade repository) or pass --config"
    );
    let err = discover(Role::Agent, Some(Path::new("/x.toml")), &linux(), none).unwrap_err().to_string();
    assert_eq!(err, "config file /x.toml (from --config) does not exist");
    let env = linux().with_var("KANADE_BACKEND_CONFIG", "/y.toml");
    let err = discover(Role::Backend, None, &env, none).unwrap_err().to_string();
    assert_eq!(err, "config file /y.toml (from KANADE_BACKEND_CONFIG) does not exist");
}

#[test]
fn default_paths_follow_the_os() {
    let lin = DefaultPaths::for_env(&linux());
    assert_eq!(lin.data_dir, PathBuf::from("/var/lib/kanade"));
    assert_eq!(lin.log_dir, PathBuf::from("/var/log/kanade"));
    let win = DefaultPaths::for_env(&Environment::fake(OsKind::Windows, "W"));
    assert_eq!(win.config_dir, PathBuf::from(r"C:\ProgramData\Kanade\config"));
    assert_eq!(win.data_dir, PathBuf::from(r"C:\ProgramData\Kanade\data"));
    assert_eq!(win.log_dir, PathBuf::from(r"C:\ProgramData\Kanade\logs"));
}

fn agent_problems(text: &str, env: &Environment) -> Vec<String> {
    agent::parse(text, env).map(|_| Vec::new()).unwrap_or_else(|p| p.messages())
}

#[test]
fn agent_config_defaults_and_rules() {
    let config = agent::parse("", &linux()).unwrap();
    assert_eq!(config.id.as_str(), "pc-lin-01");
    assert_eq!(config.nats_url, "nats://127.0.0.1:4222");
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/kanade"));
    assert_eq!(config.heartbeat_interval.as_secs(), 30);
    assert_eq!(config.inventory.interval.as_secs(), 86_400);
    assert_eq!(
        config.update,
        UpdateConfig { enabled: true, jitter: "10m".parse().unwrap(), restart: RestartMode::Auto }
    );
    let config = agent::parse(
        "[update]
jitter = \"0s\"\nrestart = \"exec\"\n",
        &linux(),
    )
    .unwrap();
    assert_eq!((config.update.jitter.as_secs(), config.update.restart), (0, RestartMode::Exec));

    let cases: &[(&str, &[&str])] = &[
        (
            "[agent]\nid = \"my pc\"\n",
            &[r#"agent.id: pc_id "my pc" is invalid: use 1 to 64 characters from A-Z a-z 0-9 _ -"#],
        ),
        (
            "[agent]\ngroups = [\"ok\", \"not ok\"]\nheartbeat_interval = \"often\"\n",
            &[
                r#"agent.groups[1]: group name "not ok" is invalid: use 1 to 64 characters from A-Z a-z 0-9 _ -"#,
                r#"agent.heartbeat_interval: "often" is not a duration (write a number with a unit, e.g. 30s, 10m, 24h)"#,
            ],
        ),
        (
            "[agent]\nnats_url = \"http://x\"\n",
            &[r#"agent.nats_url: "http://x" is not a NATS URL (nats://host:4222 or tls://host:4222)"#],
        ),
        (
            "[agent]\nidd = \"x\"\n[inventroy]\nenabled = true\n",
            &["agent.idd: unknown key", "inventroy: unknown key"],
        ),
        (
            "[update]\nrestart = \"reboot\"\njitter = \"soon\"\n",
            &[
                r#"update.jitter: "soon" is not a duration (write a number with a unit, e.g. 30s, 10m, 24h)"#,
                r#"update.restart: "reboot" is not one of "auto", "exec", "exit""#,
            ],
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(agent_problems(text, &linux()), *expected, "{text}");
    }
    // A host name that is not a valid id stops the agent with the value and the rule.
    let bad_host = Environment::fake(OsKind::Linux, "host+1.corp.example");
    assert_eq!(
        agent_problems("", &bad_host),
        [r#"agent.id: pc_id "host+1" is invalid: use 1 to 64 characters from A-Z a-z 0-9 _ -"#]
    );
    // A fully qualified host name gives its first label.
    let fqdn = Environment::fake(OsKind::Linux, "PC-7.corp.example");
    assert_eq!(agent::parse("", &fqdn).unwrap().id.as_str(), "PC-7");
    let err = agent_problems("[agent\n", &linux());
    assert!(err[0].starts_with("TOML parse error"), "{err:?}");
}

#[test]
fn backend_config_defaults_and_rules() {
    let config = backend::parse("", &windows()).unwrap();
    assert_eq!(config.db, DbConfig::Sqlite(PathBuf::from(r"D:\PD\Kanade\data\backend.db")));
    assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
    assert_eq!(config.retention, RetentionConfig::default());
    let problems = backend::parse(
        "[server]\nbind = \"localhost\"\n[db]\nurl = \"mysql://u:secret@h/db\"\n[nats]\nreplicas = 2\n[auth]\njwt_secret = \"short\"\nttl = \"1h\"\n[retention]\nresults = \"10m\"\naudit = \"a year\"\n",
        &linux(),
    )
    .unwrap_err()
    .messages();
    assert_eq!(
        problems,
        [
            "auth.ttl: unknown key",
            r#"server.bind: "localhost" is not an address:port such as 127.0.0.1:8080"#,
            "nats.replicas: 2 is not 1, 3 or 5",
            r#"db.url: "mysql://***@h/db" is not a postgres:// URL"#,
            "auth.jwt_secret: is shorter than 32 characters; use a long random value or leave it out to have one generated",
            "retention.results: 10m is shorter than 1h; history would vanish while it is still in use",
            r#"retention.audit: "a year" is not a duration (write a number with a unit, e.g. 30s, 10m, 24h)"#,
        ]
    );
    let problems = backend::parse("[db]\nurl = \"postgres://u:secret@h/db?sslmode=on\"\n", &linux())
        .unwrap_err()
        .messages();
    assert_eq!(
        problems,
        [r#"db.url: sslmode="on" is not one of disable, prefer, require, verify-ca, verify-full"#]
    );
}

#[test]
fn load_reads_renders_and_validates_a_real_file() {
    let dir = std::env::temp_dir().join(format!("kanade-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("agent.toml");
    std::fs::write(&path, "[agent]\nid = \"{{ env(name=\"PCNAME\") }}\"\ngroups = [\"canary\"]\n").unwrap();
    let env = linux().with_var("KANADE_AGENT_CONFIG", path.to_str().unwrap()).with_var("PCNAME", "PC-7");
    let (config, found) = load_agent(None, &env).unwrap();
    assert_eq!(config.id.as_str(), "PC-7");
    assert_eq!(found.source, Source::EnvVar);
    std::fs::write(&path, "[agent]\nid = \"a b\"\n").unwrap();
    let err = load_agent(Some(&path), &linux()).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "config {} is invalid:\nagent.id: pc_id \"a b\" is invalid: use 1 to 64 characters from A-Z a-z 0-9 _ -",
            path.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn broker_credentials_and_tls_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "pem").unwrap();
    let text =
        format!("[agent]\nid = \"PC-1\"\n[nats]\nuser = \"PC-1\"\npassword = \"secret\"\nca_file = {ca:?}\n");
    let config = agent::parse(&text, &linux()).unwrap();
    assert_eq!(config.broker.user.as_deref(), Some("PC-1"));
    assert_eq!(config.broker.inbox_prefix.as_deref(), Some("_INBOX_PC-1"));
    assert_eq!(config.broker.ca_file.as_deref(), Some(ca.as_path()));
    let problems = agent_problems(
        "[agent]\nid = \"PC-1\"\n[nats]\ntoken = \"t\"\nuser = \"u\"\ncert_file = \"/nonexistent/cert.pem\"\nport = 1\n",
        &linux(),
    );
    assert_eq!(
        problems,
        [
            "nats.port: unknown key",
            "nats.user: user and password go together; set both or neither",
            "nats.token: set either a token or user/password, not both",
            "nats.cert_file: a client certificate needs its key_file (and the other way round)",
            r#"nats.cert_file: "/nonexistent/cert.pem" is not a readable file"#,
        ]
    );
}

#[test]
fn the_broker_token_comes_from_registry_then_environment_then_config_unless_a_user_is_set() {
    let describe = |text: &str, env: &Environment| {
        let broker = agent::parse(text, env).unwrap().broker;
        (broker.token.clone(), describe_broker_auth(&broker, &env.machine))
    };
    let env = linux().with_var(NATS_TOKEN_VAR, "fleet-secret");
    let mut registry = windows().with_var(NATS_TOKEN_VAR, "fleet-secret");
    registry.machine = crate::secrets::MachineSecrets {
        key: r"HKLM\SOFTWARE\Kanade\agent".into(),
        values: [(NATS_TOKEN_VAR.to_owned(), "machine-secret".to_owned())].into(),
        unreadable: None,
    };
    let token = |s: &str| Some(s.to_owned());
    // (config, environment) → (token, what check-config says)
    let cases = [
        ("", &env, token("fleet-secret"), "token (from environment KANADE_NATS_TOKEN)"),
        (
            "[nats]\ntoken = \"own\"\n",
            &env,
            token("fleet-secret"),
            "token (from environment KANADE_NATS_TOKEN)",
        ),
        (
            "[nats]\ntoken = \"own\"\n",
            &registry,
            token("machine-secret"),
            r"token (from registry HKLM\SOFTWARE\Kanade\agent\KANADE_NATS_TOKEN)",
        ),
        ("[nats]\ntoken = \"own\"\n", &linux(), token("own"), "token (from config nats.token)"),
        (
            "[nats]\nuser = \"PC-1\"\npassword = \"pw\"\n",
            &registry,
            None,
            "user PC-1 with a password (config)",
        ),
        ("", &linux(), None, "none"),
        ("", &linux().with_var(NATS_TOKEN_VAR, ""), None, "none"),
    ];
    for (text, env, want_token, want_said) in cases {
        assert_eq!(describe(text, env), (want_token, want_said.to_owned()), "{text:?}");
    }
    let mut locked = linux();
    locked.machine = crate::secrets::MachineSecrets {
        key: r"HKLM\SOFTWARE\Kanade\agent".into(),
        unreadable: Some("Access is denied. (os error 5)".into()),
        ..Default::default()
    };
    assert_eq!(
        describe("", &locked).1,
        r"none (HKLM\SOFTWARE\Kanade\agent not readable by this account: Access is denied. (os error 5))"
    );
}

#[test]
fn an_enrolled_agents_config_is_valid_on_its_os() {
    use crate::wire::enroll::{AgentToml, agent_toml};
    let pc: crate::PcId = "PC-9".parse().unwrap();
    let groups = ["canary".parse().unwrap(), "tokyo".parse().unwrap()];
    let key = crate::signing::encode_public(&ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key());
    for (os, env) in [("linux", linux()), ("windows", windows())] {
        let text = agent_toml(&AgentToml {
            pc: &pc,
            os,
            nats_url: "nats://broker:4222",
            groups: &groups,
            trusted_key: Some(&key),
            password: "00ff",
            token_id: "t1",
            now: time::macros::datetime!(2026-12-01 10:00 UTC),
        });
        let config =
            agent::parse(&render(&text, &env).unwrap(), &env).unwrap_or_else(|p| panic!("{p}\n{text}"));
        assert_eq!(config.id, pc);
        assert_eq!(config.nats_url, "nats://broker:4222");
        assert_eq!(config.groups.len(), 2);
        assert_eq!(config.trusted_keys.len(), 1);
        assert_eq!(config.broker.user.as_deref(), Some("PC-9"));
        assert_eq!(config.broker.password.as_deref(), Some("00ff"));
        let data = if os == "windows" { r"C:\ProgramData\Kanade\data" } else { "/var/lib/kanade" };
        assert_eq!(config.data_dir, PathBuf::from(data));
    }
}
