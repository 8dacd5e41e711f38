//! A backend stack for tests: real nats-server, real SQLite, in-process agents (the kanade-agent
//! library), the real router driven without a socket.

#![allow(dead_code)]

pub mod process;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use kanade_backend::db::Db;
use kanade_backend::http::{self, AppState};
use kanade_testkit::NatsServer;
use serde_json::Value;
use tokio::sync::watch;
use tower::ServiceExt;

/// The store these tests run on: SQLite in `dir`, or with `KANADE_TEST_DB=postgres` a fresh
/// database of the test binary's Postgres cluster (the gate runs the suites both ways).
/// Where [`test_db`] notes the Postgres database it made, for [`raw_sql`].
const PG_URL_FILE: &str = "postgres-url";

/// Run `sql` on the database [`test_db`] made for `dir`, behind the store's back (a test that
/// makes the database refuse something). `sqlite` and `postgres` are the statement for each.
pub fn raw_sql(dir: &std::path::Path, sqlite: &str, postgres: &str) {
    match std::fs::read_to_string(dir.join(PG_URL_FILE)) {
        Ok(url) => {
            let db = url.rsplit('/').next().unwrap();
            kanade_testkit::PgCluster::shared().psql(db, postgres).unwrap();
        }
        Err(_) => rusqlite::Connection::open(dir.join("backend.db")).unwrap().execute_batch(sqlite).unwrap(),
    }
}

pub async fn test_db(dir: &std::path::Path) -> Db {
    match std::env::var("KANADE_TEST_DB").as_deref() {
        Ok("postgres") => {
            let url = kanade_testkit::PgCluster::shared().fresh_database();
            std::fs::write(dir.join(PG_URL_FILE), &url).unwrap();
            Db::connect_postgres(&url).await.unwrap()
        }
        Ok("sqlite") | Err(_) => Db::open(&dir.join("backend.db")).unwrap(),
        Ok(other) => panic!("KANADE_TEST_DB={other}: expected sqlite or postgres"),
    }
}

/// The router alone, for tests that assemble their own backend.
pub struct Client(pub axum::Router);

/// A backend (workers and router, auth off) over an already connected `client`, with its
/// database in `dir`, and one agent with `settings` (its broker settings are the test's
/// business). Both run until the returned sender is dropped.
pub async fn backend_and_agent(
    client: async_nats::Client,
    dir: &std::path::Path,
    settings: kanade_agent::runtime::Settings,
) -> (Client, watch::Sender<bool>) {
    let db = test_db(dir).await;
    let state = AppState::new(client, db, kanade_backend::auth::Auth::disabled());
    let (stop, stop_rx) = watch::channel(false);
    kanade_backend::workers::spawn(&state, Default::default(), stop_rx.clone()).await.detach_all();
    tokio::spawn(kanade_agent::runtime::run(settings, stop_rx));
    (Client(http::app(state)), stop)
}

impl Client {
    /// Wait for an agent to show up, deploy `yaml`, and return the completed execution.
    pub async fn deploy_and_wait(&self, yaml: &str) -> Value {
        kanade_testkit::wait_until_async("an agent to heartbeat", Duration::from_secs(30), || async {
            self.get("/api/agents").await.1["items"].as_array().is_some_and(|i| !i.is_empty())
        })
        .await;
        let (status, body) = self.post_yaml("/api/deploy", yaml).await;
        assert_eq!(status, StatusCode::CREATED, "{body:#}");
        let path = format!("/api/executions/{}", body["exec_id"].as_str().unwrap());
        kanade_testkit::wait_until_async("the execution to complete", Duration::from_secs(30), || async {
            self.get(&path).await.1["execution"]["status"] == "completed"
        })
        .await;
        self.get(&path).await.1
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(&self.0, Request::get(path).body(Body::empty()).unwrap()).await
    }

    pub async fn post_yaml(&self, path: &str, yaml: &str) -> (StatusCode, Value) {
        let req = Request::post(path)
            .header("content-type", "application/yaml")
            .body(Body::from(yaml.to_owned()))
            .unwrap();
        send(&self.0, req).await
    }
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

pub struct Stack {
    pub server: NatsServer,
    pub dir: tempfile::TempDir,
    pub app: axum::Router,
    pub state: AppState,
    /// Stops the backend's workers (projectors, dispatcher, scheduler…).
    pub stop: watch::Sender<bool>,
    /// The running workers and their stop signal: a restart waits for them to end.
    workers: std::sync::Mutex<(tokio::task::JoinSet<()>, watch::Sender<bool>)>,
    /// Stops the agents.
    pub agents_stop: watch::Sender<bool>,
    /// Keys agents started from now on pin.
    pub trusted: std::sync::Mutex<Vec<ed25519_dalek::VerifyingKey>>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = self.agents_stop.send(true);
    }
}

