//! The node's database: keyspaces, tables, their data, and schema changes.
//! Every schema change gets a new schema version and refills the system
//! tables (see `system`).

use std::collections::BTreeMap;
use std::sync::Arc;

use md5::{Digest, Md5};

use super::ast::{AlterTable, ColumnDecl, CreateTable, OptionValue, QualifiedName, Statement};
use super::error::NodeError;
use super::schema::{
    is_system_keyspace, resolve_type, ColumnDef, ColumnKind, KeyspaceDef, TableOptions,
    TableSchema, UserType,
};
use super::store::TableData;
use super::system::PeerInfo;
use crate::protocol::response::SchemaChange;
use crate::protocol::ColumnType;

/// What a node says about itself in `system.local`.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub cluster_name: String,
    pub datacenter: String,
    pub rack: String,
    pub release_version: String,
    pub address: std::net::IpAddr,
    pub port: u16,
    pub host_id: [u8; 16],
    pub tokens: Vec<String>,
    pub peers: Vec<PeerInfo>,
}

pub struct Table {
    pub schema: Arc<TableSchema>,
    pub data: TableData,
}

pub struct Db {
    pub keyspaces: BTreeMap<String, KeyspaceDef>,
    pub tables: BTreeMap<(String, String), Table>,
    pub schema_version: [u8; 16],
    schema_generation: u64,
    pub identity: NodeIdentity,
}

