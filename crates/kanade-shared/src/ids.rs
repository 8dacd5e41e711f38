//! Validated identifiers. Every id that crosses a crate boundary or the wire is one of these
//! newtypes, so a subject token or a ledger key can never be built from an unchecked string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {value:?} is invalid: {rule}")]
pub struct IdError {
    pub kind: &'static str,
    pub value: String,
    pub rule: &'static str,
}

const TOKEN_RULE: &str = "use 1 to 64 characters from A-Z a-z 0-9 _ -";
const VERSION_RULE: &str = "use 1 to 64 characters from A-Z a-z 0-9 . _ + -";

fn check_token(kind: &'static str, value: &str) -> Result<(), IdError> {
    let ok = (1..=64).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(IdError { kind, value: value.to_owned(), rule: TOKEN_RULE }) }
}

fn check_version(kind: &'static str, value: &str) -> Result<(), IdError> {
    let ok = (1..=64).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
    if ok { Ok(()) } else { Err(IdError { kind, value: value.to_owned(), rule: VERSION_RULE }) }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                $check($kind, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        #[cfg(feature = "schema")]
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "minLength": 1, "description": $kind })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::new(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// An agent's identity; case-sensitive and usable as one NATS subject token.
    PcId, "pc_id", check_token
);
string_id!(
    /// A group of PCs, used as a subject token in `commands.group.<g>.<job>`.
    GroupName, "group name", check_token
);
string_id!(
    /// A job (manifest) id, used as the last token of command subjects.
    JobId, "job id", check_token
);
string_id!(
    /// A schedule id; same rule as job ids.
    ScheduleId, "schedule id", check_token
);
string_id!(
    /// A job or agent version: free text without spaces or subject wildcards.
    Version, "version", check_version
);

impl JobId {
    /// The job token of an ad-hoc `kanade run`: unique per request so ad-hoc commands never
    /// replace each other in the EXEC stream (which keeps one message per subject).
    pub fn adhoc(request_id: RequestId) -> Self {
        Self(format!("adhoc-{}", request_id.0.simple()))
    }

    /// What an ad-hoc run is called, its job id saying nothing: its script's first line that
    /// says something, at most 80 characters.
    pub fn adhoc_title(script: &str) -> String {
        let line = script.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("(empty script)");
        match line.char_indices().nth(79) {
            Some((cut, _)) => format!("{}…", &line[..cut]),
            None => line.to_owned(),
        }
    }

    /// Whether this is the job token of an ad-hoc run (see [`JobId::adhoc`]).
    pub fn is_adhoc(&self) -> bool {
        self.0
            .strip_prefix("adhoc-")
            .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        #[cfg(feature = "schema")]
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "format": "uuid" })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Uuid::parse_str(s).map(Self).map_err(|_| IdError {
                    kind: stringify!($name),
                    value: s.to_owned(),
                    rule: "expected a UUID such as 0190f5c2-6c1e-7a4b-9d2e-1f2a3b4c5d6e",
                })
            }
        }
    };
}

uuid_id!(
    /// One fan-out: one operator exec or one schedule fire.
    ExecId
);
uuid_id!(
    /// One published Command message; every subject of one exec gets its own.
    RequestId
);
uuid_id!(
    /// One run of one exec on one PC; see [`ResultId::derive`].
    ResultId
);
uuid_id!(
    /// One audit record.
    AuditId
);
uuid_id!(
    /// One end-user notification; every subject it is sent on carries the same id.
    NotificationId
);

impl ResultId {
    /// The run key for (exec_id, pc_id). Deterministic, so every redelivery or retry maps to the
    /// same row, and it keeps the exec's UUIDv7 time prefix so keys arrive roughly in order
    /// (ordered keys insert about twice as fast into SQLite as random ones).
    pub fn derive(exec_id: ExecId, pc_id: &PcId) -> Self {
        let mut bytes = *exec_id.0.as_bytes();
        let hash = fnv1a64(pc_id.as_str().as_bytes()).to_be_bytes();
        for (b, h) in bytes[8..].iter_mut().zip(hash) {
            *b ^= h;
        }
        // Restore the RFC 4122 variant bits the xor may have flipped; the version nibble lives in
        // the untouched upper half.
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Self(Uuid::from_bytes(bytes))
    }
}