pub async fn stack(agents: &[(&str, &[&str])]) -> Stack {
    stack_with(agents, kanade_backend::auth::Auth::disabled()).await
}

/// The signing secret of `secured()` stacks, so tests can mint tokens.
pub const SECRET: &[u8] = b"test secret test secret test secret!";

/// A stack with authentication on (no agents) and the bootstrap admin `admin` / `ADMIN_PASSWORD`.
pub async fn secured() -> Stack {
    secured_with(|auth| auth).await
}

/// A stack with real authentication (adjusted by `tune`) and the bootstrap admin.
pub async fn secured_with(
    tune: impl FnOnce(kanade_backend::auth::Auth) -> kanade_backend::auth::Auth,
) -> Stack {
    let auth = tune(kanade_backend::auth::Auth::with_secret(SECRET.to_vec(), Duration::from_secs(600)));
    let s = stack_with(&[], auth).await;
    assert!(
        kanade_backend::auth::bootstrap_admin(
            &s.state.db,
            Some(&kanade_shared::secrets::Secret::env(
                kanade_shared::secrets::BOOTSTRAP_ADMIN_PASSWORD,
                ADMIN_PASSWORD
            ))
        )
        .await
        .unwrap()
    );
    s
}

pub const ADMIN_PASSWORD: &str = "first admin password";

/// A backend that signs every command with a fresh key, and agents that pin it.
pub async fn signed_stack(agents: &[(&str, &[&str])]) -> (Stack, ed25519_dalek::SigningKey) {
    let key = kanade_shared::signing::generate().unwrap();
    let s = build(&[], kanade_backend::auth::Auth::disabled(), Some(key.clone())).await;
    *s.trusted.lock().unwrap() = vec![key.verifying_key()];
    for (pc, groups) in agents {
        s.spawn_agent(pc, groups);
    }
    wait_for_agents(&s, agents.len()).await;
    (s, key)
}

pub async fn stack_with(agents: &[(&str, &[&str])], auth: kanade_backend::auth::Auth) -> Stack {
    let s = build(agents, auth, None).await;
    wait_for_agents(&s, agents.len()).await;
    s
}

async fn wait_for_agents(s: &Stack, want: usize) {
    kanade_testkit::wait_until_async("every agent to be projected", Duration::from_secs(30), || async {
        want == 0 || s.get("/api/agents").await.1["items"].as_array().map_or(0, |a| a.len()) == want
    })
    .await;
}

/// A stack whose backend state is adjusted by `tune` before its workers start.
pub async fn stack_tuned(agents: &[(&str, &[&str])], tune: impl FnOnce(AppState) -> AppState) -> Stack {
    let s = build_tuned(agents, kanade_backend::auth::Auth::disabled(), None, tune).await;
    wait_for_agents(&s, agents.len()).await;
    s
}

async fn build(
    agents: &[(&str, &[&str])],
    auth: kanade_backend::auth::Auth,
    signer: Option<ed25519_dalek::SigningKey>,
) -> Stack {
    build_tuned(agents, auth, signer, |s| s).await
}

