//! The exec pipeline shared by `POST /api/exec`, `POST /api/deploy` and the scheduler:
//! resolve the script → expected PCs → pin `script_current` → store the execution with its
//! waves and its `exec.create` audit event (in the outbox) → publish wave 0 → record it
//! published. `exec.create` lets a wiped projection rebuild the execution; it is sent right
//! before wave 0 and confirmed after it. A backend that dies before wave 0 is recorded leaves
//! it pending: the rollout dispatcher publishes it after [`FIRST_WAVE_GRACE`].

pub mod catalog;
pub mod plan;
pub mod rollout;

use async_nats::jetstream;
use async_nats::jetstream::context::{PublishAckFuture, PublishError};
use kanade_shared::manifest::{Manifest, Plan, ScriptSource, Target};
use kanade_shared::subjects;
use kanade_shared::wire::{self, AuditEvent, Command, Timestamp};
use kanade_shared::{AuditId, ExecId, JobId};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

pub use kanade_shared::api::executions::Launched;

use crate::db::outbox::Outgoing;
use crate::db::projection::{self, ExecCreated, ExecStep};
use crate::db::{Db, DbError, now_ms};
use crate::events::Bus;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// The broker did not answer or take it: what was being done, and the client's error.
    #[error("broker: {what}: {source}")]
    Broker {
        what: String,
        #[source]
        source: BrokerError,
    },
    /// The broker will not take this message however often it is sent (too large, no such
    /// stream configuration): unlike a lost ack, retrying does not help.
    #[error("refused by the broker: {0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A NATS client error, kept whole (its kind and cause) under [`ExecError::Broker`].
pub type BrokerError = Box<dyn std::error::Error + Send + Sync>;

impl ExecError {
    /// The broker failed while doing `what`.
    pub fn broker(what: impl Into<String>, source: impl Into<BrokerError>) -> Self {
        Self::Broker { what: what.into(), source: source.into() }
    }
}

/// What the dispatcher needs to publish later waves, kept in `executions.plan_json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub command: Command,
    pub max_failure_ratio: Option<f64>,
    /// The job's check and facts, applied to each result as it is projected.
    #[serde(default, skip_serializing_if = "kanade_shared::manifest::outputs::Outputs::is_empty")]
    pub outputs: kanade_shared::manifest::outputs::Outputs,
}

/// Who asked for an execution, and what it carries beyond the manifest and plan.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub actor: String,
    pub source: Option<String>,
    /// Which client asked (see [`kanade_shared::wire::AuditEvent::client`]).
    pub client: String,
    /// Set when a schedule fired it; the scheduler's bookkeeping reads it back.
    pub schedule_id: Option<String>,
    /// Stamped onto the command (a schedule's `on_failure.retry`).
    pub retry: Option<kanade_shared::wire::Retry>,
    /// Accept explicit PCs that have never sent a heartbeat (a PC not installed yet). Without
    /// it such a target is refused with their names: a typo must not make an execution that
    /// waits for nobody.
    pub allow_unknown: bool,
}

impl Origin {
    pub fn actor(actor: &str) -> Self {
        Self { actor: actor.to_owned(), ..Self::default() }
    }
}

#[derive(Clone)]
pub struct Pipeline {
    pub db: Db,
    pub js: jetstream::Context,
    /// The KV buckets the pipeline reads and writes, opened once.
    pub buckets: crate::buckets::Buckets,
    pub bus: Bus,
    /// Signs every published command; `None` publishes unsigned (only agents without pinned
    /// keys accept those).
    pub signer: Option<std::sync::Arc<ed25519_dalek::SigningKey>>,
    /// How long after issue a command may still start when its plan does not say
    /// (`[exec] start_within`).
    pub start_within: std::time::Duration,
}

