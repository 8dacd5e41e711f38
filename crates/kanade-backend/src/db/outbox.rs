//! The backend's own outbox for audit events (`audit_outbox`): an event is stored in the same
//! transaction as the change it describes and removed once AUDIT acknowledged it, so neither a
//! broker outage nor a backend killed in between loses it.

use super::DbError;
use super::sql::{Sql, Value};

/// An audit event on its way to AUDIT: its id (also its `Nats-Msg-Id`), subject and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub id: String,
    pub subject: String,
    pub payload: String,
}

pub async fn put<S: Sql>(s: &mut S, o: &Outgoing, now_ms: i64) -> Result<(), DbError> {
    s.exec(
        "INSERT INTO audit_outbox (id, subject, payload, created_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING",
        vec![o.id.as_str().into(), o.subject.as_str().into(), o.payload.as_str().into(), Value::Int(now_ms)],
    )
    .await?;
    Ok(())
}

/// The oldest events stored before `before_ms` and not refused, in the order they were stored.
pub async fn due<S: Sql>(s: &mut S, before_ms: i64, limit: i64) -> Result<Vec<Outgoing>, DbError> {
    s.rows(
        "SELECT id, subject, payload FROM audit_outbox WHERE created_ms < ?1 AND refused_ms IS NULL
         ORDER BY created_ms, id LIMIT ?2",
        vec![Value::Int(before_ms), Value::Int(limit)],
    )
    .await?
    .iter()
    .map(|r| Ok(Outgoing { id: r.get(0)?, subject: r.get(1)?, payload: r.get(2)? }))
    .collect()
}

pub async fn sent<S: Sql>(s: &mut S, id: &str) -> Result<(), DbError> {
    s.exec("DELETE FROM audit_outbox WHERE id = ?1", vec![id.into()]).await?;
    Ok(())
}

/// The broker will never take this event: it stays for the record and is no longer sent.
pub async fn refused<S: Sql>(s: &mut S, id: &str, now_ms: i64) -> Result<(), DbError> {
    s.exec("UPDATE audit_outbox SET refused_ms = ?2 WHERE id = ?1", vec![id.into(), Value::Int(now_ms)])
        .await?;
    Ok(())
}
