//! The streams, KV buckets and object stores kanade uses, with their limits, and the pure drift
//! check that decides whether an existing resource needs an update.
//!
//! A KV bucket `b` is the stream `KV_b` and an object store `o` the stream `OBJ_o`; every resource
//! is therefore compared as a stream config, on the fields kanade owns (limits and discard
//! policy). Fields kanade does not own are left as the operator set them.

use std::time::Duration;

use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};

const DAY: Duration = Duration::from_secs(86_400);
const MIB: i64 = 1024 * 1024;
const GIB: i64 = 1024 * MIB;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Stream,
    KeyValue,
    ObjectStore,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::KeyValue => "kv",
            Self::ObjectStore => "object store",
        }
    }
}

/// One resource and the limits kanade wants it to have.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub kind: ResourceKind,
    /// The name operators see: `EXEC`, `jobs`, `agent_releases`.
    pub name: &'static str,
    pub description: &'static str,
    /// Subjects for plain streams; KV and object stores have fixed internal subjects.
    pub subjects: Vec<String>,
    pub max_age: Duration,
    pub max_bytes: i64,
    /// For plain streams: keep this many messages per subject (0 = unlimited).
    /// For KV buckets: the history depth.
    pub max_messages_per_subject: i64,
    pub duplicate_window: Option<Duration>,
    pub replicas: usize,
    /// KV buckets agents follow: every change is republished to `notify.<bucket>.<key>`, so an
    /// agent hears about its own keys on a core subscription instead of holding a watcher
    /// (a JetStream consumer) per bucket.
    pub notify: bool,
    /// Plain streams agents read directly: answered with direct gets (no consumer, no call
    /// through the server's JetStream API queue), which is how an agent catches up on EXEC.
    pub direct: bool,
}

impl Resource {
    /// The name of the stream that backs this resource.
    pub fn stream_name(&self) -> String {
        match self.kind {
            ResourceKind::Stream => self.name.to_owned(),
            ResourceKind::KeyValue => format!("KV_{}", self.name),
            ResourceKind::ObjectStore => format!("OBJ_{}", self.name),
        }
    }

    fn discard(&self) -> DiscardPolicy {
        match self.kind {
            // Streams drop their oldest messages when full, so ingest never stalls; buckets and
            // stores refuse new writes instead of silently losing a job definition or a release.
            ResourceKind::Stream => DiscardPolicy::Old,
            ResourceKind::KeyValue | ResourceKind::ObjectStore => DiscardPolicy::New,
        }
    }

    pub fn republish(&self) -> Option<stream::Republish> {
        self.notify.then(|| stream::Republish {
            source: format!("$KV.{}.>", self.name),
            destination: format!("{}.{}.>", crate::subjects::NOTIFY_PREFIX, self.name),
            headers_only: false,
        })
    }

    /// The stream config to create a plain stream with.
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream_name(),
            description: Some(self.description.to_owned()),
            subjects: self.subjects.clone(),
            max_age: self.max_age,
            max_bytes: self.max_bytes,
            max_messages_per_subject: self.max_messages_per_subject,
            duplicate_window: self.duplicate_window.unwrap_or_default(),
            discard: self.discard(),
            storage: StorageType::File,
            num_replicas: self.replicas,
            allow_direct: self.direct,
            ..Default::default()
        }
    }

    /// Apply kanade's owned fields on top of an existing config, keeping everything else.
    pub fn apply_to(&self, existing: &stream::Config) -> stream::Config {
        let mut config = existing.clone();
        if self.kind == ResourceKind::Stream {
            config.subjects = self.subjects.clone();
        }
        config.republish = self.republish();
        config.max_age = self.max_age;
        config.max_bytes = self.max_bytes;
        config.max_messages_per_subject = self.max_messages_per_subject;
        if let Some(window) = self.duplicate_window {
            config.duplicate_window = window;
        }
        config.discard = self.discard();
        config.num_replicas = self.replicas;
        // Buckets and stores get direct gets from the client library already; only turn it on.
        if self.direct {
            config.allow_direct = true;
        }
        config
    }
}

