//! The routing policy as an immutable, versioned snapshot behind
//! `ArcSwap`: requests take the snapshot once and finish under it; changes
//! (the admin API, SIGHUP, `POST /v1/reload`) are validated first and
//! either replace it whole or leave it as it was, with every problem listed.
//!
//! The policy is the default route plus the directory (tenant → shard,
//! phase, status). This module decides which roles (origin, target) a phase
//! uses and which shard a tenant is on; it does not send anything.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use std::collections::HashMap;

use crate::config::{Config, Phase, RouteConfig, TenantEntry, TenantStatus, WriteMode};

/// Which cluster of a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Origin,
    Target,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Origin => "origin",
            Side::Target => "target",
        }
    }
}

/// The cluster that answers reads in `phase`.
pub fn primary_of(phase: Phase) -> Side {
    match phase {
        Phase::TargetPrimary | Phase::TargetOnly => Side::Target,
        _ => Side::Origin,
    }
}

/// The clusters writes go to in `phase`, primary first.
pub fn write_sides_of(phase: Phase) -> Vec<Side> {
    match phase {
        Phase::OriginOnly => vec![Side::Origin],
        Phase::TargetOnly => vec![Side::Target],
        Phase::TargetPrimary => vec![Side::Target, Side::Origin],
        Phase::DualWrite | Phase::ShadowReads => vec![Side::Origin, Side::Target],
    }
}

/// One of the shards the proxy started with: an index into their names
/// (the config's `[shards.*]`, in name order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ShardId(pub usize);

/// Every cluster `phase` uses, primary first.
pub fn phase_sides_of(phase: Phase) -> Vec<Side> {
    let mut sides = write_sides_of(phase);
    let primary = primary_of(phase);
    if !sides.contains(&primary) {
        sides.insert(0, primary);
    }
    sides
}

/// A tenant's route in a snapshot; a field left out follows the default
/// route (also when the default route changes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantRoute {
    pub shard: Option<String>,
    /// `shard`, resolved when the snapshot was made.
    #[serde(skip)]
    pub shard_id: Option<ShardId>,
    pub phase: Option<Phase>,
    pub status: TenantStatus,
}

/// How one request is served: its tenant's route, or the default one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    pub shard: ShardId,
    pub phase: Phase,
    pub status: TenantStatus,
}

/// One version of the routing policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutePolicy {
    pub version: u64,
    pub route: RouteConfig,
    /// `route.shard`, resolved when the snapshot was made.
    #[serde(skip)]
    pub shard: ShardId,
    /// The directory: tenants with their own route (the rest take the
    /// default one). Looked up without a lock: the map is in the snapshot.
    pub tenants: HashMap<String, TenantRoute>,
}

impl RoutePolicy {
    /// The cluster that answers reads on the default route.
    pub fn primary(&self) -> Side {
        primary_of(self.route.phase)
    }

    /// The clusters writes go to on the default route, primary first.
    pub fn write_sides(&self) -> Vec<Side> {
        write_sides_of(self.route.phase)
    }

    /// Every cluster the default route's phase uses, primary first.
    pub fn phase_sides(&self) -> Vec<Side> {
        phase_sides_of(self.route.phase)
    }

    /// How a request of `tenant` is served (one hash lookup).
    pub fn for_tenant(&self, tenant: Option<&str>) -> Effective {
        match tenant.and_then(|t| self.tenants.get(t)) {
            Some(r) => Effective {
                shard: r.shard_id.unwrap_or(self.shard),
                phase: r.phase.unwrap_or(self.route.phase),
                status: r.status,
            },
            None => Effective {
                shard: self.shard,
                phase: self.route.phase,
                status: TenantStatus::ReadWrite,
            },
        }
    }
}

/// A config's entries: inline, from the directory file, and from the
/// directory table.
fn all_entries(c: &Config) -> Vec<TenantEntry> {
    merged(
        &c.tenants.entries,
        &c.tenants.file_entries,
        &c.tenants.table_entries,
    )
}

/// Inline and file entries, then the table's for tenants neither lists:
/// an operator's entry wins over a polled one.
fn merged(inline: &[TenantEntry], file: &[TenantEntry], table: &[TenantEntry]) -> Vec<TenantEntry> {
    let mut all = inline.to_vec();
    all.extend(file.iter().cloned());
    let listed: std::collections::HashSet<&str> = all.iter().map(|e| e.tenant.as_str()).collect();
    let polled: Vec<TenantEntry> = table
        .iter()
        .filter(|e| !listed.contains(e.tenant.as_str()))
        .cloned()
        .collect();
    all.extend(polled);
    all
}

