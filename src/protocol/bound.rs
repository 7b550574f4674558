//! A QUERY's or EXECUTE's bound values, read in place.

use bytes::Bytes;

use super::reader::{BodyError, BodyReader, RawValue};
use super::request::{query_flags, read_flags};

/// A QUERY's or EXECUTE's bound values read where they lie in the body:
/// one value is found without decoding the others or the rest of the
/// request (what the tenant column needs on the hot path).
#[derive(Clone)]
pub struct BoundValues<'a> {
    /// At the first value (or its name).
    at: BodyReader<'a>,
    count: u16,
    named: bool,
}

impl<'a> BoundValues<'a> {
    /// `r` is at the parameters' consistency; None without values.
    fn at_params(mut r: BodyReader<'a>, version: u8) -> Result<Option<BoundValues<'a>>, BodyError> {
        r.short()?;
        let flags = read_flags(&mut r, version)?;
        if flags & query_flags::VALUES == 0 {
            return Ok(None);
        }
        let named = flags & query_flags::NAMES_FOR_VALUES != 0;
        let count = r.short_count("value count", if named { 6 } else { 4 })? as u16;
        Ok(Some(BoundValues {
            at: r,
            count,
            named,
        }))
    }

    pub fn of_query(body: &'a Bytes, version: u8) -> Result<Option<BoundValues<'a>>, BodyError> {
        let mut r = BodyReader::new(body);
        r.long_string()?;
        BoundValues::at_params(r, version)
    }

    pub fn of_execute(body: &'a Bytes, version: u8) -> Result<Option<BoundValues<'a>>, BodyError> {
        let mut r = BodyReader::new(body);
        r.short_bytes()?;
        if version >= 5 {
            r.short_bytes()?;
        }
        BoundValues::at_params(r, version)
    }

    /// Whether the values were sent with names.
    pub fn named(&self) -> bool {
        self.named
    }

    /// The value at `index`, or with named values the first whose name
    /// `name` accepts.
    pub fn find(&self, index: usize, name: impl Fn(&str) -> bool) -> Option<RawValue> {
        let mut r = self.at.clone();
        for i in 0..self.count as usize {
            let matches = if self.named {
                name(r.string().ok()?)
            } else {
                i == index
            };
            if matches {
                return r.value().ok();
            }
            // Skipped without copying: a length and that many bytes.
            r.value().ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::request::{Execute, Query, QueryParams};

    fn v(b: &'static [u8]) -> RawValue {
        RawValue::Bytes(Bytes::from_static(b))
    }

    #[test]
    fn one_value_is_found_by_index_or_name() {
        for version in [3, 4, 5] {
            let params = QueryParams {
                consistency: 1,
                values: vec![v(b"a"), RawValue::Null, v(b"ccc")],
                page_size: Some(100),
                ..Default::default()
            };
            let e = Execute {
                id: Bytes::from_static(&[1; 16]),
                result_metadata_id: (version >= 5).then(|| Bytes::from_static(&[2; 16])),
                params: params.clone(),
            }
            .encode(version);
            let found = BoundValues::of_execute(&e, version).unwrap().unwrap();
            assert_eq!(found.find(2, |_| false), Some(v(b"ccc")));
            assert_eq!(found.find(1, |_| false), Some(RawValue::Null));
            assert_eq!(found.find(3, |_| false), None);
            let named = Query {
                text: "SELECT * FROM t WHERE a = :x AND b = :y".into(),
                params: QueryParams {
                    names: Some(vec!["x".into(), "y".into(), "z".into()]),
                    ..params.clone()
                },
            }
            .encode(version);
            let found = BoundValues::of_query(&named, version).unwrap().unwrap();
            assert!(found.named());
            assert_eq!(found.find(0, |n| n == "z"), Some(v(b"ccc")));
            assert_eq!(found.find(0, |n| n == "w"), None);
            let none = Query {
                text: "SELECT * FROM t".into(),
                params: QueryParams::default(),
            }
            .encode(version);
            assert!(BoundValues::of_query(&none, version).unwrap().is_none());
        }
    }
}
