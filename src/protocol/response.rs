//! RESULT, READY, SUPPORTED, AUTHENTICATE and EVENT bodies: builders for what
//! a server sends, and readers for what the proxy must look into.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::reader::{BodyError, BodyReader};
use super::types::ColumnType;
use super::writer::{put_bytes, put_short_bytes, put_string, put_string_multimap};

pub mod result_kind {
    pub const VOID: i32 = 0x0001;
    pub const ROWS: i32 = 0x0002;
    pub const SET_KEYSPACE: i32 = 0x0003;
    pub const PREPARED: i32 = 0x0004;
    pub const SCHEMA_CHANGE: i32 = 0x0005;
}

pub mod rows_flags {
    pub const GLOBAL_TABLES_SPEC: i32 = 0x0001;
    pub const HAS_MORE_PAGES: i32 = 0x0002;
    pub const NO_METADATA: i32 = 0x0004;
    pub const METADATA_CHANGED: i32 = 0x0008;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    /// Shared by every column of a global table spec: a wire count of
    /// columns must not buy a copy of a long name each.
    pub keyspace: Arc<str>,
    pub table: Arc<str>,
    pub name: String,
    pub typ: ColumnType,
}

/// Result (or bind) metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RowsMetadata {
    pub columns: Vec<ColumnSpec>,
    pub column_count: usize,
    pub paging_state: Option<Bytes>,
    pub no_metadata: bool,
    pub new_metadata_id: Option<Bytes>,
}

impl RowsMetadata {
    pub fn new(columns: Vec<ColumnSpec>) -> RowsMetadata {
        RowsMetadata {
            column_count: columns.len(),
            columns,
            ..Default::default()
        }
    }

    pub fn write(&self, dst: &mut BytesMut) {
        let global = !self.columns.is_empty()
            && self.columns.iter().all(|c| {
                c.keyspace == self.columns[0].keyspace && c.table == self.columns[0].table
            });
        let mut flags = 0;
        if global && !self.no_metadata {
            flags |= rows_flags::GLOBAL_TABLES_SPEC;
        }
        if self.paging_state.is_some() {
            flags |= rows_flags::HAS_MORE_PAGES;
        }
        if self.no_metadata {
            flags |= rows_flags::NO_METADATA;
        }
        if self.new_metadata_id.is_some() {
            flags |= rows_flags::METADATA_CHANGED;
        }
        dst.put_i32(flags);
        dst.put_i32(self.column_count as i32);
        if let Some(p) = &self.paging_state {
            put_bytes(dst, Some(p));
        }
        if let Some(id) = &self.new_metadata_id {
            put_short_bytes(dst, id);
        }
        if self.no_metadata {
            return;
        }
        if global {
            put_string(dst, &self.columns[0].keyspace);
            put_string(dst, &self.columns[0].table);
        }
        for c in &self.columns {
            if !global {
                put_string(dst, &c.keyspace);
                put_string(dst, &c.table);
            }
            put_string(dst, &c.name);
            c.typ.write(dst);
        }
    }

    pub fn read(r: &mut BodyReader<'_>) -> Result<RowsMetadata, BodyError> {
        let flags = r.int()?;
        let count = r.int()?;
        if count < 0 {
            return Err(BodyError::Invalid {
                what: "column count",
                detail: count.to_string(),
            });
        }
        let mut m = RowsMetadata {
            column_count: count as usize,
            ..Default::default()
        };
        if flags & rows_flags::HAS_MORE_PAGES != 0 {
            m.paging_state = r.bytes()?;
        }
        if flags & rows_flags::METADATA_CHANGED != 0 {
            m.new_metadata_id = Some(r.short_bytes()?);
        }
        if flags & rows_flags::NO_METADATA != 0 {
            m.no_metadata = true;
            return Ok(m);
        }
        m.columns = read_column_specs(r, flags, count.into())?;
        Ok(m)
    }
}

/// Column specs as metadata lists them, after the flags (and, for PREPARED,
/// the partition-key indexes): the count is checked against the bytes left
/// before any spec is read.
fn read_column_specs(
    r: &mut BodyReader<'_>,
    flags: i32,
    count: i64,
) -> Result<Vec<ColumnSpec>, BodyError> {
    let global: Option<(Arc<str>, Arc<str>)> = if flags & rows_flags::GLOBAL_TABLES_SPEC != 0 {
        Some((r.string()?.into(), r.string()?.into()))
    } else {
        None
    };
    // Each spec: its name and type (2 bytes each at least), plus keyspace
    // and table when they are not global.
    let each = if global.is_some() { 4 } else { 8 };
    let count = r.fits("column count", count, each)?;
    let mut columns = Vec::with_capacity(count);
    for _ in 0..count {
        let (keyspace, table) = match &global {
            Some(g) => g.clone(),
            None => (r.string()?.into(), r.string()?.into()),
        };
        let name = r.string()?.to_string();
        let typ = ColumnType::read(r)?;
        columns.push(ColumnSpec {
            keyspace,
            table,
            name,
            typ,
        });
    }
    Ok(columns)
}