impl ResultId {
    /// The identity of a result reporting a *refused* command. It is a hash of the refused
    /// message itself (subject and exact bytes) in a namespace real run keys never use (UUID
    /// version 8; [`ResultId::derive`] keeps the exec's version 7), so whatever ids a forger
    /// writes into the payload, the refusal can never take the place of a real result: neither
    /// its outbox row nor its RESULTS dedup slot. The same refused message always maps to the
    /// same id, so a redelivered forgery is answered once.
    pub fn refusal(subject: &str, payload: &[u8], pc_id: &PcId) -> Self {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for part in [subject.as_bytes(), payload, pc_id.as_str().as_bytes()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&h.finalize()[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x80;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Self(Uuid::from_bytes(bytes))
    }

    /// Whether this id is the run key of (exec_id, pc_id), i.e. a real run's result rather than
    /// a refusal's answer.
    pub fn is_run_of(&self, exec_id: ExecId, pc_id: &PcId) -> bool {
        *self == Self::derive(exec_id, pc_id)
    }
}

/// FNV-1a: tiny, and stable across Rust releases (unlike `DefaultHasher`), which matters because
/// result ids are persisted.
fn fnv1a64(data: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adhoc_run_is_named_by_its_first_line() {
        let long = "x".repeat(100);
        let cut = format!("{}…", "x".repeat(79));
        let cases = [
            ("\n  df -h /\nuptime\n", "df -h /"),
            ("   \n", "(empty script)"),
            (long.as_str(), cut.as_str()),
        ];
        for (script, want) in cases {
            assert_eq!(JobId::adhoc_title(script), want, "{script:?}");
        }
        assert!(JobId::adhoc(RequestId::new()).is_adhoc());
        assert!(!"adhoc-nothex".parse::<JobId>().unwrap().is_adhoc());
    }

    #[test]
    fn token_ids_accept_the_documented_alphabet_only() {
        assert!(PcId::new("PC-1234_a").is_ok());
        assert!(PcId::new("a".repeat(64)).is_ok());
        let err = PcId::new("my pc").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"pc_id "my pc" is invalid: use 1 to 64 characters from A-Z a-z 0-9 _ -"#
        );
        for bad in ["", "a.b", "a*", "a>", &"a".repeat(65), "pé"] {
            assert!(PcId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn pc_ids_are_case_sensitive() {
        assert_ne!(PcId::new("PC1").unwrap(), PcId::new("pc1").unwrap());
    }

    #[test]
    fn versions_allow_dots_and_plus() {
        assert!(Version::new("1.0.1+build.7").is_ok());
        let err = Version::new("1.0 beta").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"version "1.0 beta" is invalid: use 1 to 64 characters from A-Z a-z 0-9 . _ + -"#
        );
    }

    #[test]
    fn ids_reject_invalid_values_when_deserialized() {
        let err = serde_json::from_str::<PcId>(r#""a.b""#).unwrap_err();
        assert!(err.to_string().contains(r#"pc_id "a.b" is invalid"#), "{err}");
    }

    #[test]
    fn result_id_is_deterministic_time_ordered_and_distinct_per_pc() {
        let exec = ExecId::new();
        let a = PcId::new("PC-A").unwrap();
        let b = PcId::new("PC-B").unwrap();
        let ra = ResultId::derive(exec, &a);
        assert_eq!(ra, ResultId::derive(exec, &a));
        assert_ne!(ra, ResultId::derive(exec, &b));
        assert_eq!(ra.as_uuid().get_version_num(), 7);
        assert_eq!(ra.as_uuid().as_bytes()[..8], exec.as_uuid().as_bytes()[..8]);
        assert_eq!(ra.as_uuid().get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn a_refusal_never_takes_a_run_key_whatever_ids_the_message_claims() {
        let pc = PcId::new("PC-A").unwrap();
        let exec = ExecId::new();
        // The forger reuses the live exec id as its request id too.
        let forged = format!(r#"{{"exec_id":"{exec}","request_id":"{exec}"}}"#);
        let refusal = ResultId::refusal("commands.pc.PC-A.j", forged.as_bytes(), &pc);
        assert_ne!(refusal, ResultId::derive(exec, &pc));
        assert!(!refusal.is_run_of(exec, &pc));
        assert!(ResultId::derive(exec, &pc).is_run_of(exec, &pc));
        assert_eq!(refusal.as_uuid().get_version_num(), 8);
        assert_eq!(refusal, ResultId::refusal("commands.pc.PC-A.j", forged.as_bytes(), &pc), "stable");
        assert_ne!(refusal, ResultId::refusal("commands.all.j", forged.as_bytes(), &pc));
        assert_ne!(
            refusal,
            ResultId::refusal("commands.pc.PC-A.j", forged.as_bytes(), &"PC-B".parse().unwrap())
        );
    }

    #[test]
    fn adhoc_job_ids_are_valid_tokens() {
        let id = JobId::adhoc(RequestId::new());
        assert!(JobId::new(id.as_str()).is_ok());
        assert!(id.as_str().starts_with("adhoc-"));
    }
}
