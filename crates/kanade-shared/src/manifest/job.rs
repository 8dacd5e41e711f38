//! The validated job manifest: what to run. Built only by [`validate_manifest`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::plan::{Plan, validate_plan_parts};
use super::raw::{RawExecute, RawManifest, RawStaleness};
use crate::HumanDuration;
use crate::ids::{JobId, Version};
use crate::problems::{Collector, join};
use crate::wire::{Emit, RunAs, Shell, Staleness, StalenessMode};

pub use crate::wire::DEFAULT_TIMEOUT;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    pub id: JobId,
    pub version: Version,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub execute: Execute,
    pub staleness: StalenessSpec,
    /// Default jitter for every exec of this job; a plan's own jitter wins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<HumanDuration>,
    /// `events`: stdout is NDJSON observability events, not output (SPEC §12).
    #[serde(skip_serializing_if = "Emit::is_output")]
    pub emit: Emit,
    /// A compliance check read from the JSON stdout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<super::outputs::CheckSpec>,
    /// Tables filled from the JSON stdout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<super::outputs::FactsSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Execute {
    pub shell: Shell,
    #[serde(flatten)]
    pub source: ScriptSource,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script_sha256: Option<String>,
    pub timeout: HumanDuration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    pub run_as: RunAs,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// Exactly one script source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ScriptSource {
    #[serde(rename = "script")]
    Inline(String),
    /// A path relative to the manifest; the CLI inlines it before anything is stored or sent.
    #[serde(rename = "script_file")]
    File(String),
    /// `<name>/<version>` in the `scripts` object store.
    #[serde(rename = "script_object")]
    Object(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct StalenessSpec {
    pub mode: StalenessMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cache_age: Option<HumanDuration>,
}

impl StalenessSpec {
    pub fn to_wire(self) -> Staleness {
        Staleness { mode: self.mode, max_cache_age_secs: self.max_cache_age.map(HumanDuration::as_secs) }
    }
}

/// A manifest file as `kanade deploy` reads it: the job, plus a plan when it has plan blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFile {
    pub manifest: Manifest,
    pub plan: Option<Plan>,
}

pub(crate) fn validate_manifest(raw: RawManifest, at: &str, c: &mut Collector) -> Option<JobFile> {
    let id = match &raw.id {
        None => {
            c.push(join(at, "id"), "is required");
            None
        }
        Some(v) => {
            c.check(&join(at, "id"), v.text().and_then(|t| t.parse::<JobId>().map_err(|e| e.to_string())))
        }
    };
    let version = match &raw.version {
        None => {
            c.push(join(at, "version"), "is required");
            None
        }
        Some(v) => c.check(
            &join(at, "version"),
            v.text().and_then(|t| t.parse::<Version>().map_err(|e| e.to_string())),
        ),
    };
    let execute = match raw.execute {
        None => {
            c.push(join(at, "execute"), "is required (shell and one of script, script_file, script_object)");
            None
        }
        Some(e) => validate_execute(e, &join(at, "execute"), c),
    };
    let staleness = validate_staleness(raw.staleness, &join(at, "staleness"), c);

    let jitter = match (&raw.jitter, execute.as_ref().and_then(|(_, j)| j.as_ref())) {
        (Some(_), Some(_)) => {
            c.push(join(at, "jitter"), "is also set as execute.jitter; set it once");
            None
        }
        (Some(j), None) => c.check(&join(at, "jitter"), j.duration()),
        (None, Some(j)) => Some(*j),
        (None, None) => None,
    };
    let plan = if raw.target.is_some() || raw.rollout.is_some() {
        validate_plan_parts(raw.target, None, raw.rollout, raw.start_within, at, c)
            .map(|p| Plan { override_freeze: raw.override_freeze.unwrap_or(false), ..p })
    } else {
        if raw.override_freeze == Some(true) {
            c.push(
                join(at, "override_freeze"),
                "overrides a freeze for a run; give the run a target or rollout.waves",
            );
        }
        None
    };
    let emit = match raw.emit.as_deref() {
        None => Some(Emit::Output),
        Some(e) => Emit::parse(e).or_else(|| {
            c.push(join(at, "emit"), format!("{e:?} is not one of {}", Emit::KNOWN.join(", ")));
            None
        }),
    };
    let check = match raw.check {
        None => Some(None),
        Some(r) => super::outputs::validate_check(r, &join(at, "check"), c).map(Some),
    };
    let facts = match raw.facts {
        None => Some(None),
        Some(r) => super::outputs::validate_facts(r, &join(at, "facts"), c).map(Some),
    };
    if emit == Some(Emit::Events) && (raw_has(&check) || raw_has(&facts)) {
        c.push(join(at, "emit"), "events: stdout is events then, not the JSON a check or facts read");
    }
    let manifest = Manifest {
        id: id?,
        version: version?,
        description: raw.description,
        execute: execute?.0,
        staleness: staleness?,
        jitter,
        emit: emit?,
        check: check?,
        facts: facts?,
    };
    Some(JobFile { manifest, plan })
}

