//! The embedded in-memory CQL node: the backend of `cutover demo`, of the
//! integration tests and of the benchmarks.
//!
//! It is a test double with real behaviour, not a database: schema, writes
//! with last-write-wins timestamps, TTLs, LWT, counters, collections, UDTs,
//! prepared statements, paging and the system tables drivers read — enough
//! that real drivers connect and run real workloads unchanged. It must not
//! grow persistence, replication or anything else a test double does not
//! need. Fault injection and inspection live behind an optional HTTP control
//! port (`control`).

mod ast;
mod control;
mod convert;
mod db;
mod describe;
mod error;
pub mod faults;
mod modify;
mod parser;
mod prepare;
mod schema;
mod select;
mod server;
mod store;
mod system;
mod value;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use md5::{Digest, Md5};
use parking_lot::RwLock;
use tokio::sync::{broadcast, watch};

pub use error::NodeError;
pub use server::{start, RunningNode};
pub use system::PeerInfo;

use self::ast::{Parsed, Statement};
use self::convert::Binds;
use self::db::{Db, NodeIdentity};
use self::faults::{Faults, StatementKind, Stats};
use self::modify::WriteCtx;
use self::select::SelectCtx;
use crate::frame::CodecConfig;
use crate::protocol::reader::RawValue;
use crate::protocol::request::{Batch, BatchStatement, Execute, Prepare, Query, QueryParams};
use crate::protocol::response::{self, ColumnSpec, Prepared, RowsMetadata, SchemaChange};
use crate::protocol::ErrorFrame;

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub listen: SocketAddr,
    /// HTTP control port for fault injection and inspection (off when None).
    pub control: Option<SocketAddr>,
    /// `PasswordAuthenticator` users; empty means no authentication.
    pub users: Vec<(String, String)>,
    pub cluster_name: String,
    pub datacenter: String,
    pub rack: String,
    pub release_version: String,
    pub codec: CodecConfig,
    /// The protocol versions this node speaks (a subset of 3, 4, 5).
    pub protocol_versions: Vec<u8>,
    /// Clients must speak TLS (with a certificate, when the configuration
    /// verifies them).
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

impl NodeConfig {
    pub fn new(listen: SocketAddr) -> NodeConfig {
        NodeConfig {
            listen,
            control: None,
            users: Vec::new(),
            cluster_name: "cutover-embedded".into(),
            datacenter: "datacenter1".into(),
            rack: "rack1".into(),
            release_version: "4.1.3".into(),
            codec: CodecConfig::default(),
            protocol_versions: vec![3, 4, 5],
            tls: None,
        }
    }
}

/// A statement prepared on this node.
pub struct PreparedStatement {
    pub text: String,
    pub keyspace: Option<String>,
    parsed: Arc<Parsed>,
    pub result_metadata_id: Bytes,
    has_result_metadata: bool,
}

/// Per-connection state the node needs to run statements.
#[derive(Debug, Clone, Default)]
pub struct SessionState {
    pub keyspace: Option<String>,
    pub version: u8,
}

const PARSE_CACHE_LIMIT: usize = 20_000;

pub struct Node {
    db: RwLock<Db>,
    prepared: RwLock<HashMap<Bytes, Arc<PreparedStatement>>>,
    parse_cache: RwLock<HashMap<String, Arc<Parsed>>>,
    events: broadcast::Sender<SchemaChange>,
    pub faults: Faults,
    pub stats: Stats,
    pub config: NodeConfig,
    /// Bumped to drop every open connection.
    kill: watch::Sender<u64>,
    down: std::sync::atomic::AtomicBool,
    next_conn: std::sync::atomic::AtomicU64,
}

/// What a request turned into.
pub enum Outcome {
    Body(Bytes),
    SetKeyspace(String, Bytes),
}

fn hash_text(ks: Option<&str>, text: &str) -> u64 {
    let mut h = Md5::new();
    if let Some(k) = ks {
        h.update(k.as_bytes());
    }
    h.update(text.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("8"))
}

