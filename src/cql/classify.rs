//! Statement classification for routing: what a statement does (read,
//! write, schema change, USE, ...), which table it touches, and the facts a
//! dual write depends on (LWT, client timestamp, counter-style increments,
//! server-side functions). Done once per (keyspace, text) and cached; an
//! EXECUTE inherits its PREPARE's classification and never comes here.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use parking_lot::RwLock;

use super::lexer::{tokenize_spanned, LexError, Spanned, Token};
use super::tenant_key::{tenant_keys, TableKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementKind {
    /// SELECT, DESCRIBE, LIST ROLES/PERMISSIONS: answered by one cluster.
    Read,
    /// INSERT, UPDATE, DELETE, BATCH: mirrored to both clusters.
    Write,
    /// TRUNCATE: both clusters.
    Truncate,
    /// USE: both clusters, and replayed on new upstream connections.
    Use,
    /// CREATE/ALTER/DROP of schema objects: per the `ddl` setting.
    Schema,
    /// CREATE/ALTER/DROP ROLE or USER, GRANT, REVOKE: both clusters.
    Access,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    pub keyspace: Option<String>,
    pub table: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub kind: StatementKind,
    /// Tables the statement reads or writes (every child of a BATCH).
    pub tables: Vec<TableRef>,
    /// The keyspace of USE, or of a keyspace-level schema change.
    pub keyspace: Option<String>,
    /// Reads a `system*` keyspace (with the session keyspace applied): only
    /// the primary answers.
    pub system: bool,
    /// Has an `IF` condition (LWT): never retried blindly.
    pub conditional: bool,
    /// Sets its own write time (`USING TIMESTAMP`).
    pub has_timestamp: bool,
    /// Where its `USING TTL` value is, when it has one.
    pub ttl: Option<Ttl>,
    /// Has `c = c + ...` / `c = c - ...` (a counter, or a list/set/map
    /// update): no proxy timestamp is added, as counters refuse them.
    pub increments: bool,
    /// Calls to `now()`, `uuid()`, `currentTimestamp()` and friends, by
    /// byte range in the text, for replacement by proxy-computed values.
    pub server_functions: Vec<ServerFunction>,
    pub bind_markers: usize,
    /// Byte offset of each bind marker, in order.
    pub marker_offsets: Vec<usize>,
    /// Uses `:name` markers (then no hidden `?` can be added).
    pub named_markers: bool,
    /// With tenants keyed by a column: what a read or write gives that
    /// column, for each table it names.
    pub tenant_keys: Vec<TableKey>,
}

/// A write's `USING TTL` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ttl {
    /// A literal, at this byte range of the text.
    Literal { seconds: u32, span: Range<usize> },
    /// Bound at this marker (its index among the statement's markers).
    Marker(usize),
    /// Bound by name (`:ttl`), this marker among the statement's markers
    /// (a prepared statement's values come by position).
    Named { name: String, index: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFunction {
    pub name: String,
    pub span: Range<usize>,
}

const SERVER_FUNCTIONS: &[&str] = &[
    "now",
    "uuid",
    "currenttimestamp",
    "currenttimeuuid",
    "currentdate",
    "currenttime",
];

fn is_kw(t: Option<&Spanned>, kw: &str) -> bool {
    matches!(t, Some(Spanned { token: Token::Ident(w), .. }) if w == kw)
}

fn ident(t: Option<&Spanned>) -> Option<String> {
    match t.map(|s| &s.token) {
        Some(Token::Ident(w)) | Some(Token::QuotedIdent(w)) => Some(w.clone()),
        _ => None,
    }
}

fn is_sym(t: Option<&Spanned>, sym: &str) -> bool {
    matches!(t, Some(Spanned { token: Token::Sym(s), .. }) if *s == sym)
}

/// `[ks.]name` starting at `i`.
fn table_at(toks: &[Spanned], i: usize) -> Option<TableRef> {
    let first = ident(toks.get(i))?;
    if is_sym(toks.get(i + 1), ".") {
        Some(TableRef {
            keyspace: Some(first),
            table: ident(toks.get(i + 2))?,
        })
    } else {
        Some(TableRef {
            keyspace: None,
            table: first,
        })
    }
}

/// Classifies one statement; `session_keyspace` is the connection's USE.
/// The markers (`?` and `:name`) before token `i`.
fn markers_before(toks: &[Spanned], i: usize) -> usize {
    toks[..i]
        .iter()
        .filter(|t| matches!(t.token, Token::Marker | Token::NamedMarker(_)))
        .count()
}

pub fn classify(text: &str, session_keyspace: Option<&str>) -> Result<Classification, LexError> {
    classify_keyed(text, session_keyspace, None)
}

/// Classifies one statement, and with `tenant_column` finds where it gives
/// that column's value.
pub fn classify_keyed(
    text: &str,
    session_keyspace: Option<&str>,
    tenant_column: Option<&str>,
) -> Result<Classification, LexError> {
    let toks = tokenize_spanned(text)?;
    let mut c = Classification {
        kind: StatementKind::Read,
        tables: Vec::new(),
        keyspace: None,
        system: false,
        conditional: false,
        has_timestamp: false,
        ttl: None,
        increments: false,
        server_functions: Vec::new(),
        bind_markers: 0,
        marker_offsets: toks
            .iter()
            .filter(|t| matches!(t.token, Token::Marker | Token::NamedMarker(_)))
            .map(|t| t.start)
            .collect(),
        named_markers: toks
            .iter()
            .any(|t| matches!(t.token, Token::NamedMarker(_))),
        tenant_keys: Vec::new(),
    };
    c.bind_markers = c.marker_offsets.len();
    let first = match toks.first().map(|t| &t.token) {
        Some(Token::Ident(w)) => w.as_str(),
        _ => {
            return Err(LexError {
                position: 0,
                message: "no viable alternative at input: a statement must start with a keyword"
                    .into(),
            })
        }
    };
    match first {
        "select" => {
            c.kind = StatementKind::Read;
            // The first FROM at parenthesis depth 0 names the table.
            let mut depth = 0i32;
            for (i, t) in toks.iter().enumerate() {
                match &t.token {
                    Token::Sym("(") => depth += 1,
                    Token::Sym(")") => depth -= 1,
                    Token::Ident(w) if w == "from" && depth == 0 => {
                        c.tables.extend(table_at(&toks, i + 1));
                        break;
                    }
                    _ => {}
                }
            }
        }
        "describe" | "desc" => c.kind = StatementKind::Read,
        "insert" | "update" | "delete" | "begin" => {
            c.kind = StatementKind::Write;
            dml(&toks, text, &mut c);
        }
        "truncate" => {
            c.kind = StatementKind::Truncate;
            let at = if is_kw(toks.get(1), "table") { 2 } else { 1 };
            c.tables.extend(table_at(&toks, at));
        }
        "use" => {
            c.kind = StatementKind::Use;
            c.keyspace = ident(toks.get(1));
        }
        "grant" | "revoke" => c.kind = StatementKind::Access,
        "list" => {
            c.kind = StatementKind::Read;
            c.system = true;
        }
        "create" | "alter" | "drop" => {
            let mut at = 1;
            // CREATE OR REPLACE FUNCTION, CREATE CUSTOM INDEX, MATERIALIZED VIEW
            while matches!(toks.get(at).map(|t| &t.token), Some(Token::Ident(w)) if w == "or" || w == "replace" || w == "custom" || w == "materialized")
            {
                at += 1;
            }
            let object = ident(toks.get(at)).unwrap_or_default();
            if object == "role" || object == "user" {
                c.kind = StatementKind::Access;
            } else {
                c.kind = StatementKind::Schema;
                let mut name_at = at + 1;
                if is_kw(toks.get(name_at), "if") {
                    name_at += if is_kw(toks.get(name_at + 1), "not") {
                        3
                    } else {
                        2
                    };
                }
                match object.as_str() {
                    "keyspace" | "schema" => c.keyspace = ident(toks.get(name_at)),
                    "table" | "columnfamily" | "type" | "view" | "function" | "aggregate" => {
                        if let Some(t) = table_at(&toks, name_at) {
                            c.keyspace = t.keyspace.clone();
                            c.tables.push(t);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {
            return Err(LexError {
                position: 0,
                message: format!(
                    "no viable alternative at input '{}'",
                    text.split_whitespace().next().unwrap_or_default()
                ),
            })
        }
    }
    if c.kind == StatementKind::Read && !c.system {
        c.system = c.tables.iter().any(|t| {
            t.keyspace
                .as_deref()
                .or(session_keyspace)
                .is_some_and(|k| k.starts_with("system"))
        });
    }
    if let Some(column) = tenant_column {
        if matches!(c.kind, StatementKind::Read | StatementKind::Write) && !c.system {
            c.tenant_keys = tenant_keys(&toks, column);
        }
    }
    Ok(c)
}

/// INSERT / UPDATE / DELETE / BATCH details.
fn dml(toks: &[Spanned], text: &str, c: &mut Classification) {
    let mut depth = 0i32;
    for (i, t) in toks.iter().enumerate() {
        match &t.token {
            Token::Sym("(") | Token::Sym("[") | Token::Sym("{") => depth += 1,
            Token::Sym(")") | Token::Sym("]") | Token::Sym("}") => depth -= 1,
            Token::Ident(w) => match w.as_str() {
                "into" if is_kw(i.checked_sub(1).and_then(|p| toks.get(p)), "insert") => {
                    c.tables.extend(table_at(toks, i + 1))
                }
                "update" if !is_sym(toks.get(i + 1), "(") => c.tables.extend(table_at(toks, i + 1)),
                "from" if depth == 0 => c.tables.extend(table_at(toks, i + 1)),
                "if" if depth == 0 => c.conditional = true,
                "timestamp" if depth == 0 && using_clause(toks, i) => c.has_timestamp = true,
                "ttl" if depth == 0 && using_clause(toks, i) => {
                    let v = &toks[i + 1];
                    c.ttl = match &v.token {
                        Token::Int(n) => n.parse().ok().map(|seconds| Ttl::Literal {
                            seconds,
                            span: v.start..v.end,
                        }),
                        Token::Marker => Some(Ttl::Marker(markers_before(toks, i))),
                        Token::NamedMarker(name) => Some(Ttl::Named {
                            name: name.clone(),
                            index: markers_before(toks, i),
                        }),
                        _ => None,
                    };
                }
                name if SERVER_FUNCTIONS.contains(&name)
                    && is_sym(toks.get(i + 1), "(")
                    && is_sym(toks.get(i + 2), ")") =>
                {
                    c.server_functions.push(ServerFunction {
                        name: text[t.start..t.end].to_string(),
                        span: t.start..toks[i + 2].end,
                    });
                }
                _ => {}
            },
            // `x = x + ...` or `x = x - ...`
            Token::Sym("=") if depth == 0 => {
                let lhs = i.checked_sub(1).and_then(|p| ident(toks.get(p)));
                let rhs = ident(toks.get(i + 1));
                if lhs.is_some()
                    && lhs == rhs
                    && (is_sym(toks.get(i + 2), "+") || is_sym(toks.get(i + 2), "-"))
                {
                    c.increments = true;
                }
            }
            _ => {}
        }
    }
}

/// Is the TIMESTAMP (or TTL) keyword at `i` part of a `USING ...` clause
/// (and not a column of that name)?
fn using_clause(toks: &[Spanned], i: usize) -> bool {
    let prev = i.checked_sub(1).and_then(|p| toks.get(p));
    let value_follows = matches!(
        toks.get(i + 1).map(|t| &t.token),
        Some(Token::Int(_)) | Some(Token::Marker) | Some(Token::NamedMarker(_))
    );
    value_follows && (is_kw(prev, "using") || is_kw(prev, "and"))
}

/// (session keyspace, statement text)
type CacheKey = (Option<Arc<str>>, Arc<str>);

/// Classifications cached by (session keyspace, text), bounded: when full,
/// the cache starts over (a workload's statements are few and come back).
pub struct ClassificationCache {
    entries: RwLock<HashMap<CacheKey, Arc<Classification>>>,
    capacity: usize,
    tenant_column: Option<String>,
}

impl ClassificationCache {
    /// `tenant_column`: the column tenants are keyed by, if any.
    pub fn new(capacity: usize, tenant_column: Option<String>) -> ClassificationCache {
        ClassificationCache {
            entries: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
            tenant_column,
        }
    }

    pub fn classify(
        &self,
        text: &str,
        keyspace: Option<&str>,
    ) -> Result<Arc<Classification>, LexError> {
        let key = (keyspace.map(Arc::from), Arc::from(text));
        if let Some(c) = self.entries.read().get(&key) {
            return Ok(c.clone());
        }
        let c = Arc::new(classify_keyed(
            text,
            keyspace,
            self.tenant_column.as_deref(),
        )?);
        let mut entries = self.entries.write();
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(key, c.clone());
        Ok(c)
    }

    pub fn len(&self) -> usize {
        self.entries.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Classification {
    /// The keyspace the statement works in: its first table's, the one it
    /// names (USE), or else `session`'s.
    pub fn keyspace_in<'a>(&'a self, session: Option<&'a str>) -> Option<&'a str> {
        self.tables
            .first()
            .and_then(|t| t.keyspace.as_deref())
            .or(self.keyspace.as_deref())
            .or(session)
    }

    /// The text with every server-side function call replaced by `with(name)`.
    pub fn replace_functions(&self, text: &str, mut with: impl FnMut(&str) -> String) -> String {
        let mut out = String::with_capacity(text.len() + 32);
        let mut at = 0;
        for f in &self.server_functions {
            out.push_str(&text[at..f.span.start]);
            let name = f.name.to_ascii_lowercase();
            out.push_str(&with(&name));
            at = f.span.end;
        }
        out.push_str(&text[at..]);
        out
    }

    /// For a text whose function calls become `?`: each call's function name
    /// and the index its new marker takes among all markers.
    pub fn hidden_markers(&self) -> Vec<(usize, String)> {
        self.server_functions
            .iter()
            .enumerate()
            .map(|(n, f)| {
                let before = self
                    .marker_offsets
                    .iter()
                    .filter(|m| **m < f.span.start)
                    .count();
                (before + n, f.name.to_ascii_lowercase())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_calls_become_literals_or_hidden_markers() {
        let q = "INSERT INTO t (a, b, c, d) VALUES (?, now(), ?, uuid())";
        let c = k(q);
        assert_eq!(
            c.replace_functions(q, |_| "?".into()),
            "INSERT INTO t (a, b, c, d) VALUES (?, ?, ?, ?)"
        );
        assert_eq!(
            c.hidden_markers(),
            vec![(1, "now".to_string()), (3, "uuid".to_string())]
        );
        assert_eq!(
            c.replace_functions(q, |n| format!("<{n}>")),
            "INSERT INTO t (a, b, c, d) VALUES (?, <now>, ?, <uuid>)"
        );
    }

    fn k(text: &str) -> Classification {
        classify(text, None).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn t(ks: Option<&str>, table: &str) -> TableRef {
        TableRef {
            keyspace: ks.map(str::to_string),
            table: table.into(),
        }
    }

    #[test]
    fn kinds() {
        use StatementKind::*;
        for (q, kind) in [
            ("SELECT * FROM ks.t WHERE k = 1", Read),
            ("select count(*) from t", Read),
            ("DESCRIBE TABLE ks.t", Read),
            ("INSERT INTO ks.t (a) VALUES (1)", Write),
            ("UPDATE t SET a = 1 WHERE k = 2", Write),
            ("DELETE FROM t WHERE k = 2", Write),
            ("BEGIN BATCH INSERT INTO a (k) VALUES (1); APPLY BATCH", Write),
            ("TRUNCATE TABLE ks.t", Truncate),
            ("USE \"MyKs\"", Use),
            ("CREATE TABLE ks.t (k int PRIMARY KEY)", Schema),
            ("CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {}", Schema),
            ("ALTER TABLE t ADD c int", Schema),
            ("DROP INDEX ks.i", Schema),
            ("CREATE OR REPLACE FUNCTION ks.f (a int) CALLED ON NULL INPUT RETURNS int LANGUAGE java AS 'x'", Schema),
            ("CREATE ROLE app WITH PASSWORD = 'x' AND LOGIN = true", Access),
            ("GRANT SELECT ON KEYSPACE ks TO app", Access),
            ("LIST ROLES", Read),
        ] {
            assert_eq!(k(q).kind, kind, "{q}");
        }
    }

    #[test]
    fn tables_and_keyspaces() {
        assert_eq!(
            k("SELECT a, (b) FROM ks.t WHERE x IN (SELECT)").tables,
            vec![t(Some("ks"), "t")]
        );
        assert_eq!(
            k("INSERT INTO \"Ks\".\"T\" (a) VALUES (1)").tables,
            vec![t(Some("Ks"), "T")]
        );
        assert_eq!(
            k("UPDATE t USING TTL 5 SET a = 1 WHERE k = 1").tables,
            vec![t(None, "t")]
        );
        assert_eq!(
            k("BEGIN UNLOGGED BATCH INSERT INTO a.x (k) VALUES (1); DELETE FROM b.y WHERE k = 1; UPDATE z SET v = 1 WHERE k = 1; APPLY BATCH").tables,
            vec![t(Some("a"), "x"), t(Some("b"), "y"), t(None, "z")]
        );
        assert_eq!(k("USE ks").keyspace.as_deref(), Some("ks"));
        assert_eq!(
            k("CREATE TABLE IF NOT EXISTS ks.t (k int PRIMARY KEY)")
                .keyspace
                .as_deref(),
            Some("ks")
        );
        assert_eq!(
            k("DROP KEYSPACE IF EXISTS old").keyspace.as_deref(),
            Some("old")
        );
    }

    #[test]
    fn system_reads_go_to_the_primary() {
        assert!(k("SELECT * FROM system.local WHERE key = 'local'").system);
        assert!(k("SELECT * FROM system_schema.tables").system);
        assert!(
            classify("SELECT * FROM peers", Some("system"))
                .unwrap()
                .system
        );
        assert!(!classify("SELECT * FROM peers", Some("app")).unwrap().system);
        assert!(!k("SELECT * FROM app.systematic").system);
    }

    #[test]
    fn lwt_timestamps_and_increments() {
        assert!(k("INSERT INTO t (k) VALUES (1) IF NOT EXISTS").conditional);
        assert!(k("UPDATE t SET v = 1 WHERE k = 1 IF v = 0").conditional);
        assert!(k("DELETE FROM t WHERE k = 1 IF EXISTS").conditional);
        assert!(!k("INSERT INTO t (k, v) VALUES (1, 'if')").conditional);
        assert!(k("INSERT INTO t (k) VALUES (1) USING TTL 3 AND TIMESTAMP 123").has_timestamp);
        let text = "INSERT INTO t (k) VALUES (1) USING TTL 3600 AND TIMESTAMP 123";
        let Some(Ttl::Literal { seconds, span }) = k(text).ttl else {
            panic!("no literal TTL")
        };
        assert_eq!((seconds, &text[span]), (3600, "3600"));
        assert_eq!(
            k("INSERT INTO t (k, v) VALUES (?, ?) USING TIMESTAMP ? AND TTL ?").ttl,
            Some(Ttl::Marker(3))
        );
        assert_eq!(
            k("UPDATE t USING TTL ? SET v = ? WHERE k = ?").ttl,
            Some(Ttl::Marker(0))
        );
        assert_eq!(k("INSERT INTO t (k, ttl) VALUES (1, 2)").ttl, None);
        assert_eq!(
            k("UPDATE t USING TTL :t SET v = 1 WHERE k = 1").ttl,
            Some(Ttl::Named {
                name: "t".into(),
                index: 0
            })
        );
        assert_eq!(
            k("INSERT INTO t (k, v) VALUES (:k, :v) USING TTL :t").ttl,
            Some(Ttl::Named {
                name: "t".into(),
                index: 2
            })
        );
        assert!(k("UPDATE t USING TIMESTAMP ? SET v = 1 WHERE k = 1").has_timestamp);
        assert!(!k("INSERT INTO t (k, timestamp) VALUES (1, 2)").has_timestamp);
        assert!(k("UPDATE c SET n = n + 1 WHERE k = 1").increments);
        assert!(k("UPDATE c SET l = l - [1] WHERE k = 1").increments);
        assert!(!k("UPDATE c SET n = 5 WHERE k = 1").increments);
    }

    #[test]
    fn server_functions_are_located_in_the_text() {
        let q = "INSERT INTO t (k, id, at) VALUES (1, now(), currentTimestamp())";
        let c = k(q);
        let found: Vec<&str> = c
            .server_functions
            .iter()
            .map(|f| &q[f.span.clone()])
            .collect();
        assert_eq!(found, ["now()", "currentTimestamp()"]);
        assert!(
            k("SELECT now() FROM t").server_functions.is_empty(),
            "only writes are rewritten"
        );
    }

    #[test]
    fn markers_are_counted_and_garbage_is_an_error() {
        assert_eq!(
            k("SELECT * FROM t WHERE a = ? AND b IN ? LIMIT :n").bind_markers,
            3
        );
        assert!(classify("SELEKT * FROM t", None).is_err());
        assert!(classify("'just a string'", None).is_err());
        assert!(classify("SELECT 'unterminated", None).is_err());
    }

    #[test]
    fn the_cache_is_keyed_by_keyspace_and_bounded() {
        let cache = ClassificationCache::new(2, None);
        let a = cache
            .classify("SELECT * FROM peers", Some("system"))
            .unwrap();
        let b = cache.classify("SELECT * FROM peers", Some("app")).unwrap();
        assert!(a.system && !b.system);
        assert!(Arc::ptr_eq(
            &a,
            &cache
                .classify("SELECT * FROM peers", Some("system"))
                .unwrap()
        ));
        cache.classify("SELECT * FROM x", None).unwrap();
        assert!(cache.len() <= 2);
    }
}
