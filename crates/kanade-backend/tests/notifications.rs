//! End-user notifications end to end (SPEC §12): a real nats-server, the real `kanade-agent`
//! binary (its `notifications list|ack` talk to the running agent over its local socket, as a
//! user at the PC would), the NOTIFICATIONS and EVENTS projectors and the API. The gate runs this
//! suite on SQLite and again on Postgres.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn agent_binary() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_kanade-backend")).with_file_name("kanade-agent");
    assert!(bin.exists(), "{} is missing: build it first (cargo build -p kanade-agent)", bin.display());
    bin
}

/// A `kanade-agent` process with its own data dir and socket; killed when dropped.
struct Agent {
    child: Child,
    config: PathBuf,
    socket: PathBuf,
}

impl Agent {
    fn start(dir: &Path, nats_url: &str, pc: &str, groups: &[&str]) -> Self {
        let home = dir.join(pc);
        std::fs::create_dir_all(&home).unwrap();
        let config = home.join("agent.toml");
        let socket = home.join("notify.sock");
        let groups: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
        std::fs::write(
            &config,
            format!(
                "[agent]\nid = {pc:?}\nnats_url = {nats_url:?}\ngroups = [{}]\ndata_dir = {:?}\nheartbeat_interval = \"500ms\"\n[inventory]\nenabled = false\n[update]\nenabled = false\n[notifications]\nsocket = {socket:?}\n[log]\npath = {:?}\n",
                groups.join(", "),
                home.join("data"),
                home.join("logs"),
            ),
        )
        .unwrap();
        Self { child: Self::spawn(&config), config, socket }
    }

    fn spawn(config: &Path) -> Child {
        Command::new(agent_binary())
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(&self.config);
    }

