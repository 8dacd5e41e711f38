//! Users and API tokens.

use serde::Serialize;

use super::DbError;
use super::sql::{Row, Sql, opt_row, scalar, vals};

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub name: String,
    #[serde(skip)]
    pub password_hash: String,
    pub role: String,
    pub disabled: bool,
    pub must_change_password: bool,
    pub password_changed_ms: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

const USER_COLUMNS: &str =
    "name, password_hash, role, disabled, must_change_password, password_changed_ms, created_ms, updated_ms";

fn user_row(r: &Row) -> Result<User, DbError> {
    Ok(User {
        name: r.get(0)?,
        password_hash: r.get(1)?,
        role: r.get(2)?,
        disabled: r.get(3)?,
        must_change_password: r.get(4)?,
        password_changed_ms: r.get(5)?,
        created_ms: r.get(6)?,
        updated_ms: r.get(7)?,
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
    Ok(s.exec("DELETE FROM users WHERE name = ?1", vals![name]).await? == 1)
}

/// Admins that can still sign in (the last one may not be removed, demoted or disabled).
pub async fn active_admins<S: Sql>(s: &mut S) -> Result<i64, DbError> {
    scalar(s, "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0", vals![]).await
}

#[derive(Debug, Clone, Serialize)]
pub struct Token {
    pub id: String,
    pub name: String,
    #[serde(skip)]
    pub secret_sha256: String,
    pub role: String,
    pub created_by: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

const TOKEN_COLUMNS: &str = "id, name, secret_sha256, role, created_by, created_ms, revoked_ms";

fn token_row(r: &Row) -> Result<Token, DbError> {
    Ok(Token {
        id: r.get(0)?,
        name: r.get(1)?,
        secret_sha256: r.get(2)?,
        role: r.get(3)?,
        created_by: r.get(4)?,
        created_ms: r.get(5)?,
        revoked_ms: r.get(6)?,
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
            vals![t.id.as_str(), t.name.as_str(), t.secret_sha256.as_str(), t.role.as_str(), t.created_by.as_str(), t.created_ms],
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
                u.name.as_str(),
                u.password_hash.as_str(),
                u.role.as_str(),
                u.disabled,
                u.must_change_password,
                u.password_changed_ms,
                u.created_ms,
                u.updated_ms
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
                t.id.as_str(),
                t.name.as_str(),
                t.secret_sha256.as_str(),
                t.role.as_str(),
                t.created_by.as_str(),
                t.created_ms,
                t.revoked_ms
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
