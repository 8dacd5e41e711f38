//! Answers to people watching this agent: a running script's output so far (`agents.<pc>.tail`)
//! and the end of the agent's log (`agents.<pc>.logs`). Runs register their output buffer here
//! while they go and for a short while after, so a watcher polling every few hundred
//! milliseconds still gets the last lines and the end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kanade_shared::wire::{self, ChunkStream, LogRequest, TailReply, TailRequest};
use kanade_shared::{ExecId, subjects};

use super::Ctx;
use crate::exec::live::{LIVE_CAP, LiveOutput, OutputRing, REPLY_MAX};

/// How long a finished run's output stays readable here (its result is in the backend by then).
const KEEP_ENDED: Duration = Duration::from_secs(30);

/// Most log lines one request may ask for.
const MAX_LOG_LINES: u32 = 10_000;

#[derive(Default)]
pub(crate) struct LiveRuns {
    runs: Mutex<HashMap<ExecId, (LiveOutput, Option<Instant>)>>,
}

impl LiveRuns {
    /// A fresh buffer for `exec`, ended when the returned guard drops.
    pub fn start(self: &Arc<Self>, exec: ExecId) -> LiveGuard {
        let output = OutputRing::shared(LIVE_CAP);
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.retain(|_, (_, ended)| ended.is_none_or(|at| at.elapsed() < KEEP_ENDED));
        runs.insert(exec, (output.clone(), None));
        LiveGuard { runs: self.clone(), exec, output }
    }

    fn read(&self, exec: ExecId, from: u64) -> TailReply {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        match runs.get(&exec) {
            Some((output, _)) => output.lock().unwrap_or_else(|e| e.into_inner()).read(from, REPLY_MAX),
            None => TailReply::unknown(),
        }
    }
}

pub(crate) struct LiveGuard {
    runs: Arc<LiveRuns>,
    exec: ExecId,
    pub output: LiveOutput,
}

impl LiveGuard {
    /// A line of the agent's own in the output (a retry starts).
    pub fn note(&self, text: &str) {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ChunkStream::Note, format!("{text}\n").as_bytes());
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.output.lock().unwrap_or_else(|e| e.into_inner()).end();
        let mut runs = self.runs.runs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, ended)) = runs.get_mut(&self.exec) {
            *ended = Some(Instant::now());
        }
    }
}

pub(crate) async fn responder(ctx: Arc<Ctx>) {
    let mut stop = ctx.shutdown.clone();
    let pc = &ctx.settings.pc;
    let subscribed = async {
        let tail = ctx.client.subscribe(subjects::tail(pc)).await?;
        let logs = ctx.client.subscribe(subjects::logs(pc)).await?;
        Ok::<_, async_nats::SubscribeError>((tail, logs))
    };
    let (mut tail, mut logs) = match subscribed.await {
        Ok(subs) => subs,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to output and log requests");
            return;
        }
    };
    loop {
        let (msg, is_tail) = tokio::select! {
            msg = tail.next() => match msg { Some(m) => (m, true), None => return },
            msg = logs.next() => match msg { Some(m) => (m, false), None => return },
            () = super::stopped(&mut stop) => return,
        };
        let Some(reply_to) = msg.reply else { continue };
        let payload = if is_tail {
            match wire::decode::<TailRequest>(&msg.payload) {
                Ok(req) => wire::encode(&ctx.live.read(req.exec_id, req.from)),
                Err(e) => {
                    tracing::debug!(error = %e, "skipping a malformed output request");
                    continue;
                }
            }
        } else {
            match wire::decode::<LogRequest>(&msg.payload) {
                Ok(mut req) => {
                    req.lines = req.lines.min(MAX_LOG_LINES);
                    let dir = ctx.settings.log_dir.clone();
                    let read = tokio::task::spawn_blocking(move || crate::logfile::read(dir.as_ref(), &req));
                    match read.await {
                        Ok(reply) => wire::encode(&reply),
                        Err(e) => {
                            tracing::warn!(error = %e, "reading the log failed");
                            continue;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "skipping a malformed log request");
                    continue;
                }
            }
        };
        match payload {
            Ok(body) => {
                let _ = ctx.client.publish(reply_to, body.into()).await;
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode a watch reply"),
        }
    }
}
