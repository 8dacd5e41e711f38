//! One admitted run: gates → jitter → concurrency slot → gates again → start recorded → execute
//! (announced with a `started` event once it runs past a grace; with retries) → result into the
//! outbox. The run is registered with the kill switch before anything else, so a kill sent at
//! any point after admission is seen; a kill heard before the run existed is remembered by the
//! switch. Runs that did not arrive live (catch-up after an
//! absence, resumed after a restart) also read `exec_kills`, where the backend records kills
//! for PCs that were not listening. The jitter wait holds no concurrency slot, and revoke,
//! version pin and kills are checked again after any wait, right before the start.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kanade_shared::ResultId;
use kanade_shared::subjects;
use kanade_shared::wire::{self, Command, Emit, ExecResult, ExecStatus, RunAs, StartedEvent, Timestamp};
use tokio::sync::watch;

use super::{Ctx, fit, now_ms, view};
use crate::exec::{self, Ending, Identity, RunSpec};
use crate::gates;
use crate::store::{Outgoing, StoreError};

/// Runs interrupted by a crash are reported `unknown`, never relaunched; runs admitted but never
/// started are started now.
pub(crate) async fn recover(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let (pending, interrupted) = ctx.store.recover()?;
    for run in interrupted {
        let Ok(cmd) = wire::decode::<Command>(&run.command) else {
            tracing::error!(
                exec_id = run.exec_id,
                "interrupted run has an unreadable command; no result can be built"
            );
            continue;
        };
        let started_at = run
            .started_at_ms
            .and_then(|ms| Timestamp::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok());
        let mut result = base_result(ctx, &cmd, ExecStatus::Unknown, 1);
        result.started_at = started_at;
        result.message = Some("the agent stopped while this run was in flight; it was not run again".into());
        tracing::warn!(exec_id = %cmd.exec_id, "reporting interrupted run as unknown");
        ctx.store.finish(cmd.exec_id, &outgoing(ctx, &result), now_ms())?;
    }
    for run in pending {
        match wire::decode::<Command>(&run.command) {
            Ok(cmd) => {
                tokio::spawn(execute(ctx.clone(), cmd, Via::Resumed, None));
            }
            Err(e) => tracing::error!(subject = run.subject, error = %e, "admitted command is unreadable"),
        }
    }
    ctx.outbox_wake.notify_one();
    Ok(())
}

/// How a run reached this agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// On a live subscription: a kill for it reaches the kill switch.
    Live,
    /// Replayed from EXEC after an absence: a kill may have gone out while this PC was away.
    CatchUp,
    /// Admitted before a restart and never started.
    Resumed,
}

/// A run admitted and recorded as started in one step (see [`start_now`]): its concurrency slot
/// and when it started.
pub(crate) struct StartedNow {
    slot: tokio::sync::OwnedSemaphorePermit,
    pub at: Timestamp,
}

/// Whether a command can start the moment it is admitted, so that admission and start are one
/// ledger write: heard live, judged on the view it carries ([`view::issued`]) and passing every
/// gate, no jitter, an inline script, and a free concurrency slot (taken here). Anything else
/// goes the long way: admitted, then gated, waited for and started.
pub(crate) fn start_now(ctx: &Ctx, cmd: &Command, via: Via) -> Option<StartedNow> {
    if via != Via::Live || cmd.jitter_secs > 0 || cmd.script.is_none() {
        return None;
    }
    let now = Timestamp::now_utc();
    let fleet = view::issued(cmd, now)?;
    gates::check(cmd, &fleet, user_present(ctx, cmd), now).ok()?;
    let slot = ctx.slots.clone().try_acquire_owned().ok()?;
    view::remember_issued(ctx, cmd);
    Some(StartedNow { slot, at: now })
}

/// Unix: the account named by `[exec] user`; Windows: whoever is signed in at the console.
fn user_present(ctx: &Ctx, cmd: &Command) -> bool {
    match cmd.run_as {
        RunAs::User if cfg!(windows) => exec::console_user_present(),
        RunAs::User => ctx.settings.exec_user.is_some(),
        _ => false,
    }
}