fn table_id(ks: &str, name: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(ks.as_bytes());
    h.update(b".");
    h.update(name.as_bytes());
    let mut id: [u8; 16] = h.finalize().into();
    id[6] = (id[6] & 0x0f) | 0x30;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

impl Db {
    pub fn new(identity: NodeIdentity) -> Db {
        let mut db = Db {
            keyspaces: BTreeMap::new(),
            tables: BTreeMap::new(),
            schema_version: [0; 16],
            schema_generation: 0,
            identity,
        };
        for ks in [
            "system",
            "system_schema",
            "system_virtual_schema",
            "system_auth",
            "system_distributed",
            "system_traces",
        ] {
            db.keyspaces.insert(
                ks.into(),
                KeyspaceDef {
                    name: ks.into(),
                    replication: vec![(
                        "class".into(),
                        "org.apache.cassandra.locator.LocalStrategy".into(),
                    )],
                    durable_writes: true,
                    types: BTreeMap::new(),
                },
            );
        }
        for ddl in super::system::SYSTEM_TABLES {
            let parsed = super::parser::parse(ddl).expect("system table DDL parses");
            let Statement::CreateTable(ct) = parsed.statement else {
                unreachable!("system DDL is CREATE TABLE")
            };
            db.create_table(&ct, None)
                .expect("system table DDL is valid");
        }
        db.schema_changed();
        db
    }

    pub fn table(&self, ks: &str, name: &str) -> Result<&Table, NodeError> {
        if !self.keyspaces.contains_key(ks) {
            return Err(NodeError::invalid(format!("Keyspace {ks} does not exist")));
        }
        self.tables
            .get(&(ks.to_string(), name.to_string()))
            .ok_or_else(|| NodeError::unconfigured_table(name))
    }

    pub fn table_mut(&mut self, ks: &str, name: &str) -> Result<&mut Table, NodeError> {
        if !self.keyspaces.contains_key(ks) {
            return Err(NodeError::invalid(format!("Keyspace {ks} does not exist")));
        }
        self.tables
            .get_mut(&(ks.to_string(), name.to_string()))
            .ok_or_else(|| NodeError::unconfigured_table(name))
    }

    // ---- DDL -------------------------------------------------------------------

    pub fn create_keyspace(
        &mut self,
        name: &str,
        if_not_exists: bool,
        options: &[(String, OptionValue)],
    ) -> Result<Option<SchemaChange>, NodeError> {
        if self.keyspaces.contains_key(name) {
            if if_not_exists {
                return Ok(None);
            }
            return Err(NodeError::already_exists(
                name,
                "",
                format!("Keyspace {name} already exists"),
            ));
        }
        let (replication, durable_writes) = keyspace_options(options)?;
        self.keyspaces.insert(
            name.into(),
            KeyspaceDef {
                name: name.into(),
                replication,
                durable_writes,
                types: BTreeMap::new(),
            },
        );
        self.schema_changed();
        Ok(Some(change("CREATED", "KEYSPACE", name, "")))
    }

    pub fn alter_keyspace(
        &mut self,
        name: &str,
        options: &[(String, OptionValue)],
    ) -> Result<SchemaChange, NodeError> {
        let (replication, durable_writes) = keyspace_options(options)?;
        let ks = self.keyspaces.get_mut(name).ok_or_else(|| {
            NodeError::config(format!("Cannot alter non existing keyspace '{name}'."))
        })?;
        if !replication.is_empty() {
            ks.replication = replication;
        }
        ks.durable_writes = durable_writes;
        self.schema_changed();
        Ok(change("UPDATED", "KEYSPACE", name, ""))
    }

    pub fn drop_keyspace(
        &mut self,
        name: &str,
        if_exists: bool,
    ) -> Result<Option<SchemaChange>, NodeError> {
        if is_system_keyspace(name) {
            return Err(NodeError::unauthorized(format!(
                "{name} keyspace is not user-modifiable."
            )));
        }
        if self.keyspaces.remove(name).is_none() {
            if if_exists {
                return Ok(None);
            }
            return Err(NodeError::config(format!(
                "Cannot drop non existing keyspace '{name}'."
            )));
        }
        self.tables.retain(|(k, _), _| k != name);
        self.schema_changed();
        Ok(Some(change("DROPPED", "KEYSPACE", name, "")))
    }

    pub fn create_table(
        &mut self,
        ct: &CreateTable,
        current: Option<&str>,
    ) -> Result<Option<SchemaChange>, NodeError> {
        let ks = super::schema::keyspace_of(&ct.table, current)?.to_string();
        let name = ct.table.name.clone();
        let kdef = self
            .keyspaces
            .get(&ks)
            .ok_or_else(|| NodeError::invalid(format!("Keyspace {ks} doesn't exist")))?;
        if self.tables.contains_key(&(ks.clone(), name.clone())) {
            if ct.if_not_exists {
                return Ok(None);
            }
            return Err(NodeError::already_exists(
                &ks,
                &name,
                format!("Cannot add already existing table \"{name}\" to keyspace \"{ks}\""),
            ));
        }
        if ct.partition_key.is_empty() {
            return Err(NodeError::invalid(
                "No PRIMARY KEY specifed for table (exactly one required)",
            ));
        }
        let mut columns = Vec::new();
        for (slot, decl) in ct.columns.iter().enumerate() {
            if columns.iter().any(|c: &ColumnDef| c.name == decl.name) {
                return Err(NodeError::invalid(format!(
                    "Duplicate column '{}' declaration for table {ks}.{name}",
                    decl.name
                )));
            }
            let (typ, frozen) = resolve_type(&decl.typ, &ks, &kdef.types)?;
            let kind = if let Some(p) = ct.partition_key.iter().position(|k| *k == decl.name) {
                ColumnKind::PartitionKey(p)
            } else if let Some(p) = ct.clustering.iter().position(|k| *k == decl.name) {
                ColumnKind::Clustering(p)
            } else if decl.is_static {
                ColumnKind::Static
            } else {
                ColumnKind::Regular
            };
            if decl.is_static && ct.clustering.is_empty() {
                return Err(NodeError::invalid(format!(
                    "Static column {} cannot be defined in a table with no clustering columns",
                    decl.name
                )));
            }
            if decl.is_static
                && matches!(
                    kind,
                    ColumnKind::PartitionKey(_) | ColumnKind::Clustering(_)
                )
            {
                return Err(NodeError::invalid(format!(
                    "Static column {} cannot be part of the PRIMARY KEY",
                    decl.name
                )));
            }
            if matches!(
                kind,
                ColumnKind::PartitionKey(_) | ColumnKind::Clustering(_)
            ) && typ.is_collection()
                && !frozen
            {
                return Err(NodeError::invalid(format!(
                    "Invalid non-frozen collection type for PRIMARY KEY component {}",
                    decl.name
                )));
            }
            columns.push(ColumnDef {
                slot,
                name: decl.name.clone(),
                typ,
                frozen,
                kind,
            });
        }
        for k in ct.partition_key.iter().chain(ct.clustering.iter()) {
            if !columns.iter().any(|c| c.name == *k) {
                return Err(NodeError::invalid(format!(
                    "Unknown definition {k} referenced in PRIMARY KEY"
                )));
            }
        }
        let counters = columns
            .iter()
            .filter(|c| c.typ == ColumnType::Counter)
            .count();
        let non_key = columns.iter().filter(|c| !c.is_primary_key()).count();
        if counters > 0 && counters != non_key {
            return Err(NodeError::config(
                "Cannot mix counter and non counter columns in the same table",
            ));
        }
        let mut clustering_desc = vec![false; ct.clustering.len()];
        for (i, (col, desc)) in ct.clustering_order.iter().enumerate() {
            match ct.clustering.iter().position(|c| c == col) {
                Some(p) if p == i => clustering_desc[p] = *desc,
                _ => {
                    return Err(NodeError::invalid(
                        "CLUSTERING ORDER BY must list the clustering columns in the order they are declared",
                    ))
                }
            }
        }
        let mut options = TableOptions::default();
        apply_table_options(&mut options, &ct.options)?;
        let mut schema = TableSchema {
            keyspace: ks.clone(),
            name: name.clone(),
            id: table_id(&ks, &name),
            next_slot: columns.len(),
            columns,
            partition_key: Vec::new(),
            clustering: Vec::new(),
            clustering_desc,
            options,
        };
        schema.normalize();
        self.tables.insert(
            (ks.clone(), name.clone()),
            Table {
                schema: Arc::new(schema),
                data: TableData::default(),
            },
        );
        if !is_system_keyspace(&ks) {
            self.schema_changed();
        }
        Ok(Some(change("CREATED", "TABLE", &ks, &name)))
    }

    pub fn alter_table(
        &mut self,
        q: &QualifiedName,
        change_: &AlterTable,
        current: Option<&str>,
    ) -> Result<SchemaChange, NodeError> {
        let ks = user_keyspace(q, current)?;
        let types = self
            .keyspaces
            .get(&ks)
            .map(|k| k.types.clone())
            .unwrap_or_default();
        let table = self.table_mut(&ks, &q.name)?;
        let mut schema = (*table.schema).clone();
        match change_ {
            AlterTable::Add(cols) => {
                for ColumnDecl {
                    name,
                    typ,
                    is_static,
                } in cols
                {
                    if schema.column(name).is_some() {
                        return Err(NodeError::invalid(format!(
                            "Invalid column name {name} because it conflicts with an existing column"
                        )));
                    }
                    if *is_static && schema.clustering.is_empty() {
                        return Err(NodeError::invalid(format!(
                            "Static columns are not allowed in COMPACT STORAGE tables or tables without clustering columns ({name})"
                        )));
                    }
                    let (typ, frozen) = resolve_type(typ, &ks, &types)?;
                    let slot = schema.next_slot;
                    schema.next_slot += 1;
                    let kind = if *is_static {
                        ColumnKind::Static
                    } else {
                        ColumnKind::Regular
                    };
                    schema.columns.push(ColumnDef {
                        slot,
                        name: name.clone(),
                        typ,
                        frozen,
                        kind,
                    });
                }
            }
            AlterTable::Drop(cols) => {
                for name in cols {
                    let c = schema.column(name).ok_or_else(|| {
                        NodeError::invalid(format!(
                            "Column {name} was not found in table {}",
                            q.name
                        ))
                    })?;
                    if c.is_primary_key() {
                        return Err(NodeError::invalid(format!(
                            "Cannot drop PRIMARY KEY part {name}"
                        )));
                    }
                    schema.columns.retain(|c| c.name != *name);
                }
            }
            AlterTable::With(opts) => apply_table_options(&mut schema.options, opts)?,
        }
        schema.normalize();
        table.schema = Arc::new(schema);
        let name = q.name.clone();
        self.schema_changed();
        Ok(change("UPDATED", "TABLE", &ks, &name))
    }

    pub fn drop_table(
        &mut self,
        q: &QualifiedName,
        if_exists: bool,
        current: Option<&str>,
    ) -> Result<Option<SchemaChange>, NodeError> {
        let ks = user_keyspace(q, current)?;
        if self.tables.remove(&(ks.clone(), q.name.clone())).is_none() {
            if if_exists {
                return Ok(None);
            }
            return Err(NodeError::invalid(format!(
                "Table '{ks}.{}' doesn't exist",
                q.name
            )));
        }
        self.schema_changed();
        Ok(Some(change("DROPPED", "TABLE", &ks, &q.name)))
    }

    pub fn create_type(
        &mut self,
        q: &QualifiedName,
        if_not_exists: bool,
        fields: &[(String, super::ast::TypeExpr)],
        current: Option<&str>,
    ) -> Result<Option<SchemaChange>, NodeError> {
        let ks = super::schema::keyspace_of(q, current)?.to_string();
        let kdef = self
            .keyspaces
            .get(&ks)
            .ok_or_else(|| NodeError::invalid(format!("Keyspace {ks} doesn't exist")))?;
        if kdef.types.contains_key(&q.name) {
            if if_not_exists {
                return Ok(None);
            }
            return Err(NodeError::already_exists(
                &ks,
                &q.name,
                format!("A user type with name '{}' already exists", q.name),
            ));
        }
        let mut resolved = Vec::new();
        for (f, t) in fields {
            resolved.push((f.clone(), resolve_type(t, &ks, &kdef.types)?.0));
        }
        let kdef = self.keyspaces.get_mut(&ks).expect("checked above");
        kdef.types.insert(
            q.name.clone(),
            UserType {
                keyspace: ks.clone(),
                name: q.name.clone(),
                fields: resolved,
            },
        );
        self.schema_changed();
        Ok(Some(change("CREATED", "TYPE", &ks, &q.name)))
    }

    pub fn drop_type(
        &mut self,
        q: &QualifiedName,
        if_exists: bool,
        current: Option<&str>,
    ) -> Result<Option<SchemaChange>, NodeError> {
        let ks = super::schema::keyspace_of(q, current)?.to_string();
        let in_use = self.tables.values().any(|t| {
            t.schema.keyspace == ks
                && t.schema
                    .columns
                    .iter()
                    .any(|c| c.typ.cql_name().contains(q.name.as_str()))
        });
        let kdef = self
            .keyspaces
            .get_mut(&ks)
            .ok_or_else(|| NodeError::invalid(format!("Keyspace {ks} doesn't exist")))?;
        if !kdef.types.contains_key(&q.name) {
            if if_exists {
                return Ok(None);
            }
            return Err(NodeError::invalid(format!(
                "No user type named {} exists.",
                q.name
            )));
        }
        if in_use {
            return Err(NodeError::invalid(format!(
                "Cannot drop user type {ks}.{} as it is still used by a table",
                q.name
            )));
        }
        kdef.types.remove(&q.name);
        self.schema_changed();
        Ok(Some(change("DROPPED", "TYPE", &ks, &q.name)))
    }

    pub fn truncate(&mut self, q: &QualifiedName, current: Option<&str>) -> Result<(), NodeError> {
        let ks = user_keyspace(q, current)?;
        self.table_mut(&ks, &q.name)?.data = TableData::default();
        Ok(())
    }

    // ---- system tables -------------------------------------------------------------

    /// A new schema version, and system tables refilled to match.
    fn schema_changed(&mut self) {
        self.schema_generation += 1;
        let mut h = Md5::new();
        h.update(self.identity.host_id);
        h.update(self.schema_generation.to_be_bytes());
        for (k, t) in &self.tables {
            h.update(k.0.as_bytes());
            h.update(k.1.as_bytes());
            for c in &t.schema.columns {
                h.update(c.name.as_bytes());
                h.update(c.type_name().as_bytes());
            }
        }
        let mut v: [u8; 16] = h.finalize().into();
        v[6] = (v[6] & 0x0f) | 0x30;
        v[8] = (v[8] & 0x3f) | 0x80;
        self.schema_version = v;
        self.refresh_system_tables();
    }
}

/// The keyspace a DDL statement targets, refusing the system keyspaces.
fn user_keyspace(q: &QualifiedName, current: Option<&str>) -> Result<String, NodeError> {
    let ks = super::schema::keyspace_of(q, current)?;
    if is_system_keyspace(ks) {
        return Err(NodeError::unauthorized(format!(
            "{ks} keyspace is not user-modifiable."
        )));
    }
    Ok(ks.to_string())
}

fn change(change: &str, target: &str, ks: &str, name: &str) -> SchemaChange {
    SchemaChange {
        change: change.into(),
        target: target.into(),
        keyspace: ks.into(),
        name: name.into(),
        args: Vec::new(),
    }
}

fn keyspace_options(
    options: &[(String, OptionValue)],
) -> Result<(Vec<(String, String)>, bool), NodeError> {
    let mut replication = Vec::new();
    let mut durable = true;
    for (k, v) in options {
        match (k.as_str(), v) {
            ("replication", OptionValue::Map(m)) => {
                let class = m
                    .iter()
                    .find(|(k, _)| k == "class")
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| NodeError::config("Missing replication strategy class"))?;
                let full = match class.as_str() {
                    "SimpleStrategy" => "org.apache.cassandra.locator.SimpleStrategy".to_string(),
                    "NetworkTopologyStrategy" => {
                        "org.apache.cassandra.locator.NetworkTopologyStrategy".to_string()
                    }
                    c if c.starts_with("org.apache.cassandra.locator.") => c.to_string(),
                    c => {
                        return Err(NodeError::config(format!(
                            "Unable to find replication strategy class '{c}'"
                        )))
                    }
                };
                replication.push(("class".to_string(), full));
                for (k, v) in m {
                    if k != "class" {
                        replication.push((k.clone(), v.clone()));
                    }
                }
            }
            ("durable_writes", OptionValue::Bool(b)) => durable = *b,
            (k, _) => {
                return Err(NodeError::syntax(format!(
                    "Unknown keyspace property '{k}'"
                )))
            }
        }
    }
    Ok((replication, durable))
}

fn apply_table_options(
    o: &mut TableOptions,
    opts: &[(String, OptionValue)],
) -> Result<(), NodeError> {
    for (k, v) in opts {
        match (k.as_str(), v) {
            ("comment", OptionValue::Str(s)) => o.comment = s.clone(),
            ("default_time_to_live", OptionValue::Number(n)) => {
                o.default_time_to_live = n
                    .parse()
                    .map_err(|_| NodeError::config(format!("Invalid default_time_to_live {n}")))?
            }
            // Accepted for compatibility; they change nothing in memory.
            (
                "bloom_filter_fp_chance"
                | "caching"
                | "compaction"
                | "compression"
                | "gc_grace_seconds"
                | "speculative_retry"
                | "crc_check_chance"
                | "memtable_flush_period_in_ms"
                | "cdc"
                | "read_repair"
                | "additional_write_policy"
                | "min_index_interval"
                | "max_index_interval"
                | "extensions",
                _,
            ) => {}
            (k, _) => return Err(NodeError::syntax(format!("Unknown property '{k}'"))),
        }
    }
    Ok(())
}
