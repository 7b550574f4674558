//! The rewrite stage: what each cluster is sent instead of the client's
//! bytes — the proxy's write timestamp, server-side function values (in
//! query text, or bound at a prepared statement's hidden markers). A body
//! is decoded and re-encoded only when it must change.

use super::errors::RequestError;
use super::prepared::PreparedEntry;
use crate::cql::functions::evaluate;
use crate::cql::{Classification, StatementKind};
use crate::protocol::reader::RawValue;
use crate::protocol::ErrorFrame;
use crate::session::SessionState;

/// What a QUERY or EXECUTE needs about write timestamps, decided from its
/// flags alone: a body is decoded and re-encoded only when it must change.
pub(super) struct TimestampPlan {
    /// The proxy adds its timestamp.
    pub add: bool,
    /// The request will carry a fixed write time (the client's or the proxy's).
    pub has_timestamp: bool,
}

impl TimestampPlan {
    pub(super) fn plan(state: &SessionState, c: &Classification, flags: u32) -> TimestampPlan {
        if c.kind != StatementKind::Write {
            return TimestampPlan {
                add: false,
                has_timestamp: c.has_timestamp,
            };
        }
        let client = flags & crate::protocol::request::query_flags::DEFAULT_TIMESTAMP != 0;
        let add = !client && needs_timestamp(state, c);
        TimestampPlan {
            add,
            has_timestamp: add || client || c.has_timestamp,
        }
    }
}

/// Should the proxy give this write its own timestamp?
fn needs_timestamp(state: &SessionState, c: &Classification) -> bool {
    state.proxy.config().writes.add_timestamps
        && c.kind == StatementKind::Write
        && !c.conditional
        && !c.increments
        && !c.has_timestamp
}

/// Does this write get its server-side function calls replaced?
pub(super) fn replacing(state: &SessionState, c: &Classification) -> bool {
    state.proxy.config().writes.replace_server_functions
        && c.kind == StatementKind::Write
        && !c.server_functions.is_empty()
}

/// A literal for a function call in query text (the call itself when unknown).
pub(super) fn literal_for(name: &str) -> String {
    evaluate(name)
        .map(|v| v.literal)
        .unwrap_or_else(|| format!("{name}()"))
}

/// Binds the proxy's values at a prepared statement's hidden markers.
pub(super) fn bind_hidden(
    entry: &PreparedEntry,
    values: &mut Vec<RawValue>,
    named: bool,
) -> Result<(), RequestError> {
    if entry.hidden.is_empty() {
        return Ok(());
    }
    if named {
        return Err(ErrorFrame::invalid(
            "cutover: named bind values cannot be combined with server-side function replacement",
        )
        .into());
    }
    for (index, name) in &entry.hidden {
        let v = evaluate(name)
            .ok_or_else(|| ErrorFrame::server(format!("cutover: unknown function {name}()")))?;
        if *index > values.len() {
            return Err(ErrorFrame::invalid(
                "cutover: fewer bound values than the statement's markers",
            )
            .into());
        }
        values.insert(*index, RawValue::Bytes(v.bytes));
    }
    Ok(())
}

pub(super) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