pub(crate) async fn execute(ctx: Arc<Ctx>, cmd: Command, via: Via, started: Option<StartedNow>) {
    let registered = ctx.kills.register(cmd.exec_id, now_ms());
    // The long way and the live executor are boxed: inline they made every run's task 14 KB
    // (2.5 KB without), and at 10,000 simulated agents, faulting in fresh heap for those tasks
    // took 8% of the simulator's CPU per broadcast (4% after).
    let mut result = match started {
        None => Box::pin(run_to_result(&ctx, &cmd, via, registered.killed.clone())).await,
        Some(started) => {
            let _slot = started.slot;
            if *registered.killed.borrow() {
                // A kill heard before the command came: skipped as on the long way.
                let message = "killed before it started: a kill for it reached this agent".to_owned();
                skipped(&ctx, &cmd, gates::Skip { reason: wire::SkipReason::Killed, message })
            } else {
                let script = cmd.script.clone().unwrap_or_default();
                run_started(&ctx, &cmd, &script, started.at, registered.killed.clone()).await
            }
        }
    };
    drop(registered);
    let events = emitted_events(&ctx, &cmd, &mut result);
    if let Err(e) = ctx.store.finish_with(cmd.exec_id, &events, &outgoing(&ctx, &result), now_ms()) {
        // The ledger still says running: at next start this run is reported `unknown`.
        tracing::error!(exec_id = %cmd.exec_id, error = %e, "cannot record the result");
    }
    tracing::info!(exec_id = %cmd.exec_id, job_id = %cmd.job_id, status = result.status.as_str(), exit_code = ?result.exit_code, "run finished");
    ctx.outbox_wake.notify_one();
}

/// Problems with emitted lines named in the result's stderr at most; the rest are counted.
const EMIT_PROBLEMS_SHOWN: usize = 20;

/// With `emit: events`, the run's stdout becomes its events (queued right after the result) and is
/// not kept as output; lines that are not events are named in stderr.
fn emitted_events(ctx: &Ctx, cmd: &Command, result: &mut ExecResult) -> Vec<Outgoing> {
    if cmd.emit != Emit::Events {
        return Vec::new();
    }
    let stdout = std::mem::take(&mut result.stdout);
    let (events, problems) =
        wire::obs::parse_emitted(&stdout, cmd.exec_id, &ctx.settings.pc, Timestamp::now_utc());
    let mut note = String::new();
    if result.truncated {
        // The cut line itself shows up among the problems as not an event.
        note.push_str(&format!(
            "kanade: stdout was cut at {} bytes; events after the cut are lost\n",
            ctx.settings.output_cap
        ));
    }
    if !problems.is_empty() {
        note.push_str(&format!("kanade: {} stdout line(s) are not events (emit: events):\n", problems.len()));
        for p in problems.iter().take(EMIT_PROBLEMS_SHOWN) {
            note.push_str(p);
            note.push('\n');
        }
        if problems.len() > EMIT_PROBLEMS_SHOWN {
            note.push_str(&format!("... and {} more\n", problems.len() - EMIT_PROBLEMS_SHOWN));
        }
    }
    result.stderr.insert_str(0, &note);
    tracing::info!(exec_id = %cmd.exec_id, events = events.len(), refused = problems.len(), "events emitted");
    events.iter().filter_map(|e| super::obs::outgoing(ctx, e)).collect()
}

/// A wait before the start longer than this (jitter, a full concurrency cap) reads the fleet
/// view again, so a revoke or kill made meanwhile is obeyed.
const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// Read everything the gates judge, then judge. `Err` is the skipped result to send.
/// `issued_view`: the command's own fleet view may stand in for reading it (a command heard
/// live, judged on arrival; see [`view::issued`]).
async fn gate(
    ctx: &Ctx,
    cmd: &Command,
    read_kills: bool,
    issued_view: bool,
    kill: &watch::Receiver<bool>,
) -> Result<(), ExecResult> {
    let (mut fleet, record) = tokio::join!(view::for_command(ctx, cmd, issued_view), async {
        if read_kills { view::kill_record(ctx, cmd.exec_id).await } else { None }
    });
    fleet.killed = record.or_else(|| (*kill.borrow()).then(|| "a kill for it reached this agent".to_owned()));
    gates::check(cmd, &fleet, user_present(ctx, cmd), Timestamp::now_utc())
        .map_err(|skip| skipped(ctx, cmd, skip))
}

fn skipped(ctx: &Ctx, cmd: &Command, skip: gates::Skip) -> ExecResult {
    let mut result = base_result(ctx, cmd, ExecStatus::Skipped, 1);
    result.exit_code = skip.reason.exit_code();
    result.skip_reason = Some(skip.reason);
    result.message = Some(skip.message);
    result
}

