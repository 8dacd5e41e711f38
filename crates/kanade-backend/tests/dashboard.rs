//! The dashboard in a real headless Chromium against a real stack (nats-server, SQLite,
//! two in-process agents, the backend on a socket): sign in, see the fleet, deploy from the
//! UI and watch it finish live, read a PC's output, kill a long run, and a viewer sees no
//! buttons that change anything. Screenshots of every page at desktop and phone sizes go to
//! `target/screenshots/`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{ADMIN_PASSWORD, secured};
use kanade_testkit::Browser;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn screenshots() -> PathBuf {
    kanade_testkit::manifest_dir().join("../../target/screenshots")
}

const HELLO: &str = "id: hello-ui
version: \"1\"
description: Say hello from the dashboard
execute:
  shell: sh
  script: echo hello from $(hostname)
  timeout: 60s
";

/// The page at `route` (`#/agents`) has rendered its first load (the app marks `main`).
fn loaded(route: &str) -> String {
    let path = route.trim_start_matches('#');
    format!("main[data-route=\"{path}\"][aria-busy=\"false\"]")
}

/// What an authenticator app shows `steps` time steps from now.
fn app_code(secret: &str, steps: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    kanade_backend::auth::totp::code_at(secret.trim(), now + steps * 30).unwrap()
}

