//! Which tenant a request belongs to, by the configured key:
//! - `{ keyspace = "REGEX" }`: the regex's first capture of the keyspace,
//!   or the whole keyspace when the regex has none; resolved once per
//!   keyspace and cached, so a request costs one hash lookup;
//! - `{ column = "NAME" }`: that column's value, from a literal in the text
//!   or the value bound at the marker the lexer (and, for prepared
//!   statements, the PREPARED metadata) found for it, in each table whose
//!   partition key holds the column.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use regex::Regex;

use super::keyed::{render, render_list, KeyedTables, Tenancy};
use crate::config::TenantKey;
use crate::cql::{Classification, KeyValue, TableKey};
use crate::metrics::Metrics;
use crate::protocol::bound::BoundValues;
use crate::protocol::reader::RawValue;
use crate::protocol::ColumnType;

/// Keyspaces (or tenant values) remembered. When full the cache starts
/// over, so it follows the tenants that are busy now.
const CACHE_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub name: Arc<str>,
    /// Its latency series, when listed under `[metrics] tenants`.
    pub metrics: Option<u16>,
}

enum Key {
    None,
    Keyspace(Regex),
    Column(String),
}

/// Where a request's bound values are.
pub enum Values<'a> {
    /// Decoded already (a BATCH child's).
    Decoded {
        values: &'a [RawValue],
        /// Present when the values were sent with names.
        names: Option<&'a [String]>,
    },
    /// Read where they lie in a QUERY or EXECUTE body.
    InPlace(BoundValues<'a>),
}

/// The values a request binds, to read the tenant column's from.
pub struct Bound<'a> {
    pub values: Values<'a>,
    /// Each marker's type, from PREPARED metadata (EXECUTE); otherwise
    /// the table's column type is used.
    pub types: &'a [Option<ColumnType>],
}

impl Bound<'_> {
    /// The value at marker `index`. Values sent by name are found by the
    /// marker's name, or else the column's (`in(column)` for `IN ?`).
    fn value(
        &self,
        index: usize,
        marker: Option<&str>,
        column: &str,
        list: bool,
    ) -> Option<RawValue> {
        let by_name = |n: &str| match marker {
            Some(m) => n == m,
            None if list => n.strip_prefix("in(").and_then(|r| r.strip_suffix(')')) == Some(column),
            None => n == column,
        };
        match &self.values {
            Values::Decoded { values, names } => {
                let at = match names {
                    None => index,
                    Some(names) => names.iter().position(|n| by_name(n))?,
                };
                values.get(at).cloned()
            }
            Values::InPlace(v) => v.find(index, by_name),
        }
    }
}

/// The tenants a request names (most name one; the first is kept apart so
/// that one costs no allocation), and a tenant-keyed table it names without
/// a tenant the proxy can read.
#[derive(Debug, Default, PartialEq)]
pub struct Resolved {
    pub first: Option<Tenant>,
    pub others: Vec<Tenant>,
    pub unnamed: Option<String>,
}

impl Resolved {
    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> + Clone {
        self.first.iter().chain(&self.others)
    }

    /// Each tenant's name.
    pub fn names(&self) -> impl Iterator<Item = Option<&str>> + Clone {
        self.tenants().map(|t| Some(&*t.name))
    }

    fn add(&mut self, t: Tenant) {
        if self.tenants().any(|x| *x == t) {
            return;
        }
        match self.first {
            None => self.first = Some(t),
            Some(_) => self.others.push(t),
        }
    }
}

pub struct TenantResolver {
    key: Key,
    cache: RwLock<HashMap<String, Option<Tenant>>>,
    metrics: Arc<Metrics>,
    /// With a column key: which tables are keyed by it.
    pub keyed: KeyedTables,
}

/// The control connections tell which of a cluster's tables are keyed by
/// the tenant column.
impl crate::upstream::SchemaWatch for TenantResolver {
    fn column(&self) -> Option<&str> {
        TenantResolver::column(self)
    }

