//! INSERT, UPDATE, DELETE and BATCH: planned against the schema first (so a
//! batch or a conditional write can be checked as a whole), then applied.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::ast::{Assignment, BatchStmt, Condition, Delete, Insert, Op, Statement, Update, Using};
use super::convert::{eval, Binds, Bound};
use super::db::Db;
use super::error::NodeError;
use super::schema::{is_system_keyspace, keyspace_of, ColumnKind, TableSchema};
use super::select::{matches, partition_keys, resolve, Restriction};
use super::store::{now_micros, now_secs, Cell, ClusteringKey, KeyPart, Liveness, Partition, Row};
use super::value::{encode, normalize_map, Value};
use crate::protocol::response::{rows_header, ColumnSpec, RowsMetadata};
use crate::protocol::ColumnType;

pub struct WriteCtx<'a> {
    pub keyspace: Option<&'a str>,
    pub binds: Binds<'a>,
    /// The client's default timestamp (QUERY/EXECUTE/BATCH parameter).
    pub default_ts: Option<i64>,
}

enum Target {
    Row(ClusteringKey),
    Statics,
    Partition,
    Slice(Vec<Restriction>),
}

enum Change {
    Insert(Vec<(usize, Bound)>),
    Update(Vec<(usize, AssignOp)>),
    Delete(Vec<(usize, Option<Value>)>),
}

enum AssignOp {
    Set(Bound),
    Add(Value),
    Sub(Value),
    Prepend(Value),
    SetElement(Value, Option<Value>),
}

enum Cond {
    None,
    IfNotExists,
    IfExists,
    If(Vec<Restriction>),
}

/// The columns (and current values) shown with `[applied] = false`.
type NotApplied = Vec<(ColumnSpec, Option<Value>)>;

pub struct Planned {
    schema: Arc<TableSchema>,
    targets: Vec<(Vec<Value>, Target)>,
    change: Change,
    ts: i64,
    ttl: i32,
    cond: Cond,
}

fn ttl_of(u: &Using, schema: &TableSchema, binds: &Binds<'_>) -> Result<i32, NodeError> {
    match &u.ttl {
        None => Ok(schema.options.default_time_to_live),
        Some(t) => match eval(t, &ColumnType::Int, binds)? {
            Bound::Value(Value::Int(n)) if n >= 0 => Ok(n as i32),
            Bound::Value(Value::Int(n)) => Err(NodeError::invalid(format!(
                "A TTL must be greater or equal to 0, but was {n}"
            ))),
            Bound::Unset => Ok(schema.options.default_time_to_live),
            _ => Err(NodeError::invalid("Invalid null value of TTL")),
        },
    }
}

fn ts_of(u: &Using, ctx: &WriteCtx<'_>, batch_ts: Option<i64>) -> Result<(i64, bool), NodeError> {
    if let Some(t) = &u.timestamp {
        return match eval(t, &ColumnType::Bigint, &ctx.binds)? {
            Bound::Value(Value::Int(n)) => Ok((n, true)),
            _ => Err(NodeError::invalid("Invalid null value of timestamp")),
        };
    }
    if let Some(ts) = batch_ts.or(ctx.default_ts) {
        return Ok((ts, false));
    }
    Ok((now_micros(), false))
}

/// Write time, TTL and condition of a write, checked together: Cassandra
/// refuses a client timestamp on a conditional write.
fn write_terms(
    using: &Using,
    condition: &Condition,
    schema: &TableSchema,
    ctx: &WriteCtx<'_>,
    batch_ts: Option<i64>,
) -> Result<(i64, i32, Cond), NodeError> {
    let (ts, custom_ts) = ts_of(using, ctx, batch_ts)?;
    let cond = cond_of(condition, schema, &ctx.binds)?;
    if custom_ts && !matches!(cond, Cond::None) {
        return Err(NodeError::invalid(
            "Cannot provide custom timestamp for conditional updates",
        ));
    }
    Ok((ts, ttl_of(using, schema, &ctx.binds)?, cond))
}

