//! The response bodies the proxy reads from clusters: RESULT of every kind
//! (ROWS, PREPARED with its metadata, SET_KEYSPACE, SCHEMA_CHANGE, VOID),
//! ERROR with its extras, EVENT, SUPPORTED, and the paging state.
//!
//! Properties: no panic; a reader never allocates more than a small
//! multiple of its input (a count from the wire must not buy memory);
//! ROWS and PREPARED read back what they encode to; ERROR too.

use super::allocated_by;
use bytes::Bytes;
use cutover::protocol::response::{
    prepared, read_event_type, read_paging_state, read_result_kind, read_supported, rows,
    ResultBody,
};
use cutover::protocol::ErrorFrame;

pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let version = 3 + mode % 3;
    let body = Bytes::copy_from_slice(rest);
    let (result, allocated) = allocated_by(|| {
        let _ = read_result_kind(&body);
        let _ = read_paging_state(&body);
        let _ = read_event_type(&body);
        let _ = read_supported(&body);
        let _ = ErrorFrame::decode(&body);
        ResultBody::read(&body, version)
    });
    assert!(
        allocated <= 64 * rest.len() + 4096,
        "{allocated} bytes allocated reading a {}-byte body",
        rest.len()
    );
    match result {
        Ok(ResultBody::Rows(r)) => {
            let again = ResultBody::read(&rows(&r.metadata, &r.rows), version).expect("re-read");
            let ResultBody::Rows(again) = again else {
                panic!("ROWS read back as {again:?}")
            };
            assert_eq!(again.rows, r.rows);
            assert_eq!(again.metadata.column_count, r.metadata.column_count);
            assert_eq!(again.metadata.paging_state, r.metadata.paging_state);
            if !r.metadata.no_metadata {
                assert_eq!(again.metadata.columns, r.metadata.columns);
            }
        }
        Ok(ResultBody::Prepared(p)) => {
            let again = ResultBody::read(&prepared(&p, version), version).expect("re-read");
            let ResultBody::Prepared(again) = again else {
                panic!("PREPARED read back as {again:?}")
            };
            assert_eq!(again.id, p.id);
            assert_eq!(again.bind.columns, p.bind.columns);
            assert_eq!(again.pk_indexes, p.pk_indexes);
        }
        _ => {}
    }
    if let Ok(e) = ErrorFrame::decode(&body) {
        assert_eq!(ErrorFrame::decode(&e.encode()).expect("re-read"), e);
    }
}
