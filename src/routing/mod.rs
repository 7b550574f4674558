//! The routing policy as an immutable, versioned snapshot behind
//! `ArcSwap`: requests take the snapshot once and finish under it; changes
//! (the admin API, SIGHUP, `POST /v1/reload`) are validated first and
//! either replace it whole or leave it as it was, with every problem listed.
//!
//! The policy is the default route plus the directory (tenant → shard,
//! phase, status). This module decides which roles (origin, target) a phase
//! uses and which shard a tenant is on; it does not send anything.
//!
//! Beside it: `tenant` (a request's tenants, from its keyspace or a column's
//! bound value) and `keyed` (which tables a tenant column keys), `admit`
//! and `fence` (the snapshot that judges a request, the read-only fence),
//! `decide` (a request's plan, pure). Nothing here opens a socket or knows
//! a session: the proxy hands in what they need as values.

pub mod admit;
pub mod decide;
pub mod directory_table;
pub mod fence;
pub mod keyed;
mod live;
pub mod tenant;

pub use decide::{ClusterId, ShardMap};
pub use live::{watch_config, DirectoryTableStatus, Routing};

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use std::collections::HashMap;

use crate::config::route_file_spelled as spelled;
use crate::config::{
    write_route_file, Config, Phase, Problem, RouteConfig, RouteOverride, TenantEntry,
    TenantStatus, WriteMode,
};

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
    pub write_mode: Option<WriteMode>,
}

/// How one request is served: its tenant's route, or the default one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    pub shard: ShardId,
    pub phase: Phase,
    pub status: TenantStatus,
    pub write_mode: WriteMode,
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
                write_mode: r.write_mode.unwrap_or(self.route.write_mode),
            },
            None => Effective {
                shard: self.shard,
                phase: self.route.phase,
                status: TenantStatus::ReadWrite,
                write_mode: self.route.write_mode,
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
    pub write_mode: Option<WriteMode>,
    /// As `PolicyPatch::force`.
    #[serde(default)]
    pub force: bool,
}

