//! The Postgres engine: a pool of `tokio-postgres` connections (deadpool), statements prepared
//! once per connection, `?N` placeholders rewritten to `$N`, and every integer column BIGINT so
//! values read back exactly as from SQLite. Several backends may share one database.

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::DbError;
use super::sql::{BulkInsert, BulkUpsert, ColType, Dialect, Row, Sql, Value};

const POOL_SIZE: usize = 16;

#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
}

impl Postgres {
    /// Connect (the pool connects lazily; one connection is made now so a wrong URL fails at
    /// start) and bring the schema up to date.
    pub async fn open(url: &str) -> Result<Self, DbError> {
        let (driver_url, tls) =
            kanade_shared::config::postgres_tls(url).map_err(|e| DbError::Connect(format!("db.url: {e}")))?;
        let mut config = tokio_postgres::Config::from_str(&driver_url)
            .map_err(|e| DbError::Connect(format!("db.url: {}", super::error_chain(&e))))?;
        // Statements are prepared once per connection and run with thousands of parameters: a
        // plan made per run (Postgres's default for the first five) costs more than the run.
        let options = match config.get_options() {
            Some(given) => format!("{given} -c plan_cache_mode=force_generic_plan"),
            None => "-c plan_cache_mode=force_generic_plan".to_owned(),
        };
        config.options(&options);
        let recycle = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match super::pg_tls::connector(&tls)? {
            Some(tls) => Manager::from_config(config, tls, recycle),
            None => Manager::from_config(config, tokio_postgres::NoTls, recycle),
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| DbError::Connect(e.to_string()))?;
        let pg = Self { pool };
        let mut client = pg.client().await?;
        super::migrate::run_postgres(&mut client).await?;
        Ok(pg)
    }

    pub async fn client(&self) -> Result<deadpool_postgres::Client, DbError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => DbError::Connect(with_hint(super::pg_message(&e))),
            other => DbError::Connect(super::error_chain(&other)),
        })
    }
}

/// What to do about a refused certificate, which rustls names only by its kind.
fn with_hint(message: String) -> String {
    if message.contains("invalid peer certificate") {
        format!(
            "{message}; the Postgres server's certificate was not accepted: check sslrootcert (the CA that signs it) and the host name in db.url (sslmode=verify-ca does not check the name)"
        )
    } else {
        message
    }
}

