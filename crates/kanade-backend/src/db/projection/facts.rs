//! Facts (SPEC §12): a succeeded result of a job with `facts.explode[]` replaces its PC's rows
//! in each named table (`fact_<table>`, created on first use on either engine) in the RESULTS
//! projector's transaction, and its whole JSON output becomes the PC's latest fact document
//! for the job. The pure `rows` reads the output against the spec; anything wrong (not JSON, a
//! missing path, a value of another type, a key twice) refuses the update, keeps the previous
//! rows and is written on the result as `facts_error`. An older result never replaces the rows
//! of a newer one.

use std::collections::BTreeSet;

use kanade_shared::manifest::outputs::{ColumnType, ExplodeSpec, FactsSpec};
use kanade_shared::wire::{ExecResult, ExecStatus};
use serde_json::Value as Json;

use super::super::sql::{Dialect, Sql, Value, opt_row, vals};
use super::super::{DbError, ts_ms};
use super::obs::AHEAD_MS;

/// Rows one result may write into one table.
pub const MAX_ROWS: usize = 10_000;
/// The longest text cell kept, in bytes (a key's text must also fit an index entry).
pub const MAX_TEXT: usize = 2048;

/// The table a facts table is stored in, quoted: its name cannot meet a built-in one, nor be
/// read as an SQL word (`order`, `user`).
pub fn physical(table: &str) -> String {
    format!("\"fact_{table}\"")
}

/// A column name quoted for SQL text (names are `[a-z][a-z0-9_]*`, checked before).
fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

fn sql_type(t: ColumnType, dialect: Dialect) -> &'static str {
    match (t, dialect) {
        (ColumnType::Text, _) => "TEXT",
        (ColumnType::Real, _) => "DOUBLE PRECISION",
        // Booleans as 0/1 and timestamps as epoch ms: one integer type on both engines.
        (ColumnType::Integer | ColumnType::Bool | ColumnType::Timestamp, _) => "BIGINT",
    }
}

/// A stored value as text, for keys and messages.
fn shown(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Int(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) => format!("{t:?}"),
    }
}

/// One cell as stored.
fn cell(v: Option<&Json>, t: ColumnType) -> Result<Value, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(Value::Null) };
    let wrong = || {
        format!(
            "{v} is not {}",
            match t {
                ColumnType::Text => "text",
                ColumnType::Integer => "an integer",
                ColumnType::Real => "a number",
                ColumnType::Bool => "true or false",
                ColumnType::Timestamp => "a time (epoch milliseconds or RFC 3339)",
            }
        )
    };
    match t {
        ColumnType::Text => match v.as_str() {
            // Postgres text cannot hold NUL; an over-long key cannot be indexed.
            Some(s) if s.contains('\0') => Err("text with a NUL character".into()),
            Some(s) if s.len() > MAX_TEXT => Err(format!("text of {} bytes; at most {MAX_TEXT}", s.len())),
            Some(s) => Ok(Value::from(s)),
            None => Err(wrong()),
        },
        ColumnType::Integer => v.as_i64().map(Value::Int).ok_or_else(wrong),
        ColumnType::Real => v.as_f64().map(Value::Real).ok_or_else(wrong),
        ColumnType::Bool => v.as_bool().map(|b| Value::Int(b.into())).ok_or_else(wrong),
        ColumnType::Timestamp => match v {
            Json::Number(n) => n.as_i64().map(Value::Int).ok_or_else(wrong),
            Json::String(s) => time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| Value::Int(ts_ms(t)))
                .map_err(|_| wrong()),
            _ => Err(wrong()),
        },
    }
}

