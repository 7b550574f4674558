//! Replay: journal records the secondary has not acknowledged, sent again
//! on connections of the replayer's own, each with the write time it was
//! journaled with — so their order does not matter and a replay never
//! overwrites a newer value (last write wins, by write time).
//!
//! A prepared statement is prepared again on the cluster (its text and
//! keyspace are in the record). An answer that will never change (the
//! table was dropped, the statement is invalid there) sends the record to
//! the dead-letter file; anything else (the cluster down, slow, overloaded)
//! leaves it for a later attempt, after a backoff.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::ttl::Plan;
use super::{Journal, Record, Statement};
use crate::frame::Opcode;
use crate::protocol::request::{Batch, BatchStatement, Execute, Prepare};
use crate::protocol::{ErrorCode, ErrorFrame};
use crate::upstream::{Cluster, ConnectOptions, UpstreamConn};

/// How fast and how wide replay goes.
#[derive(Debug, Clone, Copy)]
pub struct ReplayOptions {
    /// Records per second at most; 0: no limit.
    pub rate: u32,
    /// Records sent at once.
    pub concurrency: u32,
}

/// What replay did, for metrics and summaries.
#[derive(Debug, Default)]
pub struct ReplayStats {
    pub replayed: AtomicU64,
    /// Attempts that will be made again (the cluster down, slow, refusing).
    pub retried: AtomicU64,
    /// Records whose TTL ran out before they could be replayed.
    pub expired: AtomicU64,
    pub dead_lettered: AtomicU64,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Its TTL is over: replaying it would write cells already gone.
    Expired,
    /// Not this time (why): it stays for a later attempt.
    Retry(String),
    /// Never (why): to the dead-letter file.
    Dead(String),
}

/// Sends records to the clusters they name.
pub struct Sender {
    clusters: Vec<Arc<Cluster>>,
    conns: tokio::sync::Mutex<HashMap<ConnKey, Arc<UpstreamConn>>>,
    prepared: parking_lot::Mutex<HashMap<PreparedKey, Bytes>>,
}

/// A replay connection: cluster, protocol version, keyspace.
type ConnKey = (String, u8, Option<String>);
/// A statement prepared on a cluster: cluster, version, keyspace, text.
type PreparedKey = (String, u8, Option<String>, String);

/// Answers that a later attempt would get again.
fn permanent(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::SYNTAX_ERROR
            | ErrorCode::UNAUTHORIZED
            | ErrorCode::INVALID
            | ErrorCode::CONFIG_ERROR
            | ErrorCode::ALREADY_EXISTS
            | ErrorCode::PROTOCOL_ERROR
    )
}

impl Sender {
    pub fn new(clusters: Vec<Arc<Cluster>>) -> Sender {
        Sender {
            clusters,
            conns: Default::default(),
            prepared: Default::default(),
        }
    }

    async fn conn(
        &self,
        cluster: &Cluster,
        version: u8,
        keyspace: Option<String>,
    ) -> Result<Arc<UpstreamConn>, String> {
        let key = (cluster.name.clone(), version, keyspace.clone());
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(&key).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let cfg = &cluster.config;
        let opts = ConnectOptions {
            version,
            credentials: cfg.username.clone().map(|u| {
                (
                    u,
                    cfg.password
                        .as_ref()
                        .map(|p| p.expose().to_string())
                        .unwrap_or_default(),
                )
            }),
            keyspace,
            connect_timeout: cfg.connect_timeout.0,
            heartbeat_interval: Some(cfg.heartbeat_interval.0),
            frame_timeout: cfg.request_timeout.0,
            tls: cluster.tls.clone(),
            ..ConnectOptions::default()
        };
        let mut last = format!("the {} cluster has no node to connect to", cluster.name);
        for node in cluster.candidates() {
            match UpstreamConn::connect(node, &opts).await {
                Ok(c) => {
                    let c = Arc::new(c);
                    conns.insert(key, c.clone());
                    return Ok(c);
                }
                Err(e) => last = format!("the {} cluster: {e}", cluster.name),
            }
        }
        Err(last)
    }

    /// The cluster's id of `s`, prepared there when not known yet.
    async fn prepare(
        &self,
        cluster: &Cluster,
        version: u8,
        s: &Statement,
    ) -> Result<Bytes, Outcome> {
        let key = (
            cluster.name.clone(),
            version,
            s.keyspace.clone(),
            s.text.clone(),
        );
        if let Some(id) = self.prepared.lock().get(&key) {
            return Ok(id.clone());
        }
        let conn = self
            .conn(cluster, version, s.keyspace.clone())
            .await
            .map_err(Outcome::Retry)?;
        let body = Prepare {
            text: s.text.clone(),
            keyspace: None,
        }
        .encode(version);
        let a = conn
            .request(Opcode::Prepare, body, cluster.config.request_timeout.0)
            .await
            .map_err(|e| Outcome::Retry(e.to_string()))?;
        if a.op() == Some(Opcode::Error) {
            return Err(error_outcome(&a.body, "preparing it"));
        }
        let id = match crate::protocol::response::ResultBody::read(&a.body, version) {
            Ok(crate::protocol::response::ResultBody::Prepared(p)) => p.id,
            Ok(_) => {
                return Err(Outcome::Retry(
                    "PREPARE answered without a prepared id".into(),
                ))
            }
            Err(e) => return Err(Outcome::Retry(format!("the PREPARED answer: {e}"))),
        };
        self.prepared.lock().insert(key, id.clone());
        Ok(id)
    }

