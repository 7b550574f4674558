//! Keyspaces, tables, columns and user types of the embedded node.

use std::collections::BTreeMap;

use super::ast::{QualifiedName, TypeExpr};
use super::error::NodeError;
use crate::protocol::ColumnType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    PartitionKey(usize),
    Clustering(usize),
    Static,
    Regular,
}

impl ColumnKind {
    pub fn name(self) -> &'static str {
        match self {
            ColumnKind::PartitionKey(_) => "partition_key",
            ColumnKind::Clustering(_) => "clustering",
            ColumnKind::Static => "static",
            ColumnKind::Regular => "regular",
        }
    }

    pub fn position(self) -> i32 {
        match self {
            ColumnKind::PartitionKey(p) | ColumnKind::Clustering(p) => p as i32,
            _ => -1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ColumnDef {
    /// Stable slot of this column's cells in a row; never reused.
    pub slot: usize,
    pub name: String,
    pub typ: ColumnType,
    /// Declared `frozen<...>` at the top level.
    pub frozen: bool,
    pub kind: ColumnKind,
}

impl ColumnDef {
    /// The type as `system_schema.columns.type` and DESCRIBE spell it.
    pub fn type_name(&self) -> String {
        if self.frozen {
            format!("frozen<{}>", self.typ.cql_name())
        } else {
            self.typ.cql_name()
        }
    }

    pub fn is_primary_key(&self) -> bool {
        matches!(
            self.kind,
            ColumnKind::PartitionKey(_) | ColumnKind::Clustering(_)
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    pub comment: String,
    pub default_time_to_live: i32,
}

#[derive(Debug, Clone)]
pub struct TableSchema {
    pub keyspace: String,
    pub name: String,
    pub id: [u8; 16],
    /// Every live column, in `SELECT *` order: partition key, clustering,
    /// then statics and regulars each by name.
    pub columns: Vec<ColumnDef>,
    pub partition_key: Vec<usize>,
    pub clustering: Vec<usize>,
    pub clustering_desc: Vec<bool>,
    pub next_slot: usize,
    pub options: TableOptions,
}

impl TableSchema {
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The Murmur3 token of partition key `pk` (its values in partition
    /// key order), as Cassandra computes it from their serialized bytes.
    pub fn token(&self, pk: &[super::value::Value]) -> i64 {
        let parts: Vec<Vec<u8>> = pk
            .iter()
            .zip(&self.partition_key)
            .map(|(v, &i)| super::value::to_bytes(v, &self.columns[i].typ))
            .collect();
        crate::token::of_parts(parts.iter().map(Vec::as_slice))
    }

    /// `pk` with its token, as the table's partitions are keyed.
    pub fn keyed(&self, pk: super::store::PartitionKey) -> super::store::Keyed {
        super::store::Keyed {
            token: self.token(&pk),
            key: pk,
        }
    }

    pub fn is_counter_table(&self) -> bool {
        self.columns.iter().any(|c| c.typ == ColumnType::Counter)
    }

    /// Re-sorts columns into `SELECT *` order and recomputes key positions.
    pub fn normalize(&mut self) {
        let rank = |c: &ColumnDef| match c.kind {
            ColumnKind::PartitionKey(p) => (0, p, String::new()),
            ColumnKind::Clustering(p) => (1, p, String::new()),
            ColumnKind::Static => (2, 0, c.name.clone()),
            ColumnKind::Regular => (3, 0, c.name.clone()),
        };
        self.columns.sort_by_key(rank);
        self.partition_key = self
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.kind, ColumnKind::PartitionKey(_)))
            .map(|(i, _)| i)
            .collect();
        self.clustering = self
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.kind, ColumnKind::Clustering(_)))
            .map(|(i, _)| i)
            .collect();
    }
}

#[derive(Debug, Clone)]
pub struct UserType {
    pub keyspace: String,
    pub name: String,
    pub fields: Vec<(String, ColumnType)>,
}

#[derive(Debug, Clone)]
pub struct KeyspaceDef {
    pub name: String,
    pub replication: Vec<(String, String)>,
    pub durable_writes: bool,
    pub types: BTreeMap<String, UserType>,
}

pub fn is_system_keyspace(name: &str) -> bool {
    matches!(
        name,
        "system"
            | "system_schema"
            | "system_auth"
            | "system_distributed"
            | "system_traces"
            | "system_virtual_schema"
    )
}

/// Resolves a written type in keyspace `ks`. Returns the type and whether it
/// was declared frozen at the top.
pub fn resolve_type(
    t: &TypeExpr,
    ks: &str,
    types: &BTreeMap<String, UserType>,
) -> Result<(ColumnType, bool), NodeError> {
    let inner = |t: &TypeExpr| resolve_type(t, ks, types).map(|(t, _)| t);
    Ok(match t {
        TypeExpr::Named(n) => (
            match ColumnType::native(n) {
                Some(t) => t,
                None => udt(types, ks, n)?,
            },
            false,
        ),
        TypeExpr::Udt(q) => {
            if q.keyspace.as_deref().is_some_and(|k| k != ks) {
                return Err(NodeError::invalid(format!(
                    "Statement on keyspace {ks} cannot refer to a user type in keyspace {}; user types can only be used in the keyspace they are defined in",
                    q.keyspace.as_deref().unwrap_or_default()
                )));
            }
            (udt(types, ks, &q.name)?, false)
        }
        TypeExpr::Generic(g, args) => {
            let arity = |n: usize| {
                if args.len() != n {
                    Err(NodeError::syntax(format!(
                        "{g}<...> takes {n} type argument(s)"
                    )))
                } else {
                    Ok(())
                }
            };
            match g.as_str() {
                "frozen" => {
                    arity(1)?;
                    return Ok((inner(&args[0])?, true));
                }
                "list" => {
                    arity(1)?;
                    (ColumnType::List(Box::new(inner(&args[0])?)), false)
                }
                "set" => {
                    arity(1)?;
                    (ColumnType::Set(Box::new(inner(&args[0])?)), false)
                }
                "map" => {
                    arity(2)?;
                    (
                        ColumnType::Map(Box::new(inner(&args[0])?), Box::new(inner(&args[1])?)),
                        false,
                    )
                }
                "tuple" => (
                    ColumnType::Tuple(args.iter().map(inner).collect::<Result<_, _>>()?),
                    true,
                ),
                other => return Err(NodeError::syntax(format!("Unknown type {other}<...>"))),
            }
        }
    })
}

fn udt(types: &BTreeMap<String, UserType>, ks: &str, name: &str) -> Result<ColumnType, NodeError> {
    let t = types
        .get(name)
        .ok_or_else(|| NodeError::invalid(format!("Unknown type {ks}.{name}")))?;
    Ok(ColumnType::Udt {
        keyspace: t.keyspace.clone(),
        name: t.name.clone(),
        fields: t.fields.clone(),
    })
}

/// The keyspace a statement names, or the session's current one.
pub fn keyspace_of<'a>(
    q: &'a QualifiedName,
    current: Option<&'a str>,
) -> Result<&'a str, NodeError> {
    match (&q.keyspace, current) {
        (Some(k), _) => Ok(k),
        (None, Some(k)) => Ok(k),
        (None, None) => Err(NodeError::invalid(
            "No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename",
        )),
    }
}
