//! How one table is read and compared: the columns selected, a scanned
//! row cut into entries (a row, a partition's static cells), what differs
//! between two entries within the tolerances, and keys and values made
//! readable.

use bytes::Bytes;

use super::options::{Tolerance, ValidateOptions};
use crate::scan::{int, quote, tenant_restriction, Column};

/// Where a cell's value, write time and TTL are in a scanned row.
#[derive(Debug, Clone)]
pub(super) struct CellAt {
    pub(super) column: Column,
    pub(super) value: usize,
    /// Selected when the cell has a single write time (not a non-frozen
    /// collection, not a counter).
    pub(super) timed: Option<(usize, usize)>,
}

/// How one table is read and compared.
pub(super) struct Plan {
    pub(super) name: String,
    pub(super) report: usize,
    pub(super) full: String,
    pub(super) restriction: Option<String>,
    /// `SELECT token(pk), keys..., cells... FROM t`.
    pub(super) select: String,
    pub(super) token: String,
    /// Partition key columns, then clustering columns.
    pub(super) keys: Vec<Column>,
    pub(super) partition_keys: usize,
    pub(super) cells: Vec<CellAt>,
    pub(super) statics: bool,
    pub(super) counter: bool,
    /// Columns a scanned row has.
    pub(super) width: usize,
}

/// A key: its token, whether it names a partition's static cells, and the
/// key columns' bytes (the partition key alone for statics).
pub(super) type Key = (i64, bool, Vec<Option<Bytes>>);

#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Cell {
    pub(super) value: Option<Bytes>,
    pub(super) writetime: Option<i64>,
    pub(super) ttl: Option<i64>,
}

/// A row (or a partition's static cells) of one side: every compared
/// cell, in plan order (the other kind's cells left empty).
pub(super) type Entry = Vec<Cell>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Missing,
    Extra,
    Differing,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Extra => "extra",
            Kind::Differing => "differing",
        }
    }
}

