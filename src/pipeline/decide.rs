//! The pipeline's side of routing: a request is admitted (the read-only
//! fence, the snapshot that judges it) and its plan decided by
//! `routing::decide`, from the session's facts; a refusal becomes the
//! client's CQL ERROR here.

use std::sync::Arc;

use super::errors::RequestError;
use crate::cql::StatementKind;
use crate::protocol::{ErrorCode, ErrorFrame};
use crate::proxy::Proxy;
pub(super) use crate::routing::admit::Admission;
use crate::routing::decide::{self, Facts, Refusal, Route, Statement};
use crate::routing::ClusterId;
use crate::routing::RoutePolicy;
use crate::session::SessionState;

impl From<Refusal> for ErrorFrame {
    fn from(r: Refusal) -> ErrorFrame {
        let code = match r {
            Refusal::Tenant { .. } | Refusal::SchemaChange => ErrorCode::UNAUTHORIZED,
            Refusal::MixedRoutes { .. } => ErrorCode::INVALID,
        };
        ErrorFrame::new(code, r.to_string())
    }
}

/// Admits a request of `kind` routed by `tenant` and naming `tenants`
/// (`what` names it in a refusal): `routing::admit` with the proxy's fence
/// and policy.
pub(super) fn admit<'s, 't>(
    state: &'s SessionState,
    started: &RoutePolicy,
    kind: StatementKind,
    tenant: Option<Arc<str>>,
    tenants: impl Iterator<Item = Option<&'t str>> + Clone,
    what: &str,
) -> Result<Admission<'s>, RequestError> {
    Ok(crate::routing::admit::admit(
        state.proxy.routing().fence(),
        state.proxy.routing().store(),
        started,
        kind,
        tenant,
        tenants,
        what,
    )?)
}

/// The plan of statement `s` under `policy`, from the session's facts.
pub(super) fn plan(
    state: &SessionState,
    policy: &RoutePolicy,
    s: Statement<'_>,
) -> Result<Route, RequestError> {
    // Only a USE needs them (it reaches every connected cluster); asking
    // takes a lock and a Vec, which no other request should pay for.
    let connected = if s.kind == StatementKind::Use && s.continues_on.is_none() && !s.system_table {
        state.connected()
    } else {
        Vec::new()
    };
    let facts = Facts {
        ddl: state.proxy.config().ddl,
        column_tenants: state.proxy.routing().tenants().column().is_some(),
        connected: &connected,
    };
    Ok(decide::decide(
        s,
        policy,
        state.proxy.routing().shards(),
        facts,
    )?)
}

/// Where a PREPARE goes: every cluster of the tenant's phase.
pub(super) fn prepare_clusters(
    proxy: &Proxy,
    policy: &RoutePolicy,
    tenant: Option<&str>,
) -> Vec<ClusterId> {
    decide::prepare_clusters(policy, proxy.routing().shards(), tenant)
}
