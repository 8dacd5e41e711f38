//! `AuditEvent`: one record on `audit.<action>`, projected into `audit_log`.

use serde::{Deserialize, Serialize};

use super::{Timestamp, schema_v1};
use crate::ids::AuditId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    #[serde(default = "schema_v1")]
    pub schema: u32,
    pub id: AuditId,
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    /// Who did it: a user name, `token:<name>`, or `scheduler`.
    pub actor: String,
    /// Dotted verb such as `exec.create` or `auth.login_failed`; also the subject suffix.
    pub action: String,
    /// What it was done to (job id, exec id, pc id, user name), if anything.
    #[serde(default)]
    pub target: Option<String>,
    /// Source address of the HTTP caller, when there was one.
    #[serde(default)]
    pub source: Option<String>,
    /// Which client asked: `cli`, `dashboard` or `api` (an HTTP caller, by the
    /// `X-Kanade-Source` our own clients send), `scheduler` or `backend` (its own work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default)]
    pub detail: serde_json::Value,
}