    fn forget_prepared(&self, cluster: &str) {
        self.prepared.lock().retain(|k, _| k.0 != cluster);
    }

    /// Sends `r` to its cluster, once (and once more after an UNPREPARED).
    pub async fn send(&self, r: &Record) -> Outcome {
        let Some(cluster) = self.clusters.iter().find(|c| c.name == r.cluster) else {
            return Outcome::Dead(format!(
                "the record is for cluster \"{}\", which this proxy does not have",
                r.cluster
            ));
        };
        // What remains of its TTLs, counted from when it was journaled.
        let plan = match super::ttl::plan(r, super::unix_ms()) {
            Ok(p) => p,
            Err(o) => return o,
        };
        let op = plan.op;
        for attempt in 0..2 {
            let body = match self.body(cluster, r.version, &plan).await {
                Ok(b) => b,
                Err(o) => return o,
            };
            let conn = match self.conn(cluster, r.version, plan.keyspace.clone()).await {
                Ok(c) => c,
                Err(e) => return Outcome::Retry(e),
            };
            let a = match conn
                .request(op, body, cluster.config.request_timeout.0)
                .await
            {
                Ok(a) => a,
                Err(e) => return Outcome::Retry(e.to_string()),
            };
            if a.op() != Some(Opcode::Error) {
                return Outcome::Done;
            }
            let unprepared =
                ErrorFrame::decode(&a.body).is_ok_and(|e| e.code == ErrorCode::UNPREPARED);
            if unprepared && attempt == 0 {
                self.forget_prepared(&cluster.name);
                continue;
            }
            return error_outcome(&a.body, "replaying it");
        }
        Outcome::Retry("the cluster kept answering UNPREPARED".into())
    }

    /// The body to send: a prepared statement's id is the cluster's.
    async fn body(&self, cluster: &Cluster, version: u8, plan: &Plan) -> Result<Bytes, Outcome> {
        let bad = |e: crate::protocol::BodyError| {
            Outcome::Dead(format!("the journaled request cannot be read: {e}"))
        };
        match plan.op {
            Opcode::Execute => {
                let s = plan.prepared.first().ok_or_else(|| {
                    Outcome::Dead("an EXECUTE record without its statement".into())
                })?;
                let id = self.prepare(cluster, version, s).await?;
                Execute::with_id(&plan.body, &id).map_err(bad)
            }
            Opcode::Batch if !plan.prepared.is_empty() => {
                let mut b = Batch::read(&plan.body, version).map_err(bad)?;
                let mut statements = plan.prepared.iter();
                for child in b.children.iter_mut() {
                    if let BatchStatement::Prepared(id) = &mut child.statement {
                        let s = statements.next().ok_or_else(|| {
                            Outcome::Dead(
                                "a BATCH record with fewer statements than prepared children"
                                    .into(),
                            )
                        })?;
                        *id = self.prepare(cluster, version, s).await?;
                    }
                }
                Ok(b.encode(version))
            }
            _ => Ok(plan.body.clone()),
        }
    }
}

fn error_outcome(body: &Bytes, doing: &str) -> Outcome {
    match ErrorFrame::decode(body) {
        Ok(e) if permanent(e.code) => Outcome::Dead(format!("{doing}: {}", e.message)),
        Ok(e) => Outcome::Retry(format!("{doing}: {}", e.message)),
        Err(e) => Outcome::Retry(format!("{doing}: an unreadable ERROR ({e})")),
    }
}

/// Replays one claimed record and settles it in the journal.
async fn one(journal: &Journal, sender: &Sender, stats: &ReplayStats, seq: u64) -> Outcome {
    let record = match journal.read(seq) {
        Ok(r) => r,
        Err(e) => {
            // Damaged since it was recovered: it cannot be sent, nor kept.
            tracing::error!(seq, error = %e, "journal: a record cannot be read back; dropped");
            stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            journal.done(seq);
            return Outcome::Dead(e.to_string());
        }
    };
    let outcome = sender.send(&record).await;
    match &outcome {
        Outcome::Done => {
            stats.replayed.fetch_add(1, Ordering::Relaxed);
            journal.done(seq);
        }
        Outcome::Expired => {
            stats.expired.fetch_add(1, Ordering::Relaxed);
            journal.done(seq);
        }
        Outcome::Retry(_) => {
            stats.retried.fetch_add(1, Ordering::Relaxed);
            journal.release(seq);
        }
        Outcome::Dead(why) => {
            tracing::warn!(seq, cluster = %record.cluster, table = %record.table, error = %why, "journal: a record failed for good and went to the dead-letter file");
            stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = journal.dead_letter(seq, why) {
                tracing::error!(seq, error = %e, "journal: cannot write a dead letter; the record stays");
                journal.release(seq);
            }
        }
    }
    outcome
}

