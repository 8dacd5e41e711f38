//! What the gates and the executor need from the broker: the job's fleet view (`script_status`,
//! `script_current`) and, for `script_object` commands, the script body. The fleet view is read
//! live and cached in the store, so a run started while the broker is down (an admitted run
//! resumed after a restart) is judged on the last known view and its age.

use std::time::Duration;

use kanade_shared::JobId;
use kanade_shared::wire::Command;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio::io::AsyncReadExt;

use super::{Ctx, now_ms};
use crate::gates::FleetView;

const LIVE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Serialize, Deserialize)]
struct Cached {
    revoked: bool,
    current: Option<String>,
    fetched_at_ms: i64,
}

pub(crate) async fn read(ctx: &Ctx, job: &JobId) -> FleetView {
    let key = format!("view.{job}");
    match tokio::time::timeout(LIVE_TIMEOUT, read_live(ctx, job)).await {
        Ok(Ok((revoked, current))) => {
            let cached = Cached { revoked, current: current.clone(), fetched_at_ms: now_ms() };
            if let Ok(json) = serde_json::to_string(&cached)
                && let Err(e) = ctx.store.set_meta(&key, &json)
            {
                tracing::warn!(error = %e, "cannot cache the fleet view");
            }
            FleetView {
                revoked,
                current_version: current.and_then(|v| v.parse().ok()),
                age: Some(Duration::ZERO),
            }
        }
        live => {
            if let Ok(Err(e)) = live {
                tracing::warn!(job_id = %job, error = %e, "cannot read the fleet view; using the cached one");
            }
            let cached =
                ctx.store.meta(&key).ok().flatten().and_then(|s| serde_json::from_str::<Cached>(&s).ok());
            match cached {
                Some(c) => FleetView {
                    revoked: c.revoked,
                    current_version: c.current.and_then(|v| v.parse().ok()),
                    age: Some(Duration::from_millis(now_ms().saturating_sub(c.fetched_at_ms).max(0) as u64)),
                },
                None => FleetView::default(),
            }
        }
    }
}

async fn read_live(ctx: &Ctx, job: &JobId) -> anyhow::Result<(bool, Option<String>)> {
    let status = ctx.js.get_key_value("script_status").await?.get(job.as_str()).await?;
    let current = ctx.js.get_key_value("script_current").await?.get(job.as_str()).await?;
    let revoked = status.is_some_and(|v| v.as_ref().eq_ignore_ascii_case(b"REVOKED"));
    let current = current.map(|v| String::from_utf8_lossy(&v).trim().to_owned()).filter(|v| !v.is_empty());
    Ok((revoked, current))
}

/// The script body: inline, or fetched from the `scripts` object store and checked against
/// its sha256.
pub(crate) async fn script(ctx: &Ctx, cmd: &Command) -> Result<String, String> {
    if let Some(script) = &cmd.script {
        return Ok(script.clone());
    }
    let Some(key) = &cmd.script_object else {
        return Err("command has neither script nor script_object".into());
    };
    let Some(want) = &cmd.script_sha256 else {
        return Err(format!(
            "script_object {key} comes without script_sha256; refusing to run an unverified script"
        ));
    };
    let store = ctx
        .js
        .get_object_store("scripts")
        .await
        .map_err(|e| format!("cannot open the scripts store: {e}"))?;
    let mut object = store.get(key).await.map_err(|e| format!("cannot fetch script {key}: {e}"))?;
    let mut body = Vec::new();
    object.read_to_end(&mut body).await.map_err(|e| format!("cannot read script {key}: {e}"))?;
    let got: String = sha2::Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect();
    if !got.eq_ignore_ascii_case(want) {
        return Err(format!("script {key} has sha256 {got}, command expects {want}; not run"));
    }
    String::from_utf8(body).map_err(|_| format!("script {key} is not UTF-8 text"))
}