    /// `kanade-agent notifications <args>` as this user: (success, stdout, stderr).
    fn notifications(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(agent_binary())
            .arg("notifications")
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The ids the agent lists to its users now; `None` while it cannot be reached.
    fn listed(&self) -> Option<Vec<String>> {
        let (ok, out, _) = self.notifications(&["list", "--json"]);
        if !ok {
            return None;
        }
        let list: Vec<Value> = serde_json::from_str(&out).unwrap();
        Some(list.iter().filter_map(|n| n["notification"]["id"].as_str().map(str::to_owned)).collect())
    }

    /// Wait until the running agent lists `id` (`want`) or answers without it.
    async fn wait_listed(&self, id: &str, want: bool) {
        kanade_testkit::wait_until_async(
            &format!("{} to list {id}: {want}", self.socket.display()),
            WAIT,
            || async { self.listed().is_some_and(|l| l.contains(&id.to_owned()) == want) },
        )
        .await;
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn known(s: &common::Stack, n: usize) {
    kanade_testkit::wait_until_async(&format!("{n} agents known"), WAIT, || async {
        s.get("/api/agents").await.1["items"].as_array().map_or(0, Vec::len) == n
    })
    .await;
}

async fn pcs(s: &common::Stack, id: &str) -> Value {
    let (status, body) = s.get(&format!("/api/notifications/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    body
}

fn status_of<'a>(detail: &'a Value, pc: &str) -> &'a Value {
    detail["pcs"].as_array().unwrap().iter().find(|p| p["pc_id"] == pc).unwrap_or(&Value::Null)
}

#[tokio::test]
async fn a_group_gets_it_one_user_acks_the_offline_pc_catches_up_and_a_withdrawal_removes_it() {
    let s = common::stack(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let url = s.server.url();
    let pc1 = Agent::start(dir.path(), &url, "PC-1", &["lab"]);
    let pc2 = Agent::start(dir.path(), &url, "PC-2", &["lab"]);
    let mut pc3 = Agent::start(dir.path(), &url, "PC-3", &["lab"]);
    let other = Agent::start(dir.path(), &url, "PC-4", &["office"]);
    known(&s, 4).await;
    // The real binary's own log file, read over the broker (`kanade agents logs`).
    kanade_testkit::wait_until_async("PC-4's log", WAIT, || async {
        let (status, log) = s.get("/api/agents/PC-4/logs?lines=50").await;
        status == StatusCode::OK
            && log["cursor"]["file"]
                .as_str()
                .is_some_and(|f| f.starts_with("kanade-agent.") && f.ends_with(".log"))
            && log["lines"].as_array().is_some_and(|l| l.iter().any(|l| l.as_str().unwrap().contains("INFO")))
    })
    .await;
    // PC-3 is known to the backend but offline when the notification is sent.
    pc3.stop();

    let (status, sent) = s
        .send_as(
            "POST",
            "/api/notifications",
            None,
            json!({ "title": "Reboot tonight", "body": "Save your work by **22:00**.", "priority": "warn",
                    "target": { "groups": ["lab"] }, "expires_in": "2h" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent:#}");
    let id = sent["id"].as_str().unwrap().to_owned();
    assert_eq!(sent["subjects"], json!(["notifications.group.lab"]));
    common::wait_for_audit(&s, "notify.send").await;

    pc1.wait_listed(&id, true).await;
    pc2.wait_listed(&id, true).await;
    kanade_testkit::wait_until("PC-4 to answer", WAIT, || other.listed().is_some());
    assert_eq!(other.listed(), Some(vec![]), "PC-4 is not in lab");

    // A user at PC-1 acknowledges; the agent names them from the socket, not from an argument.
    let me =
        String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_owned();
    let (ok, out, err) = pc1.notifications(&["ack", &id]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), format!("acknowledged {id} as {me}"));
    let (ok, out, _) = pc1.notifications(&["ack", &id]);
    assert!(ok && out.contains("was already acknowledged"), "{out}");
    let (_, text, _) = pc1.notifications(&["list"]);
    assert!(
        text.contains("[warn]") && text.contains("Reboot tonight") && text.contains("(acknowledged by you)"),
        "{text}"
    );

    kanade_testkit::wait_until_async("PC-1's acknowledgement at the API", WAIT, || async {
        status_of(&pcs(&s, &id).await, "PC-1")["status"] == "acked"
    })
    .await;
    let detail = pcs(&s, &id).await;
    assert_eq!(status_of(&detail, "PC-1")["acks"][0]["user"], me.as_str(), "{detail:#}");
    for pc in ["PC-2", "PC-3"] {
        assert_eq!(status_of(&detail, pc)["status"], "outstanding", "{detail:#}");
    }
    assert!(status_of(&detail, "PC-4").is_null(), "PC-4 is not addressed: {detail:#}");
    assert_eq!((detail["recipients"].as_i64(), detail["acked"].as_i64()), (Some(3), Some(1)));

    // Back from its outage, PC-3 catches up.
    pc3.restart();
    pc3.wait_listed(&id, true).await;

    // Withdrawn: every agent drops it, PC-2 too, which is away at the time; an ack is refused
    // with why. A second DELETE sends the withdrawal again and changes nothing else.
    let mut pc2 = pc2;
    pc2.stop();
    let (status, body) = s.send_as("DELETE", &format!("/api/notifications/{id}"), None, Value::Null).await;
    assert_eq!((status, body["state"].as_str()), (StatusCode::OK, Some("withdrawn")), "{body:#}");
    for agent in [&pc1, &pc3] {
        agent.wait_listed(&id, false).await;
    }
    pc2.restart();
    pc2.wait_listed(&id, false).await;
    let (ok, _, err) = pc2.notifications(&["ack", &id]);
    assert!(!ok && err.contains("no notification") && err.contains("withdrawn"), "{err}");
    let (status, again) = s.send_as("DELETE", &format!("/api/notifications/{id}"), None, Value::Null).await;
    assert_eq!((status, &again["withdrawn_at"]), (StatusCode::OK, &body["withdrawn_at"]), "{again:#}");
    assert_eq!(common::audit_count(&s, "notify.withdraw").await, 1);

    // One that expires while its PC is away is never shown there: PC-3 comes back to the later
    // one only.
    pc3.stop();
    let send = |title: &str, expires: &str| json!({ "title": title, "target": { "pcs": ["PC-3"] }, "expires_in": expires });
    let (_, short) = s.send_as("POST", "/api/notifications", None, send("Short", "1s")).await;
    let (_, long) = s.send_as("POST", "/api/notifications", None, send("Long", "1h")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pc3.restart();
    pc3.wait_listed(long["id"].as_str().unwrap(), true).await;
    assert!(!pc3.listed().unwrap().contains(&short["id"].as_str().unwrap().to_owned()));

    // The record and its acknowledgement outlive a projection wipe and replay once.
    let _workers = common::wipe_and_restart(&s).await;
    known(&s, 4).await;
    let detail = pcs(&s, &id).await;
    assert_eq!(
        (detail["state"].as_str(), detail["acked"].as_i64()),
        (Some("withdrawn"), Some(1)),
        "{detail:#}"
    );
    let (_, list) = s.get("/api/notifications").await;
    assert_eq!(list["notifications"].as_array().map(Vec::len), Some(3), "{list:#}");
}

#[tokio::test]
async fn bad_requests_are_named_and_unknown_ids_are_404() {
    let s = common::stack(&[]).await;
    let (status, body) = s
        .send_as(
            "POST",
            "/api/notifications",
            None,
            json!({ "title": "", "priority": "loud", "target": { "all": true, "pcs": ["PC-1"] } }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body:#}");
    let problems: Vec<&str> =
        body["detail"]["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].starts_with("title:") && problems[1].starts_with("priority:"), "{problems:?}");
    assert!(problems[2].starts_with("target: name exactly one"), "{problems:?}");
    let (status, body) = s.get("/api/notifications/0190f5c2-6c1e-7a4b-9d2e-1f2a3b4c5d6e").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");
    let (status, body) = s.get("/api/notifications/nope").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body:#}");
    assert!(body["error"].as_str().unwrap().starts_with("id:"), "{body:#}");
    // A PC never seen is addressed by name: outstanding until it acknowledges.
    let (status, sent) = s
        .send_as(
            "POST",
            "/api/notifications",
            None,
            json!({ "title": "Hi", "target": { "pcs": ["NEW-PC"] } }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a PC never seen is a typo until said otherwise: {sent:#}"
    );
    assert!(
        sent["error"].as_str().unwrap().contains("never seen by this backend (no heartbeat yet): NEW-PC")
    );
    let (status, sent) = s
        .send_as(
            "POST",
            "/api/notifications?allow_unknown=true",
            None,
            json!({ "title": "Hi", "target": { "pcs": ["NEW-PC"] } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent:#}");
    let detail = pcs(&s, sent["id"].as_str().unwrap()).await;
    assert_eq!(detail["pcs"], json!([{ "pc_id": "NEW-PC", "status": "outstanding" }]), "{detail:#}");
}
