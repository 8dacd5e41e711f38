//! `kanade-shared` decides; its callers read the world. A decision that read the clock or the
//! process environment itself could not be table-tested, so only the places listed here may:
//! this test reads the crate's own sources and fails on any other.

use std::path::Path;

/// (file, what it may read, why).
const ALLOWED: &[(&str, &str, &str)] = &[
    ("config/environment.rs", "env::vars_os(", "the one place the environment is read, in main"),
    ("wire/command.rs", "now_utc()", "Command::inline stamps the time a command is issued"),
    ("service.rs", "Instant::now()", "the Windows service's stop wait (IO shell)"),
];

const READS: &[&str] =
    &["env::var(", "env::vars(", "env::vars_os(", "now_utc()", "Instant::now()", "SystemTime::now("];

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_the_listed_places_read_the_clock_or_the_environment() {
    let root = kanade_testkit::manifest_dir().join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 10, "found only {} source files under {}", files.len(), root.display());
    let mut found = Vec::new();
    for file in files {
        let name = file.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
        // Unit tests may use the clock; they sit below `#[cfg(test)]` or in a `tests.rs`.
        if name.ends_with("/tests.rs") || name == "tests.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (n, line) in code.lines().enumerate() {
            for read in READS {
                let allowed = ALLOWED.iter().any(|(f, r, _)| *f == name && r == read);
                if line.contains(read) && !line.trim_start().starts_with("//") && !allowed {
                    found.push(format!("{name}:{}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "clock or environment read outside the allowed places:\n{}", found.join("\n"));
}
