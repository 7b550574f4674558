//! The proxy's journal: opened at start when a route uses `async-secondary`
//! or the directory holds records from an earlier run, or when a live
//! change first asks for `async-secondary`; once open, its replayer runs
//! until the proxy closes. Its gauges and counters are here too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::config::{Config, JournalDurability, WhenFull, WriteMode};
use crate::journal::replay::{self, ReplayOptions, ReplayStats, Sender};
use crate::journal::{Durability, Journal, Options};
use crate::metrics::{Collector, Exposition, MetricType};
use crate::upstream::Cluster;

/// Why a write in `async-secondary` was served as in `sync` (one counter
/// each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptSync {
    /// `IF ...`: a lightweight transaction.
    Conditional,
    /// `c = c + ...`: a counter, or a collection appended to.
    Increment,
    /// No fixed write time to replay it with.
    NoWriteTime,
    /// `now()`, `uuid()` ... left to each cluster.
    ServerFunction,
    /// The journal was full (`when_full = "sync"`) or could not be written.
    JournalFull,
}

impl KeptSync {
    const ALL: [KeptSync; 5] = [
        KeptSync::Conditional,
        KeptSync::Increment,
        KeptSync::NoWriteTime,
        KeptSync::ServerFunction,
        KeptSync::JournalFull,
    ];

    pub fn label(self) -> &'static str {
        match self {
            KeptSync::Conditional => "lwt",
            KeptSync::Increment => "increment",
            KeptSync::NoWriteTime => "no-write-time",
            KeptSync::ServerFunction => "server-function",
            KeptSync::JournalFull => "journal-full",
        }
    }
}

/// Counts by cluster and `keyspace.table`, at most
/// [`crate::journal::MAX_TABLES`] tables counted on their own (the rest as
/// `other`).
#[derive(Default)]
struct ByTable(
    parking_lot::Mutex<std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>>,
);

impl ByTable {
    fn add(&self, cluster: &str, table: &str) {
        let mut m = self.0.lock();
        let tables: usize = m.values().map(|t| t.len()).sum();
        if !m.contains_key(cluster) {
            m.insert(cluster.to_string(), Default::default());
        }
        let of = m.get_mut(cluster).expect("inserted above");
        match of.get_mut(table) {
            Some(n) => *n += 1,
            None if tables >= crate::journal::MAX_TABLES => {
                *of.entry("other".into()).or_default() += 1
            }
            None => {
                of.insert(table.to_string(), 1);
            }
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!(*self.0.lock())
    }

    fn samples(&self, out: &mut Exposition, name: &str) {
        for (cluster, tables) in self.0.lock().iter() {
            for (table, n) in tables {
                out.sample(name, &[("cluster", cluster), ("table", table)], *n as f64);
            }
        }
    }
}

pub struct JournalSlot {
    opts: Options,
    replay: ReplayOptions,
    pub when_full: WhenFull,
    cell: OnceLock<Arc<Journal>>,
    opening: parking_lot::Mutex<()>,
    clusters: Vec<Arc<Cluster>>,
    pub replay_stats: Arc<ReplayStats>,
    runtime: tokio::runtime::Handle,
    stop: CancellationToken,
    /// Async-secondary writes under way to a secondary, over the proxy.
    pub secondary_permits: Arc<tokio::sync::Semaphore>,
    kept_sync: [AtomicU64; 5],
    /// The same writes by secondary cluster and table (bounded).
    kept_sync_by_table: ByTable,
    /// Writes refused because the journal was full (`when_full = "refuse"`).
    pub refused_full: AtomicU64,
    /// Live secondary sends left to replay (no permit, the cluster down, or
    /// the send failed).
    pub left_to_replay: AtomicU64,
    /// Appends are being refused (logged once when it starts).
    full: std::sync::atomic::AtomicBool,
    /// Live secondary sends that failed, by cluster and table (bounded).
    mirror_failures: ByTable,
}

impl JournalSlot {
    pub fn new(
        config: &Config,
        clusters: Vec<Arc<Cluster>>,
        stop: CancellationToken,
    ) -> JournalSlot {
        let j = &config.journal;
        JournalSlot {
            opts: Options {
                dir: j.dir.clone(),
                max_bytes: j.max_bytes.0,
                segment_bytes: j.segment_bytes.0,
                durability: match j.durability {
                    JournalDurability::PageCache => Durability::PageCache,
                    JournalDurability::GroupCommit => {
                        Durability::GroupCommit(j.group_commit_interval.0)
                    }
                    JournalDurability::Fsync => Durability::Fsync,
                },
            },
            replay: ReplayOptions {
                rate: j.replay_rate,
                concurrency: j.replay_concurrency,
            },
            when_full: j.when_full,
            cell: OnceLock::new(),
            opening: parking_lot::Mutex::new(()),
            clusters,
            replay_stats: Arc::default(),
            runtime: tokio::runtime::Handle::current(),
            stop,
            secondary_permits: Arc::new(tokio::sync::Semaphore::new(
                j.max_secondary_in_flight as usize,
            )),
            kept_sync: Default::default(),
            kept_sync_by_table: Default::default(),
            refused_full: AtomicU64::new(0),
            left_to_replay: AtomicU64::new(0),
            full: Default::default(),
            mirror_failures: Default::default(),
        }
    }

