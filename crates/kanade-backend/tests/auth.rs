//! Authentication and roles against the real router: every route of the table checked for 401
//! (no, forged, expired credentials), 403 (a role too low) and admission (the right role);
//! accounts, tokens, throttling and the audit trail.

mod common;

use axum::http::StatusCode;
use common::{ADMIN_PASSWORD, SECRET, Stack};
use kanade_backend::auth::{Access, Role, jwt};
use kanade_backend::http::routes;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A user with `role` and a permanent password; returns a session token.
async fn user(s: &Stack, admin: &str, name: &str, role: &str) -> String {
    let temp = format!("{name} temporary pw");
    let (status, body) = s
        .send_as("POST", "/api/users", Some(admin), json!({ "name": name, "password": temp, "role": role }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
    let first = s.login(name, &temp).await;
    // A temporary password only lets the user change it.
    let (status, body) = s.send_as("GET", "/api/jobs", Some(&first), Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:#}");
    let (status, body) = s
        .send_as(
            "POST",
            "/api/auth/password",
            Some(&first),
            json!({ "current": temp, "new": format!("{name} own password") }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    s.login(name, &format!("{name} own password")).await
}

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "nothing-here" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_route_enforces_its_declared_access() {
    let s = common::secured().await;
    let admin = s.login("admin", ADMIN_PASSWORD).await;
    let operator = user(&s, &admin, "olivia", "operator").await;
    let viewer = user(&s, &admin, "victor", "viewer").await;
    let forged = jwt::encode(
        &jwt::Claims { sub: "admin".into(), iat: 0, exp: i64::MAX / 2, pwd: 0 },
        b"some other secret, not the backend's",
    );
    let now = kanade_backend::db::now_ms() / 1000;
    let expired =
        jwt::encode(&jwt::Claims { sub: "admin".into(), iat: now - 100, exp: now - 1, pwd: 0 }, SECRET);
    let tokens =
        [(Role::Viewer, viewer.as_str()), (Role::Operator, operator.as_str()), (Role::Admin, admin.as_str())];

    let table = routes::table();
    assert!(table.len() >= 40, "the table lost routes: {}", table.len());
    for r in &table {
        let path = concrete(r.path);
        // Never stream forever: the live stream is only checked for its status line.
        if r.path == "/api/stream" {
            continue;
        }
        if r.access == Access::Public {
            let (status, _) = s.send_as(r.method, &path, None, Value::Null).await;
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{} {} is public", r.method, r.path);
            continue;
        }
        for (what, token) in
            [("no", None), ("a forged", Some(forged.as_str())), ("an expired", Some(expired.as_str()))]
        {
            let (status, body) = s.send_as(r.method, &path, token, Value::Null).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {} with {what} token: {body}", r.method, r.path);
            assert_eq!(body["code"], "unauthorized");
        }
        for (role, token) in tokens {
            let allowed = match r.access {
                Access::Role(needed) => role >= needed,
                _ => true,
            };
            let (status, body) = s.send_as(r.method, &path, Some(token), Value::Null).await;
            if allowed {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{} {} as {role}: {status} {body}",
                    r.method,
                    r.path
                );
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{} {} as {role}: {body}", r.method, r.path);
                assert!(body["error"].as_str().unwrap().starts_with("this needs the"), "{body}");
            }
        }
    }
    // The stream: 401 without a token; a browser passes it as ?access_token= (only here).
    let (status, _) = s.send_as("GET", "/api/stream", None, Value::Null).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = s.app.clone().oneshot(
        axum::http::Request::get(format!("/api/stream?access_token={viewer}"))
            .body(axum::body::Body::empty())
            .unwrap(),
    );
    assert_eq!(response.await.unwrap().status(), StatusCode::OK);
    let (status, _) = s.send_as("GET", &format!("/api/jobs?access_token={viewer}"), None, Value::Null).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "tokens in URLs are only for the stream");
}

#[tokio::test]
async fn bootstrap_once_disable_revoke_and_throttle() {
    let s = common::secured().await;
    // A second start with another bootstrap password changes nothing.
    assert!(
        !kanade_backend::auth::bootstrap_admin(
            &s.state.db,
            Some(&kanade_shared::secrets::Secret::env(
                kanade_shared::secrets::BOOTSTRAP_ADMIN_PASSWORD,
                "another password!"
            ))
        )
        .await
        .unwrap()
    );
    let admin = s.login("admin", ADMIN_PASSWORD).await;
    let (status, _) = s
        .send_as("POST", "/api/auth/login", None, json!({ "name": "admin", "password": "another password!" }))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Disabling a user locks their existing session out at the next request.
    let olivia = user(&s, &admin, "olivia", "operator").await;
    assert_eq!(s.send_as("GET", "/api/auth/me", Some(&olivia), Value::Null).await.0, StatusCode::OK);
    let (status, body) =
        s.send_as("PATCH", "/api/users/olivia", Some(&admin), json!({ "disabled": true })).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let (status, body) = s.send_as("GET", "/api/auth/me", Some(&olivia), Value::Null).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("user olivia is disabled")));
    // The last admin cannot lock everyone out.
    let (status, body) =
        s.send_as("PATCH", "/api/users/admin", Some(&admin), json!({ "role": "viewer" })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body:#}");

    // API tokens: shown once, work with their role, stop at revocation.
    let (status, created) = s
        .send_as("POST", "/api/tokens", Some(&admin), json!({ "name": "prometheus", "role": "viewer" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created:#}");
    let token = created["token"].as_str().unwrap();
    assert_eq!(s.send_as("GET", "/metrics", Some(token), Value::Null).await.0, StatusCode::OK);
    let (status, _) = s.send_as("POST", "/api/jobs/x/revoke", Some(token), Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, listed) = s.send_as("GET", "/api/tokens", Some(&admin), Value::Null).await;
    assert!(
        !listed.to_string().contains(token.rsplit('_').next().unwrap()),
        "the secret is never listed again"
    );
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        s.send_as("DELETE", &format!("/api/tokens/{id}"), Some(&admin), Value::Null).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, body) = s.send_as("GET", "/metrics", Some(token), Value::Null).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("API token unknown or revoked"))
    );

    // Five wrong passwords (one above), then even the right one waits; every failure is audited.
    for _ in 0..4 {
        let (status, _) = s
            .send_as("POST", "/api/auth/login", None, json!({ "name": "admin", "password": "guess guess" }))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = s
        .send_as("POST", "/api/auth/login", None, json!({ "name": "admin", "password": ADMIN_PASSWORD }))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body:#}");
    assert!(body["error"].as_str().unwrap().starts_with("too many failed sign-ins; try again in"), "{body}");
    kanade_testkit::wait_until_async(
        "the failures in the audit log",
        std::time::Duration::from_secs(20),
        || async {
            let (_, audit) =
                s.send_as("GET", "/api/audit?action=auth.login_failed", Some(&admin), Value::Null).await;
            audit["items"].as_array().is_some_and(|i| i.len() >= 5)
        },
    )
    .await;
    let (_, audit) = s.send_as("GET", "/api/audit?action=user.update", Some(&admin), Value::Null).await;
    assert_eq!(audit["items"][0]["actor"], "admin", "{audit:#}");
}

#[tokio::test]
async fn a_password_change_ends_older_sessions() {
    let s = common::secured().await;
    let admin = s.login("admin", ADMIN_PASSWORD).await;
    let (status, body) = s
        .send_as(
            "POST",
            "/api/auth/password",
            Some(&admin),
            json!({ "current": "wrong one!!", "new": "brand new password" }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:#}");
    let (status, body) = s
        .send_as(
            "POST",
            "/api/auth/password",
            Some(&admin),
            json!({ "current": ADMIN_PASSWORD, "new": "short" }),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("password: must be at least 10 characters"))
    );
    let (status, _) = s
        .send_as(
            "POST",
            "/api/auth/password",
            Some(&admin),
            json!({ "current": ADMIN_PASSWORD, "new": "brand new password" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s.send_as("GET", "/api/auth/me", Some(&admin), Value::Null).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body:#}");
    let fresh = s.login("admin", "brand new password").await;
    let (_, me) = s.send_as("GET", "/api/auth/me", Some(&fresh), Value::Null).await;
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str(), me["via"].as_str()),
        (Some("admin"), Some("admin"), Some("password"))
    );
}

#[tokio::test]
async fn dev_mode_says_so() {
    let s = common::stack(&[]).await;
    let (_, me) = s.get("/api/auth/me").await;
    assert_eq!(me["auth_disabled"], true);
    assert!(me["warning"].as_str().unwrap().contains("KANADE_AUTH_DISABLE=1"));
}

#[test]
fn the_session_secret_is_generated_once_and_private() {
    let dir = tempfile::tempdir().unwrap();
    let first = kanade_backend::auth::load_or_create_secret(None, dir.path()).unwrap();
    let again = kanade_backend::auth::load_or_create_secret(None, dir.path()).unwrap();
    assert_eq!(first, again);
    assert_eq!(first.len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("jwt.secret")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let configured = kanade_backend::auth::load_or_create_secret(
        Some("configured secret, long enough to use"),
        dir.path(),
    )
    .unwrap();
    assert_eq!(configured, b"configured secret, long enough to use");
}

async fn audit_state(s: &Stack) -> (u64, u64, u64) {
    let js = async_nats::jetstream::new(async_nats::connect(s.server.url()).await.unwrap());
    let info = js.get_stream("AUDIT").await.unwrap().info().await.unwrap().state.clone();
    (info.messages, info.bytes, info.first_sequence)
}

#[tokio::test]
async fn a_flood_of_throttled_logins_with_huge_names_barely_grows_the_audit_trail() {
    let s = common::secured().await;
    // History the flood must not push out.
    let admin = s.login("admin", ADMIN_PASSWORD).await;
    kanade_testkit::wait_until_async(
        "the sign-in to be audited",
        std::time::Duration::from_secs(20),
        || async { audit_state(&s).await.0 >= 1 },
    )
    .await;
    let before = audit_state(&s).await;
    let name = "n".repeat(300_000);
    let (mut failed, mut throttled) = (0, 0);
    for _ in 0..3_000 {
        let (status, _) = s
            .send_as("POST", "/api/auth/login", None, json!({ "name": name, "password": "guess guess" }))
            .await;
        match status {
            StatusCode::UNAUTHORIZED => failed += 1,
            StatusCode::TOO_MANY_REQUESTS => throttled += 1,
            other => panic!("{other}"),
        }
    }
    assert_eq!((failed, throttled), (5, 2_995));
    // Wait for the audit events the flood did cause: 5 failures and one throttle summary.
    kanade_testkit::wait_until_async(
        "the flood's audit events",
        std::time::Duration::from_secs(20),
        || async { audit_state(&s).await.0 >= before.0 + 6 },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let after = audit_state(&s).await;
    assert_eq!(after.0 - before.0, 6, "one event per failure, one per address per window for the rest");
    assert!(after.1 - before.1 < 16 * 1024, "AUDIT grew by {} bytes", after.1 - before.1);
    assert_eq!(after.2, before.2, "the first sequence moved: history was pushed out");
    let req = axum::http::Request::get("/metrics")
        .header("authorization", format!("Bearer {admin}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = s.app.clone().oneshot(req).await.unwrap();
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    let metrics = String::from_utf8_lossy(&bytes);
    assert!(metrics.contains("kanade_login_throttled_total 2995\n"), "{metrics}");
}

#[tokio::test]
async fn concurrent_wrong_logins_for_one_user_reach_the_password_check_at_most_five_times() {
    let s = common::secured().await;
    let attempts = (0..200).map(|_| {
        s.send_as("POST", "/api/auth/login", None, json!({ "name": "admin", "password": "guess guess" }))
    });
    let statuses: Vec<StatusCode> =
        futures::future::join_all(attempts).await.into_iter().map(|(s, _)| s).collect();
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, refused), (5, 195));
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// What an authenticator app shows `steps` time steps from now.
fn app_code(secret: &str, steps: i64) -> String {
    kanade_backend::auth::totp::code_at(secret, (now_secs() as i64 + steps * 30) as u64).unwrap()
}

async fn login_with(s: &Stack, name: &str, password: &str, code: Option<&str>) -> (StatusCode, Value) {
    let mut body = json!({ "name": name, "password": password });
    if let Some(code) = code {
        body["code"] = json!(code);
    }
    s.send_as("POST", "/api/auth/login", None, body).await
}

/// Set up and confirm a second factor for the holder of `token`; the secret and recovery codes.
async fn set_up_mfa(s: &Stack, token: &str, password: &str) -> (String, Vec<String>) {
    // A session alone does not do: the password again.
    let wrong = json!({ "password": "not the password" });
    let (status, _) = s.send_as("POST", "/api/auth/mfa/setup", Some(token), wrong).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, setup) =
        s.send_as("POST", "/api/auth/mfa/setup", Some(token), json!({ "password": password })).await;
    assert_eq!(status, StatusCode::OK, "{setup:#}");
    let secret = setup["secret"].as_str().unwrap().to_owned();
    assert!(setup["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/kanade:"), "{setup:#}");
    assert!(setup["qr"].as_array().unwrap().len() >= 21, "{setup:#}");
    let (status, body) =
        s.send_as("POST", "/api/auth/mfa/enable", Some(token), json!({ "code": "12" })).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid")),
        "{body:#}"
    );
    let (status, enabled) =
        s.send_as("POST", "/api/auth/mfa/enable", Some(token), json!({ "code": app_code(&secret, 0) })).await;
    assert_eq!(status, StatusCode::OK, "{enabled:#}");
    let codes: Vec<String> = enabled["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

#[tokio::test]
async fn a_second_factor_is_asked_once_set_up_and_each_code_works_once() {
    let s = common::secured().await;
    let admin = s.login("admin", ADMIN_PASSWORD).await;
    let mina = user(&s, &admin, "mina", "operator").await;
    let password = "mina own password";
    let (secret, recovery) = set_up_mfa(&s, &mina, "mina own password").await;
    // Once on, it cannot be set up again over itself.
    let again = json!({ "password": "mina own password" });
    let (status, _) = s.send_as("POST", "/api/auth/mfa/setup", Some(&mina), again).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The password alone is not enough any more; a wrong code is refused and audited.
    let (status, body) = login_with(&s, "mina", password, None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("mfa_required")), "{body:#}");
    let wrong: String = app_code(&secret, 0)
        .chars()
        .enumerate()
        .map(|(i, c)| if i == 0 { char::from(b'0' + (c as u8 - b'0' + 5) % 10) } else { c })
        .collect();
    let (status, body) = login_with(&s, "mina", password, Some(&wrong)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("mfa_invalid")), "{body:#}");
    // The code that confirmed the set-up is used up; the next step's is good, once.
    let (status, body) = login_with(&s, "mina", password, Some(&app_code(&secret, 0))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a code works once: {body:#}");
    let next = app_code(&secret, 1);
    let (status, body) = login_with(&s, "mina", password, Some(&next)).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["user"]["mfa"], true);
    let (status, _) = login_with(&s, "mina", password, Some(&next)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the same code again");
    // A recovery code (any case, dashes or not) works once.
    let shouted = recovery[0].to_uppercase().replace('-', "");
    let (status, body) = login_with(&s, "mina", password, Some(&shouted)).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let (status, _) = login_with(&s, "mina", password, Some(&recovery[0])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a recovery code is used up");
    let token = body["token"].as_str().unwrap().to_owned();
    let (_, me) = s.send_as("GET", "/api/auth/me", Some(&token), Value::Null).await;
    assert_eq!(me["mfa"], true, "{me:#}");

    // An admin resets it (a lost phone): the password alone signs in again.
    let (_, users) = s.send_as("GET", "/api/users", Some(&admin), Value::Null).await;
    let row = users["items"].as_array().unwrap().iter().find(|u| u["name"] == "mina").unwrap().clone();
    assert!(row["mfa_enabled_ms"].is_i64(), "{row:#}");
    assert!(row.get("secret").is_none() && !row.to_string().contains(&secret), "{row:#}");
    let (status, body) = s.send_as("DELETE", "/api/users/mina/mfa", Some(&admin), Value::Null).await;
    assert_eq!((status, body["reset"].as_bool()), (StatusCode::OK, Some(true)), "{body:#}");
    let (status, _) = login_with(&s, "mina", password, None).await;
    assert_eq!(status, StatusCode::OK);
    for action in ["user.mfa_reset", "auth.mfa_enabled"] {
        kanade_testkit::wait_until_async(
            &format!("{action} in the audit log"),
            std::time::Duration::from_secs(20),
            || async {
                let (_, body) =
                    s.send_as("GET", &format!("/api/audit?action={action}"), Some(&admin), Value::Null).await;
                body["items"].as_array().is_some_and(|items| items.len() == 1)
            },
        )
        .await;
    }
    // Turning one's own off needs the password.
    let mina = s.login("mina", password).await;
    set_up_mfa(&s, &mina, password).await;
    let (status, _) =
        s.send_as("POST", "/api/auth/mfa/disable", Some(&mina), json!({ "password": "not it at all" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) =
        s.send_as("POST", "/api/auth/mfa/disable", Some(&mina), json!({ "password": password })).await;
    assert_eq!((status, body["disabled"].as_bool()), (StatusCode::OK, Some(true)), "{body:#}");
}

#[tokio::test]
async fn admins_must_set_one_up_first_when_required_and_api_tokens_are_unaffected() {
    let s = common::secured_with(|auth| auth.requiring_mfa_for_admins(true)).await;
    let (status, body) = login_with(&s, "admin", ADMIN_PASSWORD, None).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["user"]["must_set_up_mfa"], true);
    let admin = body["token"].as_str().unwrap().to_owned();
    // Nothing but setting it up until then.
    let (status, body) = s.send_as("GET", "/api/jobs", Some(&admin), Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error"].as_str().unwrap().contains("kanade mfa setup"), "{body:#}");
    let (status, me) = s.send_as("GET", "/api/auth/me", Some(&admin), Value::Null).await;
    assert_eq!((status, &me["must_set_up_mfa"]), (StatusCode::OK, &json!(true)));
    let (secret, _) = set_up_mfa(&s, &admin, ADMIN_PASSWORD).await;
    // The same session may act now.
    let (status, _) = s.send_as("GET", "/api/jobs", Some(&admin), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    // It may not be turned off while required.
    let (status, body) =
        s.send_as("POST", "/api/auth/mfa/disable", Some(&admin), json!({ "password": ADMIN_PASSWORD })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body:#}");
    // An API token of an admin needs no code.
    let (status, token) =
        s.send_as("POST", "/api/tokens", Some(&admin), json!({ "name": "ci", "role": "admin" })).await;
    assert_eq!(status, StatusCode::CREATED, "{token:#}");
    let (status, _) = s.send_as("GET", "/api/jobs", token["token"].as_str(), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) =
        s.send_as("POST", "/api/auth/mfa/setup", token["token"].as_str(), json!({ "password": "x" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    let (status, _) = login_with(&s, "admin", ADMIN_PASSWORD, Some(&app_code(&secret, 1))).await;
    assert_eq!(status, StatusCode::OK);
}

/// A live output stream checks its caller again like `/api/stream`: a password change (here)
/// or a disabled user ends it with `session_ended` instead of streaming on for days.
#[tokio::test]
async fn a_live_output_stream_ends_when_its_session_does() {
    let s = common::secured_with(|auth| auth.with_recheck(std::time::Duration::from_millis(200))).await;
    let admin = s.login("admin", ADMIN_PASSWORD).await;
    let job = json!({ "id": "waits", "version": "1", "execute": { "shell": "sh", "script": "true" },
                      "target": { "pcs": ["PC-NOT-HERE"] } });
    let (status, launched) = s.send_as("POST", "/api/deploy?allow_unknown=true", Some(&admin), job).await;
    assert_eq!(status, StatusCode::CREATED, "{launched:#}");
    let exec = launched["exec_id"].as_str().unwrap().to_owned();
    let req = axum::http::Request::get(format!("/api/executions/{exec}/pcs/PC-NOT-HERE/tail"))
        .header("authorization", format!("Bearer {admin}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = s.app.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = tokio::spawn(http_body_util::BodyExt::collect(response.into_body()));
    let change = json!({ "current": ADMIN_PASSWORD, "new": "a brand new password" });
    let (status, _) = s.send_as("POST", "/api/auth/password", Some(&admin), change).await;
    assert_eq!(status, StatusCode::OK);
    let text = tokio::time::timeout(std::time::Duration::from_secs(30), body)
        .await
        .expect("the stream outlived its session")
        .unwrap()
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("event: waiting") && text.contains("event: session_ended"), "{text}");
}
