//! The routing state a running proxy shares (`Routing`: the policy store,
//! tenant resolution, the fence, the shard map, the directory table's
//! status), and changes to it while it runs: reloading the config file
//! (SIGHUP, `POST /v1/reload`, the file watcher) and the read-only fence
//! that follows a change. It holds no connection and knows no session.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::decide::{ClusterId, ShardMap};
use super::fence::{self, WriteFence};
use super::tenant::TenantResolver;
use super::{PolicyStore, RoutePolicy, ShardId, Side};

/// What routes a running proxy's requests, shared by its sessions.
pub struct Routing {
    store: PolicyStore,
    tenants: TenantResolver,
    fence: WriteFence,
    shards: ShardMap,
    table: DirectoryTableStatus,
    /// The longest `request_timeout` of any cluster.
    longest_request_timeout: Duration,
}

/// The directory table's poller: polls done, and the error of the last
/// one (None when it was applied).
#[derive(Default)]
pub struct DirectoryTableStatus {
    pub polls: std::sync::atomic::AtomicU64,
    pub error: parking_lot::Mutex<Option<String>>,
    /// Rows last refused: the same rows again are not judged (nor counted)
    /// again.
    pub(crate) refused: parking_lot::Mutex<Option<Vec<crate::config::TenantEntry>>>,
}

impl Routing {
    pub fn new(
        store: PolicyStore,
        tenants: TenantResolver,
        shards: ShardMap,
        longest_request_timeout: Duration,
    ) -> Routing {
        Routing {
            store,
            tenants,
            fence: WriteFence::default(),
            shards,
            table: DirectoryTableStatus::default(),
            longest_request_timeout,
        }
    }

    /// The routing policy in force: take it once per request.
    pub fn policy(&self) -> Arc<RoutePolicy> {
        self.store.snapshot()
    }

    /// The store the policy's changes go through.
    pub fn store(&self) -> &PolicyStore {
        &self.store
    }

    pub fn tenants(&self) -> &TenantResolver {
        &self.tenants
    }

    /// The read-only fence: tenant writes under way.
    pub fn fence(&self) -> &WriteFence {
        &self.fence
    }

    /// Each shard's origin and target.
    pub fn shards(&self) -> &ShardMap {
        &self.shards
    }

    /// `side` of `shard`.
    pub fn on(&self, shard: ShardId, side: Side) -> ClusterId {
        self.shards.on(shard, side)
    }

    /// The cluster that answers reads on the default route.
    pub fn default_primary(&self, policy: &RoutePolicy) -> ClusterId {
        self.shards.default_primary(policy)
    }

    /// How polling `[tenants.table]` goes.
    pub fn directory_table(&self) -> &DirectoryTableStatus {
        &self.table
    }

    /// The longest `request_timeout` of any cluster: how long a write under
    /// way may still take.
    pub fn longest_request_timeout(&self) -> Duration {
        self.longest_request_timeout
    }

    /// After a policy change from `before`: while some tenant is read-only
    /// or not-ready, waits until every tenant write admitted before now has
    /// finished (at most a cluster's request timeout plus a second) — also
    /// when the file watcher applied the same change a moment before, so an
    /// operator's call never returns early. Returns the tenants this change
    /// turned read-only or not-ready, and whether the wait ended in time.
    pub async fn fence_after(&self, before: &RoutePolicy) -> (Vec<String>, bool) {
        let now = self.policy();
        let fenced = fence::newly_fenced(before, &now);
        if now
            .tenants
            .values()
            .all(|t| t.status == crate::config::TenantStatus::ReadWrite)
        {
            return (fenced, true);
        }
        let limit = self.longest_request_timeout() + Duration::from_secs(1);
        let drained = self.fence.grace_period(limit).await;
        // Their journaled writes reach the secondary too, within the limit.
        let drained = drained && self.journal_drained(&now, &fenced, limit).await;
        if !fenced.is_empty() {
            tracing::info!(tenants = ?fenced, drained, "writes refused from now on; writes admitted before have finished");
        }
        (fenced, drained)
    }

    /// Waits (up to `limit`) until the journal holds no write for the
    /// secondary cluster of any of `tenants`.
    async fn journal_drained(
        &self,
        policy: &RoutePolicy,
        tenants: &[String],
        limit: Duration,
    ) -> bool {
        let Some(gate) = self.store.journal_gate() else {
            return true;
        };
        if tenants.is_empty() {
            return true;
        }
        let clusters = self.store.secondaries(policy, tenants);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left: u64 = clusters.iter().map(|c| gate.backlog(c)).sum();
            if left == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(?tenants, ?clusters, left, "the read-only fence's wait for journaled writes ran out; they are still being replayed");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reads the config file (and its directory file) again, puts its
    /// policy in force and fences: SIGHUP, the file watcher and
    /// `POST /v1/reload`. The reload, the tenants fenced, and whether their
    /// writes drained in time; or every problem, the running policy kept.
    /// `by` says what asked (`SIGHUP`, `POST /v1/reload`, the watcher).
    pub async fn reload(
        self: &Arc<Self>,
        by: &'static str,
    ) -> Result<(super::Reloaded, Vec<String>, bool), Vec<crate::config::Problem>> {
        let before = self.policy();
        let p = self.clone();
        let r = tokio::task::spawn_blocking(move || p.store.reload(std::env::vars(), by))
            .await
            .map_err(|e| vec![format!("reloading failed: {e}").into()])??;
        tracing::info!(
            by,
            version = r.version,
            changed = r.changed,
            restart_needed = ?r.restart_needed,
            "config reloaded"
        );
        let (fenced, drained) = self.fence_after(&before).await;
        Ok((r, fenced, drained))
    }
}

/// How often the config file is checked for changes.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Reloads the config when its file or its directory file changes
/// (modification time or size), as
/// SIGHUP does; a file caught half-written is refused and read again at its
/// next change.
pub async fn watch_config(
    routing: Arc<Routing>,
    file: std::path::PathBuf,
    stop: CancellationToken,
) {
    let stamp_of = |f: &std::path::Path| {
        std::fs::metadata(f)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    // The config file and the directory file it names.
    let stamp = |f: &std::path::Path| {
        (
            stamp_of(f),
            routing.store.directory_file().and_then(|d| stamp_of(&d)),
        )
    };
    let mut seen = stamp(&file);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
        let now = stamp(&file);
        if now == seen {
            continue;
        }
        seen = now;
        if let Err(problems) = routing.reload("the config file watcher").await {
            tracing::error!(
                file = %file.display(),
                problems = ?crate::config::messages(&problems),
                "config file changed but was refused; the running policy stays"
            );
        }
    }
}
