//! Readers for request bodies (what a client sends) and builders for the
//! requests this code base sends itself (tests, benchmarks, upstream legs).

use bytes::{BufMut, Bytes, BytesMut};

use super::reader::{BodyError, BodyReader, RawValue};
use super::writer::{put_bytes, put_long_string, put_short_bytes, put_string, put_string_map};
use crate::frame::Compression;

pub mod query_flags {
    pub const VALUES: u32 = 0x01;
    pub const SKIP_METADATA: u32 = 0x02;
    pub const PAGE_SIZE: u32 = 0x04;
    pub const PAGING_STATE: u32 = 0x08;
    pub const SERIAL_CONSISTENCY: u32 = 0x10;
    pub const DEFAULT_TIMESTAMP: u32 = 0x20;
    pub const NAMES_FOR_VALUES: u32 = 0x40;
    pub const KEYSPACE: u32 = 0x80;
    pub const NOW_IN_SECONDS: u32 = 0x100;
}

/// STARTUP options in the order they were sent.
pub fn read_startup(body: &Bytes) -> Result<Vec<(String, String)>, BodyError> {
    Ok(BodyReader::new(body)
        .string_map()?
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

pub fn build_startup(options: &[(&str, &str)]) -> Bytes {
    let mut b = BytesMut::new();
    put_string_map(&mut b, options);
    b.freeze()
}

/// The compression a STARTUP asks for, or the message to refuse it with.
/// Snappy is not part of v5 (which compresses whole segments, LZ4 only).
pub fn negotiate_compression(
    options: &[(String, String)],
    version: u8,
) -> Result<Option<Compression>, String> {
    let mut chosen = None;
    for (k, v) in options {
        if k.eq_ignore_ascii_case("COMPRESSION") {
            match Compression::from_option(v) {
                Some(c) if !(c == Compression::Snappy && version >= 5) => chosen = Some(c),
                _ => return Err(format!("Unknown compression algorithm: {v}")),
            }
        }
    }
    Ok(chosen)
}

/// An AUTH_RESPONSE body carrying a SASL PLAIN token.
pub fn sasl_plain(user: &str, password: &str) -> Bytes {
    let mut token = BytesMut::with_capacity(2 + user.len() + password.len());
    token.put_u8(0);
    token.put_slice(user.as_bytes());
    token.put_u8(0);
    token.put_slice(password.as_bytes());
    let mut body = BytesMut::new();
    put_bytes(&mut body, Some(&token));
    body.freeze()
}

/// User and password from an AUTH_RESPONSE with a SASL PLAIN token
/// (`[authzid] NUL user NUL password`).
pub fn read_sasl_plain(body: &Bytes) -> Result<(String, String), String> {
    let token = read_auth_response(body)
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let parts: Vec<&[u8]> = token.split(|b| *b == 0).collect();
    match parts.as_slice() {
        [_, user, pass] => Ok((
            String::from_utf8_lossy(user).into_owned(),
            String::from_utf8_lossy(pass).into_owned(),
        )),
        _ => Err("Authentication failed: malformed SASL PLAIN token".into()),
    }
}

/// REGISTER: the event types asked for.
pub fn read_register(body: &Bytes) -> Result<Vec<String>, BodyError> {
    Ok(BodyReader::new(body)
        .string_list()?
        .into_iter()
        .map(str::to_string)
        .collect())
}

/// AUTH_RESPONSE: the SASL token.
pub fn read_auth_response(body: &Bytes) -> Result<Option<Bytes>, BodyError> {
    BodyReader::new(body).bytes()
}

/// The `<query_parameters>` shared by QUERY and EXECUTE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryParams {
    pub consistency: u16,
    pub flags: u32,
    pub values: Vec<RawValue>,
    /// Present when the values were sent with names.
    pub names: Option<Vec<String>>,
    pub page_size: Option<i32>,
    pub paging_state: Option<Bytes>,
    pub serial_consistency: Option<u16>,
    pub timestamp: Option<i64>,
    pub keyspace: Option<String>,
    pub now_in_seconds: Option<i32>,
}

impl QueryParams {
    pub fn read(r: &mut BodyReader<'_>, version: u8) -> Result<QueryParams, BodyError> {
        use query_flags::*;
        let consistency = r.short()?;
        let flags = read_flags(r, version)?;
        let mut p = QueryParams {
            consistency,
            flags,
            ..Default::default()
        };
        if flags & VALUES != 0 {
            let named = flags & NAMES_FOR_VALUES != 0;
            // A value is an [int] length at least; a named one adds a [string].
            let n = r.short_count("value count", if named { 6 } else { 4 })?;
            p.values.reserve(n);
            let mut names = Vec::new();
            for _ in 0..n {
                if named {
                    names.push(r.string()?.to_string());
                }
                p.values.push(r.value()?);
            }
            if named {
                p.names = Some(names);
            }
        }
        if flags & PAGE_SIZE != 0 {
            p.page_size = Some(r.int()?);
        }
        if flags & PAGING_STATE != 0 {
            p.paging_state = r.bytes()?;
        }
        if flags & SERIAL_CONSISTENCY != 0 {
            p.serial_consistency = Some(r.short()?);
        }
        if flags & DEFAULT_TIMESTAMP != 0 {
            p.timestamp = Some(r.long()?);
        }
        if version >= 5 && flags & KEYSPACE != 0 {
            p.keyspace = Some(r.string()?.to_string());
        }
        if version >= 5 && flags & NOW_IN_SECONDS != 0 {
            p.now_in_seconds = Some(r.int()?);
        }
        Ok(p)
    }

    pub fn write(&self, dst: &mut BytesMut, version: u8) {
        use query_flags::*;
        let mut flags = self.flags & (SKIP_METADATA);
        if !self.values.is_empty() {
            flags |= VALUES;
        }
        if self.names.is_some() {
            flags |= NAMES_FOR_VALUES;
        }
        if self.page_size.is_some() {
            flags |= PAGE_SIZE;
        }
        if self.paging_state.is_some() {
            flags |= PAGING_STATE;
        }
        let tail = self.tail();
        flags |= tail.flags(version);
        dst.put_u16(self.consistency);
        if version >= 5 {
            dst.put_u32(flags);
        } else {
            dst.put_u8(flags as u8);
        }
        if flags & VALUES != 0 {
            dst.put_u16(self.values.len() as u16);
            for (i, v) in self.values.iter().enumerate() {
                if let Some(names) = &self.names {
                    put_string(dst, &names[i]);
                }
                write_value(dst, v);
            }
        }
        if let Some(n) = self.page_size {
            dst.put_i32(n);
        }
        if let Some(s) = &self.paging_state {
            put_bytes(dst, Some(s));
        }
        tail.write(dst, version);
    }

    fn tail(&self) -> Tail<'_> {
        Tail {
            serial_consistency: self.serial_consistency,
            timestamp: self.timestamp,
            keyspace: self.keyspace.as_deref(),
            now_in_seconds: self.now_in_seconds,
        }
    }
}