async fn run_to_result(ctx: &Arc<Ctx>, cmd: &Command, via: Via, kill: watch::Receiver<bool>) -> ExecResult {
    let killed = || {
        let mut rx = kill.clone();
        async move {
            let _ = rx.wait_for(|k| *k).await;
        }
    };
    if let Err(skipped) = gate(ctx, cmd, via != Via::Live, via == Via::Live, &kill).await {
        return skipped;
    }
    let admitted = std::time::Instant::now();
    if cmd.jitter_secs > 0 {
        let delay = Duration::from_millis(fastrand::u64(0..cmd.jitter_secs * 1000));
        tracing::debug!(exec_id = %cmd.exec_id, delay_ms = delay.as_millis() as u64, "waiting out the jitter");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = killed() => {}
        }
    }
    // The slot is taken only now: a run sleeping out its jitter must not hold one.
    let slot = tokio::select! {
        slot = ctx.slots.acquire() => Some(slot),
        () = killed() => None,
    };
    let waited =
        slot.is_none() || cmd.jitter_secs > 0 || admitted.elapsed() >= RECHECK_AFTER || *kill.borrow();
    if waited && let Err(skipped) = gate(ctx, cmd, true, false, &kill).await {
        return skipped;
    }
    let _slot = slot;
    let script = match view::script(ctx, cmd).await {
        Ok(script) => script,
        Err(message) => {
            let mut result = base_result(ctx, cmd, ExecStatus::Failed, 1);
            result.message = Some(message);
            return result;
        }
    };
    let started_at = Timestamp::now_utc();
    // The ledger records the start now; the `started` event waits out [`ANNOUNCE_AFTER`].
    if let Err(e) = ctx.store.mark_running(cmd.exec_id, now_ms(), None) {
        let mut result = base_result(ctx, cmd, ExecStatus::Failed, 1);
        result.message = Some(format!("not run: cannot record its start ({e})"));
        return result;
    }
    run_started(ctx, cmd, &script, started_at, kill).await
}

/// Run a command whose start is recorded, with its retries, to its result.
async fn run_started(
    ctx: &Arc<Ctx>,
    cmd: &Command,
    script: &str,
    started_at: Timestamp,
    kill: watch::Receiver<bool>,
) -> ExecResult {
    let killed = || {
        let mut rx = kill.clone();
        async move {
            let _ = rx.wait_for(|k| *k).await;
        }
    };
    let live = ctx.live.start(cmd.exec_id);
    let max_attempts = 1 + cmd.retry.map_or(0, |r| r.max);
    let mut attempt = 1;
    loop {
        if attempt > 1 {
            announce(ctx, cmd, attempt, started_at);
            live.note(&format!("[kanade] attempt {attempt} of {max_attempts} starts"));
        }
        ctx.running.fetch_add(1, Ordering::Relaxed);
        let spec = RunSpec {
            shell: cmd.shell,
            script,
            timeout: Duration::from_secs(cmd.timeout_secs.max(1)),
            cwd: cmd.cwd.as_deref().map(std::path::Path::new),
            env: &cmd.env,
            staging_dir: &ctx.staging_dir(),
            name: &cmd.exec_id.to_string(),
            output_cap: ctx.settings.output_cap,
            live: Some(live.output.clone()),
            identity: match (cmd.run_as, ctx.settings.exec_user.as_deref()) {
                (RunAs::System, _) => Identity::Agent,
                (RunAs::User, Some(name)) if cfg!(unix) => Identity::Account(name),
                // Windows; and anything but `system` never falls back to the agent's account.
                _ => Identity::ConsoleUser,
            },
        };
        let run = async {
            match &ctx.settings.fake_executor {
                None => Box::pin(exec::run(spec, killed())).await,
                Some(fake) => Ok(fake.run(cmd.exec_id, &ctx.settings.pc, spec.timeout, killed()).await),
            }
        };
        let outcome = if attempt > 1 {
            run.await
        } else {
            // Announced in the same task as the result is recorded: a `started` event, when
            // there is one, is always queued before the result.
            tokio::pin!(run);
            tokio::select! {
                outcome = &mut run => outcome,
                () = tokio::time::sleep(ANNOUNCE_AFTER) => {
                    announce(ctx, cmd, 1, started_at);
                    run.await
                }
            }
        };
        ctx.running.fetch_sub(1, Ordering::Relaxed);
        let mut result = base_result(ctx, cmd, ExecStatus::Failed, attempt);
        result.started_at = Some(started_at);
        match outcome {
            Ok(out) => {
                result.status = match (out.ending, out.exit_code) {
                    (Ending::Exited, Some(0)) => ExecStatus::Succeeded,
                    (Ending::Exited, _) => ExecStatus::Failed,
                    (Ending::TimedOut, _) => ExecStatus::TimedOut,
                    (Ending::Killed, _) => ExecStatus::Killed,
                };
                if out.ending == Ending::TimedOut {
                    result.message = Some(format!("timed out after {}s", cmd.timeout_secs));
                }
                result.exit_code = out.exit_code;
                result.stdout = out.stdout;
                result.stderr = out.stderr;
                result.truncated = out.truncated;
            }
            Err(e) => result.message = Some(e.to_string()),
        }
        result.finished_at = Timestamp::now_utc();
        let retryable = matches!(result.status, ExecStatus::Failed | ExecStatus::TimedOut);
        if !retryable || attempt >= max_attempts || *kill.borrow() {
            return result;
        }
        let backoff = Duration::from_secs(cmd.retry.map_or(0, |r| r.backoff_secs));
        tracing::info!(exec_id = %cmd.exec_id, attempt, ?backoff, "run failed; retrying");
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = killed() => return result,
        }
        attempt += 1;
    }
}

