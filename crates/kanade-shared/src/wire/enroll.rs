//! Enrolment: an admin's token lets a new PC fetch its agent, its config and its own broker
//! credentials in one step. HTTP bodies of `/api/enroll*`, shared by backend, CLI and dashboard.

use serde::{Deserialize, Serialize};
use time::Duration;

use super::Timestamp;
use crate::{GroupName, PcId, Version};

/// The longest a token stays valid: a token is a credential lying in scripts and tickets.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::days(30);
pub const MAX_USES: u32 = 100_000;
pub const DEFAULT_LIFETIME: &str = "24h";

/// `POST /api/enroll/tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// How long the token is valid, e.g. `30m`, `24h`, `7d` (default 24h, at most 30d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
    /// How many PCs may enrol with it (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u32>,
    /// Groups every PC enrolled with it joins (written into its agent.toml).
    #[serde(default)]
    pub groups: Vec<GroupName>,
}

/// What a valid [`CreateToken`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub expires_at: Timestamp,
    pub max_uses: u32,
    pub groups: Vec<GroupName>,
}

impl CreateToken {
    /// The token this request makes, or every problem, each naming its field.
    pub fn validate(&self, now: Timestamp) -> Result<TokenSpec, Vec<String>> {
        let mut problems = Vec::new();
        let text = self.expires_in.as_deref().unwrap_or(DEFAULT_LIFETIME);
        let lifetime = match text.parse::<crate::HumanDuration>() {
            Ok(d) if d.get().is_zero() => {
                problems.push("expires_in: 0 would make a token nobody can use".to_owned());
                None
            }
            Ok(d) if Duration::try_from(d.get()).map_or(true, |d| d > MAX_TOKEN_LIFETIME) => {
                problems.push(format!(
                    "expires_in: {text} is longer than 30d; make a new token when it runs out"
                ));
                None
            }
            Ok(d) => Duration::try_from(d.get()).ok(),
            Err(e) => {
                problems.push(format!("expires_in: {e}"));
                None
            }
        };
        let max_uses = self.max_uses.unwrap_or(1);
        if !(1..=MAX_USES).contains(&max_uses) {
            problems.push(format!("max_uses: {max_uses} is outside 1..={MAX_USES}"));
        }
        let mut groups = self.groups.clone();
        groups.sort();
        groups.dedup();
        match lifetime {
            Some(lifetime) if problems.is_empty() => {
                Ok(TokenSpec { expires_at: now + lifetime, max_uses, groups })
            }
            _ => Err(problems),
        }
    }
}

/// An enrolment token as listed (never its secret value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenInfo {
    /// A short handle for listing and revoking.
    pub id: String,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub expires_at: Timestamp,
    pub max_uses: u32,
    pub uses: u32,
    pub groups: Vec<GroupName>,
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub revoked_at: Option<Timestamp>,
}

impl TokenInfo {
    /// Why a PC may not enrol with this token at `now`, if it may not.
    pub fn refusal(&self, now: Timestamp) -> Option<String> {
        self.closed(now).or_else(|| {
            (self.uses >= self.max_uses).then(|| {
                format!(
                    "enrolment token {} is used up ({} of {} uses); ask an admin for a new one",
                    self.id, self.uses, self.max_uses
                )
            })
        })
    }

    /// Why the token is of no use at all at `now` (revoked or expired), whatever its uses.
    pub fn closed(&self, now: Timestamp) -> Option<String> {
        let rfc = |t: Timestamp| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        if let Some(at) = self.revoked_at {
            Some(format!(
                "enrolment token {} was revoked at {}; ask an admin for a new one",
                self.id,
                rfc(at)
            ))
        } else if now >= self.expires_at {
            Some(format!(
                "enrolment token {} expired at {}; ask an admin for a new one",
                self.id,
                rfc(self.expires_at)
            ))
        } else {
            None
        }
    }
}

/// `POST /api/enroll/tokens` answer: the token itself, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
    /// One line per OS that enrols a PC with this token.
    pub install: InstallLines,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct InstallLines {
    pub linux: String,
    pub windows: String,
}

