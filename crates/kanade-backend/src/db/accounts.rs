//! Users and API tokens.

use super::DbError;
use super::sql::{Row, Sql, opt_row, scalar, vals};

/// A user as stored: what the API shows of it, and the password hash it never shows.
#[derive(Debug, Clone)]
pub struct User {
    pub account: kanade_shared::api::accounts::User,
    pub password_hash: String,
}

const USER_COLUMNS: &str =
    "name, password_hash, role, disabled, must_change_password, password_changed_ms, created_ms, updated_ms,
    (SELECT m.enabled_ms FROM user_mfa m WHERE m.name = users.name)";

fn user_row(r: &Row) -> Result<User, DbError> {
    Ok(User {
        password_hash: r.get(1)?,
        account: kanade_shared::api::accounts::User {
            name: r.get(0)?,
            role: r.get(2)?,
            disabled: r.get(3)?,
            must_change_password: r.get(4)?,
            password_changed_ms: r.get(5)?,
            created_ms: r.get(6)?,
            updated_ms: r.get(7)?,
            mfa_enabled_ms: r.get(8)?,
        },
    })
}

pub async fn user<S: Sql>(s: &mut S, name: &str) -> Result<Option<User>, DbError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1");
    opt_row(s, &sql, vals![name]).await?.as_ref().map(user_row).transpose()
}

pub async fn users<S: Sql>(s: &mut S) -> Result<Vec<User>, DbError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY name");
    s.rows(&sql, vals![]).await?.iter().map(user_row).collect()
}

pub async fn user_count<S: Sql>(s: &mut S) -> Result<i64, DbError> {
    scalar(s, "SELECT COUNT(*) FROM users", vals![]).await
}

/// Insert a user; false when the name is taken.
pub async fn create_user<S: Sql>(
    s: &mut S,
    name: &str,
    hash: &str,
    role: &str,
    must_change: bool,
    now_ms: i64,
) -> Result<bool, DbError> {
    let n = s
        .exec(
            "INSERT INTO users (name, password_hash, role, must_change_password, password_changed_ms, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5) ON CONFLICT(name) DO NOTHING",
            vals![name, hash, role, must_change, now_ms],
        )
        .await?;
    Ok(n == 1)
}

pub async fn set_password<S: Sql>(
    s: &mut S,
    name: &str,
    hash: &str,
    must_change: bool,
    now_ms: i64,
) -> Result<bool, DbError> {
    let n = s
        .exec(
            "UPDATE users SET password_hash = ?2, must_change_password = ?3, password_changed_ms = ?4, updated_ms = ?4
             WHERE name = ?1",
            vals![name, hash, must_change, now_ms],
        )
        .await?;
    Ok(n == 1)
}

/// Change a user's role, disabled flag, and password (which the user must then change); false
/// when there is no such user.
pub async fn update_user<S: Sql>(
    s: &mut S,
    name: &str,
    role: Option<&str>,
    disabled: Option<bool>,
    password_hash: Option<&str>,
    now_ms: i64,
) -> Result<bool, DbError> {
    let n = s
        .exec(
            "UPDATE users SET role = COALESCE(?2, role), disabled = COALESCE(?3, disabled), updated_ms = ?4 WHERE name = ?1",
            vals![name, role, disabled, now_ms],
        )
        .await?;
    if let Some(hash) = password_hash {
        set_password(s, name, hash, true, now_ms).await?;
    }
    Ok(n == 1)
}

pub async fn delete_user<S: Sql>(s: &mut S, name: &str) -> Result<bool, DbError> {
    s.exec("DELETE FROM user_mfa WHERE name = ?1", vals![name]).await?;
    Ok(s.exec("DELETE FROM users WHERE name = ?1", vals![name]).await? == 1)
}

/// A user's second factor.
#[derive(Debug, Clone)]
pub struct Mfa {
    pub name: String,
    pub secret: String,
    pub enabled_ms: Option<i64>,
    pub last_step: i64,
    /// sha256 (hex) of each unused recovery code.
    pub recovery_sha256: Vec<String>,
    pub updated_ms: i64,
}

const MFA_COLUMNS: &str = "name, secret, enabled_ms, last_step, recovery_sha256, updated_ms";