fn table_for(
    db: &Db,
    q: &super::ast::QualifiedName,
    ctx: &WriteCtx<'_>,
) -> Result<Arc<TableSchema>, NodeError> {
    let ks = keyspace_of(q, ctx.keyspace)?;
    if is_system_keyspace(ks) {
        return Err(NodeError::unauthorized(format!(
            "{ks} keyspace is not user-modifiable."
        )));
    }
    Ok(db.table(ks, &q.name)?.schema.clone())
}

fn col(schema: &TableSchema, name: &str) -> Result<usize, NodeError> {
    schema
        .column_index(name)
        .ok_or_else(|| NodeError::invalid(format!("Undefined column name {name}")))
}

fn clustering_keys(schema: &TableSchema, rs: &[Restriction]) -> Option<Vec<ClusteringKey>> {
    let mut keys: Vec<ClusteringKey> = vec![Vec::new()];
    for (p, ck) in schema.clustering.iter().enumerate() {
        let r = rs
            .iter()
            .find(|r| r.col == *ck && matches!(r.op, Op::Eq | Op::In))?;
        let mut next = Vec::new();
        for k in &keys {
            for v in &r.values {
                let mut k2 = k.clone();
                k2.push(KeyPart {
                    value: v.clone(),
                    desc: schema.clustering_desc[p],
                });
                next.push(k2);
            }
        }
        keys = next;
    }
    Some(keys)
}

fn missing(schema: &TableSchema, idx: &[usize], rs: &[Restriction]) -> Vec<String> {
    idx.iter()
        .filter(|i| {
            !rs.iter()
                .any(|r| r.col == **i && matches!(r.op, Op::Eq | Op::In))
        })
        .map(|i| schema.columns[*i].name.clone())
        .collect()
}

fn cond_of(c: &Condition, schema: &TableSchema, binds: &Binds<'_>) -> Result<Cond, NodeError> {
    Ok(match c {
        Condition::None => Cond::None,
        Condition::IfNotExists => Cond::IfNotExists,
        Condition::IfExists => Cond::IfExists,
        Condition::If(rels) => Cond::If(resolve(schema, rels, binds)?),
    })
}

fn plan_insert(
    db: &Db,
    s: &Insert,
    ctx: &WriteCtx<'_>,
    batch_ts: Option<i64>,
) -> Result<Planned, NodeError> {
    let schema = table_for(db, &s.table, ctx)?;
    if schema.is_counter_table() {
        return Err(NodeError::invalid(
            "INSERT statements are not allowed on counter tables, use UPDATE instead",
        ));
    }
    if s.columns.len() != s.values.len() {
        return Err(NodeError::invalid("Unmatched column names/values"));
    }
    let mut values = Vec::new();
    for (name, term) in s.columns.iter().zip(&s.values) {
        let i = col(&schema, name)?;
        if values.iter().any(|(j, _)| *j == i) {
            return Err(NodeError::invalid(format!(
                "Multiple definitions found for column {name}"
            )));
        }
        values.push((i, eval(term, &schema.columns[i].typ, &ctx.binds)?));
    }
    let key_part = |i: usize| -> Result<Value, NodeError> {
        let name = &schema.columns[i].name;
        match values.iter().find(|(j, _)| *j == i) {
            Some((_, Bound::Value(v))) => Ok(v.clone()),
            Some(_) => Err(NodeError::invalid(format!(
                "Invalid null value in condition for column {name}"
            ))),
            None => Err(NodeError::invalid(format!(
                "Some {} are missing: {name}",
                if matches!(schema.columns[i].kind, ColumnKind::PartitionKey(_)) {
                    "partition key parts"
                } else {
                    "clustering keys"
                }
            ))),
        }
    };
    let pk = schema
        .partition_key
        .iter()
        .map(|i| key_part(*i))
        .collect::<Result<Vec<_>, _>>()?;
    // Only the partition key and static columns: the statics alone.
    let statics_only = !schema.clustering.is_empty()
        && values
            .iter()
            .all(|(i, _)| !matches!(schema.columns[*i].kind, ColumnKind::Clustering(_)))
        && values
            .iter()
            .any(|(i, _)| schema.columns[*i].kind == ColumnKind::Static);
    let target = if schema.clustering.is_empty() {
        Target::Row(Vec::new())
    } else if statics_only {
        Target::Statics
    } else {
        let mut ck = Vec::new();
        for (p, i) in schema.clustering.iter().enumerate() {
            ck.push(KeyPart {
                value: key_part(*i)?,
                desc: schema.clustering_desc[p],
            });
        }
        Target::Row(ck)
    };
    let (ts, ttl, cond) = write_terms(&s.using, &s.condition, &schema, ctx, batch_ts)?;
    Ok(Planned {
        targets: vec![(pk, target)],
        change: Change::Insert(values),
        ts,
        ttl,
        cond,
        schema,
    })
}