/// A ROWS result read back in full (tests, fixtures, shadow-read comparison).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rows {
    pub metadata: RowsMetadata,
    pub rows: Vec<Vec<Option<Bytes>>>,
}

/// The parts of a PREPARED result a proxy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub id: Bytes,
    pub result_metadata_id: Option<Bytes>,
    pub bind: RowsMetadata,
    pub pk_indexes: Vec<u16>,
    pub result: RowsMetadata,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaChange {
    pub change: String,
    pub target: String,
    pub keyspace: String,
    /// Table, type, function or aggregate name (empty for a keyspace).
    pub name: String,
    /// Argument types of a function or aggregate.
    pub args: Vec<String>,
}

impl SchemaChange {
    pub fn write(&self, dst: &mut BytesMut) {
        put_string(dst, &self.change);
        put_string(dst, &self.target);
        put_string(dst, &self.keyspace);
        if self.target != "KEYSPACE" {
            put_string(dst, &self.name);
        }
        if self.target == "FUNCTION" || self.target == "AGGREGATE" {
            dst.put_u16(self.args.len() as u16);
            for a in &self.args {
                put_string(dst, a);
            }
        }
    }

    fn read(r: &mut BodyReader<'_>) -> Result<SchemaChange, BodyError> {
        let change = r.string()?.to_string();
        let target = r.string()?.to_string();
        let keyspace = r.string()?.to_string();
        let name = if target != "KEYSPACE" {
            r.string()?.to_string()
        } else {
            String::new()
        };
        let args = if target == "FUNCTION" || target == "AGGREGATE" {
            r.string_list()?.into_iter().map(str::to_string).collect()
        } else {
            Vec::new()
        };
        Ok(SchemaChange {
            change,
            target,
            keyspace,
            name,
            args,
        })
    }
}

/// A RESULT body, decoded as far as its kind goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultBody {
    Void,
    Rows(Rows),
    SetKeyspace(String),
    Prepared(Prepared),
    SchemaChange(SchemaChange),
}

/// Only the kind: what the proxy checks on the hot path.
pub fn read_result_kind(body: &Bytes) -> Result<i32, BodyError> {
    BodyReader::new(body).int()
}

/// The paging state of a ROWS result that has more pages (read from its
/// first fields only).
pub fn read_paging_state(body: &Bytes) -> Option<Bytes> {
    let mut r = BodyReader::new(body);
    if r.int().ok()? != result_kind::ROWS {
        return None;
    }
    let flags = r.int().ok()?;
    r.int().ok()?;
    if flags & rows_flags::HAS_MORE_PAGES == 0 {
        return None;
    }
    r.bytes().ok()?
}

impl ResultBody {
    pub fn read(body: &Bytes, version: u8) -> Result<ResultBody, BodyError> {
        let mut r = BodyReader::new(body);
        Ok(match r.int()? {
            result_kind::VOID => ResultBody::Void,
            result_kind::ROWS => {
                let metadata = RowsMetadata::read(&mut r)?;
                // Every cell is a [bytes] of 4 bytes at least. Rows of no
                // columns would take no bytes at all, so any count of them
                // could be sent for free: no server sends such rows, and
                // they are refused rather than looped on.
                let cell_bytes = metadata.column_count.saturating_mul(4);
                let n = r.int_count("row count", cell_bytes)?;
                if n > 0 && metadata.column_count == 0 {
                    return Err(BodyError::Invalid {
                        what: "row count",
                        detail: format!("{n} rows of no columns"),
                    });
                }
                let mut rows = Vec::with_capacity(n);
                for _ in 0..n {
                    rows.push(
                        (0..metadata.column_count)
                            .map(|_| r.bytes())
                            .collect::<Result<_, _>>()?,
                    );
                }
                ResultBody::Rows(Rows { metadata, rows })
            }
            result_kind::SET_KEYSPACE => ResultBody::SetKeyspace(r.string()?.to_string()),
            result_kind::PREPARED => {
                let id = r.short_bytes()?;
                let result_metadata_id = if version >= 5 {
                    Some(r.short_bytes()?)
                } else {
                    None
                };
                let flags = r.int()?;
                let count = r.int()?;
                let mut pk_indexes = Vec::new();
                if version >= 4 {
                    let pk = r.int_count("partition key index count", 2)?;
                    pk_indexes.reserve(pk);
                    for _ in 0..pk {
                        pk_indexes.push(r.short()?);
                    }
                }
                let columns = read_column_specs(&mut r, flags, count.into())?;
                let bind = RowsMetadata::new(columns);
                let result = RowsMetadata::read(&mut r)?;
                ResultBody::Prepared(Prepared {
                    id,
                    result_metadata_id,
                    bind,
                    pk_indexes,
                    result,
                })
            }
            result_kind::SCHEMA_CHANGE => ResultBody::SchemaChange(SchemaChange::read(&mut r)?),
            k => {
                return Err(BodyError::Invalid {
                    what: "result kind",
                    detail: k.to_string(),
                })
            }
        })
    }
}