fn mfa_row(r: &Row) -> Result<Mfa, DbError> {
    let recovery: String = r.get(4)?;
    let name: String = r.get(0)?;
    Ok(Mfa {
        secret: r.get(1)?,
        enabled_ms: r.get(2)?,
        last_step: r.get(3)?,
        recovery_sha256: serde_json::from_str(&recovery)
            .map_err(|e| DbError::Decode(format!("user_mfa.recovery_sha256 of {name:?}: {e}")))?,
        updated_ms: r.get(5)?,
        name,
    })
}

pub async fn mfa<S: Sql>(s: &mut S, name: &str) -> Result<Option<Mfa>, DbError> {
    let sql = format!("SELECT {MFA_COLUMNS} FROM user_mfa WHERE name = ?1");
    opt_row(s, &sql, vals![name]).await?.as_ref().map(mfa_row).transpose()
}

pub async fn all_mfa<S: Sql>(s: &mut S) -> Result<Vec<Mfa>, DbError> {
    let sql = format!("SELECT {MFA_COLUMNS} FROM user_mfa ORDER BY name");
    s.rows(&sql, vals![]).await?.iter().map(mfa_row).collect()
}

/// Start (or restart) setting up a second factor; false when one is already on.
pub async fn begin_mfa<S: Sql>(s: &mut S, name: &str, secret: &str, now_ms: i64) -> Result<bool, DbError> {
    let n = s
        .exec(
            "INSERT INTO user_mfa (name, secret, enabled_ms, last_step, recovery_sha256, updated_ms)
             VALUES (?1, ?2, NULL, 0, '[]', ?3)
             ON CONFLICT(name) DO UPDATE SET secret = excluded.secret, last_step = 0, recovery_sha256 = '[]',
                 updated_ms = excluded.updated_ms
             WHERE user_mfa.enabled_ms IS NULL",
            vals![name, secret, now_ms],
        )
        .await?;
    Ok(n == 1)
}

/// Switch a pending second factor on with its first code's step and the recovery codes'
/// hashes; false when nothing was pending.
pub async fn enable_mfa<S: Sql>(
    s: &mut S,
    name: &str,
    step: i64,
    recovery_sha256: &[String],
    now_ms: i64,
) -> Result<bool, DbError> {
    let recovery = serde_json::to_string(recovery_sha256).unwrap_or_else(|_| "[]".into());
    let n = s
        .exec(
            "UPDATE user_mfa SET enabled_ms = ?2, last_step = ?3, recovery_sha256 = ?4, updated_ms = ?2
             WHERE name = ?1 AND enabled_ms IS NULL",
            vals![name, now_ms, step, recovery],
        )
        .await?;
    Ok(n == 1)
}

/// Take a code's time step; false when it (or a later one) was used already — so a code works
/// once, even across backends.
pub async fn use_step<S: Sql>(s: &mut S, name: &str, step: i64) -> Result<bool, DbError> {
    let n = s
        .exec(
            "UPDATE user_mfa SET last_step = ?2 WHERE name = ?1 AND enabled_ms IS NOT NULL AND last_step < ?2",
            vals![name, step],
        )
        .await?;
    Ok(n == 1)
}

/// Strike one recovery code (by its hash); false when it is not (or no longer) there.
pub async fn use_recovery<S: Sql>(s: &mut S, name: &str, sha256: &str, now_ms: i64) -> Result<bool, DbError> {
    let Some(m) = mfa(s, name).await?.filter(|m| m.enabled_ms.is_some()) else { return Ok(false) };
    if !m.recovery_sha256.iter().any(|h| h == sha256) {
        return Ok(false);
    }
    let left: Vec<&String> = m.recovery_sha256.iter().filter(|h| *h != sha256).collect();
    let (before, after) = (
        serde_json::to_string(&m.recovery_sha256).unwrap_or_default(),
        serde_json::to_string(&left).unwrap_or_default(),
    );
    // Compare-and-swap: two sign-ins with the same code cannot both take it.
    let n = s
        .exec(
            "UPDATE user_mfa SET recovery_sha256 = ?3, updated_ms = ?4 WHERE name = ?1 AND recovery_sha256 = ?2",
            vals![name, before, after, now_ms],
        )
        .await?;
    Ok(n == 1)
}

pub async fn delete_mfa<S: Sql>(s: &mut S, name: &str) -> Result<bool, DbError> {
    Ok(s.exec("DELETE FROM user_mfa WHERE name = ?1", vals![name]).await? == 1)
}