/// The optional fields that end both the query parameters and a BATCH, in
/// wire order; keyspace and now-in-seconds exist from v5 on.
struct Tail<'a> {
    serial_consistency: Option<u16>,
    timestamp: Option<i64>,
    keyspace: Option<&'a str>,
    now_in_seconds: Option<i32>,
}

impl Tail<'_> {
    fn flags(&self, version: u8) -> u32 {
        use query_flags::*;
        let mut flags = 0;
        if self.serial_consistency.is_some() {
            flags |= SERIAL_CONSISTENCY;
        }
        if self.timestamp.is_some() {
            flags |= DEFAULT_TIMESTAMP;
        }
        if version >= 5 && self.keyspace.is_some() {
            flags |= KEYSPACE;
        }
        if version >= 5 && self.now_in_seconds.is_some() {
            flags |= NOW_IN_SECONDS;
        }
        flags
    }

    fn write(&self, dst: &mut BytesMut, version: u8) {
        if let Some(s) = self.serial_consistency {
            dst.put_u16(s);
        }
        if let Some(t) = self.timestamp {
            dst.put_i64(t);
        }
        if version >= 5 {
            if let Some(k) = self.keyspace {
                put_string(dst, k);
            }
            if let Some(n) = self.now_in_seconds {
                dst.put_i32(n);
            }
        }
    }
}

