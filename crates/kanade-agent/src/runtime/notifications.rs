//! End-user notifications on the agent (SPEC §12): live on core subscriptions to this PC's
//! NOTIFICATIONS subjects, and caught up with direct gets after the last stream sequence handled
//! (at start, after a reconnect, after a group change), so an agent that was away gets what was
//! sent meanwhile and drops what was withdrawn. Kept in the agent's store by id; shown to the
//! signed-in user where the OS allows; listed and acknowledged over the local socket or pipe
//! (`local_ipc`), the acknowledgement queued in the outbox in the same transaction it is recorded.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kanade_shared::subjects;
use kanade_shared::wire::{self, AckBy, Notification, NotificationMessage, NotifyAck, Timestamp};
use kanade_shared::{NotificationId, PcId};

use super::catch_up::{Failure, Merged};
use super::{Ctx, now_ms};
use crate::local_ipc::{Handler, Listed, Request, Response};
use crate::store::{AckOutcome, Outgoing, Store, StoreError};

/// The store key of the last NOTIFICATIONS sequence handled.
const WATERMARK: &str = "notifications_stream_seq";
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

fn ms(t: Timestamp) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) async fn notifications_loop(ctx: Arc<Ctx>) {
    let mut stop = ctx.shutdown.clone();
    let mut reconnects = kanade_shared::nats::Reconnects::new(ctx.connects.clone());
    let mut backoff = Duration::from_secs(1);
    let mut needed = true;
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    loop {
        let groups = ctx.groups.read().await.clone();
        let filters = subjects::agent_notification_filters(&ctx.settings.pc, &groups);
        let subs = super::subscribe_each(&ctx, filters, "notifications").await;
        let mut live = futures::stream::select_all(subs);
        loop {
            if needed {
                match catch_up(&ctx).await {
                    Ok(n) => {
                        if n > 0 {
                            tracing::info!(handled = n, "caught up with NOTIFICATIONS");
                        }
                        needed = false;
                        backoff = Duration::from_secs(1);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "notifications catch-up failed; retrying");
                    }
                }
            }
            let retry = super::retry_pause(needed, backoff);
            tokio::select! {
                Some(msg) = live.next() => match handle(&ctx.store, &msg.payload) {
                    Ok(Some(n)) => show(&n),
                    Ok(None) => {}
                    // A live message has no redelivery: the catch-up reads it again from the
                    // stream (the watermark moves only past what the store took).
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot keep a notification; catching up again");
                        needed = true;
                    }
                },
                () = retry => backoff = (backoff * 2).min(MAX_BACKOFF),
                () = reconnects.next() => {
                    if !super::spread_after_reconnect(&mut stop).await {
                        return;
                    }
                    needed = true;
                }
                () = ctx.notification_groups_changed.notified() => {
                    needed = true;
                    break;
                }
                _ = prune.tick() => {
                    if let Err(e) = ctx.store.prune_notifications(now_ms()) {
                        tracing::warn!(error = %e, "cannot prune old notifications");
                    }
                }
                () = super::stopped(&mut stop) => return,
            }
        }
    }
}

/// Handle what was sent after the watermark, in stream order. A PC that joins a group later gets
/// that group's notifications sent from then on.
async fn catch_up(ctx: &Ctx) -> anyhow::Result<usize> {
    let groups = ctx.groups.read().await.clone();
    let filters = subjects::agent_notification_filters(&ctx.settings.pc, &groups);
    let from = ctx.store.meta(WATERMARK)?.and_then(|s| s.parse::<u64>().ok()).map_or(1, |seq| seq + 1);
    let stream = ctx
        .js
        .get_stream_no_info("NOTIFICATIONS")
        .await
        .map_err(|e| anyhow::anyhow!("NOTIFICATIONS stream: {e}"))?;
    let failed = |f: Failure| match f {
        Failure::NotDirect => anyhow::anyhow!(
            "the NOTIFICATIONS stream does not answer direct gets (missing, or made by an older backend: start kanade-backend once to create or update it)"
        ),
        Failure::Other(e) => e,
    };
    let mut merged = Merged::open(&stream, "NOTIFICATIONS", &filters, from).await.map_err(failed)?;
    let mut total = 0;
    let mut new = Vec::new();
    while let Some(msg) = merged.next().await.map_err(failed)? {
        // An error stops here, before the watermark passes the message: it is read again.
        new.extend(handle(&ctx.store, &msg.payload)?);
        ctx.store.set_meta(WATERMARK, &msg.sequence.to_string())?;
        total += 1;
    }
    // Shown once the whole backlog is in: one withdrawn or expired meanwhile never pops up.
    let kept: std::collections::HashSet<String> =
        ctx.store.notifications(now_ms())?.into_iter().map(|(id, _)| id).collect();
    new.iter().filter(|n| kept.contains(&n.id.to_string())).for_each(show);
    Ok(total)
}

