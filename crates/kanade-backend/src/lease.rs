//! One backend leads: the holder of the `leader` key in the `scheduler_leader` bucket (named
//! after its first duty). The leader fires schedules, publishes due rollout waves and expires
//! stalled executions; with a shared database (Postgres) it also runs the stream projectors.
//! The bucket's max age (30 s) is the lease TTL; the holder rewrites the key every `TTL / 3`
//! with a compare-and-set on its revision, and stops calling itself leader as soon as one
//! renewal fails, well before the key expires and another backend can take it.
//!
//! A holder that freezes (a paused VM, a stopped process) cannot see its renewals fail, so each
//! term also carries the instant it ends on this backend's clock: the key cannot expire on the
//! broker before then, and every duty asks [`Leadership::term`] right before it acts. Writes to
//! a shared database are fenced besides (`db::fence`): a check and a write are never atomic.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv::Store};
use tokio::sync::watch;

use crate::db::fence::Fence;

/// One term of a lease on this backend: the revision it was taken with (revisions only grow,
/// so a later holder's is higher) and when it ends unless renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    pub revision: u64,
    pub valid_until: Instant,
}

/// Pure: a write sent at `sent` that the broker stored is stored at or after `sent`, so the key
/// lives at least until `sent + ttl` on the broker's clock. The margin covers clocks that run
/// at slightly different rates.
pub fn term_end(sent: Instant, ttl: Duration) -> Instant {
    sent + ttl - ttl / 10
}

/// Whether this backend holds a lease right now.
#[derive(Clone)]
pub struct Leadership {
    key: String,
    rx: watch::Receiver<Option<Term>>,
}

impl Leadership {
    pub fn new(key: String) -> (watch::Sender<Option<Term>>, Self) {
        let (tx, rx) = watch::channel(None);
        (tx, Self { key, rx })
    }

    /// The current term, unless it ended (also when the campaign has not noticed yet).
    pub fn term(&self) -> Option<Term> {
        (*self.rx.borrow()).filter(|t| Instant::now() < t.valid_until)
    }

    pub fn leads(&self) -> bool {
        self.term().is_some()
    }

    /// The current term as a database fence.
    pub fn fence(&self) -> Option<Fence> {
        self.term().map(|t| Fence { lease: self.key.clone(), revision: t.revision as i64 })
    }

