//! Turning statement terms (literals, bind markers, function calls) into
//! values of a column's type.

use super::ast::{Literal, Term};
use super::error::NodeError;
use super::value::{
    decode, new_random_uuid, new_timeuuid, normalize_map, parse_uuid, timeuuid_ticks,
    varint_from_i128, Value,
};
use crate::protocol::reader::RawValue;
use crate::protocol::ColumnType;

/// What a term evaluates to.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Null,
    /// A v4 "unset" bind value: leave the column as it is.
    Unset,
    Value(Value),
}

impl Bound {
    pub fn into_option(self) -> Option<Value> {
        match self {
            Bound::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// Bound values of one execution, by marker index.
pub struct Binds<'a> {
    pub values: &'a [RawValue],
}

fn bad(t: &ColumnType, what: impl std::fmt::Display) -> NodeError {
    NodeError::invalid(format!("Invalid {what} for type {}", t.cql_name()))
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn eval(term: &Term, t: &ColumnType, binds: &Binds<'_>) -> Result<Bound, NodeError> {
    use ColumnType as T;
    Ok(match term {
        Term::Marker(i) => {
            match binds.values.get(*i) {
                None => {
                    return Err(NodeError::invalid(format!(
                        "There were {} markers(?) in CQL but {} bound variables",
                        i + 1,
                        binds.values.len()
                    )))
                }
                Some(RawValue::Null) => Bound::Null,
                Some(RawValue::Unset) => Bound::Unset,
                Some(RawValue::Bytes(b)) => {
                    if b.is_empty() && !matches!(t, T::Varchar | T::Ascii | T::Blob) {
                        Bound::Null
                    } else {
                        Bound::Value(decode(b, t).map_err(|e| {
                            NodeError::invalid(format!("{e} (for {})", t.cql_name()))
                        })?)
                    }
                }
            }
        }
        Term::Lit(Literal::Null) => Bound::Null,
        Term::Lit(l) => Bound::Value(literal(l, t)?),
        Term::Call(name, args) => Bound::Value(call(name, args, t, binds)?),
        Term::List(items) => match t {
            T::List(et) => Bound::Value(Value::List(elements(items, et, binds)?)),
            T::Set(et) => {
                let mut v = elements(items, et, binds)?;
                v.sort();
                v.dedup();
                Bound::Value(Value::Set(v))
            }
            _ => return Err(bad(t, "list literal")),
        },
        Term::Set(items) => match t {
            T::Set(et) => {
                let mut v = elements(items, et, binds)?;
                v.sort();
                v.dedup();
                Bound::Value(Value::Set(v))
            }
            T::Map(..) if items.is_empty() => Bound::Value(Value::Map(Vec::new())),
            T::List(et) => Bound::Value(Value::List(elements(items, et, binds)?)),
            _ => return Err(bad(t, "set literal")),
        },
        Term::Map(entries) => match t {
            T::Map(kt, vt) => {
                let mut out = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    let k = eval(k, kt, binds)?
                        .into_option()
                        .ok_or_else(|| bad(t, "null map key"))?;
                    let v = eval(v, vt, binds)?
                        .into_option()
                        .ok_or_else(|| bad(t, "null map value"))?;
                    out.push((k, v));
                }
                Bound::Value(Value::Map(normalize_map(out)))
            }
            T::Udt { .. } => return Err(bad(t, "map literal")),
            _ => return Err(bad(t, "map literal")),
        },
        Term::Udt(fields) => match t {
            T::Udt {
                fields: ft, name, ..
            } => {
                let mut out = vec![None; ft.len()];
                for (fname, term) in fields {
                    let i = ft.iter().position(|(n, _)| n == fname).ok_or_else(|| {
                        NodeError::invalid(format!(
                            "Unknown field '{fname}' in value of user defined type {name}"
                        ))
                    })?;
                    out[i] = eval(term, &ft[i].1, binds)?.into_option();
                }
                Bound::Value(Value::Udt(out))
            }
            _ => return Err(bad(t, "user type literal")),
        },
        Term::Tuple(items) => match t {
            T::Tuple(ts) => {
                if items.len() > ts.len() {
                    return Err(bad(t, "tuple literal (too many elements)"));
                }
                let mut out = Vec::with_capacity(ts.len());
                for (i, et) in ts.iter().enumerate() {
                    out.push(match items.get(i) {
                        Some(term) => eval(term, et, binds)?.into_option(),
                        None => None,
                    });
                }
                Bound::Value(Value::Tuple(out))
            }
            _ => return Err(bad(t, "tuple literal")),
        },
    })
}

fn elements(items: &[Term], et: &ColumnType, binds: &Binds<'_>) -> Result<Vec<Value>, NodeError> {
    items
        .iter()
        .map(|i| {
            eval(i, et, binds)?
                .into_option()
                .ok_or_else(|| NodeError::invalid("null is not supported inside collections"))
        })
        .collect()
}

fn call(name: &str, args: &[Term], t: &ColumnType, binds: &Binds<'_>) -> Result<Value, NodeError> {
    use ColumnType as T;
    let v = match name {
        "now" | "currenttimeuuid" => Value::Uuid(new_timeuuid()),
        "uuid" => Value::Uuid(new_random_uuid()),
        "currenttimestamp" => Value::Int(now_millis()),
        "currentdate" => Value::Date(((now_millis() / 86_400_000) + (1i64 << 31)) as u32),
        "currenttime" => Value::Int((now_millis() % 86_400_000) * 1_000_000),
        "totimestamp" | "tounixtimestamp" | "dateof" | "unixtimestampof" if args.len() == 1 => {
            match eval(&args[0], &T::Timeuuid, binds)? {
                Bound::Value(Value::Uuid(u)) => {
                    Value::Int(((timeuuid_ticks(&u) as i64) - 0x01B2_1DD2_1381_4000) / 10_000)
                }
                _ => return Err(NodeError::invalid(format!("{name}() needs a timeuuid"))),
            }
        }
        _ => return Err(NodeError::invalid(format!("Unknown function {name}"))),
    };
    // Check the function's result fits the column.
    let fits = matches!(
        (&v, t),
        (Value::Uuid(_), T::Uuid | T::Timeuuid)
            | (Value::Int(_), T::Timestamp | T::Bigint | T::Time)
            | (Value::Date(_), T::Date)
    );
    if !fits {
        return Err(NodeError::invalid(format!(
            "Type error: {name}() cannot be passed as argument of type {}",
            t.cql_name()
        )));
    }
    Ok(v)
}

pub fn literal(l: &Literal, t: &ColumnType) -> Result<Value, NodeError> {
    use ColumnType as T;
    let int = |s: &str| {
        s.parse::<i128>()
            .map_err(|_| bad(t, format!("integer literal {s}")))
    };
    let range = |v: i128, lo: i128, hi: i128| {
        if v < lo || v > hi {
            Err(bad(t, format!("value {v} (out of range)")))
        } else {
            Ok(Value::Int(v as i64))
        }
    };
    Ok(match (l, t) {
        (Literal::Int(s), T::Int) => range(int(s)?, i32::MIN as i128, i32::MAX as i128)?,
        (Literal::Int(s), T::Smallint) => range(int(s)?, i16::MIN as i128, i16::MAX as i128)?,
        (Literal::Int(s), T::Tinyint) => range(int(s)?, i8::MIN as i128, i8::MAX as i128)?,
        (Literal::Int(s), T::Bigint | T::Counter | T::Timestamp | T::Time) => {
            range(int(s)?, i64::MIN as i128, i64::MAX as i128)?
        }
        (Literal::Int(s), T::Varint) => Value::Varint(varint_from_i128(int(s)?)),
        (Literal::Int(s) | Literal::Float(s), T::Double) => {
            Value::Double(parse_float(s).ok_or_else(|| bad(t, format!("number {s}")))?)
        }
        (Literal::Int(s) | Literal::Float(s), T::Float) => {
            Value::Float(parse_float(s).ok_or_else(|| bad(t, format!("number {s}")))? as f32)
        }
        (Literal::Int(s) | Literal::Float(s), T::Decimal) => {
            decimal(s).ok_or_else(|| bad(t, format!("decimal {s}")))?
        }
        (Literal::Int(s), T::Date) => Value::Date(int(s)? as u32),
        (Literal::Str(s), T::Varchar) => Value::Text(s.clone()),
        (Literal::Str(s), T::Ascii) => {
            if !s.is_ascii() {
                return Err(bad(t, "non-ASCII string"));
            }
            Value::Text(s.clone())
        }
        (Literal::Str(s), T::Timestamp) => {
            Value::Int(parse_timestamp(s).ok_or_else(|| bad(t, format!("timestamp '{s}'")))?)
        }
        (Literal::Str(s), T::Date) => {
            let days = parse_date(s).ok_or_else(|| bad(t, format!("date '{s}'")))?;
            Value::Date((days + (1i64 << 31)) as u32)
        }
        (Literal::Str(s), T::Time) => {
            Value::Int(parse_time(s).ok_or_else(|| bad(t, format!("time '{s}'")))?)
        }
        (Literal::Str(s), T::Inet) => Value::Inet(match s.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(a)) => a.octets().to_vec(),
            Ok(std::net::IpAddr::V6(a)) => a.octets().to_vec(),
            Err(_) => return Err(bad(t, format!("inet '{s}'"))),
        }),
        (Literal::Uuid(s), T::Uuid | T::Timeuuid) => {
            let u = parse_uuid(s).ok_or_else(|| bad(t, format!("uuid {s}")))?;
            if *t == T::Timeuuid && u[6] >> 4 != 1 {
                return Err(NodeError::invalid(format!(
                    "Unsupported UUID for timeuuid column: {s} is not a version 1 UUID"
                )));
            }
            Value::Uuid(u)
        }
        (Literal::Blob(b), T::Blob | T::Custom(_)) => Value::Blob(b.clone()),
        (Literal::Bool(b), T::Boolean) => Value::Bool(*b),
        (Literal::Str(s), T::Boolean)
            if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") =>
        {
            Value::Bool(s.eq_ignore_ascii_case("true"))
        }
        (l, t) => {
            let shown = match l {
                Literal::Str(s) => format!("'{s}'"),
                Literal::Int(s) | Literal::Float(s) | Literal::Uuid(s) => s.clone(),
                Literal::Blob(_) => "blob literal".into(),
                Literal::Bool(b) => b.to_string(),
                Literal::Null => "null".into(),
            };
            return Err(NodeError::invalid(format!(
                "Invalid {shown} value for type {}",
                t.cql_name()
            )));
        }
    })
}

