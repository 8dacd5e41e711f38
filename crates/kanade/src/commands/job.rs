//! `kanade job validate`: offline manifest checking, with `script_file:` inlined.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use kanade_shared::manifest::{JobFile, ScriptSource, job_from_yaml};

use crate::cli::Global;
use crate::output;

/// Read a manifest and inline its `script_file`, as every command that sends one must.
pub fn load_manifest(path: &Path) -> anyhow::Result<Result<JobFile, Vec<String>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read manifest {}", path.display()))?;
    let mut file = match job_from_yaml(&text) {
        Ok(file) => file,
        Err(problems) => return Ok(Err(problems.messages())),
    };
    if let ScriptSource::File(rel) = &file.manifest.execute.source {
        let script_path = path.parent().unwrap_or(Path::new(".")).join(rel);
        match std::fs::read_to_string(&script_path) {
            Ok(body) => file.manifest.execute.source = ScriptSource::Inline(body),
            Err(e) => {
                return Ok(Err(vec![format!(
                    "execute.script_file: cannot read {:?} (resolved to {}): {e}",
                    rel,
                    script_path.display()
                )]));
            }
        }
    }
    Ok(Ok(file))
}

pub fn validate(path: &Path, global: &Global) -> anyhow::Result<ExitCode> {
    match load_manifest(path)? {
        Ok(file) => {
            let m = &file.manifest;
            let plan = match &file.plan {
                None => "no plan".to_owned(),
                Some(p) => match &p.rollout {
                    Some(r) => format!("plan with {} wave(s)", r.waves.len()),
                    None => "plan with a target".to_owned(),
                },
            };
            let json = serde_json::json!({ "valid": true, "id": m.id, "version": m.version, "manifest": m });
            output::print(
                global.output,
                &json,
                &["ID", "VERSION", "SHELL", "PLAN", "RESULT"],
                vec![vec![m.id.to_string(), m.version.to_string(), shell_name(m), plan, "valid".into()]],
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            match global.output {
                format @ (crate::cli::Format::Json | crate::cli::Format::Yaml) => {
                    crate::output::emit(format, &serde_json::json!({ "valid": false, "problems": problems }))
                }
                crate::cli::Format::Table | crate::cli::Format::Wide => {
                    eprintln!("{}: {} problem(s)", path.display(), problems.len());
                    for p in &problems {
                        eprintln!("  {p}");
                    }
                }
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn shell_name(m: &kanade_shared::manifest::Manifest) -> String {
    serde_json::to_value(m.execute.shell).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}
