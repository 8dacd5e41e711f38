//! The job catalog (KV `jobs`): each entry is the job, the plan its file carried (what `exec`
//! runs when it names no target), and the text as the operator wrote it; validated again when
//! read back. Entries written before plans and text were kept (a bare manifest) still load.

use kanade_shared::JobId;
use kanade_shared::manifest::{self, JobFile, Manifest, Plan, Problems};
use serde::{Deserialize, Serialize};

use super::ExecError;
use crate::buckets::Buckets;

/// One catalog entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub manifest: Manifest,
    pub plan: Option<Plan>,
    /// The manifest as submitted (YAML or JSON), comments and key order kept.
    pub source: Option<String>,
}

impl Entry {
    /// A stored job never overrides a freeze: that is one run's say.
    pub fn new(file: JobFile, source: Option<String>) -> Self {
        let plan = file.plan.map(|p| kanade_shared::manifest::Plan { override_freeze: false, ..p });
        Self { manifest: file.manifest, plan, source }
    }
}

/// How an entry is kept: the parsed parts as JSON (validated again on read) and the text.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    manifest: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plan: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
}

/// Read an entry back: the current shape, or a bare manifest (with any plan blocks in it).
pub fn parse(bytes: &[u8]) -> Result<Entry, Problems> {
    match serde_json::from_slice::<Stored>(bytes) {
        Ok(s) => {
            let file = manifest::job_from_json(s.manifest.to_string().as_bytes())?;
            let plan = match s.plan {
                Some(p) => Some(manifest::plan_from_json(p.to_string().as_bytes())?),
                None => file.plan,
            };
            Ok(Entry { manifest: file.manifest, plan, source: s.source })
        }
        Err(_) => manifest::job_from_json(bytes).map(|file| Entry::new(file, None)),
    }
}

fn encode(e: &Entry) -> Result<Vec<u8>, serde_json::Error> {
    let stored = Stored {
        manifest: serde_json::to_value(&e.manifest)?,
        plan: e.plan.as_ref().map(serde_json::to_value).transpose()?,
        source: e.source.clone(),
    };
    serde_json::to_vec(&stored)
}

fn broker(e: impl Into<super::BrokerError>) -> ExecError {
    ExecError::broker("the job catalog (KV jobs)", e)
}

pub async fn load_entry(buckets: &Buckets, job: &JobId) -> Result<Entry, ExecError> {
    let kv = buckets.get("jobs").await.map_err(broker)?;
    let stored = kv.get(job.as_str()).await.map_err(broker)?.ok_or_else(|| {
        ExecError::NotFound(format!(
            "job {job} is not in the catalog (kanade job create, or POST /api/deploy)"
        ))
    })?;
    parse(&stored).map_err(|p| {
        tracing::error!(job_id = %job, problems = %p, "stored job does not validate");
        ExecError::Invalid(format!("stored job {job} does not validate: {p}"))
    })
}

pub async fn load(buckets: &Buckets, job: &JobId) -> Result<Manifest, ExecError> {
    load_entry(buckets, job).await.map(|e| e.manifest)
}

/// Room left for the KV put's headers and subject.
const PUT_OVERHEAD: usize = 1024;

/// Whether a stored job of `len` bytes fits the broker's `max_payload`; the refusal names the
/// job, both sizes and what to do. (Sent anyway, the put would fail as "broker unavailable".)
pub fn fits(job: &str, len: usize, max_payload: usize) -> Result<(), String> {
    let limit = max_payload.saturating_sub(PUT_OVERHEAD);
    if len <= limit {
        return Ok(());
    }
    Err(format!(
        "job {job} is {len} bytes as stored (its manifest, plus its YAML text when it came as \
         YAML), over the {limit} bytes the broker takes (max_payload {max_payload}): move the \
         script into the object store (execute.script_object) or raise the broker's max_payload"
    ))
}

pub async fn store(buckets: &Buckets, e: &Entry) -> Result<(), ExecError> {
    let kv = buckets.get("jobs").await.map_err(broker)?;
    let json = encode(e).map_err(|e| ExecError::Invalid(e.to_string()))?;
    fits(e.manifest.id.as_str(), json.len(), buckets.max_payload()).map_err(ExecError::Invalid)?;
    kv.put(e.manifest.id.as_str(), json.into()).await.map_err(broker)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_fits_when_it_leaves_room_for_the_put() {
        let max = 1_048_576;
        assert_eq!(fits("a", max - PUT_OVERHEAD, max), Ok(()));
        let refused = fits("big", max - PUT_OVERHEAD + 1, max).unwrap_err();
        assert!(refused.starts_with("job big is 1047553 bytes as stored"), "{refused}");
        assert!(refused.contains("max_payload 1048576") && refused.contains("script_object"), "{refused}");
    }

    #[test]
    fn entries_keep_their_plan_and_text_and_bare_manifests_still_load() {
        let yaml = "# nightly\nid: hello\nversion: '1'\nexecute: { shell: sh, script: 'echo hi', timeout: 60s }\ntarget: { groups: [lab] }\n";
        let entry = Entry::new(manifest::job_from_yaml(yaml).unwrap(), Some(yaml.to_owned()));
        let back = parse(&encode(&entry).unwrap()).unwrap();
        assert_eq!(back.manifest, entry.manifest);
        assert_eq!(back.plan, entry.plan);
        assert!(back.plan.is_some());
        assert_eq!(back.source.as_deref(), Some(yaml));

        // A bare manifest, as entries were stored before.
        let bare = serde_json::to_vec(&entry.manifest).unwrap();
        let old = parse(&bare).unwrap();
        assert_eq!((old.manifest, old.plan, old.source), (entry.manifest.clone(), None, None));

        // A stored entry that no longer validates says why.
        let broken = br#"{"manifest": {"id": "bad id"}}"#;
        assert!(parse(broken).unwrap_err().to_string().contains("id"));
    }
}
