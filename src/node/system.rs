//! The system tables of the embedded node: `system.local`, `system.peers`,
//! `system.peers_v2`, `system_schema.*` and `system_virtual_schema.*`. They
//! are ordinary tables (created from CQL when the node starts) that this
//! module refills after every schema change, so every query a driver sends
//! them goes through the same SELECT path as user tables.

use md5::{Digest, Md5};

use super::db::Db;
use super::schema::{ColumnKind, KeyspaceDef, TableSchema};
use super::store::{now_micros, Cell, KeyPart, Liveness, Partition, TableData};
use super::value::Value;
use std::sync::Arc;

/// Another node this node reports in `system.peers` / `system.peers_v2`.
/// In-memory nodes share no data: peers exist so that drivers and the proxy
/// can discover a multi-node topology.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: std::net::SocketAddr,
    pub datacenter: String,
    pub rack: String,
}

pub(super) const SYSTEM_TABLES: &[&str] = &[
    "CREATE TABLE system.local (key text PRIMARY KEY, bootstrapped text, broadcast_address inet, broadcast_port int, cluster_name text, cql_version text, data_center text, gossip_generation int, host_id uuid, listen_address inet, listen_port int, native_protocol_version text, partitioner text, rack text, release_version text, rpc_address inet, rpc_port int, schema_version uuid, tokens set<text>, truncated_at map<uuid, blob>)",
    "CREATE TABLE system.peers (peer inet PRIMARY KEY, data_center text, host_id uuid, preferred_ip inet, rack text, release_version text, rpc_address inet, schema_version uuid, tokens set<text>)",
    "CREATE TABLE system.peers_v2 (peer inet, peer_port int, data_center text, host_id uuid, native_address inet, native_port int, preferred_ip inet, preferred_port int, rack text, release_version text, schema_version uuid, tokens set<text>, PRIMARY KEY ((peer), peer_port))",
    "CREATE TABLE system.size_estimates (keyspace_name text, table_name text, range_start text, range_end text, mean_partition_size bigint, partitions_count bigint, PRIMARY KEY ((keyspace_name), table_name, range_start, range_end))",
    "CREATE TABLE system_schema.keyspaces (keyspace_name text PRIMARY KEY, durable_writes boolean, replication frozen<map<text, text>>)",
    "CREATE TABLE system_schema.tables (keyspace_name text, table_name text, additional_write_policy text, bloom_filter_fp_chance double, caching frozen<map<text, text>>, cdc boolean, comment text, compaction frozen<map<text, text>>, compression frozen<map<text, text>>, crc_check_chance double, dclocal_read_repair_chance double, default_time_to_live int, extensions frozen<map<text, blob>>, flags frozen<set<text>>, gc_grace_seconds int, id uuid, max_index_interval int, memtable_flush_period_in_ms int, min_index_interval int, read_repair text, read_repair_chance double, speculative_retry text, PRIMARY KEY (keyspace_name, table_name))",
    "CREATE TABLE system_schema.columns (keyspace_name text, table_name text, column_name text, clustering_order text, column_name_bytes blob, kind text, position int, type text, PRIMARY KEY (keyspace_name, table_name, column_name))",
    "CREATE TABLE system_schema.types (keyspace_name text, type_name text, field_names frozen<list<text>>, field_types frozen<list<text>>, PRIMARY KEY (keyspace_name, type_name))",
    "CREATE TABLE system_schema.functions (keyspace_name text, function_name text, argument_types frozen<list<text>>, argument_names frozen<list<text>>, body text, called_on_null_input boolean, language text, return_type text, PRIMARY KEY (keyspace_name, function_name, argument_types))",
    "CREATE TABLE system_schema.aggregates (keyspace_name text, aggregate_name text, argument_types frozen<list<text>>, final_func text, initcond text, return_type text, state_func text, state_type text, PRIMARY KEY (keyspace_name, aggregate_name, argument_types))",
    "CREATE TABLE system_schema.triggers (keyspace_name text, table_name text, trigger_name text, options frozen<map<text, text>>, PRIMARY KEY (keyspace_name, table_name, trigger_name))",
    "CREATE TABLE system_schema.indexes (keyspace_name text, table_name text, index_name text, kind text, options frozen<map<text, text>>, PRIMARY KEY (keyspace_name, table_name, index_name))",
    "CREATE TABLE system_schema.views (keyspace_name text, view_name text, base_table_id uuid, base_table_name text, include_all_columns boolean, where_clause text, PRIMARY KEY (keyspace_name, view_name))",
    "CREATE TABLE system_virtual_schema.keyspaces (keyspace_name text PRIMARY KEY)",
    "CREATE TABLE system_virtual_schema.tables (keyspace_name text, table_name text, comment text, PRIMARY KEY (keyspace_name, table_name))",
    "CREATE TABLE system_virtual_schema.columns (keyspace_name text, table_name text, column_name text, clustering_order text, column_name_bytes blob, kind text, position int, type text, PRIMARY KEY (keyspace_name, table_name, column_name))",
];

