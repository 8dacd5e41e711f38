//! End-user notifications (SPEC §12): operators send and withdraw them; the API reports, per PC
//! addressed, who acknowledged and when, or that it is outstanding. A send is audited before it
//! is published (a notification the audit trail does not show never reaches a PC), written to
//! the store so it reads back at once, then published on every subject its target names.

use super::Json;
use super::Path;
use super::Query;
use axum::extract::State;
use axum::http::StatusCode;
use kanade_shared::wire::notification::NotificationsQuery;
use kanade_shared::wire::{
    self, AckBy, NotificationDetail, NotificationMessage, NotificationPc, NotificationSent,
    NotificationSummary, Notifications, SendNotification, Timestamp, Withdrawal,
};
use kanade_shared::{NotificationId, subjects};
use serde_json::json;

use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::db::projection::notifications::{self as store, Ack, StoredNotification};

pub async fn send(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<kanade_shared::api::executions::LaunchQuery>,
    Json(request): Json<SendNotification>,
) -> Result<(StatusCode, Json<NotificationSent>), ApiError> {
    let id = NotificationId::new();
    let notification = request.validate(id, Timestamp::now_utc(), &caller.name).map_err(ApiError::invalid)?;
    // A typo must not make a notification nobody can ever receive (as with exec targets).
    if !q.allows_unknown() && !notification.target.pcs.is_empty() {
        let known: std::collections::BTreeSet<String> =
            state.db.known_agents().await?.into_iter().map(|a| a.pc.to_string()).collect();
        let unknown: Vec<String> =
            notification.target.pcs.iter().map(|p| p.to_string()).filter(|p| !known.contains(p)).collect();
        if !unknown.is_empty() {
            return Err(ApiError::invalid(vec![format!(
                "target.pcs: never seen by this backend (no heartbeat yet): {}. Check the names with `kanade agents list`; to notify a PC that is not installed yet, pass --allow-unknown (API: ?allow_unknown=true)",
                unknown.join(", ")
            )]));
        }
    }
    let subjects = subjects::notification_subjects(&notification.target);
    let detail = json!({
        "title": notification.title,
        "priority": notification.priority.as_str(),
        "target": notification.target,
        "expires_at": crate::db::ts_ms(notification.expires_at),
    });
    super::audit_as(&state, &caller, "notify.send", Some(id.to_string()), detail).await?;
    state.db.record_notification(notification.clone()).await?;
    publish(&state, &NotificationMessage::Send(notification), "send", &subjects).await?;
    state.bus.notification(id);
    Ok((StatusCode::CREATED, Json(NotificationSent { id, subjects })))
}

/// Publish `message` on every subject, each under its own `Nats-Msg-Id`.
async fn publish(
    state: &AppState,
    message: &NotificationMessage,
    op: &str,
    subjects: &[String],
) -> Result<(), ApiError> {
    let payload: bytes::Bytes =
        wire::encode(message).map_err(|e| ApiError::bad_request(e.to_string()))?.into();
    let id = match message {
        NotificationMessage::Send(n) => n.id,
        NotificationMessage::Withdraw(w) => w.id,
        NotificationMessage::Unknown => return Ok(()),
    };
    let messages = subjects
        .iter()
        .map(|s| (format!("notification.{id}.{op}.{s}"), s.clone(), payload.clone()))
        .collect();
    crate::pipeline::publish_with_ids(&state.js, messages).await.map_err(|e| {
        ApiError::unavailable(
            "broker",
            format!(
                "notification {id} is recorded but its {op} did not reach every subject it names ({e}); PCs on the missing ones do not have it: once the broker is back, withdraw it (kanade notify withdraw {id}) and send it again"
            ),
        )
    })?;
    Ok(())
}

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<NotificationsQuery>,
) -> Result<Json<Notifications>, ApiError> {
    let limit = match q.limit {
        None => 100,
        Some(n) if (1..=500).contains(&n) => n,
        Some(n) => return Err(ApiError::invalid(vec![format!("limit: {n} is not between 1 and 500")])),
    };
    let stored = state.db.notifications(limit).await?;
    let acks = state.db.notification_acks(stored.iter().map(|n| n.id).collect()).await?;
    let agents = agents(&state).await?;
    let now = crate::db::now_ms();
    let notifications = stored
        .iter()
        .map(|n| summary(n, &agents, acks.get(&n.id).map_or(&[][..], Vec::as_slice), now))
        .collect();
    Ok(Json(Notifications { notifications }))
}

pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NotificationDetail>, ApiError> {
    let n = find(&state, &id).await?;
    let acks = state.db.notification_acks(vec![n.id]).await?.remove(&n.id).unwrap_or_default();
    let agents = agents(&state).await?;
    let summary = summary(&n, &agents, &acks, crate::db::now_ms());
    let pcs = store::recipients(&n.target, &agents, &acks)
        .into_iter()
        .map(|pc| {
            let by: Vec<AckBy> = acks
                .iter()
                .filter(|(p, _, _)| *p == pc)
                .map(|(_, user, at)| AckBy { user: user.clone(), at: *at })
                .collect();
            let status = if by.is_empty() { "outstanding" } else { "acked" };
            NotificationPc { pc_id: pc, status: status.into(), acks: by }
        })
        .collect();
    Ok(Json(NotificationDetail { summary, body: n.body, pcs }))
}

/// Withdraw it. Again on one already withdrawn publishes the withdrawal again (a broker that
/// missed it the first time gets it now) and changes nothing else.
pub async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<NotificationSummary>, ApiError> {
    let n = find(&state, &id).await?;
    if n.withdrawn.is_none() {
        super::audit_as(
            &state,
            &caller,
            "notify.withdraw",
            Some(n.id.to_string()),
            json!({ "title": n.title }),
        )
        .await?;
        state.db.withdraw_notification(n.id, crate::db::now_ms(), caller.name.clone()).await?;
    }
    // As stored: the first withdrawal's time and author, whoever got there first.
    let n = find(&state, &id).await?;
    let (at_ms, by) = n.withdrawn.clone().unwrap_or_default();
    let at = Timestamp::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
        .unwrap_or_else(|_| Timestamp::now_utc());
    let message = NotificationMessage::Withdraw(Withdrawal { schema: wire::SCHEMA, id: n.id, at, by });
    publish(&state, &message, "withdraw", &subjects::notification_subjects(&n.target)).await?;
    state.bus.notification(n.id);
    let acks = state.db.notification_acks(vec![n.id]).await?.remove(&n.id).unwrap_or_default();
    Ok(Json(summary(&n, &agents(&state).await?, &acks, crate::db::now_ms())))
}

async fn find(state: &AppState, id: &str) -> Result<StoredNotification, ApiError> {
    let parsed: NotificationId = id
        .parse()
        .map_err(|e| ApiError::invalid(vec![format!("id: {e} (kanade notify list shows the ids)")]))?;
    state.db.notification(parsed).await?.ok_or_else(|| {
        ApiError::not_found(format!("no notification {parsed} (kanade notify list shows the ids)"))
    })
}

/// Known agents and their current groups.
async fn agents(
    state: &AppState,
) -> Result<Vec<(kanade_shared::PcId, Vec<kanade_shared::GroupName>)>, ApiError> {
    Ok(state.db.known_agents().await?.into_iter().map(|a| (a.pc, a.groups)).collect())
}

fn summary(
    n: &StoredNotification,
    agents: &[(kanade_shared::PcId, Vec<kanade_shared::GroupName>)],
    acks: &[Ack],
    now_ms: i64,
) -> NotificationSummary {
    let recipients = store::recipients(&n.target, agents, acks);
    let acked: std::collections::BTreeSet<&String> = acks.iter().map(|(pc, _, _)| pc).collect();
    NotificationSummary {
        id: n.id,
        title: n.title.clone(),
        priority: n.priority.clone(),
        target: n.target.clone(),
        created_at: n.created_ms,
        expires_at: n.expires_ms,
        created_by: n.created_by.clone(),
        state: store::state(n, now_ms).into(),
        withdrawn_at: n.withdrawn.as_ref().map(|(at, _)| *at),
        withdrawn_by: n.withdrawn.as_ref().map(|(_, by)| by.clone()),
        recipients: recipients.len() as i64,
        acked: acked.len() as i64,
    }
}