use crate::protocol::prepared_id;

fn metadata_id(cols: &[ColumnSpec]) -> Bytes {
    let mut h = Md5::new();
    for c in cols {
        h.update(c.keyspace.as_bytes());
        h.update(c.table.as_bytes());
        h.update(c.name.as_bytes());
        h.update(c.typ.cql_name().as_bytes());
    }
    Bytes::copy_from_slice(&h.finalize())
}

impl Node {
    pub fn new(config: NodeConfig, bound: SocketAddr) -> Node {
        let identity = NodeIdentity {
            cluster_name: config.cluster_name.clone(),
            datacenter: config.datacenter.clone(),
            rack: config.rack.clone(),
            release_version: config.release_version.clone(),
            address: bound.ip(),
            port: bound.port(),
            host_id: system::host_id_of(bound),
            tokens: system::random_tokens(16),
            peers: Vec::new(),
        };
        Node {
            db: RwLock::new(Db::new(identity)),
            prepared: RwLock::new(HashMap::new()),
            parse_cache: RwLock::new(HashMap::new()),
            events: broadcast::channel(1024).0,
            faults: Faults::default(),
            stats: Stats::default(),
            config,
            kill: watch::channel(0).0,
            down: false.into(),
            next_conn: 1.into(),
        }
    }

    pub fn schema_version(&self) -> [u8; 16] {
        self.db.read().schema_version
    }

