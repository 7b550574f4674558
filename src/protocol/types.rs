//! Column types as the protocol names them (`[option]` in the spec).

use bytes::{BufMut, BytesMut};

use super::reader::{BodyError, BodyReader};
use super::writer::put_string;

/// How deeply types may nest (`list<map<text, frozen<list<...>>>>`): far
/// beyond any real schema, and shallow enough that reading, printing and
/// dropping a type cannot exhaust a task's stack.
pub const MAX_TYPE_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Custom(String),
    Ascii,
    Bigint,
    Blob,
    Boolean,
    Counter,
    Decimal,
    Double,
    Float,
    Int,
    Timestamp,
    Uuid,
    Varchar,
    Varint,
    Timeuuid,
    Inet,
    Date,
    Time,
    Smallint,
    Tinyint,
    Duration,
    List(Box<ColumnType>),
    Map(Box<ColumnType>, Box<ColumnType>),
    Set(Box<ColumnType>),
    Udt {
        keyspace: String,
        name: String,
        fields: Vec<(String, ColumnType)>,
    },
    Tuple(Vec<ColumnType>),
}

impl ColumnType {
    pub fn write(&self, dst: &mut BytesMut) {
        use ColumnType::*;
        let id: u16 = match self {
            Custom(_) => 0x0000,
            Ascii => 0x0001,
            Bigint => 0x0002,
            Blob => 0x0003,
            Boolean => 0x0004,
            Counter => 0x0005,
            Decimal => 0x0006,
            Double => 0x0007,
            Float => 0x0008,
            Int => 0x0009,
            Timestamp => 0x000B,
            Uuid => 0x000C,
            Varchar => 0x000D,
            Varint => 0x000E,
            Timeuuid => 0x000F,
            Inet => 0x0010,
            Date => 0x0011,
            Time => 0x0012,
            Smallint => 0x0013,
            Tinyint => 0x0014,
            Duration => 0x0015,
            List(_) => 0x0020,
            Map(..) => 0x0021,
            Set(_) => 0x0022,
            Udt { .. } => 0x0030,
            Tuple(_) => 0x0031,
        };
        dst.put_u16(id);
        match self {
            Custom(class) => put_string(dst, class),
            List(t) | Set(t) => t.write(dst),
            Map(k, v) => {
                k.write(dst);
                v.write(dst);
            }
            Udt {
                keyspace,
                name,
                fields,
            } => {
                put_string(dst, keyspace);
                put_string(dst, name);
                dst.put_u16(fields.len() as u16);
                for (n, t) in fields {
                    put_string(dst, n);
                    t.write(dst);
                }
            }
            Tuple(ts) => {
                dst.put_u16(ts.len() as u16);
                for t in ts {
                    t.write(dst);
                }
            }
            _ => {}
        }
    }

    pub fn read(r: &mut BodyReader<'_>) -> Result<ColumnType, BodyError> {
        ColumnType::read_nested(r, 0)
    }

    fn read_nested(r: &mut BodyReader<'_>, depth: usize) -> Result<ColumnType, BodyError> {
        use ColumnType::*;
        if depth > MAX_TYPE_DEPTH {
            return Err(BodyError::TooDeep {
                what: "column type",
                limit: MAX_TYPE_DEPTH,
            });
        }
        let inner = |r: &mut BodyReader<'_>| ColumnType::read_nested(r, depth + 1);
        let id = r.short()?;
        Ok(match id {
            0x0000 => Custom(r.string()?.to_string()),
            0x0001 => Ascii,
            0x0002 => Bigint,
            0x0003 => Blob,
            0x0004 => Boolean,
            0x0005 => Counter,
            0x0006 => Decimal,
            0x0007 => Double,
            0x0008 => Float,
            0x0009 => Int,
            0x000B => Timestamp,
            0x000C => Uuid,
            0x000D => Varchar,
            0x000E => Varint,
            0x000F => Timeuuid,
            0x0010 => Inet,
            0x0011 => Date,
            0x0012 => Time,
            0x0013 => Smallint,
            0x0014 => Tinyint,
            0x0015 => Duration,
            0x0020 => List(Box::new(inner(r)?)),
            0x0021 => Map(Box::new(inner(r)?), Box::new(inner(r)?)),
            0x0022 => Set(Box::new(inner(r)?)),
            0x0030 => {
                let keyspace = r.string()?.to_string();
                let name = r.string()?.to_string();
                // A field: its name (a [string]) and its type (an [option]).
                let n = r.short_count("UDT field count", 4)?;
                let mut fields = Vec::with_capacity(n);
                for _ in 0..n {
                    let f = r.string()?.to_string();
                    fields.push((f, inner(r)?));
                }
                Udt {
                    keyspace,
                    name,
                    fields,
                }
            }
            0x0031 => {
                let n = r.short_count("tuple element count", 2)?;
                Tuple((0..n).map(|_| inner(r)).collect::<Result<_, _>>()?)
            }
            other => {
                return Err(BodyError::Invalid {
                    what: "type option",
                    detail: format!("unknown type id {other:#06x}"),
                })
            }
        })
    }

