//! The request bodies the proxy reads from clients: STARTUP, AUTH_RESPONSE
//! (SASL PLAIN), REGISTER, QUERY, PREPARE, EXECUTE, BATCH, and bound values
//! read in place.
//!
//! Properties: no panic; QUERY, EXECUTE and BATCH decode, encode and decode
//! to the same request (flags aside, which the writer derives from the
//! fields); a value found in place is the value the full decode has there.

use super::allocated_by;
use bytes::Bytes;
use cutover::protocol::bound::BoundValues;
use cutover::protocol::request::{
    read_auth_response, read_register, read_sasl_plain, read_startup, Batch, Execute, Prepare,
    Query, QueryParams,
};

/// What the writer derives rather than keeps: the flags, and names sent
/// for no values at all.
fn normalize(read: &mut QueryParams, written: &QueryParams) {
    read.flags = written.flags;
    if read.values.is_empty() {
        read.names = None;
    }
}

enum Read {
    Query(Option<Query>),
    Execute(Option<Execute>),
    Batch(Option<Batch>),
    Other,
}

pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let version = 3 + mode % 3;
    let body = Bytes::copy_from_slice(rest);
    let kind = (mode / 3) % 8;
    let (read, allocated) = allocated_by(|| match kind {
        0 => {
            let _ = read_startup(&body);
            let _ = read_register(&body);
            Read::Other
        }
        1 => {
            let _ = read_sasl_plain(&body);
            let _ = read_auth_response(&body);
            Read::Other
        }
        2 => Read::Query(Query::read(&body, version).ok()),
        3 => {
            let _ = Prepare::read(&body, version);
            Read::Other
        }
        4 => {
            let _ = BoundValues::of_execute(&body, version).map(|b| b.map(|b| b.find(0, |_| true)));
            Read::Execute(Execute::read(&body, version).ok())
        }
        5 => Read::Batch(Batch::read(&body, version).ok()),
        _ => {
            let _ = Query::read_text(&body);
            let _ = Query::read_flags(&body, version);
            let _ = Execute::read_id(&body);
            let _ = Execute::read_flags(&body, version);
            Read::Other
        }
    });
    match read {
        Read::Query(Some(mut q)) => {
            let again = Query::read(&q.encode(version), version).expect("re-read");
            if let Ok(Some(found)) = BoundValues::of_query(&body, version) {
                if q.params.names.is_none() {
                    for (i, v) in q.params.values.iter().enumerate() {
                        assert_eq!(found.find(i, |_| false).as_ref(), Some(v));
                    }
                }
            }
            normalize(&mut q.params, &again.params);
            assert_eq!(q, again);
        }
        Read::Execute(Some(mut e)) => {
            let again = Execute::read(&e.encode(version), version).expect("re-read");
            normalize(&mut e.params, &again.params);
            assert_eq!(e, again);
        }
        Read::Batch(Some(b)) => {
            let again = Batch::read(&b.encode(version), version).expect("re-read");
            assert_eq!(b, again);
        }
        _ => {}
    }
    // Reading copies strings and values once, into vectors of small
    // structs (an empty string pair of 4 bytes becomes 48): a constant
    // factor, never a count bought for free.
    assert!(
        allocated <= 64 * rest.len() + 4096,
        "{allocated} bytes allocated reading a {}-byte body",
        rest.len()
    );
}