/// Fields of a tenant's entry to set (`PUT /v1/tenants/{tenant}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    pub shard: Option<String>,
    pub phase: Option<Phase>,
    pub status: Option<TenantStatus>,
}

/// The directory of a config's entries, their shards resolved among
/// `shards`; or a problem for each entry naming another shard.
fn directory(
    shards: &[String],
    entries: &[TenantEntry],
) -> Result<HashMap<String, TenantRoute>, Vec<String>> {
    let mut problems = Vec::new();
    let mut dir = HashMap::with_capacity(entries.len());
    for e in entries {
        let shard_id = match &e.shard {
            None => None,
            Some(name) => match shard_id(shards, name) {
                Some(id) => Some(id),
                None => {
                    problems.push(unknown_shard(
                        &format!("tenant \"{}\"", e.tenant),
                        name,
                        shards,
                    ));
                    continue;
                }
            },
        };
        dir.insert(
            e.tenant.clone(),
            TenantRoute {
                shard: e.shard.clone(),
                shard_id,
                phase: e.phase,
                status: e.status,
            },
        );
    }
    if problems.is_empty() {
        Ok(dir)
    } else {
        Err(problems)
    }
}

fn shard_id(shards: &[String], name: &str) -> Option<ShardId> {
    shards.iter().position(|s| s == name).map(ShardId)
}

fn unknown_shard(what: &str, name: &str, shards: &[String]) -> String {
    format!(
        "{what}: shard \"{name}\" is not one this proxy started with ([{}]); a new shard takes effect at a restart",
        shards.join(", ")
    )
}

/// Fields of the default route to change (`PUT /v1/policy`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePatch {
    pub shard: Option<String>,
    pub phase: Option<Phase>,
    pub write_mode: Option<WriteMode>,
    pub shadow_target_primary: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    pub route: Option<RoutePatch>,
}

/// What a reload did.
#[derive(Debug, Clone, Serialize)]
pub struct Reloaded {
    pub version: u64,
    /// False when the file's policy equals the running one.
    pub changed: bool,
    /// Sections of the file that differ from the running config but only
    /// take effect at a restart.
    pub restart_needed: Vec<String>,
}

/// The running policy and where a reload reads it from.
pub struct PolicyStore {
    current: ArcSwap<RoutePolicy>,
    /// The config the proxy started with (what a reload compares against),
    /// and its file, if any.
    source: Mutex<(Config, Option<PathBuf>)>,
    /// The shards the proxy started with (their clusters are the ones it
    /// reaches), in name order: `ShardId`s index this.
    shards: Vec<String>,
    /// Changes installed and refused (a change to the same route is neither).
    pub changes: std::sync::atomic::AtomicU64,
    pub refused: std::sync::atomic::AtomicU64,
}

impl PolicyStore {
    /// The policy of a valid config (every shard it names is configured).
    pub fn new(config: &Config, file: Option<PathBuf>) -> PolicyStore {
        let shards: Vec<String> = config.shards.keys().cloned().collect();
        PolicyStore {
            current: ArcSwap::from_pointee(RoutePolicy {
                version: 1,
                route: config.route.clone(),
                shard: shard_id(&shards, &config.route.shard).unwrap_or_default(),
                tenants: directory(&shards, &all_entries(config)).unwrap_or_default(),
            }),
            source: Mutex::new((config.clone(), file)),
            shards,
            changes: Default::default(),
            refused: Default::default(),
        }
    }

    /// The directory file, if one is configured.
    pub fn directory_file(&self) -> Option<PathBuf> {
        self.source.lock().0.tenants.directory_file.clone()
    }

    /// The config file a reload reads, if the proxy started from one.
    pub fn file(&self) -> Option<PathBuf> {
        self.source.lock().1.clone()
    }

