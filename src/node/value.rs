//! Values the node stores: ordered (for keys), encoded to and decoded from
//! the protocol's binary form for a given column type.

use std::cmp::Ordering;

use crate::protocol::ColumnType;

#[derive(Debug, Clone)]
pub enum Value {
    Bool(bool),
    /// tinyint, smallint, int, bigint, counter, timestamp (ms), time (ns).
    Int(i64),
    /// date: days with 2^31 as the epoch, as on the wire.
    Date(u32),
    Float(f32),
    Double(f64),
    Text(String),
    Blob(Vec<u8>),
    Uuid([u8; 16]),
    Inet(Vec<u8>),
    /// varint: two's-complement big-endian, minimal.
    Varint(Vec<u8>),
    /// decimal: scale and unscaled varint bytes.
    Decimal(i32, Vec<u8>),
    Duration(Vec<u8>),
    List(Vec<Value>),
    /// Sorted, no duplicates.
    Set(Vec<Value>),
    /// Sorted by key, unique keys.
    Map(Vec<(Value, Value)>),
    Udt(Vec<Option<Value>>),
    Tuple(Vec<Option<Value>>),
}

impl Value {
    fn rank(&self) -> u8 {
        match self {
            Value::Bool(_) => 0,
            Value::Int(_) => 1,
            Value::Date(_) => 2,
            Value::Float(_) => 3,
            Value::Double(_) => 4,
            Value::Text(_) => 5,
            Value::Blob(_) => 6,
            Value::Uuid(_) => 7,
            Value::Inet(_) => 8,
            Value::Varint(_) => 9,
            Value::Decimal(..) => 10,
            Value::Duration(_) => 11,
            Value::List(_) => 12,
            Value::Set(_) => 13,
            Value::Map(_) => 14,
            Value::Udt(_) => 15,
            Value::Tuple(_) => 16,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

fn varint_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let neg = |x: &[u8]| x.first().is_some_and(|b| b & 0x80 != 0);
    match (neg(a), neg(b)) {
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (n, _) => {
            let o = a.len().cmp(&b.len()).then_with(|| a.cmp(b));
            if n {
                // Both negative: longer is smaller; same length compares bytewise.
                if a.len() != b.len() {
                    return b.len().cmp(&a.len());
                }
                a.cmp(b)
            } else {
                o
            }
        }
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        use Value::*;
        match (self, other) {
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (Date(a), Date(b)) => a.cmp(b),
            (Float(a), Float(b)) => a.total_cmp(b),
            (Double(a), Double(b)) => a.total_cmp(b),
            (Text(a), Text(b)) => a.cmp(b),
            (Blob(a), Blob(b)) | (Inet(a), Inet(b)) | (Duration(a), Duration(b)) => a.cmp(b),
            (Uuid(a), Uuid(b)) => uuid_cmp(a, b),
            (Varint(a), Varint(b)) => varint_cmp(a, b),
            (Decimal(sa, a), Decimal(sb, b)) => {
                if sa == sb {
                    varint_cmp(a, b)
                } else {
                    let fa = decimal_to_f64(*sa, a);
                    let fb = decimal_to_f64(*sb, b);
                    fa.total_cmp(&fb)
                }
            }
            (List(a), List(b)) | (Set(a), Set(b)) => a.cmp(b),
            (Map(a), Map(b)) => a.cmp(b),
            (Udt(a), Udt(b)) | (Tuple(a), Tuple(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

/// Time-based UUIDs order by their timestamp first, as Cassandra does.
fn uuid_cmp(a: &[u8; 16], b: &[u8; 16]) -> Ordering {
    let v1 = |u: &[u8; 16]| u[6] >> 4 == 1;
    if v1(a) && v1(b) {
        timeuuid_ticks(a)
            .cmp(&timeuuid_ticks(b))
            .then_with(|| a.cmp(b))
    } else {
        a.cmp(b)
    }
}

pub fn timeuuid_ticks(u: &[u8; 16]) -> u64 {
    let low = u32::from_be_bytes([u[0], u[1], u[2], u[3]]) as u64;
    let mid = u16::from_be_bytes([u[4], u[5]]) as u64;
    let hi = (u16::from_be_bytes([u[6], u[7]]) & 0x0fff) as u64;
    (hi << 48) | (mid << 32) | low
}

pub use crate::cql::functions::{new_random_uuid, new_timeuuid};

pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut u = [0u8; 16];
    for i in 0..16 {
        u[i] = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(u)
}

pub fn varint_from_i128(v: i128) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 15 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes[start..].to_vec()
}

pub fn varint_to_i128(b: &[u8]) -> Option<i128> {
    if b.is_empty() || b.len() > 16 {
        return None;
    }
    let mut v: i128 = if b[0] & 0x80 != 0 { -1 } else { 0 };
    for byte in b {
        v = (v << 8) | *byte as i128;
    }
    Some(v)
}

fn decimal_to_f64(scale: i32, unscaled: &[u8]) -> f64 {
    varint_to_i128(unscaled).unwrap_or(0) as f64 / 10f64.powi(scale)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

fn need(b: &[u8], n: usize, what: &str) -> Result<(), ValueError> {
    if b.len() != n {
        return Err(ValueError(format!(
            "Expected {n} bytes for a {what} value, got {}",
            b.len()
        )));
    }
    Ok(())
}

/// Encodes a value for the wire (v3+ collection format).
pub fn encode(v: &Value, t: &ColumnType, out: &mut Vec<u8>) {
    use ColumnType as T;
    match (v, t) {
        (Value::Bool(b), _) => out.push(*b as u8),
        (Value::Int(i), T::Int) => out.extend_from_slice(&(*i as i32).to_be_bytes()),
        (Value::Int(i), T::Smallint) => out.extend_from_slice(&(*i as i16).to_be_bytes()),
        (Value::Int(i), T::Tinyint) => out.push(*i as i8 as u8),
        (Value::Int(i), _) => out.extend_from_slice(&i.to_be_bytes()),
        (Value::Date(d), _) => out.extend_from_slice(&d.to_be_bytes()),
        (Value::Float(f), _) => out.extend_from_slice(&f.to_be_bytes()),
        (Value::Double(f), _) => out.extend_from_slice(&f.to_be_bytes()),
        (Value::Text(s), _) => out.extend_from_slice(s.as_bytes()),
        (Value::Blob(b), _)
        | (Value::Inet(b), _)
        | (Value::Varint(b), _)
        | (Value::Duration(b), _) => out.extend_from_slice(b),
        (Value::Uuid(u), _) => out.extend_from_slice(u),
        (Value::Decimal(s, u), _) => {
            out.extend_from_slice(&s.to_be_bytes());
            out.extend_from_slice(u);
        }
        (Value::List(items), T::List(et)) | (Value::Set(items), T::Set(et)) => {
            out.extend_from_slice(&(items.len() as i32).to_be_bytes());
            for it in items {
                encode_element(Some(it), et, out);
            }
        }
        (Value::Map(entries), T::Map(kt, vt)) => {
            out.extend_from_slice(&(entries.len() as i32).to_be_bytes());
            for (k, v) in entries {
                encode_element(Some(k), kt, out);
                encode_element(Some(v), vt, out);
            }
        }
        (Value::Udt(fields), T::Udt { fields: ft, .. }) => {
            for (i, (_, t)) in ft.iter().enumerate() {
                encode_element(fields.get(i).and_then(|f| f.as_ref()), t, out);
            }
        }
        (Value::Tuple(fields), T::Tuple(ts)) => {
            for (i, t) in ts.iter().enumerate() {
                encode_element(fields.get(i).and_then(|f| f.as_ref()), t, out);
            }
        }
        // A value whose shape does not match its type cannot be produced by
        // `decode` or `from_literal`; encode nothing rather than panic.
        _ => {}
    }
}

fn encode_element(v: Option<&Value>, t: &ColumnType, out: &mut Vec<u8>) {
    match v {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(v) => {
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            encode(v, t, out);
            let n = (out.len() - at - 4) as i32;
            out[at..at + 4].copy_from_slice(&n.to_be_bytes());
        }
    }
}

/// A value's serialized bytes (what a driver sends for it).
pub fn to_bytes(v: &Value, t: &ColumnType) -> Vec<u8> {
    let mut out = Vec::new();
    encode(v, t, &mut out);
    out
}

pub fn decode(b: &[u8], t: &ColumnType) -> Result<Value, ValueError> {
    use ColumnType as T;
    Ok(match t {
        T::Boolean => {
            need(b, 1, "boolean")?;
            Value::Bool(b[0] != 0)
        }
        T::Int => {
            need(b, 4, "int")?;
            Value::Int(i32::from_be_bytes(b.try_into().expect("4")) as i64)
        }
        T::Smallint => {
            need(b, 2, "smallint")?;
            Value::Int(i16::from_be_bytes(b.try_into().expect("2")) as i64)
        }
        T::Tinyint => {
            need(b, 1, "tinyint")?;
            Value::Int(b[0] as i8 as i64)
        }
        T::Bigint | T::Counter | T::Timestamp | T::Time => {
            need(b, 8, t.cql_name().as_str())?;
            Value::Int(i64::from_be_bytes(b.try_into().expect("8")))
        }
        T::Date => {
            need(b, 4, "date")?;
            Value::Date(u32::from_be_bytes(b.try_into().expect("4")))
        }
        T::Float => {
            need(b, 4, "float")?;
            Value::Float(f32::from_be_bytes(b.try_into().expect("4")))
        }
        T::Double => {
            need(b, 8, "double")?;
            Value::Double(f64::from_be_bytes(b.try_into().expect("8")))
        }
        T::Varchar | T::Ascii => Value::Text(
            String::from_utf8(b.to_vec())
                .map_err(|_| ValueError("String didn't validate.".into()))?,
        ),
        T::Blob | T::Custom(_) => Value::Blob(b.to_vec()),
        T::Uuid | T::Timeuuid => {
            need(b, 16, "uuid")?;
            Value::Uuid(b.try_into().expect("16"))
        }
        T::Inet => {
            if b.len() != 4 && b.len() != 16 {
                return Err(ValueError(format!(
                    "Invalid inet value of {} bytes",
                    b.len()
                )));
            }
            Value::Inet(b.to_vec())
        }
        T::Varint => {
            if b.is_empty() {
                return Err(ValueError("Empty varint".into()));
            }
            Value::Varint(b.to_vec())
        }
        T::Decimal => {
            if b.len() < 5 {
                return Err(ValueError("Decimal value too short".into()));
            }
            Value::Decimal(
                i32::from_be_bytes(b[..4].try_into().expect("4")),
                b[4..].to_vec(),
            )
        }
        T::Duration => Value::Duration(b.to_vec()),
        T::List(et) | T::Set(et) => {
            let mut r = ElemReader { b, pos: 0 };
            let n = r.count()?;
            let mut items = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                match r.elem()? {
                    Some(e) => items.push(decode(e, et)?),
                    None => {
                        return Err(ValueError(
                            "null is not supported inside collections".into(),
                        ))
                    }
                }
            }
            if matches!(t, T::Set(_)) {
                items.sort();
                items.dedup();
                Value::Set(items)
            } else {
                Value::List(items)
            }
        }
        T::Map(kt, vt) => {
            let mut r = ElemReader { b, pos: 0 };
            let n = r.count()?;
            let mut entries = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                let k = r.elem()?.ok_or_else(|| ValueError("null map key".into()))?;
                let v = r
                    .elem()?
                    .ok_or_else(|| ValueError("null map value".into()))?;
                entries.push((decode(k, kt)?, decode(v, vt)?));
            }
            Value::Map(normalize_map(entries))
        }
        T::Udt { fields, .. } => {
            let mut r = ElemReader { b, pos: 0 };
            let mut out = Vec::with_capacity(fields.len());
            for (_, ft) in fields {
                if r.pos >= b.len() {
                    out.push(None);
                    continue;
                }
                out.push(r.elem()?.map(|e| decode(e, ft)).transpose()?);
            }
            Value::Udt(out)
        }
        T::Tuple(ts) => {
            let mut r = ElemReader { b, pos: 0 };
            let mut out = Vec::with_capacity(ts.len());
            for ft in ts {
                out.push(r.elem()?.map(|e| decode(e, ft)).transpose()?);
            }
            Value::Tuple(out)
        }
    })
}

pub fn normalize_map(mut entries: Vec<(Value, Value)>) -> Vec<(Value, Value)> {
    // Last write wins for a repeated key, then sort.
    entries.reverse();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|a, b| a.0 == b.0);
    entries
}

struct ElemReader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> ElemReader<'a> {
    fn int(&mut self) -> Result<i32, ValueError> {
        if self.pos + 4 > self.b.len() {
            return Err(ValueError(
                "Not enough bytes to read a collection element".into(),
            ));
        }
        let v = i32::from_be_bytes(self.b[self.pos..self.pos + 4].try_into().expect("4"));
        self.pos += 4;
        Ok(v)
    }

    fn count(&mut self) -> Result<usize, ValueError> {
        let n = self.int()?;
        if n < 0 {
            return Err(ValueError(format!("Negative collection size {n}")));
        }
        Ok(n as usize)
    }

    fn elem(&mut self) -> Result<Option<&'a [u8]>, ValueError> {
        let n = self.int()?;
        if n < 0 {
            return Ok(None);
        }
        let n = n as usize;
        if self.pos + n > self.b.len() {
            return Err(ValueError(
                "Not enough bytes to read a collection element".into(),
            ));
        }
        let e = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(Some(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_encoding_is_minimal_and_round_trips() {
        for v in [0i128, 1, -1, 127, 128, -128, -129, 1 << 40, -(1 << 40)] {
            let b = varint_from_i128(v);
            assert_eq!(varint_to_i128(&b), Some(v));
        }
        assert_eq!(varint_from_i128(128), vec![0, 128]);
        assert_eq!(varint_from_i128(-1), vec![0xff]);
        assert!(Value::Varint(varint_from_i128(-5)) < Value::Varint(varint_from_i128(3)));
        assert!(Value::Varint(varint_from_i128(-500)) < Value::Varint(varint_from_i128(-5)));
    }

    #[test]
    fn timeuuids_increase_and_sort_by_time() {
        let a = new_timeuuid();
        let b = new_timeuuid();
        assert!(Value::Uuid(a) < Value::Uuid(b));
        assert_eq!(parse_uuid(&crate::cql::functions::format_uuid(&a)), Some(a));
    }

    #[test]
    fn collections_round_trip() {
        let t = ColumnType::Map(Box::new(ColumnType::Varchar), Box::new(ColumnType::Int));
        let v = Value::Map(vec![
            (Value::Text("a".into()), Value::Int(1)),
            (Value::Text("b".into()), Value::Int(2)),
        ]);
        assert_eq!(decode(&to_bytes(&v, &t), &t).unwrap(), v);
        assert!(
            decode(&[0, 0, 0, 5], &t).is_err(),
            "truncated map is an error"
        );
    }
}
