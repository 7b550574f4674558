//! Which clusters a request goes to, decided by pure functions of the
//! statement's kind, its tenant, the policy snapshot and the shard map: no
//! socket, no session, no async. A tenant's route (shard, phase, status) or
//! the default one names roles (origin, target); the shard map turns them
//! into clusters.
//!
//! This module decides; it does not send, and it does not know sessions.
//! What it needs from a session (the clusters it is connected to, for USE)
//! is passed in as a value.

use std::fmt;

use super::{phase_sides_of, primary_of, write_sides_of, Effective, RoutePolicy, ShardId, Side};
use crate::config::{DdlMode, Phase, TenantStatus, WriteMode};
use crate::cql::StatementKind;

/// One of the proxy's clusters: an index into its cluster list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub usize);

/// Each shard's origin and target, indexed by `ShardId`, over `clusters`
/// clusters in all (every cluster some shard names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    shards: Vec<[ClusterId; 2]>,
    clusters: usize,
}

impl ShardMap {
    /// `shards[i]` = `[origin, target]` of shard `i`; every id is below
    /// `clusters`.
    pub fn new(shards: Vec<[ClusterId; 2]>, clusters: usize) -> ShardMap {
        debug_assert!(shards.iter().flatten().all(|c| c.0 < clusters));
        ShardMap { shards, clusters }
    }

    /// Each shard's `[origin, target]`, in `ShardId` order.
    pub fn shards(&self) -> &[[ClusterId; 2]] {
        &self.shards
    }

    /// `side` of `shard`.
    pub fn on(&self, shard: ShardId, side: Side) -> ClusterId {
        self.shards[shard.0][match side {
            Side::Origin => 0,
            Side::Target => 1,
        }]
    }

    /// `sides` of `shard`, in their order.
    pub fn clusters_of(&self, shard: ShardId, sides: &[Side]) -> Vec<ClusterId> {
        sides.iter().map(|s| self.on(shard, *s)).collect()
    }

    /// The secondary of `shard` in `phase`: the cluster that does not
    /// answer its reads.
    pub fn secondary(&self, shard: ShardId, phase: Phase) -> ClusterId {
        self.on(
            shard,
            match primary_of(phase) {
                Side::Origin => Side::Target,
                Side::Target => Side::Origin,
            },
        )
    }

    /// The cluster that answers reads on the default route.
    pub fn default_primary(&self, policy: &RoutePolicy) -> ClusterId {
        self.on(policy.shard, policy.primary())
    }

    /// Every cluster of every shard, the default route's primary first.
    pub fn all_clusters(&self, policy: &RoutePolicy) -> Vec<ClusterId> {
        let primary = self.default_primary(policy);
        std::iter::once(primary)
            .chain((0..self.clusters).map(ClusterId).filter(|c| *c != primary))
            .collect()
    }
}

/// Where one request goes: the plan the pipeline carries out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Primary first: its answer is the client's when all succeed; the join
    /// waits for every one of them (the `sync` write mode).
    pub clusters: Vec<ClusterId>,
    /// The phase it was routed by (the tenant's, or the default one).
    pub phase: Phase,
    pub shard: ShardId,
    /// How a write's clusters after the first are waited for: in
    /// `async-secondary` the pipeline journals the write and answers when
    /// the primary has.
    pub write_mode: WriteMode,
}

impl Route {
    /// A continuation page: the cluster that issued its paging state,
    /// whatever the policy says now (such a page is never shadowed).
    pub fn pinned(cluster: ClusterId, policy: &RoutePolicy) -> Route {
        Route {
            clusters: vec![cluster],
            phase: policy.route.phase,
            shard: policy.shard,
            write_mode: WriteMode::Sync,
        }
    }

    pub fn primary(&self) -> ClusterId {
        self.clusters[0]
    }
}

/// Why a request is not routed: each becomes one CQL ERROR at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The tenant's status refuses this kind of statement.
    Tenant {
        tenant: String,
        status: TenantStatus,
    },
    /// `ddl = "refuse"`.
    SchemaChange,
    /// The statement names tenants on different routes; `what` says how
    /// ("statement names", "BATCH's statements name").
    MixedRoutes { what: String, tenants: Vec<String> },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Tenant { tenant, status } => write!(
                f,
                "cutover: tenant \"{tenant}\" is {}: {} are refused until it is read-write again (it is being moved between shards)",
                status.name(),
                if *status == TenantStatus::NotReady {
                    "reads and writes"
                } else {
                    "writes"
                }
            ),
            Refusal::SchemaChange => f.write_str(
                "cutover: schema changes are refused by this proxy (ddl = \"refuse\"); run them on the clusters directly",
            ),
            Refusal::MixedRoutes { what, tenants } => write!(
                f,
                "cutover: this {what} tenants on different routes ({}); send one {} per tenant",
                tenants.join(", "),
                what.split_whitespace().next().unwrap_or("statement"),
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// What `decide` needs besides the statement and the policy: facts of the
/// proxy's config and of the session, as values.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub ddl: DdlMode,
    /// Tenants are keyed by a column (they share tables).
    pub column_tenants: bool,
    /// The clusters the session is connected to (a USE reaches them all).
    pub connected: &'a [ClusterId],
}

