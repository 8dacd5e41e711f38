//! Dynamic groups: their rules, the PCs each matched at the last pass, and the values a pass
//! reads (agent fields, facts columns).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kanade_shared::PcId;
pub use kanade_shared::api::groups::DynamicGroup;
use kanade_shared::manifest::outputs::ColumnType;
use kanade_shared::rule::Field;
use serde_json::Value as Json;

use super::DbError;
use super::projection::facts;
use super::sql::{Row, Sql, opt_row, vals};

const COLUMNS: &str = "g.name, g.rule, g.created_by, g.created_ms, g.updated_ms, g.evaluated_ms,
    (SELECT COUNT(*) FROM dynamic_members m WHERE m.group_name = g.name)";

fn row(r: &Row) -> Result<DynamicGroup, DbError> {
    Ok(DynamicGroup {
        name: r.get(0)?,
        rule: r.get(1)?,
        created_by: r.get(2)?,
        created_ms: r.get(3)?,
        updated_ms: r.get(4)?,
        evaluated_ms: r.get(5)?,
        members: r.get(6)?,
    })
}

pub async fn list<S: Sql>(s: &mut S) -> Result<Vec<DynamicGroup>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM dynamic_groups g ORDER BY g.name");
    s.rows(&sql, vals![]).await?.iter().map(row).collect()
}

pub async fn get<S: Sql>(s: &mut S, name: &str) -> Result<Option<DynamicGroup>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM dynamic_groups g WHERE g.name = ?1");
    opt_row(s, &sql, vals![name]).await?.as_ref().map(row).transpose()
}

/// A new group; false when the name is taken.
pub async fn create<S: Sql>(
    s: &mut S,
    name: &str,
    rule: &str,
    by: &str,
    now_ms: i64,
) -> Result<bool, DbError> {
    let n = s
        .exec(
            "INSERT INTO dynamic_groups (name, rule, created_by, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT(name) DO NOTHING",
            vals![name, rule, by, now_ms],
        )
        .await?;
    Ok(n == 1)
}

pub async fn set_rule<S: Sql>(s: &mut S, name: &str, rule: &str, now_ms: i64) -> Result<bool, DbError> {
    let n = s
        .exec(
            "UPDATE dynamic_groups SET rule = ?2, updated_ms = ?3 WHERE name = ?1",
            vals![name, rule, now_ms],
        )
        .await?;
    Ok(n == 1)
}

/// Remove a group; the PCs that were in it (their agent_groups values need rewriting), or
/// `None` when there was no such group.
pub async fn delete<S: Sql>(s: &mut S, name: &str) -> Result<Option<Vec<PcId>>, DbError> {
    let former = members(s, name).await?.into_iter().map(|(pc, _)| pc).collect();
    s.exec("DELETE FROM dynamic_members WHERE group_name = ?1", vals![name]).await?;
    let n = s.exec("DELETE FROM dynamic_groups WHERE name = ?1", vals![name]).await?;
    Ok((n == 1).then_some(former))
}

/// The PCs in a group, with when each joined.
pub async fn members<S: Sql>(s: &mut S, name: &str) -> Result<Vec<(PcId, i64)>, DbError> {
    let rows = s
        .rows("SELECT pc_id, since_ms FROM dynamic_members WHERE group_name = ?1 ORDER BY pc_id", vals![name])
        .await?;
    rows.iter().map(|r| Ok((r.get(0)?, r.get(1)?))).collect()
}

/// Make `pcs` the members of `name`; the PCs that joined and the ones that left.
pub async fn set_members<S: Sql>(
    s: &mut S,
    name: &str,
    pcs: &BTreeSet<PcId>,
    now_ms: i64,
) -> Result<(Vec<PcId>, Vec<PcId>), DbError> {
    let now: BTreeSet<PcId> = members(s, name).await?.into_iter().map(|(pc, _)| pc).collect();
    let joined: Vec<PcId> = pcs.difference(&now).cloned().collect();
    let left: Vec<PcId> = now.difference(pcs).cloned().collect();
    for pc in &joined {
        // Only while the group exists: a pass that read the groups before a delete must not
        // bring its members back.
        s.exec(
            "INSERT INTO dynamic_members (group_name, pc_id, since_ms)
             SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM dynamic_groups WHERE name = ?1)
             ON CONFLICT DO NOTHING",
            vals![name, pc, now_ms],
        )
        .await?;
    }
    for pc in &left {
        s.exec("DELETE FROM dynamic_members WHERE group_name = ?1 AND pc_id = ?2", vals![name, pc]).await?;
    }
    s.exec("UPDATE dynamic_groups SET evaluated_ms = ?2 WHERE name = ?1", vals![name, now_ms]).await?;
    Ok((joined, left))
}