fn validate_execute(
    raw: RawExecute,
    at: &str,
    c: &mut Collector,
) -> Option<(Execute, Option<HumanDuration>)> {
    let shell = match raw.shell.as_deref() {
        None => {
            c.push(join(at, "shell"), format!("is required (one of {})", Shell::KNOWN.join(", ")));
            None
        }
        Some(s) => Shell::parse(s).or_else(|| {
            c.push(join(at, "shell"), format!("{s:?} is not a shell (one of {})", Shell::KNOWN.join(", ")));
            None
        }),
    };
    let sources: Vec<ScriptSource> = [
        raw.script.map(ScriptSource::Inline),
        raw.script_file.map(ScriptSource::File),
        raw.script_object.map(ScriptSource::Object),
    ]
    .into_iter()
    .flatten()
    .collect();
    let source = match sources.len() {
        1 => sources.into_iter().next(),
        0 => {
            c.push(at, "needs exactly one script source: script, script_file or script_object");
            None
        }
        _ => {
            c.push(
                at,
                "has more than one script source: keep exactly one of script, script_file, script_object",
            );
            None
        }
    };
    let source = source.and_then(|s| check_source(s, at, c));
    let script_sha256 = match (raw.script_sha256, &source) {
        (None, _) => None,
        (Some(h), Some(ScriptSource::Object(_))) => {
            if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
                Some(h.to_ascii_lowercase())
            } else {
                c.push(join(at, "script_sha256"), format!("{h:?} is not a sha256 (64 hex digits)"));
                None
            }
        }
        (Some(_), _) => {
            c.push(join(at, "script_sha256"), "only applies to script_object");
            None
        }
    };
    let timeout = match raw.timeout {
        None => Some(DEFAULT_TIMEOUT),
        Some(t) => match c.check(&join(at, "timeout"), t.duration()) {
            Some(d) if d.as_secs() == 0 => {
                c.push(join(at, "timeout"), "must be longer than 0s");
                None
            }
            other => other,
        },
    };
    let jitter = raw.jitter.and_then(|j| c.check(&join(at, "jitter"), j.duration()));
    let run_as = match raw.run_as.as_deref() {
        None => Some(RunAs::System),
        Some(r) => RunAs::parse(r).or_else(|| {
            c.push(join(at, "run_as"), format!("{r:?} is not one of system, user"));
            None
        }),
    };
    let mut env = BTreeMap::new();
    for (key, value) in raw.env.unwrap_or_default() {
        let valid = key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if valid {
            env.insert(key, value.plain());
        } else {
            c.push(
                join(&join(at, "env"), &key),
                "is not a valid variable name (letters, digits, _; not starting with a digit)",
            );
        }
    }
    let execute = Execute {
        shell: shell?,
        source: source?,
        script_sha256,
        timeout: timeout?,
        cwd: raw.cwd,
        run_as: run_as?,
        env,
    };
    Some((execute, jitter))
}

fn check_source(source: ScriptSource, at: &str, c: &mut Collector) -> Option<ScriptSource> {
    match &source {
        ScriptSource::Inline(s) if s.trim().is_empty() => {
            c.push(join(at, "script"), "is empty");
            None
        }
        ScriptSource::File(f) if f.trim().is_empty() => {
            c.push(join(at, "script_file"), "is empty");
            None
        }
        ScriptSource::Object(key) => {
            let ok = key.split_once('/').is_some_and(|(name, version)| {
                name.parse::<JobId>().is_ok() && version.parse::<Version>().is_ok()
            });
            if ok {
                Some(source)
            } else {
                c.push(
                    join(at, "script_object"),
                    format!("{key:?} is not <name>/<version> (e.g. cleanup/1.0.1)"),
                );
                None
            }
        }
        _ => Some(source),
    }
}

fn validate_staleness(raw: Option<RawStaleness>, at: &str, c: &mut Collector) -> Option<StalenessSpec> {
    let Some(raw) = raw else {
        return Some(StalenessSpec::default());
    };
    let mode = match raw.mode.as_deref() {
        None => Some(StalenessMode::Cached),
        Some(m) => StalenessMode::parse(m).or_else(|| {
            c.push(join(at, "mode"), format!("{m:?} is not one of cached, strict, unchecked"));
            None
        }),
    }?;
    let age = raw.max_cache_age.and_then(|a| c.check(&join(at, "max_cache_age"), a.duration()));
    match (mode, age) {
        (StalenessMode::Strict, None) => {
            c.push(join(at, "max_cache_age"), "is required with mode: strict (e.g. 1h)");
            None
        }
        (StalenessMode::Strict, Some(age)) => Some(StalenessSpec { mode, max_cache_age: Some(age) }),
        (_, Some(_)) => {
            c.push(join(at, "max_cache_age"), "only applies to mode: strict");
            None
        }
        (mode, None) => Some(StalenessSpec { mode, max_cache_age: None }),
    }
}

fn raw_has<T>(v: &Option<Option<T>>) -> bool {
    matches!(v, Some(Some(_)))
}