/// Pure: one table's rows from the output document (columns in the spec's order, after pc_id).
pub fn rows(spec: &ExplodeSpec, doc: &Json) -> Result<Vec<Vec<Value>>, String> {
    let at = |what: String| format!("{}: {what}", spec.table);
    let array = spec
        .path
        .split('.')
        .try_fold(doc, |v, seg| v.get(seg))
        .ok_or_else(|| at(format!("no {} in the output", spec.path)))?
        .as_array()
        .ok_or_else(|| at(format!("{} is not a list", spec.path)))?;
    if array.len() > MAX_ROWS {
        return Err(at(format!("{} holds {} elements; at most {MAX_ROWS}", spec.path, array.len())));
    }
    // Keys compared as stored: "…Z" and "…+00:00" are one timestamp, 1 and 1.0 one real.
    let mut keys: BTreeSet<String> = BTreeSet::new();
    let names: Vec<&String> = spec.columns.keys().collect();
    let mut out = Vec::with_capacity(array.len());
    for (i, element) in array.iter().enumerate() {
        let here = |what: String| at(format!("{}[{i}]: {what}", spec.path));
        let object = element.as_object().ok_or_else(|| here("not an object".into()))?;
        let mut row = Vec::with_capacity(spec.columns.len());
        for (name, t) in &spec.columns {
            row.push(cell(object.get(name), *t).map_err(|e| here(format!("{name}: {e}")))?);
        }
        let mut key = Vec::with_capacity(spec.key.len());
        for k in &spec.key {
            match names.iter().position(|n| *n == k).map(|i| &row[i]) {
                None | Some(Value::Null) => return Err(here(format!("key column {k} is missing"))),
                Some(v) => key.push(shown(v)),
            }
        }
        if !keys.insert(key.join("\u{1f}")) {
            return Err(here(format!("the key ({}) is there twice", key.join(", "))));
        }
        out.push(row);
    }
    Ok(out)
}

/// How a table's key and columns are registered in `facts_tables`; two specs define the same
/// table exactly when these agree.
fn definition(spec: &ExplodeSpec) -> String {
    serde_json::json!({ "key": spec.key, "columns": spec.columns }).to_string()
}

/// Tables among `specs` that exist defined otherwise, each as a problem naming the
/// `facts.explode[i]` it comes from, the job that made the table, and what to do.
pub async fn redefinitions<S: Sql>(s: &mut S, specs: &[ExplodeSpec]) -> Result<Vec<String>, DbError> {
    let mut problems = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let Some(row) = opt_row(
            s,
            "SELECT spec_json, job_id FROM facts_tables WHERE name = ?1",
            vals![spec.table.as_str()],
        )
        .await?
        else {
            continue;
        };
        let (have, owner): (String, String) = (row.get(0)?, row.get(1)?);
        if have != definition(spec) {
            problems.push(format!(
                "facts.explode[{i}].table: {} exists with other columns or key (made by job {owner}: {have}); name this one differently, or drop the table first (kanade facts {} --drop) and the next run makes it anew",
                spec.table, spec.table
            ));
        }
    }
    Ok(problems)
}

/// Drop a facts table, its registry entry and its write marks; `false` when there is no such
/// table. A later result of a job naming it makes it again, as that job now defines it.
pub async fn drop_table<S: Sql>(s: &mut S, name: &str) -> Result<bool, DbError> {
    // Checked again: the name goes into SQL text.
    if kanade_shared::manifest::outputs::check_name(name).is_err() {
        return Ok(false);
    }
    super::one_writer(s).await?;
    if s.exec("DELETE FROM facts_tables WHERE name = ?1", vals![name]).await? == 0 {
        return Ok(false);
    }
    s.exec("DELETE FROM facts_writes WHERE table_name = ?1", vals![name]).await?;
    s.batch(&format!("DROP TABLE IF EXISTS {}", physical(name))).await?;
    Ok(true)
}

/// A PC's latest fact documents (the whole output of each job with `facts:`), by job.
pub async fn documents<S: Sql>(
    s: &mut S,
    pc: &str,
) -> Result<Vec<kanade_shared::wire::FactDocument>, DbError> {
    s.rows(
        "SELECT job_id, finished_ms, result_id, body_json FROM inventory_facts WHERE pc_id = ?1 ORDER BY job_id",
        vals![pc],
    )
    .await?
    .iter()
    .map(|r| {
        let body: String = r.get(3)?;
        Ok(kanade_shared::wire::FactDocument {
            job_id: r.get(0)?,
            finished_at: r.get(1)?,
            result_id: r.get(2)?,
            body: serde_json::from_str(&body).unwrap_or(Json::String(body)),
        })
    })
    .collect()
}