pub fn void() -> Bytes {
    Bytes::from_static(&[0, 0, 0, 1])
}

pub fn set_keyspace(ks: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(result_kind::SET_KEYSPACE);
    put_string(&mut b, ks);
    b.freeze()
}

pub fn schema_change(c: &SchemaChange) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(result_kind::SCHEMA_CHANGE);
    c.write(&mut b);
    b.freeze()
}

/// Starts a ROWS body; the caller appends `row_count` rows of `[bytes]` cells.
pub fn rows_header(meta: &RowsMetadata, row_count: usize, dst: &mut BytesMut) {
    dst.put_i32(result_kind::ROWS);
    meta.write(dst);
    dst.put_i32(row_count as i32);
}

/// A whole ROWS body from cells.
pub fn rows(meta: &RowsMetadata, rows: &[Vec<Option<Bytes>>]) -> Bytes {
    let mut b = BytesMut::new();
    rows_header(meta, rows.len(), &mut b);
    for row in rows {
        for cell in row {
            put_bytes(&mut b, cell.as_deref());
        }
    }
    b.freeze()
}

pub fn prepared(p: &Prepared, version: u8) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(result_kind::PREPARED);
    put_short_bytes(&mut b, &p.id);
    if version >= 5 {
        put_short_bytes(&mut b, p.result_metadata_id.as_deref().unwrap_or(&[]));
    }
    let cols = &p.bind.columns;
    let global = !cols.is_empty()
        && cols
            .iter()
            .all(|c| c.keyspace == cols[0].keyspace && c.table == cols[0].table);
    b.put_i32(if global {
        rows_flags::GLOBAL_TABLES_SPEC
    } else {
        0
    });
    b.put_i32(cols.len() as i32);
    if version >= 4 {
        b.put_i32(p.pk_indexes.len() as i32);
        for i in &p.pk_indexes {
            b.put_u16(*i);
        }
    }
    if global {
        put_string(&mut b, &cols[0].keyspace);
        put_string(&mut b, &cols[0].table);
    }
    for c in cols {
        if !global {
            put_string(&mut b, &c.keyspace);
            put_string(&mut b, &c.table);
        }
        put_string(&mut b, &c.name);
        c.typ.write(&mut b);
    }
    p.result.write(&mut b);
    b.freeze()
}

pub fn supported(options: &[(&str, &[&str])]) -> Bytes {
    let mut b = BytesMut::new();
    put_string_multimap(&mut b, options);
    b.freeze()
}

pub fn authenticate(class: &str) -> Bytes {
    let mut b = BytesMut::new();
    put_string(&mut b, class);
    b.freeze()
}

pub fn auth_token(token: Option<&[u8]>) -> Bytes {
    let mut b = BytesMut::new();
    put_bytes(&mut b, token);
    b.freeze()
}

pub fn schema_change_event(c: &SchemaChange) -> Bytes {
    let mut b = BytesMut::new();
    put_string(&mut b, "SCHEMA_CHANGE");
    c.write(&mut b);
    b.freeze()
}

/// EVENT: its type (`SCHEMA_CHANGE`, `TOPOLOGY_CHANGE`, `STATUS_CHANGE`).
pub fn read_event_type(body: &Bytes) -> Result<&str, BodyError> {
    BodyReader::new(body).string()
}