    /// The other nodes this node reports in `system.peers(_v2)`.
    pub fn set_peers(&self, peers: Vec<PeerInfo>) {
        self.db.write().set_peers(peers);
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<SchemaChange> {
        self.events.subscribe()
    }

    /// Drops every connection and forgets every prepared statement; data stays.
    pub fn restart(&self) {
        self.prepared.write().clear();
        self.drop_connections();
    }

    pub fn drop_connections(&self) {
        self.kill.send_modify(|g| *g += 1);
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
        if down {
            self.drop_connections();
        }
    }

    pub fn is_down(&self) -> bool {
        self.down.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn parse(&self, text: &str) -> Result<Arc<Parsed>, NodeError> {
        if let Some(p) = self.parse_cache.read().get(text) {
            return Ok(p.clone());
        }
        let p = Arc::new(parser::parse(text)?);
        let mut cache = self.parse_cache.write();
        if cache.len() >= PARSE_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(text.to_string(), p.clone());
        Ok(p)
    }

    /// The keyspace a statement works on and whether it reads or writes:
    /// what fault injection filters on.
    fn kind_of(statement: &Statement, session_ks: Option<&str>) -> (Option<String>, StatementKind) {
        let ks = |q: &ast::QualifiedName| q.keyspace.clone().or(session_ks.map(str::to_string));
        match statement {
            Statement::Select(s) => (ks(&s.table), StatementKind::Read),
            Statement::Insert(s) => (ks(&s.table), StatementKind::Write),
            Statement::Update(s) => (ks(&s.table), StatementKind::Write),
            Statement::Delete(s) => (ks(&s.table), StatementKind::Write),
            Statement::Batch(b) => (
                b.statements
                    .first()
                    .and_then(|s| Node::kind_of(s, session_ks).0),
                StatementKind::Write,
            ),
            _ => (session_ks.map(str::to_string), StatementKind::Other),
        }
    }

    /// Classifies a request for fault injection without executing it.
    pub fn inspect(
        &self,
        st: &SessionState,
        op: crate::frame::Opcode,
        body: &Bytes,
    ) -> (Option<String>, StatementKind) {
        use crate::frame::Opcode as O;
        let ks = st.keyspace.as_deref();
        match op {
            O::Query => match Query::read_text(body).ok().and_then(|t| self.parse(t).ok()) {
                Some(p) => Node::kind_of(&p.statement, ks),
                None => (None, StatementKind::Other),
            },
            O::Execute => match Execute::read_id(body)
                .ok()
                .and_then(|id| self.prepared.read().get(&id).cloned())
            {
                Some(p) => Node::kind_of(&p.parsed.statement, p.keyspace.as_deref().or(ks)),
                None => (None, StatementKind::Other),
            },
            O::Batch => match Batch::read(body, st.version) {
                Ok(b) => {
                    let first = b.children.first().and_then(|c| match &c.statement {
                        BatchStatement::Query(t) => self
                            .parse(t)
                            .ok()
                            .map(|p| Node::kind_of(&p.statement, ks).0),
                        BatchStatement::Prepared(id) => self
                            .prepared
                            .read()
                            .get(id)
                            .map(|p| Node::kind_of(&p.parsed.statement, ks).0),
                    });
                    (first.flatten(), StatementKind::Write)
                }
                Err(_) => (None, StatementKind::Other),
            },
            _ => (None, StatementKind::Other),
        }
    }

    fn run(
        &self,
        st: &SessionState,
        parsed: &Parsed,
        params: &QueryParams,
        statement_hash: u64,
        new_metadata_id: Option<Bytes>,
        skip_metadata: bool,
    ) -> Result<Outcome, NodeError> {
        let ks = st.keyspace.as_deref();
        // Named values go to the markers of the same name (a `?` marker is
        // named after its column), as Cassandra matches them.
        let by_name;
        let values: &[RawValue] = match &params.names {
            None => &params.values,
            Some(names) => {
                let meta = prepare::metadata(&self.db.read(), parsed, ks)?;
                by_name = values_by_name(&meta.binds, names, &params.values)?;
                &by_name
            }
        };
        let binds = Binds { values };
        let void = || Ok(Outcome::Body(response::void()));
        match &parsed.statement {
            Statement::Select(s) => {
                let table_ks = s.table.keyspace.as_deref().or(ks);
                if table_ks == Some("system") && s.table.name == "size_estimates" {
                    self.db.write().refresh_size_estimates();
                }
                let ctx = SelectCtx {
                    keyspace: ks,
                    binds,
                    page_size: params.page_size,
                    paging_state: params.paging_state.as_deref(),
                    skip_metadata,
                    statement_hash,
                    new_metadata_id,
                };
                Ok(Outcome::Body(select::select(&self.db.read(), s, &ctx)?))
            }
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
                let ctx = WriteCtx {
                    keyspace: ks,
                    binds,
                    default_ts: params.timestamp,
                };
                match modify::execute(&mut self.db.write(), &parsed.statement, &ctx)? {
                    Some(rows) => Ok(Outcome::Body(rows)),
                    None => void(),
                }
            }
            Statement::Batch(b) => {
                let ctx = WriteCtx {
                    keyspace: ks,
                    binds,
                    default_ts: params.timestamp,
                };
                match modify::execute_text_batch(&mut self.db.write(), b, &ctx)? {
                    Some(rows) => Ok(Outcome::Body(rows)),
                    None => void(),
                }
            }
            Statement::Use(name) => {
                if !self.db.read().keyspaces.contains_key(name) {
                    return Err(NodeError::invalid(format!(
                        "Keyspace '{name}' does not exist"
                    )));
                }
                Ok(Outcome::SetKeyspace(
                    name.clone(),
                    response::set_keyspace(name),
                ))
            }
            Statement::Describe(t) => {
                let d = describe::describe(&self.db.read(), t, ks)?;
                let meta = RowsMetadata::new(d.columns);
                let rows: Vec<Vec<Option<Bytes>>> = d
                    .rows
                    .into_iter()
                    .map(|r| r.into_iter().map(|c| c.map(Bytes::from)).collect())
                    .collect();
                Ok(Outcome::Body(response::rows(&meta, &rows)))
            }
            Statement::Truncate(q) => {
                self.db.write().truncate(q, ks)?;
                void()
            }
            ddl => {
                let change = {
                    let mut db = self.db.write();
                    match ddl {
                        Statement::CreateKeyspace {
                            name,
                            if_not_exists,
                            options,
                        } => db.create_keyspace(name, *if_not_exists, options)?,
                        Statement::AlterKeyspace { name, options } => {
                            Some(db.alter_keyspace(name, options)?)
                        }
                        Statement::DropKeyspace { name, if_exists } => {
                            db.drop_keyspace(name, *if_exists)?
                        }
                        Statement::CreateTable(ct) => {
                            if ct
                                .table
                                .keyspace
                                .as_deref()
                                .or(ks)
                                .is_some_and(schema::is_system_keyspace)
                            {
                                return Err(NodeError::unauthorized(
                                    "system keyspaces are not user-modifiable.",
                                ));
                            }
                            db.create_table(ct, ks)?
                        }
                        Statement::AlterTable { table, change } => {
                            Some(db.alter_table(table, change, ks)?)
                        }
                        Statement::DropTable { table, if_exists } => {
                            db.drop_table(table, *if_exists, ks)?
                        }
                        Statement::CreateType {
                            name,
                            if_not_exists,
                            fields,
                        } => db.create_type(name, *if_not_exists, fields, ks)?,
                        Statement::DropType { name, if_exists } => {
                            db.drop_type(name, *if_exists, ks)?
                        }
                        _ => return Err(NodeError::invalid("statement not supported")),
                    }
                };
                match change {
                    Some(c) => {
                        let _ = self.events.send(c.clone());
                        Ok(Outcome::Body(response::schema_change(&c)))
                    }
                    None => void(),
                }
            }
        }
    }

    pub fn query(&self, st: &SessionState, body: &Bytes) -> Result<Outcome, NodeError> {
        let q = Query::read(body, st.version)
            .map_err(|e| NodeError(ErrorFrame::protocol(e.to_string())))?;
        let parsed = self.parse(&q.text)?;
        if parsed.marker_names.len() != q.params.values.len() && !q.params.values.is_empty() {
            return Err(NodeError::invalid(format!(
                "There were {} markers(?) in CQL but {} bound variables",
                parsed.marker_names.len(),
                q.params.values.len()
            )));
        }
        if !parsed.marker_names.is_empty() && q.params.values.is_empty() {
            return Err(NodeError::invalid(format!(
                "Invalid amount of bind variables: expected {}, received 0",
                parsed.marker_names.len()
            )));
        }
        let mut st = st.clone();
        if let Some(k) = &q.params.keyspace {
            st.keyspace = Some(k.clone());
        }
        let hash = hash_text(st.keyspace.as_deref(), &q.text);
        self.run(&st, &parsed, &q.params, hash, None, false)
    }

    pub fn prepare(&self, st: &SessionState, body: &Bytes) -> Result<Bytes, NodeError> {
        let p = Prepare::read(body, st.version)
            .map_err(|e| NodeError(ErrorFrame::protocol(e.to_string())))?;
        let ks = p.keyspace.clone().or_else(|| st.keyspace.clone());
        let parsed = self.parse(&p.text)?;
        let meta = prepare::metadata(&self.db.read(), &parsed, ks.as_deref())?;
        let id = Bytes::copy_from_slice(&prepared_id(ks.as_deref(), &p.text));
        let result_metadata_id = metadata_id(&meta.result);
        self.prepared.write().insert(
            id.clone(),
            Arc::new(PreparedStatement {
                text: p.text.clone(),
                keyspace: ks.clone(),
                parsed,
                result_metadata_id: result_metadata_id.clone(),
                has_result_metadata: meta.has_result_metadata,
            }),
        );
        let mut result = RowsMetadata::new(meta.result);
        result.no_metadata = !meta.has_result_metadata;
        let prepared = Prepared {
            id,
            result_metadata_id: Some(result_metadata_id),
            bind: RowsMetadata::new(meta.binds),
            pk_indexes: meta.pk_indexes,
            result,
        };
        Ok(response::prepared(&prepared, st.version))
    }

    fn lookup(&self, id: &Bytes) -> Result<Arc<PreparedStatement>, NodeError> {
        self.prepared
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| NodeError(ErrorFrame::unprepared(id.clone())))
    }