impl Pipeline {
    pub async fn exec(
        &self,
        manifest: &Manifest,
        plan: &Plan,
        origin: &Origin,
    ) -> Result<Launched, ExecError> {
        let t0 = std::time::Instant::now();
        let script = self.resolve_script(manifest).await?;
        let agents = self.db.known_agents().await?;
        let t_agents = t0.elapsed();
        let unknown = plan::unknown_pcs(plan, &agents);
        if !unknown.is_empty() && !origin.allow_unknown {
            return Err(ExecError::Invalid(plan::unknown_pcs_problem(&unknown)));
        }
        let now = now_ms();
        let exec_id = ExecId::new();
        let jitter = plan.jitter.or(manifest.jitter).map_or(0, |d| d.as_secs());
        let issued_at = Timestamp::now_utc();
        let mut template = plan::command(manifest, exec_id, script, jitter, origin.retry, issued_at);
        template.deadline_at = Some(plan::deadline(plan, self.start_within, issued_at));
        template.issued_view = self.issued_view(&manifest.id).await;

        // Every execution has a wave 0, published by this request; a rollout has later ones.
        let all_waves: Vec<(i64, i64, Target)> = match &plan.rollout {
            Some(rollout) => rollout
                .waves
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let target =
                        Target { pcs: w.pcs.clone(), groups: w.group.iter().cloned().collect(), all: false };
                    (i as i64, if i == 0 { now } else { now + w.delay.get().as_millis() as i64 }, target)
                })
                .collect(),
            None => vec![(0, now, plan.target.clone())],
        };
        let first = all_waves
            .first()
            .map(|(_, _, t)| t.clone())
            .ok_or_else(|| ExecError::Invalid("rollout has no waves".into()))?;
        let targets: Vec<(String, i64)> =
            plan::expected_pcs(&first, &agents, now).into_iter().map(|p| (p.to_string(), 0)).collect();
        let waves: Vec<(i64, i64, String)> = all_waves
            .iter()
            .map(|(i, due, t)| (*i, *due, serde_json::to_string(t).unwrap_or_default()))
            .collect();
        let stored = Stored {
            command: template.clone(),
            max_failure_ratio: plan.rollout.as_ref().and_then(|r| r.max_failure_ratio),
            outputs: kanade_shared::manifest::outputs::Outputs {
                check: manifest.check.clone(),
                facts: manifest.facts.clone(),
            },
        };
        let created = ExecCreated {
            exec_id: exec_id.to_string(),
            job_id: manifest.id.to_string(),
            version: manifest.version.to_string(),
            plan: serde_json::to_value(&stored).unwrap_or_default(),
            target_count: targets.len() as i64,
            targets: targets.clone(),
            waves: waves.clone(),
            schedule_id: origin.schedule_id.clone(),
            // An ad-hoc job's id says nothing: name it by its script.
            title: manifest
                .id
                .is_adhoc()
                .then(|| JobId::adhoc_title(template.script.as_deref().unwrap_or_default())),
        };
        // Pinned before the execution exists: a broker that does not take the pin leaves
        // nothing behind.
        self.pin_version(exec_id, manifest).await?;
        let t_pin = t0.elapsed();
        // The creation's audit event goes into the outbox with the execution: AUDIT gets it even
        // if the broker is away now or this backend dies before sending it.
        let created_event = audit_message(
            &origin.actor,
            "exec.create",
            Some(manifest.id.to_string()),
            origin.source.clone(),
            &origin.client,
            serde_json::to_value(&created).unwrap_or_default(),
        )?;
        let publish_by = now + FIRST_WAVE_GRACE.as_millis() as i64;
        self.db
            .insert_execution_audited(
                created.clone(),
                origin.actor.clone(),
                now,
                publish_by,
                created_event.outgoing(),
            )
            .await?;
        crate::failpoint::hit("exec.stored");
        let t_insert = t0.elapsed();
        let mut note = None;
        match self.announce(created_event, &template, &first).await {
            Ok(()) => {
                if let Err(e) = self.db.first_wave_published(exec_id, now).await {
                    tracing::warn!(%exec_id, error = %e, "wave 0 went out but is not recorded; the dispatcher publishes it again (agents run it once)");
                }
            }
            // Commands the broker will never take: the execution ends with the reason.
            Err(ExecError::Refused(why)) => {
                let message = format!("the broker refused the commands: {why}");
                self.abort(exec_id, message.clone()).await;
                return Err(ExecError::Refused(format!(
                    "{why}; execution {exec_id} is marked aborted (some PCs may have received its command and report under it)"
                )));
            }
            // Not confirmed (the broker away, a lost ack): wave 0 stays pending and the
            // dispatcher publishes it when it falls due. Failing the request instead would
            // invite the operator to exec again, and run the job twice.
            Err(e) => {
                tracing::warn!(%exec_id, error = %e, "commands not confirmed; the rollout dispatcher publishes wave 0");
                note = Some(format!(
                    "the broker did not confirm the commands ({e}); the rollout dispatcher publishes them from {} s after creation, and each PC runs them once",
                    FIRST_WAVE_GRACE.as_secs()
                ));
            }
        }
        let t_publish = t0.elapsed();
        tracing::debug!(
            %exec_id,
            targets = targets.len(),
            agents_ms = t_agents.as_millis(),
            inserted_ms = t_insert.as_millis(),
            pinned_ms = t_pin.as_millis(),
            published_and_audited_ms = t_publish.as_millis(),
            "exec launched (cumulative step times)"
        );
        self.bus.execution(exec_id);
        Ok(Launched {
            exec_id,
            job_id: manifest.id.clone(),
            version: manifest.version.to_string(),
            target_count: targets.len(),
            waves: all_waves.len(),
            note,
        })
    }

    /// End a stored execution whose commands cannot go out, with its `exec.aborted` event in the
    /// outbox.
    async fn abort(&self, exec_id: ExecId, message: String) {
        let step = ExecStep { exec_id, wave: None, targets: Vec::new(), message: Some(message) };
        let detail = serde_json::to_value(&step).unwrap_or_default();
        let aborted = match audit_message(
            "backend",
            "exec.aborted",
            Some(exec_id.to_string()),
            None,
            "backend",
            detail,
        ) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(%exec_id, error = %e, "cannot build the exec.aborted event");
                return;
            }
        };
        let ended =
            self.db.ended_early_audited(step, projection::Ended::Aborted, now_ms(), aborted.outgoing());
        if let Err(db) = ended.await {
            tracing::error!(%exec_id, error = %db, "cannot mark an execution whose commands were refused as aborted");
        }
    }

    /// Audit the execution's creation and publish its first wave. The audit event is sent just
    /// before the commands, on the same connection, and its ack awaited after theirs: sent after
    /// them, it reached the broker behind the whole fleet's answers and the operator waited for
    /// that (1.5 s at 10,000 agents). Its ack is still awaited before the operator is told the
    /// exec was created.
    ///
    /// Fails only when the commands did not all go out. Once they did, the execution is under
    /// way whatever happens to its audit event: an event not confirmed stays in the outbox,
    /// which sends it later.
    async fn announce(&self, created: Message, template: &Command, first: &Target) -> Result<(), ExecError> {
        let id = created.id.clone();
        if crate::failpoint::armed("exec.unconfirmed") {
            return Err(ExecError::broker(
                "publishing the commands",
                "KANADE_FAILPOINT=exec.unconfirmed: nothing sent",
            ));
        }
        let audit = created.send_pending(&self.js).await;
        publish_commands(&self.js, self.signer.as_deref(), template, first).await?;
        match audit.confirmed(&self.js).await {
            // Sent: out of the outbox (left there, the drainer would send it again, deduplicated).
            Ok(()) => {
                if let Err(e) = self.db.audit_sent(id).await {
                    tracing::warn!(error = %e, "cannot clear a sent audit event from the outbox");
                }
            }
            Err(ExecError::Refused(why)) => {
                tracing::error!(
                    why,
                    "AUDIT refuses this exec.create; it is kept in the outbox, no longer sent"
                );
                if let Err(e) = self.db.audit_refused(id).await {
                    tracing::warn!(error = %e, "cannot mark a refused audit event");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "exec.create not confirmed by AUDIT; the outbox sends it again")
            }
        }
        Ok(())
    }

    /// Stop an execution, not only the processes running now: mark it killed (its pending waves
    /// cancelled, so the dispatcher never publishes them), record the kill in `exec_kills` for
    /// agents that are away and check it when they come back, then tell every agent running
    /// it. The caller has audited the kill (`exec.kill`), which rebuilds the first step after a
    /// wipe; the record outlives every command of the exec in EXEC.
    pub async fn stop(&self, nats: &async_nats::Client, exec_id: ExecId, by: &str) -> Result<(), ExecError> {
        let step =
            ExecStep { exec_id, wave: None, targets: Vec::new(), message: Some(format!("killed by {by}")) };
        let now = now_ms();
        self.db.ended_early(step, projection::Ended::Killed, now).await?;
        self.bus.execution(exec_id);
        // The runs going now are stopped whatever happens to the record below.
        let sent = self.kill(nats, exec_id).await;
        let recorded = async {
            let kv = self.buckets.get(kanade_shared::jetstream::EXEC_KILLS).await?;
            kv.put(exec_id.to_string(), format!("killed by {by}").into()).await?;
            Ok::<(), async_nats::Error>(())
        }
        .await
        .map_err(|e| {
            ExecError::broker(
                "the kill was sent but not recorded for PCs that are away (kill it again to record it)",
                e,
            )
        });
        sent.and(recorded)
    }

    /// Tell every agent running `exec_id` to stop it (signed like commands). Agents that hear
    /// it before the command remember it for a while.
    pub async fn kill(&self, nats: &async_nats::Client, exec_id: ExecId) -> Result<(), ExecError> {
        let subject = subjects::kill(exec_id);
        let payload = b"kill".to_vec();
        let headers =
            kanade_shared::signing::signed_headers(self.signer.as_deref(), &subject, &payload, now_ms());
        nats.publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(|e| ExecError::broker(format!("publishing the kill of {exec_id}"), e))?;
        nats.flush().await.map_err(|e| ExecError::broker(format!("flushing the kill of {exec_id}"), e))
    }

    /// The fleet must run this version from now on (layer 2 of stop-the-bleed).
    /// The job's revoke status now, stamped onto the command so agents that get it live need
    /// not read it themselves. `None` when the broker cannot say: agents then read it.
    async fn issued_view(&self, job: &JobId) -> Option<wire::IssuedView> {
        let read = async {
            let kv = self.buckets.get("script_status").await?;
            anyhow::Ok(kv.get(job.as_str()).await?)
        };
        match read.await {
            Ok(status) => Some(wire::IssuedView {
                revoked: status.is_some_and(|s| s.as_ref().eq_ignore_ascii_case(b"REVOKED")),
            }),
            Err(e) => {
                tracing::warn!(job_id = %job, error = %e, "cannot read script_status; agents read it themselves");
                None
            }
        }
    }

    /// The put goes out as a stream message under this exec's own `Nats-Msg-Id` and is retried
    /// like a command's publish (right after a cluster lost a node the bucket may still be
    /// electing a leader): a retry whose first attempt was stored after all is dropped as a
    /// duplicate, so it can never land over a later exec's pin. Retried only while the broker
    /// is connected, and for less long than the commands, which may still need their own
    /// retries within the same request: with the broker away it fails after one attempt.
    async fn pin_version(&self, exec_id: ExecId, manifest: &Manifest) -> Result<(), ExecError> {
        let what = || format!("pinning {} to version {}", manifest.id, manifest.version);
        let kv = self
            .buckets
            .get("script_current")
            .await
            .map_err(|e| ExecError::broker("opening script_current", e))?;
        let subject = format!("{}{}", kv.put_prefix.as_deref().unwrap_or(&kv.prefix), manifest.id);
        let pin = Message::with_id(format!("pin-{exec_id}"), subject, manifest.version.to_string().into());
        let Err(first) = acked(pin.send(&self.js).await).await else { return Ok(()) };
        let client = self.js.client();
        let connected = || client.connection_state() == async_nats::connection::State::Connected;
        retry_publish(&self.js, &pin, first, PIN_RETRY_FOR, connected).await.map_err(|e| match e {
            ExecError::Broker { source, .. } => ExecError::Broker { what: what(), source },
            other => other,
        })
    }

    /// (inline script, object key, sha256) for the command.
    async fn resolve_script(
        &self,
        m: &Manifest,
    ) -> Result<(Option<String>, Option<String>, Option<String>), ExecError> {
        match &m.execute.source {
            ScriptSource::Inline(s) => Ok((Some(s.clone()), None, None)),
            ScriptSource::File(f) => Err(ExecError::Invalid(format!(
                "execute.script_file: {f:?} must be inlined before sending (kanade deploy does this)"
            ))),
            ScriptSource::Object(key) => {
                let store = self
                    .js
                    .get_object_store("scripts")
                    .await
                    .map_err(|e| ExecError::broker("opening the scripts store", e))?;
                // The object's metadata, not its body: every execution checks the script is still
                // there and still what the job names, without reading it each time.
                let info = store.info(key).await.map_err(|e| {
                    ExecError::Invalid(format!(
                        "execute.script_object: {key:?} is not in the scripts store ({e})"
                    ))
                })?;
                // A deleted object leaves a marker whose info still answers.
                if info.deleted {
                    return Err(ExecError::Invalid(format!(
                        "execute.script_object: {key:?} is not in the scripts store (deleted)"
                    )));
                }
                let sha = match info.digest.as_deref().and_then(kanade_shared::files::object_digest_hex) {
                    Some(sha) => sha,
                    None => {
                        let mut object = store
                            .get(key)
                            .await
                            .map_err(|e| ExecError::broker(format!("reading script {key}"), e))?;
                        let mut body = Vec::new();
                        object
                            .read_to_end(&mut body)
                            .await
                            .map_err(|e| ExecError::broker(format!("reading script {key}"), e))?;
                        kanade_shared::files::sha256_hex(&body)
                    }
                };
                if let Some(want) = &m.execute.script_sha256
                    && !want.eq_ignore_ascii_case(&sha)
                {
                    return Err(ExecError::Invalid(format!(
                        "execute.script_sha256: {want} does not match {key} in the scripts store ({sha})"
                    )));
                }
                Ok((None, Some(key.clone()), Some(sha)))
            }
        }
    }
}

