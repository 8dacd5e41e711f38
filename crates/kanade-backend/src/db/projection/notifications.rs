//! `notifications` and `notification_acks` (SPEC §12): what operators sent (from stream
//! NOTIFICATIONS, and written directly by the API that sent it, so it reads back at once) and
//! who acknowledged it where (from EVENTS). Every write is keyed and does nothing the second
//! time, so redelivery, replays and the API's own write agree.

use std::collections::{BTreeMap, BTreeSet};

use kanade_shared::wire::{Notification, NotificationMessage, NotificationTarget, NotifyAck};
use kanade_shared::{GroupName, NotificationId, PcId};

use super::super::sql::{Sql, Value, vals};
use super::super::{DbError, ts_ms};

/// A notification as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNotification {
    pub id: NotificationId,
    pub title: String,
    pub body: String,
    pub priority: String,
    pub target: NotificationTarget,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub created_by: String,
    pub withdrawn: Option<(i64, String)>,
}

/// One acknowledgement: (pc, user, when on the agent's clock).
pub type Ack = (String, String, i64);

pub async fn apply_messages<S: Sql>(s: &mut S, items: &[NotificationMessage]) -> Result<(), DbError> {
    for m in items {
        match m {
            NotificationMessage::Send(n) => insert(s, n).await?,
            NotificationMessage::Withdraw(w) => {
                withdraw(s, w.id, ts_ms(w.at), &w.by).await?;
            }
            NotificationMessage::Unknown => {}
        }
    }
    Ok(())
}

pub async fn insert<S: Sql>(s: &mut S, n: &Notification) -> Result<(), DbError> {
    let target = serde_json::to_string(&n.target).map_err(|e| DbError::Decode(e.to_string()))?;
    s.exec(
        "INSERT INTO notifications (id, title, body, priority, target_json, created_ms, expires_ms, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
        vals![
            n.id.to_string(),
            n.title.as_str(),
            n.body.as_str(),
            n.priority.as_str(),
            target,
            ts_ms(n.created_at),
            ts_ms(n.expires_at),
            n.created_by.as_str()
        ],
    )
    .await?;
    Ok(())
}

/// Mark it withdrawn (the first withdrawal counts); `false` when it already was, or is unknown.
pub async fn withdraw<S: Sql>(s: &mut S, id: NotificationId, at_ms: i64, by: &str) -> Result<bool, DbError> {
    let n = s
        .exec(
            "UPDATE notifications SET withdrawn_ms = ?2, withdrawn_by = ?3 WHERE id = ?1 AND withdrawn_ms IS NULL",
            vals![id.to_string(), at_ms, by],
        )
        .await?;
    Ok(n == 1)
}

