//! The job catalog (KV `jobs`): manifests stored as JSON and validated again when read back.

use async_nats::jetstream;
use kanade_shared::JobId;
use kanade_shared::manifest::{self, Manifest};

use super::ExecError;

fn broker(e: impl std::fmt::Display) -> ExecError {
    ExecError::Broker(e.to_string())
}

pub async fn load(js: &jetstream::Context, job: &JobId) -> Result<Manifest, ExecError> {
    let kv = js.get_key_value("jobs").await.map_err(broker)?;
    let stored = kv.get(job.as_str()).await.map_err(broker)?.ok_or_else(|| {
        ExecError::NotFound(format!(
            "job {job} is not in the catalog (kanade job create, or POST /api/deploy)"
        ))
    })?;
    manifest::job_from_json(&stored).map(|f| f.manifest).map_err(|p| {
        tracing::error!(job_id = %job, problems = %p, "stored job does not validate");
        ExecError::Invalid(format!("stored job {job} does not validate: {p}"))
    })
}

pub async fn store(js: &jetstream::Context, m: &Manifest) -> Result<(), ExecError> {
    let kv = js.get_key_value("jobs").await.map_err(broker)?;
    let json = serde_json::to_vec(m).map_err(|e| ExecError::Invalid(e.to_string()))?;
    kv.put(m.id.as_str(), json.into()).await.map_err(broker)?;
    Ok(())
}
