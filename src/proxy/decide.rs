//! The pipeline's side of routing: a request is admitted (the read-only
//! fence, the snapshot that judges it) and its plan decided by
//! `routing::decide`, from the session's facts; a refusal becomes the
//! client's CQL ERROR here.

use std::sync::Arc;

use super::session::SessionState;
use super::{ClusterId, Proxy};
use crate::cql::StatementKind;
use crate::protocol::{ErrorCode, ErrorFrame};
use crate::routing::decide::{self, Facts, Refusal, Route, Statement};
use crate::routing::RoutePolicy;

impl From<Refusal> for ErrorFrame {
    fn from(r: Refusal) -> ErrorFrame {
        let code = match r {
            Refusal::Tenant { .. } | Refusal::SchemaChange => ErrorCode::UNAUTHORIZED,
            Refusal::MixedRoutes { .. } => ErrorCode::INVALID,
        };
        ErrorFrame::new(code, r.to_string())
    }
}

/// A request admitted with its tenants: a tenant's write registers with the
/// read-only fence *before* it takes the snapshot that judges it (held
/// until the request is answered); other requests keep the snapshot they
/// started with.
pub(super) struct Admission<'s> {
    /// The tenant the request is routed by: the first one it names.
    pub tenant: Option<Arc<str>>,
    _fence: Option<crate::routing::fence::Admitted<'s>>,
    snapshot: Option<Arc<RoutePolicy>>,
}

impl Admission<'_> {
    /// The snapshot that judges the request.
    pub fn policy<'a>(&'a self, started: &'a RoutePolicy) -> &'a RoutePolicy {
        self.snapshot.as_deref().unwrap_or(started)
    }
}

/// Admits a request routed by `tenant` and naming `tenants` (`what` names
/// it in a refusal), and checks them with `one_route` under the snapshot
/// that judges it.
pub(super) fn admit<'s, 't>(
    state: &'s SessionState,
    started: &RoutePolicy,
    kind: StatementKind,
    tenant: Option<Arc<str>>,
    tenants: impl Iterator<Item = Option<&'t str>> + Clone,
    what: &str,
) -> Result<Admission<'s>, ErrorFrame> {
    let (fence, snapshot) = if decide::writes(kind) && tenant.is_some() {
        let fence = state.proxy.fence.enter();
        (Some(fence), Some(state.proxy.policy()))
    } else {
        (None, None)
    };
    let a = Admission {
        tenant,
        _fence: fence,
        snapshot,
    };
    decide::one_route(a.policy(started), kind, tenants, what)?;
    Ok(a)
}

/// The plan of statement `s` under `policy`, from the session's facts.
pub(super) fn plan(
    state: &SessionState,
    policy: &RoutePolicy,
    s: Statement<'_>,
) -> Result<Route, ErrorFrame> {
    let connected = state.connected();
    let facts = Facts {
        ddl: state.proxy.config.ddl,
        column_tenants: state.proxy.tenants.column().is_some(),
        connected: &connected,
    };
    Ok(decide::decide(s, policy, &state.proxy.shards, facts)?)
}

/// The plan of a statement of `kind` routed by `tenant`.
pub(super) fn route_for(
    state: &SessionState,
    policy: &RoutePolicy,
    kind: StatementKind,
    tenant: Option<&str>,
) -> Result<Route, ErrorFrame> {
    plan(state, policy, Statement::new(kind, tenant))
}

/// Where a PREPARE goes: every cluster of the tenant's phase.
pub(super) fn prepare_clusters(
    proxy: &Proxy,
    policy: &RoutePolicy,
    tenant: Option<&str>,
) -> Vec<ClusterId> {
    decide::prepare_clusters(policy, &proxy.shards, tenant)
}
