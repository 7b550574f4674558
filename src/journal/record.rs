//! One journal record: what replaying an async-secondary write needs, and
//! its bytes on disk.
//!
//! A record keeps the request body as it was sent (its write time already
//! in it) with its protocol version and opcode, and for every prepared
//! statement it runs (an EXECUTE's one, a BATCH's prepared children in
//! order) the statement's text and keyspace, so that replay prepares it
//! again on a cluster that has never seen it. A TTL is found again in
//! that text (or in the bound values) when the record is replayed.

use bytes::{Buf, BufMut, Bytes};

/// Now, in Unix milliseconds: the clock records are stamped and aged by.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The format of a record's bytes. Format 1 also kept the TTL and where it
/// was (now found again at replay): it is still read, those fields skipped.
/// A record of a format this proxy does not know is refused.
pub const FORMAT: u8 = 2;

/// A prepared statement a record runs, as replay prepares it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub text: String,
    /// The keyspace it was prepared in (the session's, for unqualified names).
    pub keyspace: Option<String>,
}

/// An async-secondary write, as replay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When the proxy journaled it (Unix milliseconds): a TTL's remainder
    /// and the backlog's age count from here.
    pub written_at_ms: u64,
    /// The write time the write carries (microseconds), on both clusters.
    pub write_time: i64,
    /// The cluster the record is for (the secondary's name).
    pub cluster: String,
    /// The tenant, when the proxy is keyed by tenant.
    pub tenant: Option<String>,
    /// `keyspace.table` of the write (a BATCH's first), for metrics and
    /// dead letters; empty when unknown.
    pub table: String,
    /// The session's keyspace (USE) when the write ran.
    pub keyspace: Option<String>,
    /// The protocol version of `body`.
    pub version: u8,
    /// QUERY, EXECUTE or BATCH.
    pub opcode: u8,
    /// The prepared statements the body runs, in order.
    pub prepared: Vec<Statement>,
    /// The request body as sent to the primary.
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the record ends early")]
    Short,
    #[error("record format {0} is not one this proxy reads (it reads {FORMAT})")]
    Format(u8),
    #[error("a record's text is not UTF-8")]
    Utf8,
}

const HAS_TENANT: u8 = 1;
const HAS_KEYSPACE: u8 = 2;
const V1_HAS_TTL: u8 = 4;
const V1_HAS_TTL_AT: u8 = 8;