/// Copy a second factor as it is (a move to another database); false when the target has one.
pub async fn put_mfa<S: Sql>(s: &mut S, m: &Mfa) -> Result<bool, DbError> {
    let recovery = serde_json::to_string(&m.recovery_sha256).unwrap_or_else(|_| "[]".into());
    let n = s
        .exec(
            "INSERT INTO user_mfa (name, secret, enabled_ms, last_step, recovery_sha256, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(name) DO NOTHING",
            vals![m.name.as_str(), m.secret.as_str(), m.enabled_ms, m.last_step, recovery, m.updated_ms],
        )
        .await?;
    Ok(n == 1)
}

/// Admins that can still sign in (the last one may not be removed, demoted or disabled).
pub async fn active_admins<S: Sql>(s: &mut S) -> Result<i64, DbError> {
    scalar(s, "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0", vals![]).await
}

/// An API token as stored: what the API shows of it, and its secret's hash.
#[derive(Debug, Clone)]
pub struct Token {
    pub token: kanade_shared::api::accounts::ApiToken,
    pub secret_sha256: String,
}

const TOKEN_COLUMNS: &str = "id, name, secret_sha256, role, created_by, created_ms, revoked_ms";

fn token_row(r: &Row) -> Result<Token, DbError> {
    Ok(Token {
        secret_sha256: r.get(2)?,
        token: kanade_shared::api::accounts::ApiToken {
            id: r.get(0)?,
            name: r.get(1)?,
            role: r.get(3)?,
            created_by: r.get(4)?,
            created_ms: r.get(5)?,
            revoked_ms: r.get(6)?,
        },
    })
}

pub async fn token<S: Sql>(s: &mut S, id: &str) -> Result<Option<Token>, DbError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1");
    opt_row(s, &sql, vals![id]).await?.as_ref().map(token_row).transpose()
}

pub async fn tokens<S: Sql>(s: &mut S) -> Result<Vec<Token>, DbError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_ms");
    s.rows(&sql, vals![]).await?.iter().map(token_row).collect()
}

/// Insert a token; false when the name is taken.
pub async fn create_token<S: Sql>(s: &mut S, t: &Token) -> Result<bool, DbError> {
    let n = s
        .exec(
            "INSERT INTO api_tokens (id, name, secret_sha256, role, created_by, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT DO NOTHING",
            vals![t.token.id.as_str(), t.token.name.as_str(), t.secret_sha256.as_str(), t.token.role.as_str(), t.token.created_by.as_str(), t.token.created_ms],
        )
        .await?;
    Ok(n == 1)
}

pub async fn revoke_token<S: Sql>(s: &mut S, id: &str, now_ms: i64) -> Result<bool, DbError> {
    Ok(s.exec(
        "UPDATE api_tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
        vals![id, now_ms],
    )
    .await?
        == 1)
}

/// Copy a user as it is (hash, flags, times); false when the name is taken.
pub async fn put_user<S: Sql>(s: &mut S, u: &User) -> Result<bool, DbError> {
    let n = s
        .exec(
            "INSERT INTO users (name, password_hash, role, disabled, must_change_password, password_changed_ms, created_ms,
                 updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(name) DO NOTHING",
            vals![
                u.account.name.as_str(),
                u.password_hash.as_str(),
                u.account.role.as_str(),
                u.account.disabled,
                u.account.must_change_password,
                u.account.password_changed_ms,
                u.account.created_ms,
                u.account.updated_ms
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Copy a token as it is (revoked or not); false when its id or name is taken.
pub async fn put_token<S: Sql>(s: &mut S, t: &Token) -> Result<bool, DbError> {
    let n = s
        .exec(
            "INSERT INTO api_tokens (id, name, secret_sha256, role, created_by, created_ms, revoked_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            vals![
                t.token.id.as_str(),
                t.token.name.as_str(),
                t.secret_sha256.as_str(),
                t.token.role.as_str(),
                t.token.created_by.as_str(),
                t.token.created_ms,
                t.token.revoked_ms
            ],
        )
        .await?;
    Ok(n == 1)
}

/// The secret named `name` every backend of this database uses: the stored one, or `fresh`
/// when none is stored yet (the first backend to ask stores it).
pub async fn shared_secret<S: Sql>(s: &mut S, name: &str, fresh: &str) -> Result<String, DbError> {
    s.exec(
        "INSERT INTO backend_secrets (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
        vals![name, fresh],
    )
    .await?;
    scalar(s, "SELECT value FROM backend_secrets WHERE name = ?1", vals![name]).await
}