/// Keep, drop or skip one NOTIFICATIONS message; the notification when it is new here (to
/// show). Idempotent: the same message live and again in a catch-up, or on two subjects,
/// changes nothing the second time. A message that cannot be read is skipped (logged).
fn handle(store: &Store, payload: &[u8]) -> Result<Option<Notification>, StoreError> {
    let now = now_ms();
    match wire::decode::<NotificationMessage>(payload) {
        Ok(NotificationMessage::Send(n)) => {
            let new = store.notification_received(&n.id.to_string(), payload, ms(n.expires_at), now)?;
            Ok(new.then_some(n))
        }
        Ok(NotificationMessage::Withdraw(w)) => {
            if store.notification_withdrawn(&w.id.to_string(), now)? {
                tracing::info!(id = %w.id, by = w.by, "notification withdrawn");
            }
            Ok(None)
        }
        Ok(NotificationMessage::Unknown) => {
            tracing::debug!("skipping a notification operation this agent does not know");
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(error = %e, "skipping a malformed notification");
            Ok(None)
        }
    }
}

/// Tell the signed-in user, where the OS offers a way; the list over the local socket is always
/// there.
fn show(n: &Notification) {
    tracing::info!(
        id = %n.id,
        title = n.title,
        priority = n.priority.as_str(),
        "notification received; local users see it with `kanade-agent notifications list`"
    );
    #[cfg(unix)]
    for (bus, user) in session_buses() {
        let urgency = match n.priority {
            wire::Priority::Urgent => "critical",
            wire::Priority::Warn => "normal",
            _ => "low",
        };
        let mut command = tokio::process::Command::new("notify-send");
        command.args(["-a", "kanade", "-u", urgency, "--", &n.title, &n.body]);
        command.env("DBUS_SESSION_BUS_ADDRESS", bus);
        if let Some((uid, gid)) = user {
            command.uid(uid).gid(gid);
        }
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(5), command.status()).await {
                Ok(Ok(s)) if s.success() => {}
                Ok(Ok(s)) => tracing::debug!(status = %s, "notify-send failed"),
                Ok(Err(e)) => tracing::debug!(error = %e, "notify-send not available"),
                Err(_) => tracing::debug!("notify-send did not finish"),
            }
        });
    }
    #[cfg(windows)]
    {
        let (title, body, priority) = (n.title.clone(), n.body.clone(), n.priority);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = console_message(&title, &body, priority) {
                tracing::debug!(error = %e, "no message shown in the console session");
            }
        });
    }
}

/// The session buses to tell: as root (a service), every signed-in user's
/// `/run/user/<uid>/bus`, told as that user; otherwise the agent's own, when it has one.
#[cfg(unix)]
fn session_buses() -> Vec<(String, Option<(u32, u32)>)> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return std::env::var("DBUS_SESSION_BUS_ADDRESS").map(|bus| (bus, None)).into_iter().collect();
    }
    let Ok(dirs) = std::fs::read_dir("/run/user") else { return Vec::new() };
    dirs.flatten()
        .filter_map(|d| {
            let uid: u32 = d.file_name().to_str()?.parse().ok()?;
            let bus = d.path().join("bus");
            let meta = std::fs::metadata(&bus).ok()?;
            // The bus of that user, not something planted under their number.
            (meta.uid() == uid).then(|| (format!("unix:path={}", bus.display()), Some((uid, meta.gid()))))
        })
        .collect()
}