/// `GET /api/enroll/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenList {
    pub items: Vec<TokenInfo>,
}

/// `POST /api/enroll` (no session: the token is the credential).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub token: String,
    pub pc_id: PcId,
    /// `linux`, `windows` or `macos`.
    pub os: String,
    /// `x86_64` or `aarch64` (`amd64` and `arm64` are understood).
    pub arch: String,
}

/// The agent's own broker account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BrokerCredentials {
    /// The PC id: each enrolled agent is its own broker user.
    pub user: PcId,
    pub password: String,
}

/// The agent binary to install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ReleaseRef {
    pub version: Version,
    pub target: String,
    pub url: String,
}

/// `POST /api/enroll` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EnrollResponse {
    pub pc_id: PcId,
    pub agent_toml: String,
    pub credentials: BrokerCredentials,
    pub release: ReleaseRef,
}

/// `DELETE /api/agents/{pc}/credentials` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RevokedCredentials {
    pub pc_id: PcId,
    /// Whether the broker dropped the agent's connection (false: it was not connected, or the
    /// backend has no broker system account to ask with; it cannot reconnect either way).
    pub disconnected: bool,
    pub detail: String,
}

/// The OS and architecture words of a request, normalised (`amd64` → `x86_64`).
pub fn platform(os: &str, arch: &str) -> Result<(&'static str, &'static str), Vec<String>> {
    let mut problems = Vec::new();
    let os = match os.to_ascii_lowercase().as_str() {
        "linux" => Some("linux"),
        "windows" => Some("windows"),
        "macos" | "darwin" => Some("macos"),
        other => {
            problems.push(format!("os: {other:?} is not linux, windows or macos"));
            None
        }
    };
    let arch = match arch.to_ascii_lowercase().as_str() {
        "x86_64" | "amd64" | "x64" => Some("x86_64"),
        "aarch64" | "arm64" => Some("aarch64"),
        other => {
            problems.push(format!("arch: {other:?} is not x86_64 or aarch64"));
            None
        }
    };
    match (os, arch) {
        (Some(o), Some(a)) => Ok((o, a)),
        _ => Err(problems),
    }
}

/// Whether a release's target triple runs on `os`/`arch` (as [`platform`] names them).
pub fn target_fits(target: &str, os: &str, arch: &str) -> bool {
    let mut parts = target.split('-');
    let first = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let os_word = match os {
        "macos" => "darwin",
        other => other,
    };
    first == arch && rest.contains(&os_word)
}

/// What an enrolled agent's config holds.
#[derive(Debug, Clone)]
pub struct AgentToml<'a> {
    pub pc: &'a PcId,
    /// `linux`, `windows` or `macos`, as [`platform`] names them.
    pub os: &'a str,
    pub nats_url: &'a str,
    pub groups: &'a [GroupName],
    /// The backend's command-signing public key, pinned.
    pub trusted_key: Option<&'a str>,
    pub password: &'a str,
    pub token_id: &'a str,
    pub now: Timestamp,
}