pub(super) fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

pub(super) fn text_map(m: &[(String, String)]) -> Value {
    Value::Map(super::value::normalize_map(
        m.iter().map(|(k, v)| (text(k), text(v))).collect(),
    ))
}

impl Db {
    fn put(&mut self, ks: &str, table: &str, values: Vec<(&str, Option<Value>)>) {
        let Some(t) = self.tables.get_mut(&(ks.to_string(), table.to_string())) else {
            return;
        };
        let schema = t.schema.clone();
        let lookup = |n: &str| {
            values
                .iter()
                .find(|(c, _)| *c == n)
                .and_then(|(_, v)| v.clone())
        };
        let pk: Vec<Value> = schema
            .partition_key
            .iter()
            .map(|i| lookup(&schema.columns[*i].name).unwrap_or(Value::Text(String::new())))
            .collect();
        let ck: Vec<KeyPart> = schema
            .clustering
            .iter()
            .enumerate()
            .map(|(p, i)| KeyPart {
                value: lookup(&schema.columns[*i].name).unwrap_or(Value::Text(String::new())),
                desc: schema.clustering_desc[p],
            })
            .collect();
        let ts = now_micros();
        let part = t
            .data
            .partitions
            .entry(schema.keyed(pk))
            .or_insert_with(Partition::default);
        let row = if ck.is_empty() && schema.clustering.is_empty() {
            part.rows.entry(Vec::new()).or_default()
        } else {
            part.rows.entry(ck).or_default()
        };
        row.mark(Liveness { ts, expires: None });
        for c in &schema.columns {
            if c.is_primary_key() {
                continue;
            }
            if let Some(v) = lookup(&c.name) {
                row.write(
                    c.slot,
                    Cell {
                        value: Some(v),
                        ts,
                        expires: None,
                    },
                    super::store::NO_DELETION,
                );
            }
        }
    }

    /// Replaces the peers this node reports.
    /// `system.size_estimates` as this node's data stands: one row per user
    /// table and local range (the ranges between this node's tokens, the
    /// one that wraps split at the ring's minimum, as Cassandra records
    /// them), with the partitions in that range and a mean partition size
    /// estimated from its cells (16 bytes a cell, plus the key). Cassandra
    /// refreshes these every few minutes; the node refreshes them whenever
    /// they are read.
    pub fn refresh_size_estimates(&mut self) {
        let mut tokens: Vec<i64> = self
            .identity
            .tokens
            .iter()
            .filter_map(|t| t.parse().ok())
            .collect();
        tokens.sort_unstable();
        tokens.dedup();
        // (start, end]: each range ends at one of the tokens; the wrapping
        // one is (last, MIN] and (MIN, first].
        let mut ranges: Vec<(i64, i64)> = tokens.windows(2).map(|w| (w[0], w[1])).collect();
        match (tokens.first(), tokens.last()) {
            (Some(&first), Some(&last)) => {
                ranges.push((last, i64::MIN));
                ranges.push((i64::MIN, first));
            }
            _ => ranges.push((i64::MIN, i64::MIN)),
        }
        let mut rows = Vec::new();
        for ((ks, name), t) in &self.tables {
            if super::schema::is_system_keyspace(ks) {
                continue;
            }
            for &(start, end) in &ranges {
                // An end of MIN is the ring's end (MAX); no partition has MIN.
                let last = if end == i64::MIN { i64::MAX } else { end };
                let (mut partitions, mut bytes) = (0i64, 0i64);
                for (k, p) in t
                    .data
                    .partitions
                    .range(
                        super::store::Keyed {
                            token: start,
                            key: Vec::new(),
                        }..,
                    )
                    .skip_while(|(k, _)| k.token == start)
                    .take_while(|(k, _)| k.token <= last)
                {
                    partitions += 1;
                    let cells: usize = p
                        .rows
                        .values()
                        .map(|r| r.cells.iter().flatten().count())
                        .sum::<usize>()
                        + p.statics.cells.iter().flatten().count();
                    bytes += 16 * (cells as i64 + k.key.len() as i64);
                }
                rows.push((ks.clone(), name.clone(), start, end, partitions, bytes));
            }
        }
        if let Some(t) = self
            .tables
            .get_mut(&("system".to_string(), "size_estimates".to_string()))
        {
            t.data = TableData::default();
        }
        for (ks, name, start, end, partitions, bytes) in rows {
            self.put(
                "system",
                "size_estimates",
                vec![
                    ("keyspace_name", Some(text(&ks))),
                    ("table_name", Some(text(&name))),
                    ("range_start", Some(text(&start.to_string()))),
                    ("range_end", Some(text(&end.to_string()))),
                    (
                        "mean_partition_size",
                        Some(Value::Int(if partitions > 0 {
                            bytes / partitions
                        } else {
                            0
                        })),
                    ),
                    ("partitions_count", Some(Value::Int(partitions))),
                ],
            );
        }
    }

