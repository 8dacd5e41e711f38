//! `kanade-backend migrate-to-postgres`: the real binary copies what the streams cannot rebuild
//! (accounts, API tokens, schedule state, enrolment tokens and agents' credentials) from a
//! SQLite file into Postgres, once: a second run adds nothing and changes nothing.

use std::process::Command;

use kanade_backend::db::Db;
use kanade_backend::db::accounts::Token;

fn migrate(from: &std::path::Path, to: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kanade-backend"))
        .args(["migrate-to-postgres", "--from"])
        .arg(from)
        .args(["--to", to])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn accounts_tokens_and_schedule_state_move_to_postgres_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backend.db");
    let sqlite = Db::open(&file).unwrap();
    assert!(
        sqlite
            .create_user("alice".into(), "$argon2id$hash".into(), "operator".into(), true, 1_000)
            .await
            .unwrap()
    );
    sqlite.update_user("alice".into(), None, Some(true), None, 2_000).await.unwrap();
    let token = Token {
        secret_sha256: "ab".repeat(32),
        token: kanade_shared::api::accounts::ApiToken {
            id: "t1".into(),
            name: "ci".into(),
            role: "viewer".into(),
            created_by: "alice".into(),
            created_ms: 3_000,
            revoked_ms: None,
        },
    };
    assert!(sqlite.create_token(token).await.unwrap());
    sqlite.revoke_token("t1".into(), 4_000).await.unwrap();
    sqlite
        .record_tick("nightly".into(), 5_000, Some((5_000, "exec-1".into())), "fired exec-1".into())
        .await
        .unwrap();
    let outgoing = |id: &str| kanade_backend::db::outbox::Outgoing {
        id: id.into(),
        subject: "audit.x".into(),
        payload: "{}".into(),
    };
    let spec = kanade_shared::wire::enroll::TokenSpec {
        expires_at: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        max_uses: 2,
        groups: vec![],
    };
    sqlite
        .create_enroll_token("e1".into(), "e1hash".into(), "alice".into(), 5_000, spec, outgoing("a1"))
        .await
        .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let pc: kanade_shared::PcId = "PC-E".parse().unwrap();
    sqlite
        .enrol("e1hash".into(), pc.clone(), "pc-secret-hash".into(), now, outgoing("a2"))
        .await
        .unwrap()
        .unwrap();
    drop(sqlite);

    let url = kanade_testkit::PgCluster::shared().fresh_database();
    let before = std::fs::read(&file).unwrap();
    let (ok, text) = migrate(&file, &url);
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "1 users, 0 second factors, 1 API tokens, 1 schedule states, 0 dynamic groups, 1 enrolment tokens, 1 agent credentials (0 already there"
        ),
        "{text}"
    );
    // The source is only read: the binary it came from can still open it.
    assert_eq!(std::fs::read(&file).unwrap(), before, "migrate-to-postgres changed its source");

    let pg = Db::connect_postgres(&url).await.unwrap();
    let alice = pg.user("alice".into()).await.unwrap().expect("alice was copied");
    assert_eq!(
        (
            alice.password_hash.as_str(),
            alice.account.role.as_str(),
            alice.account.disabled,
            alice.account.must_change_password
        ),
        ("$argon2id$hash", "operator", true, true)
    );
    let t = pg.token("t1".into()).await.unwrap().expect("the token was copied");
    assert_eq!((t.token.name.as_str(), t.token.revoked_ms), ("ci", Some(4_000)));
    let st = pg.schedule_state("nightly".into()).await.unwrap().expect("the schedule state was copied");
    assert_eq!((st.last_tick_ms, st.last_exec_id.as_deref()), (5_000, Some("exec-1")));
    // The enrolled PC still connects (its credentials came along); the token kept its use.
    assert!(pg.authorize_agent(pc, "pc-secret-hash".into(), "S".into(), 1, 6_000).await.unwrap());
    let e1 = pg.enroll_token_by_hash("e1hash".into()).await.unwrap().expect("the enrolment token was copied");
    assert_eq!((e1.info.uses, e1.info.max_uses), (1, 2));

    let (ok, text) = migrate(&file, &url);
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "0 users, 0 second factors, 0 API tokens, 0 schedule states, 0 dynamic groups, 0 enrolment tokens, 0 agent credentials (5 already there"
        ),
        "{text}"
    );

    let (ok, text) = migrate(&dir.path().join("missing.db"), &url);
    assert!(!ok && text.contains("missing.db: no such SQLite database"), "{text}");
}
