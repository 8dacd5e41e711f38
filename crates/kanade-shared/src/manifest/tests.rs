//! One `check` per document kind: YAML in, every expected problem (or none) out.

use super::*;

fn check_job(yaml: &str, expected: &[&str]) {
    match job_from_yaml(yaml) {
        Ok(_) => assert!(expected.is_empty(), "expected problems {expected:?}, got a valid job"),
        Err(p) => assert_eq!(p.messages(), expected, "\n--- yaml ---\n{yaml}"),
    }
}

fn check_schedule(yaml: &str, expected: &[&str]) {
    match schedule_from_yaml(yaml) {
        Ok(_) => assert!(expected.is_empty(), "expected problems {expected:?}, got a valid schedule"),
        Err(p) => assert_eq!(p.messages(), expected, "\n--- yaml ---\n{yaml}"),
    }
}

fn check_plan(yaml: &str, expected: &[&str]) {
    match plan_from_yaml(yaml) {
        Ok(_) => assert!(expected.is_empty(), "expected problems {expected:?}, got a valid plan"),
        Err(p) => assert_eq!(p.messages(), expected, "\n--- yaml ---\n{yaml}"),
    }
}

const JOB_HEAD: &str = "id: cleanup\nversion: 1.0.1\n";

fn job(rest: &str) -> String {
    format!("{JOB_HEAD}{rest}")
}

#[test]
fn the_spec_example_is_valid() {
    let yaml = r#"
id: cleanup-disk-temp
version: 1.0.1
description: Empty the temp folder
execute:
  shell: powershell
  script: |
    Remove-Item "$env:TEMP\*" -Recurse -Force -ErrorAction SilentlyContinue
  timeout: 600s
  cwd: C:\Windows\Temp
  run_as: system
staleness: { mode: cached }
target: { pcs: [PC1234], groups: [], all: false }
jitter: 5m
"#;
    let file = job_from_yaml(yaml).unwrap();
    assert_eq!(file.manifest.id.as_str(), "cleanup-disk-temp");
    assert_eq!(file.manifest.execute.timeout.as_secs(), 600);
    assert_eq!(file.manifest.jitter.map(|j| j.as_secs()), Some(300));
    assert_eq!(file.plan.unwrap().target.pcs[0].as_str(), "PC1234");
}