/// A run still going this long after its start is announced with a `started` event (the
/// dashboard's and `kanade run`'s "running"); one that ends sooner sends only its result, which
/// carries `started_at`: at 10,000 agents that halves what a quick job costs the broker and the
/// projector.
pub(crate) const ANNOUNCE_AFTER: Duration = Duration::from_secs(1);

fn announce(ctx: &Ctx, cmd: &Command, attempt: u32, started_at: Timestamp) {
    tracing::info!(exec_id = %cmd.exec_id, job_id = %cmd.job_id, attempt, "run still going; announced as started");
    let Some(message) = started_event(ctx, cmd, attempt, started_at) else { return };
    if let Err(e) = ctx.store.enqueue(&message) {
        tracing::warn!(error = %e, "cannot queue the started event");
    }
    ctx.outbox_wake.notify_one();
}

fn started_event(ctx: &Ctx, cmd: &Command, attempt: u32, started_at: Timestamp) -> Option<Outgoing> {
    let event = StartedEvent {
        schema: wire::SCHEMA,
        result_id: ResultId::derive(cmd.exec_id, &ctx.settings.pc),
        request_id: cmd.request_id,
        exec_id: cmd.exec_id,
        job_id: cmd.job_id.clone(),
        pc_id: ctx.settings.pc.clone(),
        attempt,
        started_at,
    };
    let payload = wire::encode(&event).ok()?;
    Some(Outgoing {
        seq: 0,
        msg_id: format!("started-{}-{attempt}.{}", event.result_id, ctx.msg_secret),
        subject: subjects::event_started(&ctx.settings.pc, cmd.exec_id),
        payload,
    })
}

/// Answer a refused command with a `failed` result under the refusal identity (see
/// `ResultId::refusal`: a hash of the refused message, never a run key), so operators see why
/// and the real exec's result is never displaced. Answers are rate-limited per agent: a flood
/// of forgeries must not turn into a flood of disk flushes and results.
pub(crate) fn report_refusal(
    ctx: &Ctx,
    cmd: &Command,
    subject: &str,
    payload: &[u8],
    why: &str,
) -> Result<(), StoreError> {
    if !ctx.refusals.lock().unwrap_or_else(|p| p.into_inner()).allow(now_ms()) {
        tracing::debug!(exec_id = %cmd.exec_id, "refusal not answered: too many refusals this minute");
        return Ok(());
    }
    let mut result = base_result(ctx, cmd, ExecStatus::Failed, 0);
    result.result_id = ResultId::refusal(subject, payload, &ctx.settings.pc);
    result.message = Some(why.to_owned());
    ctx.store.enqueue(&outgoing(ctx, &result))?;
    ctx.outbox_wake.notify_one();
    Ok(())
}

fn base_result(ctx: &Ctx, cmd: &Command, status: ExecStatus, attempt: u32) -> ExecResult {
    ExecResult {
        schema: wire::SCHEMA,
        result_id: ResultId::derive(cmd.exec_id, &ctx.settings.pc),
        request_id: cmd.request_id,
        exec_id: cmd.exec_id,
        job_id: cmd.job_id.clone(),
        version: cmd.version.clone(),
        pc_id: ctx.settings.pc.clone(),
        exit_code: None,
        status,
        skip_reason: None,
        message: None,
        stdout: String::new(),
        stderr: String::new(),
        truncated: false,
        started_at: None,
        finished_at: Timestamp::now_utc(),
        attempt,
    }
}

fn outgoing(ctx: &Ctx, result: &ExecResult) -> Outgoing {
    let mut result = result.clone();
    let payload = fit::fit_result(&mut result, fit::payload_budget(ctx));
    Outgoing {
        seq: 0,
        msg_id: format!("{}.{}", result.result_id, ctx.msg_secret),
        subject: subjects::result(&ctx.settings.pc, result.request_id),
        payload,
    }
}
