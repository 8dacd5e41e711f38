//! Usage of every kanade resource against its limits, for `kanade jetstream status` and
//! `GET /api/jetstream/status`.

use async_nats::jetstream::{self, ErrorCode, context::GetStreamErrorKind};

use super::resources::{definitions, fmt_age};

pub use crate::api::service::ResourceStatus;

pub async fn jetstream_status(js: &jetstream::Context) -> Result<Vec<ResourceStatus>, async_nats::Error> {
    let mut out = Vec::new();
    for r in definitions(1) {
        let mut row = ResourceStatus {
            kind: r.kind.as_str().to_owned(),
            name: r.name.to_owned(),
            stream: r.stream_name(),
            present: false,
            messages: 0,
            bytes: 0,
            max_bytes: r.max_bytes,
            max_age: fmt_age(r.max_age),
            max_messages_per_subject: r.max_messages_per_subject,
            consumers: 0,
        };
        match js.get_stream(r.stream_name()).await {
            Ok(stream) => {
                let info = stream.cached_info();
                row.present = true;
                row.messages = info.state.messages;
                row.bytes = info.state.bytes;
                row.max_bytes = info.config.max_bytes;
                row.max_age = fmt_age(info.config.max_age);
                row.max_messages_per_subject = info.config.max_messages_per_subject;
                row.consumers = info.state.consumer_count;
            }
            Err(err) => match err.kind() {
                GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND => {}
                _ => return Err(err.into()),
            },
        }
        out.push(row);
    }
    Ok(out)
}
