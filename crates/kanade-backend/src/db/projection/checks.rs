//! Compliance checks (SPEC §12): each newly final result of an execution whose job has a
//! `check:` sets `check_status(check, pc)`. Pure evaluation first, then one upsert per result
//! that never lets an older run replace a newer one, and a `check.changed` event on every move
//! into warn or fail (its id is the result's, so a redelivery adds nothing).

use kanade_shared::manifest::outputs::CheckSpec;
use kanade_shared::wire::{ExecResult, ExecStatus};
use serde_json::{Value as Json, json};

use super::super::sql::{Sql, opt_row, vals};
use super::super::{DbError, ts_ms};
use super::obs::{AHEAD_MS, ObsRow};

pub const PASS: &str = "pass";
pub const WARN: &str = "warn";
pub const FAIL: &str = "fail";
pub const UNKNOWN: &str = "unknown";
pub const STATUSES: [&str; 4] = [PASS, WARN, FAIL, UNKNOWN];
/// The longest detail kept.
pub const MAX_DETAIL: usize = 1000;

/// The value at a dotted path of `v`.
pub fn at_path<'a>(v: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('.').try_fold(v, |v, seg| v.get(seg))
}

fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn cut(s: String) -> String {
    // Postgres text cannot hold NUL.
    let mut s = if s.contains('\0') { s.replace('\0', "") } else { s };
    if s.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Pure: what a result says about its PC for `spec`: `(status, detail)`, or `None` for a
/// result that measured nothing (skipped, or a refusal). Non-zero exit, bad JSON, a crash or a
/// status other than pass/warn/fail is `unknown`, with why in the detail.
pub fn outcome(spec: &CheckSpec, r: &ExecResult) -> Option<(&'static str, Option<String>)> {
    let unknown = |why: String| Some((UNKNOWN, Some(cut(why))));
    match r.status {
        ExecStatus::Skipped => return None,
        ExecStatus::Succeeded | ExecStatus::Failed => {}
        other => return unknown(format!("the run ended {}", other.as_str())),
    }
    if let Some(code) = r.exit_code.filter(|c| *c != 0) {
        return unknown(format!("the check exited {code}"));
    }
    let Ok(doc) = serde_json::from_str::<Json>(&r.stdout) else {
        let why = if r.truncated { "its output was cut, so not JSON" } else { "its output is not JSON" };
        return unknown(why.into());
    };
    let detail = spec.detail_field.as_deref().and_then(|f| at_path(&doc, f)).map(|d| cut(text(d)));
    match at_path(&doc, &spec.status_field) {
        None => unknown(format!("no {} in its output", spec.status_field)),
        Some(v) => match text(v).to_ascii_lowercase().as_str() {
            PASS => Some((PASS, detail)),
            WARN => Some((WARN, detail)),
            FAIL => Some((FAIL, detail)),
            other => unknown(format!("{}: {other:?} is not pass, warn or fail", spec.status_field)),
        },
    }
}

/// Apply one result (already known to be newly final) of a job with `spec`, received at
/// `received_ms`: its time is clamped against that, so applying it again gives the same answer.
pub async fn apply<S: Sql>(
    s: &mut S,
    spec: &CheckSpec,
    r: &ExecResult,
    received_ms: i64,
) -> Result<(), DbError> {
    let Some((status, detail)) = outcome(spec, r) else { return Ok(()) };
    let at = ts_ms(r.finished_at).min(received_ms + AHEAD_MS);
    let before = opt_row(
        s,
        "SELECT status, updated_ms FROM check_status WHERE check_name = ?1 AND pc_id = ?2",
        vals![spec.name.as_str(), r.pc_id.as_str()],
    )
    .await?;
    let before: Option<(String, i64)> = match before {
        Some(row) => Some((row.get(0)?, row.get(1)?)),
        None => None,
    };
    if before.as_ref().is_some_and(|(_, updated)| *updated > at) {
        return Ok(()); // a newer run already spoke
    }
    s.exec(
        "INSERT INTO check_status (check_name, pc_id, status, detail, since_ms, updated_ms, result_id, exec_id, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8)
         ON CONFLICT(check_name, pc_id) DO UPDATE SET
            since_ms = CASE WHEN check_status.status = excluded.status THEN check_status.since_ms ELSE excluded.since_ms END,
            status = excluded.status, detail = excluded.detail, updated_ms = excluded.updated_ms,
            result_id = excluded.result_id, exec_id = excluded.exec_id, received_ms = excluded.received_ms
         WHERE excluded.updated_ms >= check_status.updated_ms",
        vals![
            spec.name.as_str(),
            r.pc_id.as_str(),
            status,
            detail.clone(),
            at,
            r.result_id.to_string(),
            r.exec_id.to_string(),
            received_ms
        ],
    )
    .await?;
    let from = before.map(|(s, _)| s);
    // With no status before, a move into warn/fail already on the timeline (statuses rebuilt
    // after a wipe from the results still kept) is not recorded again.
    let recorded = from.is_none()
        && opt_row(
            s,
            "SELECT 1 FROM obs_events WHERE pc_id = ?1 AND kind = 'check.changed'
               AND substr(event_id, 1, length(CAST(?2 AS TEXT))) = CAST(?2 AS TEXT)",
            vals![r.pc_id.as_str(), format!("check.changed.{}.", spec.name)],
        )
        .await?
        .is_some();
    if (status == WARN || status == FAIL) && from.as_deref() != Some(status) && !recorded {
        let row = ObsRow {
            pc_id: r.pc_id.to_string(),
            event_id: format!("check.changed.{}.{}", spec.name, r.result_id),
            kind: "check.changed".into(),
            at_ms: at,
            exec_id: Some(r.exec_id.to_string()),
            data: json!({ "check": spec.name, "from": from, "to": status, "detail": detail }).to_string(),
        };
        super::obs::insert(s, &[row], received_ms).await?;
    }
    Ok(())
}

/// Forget every PC's status for check `name` (a check renamed or retired); how many rows went.
/// The check's next result sets it again.
pub async fn forget<S: Sql>(s: &mut S, name: &str) -> Result<u64, DbError> {
    super::one_writer(s).await?;
    s.exec("DELETE FROM check_status WHERE check_name = ?1", vals![name]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: ExecStatus, exit: Option<i32>, stdout: &str) -> ExecResult {
        let mut r: ExecResult = serde_json::from_value(json!({
            "result_id": "0190f5c2-6c1f-7000-8000-000000000001", "request_id": "0190f5c2-6c1f-7000-8000-000000000002",
            "exec_id": "0190f5c2-6c1e-7a4b-9d2e-1f2a3b4c5d6e", "job_id": "j", "version": "1", "pc_id": "PC-1",
            "status": "succeeded", "finished_at": "2026-12-02T12:00:00Z"
        }))
        .unwrap();
        r.status = status;
        r.exit_code = exit;
        r.stdout = stdout.into();
        r
    }

    #[test]
    fn a_result_says_pass_warn_fail_or_why_it_is_unknown() {
        let spec = CheckSpec {
            name: "disk".into(),
            status_field: "check.status".into(),
            detail_field: Some("why".into()),
        };
        let ok = |out: &str| result(ExecStatus::Succeeded, Some(0), out);
        type Want<'a> = Option<(&'a str, Option<&'a str>)>;
        let cases: [(ExecResult, Want); 8] = [
            (ok(r#"{"check":{"status":"PASS"},"why":"80% free"}"#), Some((PASS, Some("80% free")))),
            (ok(r#"{"check":{"status":"fail"},"why":{"free":1}}"#), Some((FAIL, Some(r#"{"free":1}"#)))),
            (ok(r#"{"check":{"status":"warn"}}"#), Some((WARN, None))),
            (
                ok(r#"{"check":{"status":"meh"}}"#),
                Some((UNKNOWN, Some(r#"check.status: "meh" is not pass, warn or fail"#))),
            ),
            (ok("not json"), Some((UNKNOWN, Some("its output is not JSON")))),
            (ok(r#"{"other":1}"#), Some((UNKNOWN, Some("no check.status in its output")))),
            (
                result(ExecStatus::Failed, Some(3), r#"{"check":{"status":"pass"}}"#),
                Some((UNKNOWN, Some("the check exited 3"))),
            ),
            (result(ExecStatus::Skipped, Some(124), ""), None),
        ];
        for (r, want) in cases {
            let got = outcome(&spec, &r);
            assert_eq!(got.as_ref().map(|(s, d)| (*s, d.as_deref())), want, "{}", r.stdout);
        }
        let crashed = outcome(&spec, &result(ExecStatus::Unknown, None, "")).unwrap();
        assert_eq!(crashed, (UNKNOWN, Some("the run ended unknown".into())));
    }
}