/// Create the table on first use; a table of that name defined otherwise is an error.
async fn ensure_table<S: Sql>(
    s: &mut S,
    spec: &ExplodeSpec,
    job: &str,
    now_ms: i64,
) -> Result<Result<(), String>, DbError> {
    // Names go into SQL text: checked again here, whatever stored them (and quoted).
    let names = std::iter::once(&spec.table).chain(spec.columns.keys()).chain(spec.key.iter());
    if let Some(Err(e)) = names.map(|n| kanade_shared::manifest::outputs::check_name(n)).find(Result::is_err)
    {
        return Ok(Err(e));
    }
    if let Some(k) = spec.key.iter().find(|k| !spec.columns.contains_key(*k)) {
        return Ok(Err(format!("{}: key {k} is not one of its columns", spec.table)));
    }
    let wanted = definition(spec);
    if let Some(row) =
        opt_row(s, "SELECT spec_json, job_id FROM facts_tables WHERE name = ?1", vals![spec.table.as_str()])
            .await?
    {
        let (have, owner): (String, String) = (row.get(0)?, row.get(1)?);
        return Ok(if have == wanted {
            Ok(())
        } else {
            Err(format!(
                "{}: the table exists with other columns or key (made by job {owner}); name this one differently",
                spec.table
            ))
        });
    }
    let dialect = s.dialect();
    let columns: Vec<String> =
        spec.columns.iter().map(|(n, t)| format!("{} {}", quoted(n), sql_type(*t, dialect))).collect();
    // Names are [a-z][a-z0-9_]*, checked when the manifest was: safe in SQL text.
    s.batch(&format!(
        "CREATE TABLE IF NOT EXISTS {} (pc_id TEXT NOT NULL, {}, PRIMARY KEY (pc_id, {}))",
        physical(&spec.table),
        columns.join(", "),
        spec.key.iter().map(|k| quoted(k)).collect::<Vec<_>>().join(", ")
    ))
    .await?;
    s.exec(
        "INSERT INTO facts_tables (name, job_id, spec_json, created_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(name) DO NOTHING",
        vals![spec.table.as_str(), job, wanted, now_ms],
    )
    .await?;
    Ok(Ok(()))
}

/// Apply one newly final result of a job with `spec`, received at `received_ms` (its times
/// are clamped against that, so applying it again gives the same answer).
pub async fn apply<S: Sql>(
    s: &mut S,
    spec: &FactsSpec,
    r: &ExecResult,
    received_ms: i64,
) -> Result<(), DbError> {
    if r.status != ExecStatus::Succeeded {
        return Ok(()); // a failed run measured nothing: the previous facts stand
    }
    let at = ts_ms(r.finished_at).min(received_ms + AHEAD_MS);
    let doc: Json = match serde_json::from_str(&r.stdout) {
        Ok(doc) => doc,
        Err(e) => {
            let why = if r.truncated {
                "the output was cut, so not JSON".to_owned()
            } else {
                format!("the output is not JSON ({e})")
            };
            return set_error(s, r, &why).await;
        }
    };
    let mut tables = Vec::new();
    for e in &spec.explode {
        match rows(e, &doc) {
            Ok(rows) => tables.push((e, rows)),
            Err(why) => return set_error(s, r, &why).await,
        }
    }
    // Whatever the database refuses in these rows becomes the result's facts_error, never the
    // result's loss: the writes go back to a savepoint and the result itself stays.
    s.batch("SAVEPOINT facts").await?;
    match write(s, r, &doc, tables, at, received_ms).await {
        Ok(Ok(())) => s.batch("RELEASE SAVEPOINT facts").await,
        Ok(Err(why)) => {
            s.batch("ROLLBACK TO SAVEPOINT facts; RELEASE SAVEPOINT facts").await?;
            set_error(s, r, &why).await
        }
        Err(e) if e.refuses_content() => {
            s.batch("ROLLBACK TO SAVEPOINT facts; RELEASE SAVEPOINT facts").await?;
            set_error(s, r, &format!("the database refused the rows ({e})")).await
        }
        Err(e) => Err(e),
    }
}