    /// Whether the config asks for the journal at start: a route in
    /// `async-secondary`, or records left in its directory.
    pub fn wanted_at_start(config: &Config) -> bool {
        let asks = config.route.write_mode == WriteMode::AsyncSecondary
            || config
                .route_overrides
                .write_mode
                .as_ref()
                .is_some_and(|o| o.value == WriteMode::AsyncSecondary)
            || config
                .tenants
                .entries
                .iter()
                .chain(&config.tenants.file_entries)
                .any(|e| e.write_mode == Some(WriteMode::AsyncSecondary));
        let has_records = std::fs::read_dir(&config.journal.dir)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".log"))
            })
            .unwrap_or(false);
        asks || has_records
    }

    /// The journal, when open.
    pub fn get(&self) -> Option<&Arc<Journal>> {
        self.cell.get()
    }

    /// Opens the journal (once) and starts its replayer.
    pub fn open(&self) -> Result<&Arc<Journal>, String> {
        if let Some(j) = self.cell.get() {
            return Ok(j);
        }
        let _one = self.opening.lock();
        if let Some(j) = self.cell.get() {
            return Ok(j);
        }
        let (journal, recovery) = Journal::open(self.opts.clone()).map_err(|e| e.to_string())?;
        tracing::info!(
            dir = %self.opts.dir.display(),
            durability = ?self.opts.durability,
            segments = recovery.segments,
            pending = recovery.pending,
            cut_bytes = recovery.cut_bytes,
            "journal open"
        );
        if recovery.pending > 0 {
            tracing::warn!(
                pending = recovery.pending,
                "journal: writes the secondary never acknowledged, from an earlier run; replaying them"
            );
        }
        let sender = Arc::new(Sender::new(self.clusters.clone()));
        self.runtime.spawn(replay::run(
            journal.clone(),
            sender,
            self.replay,
            self.replay_stats.clone(),
            self.stop.clone(),
        ));
        let _ = self.cell.set(journal);
        Ok(self.cell.get().expect("just set"))
    }

    /// An append succeeded: a journal that was full has room again.
    pub fn note_appended(&self) {
        if self.full.load(Ordering::Relaxed) && self.full.swap(false, Ordering::Relaxed) {
            tracing::info!("journal: room again; async-secondary writes are journaled again");
        }
    }

    /// An append was refused (full, or the journal cannot be written): one
    /// log line when it starts, the counters every time.
    pub fn note_full(&self, e: &crate::journal::JournalError) {
        if !self.full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %e,
                when_full = ?self.when_full,
                "journal: async-secondary writes cannot be journaled; they are {} until there is room",
                match self.when_full {
                    WhenFull::Sync => "served as in sync (clients wait for both clusters)",
                    WhenFull::Refuse => "refused",
                }
            );
        }
    }

    /// A live secondary send of a write to `table` failed.
    pub fn count_mirror_failure(&self, cluster: &str, table: &str) {
        self.mirror_failures.add(cluster, table);
    }

    /// A write to `table` whose secondary is `cluster` was served as in sync.
    pub fn count_kept_sync(&self, why: KeptSync, cluster: &str, table: &str) {
        let i = KeptSync::ALL.iter().position(|k| *k == why).unwrap_or(0);
        self.kept_sync[i].fetch_add(1, Ordering::Relaxed);
        self.kept_sync_by_table.add(cluster, table);
    }

    /// Closes the journal (everything appended is written and synced).
    pub fn close(&self) {
        if let Some(j) = self.cell.get() {
            j.close();
        }
    }

    /// The backlog per cluster, for readiness and the admin API.
    pub fn report(&self) -> serde_json::Value {
        let Some(j) = self.get() else {
            return serde_json::json!({ "open": false, "dir": self.opts.dir });
        };
        let s = j.stats();
        let oldest = j.oldest_pending_age().map(|d| d.as_secs_f64());
        let r = &self.replay_stats;
        serde_json::json!({
            "open": true,
            "dir": self.opts.dir,
            // As the config spells it.
            "durability": match self.opts.durability {
                Durability::Fsync => "fsync".to_string(),
                Durability::GroupCommit(every) => format!("group-commit every {}", humantime::format_duration(every)),
                Durability::PageCache => "page-cache".to_string(),
            },
            "pending_records": s.pending_records,
            "pending_bytes": s.pending_bytes,
            "oldest_pending_age_seconds": oldest,
            "used_bytes": s.used_bytes,
            "max_bytes": s.max_bytes,
            "segments": s.segments,
            "appended": s.appended_total,
            "acknowledged": s.done_total,
            "replayed": r.replayed.load(Ordering::Relaxed),
            "replay_attempts_failed": r.retried.load(Ordering::Relaxed),
            "expired": r.expired.load(Ordering::Relaxed),
            "dead_letters": s.dead_letters_total,
            "full": s.full_total,
            "pending_by_cluster": j.pending_by_cluster().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
            "tables": j.by_table(),
            // The newest dead letters, with why they failed for good.
            "recent_dead_letters": j.dead_letters().map(|d| {
                d.iter().rev().take(20).map(|(seq, error, r)| serde_json::json!({
                    "seq": seq, "error": error, "cluster": r.cluster, "table": r.table, "tenant": r.tenant,
                })).collect::<Vec<_>>()
            }).unwrap_or_default(),
            "kept_sync_by_table": self.kept_sync_by_table.json(),
            "mirror_failures_by_table": self.mirror_failures.json(),
            "kept_sync": KeptSync::ALL.iter().enumerate().map(|(i, k)| (k.label().to_string(), self.kept_sync[i].load(Ordering::Relaxed))).collect::<std::collections::BTreeMap<_, _>>(),
        })
    }
}