/// Statements a read-only tenant may not run.
pub fn writes(kind: StatementKind) -> bool {
    matches!(kind, StatementKind::Write | StatementKind::Truncate)
}

/// The tenant's route, or the refusal its status calls for.
pub fn tenant_route(
    policy: &RoutePolicy,
    kind: StatementKind,
    tenant: Option<&str>,
) -> Result<Effective, Refusal> {
    let e = policy.for_tenant(tenant);
    let refused = match e.status {
        TenantStatus::ReadWrite => false,
        TenantStatus::ReadOnly => writes(kind),
        TenantStatus::NotReady => true,
    };
    if refused {
        return Err(Refusal::Tenant {
            tenant: tenant.unwrap_or("?").to_string(),
            status: e.status,
        });
    }
    Ok(e)
}

/// Refuses a statement whose tenants (an `IN` list's, a BATCH's children's)
/// are not all on one shard and phase, or one of which its status refuses.
/// A single tenant is left to `decide`, which looks it up anyway.
pub fn one_route<'t>(
    policy: &RoutePolicy,
    kind: StatementKind,
    tenants: impl Iterator<Item = Option<&'t str>> + Clone,
    what: &str,
) -> Result<(), Refusal> {
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
    Err(Refusal::MixedRoutes {
        what: what.to_string(),
        tenants: tenants.map(|t| t.unwrap_or("(none)").to_string()).collect(),
    })
}

/// What the pipeline knows of a request when it decides.
#[derive(Debug, Clone, Copy)]
pub struct Statement<'a> {
    pub kind: StatementKind,
    /// The tenant it is routed by (the first one it names).
    pub tenant: Option<&'a str>,
    /// It reads `system.local` / `system.peers(_v2)`: the default primary
    /// answers, and the proxy's topology rewrites the rows.
    pub system_table: bool,
    /// A continuation page, and the cluster that issued its paging state.
    pub continues_on: Option<ClusterId>,
}

impl<'a> Statement<'a> {
    /// A statement of `kind` routed by `tenant`.
    pub fn new(kind: StatementKind, tenant: Option<&'a str>) -> Statement<'a> {
        Statement {
            kind,
            tenant,
            system_table: false,
            continues_on: None,
        }
    }
}

/// The clusters a statement goes to, primary first: a continuation page to
/// the cluster that issued its paging state, a system table read to the
/// default primary, reads and writes by their tenant's route (refused when
/// its status says so), USE to the default primary and every cluster the
/// session is connected to (later connections replay it), schema changes
/// by `ddl`, the rest by the default route.
pub fn decide(
    s: Statement<'_>,
    policy: &RoutePolicy,
    map: &ShardMap,
    facts: Facts<'_>,
) -> Result<Route, Refusal> {
    let default = |clusters| Route {
        clusters,
        phase: policy.route.phase,
        shard: policy.shard,
        write_mode: WriteMode::Sync,
    };
    if let Some(cluster) = s.continues_on {
        return Ok(Route::pinned(cluster, policy));
    }
    if s.system_table {
        return Ok(default(vec![map.default_primary(policy)]));
    }
    let (kind, tenant) = (s.kind, s.tenant);
    Ok(match kind {
        StatementKind::Read => {
            let e = tenant_route(policy, kind, tenant)?;
            Route {
                clusters: vec![map.on(e.shard, primary_of(e.phase))],
                phase: e.phase,
                shard: e.shard,
                write_mode: WriteMode::Sync,
            }
        }
        // Tenants keyed by a column share tables: a TRUNCATE empties the
        // table on every shard where tenants live.
        StatementKind::Truncate if tenant.is_none() && facts.column_tenants => {
            default(map.all_clusters(policy))
        }
        StatementKind::Write | StatementKind::Truncate => {
            let e = tenant_route(policy, kind, tenant)?;
            Route {
                clusters: map.clusters_of(e.shard, &write_sides_of(e.phase)),
                phase: e.phase,
                shard: e.shard,
                // A TRUNCATE stays synchronous: it cannot be replayed.
                write_mode: if kind == StatementKind::Write {
                    e.write_mode
                } else {
                    WriteMode::Sync
                },
            }
        }
        StatementKind::Use => {
            let mut clusters = vec![map.default_primary(policy)];
            for c in facts.connected {
                if !clusters.contains(c) {
                    clusters.push(*c);
                }
            }
            Route {
                write_mode: policy.route.write_mode,
                ..default(clusters)
            }
        }
        StatementKind::Access => default(map.clusters_of(policy.shard, &policy.write_sides())),
        StatementKind::Schema => match facts.ddl {
            DdlMode::All => default(map.all_clusters(policy)),
            DdlMode::PrimaryOnly => default(vec![map.default_primary(policy)]),
            DdlMode::Refuse => return Err(Refusal::SchemaChange),
        },
    })
}

/// Every cluster a tenant's statements may use in its current phase,
/// primary first: where a PREPARE goes (so that EXECUTE rarely meets an
/// unknown statement; elsewhere it is prepared on first use).
pub fn prepare_clusters(
    policy: &RoutePolicy,
    map: &ShardMap,
    tenant: Option<&str>,
) -> Vec<ClusterId> {
    let e = policy.for_tenant(tenant);
    map.clusters_of(e.shard, &phase_sides_of(e.phase))
}

#[cfg(test)]
mod tests;
