//! What a job's JSON stdout means beyond its output (SPEC §12): a compliance `check:` and
//! `facts.explode[]` tables. Validated here with every problem named; applied by the backend
//! when the result is projected.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::raw::{RawCheck, RawExplode, RawFacts};
use crate::problems::{Collector, join};

/// What a job's output feeds besides its result, as an execution keeps it (`plan_json`'s
/// `outputs`): the backend applies it when each result is projected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outputs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<FactsSpec>,
}

impl Outputs {
    pub fn is_empty(&self) -> bool {
        self.check.is_none() && self.facts.is_none()
    }
}

/// `check: { name, status_field, detail_field }`: the result's `status_field` (pass | warn |
/// fail) becomes the PC's status for check `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpec {
    pub name: String,
    /// Dotted path into the stdout JSON (`status`, `result.state`).
    pub status_field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail_field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactsSpec {
    pub explode: Vec<ExplodeSpec>,
}

/// One operator-named table: the array at `path`, one row per element, keyed by (pc_id, key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplodeSpec {
    pub table: String,
    pub path: String,
    pub key: Vec<String>,
    pub columns: BTreeMap<String, ColumnType>,
}

// The type travels in wire messages (`wire::FactTable`), so it lives there.
pub use crate::wire::facts::ColumnType;

/// Tables a facts table may not be named after: the projection's own (they stay unambiguous in
/// `POST /api/query` and in operators' heads).
pub const RESERVED_TABLES: &[&str] = &[
    "agents",
    "audit_outbox",
    "backend_secrets",
    "facts_writes",
    "lease_fences",
    "projection_meta",
    "schedule_state",
    "executions",
    "execution_targets",
    "execution_results",
    "rollout_waves",
    "audit_log",
    "inventory",
    "inventory_facts",
    "check_status",
    "obs_events",
    "host_perf_samples",
    "host_perf_rollups",
    "process_perf_samples",
    "facts_tables",
    "facts",
    "users",
    "api_tokens",
];
/// Column names the rows API takes as its own parameters (and `pc_id`, every table's first key).
pub const RESERVED_COLUMNS: &[&str] = &["pc_id", "pc", "limit", "offset"];
/// A table is stored as `fact_<name>`: Postgres keeps 63 bytes of a name.
pub const MAX_TABLE_NAME: usize = 58;
pub const MAX_TABLES: usize = 16;
pub const MAX_COLUMNS: usize = 64;

/// `[a-z][a-z0-9_]{0,62}`: a table or column name.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok { Ok(()) } else { Err(format!("{name:?} is not a name: write [a-z][a-z0-9_]{{0,62}}")) }
}

/// A check name: `[a-z0-9][a-z0-9_.-]{0,63}`.
pub fn check_check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok { Ok(()) } else { Err(format!("{name:?} is not a check name: write [a-z0-9][a-z0-9_.-]{{0,63}}")) }
}