fn sign_in(b: &Browser, base: &str, name: &str, password: &str) {
    b.goto(&format!("{base}/#/login")).unwrap();
    let field = b.wait_for("#login-name", WAIT).unwrap();
    b.type_into(&field, name).unwrap();
    b.type_into(&b.find("#login-password").unwrap(), password).unwrap();
    b.click(&b.find("#login-submit").unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_run_the_fleet_from_the_browser() {
    let s = secured().await;
    s.spawn_agent("PC-A", &["lab"]);
    s.spawn_agent("PC-B", &["lab"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = s.app.clone();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
    });
    let admin = s.login("admin", ADMIN_PASSWORD).await;
    // A long job for the kill, and a viewer account.
    let (status, body) = s
        .send_as(
            "POST",
            "/api/jobs",
            Some(&admin),
            json!({ "id": "long-sleep", "version": "1", "execute": { "shell": "sh", "script": "echo started; sleep 120", "timeout": "300s" } }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = s
        .send_as(
            "POST",
            "/api/users",
            Some(&admin),
            json!({ "name": "vera", "password": "temporary pass 1", "role": "viewer" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    kanade_testkit::wait_until_async("both agents heartbeating", WAIT, || async {
        let (_, v) = s.send_as("GET", "/api/agents", Some(&admin), serde_json::Value::Null).await;
        v["items"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    // A compliance check PC-A passes and PC-B fails (the script's own path names the PC's data
    // dir).
    let (status, body) = s
        .send_as(
            "POST",
            "/api/jobs",
            Some(&admin),
            // Named after hello-ui: the schedule form starts from the catalog's first job.
            json!({ "id": "volume-check", "version": "1",
                    "check": { "name": "disk-space", "status_field": "status", "detail_field": "detail" },
                    "facts": { "explode": [{ "table": "volumes", "path": "volumes", "key": ["mount"],
                                             "columns": { "mount": "text", "free_pct": "integer" } }] },
                    "execute": { "shell": "sh", "script": "case \"$0\" in *PC-B*) echo '{\"status\":\"fail\",\"detail\":\"C: 2% free\",\"volumes\":[{\"mount\":\"C:\",\"free_pct\":2}]}';; *) echo '{\"status\":\"pass\",\"volumes\":[{\"mount\":\"C:\",\"free_pct\":80}]}';; esac" } }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = s
        .send_as(
            "POST",
            "/api/exec/volume-check",
            Some(&admin),
            json!({ "target": { "pcs": ["PC-A", "PC-B"] } }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // PC-A samples its performance every second, so its page has charts to draw.
    let (status, body) = s
        .send_as("PATCH", "/api/agent/config/pc:PC-A", Some(&admin), json!({ "host_perf_interval": "1s" }))
        .await;
    assert_eq!(status, 200, "{body}");

    let (base2, nats) = (base.clone(), s.server.url());
    tokio::task::spawn_blocking(move || browse(&base2, &nats, &admin)).await.unwrap();
}

fn browse(base: &str, nats: &str, admin: &str) {
    let b = Browser::start(1280, 800).unwrap();

    // Unauthenticated: the app sends us to the login page; a wrong password says so.
    b.goto(&format!("{base}/#/agents")).unwrap();
    b.wait_for("#login-name", WAIT).unwrap();
    sign_in(&b, base, "admin", "not the password");
    b.wait_text(".errors", WAIT, |t| t.contains("wrong user name or password")).unwrap();

    // Sign in: 2 agents online on the overview.
    sign_in(&b, base, "admin", ADMIN_PASSWORD);
    b.wait_text("[data-testid=agents-online]", WAIT, |t| t == "2").unwrap();

    // Deploy from the UI: write the job, validate (a broken one shows its problems), save, run.
    b.goto(&format!("{base}/#/jobs/new")).unwrap();
    let yaml = b.wait_for("#job-yaml", WAIT).unwrap();
    b.type_into(&yaml, "id: bad id\nversion: \"1\"\n").unwrap();
    b.click(&b.find("#validate").unwrap()).unwrap();
    let problems = b.wait_text("#job-yaml-status .errors", WAIT, |t| !t.is_empty()).unwrap();
    assert!(problems.contains("id") && problems.contains("execute"), "{problems}");
    // One line per problem, as the API's `detail.problems` lists them.
    let lines = b.find_all("#job-yaml-status .errors li").unwrap();
    assert!(lines.len() >= 2, "{} line(s) for several problems: {problems}", lines.len());
    b.type_into(&yaml, HELLO).unwrap();
    b.click(&b.find("#save-job").unwrap()).unwrap();
    b.wait_for("#exec-submit", WAIT).unwrap();
    let mode = b.find("#exec-target-mode").unwrap();
    b.click(&mode).unwrap();
    b.execute("const s = document.getElementById('exec-target-mode'); s.value = 'groups'; s.dispatchEvent(new Event('change'));")
        .unwrap();
    b.type_into(&b.find("#exec-target-names").unwrap(), "lab").unwrap();
    b.click(&b.find("#exec-submit").unwrap()).unwrap();
    // The execution page updates itself from the live stream: no reload.
    b.execute("window.__kanadeNoReload = true").unwrap();
    b.wait_text("[data-testid=exec-status]", WAIT, |t| t == "completed").unwrap();
    assert_eq!(b.text(&b.find("[data-testid=exec-progress]").unwrap()).unwrap(), "2/2");
    assert_eq!(
        b.execute("return window.__kanadeNoReload === true").unwrap(),
        json!(true),
        "the page reloaded"
    );
    b.click_on("button.show-output[data-pc=PC-A]", WAIT).unwrap();
    let out = b.wait_text("[data-testid=stdout-PC-A]", WAIT, |t| !t.is_empty()).unwrap();
    assert!(out.starts_with("hello from "), "{out}");
    b.screenshot(&screenshots().join("execution-completed-1280x800.png")).unwrap();

    // An agent's own settings, edited on its page: a bad value is named, a good one is kept.
    b.goto(&format!("{base}/#/agents/PC-A")).unwrap();
    b.wait_for(&loaded("#/agents/PC-A"), WAIT).unwrap();
    // Its log, read over the broker: this in-process agent keeps none, and says where to look.
    b.click_on("#read-log", WAIT).unwrap();
    b.wait_text("[data-testid=log-status]", WAIT, |t| t.contains("logs to stdout only")).unwrap();
    b.type_into(&b.find("#setting-heartbeat_interval").unwrap(), "soon").unwrap();
    b.click(&b.find("#save-settings").unwrap()).unwrap();
    let why = b.wait_text("#settings-errors", WAIT, |t| !t.is_empty()).unwrap();
    assert!(why.contains("heartbeat_interval: \"soon\" is not valid"), "{why}");
    b.execute("document.getElementById('setting-heartbeat_interval').value = ''").unwrap();
    b.type_into(&b.find("#setting-heartbeat_interval").unwrap(), "45s").unwrap();
    b.click(&b.find("#save-settings").unwrap()).unwrap();
    b.wait_text("#settings-status", WAIT, |t| t == "saved").unwrap();
    b.goto(&format!("{base}/#/agents")).unwrap();
    b.wait_for(&loaded("#/agents"), WAIT).unwrap();
    b.goto(&format!("{base}/#/agents/PC-A")).unwrap();
    b.wait_for(&loaded("#/agents/PC-A"), WAIT).unwrap();
    assert_eq!(
        b.execute("return document.getElementById('setting-heartbeat_interval').value").unwrap(),
        json!("45s"),
        "the saved setting is shown again"
    );

    // A long run, killed from the UI. Nothing is targeted until the operator says so.
    b.goto(&format!("{base}/#/jobs/long-sleep")).unwrap();
    b.click(&b.wait_for("#exec-submit", WAIT).unwrap()).unwrap();
    let why = b.wait_text(".errors", WAIT, |t| !t.is_empty()).unwrap();
    assert!(why.starts_with("Choose a target"), "{why}");
    b.execute("const s = document.getElementById('exec-target-mode'); s.value = 'groups'; s.dispatchEvent(new Event('change'));")
        .unwrap();
    b.type_into(&b.find("#exec-target-names").unwrap(), "lab").unwrap();
    b.click(&b.find("#exec-submit").unwrap()).unwrap();
    b.wait_text("[data-testid=exec-status]", WAIT, |t| t == "running").unwrap();
    // Its output while it runs (it sleeps for minutes after the first line).
    b.click_on("button.watch-output[data-pc=PC-A]", WAIT).unwrap();
    b.wait_text("[data-testid=live-PC-A]", WAIT, |t| t.trim() == "started").unwrap();
    b.wait_text("[data-testid=live-status-PC-A]", WAIT, |t| t == "running").unwrap();
    b.screenshot(&screenshots().join("execution-running-1280x800.png")).unwrap();
    b.click_on("section[aria-label='Live output of PC-A'] button", WAIT).unwrap();
    b.click_on("#kill", WAIT).unwrap();
    let end = b
        .wait_text("[data-testid=exec-status]", WAIT, |t| !t.is_empty() && t != "running" && t != "pending")
        .unwrap();
    assert_eq!(end, "killed");
    // The status, who killed it, and both PCs' runs, once they reported.
    let page = b.wait_text("main", WAIT, |t| t.matches("killed").count() == 4).unwrap();
    assert!(page.contains("killed by admin"), "{page}");

    // A schedule from YAML: a broken one says why, a good one shows its next fire; disable it.
    b.goto(&format!("{base}/#/schedules")).unwrap();
    let yaml = b.wait_for("#schedule-yaml", WAIT).unwrap();
    let good = b.execute("return document.getElementById('schedule-yaml').value").unwrap();
    let good = good.as_str().unwrap().to_owned();
    b.type_into(&yaml, &good.replace("0 2 * * *", "every night")).unwrap();
    b.click(&b.find("#create-schedule").unwrap()).unwrap();
    let why = b.wait_text("main .errors", WAIT, |t| !t.is_empty()).unwrap();
    assert!(why.contains("cron"), "{why}");
    b.type_into(&yaml, &good).unwrap();
    b.click(&b.find("#create-schedule").unwrap()).unwrap();
    b.wait_for("[data-schedule=nightly-hello]", WAIT).unwrap();
    let row = b.wait_text("main table tbody tr", WAIT, |t| t.contains("enabled")).unwrap();
    assert!(row.contains("0 2 * * * (UTC)") && row.contains("never"), "{row}");
    b.click(&b.find("[data-toggle=nightly-hello]").unwrap()).unwrap();
    b.wait_text("main table tbody tr", WAIT, |t| t.contains("disabled")).unwrap();
    b.click(&b.find("[data-toggle=nightly-hello]").unwrap()).unwrap();
    b.wait_text("main table tbody tr", WAIT, |t| t.contains("enabled")).unwrap();
    // Edit puts the schedule back in the editor; Run now runs its job with its plan at once.
    b.click(&b.find("[data-edit=nightly-hello]").unwrap()).unwrap();
    let text = b.execute("return document.getElementById('schedule-yaml').value").unwrap();
    assert!(text.as_str().unwrap().contains("\"id\": \"nightly-hello\""), "{text}");
    b.click(&b.find("[data-run=nightly-hello]").unwrap()).unwrap();
    b.accept_alert().unwrap();
    b.wait_text("[data-testid=exec-job]", WAIT, |t| t.starts_with("hello-ui")).unwrap();

    // The agent page tells the groups it is in from those assigned here (none yet).
    b.goto(&format!("{base}/#/agents/PC-A")).unwrap();
    b.wait_text("[data-testid=agent-groups-now]", WAIT, |t| t.starts_with("In: lab")).unwrap();
    assert_eq!(b.execute("return document.getElementById('agent-groups').value").unwrap(), json!(""));
    // A one-off command from the agent page: its output shows there, live.
    // Its output is text, never markup.
    b.type_into(&b.wait_for("#command-script", WAIT).unwrap(), "echo 'from the box <b>bold</b><img src=x>'")
        .unwrap();
    b.click(&b.find("#command-run").unwrap()).unwrap();
    b.wait_text("[data-testid=command-stdout]", WAIT, |t| t.contains("from the box <b>bold</b><img src=x>"))
        .unwrap();
    assert!(
        b.find_all("[data-testid=command-stdout] b, [data-testid=command-stdout] img").unwrap().is_empty()
    );
    // The fleet-wide software search asks for a name first.
    b.goto(&format!("{base}/#/agents")).unwrap();
    b.click_on("#software-search", WAIT).unwrap();
    b.wait_text("main .errors", WAIT, |t| t.contains("name")).unwrap();
    // Bulk: select both PCs (kept across live redraws) and ping them together.
    b.click_on("[data-select=PC-A]", WAIT).unwrap();
    b.click_on("[data-select=PC-B]", WAIT).unwrap();
    b.wait_text("[data-testid=selected-count]", WAIT, |t| t == "2 selected").unwrap();
    b.click(&b.find("#bulk-ping").unwrap()).unwrap();
    let answers = b.wait_text("#bulk [role=status]", WAIT, |t| t.contains("PC-B")).unwrap();
    assert!(
        answers.starts_with("PC-A ") && answers.contains(" ms; PC-B ") && answers.ends_with(" ms"),
        "{answers}"
    );
    // The overview chart has a y axis, and its last hour label is inside the picture.
    b.goto(&format!("{base}/#/")).unwrap();
    b.wait_for("svg.chart .grid", WAIT).unwrap();
    let anchors = b
        .execute("return [...document.querySelectorAll('svg.chart text')].map(t => t.getAttribute('text-anchor')).join(',')")
        .unwrap();
    assert!(anchors.as_str().unwrap().ends_with("start,middle,middle,middle,end"), "{anchors}");

    // PC-A's telemetry: four charts of its samples, a range switch, investigation mode started
    // from the page with its stacked process chart, and its events timeline.
    b.goto(&format!("{base}/#/agents/PC-A")).unwrap();
    b.wait_for(&loaded("#/agents/PC-A"), WAIT).unwrap();
    b.wait_for("#perf [data-chart=network] canvas", WAIT).unwrap();
    let charts = b.find_all("#perf [data-chart] canvas").unwrap().len();
    assert!(charts >= 4, "{charts} chart canvases");
    b.click_on("#perf [data-range='24h']", WAIT).unwrap();
    b.wait_text("[data-testid=perf-status]", WAIT, |t| t.contains("samples")).unwrap();
    assert_eq!(
        b.execute("return document.querySelector(\"#perf [data-range='24h']\").getAttribute('aria-pressed')")
            .unwrap(),
        json!("true")
    );
    b.click_on("#investigate", WAIT).unwrap();
    b.wait_text("[data-testid=investigation-status]", WAIT, |t| t.contains("running until")).unwrap();
    b.wait_for("#processes [data-chart=processes] canvas", WAIT).unwrap();
    b.wait_for("[data-testid=top-processes] tbody tr", WAIT).unwrap();
    b.wait_for("#events [data-kind='job.finished']", WAIT).unwrap();
    b.wait_for("#events [data-kind='agent.started']", WAIT).unwrap();
    for (w, h) in [(1280, 800), (390, 844)] {
        b.resize(w, h).unwrap();
        b.execute("document.getElementById('perf').scrollIntoView()").unwrap();
        b.screenshot(&screenshots().join(format!("agent-telemetry-{w}x{h}.png"))).unwrap();
    }
    b.resize(1280, 800).unwrap();
    b.click_on("#investigate-end", WAIT).unwrap();
    b.wait_text("[data-testid=investigation-status]", WAIT, |t| t.contains("No investigation running"))
        .unwrap();
    // Compliance: the overview's badge, the checks page, one check's failing PCs.
    b.goto(&format!("{base}/#/")).unwrap();
    b.wait_text("[data-testid=compliance-badge] .n", WAIT, |t| t == "1").unwrap();
    b.goto(&format!("{base}/#/compliance")).unwrap();
    b.wait_for(&loaded("#/compliance"), WAIT).unwrap();
    b.click_on("main table a[href*='status=fail']", WAIT).unwrap();
    let rows = b.wait_text("main table tbody", WAIT, |t| t.contains("PC-B")).unwrap();
    assert!(rows.contains("C: 2% free") && !rows.contains("PC-A"), "{rows}");
    // Facts: the table the check job fills, its rows per PC.
    b.goto(&format!("{base}/#/facts")).unwrap();
    b.wait_for(&loaded("#/facts"), WAIT).unwrap();
    b.click_on("main table a[href='#/facts/volumes']", WAIT).unwrap();
    let rows = b.wait_text("main table tbody", WAIT, |t| t.contains("PC-A") && t.contains("PC-B")).unwrap();
    assert!(rows.contains("80") && rows.contains("C:"), "{rows}");
    // Notifications: one composed for the lab group; its page lists both PCs outstanding, and an
    // acknowledgement as PC-A's agent sends it (a local user's, through its outbox) turns PC-A
    // acked without a reload.
    b.goto(&format!("{base}/#/notifications")).unwrap();
    b.wait_for(&loaded("#/notifications"), WAIT).unwrap();
    b.click(&b.find("#notify-compose summary").unwrap()).unwrap();
    b.type_into(&b.find("#notify-title").unwrap(), "Reboot tonight").unwrap();
    b.type_into(&b.find("#notify-body").unwrap(), "Save your work by 22:00.").unwrap();
    b.execute("document.getElementById('notify-target-kind').value = 'groups'").unwrap();
    b.type_into(&b.find("#notify-targets").unwrap(), "lab").unwrap();
    b.click(&b.find("#notify-form button[type=submit]").unwrap()).unwrap();
    let rows = b.wait_text("main table tbody", WAIT, |t| t.contains("PC-A") && t.contains("PC-B")).unwrap();
    assert_eq!(rows.matches("outstanding").count(), 2, "{rows}");
    b.wait_for("main[aria-busy=\"false\"] #notify-withdraw", WAIT).unwrap();
    let id: kanade_shared::NotificationId =
        b.execute("return location.hash.split('/')[2]").unwrap().as_str().unwrap().parse().unwrap();
    let ack = kanade_shared::wire::NotifyAck {
        schema: 1,
        notification_id: id,
        pc_id: "PC-A".parse().unwrap(),
        user: "alice".into(),
        at: kanade_shared::wire::Timestamp::now_utc(),
    };
    tokio::runtime::Handle::current().block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(nats).await.unwrap());
        let subject = kanade_shared::subjects::notify_ack(&ack.pc_id, id);
        js.publish(subject, kanade_shared::wire::encode(&ack).unwrap().into()).await.unwrap().await.unwrap();
    });
    let rows = b.wait_text("main table tbody", WAIT, |t| t.contains("alice")).unwrap();
    assert_eq!((rows.matches("outstanding").count(), rows.matches("acked").count()), (1, 1), "{rows}");
    b.screenshot(&screenshots().join("notification-detail-1280x800.png")).unwrap();

    // The fleet's timeline, filtered to one kind prefix.
    b.goto(&format!("{base}/#/events")).unwrap();
    b.wait_for(&loaded("#/events"), WAIT).unwrap();
    b.type_into(&b.find("#events-kind").unwrap(), "agent").unwrap();
    b.click(&b.find("#events-filter").unwrap()).unwrap();
    b.wait_text("main table", WAIT, |t| !t.contains("job.finished") && t.contains("agent.started")).unwrap();

    // Every page, at desktop and phone sizes.
    let pages = [
        ("overview", "#/"),
        ("agents", "#/agents"),
        ("agent-detail", "#/agents/PC-A"),
        ("jobs", "#/jobs"),
        ("job-detail", "#/jobs/hello-ui"),
        ("job-new", "#/jobs/new"),
        ("executions", "#/executions"),
        ("schedules", "#/schedules"),
        ("events", "#/events"),
        ("compliance", "#/compliance"),
        ("facts", "#/facts"),
        ("notifications", "#/notifications"),
        ("audit", "#/audit"),
        ("admin", "#/admin"),
    ];
    for (w, h) in [(1280, 800), (390, 844)] {
        b.resize(w, h).unwrap();
        for (name, route) in pages {
            b.goto(&format!("{base}/{route}")).unwrap();
            b.wait_for(&loaded(route), WAIT).unwrap();
            b.screenshot(&screenshots().join(format!("{name}-{w}x{h}.png"))).unwrap();
        }
    }
    b.resize(1280, 800).unwrap();
    // Dark mode follows the OS.
    b.prefer_dark(true).unwrap();
    for (name, route) in [("overview", "#/"), ("agents", "#/agents")] {
        b.goto(&format!("{base}/{route}")).unwrap();
        b.wait_for(&loaded(route), WAIT).unwrap();
        b.screenshot(&screenshots().join(format!("{name}-dark-1280x800.png"))).unwrap();
    }
    b.prefer_dark(false).unwrap();

    // A frozen fleet: every page says so, and a run asks first and goes ahead when confirmed
    // (the backend audits the override).
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let freeze = |method: &str, body: &[u8]| {
        kanade_testkit::http::request_as(port, method, "/api/freeze", body, "application/json", Some(admin))
            .unwrap()
    };
    let (status, body) = freeze("PUT", br#"{"for":"1h","reason":"year-end close"}"#);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    b.goto(&format!("{base}/#/jobs/hello-ui")).unwrap();
    let banner = b.wait_text("[data-testid=freeze-banner]", WAIT, |t| t.contains("year-end close")).unwrap();
    assert!(banner.starts_with("Fleet frozen until"), "{banner}");
    b.screenshot(&screenshots().join("freeze-banner-1280x800.png")).unwrap();
    b.wait_for("#exec-submit", WAIT).unwrap();
    b.execute("const s = document.getElementById('exec-target-mode'); s.value = 'groups'; s.dispatchEvent(new Event('change'));")
        .unwrap();
    b.type_into(&b.find("#exec-target-names").unwrap(), "lab").unwrap();
    b.click(&b.find("#exec-submit").unwrap()).unwrap();
    kanade_testkit::wait_until("the run to ask before overriding the freeze", WAIT, || {
        b.accept_alert().is_ok()
    });
    b.wait_text("[data-testid=exec-status]", WAIT, |t| t == "completed").unwrap();
    let (status, _) = freeze("DELETE", b"");
    assert_eq!(status, 204);
    // The overview loaded in full (nothing of it still in flight when we sign out below), and
    // no banner on it.
    b.goto(&format!("{base}/#/")).unwrap();
    b.wait_for(&loaded("#/"), WAIT).unwrap();
    kanade_testkit::wait_until("the banner to go", WAIT, || {
        b.execute("return document.getElementById('freeze-banner').hidden && document.getElementById('freeze-banner').textContent === ''").ok()
            == Some(json!(true))
    });

    // A dynamic group from a rule: a mistake is named, a good rule lists its members.
    b.goto(&format!("{base}/#/groups")).unwrap();
    b.wait_for(&loaded("#/groups"), WAIT).unwrap();
    b.type_into(&b.find("#group-name").unwrap(), "lab-pcs").unwrap();
    b.type_into(&b.find("#group-rule").unwrap(), "groups = ").unwrap();
    b.click(&b.find("#create-group").unwrap()).unwrap();
    let why = b.wait_text("#group-errors", WAIT, |t| !t.is_empty()).unwrap();
    assert!(why.contains("expected a value"), "{why}");
    b.type_into(&b.find("#group-rule").unwrap(), "groups = lab").unwrap();
    b.click(&b.find("#create-group").unwrap()).unwrap();
    b.wait_for(&loaded("#/groups/lab-pcs"), WAIT).unwrap();
    let page = b.wait_text("main", WAIT, |t| t.contains("PC-A") && t.contains("PC-B")).unwrap();
    assert!(page.contains("2 members"), "{page}");
    b.screenshot(&screenshots().join("group-detail-1280x800.png")).unwrap();

    // Enrolment: a bad lifetime is named; a token shows its install lines once and is listed
    // (without its value); revoking a PC that never enrolled says so.
    b.goto(&format!("{base}/#/enroll")).unwrap();
    b.wait_for(&loaded("#/enroll"), WAIT).unwrap();
    b.type_into(&b.find("#enroll-expires").unwrap(), "forever").unwrap();
    b.click(&b.find("#create-enroll").unwrap()).unwrap();
    let why = b.wait_text("#enroll-errors", WAIT, |t| !t.is_empty()).unwrap();
    assert!(why.contains("expires_in"), "{why}");
    b.type_into(&b.find("#enroll-expires").unwrap(), "2h").unwrap();
    b.type_into(&b.find("#enroll-uses").unwrap(), "25").unwrap();
    b.type_into(&b.find("#enroll-groups").unwrap(), "lab, tokyo").unwrap();
    b.click(&b.find("#create-enroll").unwrap()).unwrap();
    let linux = b.wait_text("#install-linux", WAIT, |t| !t.is_empty()).unwrap();
    assert!(
        linux.starts_with("curl -sSL '")
            && linux.contains("/api/enroll/install.sh?token=")
            && linux.ends_with("| sudo sh"),
        "{linux}"
    );
    let windows = b.text(&b.find("#install-windows").unwrap()).unwrap();
    assert!(windows.contains("/api/enroll/install.ps1?token="), "{windows}");
    let token = linux.split("token=").nth(1).unwrap().split('\'').next().unwrap().to_owned();
    let page = b.wait_text("main", WAIT, |t| t.contains("0/25")).unwrap();
    assert!(page.contains("usable") && page.contains("lab, tokyo"), "{page}");
    b.screenshot(&screenshots().join("enroll-token-1280x800.png")).unwrap();
    b.goto(&format!("{base}/#/")).unwrap();
    b.goto(&format!("{base}/#/enroll")).unwrap();
    let page = b.wait_text("main", WAIT, |t| t.contains("0/25")).unwrap();
    assert!(!page.contains(&token), "the token's value is shown again after it was made");
    b.type_into(&b.find("#revoke-pc").unwrap(), "PC-NEVER").unwrap();
    b.click(&b.find("#revoke-agent").unwrap()).unwrap();
    kanade_testkit::wait_until("the revocation to ask first", WAIT, || b.accept_alert().is_ok());
    let said = b.wait_text("#revoke-result", WAIT, |t| !t.is_empty()).unwrap();
    assert!(said.contains("PC-NEVER was never enrolled"), "{said}");

    // Sign out; the viewer signs in (choosing their own password first) and sees no buttons
    // that change anything.
    b.click(&b.find("#logout").unwrap()).unwrap();
    b.wait_for("#login-name", WAIT).unwrap();
    for (w, h) in [(1280, 800), (390, 844)] {
        b.resize(w, h).unwrap();
        b.screenshot(&screenshots().join(format!("login-{w}x{h}.png"))).unwrap();
    }
    b.resize(1280, 800).unwrap();
    sign_in(&b, base, "vera", "temporary pass 1");
    let fresh = b.wait_for("#new-password", WAIT).unwrap();
    b.type_into(&fresh, "vera's own password").unwrap();
    b.click(&b.find("button[type=submit]").unwrap()).unwrap();
    b.wait_text("[data-testid=whoami]", WAIT, |t| t == "vera (viewer)").unwrap();
    b.goto(&format!("{base}/#/jobs/hello-ui")).unwrap();
    b.wait_for("#job-yaml", WAIT).unwrap();
    assert!(b.find_all("#exec-submit, #save-job").unwrap().is_empty(), "a viewer sees exec or save");
    b.goto(&format!("{base}/#/executions")).unwrap();
    b.click_on("main table a", WAIT).unwrap();
    b.wait_for("[data-testid=exec-status]", WAIT).unwrap();
    assert!(b.find_all("#kill").unwrap().is_empty(), "a viewer sees the kill button");
    b.goto(&format!("{base}/#/admin")).unwrap();
    b.wait_text("main", WAIT, |t| t.contains("needs the admin role")).unwrap();

    // Her own second factor: a QR code and the secret, confirmed with the app's code, recovery
    // codes shown once; signing in again asks for the next code.
    b.goto(&format!("{base}/#/account")).unwrap();
    b.type_into(&b.wait_for("#mfa-setup-password", WAIT).unwrap(), "vera's own password").unwrap();
    b.click_on("#mfa-setup", WAIT).unwrap();
    b.wait_for("[data-testid=mfa-qr]", WAIT).unwrap();
    let secret = b.wait_text("[data-testid=mfa-secret]", WAIT, |t| !t.is_empty()).unwrap();
    b.type_into(&b.find("#mfa-code").unwrap(), &app_code(&secret, 0)).unwrap();
    b.screenshot(&screenshots().join("account-mfa-setup-1280x800.png")).unwrap();
    b.click(&b.find("#mfa-confirm").unwrap()).unwrap();
    let codes = b.wait_text("[data-testid=mfa-recovery]", WAIT, |t| !t.is_empty()).unwrap();
    assert_eq!(codes.lines().count(), 10, "{codes}");
    b.click(&b.find("#logout").unwrap()).unwrap();
    sign_in(&b, base, "vera", "vera's own password");
    kanade_testkit::wait_until("the code field", WAIT, || {
        b.execute("return !document.querySelector('label[for=login-code]').hidden").ok() == Some(json!(true))
    });
    b.type_into(&b.find("#login-code").unwrap(), &app_code(&secret, 1)).unwrap();
    b.screenshot(&screenshots().join("login-code-1280x800.png")).unwrap();
    b.click(&b.find("#login-submit").unwrap()).unwrap();
    b.wait_text("[data-testid=whoami]", WAIT, |t| t == "vera (viewer)").unwrap();

    // Through all of it: no script error and no content-security-policy violation. Refused API
    // calls (the wrong password, the broken job, the viewer) show in the console as failed loads
    // with their status; the pages handle those, so only they are let through.
    let errors: Vec<String> = b
        .console_errors()
        .unwrap()
        .into_iter()
        .filter(|m| !m.contains("Failed to load resource: the server responded with a status of"))
        .collect();
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
}

#[tokio::test]
async fn assets_are_compressed_cached_and_locked_down() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let s = common::stack(&[]).await;
    let get = |path: &str, headers: &[(header::HeaderName, &str)]| {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(k, *v);
        }
        s.app.clone().oneshot(req.body(Body::empty()).unwrap())
    };
    let plain = get("/", &[]).await.unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    let csp = plain.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
    let etag = plain.headers()[header::ETAG].to_str().unwrap().to_owned();
    let html = plain.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&html).contains("/ui/js/app.js"));

    let gz = get("/ui/js/core.js", &[(header::ACCEPT_ENCODING, "gzip, br")]).await.unwrap();
    assert_eq!(gz.headers()[header::CONTENT_ENCODING], "gzip");
    assert!(gz.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/javascript"));
    let zipped = gz.into_body().collect().await.unwrap().to_bytes();
    let raw = get("/ui/js/core.js", &[]).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    assert!(zipped.len() * 2 < raw.len(), "gzip {} vs {} bytes", zipped.len(), raw.len());

    let again = get("/", &[(header::IF_NONE_MATCH, &etag)]).await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(get("/ui/../Cargo.toml", &[]).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(get("/ui/nope.js", &[]).await.unwrap().status(), StatusCode::NOT_FOUND);
}
