//! Validation problems with field paths, the loose scalar used for human-typed values, and the
//! parse step that collects every unknown key instead of stopping at the first.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// One thing wrong with a document: where (`rollout.waves[1].delay`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one document, in document order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl Problems {
    pub fn messages(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

/// Collects problems while a validator walks a raw document.
#[derive(Debug, Default)]
pub(crate) struct Collector(pub Vec<Problem>);

impl Collector {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(path, message));
    }

    /// Record the error of a fallible conversion and hand back its value, if any.
    pub fn check<T, E: fmt::Display>(&mut self, path: &str, result: Result<T, E>) -> Option<T> {
        result.map_err(|e| self.push(path, e.to_string())).ok()
    }

    pub fn finish<T>(self, value: Option<T>) -> Result<T, Problems> {
        match value {
            Some(v) if self.0.is_empty() => Ok(v),
            _ => Err(Problems(self.0)),
        }
    }
}

pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
}

pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// A scalar as a person typed it. YAML turns `version: 2` into a number and `delay: 30` into a
/// number too; taking any scalar lets validation say exactly what is wrong with the value instead
/// of a generic type error.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged, expecting = "a single value (text or number)")]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl Scalar {
    /// The text of an identifier-like value. Whole numbers are fine (`version: 2`); a float is
    /// refused because YAML has already lost its spelling (`1.10` became 1.1).
    pub fn text(&self) -> Result<String, String> {
        match self {
            Self::Str(s) => Ok(s.clone()),
            Self::Int(i) => Ok(i.to_string()),
            Self::Float(x) => Err(format!("{x} is read as a number; quote it (\"{x}\")")),
            Self::Bool(b) => Err(format!("{b} is a boolean, not text")),
        }
    }

    /// Any scalar as plain text (environment values).
    pub fn plain(&self) -> String {
        match self {
            Self::Str(s) => s.clone(),
            other => other.to_string(),
        }
    }

    pub fn duration(&self) -> Result<crate::HumanDuration, String> {
        match self {
            Self::Str(s) => s.parse().map_err(|e: crate::duration::DurationError| e.to_string()),
            Self::Int(0) => Ok(crate::HumanDuration::from_secs(0)),
            other => {
                Err(format!("{other} is not a duration (write a number with a unit, e.g. 30s, 10m, 24h)"))
            }
        }
    }

    pub fn number(&self) -> Result<f64, String> {
        match self {
            Self::Int(i) => Ok(*i as f64),
            Self::Float(x) => Ok(*x),
            other => Err(format!("{other} is not a number")),
        }
    }

    pub fn whole(&self) -> Result<u64, String> {
        match self {
            Self::Int(i) if *i >= 0 => Ok(*i as u64),
            other => Err(format!("{other} is not a whole number >= 0")),
        }
    }
}

/// Deserialize `T`, recording every key `T` does not know as a problem. A structural error
/// (a list where a mapping belongs) ends parsing with its path; unknown keys never do.
pub(crate) fn parse_collecting<'de, T, D>(de: D) -> Result<(T, Vec<Problem>), Problems>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| {
        unknown.push(Problem::new(ignored_path(&path), "unknown key"));
    };
    let ignoring = serde_ignored::Deserializer::new(de, &mut record);
    let result = serde_path_to_error::deserialize(ignoring);
    match result {
        Ok(value) => Ok((value, unknown)),
        Err(err) => {
            let path = match err.path().to_string() {
                p if p == "." => String::new(),
                p => p,
            };
            // serde_yaml_ng already starts its message with the path; say it once.
            let message = err.into_inner().to_string();
            let message = message.strip_prefix(&format!("{path}: ")).map(str::to_owned).unwrap_or(message);
            unknown.push(Problem::new(path, message));
            Err(Problems(unknown))
        }
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index: i } => index(&ignored_path(parent), *i),
        Path::Map { parent, key } => join(&ignored_path(parent), key),
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}
