//! Signing in, the caller, users, API tokens and second factors.

use serde::{Deserialize, Serialize};

/// `POST /api/auth/login`.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub name: String,
    pub password: String,
    /// The authenticator's current code (or a recovery code) when the account has a second factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// A signed-in session.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Session {
    /// Sent back as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_ms: i64,
    pub user: SessionUser,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionUser {
    pub name: String,
    pub role: String,
    pub must_change_password: bool,
    /// Whether a second factor is on.
    pub mfa: bool,
    /// An admin without a second factor where admins must have one.
    pub must_set_up_mfa: bool,
}

/// `GET /api/auth/me`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Me {
    pub name: String,
    pub role: String,
    /// `password`, `token` or `auth_disabled`.
    pub via: String,
    pub must_change_password: bool,
    pub must_set_up_mfa: bool,
    /// Whether a second factor is on (signed in with a password only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<bool>,
    /// Set when authentication is switched off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// `POST /api/auth/password`.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current: String,
    pub new: String,
}

/// A change that took effect, and what follows from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PasswordChanged {
    pub changed: bool,
    pub note: String,
}

/// One user (never the password hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct User {
    pub name: String,
    pub role: String,
    pub disabled: bool,
    pub must_change_password: bool,
    pub password_changed_ms: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// When a second factor was switched on; `None`: password only.
    pub mfa_enabled_ms: Option<i64>,
}

/// `POST /api/users`.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub password: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
}

/// A user just made (who must change the password at first sign-in).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserCreated {
    pub name: String,
    pub role: String,
    pub must_change_password: bool,
}

/// `PATCH /api/users/{name}`: what to change.
#[derive(Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// A new password (the user must change it at the next sign-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// One API token (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_by: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// `POST /api/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    pub role: String,
}

/// A token just made: its secret is shown this once.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenCreated {
    pub id: String,
    pub name: String,
    pub role: String,
    pub token: String,
    pub note: String,
}

/// `POST /api/auth/mfa/setup` and `/disable`: the caller's password again.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfirmPassword {
    pub password: String,
}

/// A second factor being set up: shown once, confirmed with a code.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MfaSetup {
    /// Base32, for typing into an authenticator app.
    pub secret: String,
    pub otpauth_uri: String,
    /// The QR code of `otpauth_uri`: rows of `1` (dark) and `0` (light) modules.
    pub qr: Vec<String>,
    pub next: String,
}

/// `POST /api/auth/mfa/enable`.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MfaCode {
    pub code: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MfaEnabled {
    pub enabled: bool,
    /// Each signs in once without the phone; not shown again.
    pub recovery_codes: Vec<String>,
    pub note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MfaDisabled {
    /// False when none was on.
    pub disabled: bool,
}

/// `DELETE /api/users/{name}/mfa`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MfaReset {
    /// False when none was on.
    pub reset: bool,
    pub user: String,
}

/// `Debug` without the secret a type carries (a password, a token, a code): only the fields
/// named are shown.
macro_rules! redacted_debug {
    ($t:ident $(: $($field:ident),+)?) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))$($(.field(stringify!($field), &self.$field))+)?.finish_non_exhaustive()
            }
        }
    };
}

redacted_debug!(Login: name);
redacted_debug!(Session: expires_ms, user);
redacted_debug!(PasswordChange);
redacted_debug!(NewUser: name, role);
redacted_debug!(UserChange: role, disabled);
redacted_debug!(TokenCreated: id, name, role);
redacted_debug!(ConfirmPassword);
redacted_debug!(MfaSetup);
redacted_debug!(MfaEnabled: enabled);
redacted_debug!(MfaCode);