/// Of `room` sends, how many `rate` per second (0: no limit) allows now,
/// `sent` having gone since `started`.
fn within_rate(room: usize, rate: u32, started: tokio::time::Instant, sent: u64) -> usize {
    if rate == 0 {
        return room;
    }
    let allowed = (started.elapsed().as_secs_f64() * rate as f64) as u64 + 1;
    room.min(allowed.saturating_sub(sent) as usize)
}

/// Replays while `stop` is not cancelled: whatever is pending and not
/// being sent, `concurrency` at once, at most `rate` per second; after a
/// failed attempt it waits (100 ms, doubling to 5 s) before claiming more.
pub async fn run(
    journal: Arc<Journal>,
    sender: Arc<Sender>,
    opts: ReplayOptions,
    stats: Arc<ReplayStats>,
    stop: CancellationToken,
) {
    const IDLE: Duration = Duration::from_millis(200);
    const MAX_BACKOFF: Duration = Duration::from_secs(5);
    let concurrency = opts.concurrency.max(1) as usize;
    let mut in_flight = FuturesUnordered::new();
    let mut backoff = Duration::ZERO;
    let mut pause_until = tokio::time::Instant::now();
    let started = tokio::time::Instant::now();
    let mut sent: u64 = 0;
    loop {
        let now = tokio::time::Instant::now();
        if now >= pause_until {
            let room = within_rate(concurrency - in_flight.len(), opts.rate, started, sent);
            if room > 0 {
                for seq in journal.claim_for_replay(room) {
                    sent += 1;
                    let (j, s, st) = (journal.clone(), sender.clone(), stats.clone());
                    in_flight.push(async move { one(&j, &s, &st, seq).await });
                }
            }
        }
        if in_flight.is_empty() {
            let wait = pause_until.max(now + IDLE);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(wait) => continue,
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            // Room again (rate or backoff): claim more.
            _ = tokio::time::sleep(IDLE), if in_flight.len() < concurrency => {}
            r = in_flight.next() => match r {
                Some(Outcome::Retry(why)) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
                    pause_until = tokio::time::Instant::now() + backoff;
                    tracing::debug!(error = %why, ?backoff, "journal: replay attempt failed; trying again later");
                }
                Some(_) => backoff = Duration::ZERO,
                None => {}
            },
        }
    }
}

/// What one pass of [`once`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    pub replayed: u64,
    pub expired: u64,
    pub dead_lettered: u64,
    /// Left in the journal for a later attempt, with the last reason.
    pub left: u64,
    pub last_error: Option<String>,
}

/// One pass over every pending record (`cutover replay`): each is sent
/// once, `concurrency` at once, at most `rate` per second; `progress` is
/// called after each. A record that cannot be sent now stays.
pub async fn once(
    journal: &Arc<Journal>,
    sender: &Arc<Sender>,
    opts: ReplayOptions,
    mut progress: impl FnMut(&Outcome),
) -> Pass {
    let stats = Arc::new(ReplayStats::default());
    let concurrency = opts.concurrency.max(1) as usize;
    // Every pending record, claimed at once: each is tried once.
    let mut todo = journal.claim_for_replay(usize::MAX).into_iter();
    let mut in_flight = FuturesUnordered::new();
    let mut pass = Pass::default();
    let started = tokio::time::Instant::now();
    let mut sent: u64 = 0;
    loop {
        let room = within_rate(concurrency - in_flight.len(), opts.rate, started, sent);
        for seq in todo.by_ref().take(room) {
            sent += 1;
            let (j, s, st) = (journal.clone(), sender.clone(), stats.clone());
            in_flight.push(async move { one(&j, &s, &st, seq).await });
        }
        if in_flight.is_empty() {
            if todo.len() == 0 {
                break;
            }
            // Held back by the rate.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let outcome = tokio::select! {
            o = in_flight.next() => o,
            _ = tokio::time::sleep(Duration::from_millis(5)), if opts.rate > 0 && todo.len() > 0 => continue,
        };
        let Some(o) = outcome else { continue };
        match &o {
            Outcome::Done => pass.replayed += 1,
            Outcome::Expired => pass.expired += 1,
            Outcome::Dead(_) => pass.dead_lettered += 1,
            Outcome::Retry(e) => {
                pass.left += 1;
                pass.last_error = Some(e.clone());
            }
        }
        progress(&o);
    }
    pass
}
