//! The request context's first stages: what a QUERY, EXECUTE or BATCH
//! turned out to be (its class, its tenants, its bound values), its
//! admission under them, and whether it may be sent again.

use super::decide::{admit, Admission};
use super::errors::{malformed, RequestError};
use crate::cql::{Classification, StatementKind, TableKey};
use crate::metrics::OpClass;
use crate::protocol::bound::BoundValues;
use crate::protocol::ErrorFrame;
use crate::routing::tenant::{Bound, Resolved, Values};
use crate::routing::RoutePolicy;
use crate::session::{SessionState, Stamp};

/// The operation class of a statement, for the latency series.
pub fn op_class(kind: StatementKind) -> OpClass {
    match kind {
        StatementKind::Read => OpClass::Read,
        StatementKind::Write => OpClass::Write,
        _ => OpClass::Other,
    }
}

/// Notes on the request's stamp what it turned out to be (read, write or
/// other, and its tenant's series) and returns the tenants its keyspace or
/// tenant column names (checked by `admit`, under the snapshot the request
/// is admitted under). Refused: a write to a tenant-keyed table
/// that names no tenant the proxy can read.
pub(super) fn note(
    state: &SessionState,
    stamp: &mut Stamp,
    c: &Classification,
    keys: &[TableKey],
    keyspace: Option<&str>,
    bound: Option<&Bound<'_>>,
) -> Result<Resolved, RequestError> {
    stamp.op = op_class(c.kind);
    let r = state
        .proxy
        .routing()
        .tenants()
        .resolve(c, keys, keyspace, bound);
    if let Some(table) = r
        .unnamed
        .as_ref()
        .filter(|_| c.kind == StatementKind::Write)
    {
        let column = state.proxy.routing().tenants().column().unwrap_or_default();
        return Err(ErrorFrame::invalid(format!(
            "cutover: this write to {table} names no tenant the proxy can read: tenants are keyed by the column {column}, so give it as a literal or a bind marker ({column} = ? or {column} IN ?) of type text, int or uuid"
        )).into());
    }
    stamp.tenant = r.first.as_ref().and_then(|t| t.metrics);
    Ok(r)
}

/// A QUERY's or EXECUTE's tenants (`note`), and its admission under them.
pub(super) fn admit_statement<'s>(
    state: &'s SessionState,
    stamp: &mut Stamp,
    c: &Classification,
    keys: &[TableKey],
    keyspace: Option<&str>,
    bound: Option<&Bound<'_>>,
    started: &RoutePolicy,
) -> Result<Admission<'s>, RequestError> {
    let named = note(state, stamp, c, keys, keyspace, bound)?;
    let first = named.first.as_ref().map(|t| t.name.clone());
    admit(
        state,
        started,
        c.kind,
        first,
        named.names(),
        "statement names",
    )
}

/// The values a QUERY or EXECUTE binds, located (not decoded) only when
/// the tenant column needs them.
pub(super) fn bound_values<'a>(
    state: &SessionState,
    keys: &[TableKey],
    types: &'a [Option<crate::protocol::ColumnType>],
    find: impl FnOnce() -> Result<Option<BoundValues<'a>>, crate::protocol::reader::BodyError>,
) -> Result<Option<Bound<'a>>, RequestError> {
    if !state.proxy.routing().tenants().needs_values(keys) {
        return Ok(None);
    }
    Ok(find().map_err(malformed)?.map(|v| Bound {
        values: Values::InPlace(v),
        types,
    }))
}

/// Whether a QUERY or EXECUTE continues a paged result (carries a paging
/// state), from its flags.
pub(super) fn continues(flags: u32) -> bool {
    flags & crate::protocol::request::query_flags::PAGING_STATE != 0
}

/// Can this request be sent again after its connection closed under it,
/// without risk of applying twice? Reads, USE, and writes that carry a fixed
/// timestamp (the proxy's or the client's) and are neither conditional nor
/// increments: replaying them writes the same cells at the same time.
pub(super) fn idempotent(c: &Classification, has_timestamp: bool) -> bool {
    match c.kind {
        StatementKind::Read | StatementKind::Use => true,
        StatementKind::Write => has_timestamp && !c.conditional && !c.increments,
        _ => false,
    }
}
