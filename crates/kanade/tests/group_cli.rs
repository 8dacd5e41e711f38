//! `kanade group …` against a real stack (nats-server, the backend's router and workers, an
//! in-process agent).

mod common;

use common::{backend, kanade, stderr, stdout};

#[tokio::test(flavor = "multi_thread")]
async fn groups_from_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path()).await;
    let url = b.url.as_str();
    kanade_testkit::wait_until_async("PC-1 known", std::time::Duration::from_secs(30), || async {
        stdout(&kanade(url, &["agents", "list"]).await).contains("PC-1")
    })
    .await;
    let rule = format!("os.family = {} and hostname ~ ''", std::env::consts::OS);
    let out = kanade(url, &["group", "create", "this-os", "--rule", &rule]).await;
    assert_eq!(stdout(&out), "dynamic group this-os created: 1 members now\n", "{}", stderr(&out));
    assert_eq!(stdout(&kanade(url, &["group", "members", "this-os"]).await), "PC-1\n");
    let list = stdout(&kanade(url, &["group", "list"]).await);
    assert!(list.starts_with("NAME") && list.contains("this-os") && list.contains(&rule), "{list}");
    let out = kanade(url, &["group", "set-rule", "this-os", "--rule", "os.family = plan9"]).await;
    assert_eq!(stdout(&out), "dynamic group this-os changed: 0 members now\n", "{}", stderr(&out));
    let out = kanade(url, &["group", "create", "bad", "--rule", "os.family =="]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("rule: at character 12: expected a value"), "{}", stderr(&out));
    let out = kanade(url, &["group", "show", "nope"]).await;
    assert!(stderr(&out).contains("no dynamic group \"nope\""), "{}", stderr(&out));
    let out = kanade(url, &["group", "delete", "this-os"]).await;
    assert_eq!(stdout(&out), "dynamic group this-os deleted; 0 PCs left it\n", "{}", stderr(&out));
}
