//! What every store operation is written against: a connection (or transaction) of either
//! engine that runs statements with `?N` placeholders and hands rows back as plain values.
//! Operations are written once; what differs between SQLite and Postgres lives in the engines
//! (placeholders, types, statement caching) and in the few [`Dialect`] fragments below.

use std::future::Future;

use super::DbError;

/// A parameter or a column value. Integers are 64-bit everywhere (booleans are 0/1), so one
/// value reads the same from either engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

macro_rules! value_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Int(i64::from(v))
            }
        }
    )*};
}
value_from_int!(i64, i32, u32, i16, u8);

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

// Typed ids go in as their text and come back parsed: a stored id that no longer parses is an
// error naming the column, never a silently different value.
macro_rules! value_from_id {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Text(v.to_string())
            }
        }
        impl From<&$t> for Value {
            fn from(v: &$t) -> Self {
                Value::Text(v.to_string())
            }
        }
        impl FromValue for $t {
            fn from_value(v: &Value) -> Result<Self, &'static str> {
                match v {
                    Value::Text(s) => s.parse().map_err(|_| concat!("a valid ", stringify!($t))),
                    _ => Err(concat!("a ", stringify!($t))),
                }
            }
        }
    )*};
}
value_from_id!(
    kanade_shared::ExecId,
    kanade_shared::PcId,
    kanade_shared::JobId,
    kanade_shared::ResultId,
    kanade_shared::AuditId
);

/// `vals![a, b, c]`: the parameters of one statement.
macro_rules! vals {
    ($($v:expr),* $(,)?) => {
        vec![$($crate::db::sql::Value::from($v)),*]
    };
}
pub(crate) use vals;

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `i` as `T`; a type that does not fit is an error naming the column.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, DbError> {
        let v = self.0.get(i).unwrap_or(&Value::Null);
        T::from_value(v).map_err(|want| DbError::Decode(format!("column {i}: expected {want}, found {v:?}")))
    }
}

pub trait FromValue: Sized {
    /// `Err` names the type wanted.
    fn from_value(v: &Value) -> Result<Self, &'static str>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, &'static str> {
        match v {
            Value::Int(i) => Ok(*i),
            _ => Err("an integer"),
        }
    }
}

impl FromValue for f64 {
    fn from_value(v: &Value) -> Result<Self, &'static str> {
        match v {
            Value::Real(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            _ => Err("a number"),
        }
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, &'static str> {
        match v {
            Value::Int(i) => Ok(*i != 0),
            _ => Err("a boolean"),
        }
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, &'static str> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            _ => Err("text"),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, &'static str> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// The SQL spoken by an engine, for the few fragments that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `json_col` (a JSON array of strings, stored as text) contains the text parameter `param`.
    pub fn json_array_has(self, json_col: &str, param: &str) -> String {
        match self {
            Self::Sqlite => format!("EXISTS (SELECT 1 FROM json_each({json_col}) WHERE value = {param})"),
            Self::Postgres => format!("({json_col}::jsonb @> jsonb_build_array(CAST({param} AS TEXT)))"),
        }
    }

    /// A `FROM` item: the strings of the JSON array (text parameter `param`) as rows of table
    /// `alias`, column `value`.
    pub fn json_text_elements(self, param: &str, alias: &str) -> String {
        match self {
            Self::Sqlite => format!("json_each({param}) AS {alias}"),
            Self::Postgres => {
                format!("jsonb_array_elements_text(CAST(CAST({param} AS TEXT) AS jsonb)) AS {alias}(value)")
            }
        }
    }

    /// A statement that makes the transaction wait for every other one that ran it to end
    /// (Postgres: a transaction-scoped advisory lock). SQLite has one writer already.
    pub fn one_writer(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some("SELECT pg_advisory_xact_lock(7218331607)"),
        }
    }

    /// The tail of a `SELECT` that keeps its rows from changing until the transaction ends
    /// (SQLite's one writer already does).
    pub fn for_share(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR SHARE",
        }
    }

    /// The smaller of two integer expressions (both engines' indexes on it match this text).
    pub fn least(self, a: &str, b: &str) -> String {
        match self {
            Self::Sqlite => format!("min({a}, {b})"),
            Self::Postgres => format!("LEAST({a}, {b})"),
        }
    }

    /// A text expression compared and sorted bytewise: rows of tables with different
    /// collations meet in one order (Postgres' tables differ; SQLite's are bytewise already).
    pub fn bytewise(self, expr: &str) -> String {
        match self {
            Self::Sqlite => expr.to_owned(),
            Self::Postgres => format!("({expr}) COLLATE \"C\""),
        }
    }

    /// `needle` occurs in `haystack`, ignoring ASCII case.
    pub fn contains_ci(self, haystack: &str, needle: &str) -> String {
        match self {
            Self::Sqlite => format!("instr(lower({haystack}), lower({needle})) > 0"),
            // Both sides lowered under the same collation as the column, whatever the database's.
            Self::Postgres => {
                format!("strpos(lower({haystack}), lower(CAST({needle} AS TEXT) COLLATE \"C\")) > 0")
            }
        }
    }
}

/// The type of a column in a bulk insert (Postgres sends each column as one typed array).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Text,
    Int,
    Real,
}

/// `INSERT INTO table (columns) <rows> tail`, for many rows at once; `tail` is what follows the
/// rows (`ON CONFLICT …`, no `RETURNING`) and may name the new row as `excluded`. The first
/// `key` columns are text and together tell the rows apart.
pub struct BulkInsert<'a> {
    pub table: &'a str,
    pub columns: &'a [(&'a str, ColType)],
    pub key: usize,
    pub tail: &'a str,
}

