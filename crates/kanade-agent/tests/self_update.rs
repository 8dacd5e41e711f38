//! Self-update with the real agent binary and a real nats-server. Versions are the test build
//! copied and stamped (`update::stamp`); each agent runs its own copy under a small supervisor
//! that starts it again whenever it exits, as a service manager would.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use kanade_agent::update::stamp::{TARGET, stamp};
use kanade_shared::wire::{self, Heartbeat};

const FAIL_AT_START: &str = "3.0.0";

fn build(version: &str) -> Vec<u8> {
    stamp(&std::fs::read(env!("CARGO_BIN_EXE_kanade-agent")).unwrap(), version).unwrap()
}

async fn publish(fleet: &Fleet, version: &str, binary: Vec<u8>) {
    let store = fleet.js.get_object_store("agent_releases").await.unwrap();
    store.put(format!("{version}/{TARGET}").as_str(), &mut binary.as_slice()).await.unwrap();
}

/// As `kanade agent publish` does through the backend: signed with the command key.
async fn publish_signed(fleet: &Fleet, version: &str, binary: Vec<u8>, key: &ed25519_dalek::SigningKey) {
    let store = fleet.js.get_object_store("agent_releases").await.unwrap();
    let name = format!("{version}/{TARGET}");
    let metadata = kanade_shared::signing::sign_release(key, &name, &binary)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let meta = async_nats::jetstream::object_store::ObjectMetadata { name, metadata, ..Default::default() };
    store.put(meta, &mut binary.as_slice()).await.unwrap();
}

/// One agent installed at its own path, restarted whenever it exits.
struct Installed {
    exe: PathBuf,
    agent: Agent,
    child: Arc<Mutex<Option<Child>>>,
    starts: Arc<AtomicU32>,
    done: Arc<AtomicBool>,
}

impl Installed {
    fn start(fleet: &Fleet, id: &str, jitter: &str, version: &str) -> Self {
        Self::start_with(fleet, id, jitter, version, "")
    }

    /// With `extra` sections in agent.toml.
    fn start_with(fleet: &Fleet, id: &str, jitter: &str, version: &str, extra: &str) -> Self {
        Self::start_faulty(fleet, id, jitter, version, extra, &[])
    }