    /// `PUT` (`Some`) or `DELETE` (`None`) of a tenant's entry in the
    /// directory file: validated, written to the file, then in force.
    pub fn set_tenant(
        &self,
        tenant: &str,
        patch: Option<TenantPatch>,
    ) -> Result<Arc<RoutePolicy>, Vec<String>> {
        let mut source = self.source.lock();
        let config = &mut source.0;
        let Some(file) = config.tenants.directory_file.clone() else {
            return Err(vec!["`tenants.directory_file` is not set: the admin API keeps tenant entries there, so that a reload never undoes them".into()]);
        };
        if config.tenants.entries.iter().any(|e| e.tenant == tenant) {
            return Err(vec![format!(
                "tenant \"{tenant}\" is listed in the config file's [[tenants.entries]]; change it there (the admin API manages the directory file)"
            )]);
        }
        let mut entries = crate::config::read_directory(&file)?;
        let existing = entries.iter().position(|e| e.tenant == tenant);
        match (patch, existing) {
            (Some(p), Some(i)) => {
                let e = &mut entries[i];
                e.shard = p.shard.or(e.shard.take());
                e.phase = p.phase.or(e.phase);
                e.status = p.status.unwrap_or(e.status);
            }
            (Some(p), None) => entries.push(TenantEntry {
                tenant: tenant.to_string(),
                shard: p.shard,
                phase: p.phase,
                status: p.status.unwrap_or_default(),
            }),
            (None, Some(i)) => {
                entries.remove(i);
            }
            (None, None) => {
                return Err(vec![format!(
                    "tenant \"{tenant}\" has no entry in the directory file"
                )])
            }
        }
        let mut problems = config.entry_problems(&entries);
        if config.tenants.key == crate::config::TenantKey::default() {
            problems.push("`tenants.key` is \"none\": no request would ever have a tenant".into());
        }
        let all = merged(
            &config.tenants.entries,
            &entries,
            &config.tenants.table_entries,
        );
        let tenants = self.checked_directory(&all, problems)?;
        crate::config::write_directory(&file, &entries).map_err(|e| vec![e])?;
        config.tenants.file_entries = entries;
        let route = self.snapshot().route.clone();
        drop(source);
        self.install(route, Some(tenants)).map(|(p, _)| p)
    }

    /// The directory table's entries as just polled: validated, then in
    /// force with the other entries (which win for a tenant they list).
    /// Whether the policy changed; or every problem, nothing changed.
    pub fn set_table_entries(
        &self,
        entries: Vec<TenantEntry>,
    ) -> Result<(Arc<RoutePolicy>, bool), Vec<String>> {
        let mut source = self.source.lock();
        let config = &mut source.0;
        if config.tenants.table_entries == entries {
            return Ok((self.snapshot(), false));
        }
        let problems: Vec<String> = config
            .entry_problems(&entries)
            .into_iter()
            .map(|p| format!("directory table: {p}"))
            .collect();
        let all = merged(
            &config.tenants.entries,
            &config.tenants.file_entries,
            &entries,
        );
        let tenants = self.checked_directory(&all, problems)?;
        config.tenants.table_entries = entries;
        let route = self.snapshot().route.clone();
        drop(source);
        self.install(route, Some(tenants))
    }

    /// The directory of `all` entries, unless it or `problems` (what
    /// `entry_problems` found) has a problem: then every problem, counted as
    /// refused. The running config's shards are the ones the proxy started
    /// with, so `entry_problems` has already named any unknown shard that
    /// `directory` would name again.
    fn checked_directory(
        &self,
        all: &[TenantEntry],
        problems: Vec<String>,
    ) -> Result<HashMap<String, TenantRoute>, Vec<String>> {
        let refused = match directory(&self.shards, all) {
            Ok(t) if problems.is_empty() => return Ok(t),
            Err(unknown_shards) if problems.is_empty() => unknown_shards,
            _ => problems,
        };
        self.refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err(refused)
    }

    /// The snapshot in force; take it once per request.
    pub fn snapshot(&self) -> Arc<RoutePolicy> {
        self.current.load_full()
    }

    /// Problems with a route, each a sentence an operator can act on.
    fn check(&self, route: &RouteConfig) -> Vec<String> {
        let mut p = Vec::new();
        if shard_id(&self.shards, &route.shard).is_none() {
            p.push(unknown_shard("route.shard", &route.shard, &self.shards));
        }
        if route.write_mode == WriteMode::AsyncSecondary {
            p.push("route.write_mode \"async-secondary\" needs the replay journal, which does not exist yet; use \"sync\"".into());
        }
        p
    }

