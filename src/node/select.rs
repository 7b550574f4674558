//! SELECT: restrictions, partition lookup or scan, filtering, ordering,
//! paging (by row offset in the paging state) and the ROWS body.

use bytes::{BufMut, Bytes, BytesMut};

use super::ast::{Op, RelValue, Relation, Select, Selector};
use super::convert::{eval, Binds, Bound};
use super::db::Db;
use super::error::NodeError;
use super::schema::{keyspace_of, ColumnKind, TableSchema};
use super::store::{now_secs, ClusteringKey, Partition, Row};
use super::value::{encode, Value};
use crate::protocol::response::{rows_header, ColumnSpec, RowsMetadata};
use crate::protocol::ColumnType;

/// A resolved WHERE restriction on one column.
#[derive(Debug, Clone)]
pub struct Restriction {
    pub col: usize,
    pub op: Op,
    pub values: Vec<Value>,
}

pub fn resolve(
    schema: &TableSchema,
    rels: &[Relation],
    binds: &Binds<'_>,
) -> Result<Vec<Restriction>, NodeError> {
    rels.iter().map(|r| resolve_one(schema, r, binds)).collect()
}

pub fn resolve_one(
    schema: &TableSchema,
    r: &Relation,
    binds: &Binds<'_>,
) -> Result<Restriction, NodeError> {
    if r.token.is_some() {
        return Err(NodeError::invalid(
            "token() restrictions are only supported in a SELECT's WHERE clause",
        ));
    }
    let col = schema
        .column_index(&r.column)
        .ok_or_else(|| NodeError::invalid(format!("Undefined column name {}", r.column)))?;
    let t = &schema.columns[col].typ;
    let elem_type = match (r.op, t) {
        (Op::Contains, ColumnType::List(e) | ColumnType::Set(e)) => (**e).clone(),
        (Op::Contains, ColumnType::Map(_, v)) => (**v).clone(),
        (Op::ContainsKey, ColumnType::Map(k, _)) => (**k).clone(),
        (Op::Contains | Op::ContainsKey, _) => {
            return Err(NodeError::invalid(format!(
                "Cannot use CONTAINS on non-collection column {}",
                r.column
            )))
        }
        _ => t.clone(),
    };
    let one = |b: Bound| match b {
        Bound::Value(v) => Ok(v),
        Bound::Null => Err(NodeError::invalid(format!(
            "Invalid null value in condition for column {}",
            r.column
        ))),
        Bound::Unset => Err(NodeError::invalid(format!(
            "Invalid unset value for column {}",
            r.column
        ))),
    };
    let values = match (&r.value, r.op) {
        (RelValue::One(term), Op::In) => {
            match eval(term, &ColumnType::List(Box::new(elem_type.clone())), binds)? {
                Bound::Value(Value::List(items)) => items,
                Bound::Value(other) => vec![other],
                _ => {
                    return Err(NodeError::invalid(format!(
                        "Invalid null value for IN restriction on {}",
                        r.column
                    )))
                }
            }
        }
        (RelValue::One(term), _) => vec![one(eval(term, &elem_type, binds)?)?],
        (RelValue::List(terms), _) => terms
            .iter()
            .map(|t| one(eval(t, &elem_type, binds)?))
            .collect::<Result<_, _>>()?,
    };
    Ok(Restriction {
        col,
        op: r.op,
        values,
    })
}

pub fn matches(op: Op, v: Option<&Value>, values: &[Value]) -> bool {
    let Some(v) = v else {
        return op == Op::Ne && !values.is_empty();
    };
    match op {
        Op::Eq => v == &values[0],
        Op::Ne => v != &values[0],
        Op::Lt => v < &values[0],
        Op::Le => v <= &values[0],
        Op::Gt => v > &values[0],
        Op::Ge => v >= &values[0],
        Op::In => values.contains(v),
        Op::Contains => match v {
            Value::List(items) | Value::Set(items) => items.contains(&values[0]),
            Value::Map(entries) => entries.iter().any(|(_, x)| x == &values[0]),
            _ => false,
        },
        Op::ContainsKey => match v {
            Value::Map(entries) => entries.iter().any(|(k, _)| k == &values[0]),
            _ => false,
        },
    }
}