/// A dotted path into JSON (`disks`, `result.state`): segments of letters, digits, `_` and `-`.
pub fn check_path(path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && path.len() <= 256
        && path.split('.').all(|seg| {
            !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{path:?} is not a path: write dotted names, e.g. disks or result.state"))
    }
}

pub(crate) fn validate_check(raw: RawCheck, at: &str, c: &mut Collector) -> Option<CheckSpec> {
    let name = match raw.name {
        None => {
            c.push(join(at, "name"), "is required (the check's name, e.g. disk-space)");
            None
        }
        Some(n) => c.check(&join(at, "name"), check_check_name(&n).map(|()| n)),
    };
    let status_field = match raw.status_field {
        None => {
            c.push(join(at, "status_field"), "is required (where pass, warn or fail is in the output)");
            None
        }
        Some(f) => c.check(&join(at, "status_field"), check_path(&f).map(|()| f)),
    };
    let detail_field = match raw.detail_field {
        None => Some(None),
        Some(f) => c.check(&join(at, "detail_field"), check_path(&f).map(|()| Some(f))),
    };
    Some(CheckSpec { name: name?, status_field: status_field?, detail_field: detail_field? })
}

pub(crate) fn validate_facts(raw: RawFacts, at: &str, c: &mut Collector) -> Option<FactsSpec> {
    let Some(explode) = raw.explode else {
        c.push(join(at, "explode"), "is required (a list of tables)");
        return None;
    };
    let path = join(at, "explode");
    if explode.is_empty() {
        c.push(&path, "lists no table");
        return None;
    }
    if explode.len() > MAX_TABLES {
        c.push(&path, format!("lists {} tables; at most {MAX_TABLES}", explode.len()));
    }
    let mut out = Vec::new();
    let mut ok = true;
    let mut seen: Vec<String> = Vec::new();
    for (i, e) in explode.into_iter().enumerate() {
        if let Some(t) = &e.table {
            if seen.contains(t) {
                c.push(format!("{path}[{i}].table"), format!("{t:?} is listed twice"));
                ok = false;
            }
            seen.push(t.clone());
        }
        match validate_explode(e, &format!("{path}[{i}]"), c) {
            Some(spec) => out.push(spec),
            None => ok = false,
        }
    }
    ok.then_some(FactsSpec { explode: out })
}

fn validate_explode(raw: RawExplode, at: &str, c: &mut Collector) -> Option<ExplodeSpec> {
    let table = match raw.table {
        None => {
            c.push(join(at, "table"), "is required (the table's name, e.g. disks)");
            None
        }
        Some(t) if RESERVED_TABLES.contains(&t.as_str()) => {
            c.push(join(at, "table"), format!("{t:?} is a built-in table's name; choose another"));
            None
        }
        Some(t) if t.len() > MAX_TABLE_NAME => {
            c.push(join(at, "table"), format!("{t:?} is longer than {MAX_TABLE_NAME} characters"));
            None
        }
        Some(t) => c.check(&join(at, "table"), check_name(&t).map(|()| t)),
    };
    let path = match raw.path {
        None => {
            c.push(join(at, "path"), "is required (where the array is in the output, e.g. disks)");
            None
        }
        Some(p) => c.check(&join(at, "path"), check_path(&p).map(|()| p)),
    };
    let columns = match raw.columns {
        None => {
            c.push(join(at, "columns"), "is required (name: text | integer | real | bool | timestamp)");
            None
        }
        Some(cols) if cols.is_empty() => {
            c.push(join(at, "columns"), "lists no column");
            None
        }
        Some(cols) => {
            let mut out = BTreeMap::new();
            let mut ok = true;
            if cols.len() > MAX_COLUMNS {
                c.push(join(at, "columns"), format!("lists {} columns; at most {MAX_COLUMNS}", cols.len()));
                ok = false;
            }
            for (name, ty) in cols {
                let here = join(&join(at, "columns"), &name);
                if let Err(e) = check_name(&name) {
                    c.push(&here, e);
                    ok = false;
                    continue;
                }
                if RESERVED_COLUMNS.contains(&name.as_str()) {
                    let why = if name == "pc_id" {
                        "every table's own first key column"
                    } else {
                        "a parameter of the rows API"
                    };
                    c.push(&here, format!("{name} is {why}; name this column differently"));
                    ok = false;
                    continue;
                }
                match ColumnType::parse(&ty) {
                    Some(t) => {
                        out.insert(name, t);
                    }
                    None => {
                        c.push(
                            &here,
                            format!("{ty:?} is not a column type (one of {})", ColumnType::KNOWN.join(", ")),
                        );
                        ok = false;
                    }
                }
            }
            ok.then_some(out)
        }
    };
    let key = match raw.key {
        None => {
            c.push(join(at, "key"), "is required (the columns that, with pc_id, identify a row)");
            None
        }
        Some(k) if k.is_empty() => {
            c.push(join(at, "key"), "lists no column");
            None
        }
        Some(k) => {
            let mut out: Vec<String> = Vec::new();
            let mut ok = true;
            for (i, col) in k.iter().enumerate() {
                let here = format!("{}[{i}]", join(at, "key"));
                match col.text() {
                    Ok(name) if out.contains(&name) => {
                        c.push(&here, format!("{name:?} is listed twice"));
                        ok = false;
                    }
                    Ok(name) => {
                        // Without valid columns their own problems are named already.
                        let known = columns.as_ref().is_none_or(|cols| cols.contains_key(&name));
                        if !known {
                            c.push(&here, format!("{name:?} is not one of the columns"));
                            ok = false;
                        }
                        out.push(name);
                    }
                    Err(e) => {
                        c.push(&here, e);
                        ok = false;
                    }
                }
            }
            ok.then_some(out)
        }
    };
    Some(ExplodeSpec { table: table?, path: path?, key: key?, columns: columns? })
}
