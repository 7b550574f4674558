//! Which clusters a request goes to: its tenant's route in the snapshot
//! (shard, phase, status), or the default route for statements without a
//! tenant. A route names roles (origin, target); the tenant's shard turns
//! them into clusters.

use std::sync::Arc;

use super::session::SessionState;
use super::{ClusterId, Proxy, ShardId};
use crate::config::{DdlMode, Phase, TenantStatus};
use crate::cql::StatementKind;
use crate::policy::{phase_sides_of, primary_of, write_sides_of, Effective, RoutePolicy, Side};
use crate::protocol::{ErrorCode, ErrorFrame};

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Route {
    /// Primary first: its answer is the client's when all succeed.
    pub clusters: Vec<ClusterId>,
    /// The phase it was routed by (the tenant's, or the default one).
    pub phase: Phase,
    pub shard: ShardId,
}

impl Route {
    /// A continuation page: the cluster that issued its paging state,
    /// whatever the policy says now (such a page is never shadowed).
    pub fn pinned(cluster: ClusterId, policy: &RoutePolicy) -> Route {
        Route {
            clusters: vec![cluster],
            phase: policy.route.phase,
            shard: policy.shard,
        }
    }

    pub fn primary(&self) -> ClusterId {
        self.clusters[0]
    }
}

impl Proxy {
    /// `sides` of `shard`, in their order.
    pub(super) fn clusters_of(&self, shard: ShardId, sides: &[Side]) -> Vec<ClusterId> {
        sides.iter().map(|s| self.on(shard, *s)).collect()
    }

    /// The secondary of a tenant's shard for its `phase`: the cluster that
    /// does not answer its reads.
    pub(super) fn secondary(&self, shard: ShardId, phase: Phase) -> ClusterId {
        self.on(
            shard,
            match primary_of(phase) {
                Side::Origin => Side::Target,
                Side::Target => Side::Origin,
            },
        )
    }
}

/// Statements a read-only tenant may not run.
pub(super) fn writes(kind: StatementKind) -> bool {
    matches!(kind, StatementKind::Write | StatementKind::Truncate)
}

/// A request admitted with its tenants: a tenant's write registers with the
/// read-only fence *before* it takes the snapshot that judges it (held
/// until the request is answered); other requests keep the snapshot they
/// started with.
pub(super) struct Admission<'s> {
    /// The tenant the request is routed by: the first one it names.
    pub tenant: Option<Arc<str>>,
    _fence: Option<super::fence::Admitted<'s>>,
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
    let (fence, snapshot) = if writes(kind) && tenant.is_some() {
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
    one_route(a.policy(started), kind, tenants, what)?;
    Ok(a)
}

/// Refuses a statement whose tenants (an `IN` list's, a BATCH's children's)
/// are not all on one shard and phase, or one of which its status refuses.
/// Judge by the snapshot the request is admitted under. A single tenant is
/// left to `route_for`, which looks it up anyway.
fn one_route<'t>(
    policy: &RoutePolicy,
    kind: StatementKind,
    tenants: impl Iterator<Item = Option<&'t str>> + Clone,
    what: &str,
) -> Result<(), ErrorFrame> {
    if tenants.clone().nth(1).is_none() {
        return Ok(());
    }
    let mut first = None;
    let mut same = true;
    for t in tenants.clone() {
        let e = tenant_route(policy, kind, t)?;
        match first {
            None => first = Some((e.shard, e.phase)),
            Some(f) => same &= f == (e.shard, e.phase),
        }
    }
    if same {
        return Ok(());
    }
    let names: Vec<&str> = tenants.map(|t| t.unwrap_or("(none)")).collect();
    Err(ErrorFrame::invalid(format!(
        "cutover: this {what} tenants on different routes ({}); send one {what_one} per tenant",
        names.join(", "),
        what_one = what.split_whitespace().next().unwrap_or("statement"),
    )))
}

/// The tenant's route, or the refusal its status calls for.
fn tenant_route(
    policy: &RoutePolicy,
    kind: StatementKind,
    tenant: Option<&str>,
) -> Result<Effective, ErrorFrame> {
    let e = policy.for_tenant(tenant);
    let refused = match e.status {
        TenantStatus::ReadWrite => false,
        TenantStatus::ReadOnly => writes(kind),
        TenantStatus::NotReady => true,
    };
    if refused {
        return Err(ErrorFrame::new(
            ErrorCode::UNAUTHORIZED,
            format!(
                "cutover: tenant \"{}\" is {}: {} are refused until it is read-write again (it is being moved between shards)",
                tenant.unwrap_or("?"),
                e.status.name(),
                if e.status == TenantStatus::NotReady { "reads and writes" } else { "writes" }
            ),
        ));
    }
    Ok(e)
}

/// The clusters a statement of this kind goes to, primary first: reads and
/// writes by their tenant's route (refused when its status says so), USE
/// to the default primary and every cluster the session is connected to
/// (later connections replay it), schema changes by `ddl`, the rest by the
/// default route.
pub(super) fn route_for(
    state: &SessionState,
    policy: &RoutePolicy,
    kind: StatementKind,
    tenant: Option<&str>,
) -> Result<Route, ErrorFrame> {
    let proxy = &state.proxy;
    let default = |clusters| Route {
        clusters,
        phase: policy.route.phase,
        shard: policy.shard,
    };
    Ok(match kind {
        StatementKind::Read => {
            let e = tenant_route(policy, kind, tenant)?;
            Route {
                clusters: vec![proxy.on(e.shard, primary_of(e.phase))],
                phase: e.phase,
                shard: e.shard,
            }
        }
        // Tenants keyed by a column share tables: a TRUNCATE empties the
        // table on every shard where tenants live.
        StatementKind::Truncate if tenant.is_none() && proxy.tenants.column().is_some() => {
            default(proxy.all_clusters(policy))
        }
        StatementKind::Write | StatementKind::Truncate => {
            let e = tenant_route(policy, kind, tenant)?;
            Route {
                clusters: proxy.clusters_of(e.shard, &write_sides_of(e.phase)),
                phase: e.phase,
                shard: e.shard,
            }
        }
        StatementKind::Use => {
            let mut clusters = vec![proxy.default_primary(policy)];
            for c in state.connected() {
                if !clusters.contains(&c) {
                    clusters.push(c);
                }
            }
            default(clusters)
        }
        StatementKind::Access => default(proxy.clusters_of(policy.shard, &policy.write_sides())),
        StatementKind::Schema => match proxy.config.ddl {
            DdlMode::All => default(proxy.all_clusters(policy)),
            DdlMode::PrimaryOnly => default(vec![proxy.default_primary(policy)]),
            DdlMode::Refuse => {
                return Err(ErrorFrame::new(
                    ErrorCode::UNAUTHORIZED,
                    "cutover: schema changes are refused by this proxy (ddl = \"refuse\"); run them on the clusters directly",
                ))
            }
        },
    })
}

/// Every cluster a tenant's statements may use in its current phase,
/// primary first: where a PREPARE goes (so that EXECUTE rarely meets an
/// unknown statement; elsewhere it is prepared on first use).
pub(super) fn prepare_clusters(
    proxy: &Proxy,
    policy: &RoutePolicy,
    tenant: Option<&str>,
) -> Vec<ClusterId> {
    let e = policy.for_tenant(tenant);
    proxy.clusters_of(e.shard, &phase_sides_of(e.phase))
}
