//! Fitting what the agent sends to the broker's message size: shared by the runner (a result
//! made now) and the outbox (a result refitted when the broker's limit turned out smaller).

use kanade_shared::wire::{self, ExecResult, ExecStatus};

use super::Ctx;

/// Room kept for the headers (`Nats-Msg-Id`) within the broker's `max_payload`, which counts
/// headers and payload together.
const HEADER_ROOM: usize = 1024;

/// The most payload bytes one outbox message may carry: the connected server's `max_payload`
/// (as the client last heard it; the protocol default before the first connect) less room for
/// headers.
pub(crate) fn payload_budget(ctx: &Ctx) -> usize {
    ctx.client.max_payload().saturating_sub(HEADER_ROOM)
}

/// The result's bytes within `budget`: output cut to fit (see `ExecResult::encode_within`),
/// or, when not even that fits, a bare `failed` result saying so.
pub(crate) fn fit_result(result: &mut ExecResult, budget: usize) -> Vec<u8> {
    if let Some(bytes) = result.encode_within(budget) {
        return bytes;
    }
    result.stdout.clear();
    result.stderr.clear();
    result.status = ExecStatus::Failed;
    result.message =
        Some(format!("the result does not fit the broker's message size limit ({budget} bytes)"));
    // A result holds only known enum values, so encoding cannot fail.
    wire::encode(result).unwrap_or_default()
}
