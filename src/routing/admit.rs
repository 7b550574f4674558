//! Admission: the policy snapshot that judges a request, and the read-only
//! fence. A tenant's write registers with the fence *before* it takes the
//! snapshot that judges it (and stays registered until it is answered), so
//! a change to read-only returns only once every write admitted under the
//! old policy has finished; other requests keep the snapshot they started
//! with. No socket, no session: the fence and the store are passed in.

use std::sync::Arc;

use super::decide::{one_route, writes, Refusal};
use super::fence::{Admitted, WriteFence};
use super::{PolicyStore, RoutePolicy};
use crate::cql::StatementKind;

/// A request admitted with its tenants.
pub struct Admission<'s> {
    /// The tenant the request is routed by: the first one it names.
    pub tenant: Option<Arc<str>>,
    _fence: Option<Admitted<'s>>,
    snapshot: Option<Arc<RoutePolicy>>,
}

impl Admission<'_> {
    /// The snapshot that judges the request.
    pub fn policy<'a>(&'a self, started: &'a RoutePolicy) -> &'a RoutePolicy {
        self.snapshot.as_deref().unwrap_or(started)
    }

    /// Whether the request holds its place in the fence.
    pub fn fenced(&self) -> bool {
        self._fence.is_some()
    }
}

/// Admits a request of `kind` routed by `tenant` and naming `tenants`
/// (`what` names it in a refusal), checking them with `one_route` under
/// the snapshot that judges it: `store`'s current one for a tenant's write
/// (after entering `fence`), else `started`.
pub fn admit<'s, 't>(
    fence: &'s WriteFence,
    store: &PolicyStore,
    started: &RoutePolicy,
    kind: StatementKind,
    tenant: Option<Arc<str>>,
    tenants: impl Iterator<Item = Option<&'t str>> + Clone,
    what: &str,
) -> Result<Admission<'s>, Refusal> {
    let (entered, snapshot) = if writes(kind) && tenant.is_some() {
        let entered = fence.enter();
        (Some(entered), Some(store.snapshot()))
    } else {
        (None, None)
    };
    let a = Admission {
        tenant,
        _fence: entered,
        snapshot,
    };
    one_route(a.policy(started), kind, tenants, what)?;
    Ok(a)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{Config, TenantEntry, TenantStatus};

    fn entry(tenant: &str, status: TenantStatus) -> TenantEntry {
        TenantEntry {
            tenant: tenant.into(),
            shard: None,
            phase: None,
            status,
            write_mode: None,
        }
    }

    /// A store whose directory (as a polled table) has acme and wayne.
    fn store(wayne: TenantStatus) -> PolicyStore {
        let c = Config::quick_start(
            "127.0.0.1:9042",
            "127.0.0.1:9043",
            "127.0.0.1:0".parse().unwrap(),
            None,
        )
        .unwrap();
        let s = PolicyStore::new(&c, None);
        set(&s, wayne);
        s
    }

    fn set(s: &PolicyStore, wayne: TenantStatus) {
        s.set_table_entries(vec![
            entry("acme", TenantStatus::ReadWrite),
            entry("wayne", wayne),
        ])
        .unwrap();
    }

    const BOTH: [Option<&str>; 2] = [Some("acme"), Some("wayne")];

    fn admit_both<'s>(
        fence: &'s WriteFence,
        s: &PolicyStore,
        started: &RoutePolicy,
        kind: StatementKind,
    ) -> Result<Admission<'s>, Refusal> {
        admit(
            fence,
            s,
            started,
            kind,
            Some("acme".into()),
            BOTH.iter().copied(),
            "statement names",
        )
    }

    #[tokio::test]
    async fn a_tenant_write_holds_the_fence_until_it_is_answered() {
        let (fence, s) = (WriteFence::default(), store(TenantStatus::ReadWrite));
        let started = s.snapshot();
        let w = admit_both(&fence, &s, &started, StatementKind::Write).unwrap();
        assert!(w.fenced());
        assert!(
            !fence.grace_period(Duration::from_millis(50)).await,
            "a change waits for the write admitted before it"
        );
        drop(w);
        assert!(fence.grace_period(Duration::from_secs(5)).await);
        // Reads, and writes without a tenant, never hold it.
        let r = admit_both(&fence, &s, &started, StatementKind::Read).unwrap();
        assert!(!r.fenced());
        let untenanted = admit(
            &fence,
            &s,
            &started,
            StatementKind::Write,
            None,
            std::iter::once(None),
            "statement names",
        )
        .unwrap();
        assert!(!untenanted.fenced());
        assert!(fence.grace_period(Duration::from_secs(5)).await);
    }

    #[test]
    fn a_tenant_write_is_judged_by_the_policy_in_force_not_the_one_it_started_with() {
        let (fence, s) = (WriteFence::default(), store(TenantStatus::ReadWrite));
        let started = s.snapshot();
        // wayne turns read-only after the request took its snapshot.
        set(&s, TenantStatus::ReadOnly);
        let e = match admit_both(&fence, &s, &started, StatementKind::Write) {
            Err(e) => e,
            Ok(_) => panic!("a write naming a read-only tenant was admitted"),
        };
        assert_eq!(
            e,
            Refusal::Tenant {
                tenant: "wayne".into(),
                status: TenantStatus::ReadOnly
            }
        );
        // A read keeps the snapshot it started with, and may read wayne.
        let r = admit_both(&fence, &s, &started, StatementKind::Read).unwrap();
        assert_eq!(r.policy(&started).version, started.version);
        assert!(s.snapshot().version > started.version);
    }
}