fn element_types(t: &ColumnType) -> (ColumnType, ColumnType) {
    match t {
        ColumnType::Map(k, v) => ((**k).clone(), (**v).clone()),
        ColumnType::List(e) => (ColumnType::Int, (**e).clone()),
        other => (other.clone(), other.clone()),
    }
}

fn plan_update(
    db: &Db,
    s: &Update,
    ctx: &WriteCtx<'_>,
    batch_ts: Option<i64>,
) -> Result<Planned, NodeError> {
    let schema = table_for(db, &s.table, ctx)?;
    let rs = resolve(&schema, &s.relations, &ctx.binds)?;
    let mut ops = Vec::new();
    for a in &s.assignments {
        let (name, op) = match a {
            Assignment::Set(n, t)
            | Assignment::Add(n, t)
            | Assignment::Sub(n, t)
            | Assignment::Prepend(n, t) => {
                let i = col(&schema, n)?;
                let c = &schema.columns[i];
                if c.is_primary_key() {
                    return Err(NodeError::invalid(format!(
                        "PRIMARY KEY part {n} found in SET part"
                    )));
                }
                let counter = c.typ == ColumnType::Counter;
                let value = |t: &super::ast::Term, typ: &ColumnType| -> Result<Value, NodeError> {
                    eval(t, typ, &ctx.binds)?
                        .into_option()
                        .ok_or_else(|| NodeError::invalid(format!("Invalid null value for {n}")))
                };
                let op = match a {
                    Assignment::Set(..) if counter => {
                        return Err(NodeError::invalid(format!(
                            "Cannot set the value of counter column {n} (counters can only be incremented/decremented, not set)"
                        )))
                    }
                    Assignment::Set(..) => AssignOp::Set(eval(t, &c.typ, &ctx.binds)?),
                    Assignment::Add(..) if counter => AssignOp::Add(value(t, &ColumnType::Bigint)?),
                    Assignment::Sub(..) if counter => AssignOp::Sub(value(t, &ColumnType::Bigint)?),
                    Assignment::Add(..) | Assignment::Sub(..) | Assignment::Prepend(..) if !c.typ.is_collection() => {
                        return Err(NodeError::invalid(format!("Invalid operation ({n} = {n} + ?) for non counter column {n}")))
                    }
                    Assignment::Add(..) => AssignOp::Add(value(t, &c.typ)?),
                    Assignment::Sub(..) => {
                        // `m = m - {keys}` takes a set of keys.
                        let typ = match &c.typ {
                            ColumnType::Map(k, _) => ColumnType::Set(k.clone()),
                            other => other.clone(),
                        };
                        AssignOp::Sub(value(t, &typ)?)
                    }
                    _ => AssignOp::Prepend(value(t, &c.typ)?),
                };
                (i, op)
            }
            Assignment::SetElement(n, k, v) => {
                let i = col(&schema, n)?;
                let (kt, vt) = element_types(&schema.columns[i].typ);
                let key = eval(k, &kt, &ctx.binds)?
                    .into_option()
                    .ok_or_else(|| NodeError::invalid(format!("Invalid null key for {n}")))?;
                (
                    i,
                    AssignOp::SetElement(key, eval(v, &vt, &ctx.binds)?.into_option()),
                )
            }
        };
        ops.push((name, op));
    }
    let targets = targets_for(
        &schema,
        &rs,
        ops.iter()
            .all(|(i, _)| schema.columns[*i].kind == ColumnKind::Static),
        false,
    )?;
    let (ts, ttl, cond) = write_terms(&s.using, &s.condition, &schema, ctx, batch_ts)?;
    Ok(Planned {
        targets,
        change: Change::Update(ops),
        ts,
        ttl,
        cond,
        schema,
    })
}

