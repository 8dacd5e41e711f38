//! TLS to the broker with a CA made in the test: nats-server requires client certificates; the
//! backend and an agent connect with the CA and their certificates and a deploy runs end to
//! end; a client that does not trust the CA is refused.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kanade_shared::nats::BrokerAuth;
use kanade_testkit::NatsServer;
use kanade_testkit::pki::Ca;

struct Pki {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
}

fn pki(dir: &Path) -> Pki {
    let ca = Ca::new(dir, "ca");
    Pki {
        server: ca.issue(dir, "server", &["127.0.0.1", "localhost"]),
        client: ca.issue(dir, "client", &["kanade-client"]),
        ca: ca.path,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_and_backend_reach_a_tls_broker() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path());
    let server = NatsServer::start_with(&format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n}}\n",
        p.server.0, p.server.1, p.ca
    ));
    let url = format!("tls://127.0.0.1:{}", server.port());
    let auth = BrokerAuth {
        ca_file: Some(p.ca.clone()),
        cert_file: Some(p.client.0.clone()),
        key_file: Some(p.client.1.clone()),
        ..Default::default()
    };

    // Without the CA (and a client certificate) the connection is refused.
    assert!(kanade_shared::nats::connect_once(&url, &BrokerAuth::default(), "stranger").await.is_err());

    let backend = kanade_shared::nats::connect_once(&url, &auth, "backend").await.unwrap();
    let js = async_nats::jetstream::new(backend.clone());
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 1).await.unwrap();
    let mut settings =
        kanade_agent::runtime::Settings::new("PC-T".parse().unwrap(), url.clone(), dir.path().join("agent"));
    settings.max_concurrent_jobs = 2;
    settings.heartbeat_interval = Duration::from_millis(500);
    settings.broker = auth;
    let (s, _stop) = common::backend_and_agent(backend, dir.path(), settings).await;
    let body = s
        .deploy_and_wait("id: over-tls\nversion: '1'\nexecute: { shell: sh, script: 'echo secure' }\ntarget: { pcs: [PC-T] }\n")
        .await;
    assert_eq!(body["pcs"][0]["stdout"], "secure\n", "{body:#}");
}