/// Rows keyed by their first column (text): each is inserted, or, where a stored row has its
/// key, updates that row when the stored row meets `when`. `set` (`column = expression`) and
/// `when` are written over `{old}` (the stored row) and `{new}` (the incoming one); each engine
/// names them its way.
pub struct BulkUpsert<'a> {
    pub table: &'a str,
    pub columns: &'a [(&'a str, ColType)],
    pub set: &'a [(&'a str, &'a str)],
    pub when: &'a str,
}

impl BulkUpsert<'_> {
    pub fn key(&self) -> &str {
        self.columns[0].0
    }

    /// `set` as a `SET` list, the stored row named `old` and the incoming one `new`.
    pub fn set_list(&self, old: &str, new: &str) -> String {
        let each: Vec<String> =
            self.set.iter().map(|(column, expr)| format!("{column} = {}", fill(expr, old, new))).collect();
        each.join(", ")
    }

    /// `when`, the stored row named `old`.
    pub fn when(&self, old: &str) -> String {
        fill(self.when, old, "")
    }

    /// As the tail of an `INSERT INTO {table}`: `ON CONFLICT … DO UPDATE`, the incoming row
    /// named `excluded`.
    pub fn on_conflict(&self) -> String {
        format!(
            "ON CONFLICT({}) DO UPDATE SET {} WHERE {}",
            self.key(),
            self.set_list(self.table, "excluded"),
            self.when(self.table)
        )
    }
}

fn fill(sql: &str, old: &str, new: &str) -> String {
    sql.replace("{old}", old).replace("{new}", new)
}

/// `(?1, …, ?w), (?w+1, …, ?2w), …` for `rows` rows of `width` values.
pub fn value_lists(rows: usize, width: usize) -> String {
    let mut out = String::with_capacity(rows * width * 5);
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("?{}", r * width + c + 1));
        }
        out.push(')');
    }
    out
}

/// A connection or transaction of one engine. Statements use `?1`, `?2`, … placeholders.
/// The futures are `Send` so Postgres operations can run on the async workers; SQLite's are
/// always ready (its engine runs a whole operation on the blocking pool).
pub trait Sql {
    fn dialect(&self) -> Dialect;

    /// Run one statement; how many rows it changed.
    fn exec(&mut self, sql: &str, params: Vec<Value>) -> impl Future<Output = Result<u64, DbError>> + Send;

    /// Run one statement once per parameter list (pipelined where the engine can); the rows
    /// each run changed, in order.
    fn exec_many(
        &mut self,
        sql: &str,
        params: Vec<Vec<Value>>,
    ) -> impl Future<Output = Result<Vec<u64>, DbError>> + Send;

    /// Insert many rows (each as wide as `b.columns`, no two with the same first column) the
    /// engine's fastest way; whether each was written (inserted, or updated by the tail).
    fn insert_rows(
        &mut self,
        b: &BulkInsert<'_>,
        rows: &[Vec<Value>],
    ) -> impl Future<Output = Result<Vec<bool>, DbError>> + Send;

    /// Insert or update many rows (each as wide as `u.columns`, no two with the same key) the
    /// engine's fastest way; whether each was written (inserted, or updated).
    fn upsert_rows(
        &mut self,
        u: &BulkUpsert<'_>,
        rows: &[Vec<Value>],
    ) -> impl Future<Output = Result<Vec<bool>, DbError>> + Send;

    /// Run one query; its rows.
    fn rows(
        &mut self,
        sql: &str,
        params: Vec<Value>,
    ) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send;

    /// Run several `;`-separated statements without parameters.
    fn batch(&mut self, sql: &str) -> impl Future<Output = Result<(), DbError>> + Send;
}

/// The first row, if any.
pub async fn opt_row<S: Sql>(s: &mut S, sql: &str, params: Vec<Value>) -> Result<Option<Row>, DbError> {
    Ok(s.rows(sql, params).await?.into_iter().next())
}

/// The single value of a query that always returns one row (`COUNT(*)`, `EXISTS`).
pub async fn scalar<S: Sql, T: FromValue>(s: &mut S, sql: &str, params: Vec<Value>) -> Result<T, DbError> {
    match opt_row(s, sql, params).await? {
        Some(row) => row.get(0),
        None => Err(DbError::Decode(format!("no row from {sql}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_lists_number_every_row_and_column() {
        assert_eq!(value_lists(2, 3), "(?1, ?2, ?3), (?4, ?5, ?6)");
        assert_eq!(value_lists(1, 1), "(?1)");
    }

    #[test]
    fn values_read_back_as_their_types_and_misfits_name_the_column() {
        let row = Row(vals![7i64, "x", None::<i64>, true, 1.5f64]);
        assert_eq!(row.get::<i64>(0).unwrap(), 7);
        assert_eq!(row.get::<String>(1).unwrap(), "x");
        assert_eq!(row.get::<Option<i64>>(2).unwrap(), None);
        assert!(row.get::<bool>(3).unwrap());
        assert_eq!(row.get::<f64>(4).unwrap(), 1.5);
        assert_eq!(row.get::<f64>(0).unwrap(), 7.0);
        let e = row.get::<i64>(1).unwrap_err().to_string();
        assert!(e.contains("column 1: expected an integer"), "{e}");
        assert!(row.get::<String>(2).is_err(), "NULL is not text");
    }
}