/// Every resource kanade needs, at `replicas` (1 on a single server, 3 in a cluster).
pub fn definitions(replicas: usize) -> Vec<Resource> {
    let replicas = replicas.max(1);
    let stream = |name, description, subject: &str, max_age, max_bytes, per_subject| Resource {
        kind: ResourceKind::Stream,
        name,
        description,
        subjects: vec![subject.to_owned()],
        max_age,
        max_bytes,
        max_messages_per_subject: per_subject,
        duplicate_window: None,
        replicas,
        notify: false,
        direct: false,
    };
    let kv = |name, description, history, max_age| Resource {
        kind: ResourceKind::KeyValue,
        name,
        description,
        subjects: Vec::new(),
        max_age,
        max_bytes: 256 * MIB,
        max_messages_per_subject: history,
        duplicate_window: None,
        replicas,
        notify: false,
        direct: false,
    };
    let store = |name, description, max_bytes| Resource {
        kind: ResourceKind::ObjectStore,
        name,
        description,
        subjects: Vec::new(),
        max_age: Duration::ZERO,
        max_bytes,
        max_messages_per_subject: 0,
        duplicate_window: None,
        replicas,
        notify: false,
        direct: false,
    };
    let mut results = stream(
        "RESULTS",
        "run results, one per (exec, pc), deduplicated by result_id",
        "results.>",
        30 * DAY,
        8 * GIB,
        0,
    );
    results.duplicate_window = Some(Duration::from_secs(300));
    vec![
        Resource {
            direct: true,
            ..stream(
                "EXEC",
                "commands; one message per subject so a newer exec replaces a stale one",
                "commands.>",
                7 * DAY,
                GIB,
                1,
            )
        },
        results,
        stream("EVENTS", "run lifecycle events", "events.>", 7 * DAY, GIB, 0),
        stream("INVENTORY", "latest inventory per pc", "inventory.>", 90 * DAY, GIB, 1),
        stream("AUDIT", "audit trail", "audit.>", 365 * DAY, 2 * GIB, 0),
        stream("OBS", "observability events per pc", "obs.>", 90 * DAY, 2 * GIB, 0),
        // Agents catch up on it with direct gets, like EXEC.
        Resource {
            direct: true,
            ..stream(
                "NOTIFICATIONS",
                "end-user notifications and their withdrawals, per target subject",
                "notifications.>",
                90 * DAY,
                GIB,
                0,
            )
        },
        kv("jobs", "job id -> manifest", 5, Duration::ZERO),
        kv("schedules", "schedule id -> schedule", 5, Duration::ZERO),
        kv("script_current", "job id -> version the fleet must run", 1, Duration::ZERO),
        kv("script_status", "job id -> ACTIVE or REVOKED", 1, Duration::ZERO),
        // Kept past EXEC's 7 days, so no replayed command outlives the record of its kill.
        kv(super::EXEC_KILLS, "exec id -> why it was killed; a returning agent skips it", 1, 8 * DAY),
        Resource { notify: true, ..kv("agent_groups", "pc -> operator-assigned groups", 1, Duration::ZERO) },
        Resource {
            notify: true,
            ..kv("agent_config", "global / groups.<g> / pcs.<pc> -> partial agent config", 1, Duration::ZERO)
        },
        kv("scheduler_leader", "lease of the backend that fires schedules", 1, Duration::from_secs(30)),
        store("agent_releases", "<version>/<target-triple> -> agent binary", 4 * GIB),
        store("scripts", "<name>/<version> -> script body", GIB),
    ]
}

/// What every resource reserves of the broker's file store (each replica counts; a server
/// refuses a stream whose limit does not fit its `max_file_store`).
pub fn reserved_bytes(replicas: usize) -> i64 {
    definitions(replicas).iter().map(|r| r.max_bytes * r.replicas as i64).sum()
}

