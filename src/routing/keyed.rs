//! Tenants keyed by a column (`[tenants] key = { column = "tenant_id" }`):
//! which tables have that column in their partition key (learned from each
//! cluster's `system_schema.columns`, and from PREPARED metadata), how a
//! bound value reads as a tenant name, and which bind markers a prepared
//! statement's PREPARED metadata confirms as the tenant's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use parking_lot::Mutex;

use crate::cql::{Classification, KeyValue, TableKey};
use crate::protocol::response::{Prepared, Rows};
use crate::protocol::ColumnType;

/// What a table is to tenant resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenancy {
    /// The column is not in its partition key: one table for all tenants,
    /// on the default route.
    Shared,
    /// Partitioned by tenant; the column's type when the proxy can read
    /// its values (text, integers, UUIDs).
    Keyed(Option<ColumnType>),
}

/// keyspace → table → tenancy.
pub type Tables = HashMap<String, HashMap<String, Tenancy>>;

/// Where a view of the tables came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// A cluster's schema, read by its control connection.
    Cluster(usize),
    /// PREPARED metadata naming the column among the partition-key markers.
    Prepared,
}

/// The tables known so far: the union of what every source says, where a
/// table keyed by tenant in any source is keyed. Read without a lock.
#[derive(Default)]
pub struct KeyedTables {
    sources: Mutex<BTreeMap<Source, Tables>>,
    view: ArcSwap<Tables>,
}

impl KeyedTables {
    /// None: a table the proxy has not seen.
    pub fn tenancy(&self, keyspace: &str, table: &str) -> Option<Tenancy> {
        self.view.load().get(keyspace)?.get(table).cloned()
    }

    /// The tables known, as `keyspace.table`, sorted: (keyed, shared).
    pub fn listing(&self) -> (Vec<String>, Vec<String>) {
        let (mut keyed, mut shared) = (Vec::new(), Vec::new());
        for (ks, tables) in self.view.load().iter() {
            for (t, tenancy) in tables {
                let name = format!("{ks}.{t}");
                match tenancy {
                    Tenancy::Keyed(_) => keyed.push(name),
                    Tenancy::Shared => shared.push(name),
                }
            }
        }
        keyed.sort();
        shared.sort();
        (keyed, shared)
    }

    /// Replaces what `source` says.
    pub fn learn(&self, source: Source, tables: Tables) {
        let mut sources = self.sources.lock();
        if sources.get(&source) == Some(&tables) {
            return;
        }
        sources.insert(source, tables);
        let mut view = Tables::new();
        for tables in sources.values() {
            for (ks, ts) in tables {
                let into = view.entry(ks.clone()).or_default();
                for (t, tenancy) in ts {
                    let keep = matches!(into.get(t), Some(Tenancy::Keyed(_)));
                    if !keep {
                        into.insert(t.clone(), tenancy.clone());
                    }
                }
            }
        }
        self.view.store(Arc::new(view));
    }

    /// Adds one keyed table, learned from PREPARED metadata.
    pub fn learn_prepared(&self, keyspace: &str, table: &str, typ: &ColumnType) {
        if matches!(self.tenancy(keyspace, table), Some(Tenancy::Keyed(_))) {
            return;
        }
        let mut tables = self
            .sources
            .lock()
            .get(&Source::Prepared)
            .cloned()
            .unwrap_or_default();
        tables
            .entry(keyspace.to_string())
            .or_default()
            .insert(table.to_string(), Tenancy::Keyed(readable(typ)));
        self.learn(Source::Prepared, tables);
    }
}

/// The type, when the proxy can render its values as tenant names.
fn readable(typ: &ColumnType) -> Option<ColumnType> {
    use ColumnType::*;
    matches!(
        typ,
        Ascii | Varchar | Int | Bigint | Smallint | Tinyint | Varint | Uuid | Timeuuid
    )
    .then(|| typ.clone())
}

