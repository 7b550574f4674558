//! A journaled write's TTLs as what remains of them when it is replayed.
//!
//! The origin counts a TTL from when it took the write; a replay that sent
//! the same TTL would keep the target's cells longer. So each statement's
//! TTL is found again in its text (the QUERY's, or the prepared statement's
//! the record keeps) — a literal `USING TTL 3600`, a `?` or a `:name`
//! marker — and set to what remains, counted from when the record was
//! journaled. A statement whose TTL has run out is not replayed: a record
//! of one such statement is expired, and a BATCH loses that child.
//!
//! A literal in a prepared statement cannot change without a new
//! statement, so that EXECUTE (or BATCH child) is replayed as the same
//! text run unprepared, with the same bound values.

use std::ops::Range;

use bytes::Bytes;

use super::replay::Outcome;
use super::{Record, Statement};
use crate::cql::{classify, Ttl};
use crate::frame::Opcode;
use crate::protocol::reader::RawValue;
use crate::protocol::request::{Batch, BatchStatement, Execute, Query};

/// What replay sends for a record.
#[derive(Debug)]
pub(super) struct Plan {
    pub op: Opcode,
    pub body: Bytes,
    /// The prepared statements `body` runs, in order.
    pub prepared: Vec<Statement>,
    /// The keyspace of the connection it goes on.
    pub keyspace: Option<String>,
}

/// Where a statement's TTL is.
enum At {
    Text(Range<usize>),
    Value(usize),
}

/// A statement's TTL (seconds, above 0) and where it is.
fn find(text: &str, values: &[RawValue], names: Option<&[String]>) -> Option<(u32, At)> {
    let value = |i: usize| match values.get(i) {
        Some(RawValue::Bytes(b)) if b.len() == 4 => {
            let n = i32::from_be_bytes(b[..].try_into().unwrap());
            (n > 0).then_some((n as u32, At::Value(i)))
        }
        _ => None,
    };
    match classify(text, None).ok()?.ttl? {
        Ttl::Literal { seconds, span } => (seconds > 0).then_some((seconds, At::Text(span))),
        Ttl::Marker(i) => match names {
            None => value(i),
            Some(_) => None,
        },
        Ttl::Named { name, index } => match names {
            None => value(index),
            Some(names) => value(names.iter().position(|n| n.eq_ignore_ascii_case(&name))?),
        },
    }
}

/// What is left of a TTL `elapsed_ms` after the write: None when it has
/// run out; at least one second otherwise.
fn remaining(ttl: u32, elapsed_ms: u64) -> Option<u32> {
    (elapsed_ms < ttl as u64 * 1000).then(|| (ttl - (elapsed_ms / 1000) as u32).max(1))
}

fn with_text(text: &str, span: Range<usize>, seconds: u32) -> String {
    let mut t = text.to_string();
    t.replace_range(span, &seconds.to_string());
    t
}

fn int(seconds: u32) -> RawValue {
    RawValue::Bytes(Bytes::copy_from_slice(&(seconds as i32).to_be_bytes()))
}