    /// A native type by its CQL name (`text`, `int`, ...): the inverse of
    /// `cql_name` for types that take no arguments.
    pub fn native(name: &str) -> Option<ColumnType> {
        use ColumnType::*;
        Some(match name {
            "ascii" => Ascii,
            "bigint" => Bigint,
            "blob" => Blob,
            "boolean" => Boolean,
            "counter" => Counter,
            "decimal" => Decimal,
            "double" => Double,
            "float" => Float,
            "int" => Int,
            "timestamp" => Timestamp,
            "uuid" => Uuid,
            "text" | "varchar" => Varchar,
            "varint" => Varint,
            "timeuuid" => Timeuuid,
            "inet" => Inet,
            "date" => Date,
            "time" => Time,
            "smallint" => Smallint,
            "tinyint" => Tinyint,
            "duration" => Duration,
            _ => return None,
        })
    }

    /// The CQL spelling, as `system_schema.columns.type` shows it. Types
    /// nested in a collection, tuple or UDT are frozen, as Cassandra requires.
    pub fn cql_name(&self) -> String {
        use ColumnType::*;
        let nested = |t: &ColumnType| match t {
            List(_) | Set(_) | Map(..) | Udt { .. } | Tuple(_) => {
                format!("frozen<{}>", t.cql_name())
            }
            _ => t.cql_name(),
        };
        match self {
            Custom(c) => format!("'{c}'"),
            Ascii => "ascii".into(),
            Bigint => "bigint".into(),
            Blob => "blob".into(),
            Boolean => "boolean".into(),
            Counter => "counter".into(),
            Decimal => "decimal".into(),
            Double => "double".into(),
            Float => "float".into(),
            Int => "int".into(),
            Timestamp => "timestamp".into(),
            Uuid => "uuid".into(),
            Varchar => "text".into(),
            Varint => "varint".into(),
            Timeuuid => "timeuuid".into(),
            Inet => "inet".into(),
            Date => "date".into(),
            Time => "time".into(),
            Smallint => "smallint".into(),
            Tinyint => "tinyint".into(),
            Duration => "duration".into(),
            List(t) => format!("list<{}>", nested(t)),
            Set(t) => format!("set<{}>", nested(t)),
            Map(k, v) => format!("map<{}, {}>", nested(k), nested(v)),
            Udt { name, .. } => name.clone(),
            Tuple(ts) => format!(
                "tuple<{}>",
                ts.iter().map(nested).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    pub fn is_collection(&self) -> bool {
        matches!(
            self,
            ColumnType::List(_) | ColumnType::Set(_) | ColumnType::Map(..)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn nested_types_round_trip_and_print_like_cassandra() {
        let t = ColumnType::Map(
            Box::new(ColumnType::Varchar),
            Box::new(ColumnType::List(Box::new(ColumnType::Udt {
                keyspace: "ks".into(),
                name: "point".into(),
                fields: vec![("x".into(), ColumnType::Int), ("y".into(), ColumnType::Int)],
            }))),
        );
        let mut b = BytesMut::new();
        t.write(&mut b);
        let b: Bytes = b.freeze();
        assert_eq!(ColumnType::read(&mut BodyReader::new(&b)).unwrap(), t);
        assert_eq!(t.cql_name(), "map<text, frozen<list<frozen<point>>>>");
    }

    fn nested_lists(depth: usize) -> Bytes {
        let mut b = BytesMut::new();
        for _ in 0..depth {
            b.put_u16(0x0020);
        }
        b.put_u16(0x0009);
        b.freeze()
    }

    #[test]
    fn nesting_past_the_limit_is_an_error_not_a_stack_overflow() {
        let ok = nested_lists(MAX_TYPE_DEPTH);
        assert!(ColumnType::read(&mut BodyReader::new(&ok)).is_ok());
        // 3,000 levels overflowed the stack before the limit existed.
        for depth in [MAX_TYPE_DEPTH + 1, 3_000, 100_000] {
            let b = nested_lists(depth);
            let e = ColumnType::read(&mut BodyReader::new(&b)).unwrap_err();
            assert!(matches!(e, BodyError::TooDeep { .. }), "{e}");
        }
    }

    #[test]
    fn a_field_count_larger_than_the_body_is_refused() {
        let mut b = BytesMut::new();
        b.put_u16(0x0030);
        put_string(&mut b, "ks");
        put_string(&mut b, "udt");
        b.put_u16(u16::MAX);
        let b = b.freeze();
        let e = ColumnType::read(&mut BodyReader::new(&b)).unwrap_err();
        assert!(matches!(e, BodyError::CountTooLarge { .. }), "{e}");
    }
}
