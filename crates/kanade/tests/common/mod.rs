//! A real backend (the library's router and workers on a real socket), a real nats-server and
//! an in-process agent, and the CLI binary to drive them.

#![allow(dead_code)]

use std::process::Output;
use std::time::Duration;

use kanade_backend::auth::Auth;
use kanade_backend::db::Db;
use kanade_backend::http::{self, AppState};
use kanade_testkit::NatsServer;
use tokio::sync::watch;

pub struct Backend {
    pub server: NatsServer,
    pub url: String,
    pub db: Db,
    _stop: watch::Sender<bool>,
}

pub async fn backend(dir: &std::path::Path) -> Backend {
    backend_with(dir, Auth::disabled()).await
}

/// The first admin of `secured` backends.
pub const ADMIN_PASSWORD: &str = "first admin password";

/// With authentication on and the bootstrap admin `admin`.
pub async fn secured(dir: &std::path::Path) -> Backend {
    let b = backend_with(
        dir,
        Auth::with_secret(b"cli test secret cli test secret!!".to_vec(), Duration::from_secs(600)),
    )
    .await;
    assert!(
        kanade_backend::auth::bootstrap_admin(
            &b.db,
            Some(&kanade_shared::secrets::Secret::env(
                kanade_shared::secrets::BOOTSTRAP_ADMIN_PASSWORD,
                ADMIN_PASSWORD
            ))
        )
        .await
        .unwrap()
    );
    b
}

pub async fn backend_with(dir: &std::path::Path, auth: Auth) -> Backend {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 1).await.unwrap();
    let db = Db::open(&dir.join("backend.db")).unwrap();
    let state = AppState::new(client, db.clone(), auth);
    let (stop, stop_rx) = watch::channel(false);
    kanade_backend::workers::spawn(&state, Default::default(), stop_rx.clone()).await.detach_all();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, http::app(state)).await });
    let mut settings =
        kanade_agent::runtime::Settings::new("PC-1".parse().unwrap(), server.url(), dir.join("agent"));
    settings.groups = vec!["lab".parse().unwrap()];
    settings.heartbeat_interval = Duration::from_millis(500);
    tokio::spawn(kanade_agent::runtime::run(settings, stop_rx));
    Backend { server, url, db, _stop: stop }
}

/// The CLI against `url`, with no stored credentials.
pub async fn kanade(url: &str, args: &[&str]) -> Output {
    let none = std::env::temp_dir().join("kanade-cli-tests-no-credentials");
    kanade_in(&none, url, args, None).await
}

/// The CLI with `config_dir` as its per-user config dir, and optional standard input.
pub async fn kanade_in(
    config_dir: &std::path::Path,
    url: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kanade"))
        .arg("--backend-url")
        .arg(url)
        .args(args)
        .env("KANADE_CONFIG_DIR", config_dir)
        .env_remove("KANADE_AUTH_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).await.unwrap();
    drop(input);
    child.wait_with_output().await.unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