/// Rows addressed by a WHERE clause of UPDATE or DELETE.
fn targets_for(
    schema: &TableSchema,
    rs: &[Restriction],
    statics_only: bool,
    allow_slices: bool,
) -> Result<Vec<(Vec<Value>, Target)>, NodeError> {
    for r in rs {
        if matches!(
            schema.columns[r.col].kind,
            ColumnKind::Static | ColumnKind::Regular
        ) {
            return Err(NodeError::invalid(format!(
                "Non PRIMARY KEY columns found in where clause: {}",
                schema.columns[r.col].name
            )));
        }
    }
    let pks = partition_keys(schema, rs).ok_or_else(|| {
        NodeError::invalid(format!(
            "Some partition key parts are missing: {}",
            missing(schema, &schema.partition_key, rs).join(", ")
        ))
    })?;
    let ck_rs: Vec<Restriction> = rs
        .iter()
        .filter(|r| matches!(schema.columns[r.col].kind, ColumnKind::Clustering(_)))
        .cloned()
        .collect();
    let mut out = Vec::new();
    for pk in pks {
        if schema.clustering.is_empty() {
            out.push((pk, Target::Row(Vec::new())));
        } else if ck_rs.is_empty() && statics_only {
            out.push((pk, Target::Statics));
        } else if ck_rs.is_empty() && allow_slices {
            out.push((pk, Target::Partition));
        } else if let Some(cks) = clustering_keys(schema, &ck_rs) {
            for ck in cks {
                out.push((pk.clone(), Target::Row(ck)));
            }
        } else if allow_slices {
            out.push((pk, Target::Slice(ck_rs.clone())));
        } else {
            return Err(NodeError::invalid(format!(
                "Some clustering keys are missing: {}",
                missing(schema, &schema.clustering, &ck_rs).join(", ")
            )));
        }
    }
    Ok(out)
}

fn plan_delete(
    db: &Db,
    s: &Delete,
    ctx: &WriteCtx<'_>,
    batch_ts: Option<i64>,
) -> Result<Planned, NodeError> {
    let schema = table_for(db, &s.table, ctx)?;
    let rs = resolve(&schema, &s.relations, &ctx.binds)?;
    let mut cols = Vec::new();
    for (name, key) in &s.columns {
        let i = col(&schema, name)?;
        if schema.columns[i].is_primary_key() {
            return Err(NodeError::invalid(format!(
                "Invalid identifier {name} for deletion (should not be a PRIMARY KEY part)"
            )));
        }
        let key = match key {
            Some(k) => Some(
                eval(k, &element_types(&schema.columns[i].typ).0, &ctx.binds)?
                    .into_option()
                    .ok_or_else(|| NodeError::invalid(format!("Invalid null key for {name}")))?,
            ),
            None => None,
        };
        cols.push((i, key));
    }
    let statics_only = !cols.is_empty()
        && cols
            .iter()
            .all(|(i, _)| schema.columns[*i].kind == ColumnKind::Static);
    let targets = targets_for(&schema, &rs, statics_only, cols.is_empty())?;
    let (ts, _, cond) = write_terms(&s.using, &s.condition, &schema, ctx, batch_ts)?;
    Ok(Planned {
        targets,
        change: Change::Delete(cols),
        ts,
        ttl: 0,
        cond,
        schema,
    })
}

