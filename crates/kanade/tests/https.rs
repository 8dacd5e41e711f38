//! The CLI against an HTTPS backend whose certificate a private CA signed (a TLS terminator in
//! front of the real backend, as a reverse proxy would be): without the CA the certificate is
//! refused with a message naming `--ca-file`; with it `login` and later commands work.

mod common;

use std::net::SocketAddr;

use common::{ADMIN_PASSWORD, kanade_in, secured, stderr, stdout};

#[tokio::test(flavor = "multi_thread")]
async fn login_and_commands_work_over_https_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let b = secured(dir.path()).await;
    let ca = kanade_testkit::pki::Ca::new(dir.path(), "ca");
    let (cert, key) = ca.issue(dir.path(), "backend", &["localhost", "127.0.0.1"]);
    let upstream: SocketAddr = b.url.trim_start_matches("http://").parse().unwrap();
    let tls = kanade_testkit::pki::tls_terminator(&cert, &key, upstream).await;
    let url = format!("https://localhost:{}", tls.port());
    let config = dir.path().join("cli-config");
    let ca_file = ca.path.to_str().unwrap();
    let password = format!("{ADMIN_PASSWORD}\n");
    let login = ["login", "--user", "admin", "--password-stdin"];

    let out = kanade_in(&config, &url, &login, Some(&password)).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("error: cannot reach the backend at {url} over TLS ("))
            && err.contains("give that CA's PEM file with --ca-file (or KANADE_CA_FILE)"),
        "{err}"
    );

    let with_ca = |args: &[&'static str]| -> Vec<&str> { [&["--ca-file", ca_file][..], args].concat() };
    let out = kanade_in(&config, &url, &with_ca(&login), Some(&password)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with(&format!("signed in to {url} as admin (admin)")), "{}", stdout(&out));
    // The kept session and the same CA serve every later command.
    let out = kanade_in(&config, &url, &with_ca(&["job", "list"]), None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // The login's audit event, projected from the stream, read back over TLS.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = kanade_in(&config, &url, &with_ca(&["audit"]), None).await;
        assert!(out.status.success(), "{}", stderr(&out));
        if stdout(&out).contains("auth.login") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no auth.login in the audit: {}", stdout(&out));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