/// Every user table of a `system_schema.columns` read
/// (`keyspace_name, table_name, column_name, kind, type`), and whether
/// `column` is in its partition key.
pub fn schema_tables(rows: &Rows, column: &str) -> Tables {
    let at = |name: &str| rows.metadata.columns.iter().position(|c| c.name == name);
    let (Some(ks), Some(tb), Some(col), Some(kind), Some(typ)) = (
        at("keyspace_name"),
        at("table_name"),
        at("column_name"),
        at("kind"),
        at("type"),
    ) else {
        return Tables::new();
    };
    let text = |row: &[Option<Bytes>], i: usize| {
        row.get(i)
            .cloned()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let mut tables = Tables::new();
    for row in &rows.rows {
        let keyspace = text(row, ks);
        if keyspace.starts_with("system") {
            continue;
        }
        let entry = tables
            .entry(keyspace)
            .or_default()
            .entry(text(row, tb))
            .or_insert(Tenancy::Shared);
        if text(row, col) == column && text(row, kind) == "partition_key" {
            *entry = Tenancy::Keyed(ColumnType::native(&text(row, typ)).and_then(|t| readable(&t)));
        }
    }
    tables
}

/// A bound value as a tenant name: text as it is, integers in decimal,
/// UUIDs hyphenated in lower case.
pub fn render(typ: &ColumnType, b: &[u8]) -> Option<String> {
    use ColumnType::*;
    let signed = |b: &[u8]| -> Option<String> {
        if b.is_empty() || b.len() > 16 {
            return None;
        }
        let mut n: i128 = if b[0] & 0x80 != 0 { -1 } else { 0 };
        for x in b {
            n = (n << 8) | i128::from(*x);
        }
        Some(n.to_string())
    };
    match typ {
        Ascii | Varchar => std::str::from_utf8(b).ok().map(str::to_string),
        Tinyint if b.len() == 1 => signed(b),
        Smallint if b.len() == 2 => signed(b),
        Int if b.len() == 4 => signed(b),
        Bigint if b.len() == 8 => signed(b),
        Varint => signed(b),
        Uuid | Timeuuid if b.len() == 16 => {
            let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
            Some(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            ))
        }
        _ => None,
    }
}

/// A bound list (`IN ?`) as tenant names; `typ` is the element's type or
/// the list's.
pub fn render_list(typ: &ColumnType, b: &[u8]) -> Option<Vec<String>> {
    let elem = match typ {
        ColumnType::List(e) | ColumnType::Set(e) => e,
        other => other,
    };
    let int = |b: &[u8], at: usize| -> Option<i32> {
        Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let n = int(b, 0)?;
    let mut at = 4;
    let mut out = Vec::new();
    for _ in 0..n.max(0) {
        let len = usize::try_from(int(b, at)?).ok()?;
        at += 4;
        out.push(render(elem, b.get(at..at + len)?)?);
        at += len;
    }
    Some(out)
}

/// A prepared statement's tenant markers, as confirmed by its PREPARED
/// metadata, and each marker's type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreparedKeys {
    pub keys: Vec<TableKey>,
    pub types: Vec<Option<ColumnType>>,
}

