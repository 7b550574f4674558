//! Server-side DESCRIBE, as cqlsh 6 expects it from a 4.x node: rows of
//! `keyspace_name, type, name[, create_statement]`.

use super::ast::DescribeTarget;
use super::db::Db;
use super::error::NodeError;
use super::schema::{is_system_keyspace, ColumnKind, KeyspaceDef, TableSchema, UserType};
use crate::protocol::response::ColumnSpec;
use crate::protocol::ColumnType;

pub struct DescribeRows {
    pub columns: Vec<ColumnSpec>,
    pub rows: Vec<Vec<Option<String>>>,
}

fn quote(id: &str) -> String {
    let plain = id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && id.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if plain {
        id.to_string()
    } else {
        format!("\"{}\"", id.replace('"', "\"\""))
    }
}

pub fn create_keyspace(k: &KeyspaceDef) -> String {
    let repl = k
        .replication
        .iter()
        .map(|(a, b)| format!("'{a}': '{b}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "CREATE KEYSPACE {} WITH replication = {{{repl}}}  AND durable_writes = {};",
        quote(&k.name),
        k.durable_writes
    )
}

pub fn create_type(t: &UserType) -> String {
    let fields = t
        .fields
        .iter()
        .map(|(n, ty)| format!("    {} {}", quote(n), ty.cql_name()))
        .collect::<Vec<_>>()
        .join(",\n");
    format!(
        "CREATE TYPE {}.{} (\n{fields}\n);",
        quote(&t.keyspace),
        quote(&t.name)
    )
}

pub fn create_table(s: &TableSchema) -> String {
    // A lone partition key with no clustering is written inline, as Cassandra does.
    let inline_key = s.partition_key.len() == 1 && s.clustering.is_empty();
    let mut lines: Vec<String> = s
        .columns
        .iter()
        .map(|c| {
            let st = if c.kind == ColumnKind::Static {
                " static"
            } else {
                ""
            };
            let pk = if inline_key && matches!(c.kind, ColumnKind::PartitionKey(_)) {
                " PRIMARY KEY"
            } else {
                ""
            };
            format!("    {} {}{st}{pk}", quote(&c.name), c.type_name())
        })
        .collect();
    if !inline_key {
        let pk: Vec<String> = s
            .partition_key
            .iter()
            .map(|i| quote(&s.columns[*i].name))
            .collect();
        let pk = if pk.len() == 1 {
            pk[0].clone()
        } else {
            format!("({})", pk.join(", "))
        };
        let mut key = vec![pk];
        key.extend(s.clustering.iter().map(|i| quote(&s.columns[*i].name)));
        lines.push(format!("    PRIMARY KEY ({})", key.join(", ")));
    }
    let mut with = Vec::new();
    if !s.clustering.is_empty() {
        let order: Vec<String> = s
            .clustering
            .iter()
            .enumerate()
            .map(|(p, i)| {
                format!(
                    "{} {}",
                    quote(&s.columns[*i].name),
                    if s.clustering_desc[p] { "DESC" } else { "ASC" }
                )
            })
            .collect();
        with.push(format!("CLUSTERING ORDER BY ({})", order.join(", ")));
    }
    with.push(format!(
        "comment = '{}'",
        s.options.comment.replace('\'', "''")
    ));
    with.push(format!(
        "default_time_to_live = {}",
        s.options.default_time_to_live
    ));
    format!(
        "CREATE TABLE {}.{} (\n{}\n) WITH {};",
        quote(&s.keyspace),
        quote(&s.name),
        lines.join(",\n"),
        with.join("\n    AND ")
    )
}

fn spec(name: &str) -> ColumnSpec {
    ColumnSpec {
        keyspace: "".into(),
        table: "".into(),
        name: name.into(),
        typ: ColumnType::Varchar,
    }
}

pub fn describe(
    db: &Db,
    target: &DescribeTarget,
    current: Option<&str>,
) -> Result<DescribeRows, NodeError> {
    let list_cols = || vec![spec("keyspace_name"), spec("type"), spec("name")];
    let full_cols = || {
        vec![
            spec("keyspace_name"),
            spec("type"),
            spec("name"),
            spec("create_statement"),
        ]
    };
    let s = |x: &str| Some(x.to_string());
    let keyspace = |name: &str| -> Result<&KeyspaceDef, NodeError> {
        db.keyspaces
            .get(name)
            .ok_or_else(|| NodeError::invalid(format!("'{name}' not found in keyspaces")))
    };
    let keyspace_rows = |k: &KeyspaceDef| {
        let mut rows = vec![vec![
            s(&k.name),
            s("keyspace"),
            s(&k.name),
            s(&create_keyspace(k)),
        ]];
        for t in k.types.values() {
            rows.push(vec![s(&k.name), s("type"), s(&t.name), s(&create_type(t))]);
        }
        for t in db.tables.values().filter(|t| t.schema.keyspace == k.name) {
            rows.push(vec![
                s(&k.name),
                s("table"),
                s(&t.schema.name),
                s(&create_table(&t.schema)),
            ]);
        }
        rows
    };
    Ok(match target {
        DescribeTarget::Keyspaces => DescribeRows {
            columns: list_cols(),
            rows: db
                .keyspaces
                .values()
                .map(|k| vec![s(&k.name), s("keyspace"), s(&k.name)])
                .collect(),
        },
        DescribeTarget::Tables | DescribeTarget::Types => {
            let tables = matches!(target, DescribeTarget::Tables);
            let mut rows = Vec::new();
            for k in db
                .keyspaces
                .values()
                .filter(|k| current.is_none_or(|c| c == k.name))
            {
                if tables {
                    for t in db.tables.values().filter(|t| t.schema.keyspace == k.name) {
                        rows.push(vec![s(&k.name), s("table"), s(&t.schema.name)]);
                    }
                } else {
                    for t in k.types.values() {
                        rows.push(vec![s(&k.name), s("type"), s(&t.name)]);
                    }
                }
            }
            DescribeRows {
                columns: list_cols(),
                rows,
            }
        }
        DescribeTarget::Keyspace(name) => {
            let name = name.as_deref().or(current).ok_or_else(|| {
                NodeError::invalid("No keyspace specified and no current keyspace")
            })?;
            DescribeRows {
                columns: full_cols(),
                rows: keyspace_rows(keyspace(name)?),
            }
        }
        DescribeTarget::Schema => {
            let mut rows = Vec::new();
            for k in db
                .keyspaces
                .values()
                .filter(|k| !is_system_keyspace(&k.name))
            {
                rows.extend(keyspace_rows(k));
            }
            DescribeRows {
                columns: full_cols(),
                rows,
            }
        }
        DescribeTarget::Table(q) => {
            let ks = super::schema::keyspace_of(q, current)?;
            keyspace(ks)?;
            let t = db
                .tables
                .get(&(ks.to_string(), q.name.clone()))
                .ok_or_else(|| {
                    NodeError::invalid(format!("'{}' not found in keyspace '{ks}'", q.name))
                })?;
            DescribeRows {
                columns: full_cols(),
                rows: vec![vec![
                    s(ks),
                    s("table"),
                    s(&q.name),
                    s(&create_table(&t.schema)),
                ]],
            }
        }
        DescribeTarget::Type(q) => {
            let ks = super::schema::keyspace_of(q, current)?;
            let t = keyspace(ks)?.types.get(&q.name).ok_or_else(|| {
                NodeError::invalid(format!(
                    "User defined type '{}' not found in '{ks}'",
                    q.name
                ))
            })?;
            DescribeRows {
                columns: full_cols(),
                rows: vec![vec![s(ks), s("type"), s(&q.name), s(&create_type(t))]],
            }
        }
        DescribeTarget::Cluster => DescribeRows {
            columns: vec![spec("cluster"), spec("partitioner"), spec("snitch")],
            rows: vec![vec![
                s(&db.identity.cluster_name),
                s("org.apache.cassandra.dht.Murmur3Partitioner"),
                s("org.apache.cassandra.locator.SimpleSnitch"),
            ]],
        },
    })
}
