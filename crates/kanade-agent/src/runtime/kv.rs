//! One key of a KV bucket, read with a direct get on the bucket's stream. A `kv::Store` handle
//! would first ask the broker's JetStream API for the stream's info, and that API serves one
//! request at a time: 10,000 agents looking up two buckets for one broadcast queue 20,000 calls
//! behind each other. A direct get is answered by the stream itself. Only a bucket that does not
//! answer direct gets (created without them by hand) is read through a handle.

use async_nats::StatusCode;
use async_nats::jetstream::stream::DirectGetErrorKind;
use bytes::Bytes;

use super::Ctx;

/// Headers that mark a KV entry as a delete or purge rather than a value.
const OPERATION: &str = "KV-Operation";
const MARKER_REASON: &str = "Nats-Marker-Reason";

/// The current value of `key` in `bucket`; `None` when absent, deleted or purged.
pub(crate) async fn get(ctx: &Ctx, bucket: &str, key: &str) -> anyhow::Result<Option<Bytes>> {
    let stream = ctx.js.get_stream_no_info(format!("KV_{bucket}")).await?;
    match stream.direct_get_last_for_subject(format!("$KV.{bucket}.{key}")).await {
        Ok(msg) => {
            let removed = msg.headers.get(MARKER_REASON).is_some()
                || msg.headers.get(OPERATION).is_some_and(|op| op.as_str() != "PUT");
            Ok((!removed).then_some(msg.payload))
        }
        Err(e) => match e.kind() {
            DirectGetErrorKind::NotFound => Ok(None),
            DirectGetErrorKind::ErrorResponse(StatusCode::NO_RESPONDERS, _) => {
                let store = ctx.js.get_key_value(bucket).await?;
                Ok(store.get(key).await?)
            }
            _ => Err(anyhow::anyhow!("reading {key} from bucket {bucket}: {e}")),
        },
    }
}