impl crate::routing::JournalGate for JournalSlot {
    fn open(&self) -> Result<(), String> {
        JournalSlot::open(self).map(|_| ())
    }

    fn backlog(&self, cluster: &str) -> u64 {
        self.get().map(|j| j.pending_for(cluster)).unwrap_or(0)
    }
}

impl Collector for JournalSlot {
    fn collect(&self, out: &mut Exposition) {
        let counter = |out: &mut Exposition, name: &str, help: &str, v: u64| {
            out.family(name, help, MetricType::Counter);
            out.sample(name, &[], v as f64);
        };
        out.family(
            "cutover_writes_kept_sync_total",
            "async-secondary writes served as in sync (waiting for both clusters), by why",
            MetricType::Counter,
        );
        for (i, k) in KeptSync::ALL.iter().enumerate() {
            out.sample(
                "cutover_writes_kept_sync_total",
                &[("reason", k.label())],
                self.kept_sync[i].load(Ordering::Relaxed) as f64,
            );
        }
        counter(
            out,
            "cutover_journal_refused_total",
            "async-secondary writes refused because the journal was full (when_full = \"refuse\")",
            self.refused_full.load(Ordering::Relaxed),
        );
        let Some(j) = self.get() else { return };
        let s = j.stats();
        let gauge = |out: &mut Exposition, name: &str, help: &str, v: f64| {
            out.family(name, help, MetricType::Gauge);
            out.sample(name, &[], v);
        };
        let tables = j.by_table();
        type Of = fn(&crate::journal::TableStats) -> u64;
        let series: [(&str, &str, MetricType, Of); 3] = [
            (
                "cutover_journal_pending_records",
                "Journaled writes not acknowledged yet, by cluster and keyspace.table",
                MetricType::Gauge,
                |t| t.pending,
            ),
            (
                "cutover_journal_table_appended_total",
                "Writes journaled since start, by cluster and keyspace.table",
                MetricType::Counter,
                |t| t.appended,
            ),
            (
                "cutover_journal_table_acknowledged_total",
                "Journaled writes acknowledged since start, by cluster and keyspace.table",
                MetricType::Counter,
                |t| t.acknowledged,
            ),
        ];
        for (name, help, kind, value) in series {
            out.family(name, help, kind);
            for t in &tables {
                out.sample(
                    name,
                    &[("cluster", &t.cluster), ("table", &t.table)],
                    value(t) as f64,
                );
            }
        }
        out.family(
            "cutover_journal_mirror_failures_total",
            "async-secondary writes whose live send to the secondary failed (left to replay), by cluster and keyspace.table",
            MetricType::Counter,
        );
        self.mirror_failures
            .samples(out, "cutover_journal_mirror_failures_total");
        out.family(
            "cutover_writes_kept_sync_by_table_total",
            "async-secondary writes served as in sync, by secondary cluster and keyspace.table",
            MetricType::Counter,
        );
        self.kept_sync_by_table
            .samples(out, "cutover_writes_kept_sync_by_table_total");
        gauge(
            out,
            "cutover_journal_pending_bytes",
            "Bytes of the journaled writes the secondary has not acknowledged",
            s.pending_bytes as f64,
        );
        gauge(
            out,
            "cutover_journal_used_bytes",
            "Bytes the journal's segments hold on disk",
            s.used_bytes as f64,
        );
        gauge(
            out,
            "cutover_journal_max_bytes",
            "journal.max_bytes",
            s.max_bytes as f64,
        );
        let age = j
            .oldest_pending_age()
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        gauge(
            out,
            "cutover_journal_oldest_pending_age_seconds",
            "Age of the oldest journaled write not acknowledged (0: none)",
            age,
        );
        counter(
            out,
            "cutover_journal_appended_total",
            "Writes appended to the journal",
            s.appended_total,
        );
        counter(
            out,
            "cutover_journal_acknowledged_total",
            "Journaled writes the secondary acknowledged (live or replayed)",
            s.done_total,
        );
        let r = &self.replay_stats;
        counter(
            out,
            "cutover_journal_replayed_total",
            "Journaled writes replayed to the secondary",
            r.replayed.load(Ordering::Relaxed),
        );
        counter(
            out,
            "cutover_journal_replay_failures_total",
            "Replay attempts that failed and will be made again",
            r.retried.load(Ordering::Relaxed),
        );
        counter(
            out,
            "cutover_journal_expired_total",
            "Journaled writes dropped because their TTL ran out before replay",
            r.expired.load(Ordering::Relaxed),
        );
        counter(
            out,
            "cutover_journal_dead_letters_total",
            "Journaled writes that failed for good, kept in the dead-letter file",
            s.dead_letters_total,
        );
        counter(
            out,
            "cutover_journal_full_total",
            "Appends refused because the journal was full",
            s.full_total,
        );
        counter(
            out,
            "cutover_journal_left_to_replay_total",
            "Live secondary sends left to replay (no permit, cluster down, or failed)",
            self.left_to_replay.load(Ordering::Relaxed),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::ByTable;
    use crate::journal::MAX_TABLES;

    #[test]
    fn counts_by_table_stop_growing_at_the_bound() {
        let c = ByTable::default();
        for i in 0..MAX_TABLES + 50 {
            c.add(
                if i % 2 == 0 { "target" } else { "origin" },
                &format!("ks.t{i}"),
            );
        }
        c.add("target", "ks.t0");
        c.add("target", "ks.new");
        let m = c.0.lock();
        let counted: usize = m.values().map(|t| t.len()).sum();
        assert_eq!(
            counted,
            MAX_TABLES + 2,
            "the tables counted, and `other` per cluster"
        );
        assert_eq!(m["target"]["ks.t0"], 2);
        let total: u64 = m.values().flat_map(|t| t.values()).sum();
        assert_eq!(total, MAX_TABLES as u64 + 52, "nothing is lost");
        assert_eq!(m["target"]["other"] + m["origin"]["other"], 51);
    }
}