/// The directory of a config's entries, their shards resolved among
/// `shards`; or a problem for each entry naming another shard.
fn directory(
    shards: &[String],
    entries: &[TenantEntry],
) -> Result<HashMap<String, TenantRoute>, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut dir = HashMap::with_capacity(entries.len());
    for e in entries {
        let shard_id = match &e.shard {
            None => None,
            Some(name) => match shard_id(shards, name) {
                Some(id) => Some(id),
                None => {
                    problems.push(Problem::new(unknown_shard(
                        &format!("tenant \"{}\"", e.tenant),
                        name,
                        shards,
                    )));
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
                write_mode: e.write_mode,
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
    /// Move reads to a cluster even though the journal still holds writes
    /// for it (they are stale until replayed).
    #[serde(default)]
    pub force: bool,
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

/// Where the running policy came from.
struct Source {
    /// The config the proxy started with (what a reload compares against
    /// for `restart_needed`); its route, route file fields and directory
    /// follow every reload and API change.
    config: Config,
    /// The config file a reload reads, if any.
    file: Option<PathBuf>,
}

/// The source of one field of the default route (`GET /v1/policy`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldSource {
    /// `config-file`, `flags` (started without one) or `admin-api`.
    pub from: &'static str,
    /// What the config file (or the flags) say; differs from the value in
    /// force while an API change stands.
    pub config_file_says: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// Where each field of the default route comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteSources {
    /// The file API changes are written to; none when the proxy started
    /// from flags (changes then last until it stops).
    pub route_file: Option<PathBuf>,
    pub shard: FieldSource,
    pub phase: FieldSource,
    pub write_mode: FieldSource,
    pub shadow_target_primary: FieldSource,
}

/// What `PUT /v1/policy` did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub policy: Arc<RoutePolicy>,
    /// The route file the change was written to; none when the proxy
    /// started from flags.
    pub persisted: Option<PathBuf>,
}

/// `field` of a patch: recorded in the route file unless it is what the
/// config file says (then the config file's value stands again).
fn record<T: PartialEq + Clone>(
    slot: &mut Option<RouteOverride<T>>,
    value: Option<T>,
    config_value: &T,
    set_at: &str,
    by: &str,
) {
    let Some(value) = value else { return };
    *slot = (&value != config_value).then(|| RouteOverride {
        value,
        config_value: config_value.clone(),
        set_at: set_at.to_string(),
        by: by.to_string(),
    });
}

fn field_source<T: Serialize>(
    o: &Option<RouteOverride<T>>,
    config_value: &T,
    from_file: bool,
) -> FieldSource {
    let says = serde_json::to_value(config_value).unwrap_or_default();
    match o {
        Some(o) => FieldSource {
            from: "admin-api",
            config_file_says: says,
            set_at: Some(o.set_at.clone()),
            by: Some(o.by.clone()),
        },
        None => FieldSource {
            from: if from_file { "config-file" } else { "flags" },
            config_file_says: says,
            set_at: None,
            by: None,
        },
    }
}

/// The running policy and where a reload reads it from.
pub struct PolicyStore {
    current: ArcSwap<RoutePolicy>,
    source: Mutex<Source>,
    /// The shards the proxy started with (their clusters are the ones it
    /// reaches), in name order: `ShardId`s index this.
    shards: Vec<String>,
    /// Changes installed and refused (a change to the same route is neither).
    pub changes: std::sync::atomic::AtomicU64,
    pub refused: std::sync::atomic::AtomicU64,
    /// Config reloads that succeeded, whether or not the policy changed.
    pub reloads: std::sync::atomic::AtomicU64,
    journal_gate: Mutex<Option<Arc<dyn JournalGate>>>,
}

/// The shard and phase a tenant's entry (or the default route, for none)
/// gives, by name.
fn shard_and_phase<'a>(route: &'a RouteConfig, t: Option<&'a TenantRoute>) -> (&'a str, Phase) {
    (
        t.and_then(|t| t.shard.as_deref()).unwrap_or(&route.shard),
        t.and_then(|t| t.phase).unwrap_or(route.phase),
    )
}

/// The name of the cluster that is `side` of shard `shard`.
fn cluster_on(
    shards: &std::collections::BTreeMap<String, crate::config::ShardConfig>,
    shard: &str,
    side: Side,
) -> Option<String> {
    shards.get(shard).map(|s| match side {
        Side::Origin => s.origin.clone(),
        Side::Target => s.target.clone(),
    })
}

/// What `check` judges a change by, besides the route and directory.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    writes: &'a crate::config::WritesConfig,
    shards: &'a std::collections::BTreeMap<String, crate::config::ShardConfig>,
    /// Move reads even to a cluster with journal backlog.
    force: bool,
}

/// What routing asks of the journal: that it be open before
/// `async-secondary` is put in force, and a cluster's backlog before reads
/// move to it.
pub trait JournalGate: Send + Sync {
    /// Opens the journal (once; later calls find it open).
    fn open(&self) -> Result<(), String>;
    /// Journaled writes for `cluster` not acknowledged yet.
    fn backlog(&self, cluster: &str) -> u64;
}

impl PolicyStore {
    /// The policy of a valid config (every shard it names is configured),
    /// with the route file's fields that stand.
    pub fn new(config: &Config, file: Option<PathBuf>) -> PolicyStore {
        let shards: Vec<String> = config.shards.keys().cloned().collect();
        let merged = config.route_overrides.merge(&config.route);
        let mut config = config.clone();
        if !merged.dropped.is_empty() {
            for d in &merged.dropped {
                tracing::warn!("{d}");
            }
            if let Some(f) = &config.route.file {
                if let Err(e) = write_route_file(f, &merged.kept) {
                    tracing::warn!("{e}; the config file's values are in force all the same");
                }
            }
        }
        config.route_overrides = merged.kept.clone();
        if !merged.kept.is_empty() {
            tracing::info!(
                file = ?config.route.file,
                route = ?merged.kept,
                "the default route as set through the admin API (from the route file)"
            );
        }
        PolicyStore {
            current: ArcSwap::from_pointee(RoutePolicy {
                version: 1,
                shard: shard_id(&shards, &merged.route.shard).unwrap_or_default(),
                route: merged.route,
                tenants: directory(&shards, &all_entries(&config)).unwrap_or_default(),
            }),
            source: Mutex::new(Source { config, file }),
            shards,
            changes: Default::default(),
            refused: Default::default(),
            reloads: Default::default(),
            journal_gate: Mutex::new(None),
        }
    }