/// Publish one copy of `template` per subject of `target`, each with its own request id (also
/// its `Nats-Msg-Id`), and wait for every JetStream ack.
pub async fn publish_commands(
    js: &jetstream::Context,
    signer: Option<&ed25519_dalek::SigningKey>,
    template: &Command,
    target: &Target,
) -> Result<usize, ExecError> {
    let mut pending = Vec::new();
    for t in plan::subjects_for(target) {
        let mut cmd = template.clone();
        cmd.request_id = kanade_shared::RequestId::new();
        let payload: bytes::Bytes = wire::encode(&cmd).map_err(|e| ExecError::Invalid(e.to_string()))?.into();
        let subject = subjects::command(&t, &cmd.job_id);
        let mut headers = kanade_shared::signing::signed_headers(signer, &subject, &payload, now_ms());
        headers.insert("Nats-Msg-Id", cmd.request_id.to_string().as_str());
        let message = Message { id: cmd.request_id.to_string(), subject, headers, payload };
        // Sent together, acks awaited after: one round trip for a target of many subjects.
        pending.push(message.send_pending(js).await);
    }
    let n = pending.len();
    for sent in pending {
        sent.confirmed(js).await?;
    }
    Ok(n)
}

/// Publish each `(Nats-Msg-Id, subject, payload)` and wait for every JetStream ack (a lost one
/// retried under the same id, which the stream deduplicates).
pub async fn publish_with_ids(
    js: &jetstream::Context,
    messages: Vec<(String, String, bytes::Bytes)>,
) -> Result<usize, ExecError> {
    let mut pending = Vec::with_capacity(messages.len());
    for (id, subject, payload) in messages {
        pending.push(Message::with_id(id, subject, payload).send_pending(js).await);
    }
    let n = pending.len();
    for sent in pending {
        sent.confirmed(js).await?;
    }
    Ok(n)
}