/// Every partition key the restrictions name exactly (cartesian product of
/// EQ/IN values), or `None` when they do not pin the whole partition key.
pub fn partition_keys(schema: &TableSchema, rs: &[Restriction]) -> Option<Vec<Vec<Value>>> {
    let mut keys: Vec<Vec<Value>> = vec![Vec::new()];
    for pk in &schema.partition_key {
        let r = rs
            .iter()
            .find(|r| r.col == *pk && matches!(r.op, Op::Eq | Op::In))?;
        let mut next = Vec::with_capacity(keys.len() * r.values.len());
        for k in &keys {
            for v in &r.values {
                let mut k2 = k.clone();
                k2.push(v.clone());
                next.push(k2);
            }
        }
        keys = next;
    }
    keys.sort();
    keys.dedup();
    Some(keys)
}

/// One row of a result, before projection.
struct Hit<'a> {
    pk: &'a [Value],
    part: &'a Partition,
    row: Option<(&'a ClusteringKey, &'a Row)>,
}

fn value_of<'a>(schema: &TableSchema, col: usize, h: &Hit<'a>, now: i64) -> Option<&'a Value> {
    let c = &schema.columns[col];
    match c.kind {
        ColumnKind::PartitionKey(p) => h.pk.get(p),
        ColumnKind::Clustering(p) => h.row.map(|(ck, _)| &ck[p].value),
        ColumnKind::Static => h.part.statics.value(c.slot, h.part.deleted_at, now),
        ColumnKind::Regular => h
            .row
            .and_then(|(_, r)| r.value(c.slot, h.part.deleted_at, now)),
    }
}

fn cell_of<'a>(
    schema: &TableSchema,
    col: usize,
    h: &Hit<'a>,
    now: i64,
) -> Option<&'a super::store::Cell> {
    let c = &schema.columns[col];
    match c.kind {
        ColumnKind::Static => h.part.statics.cell(c.slot, h.part.deleted_at, now),
        ColumnKind::Regular => h
            .row
            .and_then(|(_, r)| r.cell(c.slot, h.part.deleted_at, now)),
        _ => None,
    }
}

/// Paging state: the number of rows already returned, and a check value.
fn encode_paging_state(offset: u64, check: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(16);
    b.put_u64(offset);
    b.put_u64(check);
    b.freeze()
}

fn decode_paging_state(b: &[u8], check: u64) -> Result<u64, NodeError> {
    if b.len() != 16 || u64::from_be_bytes(b[8..16].try_into().expect("8")) != check {
        return Err(NodeError(crate::protocol::ErrorFrame::protocol(
            "Invalid value for the paging state: it does not belong to this query",
        )));
    }
    Ok(u64::from_be_bytes(b[..8].try_into().expect("8")))
}

pub struct SelectCtx<'a> {
    pub keyspace: Option<&'a str>,
    pub binds: Binds<'a>,
    pub page_size: Option<i32>,
    pub paging_state: Option<&'a [u8]>,
    pub skip_metadata: bool,
    /// Identifies the statement text for the paging-state check.
    pub statement_hash: u64,
    pub new_metadata_id: Option<Bytes>,
}

enum Out {
    Column(usize),
    WriteTime(usize),
    Ttl(usize),
    Token,
}

/// `token(cols)` must name the partition key, in order.
fn check_token_columns(schema: &TableSchema, cols: &[String]) -> Result<(), NodeError> {
    let pk: Vec<&str> = schema
        .partition_key
        .iter()
        .map(|&i| schema.columns[i].name.as_str())
        .collect();
    if cols.iter().map(String::as_str).eq(pk.iter().copied()) {
        Ok(())
    } else {
        Err(NodeError::invalid(format!(
            "The token function arguments must be in the partition key order: {}",
            pk.join(", ")
        )))
    }
}

/// The tokens `token(...)` restrictions leave, lowest and highest
/// (inclusive); None when they leave none.
fn token_bounds(
    schema: &TableSchema,
    rels: &[&Relation],
    binds: &Binds<'_>,
) -> Result<Option<(i64, i64)>, NodeError> {
    let (mut lo, mut hi) = (i64::MIN, i64::MAX);
    for r in rels {
        check_token_columns(schema, r.token.as_deref().unwrap_or_default())?;
        let RelValue::One(term) = &r.value else {
            return Err(NodeError::invalid("token() takes one value"));
        };
        let t = match eval(term, &ColumnType::Bigint, binds)? {
            Bound::Value(Value::Int(t)) => t,
            _ => return Err(NodeError::invalid("Invalid null value for token()")),
        };
        let (l, h) = match r.op {
            Op::Eq => (Some(t), Some(t)),
            Op::Gt => (t.checked_add(1), Some(i64::MAX)),
            Op::Ge => (Some(t), Some(i64::MAX)),
            Op::Lt => (Some(i64::MIN), t.checked_sub(1)),
            Op::Le => (Some(i64::MIN), Some(t)),
            _ => return Err(NodeError::invalid("token() takes =, <, <=, > or >=")),
        };
        let (Some(l), Some(h)) = (l, h) else {
            return Ok(None);
        };
        lo = lo.max(l);
        hi = hi.min(h);
    }
    Ok((lo <= hi).then_some((lo, hi)))
}