pub async fn apply_acks<S: Sql>(s: &mut S, items: &[NotifyAck], now_ms: i64) -> Result<(), DbError> {
    let rows: Vec<Vec<Value>> = items
        .iter()
        .map(|a| {
            // An agent's clock ahead of ours says no more than "now".
            let at = ts_ms(a.at).min(now_ms);
            vals![a.notification_id.to_string(), a.pc_id.to_string(), a.user.as_str(), at, now_ms]
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    s.exec_many(
        "INSERT INTO notification_acks (notification_id, pc_id, user_name, acked_ms, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (notification_id, pc_id, user_name) DO NOTHING",
        rows,
    )
    .await?;
    Ok(())
}

const COLUMNS: &str =
    "id, title, body, priority, target_json, created_ms, expires_ms, created_by, withdrawn_ms, withdrawn_by";

fn row(r: &super::super::sql::Row) -> Result<StoredNotification, DbError> {
    let id: String = r.get(0)?;
    let target: String = r.get(4)?;
    let withdrawn_ms: Option<i64> = r.get(8)?;
    let withdrawn_by: Option<String> = r.get(9)?;
    Ok(StoredNotification {
        id: id.parse().map_err(|e| DbError::Decode(format!("notifications.id: {e}")))?,
        title: r.get(1)?,
        body: r.get(2)?,
        priority: r.get(3)?,
        target: serde_json::from_str(&target)
            .map_err(|e| DbError::Decode(format!("notifications.target_json: {e}")))?,
        created_ms: r.get(5)?,
        expires_ms: r.get(6)?,
        created_by: r.get(7)?,
        withdrawn: withdrawn_ms.map(|at| (at, withdrawn_by.unwrap_or_default())),
    })
}

/// The newest `limit`, newest first.
pub async fn list<S: Sql>(s: &mut S, limit: i64) -> Result<Vec<StoredNotification>, DbError> {
    s.rows(
        &format!("SELECT {COLUMNS} FROM notifications ORDER BY created_ms DESC, id DESC LIMIT ?1"),
        vals![limit],
    )
    .await?
    .iter()
    .map(row)
    .collect()
}

pub async fn get<S: Sql>(s: &mut S, id: NotificationId) -> Result<Option<StoredNotification>, DbError> {
    let rows =
        s.rows(&format!("SELECT {COLUMNS} FROM notifications WHERE id = ?1"), vals![id.to_string()]).await?;
    rows.first().map(row).transpose()
}

/// Every acknowledgement of the notifications in `ids`, by notification.
pub async fn acks<S: Sql>(
    s: &mut S,
    ids: &[NotificationId],
) -> Result<BTreeMap<NotificationId, Vec<Ack>>, DbError> {
    let mut out: BTreeMap<NotificationId, Vec<Ack>> = BTreeMap::new();
    for id in ids {
        let rows = s
            .rows(
                "SELECT pc_id, user_name, acked_ms FROM notification_acks WHERE notification_id = ?1
                 ORDER BY pc_id, acked_ms, user_name",
                vals![id.to_string()],
            )
            .await?;
        let list =
            rows.iter().map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).collect::<Result<_, DbError>>()?;
        out.insert(*id, list);
    }
    Ok(out)
}

/// The PCs a notification is for: known agents it addresses by their current groups, the PCs
/// it names (known or not), and any PC that acknowledged it (it was for them when it arrived).
pub fn recipients(
    target: &NotificationTarget,
    agents: &[(PcId, Vec<GroupName>)],
    acks: &[Ack],
) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = agents
        .iter()
        .filter(|(pc, groups)| target.addresses(pc, groups))
        .map(|(pc, _)| pc.to_string())
        .collect();
    out.extend(target.pcs.iter().map(|pc| pc.to_string()));
    out.extend(acks.iter().map(|(pc, _, _)| pc.clone()));
    out
}

/// `active`, `expired` or `withdrawn` at `now_ms`.
pub fn state(n: &StoredNotification, now_ms: i64) -> &'static str {
    if n.withdrawn.is_some() {
        "withdrawn"
    } else if n.expires_ms <= now_ms {
        "expired"
    } else {
        "active"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_addressed_agents_named_pcs_and_whoever_acknowledged() {
        let pc = |s: &str| s.parse::<PcId>().unwrap();
        let g = |s: &str| s.parse::<GroupName>().unwrap();
        let agents = vec![(pc("A"), vec![g("lab")]), (pc("B"), vec![]), (pc("C"), vec![g("lab"), g("x")])];
        let ack = |p: &str| (p.to_owned(), "u".to_owned(), 1);
        let cases: [(NotificationTarget, Vec<Ack>, &[&str]); 4] = [
            (NotificationTarget { all: true, ..Default::default() }, vec![], &["A", "B", "C"]),
            (NotificationTarget { groups: vec![g("lab")], ..Default::default() }, vec![], &["A", "C"]),
            // D is named but unknown so far (offline since before the backend knew it).
            (NotificationTarget { pcs: vec![pc("B"), pc("D")], ..Default::default() }, vec![], &["B", "D"]),
            // E left the group since it acknowledged: still a recipient.
            (NotificationTarget { groups: vec![g("x")], ..Default::default() }, vec![ack("E")], &["C", "E"]),
        ];
        for (target, acks, want) in cases {
            let got: Vec<String> = recipients(&target, &agents, &acks).into_iter().collect();
            assert_eq!(got, want, "{target:?}");
        }
    }
}
