//! `kanade job create|list|show|delete`, `revoke`, `unrevoke`: the job catalog over HTTP.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use serde_json::Value;

use super::job::load_manifest;
use super::{done, text};
use crate::api::Api;
use crate::cli::{Format, Global};
use crate::output;

/// A manifest file, checked offline and with `script_file` inlined, as JSON to send.
pub fn manifest_json(path: &Path) -> anyhow::Result<kanade_shared::manifest::JobFile> {
    match load_manifest(path)? {
        Ok(file) => Ok(file),
        Err(problems) => {
            bail!("{}: {} problem(s):\n  {}", path.display(), problems.len(), problems.join("\n  "))
        }
    }
}

pub async fn create(file: &Path, global: &Global) -> anyhow::Result<ExitCode> {
    let job = manifest_json(file)?;
    let body = serde_json::to_value(&job.manifest)?;
    let created = Api::new(global)?.post_json("/api/jobs", &body).await?;
    done(
        global.output,
        &created,
        &format!("job {} version {} stored", text(&created["id"]), text(&created["version"])),
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn list(global: &Global) -> anyhow::Result<ExitCode> {
    let list = Api::new(global)?.get("/api/jobs").await?;
    let rows = items(&list)
        .iter()
        .map(|j| vec![text(&j["id"]), text(&j["version"]), text(&j["shell"]), text(&j["description"])])
        .collect();
    output::print(global.output, &list, &["ID", "VERSION", "SHELL", "DESCRIPTION"], rows);
    Ok(ExitCode::SUCCESS)
}

pub async fn show(id: &str, global: &Global) -> anyhow::Result<ExitCode> {
    let job = Api::new(global)?.get(&format!("/api/jobs/{id}")).await?;
    match global.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&job)?),
        Format::Table => {
            let manifest = if job["manifest"].is_null() { &job } else { &job["manifest"] };
            println!("{}", serde_yaml_ng::to_string(manifest)?.trim_end());
            if let Some(status) = job["status"].as_str() {
                println!("# status: {status}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(id: &str, global: &Global) -> anyhow::Result<ExitCode> {
    let v = Api::new(global)?.delete(&format!("/api/jobs/{id}")).await?;
    done(global.output, &v, &format!("job {id} deleted"));
    Ok(ExitCode::SUCCESS)
}

pub async fn revoke(id: &str, revoked: bool, global: &Global) -> anyhow::Result<ExitCode> {
    let action = if revoked { "revoke" } else { "unrevoke" };
    let v = Api::new(global)?.post(&format!("/api/jobs/{id}/{action}")).await?;
    let what = if revoked { "revoked: agents skip it from now on" } else { "active again" };
    done(global.output, &v, &format!("job {id} {what}"));
    Ok(ExitCode::SUCCESS)
}

pub fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}