impl Record {
    /// The record's bytes (a journal entry's payload after its sequence number).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u8(FORMAT);
        out.put_u64(self.written_at_ms);
        out.put_i64(self.write_time);
        out.put_u8(self.version);
        out.put_u8(self.opcode);
        let mut flags = 0;
        if self.tenant.is_some() {
            flags |= HAS_TENANT;
        }
        if self.keyspace.is_some() {
            flags |= HAS_KEYSPACE;
        }
        out.put_u8(flags);
        put_str(out, &self.cluster);
        put_str(out, &self.table);
        if let Some(t) = &self.tenant {
            put_str(out, t);
        }
        if let Some(k) = &self.keyspace {
            put_str(out, k);
        }
        out.put_u32(self.prepared.len() as u32);
        for s in &self.prepared {
            put_str(out, &s.text);
            match &s.keyspace {
                Some(k) => {
                    out.put_u8(1);
                    put_str(out, k);
                }
                None => out.put_u8(0),
            }
        }
        out.put_u32(self.body.len() as u32);
        out.put_slice(&self.body);
    }

    pub fn decode(mut b: &[u8]) -> Result<Record, RecordError> {
        let format = get_u8(&mut b)?;
        if format != FORMAT && format != 1 {
            return Err(RecordError::Format(format));
        }
        let written_at_ms = get_u64(&mut b)?;
        let write_time = get_u64(&mut b)? as i64;
        let version = get_u8(&mut b)?;
        let opcode = get_u8(&mut b)?;
        let flags = get_u8(&mut b)?;
        let cluster = get_str(&mut b)?;
        let table = get_str(&mut b)?;
        let tenant = (flags & HAS_TENANT != 0)
            .then(|| get_str(&mut b))
            .transpose()?;
        let keyspace = (flags & HAS_KEYSPACE != 0)
            .then(|| get_str(&mut b))
            .transpose()?;
        if format == 1 {
            // The TTL (u32) and where it was (a kind byte and two u32).
            let skip =
                (flags & V1_HAS_TTL != 0) as usize * 4 + (flags & V1_HAS_TTL_AT != 0) as usize * 9;
            if b.len() < skip {
                return Err(RecordError::Short);
            }
            b.advance(skip);
        }
        let n = get_u32(&mut b)? as usize;
        let mut prepared = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let text = get_str(&mut b)?;
            let keyspace = match get_u8(&mut b)? {
                0 => None,
                _ => Some(get_str(&mut b)?),
            };
            prepared.push(Statement { text, keyspace });
        }
        let len = get_u32(&mut b)? as usize;
        if b.len() < len {
            return Err(RecordError::Short);
        }
        let body = Bytes::copy_from_slice(&b[..len]);
        Ok(Record {
            written_at_ms,
            write_time,
            cluster,
            tenant,
            table,
            keyspace,
            version,
            opcode,
            prepared,
            body,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.put_u32(s.len() as u32);
    out.put_slice(s.as_bytes());
}

fn get_u8(b: &mut &[u8]) -> Result<u8, RecordError> {
    if b.is_empty() {
        return Err(RecordError::Short);
    }
    Ok(b.get_u8())
}

fn get_u32(b: &mut &[u8]) -> Result<u32, RecordError> {
    if b.len() < 4 {
        return Err(RecordError::Short);
    }
    Ok(b.get_u32())
}

fn get_u64(b: &mut &[u8]) -> Result<u64, RecordError> {
    if b.len() < 8 {
        return Err(RecordError::Short);
    }
    Ok(b.get_u64())
}

fn get_str(b: &mut &[u8]) -> Result<String, RecordError> {
    let len = get_u32(b)? as usize;
    if b.len() < len {
        return Err(RecordError::Short);
    }
    let s = std::str::from_utf8(&b[..len]).map_err(|_| RecordError::Utf8)?;
    let s = s.to_owned();
    b.advance(len);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u64) -> Record {
        Record {
            written_at_ms: 1_796_000_000_000 + i,
            write_time: 1_796_000_000_000_000 + i as i64,
            cluster: "target".into(),
            tenant: i.is_multiple_of(2).then(|| format!("tenant-{i}")),
            table: "shop.orders".into(),
            keyspace: i.is_multiple_of(3).then(|| "shop".into()),
            version: 4,
            opcode: 0x0A,
            prepared: vec![Statement {
                text: "INSERT INTO orders (id, v) VALUES (?, ?)".into(),
                keyspace: Some("shop".into()),
            }],
            body: Bytes::from(vec![i as u8; 40 + (i as usize % 7)]),
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        for i in 0..30 {
            let r = sample(i);
            let mut b = Vec::new();
            r.encode(&mut b);
            assert_eq!(Record::decode(&b).unwrap(), r);
        }
    }

    #[test]
    fn a_cut_record_is_short_and_another_format_is_named() {
        let mut b = Vec::new();
        sample(3).encode(&mut b);
        for cut in 0..b.len() {
            assert!(Record::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        b[0] = 9;
        assert_eq!(Record::decode(&b), Err(RecordError::Format(9)));
    }

    /// A journal written before TTLs were found again at replay (format 1,
    /// with the TTL and where it was) is still replayed after an upgrade.
    #[test]
    fn a_format_1_record_reads_without_its_ttl_fields() {
        let r = sample(6); // with a tenant and a keyspace
        let mut b = Vec::new();
        r.encode(&mut b);
        // format, written_at, write_time, version, opcode, flags, then the
        // cluster, table, tenant and keyspace strings.
        let strings = [
            &r.cluster,
            &r.table,
            r.tenant.as_ref().unwrap(),
            r.keyspace.as_ref().unwrap(),
        ];
        let at = 1 + 8 + 8 + 1 + 1 + 1 + strings.iter().map(|s| 4 + s.len()).sum::<usize>();
        let mut v1 = b[..at].to_vec();
        v1[0] = 1;
        v1[19] |= V1_HAS_TTL | V1_HAS_TTL_AT;
        v1.extend_from_slice(&3600u32.to_be_bytes());
        v1.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0, 0]);
        v1.extend_from_slice(&b[at..]);
        assert_eq!(Record::decode(&v1).unwrap(), r);
        for cut in 0..v1.len() {
            assert!(Record::decode(&v1[..cut]).is_err(), "cut at {cut}");
        }
    }
}