/// The owned fields where `existing` differs from what `wanted` asks for, as
/// `field: have -> want` lines. Empty means the resource is as kanade wants it.
pub fn drift(wanted: &Resource, existing: &stream::Config) -> Vec<String> {
    let target = wanted.apply_to(existing);
    let mut out = Vec::new();
    let mut check = |field: &str, have: String, want: String| {
        if have != want {
            out.push(format!("{field}: {have} -> {want}"));
        }
    };
    check("subjects", format!("{:?}", existing.subjects), format!("{:?}", target.subjects));
    check("max_age", fmt_age(existing.max_age), fmt_age(target.max_age));
    check("max_bytes", fmt_limit(existing.max_bytes), fmt_limit(target.max_bytes));
    check(
        "max_messages_per_subject",
        fmt_limit(existing.max_messages_per_subject),
        fmt_limit(target.max_messages_per_subject),
    );
    check("duplicate_window", fmt_age(existing.duplicate_window), fmt_age(target.duplicate_window));
    check("discard", format!("{:?}", existing.discard), format!("{:?}", target.discard));
    check("replicas", existing.num_replicas.to_string(), target.num_replicas.to_string());
    check("allow_direct", existing.allow_direct.to_string(), target.allow_direct.to_string());
    let republish = |r: &Option<stream::Republish>| {
        r.as_ref().map_or("none".to_owned(), |r| format!("{} => {}", r.source, r.destination))
    };
    check("republish", republish(&existing.republish), republish(&target.republish));
    out
}

/// Settings kanade wants but cannot change in place (the server refuses); reported, not fixed.
pub fn immutable_drift(existing: &stream::Config) -> Vec<String> {
    let mut out = Vec::new();
    if existing.storage != StorageType::File {
        out.push(format!("storage: {:?} -> File (recreate the resource to change it)", existing.storage));
    }
    out
}

/// Ages in the largest whole unit (`30d`, `2m`); the server stores them in nanoseconds.
pub fn fmt_age(d: Duration) -> String {
    match d.as_secs() {
        0 => "unlimited".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The server reports "no limit" as -1 and accepts 0 for the same thing.
pub fn fmt_limit(n: i64) -> String {
    if n <= 0 { "unlimited".to_owned() } else { n.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_cover_every_resource_in_the_spec() {
        let names: Vec<_> = definitions(1).iter().map(|r| r.stream_name()).collect();
        assert_eq!(
            names,
            [
                "EXEC",
                "RESULTS",
                "EVENTS",
                "INVENTORY",
                "AUDIT",
                "OBS",
                "NOTIFICATIONS",
                "KV_jobs",
                "KV_schedules",
                "KV_script_current",
                "KV_script_status",
                "KV_exec_kills",
                "KV_agent_groups",
                "KV_agent_config",
                "KV_scheduler_leader",
                "OBJ_agent_releases",
                "OBJ_scripts",
            ]
        );
    }

    #[test]
    fn a_freshly_created_stream_has_no_drift() {
        for r in definitions(1).iter().filter(|r| r.kind == ResourceKind::Stream) {
            assert!(drift(r, &r.stream_config()).is_empty(), "{}", r.name);
        }
    }

    #[test]
    fn drift_lists_each_changed_limit() {
        let defs = definitions(1);
        let results = defs.iter().find(|r| r.name == "RESULTS").unwrap();
        let mut existing = results.stream_config();
        existing.max_age = DAY;
        existing.max_bytes = 1024;
        existing.storage = StorageType::Memory;
        assert_eq!(drift(results, &existing), ["max_age: 1d -> 30d", "max_bytes: 1024 -> 8589934592"]);
        assert_eq!(
            immutable_drift(&existing),
            ["storage: Memory -> File (recreate the resource to change it)"]
        );
    }

    #[test]
    fn apply_keeps_fields_kanade_does_not_own() {
        let defs = definitions(1);
        let exec = defs.iter().find(|r| r.name == "EXEC").unwrap();
        let mut existing = exec.stream_config();
        existing.max_consumers = 50;
        existing.max_age = DAY;
        let updated = exec.apply_to(&existing);
        assert_eq!(updated.max_consumers, 50);
        assert_eq!(updated.max_age, 7 * DAY);
    }

    #[test]
    fn exec_answers_direct_gets_and_an_old_exec_is_updated() {
        let defs = definitions(1);
        let exec = defs.iter().find(|r| r.name == "EXEC").unwrap();
        assert!(exec.stream_config().allow_direct);
        let mut old = exec.stream_config();
        old.allow_direct = false;
        assert_eq!(drift(exec, &old), ["allow_direct: false -> true"]);
        // Others keep whatever they have.
        let results = defs.iter().find(|r| r.name == "RESULTS").unwrap();
        let mut existing = results.stream_config();
        existing.allow_direct = true;
        assert!(drift(results, &existing).is_empty());
    }
}
