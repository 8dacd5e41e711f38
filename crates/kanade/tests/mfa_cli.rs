//! A second factor from the terminal: `kanade mfa setup` against a real backend, then `kanade
//! login` asking for the code, `--code`, a recovery code, and an admin's reset.

mod common;

use std::process::Stdio;

use common::{ADMIN_PASSWORD, kanade_in, secured, stderr, stdout};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn code(secret: &str, steps: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    kanade_backend::auth::totp::code_at(secret, now + steps * 30).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn set_up_then_sign_in_with_codes() {
    let dir = tempfile::tempdir().unwrap();
    let b = secured(dir.path()).await;
    let config = dir.path().join("cli");
    let login = |code: Option<String>| {
        let (config, url) = (config.clone(), b.url.clone());
        async move {
            let mut args = vec!["login", "--user", "admin", "--password-stdin"];
            let code = code.unwrap_or_default();
            if !code.is_empty() {
                args.extend(["--code", code.as_str()]);
            }
            kanade_in(&config, &url, &args, Some(&format!("{ADMIN_PASSWORD}\n"))).await
        }
    };
    let out = login(None).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // Set-up: the secret comes out as JSON, the code goes in on stdin.
    let mut setup = tokio::process::Command::new(env!("CARGO_BIN_EXE_kanade"))
        .args(["--backend-url", &b.url, "-o", "json", "mfa", "setup"])
        .env("KANADE_CONFIG_DIR", &config)
        .env_remove("KANADE_AUTH_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = setup.stdin.take().unwrap();
    stdin.write_all(format!("{ADMIN_PASSWORD}\n").as_bytes()).await.unwrap();
    let mut lines = BufReader::new(setup.stdout.take().unwrap()).lines();
    let mut json = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        json.push_str(&line);
        if line == "}" {
            break;
        }
    }
    let shown: serde_json::Value = serde_json::from_str(&json).unwrap();
    let secret = shown["secret"].as_str().unwrap().to_owned();
    stdin.write_all(format!("{}\n", code(&secret, 0)).as_bytes()).await.unwrap();
    drop(stdin);
    let mut rest = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        rest.push_str(&line);
    }
    assert!(setup.wait().await.unwrap().success());
    let enabled: serde_json::Value = serde_json::from_str(&rest).unwrap();
    let recovery: Vec<String> = enabled["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);

    // Without a code (and no terminal to ask at): told to give --code.
    let out = login(None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("give the authenticator app's current code with --code"),
        "{}",
        stderr(&out)
    );
    let out = login(Some(code(&secret, 1))).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = login(Some(recovery[3].clone())).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = login(Some(recovery[3].clone())).await;
    assert!(stderr(&out).contains("already used"), "{}", stderr(&out));

    // The admin's reset of a user (here: itself) and the password-only sign-in after it.
    let out = kanade_in(&config, &b.url, &["mfa", "reset", "admin"], None).await;
    assert_eq!(
        stdout(&out),
        "admin's second factor removed: they sign in with the password and set up a new one\n",
        "{}",
        stderr(&out)
    );
    let out = login(None).await;
    assert!(out.status.success(), "{}", stderr(&out));
}