/// A message box in the console user's session that the agent does not wait on.
#[cfg(windows)]
#[allow(unsafe_code)]
fn console_message(title: &str, body: &str, priority: wire::Priority) -> std::io::Result<()> {
    use windows_sys::Win32::System::RemoteDesktop::{
        WTS_CURRENT_SERVER_HANDLE, WTSGetActiveConsoleSessionId, WTSSendMessageW,
    };
    use windows_sys::Win32::UI::WindowsAndMessaging::{
        MB_ICONINFORMATION, MB_ICONWARNING, MB_OK, MB_SETFOREGROUND,
    };
    let session = unsafe { WTSGetActiveConsoleSessionId() };
    if session == 0xFFFF_FFFF {
        return Err(std::io::Error::other("nobody is at the console"));
    }
    let wide = |s: &str| s.encode_utf16().collect::<Vec<u16>>();
    let (title, body) = (wide(&format!("kanade: {title}")), wide(body));
    let icon = if matches!(priority, wire::Priority::Info) { MB_ICONINFORMATION } else { MB_ICONWARNING };
    let mut response = 0;
    // SAFETY: buffers with their byte lengths; bWait = FALSE returns at once.
    let ok = unsafe {
        WTSSendMessageW(
            WTS_CURRENT_SERVER_HANDLE,
            session,
            title.as_ptr(),
            (title.len() * 2) as u32,
            body.as_ptr(),
            (body.len() * 2) as u32,
            MB_OK | icon | MB_SETFOREGROUND,
            0,
            &mut response,
            0,
        )
    };
    if ok == 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

/// What the local socket answers: the caller's list, or their acknowledgement recorded and queued.
pub(crate) fn handler(ctx: Arc<Ctx>) -> Handler {
    let (store, pc, secret) = (ctx.store.clone(), ctx.settings.pc.clone(), ctx.msg_secret.clone());
    Arc::new(move |user, request| {
        let response = answer(&store, &pc, &secret, user, request);
        // An acknowledgement was queued: send it now rather than at the next idle poll.
        ctx.outbox_wake.notify_one();
        response
    })
}

/// One local request from `user`, against this PC's store.
fn answer(store: &Store, pc: &PcId, secret: &str, user: &str, request: Request) -> Response {
    match request {
        Request::List => list(store, user),
        Request::Ack { id } => ack(store, pc, secret, user, &id),
    }
}

fn list(store: &Store, user: &str) -> Response {
    let kept = match store.notifications(now_ms()) {
        Ok(kept) => kept,
        Err(e) => return Response::error(user, format!("the agent cannot read its notifications: {e}")),
    };
    let notifications = kept
        .into_iter()
        .filter_map(|(_, k)| {
            let NotificationMessage::Send(notification) = wire::decode(&k.message).ok()? else { return None };
            let acks: Vec<AckBy> = k.acks.into_iter().map(|(user, at)| AckBy { user, at }).collect();
            let acked_by_you = acks.iter().any(|a| a.user == user);
            Some(Listed { notification, received_ms: k.received_ms, acks, acked_by_you })
        })
        .collect();
    Response { user: user.to_owned(), notifications, ..Default::default() }
}

fn ack(store: &Store, pc: &PcId, secret: &str, user: &str, id: &str) -> Response {
    let Ok(notification_id) = id.parse::<NotificationId>() else {
        return Response::error(
            user,
            format!(
                "{id:?} is not a notification id (the first column of `kanade-agent notifications list`)"
            ),
        );
    };
    let at = Timestamp::now_utc();
    let body =
        NotifyAck { schema: wire::SCHEMA, notification_id, pc_id: pc.clone(), user: user.to_owned(), at };
    let Ok(payload) = wire::encode(&body) else {
        return Response::error(user, "cannot encode the acknowledgement");
    };
    let message = Outgoing {
        seq: 0,
        // One per (notification, user); the secret keeps anyone else from claiming it first.
        msg_id: format!("notify_ack.{pc}.{notification_id}.{}.{secret}", hex(user)),
        subject: subjects::notify_ack(pc, notification_id),
        payload,
    };
    match store.ack_notification(&notification_id.to_string(), user, ms(at), &message) {
        Ok(AckOutcome::Acked) => {
            tracing::info!(id = %notification_id, user, "notification acknowledged");
            Response { user: user.to_owned(), ack: Some("acked".into()), ..Default::default() }
        }
        Ok(AckOutcome::Already) => {
            Response { user: user.to_owned(), ack: Some("already".into()), ..Default::default() }
        }
        Ok(AckOutcome::Unknown) => Response::error(
            user,
            format!(
                "no notification {notification_id} here: never sent to this PC, withdrawn or expired (kanade-agent notifications list shows what is)"
            ),
        ),
        Err(e) => Response::error(user, format!("the agent cannot record the acknowledgement: {e}")),
    }
}

/// A user name as message-id text (names may hold spaces or a backslash).
fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_the_os_names_acknowledges_whatever_the_request_says() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agent.db")).unwrap();
        let pc: PcId = "PC-1".parse().unwrap();
        let now = Timestamp::now_utc();
        let n = Notification {
            schema: 1,
            id: NotificationId::new(),
            title: "t".into(),
            body: "b".into(),
            priority: wire::Priority::Info,
            target: wire::NotificationTarget { pcs: vec![pc.clone()], ..Default::default() },
            created_at: now,
            expires_at: now + Duration::from_secs(3600),
            created_by: "op".into(),
        };
        let sent = wire::encode(&NotificationMessage::Send(n.clone())).unwrap();
        assert_eq!(handle(&store, &sent).unwrap(), Some(n.clone()), "new: shown");
        assert_eq!(handle(&store, &sent).unwrap(), None, "again (a second subject, a catch-up): not shown");
        // The request claims bob; the OS said alice.
        let handler: Handler = Arc::new(move |user, request| answer(&store, &pc, "secret", user, request));
        let line = format!(r#"{{"op":"ack","id":"{}","user":"bob"}}"#, n.id);
        let reply: Response =
            serde_json::from_slice(&crate::local_ipc::answer(&handler, "alice", line.as_bytes())).unwrap();
        assert_eq!((reply.user.as_str(), reply.ack.as_deref(), reply.error), ("alice", Some("acked"), None));
        let listed: Response =
            serde_json::from_slice(&crate::local_ipc::answer(&handler, "bob", br#"{"op":"list"}"#)).unwrap();
        let acks = &listed.notifications[0].acks;
        assert_eq!(
            (acks.len(), acks[0].user.as_str(), listed.notifications[0].acked_by_you),
            (1, "alice", false)
        );
    }

    #[test]
    fn a_withdrawal_before_its_notification_keeps_it_from_showing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agent.db")).unwrap();
        let now = Timestamp::now_utc();
        let id = NotificationId::new();
        let withdraw =
            NotificationMessage::Withdraw(wire::Withdrawal { schema: 1, id, at: now, by: "op".into() });
        assert_eq!(handle(&store, &wire::encode(&withdraw).unwrap()).unwrap(), None);
        let n = Notification {
            schema: 1,
            id,
            title: "t".into(),
            body: String::new(),
            priority: wire::Priority::Urgent,
            target: wire::NotificationTarget { all: true, ..Default::default() },
            created_at: now,
            expires_at: now + Duration::from_secs(60),
            created_by: "op".into(),
        };
        assert_eq!(handle(&store, &wire::encode(&NotificationMessage::Send(n)).unwrap()).unwrap(), None);
        assert_eq!(handle(&store, b"not json").unwrap(), None, "skipped, not an error");
    }
}
