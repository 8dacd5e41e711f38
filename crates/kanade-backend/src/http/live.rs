//! Watching one agent at work: a running script's output as server-sent events, and the end of
//! the agent's log. Both ask the agent over request/reply (`agents.<pc>.tail`, `.logs`) only
//! while someone is watching; what the agent no longer holds comes from the stored result.

use kanade_shared::api::fleet::LogsQuery;
use std::convert::Infallible;
use std::time::Duration;

use super::Path;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use kanade_shared::wire::{self, LogCursor, LogReply, LogRequest, TailEvent, TailReply, TailRequest};
use kanade_shared::{ExecId, PcId, ResultId, subjects};

use super::pc_id;
use super::{ApiError, AppState, Json, Query};
use crate::db::queries::ResultRow;

/// How often a watcher's stream asks the agent for more (output reaches the watcher within this
/// plus one round trip).
const POLL: Duration = Duration::from_millis(300);

/// How long an agent may take to answer one request.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an agent did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unanswered {
    NotConnected,
    TimedOut,
    Failed(String),
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unanswered::NotConnected => f.write_str("is not connected"),
            Unanswered::TimedOut => write!(f, "did not answer within {}s", ASK_TIMEOUT.as_secs()),
            Unanswered::Failed(why) => write!(f, "did not answer: {why}"),
        }
    }
}

/// One request to an agent, its reply's bytes.
pub async fn ask(state: &AppState, subject: String, body: bytes::Bytes) -> Result<bytes::Bytes, Unanswered> {
    match tokio::time::timeout(ASK_TIMEOUT, state.nats.request(subject, body)).await {
        Err(_) => Err(Unanswered::TimedOut),
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Err(Unanswered::NotConnected),
        Ok(Err(e)) => Err(Unanswered::Failed(e.to_string())),
        Ok(Ok(reply)) => Ok(reply.payload),
    }
}

/// What the agent said about a run's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAnswer {
    Output(TailReply),
    Unreachable(String),
}

/// What the database says about the run.
#[derive(Debug, Default)]
pub struct Stored {
    /// This PC's row, running or finished.
    pub result: Option<ResultRow>,
    pub exec_status: String,
}

/// Where one watcher is.
#[derive(Debug, Default)]
pub struct Watch {
    /// Output bytes passed on so far.
    pub from: u64,
    waiting: Option<String>,
}

const EXEC_OVER: [&str; 5] = ["completed", "failed", "killed", "aborted", "expired"];

impl Watch {
    /// Whether this answer needs the database to decide (the run is over or not visible).
    pub fn needs_store(answer: &AgentAnswer) -> bool {
        !matches!(answer, AgentAnswer::Output(r) if r.known && !r.done)
    }

    /// The events one poll produces, and whether the stream ends with them.
    pub fn step(&mut self, answer: AgentAnswer, stored: Option<&Stored>) -> (Vec<TailEvent>, bool) {
        let mut events = Vec::new();
        let mut agent_done = false;
        let agent_why = match answer {
            AgentAnswer::Output(r) if r.known => {
                if r.skipped > 0 {
                    events.push(TailEvent::Skipped { bytes: r.skipped });
                }
                for c in r.chunks {
                    events.push(TailEvent::Output { stream: c.stream, text: c.text });
                }
                self.from = r.next;
                if !r.done {
                    self.waiting = None;
                    return (events, false);
                }
                agent_done = true;
                "the run ended; waiting for its result to be stored".to_owned()
            }
            AgentAnswer::Output(_) => String::new(),
            AgentAnswer::Unreachable(why) => format!("the agent {why}"),
        };
        let empty = Stored::default();
        let stored = stored.unwrap_or(&empty);
        let finished = stored.result.as_ref().filter(|r| r.status != "running");
        if let Some(r) = finished {
            // Nothing came live: the stored output is all there is to show.
            if self.from == 0 && !agent_done {
                for (stream, text) in
                    [(wire::ChunkStream::Stdout, &r.stdout), (wire::ChunkStream::Stderr, &r.stderr)]
                {
                    if !text.is_empty() {
                        events.push(TailEvent::Output { stream, text: text.clone() });
                    }
                }
            }
            let message =
                r.message.clone().or_else(|| r.skip_reason.as_ref().map(|s| format!("skipped: {s}")));
            events.push(TailEvent::End { status: r.status.clone(), exit_code: r.exit_code, message });
            return (events, true);
        }
        if EXEC_OVER.contains(&stored.exec_status.as_str()) && !agent_done {
            events.push(TailEvent::End {
                status: stored.exec_status.clone(),
                exit_code: None,
                message: Some("the execution ended without a result from this PC".into()),
            });
            return (events, true);
        }
        let reason = match (agent_why.is_empty(), &stored.result) {
            (false, _) => agent_why,
            (true, None) => {
                "not started on this PC yet (queued, waiting out its jitter or wave, or the PC is away)"
                    .into()
            }
            (true, Some(_)) => {
                "started, but the agent holds no output of it (it restarted since); waiting for the result"
                    .into()
            }
        };
        if self.waiting.as_ref() != Some(&reason) {
            events.push(TailEvent::Waiting { reason: reason.clone() });
            self.waiting = Some(reason);
        }
        (events, false)
    }
}

async fn stored(state: &AppState, exec: ExecId, pc: &PcId) -> Result<Stored, ApiError> {
    let result = state.db.result(ResultId::derive(exec, pc)).await?;
    let exec_status = match state.db.execution(exec, false).await? {
        Some((e, _, _)) => e.status,
        None => String::new(),
    };
    Ok(Stored { result, exec_status })
}

