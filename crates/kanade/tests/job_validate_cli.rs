//! `kanade job validate` works offline and reports every problem with its path.

use std::process::Command;

fn validate(dir: &std::path::Path, yaml: &str, extra: &[&str]) -> std::process::Output {
    let path = dir.join("job.yaml");
    std::fs::write(&path, yaml).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kanade"))
        .args(extra)
        .args(["job", "validate"])
        .arg(&path)
        .env("KANADE_NATS_URL", "nats://127.0.0.1:1")
        .output()
        .unwrap()
}

#[test]
fn a_valid_manifest_with_script_file_is_inlined() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::fs::write(dir.path().join("scripts/hello.sh"), "echo hello\n").unwrap();
    let yaml = "id: hello\nversion: '1'\nexecute: { shell: sh, script_file: scripts/hello.sh }\ntarget: { all: true }\n";
    let out = validate(dir.path(), yaml, &["-o", "json"]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["manifest"]["execute"]["script"], "echo hello\n");
}

#[test]
fn every_problem_is_listed_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "id: bad id\nversion: '1'\nexecute: { shell: zsh, script: x, timeout: 10 }\nrollout: { waves: [{ group: a, delay: soon }] }\n";
    let out = validate(dir.path(), yaml, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 problem(s)"), "{err}");
    assert!(err.contains(r#"rollout.waves[0].delay: "soon" is not a duration"#), "{err}");
    assert!(err.contains(r#"id: job id "bad id" is invalid"#), "{err}");
    assert!(err.contains(r#"execute.shell: "zsh" is not a shell"#), "{err}");
    assert!(err.contains("execute.timeout: 10 is not a duration"), "{err}");
    let yaml = "id: j\nversion: '1'\nexecute: { shell: sh, script_file: nope.sh }\n";
    let out = validate(dir.path(), yaml, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(r#"execute.script_file: cannot read "nope.sh""#));
}
