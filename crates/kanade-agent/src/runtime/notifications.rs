//! End-user notifications on the agent (SPEC §12): live on core subscriptions to this PC's
//! NOTIFICATIONS subjects, and caught up with direct gets after the last stream sequence handled
//! (at start, after a reconnect, after a group change), so an agent that was away gets what was
//! sent meanwhile and drops what was withdrawn. Kept in the agent's store by id; shown to the
//! signed-in user where the OS allows; listed and acknowledged over the local socket or pipe
//! (`local_ipc`), the acknowledgement queued in the outbox in the same transaction it is recorded.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kanade_shared::NotificationId;
use kanade_shared::subjects;
use kanade_shared::wire::{self, AckBy, Notification, NotificationMessage, NotifyAck, Timestamp};

use super::catch_up::{Failure, Merged};
use super::{Ctx, now_ms};
use crate::local_ipc::{Handler, Listed, Request, Response};
use crate::store::{AckOutcome, Outgoing};

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
        let mut subs = Vec::new();
        for filter in subjects::agent_notification_filters(&ctx.settings.pc, &groups) {
            match ctx.client.subscribe(filter.clone()).await {
                Ok(sub) => subs.push(sub),
                Err(e) => {
                    tracing::warn!(filter, error = %e, "cannot subscribe; notifications on it arrive by catch-up only")
                }
            }
        }
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
            let retry = async {
                if needed {
                    tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64())).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                Some(msg) = live.next() => handle(&ctx, &msg.payload),
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
    while let Some(msg) = merged.next().await.map_err(failed)? {
        handle(ctx, &msg.payload);
        ctx.store.set_meta(WATERMARK, &msg.sequence.to_string())?;
        total += 1;
    }
    Ok(total)
}

/// Keep, drop or skip one NOTIFICATIONS message. Idempotent: the same message live and again
/// in a catch-up, or on two subjects, changes nothing the second time.
fn handle(ctx: &Ctx, payload: &[u8]) {
    let now = now_ms();
    match wire::decode::<NotificationMessage>(payload) {
        Ok(NotificationMessage::Send(n)) => {
            match ctx.store.notification_received(&n.id.to_string(), payload, ms(n.expires_at), now) {
                Ok(true) => show(&n),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(id = %n.id, error = %e, "cannot keep a notification; it comes again with the next catch-up")
                }
            }
        }
        Ok(NotificationMessage::Withdraw(w)) => {
            match ctx.store.notification_withdrawn(&w.id.to_string(), now) {
                Ok(true) => tracing::info!(id = %w.id, by = w.by, "notification withdrawn"),
                Ok(false) => {}
                Err(e) => tracing::warn!(id = %w.id, error = %e, "cannot record a withdrawal"),
            }
        }
        Ok(NotificationMessage::Unknown) => {
            tracing::debug!("skipping a notification operation this agent does not know")
        }
        Err(e) => tracing::warn!(error = %e, "skipping a malformed notification"),
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
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
        let urgency = match n.priority {
            wire::Priority::Urgent => "critical",
            wire::Priority::Warn => "normal",
            _ => "low",
        };
        let mut command = tokio::process::Command::new("notify-send");
        command.args(["-a", "kanade", "-u", urgency, "--", &n.title, &n.body]);
        command.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
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
    Arc::new(move |user, request| match request {
        Request::List => list(&ctx, user),
        Request::Ack { id } => ack(&ctx, user, &id),
    })
}

fn list(ctx: &Ctx, user: &str) -> Response {
    let kept = match ctx.store.notifications(now_ms()) {
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

fn ack(ctx: &Ctx, user: &str, id: &str) -> Response {
    let Ok(notification_id) = id.parse::<NotificationId>() else {
        return Response::error(
            user,
            format!(
                "{id:?} is not a notification id (the first column of `kanade-agent notifications list`)"
            ),
        );
    };
    let pc = ctx.settings.pc.clone();
    let at = Timestamp::now_utc();
    let body =
        NotifyAck { schema: wire::SCHEMA, notification_id, pc_id: pc.clone(), user: user.to_owned(), at };
    let Ok(payload) = wire::encode(&body) else {
        return Response::error(user, "cannot encode the acknowledgement");
    };
    let message = Outgoing {
        seq: 0,
        // One per (notification, user); the secret keeps anyone else from claiming it first.
        msg_id: format!("notify_ack.{pc}.{notification_id}.{}.{}", hex(user), ctx.msg_secret),
        subject: subjects::notify_ack(&pc, notification_id),
        payload,
    };
    let outcome = ctx.store.ack_notification(&notification_id.to_string(), user, ms(at), &message);
    ctx.outbox_wake.notify_one();
    match outcome {
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