/// The flags of `<query_parameters>`: a byte before v5, an int from v5.
pub(super) fn read_flags(r: &mut BodyReader<'_>, version: u8) -> Result<u32, BodyError> {
    Ok(if version >= 5 {
        r.int()? as u32
    } else {
        r.byte()? as u32
    })
}

/// `body` with the write timestamp `ts` inserted, its parameters read by
/// `r` (placed at the consistency): the DEFAULT_TIMESTAMP flag set and the
/// 8 bytes put where the protocol has them (after the serial consistency;
/// in v5 before the keyspace and now_in_seconds). One copy of the body, no
/// decoding of its values. A body that already has a timestamp is returned
/// as it is.
fn insert_timestamp(
    body: &Bytes,
    mut r: BodyReader<'_>,
    version: u8,
    ts: i64,
) -> Result<Bytes, BodyError> {
    use query_flags::*;
    r.short()?;
    let flags_at = r.position();
    let flags = read_flags(&mut r, version)?;
    if flags & DEFAULT_TIMESTAMP != 0 {
        return Ok(body.clone());
    }
    let flags_end = r.position();
    if flags & VALUES != 0 {
        let named = flags & NAMES_FOR_VALUES != 0;
        let n = r.short_count("value count", if named { 6 } else { 4 })?;
        for _ in 0..n {
            if named {
                r.string()?;
            }
            r.value()?;
        }
    }
    if flags & PAGE_SIZE != 0 {
        r.int()?;
    }
    if flags & PAGING_STATE != 0 {
        r.bytes()?;
    }
    if flags & SERIAL_CONSISTENCY != 0 {
        r.short()?;
    }
    let at = r.position();
    let mut b = BytesMut::with_capacity(body.len() + 8);
    b.extend_from_slice(&body[..flags_at]);
    if version >= 5 {
        b.put_u32(flags | DEFAULT_TIMESTAMP);
    } else {
        b.put_u8((flags | DEFAULT_TIMESTAMP) as u8);
    }
    b.extend_from_slice(&body[flags_end..at]);
    b.put_i64(ts);
    b.extend_from_slice(&body[at..]);
    Ok(b.freeze())
}

