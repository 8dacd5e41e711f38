//! The executor against real shells (Unix only: the Windows shells cannot run here).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;

struct Case {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
}

impl Case {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap(), env: BTreeMap::new() }
    }

    fn spec<'a>(&'a self, shell: Shell, script: &'a str, timeout: Duration) -> RunSpec<'a> {
        RunSpec {
            shell,
            script,
            timeout,
            cwd: None,
            env: &self.env,
            staging_dir: self.dir.path(),
            name: "exec-test",
            output_cap: 64,
            live: None,
            identity: Identity::Agent,
        }
    }
}

#[tokio::test]
async fn captures_output_exit_code_and_env() {
    let mut case = Case::new();
    case.env.insert("GREETING".into(), "hello".into());
    let spec = case.spec(Shell::Sh, "echo \"$GREETING\"; echo oops >&2; exit 3", Duration::from_secs(10));
    let out = run(spec, std::future::pending()).await.unwrap();
    assert_eq!(
        out,
        RunOutcome {
            ending: Ending::Exited,
            exit_code: Some(3),
            stdout: "hello\n".into(),
            stderr: "oops\n".into(),
            truncated: false
        }
    );
    assert_eq!(std::fs::read_dir(case.dir.path()).unwrap().count(), 0, "staged script left behind");
}

#[tokio::test]
async fn output_beyond_the_cap_is_dropped_and_flagged() {
    let case = Case::new();
    let spec =
        case.spec(Shell::Bash, "for i in $(seq 1 100); do echo line-$i; done", Duration::from_secs(10));
    let out = run(spec, std::future::pending()).await.unwrap();
    assert_eq!(out.stdout.len(), 64);
    assert!(out.stdout.starts_with("line-1\nline-2\n"));
    assert!(out.truncated);
    assert_eq!(out.exit_code, Some(0));
}

#[tokio::test]
async fn timeout_ends_the_script_and_its_grandchild() {
    let case = Case::new();
    let spec = case.spec(Shell::Sh, "sleep 300 & echo $!; sleep 300", Duration::from_millis(500));
    let started = Instant::now();
    let out = run(spec, std::future::pending()).await.unwrap();
    assert_eq!(out.ending, Ending::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(30), "the run was not cut short");
    let grandchild: i32 = out.stdout.trim().parse().unwrap();
    kanade_testkit::wait_until("the backgrounded sleep to be gone", Duration::from_secs(5), || {
        !kanade_testkit::process_running(grandchild)
    });
}

#[tokio::test]
async fn kill_ends_the_tree() {
    let case = Case::new();
    let spec = case.spec(Shell::Sh, "sleep 300 & echo $!; sleep 300", Duration::from_secs(300));
    let out = run(spec, tokio::time::sleep(Duration::from_millis(300))).await.unwrap();
    assert_eq!(out.ending, Ending::Killed);
    assert_eq!(out.exit_code, None, "a killed shell has no exit code");
    let grandchild: i32 = out.stdout.trim().parse().unwrap();
    kanade_testkit::wait_until("the backgrounded sleep to be gone", Duration::from_secs(5), || {
        !kanade_testkit::process_running(grandchild)
    });
}

#[tokio::test]
async fn leftovers_holding_the_pipes_do_not_hang_the_run() {
    let case = Case::new();
    let spec = case.spec(Shell::Sh, "sleep 300 & echo $!; exit 0", Duration::from_secs(300));
    let started = Instant::now();
    let out = run(spec, std::future::pending()).await.unwrap();
    assert_eq!((out.ending, out.exit_code), (Ending::Exited, Some(0)));
    assert!(started.elapsed() < Duration::from_secs(30));
    // The output written before the script exited is kept, and the leftover is ended with the run.
    let leftover: i32 = out.stdout.trim().parse().unwrap();
    assert!(!out.truncated);
    kanade_testkit::wait_until("the leftover sleep to be gone", Duration::from_secs(5), || {
        !kanade_testkit::process_running(leftover)
    });
}

#[tokio::test]
async fn a_missing_shell_is_a_spawn_error_naming_it() {
    let case = Case::new();
    let err =
        run(case.spec(Shell::Powershell, "Get-Date", Duration::from_secs(5)), std::future::pending()).await;
    match err {
        Err(ExecError::Spawn { program, .. }) => assert_eq!(program, "powershell"),
        other => panic!("{other:?}"),
    }
    let err = run(case.spec(Shell::Unknown, "x", Duration::from_secs(5)), std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "shell Unknown is not supported by this agent");
}

#[test]
fn windows_command_lines_read_back_word_for_word() {
    let cases: &[(&[&str], &str)] = &[
        (&["cmd", "/D", "/C", r"C:\Windows\Temp\x.cmd"], r"cmd /D /C C:\Windows\Temp\x.cmd"),
        (&[r"C:\Program Files\a b\"], r#""C:\Program Files\a b\\""#),
        (&[r#"say "hi""#], r#""say \"hi\"""#),
        (&[r#"a\"b"#], r#""a\\\"b""#),
        (&["", "x"], r#""" x"#),
    ];
    for (words, line) in cases {
        assert_eq!(super::command_line(words), *line, "{words:?}");
    }
}

#[test]
fn windows_environment_entries_split_at_the_right_equals_sign() {
    let pair = |k: &str, v: &str| Some((k.to_owned(), v.to_owned()));
    assert_eq!(super::env_entry("PATH=C:\\Windows"), pair("PATH", "C:\\Windows"));
    assert_eq!(super::env_entry("=C:=C:\\Users"), pair("=C:", "C:\\Users"));
    assert_eq!(super::env_entry("Éditeur=vi"), pair("Éditeur", "vi"));
    assert_eq!(super::env_entry("A=b=c"), pair("A", "b=c"));
    assert_eq!(super::env_entry("NOEQUALS"), None);
    assert_eq!(super::env_entry("="), None);
}