/// `r` as replay sends it `now_ms`: its TTLs what remains of them.
pub(super) fn plan(r: &Record, now_ms: u64) -> Result<Plan, Outcome> {
    let op = Opcode::from_u8(r.opcode)
        .filter(|o| matches!(o, Opcode::Query | Opcode::Execute | Opcode::Batch))
        .ok_or_else(|| Outcome::Dead(format!("opcode {:#04x} is not a write", r.opcode)))?;
    let as_is = Plan {
        op,
        body: r.body.clone(),
        prepared: r.prepared.clone(),
        keyspace: r.keyspace.clone(),
    };
    let elapsed_ms = now_ms.saturating_sub(r.written_at_ms);
    if elapsed_ms < 1000 {
        return Ok(as_is);
    }
    let bad = |e: crate::protocol::BodyError| {
        Outcome::Dead(format!("the journaled request cannot be read: {e}"))
    };
    let v = r.version;
    match op {
        Opcode::Query => {
            let mut q = Query::read(&r.body, v).map_err(bad)?;
            let Some((ttl, at)) = find(&q.text, &q.params.values, q.params.names.as_deref()) else {
                return Ok(as_is);
            };
            let left = remaining(ttl, elapsed_ms).ok_or(Outcome::Expired)?;
            match at {
                At::Text(span) => q.text = with_text(&q.text, span, left),
                At::Value(i) => q.params.values[i] = int(left),
            }
            Ok(Plan {
                body: q.encode(v),
                ..as_is
            })
        }
        Opcode::Execute => {
            let s = r
                .prepared
                .first()
                .ok_or_else(|| Outcome::Dead("an EXECUTE record without its statement".into()))?;
            let mut e = Execute::read(&r.body, v).map_err(bad)?;
            let Some((ttl, at)) = find(&s.text, &e.params.values, e.params.names.as_deref()) else {
                return Ok(as_is);
            };
            let left = remaining(ttl, elapsed_ms).ok_or(Outcome::Expired)?;
            match at {
                At::Text(span) => Ok(Plan {
                    op: Opcode::Query,
                    body: Query {
                        text: with_text(&s.text, span, left),
                        params: e.params,
                    }
                    .encode(v),
                    prepared: Vec::new(),
                    keyspace: s.keyspace.clone(),
                }),
                At::Value(i) => {
                    e.params.values[i] = int(left);
                    Ok(Plan {
                        body: e.encode(v),
                        ..as_is
                    })
                }
            }
        }
        _ => {
            let mut b = Batch::read(&r.body, v).map_err(bad)?;
            let mut statements = r.prepared.iter();
            let mut prepared = Vec::new();
            let mut children = Vec::with_capacity(b.children.len());
            for mut child in std::mem::take(&mut b.children) {
                let s = match &child.statement {
                    BatchStatement::Prepared(_) => Some(statements.next().ok_or_else(|| {
                        Outcome::Dead(
                            "a BATCH record with fewer statements than prepared children".into(),
                        )
                    })?),
                    BatchStatement::Query(_) => None,
                };
                let text = match (&child.statement, s) {
                    (BatchStatement::Query(t), _) => t.clone(),
                    (_, Some(s)) => s.text.clone(),
                    (_, None) => unreachable!("a prepared child has its statement"),
                };
                match find(&text, &child.values, None) {
                    None => {}
                    Some((ttl, at)) => {
                        let Some(left) = remaining(ttl, elapsed_ms) else {
                            // Gone on the origin: not written again.
                            continue;
                        };
                        match at {
                            At::Value(i) => child.values[i] = int(left),
                            // A prepared child runs unprepared only in the
                            // keyspace the batch runs in.
                            At::Text(span) if s.is_none_or(|s| s.keyspace == r.keyspace) => {
                                child.statement =
                                    BatchStatement::Query(with_text(&text, span, left));
                            }
                            At::Text(_) => {}
                        }
                    }
                }
                if let (BatchStatement::Prepared(_), Some(s)) = (&child.statement, s) {
                    prepared.push(s.clone());
                }
                children.push(child);
            }
            if children.is_empty() {
                return Err(Outcome::Expired);
            }
            b.children = children;
            Ok(Plan {
                body: b.encode(v),
                prepared,
                ..as_is
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::request::{BatchChild, QueryParams};

    const NOW: u64 = 1_796_000_000_000;

    fn record(op: Opcode, body: Bytes, prepared: Vec<Statement>, age_ms: u64) -> Record {
        Record {
            written_at_ms: NOW - age_ms,
            write_time: 1,
            cluster: "target".into(),
            tenant: None,
            table: "ks.t".into(),
            keyspace: Some("ks".into()),
            version: 4,
            opcode: op as u8,
            prepared,
            body,
        }
    }

    fn params(values: Vec<RawValue>, names: Option<Vec<String>>) -> QueryParams {
        QueryParams {
            consistency: 1,
            flags: 0,
            values,
            names,
            page_size: None,
            paging_state: None,
            serial_consistency: None,
            timestamp: Some(7),
            keyspace: None,
            now_in_seconds: None,
        }
    }

    fn stmt(text: &str) -> Statement {
        Statement {
            text: text.into(),
            keyspace: Some("ks".into()),
        }
    }

    fn ttl_value(v: &RawValue) -> i32 {
        match v {
            RawValue::Bytes(b) => i32::from_be_bytes(b[..].try_into().unwrap()),
            other => panic!("not an int: {other:?}"),
        }
    }

    #[test]
    fn a_query_literal_and_a_bound_ttl_lose_the_seconds_since_journaled() {
        let q = Query {
            text: "INSERT INTO t (k) VALUES (1) USING TTL 3600".into(),
            params: params(vec![], None),
        };
        let p = plan(&record(Opcode::Query, q.encode(4), vec![], 10_500), NOW).unwrap();
        let sent = Query::read(&p.body, 4).unwrap();
        assert_eq!(sent.text, "INSERT INTO t (k) VALUES (1) USING TTL 3590");
        assert_eq!(sent.params.timestamp, Some(7));

        let q = Query {
            text: "INSERT INTO t (k) VALUES (?) USING TTL :life".into(),
            params: params(
                vec![int(1), int(100)],
                Some(vec!["k".into(), "LIFE".into()]),
            ),
        };
        let p = plan(&record(Opcode::Query, q.encode(4), vec![], 30_000), NOW).unwrap();
        assert_eq!(
            ttl_value(&Query::read(&p.body, 4).unwrap().params.values[1]),
            70
        );
    }

    #[test]
    fn a_prepared_literal_ttl_runs_as_the_same_text_unprepared() {
        let s = stmt("INSERT INTO t (k, v) VALUES (?, ?) USING TTL 600");
        let e = Execute {
            id: Bytes::from_static(b"id"),
            result_metadata_id: None,
            params: params(vec![int(1), int(2)], None),
        };
        let p = plan(&record(Opcode::Execute, e.encode(4), vec![s], 60_000), NOW).unwrap();
        assert_eq!((p.op, p.prepared.len()), (Opcode::Query, 0));
        assert_eq!(p.keyspace.as_deref(), Some("ks"));
        let q = Query::read(&p.body, 4).unwrap();
        assert_eq!(q.text, "INSERT INTO t (k, v) VALUES (?, ?) USING TTL 540");
        assert_eq!(q.params.values, vec![int(1), int(2)]);
        assert_eq!(q.params.timestamp, Some(7));
    }

    #[test]
    fn a_prepared_marker_ttl_is_rebound_and_the_statement_kept() {
        let s = stmt("UPDATE t USING TTL :ttl SET v = :v WHERE k = :k");
        let e = Execute {
            id: Bytes::from_static(b"id"),
            result_metadata_id: None,
            params: params(vec![int(50), int(2), int(3)], None),
        };
        let p = plan(
            &record(Opcode::Execute, e.encode(4), vec![s.clone()], 20_000),
            NOW,
        )
        .unwrap();
        assert_eq!((p.op, p.prepared), (Opcode::Execute, vec![s]));
        assert_eq!(
            ttl_value(&Execute::read(&p.body, 4).unwrap().params.values[0]),
            30
        );
    }

    #[test]
    fn an_expired_statement_is_not_replayed_and_a_batch_loses_only_that_child() {
        let q = Query {
            text: "INSERT INTO t (k) VALUES (1) USING TTL 5".into(),
            params: params(vec![], None),
        };
        let r = record(Opcode::Query, q.encode(4), vec![], 5_000);
        assert_eq!(plan(&r, NOW).unwrap_err(), Outcome::Expired);

        let child = |statement, values| BatchChild { statement, values };
        let b = Batch {
            kind: 0,
            children: vec![
                child(
                    BatchStatement::Query("INSERT INTO t (k) VALUES (1) USING TTL 2".into()),
                    vec![],
                ),
                child(
                    BatchStatement::Prepared(Bytes::from_static(b"a")),
                    vec![int(9)],
                ),
                child(
                    BatchStatement::Prepared(Bytes::from_static(b"b")),
                    vec![int(4)],
                ),
                child(
                    BatchStatement::Query("INSERT INTO t (k) VALUES (2)".into()),
                    vec![],
                ),
            ],
            consistency: 1,
            serial_consistency: None,
            timestamp: Some(7),
            keyspace: None,
            now_in_seconds: None,
        };
        let prepared = vec![
            stmt("INSERT INTO t (k) VALUES (?) USING TTL 100"),
            stmt("INSERT INTO t (k, v) VALUES (3, 3) USING TTL ?"),
        ];
        let r = record(Opcode::Batch, b.encode(4), prepared.clone(), 3_000);
        let p = plan(&r, NOW).unwrap();
        let sent = Batch::read(&p.body, 4).unwrap();
        assert_eq!(sent.children.len(), 3, "the expired child is dropped");
        assert_eq!(
            sent.children[0].statement,
            BatchStatement::Query("INSERT INTO t (k) VALUES (?) USING TTL 97".into())
        );
        assert_eq!(sent.children[0].values, vec![int(9)]);
        assert_eq!(ttl_value(&sent.children[1].values[0]), 1);
        assert_eq!(p.prepared, prepared[1..].to_vec());
        assert_eq!(sent.timestamp, Some(7));

        // All of a batch's children gone: the record is.
        let r = record(Opcode::Batch, b.encode(4), prepared, 200_000);
        let only_expiring = Batch {
            children: b.children[..3].to_vec(),
            ..b
        };
        let r = Record {
            body: only_expiring.encode(4),
            ..r
        };
        assert_eq!(plan(&r, NOW).unwrap_err(), Outcome::Expired);
    }

    #[test]
    fn within_the_first_second_or_without_a_ttl_the_body_is_sent_as_it_is() {
        let q = Query {
            text: "INSERT INTO t (k) VALUES (1) USING TTL 3600".into(),
            params: params(vec![], None),
        };
        let body = q.encode(4);
        let p = plan(&record(Opcode::Query, body.clone(), vec![], 900), NOW).unwrap();
        assert_eq!(p.body, body);
        let q = Query {
            text: "INSERT INTO t (k) VALUES (1)".into(),
            params: params(vec![], None),
        };
        let body = q.encode(4);
        let p = plan(&record(Opcode::Query, body.clone(), vec![], 90_000), NOW).unwrap();
        assert_eq!(p.body, body);
    }
}