impl Plan {
    pub(super) fn new(
        o: &ValidateOptions,
        name: &str,
        columns: &[Column],
        report: usize,
        notes: &mut Vec<String>,
    ) -> Result<Option<Plan>, String> {
        let full = format!("{}.{}", quote(&o.keyspace), quote(name));
        let keys: Vec<Column> = columns.iter().filter(|c| c.is_key()).cloned().collect();
        let partition_keys = keys.iter().filter(|k| k.kind == "partition_key").count();
        let counter = columns.iter().any(|c| c.typ == "counter");
        let token = format!(
            "token({})",
            keys[..partition_keys]
                .iter()
                .map(|k| quote(&k.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut selectors = vec![token.clone()];
        selectors.extend(keys.iter().map(|k| quote(&k.name)));
        let mut cells = Vec::new();
        for c in columns.iter().filter(|c| !c.is_key()) {
            if o.tolerance.ignore.contains(&c.name) {
                continue;
            }
            let value = selectors.len();
            selectors.push(quote(&c.name));
            let timed = if c.multi_cell() || c.typ == "counter" {
                None
            } else {
                selectors.push(format!("WRITETIME({})", quote(&c.name)));
                selectors.push(format!("TTL({})", quote(&c.name)));
                Some((value + 1, value + 2))
            };
            cells.push(CellAt {
                column: c.clone(),
                value,
                timed,
            });
        }
        if cells.iter().any(|c| c.column.multi_cell()) {
            notes.push(
                "non-frozen collections are compared by value only (their cells carry no single write time)"
                    .into(),
            );
        }
        if counter {
            notes.push("a counter table: compared by value, never repaired".into());
        }
        let restriction = match &o.tenant {
            Some((column, value)) => match tenant_restriction(columns, column, value)? {
                Some(r) => Some(r),
                None => {
                    notes.push(format!(
                        "skipped: {column} is not in its partition key, so its rows are not one tenant's (a shared table)"
                    ));
                    return Ok(None);
                }
            },
            None => None,
        };
        let statics = cells.iter().any(|c| c.column.kind == "static");
        Ok(Some(Plan {
            name: name.to_string(),
            report,
            select: format!("SELECT {} FROM {full}", selectors.join(", ")),
            full,
            restriction,
            token,
            keys,
            partition_keys,
            cells,
            statics,
            counter,
            width: selectors.len(),
        }))
    }

    /// The entries of one scanned row: its static cells (when the table
    /// has them and the row carries any) and the row itself (unless it is
    /// a partition holding only static cells).
    pub(super) fn entries(&self, row: &[Option<Bytes>], out: &mut Vec<(Key, Entry)>) {
        let token = int(&row[0]).unwrap_or(i64::MIN);
        let keys = &row[1..1 + self.keys.len()];
        let cell = |c: &CellAt| Cell {
            value: row[c.value].clone(),
            writetime: c.timed.and_then(|(w, _)| int(&row[w])),
            ttl: c.timed.and_then(|(_, t)| int(&row[t])),
        };
        let is_static = |c: &CellAt| c.column.kind == "static";
        if self.statics
            && self
                .cells
                .iter()
                .any(|c| is_static(c) && row[c.value].is_some())
        {
            let e = self
                .cells
                .iter()
                .map(|c| {
                    if is_static(c) {
                        cell(c)
                    } else {
                        Cell::default()
                    }
                })
                .collect();
            out.push(((token, true, keys[..self.partition_keys].to_vec()), e));
        }
        if keys.iter().all(|k| k.is_some()) {
            let e = self
                .cells
                .iter()
                .map(|c| {
                    if is_static(c) {
                        Cell::default()
                    } else {
                        cell(c)
                    }
                })
                .collect();
            out.push(((token, false, keys.to_vec()), e));
        }
    }

    /// What differs between the origin's entry and the target's, beyond
    /// the tolerances; empty when they are the same.
    pub(super) fn compare(&self, t: &Tolerance, o: &Entry, x: &Entry) -> Vec<String> {
        let mut d = Vec::new();
        for ((c, a), b) in self.cells.iter().zip(o).zip(x) {
            let name = &c.column.name;
            match (&a.value, &b.value) {
                (None, None) => continue,
                (Some(_), None) => {
                    d.push(format!("{name} is null on the target"));
                    continue;
                }
                (None, Some(_)) => {
                    d.push(format!("{name} is null on the origin"));
                    continue;
                }
                (Some(va), Some(vb)) => {
                    if !same_value(&c.column.typ, va, vb, t.float_epsilon) {
                        d.push(format!(
                            "{name}: {} on the origin, {} on the target",
                            render(&c.column.typ, va),
                            render(&c.column.typ, vb)
                        ));
                        continue;
                    }
                }
            }
            if let (Some(wa), Some(wb)) = (a.writetime, b.writetime) {
                if (wa - wb).abs() > t.writetime_us {
                    d.push(format!(
                        "{name}: write time {wa} on the origin, {wb} on the target"
                    ));
                }
            }
            match (a.ttl, b.ttl) {
                (Some(ta), Some(tb)) if (ta - tb).abs() > t.ttl_s => d.push(format!(
                    "{name}: TTL {ta} s left on the origin, {tb} s on the target"
                )),
                (Some(ta), None) => d.push(format!(
                    "{name}: TTL {ta} s left on the origin, none on the target"
                )),
                (None, Some(tb)) => d.push(format!(
                    "{name}: no TTL on the origin, {tb} s left on the target"
                )),
                _ => {}
            }
        }
        d
    }

    /// `k1=..., k2=...` of a key, readable.
    pub(super) fn render_key(&self, key: &Key) -> String {
        let mut s: Vec<String> = key
            .2
            .iter()
            .zip(&self.keys)
            .map(|(v, k)| match v {
                Some(v) => format!("{}={}", k.name, render(&k.typ, v)),
                None => format!("{}=null", k.name),
            })
            .collect();
        if key.1 {
            s.push("(static cells)".into());
        }
        s.join(", ")
    }
}

pub(super) fn same_value(typ: &str, a: &Bytes, b: &Bytes, epsilon: f64) -> bool {
    if a == b {
        return true;
    }
    if epsilon <= 0.0 {
        return false;
    }
    let float = |v: &Bytes| -> Option<f64> {
        match (typ, v.len()) {
            ("float", 4) => Some(f32::from_be_bytes(<[u8; 4]>::try_from(&v[..]).ok()?) as f64),
            ("double", 8) => Some(f64::from_be_bytes(<[u8; 8]>::try_from(&v[..]).ok()?)),
            _ => None,
        }
    };
    match (float(a), float(b)) {
        (Some(x), Some(y)) => (x - y).abs() <= epsilon,
        _ => false,
    }
}

/// A value as a person reads it: text quoted, numbers, UUIDs, else hex.
pub(super) fn render(typ: &str, v: &Bytes) -> String {
    let n = |len: usize| v.len() == len;
    match typ {
        "text" | "varchar" | "ascii" => match std::str::from_utf8(v) {
            Ok(s) if s.len() <= 64 => format!("'{}'", s.replace('\'', "''")),
            Ok(s) => format!("'{}…'", s.chars().take(64).collect::<String>()),
            Err(_) => hex(v),
        },
        "int" if n(4) => i32::from_be_bytes(<[u8; 4]>::try_from(&v[..]).unwrap()).to_string(),
        "bigint" | "counter" | "timestamp" if n(8) => {
            i64::from_be_bytes(<[u8; 8]>::try_from(&v[..]).unwrap()).to_string()
        }
        "smallint" if n(2) => i16::from_be_bytes([v[0], v[1]]).to_string(),
        "tinyint" if n(1) => (v[0] as i8).to_string(),
        "boolean" if n(1) => (v[0] != 0).to_string(),
        "float" if n(4) => f32::from_be_bytes(<[u8; 4]>::try_from(&v[..]).unwrap()).to_string(),
        "double" if n(8) => f64::from_be_bytes(<[u8; 8]>::try_from(&v[..]).unwrap()).to_string(),
        "uuid" | "timeuuid" if n(16) => {
            let h: String = v.iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            )
        }
        _ => hex(v),
    }
}

pub(super) fn hex(v: &[u8]) -> String {
    let shown: String = v.iter().take(32).map(|b| format!("{b:02x}")).collect();
    format!("0x{shown}{}", if v.len() > 32 { "…" } else { "" })
}