    pub fn execute(&self, st: &SessionState, body: &Bytes) -> Result<Outcome, NodeError> {
        let e = Execute::read(body, st.version)
            .map_err(|e| NodeError(ErrorFrame::protocol(e.to_string())))?;
        let p = self.lookup(&e.id)?;
        if e.params.values.len() != p.parsed.marker_names.len() {
            return Err(NodeError::invalid(format!(
                "There were {} markers(?) in CQL but {} bound variables",
                p.parsed.marker_names.len(),
                e.params.values.len()
            )));
        }
        // Statements prepared with a keyspace run in it, whatever USE says now.
        let st = SessionState {
            keyspace: p.keyspace.clone().or_else(|| st.keyspace.clone()),
            version: st.version,
        };
        let changed = match &e.result_metadata_id {
            Some(id) if p.has_result_metadata && *id != p.result_metadata_id => {
                Some(p.result_metadata_id.clone())
            }
            _ => None,
        };
        let skip = e.params.flags & crate::protocol::request::query_flags::SKIP_METADATA != 0;
        let hash = hash_text(p.keyspace.as_deref(), &p.text);
        self.run(&st, &p.parsed, &e.params, hash, changed, skip)
    }

    pub fn batch(&self, st: &SessionState, body: &Bytes) -> Result<Outcome, NodeError> {
        let b = Batch::read(body, st.version)
            .map_err(|e| NodeError(ErrorFrame::protocol(e.to_string())))?;
        let session_ks = b.keyspace.clone().or_else(|| st.keyspace.clone());
        let mut statements: Vec<(Arc<Parsed>, Option<String>, &Vec<RawValue>)> =
            Vec::with_capacity(b.children.len());
        for c in &b.children {
            let (parsed, ks) = match &c.statement {
                BatchStatement::Query(t) => (self.parse(t)?, session_ks.clone()),
                BatchStatement::Prepared(id) => {
                    let p = self.lookup(id)?;
                    (
                        p.parsed.clone(),
                        p.keyspace.clone().or_else(|| session_ks.clone()),
                    )
                }
            };
            if parsed.marker_names.len() != c.values.len() {
                return Err(NodeError::invalid(format!(
                    "There were {} markers(?) in CQL but {} bound variables",
                    parsed.marker_names.len(),
                    c.values.len()
                )));
            }
            statements.push((parsed, ks, &c.values));
        }
        let children: Vec<(Statement, WriteCtx<'_>)> = statements
            .iter()
            .map(|(p, ks, values)| {
                (
                    p.statement.clone(),
                    WriteCtx {
                        keyspace: ks.as_deref(),
                        binds: Binds { values },
                        default_ts: b.timestamp,
                    },
                )
            })
            .collect();
        match modify::execute_batch(&mut self.db.write(), &children, b.kind, None)? {
            Some(rows) => Ok(Outcome::Body(rows)),
            None => Ok(Outcome::Body(response::void())),
        }
    }

    fn next_connection_id(&self) -> u64 {
        self.next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

/// `values`, sent with `names`, in the order of the statement's markers.
fn values_by_name(
    binds: &[crate::protocol::response::ColumnSpec],
    names: &[String],
    values: &[RawValue],
) -> Result<Vec<RawValue>, NodeError> {
    binds
        .iter()
        .map(|b| {
            names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(&b.name))
                .and_then(|i| values.get(i).cloned())
                .ok_or_else(|| {
                    NodeError::invalid(format!("Missing value for named bind variable {}", b.name))
                })
        })
        .collect()
}