    /// Installs `route` as a new version, unless it is invalid (nothing
    /// changes then) or equal to the running one.
    fn install(
        &self,
        route: RouteConfig,
        tenants: Option<HashMap<String, TenantRoute>>,
    ) -> Result<(Arc<RoutePolicy>, bool), Vec<String>> {
        let problems = self.check(&route);
        if !problems.is_empty() {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                ?problems,
                "routing policy change refused; the running policy stays"
            );
            return Err(problems);
        }
        let mut installed = None;
        self.current.rcu(|cur| {
            let tenants = tenants.clone().unwrap_or_else(|| cur.tenants.clone());
            if cur.route == route && cur.tenants == tenants {
                installed = Some((cur.clone(), false));
                cur.clone()
            } else {
                let next = Arc::new(RoutePolicy {
                    version: cur.version + 1,
                    shard: shard_id(&self.shards, &route.shard).unwrap_or_default(),
                    route: route.clone(),
                    tenants,
                });
                installed = Some((next.clone(), true));
                next
            }
        });
        let (policy, changed) = installed.expect("rcu ran at least once");
        if changed {
            self.changes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                version = policy.version,
                phase = ?policy.route.phase,
                shard = %policy.route.shard,
                "routing policy changed"
            );
        }
        Ok((policy, changed))
    }

    /// `PUT /v1/policy`: changes the given fields of the default route.
    pub fn apply(&self, patch: PolicyPatch) -> Result<Arc<RoutePolicy>, Vec<String>> {
        let _one_change_at_a_time = self.source.lock();
        let mut route = self.snapshot().route.clone();
        if let Some(r) = patch.route {
            if let Some(s) = r.shard {
                route.shard = s;
            }
            if let Some(p) = r.phase {
                route.phase = p;
            }
            if let Some(w) = r.write_mode {
                route.write_mode = w;
            }
            if let Some(b) = r.shadow_target_primary {
                route.shadow_target_primary = b;
            }
        }
        self.install(route, None).map(|(p, _)| p)
    }

    /// SIGHUP and `POST /v1/reload`: reads the config file again (with the
    /// `CUTOVER_*` overrides in `vars`), validates all of it, and installs
    /// its route. Other sections that changed are reported, not applied.
    pub fn reload(
        &self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Reloaded, Vec<String>> {
        let mut source = self.source.lock();
        let Some(path) = source.1.clone() else {
            return Err(vec![
                "this proxy was started without a config file (--origin/--target); there is nothing to reload".into(),
            ]);
        };
        let new = Config::load(&path, vars).map_err(|e| {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(problems = ?e.0, "reloaded config refused; the running policy stays");
            e.0.into_iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect::<Vec<_>>()
        })?;
        let mut new = new;
        // The directory table's entries as last polled stay.
        new.tenants.table_entries = source.0.tenants.table_entries.clone();
        let tenants = directory(&self.shards, &all_entries(&new)).inspect_err(|_| {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })?;
        let (policy, changed) = self.install(new.route.clone(), Some(tenants))?;
        // The directory as reloaded is what later API changes start from.
        source.0.tenants.entries = new.tenants.entries.clone();
        source.0.tenants.file_entries = new.tenants.file_entries.clone();
        source.0.tenants.directory_file = new.tenants.directory_file.clone();
        let old = &source.0;
        let mut restart_needed = Vec::new();
        let mut differs = |name: &str, a: bool| {
            if a {
                restart_needed.push(name.to_string());
            }
        };
        differs("listen", new.listen != old.listen);
        differs(
            "admin",
            new.admin != old.admin || new.admin_token != old.admin_token,
        );
        differs("ddl", new.ddl != old.ddl);
        differs("limits", new.limits != old.limits);
        differs("topology", new.topology != old.topology);
        differs("clusters", new.clusters != old.clusters);
        differs("shards", new.shards != old.shards);
        differs("auth", new.auth != old.auth);
        differs("writes", new.writes != old.writes);
        differs("shutdown", new.shutdown != old.shutdown);
        differs("metrics", new.metrics != old.metrics);
        differs("log", new.log != old.log);
        differs("tenants.key", new.tenants.key != old.tenants.key);
        if !restart_needed.is_empty() {
            tracing::warn!(sections = ?restart_needed, "the reloaded config changes sections that take effect only at a restart");
        }
        Ok(Reloaded {
            version: policy.version,
            changed,
            restart_needed,
        })
    }
}

#[cfg(test)]
mod tests;