/// The dynamic groups one PC is in.
pub async fn groups_of<S: Sql>(s: &mut S, pc: &PcId) -> Result<Vec<String>, DbError> {
    let rows = s
        .rows("SELECT group_name FROM dynamic_members WHERE pc_id = ?1 ORDER BY group_name", vals![pc])
        .await?;
    rows.iter().map(|r| r.get(0)).collect()
}

/// Every value a pass reads: per PC, each field's values (an agent field one, `groups` one per
/// group, a facts column one per row the PC reported).
pub type RuleInputs = BTreeMap<PcId, HashMap<Field, Vec<Json>>>;

/// Why a field cannot be read: the facts table or column does not exist.
pub async fn unknown_fields<S: Sql>(s: &mut S, fields: &[Field]) -> Result<Vec<String>, DbError> {
    let mut problems = Vec::new();
    for f in fields {
        let Field::Fact { table, column } = f else { continue };
        match facts::table(s, table).await? {
            None => problems.push(format!(
                "{f}: there is no facts table {table:?} (yet): a job with facts.explode makes it when it reports; `kanade facts` lists them"
            )),
            Some(t) if !t.columns.contains_key(column) => problems.push(format!(
                "{f}: table {table} has no column {column:?}; it has {}",
                t.columns.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
            Some(_) => {}
        }
    }
    Ok(problems)
}

pub async fn inputs<S: Sql>(s: &mut S, fields: &[Field]) -> Result<RuleInputs, DbError> {
    let mut out: RuleInputs = BTreeMap::new();
    let rows = s
        .rows(
            "SELECT pc_id, hostname, os_family, os_name, os_version, arch, agent_version, groups_json FROM agents",
            vals![],
        )
        .await?;
    for r in &rows {
        let pc: PcId = r.get(0)?;
        let mut values: HashMap<Field, Vec<Json>> = HashMap::new();
        for (i, name) in ["pc", "hostname", "os.family", "os.name", "os.version", "arch", "agent.version"]
            .iter()
            .enumerate()
        {
            values.insert(Field::Agent((*name).into()), vec![Json::from(r.get::<String>(i)?)]);
        }
        let groups: Vec<Json> = serde_json::from_str(&r.get::<String>(7)?).unwrap_or_default();
        values.insert(Field::Agent("groups".into()), groups);
        out.insert(pc, values);
    }
    // `groups` is what the agent reported: assigned, agent.toml and dynamic groups. A rule sees
    // the first two only, so no rule can keep a PC in its own group or push it out again.
    let dynamic = s.rows("SELECT pc_id, group_name FROM dynamic_members", vals![]).await?;
    for r in &dynamic {
        let (pc, group): (PcId, String) = (r.get(0)?, r.get(1)?);
        if let Some(groups) = out.get_mut(&pc).and_then(|v| v.get_mut(&Field::Agent("groups".into()))) {
            groups.retain(|g| g.as_str() != Some(group.as_str()));
        }
    }
    for f in fields {
        let Field::Fact { table, column } = f else { continue };
        let Some(t) = facts::table(s, table).await? else { continue };
        let Some(kind) = t.columns.get(column).copied() else { continue };
        let sql = format!("SELECT pc_id, \"{column}\" FROM {}", facts::physical(table));
        for r in s.rows(&sql, vals![]).await? {
            let pc: PcId = r.get(0)?;
            let value = match kind {
                ColumnType::Text => r.get::<Option<String>>(1)?.map(Json::from),
                ColumnType::Real => r.get::<Option<f64>>(1)?.map(Json::from),
                ColumnType::Bool => r.get::<Option<i64>>(1)?.map(|b| Json::from(b != 0)),
                ColumnType::Integer | ColumnType::Timestamp => r.get::<Option<i64>>(1)?.map(Json::from),
            };
            if let (Some(v), Some(pc_values)) = (value, out.get_mut(&pc)) {
                pc_values.entry(f.clone()).or_default().push(v);
            }
        }
    }
    Ok(out)
}