    /// Until the campaign reports a change (or ends: `false`).
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }

    /// Until the campaign says this backend leads (`false` when the campaign ended).
    pub async fn until_leading(&mut self) -> bool {
        self.rx.wait_for(|t| t.is_some()).await.is_ok()
    }

    /// Until the campaign says this backend does not lead, or its term ends unrenewed.
    pub async fn until_not_leading(&mut self) {
        loop {
            let Some(term) = *self.rx.borrow_and_update() else { return };
            tokio::select! {
                () = tokio::time::sleep_until(term.valid_until.into()) => return,
                changed = self.rx.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// The key of the broker-wide duties (schedules, waves, expiry).
pub const DUTIES: &str = "leader";

/// The key of one shared projection's projectors: backends of another database on the same
/// broker (an old SQLite backend during a move to Postgres) never hold it.
pub fn projection_key(projection_id: &str) -> String {
    format!("projection-{projection_id}")
}
pub const BUCKET: &str = "scheduler_leader";
const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// A name for this backend process in the lease and the logs.
pub fn instance_name() -> String {
    format!("backend-{}-{}", std::process::id(), &uuid::Uuid::now_v7().simple().to_string()[24..])
}

/// Open the lease bucket (retrying while the broker is not ready), then campaign for `key`
/// until `stop`.
pub async fn lead(
    js: jetstream::Context,
    key: String,
    instance: String,
    is_leader: watch::Sender<Option<Term>>,
    mut stop: watch::Receiver<bool>,
) {
    let kv = loop {
        match js.get_key_value(BUCKET).await {
            Ok(kv) => break kv,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the leader lease bucket; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    };
    let ttl = kv.status().await.map(|s| s.max_age()).ok().filter(|d| !d.is_zero()).unwrap_or(DEFAULT_TTL);
    campaign(kv, &key, instance, ttl, is_leader, stop).await;
}

/// A holder renews every `TTL / 3`, so one lost renewal still leaves time for the next.
pub fn renew_every(ttl: Duration) -> Duration {
    ttl / 3
}

/// A candidate tries often: the takeover delay after a leader dies is the TTL plus this.
const CANDIDATE_RETRY: Duration = Duration::from_secs(1);

/// Campaign until `stop`: `is_leader` carries this instance's current term, if any.
pub async fn campaign(
    kv: Store,
    key: &str,
    instance: String,
    ttl: Duration,
    is_leader: watch::Sender<Option<Term>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut revision: Option<u64> = None;
    // The revision of this instance's last write known to have landed.
    let mut written: Option<u64> = None;
    let mut term: Option<Term> = None;
    loop {
        let sent = Instant::now();
        let attempt = match revision {
            Some(rev) => kv.update(key, instance.clone().into(), rev).await.map_err(|e| e.to_string()),
            None => kv.create(key, instance.clone().into()).await.map_err(|e| e.to_string()),
        };
        let was = revision.is_some();
        let landed = match attempt {
            Ok(rev) => Some(rev),
            // A write whose answer was lost may still have landed: the key naming this instance
            // is still ours (otherwise the leader would lock itself out for a whole TTL).
            Err(_) => match kv.entry(key).await {
                Ok(Some(e)) if e.value.as_ref() == instance.as_bytes() => Some(e.revision),
                _ => None,
            },
        };
        // Only a write made by this attempt (a revision not seen before) moves the term's end:
        // the key found naming this instance may be an older write that expires sooner.
        let fresh = landed.is_some() && landed != written;
        revision = landed;
        if fresh {
            written = landed;
        }
        term = match (revision, term) {
            (None, _) => None,
            // A renewal extends the term it renews; a new term starts at the revision taken.
            (Some(_), Some(t)) if was && fresh => Some(Term { valid_until: term_end(sent, ttl), ..t }),
            (Some(_), Some(t)) if was => Some(t),
            (Some(rev), _) if fresh => Some(Term { revision: rev, valid_until: term_end(sent, ttl) }),
            // Found naming this instance from a write whose time is unknown: not a term to act on.
            (Some(_), _) => None,
        };
        if revision.is_some() != was {
            if revision.is_some() {
                tracing::info!(instance, lease = key, "this backend now leads");
            } else {
                tracing::warn!(instance, lease = key, "leadership lost; another backend leads");
            }
        }
        is_leader.send_replace(term);
        let wait = if revision.is_some() { renew_every(ttl) } else { CANDIDATE_RETRY };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    // Hand over at once on a clean stop instead of making the others wait out the TTL.
    if let Some(rev) = revision {
        is_leader.send_replace(None);
        if let Err(e) = kv.delete_expect_revision(key, Some(rev)).await {
            tracing::warn!(error = %e, "cannot release the leader lease; it expires on its own");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_term_ends_before_the_broker_can_expire_its_key() {
        let sent = Instant::now();
        for ttl in [Duration::from_secs(30), Duration::from_secs(3), Duration::from_millis(300)] {
            let end = term_end(sent, ttl);
            assert!(end < sent + ttl, "{ttl:?}");
            // A renewal every TTL / 3 keeps the term alive with two renewals to spare.
            assert!(end > sent + renew_every(ttl) * 2, "{ttl:?}");
        }
    }

    #[tokio::test]
    async fn a_term_that_ends_unrenewed_is_no_longer_leading() {
        let (tx, mut l) = Leadership::new("k".into());
        assert!(!l.leads());
        let valid_until = Instant::now() + Duration::from_millis(200);
        tx.send_replace(Some(Term { revision: 7, valid_until }));
        assert_eq!(l.fence(), Some(Fence { lease: "k".into(), revision: 7 }));
        // The campaign never said otherwise: the term's end alone stops it.
        tokio::time::timeout(Duration::from_secs(5), l.until_not_leading()).await.unwrap();
        assert!(Instant::now() >= valid_until);
        assert!(!l.leads());
        assert_eq!(l.fence(), None);
    }

    #[tokio::test]
    async fn a_refused_renewal_ends_the_term_before_it_runs_out() {
        let server = kanade_testkit::NatsServer::start();
        let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
        let ttl = Duration::from_secs(3);
        let config = jetstream::kv::Config { bucket: "lease".into(), max_age: ttl, ..Default::default() };
        let kv = js.create_key_value(config).await.unwrap();
        let (tx, mut l) = Leadership::new("k".into());
        let (stop_tx, stop) = watch::channel(false);
        let campaigning = tokio::spawn(campaign(kv.clone(), "k", "me".into(), ttl, tx, stop));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !l.leads() {
            assert!(Instant::now() < deadline, "never became leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Another backend overwrote the key: the next renewal (within TTL / 3) is refused.
        let term = l.term().unwrap();
        kv.put("k", "intruder".into()).await.unwrap();
        l.until_not_leading().await;
        let ended = Instant::now();
        assert!(
            ended + Duration::from_millis(300) < term.valid_until,
            "led until its term ran out ({:?} left), not until the refused renewal",
            term.valid_until.saturating_duration_since(ended)
        );
        assert!(!l.leads());
        stop_tx.send_replace(true);
        campaigning.await.unwrap();
    }
}