/// Checks the lexer's markers against the PREPARED bind metadata (the
/// client's view, without hidden markers). A marker counts when the
/// metadata names it for the column (`tenant_id`, `in(tenant_id)`, or its
/// `:name`); when the lexer found none that counts, the partition-key
/// indexes say which marker carries the column. Tables whose partition
/// key the metadata shows to hold the column are returned as keyed.
pub fn prepared_keys(
    c: &Classification,
    p: &Prepared,
    column: &str,
    keyspace: Option<&str>,
) -> (PreparedKeys, Vec<(String, String, ColumnType)>) {
    let specs = &p.bind.columns;
    let listed = format!("in({column})");
    let confirmed = |v: &KeyValue| match v {
        KeyValue::Literal(_) => true,
        KeyValue::Marker { index, name } => specs
            .get(*index)
            .is_some_and(|s| s.name == column || Some(&s.name) == name.as_ref()),
        KeyValue::ListMarker { index, name } => specs
            .get(*index)
            .is_some_and(|s| s.name == listed || Some(&s.name) == name.as_ref()),
    };
    let mut keys: Vec<TableKey> = c.tenant_keys.clone();
    for k in &mut keys {
        let before = k.values.len();
        k.values.retain(|v| confirmed(v));
        if k.values.len() != before {
            tracing::debug!(table = %k.table.table, "PREPARED metadata does not confirm every tenant marker the statement text shows; those are not used");
        }
    }
    // The partition-key marker the metadata names for the column.
    let pk_marker = p
        .pk_indexes
        .iter()
        .map(|i| *i as usize)
        .find(|i| specs.get(*i).is_some_and(|s| s.name == column));
    let mut keyed = Vec::new();
    if let (Some(i), [only]) = (pk_marker, keys.as_mut_slice()) {
        if only.values.is_empty() {
            only.values.push(KeyValue::Marker {
                index: i,
                name: None,
            });
        }
        let spec = &specs[i];
        let ks = only
            .table
            .keyspace
            .clone()
            .or_else(|| keyspace.map(str::to_string))
            .unwrap_or_else(|| spec.keyspace.to_string());
        keyed.push((ks, only.table.table.clone(), spec.typ.clone()));
    }
    let types = specs.iter().map(|s| Some(s.typ.clone())).collect();
    (PreparedKeys { keys, types }, keyed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::response::{ColumnSpec, RowsMetadata};

    #[test]
    fn values_render_as_names() {
        use ColumnType::*;
        assert_eq!(render(&Varchar, b"wayne").as_deref(), Some("wayne"));
        assert_eq!(
            render(&Int, &(-42i32).to_be_bytes()).as_deref(),
            Some("-42")
        );
        assert_eq!(render(&Bigint, &7i64.to_be_bytes()).as_deref(), Some("7"));
        assert_eq!(render(&Int, &[0, 1]), None, "wrong width");
        let u = [
            0x5a, 0x8e, 0x8a, 0x3e, 0x1c, 0x2d, 0x4e, 0x5f, 0x8a, 0x9b, 0x0c, 0x1d, 0x2e, 0x3f,
            0x4a, 0x5b,
        ];
        assert_eq!(
            render(&Uuid, &u).as_deref(),
            Some("5a8e8a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b")
        );
        let mut list = vec![0, 0, 0, 2, 0, 0, 0, 1, b'a', 0, 0, 0, 2];
        list.extend_from_slice(b"bc");
        assert_eq!(
            render_list(&List(Box::new(Varchar)), &list),
            Some(vec!["a".to_string(), "bc".to_string()])
        );
        assert_eq!(render_list(&Varchar, &list[..10]), None, "cut short");
    }

    #[test]
    fn a_table_keyed_anywhere_is_keyed() {
        let k = KeyedTables::default();
        let mut a = Tables::new();
        a.entry("ks".into())
            .or_default()
            .insert("t".into(), Tenancy::Shared);
        k.learn(Source::Cluster(0), a);
        assert_eq!(k.tenancy("ks", "t"), Some(Tenancy::Shared));
        k.learn_prepared("ks", "t", &ColumnType::Varchar);
        assert_eq!(
            k.tenancy("ks", "t"),
            Some(Tenancy::Keyed(Some(ColumnType::Varchar)))
        );
        assert_eq!(k.tenancy("ks", "other"), None);
    }

    fn spec(name: &str, typ: ColumnType) -> ColumnSpec {
        ColumnSpec {
            keyspace: "ks".into(),
            table: "t".into(),
            name: name.into(),
            typ,
        }
    }

    #[test]
    fn prepared_metadata_confirms_or_supplies_the_marker() {
        let c = crate::cql::classify_keyed(
            "SELECT * FROM t WHERE id = ? AND tenant_id = ?",
            Some("ks"),
            Some("tenant_id"),
        )
        .unwrap();
        let p = |names: [&str; 2], pk: Vec<u16>| Prepared {
            id: Bytes::new(),
            result_metadata_id: None,
            bind: RowsMetadata::new(vec![
                spec(names[0], ColumnType::Int),
                spec(names[1], ColumnType::Varchar),
            ]),
            pk_indexes: pk,
            result: RowsMetadata::default(),
        };
        let (keys, keyed) = prepared_keys(
            &c,
            &p(["id", "tenant_id"], vec![1, 0]),
            "tenant_id",
            Some("ks"),
        );
        let marker = KeyValue::Marker {
            index: 1,
            name: None,
        };
        assert_eq!(keys.keys[0].values, vec![marker.clone()]);
        assert_eq!(keyed, vec![("ks".into(), "t".into(), ColumnType::Varchar)]);
        // Metadata that names the marker otherwise wins.
        let (keys, keyed) = prepared_keys(&c, &p(["id", "other"], vec![]), "tenant_id", Some("ks"));
        assert!(keys.keys[0].values.is_empty());
        assert!(keyed.is_empty());
    }
}
