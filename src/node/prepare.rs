//! PREPARE: bind-marker metadata (names, types, partition-key indexes) and
//! the result metadata of a prepared statement.

use super::ast::{Assignment, Condition, Op, Parsed, RelValue, Relation, Statement, Term};
use super::db::Db;
use super::error::NodeError;
use super::schema::{keyspace_of, ColumnKind, TableSchema};
use super::select::result_columns;
use crate::protocol::response::ColumnSpec;
use crate::protocol::ColumnType;

pub struct PreparedMeta {
    pub binds: Vec<ColumnSpec>,
    pub pk_indexes: Vec<u16>,
    pub result: Vec<ColumnSpec>,
    /// The statement returns rows whose columns are known at PREPARE time.
    pub has_result_metadata: bool,
}

struct Walker<'a> {
    schema: &'a TableSchema,
    specs: Vec<Option<ColumnSpec>>,
    names: &'a [Option<String>],
    /// Marker bound to each partition-key column by equality.
    pk_markers: Vec<Option<usize>>,
}

impl Walker<'_> {
    fn set(&mut self, marker: usize, name: String, typ: ColumnType) {
        if marker >= self.specs.len() {
            self.specs.resize(marker + 1, None);
        }
        let name = self.names.get(marker).cloned().flatten().unwrap_or(name);
        self.specs[marker] = Some(ColumnSpec {
            keyspace: self.schema.keyspace.as_str().into(),
            table: self.schema.name.as_str().into(),
            name,
            typ,
        });
    }

    fn column_type(&self, col: &str) -> Result<ColumnType, NodeError> {
        self.schema
            .column(col)
            .map(|c| c.typ.clone())
            .ok_or_else(|| NodeError::invalid(format!("Undefined column name {col}")))
    }

    fn term(&mut self, t: &Term, name: &str, typ: &ColumnType) {
        match t {
            Term::Marker(m) => self.set(*m, name.to_string(), typ.clone()),
            Term::List(items) | Term::Set(items) => {
                let et = match typ {
                    ColumnType::List(e) | ColumnType::Set(e) => (**e).clone(),
                    other => other.clone(),
                };
                for i in items {
                    self.term(i, name, &et);
                }
            }
            Term::Map(entries) => {
                if let ColumnType::Map(k, v) = typ {
                    for (a, b) in entries {
                        self.term(a, name, k);
                        self.term(b, name, v);
                    }
                }
            }
            Term::Udt(fields) => {
                if let ColumnType::Udt { fields: ft, .. } = typ {
                    for (f, t) in fields {
                        if let Some((_, ty)) = ft.iter().find(|(n, _)| n == f) {
                            self.term(t, f, ty);
                        }
                    }
                }
            }
            Term::Tuple(items) => {
                if let ColumnType::Tuple(ts) = typ {
                    for (i, t) in items.iter().zip(ts) {
                        self.term(i, name, t);
                    }
                }
            }
            Term::Call(_, args) => {
                for a in args {
                    self.term(a, name, &ColumnType::Timeuuid);
                }
            }
            Term::Lit(_) => {}
        }
    }

    fn relation(&mut self, r: &Relation) -> Result<(), NodeError> {
        if r.token.is_some() {
            // Cassandra names a token() bound value `partition key token`.
            if let RelValue::One(t) = &r.value {
                self.term(t, "partition key token", &ColumnType::Bigint);
            }
            return Ok(());
        }
        let typ = self.column_type(&r.column)?;
        let elem = match (r.op, &typ) {
            (Op::Contains, ColumnType::List(e) | ColumnType::Set(e)) => (**e).clone(),
            (Op::Contains, ColumnType::Map(_, v)) => (**v).clone(),
            (Op::ContainsKey, ColumnType::Map(k, _)) => (**k).clone(),
            _ => typ.clone(),
        };
        match (&r.value, r.op) {
            (RelValue::One(Term::Marker(m)), Op::In) => self.set(
                *m,
                format!("in({})", r.column),
                ColumnType::List(Box::new(elem)),
            ),
            (RelValue::One(t), op) => {
                if op == Op::Eq {
                    if let (Term::Marker(m), Some(c)) = (t, self.schema.column(&r.column)) {
                        if let ColumnKind::PartitionKey(p) = c.kind {
                            self.pk_markers[p] = Some(*m);
                        }
                    }
                }
                self.term(t, &r.column, &elem)
            }
            (RelValue::List(ts), _) => {
                for t in ts {
                    self.term(t, &r.column, &elem);
                }
            }
        }
        Ok(())
    }

    fn using(&mut self, u: &super::ast::Using) {
        if let Some(t) = &u.ttl {
            self.term(t, "[ttl]", &ColumnType::Int);
        }
        if let Some(t) = &u.timestamp {
            self.term(t, "[timestamp]", &ColumnType::Bigint);
        }
    }

    fn condition(&mut self, c: &Condition) -> Result<(), NodeError> {
        if let Condition::If(rels) = c {
            for r in rels {
                self.relation(r)?;
            }
        }
        Ok(())
    }
}