pub fn plan(
    db: &Db,
    s: &Statement,
    ctx: &WriteCtx<'_>,
    batch_ts: Option<i64>,
) -> Result<Planned, NodeError> {
    match s {
        Statement::Insert(i) => plan_insert(db, i, ctx, batch_ts),
        Statement::Update(u) => plan_update(db, u, ctx, batch_ts),
        Statement::Delete(d) => plan_delete(db, d, ctx, batch_ts),
        _ => Err(NodeError::invalid(
            "Only INSERT, UPDATE and DELETE statements are allowed in a batch",
        )),
    }
}

impl Planned {
    pub fn is_conditional(&self) -> bool {
        !matches!(self.cond, Cond::None)
    }

    fn table_key(&self) -> (String, String) {
        (self.schema.keyspace.clone(), self.schema.name.clone())
    }

    /// Checks the condition against current data. `Ok(None)` means applied
    /// (or unconditional); `Ok(Some(row))` is the `[applied] = false` answer.
    fn check(&self, db: &Db) -> Result<Option<NotApplied>, NodeError> {
        if matches!(self.cond, Cond::None) {
            return Ok(None);
        }
        let table = db.table(&self.schema.keyspace, &self.schema.name)?;
        let now = now_secs();
        let (pk, target) = self
            .targets
            .first()
            .ok_or_else(|| NodeError::invalid("Conditional write matches no row"))?;
        if self.targets.len() > 1 {
            return Err(NodeError::invalid(
                "IN on the clustering key columns is not supported with conditional updates",
            ));
        }
        let part = table.data.partitions.get(&table.schema.keyed(pk.clone()));
        let row: Option<&Row> = match (part, target) {
            (Some(p), Target::Row(ck)) => p.rows.get(ck).filter(|r| r.is_live(p.deleted_at, now)),
            _ => None,
        };
        let static_live = part.is_some_and(|p| p.has_live_statics(now));
        let exists = row.is_some() || (matches!(target, Target::Statics) && static_live);
        let spec = |i: usize| ColumnSpec {
            keyspace: self.schema.keyspace.as_str().into(),
            table: self.schema.name.as_str().into(),
            name: self.schema.columns[i].name.clone(),
            typ: self.schema.columns[i].typ.clone(),
        };
        let current = |i: usize| -> Option<Value> {
            let c = &self.schema.columns[i];
            let p = part?;
            match c.kind {
                ColumnKind::PartitionKey(k) => Some(pk[k].clone()),
                ColumnKind::Clustering(k) => match target {
                    Target::Row(ck) => row.map(|_| ck[k].value.clone()),
                    _ => None,
                },
                ColumnKind::Static => p.statics.value(c.slot, p.deleted_at, now).cloned(),
                ColumnKind::Regular => row
                    .and_then(|r| r.value(c.slot, p.deleted_at, now))
                    .cloned(),
            }
        };
        match &self.cond {
            Cond::None => Ok(None),
            Cond::IfNotExists if !exists => Ok(None),
            Cond::IfNotExists => Ok(Some(
                (0..self.schema.columns.len())
                    .map(|i| (spec(i), current(i)))
                    .collect(),
            )),
            Cond::IfExists if exists => Ok(None),
            Cond::IfExists => Ok(Some(Vec::new())),
            Cond::If(conds) => {
                if conds
                    .iter()
                    .all(|r| matches(r.op, current(r.col).as_ref(), &r.values))
                {
                    Ok(None)
                } else {
                    let mut seen = Vec::new();
                    for r in conds {
                        if !seen.contains(&r.col) {
                            seen.push(r.col);
                        }
                    }
                    Ok(Some(
                        seen.into_iter().map(|i| (spec(i), current(i))).collect(),
                    ))
                }
            }
        }
    }

