//! Admitting one command, whichever way it came (live subscription or catch-up from EXEC).

use std::sync::Arc;

use kanade_shared::wire::{self, Command};
use kanade_shared::{signing, subjects};

use super::runner::Via;
use super::{Ctx, now_ms, runner};
use crate::store::{Admission, StoreError};

/// Addressed to me → well-formed → signed by a trusted key → ledger → run. A refused command is
/// never recorded or run; it is answered with a `failed` result saying why. Errors only when
/// the ledger could not be written (the caller must then not ack).
pub(crate) async fn admit(
    ctx: &Arc<Ctx>,
    subject: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
    via: Via,
) -> Result<(), StoreError> {
    let (target, job) = match subjects::parse_command(subject) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring message");
            return Ok(());
        }
    };
    let groups = ctx.groups.read().await.clone();
    if !target.addresses(&ctx.settings.pc, &groups) {
        tracing::debug!(subject, "not addressed to this agent");
        return Ok(());
    }
    let cmd: Command = match wire::decode(payload) {
        Ok(cmd) => cmd,
        Err(e) => {
            tracing::warn!(subject, error = %e, "refusing malformed command");
            return Ok(());
        }
    };
    if cmd.job_id != job {
        tracing::warn!(subject, job_id = %cmd.job_id, "refusing command whose job_id does not match its subject");
        return Ok(());
    }
    if !ctx.settings.trusted_keys.is_empty()
        && let Err(refusal) =
            signing::verify_message(&ctx.settings.trusted_keys, subject, payload, headers, now_ms())
    {
        tracing::warn!(subject, exec_id = %cmd.exec_id, reason = %refusal, "refusing command");
        return runner::report_refusal(ctx, &cmd, subject, payload, &refusal.to_string());
    }
    // One ledger write instead of two when it can start right away.
    let started = runner::start_now(ctx, &cmd, via);
    let (request, fingerprint) = (cmd.request_id.to_string(), cmd.fingerprint());
    let admission = match &started {
        Some(s) => {
            let at = (s.at.unix_timestamp_nanos() / 1_000_000) as i64;
            ctx.store.admit_started(cmd.exec_id, &request, &fingerprint, subject, payload, at)?
        }
        None => ctx.store.admit(cmd.exec_id, &request, &fingerprint, subject, payload, now_ms())?,
    };
    match admission {
        Admission::New => {
            // A run that starts at once logs when it is announced (still going after
            // `ANNOUNCE_AFTER`) and when it finishes: a quick run is one line in the log, not
            // two. One that waits (gates, jitter, a slot, catch-up) says so now.
            if started.is_some() {
                tracing::debug!(exec_id = %cmd.exec_id, job_id = %cmd.job_id, subject, ?via, "command admitted, started");
            } else {
                tracing::info!(exec_id = %cmd.exec_id, job_id = %cmd.job_id, subject, ?via, "command admitted");
            }
            tokio::spawn(runner::execute(ctx.clone(), cmd, via, started));
        }
        Admission::Duplicate => tracing::debug!(exec_id = %cmd.exec_id, subject, "already admitted"),
        Admission::Conflict => tracing::warn!(
            exec_id = %cmd.exec_id,
            subject,
            "exec_id arrived again with different content; refused, not run"
        ),
    }
    Ok(())
}