fn walk(w: &mut Walker<'_>, s: &Statement) -> Result<(), NodeError> {
    match s {
        Statement::Select(sel) => {
            for r in &sel.relations {
                w.relation(r)?;
            }
            if let Some(t) = &sel.per_partition_limit {
                w.term(t, "[per_partition_limit]", &ColumnType::Int);
            }
            if let Some(t) = &sel.limit {
                w.term(t, "[limit]", &ColumnType::Int);
            }
        }
        Statement::Insert(i) => {
            for (c, t) in i.columns.iter().zip(&i.values) {
                let typ = w.column_type(c)?;
                if let (Term::Marker(m), Some(def)) = (t, w.schema.column(c)) {
                    if let ColumnKind::PartitionKey(p) = def.kind {
                        w.pk_markers[p] = Some(*m);
                    }
                }
                w.term(t, c, &typ);
            }
            w.using(&i.using);
        }
        Statement::Update(u) => {
            w.using(&u.using);
            for a in &u.assignments {
                match a {
                    Assignment::Set(c, t) | Assignment::Add(c, t) | Assignment::Prepend(c, t) => {
                        let typ = w.column_type(c)?;
                        let typ = if typ == ColumnType::Counter {
                            ColumnType::Counter
                        } else {
                            typ
                        };
                        w.term(t, c, &typ);
                    }
                    Assignment::Sub(c, t) => {
                        let typ = match w.column_type(c)? {
                            ColumnType::Map(k, _) => ColumnType::Set(k),
                            other => other,
                        };
                        w.term(t, c, &typ);
                    }
                    Assignment::SetElement(c, k, v) => {
                        let (kt, vt) = match w.column_type(c)? {
                            ColumnType::Map(k, v) => (*k, *v),
                            ColumnType::List(e) => (ColumnType::Int, *e),
                            other => (other.clone(), other),
                        };
                        w.term(k, &format!("key({c})"), &kt);
                        w.term(v, &format!("value({c})"), &vt);
                    }
                }
            }
            for r in &u.relations {
                w.relation(r)?;
            }
            w.condition(&u.condition)?;
        }
        Statement::Delete(d) => {
            for (c, k) in &d.columns {
                if let Some(k) = k {
                    let kt = match w.column_type(c)? {
                        ColumnType::Map(k, _) => *k,
                        _ => ColumnType::Int,
                    };
                    w.term(k, &format!("key({c})"), &kt);
                }
            }
            w.using(&d.using);
            for r in &d.relations {
                w.relation(r)?;
            }
            w.condition(&d.condition)?;
        }
        _ => {}
    }
    Ok(())
}

fn statement_table(s: &Statement) -> Option<&super::ast::QualifiedName> {
    match s {
        Statement::Select(x) => Some(&x.table),
        Statement::Insert(x) => Some(&x.table),
        Statement::Update(x) => Some(&x.table),
        Statement::Delete(x) => Some(&x.table),
        _ => None,
    }
}

pub fn metadata(
    db: &Db,
    parsed: &Parsed,
    keyspace: Option<&str>,
) -> Result<PreparedMeta, NodeError> {
    let statements: Vec<&Statement> = match &parsed.statement {
        Statement::Batch(b) => b.statements.iter().collect(),
        s => vec![s],
    };
    let mut specs: Vec<Option<ColumnSpec>> = vec![None; parsed.marker_names.len()];
    let mut pk_indexes = Vec::new();
    let mut result = Vec::new();
    let mut has_result_metadata = false;
    for s in &statements {
        let Some(q) = statement_table(s) else {
            if parsed.marker_names.is_empty() {
                continue;
            }
            return Err(NodeError::invalid(
                "Bind markers are only supported in SELECT, INSERT, UPDATE, DELETE and BATCH",
            ));
        };
        let ks = keyspace_of(q, keyspace)?;
        let table = db.table(ks, &q.name)?;
        let schema = &*table.schema;
        let mut w = Walker {
            schema,
            specs: std::mem::take(&mut specs),
            names: &parsed.marker_names,
            pk_markers: vec![None; schema.partition_key.len()],
        };
        walk(&mut w, s)?;
        specs = w.specs;
        if statements.len() == 1 && w.pk_markers.iter().all(Option::is_some) {
            pk_indexes = w
                .pk_markers
                .iter()
                .map(|m| m.expect("checked") as u16)
                .collect();
        }
        if let Statement::Select(sel) = s {
            result = result_columns(schema, sel)?;
            has_result_metadata = true;
        }
    }
    specs.resize(parsed.marker_names.len(), None);
    let binds = specs
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.ok_or_else(|| {
                NodeError::invalid(format!("Could not infer the type of bind marker {i}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PreparedMeta {
        binds,
        pk_indexes,
        result,
        has_result_metadata,
    })
}
