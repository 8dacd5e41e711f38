//! Enrolment tokens and agents' own broker credentials. Secrets are kept as SHA-256 hashes:
//! both are 32 random bytes, so a fast hash is enough (no password to guess).

use kanade_shared::wire::enroll::{TokenInfo, TokenSpec};
use kanade_shared::{GroupName, PcId};

use super::DbError;
use super::sql::{Row, Sql, opt_row, vals};

const TOKEN_COLUMNS: &str =
    "id, created_by, created_ms, expires_ms, max_uses, uses, groups_json, revoked_ms, token_sha256";

/// A stored token: what is listed, and the hash it is found by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub info: TokenInfo,
    pub sha256: String,
}

fn token_row(r: &Row) -> Result<StoredToken, DbError> {
    let id: String = r.get(0)?;
    let groups_json: String = r.get(6)?;
    let groups: Vec<GroupName> = serde_json::from_str(&groups_json)
        .map_err(|e| DbError::Decode(format!("enroll_tokens.groups_json of {id}: {e}")))?;
    let count = |i: usize| -> Result<u32, DbError> {
        let n: i64 = r.get(i)?;
        u32::try_from(n).map_err(|_| DbError::Decode(format!("enroll_tokens column {i} of {id}: {n}")))
    };
    Ok(StoredToken {
        info: TokenInfo {
            created_by: r.get(1)?,
            created_at: super::ms_ts(r.get(2)?),
            expires_at: super::ms_ts(r.get(3)?),
            max_uses: count(4)?,
            uses: count(5)?,
            groups,
            revoked_at: r.get::<Option<i64>>(7)?.map(super::ms_ts),
            id,
        },
        sha256: r.get(8)?,
    })
}

pub async fn create_token<S: Sql>(
    s: &mut S,
    id: &str,
    sha256: &str,
    by: &str,
    now_ms: i64,
    spec: &TokenSpec,
    audit: &super::outbox::Outgoing,
) -> Result<(), DbError> {
    let groups = serde_json::to_string(&spec.groups).map_err(|e| DbError::Decode(e.to_string()))?;
    super::outbox::put(s, audit, now_ms).await?;
    s.exec(
        "INSERT INTO enroll_tokens (id, token_sha256, created_by, created_ms, expires_ms, max_uses, uses, groups_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7)",
        vals![id, sha256, by, now_ms, super::ts_ms(spec.expires_at), i64::from(spec.max_uses), groups],
    )
    .await?;
    Ok(())
}

/// A copied token (migrate-to-postgres); false when the target has one with its id.
pub async fn put_token<S: Sql>(s: &mut S, t: &StoredToken) -> Result<bool, DbError> {
    let groups = serde_json::to_string(&t.info.groups).map_err(|e| DbError::Decode(e.to_string()))?;
    let i = &t.info;
    let n = s
        .exec(
            "INSERT INTO enroll_tokens (id, token_sha256, created_by, created_ms, expires_ms, max_uses, uses, groups_json, revoked_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(id) DO NOTHING",
            vals![
                i.id.as_str(),
                t.sha256.as_str(),
                i.created_by.as_str(),
                super::ts_ms(i.created_at),
                super::ts_ms(i.expires_at),
                i64::from(i.max_uses),
                i64::from(i.uses),
                groups,
                i.revoked_at.map(super::ts_ms)
            ],
        )
        .await?;
    Ok(n == 1)
}

pub async fn tokens<S: Sql>(s: &mut S) -> Result<Vec<StoredToken>, DbError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM enroll_tokens ORDER BY created_ms DESC, id");
    s.rows(&sql, vals![]).await?.iter().map(token_row).collect()
}

pub async fn token_by_hash<S: Sql>(s: &mut S, sha256: &str) -> Result<Option<StoredToken>, DbError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM enroll_tokens WHERE token_sha256 = ?1");
    opt_row(s, &sql, vals![sha256]).await?.as_ref().map(token_row).transpose()
}

/// Revoke a token, its audit event into the outbox; false when there is none with this id or it
/// was revoked already.
pub async fn revoke_token<S: Sql>(
    s: &mut S,
    id: &str,
    now_ms: i64,
    audit: &super::outbox::Outgoing,
) -> Result<bool, DbError> {
    let n = s
        .exec(
            "UPDATE enroll_tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
            vals![id, now_ms],
        )
        .await?;
    if n == 1 {
        super::outbox::put(s, audit, now_ms).await?;
    }
    Ok(n == 1)
}

/// Why an enrolment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No such token, or it is expired, used up or revoked (the reason).
    #[error("{0}")]
    Token(String),
    /// The PC has live credentials: revoke them first.
    #[error("{0} is enrolled already")]
    Enrolled(PcId),
}

