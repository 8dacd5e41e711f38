//! Users and API tokens.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use super::DbError;

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

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
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

pub fn user(c: &Connection, name: &str) -> Result<Option<User>, DbError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1");
    Ok(c.prepare_cached(&sql)?.query_row([name], user_row).optional()?)
}

pub fn users(c: &Connection) -> Result<Vec<User>, DbError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY name");
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map([], user_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn user_count(c: &Connection) -> Result<i64, DbError> {
    Ok(c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
}

/// Insert a user; false when the name is taken.
pub fn create_user(
    tx: &Transaction<'_>,
    name: &str,
    hash: &str,
    role: &str,
    must_change: bool,
    now_ms: i64,
) -> Result<bool, DbError> {
    let n = tx.execute(
        "INSERT INTO users (name, password_hash, role, must_change_password, password_changed_ms, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5) ON CONFLICT(name) DO NOTHING",
        params![name, hash, role, must_change, now_ms],
    )?;
    Ok(n == 1)
}

pub fn set_password(
    tx: &Transaction<'_>,
    name: &str,
    hash: &str,
    must_change: bool,
    now_ms: i64,
) -> Result<bool, DbError> {
    let n = tx.execute(
        "UPDATE users SET password_hash = ?2, must_change_password = ?3, password_changed_ms = ?4, updated_ms = ?4
         WHERE name = ?1",
        params![name, hash, must_change, now_ms],
    )?;
    Ok(n == 1)
}

pub fn update_user(
    tx: &Transaction<'_>,
    name: &str,
    role: Option<&str>,
    disabled: Option<bool>,
    now_ms: i64,
) -> Result<bool, DbError> {
    let n = tx.execute(
        "UPDATE users SET role = COALESCE(?2, role), disabled = COALESCE(?3, disabled), updated_ms = ?4 WHERE name = ?1",
        params![name, role, disabled, now_ms],
    )?;
    Ok(n == 1)
}

pub fn delete_user(tx: &Transaction<'_>, name: &str) -> Result<bool, DbError> {
    Ok(tx.execute("DELETE FROM users WHERE name = ?1", [name])? == 1)
}

/// Admins that can still sign in (the last one may not be removed, demoted or disabled).
pub fn active_admins(c: &Connection) -> Result<i64, DbError> {
    Ok(c.query_row("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0", [], |r| r.get(0))?)
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

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Token> {
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

pub fn token(c: &Connection, id: &str) -> Result<Option<Token>, DbError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1");
    Ok(c.prepare_cached(&sql)?.query_row([id], token_row).optional()?)
}

pub fn tokens(c: &Connection) -> Result<Vec<Token>, DbError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_ms");
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map([], token_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Insert a token; false when the name is taken.
pub fn create_token(tx: &Transaction<'_>, t: &Token) -> Result<bool, DbError> {
    let n = tx.execute(
        "INSERT INTO api_tokens (id, name, secret_sha256, role, created_by, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT DO NOTHING",
        params![t.id, t.name, t.secret_sha256, t.role, t.created_by, t.created_ms],
    )?;
    Ok(n == 1)
}

pub fn revoke_token(tx: &Transaction<'_>, id: &str, now_ms: i64) -> Result<bool, DbError> {
    Ok(tx.execute(
        "UPDATE api_tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
        params![id, now_ms],
    )? == 1)
}
