//! A cursor over a frame body that reads the spec's `[notation]` types.

use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body ended early: needed {needed} more byte(s) at offset {at} while reading {what}")]
    Truncated {
        what: &'static str,
        at: usize,
        needed: usize,
    },
    #[error("{what} is not valid UTF-8")]
    Utf8 { what: &'static str },
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("{what} of {count} cannot fit in the {remaining} byte(s) left of the body (each needs at least {each})")]
    CountTooLarge {
        what: &'static str,
        count: i64,
        each: usize,
        remaining: usize,
    },
    #[error("{what} nested deeper than {limit} levels")]
    TooDeep { what: &'static str, limit: usize },
}

/// A bound or returned value: `None` is null; `Unset` is v4's "not set".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawValue {
    Null,
    Unset,
    Bytes(Bytes),
}

#[derive(Clone)]
pub struct BodyReader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> BodyReader<'a> {
    pub fn new(buf: &'a Bytes) -> BodyReader<'a> {
        BodyReader { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], BodyError> {
        if self.remaining() < n {
            return Err(BodyError::Truncated {
                what,
                at: self.pos,
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn take_bytes(&mut self, n: usize, what: &'static str) -> Result<Bytes, BodyError> {
        if self.remaining() < n {
            return Err(BodyError::Truncated {
                what,
                at: self.pos,
                needed: n - self.remaining(),
            });
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    pub fn byte(&mut self) -> Result<u8, BodyError> {
        Ok(self.take(1, "byte")?[0])
    }

    pub fn short(&mut self) -> Result<u16, BodyError> {
        let b = self.take(2, "short")?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn int(&mut self) -> Result<i32, BodyError> {
        let b = self.take(4, "int")?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn long(&mut self) -> Result<i64, BodyError> {
        let b = self.take(8, "long")?;
        Ok(i64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    pub fn string(&mut self) -> Result<&'a str, BodyError> {
        let n = self.short()? as usize;
        let b = self.take(n, "string")?;
        std::str::from_utf8(b).map_err(|_| BodyError::Utf8 { what: "string" })
    }

    pub fn long_string(&mut self) -> Result<&'a str, BodyError> {
        let n = self.int()?;
        if n < 0 {
            return Err(BodyError::Invalid {
                what: "long string",
                detail: format!("negative length {n}"),
            });
        }
        let b = self.take(n as usize, "long string")?;
        std::str::from_utf8(b).map_err(|_| BodyError::Utf8 {
            what: "long string",
        })
    }

    /// `[bytes]`: an int length, negative meaning null.
    pub fn bytes(&mut self) -> Result<Option<Bytes>, BodyError> {
        let n = self.int()?;
        if n < 0 {
            return Ok(None);
        }
        Ok(Some(self.take_bytes(n as usize, "bytes")?))
    }

    pub fn short_bytes(&mut self) -> Result<Bytes, BodyError> {
        let n = self.short()? as usize;
        self.take_bytes(n, "short bytes")
    }

    /// `[value]`: like `[bytes]` but -2 means "unset".
    pub fn value(&mut self) -> Result<RawValue, BodyError> {
        let n = self.int()?;
        match n {
            -2 => Ok(RawValue::Unset),
            n if n < 0 => Ok(RawValue::Null),
            n => Ok(RawValue::Bytes(self.take_bytes(n as usize, "value")?)),
        }
    }

    pub fn string_list(&mut self) -> Result<Vec<&'a str>, BodyError> {
        let n = self.short_count("string list size", 2)?;
        (0..n).map(|_| self.string()).collect()
    }

    pub fn string_map(&mut self) -> Result<Vec<(&'a str, &'a str)>, BodyError> {
        let n = self.short_count("string map size", 4)?;
        (0..n)
            .map(|_| Ok((self.string()?, self.string()?)))
            .collect()
    }

    pub fn string_multimap(&mut self) -> Result<Vec<(&'a str, Vec<&'a str>)>, BodyError> {
        let n = self.short_count("string multimap size", 4)?;
        (0..n)
            .map(|_| Ok((self.string()?, self.string_list()?)))
            .collect()
    }

    /// A count of items that follow, each taking at least `each` bytes of
    /// the body: one that cannot fit in what is left is refused before the
    /// caller allocates or loops on it. `each` counts as at least 1, so the
    /// work a count buys is bounded by the input even for items of no bytes.
    pub fn fits(&self, what: &'static str, count: i64, each: usize) -> Result<usize, BodyError> {
        let too_large = || BodyError::CountTooLarge {
            what,
            count,
            each: each.max(1),
            remaining: self.remaining(),
        };
        if count < 0 {
            return Err(BodyError::Invalid {
                what,
                detail: format!("negative count {count}"),
            });
        }
        let n = usize::try_from(count).map_err(|_| too_large())?;
        match n.checked_mul(each.max(1)) {
            Some(need) if need <= self.remaining() => Ok(n),
            _ => Err(too_large()),
        }
    }

    /// A `[short]` count of items of at least `each` bytes (see `fits`).
    pub fn short_count(&mut self, what: &'static str, each: usize) -> Result<usize, BodyError> {
        let n = self.short()?;
        self.fits(what, n.into(), each)
    }

    /// An `[int]` count of items of at least `each` bytes (see `fits`).
    pub fn int_count(&mut self, what: &'static str, each: usize) -> Result<usize, BodyError> {
        let n = self.int()?;
        self.fits(what, n.into(), each)
    }

    pub fn rest(&mut self) -> Bytes {
        let b = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_that_cannot_fit_is_refused_before_use() {
        let body = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        let mut r = BodyReader::new(&body);
        let e = r.int_count("row count", 4).unwrap_err();
        assert!(
            matches!(
                e,
                BodyError::CountTooLarge {
                    count: 2147483647,
                    remaining: 4,
                    ..
                }
            ),
            "{e}"
        );
        let mut r = BodyReader::new(&body);
        r.int().unwrap();
        assert_eq!(r.fits("rows", 4, 1).unwrap(), 4);
        assert!(
            r.fits("rows", 5, 0).is_err(),
            "items of no bytes still cost one each"
        );
        assert!(r.fits("rows", -1, 4).is_err());
        let list = Bytes::from_static(&[0xff, 0xff, 0, 1, b'a']);
        let e = BodyReader::new(&list).string_list().unwrap_err();
        assert!(e.to_string().contains("string list size of 65535"), "{e}");
    }
}