/// SUPPORTED: the multimap as sent.
pub fn read_supported(body: &Bytes) -> Result<Vec<(String, Vec<String>)>, BodyError> {
    Ok(BodyReader::new(body)
        .string_multimap()?
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, typ: ColumnType) -> ColumnSpec {
        ColumnSpec {
            keyspace: "ks".into(),
            table: "t".into(),
            name: name.into(),
            typ,
        }
    }

    fn rows_of_no_columns(rows: i32) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i32(result_kind::ROWS);
        b.put_i32(0); // flags
        b.put_i32(0); // columns
        b.put_i32(rows);
        b.freeze()
    }

    #[test]
    fn a_global_table_spec_is_shared_not_copied_per_column() {
        let mut b = BytesMut::new();
        b.put_i32(result_kind::ROWS);
        b.put_i32(rows_flags::GLOBAL_TABLES_SPEC);
        b.put_i32(1000);
        put_string(&mut b, &"k".repeat(60_000));
        put_string(&mut b, "t");
        for _ in 0..1000 {
            put_string(&mut b, "");
            b.put_u16(0x0009);
        }
        b.put_i32(0);
        let ResultBody::Rows(r) = ResultBody::read(&b.freeze(), 4).unwrap() else {
            panic!("not rows")
        };
        // One copy of the 60 KB name, not 1,000 (60 MB from a 64 KB body).
        assert!(r
            .metadata
            .columns
            .iter()
            .all(|c| Arc::ptr_eq(&c.keyspace, &r.metadata.columns[0].keyspace)));
    }

    #[test]
    fn a_row_count_the_body_cannot_hold_is_an_error() {
        // 16 bytes that made the proxy allocate 51 GB (and abort), and a
        // count that cost it seconds of CPU per answer.
        for n in [i32::MAX, 50_000_000, 1, -1] {
            let e = ResultBody::read(&rows_of_no_columns(n), 4).unwrap_err();
            assert!(e.to_string().contains("row count"), "{n}: {e}");
            // Nor when bytes follow that the rows would not use.
            let mut padded = BytesMut::from(&rows_of_no_columns(n)[..]);
            padded.put_slice(&[0; 64]);
            assert!(ResultBody::read(&padded.freeze(), 4).is_err(), "{n}");
        }
        assert!(ResultBody::read(&rows_of_no_columns(0), 4).is_ok());
        // Columns announced but never described (NO_METADATA) do not make
        // rows of no bytes either.
        let mut b = BytesMut::new();
        b.put_i32(result_kind::ROWS);
        b.put_i32(rows_flags::NO_METADATA);
        b.put_i32(i32::MAX);
        b.put_i32(3);
        let e = ResultBody::read(&b.freeze(), 4).unwrap_err();
        assert!(matches!(e, BodyError::CountTooLarge { .. }), "{e}");
    }

    #[test]
    fn column_and_key_counts_larger_than_the_body_are_errors() {
        let mut b = BytesMut::new();
        b.put_i32(result_kind::ROWS);
        b.put_i32(rows_flags::GLOBAL_TABLES_SPEC);
        b.put_i32(1_000_000);
        put_string(&mut b, "ks");
        put_string(&mut b, "t");
        let e = ResultBody::read(&b.freeze(), 4).unwrap_err();
        assert!(e.to_string().contains("column count of 1000000"), "{e}");
        let mut b = BytesMut::new();
        b.put_i32(result_kind::PREPARED);
        put_short_bytes(&mut b, &[1; 16]);
        b.put_i32(0);
        b.put_i32(0);
        b.put_i32(i32::MAX); // partition-key indexes
        let e = ResultBody::read(&b.freeze(), 4).unwrap_err();
        assert!(e.to_string().contains("partition key index count"), "{e}");
    }

    #[test]
    fn rows_and_prepared_round_trip() {
        let mut meta = RowsMetadata::new(vec![
            spec("k", ColumnType::Varchar),
            spec("v", ColumnType::Int),
        ]);
        meta.paging_state = Some(Bytes::from_static(b"next"));
        let body = rows(&meta, &[vec![Some(Bytes::from_static(b"a")), None]]);
        match ResultBody::read(&body, 4).unwrap() {
            ResultBody::Rows(r) => {
                assert_eq!(r.metadata, meta);
                assert_eq!(r.rows, vec![vec![Some(Bytes::from_static(b"a")), None]]);
            }
            other => panic!("{other:?}"),
        }
        for v in [3u8, 4, 5] {
            let p = Prepared {
                id: Bytes::from_static(&[1; 16]),
                result_metadata_id: if v >= 5 {
                    Some(Bytes::from_static(&[2; 16]))
                } else {
                    None
                },
                bind: RowsMetadata::new(vec![spec("k", ColumnType::Varchar)]),
                pk_indexes: if v >= 4 { vec![0] } else { vec![] },
                result: RowsMetadata::new(vec![spec("v", ColumnType::Int)]),
            };
            assert_eq!(
                ResultBody::read(&prepared(&p, v), v).unwrap(),
                ResultBody::Prepared(p)
            );
        }
    }
}
