//! Compliance and facts: every check with its PCs counted by status, or one check's PCs; the
//! facts tables, or one table's rows.

use std::process::ExitCode;

use kanade_shared::api::compliance::CheckForgotten;
use kanade_shared::api::compliance::CheckQuery;
use kanade_shared::api::compliance::TableDropped;
use kanade_shared::wire::{CheckDetail, CheckPc, CheckSummary, Checks};
use serde_json::Value;

use super::query;
use crate::api::Api;
use crate::cli::Global;
use crate::output;

pub async fn checks(
    name: Option<String>,
    status: Option<String>,
    forget: bool,
    global: &Global,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(global)?;
    if let (Some(name), true) = (&name, forget) {
        let v: CheckForgotten = api.delete(&format!("/api/checks/{name}")).await?;
        let n = v.forgotten;
        super::done(
            global.output,
            &v,
            &format!("forgot check {name} on {n} PC(s); its next result sets it again"),
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(name) = name else {
        let list: Checks = api.get("/api/checks").await?;
        if list.checks.is_empty() && global.output.is_table() {
            println!("no check has reported yet: a job with `check:` in its manifest reports one per PC");
            return Ok(ExitCode::SUCCESS);
        }
        let rows = list.checks.iter().map(summary_row).collect();
        output::print(global.output, &list, &["CHECK", "PASS", "WARN", "FAIL", "UNKNOWN"], rows);
        return Ok(ExitCode::SUCCESS);
    };
    let detail: CheckDetail = api
        .get(&format!(
            "/api/checks/{name}{}",
            super::query_of(&CheckQuery { status, cursor: None, limit: Some(5000) })?
        ))
        .await?;
    let rows = detail.pcs.iter().map(pc_row).collect();
    output::print(global.output, &detail, &["PC", "STATUS", "SINCE", "DETAIL"], rows);
    Ok(ExitCode::SUCCESS)
}

fn summary_row(c: &CheckSummary) -> Vec<String> {
    vec![c.name.clone(), c.pass.to_string(), c.warn.to_string(), c.fail.to_string(), c.unknown.to_string()]
}

fn pc_row(p: &CheckPc) -> Vec<String> {
    let status = if p.stale { format!("{} (stale)", p.status) } else { p.status.clone() };
    vec![p.pc_id.clone(), status, super::when_ms(Some(p.since)), p.detail.clone().unwrap_or_default()]
}

/// `kanade facts`: the tables, or one table's rows.
pub async fn facts(
    table: Option<String>,
    pc: Option<String>,
    filters: Vec<String>,
    limit: u32,
    drop: bool,
    global: &Global,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(global)?;
    if let (Some(table), true) = (&table, drop) {
        let v: TableDropped = api.delete(&format!("/api/facts/{table}")).await?;
        super::done(
            global.output,
            &v,
            &format!("dropped facts table {table}; the next result of a job naming it makes it again"),
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(table) = table else {
        let list: kanade_shared::wire::FactTables = api.get("/api/facts").await?;
        if list.tables.is_empty() && global.output.is_table() {
            println!(
                "no facts table yet: a job with `facts: {{ explode: [...] }}` makes one when it first reports"
            );
            return Ok(ExitCode::SUCCESS);
        }
        let rows = list
            .tables
            .iter()
            .map(|t| {
                let columns: Vec<String> =
                    t.columns.iter().map(|(n, ty)| format!("{n}:{}", type_name(*ty))).collect();
                vec![
                    t.name.clone(),
                    t.job_id.clone(),
                    t.key.join(", "),
                    columns.join(" "),
                    t.rows.to_string(),
                ]
            })
            .collect();
        output::print(global.output, &list, &["TABLE", "JOB", "KEY", "COLUMNS", "ROWS"], rows);
        return Ok(ExitCode::SUCCESS);
    };
    let mut pairs = vec![("pc".to_owned(), pc), ("limit".to_owned(), Some(limit.to_string()))];
    for f in &filters {
        let Some((column, value)) = f.split_once('=') else {
            anyhow::bail!("--where {f:?}: write COLUMN=VALUE (e.g. --where mount=C:)");
        };
        pairs.push((column.to_owned(), Some(value.to_owned())));
    }
    let borrowed: Vec<(&str, Option<String>)> = pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let page: kanade_shared::wire::FactRows =
        api.get(&format!("/api/facts/{table}{}", query(&borrowed))).await?;
    let mut headers: Vec<String> = vec!["pc_id".into()];
    headers.extend(page.columns.keys().cloned());
    let rows = page
        .rows
        .iter()
        .map(|r| headers.iter().map(|h| super::text(r.get(h).unwrap_or(&Value::Null))).collect())
        .collect();
    let upper: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
    let refs: Vec<&str> = upper.iter().map(String::as_str).collect();
    output::print(global.output, &page, &refs, rows);
    if page.next_offset.is_some() && global.output.is_table() {
        eprintln!("(more rows: raise --limit, or page with the API's offset)");
    }
    Ok(ExitCode::SUCCESS)
}

fn type_name(t: kanade_shared::manifest::outputs::ColumnType) -> &'static str {
    use kanade_shared::manifest::outputs::ColumnType::*;
    match t {
        Text => "text",
        Integer => "integer",
        Real => "real",
        Bool => "bool",
        Timestamp => "timestamp",
    }
}

/// `kanade query "SELECT …"`: one read-only query over the projection (admins).
pub async fn run_query(sql: String, max_rows: Option<u32>, global: &Global) -> anyhow::Result<ExitCode> {
    let body = kanade_shared::wire::QueryRequest { sql, max_rows };
    let answer: kanade_shared::wire::QueryAnswer = Api::new(global)?.post_json("/api/query", &body).await?;
    let rows = answer.rows.iter().map(|r| r.iter().map(super::text).collect()).collect();
    let headers: Vec<&str> = answer.columns.iter().map(String::as_str).collect();
    output::print(global.output, &answer, &headers, rows);
    if global.output.is_table() {
        let more = if answer.truncated { "; more rows matched (--max-rows)" } else { "" };
        eprintln!("({} rows in {} ms{more})", answer.rows.len(), answer.elapsed_ms);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::assert_snapshot;

    #[test]
    fn checks_table_snapshots() {
        let list = [
            CheckSummary { name: "disk-space".into(), pass: 118, warn: 3, fail: 1, unknown: 2 },
            CheckSummary { name: "firewall-on".into(), pass: 124, warn: 0, fail: 0, unknown: 0 },
        ];
        let rows: Vec<_> = list.iter().map(summary_row).collect();
        assert_snapshot("checks", &output::table(&["CHECK", "PASS", "WARN", "FAIL", "UNKNOWN"], &rows));
        let pcs = [
            CheckPc {
                pc_id: "PC-1".into(),
                status: "fail".into(),
                detail: Some("C: 2% free".into()),
                since: 1795490690996,
                updated: 1795490690996,
                exec_id: "e".into(),
                stale: false,
            },
            CheckPc {
                pc_id: "PC-2".into(),
                status: "unknown".into(),
                detail: None,
                since: 1795400000000,
                updated: 1795400000000,
                exec_id: "e".into(),
                stale: true,
            },
        ];
        let rows: Vec<_> = pcs.iter().map(pc_row).collect();
        assert_snapshot("check-pcs", &output::table(&["PC", "STATUS", "SINCE", "DETAIL"], &rows));
    }
}