    fn apply(&self, db: &mut Db) -> Result<(), NodeError> {
        let (ks, name) = self.table_key();
        let table = db.table_mut(&ks, &name)?;
        // The schema may have changed between planning and applying (never
        // within one lock hold, but a batch plans everything first).
        let schema = self.schema.clone();
        let now = now_secs();
        let expires = if self.ttl > 0 {
            Some(now + self.ttl as i64)
        } else {
            None
        };
        let cell = |v: Option<Value>| Cell {
            value: v,
            ts: self.ts,
            expires,
        };
        for (pk, target) in &self.targets {
            let keyed = table.schema.keyed(pk.clone());
            let part = table
                .data
                .partitions
                .entry(keyed)
                .or_insert_with(Partition::default);
            let pdel = part.deleted_at;
            match (&self.change, target) {
                (Change::Delete(cols), Target::Partition) if cols.is_empty() => {
                    part.delete(self.ts)
                }
                (Change::Delete(cols), Target::Slice(rs)) if cols.is_empty() => {
                    for (ck, row) in part.rows.iter_mut() {
                        let hit = rs.iter().all(|r| {
                            let ColumnKind::Clustering(p) = schema.columns[r.col].kind else {
                                return true;
                            };
                            matches(r.op, Some(&ck[p].value), &r.values)
                        });
                        if hit {
                            row.delete(self.ts);
                        }
                    }
                }
                (Change::Delete(cols), Target::Row(ck)) if cols.is_empty() => {
                    part.rows.entry(ck.clone()).or_default().delete(self.ts)
                }
                (change, target) => {
                    match change {
                        Change::Insert(values) => {
                            if let Target::Row(ck) = target {
                                part.rows.entry(ck.clone()).or_default().mark(Liveness {
                                    ts: self.ts,
                                    expires,
                                });
                            }
                            for (i, b) in values {
                                let c = &schema.columns[*i];
                                if c.is_primary_key() || matches!(b, Bound::Unset) {
                                    continue;
                                }
                                let row = row_mut(part, target, c.kind == ColumnKind::Static);
                                row.write(c.slot, cell(b.clone().into_option()), pdel);
                            }
                        }
                        Change::Update(ops) => {
                            for (i, op) in ops {
                                let c = &schema.columns[*i];
                                let row = row_mut(part, target, c.kind == ColumnKind::Static);
                                let cur = row.value(c.slot, pdel, now).cloned();
                                let new = match op {
                                    AssignOp::Set(Bound::Unset) => continue,
                                    AssignOp::Set(b) => b.clone().into_option(),
                                    AssignOp::Add(v) => Some(add(cur, v.clone(), &c.typ)?),
                                    AssignOp::Sub(v) => sub(cur, v, &c.typ),
                                    AssignOp::Prepend(v) => match (v, cur) {
                                        (Value::List(new), Some(Value::List(old))) => Some(
                                            Value::List(new.iter().cloned().chain(old).collect()),
                                        ),
                                        (v, _) => Some(v.clone()),
                                    },
                                    AssignOp::SetElement(k, v) => {
                                        set_element(cur, k, v.clone(), &c.name)?
                                    }
                                };
                                // A counter keeps no TTL; its cell takes the new total.
                                if c.typ == ColumnType::Counter {
                                    let total = Cell {
                                        value: new,
                                        ts: self.ts,
                                        expires: None,
                                    };
                                    row.write_counter(c.slot, total, pdel);
                                } else {
                                    row.write(c.slot, cell(empty_to_none(new)), pdel);
                                }
                            }
                        }
                        Change::Delete(cols) => {
                            for (i, key) in cols {
                                let c = &schema.columns[*i];
                                let row = row_mut(part, target, c.kind == ColumnKind::Static);
                                let new = match key {
                                    None => None,
                                    Some(k) => {
                                        let cur = row.value(c.slot, pdel, now).cloned();
                                        empty_to_none(remove_element(cur, k))
                                    }
                                };
                                row.write(
                                    c.slot,
                                    Cell {
                                        value: new,
                                        ts: self.ts,
                                        expires: None,
                                    },
                                    pdel,
                                );
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn row_mut<'a>(part: &'a mut Partition, target: &Target, static_col: bool) -> &'a mut Row {
    match target {
        Target::Row(ck) if !static_col => part.rows.entry(ck.clone()).or_default(),
        _ => &mut part.statics,
    }
}

fn empty_to_none(v: Option<Value>) -> Option<Value> {
    match v {
        Some(Value::List(l)) | Some(Value::Set(l)) if l.is_empty() => None,
        Some(Value::Map(m)) if m.is_empty() => None,
        other => other,
    }
}

fn add(cur: Option<Value>, v: Value, t: &ColumnType) -> Result<Value, NodeError> {
    Ok(match (cur, v, t) {
        (cur, Value::Int(d), ColumnType::Counter) => {
            Value::Int(cur.and_then(|c| c.as_i64()).unwrap_or(0).wrapping_add(d))
        }
        (Some(Value::List(mut a)), Value::List(b), _) => {
            a.extend(b);
            Value::List(a)
        }
        (Some(Value::Set(mut a)), Value::Set(b), _) => {
            a.extend(b);
            a.sort();
            a.dedup();
            Value::Set(a)
        }
        (Some(Value::Map(a)), Value::Map(b), _) => {
            Value::Map(normalize_map(a.into_iter().chain(b).collect()))
        }
        (_, v, _) => v,
    })
}

fn sub(cur: Option<Value>, v: &Value, t: &ColumnType) -> Option<Value> {
    match (cur, v, t) {
        (cur, Value::Int(d), ColumnType::Counter) => Some(Value::Int(
            cur.and_then(|c| c.as_i64()).unwrap_or(0).wrapping_sub(*d),
        )),
        (Some(Value::List(a)), Value::List(b), _) => Some(Value::List(
            a.into_iter().filter(|x| !b.contains(x)).collect(),
        )),
        (Some(Value::Set(a)), Value::Set(b), ColumnType::Set(_)) => Some(Value::Set(
            a.into_iter().filter(|x| !b.contains(x)).collect(),
        )),
        (Some(Value::Map(a)), Value::Set(keys), _) => Some(Value::Map(
            a.into_iter().filter(|(k, _)| !keys.contains(k)).collect(),
        )),
        (cur, _, _) => cur,
    }
}

fn set_element(
    cur: Option<Value>,
    k: &Value,
    v: Option<Value>,
    name: &str,
) -> Result<Option<Value>, NodeError> {
    Ok(match (cur, k) {
        (Some(Value::Map(m)), k) => {
            let mut m: Vec<(Value, Value)> = m.into_iter().filter(|(x, _)| x != k).collect();
            if let Some(v) = v {
                m.push((k.clone(), v));
            }
            Some(Value::Map(normalize_map(m)))
        }
        (None, k) if !matches!(k, Value::Int(_)) || v.is_some() => match v {
            Some(v) if !matches!(k, Value::Int(_)) => Some(Value::Map(vec![(k.clone(), v)])),
            _ => {
                return Err(NodeError::invalid(format!(
                    "Attempted to set an element on a list which is null ({name})"
                )))
            }
        },
        (Some(Value::List(mut l)), Value::Int(i)) => {
            let idx = *i;
            if idx < 0 || idx as usize >= l.len() {
                return Err(NodeError::invalid(format!(
                    "List index {idx} out of bound, list has size {}",
                    l.len()
                )));
            }
            match v {
                Some(v) => l[idx as usize] = v,
                None => {
                    l.remove(idx as usize);
                }
            }
            Some(Value::List(l))
        }
        (cur, _) => cur,
    })
}

fn remove_element(cur: Option<Value>, k: &Value) -> Option<Value> {
    match (cur, k) {
        (Some(Value::Map(m)), k) => {
            Some(Value::Map(m.into_iter().filter(|(x, _)| x != k).collect()))
        }
        (Some(Value::List(mut l)), Value::Int(i)) if (*i as usize) < l.len() && *i >= 0 => {
            l.remove(*i as usize);
            Some(Value::List(l))
        }
        (Some(Value::Set(s)), k) => Some(Value::Set(s.into_iter().filter(|x| x != k).collect())),
        (cur, _) => cur,
    }
}

/// The `[applied]` ROWS body of a conditional write.
fn applied_body(
    schema: &TableSchema,
    applied: bool,
    cols: &[(ColumnSpec, Option<Value>)],
) -> Bytes {
    let mut specs = vec![ColumnSpec {
        keyspace: schema.keyspace.as_str().into(),
        table: schema.name.as_str().into(),
        name: "[applied]".into(),
        typ: ColumnType::Boolean,
    }];
    specs.extend(cols.iter().map(|(s, _)| s.clone()));
    let meta = RowsMetadata::new(specs);
    let mut b = BytesMut::new();
    rows_header(&meta, 1, &mut b);
    let mut buf = Vec::new();
    let put = |b: &mut BytesMut, v: Option<&[u8]>| crate::protocol::writer::put_bytes(b, v);
    put(&mut b, Some(&[applied as u8]));
    for (s, v) in cols {
        buf.clear();
        match v {
            Some(v) => {
                encode(v, &s.typ, &mut buf);
                put(&mut b, Some(&buf));
            }
            None => put(&mut b, None),
        }
    }
    b.freeze()
}

/// Executes one write. Returns the ROWS body of a conditional write.
pub fn execute(db: &mut Db, s: &Statement, ctx: &WriteCtx<'_>) -> Result<Option<Bytes>, NodeError> {
    let p = plan(db, s, ctx, None)?;
    if p.is_conditional() {
        return Ok(Some(match p.check(db)? {
            None => {
                p.apply(db)?;
                applied_body(&p.schema, true, &[])
            }
            Some(cols) => applied_body(&p.schema, false, &cols),
        }));
    }
    p.apply(db)?;
    Ok(None)
}

/// Executes a batch atomically (one lock hold). Conditional batches apply
/// only when every condition holds.
pub fn execute_batch(
    db: &mut Db,
    children: &[(Statement, WriteCtx<'_>)],
    kind: u8,
    batch_ts: Option<i64>,
) -> Result<Option<Bytes>, NodeError> {
    let mut plans = Vec::with_capacity(children.len());
    for (s, ctx) in children {
        let p = plan(db, s, ctx, batch_ts)?;
        let counter = p.schema.is_counter_table();
        if kind == 2 && !counter {
            return Err(NodeError::invalid(
                "Only counter mutations are allowed in COUNTER batches",
            ));
        }
        if kind != 2 && counter {
            return Err(NodeError::invalid(
                "Counter mutations are only allowed in COUNTER batches",
            ));
        }
        plans.push(p);
    }
    let conditional = plans.iter().any(Planned::is_conditional);
    if conditional {
        for p in &plans {
            if let Some(cols) = p.check(db)? {
                return Ok(Some(applied_body(&p.schema, false, &cols)));
            }
        }
    }
    for p in &plans {
        p.apply(db)?;
    }
    Ok(conditional.then(|| applied_body(&plans[0].schema, true, &[])))
}

/// A batch written as CQL text (`BEGIN BATCH ... APPLY BATCH`).
pub fn execute_text_batch(
    db: &mut Db,
    b: &BatchStmt,
    ctx: &WriteCtx<'_>,
) -> Result<Option<Bytes>, NodeError> {
    let batch_ts = match &b.using.timestamp {
        Some(_) => Some(ts_of(&b.using, ctx, None)?.0),
        None => None,
    };
    let children: Vec<(Statement, WriteCtx<'_>)> = b
        .statements
        .iter()
        .map(|s| {
            (
                s.clone(),
                WriteCtx {
                    keyspace: ctx.keyspace,
                    binds: Binds {
                        values: ctx.binds.values,
                    },
                    default_ts: ctx.default_ts,
                },
            )
        })
        .collect();
    execute_batch(db, &children, b.kind, batch_ts)
}