/// Whether a failed transaction may simply be run again (a deadlock between two backends, or
/// a serialization failure).
pub fn retryable(e: &DbError) -> bool {
    use tokio_postgres::error::SqlState;
    match e {
        DbError::Postgres(e) => {
            matches!(e.code(), Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
        }
        _ => false,
    }
}

/// A pooled connection, or a transaction on one.
pub enum PgSql<'a, 'b> {
    Client(&'a deadpool_postgres::Client),
    Tx(&'a deadpool_postgres::Transaction<'b>),
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => Err(format!("cannot send the integer {i} as {ty}").into()),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => Err(format!("cannot send the number {f} as {ty}").into()),
            },
            Value::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    pg_text(s).to_sql(ty, out)
                }
                _ => Err(format!("cannot send text as {ty}").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Postgres text cannot hold NUL (SQLite's can): an agent's output with one (UTF-16 read as
/// UTF-8, or a hostile agent) would fail its whole batch, again at every redelivery. NUL
/// becomes U+FFFD, as other bytes that are not text already do.
fn pg_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// `?N` → `$N`, outside string literals.
pub fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

fn decode(row: &tokio_postgres::Row) -> Result<Row, DbError> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let v = match *ty {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map(|v| Value::Int(v.into())),
            Type::INT2 => row.try_get::<_, Option<i16>>(i)?.map(|v| Value::Int(v.into())),
            Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map(|v| Value::Int(v.into())),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(Value::Real),
            Type::FLOAT4 => row.try_get::<_, Option<f32>>(i)?.map(|v| Value::Real(v.into())),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                row.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            _ => {
                return Err(DbError::Decode(format!(
                    "column {i} ({}) has type {ty}, which the Postgres engine does not read",
                    column.name()
                )));
            }
        };
        values.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

/// One column of a bulk insert as a typed array.
enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Real(Vec<Option<f64>>),
}

impl Column {
    fn gather<'v>(name: &str, ty: ColType, values: impl Iterator<Item = &'v Value>) -> Result<Self, DbError> {
        let misfit = |v: &Value| DbError::Decode(format!("bulk insert: column {name} ({ty:?}) given {v:?}"));
        Ok(match ty {
            ColType::Text => Self::Text(
                values
                    .map(|v| match v {
                        Value::Null => Ok(None),
                        Value::Text(s) => Ok(Some(pg_text(s).into_owned())),
                        v => Err(misfit(v)),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            ColType::Int => Self::Int(
                values
                    .map(|v| match v {
                        Value::Null => Ok(None),
                        Value::Int(i) => Ok(Some(*i)),
                        v => Err(misfit(v)),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            ColType::Real => Self::Real(
                values
                    .map(|v| match v {
                        Value::Null => Ok(None),
                        Value::Real(f) => Ok(Some(*f)),
                        Value::Int(i) => Ok(Some(*i as f64)),
                        v => Err(misfit(v)),
                    })
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// Every column of `rows`, each as one typed array.
    fn gather_all<'r>(
        columns: &[(&str, ColType)],
        rows: impl Iterator<Item = &'r Vec<Value>> + Clone,
    ) -> Result<Vec<Self>, DbError> {
        columns
            .iter()
            .enumerate()
            .map(|(c, (name, ty))| {
                Self::gather(name, *ty, rows.clone().map(|r| r.get(c).unwrap_or(&Value::Null)))
            })
            .collect()
    }

    fn as_param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Self::Text(v) => v,
            Self::Int(v) => v,
            Self::Real(v) => v,
        }
    }
}

/// `?1::text[], ?2::int8[], …`: one typed array parameter per column.
fn array_params(columns: &[(&str, ColType)]) -> String {
    let each: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| {
            let ty = match ty {
                ColType::Text => "text",
                ColType::Int => "int8",
                ColType::Real => "float8",
            };
            format!("?{}::{ty}[]", i + 1)
        })
        .collect();
    each.join(", ")
}

/// `rows` into `table` by `COPY … FROM STDIN` (text format), in one message.
async fn copy_in<'r>(
    client: &tokio_postgres::Client,
    table: &str,
    columns: &[(&str, ColType)],
    rows: impl Iterator<Item = &'r Vec<Value>>,
) -> Result<(), DbError> {
    let mut body = String::new();
    for row in rows {
        for (c, (name, ty)) in columns.iter().enumerate() {
            if c > 0 {
                body.push('\t');
            }
            copy_value(&mut body, name, *ty, row.get(c).unwrap_or(&Value::Null))?;
        }
        body.push('\n');
    }
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let sink = client.copy_in(&format!("COPY {table} ({}) FROM STDIN", names.join(", "))).await?;
    let mut sink = std::pin::pin!(sink);
    futures::SinkExt::send(&mut sink, bytes::Bytes::from(body)).await?;
    sink.finish().await?;
    Ok(())
}

/// One value in `COPY`'s text format: `\N` for NULL, and the four characters that separate
/// fields and rows escaped with a backslash.
fn copy_value(out: &mut String, name: &str, ty: ColType, v: &Value) -> Result<(), DbError> {
    use std::fmt::Write as _;
    match (ty, v) {
        (_, Value::Null) => out.push_str("\\N"),
        (ColType::Int | ColType::Real, Value::Int(i)) => {
            let _ = write!(out, "{i}");
        }
        (ColType::Real, Value::Real(f)) => {
            let _ = write!(out, "{f:?}");
        }
        (ColType::Text, Value::Text(t)) => {
            for ch in pg_text(t).chars() {
                match ch {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    ch => out.push(ch),
                }
            }
        }
        (ty, v) => return Err(DbError::Decode(format!("bulk copy: column {name} ({ty:?}) given {v:?}"))),
    }
    Ok(())
}

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl PgSql<'_, '_> {
    async fn prepare(&self, sql: &str) -> Result<tokio_postgres::Statement, DbError> {
        let sql = placeholders(sql);
        Ok(match self {
            Self::Client(c) => c.prepare_cached(&sql).await?,
            Self::Tx(t) => t.prepare_cached(&sql).await?,
        })
    }

    fn client(&self) -> &tokio_postgres::Client {
        match self {
            Self::Client(c) => c,
            Self::Tx(t) => t.client(),
        }
    }
}

impl Sql for PgSql<'_, '_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn exec(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, DbError> {
        let stmt = self.prepare(sql).await?;
        Ok(self.client().execute(&stmt, &refs(&params)).await?)
    }

    async fn exec_many(&mut self, sql: &str, params: Vec<Vec<Value>>) -> Result<Vec<u64>, DbError> {
        let stmt = self.prepare(sql).await?;
        let client = self.client();
        // Sent together and answered in order on one connection: one round trip per batch, not
        // per row.
        let runs = params.iter().map(|p| {
            let stmt = &stmt;
            async move { client.execute(stmt, &refs(p)).await }
        });
        Ok(futures::future::try_join_all(runs).await?)
    }

    /// One statement whatever the row count: each column goes as one typed array, unnested;
    /// `RETURNING` the first column says which rows were written.
    async fn insert_rows(&mut self, b: &BulkInsert<'_>, rows: &[Vec<Value>]) -> Result<Vec<bool>, DbError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = b.columns.iter().map(|(name, _)| *name).collect();
        let sql = format!(
            "INSERT INTO {table} ({cols}) SELECT * FROM UNNEST({arrays}) AS u({cols}) {tail} RETURNING {key}",
            table = b.table,
            cols = names.join(", "),
            arrays = array_params(b.columns),
            tail = b.tail,
            key = names[..b.key].iter().map(|k| format!("{}.{k}", b.table)).collect::<Vec<_>>().join(", "),
        );
        let columns = Column::gather_all(b.columns, rows.iter())?;
        let stmt = self.prepare(&sql).await?;
        let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(Column::as_param).collect();
        let written = self.client().query(&stmt, &params).await?;
        let keys: std::collections::HashSet<Vec<String>> = written
            .iter()
            .map(|r| (0..b.key).map(|i| r.try_get::<_, String>(i)).collect())
            .collect::<Result<_, _>>()?;
        let key_of = |r: &Vec<Value>| -> Option<Vec<String>> {
            r[..b.key]
                .iter()
                .map(|v| if let Value::Text(t) = v { Some(pg_text(t).into_owned()) } else { None })
                .collect()
        };
        Ok(rows.iter().map(|r| key_of(r).is_some_and(|k| keys.contains(&k))).collect())
    }

    /// Which keys are stored is read first, under the one-writer lock (nothing else inserts a
    /// key until the transaction ends): new rows then go in by `COPY`, which has no conflict
    /// handling and is the fastest way in, and only stored rows that meet `when` are updated,
    /// in one statement over arrays. An `INSERT … ON CONFLICT DO UPDATE` of every row spent
    /// ~40% more on a batch of 5,000 new results.
    async fn upsert_rows(&mut self, u: &BulkUpsert<'_>, rows: &[Vec<Value>]) -> Result<Vec<bool>, DbError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // Callers hold it already (it is re-entrant within a transaction); taken here too so the
        // `COPY` below can never meet a key another writer inserted.
        if let Some(lock) = self.dialect().one_writer() {
            self.batch(lock).await?;
        }
        let keys: Vec<String> = rows
            .iter()
            .map(|r| match r.first() {
                Some(Value::Text(k)) => Ok(pg_text(k).into_owned()),
                other => {
                    Err(DbError::Decode(format!("bulk upsert into {}: key {other:?} is not text", u.table)))
                }
            })
            .collect::<Result<_, _>>()?;
        let (table, key) = (u.table, u.key());
        // Prepared per batch, not cached, so planned for the table as it is now: a generic plan
        // kept from when the table was empty scanned all of it for every key (16 s for 100,000
        // results instead of 1.2).
        let probe = placeholders(&format!(
            "SELECT {key}, ({}) FROM {table} WHERE {key} = ANY(?1::text[])",
            u.when(table)
        ));
        let stored: std::collections::HashMap<String, bool> = self
            .client()
            .query(&probe, &[&keys])
            .await?
            .iter()
            .map(|r| Ok((r.try_get::<_, String>(0)?, r.try_get::<_, Option<bool>>(1)?.unwrap_or(false))))
            .collect::<Result<_, DbError>>()?;
        let mut written = vec![false; rows.len()];
        let (mut fresh, mut stale) = (Vec::new(), Vec::new());
        let mut seen = std::collections::HashSet::with_capacity(rows.len());
        for (i, k) in keys.iter().enumerate() {
            if !seen.insert(k) {
                continue; // the first copy is the one written
            }
            match stored.get(k) {
                None => fresh.push(i),
                Some(true) => stale.push(i),
                Some(false) => {}
            }
        }
        if !fresh.is_empty() {
            copy_in(self.client(), table, u.columns, fresh.iter().map(|&i| &rows[i])).await?;
            for i in fresh {
                written[i] = true;
            }
        }
        if !stale.is_empty() {
            let names: Vec<&str> = u.columns.iter().map(|(name, _)| *name).collect();
            let sql = format!(
                "UPDATE {table} SET {set} FROM UNNEST({arrays}) AS incoming({cols})
                 WHERE {table}.{key} = incoming.{key} AND {when} RETURNING {table}.{key}",
                set = u.set_list(table, "incoming"),
                arrays = array_params(u.columns),
                cols = names.join(", "),
                when = u.when(table),
            );
            let columns = Column::gather_all(u.columns, stale.iter().map(|&i| &rows[i]))?;
            let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(Column::as_param).collect();
            // Prepared per batch too, like the probe.
            let updated: std::collections::HashSet<String> = self
                .client()
                .query(&placeholders(&sql), &params)
                .await?
                .iter()
                .map(|r| r.try_get::<_, String>(0))
                .collect::<Result<_, _>>()?;
            for i in stale {
                written[i] = updated.contains(&keys[i]);
            }
        }
        Ok(written)
    }

    async fn rows(&mut self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        let stmt = self.prepare(sql).await?;
        let rows = self.client().query(&stmt, &refs(&params)).await?;
        rows.iter().map(decode).collect()
    }

    async fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        Ok(self.client().batch_execute(sql).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_become_dollars_outside_literals() {
        let cases = [
            ("SELECT ?1, ?12", "SELECT $1, $12"),
            ("WHERE a = '?1' AND b = ?2", "WHERE a = '?1' AND b = $2"),
            ("x LIKE ?2 || '.%'", "x LIKE $2 || '.%'"),
            ("SELECT 'it''s ?3', ?3", "SELECT 'it''s ?3', $3"),
            ("a ? b", "a ? b"),
        ];
        for (sqlite, pg) in cases {
            assert_eq!(placeholders(sqlite), pg, "{sqlite}");
        }
    }
}