async fn build_tuned(
    agents: &[(&str, &[&str])],
    auth: kanade_backend::auth::Auth,
    signer: Option<ed25519_dalek::SigningKey>,
    tune: impl FnOnce(AppState) -> AppState,
) -> Stack {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    kanade_shared::jetstream::ensure_jetstream_resources(&js, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(dir.path()).await;
    let mut state = AppState::new(client, db, auth);
    if let Some(key) = signer {
        state = state.with_signer(key);
    }
    let state = tune(state);
    let (stop, stop_rx) = watch::channel(false);
    let tasks = kanade_backend::workers::spawn(&state, Default::default(), stop_rx.clone()).await;
    let app = http::app(state.clone());
    let agents_stop = watch::channel(false).0;
    let workers = std::sync::Mutex::new((tasks, stop.clone()));
    let s = Stack { server, dir, app, state, stop, workers, agents_stop, trusted: Default::default() };
    for (pc, groups) in agents {
        s.spawn_agent(pc, groups);
    }
    s
}

impl Stack {
    /// An in-process agent (the real kanade-agent runtime) with its own data dir.
    pub fn spawn_agent(&self, pc: &str, groups: &[&str]) {
        let mut settings = kanade_agent::runtime::Settings::new(
            pc.parse().unwrap(),
            self.server.url(),
            self.dir.path().join(pc),
        );
        settings.groups = groups.iter().map(|g| g.parse().unwrap()).collect();
        settings.heartbeat_interval = Duration::from_millis(500);
        settings.trusted_keys = self.trusted.lock().unwrap().clone();
        tokio::spawn(kanade_agent::runtime::run(settings, self.agents_stop.subscribe()));
    }

    pub async fn call(&self, req: Request<Body>) -> (StatusCode, Value) {
        send(&self.app, req).await
    }

    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let response =
            self.app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A JSON request with a bearer token (`None`: no Authorization header).
    pub async fn send_as(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path).header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = if body.is_null() { Body::empty() } else { Body::from(body.to_string()) };
        self.call(req.body(body).unwrap()).await
    }

    /// Sign in and return the session token.
    pub async fn login(&self, name: &str, password: &str) -> String {
        let (status, body) = self
            .send_as(
                "POST",
                "/api/auth/login",
                None,
                serde_json::json!({ "name": name, "password": password }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login {name}: {body:#}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Request::get(path).body(Body::empty()).unwrap()).await
    }

    pub async fn post_yaml(&self, path: &str, yaml: &str) -> (StatusCode, Value) {
        let req = Request::post(path)
            .header("content-type", "application/yaml")
            .body(Body::from(yaml.to_owned()))
            .unwrap();
        self.call(req).await
    }

    pub async fn deploy(&self, yaml: &str) -> String {
        self.deploy_to("/api/deploy", yaml).await
    }

    /// A deploy whose explicit PCs may never have been seen (`?allow_unknown=true`).
    pub async fn deploy_allowing_unknown(&self, yaml: &str) -> String {
        self.deploy_to("/api/deploy?allow_unknown=true", yaml).await
    }

    async fn deploy_to(&self, path: &str, yaml: &str) -> String {
        let (status, body) = self.post_yaml(path, yaml).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["exec_id"].as_str().unwrap().to_owned()
    }

    pub async fn wait_status(&self, exec: &str, want: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..300 {
            let (_, body) = self.get(&format!("/api/executions/{exec}")).await;
            if body["execution"]["status"] == want {
                return body;
            }
            last = body;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("execution {exec} never became {want}: {last:#}");
    }
}

/// Stop the stack's workers, wipe the projection, and start a fresh set of workers, as
/// `kanade-backend wipe-projector` followed by a restart would. Keep the returned sender alive.
pub async fn wipe_and_restart(s: &Stack) -> watch::Sender<bool> {
    stop_workers(s).await;
    s.state.db.wipe_projection().await.unwrap();
    // The wipe really emptied the projection: whatever the test sees afterwards was replayed.
    for path in ["/api/executions", "/api/results", "/api/audit", "/api/agents"] {
        let (_, v) = s.get(path).await;
        assert_eq!(v["items"].as_array().map(Vec::len), Some(0), "{path} right after the wipe: {v}");
    }
    start_workers(s).await
}

/// Stop the stack's workers and start a fresh set on the same database: a backend restart.
pub async fn restart(s: &Stack) -> watch::Sender<bool> {
    stop_workers(s).await;
    start_workers(s).await
}

/// Signal the running workers to stop and wait until every one has ended.
async fn stop_workers(s: &Stack) {
    let (mut tasks, stop) =
        std::mem::replace(&mut *s.workers.lock().unwrap(), (Default::default(), watch::channel(false).0));
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ended) = tasks.join_next().await {
            ended.expect("a worker panicked");
        }
    })
    .await
    .expect("the workers did not stop within 20 s of being told to");
}

async fn start_workers(s: &Stack) -> watch::Sender<bool> {
    let (stop, stop_rx) = watch::channel(false);
    let tasks = kanade_backend::workers::spawn(&s.state, Default::default(), stop_rx).await;
    *s.workers.lock().unwrap() = (tasks, stop.clone());
    stop
}

/// Wait until the audit log shows `action` (the AUDIT projector is asynchronous).
/// How many audit events of `action` are projected, once at least one is.
#[allow(dead_code)]
pub async fn audit_count(s: &Stack, action: &str) -> usize {
    wait_for_audit(s, action).await;
    s.get(&format!("/api/audit?action={action}")).await.1["items"].as_array().map_or(0, Vec::len)
}

pub async fn wait_for_audit(s: &Stack, action: &str) {
    kanade_testkit::wait_until_async("the audit event to be projected", Duration::from_secs(20), || async {
        let (_, body) = s.get(&format!("/api/audit?action={action}")).await;
        body["items"].as_array().is_some_and(|items| !items.is_empty())
    })
    .await;
}

/// An execution (`exec.create` in AUDIT, no targets: every PC joins as a late target) and `n`
/// succeeded results for it in RESULTS, as `n` simulated agents would publish them.
#[allow(dead_code)]
pub async fn flood(js: &async_nats::jetstream::Context, n: usize) -> kanade_shared::ExecId {
    flood_with(js, n, |_| String::new()).await
}

/// [`flood`] with result `i`'s stdout `stdout(i)`.
pub async fn flood_with(
    js: &async_nats::jetstream::Context,
    n: usize,
    stdout: impl Fn(usize) -> String,
) -> kanade_shared::ExecId {
    use kanade_shared::wire;
    let exec = kanade_shared::ExecId::new();
    let event = exec_created(exec, "flood");
    let subject = kanade_shared::subjects::audit("exec.create").unwrap();
    js.publish(subject, wire::encode(&event).unwrap().into()).await.unwrap().await.unwrap();
    // Acks are awaited per chunk: the client caps acks in flight and would stall otherwise.
    let mut acks = Vec::with_capacity(1000);
    for i in 0..n {
        let pc: kanade_shared::PcId = format!("SIM-{i:05}").parse().unwrap();
        let r = succeeded(exec, "flood", &pc, stdout(i));
        let subject = kanade_shared::subjects::result(&pc, r.request_id);
        acks.push(js.publish(subject, wire::encode(&r).unwrap().into()).await.unwrap());
        if acks.len() == 1000 || i + 1 == n {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    exec
}

/// The `exec.create` event of an execution of `job` as the backend would have audited it, with
/// no targets: its counters move with every result newly projected (every PC joins as a late
/// target).
pub fn exec_created(exec: kanade_shared::ExecId, job: &str) -> kanade_shared::wire::AuditEvent {
    let created = serde_json::json!({
        "exec_id": exec, "job_id": job, "version": "1", "plan": {}, "target_count": 0,
        "targets": [], "waves": [],
    });
    kanade_shared::wire::AuditEvent {
        schema: 1,
        id: kanade_shared::AuditId::new(),
        at: kanade_shared::wire::Timestamp::now_utc(),
        actor: "test".into(),
        action: "exec.create".into(),
        target: Some(job.into()),
        source: None,
        client: None,
        detail: created,
    }
}

/// A successful run's result, as an agent would publish it.
pub fn succeeded(
    exec: kanade_shared::ExecId,
    job: &str,
    pc: &kanade_shared::PcId,
    stdout: String,
) -> kanade_shared::wire::ExecResult {
    kanade_shared::wire::ExecResult {
        schema: 1,
        result_id: kanade_shared::ResultId::derive(exec, pc),
        request_id: kanade_shared::RequestId::new(),
        exec_id: exec,
        job_id: job.parse().unwrap(),
        version: "1".parse().unwrap(),
        pc_id: pc.clone(),
        exit_code: Some(0),
        status: kanade_shared::wire::ExecStatus::Succeeded,
        skip_reason: None,
        message: None,
        stdout,
        stderr: String::new(),
        truncated: false,
        started_at: None,
        finished_at: kanade_shared::wire::Timestamp::now_utc(),
        attempt: 1,
    }
}

/// A broker client with `user`'s credentials whose publishes the server may refuse: the
/// refusal arrives as a server error, which [`Checked::assert_refused`] waits for.
pub struct Checked {
    pub client: async_nats::Client,
    errors: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Checked {
    pub async fn connect(url: &str, user: &str, password: &str) -> Self {
        let (tx, errors) = tokio::sync::mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
            .custom_inbox_prefix(format!("_INBOX_{user}"))
            .event_callback(move |e| {
                let tx = tx.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = e {
                        let _ = tx.send(e.to_string());
                    }
                }
            })
            .connect(url)
            .await
            .unwrap();
        Self { client, errors }
    }

    /// Publish to `subject` and wait for the server's permission violation naming it.
    pub async fn assert_refused(&mut self, subject: &str) {
        self.client.publish(subject.to_owned(), "x".into()).await.unwrap();
        self.client.flush().await.unwrap();
        let err = tokio::time::timeout(Duration::from_secs(5), self.errors.recv())
            .await
            .expect("no server error")
            .unwrap();
        assert!(
            err.contains("Permissions Violation for Publish") && err.contains(subject),
            "{subject}: {err}"
        );
    }
}