async fn poll(state: &AppState, exec: ExecId, pc: &PcId, from: u64) -> AgentAnswer {
    let req = TailRequest { schema: wire::SCHEMA, exec_id: exec, from };
    let Ok(body) = wire::encode(&req) else {
        return AgentAnswer::Unreachable("request not encodable".into());
    };
    match ask(state, subjects::tail(pc), body.into()).await {
        Ok(reply) => match wire::decode::<TailReply>(&reply) {
            Ok(r) => AgentAnswer::Output(r),
            Err(e) => AgentAnswer::Unreachable(format!("answered something unreadable ({e})")),
        },
        Err(why) => AgentAnswer::Unreachable(why.to_string()),
    }
}

fn sse(event: &TailEvent) -> Event {
    Event::default().event(event.name()).data(serde_json::to_string(event).unwrap_or_default())
}

/// Live output streams open at once, across callers: each costs a broker request every
/// [`POLL`], so their number is bounded.
const MAX_TAILS: usize = 256;
static TAILS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One open stream's place under [`MAX_TAILS`], given back when the stream is dropped.
struct TailSlot;

impl TailSlot {
    fn take() -> Option<Self> {
        use std::sync::atomic::Ordering;
        TAILS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_TAILS).then_some(n + 1))
            .ok()
            .map(|_| TailSlot)
    }
}

impl Drop for TailSlot {
    fn drop(&mut self) {
        TAILS.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// One watcher's stream between polls.
struct Tailing {
    watch: Watch,
    state: AppState,
    exec: ExecId,
    pc: PcId,
    stopping: tokio::sync::watch::Receiver<bool>,
    /// The request, to check its caller again now and then (a watch can last for days).
    parts: axum::http::request::Parts,
    checked: std::time::Instant,
    first: bool,
    ended: bool,
    _slot: TailSlot,
}

async fn next_events(mut t: Tailing) -> Option<(Vec<TailEvent>, Tailing)> {
    if t.ended {
        return None;
    }
    if !t.first {
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            // The backend stops: end the stream (the watcher reconnects to another).
            () = super::stopped(&mut t.stopping) => return None,
        }
    }
    t.first = false;
    // Like `/api/stream`: an expired session, a disabled user or a changed password ends it.
    if t.checked.elapsed() >= t.state.auth.config.recheck {
        t.checked = std::time::Instant::now();
        if let Err(e) = crate::auth::authenticate(&t.state.auth, &t.state.db, &t.parts).await {
            t.ended = true;
            return Some((vec![TailEvent::SessionEnded { error: e.to_string() }], t));
        }
    }
    let answer = poll(&t.state, t.exec, &t.pc, t.watch.from).await;
    let stored = if Watch::needs_store(&answer) {
        match stored(&t.state, t.exec, &t.pc).await {
            Ok(s) => Some(s),
            Err(e) => {
                let reason = format!("cannot read the stored result: {}", e.message);
                return Some((vec![TailEvent::Waiting { reason }], t));
            }
        }
    } else {
        None
    };
    let (events, end) = t.watch.step(answer, stored.as_ref());
    t.ended = end;
    Some((events, t))
}

pub async fn tail(
    State(state): State<AppState>,
    Path((exec, pc)): Path<(String, String)>,
    parts: axum::http::request::Parts,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let exec: ExecId =
        exec.parse().map_err(|e: kanade_shared::IdError| ApiError::invalid(vec![e.to_string()]))?;
    let pc = pc_id(&pc)?;
    if state.db.execution(exec, false).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "execution {exec} not found; `kanade executions` lists them"
        )));
    }
    let Some(slot) = TailSlot::take() else {
        return Err(ApiError::unavailable(
            "too_many_streams",
            format!("{MAX_TAILS} live output streams are open on this backend; close one and try again"),
        ));
    };
    let start = Tailing {
        watch: Watch::default(),
        stopping: state.stopping.clone(),
        state,
        exec,
        pc,
        parts,
        checked: std::time::Instant::now(),
        first: true,
        ended: false,
        _slot: slot,
    };
    let steps = futures::stream::unfold(start, next_events);
    let events = steps.flat_map(|batch| futures::stream::iter(batch.into_iter().map(|e| Ok(sse(&e)))));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

pub async fn logs(
    State(state): State<AppState>,
    Path(pc): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Json<LogReply>, ApiError> {
    let pc = pc_id(&pc)?;
    let mut problems = Vec::new();
    let lines = q.lines.unwrap_or(200);
    if !(1..=10_000).contains(&lines) {
        problems.push(format!("lines: {lines} is out of range; ask for 1 to 10000"));
    }
    if let Some(since) = &q.since
        && time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339).is_err()
    {
        problems.push(format!("since: {since:?} is not an RFC 3339 time such as 2026-12-01T08:00:00Z"));
    }
    let after = match (q.file, q.offset) {
        (Some(file), Some(offset)) => Some(LogCursor { file, offset }),
        (None, None) => None,
        _ => {
            problems.push("file and offset go together (both from an earlier reply's cursor)".into());
            None
        }
    };
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    if state.db.agent_presence(pc.clone()).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "agent {pc} has never sent a heartbeat; `kanade agents list` shows the fleet (names are case-sensitive)"
        )));
    }
    let req = LogRequest { schema: wire::SCHEMA, lines, since: q.since, after };
    let body = wire::encode(&req).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("cannot encode the log request: {e}"),
        )
    })?;
    let reply = ask(&state, subjects::logs(&pc), body.into())
        .await
        .map_err(|why| ApiError::unavailable("agent_unreachable", format!("agent {pc} {why}")))?;
    let reply: LogReply =
        wire::decode(&reply).map_err(|e| ApiError::unavailable("agent_reply", e.to_string()))?;
    Ok(Json(reply))
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
