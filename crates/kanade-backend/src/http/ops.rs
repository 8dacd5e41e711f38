//! Ad-hoc runs, Prometheus metrics, the live event stream and the OpenAPI document.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Json;
use super::Query;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use kanade_shared::api::executions::{Launched, RunScript};
use kanade_shared::manifest::{self, Plan, Target};
use kanade_shared::wire::Shell;

use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::projector::Kind;

/// A one-off script's timeout when the request names none.
const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// How long an ad-hoc `POST /api/run` command may wait for its PCs.
const ADHOC_START_WITHIN_SECS: u64 = 600;

fn default_shell() -> String {
    if cfg!(windows) { "powershell".into() } else { "sh".into() }
}

/// An ad-hoc script on named PCs, through the same pipeline (so it is projected and audited).
pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<kanade_shared::api::executions::LaunchQuery>,
    Json(body): Json<RunScript>,
) -> Result<(StatusCode, Json<Launched>), ApiError> {
    let mut problems = Vec::new();
    let pcs: Vec<_> = body
        .pcs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            p.parse().map_err(|e: kanade_shared::IdError| problems.push(format!("pcs[{i}]: {e}"))).ok()
        })
        .collect();
    if pcs.is_empty() && problems.is_empty() {
        problems.push("pcs: name at least one pc".into());
    }
    let shell = body.shell.clone().unwrap_or_else(default_shell);
    if Shell::parse(&shell).is_none() {
        problems.push(format!("shell: {shell:?} is not one of {}", Shell::KNOWN.join(", ")));
    }
    if body.script.trim().is_empty() {
        problems.push("script: is empty".into());
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    super::freeze::guard(&state, &caller, q.overrides_freeze(), "a one-off run").await?;
    let request = kanade_shared::RequestId::new();
    let yaml = serde_json::json!({
        "id": kanade_shared::JobId::adhoc(request).to_string(),
        "version": "1",
        "execute": { "shell": shell, "script": body.script, "timeout": format!("{}s", body.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS).max(1)) },
    });
    let manifest = manifest::job_from_json(yaml.to_string().as_bytes())
        .map_err(|p| ApiError::invalid(p.messages()))?
        .manifest;
    // An ad-hoc script is for now: a PC that comes back later than this skips it.
    let plan = Plan {
        target: Target { pcs, groups: Vec::new(), all: false },
        jitter: None,
        rollout: None,
        start_within: Some(kanade_shared::HumanDuration::from_secs(ADHOC_START_WITHIN_SECS)),
        override_freeze: false,
    };
    let launched =
        state.pipeline.exec(&manifest, &plan, &super::executions::launch_origin(&caller, &q)).await?;
    Ok((StatusCode::CREATED, Json(launched)))
}

/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let s = &state.stats;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in rows {
            out.push_str(&format!("{name}{labels} {value}\n"));
        }
    };
    let per_stream = |values: &[std::sync::atomic::AtomicU64; crate::projector::KINDS]| {
        Kind::ALL
            .iter()
            .map(|k| {
                (format!("{{stream=\"{}\"}}", k.stream()), values[*k as usize].load(Ordering::Relaxed) as f64)
            })
            .collect()
    };
    metric(
        "kanade_projected_messages_total",
        "counter",
        "Messages written to the projection.",
        per_stream(&s.projected),
    );
    metric(
        "kanade_malformed_messages_total",
        "counter",
        "Messages skipped because they did not decode.",
        per_stream(&s.malformed),
    );
    metric(
        "kanade_projector_forged_total",
        "counter",
        "Messages dropped because their body names another PC than their subject.",
        per_stream(&s.forged.count),
    );
    metric(
        "kanade_projector_refused_total",
        "counter",
        "Messages skipped because the database refused what they hold (each is logged with its stream sequence).",
        per_stream(&s.refused),
    );
    metric(
        "kanade_projector_batches_total",
        "counter",
        "Batches written (messages / batches = mean batch size).",
        per_stream(&s.batches),
    );
    metric(
        "kanade_projector_lag_messages",
        "gauge",
        "Messages waiting in the stream after the last batch.",
        per_stream(&s.lag),
    );
    metric(
        "kanade_login_throttled_total",
        "counter",
        "Sign-in attempts refused by the login throttle (audited once per address per window).",
        vec![(String::new(), state.auth.throttled.load(Ordering::Relaxed) as f64)],
    );
    metric(
        "kanade_heartbeats_projected_total",
        "counter",
        "Heartbeats written.",
        vec![(String::new(), s.heartbeats.load(Ordering::Relaxed) as f64)],
    );
    metric(
        "kanade_obs_events_over_budget_total",
        "counter",
        "Observability events dropped because their PC sent more than its budget (2,000 at once, 1 a second).",
        vec![(String::new(), s.events_over_budget.load(Ordering::Relaxed) as f64)],
    );
    let now = crate::db::now_ms();
    let agents = state.db.known_agents().await?;
    let online = agents.iter().filter(|a| now - a.last_seen_ms <= crate::fleet::ALIVE_WINDOW_MS).count();
    let total = agents.len();
    metric(
        "kanade_agents",
        "gauge",
        "Known agents by liveness.",
        vec![
            ("{state=\"online\"}".into(), online as f64),
            ("{state=\"offline\"}".into(), (total - online) as f64),
        ],
    );
    metric(
        "kanade_build_info",
        "gauge",
        "This backend's version (the value is always 1).",
        vec![(format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")), 1.0)],
    );
    if let Some(p) = super::metrics::process_stats() {
        metric(
            "process_cpu_seconds_total",
            "counter",
            "CPU time (user and system) of this process.",
            vec![(String::new(), p.cpu_seconds)],
        );
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of this process.",
            vec![(String::new(), p.resident_bytes)],
        );
        metric(
            "process_open_fds",
            "gauge",
            "Open file descriptors of this process.",
            vec![(String::new(), p.open_fds)],
        );
    }
    out.push_str(&state.http_metrics.render());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}

/// Server-sent events: agent up/down, new result, execution changed. The SSE event name is the
/// event's `type`, and its data the JSON of the whole event. The caller is checked again every
/// `auth.recheck`: when their session expired, their account was disabled or their password
/// changed, a last `session_ended` event says why and the stream closes. It also ends when the
/// backend stops.
pub async fn stream(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.bus.subscribe();
    let stopping = state.stopping.clone();
    let mut recheck = tokio::time::interval(state.auth.config.recheck);
    recheck.tick().await;
    let events = futures::stream::unfold(
        (rx, recheck, state, parts, stopping, false),
        |(mut rx, mut recheck, state, parts, mut stopping, ended)| async move {
            if ended {
                return None;
            }
            let event = tokio::select! {
                // The backend stops: end the stream (the dashboard reconnects to another).
                () = super::stopped(&mut stopping) => return None,
                received = rx.recv() => match received {
                    Ok(event) => {
                        Event::default().event(event.kind()).data(serde_json::to_string(&event).unwrap_or_default())
                    }
                    // A slow client skipped some events; it should re-read what it shows.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        Event::default().event("lagged").data(n.to_string())
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
                _ = recheck.tick() => match crate::auth::authenticate(&state.auth, &state.db, &parts).await {
                    Ok(_) => Event::default().comment("still signed in"),
                    Err(e) => {
                        let why = serde_json::json!({ "type": "session_ended", "error": e.to_string() });
                        let last = Event::default().event("session_ended").data(why.to_string());
                        return Some((Ok(last), (rx, recheck, state, parts, stopping, true)));
                    }
                },
            };
            Some((Ok(event), (rx, recheck, state, parts, stopping, false)))
        },
    );
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
