//! `StartedEvent`: published on `events.started.<pc>.<exec_id>` when a run begins.

use serde::{Deserialize, Serialize};

use super::{Timestamp, schema_v1};
use crate::ids::{ExecId, JobId, PcId, RequestId, ResultId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartedEvent {
    #[serde(default = "schema_v1")]
    pub schema: u32,
    pub result_id: ResultId,
    pub request_id: RequestId,
    pub exec_id: ExecId,
    pub job_id: JobId,
    pub pc_id: PcId,
    pub attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: Timestamp,
}