#[test]
fn job_rules_each_name_the_path_and_value() {
    let cases: &[(&str, &[&str])] = &[
        ("", &["the document is empty"]),
        (
            "- a\n- b\n",
            &["invalid type: sequence, expected a job manifest (a mapping with id, version, execute, ...)"],
        ),
        (
            "description: x\n",
            &[
                "id: is required",
                "version: is required",
                "execute: is required (shell and one of script, script_file, script_object)",
            ],
        ),
        (
            "id: my job\nversion: 1\nexecute: { shell: sh, script: x }\n",
            &[r#"id: job id "my job" is invalid: use 1 to 64 characters from A-Z a-z 0-9 _ -"#],
        ),
        (
            "id: j\nversion: 1.0\nexecute: { shell: sh, script: x }\n",
            &[r#"version: 1 is read as a number; quote it ("1")"#],
        ),
        (
            &job("execute: { shell: zsh, script: x }\n"),
            &[r#"execute.shell: "zsh" is not a shell (one of powershell, pwsh, cmd, bash, sh)"#],
        ),
        (
            &job("execute: { script: x }\n"),
            &["execute.shell: is required (one of powershell, pwsh, cmd, bash, sh)"],
        ),
        (
            &job("execute: { shell: sh }\n"),
            &["execute: needs exactly one script source: script, script_file or script_object"],
        ),
        (
            &job("execute: { shell: sh, script: x, script_file: a.sh }\n"),
            &[
                "execute: has more than one script source: keep exactly one of script, script_file, script_object",
            ],
        ),
        (&job("execute: { shell: sh, script: '  ' }\n"), &["execute.script: is empty"]),
        (
            &job("execute: { shell: sh, script_object: nope }\n"),
            &[r#"execute.script_object: "nope" is not <name>/<version> (e.g. cleanup/1.0.1)"#],
        ),
        (
            &job("execute: { shell: sh, script_object: a/1, script_sha256: xyz }\n"),
            &[r#"execute.script_sha256: "xyz" is not a sha256 (64 hex digits)"#],
        ),
        (
            &job("execute: { shell: sh, script: x, script_sha256: abc }\n"),
            &["execute.script_sha256: only applies to script_object"],
        ),
        (
            &job("execute: { shell: sh, script: x, timeout: 600 }\n"),
            &["execute.timeout: 600 is not a duration (write a number with a unit, e.g. 30s, 10m, 24h)"],
        ),
        (
            &job("execute: { shell: sh, script: x, timeout: 0s }\n"),
            &["execute.timeout: must be longer than 0s"],
        ),
        (
            &job("execute: { shell: sh, script: x, run_as: root }\n"),
            &[r#"execute.run_as: "root" is not one of system, user"#],
        ),
        (
            &job("execute: { shell: sh, script: x, env: { 1BAD: x, OK: 1 } }\n"),
            &[
                "execute.env.1BAD: is not a valid variable name (letters, digits, _; not starting with a digit)",
            ],
        ),
        (
            &job("execute: { shell: sh, script: x, jitter: 1m }\njitter: 2m\n"),
            &["jitter: is also set as execute.jitter; set it once"],
        ),
        (
            &job("execute: { shell: sh, script: x }\nstaleness: { mode: fresh }\n"),
            &[r#"staleness.mode: "fresh" is not one of cached, strict, unchecked"#],
        ),
        (
            &job("execute: { shell: sh, script: x }\nstaleness: { mode: strict }\n"),
            &["staleness.max_cache_age: is required with mode: strict (e.g. 1h)"],
        ),
        (
            &job("execute: { shell: sh, script: x }\nstaleness: { mode: cached, max_cache_age: 1h }\n"),
            &["staleness.max_cache_age: only applies to mode: strict"],
        ),
        (
            &job("execute: { shell: sh, scirpt: x, script: y }\nowner: me\n"),
            &["execute.scirpt: unknown key", "owner: unknown key"],
        ),
        (
            &job("execute: [1, 2]\n"),
            &[
                "execute: invalid type: sequence, expected an execute block (a mapping with shell, script, timeout, ...) at line 3 column 10",
            ],
        ),
    ];
    for (yaml, expected) in cases {
        check_job(yaml, expected);
    }
}

#[test]
fn plan_rules_inside_a_manifest() {
    let exec = "execute: { shell: sh, script: x }\n";
    let cases: &[(&str, &[&str])] = &[
        ("target: {}\n", &["target: a plan must name a target (pcs, groups or all: true) or rollout.waves"]),
        (
            "target: { all: true, groups: [g] }\n",
            &["target.all: true already means every PC; remove pcs and groups, or set all: false"],
        ),
        (
            "target: { pcs: [PC1, 'bad pc', PC1] }\n",
            &[
                r#"target.pcs[1]: pc_id "bad pc" is invalid: use 1 to 64 characters from A-Z a-z 0-9 _ -"#,
                r#"target.pcs[2]: "PC1" is listed twice"#,
            ],
        ),
        (
            "rollout: { waves: [{ group: canary, delay: 0s }, { group: wave1, delay: soon }] }\n",
            &[
                r#"rollout.waves[1].delay: "soon" is not a duration (write a number with a unit, e.g. 30s, 10m, 24h)"#,
            ],
        ),
        (
            "rollout: { waves: [{ group: a, delay: 30m }, { group: b, delay: 10m }] }\n",
            &[
                "rollout.waves[1].delay: 10m is earlier than the wave before it (30m); delays count from the start of the rollout",
            ],
        ),
        (
            "rollout: { waves: [{ delay: 0s }, { group: a, pcs: [x] }] }\n",
            &[
                "rollout.waves[0]: a wave needs a group or pcs",
                "rollout.waves[1]: a wave takes a group or pcs, not both",
            ],
        ),
        (
            "rollout: { strategy: canary, waves: [], max_failure_ratio: 1.5 }\n",
            &[
                r#"rollout.strategy: "canary" is not a strategy (the only one is wave)"#,
                "rollout.max_failure_ratio: 1.5 is outside 0.0..=1.0",
                "rollout.waves: a rollout needs at least one wave",
            ],
        ),
        (
            "target: { groups: [g] }\nrollout: { waves: [{ group: a }] }\n",
            &["target: cannot be combined with rollout.waves: the waves name who runs it"],
        ),
        ("rollout: { waves: [{ group: a, dealy: 1m }] }\n", &["rollout.waves[0].dealy: unknown key"]),
        ("emit: facts\n", &[r#"emit: "facts" is not one of output, events"#]),
    ];
    for (plan, expected) in cases {
        check_job(&job(&format!("{exec}{plan}")), expected);
    }
}

#[test]
fn standalone_plans_need_a_target_or_waves() {
    check_plan(
        "jitter: 5m\n",
        &["target: a plan must name a target (pcs, groups or all: true) or rollout.waves"],
    );
    check_plan("target: { all: true }\njitter: 5m\n", &[]);
    check_plan(
        "target: { groups: [wave1] }\njitter: 5x\n",
        &[r#"jitter: "5x" is not a duration (write a number with a unit, e.g. 30s, 10m, 24h)"#],
    );
}

const SCHEDULE: &str =
    "id: nightly\ncron: \"0 0 3 * * *\"\njob_id: cleanup\nplan: { target: { groups: [wave1] } }\n";

#[test]
fn schedule_rules_each_name_the_path_and_value() {
    let cases: &[(&str, &[&str])] = &[
        (SCHEDULE, &[]),
        (
            "cron: '0 0 3 * * *'\n",
            &[
                "id: is required",
                "job_id: is required (or give an inline manifest)",
                "plan: is required: a schedule needs a target (plan: { target: { groups: [...] } })",
            ],
        ),
        (
            &SCHEDULE.replace("0 0 3 * * *", "0 0 27 * * *"),
            &[r#"cron: "0 0 27 * * *": field 3 (hour) value 27 is out of range 0-23"#],
        ),
        (
            &format!("{SCHEDULE}mode: hourly\n"),
            &[r#"mode: "hourly" is not one of every_tick, once_per_pc, once_per_target"#],
        ),
        (
            &format!("{SCHEDULE}cooldown: 1h\nauto_disable_when_done: true\n"),
            &[
                "cooldown: only applies to mode once_per_pc or once_per_target",
                "auto_disable_when_done: only applies to mode once_per_pc or once_per_target",
            ],
        ),
        (&format!("{SCHEDULE}mode: once_per_pc\ncooldown: 1day\n"), &[]),
        (
            &format!("{SCHEDULE}on_failure: {{ retry: {{ max: 50, backoff: 5m }} }}\n"),
            &["on_failure.retry.max: 50 is outside 1..=10"],
        ),
        (
            &format!("{SCHEDULE}on_failure: {{ retry: {{ max: 2, backoff: later }} }}\n"),
            &[
                r#"on_failure.retry.backoff: "later" is not a duration (write a number with a unit, e.g. 30s, 10m, 24h)"#,
            ],
        ),
        (
            &format!("{SCHEDULE}timezone: 'Mars Base'\n"),
            &[r#"timezone: "Mars Base" is not a time zone name (e.g. UTC, Europe/Paris, Asia/Tokyo)"#],
        ),
        (&format!("{SCHEDULE}timezone: Asia/Tokyo\nenable: true\n"), &["enable: unknown key"]),
        (
            &format!("{SCHEDULE}manifest: {{ id: x, version: '1', execute: {{ shell: sh, script: x }} }}\n"),
            &["job_id: set either job_id or an inline manifest, not both"],
        ),
        (
            "id: s\ncron: '@daily'\nmanifest: { id: x, version: '1', execute: { shell: ksh, script: x }, target: { all: true } }\nplan: { target: { all: true } }\n",
            &[r#"manifest.execute.shell: "ksh" is not a shell (one of powershell, pwsh, cmd, bash, sh)"#],
        ),
        (
            "id: s\ncron: '@daily'\nmanifest: { id: x, version: '1', execute: { shell: sh, script: x }, target: { all: true } }\nplan: { target: { all: true } }\n",
            &["manifest: has target or rollout; put them under plan"],
        ),
    ];
    for (yaml, expected) in cases {
        check_schedule(yaml, expected);
    }
}

#[test]
fn stored_json_round_trips_through_the_same_validation() {
    let file = job_from_yaml(&job(
        "execute: { shell: bash, script: echo hi, timeout: 90s, env: { A: 1 } }\nstaleness: { mode: strict, max_cache_age: 1h }\njitter: 5m\n",
    ))
    .unwrap();
    let json = serde_json::to_vec(&file.manifest).unwrap();
    assert_eq!(job_from_json(&json).unwrap().manifest, file.manifest);

    let schedule = schedule_from_yaml(&format!(
        "{SCHEDULE}mode: once_per_target\nauto_disable_when_done: true\non_failure: {{ retry: {{ max: 2, backoff: 5m }} }}\n"
    ))
    .unwrap();
    let json = serde_json::to_vec(&schedule).unwrap();
    assert_eq!(schedule_from_json(&json).unwrap(), schedule);

    let plan = plan_from_yaml("rollout: { waves: [{ group: canary }, { pcs: [PC1], delay: 30m }], max_failure_ratio: 0.2 }\njitter: 1m\n").unwrap();
    let json = serde_json::to_vec(&plan).unwrap();
    assert_eq!(plan_from_json(&json).unwrap(), plan);
}

#[test]
fn json_documents_report_unknown_keys_too() {
    let err = plan_from_json(br#"{"target":{"all":true},"targte":{}}"#).unwrap_err();
    assert_eq!(err.messages(), ["targte: unknown key"]);
    let err = plan_from_json(br#"{"target":{"all":true}} trailing"#).unwrap_err();
    assert!(err.messages()[0].starts_with("trailing characters"), "{err}");
}

#[test]
fn yaml_aliases_are_refused_with_where_they_are() {
    check_job(
        "x: &big [1, 2]\nid: a\nversion: '1'\nexecute: { shell: sh, script: ok }\ntarget: { pcs: *big }\n",
        &["line 5 column 16: YAML aliases (*name) are not accepted; write the value out"],
    );
    // An anchor alone is harmless, and so is an asterisk inside a quoted string.
    check_job(
        "id: &name a\nversion: '1'\nexecute: { shell: sh, script: 'ls *.log' }\ntarget: { all: true }\n",
        &[],
    );
}

#[test]
fn emit_events_reaches_the_command_and_output_is_the_default() {
    let base = "id: j\nversion: '1'\nexecute: { shell: sh, script: 'true' }\n";
    let plain = super::job_from_yaml(base).unwrap().manifest;
    assert_eq!(plain.emit, crate::wire::Emit::Output);
    assert!(!serde_json::to_string(&plain).unwrap().contains("emit"), "the default is not written");
    let events = super::job_from_yaml(&format!("{base}emit: events\n")).unwrap().manifest;
    assert_eq!(events.emit, crate::wire::Emit::Events);
    // Stored as JSON and read back (the catalog), it keeps its mode.
    let stored = serde_json::to_vec(&events).unwrap();
    assert_eq!(super::job_from_json(&stored).unwrap().manifest.emit, crate::wire::Emit::Events);
}

#[test]
fn checks_and_facts_are_validated_with_every_problem_named() {
    let exec = "execute: { shell: sh, script: x }\n";
    let cases: &[(&str, &[&str])] = &[
        (
            "check: { name: disk-space, status_field: status, detail_field: detail }\nfacts:\n  explode:\n    - { table: disks, path: disks, key: [mount], columns: { mount: text, free_bytes: integer, fs: text, seen: timestamp, ok: bool, load: real } }\n",
            &[],
        ),
        (
            "check: { name: Disk Space }\n",
            &[
                r#"check.name: "Disk Space" is not a check name: write [a-z0-9][a-z0-9_.-]{0,63}"#,
                "check.status_field: is required (where pass, warn or fail is in the output)",
            ],
        ),
        (
            "check: { name: d, status_field: 'a..b' }\n",
            &[r#"check.status_field: "a..b" is not a path: write dotted names, e.g. disks or result.state"#],
        ),
        (
            "facts:\n  explode:\n    - { table: agents, path: x, key: [a], columns: { a: text } }\n    - { table: 9lives, path: x, key: [a], columns: { a: text } }\n",
            &[
                r#"facts.explode[0].table: "agents" is a built-in table's name; choose another"#,
                r#"facts.explode[1].table: "9lives" is not a name: write [a-z][a-z0-9_]{0,62}"#,
            ],
        ),
        (
            "facts:\n  explode:\n    - { table: t, path: x, key: [b, b], columns: { a: float, pc_id: text } }\n",
            &[
                r#"facts.explode[0].columns.a: "float" is not a column type (one of text, integer, real, bool, timestamp)"#,
                "facts.explode[0].columns.pc_id: pc_id is every table's own first key column; name this column differently",
                r#"facts.explode[0].key[1]: "b" is listed twice"#,
            ],
        ),
        (
            "facts:\n  explode:\n    - { table: t, path: x, key: [z], columns: { a: text } }\n    - { table: t, path: y, key: [a], columns: { a: text } }\n",
            &[
                r#"facts.explode[0].key[0]: "z" is not one of the columns"#,
                r#"facts.explode[1].table: "t" is listed twice"#,
            ],
        ),
        ("facts: { explode: [] }\n", &["facts.explode: lists no table"]),
        (
            "emit: events\ncheck: { name: d, status_field: s }\n",
            &["emit: events: stdout is events then, not the JSON a check or facts read"],
        ),
    ];
    for (rest, expected) in cases {
        check_job(&job(&format!("{exec}{rest}")), expected);
    }
}
