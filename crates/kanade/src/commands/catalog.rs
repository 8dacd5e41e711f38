//! `kanade job create|list|show|delete`, `revoke`, `unrevoke`: the job catalog over HTTP.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use kanade_shared::api::Items;
use kanade_shared::api::executions::Script;
use kanade_shared::api::executions::{JobDetail, JobStatus, JobStored, JobSummary};

use super::done;
use super::job::load_manifest;
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

/// A job file as one JSON body: the manifest with its plan blocks (target, rollout, …) beside it.
pub fn job_body(job: &kanade_shared::manifest::JobFile) -> anyhow::Result<serde_json::Value> {
    let mut body = serde_json::to_value(&job.manifest)?;
    if let Some(plan) = &job.plan
        && let serde_json::Value::Object(p) = serde_json::to_value(plan)?
    {
        body.as_object_mut().expect("a manifest is an object").extend(p);
    }
    Ok(body)
}

pub async fn create(file: &Path, global: &Global) -> anyhow::Result<ExitCode> {
    let job = manifest_json(file)?;
    let api = Api::new(global)?;
    // The file as written (comments, key order, `60s`) when it stands alone; a script_file
    // has to be inlined first, and then the parsed form goes.
    let written = std::fs::read_to_string(file)
        .ok()
        .filter(|t| kanade_shared::manifest::job_from_yaml(t).is_ok_and(|parsed| parsed == job));
    let created: JobStored = match written {
        Some(text) => api.post_yaml("/api/jobs", &text).await?,
        None => api.post_json("/api/jobs", &job_body(&job)?).await?,
    };
    let id = &created.id;
    let mut sentence = format!("job {id} version {} stored", created.version);
    if created.has_plan {
        sentence.push_str(&format!(" with its target (`kanade exec {id}` runs it there)"));
    }
    done(global.output, &created, &sentence);
    Ok(ExitCode::SUCCESS)
}

pub async fn list(global: &Global) -> anyhow::Result<ExitCode> {
    let list: Items<JobSummary> = Api::new(global)?.get("/api/jobs").await?;
    let rows = list
        .items
        .iter()
        .map(|j| {
            let description = j.description.clone().unwrap_or_else(|| "-".into());
            vec![j.id.to_string(), j.version.to_string(), j.shell.clone(), description]
        })
        .collect();
    output::print(global.output, &list, &["ID", "VERSION", "SHELL", "DESCRIPTION"], rows);
    Ok(ExitCode::SUCCESS)
}

pub async fn show(id: &str, global: &Global) -> anyhow::Result<ExitCode> {
    let job: JobDetail = Api::new(global)?.get(&format!("/api/jobs/{id}")).await?;
    match global.output {
        Format::Json | Format::Yaml => crate::output::emit(global.output, &job),
        Format::Table | Format::Wide => {
            // The text as it was submitted (or rebuilt from what is stored).
            println!("{}", job.yaml.trim_end());
            if job.revoked {
                println!("# status: revoked (agents skip it; `kanade unrevoke {id}` lifts it)");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(id: &str, global: &Global) -> anyhow::Result<ExitCode> {
    Api::new(global)?.delete::<()>(&format!("/api/jobs/{id}")).await?;
    done(global.output, &serde_json::json!({ "deleted": id }), &format!("job {id} deleted"));
    Ok(ExitCode::SUCCESS)
}

pub async fn revoke(id: &str, revoked: bool, global: &Global) -> anyhow::Result<ExitCode> {
    let action = if revoked { "revoke" } else { "unrevoke" };
    let v: JobStatus = Api::new(global)?.post(&format!("/api/jobs/{id}/{action}")).await?;
    let what = if revoked { "revoked: agents skip it from now on" } else { "active again" };
    done(global.output, &v, &format!("job {id} {what}"));
    Ok(ExitCode::SUCCESS)
}

/// `kanade script …`: upload, list, show, delete.
pub async fn script(cmd: crate::cli::ScriptCommand, global: &Global) -> anyhow::Result<ExitCode> {
    use crate::cli::ScriptCommand;
    let api = Api::new(global)?;
    match cmd {
        ScriptCommand::Upload { file, name, version } => {
            let body =
                std::fs::read(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let name = match name {
                Some(n) => n,
                None => file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .ok_or_else(|| anyhow::anyhow!("{} has no file name: give --name", file.display()))?,
            };
            let v: Script = api.post_bytes(&format!("/api/scripts/{name}/{version}"), body).await?;
            let sentence = format!(
                "script {} stored, sha256 {}; a job runs it with `script_object: {}`",
                v.key,
                v.sha256.as_deref().unwrap_or("-"),
                v.key
            );
            crate::commands::done(global.output, &v, &sentence);
        }
        ScriptCommand::List => {
            let list: Items<Script> = api.get("/api/scripts").await?;
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            let rows = list
                .items
                .iter()
                .map(|s| vec![s.key.clone(), s.bytes.to_string(), dash(&s.sha256), dash(&s.modified)])
                .collect();
            output::print(global.output, &list, &["SCRIPT", "BYTES", "SHA256", "UPLOADED"], rows);
        }
        ScriptCommand::Show { name, version } => {
            print!("{}", api.get_text(&format!("/api/scripts/{name}/{version}")).await?);
        }
        ScriptCommand::Delete { name, version } => {
            api.delete::<()>(&format!("/api/scripts/{name}/{version}")).await?;
            crate::commands::done(
                global.output,
                &serde_json::json!({ "deleted": format!("{name}/{version}") }),
                &format!("script {name}/{version} deleted"),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