    /// The directory file, if one is configured.
    pub fn directory_file(&self) -> Option<PathBuf> {
        self.source.lock().config.tenants.directory_file.clone()
    }

    /// The config file a reload reads, if the proxy started from one.
    pub fn file(&self) -> Option<PathBuf> {
        self.source.lock().file.clone()
    }

    /// Where each field of the default route comes from.
    pub fn sources(&self) -> RouteSources {
        let source = self.source.lock();
        let (c, o) = (&source.config.route, &source.config.route_overrides);
        let from_file = source.file.is_some();
        RouteSources {
            route_file: c.file.clone(),
            shard: field_source(&o.shard, &c.shard, from_file),
            phase: field_source(&o.phase, &c.phase, from_file),
            write_mode: field_source(&o.write_mode, &c.write_mode, from_file),
            shadow_target_primary: field_source(
                &o.shadow_target_primary,
                &c.shadow_target_primary,
                from_file,
            ),
        }
    }

    /// `PUT` (`Some`) or `DELETE` (`None`) of a tenant's entry in the
    /// directory file: validated, written to the file, then in force.
    pub fn set_tenant(
        &self,
        tenant: &str,
        patch: Option<TenantPatch>,
    ) -> Result<Arc<RoutePolicy>, Vec<Problem>> {
        let mut source = self.source.lock();
        let config = &mut source.config;
        let Some(file) = config.tenants.directory_file.clone() else {
            return Err(vec!["`tenants.directory_file` is not set: the admin API keeps tenant entries there, so that a reload never undoes them".into()]);
        };
        if config.tenants.entries.iter().any(|e| e.tenant == tenant) {
            return Err(vec![format!(
                "tenant \"{tenant}\" is listed in the config file's [[tenants.entries]]; change it there (the admin API manages the directory file)"
            )
            .into()]);
        }
        let mut entries = crate::config::read_directory(&file)?;
        let existing = entries.iter().position(|e| e.tenant == tenant);
        let existing_patch = patch.is_some();
        let force = patch.as_ref().is_some_and(|p| p.force);
        match (patch, existing) {
            (Some(p), Some(i)) => {
                let e = &mut entries[i];
                e.shard = p.shard.or(e.shard.take());
                e.phase = p.phase.or(e.phase);
                e.status = p.status.unwrap_or(e.status);
                e.write_mode = p.write_mode.or(e.write_mode);
            }
            (Some(p), None) => entries.push(TenantEntry {
                tenant: tenant.to_string(),
                shard: p.shard,
                phase: p.phase,
                status: p.status.unwrap_or_default(),
                write_mode: p.write_mode,
            }),
            (None, Some(i)) => {
                entries.remove(i);
            }
            (None, None) => {
                return Err(vec![format!(
                    "tenant \"{tenant}\" has no entry in the directory file"
                )
                .into()])
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
        crate::config::write_directory(&file, &entries)
            .map_err(|e| vec![Problem::at("tenants.directory_file", e)])?;
        config.tenants.file_entries = entries;
        let route = self.snapshot().route.clone();
        drop(source);
        let by = match existing_patch {
            true => format!("PUT /v1/tenants/{tenant}"),
            false => format!("DELETE /v1/tenants/{tenant}"),
        };
        self.install(route, Some(tenants), &by, force)
            .map(|(p, _)| p)
    }

    /// The directory table's entries as just polled: validated, then in
    /// force with the other entries (which win for a tenant they list).
    /// Whether the policy changed; or every problem, nothing changed.
    pub fn set_table_entries(
        &self,
        entries: Vec<TenantEntry>,
    ) -> Result<(Arc<RoutePolicy>, bool), Vec<Problem>> {
        let mut source = self.source.lock();
        let config = &mut source.config;
        if config.tenants.table_entries == entries {
            return Ok((self.snapshot(), false));
        }
        let problems: Vec<Problem> = config
            .entry_problems(&entries)
            .into_iter()
            .map(|p| p.found_in("directory table"))
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
        self.install(route, Some(tenants), "the directory table", false)
    }

    /// The directory of `all` entries, unless it or `problems` (what
    /// `entry_problems` found) has a problem: then every problem, counted as
    /// refused. The running config's shards are the ones the proxy started
    /// with, so `entry_problems` has already named any unknown shard that
    /// `directory` would name again.
    fn checked_directory(
        &self,
        all: &[TenantEntry],
        problems: Vec<Problem>,
    ) -> Result<HashMap<String, TenantRoute>, Vec<Problem>> {
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

    /// Problems with a route and the directory beside it, each a sentence
    /// an operator can act on.
    fn check(
        &self,
        route: &RouteConfig,
        tenants: &HashMap<String, TenantRoute>,
        ctx: Ctx<'_>,
    ) -> Vec<Problem> {
        let writes = ctx.writes;
        let mut p = Vec::new();
        if !ctx.force {
            p.extend(self.stale_reads(route, tenants, ctx.shards));
        }
        if shard_id(&self.shards, &route.shard).is_none() {
            p.push(Problem::at(
                "route.shard",
                unknown_shard("route.shard", &route.shard, &self.shards),
            ));
        }
        let async_tenant = tenants
            .iter()
            .find(|(_, t)| t.write_mode == Some(WriteMode::AsyncSecondary))
            .map(|(name, _)| name.as_str());
        let who = match (route.write_mode, async_tenant) {
            (WriteMode::AsyncSecondary, _) => {
                Some(("route.write_mode", "route.write_mode".to_string()))
            }
            (_, Some(t)) => Some(("tenants.entries", format!("tenant \"{t}\"'s write_mode"))),
            _ => None,
        };
        if let Some((key, what)) = who {
            if !writes.add_timestamps {
                p.push(Problem::at(
                    key,
                    format!("{what} \"async-secondary\" needs `writes.add_timestamps = true`: a write is journaled only with a fixed write time"),
                ));
            }
            let gate = self.journal_gate.lock().clone();
            if let Some(gate) = gate {
                if let Err(e) = gate.open() {
                    p.push(Problem::at(
                        "journal.dir",
                        format!("{what} \"async-secondary\" needs the journal: {e}"),
                    ));
                }
            }
        }
        p
    }

    pub(crate) fn journal_gate(&self) -> Option<Arc<dyn JournalGate>> {
        self.journal_gate.lock().clone()
    }

    /// The secondary cluster (by name) of each of `tenants` under `policy`.
    pub(crate) fn secondaries(&self, policy: &RoutePolicy, tenants: &[String]) -> Vec<String> {
        let source = self.source.lock();
        let mut out: Vec<String> = tenants
            .iter()
            .filter_map(|t| {
                let (shard, phase) = shard_and_phase(&policy.route, policy.tenants.get(t));
                let secondary = match primary_of(phase) {
                    Side::Origin => Side::Target,
                    Side::Target => Side::Origin,
                };
                cluster_on(&source.config.shards, shard, secondary)
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// A move of reads (a default route's or a tenant's primary changing)
    /// to a cluster the journal still holds writes for: reads there would
    /// be stale until they are replayed.
    fn stale_reads(
        &self,
        route: &RouteConfig,
        tenants: &HashMap<String, TenantRoute>,
        shards: &std::collections::BTreeMap<String, crate::config::ShardConfig>,
    ) -> Vec<Problem> {
        let Some(gate) = self.journal_gate.lock().clone() else {
            return Vec::new();
        };
        let before = self.snapshot();
        let primary = |route: &RouteConfig, t: Option<&TenantRoute>| {
            let (shard, phase) = shard_and_phase(route, t);
            cluster_on(shards, shard, primary_of(phase))
        };
        let mut moves: Vec<(String, String)> = Vec::new();
        let old = primary(&before.route, None);
        let new = primary(route, None);
        if let Some(n) = new.filter(|n| Some(n) != old.as_ref()) {
            moves.push(("the default route".into(), n));
        }
        for (name, t) in tenants {
            let old = primary(&before.route, before.tenants.get(name));
            let new = primary(route, Some(t));
            if let Some(n) = new.filter(|n| Some(n) != old.as_ref()) {
                moves.push((format!("tenant \"{name}\""), n));
            }
        }
        moves.sort();
        let mut p = Vec::new();
        for (what, cluster) in moves {
            let backlog = gate.backlog(&cluster);
            if backlog > 0 {
                p.push(Problem::at(
                    if what.starts_with("tenant") { "tenants.entries" } else { "route.phase" },
                    format!(
                        "{what} would read from the {cluster} cluster, which has {backlog} journaled writes not replayed yet (GET /v1/journal): its reads would be stale; wait for the replay, or repeat the change with force (\"force\": true, --force)"
                    ),
                ));
            }
        }
        p
    }

    /// What `async-secondary` needs before it is put in force (the journal
    /// open), and what a move of reads needs (no backlog for the cluster
    /// that will answer them).
    pub fn set_journal_gate(&self, gate: Arc<dyn JournalGate>) {
        *self.journal_gate.lock() = Some(gate);
    }

    /// Installs `route` as a new version, unless it is invalid (nothing
    /// changes then) or equal to the running one. `by` says where the
    /// change came from, for the log.
    fn install(
        &self,
        route: RouteConfig,
        tenants: Option<HashMap<String, TenantRoute>>,
        by: &str,
        force: bool,
    ) -> Result<(Arc<RoutePolicy>, bool), Vec<Problem>> {
        let (writes, shards) = {
            let s = self.source.lock();
            (s.config.writes.clone(), s.config.shards.clone())
        };
        let ctx = Ctx {
            writes: &writes,
            shards: &shards,
            force,
        };
        let problems = match &tenants {
            Some(t) => self.check(&route, t, ctx),
            None => self.check(&route, &self.snapshot().tenants, ctx),
        };
        if !problems.is_empty() {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                by,
                problems = ?crate::config::messages(&problems),
                "routing policy change refused; the running policy stays"
            );
            return Err(problems);
        }
        Ok(self.install_checked(route, tenants, by))
    }

    /// `install` of a route `check` has passed.
    fn install_checked(
        &self,
        route: RouteConfig,
        tenants: Option<HashMap<String, TenantRoute>>,
        by: &str,
    ) -> (Arc<RoutePolicy>, bool) {
        let mut installed = None;
        self.current.rcu(|cur| {
            let tenants = tenants.clone().unwrap_or_else(|| cur.tenants.clone());
            if cur.route == route && cur.tenants == tenants {
                installed = Some((cur.clone(), false, cur.clone()));
                cur.clone()
            } else {
                let next = Arc::new(RoutePolicy {
                    version: cur.version + 1,
                    shard: shard_id(&self.shards, &route.shard).unwrap_or_default(),
                    route: route.clone(),
                    tenants,
                });
                installed = Some((next.clone(), true, cur.clone()));
                next
            }
        });
        let (policy, changed, before) = installed.expect("rcu ran at least once");
        if changed {
            self.changes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let r = &policy.route;
            tracing::info!(
                by,
                version = policy.version,
                shard = %r.shard,
                phase = %spelled(&r.phase),
                write_mode = %spelled(&r.write_mode),
                shadow_target_primary = r.shadow_target_primary,
                tenants_changed = before.tenants != policy.tenants,
                "routing policy changed"
            );
        }
        (policy, changed)
    }

    /// `PUT /v1/policy`: changes the given fields of the default route.
    /// They are written to the route file first (when the proxy has one),
    /// so that no reload or restart undoes them; `by` names the call.
    pub fn apply(&self, patch: PolicyPatch, by: &str) -> Result<Applied, Vec<Problem>> {
        let mut source = self.source.lock();
        let config_route = &source.config.route;
        let mut overrides = source.config.route_overrides.clone();
        if let Some(r) = patch.route {
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            record(&mut overrides.shard, r.shard, &config_route.shard, &now, by);
            record(&mut overrides.phase, r.phase, &config_route.phase, &now, by);
            record(
                &mut overrides.write_mode,
                r.write_mode,
                &config_route.write_mode,
                &now,
                by,
            );
            record(
                &mut overrides.shadow_target_primary,
                r.shadow_target_primary,
                &config_route.shadow_target_primary,
                &now,
                by,
            );
        }
        let route = overrides.merge(config_route).route;
        let problems = self.check(
            &route,
            &self.snapshot().tenants,
            Ctx {
                writes: &source.config.writes,
                shards: &source.config.shards,
                force: patch.force,
            },
        );
        if !problems.is_empty() {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                by,
                problems = ?crate::config::messages(&problems),
                "routing policy change refused; the running policy stays"
            );
            return Err(problems);
        }
        let persisted = config_route.file.clone();
        if let Some(f) = &persisted {
            if overrides != source.config.route_overrides {
                write_route_file(f, &overrides).map_err(|e| {
                    self.refused
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    vec![Problem::at("route.file", format!("{e}; nothing changed"))]
                })?;
            }
        }
        let (policy, _) = self.install_checked(route, None, by);
        source.config.route_overrides = overrides;
        Ok(Applied { policy, persisted })
    }

    /// SIGHUP, `POST /v1/reload` and the file watcher (`by`): reads the
    /// config file again (with the `CUTOVER_*` overrides in `vars`), and
    /// its directory and route files, validates all of it, and installs its
    /// route. Other sections that changed are reported, not applied.
    pub fn reload(
        &self,
        vars: impl IntoIterator<Item = (String, String)>,
        by: &str,
    ) -> Result<Reloaded, Vec<Problem>> {
        let mut source = self.source.lock();
        let Some(path) = source.file.clone() else {
            return Err(vec![
                "this proxy was started without a config file (--origin/--target); there is nothing to reload".into(),
            ]);
        };
        let refused = |problems: Vec<Problem>| {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                by,
                problems = ?crate::config::messages(&problems),
                "reloaded config refused; the running policy stays"
            );
            problems
        };
        let mut new = Config::load(&path, vars).map_err(|e| {
            refused(
                e.0.into_iter()
                    .map(|p| p.found_in(path.display()))
                    .collect(),
            )
        })?;
        // The directory table's entries as last polled stay.
        new.tenants.table_entries = source.config.tenants.table_entries.clone();
        let tenants = directory(&self.shards, &all_entries(&new)).map_err(refused)?;
        // The route: the config file's, with the route file's fields that
        // stand; a field edited in the config file since the API set it
        // follows the config file, and leaves the route file.
        let merged = new.route_overrides.merge(&new.route);
        let problems = self.check(
            &merged.route,
            &tenants,
            Ctx {
                writes: &new.writes,
                shards: &new.shards,
                force: false,
            },
        );
        if !problems.is_empty() {
            return Err(refused(problems));
        }
        if !merged.dropped.is_empty() {
            if let Some(f) = &new.route.file {
                write_route_file(f, &merged.kept)
                    .map_err(|e| refused(vec![Problem::at("route.file", e)]))?;
            }
            for d in &merged.dropped {
                tracing::warn!(by, "{d}");
            }
        }
        let (policy, changed) = self.install_checked(merged.route, Some(tenants), by);
        self.reloads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // What later API changes and reloads start from.
        source.config.route = new.route.clone();
        source.config.route_overrides = merged.kept;
        source.config.tenants.entries = new.tenants.entries.clone();
        source.config.tenants.file_entries = new.tenants.file_entries.clone();
        source.config.tenants.directory_file = new.tenants.directory_file.clone();
        let old = &source.config;
        let mut restart_needed = Vec::new();
        let mut differs = |name: &str, a: bool| {
            if a {
                restart_needed.push(name.to_string());
            }
        };
        differs("listen", new.listen != old.listen);
        // The files' contents are read again on every reload; other paths
        // or settings wait for a restart.
        differs("tls", new.tls != old.tls);
        differs(
            "admin",
            new.admin != old.admin
                || new.admin_token != old.admin_token
                || new.admin_tls != old.admin_tls,
        );
        differs("ddl", new.ddl != old.ddl);
        differs("worker_threads", new.worker_threads != old.worker_threads);
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