/// A message for a stream, kept for its retries.
pub struct Message {
    /// Its `Nats-Msg-Id`.
    id: String,
    subject: String,
    headers: async_nats::HeaderMap,
    payload: bytes::Bytes,
}

impl Message {
    fn with_id(id: String, subject: String, payload: bytes::Bytes) -> Self {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        Self { id, subject, headers, payload }
    }

    /// As the outbox keeps it (audit events are JSON).
    pub fn outgoing(&self) -> Outgoing {
        Outgoing {
            id: self.id.clone(),
            subject: self.subject.clone(),
            payload: String::from_utf8_lossy(&self.payload).into_owned(),
        }
    }

    async fn send(&self, js: &jetstream::Context) -> Result<PublishAckFuture, PublishError> {
        js.publish_with_headers(self.subject.clone(), self.headers.clone(), self.payload.clone()).await
    }

    /// Send without waiting for the ack; [`Pending::confirmed`] waits (and retries).
    async fn send_pending(self, js: &jetstream::Context) -> Pending {
        Pending { sent: self.send(js).await, message: self }
    }
}

/// A stream message on its way whose ack has not been awaited yet.
pub struct Pending {
    sent: Result<PublishAckFuture, PublishError>,
    message: Message,
}

impl Pending {
    /// Wait for the ack, retrying a lost one under the same `Nats-Msg-Id`.
    pub async fn confirmed(self, js: &jetstream::Context) -> Result<(), ExecError> {
        match acked(self.sent).await {
            Ok(()) => Ok(()),
            Err(e) => retry_publish(js, &self.message, e, PUBLISH_RETRY_FOR, || true).await,
        }
    }
}