    pub fn set_peers(&mut self, peers: Vec<PeerInfo>) {
        self.identity.peers = peers;
        self.refresh_system_tables();
    }

    pub(super) fn refresh_system_tables(&mut self) {
        for t in ["peers", "peers_v2"] {
            if let Some(t) = self.tables.get_mut(&("system".to_string(), t.to_string())) {
                t.data = TableData::default();
            }
        }
        for p in self.identity.peers.clone() {
            let ip = Value::Inet(match p.addr.ip() {
                std::net::IpAddr::V4(a) => a.octets().to_vec(),
                std::net::IpAddr::V6(a) => a.octets().to_vec(),
            });
            let host_id = host_id_of(p.addr);
            // Peers report this node's schema version: in-memory nodes share
            // no schema, and drivers would otherwise wait for agreement.
            let common = vec![
                ("data_center", Some(text(&p.datacenter))),
                ("rack", Some(text(&p.rack))),
                ("host_id", Some(Value::Uuid(host_id))),
                (
                    "release_version",
                    Some(text(&self.identity.release_version)),
                ),
                ("schema_version", Some(Value::Uuid(self.schema_version))),
                (
                    "tokens",
                    Some(Value::Set(vec![text(&rand::random::<i64>().to_string())])),
                ),
            ];
            let mut v1 = common.clone();
            v1.extend([
                ("peer", Some(ip.clone())),
                ("rpc_address", Some(ip.clone())),
                ("preferred_ip", Some(ip.clone())),
            ]);
            self.put("system", "peers", v1);
            let mut v2 = common;
            let port = Value::Int(p.addr.port() as i64);
            v2.extend([
                ("peer", Some(ip.clone())),
                ("peer_port", Some(Value::Int(7000))),
                ("native_address", Some(ip.clone())),
                ("native_port", Some(port)),
                ("preferred_ip", Some(ip)),
                ("preferred_port", Some(Value::Int(7000))),
            ]);
            self.put("system", "peers_v2", v2);
        }
        for t in ["keyspaces", "tables", "columns", "types"] {
            if let Some(t) = self
                .tables
                .get_mut(&("system_schema".to_string(), t.to_string()))
            {
                t.data = TableData::default();
            }
        }
        let id = self.identity.clone();
        let version = Value::Uuid(self.schema_version);
        let tokens = Value::Set({
            let mut t: Vec<Value> = id.tokens.iter().map(|s| text(s)).collect();
            t.sort();
            t
        });
        let addr = Value::Inet(match id.address {
            std::net::IpAddr::V4(a) => a.octets().to_vec(),
            std::net::IpAddr::V6(a) => a.octets().to_vec(),
        });
        self.put(
            "system",
            "local",
            vec![
                ("key", Some(text("local"))),
                ("bootstrapped", Some(text("COMPLETED"))),
                ("broadcast_address", Some(addr.clone())),
                ("broadcast_port", Some(Value::Int(7000))),
                ("cluster_name", Some(text(&id.cluster_name))),
                ("cql_version", Some(text("3.4.5"))),
                ("data_center", Some(text(&id.datacenter))),
                ("gossip_generation", Some(Value::Int(1))),
                ("host_id", Some(Value::Uuid(id.host_id))),
                ("listen_address", Some(addr.clone())),
                ("listen_port", Some(Value::Int(7000))),
                ("native_protocol_version", Some(text("5"))),
                (
                    "partitioner",
                    Some(text("org.apache.cassandra.dht.Murmur3Partitioner")),
                ),
                ("rack", Some(text(&id.rack))),
                ("release_version", Some(text(&id.release_version))),
                ("rpc_address", Some(addr)),
                ("rpc_port", Some(Value::Int(id.port as i64))),
                ("schema_version", Some(version)),
                ("tokens", Some(tokens)),
            ],
        );
        let keyspaces: Vec<KeyspaceDef> = self.keyspaces.values().cloned().collect();
        for k in &keyspaces {
            if k.name == "system_virtual_schema" {
                continue;
            }
            self.put(
                "system_schema",
                "keyspaces",
                vec![
                    ("keyspace_name", Some(text(&k.name))),
                    ("durable_writes", Some(Value::Bool(k.durable_writes))),
                    ("replication", Some(text_map(&k.replication))),
                ],
            );
            for t in k.types.values() {
                self.put(
                    "system_schema",
                    "types",
                    vec![
                        ("keyspace_name", Some(text(&k.name))),
                        ("type_name", Some(text(&t.name))),
                        (
                            "field_names",
                            Some(Value::List(t.fields.iter().map(|(n, _)| text(n)).collect())),
                        ),
                        (
                            "field_types",
                            Some(Value::List(
                                t.fields
                                    .iter()
                                    .map(|(_, ty)| text(&ty.cql_name()))
                                    .collect(),
                            )),
                        ),
                    ],
                );
            }
        }
        let schemas: Vec<Arc<TableSchema>> = self
            .tables
            .values()
            .filter(|t| t.schema.keyspace != "system_virtual_schema")
            .map(|t| t.schema.clone())
            .collect();
        let map = |pairs: &[(&str, &str)]| {
            text_map(
                &pairs
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        for s in schemas {
            // Every CQL table is "compound"; "dense" is for COMPACT STORAGE only.
            let flags = vec![text("compound")];
            self.put(
                "system_schema",
                "tables",
                vec![
                    ("keyspace_name", Some(text(&s.keyspace))),
                    ("table_name", Some(text(&s.name))),
                    ("additional_write_policy", Some(text("99p"))),
                    ("bloom_filter_fp_chance", Some(Value::Double(0.01))),
                    (
                        "caching",
                        Some(map(&[("keys", "ALL"), ("rows_per_partition", "NONE")])),
                    ),
                    ("cdc", Some(Value::Bool(false))),
                    ("comment", Some(text(&s.options.comment))),
                    (
                        "compaction",
                        Some(map(&[
                            (
                                "class",
                                "org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy",
                            ),
                            ("max_threshold", "32"),
                            ("min_threshold", "4"),
                        ])),
                    ),
                    (
                        "compression",
                        Some(map(&[
                            ("chunk_length_in_kb", "16"),
                            ("class", "org.apache.cassandra.io.compress.LZ4Compressor"),
                        ])),
                    ),
                    ("crc_check_chance", Some(Value::Double(1.0))),
                    ("dclocal_read_repair_chance", Some(Value::Double(0.0))),
                    (
                        "default_time_to_live",
                        Some(Value::Int(s.options.default_time_to_live as i64)),
                    ),
                    ("extensions", Some(Value::Map(Vec::new()))),
                    ("flags", Some(Value::Set(flags))),
                    ("gc_grace_seconds", Some(Value::Int(864000))),
                    ("id", Some(Value::Uuid(s.id))),
                    ("max_index_interval", Some(Value::Int(2048))),
                    ("memtable_flush_period_in_ms", Some(Value::Int(0))),
                    ("min_index_interval", Some(Value::Int(128))),
                    ("read_repair", Some(text("BLOCKING"))),
                    ("read_repair_chance", Some(Value::Double(0.0))),
                    ("speculative_retry", Some(text("99p"))),
                ],
            );
            for c in &s.columns {
                let order = match c.kind {
                    ColumnKind::Clustering(p) => {
                        if s.clustering_desc[p] {
                            "desc"
                        } else {
                            "asc"
                        }
                    }
                    _ => "none",
                };
                self.put(
                    "system_schema",
                    "columns",
                    vec![
                        ("keyspace_name", Some(text(&s.keyspace))),
                        ("table_name", Some(text(&s.name))),
                        ("column_name", Some(text(&c.name))),
                        ("clustering_order", Some(text(order))),
                        (
                            "column_name_bytes",
                            Some(Value::Blob(c.name.as_bytes().to_vec())),
                        ),
                        ("kind", Some(text(c.kind.name()))),
                        ("position", Some(Value::Int(c.kind.position() as i64))),
                        ("type", Some(text(&c.type_name()))),
                    ],
                );
            }
        }
    }
}

/// Random tokens for a node, as strings (Murmur3 range).
pub fn random_tokens(n: usize) -> Vec<String> {
    (0..n).map(|_| rand::random::<i64>().to_string()).collect()
}

/// A node's host id, derived from its address so that what a node says of
/// itself and what its peers say of it agree.
pub fn host_id_of(addr: std::net::SocketAddr) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(b"cutover-node:");
    h.update(addr.to_string().as_bytes());
    let mut id: [u8; 16] = h.finalize().into();
    id[6] = (id[6] & 0x0f) | 0x30;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}