/// The result columns of a selection (also the PREPARED result metadata).
pub fn result_columns(schema: &TableSchema, s: &Select) -> Result<Vec<ColumnSpec>, NodeError> {
    Ok(projection(schema, s)?.1)
}

fn projection(
    schema: &TableSchema,
    s: &Select,
) -> Result<(Vec<Out>, Vec<ColumnSpec>, bool), NodeError> {
    let spec = |name: String, typ: ColumnType| ColumnSpec {
        keyspace: schema.keyspace.as_str().into(),
        table: schema.name.as_str().into(),
        name,
        typ,
    };
    if s.selectors.is_empty() {
        let outs = (0..schema.columns.len()).map(Out::Column).collect();
        let specs = schema
            .columns
            .iter()
            .map(|c| spec(c.name.clone(), c.typ.clone()))
            .collect();
        return Ok((outs, specs, false));
    }
    let mut outs = Vec::new();
    let mut specs = Vec::new();
    let mut count = false;
    let find = |n: &str| {
        schema.column_index(n).ok_or_else(|| {
            NodeError::invalid(format!("Undefined column name {n} in selection clause"))
        })
    };
    for (sel, alias) in &s.selectors {
        match sel {
            Selector::Column(n) => {
                let i = find(n)?;
                outs.push(Out::Column(i));
                specs.push(spec(
                    alias.clone().unwrap_or_else(|| n.clone()),
                    schema.columns[i].typ.clone(),
                ));
            }
            Selector::WriteTime(n) | Selector::Ttl(n) => {
                let i = find(n)?;
                let c = &schema.columns[i];
                let wt = matches!(sel, Selector::WriteTime(_));
                if c.is_primary_key() {
                    return Err(NodeError::invalid(format!(
                        "Cannot use selection function {} on PRIMARY KEY part {n}",
                        if wt { "writeTime" } else { "ttl" }
                    )));
                }
                if c.typ.is_collection() && !c.frozen {
                    return Err(NodeError::invalid(format!(
                        "Cannot use selection function {} on non-frozen collection {n}",
                        if wt { "writeTime" } else { "ttl" }
                    )));
                }
                let label = if wt {
                    format!("writetime({n})")
                } else {
                    format!("ttl({n})")
                };
                outs.push(if wt { Out::WriteTime(i) } else { Out::Ttl(i) });
                specs.push(spec(
                    alias.clone().unwrap_or(label),
                    if wt {
                        ColumnType::Bigint
                    } else {
                        ColumnType::Int
                    },
                ));
            }
            Selector::Token(cols) => {
                check_token_columns(schema, cols)?;
                outs.push(Out::Token);
                specs.push(spec(
                    alias
                        .clone()
                        .unwrap_or_else(|| format!("system.token({})", cols.join(", "))),
                    ColumnType::Bigint,
                ));
            }
            Selector::Count => {
                count = true;
                specs.push(spec(
                    alias.clone().unwrap_or_else(|| "count".into()),
                    ColumnType::Bigint,
                ));
            }
        }
    }
    if count && specs.len() > 1 {
        return Err(NodeError::invalid(
            "COUNT(*) cannot be combined with other selectors in the embedded node",
        ));
    }
    Ok((outs, specs, count))
}