fn parse_float(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" => Some(f64::INFINITY),
        "-infinity" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

fn decimal(s: &str) -> Option<Value> {
    let lower = s.to_ascii_lowercase();
    let (mantissa, exp) = match lower.split_once('e') {
        Some((m, e)) => (m.to_string(), e.parse::<i32>().ok()?),
        None => (lower.clone(), 0),
    };
    let (int_part, frac) = mantissa.split_once('.').unwrap_or((&mantissa, ""));
    let digits = format!("{int_part}{frac}");
    let unscaled: i128 = digits.parse().ok()?;
    let scale = frac.len() as i32 - exp;
    Some(Value::Decimal(scale, varint_from_i128(unscaled)))
}

/// Days since 1970-01-01 for a civil date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

fn parse_time(s: &str) -> Option<i64> {
    let (hms, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    let parts: Vec<i64> = hms
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if parts.len() != 3 {
        return None;
    }
    let mut nanos = ((parts[0] * 60 + parts[1]) * 60 + parts[2]) * 1_000_000_000;
    if !frac.is_empty() {
        let f = format!("{frac:0<9}");
        nanos += f[..9].parse::<i64>().ok()?;
    }
    Some(nanos)
}

/// 'yyyy-mm-dd[( |T)hh:mm[:ss[.fff]]][Z|+hhmm|-hh:mm]' or milliseconds.
fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let (date, rest) = if s.len() >= 10 {
        s.split_at(10)
    } else {
        return None;
    };
    let days = parse_date(date)?;
    let mut ms = days * 86_400_000;
    let rest = rest.trim_start_matches(['T', ' ']);
    if rest.is_empty() {
        return Some(ms);
    }
    let tz_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (time, tz) = rest.split_at(tz_at);
    let time = time.trim();
    let time_full = if time.matches(':').count() == 1 {
        format!("{time}:00")
    } else {
        time.to_string()
    };
    ms += parse_time(&time_full)? / 1_000_000;
    let tz = tz.trim();
    if !tz.is_empty() && !tz.eq_ignore_ascii_case("z") {
        let sign = if tz.starts_with('-') { -1 } else { 1 };
        let digits: String = tz[1..].chars().filter(char::is_ascii_digit).collect();
        if digits.len() != 4 {
            return None;
        }
        let offset = digits[..2].parse::<i64>().ok()? * 60 + digits[2..].parse::<i64>().ok()?;
        ms -= sign * offset * 60_000;
    }
    Some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_like_cassandra() {
        assert_eq!(parse_timestamp("1970-01-01"), Some(0));
        assert_eq!(
            parse_timestamp("2011-02-03 04:05:00+0000"),
            Some(1_296_705_900_000)
        );
        assert_eq!(
            parse_timestamp("2011-02-03T04:05:00.123Z"),
            Some(1_296_705_900_123)
        );
        assert_eq!(
            parse_timestamp("2011-02-03 05:05:00+0100"),
            Some(1_296_705_900_000)
        );
        assert_eq!(parse_timestamp("garbage"), None);
    }

    #[test]
    fn out_of_range_int_is_invalid() {
        assert!(literal(&Literal::Int("3000000000".into()), &ColumnType::Int).is_err());
        assert_eq!(
            literal(&Literal::Int("-5".into()), &ColumnType::Int).unwrap(),
            Value::Int(-5)
        );
    }
}
