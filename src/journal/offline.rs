//! `cutover replay`: a journal's pending records sent by hand, with no
//! proxy running on it — to a proxy config's clusters (and their
//! credentials), or to one node for every record.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::replay::{self, Outcome, ReplayOptions, Sender};
use super::{Durability, Journal, Options};
use crate::config::{ClusterConfig, Config};
use crate::metrics::{Metrics, MetricsOptions};

/// Where the records go.
pub enum Destination {
    /// The clusters of this config, by the names records carry.
    Config(Box<Config>),
    /// This node, for every record whatever cluster it names.
    To(String),
}

pub struct ReplayArgs {
    pub journal: PathBuf,
    pub to: Destination,
    pub rate: u32,
    pub concurrency: u32,
    pub dry_run: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// What `cutover replay` did (printed as JSON).
#[derive(Debug, Serialize)]
pub struct Summary {
    pub journal: PathBuf,
    /// Records pending at start, per cluster.
    pub pending: Vec<(String, u64)>,
    pub dry_run: bool,
    pub replayed: u64,
    pub expired: u64,
    pub dead_lettered: u64,
    /// Still in the journal (the cluster did not take them now).
    pub left: u64,
    pub last_error: Option<String>,
    pub seconds: f64,
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<Summary> {
    if !args.journal.is_dir() {
        anyhow::bail!("{} is not a journal directory", args.journal.display());
    }
    let (journal, recovery) = Journal::open(Options {
        dir: args.journal.clone(),
        max_bytes: u64::MAX,
        segment_bytes: 64 * 1024 * 1024,
        durability: Durability::Fsync,
    })?;
    let pending = journal.pending_by_cluster();
    let started = std::time::Instant::now();
    let mut summary = Summary {
        journal: args.journal.clone(),
        pending: pending.clone(),
        dry_run: args.dry_run,
        replayed: 0,
        expired: 0,
        dead_lettered: 0,
        left: recovery.pending,
        last_error: None,
        seconds: 0.0,
    };
    if args.dry_run || recovery.pending == 0 {
        journal.close();
        return Ok(summary);
    }
    let names: Vec<String> = pending.iter().map(|(n, _)| n.clone()).collect();
    let (configs, metric_names): (Vec<(String, ClusterConfig)>, Vec<String>) = match &args.to {
        Destination::Config(c) => {
            let missing: Vec<&String> = names
                .iter()
                .filter(|n| !c.clusters.contains_key(*n))
                .collect();
            if !missing.is_empty() {
                anyhow::bail!(
                    "the journal holds writes for cluster(s) {missing:?}, which the config does not have (it has {:?})",
                    c.clusters.keys().collect::<Vec<_>>()
                );
            }
            let list: Vec<(String, ClusterConfig)> = names
                .iter()
                .map(|n| (n.clone(), c.clusters[n].clone()))
                .collect();
            (list, c.clusters.keys().cloned().collect())
        }
        Destination::To(addr) => (
            names
                .iter()
                .map(|n| {
                    (
                        n.clone(),
                        ClusterConfig {
                            contact_points: vec![addr.clone()],
                            ..ClusterConfig::default()
                        },
                    )
                })
                .collect(),
            names.clone(),
        ),
    };
    let metrics = Metrics::new(MetricsOptions::default(), &metric_names);
    let mut clusters = Vec::new();
    for (name, cfg) in &configs {
        clusters.push(Arc::new(
            crate::upstream::resolve(name, cfg, &metrics).await?,
        ));
    }
    let sender = Arc::new(Sender::new(clusters));
    let bar = if args.progress {
        let b = indicatif::ProgressBar::new(recovery.pending);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} records  {per_sec}  ETA {eta}  {msg}",
            )
            .expect("a valid template"),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let pass = replay::once(
        &journal,
        &sender,
        ReplayOptions {
            rate: args.rate,
            concurrency: args.concurrency,
        },
        |o| {
            bar.inc(1);
            if let Outcome::Retry(e) | Outcome::Dead(e) = o {
                bar.set_message(e.chars().take(80).collect::<String>());
            }
        },
    )
    .await;
    bar.finish_and_clear();
    let j = journal.clone();
    tokio::task::spawn_blocking(move || j.close()).await?;
    summary.replayed = pass.replayed;
    summary.expired = pass.expired;
    summary.dead_lettered = pass.dead_lettered;
    summary.left = pass.left;
    summary.last_error = pass.last_error;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