async fn write<S: Sql>(
    s: &mut S,
    r: &ExecResult,
    doc: &Json,
    tables: Vec<(&ExplodeSpec, Vec<Vec<Value>>)>,
    at: i64,
    received_ms: i64,
) -> Result<Result<(), String>, DbError> {
    for (e, _) in &tables {
        if let Err(why) = ensure_table(s, e, r.job_id.as_str(), received_ms).await? {
            return Ok(Err(why));
        }
    }
    for (e, rows) in tables {
        let newer = opt_row(
            s,
            "SELECT finished_ms FROM facts_writes WHERE table_name = ?1 AND pc_id = ?2",
            vals![e.table.as_str(), r.pc_id.as_str()],
        )
        .await?
        .map(|row| row.get::<i64>(0))
        .transpose()?
        .is_some_and(|last| last > at);
        if newer {
            continue;
        }
        let table = physical(&e.table);
        s.exec(&format!("DELETE FROM {table} WHERE pc_id = ?1"), vals![r.pc_id.as_str()]).await?;
        let names: Vec<String> = e.columns.keys().map(|n| quoted(n)).collect();
        let marks: Vec<String> = (2..=names.len() + 1).map(|i| format!("?{i}")).collect();
        let sql =
            format!("INSERT INTO {table} (pc_id, {}) VALUES (?1, {})", names.join(", "), marks.join(", "));
        let params = rows
            .into_iter()
            .map(|mut row| {
                row.insert(0, Value::from(r.pc_id.as_str()));
                row
            })
            .collect();
        s.exec_many(&sql, params).await?;
        s.exec(
            "INSERT INTO facts_writes (table_name, pc_id, finished_ms, result_id) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(table_name, pc_id) DO UPDATE SET finished_ms = excluded.finished_ms, result_id = excluded.result_id",
            vals![e.table.as_str(), r.pc_id.as_str(), at, r.result_id.to_string()],
        )
        .await?;
    }
    s.exec(
        "INSERT INTO inventory_facts (pc_id, job_id, finished_ms, result_id, body_json) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(pc_id, job_id) DO UPDATE SET finished_ms = excluded.finished_ms, result_id = excluded.result_id,
             body_json = excluded.body_json
         WHERE excluded.finished_ms >= inventory_facts.finished_ms",
        vals![r.pc_id.as_str(), r.job_id.as_str(), at, r.result_id.to_string(), doc.to_string().replace('\0', "")],
    )
    .await?;
    Ok(Ok(()))
}

async fn set_error<S: Sql>(s: &mut S, r: &ExecResult, why: &str) -> Result<(), DbError> {
    s.exec(
        "UPDATE execution_results SET facts_error = ?2 WHERE result_id = ?1",
        vals![r.result_id.to_string(), format!("facts not updated: {why}")],
    )
    .await
    .map(drop)
}

/// Every facts table as it is stored (`"fact_<name>"`, ready for SQL text): only names that
/// pass the check are given, whatever the registry holds.
pub async fn tables_stored<S: Sql>(s: &mut S) -> Result<Vec<String>, DbError> {
    let names: Vec<String> = s
        .rows("SELECT name FROM facts_tables", vals![])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect::<Result<_, _>>()?;
    Ok(names
        .iter()
        .filter(|n| kanade_shared::manifest::outputs::check_name(n).is_ok())
        .map(|n| physical(n))
        .collect())
}

/// One facts table by name, without counting its rows.
pub async fn table<S: Sql>(s: &mut S, name: &str) -> Result<Option<kanade_shared::wire::FactTable>, DbError> {
    let Some(r) =
        opt_row(s, "SELECT name, job_id, spec_json FROM facts_tables WHERE name = ?1", vals![name]).await?
    else {
        return Ok(None);
    };
    let spec: Json = serde_json::from_str(&r.get::<String>(2)?).unwrap_or_default();
    Ok(Some(kanade_shared::wire::FactTable {
        name: r.get(0)?,
        job_id: r.get(1)?,
        key: serde_json::from_value(spec["key"].clone()).unwrap_or_default(),
        columns: serde_json::from_value(spec["columns"].clone()).unwrap_or_default(),
        rows: 0,
    }))
}

/// Every facts table with its row count.
pub async fn tables<S: Sql>(s: &mut S) -> Result<Vec<kanade_shared::wire::FactTable>, DbError> {
    let rows = s.rows("SELECT name, job_id, spec_json FROM facts_tables ORDER BY name", vals![]).await?;
    let mut out = Vec::new();
    for r in rows {
        let (name, job_id, spec): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let spec: Json = serde_json::from_str(&spec).unwrap_or_default();
        if kanade_shared::manifest::outputs::check_name(&name).is_err() {
            continue;
        }
        let count = s.rows(&format!("SELECT COUNT(*) FROM {}", physical(&name)), vals![]).await?;
        out.push(kanade_shared::wire::FactTable {
            name,
            job_id,
            key: serde_json::from_value(spec["key"].clone()).unwrap_or_default(),
            columns: serde_json::from_value(spec["columns"].clone()).unwrap_or_default(),
            rows: count.first().map_or(Ok(0), |c| c.get(0))?,
        });
    }
    Ok(out)
}

/// A filter value typed as its column holds it (the text an operator wrote in a query string).
pub fn filter_value(t: ColumnType, text: &str) -> Result<Value, String> {
    let as_json = match t {
        ColumnType::Text => Json::from(text),
        ColumnType::Timestamp if text.parse::<i64>().is_err() => Json::from(text),
        _ => {
            serde_json::from_str::<Json>(text).map_err(|_| format!("{text:?} is not {t:?}").to_lowercase())?
        }
    };
    cell(Some(&as_json), t)
}