/// The agent.toml an enrolment writes. Every value is a PC id, group name, key or hex secret
/// (no quotes or template braces), so they go in as they are.
pub fn agent_toml(a: &AgentToml) -> String {
    let date = a.now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let list = |items: Vec<String>| items.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>().join(", ");
    let groups = list(a.groups.iter().map(ToString::to_string).collect());
    let keys = list(a.trusted_key.into_iter().map(str::to_owned).collect());
    let (data_dir, log_dir) = if a.os == "windows" {
        (r"'C:\ProgramData\Kanade\data'", r"'C:\ProgramData\Kanade\logs'")
    } else {
        ("\"/var/lib/kanade\"", "\"/var/log/kanade\"")
    };
    let unsigned = if a.trusted_key.is_none() {
        "# This backend signs no commands: the agent accepts them unsigned (development only).\n"
    } else {
        ""
    };
    format!(
        "# Written by kanade enrolment (token {token}) at {date}.\n\
         [agent]\n\
         id = {pc:?}\n\
         nats_url = {nats:?}\n\
         groups = [{groups}]\n\
         data_dir = {data_dir}\n\
         \n\
         [security]\n\
         {unsigned}trusted_keys = [{keys}]\n\
         \n\
         [nats]\n\
         # This PC's own broker account (revoked with: kanade agents revoke {pc}).\n\
         user = {pc:?}\n\
         password = {password:?}\n\
         \n\
         [log]\n\
         path = {log_dir}\n",
        token = a.token_id,
        pc = a.pc.as_str(),
        nats = a.nats_url,
        password = a.password,
    )
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
/// `GET /api/enroll/install.sh|install.ps1`.
pub struct ScriptQuery {
    pub token: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
/// `GET /api/enroll/agent`: the release for a platform (the newest when no version is named).
pub struct AgentQuery {
    pub token: String,
    pub os: String,
    pub arch: String,
    pub version: Option<String>,
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn a_token_request_is_checked_field_by_field() {
        let now = datetime!(2026-12-01 10:00 UTC);
        let req = |exp: Option<&str>, uses: Option<u32>| CreateToken {
            expires_in: exp.map(str::to_owned),
            max_uses: uses,
            groups: vec!["b".parse().unwrap(), "a".parse().unwrap(), "b".parse().unwrap()],
        };
        let ok = req(None, None).validate(now).unwrap();
        assert_eq!(ok.expires_at, datetime!(2026-12-02 10:00 UTC));
        assert_eq!(ok.max_uses, 1);
        assert_eq!(ok.groups, ["a".parse::<GroupName>().unwrap(), "b".parse().unwrap()]);
        assert_eq!(req(Some("2h"), Some(50)).validate(now).unwrap().max_uses, 50);
        for (exp, uses, problem) in [
            (Some("0s"), None, "expires_in: 0"),
            (Some("31d"), None, "expires_in: 31d is longer than 30d"),
            (Some("soon"), None, "expires_in:"),
            (None, Some(0), "max_uses: 0 is outside"),
            (None, Some(MAX_USES + 1), "max_uses:"),
        ] {
            let problems = req(exp, uses).validate(now).unwrap_err();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(problems[0].starts_with(problem), "{problems:?}");
        }
    }

    #[test]
    fn a_token_says_why_it_is_refused() {
        let now = datetime!(2026-12-01 10:00 UTC);
        let token = TokenInfo {
            id: "abc".into(),
            created_by: "admin".into(),
            created_at: now,
            expires_at: datetime!(2026-12-01 11:00 UTC),
            max_uses: 2,
            uses: 1,
            groups: vec![],
            revoked_at: None,
        };
        assert_eq!(token.refusal(now), None);
        let used = TokenInfo { uses: 2, ..token.clone() };
        assert!(used.refusal(now).unwrap().contains("used up (2 of 2 uses)"));
        assert!(
            token
                .refusal(datetime!(2026-12-01 11:00 UTC))
                .unwrap()
                .contains("expired at 2026-12-01T11:00:00Z")
        );
        let revoked = TokenInfo { revoked_at: Some(now), ..used };
        assert!(revoked.refusal(now).unwrap().contains("was revoked"));
    }

    #[test]
    fn platforms_and_targets() {
        assert_eq!(platform("Linux", "amd64"), Ok(("linux", "x86_64")));
        assert_eq!(platform("windows", "ARM64"), Ok(("windows", "aarch64")));
        assert_eq!(platform("beos", "mips").unwrap_err().len(), 2);
        assert!(target_fits("x86_64-unknown-linux-gnu", "linux", "x86_64"));
        assert!(target_fits("x86_64-unknown-linux-musl", "linux", "x86_64"));
        assert!(target_fits("x86_64-pc-windows-gnu", "windows", "x86_64"));
        assert!(target_fits("aarch64-apple-darwin", "macos", "aarch64"));
        assert!(!target_fits("aarch64-unknown-linux-gnu", "linux", "x86_64"));
        assert!(!target_fits("x86_64-pc-windows-msvc", "linux", "x86_64"));
    }
}