async fn acked(sent: Result<PublishAckFuture, PublishError>) -> Result<(), PublishError> {
    sent?.await.map(drop)
}

/// How long after storing an execution its request has to publish wave 0 before the rollout
/// dispatcher does (the request's backend died in between). Past the request's own retries: a
/// request still retrying should not race the dispatcher.
const FIRST_WAVE_GRACE: std::time::Duration = std::time::Duration::from_secs(2 * PUBLISH_RETRY_FOR.as_secs());

/// How long a publish that timed out or lost the connection is retried: long enough for a
/// cluster to elect a new stream leader after losing a node (a few seconds).
const PUBLISH_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(15);

/// The version pin's retries: an election after a node's death takes seconds, and the same
/// request may then retry its commands for [`PUBLISH_RETRY_FOR`] (the CLI waits 30 s).
const PIN_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(8);

/// After `first` failed: a lost ack does not mean a lost message (right after a broker restart
/// the store may have it), so a timeout is retried with the same headers — the same
/// `Nats-Msg-Id`, which the stream deduplicates — rather than reported to an operator who would
/// then exec again and run the job twice. For `retry_for`, while `keep_on` holds.
async fn retry_publish(
    js: &jetstream::Context,
    message: &Message,
    first: PublishError,
    retry_for: std::time::Duration,
    keep_on: impl Fn() -> bool,
) -> Result<(), ExecError> {
    let mut last = first;
    let give_up = std::time::Instant::now() + retry_for;
    let mut attempt = 0;
    while std::time::Instant::now() < give_up && keep_on() {
        if matches!(last.kind(), jetstream::context::PublishErrorKind::MaxPayloadExceeded) {
            return Err(ExecError::Refused(format!("{} (subject {})", last, message.subject)));
        }
        if !worth_retrying(last.kind()) {
            break;
        }
        attempt += 1;
        tracing::warn!(subject = %message.subject, attempt, error = %last, "publish not acknowledged; retrying");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        match acked(message.send(js).await).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(ExecError::broker(format!("publishing to {}", message.subject), last))
}

/// Whether a publish that failed this way may succeed when sent again. A stream without a
/// leader (mid-election) answers "no responders", which the client reports as
/// `StreamNotFound`: retried too, so a missing stream is reported 15 s late.
fn worth_retrying(kind: jetstream::context::PublishErrorKind) -> bool {
    use jetstream::context::PublishErrorKind::{BrokenPipe, StreamNotFound, TimedOut};
    matches!(kind, TimedOut | BrokenPipe | StreamNotFound)
}

pub async fn audit(
    js: &jetstream::Context,
    actor: &str,
    action: &str,
    target: Option<String>,
    source: Option<String>,
    client: &str,
    detail: serde_json::Value,
) -> Result<(), ExecError> {
    send_audit(js, actor, action, target, source, client, detail).await?.confirmed(js).await
}

/// Send an audit event without waiting for its ack.
pub async fn send_audit(
    js: &jetstream::Context,
    actor: &str,
    action: &str,
    target: Option<String>,
    source: Option<String>,
    client: &str,
    detail: serde_json::Value,
) -> Result<Pending, ExecError> {
    Ok(audit_message(actor, action, target, source, client, detail)?.send_pending(js).await)
}

/// An audit event as a stream message under its own id: stored in the outbox with the change
/// it describes ([`Message::outgoing`]), then sent with [`send_stored_audit`].
pub fn audit_message(
    actor: &str,
    action: &str,
    target: Option<String>,
    source: Option<String>,
    client: &str,
    detail: serde_json::Value,
) -> Result<Message, ExecError> {
    let event = AuditEvent {
        schema: wire::SCHEMA,
        id: AuditId::new(),
        at: Timestamp::now_utc(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target,
        source,
        client: Some(client.to_owned()),
        detail,
    };
    let subject = subjects::audit(action).map_err(|e| ExecError::Invalid(e.to_string()))?;
    let payload = wire::encode(&event).map_err(|e| ExecError::Invalid(e.to_string()))?;
    Ok(Message::with_id(event.id.to_string(), subject, payload.into()))
}

/// Send an audit event the outbox holds (stored with its change); cleared once AUDIT has it,
/// else left for the drainer. Never fails the request: the change is made and its record kept.
pub async fn send_stored_audit(js: &jetstream::Context, db: &Db, m: Message) {
    let id = m.id.clone();
    match m.send_pending(js).await.confirmed(js).await {
        Ok(()) => {
            if let Err(e) = db.audit_sent(id).await {
                tracing::warn!(error = %e, "cannot clear a sent audit event from the outbox");
            }
        }
        Err(e) => tracing::warn!(error = %e, id, "audit event not confirmed; the outbox sends it later"),
    }
}

/// How long an audit event waits in the outbox before the drainer sends it: the request that
/// stored it normally sends it within this and clears it.
const OUTBOX_GRACE_MS: i64 = 10_000;

/// Send what waits in the audit outbox (stored by a request that then failed, or by a backend
/// that died before sending), oldest first, every few seconds until `stop`. Every backend
/// drains; two that send one event are deduplicated by its id.
pub async fn drain_outbox(js: jetstream::Context, db: Db, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        match db.audit_due(now_ms() - OUTBOX_GRACE_MS, 100).await {
            Ok(due) => {
                for o in due {
                    let m = Message::with_id(o.id.clone(), o.subject, o.payload.into_bytes().into());
                    let sent = m.send_pending(&js).await.confirmed(&js).await;
                    match sent {
                        Ok(()) => {
                            tracing::info!(id = o.id, "audit event from the outbox sent");
                            if let Err(e) = db.audit_sent(o.id).await {
                                tracing::warn!(error = %e, "cannot clear a sent audit event from the outbox");
                            }
                        }
                        // One the broker will never take must not hold back those behind it.
                        Err(ExecError::Refused(why)) => {
                            tracing::error!(
                                id = o.id,
                                why,
                                "audit outbox: the broker refuses this event; it is kept in the outbox, no longer sent"
                            );
                            if let Err(e) = db.audit_refused(o.id).await {
                                tracing::warn!(error = %e, "cannot mark a refused audit event");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "audit outbox: the broker did not take an event; retrying later");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the audit outbox; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(3)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ExecError;

    #[test]
    fn a_broker_error_keeps_its_source() {
        let cause = std::io::Error::new(std::io::ErrorKind::TimedOut, "no ack");
        let e = ExecError::broker("publishing to commands.all.x", cause);
        assert_eq!(e.to_string(), "broker: publishing to commands.all.x: no ack");
        let source = std::error::Error::source(&e).expect("the source is kept");
        let io = source.downcast_ref::<std::io::Error>().expect("as the error it was");
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    }
}