/// One enrolment, atomically on either engine: the token counts one more use only while it is
/// valid (one conditional update, so concurrent enrolments cannot pass `max_uses` or use a
/// token revoked meanwhile), the PC gets credentials with `secret_sha256` only if it has none
/// or they were revoked (one conditional upsert), and `audit` goes into the outbox. A refused
/// credential write fails the transaction ([`DbError::Enrol`]), so it costs the token no use.
pub async fn enrol<S: Sql>(
    s: &mut S,
    token_sha256: &str,
    pc: &PcId,
    secret_sha256: &str,
    now: time::OffsetDateTime,
    audit: &super::outbox::Outgoing,
) -> Result<TokenInfo, DbError> {
    let now_ms = super::ts_ms(now);
    let used = s
        .exec(
            "UPDATE enroll_tokens SET uses = uses + 1
             WHERE token_sha256 = ?1 AND revoked_ms IS NULL AND expires_ms > ?2 AND uses < max_uses",
            vals![token_sha256, now_ms],
        )
        .await?;
    let Some(token) = token_by_hash(s, token_sha256).await? else {
        return Err(DbError::Enrol(Refused::Token(
            "this enrolment token is not known here; check it was copied whole, or ask an admin for a new one"
                .into(),
        )));
    };
    if used == 0 {
        let why = token
            .info
            .refusal(now)
            .unwrap_or_else(|| format!("enrolment token {} cannot be used now", token.info.id));
        return Err(DbError::Enrol(Refused::Token(why)));
    }
    let written = s
        .exec(
            "INSERT INTO agent_credentials (pc_id, secret_sha256, token_id, enrolled_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(pc_id) DO UPDATE SET secret_sha256 = ?2, token_id = ?3, enrolled_ms = ?4,
               revoked_ms = NULL, revoked_by = NULL, server_id = NULL, client_id = NULL, authorized_ms = NULL
             WHERE agent_credentials.revoked_ms IS NOT NULL",
            vals![pc, secret_sha256, token.info.id.as_str(), now_ms],
        )
        .await?;
    if written == 0 {
        return Err(DbError::Enrol(Refused::Enrolled(pc.clone())));
    }
    super::outbox::put(s, audit, now_ms).await?;
    Ok(token.info)
}

/// A broker connection's credentials checked, and that connection recorded as the PC's: true
/// when the PC is enrolled, not revoked and the secret matches. One statement, so a revocation
/// either comes first (and this fails) or sees this connection (and disconnects it).
pub async fn authorize<S: Sql>(
    s: &mut S,
    pc: &PcId,
    secret_sha256: &str,
    server_id: &str,
    client_id: u64,
    now_ms: i64,
) -> Result<bool, DbError> {
    let n = s
        .exec(
            "UPDATE agent_credentials SET server_id = ?3, client_id = ?4, authorized_ms = ?5
             WHERE pc_id = ?1 AND secret_sha256 = ?2 AND revoked_ms IS NULL",
            vals![pc, secret_sha256, server_id, client_id as i64, now_ms],
        )
        .await?;
    Ok(n == 1)
}

/// What a revocation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// Revoked now; the connection the last authorization admitted, if any.
    Now(Option<(String, u64)>),
    Already,
    NotEnrolled,
}

/// Revoke `pc`'s credentials; `audit` goes into the outbox when they were live.
pub async fn revoke<S: Sql>(
    s: &mut S,
    pc: &PcId,
    by: &str,
    now_ms: i64,
    audit: &super::outbox::Outgoing,
) -> Result<Revoked, DbError> {
    let n = s
        .exec(
            "UPDATE agent_credentials SET revoked_ms = ?2, revoked_by = ?3 WHERE pc_id = ?1 AND revoked_ms IS NULL",
            vals![pc, now_ms, by],
        )
        .await?;
    if n == 0 {
        let known = opt_row(s, "SELECT 1 FROM agent_credentials WHERE pc_id = ?1", vals![pc]).await?;
        return Ok(if known.is_some() { Revoked::Already } else { Revoked::NotEnrolled });
    }
    super::outbox::put(s, audit, now_ms).await?;
    let row =
        opt_row(s, "SELECT server_id, client_id FROM agent_credentials WHERE pc_id = ?1", vals![pc]).await?;
    let conn = match row {
        Some(r) => match (r.get::<Option<String>>(0)?, r.get::<Option<i64>>(1)?) {
            (Some(server), Some(cid)) => Some((server, cid as u64)),
            _ => None,
        },
        None => None,
    };
    Ok(Revoked::Now(conn))
}

/// An agent's credentials row, for copying between databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub pc_id: PcId,
    pub secret_sha256: String,
    pub token_id: Option<String>,
    pub enrolled_ms: i64,
    pub revoked_ms: Option<i64>,
    pub revoked_by: Option<String>,
}

pub async fn all_credentials<S: Sql>(s: &mut S) -> Result<Vec<Credentials>, DbError> {
    let rows = s
        .rows(
            "SELECT pc_id, secret_sha256, token_id, enrolled_ms, revoked_ms, revoked_by FROM agent_credentials ORDER BY pc_id",
            vals![],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Credentials {
                pc_id: r.get(0)?,
                secret_sha256: r.get(1)?,
                token_id: r.get(2)?,
                enrolled_ms: r.get(3)?,
                revoked_ms: r.get(4)?,
                revoked_by: r.get(5)?,
            })
        })
        .collect()
}

pub async fn put_credentials<S: Sql>(s: &mut S, c: &Credentials) -> Result<bool, DbError> {
    let n = s
        .exec(
            "INSERT INTO agent_credentials (pc_id, secret_sha256, token_id, enrolled_ms, revoked_ms, revoked_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(pc_id) DO NOTHING",
            vals![
                &c.pc_id,
                c.secret_sha256.as_str(),
                c.token_id.as_deref(),
                c.enrolled_ms,
                c.revoked_ms,
                c.revoked_by.as_deref()
            ],
        )
        .await?;
    Ok(n == 1)
}