    fn columns(&self, cluster: usize, rows: &crate::protocol::response::Rows) {
        let Some(column) = TenantResolver::column(self) else {
            return;
        };
        let tables = super::keyed::schema_tables(rows, column);
        for (ks, ts) in &tables {
            for (t, tenancy) in ts {
                if *tenancy == Tenancy::Keyed(None) {
                    tracing::warn!(keyspace = %ks, table = %t, column, "the tenant column's type is not one the proxy reads (text, ascii, the integers, varint, uuid, timeuuid): writes to this table are refused");
                }
            }
        }
        self.keyed
            .learn(super::keyed::Source::Cluster(cluster), tables);
    }
}

impl TenantResolver {
    /// `key` is validated by the config: a keyspace regex that compiles.
    pub fn new(key: &TenantKey, metrics: Arc<Metrics>) -> TenantResolver {
        let key = match key {
            TenantKey::Keyspace { keyspace } => {
                Regex::new(keyspace).map_or(Key::None, Key::Keyspace)
            }
            TenantKey::Column { column } => Key::Column(column.clone()),
            TenantKey::Named(_) => Key::None,
        };
        TenantResolver {
            key,
            cache: RwLock::new(HashMap::new()),
            metrics,
            keyed: KeyedTables::default(),
        }
    }

    /// The tenant column, when tenants are keyed by one.
    pub fn column(&self) -> Option<&str> {
        match &self.key {
            Key::Column(c) => Some(c),
            _ => None,
        }
    }

    /// Does resolving `keys` need the request's bound values?
    pub fn needs_values(&self, keys: &[TableKey]) -> bool {
        self.column().is_some()
            && keys
                .iter()
                .flat_map(|k| &k.values)
                .any(|v| !matches!(v, KeyValue::Literal(_)))
    }

    /// The tenant of a keyspace (keyspace key only).
    pub fn of_keyspace(&self, keyspace: Option<&str>) -> Option<Tenant> {
        let Key::Keyspace(pattern) = &self.key else {
            return None;
        };
        let ks = keyspace?;
        if let Some(t) = self.cache.read().get(ks) {
            return t.clone();
        }
        let tenant = pattern.captures(ks).map(|c| {
            let name = c.get(1).or_else(|| c.get(0)).map_or(ks, |m| m.as_str());
            self.tenant(name)
        });
        self.remember(ks, tenant.clone());
        tenant
    }

    fn tenant(&self, name: &str) -> Tenant {
        Tenant {
            name: Arc::from(name),
            metrics: self.metrics.tenant_index(name),
        }
    }