pub fn select(db: &Db, s: &Select, ctx: &SelectCtx<'_>) -> Result<Bytes, NodeError> {
    let ks = keyspace_of(&s.table, ctx.keyspace)?;
    let table = db.table(ks, &s.table.name)?;
    let schema = &*table.schema;
    let (token_rels, rels): (Vec<&Relation>, Vec<&Relation>) =
        s.relations.iter().partition(|r| r.token.is_some());
    let rs = rels
        .iter()
        .map(|r| resolve_one(schema, r, &ctx.binds))
        .collect::<Result<Vec<_>, _>>()?;
    let tokens = if token_rels.is_empty() {
        Some((i64::MIN, i64::MAX))
    } else {
        token_bounds(schema, &token_rels, &ctx.binds)?
    };
    let (outs, specs, count) = projection(schema, s)?;
    let now = now_secs();

    // Validate the shape of the WHERE clause the way Cassandra does.
    for r in &rs {
        if matches!(schema.columns[r.col].kind, ColumnKind::PartitionKey(_))
            && !matches!(r.op, Op::Eq | Op::In)
        {
            return Err(NodeError::invalid(
                "Only EQ and IN relation are supported on the partition key (unless you use the token() function)",
            ));
        }
    }
    let keys = partition_keys(schema, &rs);
    let needs_filtering = rs.iter().any(|r| match schema.columns[r.col].kind {
        ColumnKind::PartitionKey(_) => keys.is_none(),
        ColumnKind::Clustering(_) => keys.is_none(),
        _ => true,
    });
    if needs_filtering && !s.allow_filtering {
        return Err(NodeError::invalid("Cannot execute this query as it might involve data filtering and thus may have unpredictable performance. If you want to execute this query despite the performance unpredictability, use ALLOW FILTERING"));
    }
    let ck_rs: Vec<&Restriction> = rs
        .iter()
        .filter(|r| matches!(schema.columns[r.col].kind, ColumnKind::Clustering(_)))
        .collect();
    let other_rs: Vec<&Restriction> = rs
        .iter()
        .filter(|r| {
            matches!(
                schema.columns[r.col].kind,
                ColumnKind::Static | ColumnKind::Regular
            )
        })
        .collect();
    let pk_filter: Vec<&Restriction> = if keys.is_none() {
        rs.iter()
            .filter(|r| matches!(schema.columns[r.col].kind, ColumnKind::PartitionKey(_)))
            .collect()
    } else {
        Vec::new()
    };

    let reverse = match s.order_by.first() {
        None => false,
        Some((col, desc)) => {
            let i = schema
                .column_index(col)
                .filter(|i| matches!(schema.columns[*i].kind, ColumnKind::Clustering(_)))
                .ok_or_else(|| NodeError::invalid(format!("Order by is currently only supported on the clustered columns of the PRIMARY KEY, got {col}")))?;
            let ColumnKind::Clustering(p) = schema.columns[i].kind else {
                unreachable!()
            };
            if keys.is_none() {
                return Err(NodeError::invalid("ORDER BY is only supported when the partition key is restricted by an EQ or an IN."));
            }
            *desc != schema.clustering_desc[p]
        }
    };

    let limit = match &s.limit {
        Some(t) => match eval(t, &ColumnType::Int, &ctx.binds)? {
            Bound::Value(Value::Int(n)) if n > 0 => n as u64,
            Bound::Value(Value::Int(n)) => {
                return Err(NodeError::invalid(format!(
                    "LIMIT must be strictly positive, got {n}"
                )))
            }
            Bound::Unset => u64::MAX,
            _ => return Err(NodeError::invalid("Invalid null value of limit")),
        },
        None => u64::MAX,
    };
    let per_partition = match &s.per_partition_limit {
        Some(t) => match eval(t, &ColumnType::Int, &ctx.binds)? {
            Bound::Value(Value::Int(n)) if n > 0 => n as u64,
            _ => {
                return Err(NodeError::invalid(
                    "PER PARTITION LIMIT must be strictly positive",
                ))
            }
        },
        None => u64::MAX,
    };

    let page = match ctx.page_size {
        Some(n) if n > 0 && !count => n as u64,
        _ => u64::MAX,
    };
    let offset = match ctx.paging_state {
        Some(ps) if !count => decode_paging_state(ps, ctx.statement_hash)?,
        _ => 0,
    };
    // Collect hits up to what this page needs, plus one to know if more exist.
    let want = if count {
        u64::MAX
    } else {
        offset.saturating_add(page).saturating_add(1).min(limit)
    };
    let mut hits: Vec<Hit<'_>> = Vec::new();
    let mut total: u64 = 0;
    let partitions: Box<dyn Iterator<Item = (&Vec<Value>, &Partition)>> = match &keys {
        Some(ks) => Box::new(ks.iter().filter_map(|k| {
            table
                .data
                .partitions
                .get_key_value(&table.schema.keyed(k.clone()))
                .map(|(k, p)| (&k.key, p))
        })),
        None => match tokens {
            Some((lo, hi)) => Box::new(
                table
                    .data
                    .partitions
                    .range(
                        super::store::Keyed {
                            token: lo,
                            key: Vec::new(),
                        }..,
                    )
                    .take_while(move |(k, _)| k.token <= hi)
                    .map(|(k, p)| (&k.key, p)),
            ),
            None => Box::new(std::iter::empty()),
        },
    };
    // A pinned partition outside the token restriction is not selected.
    let in_tokens = |pk: &Vec<Value>| {
        token_rels.is_empty()
            || tokens.is_some_and(|(lo, hi)| (lo..=hi).contains(&schema.token(pk)))
    };
    'outer: for (pk, part) in partitions {
        if !in_tokens(pk) {
            continue;
        }
        if !pk_filter.iter().all(|r| {
            let ColumnKind::PartitionKey(p) = schema.columns[r.col].kind else {
                return true;
            };
            matches(r.op, pk.get(p), &r.values)
        }) {
            continue;
        }
        let mut in_partition = 0u64;
        let rows: Box<dyn Iterator<Item = (&ClusteringKey, &Row)>> = if reverse {
            Box::new(part.rows.iter().rev())
        } else {
            Box::new(part.rows.iter())
        };
        let mut any_row = false;
        for (ck, row) in rows {
            if !row.is_live(part.deleted_at, now) {
                continue;
            }
            if !ck_rs.iter().all(|r| {
                let ColumnKind::Clustering(p) = schema.columns[r.col].kind else {
                    return true;
                };
                matches(r.op, Some(&ck[p].value), &r.values)
            }) {
                continue;
            }
            let hit = Hit {
                pk,
                part,
                row: Some((ck, row)),
            };
            if !other_rs
                .iter()
                .all(|r| matches(r.op, value_of(schema, r.col, &hit, now), &r.values))
            {
                continue;
            }
            any_row = true;
            if s.distinct {
                break;
            }
            if in_partition >= per_partition {
                break;
            }
            in_partition += 1;
            total += 1;
            if count {
                if total > limit {
                    total = limit;
                    break 'outer;
                }
                continue;
            }
            hits.push(hit);
            if hits.len() as u64 >= want {
                break 'outer;
            }
        }
        // A partition with only static data shows as one row (clustering
        // columns null), unless clustering columns are restricted.
        let static_only = !any_row && ck_rs.is_empty() && part.has_live_statics(now);
        let emit = if static_only {
            other_rs.is_empty()
        } else {
            s.distinct && any_row
        };
        if emit {
            total += 1;
            if count {
                continue;
            }
            hits.push(Hit {
                pk,
                part,
                row: None,
            });
            if hits.len() as u64 >= want {
                break;
            }
        }
    }

    let mut meta = RowsMetadata::new(specs);
    meta.no_metadata = ctx.skip_metadata && ctx.new_metadata_id.is_none();
    meta.new_metadata_id = ctx.new_metadata_id.clone();
    let mut body = BytesMut::with_capacity(256);
    if count {
        rows_header(&meta, 1, &mut body);
        let mut buf = Vec::new();
        encode(&Value::Int(total as i64), &ColumnType::Bigint, &mut buf);
        put_cell(&mut body, Some(&buf));
        return Ok(body.freeze());
    }
    let start = (offset as usize).min(hits.len());
    let end_cap = offset.saturating_add(page).min(limit);
    let end = (end_cap as usize).min(hits.len());
    let more = (hits.len() as u64) > end_cap && end_cap < limit;
    if more {
        meta.paging_state = Some(encode_paging_state(end as u64, ctx.statement_hash));
    }
    rows_header(&meta, end - start, &mut body);
    let mut buf = Vec::with_capacity(64);
    for h in &hits[start..end] {
        for o in &outs {
            buf.clear();
            let present = match o {
                Out::Column(i) => value_of(schema, *i, h, now)
                    .map(|v| encode(v, &schema.columns[*i].typ, &mut buf)),
                Out::WriteTime(i) => cell_of(schema, *i, h, now)
                    .map(|c| encode(&Value::Int(c.ts), &ColumnType::Bigint, &mut buf)),
                Out::Ttl(i) => cell_of(schema, *i, h, now)
                    .and_then(|c| c.expires)
                    .map(|e| encode(&Value::Int((e - now).max(0)), &ColumnType::Int, &mut buf)),
                Out::Token => {
                    encode(
                        &Value::Int(schema.token(h.pk)),
                        &ColumnType::Bigint,
                        &mut buf,
                    );
                    Some(())
                }
            };
            put_cell(&mut body, present.map(|_| buf.as_slice()));
        }
    }
    Ok(body.freeze())
}

fn put_cell(dst: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            dst.put_i32(b.len() as i32);
            dst.put_slice(b);
        }
        None => dst.put_i32(-1),
    }
}