pub fn write_value(dst: &mut BytesMut, v: &RawValue) {
    match v {
        RawValue::Null => dst.put_i32(-1),
        RawValue::Unset => dst.put_i32(-2),
        RawValue::Bytes(b) => put_bytes(dst, Some(b)),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub text: String,
    pub params: QueryParams,
}

impl Query {
    pub fn read(body: &Bytes, version: u8) -> Result<Query, BodyError> {
        let mut r = BodyReader::new(body);
        let text = r.long_string()?.to_string();
        Ok(Query {
            text,
            params: QueryParams::read(&mut r, version)?,
        })
    }

    /// Only the query-parameter flags (to see whether a write carries its
    /// own timestamp without decoding its values).
    pub fn read_flags(body: &Bytes, version: u8) -> Result<u32, BodyError> {
        let mut r = BodyReader::new(body);
        r.long_string()?;
        r.short()?;
        read_flags(&mut r, version)
    }

    /// The body with write timestamp `ts` inserted (see `insert_timestamp`).
    pub fn with_timestamp(body: &Bytes, version: u8, ts: i64) -> Result<Bytes, BodyError> {
        let mut r = BodyReader::new(body);
        r.long_string()?;
        insert_timestamp(body, r, version, ts)
    }

    /// Only the text, for the proxy's classification (no parameter decoding).
    pub fn read_text(body: &Bytes) -> Result<&str, BodyError> {
        // Safe to borrow: the reader borrows `body` for the returned lifetime.
        let mut r = BodyReader::new(body);
        r.long_string()
    }

    pub fn encode(&self, version: u8) -> Bytes {
        let mut b = BytesMut::with_capacity(self.text.len() + 32);
        put_long_string(&mut b, &self.text);
        self.params.write(&mut b, version);
        b.freeze()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepare {
    pub text: String,
    pub keyspace: Option<String>,
}

impl Prepare {
    pub fn read(body: &Bytes, version: u8) -> Result<Prepare, BodyError> {
        let mut r = BodyReader::new(body);
        let text = r.long_string()?.to_string();
        let mut keyspace = None;
        if version >= 5 && r.remaining() >= 4 {
            let flags = r.int()?;
            if flags & 0x01 != 0 {
                keyspace = Some(r.string()?.to_string());
            }
        }
        Ok(Prepare { text, keyspace })
    }

    pub fn encode(&self, version: u8) -> Bytes {
        let mut b = BytesMut::new();
        put_long_string(&mut b, &self.text);
        if version >= 5 {
            match &self.keyspace {
                Some(k) => {
                    b.put_i32(1);
                    put_string(&mut b, k);
                }
                None => b.put_i32(0),
            }
        }
        b.freeze()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execute {
    pub id: Bytes,
    /// v5 only.
    pub result_metadata_id: Option<Bytes>,
    pub params: QueryParams,
}

impl Execute {
    /// The body with its prepared id replaced by `id`: the same bytes when
    /// the id is already that one (the same text hashes alike on every
    /// node).
    pub fn with_id(body: &Bytes, id: &[u8]) -> Result<Bytes, BodyError> {
        let mut r = BodyReader::new(body);
        if r.short_bytes()? == id {
            return Ok(body.clone());
        }
        let rest = r.rest();
        let mut b = bytes::BytesMut::with_capacity(body.len() + id.len());
        crate::protocol::writer::put_short_bytes(&mut b, id);
        bytes::BufMut::put_slice(&mut b, &rest);
        Ok(b.freeze())
    }

    pub fn read(body: &Bytes, version: u8) -> Result<Execute, BodyError> {
        let mut r = BodyReader::new(body);
        let id = r.short_bytes()?;
        let result_metadata_id = if version >= 5 {
            Some(r.short_bytes()?)
        } else {
            None
        };
        Ok(Execute {
            id,
            result_metadata_id,
            params: QueryParams::read(&mut r, version)?,
        })
    }

    /// Only the query-parameter flags (see `Query::read_flags`).
    pub fn read_flags(body: &Bytes, version: u8) -> Result<u32, BodyError> {
        let mut r = BodyReader::new(body);
        r.short_bytes()?;
        if version >= 5 {
            r.short_bytes()?;
        }
        r.short()?;
        read_flags(&mut r, version)
    }

    /// The body with write timestamp `ts` inserted (see `insert_timestamp`).
    pub fn with_timestamp(body: &Bytes, version: u8, ts: i64) -> Result<Bytes, BodyError> {
        let mut r = BodyReader::new(body);
        r.short_bytes()?;
        if version >= 5 {
            r.short_bytes()?;
        }
        insert_timestamp(body, r, version, ts)
    }

    /// Only the prepared id: what the proxy looks up on every EXECUTE.
    pub fn read_id(body: &Bytes) -> Result<Bytes, BodyError> {
        BodyReader::new(body).short_bytes()
    }

    pub fn encode(&self, version: u8) -> Bytes {
        let mut b = BytesMut::with_capacity(64);
        put_short_bytes(&mut b, &self.id);
        if version >= 5 {
            put_short_bytes(&mut b, self.result_metadata_id.as_deref().unwrap_or(&[]));
        }
        self.params.write(&mut b, version);
        b.freeze()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchStatement {
    Query(String),
    Prepared(Bytes),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchChild {
    pub statement: BatchStatement,
    pub values: Vec<RawValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// 0 logged, 1 unlogged, 2 counter.
    pub kind: u8,
    pub children: Vec<BatchChild>,
    pub consistency: u16,
    pub serial_consistency: Option<u16>,
    pub timestamp: Option<i64>,
    pub keyspace: Option<String>,
    pub now_in_seconds: Option<i32>,
}

impl Batch {
    pub fn read(body: &Bytes, version: u8) -> Result<Batch, BodyError> {
        use query_flags::*;
        let mut r = BodyReader::new(body);
        let kind = r.byte()?;
        if kind > 2 {
            return Err(BodyError::Invalid {
                what: "batch type",
                detail: format!("{kind} is not 0, 1 or 2"),
            });
        }
        // A child: its kind byte, a [short bytes] id (or a longer string)
        // and a [short] value count.
        let n = r.short_count("batch child count", 5)?;
        let mut children = Vec::with_capacity(n);
        for _ in 0..n {
            let statement = match r.byte()? {
                0 => BatchStatement::Query(r.long_string()?.to_string()),
                1 => BatchStatement::Prepared(r.short_bytes()?),
                k => {
                    return Err(BodyError::Invalid {
                        what: "batch child kind",
                        detail: format!("{k}"),
                    })
                }
            };
            let nv = r.short_count("batch child value count", 4)?;
            let values = (0..nv).map(|_| r.value()).collect::<Result<_, _>>()?;
            children.push(BatchChild { statement, values });
        }
        let consistency = r.short()?;
        let flags = if version >= 5 {
            r.int()? as u32
        } else {
            r.byte()? as u32
        };
        let serial_consistency = if flags & SERIAL_CONSISTENCY != 0 {
            Some(r.short()?)
        } else {
            None
        };
        let timestamp = if flags & DEFAULT_TIMESTAMP != 0 {
            Some(r.long()?)
        } else {
            None
        };
        let keyspace = if version >= 5 && flags & KEYSPACE != 0 {
            Some(r.string()?.to_string())
        } else {
            None
        };
        let now_in_seconds = if version >= 5 && flags & NOW_IN_SECONDS != 0 {
            Some(r.int()?)
        } else {
            None
        };
        Ok(Batch {
            kind,
            children,
            consistency,
            serial_consistency,
            timestamp,
            keyspace,
            now_in_seconds,
        })
    }

    pub fn encode(&self, version: u8) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(self.kind);
        b.put_u16(self.children.len() as u16);
        for c in &self.children {
            match &c.statement {
                BatchStatement::Query(q) => {
                    b.put_u8(0);
                    put_long_string(&mut b, q);
                }
                BatchStatement::Prepared(id) => {
                    b.put_u8(1);
                    put_short_bytes(&mut b, id);
                }
            }
            b.put_u16(c.values.len() as u16);
            for v in &c.values {
                write_value(&mut b, v);
            }
        }
        b.put_u16(self.consistency);
        let tail = Tail {
            serial_consistency: self.serial_consistency,
            timestamp: self.timestamp,
            keyspace: self.keyspace.as_deref(),
            now_in_seconds: self.now_in_seconds,
        };
        let flags = tail.flags(version);
        if version >= 5 {
            b.put_u32(flags);
        } else {
            b.put_u8(flags as u8);
        }
        tail.write(&mut b, version);
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameters of every shape a timestamp must find its place among.
    fn shapes(v: u8) -> Vec<QueryParams> {
        let values = vec![
            RawValue::Bytes(Bytes::from_static(b"abc")),
            RawValue::Null,
            RawValue::Unset,
            RawValue::Bytes(Bytes::new()),
        ];
        let mut all = vec![
            QueryParams {
                consistency: 1,
                ..Default::default()
            },
            QueryParams {
                consistency: 6,
                flags: query_flags::SKIP_METADATA,
                values: values.clone(),
                page_size: Some(5000),
                paging_state: Some(Bytes::from_static(b"paging")),
                serial_consistency: Some(9),
                ..Default::default()
            },
            QueryParams {
                consistency: 4,
                values: values[..2].to_vec(),
                names: Some(vec!["k".into(), "v".into()]),
                page_size: Some(10),
                ..Default::default()
            },
        ];
        if v >= 5 {
            all.push(QueryParams {
                consistency: 1,
                values: values.clone(),
                serial_consistency: Some(8),
                keyspace: Some("ks".into()),
                now_in_seconds: Some(1_700_000_000),
                ..Default::default()
            });
            all.push(QueryParams {
                consistency: 1,
                now_in_seconds: Some(7),
                ..Default::default()
            });
        }
        all
    }

    #[test]
    fn a_timestamp_is_inserted_as_the_full_encoder_would_write_it() {
        let ts = 1_733_000_000_123_456i64;
        for v in [3u8, 4, 5] {
            for params in shapes(v) {
                let with = QueryParams {
                    timestamp: Some(ts),
                    ..params.clone()
                };
                let q = Query {
                    text: "INSERT INTO ks.t (k, v) VALUES (?, ?)".into(),
                    params,
                };
                let full = Query {
                    params: with.clone(),
                    ..q.clone()
                }
                .encode(v);
                let inserted = Query::with_timestamp(&q.encode(v), v, ts).unwrap();
                assert_eq!(inserted, full, "QUERY v{v} {q:?}");
                assert_eq!(
                    Query::read(&inserted, v).unwrap().params.timestamp,
                    Some(ts)
                );

                let e = Execute {
                    id: Bytes::from_static(b"0123456789abcdef"),
                    result_metadata_id: (v >= 5).then(|| Bytes::from_static(b"meta")),
                    params: q.params.clone(),
                };
                let full = Execute {
                    params: with,
                    ..e.clone()
                }
                .encode(v);
                let inserted = Execute::with_timestamp(&e.encode(v), v, ts).unwrap();
                assert_eq!(inserted, full, "EXECUTE v{v} {e:?}");
            }
        }
    }

    #[test]
    fn a_body_with_a_timestamp_keeps_it_and_a_truncated_one_is_an_error() {
        let q = Query {
            text: "INSERT".into(),
            params: QueryParams {
                consistency: 1,
                timestamp: Some(5),
                ..Default::default()
            },
        };
        let body = q.encode(4);
        assert_eq!(Query::with_timestamp(&body, 4, 9).unwrap(), body);
        let q = Query {
            text: "INSERT".into(),
            params: QueryParams {
                consistency: 1,
                values: vec![RawValue::Bytes(Bytes::from_static(b"abcdef"))],
                ..Default::default()
            },
        };
        let body = q.encode(4);
        let cut = body.slice(..body.len() - 2);
        assert!(Query::with_timestamp(&cut, 4, 9).is_err());
    }

    #[test]
    fn query_params_round_trip_in_v4_and_v5() {
        for v in [3u8, 4, 5] {
            let q = Query {
                text: "SELECT * FROM ks.t WHERE k = ?".into(),
                params: QueryParams {
                    consistency: 1,
                    flags: query_flags::VALUES
                        | query_flags::PAGE_SIZE
                        | query_flags::PAGING_STATE
                        | query_flags::DEFAULT_TIMESTAMP,
                    values: vec![RawValue::Bytes(Bytes::from_static(b"abc")), RawValue::Null],
                    page_size: Some(100),
                    paging_state: Some(Bytes::from_static(b"ps")),
                    timestamp: Some(42),
                    ..Default::default()
                },
            };
            assert_eq!(Query::read(&q.encode(v), v).unwrap(), q, "v{v}");
        }
    }

    #[test]
    fn flags_are_read_without_decoding_the_values() {
        for v in [4u8, 5] {
            let mut params = QueryParams {
                consistency: 1,
                values: vec![RawValue::Null],
                ..Default::default()
            };
            let q = Query {
                text: "INSERT".into(),
                params: params.clone(),
            };
            assert_eq!(
                Query::read_flags(&q.encode(v), v).unwrap(),
                query_flags::VALUES
            );
            params.timestamp = Some(5);
            let e = Execute {
                id: Bytes::from_static(&[1; 16]),
                result_metadata_id: (v >= 5).then(|| Bytes::from_static(&[2; 16])),
                params,
            };
            assert_eq!(
                Execute::read_flags(&e.encode(v), v).unwrap(),
                query_flags::VALUES | query_flags::DEFAULT_TIMESTAMP
            );
        }
    }

    #[test]
    fn batch_round_trips() {
        let b = Batch {
            kind: 1,
            children: vec![
                BatchChild {
                    statement: BatchStatement::Query("INSERT ...".into()),
                    values: vec![],
                },
                BatchChild {
                    statement: BatchStatement::Prepared(Bytes::from_static(&[9; 16])),
                    values: vec![RawValue::Unset],
                },
            ],
            consistency: 4,
            serial_consistency: None,
            timestamp: Some(7),
            keyspace: None,
            now_in_seconds: None,
        };
        for v in [4u8, 5] {
            assert_eq!(Batch::read(&b.encode(v), v).unwrap(), b);
        }
    }

    #[test]
    fn truncated_bodies_are_errors() {
        let q = Query {
            text: "SELECT 1".into(),
            params: QueryParams::default(),
        }
        .encode(4);
        for cut in 0..q.len() {
            assert!(Query::read(&q.slice(..cut), 4).is_err(), "cut at {cut}");
        }
    }
}