    fn remember(&self, key: &str, tenant: Option<Tenant>) {
        let mut cache = self.cache.write();
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key.to_string(), tenant);
    }

    /// The tenant named by a column value.
    fn named(&self, value: &str) -> Tenant {
        if let Some(Some(t)) = self.cache.read().get(value) {
            return t.clone();
        }
        let t = self.tenant(value);
        self.remember(value, Some(t.clone()));
        t
    }

    /// The tenants a statement names. `keyspace` is the session's (or the
    /// prepared statement's); `keys` the statement's tenant keys (the
    /// classification's, or a prepared statement's confirmed ones).
    pub fn resolve(
        &self,
        c: &Classification,
        keys: &[TableKey],
        keyspace: Option<&str>,
        bound: Option<&Bound<'_>>,
    ) -> Resolved {
        let column = match &self.key {
            Key::None => return Resolved::default(),
            Key::Keyspace(_) => {
                return Resolved {
                    first: self.of_keyspace(c.keyspace_in(keyspace)),
                    ..Default::default()
                }
            }
            Key::Column(column) => column,
        };
        let mut out = Resolved::default();
        for k in keys {
            let ks = k.table.keyspace.as_deref().or(keyspace).unwrap_or_default();
            let tenancy = self.keyed.tenancy(ks, &k.table.table);
            let table_type = match &tenancy {
                Some(Tenancy::Shared) => continue,
                Some(Tenancy::Keyed(t)) => t.as_ref(),
                None => None,
            };
            // All of a table's values are read, or none counts.
            let mut found = Resolved::default();
            let read = !k.values.is_empty()
                && k.values.iter().all(|v| {
                    self.value_tenants(v, column, table_type, bound, &mut found)
                        .is_some()
                });
            if read {
                found
                    .first
                    .into_iter()
                    .chain(found.others)
                    .for_each(|t| out.add(t));
            } else if matches!(tenancy, Some(Tenancy::Keyed(_))) && out.unnamed.is_none() {
                out.unnamed = Some(format!("{ks}.{}", k.table.table));
            }
        }
        out
    }

    /// The tenants one value names, added to `out`.
    fn value_tenants(
        &self,
        v: &KeyValue,
        column: &str,
        table_type: Option<&ColumnType>,
        bound: Option<&Bound<'_>>,
        out: &mut Resolved,
    ) -> Option<()> {
        let (index, name, list) = match v {
            KeyValue::Literal(s) => {
                out.add(self.named(s));
                return Some(());
            }
            KeyValue::Marker { index, name } => (*index, name.as_deref(), false),
            KeyValue::ListMarker { index, name } => (*index, name.as_deref(), true),
        };
        let b = bound?;
        let Some(RawValue::Bytes(bytes)) = b.value(index, name, column, list) else {
            return None;
        };
        let typ = b.types.get(index).and_then(Option::as_ref).or(table_type)?;
        if list {
            for n in render_list(typ, &bytes)? {
                out.add(self.named(&n));
            }
        } else {
            out.add(self.named(&render(typ, &bytes)?));
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricsOptions;

    fn resolver(key: TenantKey) -> TenantResolver {
        let opts = MetricsOptions {
            tenants: vec!["wayne".into()],
            ..Default::default()
        };
        TenantResolver::new(&key, Arc::new(Metrics::new(opts, &[])))
    }

    #[test]
    fn the_first_capture_names_the_tenant() {
        let r = resolver(TenantKey::Keyspace {
            keyspace: "^t_(.*)$".into(),
        });
        let t = r.of_keyspace(Some("t_wayne")).unwrap();
        assert_eq!(&*t.name, "wayne");
        assert_eq!(t.metrics, Some(0));
        let other = r.of_keyspace(Some("t_stark")).unwrap();
        assert_eq!((&*other.name, other.metrics), ("stark", None));
        assert_eq!(r.of_keyspace(Some("shared")), None);
        assert_eq!(r.of_keyspace(None), None);
        // Cached answers are the same answers.
        assert_eq!(r.of_keyspace(Some("t_wayne")).unwrap(), t);
    }

    #[test]
    fn without_a_capture_the_keyspace_is_the_tenant() {
        let r = resolver(TenantKey::Keyspace {
            keyspace: "^wayne$".into(),
        });
        assert_eq!(&*r.of_keyspace(Some("wayne")).unwrap().name, "wayne");
        let none = resolver(TenantKey::default());
        assert_eq!(none.of_keyspace(Some("wayne")), None);
    }

    fn column_resolver() -> TenantResolver {
        let r = resolver(TenantKey::Column {
            column: "tenant_id".into(),
        });
        let mut tables = crate::routing::keyed::Tables::new();
        let ks = tables.entry("app".into()).or_default();
        ks.insert("orders".into(), Tenancy::Keyed(Some(ColumnType::Varchar)));
        ks.insert("shared".into(), Tenancy::Shared);
        r.keyed
            .learn(crate::routing::keyed::Source::Cluster(0), tables);
        r
    }

    fn names(r: &Resolved) -> Vec<&str> {
        r.tenants().map(|t| &*t.name).collect()
    }

    fn resolve(r: &TenantResolver, text: &str, bound: Option<&Bound<'_>>) -> Resolved {
        let c = crate::cql::classify_keyed(text, Some("app"), r.column()).unwrap();
        r.resolve(&c, &c.tenant_keys, Some("app"), bound)
    }

    #[test]
    fn a_column_names_the_tenant_by_literal_or_bound_value() {
        let r = column_resolver();
        let got = resolve(&r, "SELECT * FROM orders WHERE tenant_id = 'wayne'", None);
        assert_eq!(names(&got), ["wayne"]);
        assert_eq!(got.first.unwrap().metrics, Some(0));
        let values = [
            RawValue::Bytes(bytes::Bytes::from_static(b"id")),
            RawValue::Bytes(bytes::Bytes::from_static(b"stark")),
        ];
        let bound = Bound {
            values: Values::Decoded {
                values: &values,
                names: None,
            },
            types: &[],
        };
        let text = "INSERT INTO orders (id, tenant_id) VALUES (?, ?)";
        assert_eq!(names(&resolve(&r, text, Some(&bound))), ["stark"]);
        // Named values are found by the column's name.
        let named = ["tenant_id".to_string(), "id".to_string()];
        let bound = Bound {
            values: Values::Decoded {
                values: &values[..],
                names: Some(&named),
            },
            types: &[],
        };
        assert_eq!(names(&resolve(&r, text, Some(&bound))), ["id"]);
    }

    #[test]
    fn a_keyed_table_without_a_readable_tenant_is_unnamed() {
        let r = column_resolver();
        let got = resolve(&r, "UPDATE orders SET v = 1 WHERE tenant_id = f(1)", None);
        assert_eq!(got.unnamed.as_deref(), Some("app.orders"));
        // A marker without a value to read: unnamed too.
        let got = resolve(&r, "DELETE FROM orders WHERE tenant_id = ?", None);
        assert_eq!(got.unnamed.as_deref(), Some("app.orders"));
        // A shared table, and a table not seen yet, name nobody.
        let got = resolve(&r, "INSERT INTO shared (tenant_id) VALUES ('x')", None);
        assert_eq!(got, Resolved::default());
        let got = resolve(&r, "SELECT * FROM unseen", None);
        assert_eq!(got, Resolved::default());
        let got = resolve(&r, "SELECT * FROM unseen WHERE tenant_id = 'x'", None);
        assert_eq!(names(&got), ["x"]);
    }

    #[test]
    fn the_name_cache_stays_bounded_and_follows_new_names() {
        let r = column_resolver();
        for i in 0..CACHE_ENTRIES + 5 {
            let got = resolve(
                &r,
                &format!("SELECT * FROM orders WHERE tenant_id = 't{i}'"),
                None,
            );
            assert_eq!(names(&got), [format!("t{i}").as_str()]);
        }
        let cache = r.cache.read();
        assert!(cache.len() <= CACHE_ENTRIES);
        assert!(cache.contains_key(&format!("t{}", CACHE_ENTRIES + 4)));
    }

    #[test]
    fn an_in_list_names_each_tenant_once() {
        let r = column_resolver();
        let got = resolve(
            &r,
            "SELECT * FROM orders WHERE tenant_id IN ('a', 'b', 'a')",
            None,
        );
        assert_eq!(names(&got), ["a", "b"]);
        let mut list = vec![0, 0, 0, 2, 0, 0, 0, 1, b'c', 0, 0, 0, 1, b'a'];
        let values = [RawValue::Bytes(bytes::Bytes::from(std::mem::take(
            &mut list,
        )))];
        let types = [Some(ColumnType::List(Box::new(ColumnType::Varchar)))];
        let bound = Bound {
            values: Values::Decoded {
                values: &values,
                names: None,
            },
            types: &types,
        };
        let got = resolve(
            &r,
            "SELECT * FROM orders WHERE tenant_id IN ?",
            Some(&bound),
        );
        assert_eq!(names(&got), ["c", "a"]);
    }
}
