//! The sample configs, manifests and schedules at the repository root must stay valid.

use std::path::PathBuf;

use kanade_shared::config::{Environment, OsKind, load_agent, load_backend};
use kanade_shared::manifest::{job_from_yaml, schedule_from_yaml};

fn repo() -> PathBuf {
    kanade_testkit::manifest_dir().join("../..")
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no samples in {dir}");
    files
}

#[test]
fn sample_configs_load_on_every_os() {
    for os in [OsKind::Linux, OsKind::Windows] {
        let env = Environment::fake(os, "PC1234");
        let (agent, _) = load_agent(Some(&repo().join("agent.toml")), &env).unwrap();
        assert_eq!(agent.id.as_str(), "PC1234");
        let (backend, _) = load_backend(Some(&repo().join("backend.toml")), &env).unwrap();
        assert_eq!(backend.nats_url, "nats://127.0.0.1:4222");
    }
    let env = Environment::fake(OsKind::Windows, "PC1234");
    let (agent, _) = load_agent(Some(&repo().join("agent.toml")), &env).unwrap();
    assert_eq!(agent.data_dir, PathBuf::from(r"C:\ProgramData\Kanade\data"));
}

#[test]
fn sample_manifests_and_schedules_validate() {
    for path in yaml_files("jobs") {
        let text = std::fs::read_to_string(&path).unwrap();
        job_from_yaml(&text).unwrap_or_else(|p| panic!("{}:\n{p}", path.display()));
    }
    for path in yaml_files("schedules") {
        let text = std::fs::read_to_string(&path).unwrap();
        schedule_from_yaml(&text).unwrap_or_else(|p| panic!("{}:\n{p}", path.display()));
    }
}
