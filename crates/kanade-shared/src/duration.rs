//! Human durations (`600s`, `30m`, `24h`) as one validated type, written back in the same form.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(Duration);

#[cfg(feature = "schema")]
impl schemars::JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HumanDuration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "description": "a duration such as 30s, 10m, 2h or 7d" })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration (write a number with a unit, e.g. 30s, 10m, 24h)")]
pub struct DurationError(pub String);

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub const fn get(self) -> Duration {
        self.0
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl FromStr for HumanDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, DurationError> {
        let trimmed = s.trim();
        // A bare "0" is unambiguous; every other value needs a unit so "600" is never guessed.
        if trimmed == "0" {
            return Ok(Self(Duration::ZERO));
        }
        humantime::parse_duration(trimmed).map(Self).map_err(|_| DurationError(s.to_owned()))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_round_trip() {
        for (text, secs) in [("600s", 600), ("30m", 1800), ("24h", 86400), ("0s", 0), ("0", 0)] {
            let d: HumanDuration = text.parse().unwrap();
            assert_eq!(d.as_secs(), secs, "{text}");
            assert_eq!(d.to_string().parse::<HumanDuration>().unwrap(), d);
        }
        assert_eq!(HumanDuration::from_secs(90).to_string(), "1m 30s");
    }

    #[test]
    fn rejects_numbers_without_unit_and_nonsense() {
        for bad in ["600", "soon", "30x", ""] {
            let err = bad.parse::<HumanDuration>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("{bad:?} is not a duration (write a number with a unit, e.g. 30s, 10m, 24h)")
            );
        }
    }
}
