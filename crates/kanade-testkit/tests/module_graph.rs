//! No import circles between modules (STYLE: when two modules need each other, the shared piece
//! gets its own module). For every crate of the workspace this reads the sources and draws an
//! edge `a → b` wherever a file of module `a` names `crate::b…` or a `super::…` path that lands
//! in `b` (braced imports included), between top-level modules and between sibling modules one
//! level down; then it fails naming every cycle. Test code may reach anywhere and is left out:
//! `tests.rs`, `*_tests.rs`, and a file's trailing `#[cfg(test)]` module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: [&str; 5] = ["kanade-shared", "kanade-agent", "kanade-backend", "kanade", "kanade-sim"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `[a, b]`; `src/a/mod.rs` → `[a]`; `src/lib.rs` → `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// The paths a file names after `crate::` or `super::`, as segments; `{a, b::c}` groups give
/// one path per item (their first segments are what matters here).
fn named_paths(text: &str) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    for keyword in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(found) = text[from..].find(keyword) {
            let at = from + found;
            let before = text[..at].chars().last();
            from = at + keyword.len();
            let rest = &text[from..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue; // `kanade_crate::`, and the second `super::` of `super::super::`
            }
            let is_super = keyword == "super::";
            let mut supers = vec![];
            let mut tail = rest;
            // `super::super::x`
            while is_super && tail.starts_with("super::") {
                supers.push("super".to_owned());
                tail = &tail["super::".len()..];
            }
            let items: Vec<&str> = if let Some(group) = tail.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end].split(',').collect()
            } else {
                vec![tail]
            };
            for item in items {
                let path: Vec<String> = item
                    .trim()
                    .split("::")
                    .map(|s| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>())
                    .take_while(|s| !s.is_empty())
                    .collect();
                if !path.is_empty() {
                    out.push((is_super, supers.iter().cloned().chain(path).collect()));
                }
            }
        }
    }
    out
}

fn strip_tests(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    }
}

/// Cycles in `edges` (each as the modules on it), by depth-first search.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut found = BTreeSet::new();
    fn walk(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut BTreeSet<Vec<String>>,
    ) {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            // One spelling per cycle: start at its smallest module.
            let min = cycle.iter().enumerate().min_by_key(|(_, m)| (*m).clone()).map(|(i, _)| i).unwrap();
            cycle.rotate_left(min);
            found.insert(cycle);
            return;
        }
        if done.contains(node) {
            return;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            walk(next, edges, path, done, found);
        }
        path.pop();
        done.insert(node.to_owned());
    }
    for start in edges.keys() {
        walk(start, edges, &mut Vec::new(), &mut BTreeSet::new(), &mut found);
    }
    found.into_iter().collect()
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = kanade_testkit::manifest_dir().join("..");
    let mut problems = Vec::new();
    for krate in CRATES {
        let src = root.join(krate).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
        let known = |path: &[String], len: usize| path.len() >= len && modules.contains(&path[..len]);
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in &files {
            let name = file.file_name().unwrap().to_string_lossy();
            if name == "tests.rs" || name.ends_with("_tests.rs") {
                continue;
            }
            let here = module_of(&src, file);
            let text = std::fs::read_to_string(file).unwrap();
            for (is_super, path) in named_paths(strip_tests(&text)) {
                let mut target = if is_super {
                    let mut base = here.clone();
                    // `super` is the parent of the file's module (for a `mod.rs`, of its directory's).
                    base.pop();
                    let mut path = path.as_slice();
                    while path.first().is_some_and(|s| s == "super") {
                        base.pop();
                        path = &path[1..];
                    }
                    base.extend(path.iter().cloned());
                    base
                } else {
                    path
                };
                target.truncate(2);
                // Top level: a → b between different top-level modules.
                if !here.is_empty() && known(&target, 1) && here[0] != target[0] {
                    edges.entry(here[0].clone()).or_default().insert(target[0].clone());
                }
                // One level down: siblings within one top-level module.
                if here.len() >= 2 && known(&target, 2) && here[0] == target[0] && here[1] != target[1] {
                    let (a, b) =
                        (format!("{}::{}", here[0], here[1]), format!("{}::{}", target[0], target[1]));
                    edges.entry(a).or_default().insert(b);
                }
            }
        }
        for cycle in cycles(&edges) {
            problems.push(format!("{krate}: {} → {}", cycle.join(" → "), cycle[0]));
        }
    }
    assert!(problems.is_empty(), "import circles between modules:\n{}", problems.join("\n"));
}

#[test]
fn the_reader_sees_braced_and_relative_imports() {
    let paths = named_paths(
        "use super::{Ctx, admit::admit};\nuse crate::db::{self, Db};\nlet x = super::super::y::z();",
    );
    let shown: Vec<String> =
        paths.iter().map(|(s, p)| format!("{}{}", if *s { "super:" } else { "" }, p.join("::"))).collect();
    assert_eq!(shown, ["db", "super:Ctx", "super:admit::admit", "super:super::y::z"]);
}