/// A page of one table's rows, filtered by PC and by column equality, in key order.
pub async fn page<S: Sql>(
    s: &mut S,
    table: &kanade_shared::wire::FactTable,
    pc: Option<&str>,
    filters: &[(String, Value)],
    limit: i64,
    offset: i64,
) -> Result<Vec<serde_json::Map<String, Json>>, DbError> {
    let names: Vec<&String> = table.columns.keys().collect();
    let mut params = vals![pc];
    let mut conditions = vec!["(CAST(?1 AS TEXT) IS NULL OR pc_id = ?1)".to_owned()];
    for (column, value) in filters {
        params.push(value.clone());
        conditions.push(format!("{} = ?{}", quoted(column), params.len()));
    }
    params.push(Value::Int(limit));
    params.push(Value::Int(offset));
    let order: Vec<String> =
        std::iter::once("pc_id".to_owned()).chain(table.key.iter().map(|k| quoted(k))).collect();
    let sql = format!(
        "SELECT pc_id, {} FROM {} WHERE {} ORDER BY {} LIMIT ?{} OFFSET ?{}",
        names.iter().map(|n| quoted(n)).collect::<Vec<_>>().join(", "),
        physical(&table.name),
        conditions.join(" AND "),
        order.join(", "),
        params.len() - 1,
        params.len()
    );
    let rows = s.rows(&sql, params).await?;
    rows.iter()
        .map(|r| {
            let mut row = serde_json::Map::new();
            row.insert("pc_id".into(), Json::from(r.get::<String>(0)?));
            for (i, name) in names.iter().enumerate() {
                let t = table.columns[*name];
                let v = match t {
                    ColumnType::Text => r.get::<Option<String>>(i + 1)?.map(Json::from),
                    ColumnType::Real => r.get::<Option<f64>>(i + 1)?.map(Json::from),
                    ColumnType::Bool => r.get::<Option<i64>>(i + 1)?.map(|b| Json::from(b != 0)),
                    ColumnType::Integer | ColumnType::Timestamp => {
                        r.get::<Option<i64>>(i + 1)?.map(Json::from)
                    }
                };
                row.insert((*name).clone(), v.unwrap_or(Json::Null));
            }
            Ok(row)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ExplodeSpec {
        serde_json::from_value(serde_json::json!({
            "table": "disks", "path": "report.disks", "key": ["mount"],
            "columns": { "mount": "text", "free_bytes": "integer", "ok": "bool", "seen": "timestamp", "load": "real" }
        }))
        .unwrap()
    }

    #[test]
    fn an_output_becomes_rows_or_the_reason_it_cannot() {
        let doc = |v: serde_json::Value| serde_json::json!({ "report": { "disks": v } });
        let good = rows(
            &spec(),
            &doc(serde_json::json!([
                { "mount": "C:", "free_bytes": 5, "ok": true, "seen": "2026-12-02T12:00:00Z", "load": 1 },
                { "mount": "D:", "extra": "ignored" }
            ])),
        )
        .unwrap();
        // Columns in name order: free_bytes, load, mount, ok, seen.
        assert_eq!(
            good[0],
            vec![
                Value::Int(5),
                Value::Real(1.0),
                Value::from("C:"),
                Value::Int(1),
                Value::Int(1_796_212_800_000)
            ]
        );
        assert_eq!(good[1], vec![Value::Null, Value::Null, Value::from("D:"), Value::Null, Value::Null]);
        for (bad, says) in [
            (serde_json::json!({ "other": 1 }), "disks: no report.disks in the output"),
            (doc(serde_json::json!({ "mount": "C:" })), "disks: report.disks is not a list"),
            (
                doc(serde_json::json!([{ "mount": "C:", "free_bytes": "5" }])),
                "disks: report.disks[0]: free_bytes: \"5\" is not an integer",
            ),
            (
                doc(serde_json::json!([{ "free_bytes": 5 }])),
                "disks: report.disks[0]: key column mount is missing",
            ),
            (
                doc(serde_json::json!([{ "mount": "C:" }, { "mount": "C:" }])),
                "disks: report.disks[1]: the key (\"C:\") is there twice",
            ),
            (doc(serde_json::json!([1])), "disks: report.disks[0]: not an object"),
            (
                doc(serde_json::json!([{ "mount": "C:", "seen": "yesterday" }])),
                "seen: \"yesterday\" is not a time",
            ),
        ] {
            let err = rows(&spec(), &bad).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }
}