    /// With `faults` (`KANADE_AGENT_TEST_*` variables) set for every start.
    fn start_faulty(
        fleet: &Fleet,
        id: &str,
        jitter: &str,
        version: &str,
        extra: &str,
        faults: &[(&str, &str)],
    ) -> Self {
        let faults: Vec<(String, String)> =
            faults.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let agent = fleet.agent_with(id, extra);
        let text = std::fs::read_to_string(&agent.config).unwrap();
        std::fs::write(&agent.config, format!("{text}[update]\njitter = {jitter:?}\nrestart = \"exec\"\n"))
            .unwrap();
        let exe = agent.data_dir.parent().unwrap().join("bin").join("kanade-agent");
        kanade_agent::update::install::write_complete(&exe, &build(version)).unwrap();
        let installed =
            Self { exe, agent, child: Arc::default(), starts: Arc::default(), done: Arc::default() };
        let (exe, config) = (installed.exe.clone(), installed.agent.config.clone());
        let (child, starts, done) =
            (installed.child.clone(), installed.starts.clone(), installed.done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let spawned = Process::new(&exe)
                    .arg("--config")
                    .arg(&config)
                    .env("KANADE_AGENT_TEST_FAIL_AT_START", FAIL_AT_START)
                    .envs(faults.iter().map(|(k, v)| (k, v)))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                starts.fetch_add(1, Ordering::SeqCst);
                *child.lock().unwrap() = Some(spawned);
                loop {
                    std::thread::sleep(Duration::from_millis(50));
                    let mut guard = child.lock().unwrap();
                    match guard.as_mut().map(|c| c.try_wait()) {
                        Some(Ok(None)) => continue,
                        _ => break,
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        installed
    }

    fn installed_version(&self) -> String {
        let out = Process::new(&self.exe).arg("--version").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().trim_start_matches("kanade-agent ").to_owned()
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Heartbeats of `pc` until one satisfies `ok`; on timeout, fail with the agent's log.
async fn heartbeat_where(
    fleet: &Fleet,
    pc: &Installed,
    what: &str,
    within: Duration,
    ok: impl Fn(&Heartbeat) -> bool,
) -> Heartbeat {
    let id = &pc.agent.id;
    let mut sub = fleet.client.subscribe(format!("heartbeat.{id}")).await.unwrap();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let msg = tokio::time::timeout_at(deadline, sub.next())
            .await
            .unwrap_or_else(|_| {
                panic!("no heartbeat from {id} with {what} within {within:?}; log:\n{}", pc.agent.log())
            })
            .unwrap();
        let beat: Heartbeat = wire::decode(&msg.payload).unwrap();
        if ok(&beat) {
            return beat;
        }
    }
}

/// Every observability event `pc` sent so far (stream OBS), oldest first.
async fn obs_events(fleet: &Fleet, pc: &str) -> Vec<kanade_shared::wire::ObsEvent> {
    let mut stream = fleet.js.get_stream("OBS").await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await
            && m.subject.as_str() == kanade_shared::subjects::obs(&pc.parse().unwrap())
        {
            out.push(kanade_shared::wire::decode(&m.payload).unwrap());
        }
    }
    out
}

fn log_of(installed: &Installed) -> String {
    installed.agent.log()
}

#[tokio::test]
async fn rollout_updates_the_scope_only_and_a_crashing_version_is_rolled_back_and_quarantined() {
    let fleet = Fleet::start().await;
    let a = Installed::start(&fleet, "PC-UPA", "0s", "1.0.0");
    let b = Installed::start(&fleet, "PC-UPB", "0s", "1.0.0");
    for pc in [&a, &b] {
        heartbeat_where(&fleet, pc, "version 1.0.0", Duration::from_secs(30), |h| {
            h.agent_version.as_str() == "1.0.0"
        })
        .await;
    }

    // v2 to one PC's scope: it restarts on v2 (same process: re-exec), the other stays on v1.
    publish(&fleet, "2.0.0", build("2.0.0")).await;
    fleet.kv_put("agent_config", "pcs.PC-UPA", r#"{"target_version":"2.0.0"}"#).await;
    heartbeat_where(&fleet, &a, "version 2.0.0", Duration::from_secs(60), |h| {
        h.agent_version.as_str() == "2.0.0"
    })
    .await;
    assert_eq!(a.installed_version(), "2.0.0");
    assert_eq!(a.starts.load(Ordering::SeqCst), 1, "re-exec keeps the process:\n{}", log_of(&a));
    assert!(log_of(&a).contains("delay_ms=0"), "jitter 0 installs at once:\n{}", log_of(&a));
    let other = heartbeat_where(&fleet, &b, "any version", Duration::from_secs(10), |_| true).await;
    assert_eq!(other.agent_version.as_str(), "1.0.0");
    assert_eq!(b.installed_version(), "1.0.0");

    // v3 dies at every start: after 3 starts the agent is back on v2, v3 quarantined and reported.
    publish(&fleet, FAIL_AT_START, build(FAIL_AT_START)).await;
    fleet.kv_put("agent_config", "pcs.PC-UPA", r#"{"target_version":"3.0.0"}"#).await;
    // The first heartbeat after the rollback can go out before the update task has looked at
    // the target again, so wait for the one that also says why nothing is installed.
    let beat = heartbeat_where(&fleet, &a, "v3 quarantined", Duration::from_secs(90), |h| {
        h.agent_version.as_str() == "2.0.0"
            && h.quarantined.iter().any(|q| q.version.as_str() == FAIL_AT_START)
            && h.update_status.as_deref().is_some_and(|s| s.contains("is quarantined"))
    })
    .await;
    let status = beat.update_status.unwrap_or_default();
    assert!(status.contains("3.0.0 is quarantined"), "{status}");
    assert_eq!(a.installed_version(), "2.0.0");
    // Three failed starts of v3 (the supervisor restarted it twice after the first re-exec),
    // then the fourth start rolled back.
    let starts = a.starts.load(Ordering::SeqCst);
    assert_eq!(starts, 4, "{}", log_of(&a));

    // The timeline has both: v2 confirmed after its update, v3 rolled back.
    let said = |e: &kanade_shared::wire::ObsEvent, kind: &str, version: &str| {
        e.kind == kind && e.data.get("version").and_then(|v| v.as_str()) == Some(version)
    };
    kanade_testkit::wait_until_async(
        "agent.updated and agent.rolled_back on OBS",
        Duration::from_secs(30),
        || async {
            let events = obs_events(&fleet, "PC-UPA").await;
            events.iter().any(|e| said(e, "agent.updated", "2.0.0"))
                && events.iter().any(|e| said(e, "agent.rolled_back", FAIL_AT_START))
        },
    )
    .await;
    let rolled = obs_events(&fleet, "PC-UPA").await;
    assert_eq!(rolled.iter().filter(|e| e.kind == "agent.rolled_back").count(), 1, "{rolled:#?}");

    // Not reinstalled while it stays the target.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!((a.starts.load(Ordering::SeqCst), a.installed_version()), (starts, "2.0.0".to_owned()));

    // An operator clears the quarantine (and points the PC back at v2): nothing is reported.
    let now = kanade_shared::wire::Timestamp::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    fleet
        .kv_put(
            "agent_config",
            "pcs.PC-UPA",
            &format!(r#"{{"target_version":"2.0.0","clear_quarantine":"{now}"}}"#),
        )
        .await;
    heartbeat_where(&fleet, &a, "no quarantine", Duration::from_secs(30), |h| {
        h.quarantined.is_empty() && h.update_status.is_none()
    })
    .await;
}

#[tokio::test]
async fn a_version_that_dies_once_up_before_it_is_confirmed_is_rolled_back() {
    let fleet = Fleet::start().await;
    let pc = Installed::start_faulty(
        &fleet,
        "PC-UPU",
        "0s",
        "1.0.0",
        "",
        &[("KANADE_AGENT_TEST_DIE_AFTER_UP", "2.0.0")],
    );
    heartbeat_where(&fleet, &pc, "version 1.0.0", Duration::from_secs(30), |h| {
        h.agent_version.as_str() == "1.0.0"
    })
    .await;
    let mut beats = fleet.client.subscribe("heartbeat.PC-UPU").await.unwrap();
    fleet.client.flush().await.unwrap();
    publish(&fleet, "2.0.0", build("2.0.0")).await;
    fleet.kv_put("agent_config", "pcs.PC-UPU", r#"{"target_version":"2.0.0"}"#).await;

    // Each start of 2.0.0 gets connected and heartbeats once (it is up), then dies before it
    // has run the 30 s it needs to be confirmed; the fourth start rolls back.
    let mut up_on_v2 = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let rolled_back = loop {
        let msg = tokio::time::timeout_at(deadline, beats.next())
            .await
            .unwrap_or_else(|_| panic!("not rolled back within 90 s; log:\n{}", log_of(&pc)))
            .unwrap();
        let beat: Heartbeat = wire::decode(&msg.payload).unwrap();
        match beat.agent_version.as_str() {
            "2.0.0" => up_on_v2 += 1,
            _ if beat.quarantined.iter().any(|q| q.version.as_str() == "2.0.0") => break beat,
            _ => {}
        }
    };
    assert_eq!(up_on_v2, 3, "each of the three trial starts was up before it died:\n{}", log_of(&pc));
    assert_eq!(rolled_back.agent_version.as_str(), "1.0.0");
    let reason = &rolled_back.quarantined[0].reason;
    assert!(reason.contains("did not run healthy within 3 starts"), "{reason}");
    assert_eq!(pc.installed_version(), "1.0.0");
    assert_eq!(pc.starts.load(Ordering::SeqCst), 4, "{}", log_of(&pc));
}

#[tokio::test]
async fn a_crash_between_staging_and_swap_keeps_the_old_binary_and_tries_again() {
    let fleet = Fleet::start().await;
    let arm = fleet.dir.path().join("crash-before-swap");
    std::fs::write(&arm, b"").unwrap();
    let pc = Installed::start_faulty(
        &fleet,
        "PC-UPW",
        "0s",
        "1.0.0",
        "",
        &[("KANADE_AGENT_TEST_CRASH_BEFORE_SWAP", arm.to_str().unwrap())],
    );
    heartbeat_where(&fleet, &pc, "version 1.0.0", Duration::from_secs(30), |h| {
        h.agent_version.as_str() == "1.0.0"
    })
    .await;
    publish(&fleet, "2.0.0", build("2.0.0")).await;
    fleet.kv_put("agent_config", "pcs.PC-UPW", r#"{"target_version":"2.0.0"}"#).await;
    // The first attempt dies with 2.0.0 staged and its trial recorded; the old binary starts
    // again, sees the swap never ran, and installs 2.0.0 again instead of quarantining it.
    heartbeat_where(&fleet, &pc, "version 2.0.0", Duration::from_secs(60), |h| {
        h.agent_version.as_str() == "2.0.0" || !h.quarantined.is_empty()
    })
    .await;
    let log = log_of(&pc);
    assert!(!arm.exists(), "the crash before the swap never happened:\n{log}");
    assert!(log.contains("it will be tried again"), "{log}");
    let beat = heartbeat_where(&fleet, &pc, "any", Duration::from_secs(10), |_| true).await;
    assert_eq!((beat.agent_version.as_str(), beat.quarantined.len()), ("2.0.0", 0), "{log}");
    assert_eq!(pc.installed_version(), "2.0.0");
    // The start after the crash, then a re-exec into 2.0.0 in the same process.
    assert_eq!(pc.starts.load(Ordering::SeqCst), 2, "{log}");
}

#[tokio::test]
async fn a_corrupted_release_is_refused_and_the_binary_untouched() {
    let fleet = Fleet::start().await;
    let c = Installed::start(&fleet, "PC-UPC", "0s", "1.0.0");
    heartbeat_where(&fleet, &c, "version 1.0.0", Duration::from_secs(30), |h| {
        h.agent_version.as_str() == "1.0.0"
    })
    .await;
    let before = std::fs::read(&c.exe).unwrap();

    // A version nobody published: reported, retried later, not a dead end.
    fleet.kv_put("agent_config", "global", r#"{"target_version":"9.9.9"}"#).await;
    let beat = heartbeat_where(&fleet, &c, "a missing-release status", Duration::from_secs(30), |h| {
        h.update_status.is_some_and_failed()
    })
    .await;
    let status = beat.update_status.unwrap();
    assert!(status.contains(&format!("release 9.9.9/{TARGET} is not published")), "{status}");

    publish(&fleet, "2.0.0", build("2.0.0")).await;
    corrupt_digest(&fleet, &format!("2.0.0/{TARGET}")).await;
    fleet.kv_put("agent_config", "global", r#"{"target_version":"2.0.0"}"#).await;
    let beat = heartbeat_where(&fleet, &c, "a refused download", Duration::from_secs(30), |h| {
        h.update_status.as_deref().is_some_and(|s| s.contains("2.0.0") && s.contains("retrying"))
    })
    .await;
    let status = beat.update_status.unwrap();
    assert!(status.contains("does not match its sha256") && status.contains("retrying in"), "{status}");
    assert_eq!(beat.agent_version.as_str(), "1.0.0");
    assert_eq!(std::fs::read(&c.exe).unwrap(), before);
    assert_eq!(c.starts.load(Ordering::SeqCst), 1);
    assert!(
        !stage_dir(&c.agent.data_dir)
            .join(format!("kanade-agent-2.0.0{}", std::env::consts::EXE_SUFFIX))
            .exists()
    );
}

#[tokio::test]
async fn jitter_delays_the_download_within_the_window() {
    let fleet = Fleet::start().await;
    let d = Installed::start(&fleet, "PC-UPD", "6s", "1.0.0");
    heartbeat_where(&fleet, &d, "version 1.0.0", Duration::from_secs(30), |h| {
        h.agent_version.as_str() == "1.0.0"
    })
    .await;
    publish(&fleet, "2.0.0", build("2.0.0")).await;
    let rolled_out = Instant::now();
    fleet.kv_put("agent_config", "global", r#"{"target_version":"2.0.0"}"#).await;
    heartbeat_where(&fleet, &d, "version 2.0.0", Duration::from_secs(60), |h| {
        h.agent_version.as_str() == "2.0.0"
    })
    .await;
    let took = rolled_out.elapsed();
    let log = log_of(&d);
    let delay_ms: u64 = log
        .split("delay_ms=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no jitter logged:\n{log}"));
    assert!(delay_ms <= 6_000, "jitter {delay_ms} ms exceeds the 6 s window");
    assert!(
        took >= Duration::from_millis(delay_ms),
        "updated after {took:?}, before its {delay_ms} ms jitter"
    );
}

trait FailedStatus {
    fn is_some_and_failed(&self) -> bool;
}

impl FailedStatus for Option<String> {
    fn is_some_and_failed(&self) -> bool {
        self.as_deref().is_some_and(|s| s.contains("retrying"))
    }
}

fn stage_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("update").join("staging")
}

/// Rewrite the release's recorded digest so it no longer matches its content, as a corrupted
/// or altered upload would look to an agent.
async fn corrupt_digest(fleet: &Fleet, key: &str) {
    use base64::Engine;
    let subject = format!("$O.agent_releases.M.{}", base64::engine::general_purpose::URL_SAFE.encode(key));
    let stream = fleet.js.get_stream("OBJ_agent_releases").await.unwrap();
    let msg = stream.get_last_raw_message_by_subject(&subject).await.unwrap();
    let mut meta: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    let forged = base64::engine::general_purpose::URL_SAFE.encode([7u8; 32]);
    meta["digest"] = format!("SHA-256={forged}").into();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Rollup", "sub");
    fleet
        .js
        .publish_with_headers(subject, headers, serde_json::to_vec(&meta).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test]
async fn an_agent_that_pins_keys_installs_only_releases_signed_with_them() {
    let fleet = Fleet::start().await;
    let backend = kanade_shared::signing::generate().unwrap();
    let pinned = kanade_shared::signing::encode_public(&backend.verifying_key());
    let pc = Installed::start_with(
        &fleet,
        "PC-UPS",
        "0s",
        "1.0.0",
        &format!("[security]\ntrusted_keys = [{pinned:?}]"),
    );
    heartbeat_where(&fleet, &pc, "version 1.0.0", Duration::from_secs(30), |h| {
        h.agent_version.as_str() == "1.0.0"
    })
    .await;
    // Put straight into the store by someone with broker credentials but not the key.
    publish(&fleet, "2.0.0", build("2.0.0")).await;
    fleet.kv_put("agent_config", "pcs.PC-UPS", r#"{"target_version":"2.0.0"}"#).await;
    heartbeat_where(&fleet, &pc, "the refusal", Duration::from_secs(30), |h| {
        h.update_status.as_deref().is_some_and(|s| s.contains("the release is not signed"))
    })
    .await;
    assert_eq!(pc.installed_version(), "1.0.0");
    // Signed with a key the agent does not pin: refused too.
    let rogue = kanade_shared::signing::generate().unwrap();
    publish_signed(&fleet, "2.0.1", build("2.0.1"), &rogue).await;
    fleet.kv_put("agent_config", "pcs.PC-UPS", r#"{"target_version":"2.0.1"}"#).await;
    heartbeat_where(&fleet, &pc, "the refusal", Duration::from_secs(30), |h| {
        h.update_status.as_deref().is_some_and(|s| s.contains("does not trust"))
    })
    .await;
    assert_eq!(pc.installed_version(), "1.0.0");
    // Signed with the pinned key: installed.
    publish_signed(&fleet, "2.1.0", build("2.1.0"), &backend).await;
    fleet.kv_put("agent_config", "pcs.PC-UPS", r#"{"target_version":"2.1.0"}"#).await;
    heartbeat_where(&fleet, &pc, "version 2.1.0", Duration::from_secs(60), |h| {
        h.agent_version.as_str() == "2.1.0"
    })
    .await;
    assert_eq!(pc.installed_version(), "2.1.0");
}
