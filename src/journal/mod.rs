//! The write-ahead journal of async-secondary writes: a local,
//! append-only, segmented, checksummed log under one directory.
//!
//! A write is appended (and, per [`Durability`], made durable) before its
//! client is answered; it is marked done when the secondary acknowledges
//! it. What is not done is replayed: by the proxy once the secondary
//! answers again, or by `cutover replay`. At open the journal scans its
//! segments, cuts a torn or damaged tail (found by its checksum) and keeps
//! every whole record before it. A segment whose records are all done is
//! deleted; the journal never holds more than `max_bytes` on disk (a full
//! journal refuses the append and the caller decides, per the config).
//!
//! One writer thread owns the files: appenders hand it their entry and
//! wait for its acknowledgement, so many appends share a write and a sync.
//! What a record is and where it is are decided under one lock at append
//! time; the writer follows.

pub mod offline;
mod record;
pub mod replay;
mod segment;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::oneshot;

pub use record::{unix_ms, Record, RecordError, Statement};
use segment::Found;

/// When an appended record counts as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Once in the operating system's page cache: survives a crash of the
    /// proxy, not of the machine.
    PageCache,
    /// At the next of the writer's syncs, one every this long: a machine
    /// crash loses at most this window, and appends wait up to it.
    GroupCommit(Duration),
    /// Synced before it is acknowledged (appends that arrive together
    /// share one sync).
    Fsync,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    /// What the segments may hold on disk, together.
    pub max_bytes: u64,
    /// A segment is closed and a new one begun past this.
    pub segment_bytes: u64,
    pub durability: Durability,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("the journal is full ({used} of {max} bytes hold records the secondary has not acknowledged)")]
    Full { used: u64, max: u64 },
    #[error("the journal cannot be written: {0}")]
    Failed(String),
    #[error("journal record {0} is not in the journal")]
    Unknown(u64),
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "journal {path}: record {seq} is of format {format}, which this cutover does not read \
         (it reads up to {}); start the version that wrote it, or run its `cutover replay`, \
         until the journal is empty",
        record::FORMAT
    )]
    NewerFormat { path: PathBuf, seq: u64, format: u8 },
    #[error("journal record {seq}: {source}")]
    Record {
        seq: u64,
        #[source]
        source: RecordError,
    },
}

/// What opening the journal found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Segments kept.
    pub segments: usize,
    /// Records in them not acknowledged yet: to replay.
    pub pending: u64,
    /// Bytes cut from torn or damaged tails (segments and done files).
    pub cut_bytes: u64,
    /// Segment files set aside as `*.damaged` (not a journal file).
    pub damaged: Vec<PathBuf>,
}

/// Distinct `keyspace.table` counted on their own; the rest are `other`.
pub const MAX_TABLES: usize = 1000;

/// Records of one cluster and `keyspace.table`.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableStats {
    pub cluster: String,
    pub table: String,
    /// Not acknowledged yet.
    pub pending: u64,
    /// Since the journal was opened (pending ones recovered count in
    /// `pending` only).
    pub appended: u64,
    pub acknowledged: u64,
}

/// The index of (cluster, table) in `labels`, added when new; past
/// `MAX_TABLES` a table counts as the cluster's `other`.
fn label_of(labels: &mut Vec<TableStats>, cluster: &str, table: &str) -> u16 {
    let table = if labels.len() >= MAX_TABLES
        && !labels
            .iter()
            .any(|l| l.cluster == cluster && l.table == table)
    {
        "other"
    } else {
        table
    };
    match labels
        .iter()
        .position(|l| l.cluster == cluster && l.table == table)
    {
        Some(i) => i as u16,
        None => {
            labels.push(TableStats {
                cluster: cluster.to_string(),
                table: table.to_string(),
                ..TableStats::default()
            });
            (labels.len() - 1) as u16
        }
    }
}

/// The journal's counts, for metrics and the admin API.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub pending_records: u64,
    /// Entry bytes of the pending records.
    pub pending_bytes: u64,
    /// Bytes the segments hold on disk (and appends on their way there).
    pub used_bytes: u64,
    pub max_bytes: u64,
    pub segments: usize,
    pub appended_total: u64,
    pub done_total: u64,
    pub dead_letters_total: u64,
    pub full_total: u64,
}

/// One segment as the journal tracks it: where each of its records is and
/// which are done. Sequence numbers run from `first` without a gap.
struct Seg {
    first: u64,
    /// Offset and size of each record's entry, by `seq - first`.
    entries: Vec<(u32, u32)>,
    done: Vec<u64>,
    done_count: usize,
    /// Bytes of its file (header included), as appended so far.
    bytes: u64,
    /// No more appends: a newer segment took over.
    sealed: bool,
    /// Each record's cluster and table, an index into the journal's labels.
    label: Vec<u16>,
    reader: Option<Arc<File>>,
}

impl Seg {
    fn new(first: u64) -> Seg {
        Seg {
            first,
            entries: Vec::new(),
            done: Vec::new(),
            done_count: 0,
            bytes: segment::LOG_MAGIC.len() as u64,
            sealed: false,
            label: Vec::new(),
            reader: None,
        }
    }

    fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    fn is_done(&self, seq: u64) -> bool {
        let i = (seq - self.first) as usize;
        self.done
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Marks `seq` done; false when it already was.
    fn set_done(&mut self, seq: u64) -> bool {
        let i = (seq - self.first) as usize;
        if self.done.len() <= i / 64 {
            self.done.resize(i / 64 + 1, 0);
        }
        let w = &mut self.done[i / 64];
        if *w & (1 << (i % 64)) != 0 {
            return false;
        }
        *w |= 1 << (i % 64);
        self.done_count += 1;
        true
    }

    /// The oldest record not done.
    fn first_pending(&self) -> Option<u64> {
        let n = self.entries.len();
        (0..n.div_ceil(64))
            .find_map(|w| {
                let word = self.done.get(w).copied().unwrap_or(0);
                (word != u64::MAX).then(|| w * 64 + (!word).trailing_zeros() as usize)
            })
            .filter(|i| *i < n)
            .map(|i| self.first + i as u64)
    }

    fn all_done(&self) -> bool {
        self.done_count == self.entries.len()
    }

    fn found(&self, seq: u64) -> Found {
        let (offset, len) = self.entries[(seq - self.first) as usize];
        Found {
            seq,
            offset: offset as u64,
            len,
        }
    }
}

struct State {
    next_seq: u64,
    segments: BTreeMap<u64, Seg>,
    /// Bytes of every segment kept, appends on their way included.
    used: u64,
    /// Records being sent (by the live path or by replay): not to be
    /// handed out for replay.
    claimed: HashSet<u64>,
    /// Records below this have reached the file (a replay may read them).
    written_end: u64,
    /// Where the search for records to replay starts.
    replay_from: u64,
    failed: Option<String>,
    stats: Stats,
    /// The (cluster, table) pairs records are for, with their counts.
    labels: Vec<TableStats>,
    /// Done marks for the writer to write: segment, sequence number.
    done_queue: Vec<(u64, u64)>,
}

impl State {
    fn label(&mut self, cluster: &str, table: &str) -> u16 {
        label_of(&mut self.labels, cluster, table)
    }
}

enum Cmd {
    Append {
        segment: u64,
        bytes: Vec<u8>,
        end: u64,
        ack: oneshot::Sender<Result<(), String>>,
    },
    Delete {
        segment: u64,
    },
    Dead {
        bytes: Vec<u8>,
    },
    Stop,
}

/// The journal: cheap to share (`Arc`), safe to use from any thread.
pub struct Journal {
    opts: Options,
    /// Held while open: one process at a time (a proxy, or `cutover replay`).
    _lock: File,
    state: Mutex<State>,
    tx: Mutex<Option<mpsc::Sender<Cmd>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    stopped: AtomicBool,
}

/// An append on its way: its sequence number, and its acknowledgement.
pub struct Appending {
    pub seq: u64,
    ack: oneshot::Receiver<Result<(), String>>,
}

impl Appending {
    /// Resolves once the record is written as the journal's durability
    /// asks.
    pub async fn durable(self) -> Result<u64, JournalError> {
        match self.ack.await {
            Ok(Ok(())) => Ok(self.seq),
            Ok(Err(e)) => Err(JournalError::Failed(e)),
            Err(_) => Err(JournalError::Failed("the journal writer stopped".into())),
        }
    }

    /// The blocking form of [`Appending::durable`] (for threads outside a
    /// runtime: tools and tests).
    pub fn wait(self) -> Result<u64, JournalError> {
        match self.ack.blocking_recv() {
            Ok(Ok(())) => Ok(self.seq),
            Ok(Err(e)) => Err(JournalError::Failed(e)),
            Err(_) => Err(JournalError::Failed("the journal writer stopped".into())),
        }
    }
}

impl Journal {
    /// Opens (creating it if need be) the journal in `opts.dir`: recovers
    /// what is there and starts the writer thread.
    pub fn open(opts: Options) -> Result<(Arc<Journal>, Recovery), JournalError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io { path, source }
        };
        std::fs::create_dir_all(&opts.dir).map_err(io_err(&opts.dir))?;
        let lock_path = opts.dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(JournalError::Failed(format!(
                "{} is in use by another process (a running proxy, or cutover replay); one at a time",
                opts.dir.display()
            )));
        }
        let (segments, recovery, mut labels) = recover(&opts.dir)?;
        for s in segments.values() {
            for q in s.first..s.end() {
                if !s.is_done(q) {
                    labels[s.label[(q - s.first) as usize] as usize].pending += 1;
                }
            }
        }
        let next_seq = segments.values().map(Seg::end).max().unwrap_or(0);
        let used = segments.values().map(|s| s.bytes).sum();
        let stats = Stats {
            pending_records: recovery.pending,
            pending_bytes: segments
                .values()
                .map(|s| {
                    (s.first..s.end())
                        .filter(|q| !s.is_done(*q))
                        .map(|q| s.found(q).len as u64)
                        .sum::<u64>()
                })
                .sum(),
            dead_letters_total: segment::scan_dead(&segment::dead_path(&opts.dir))
                .map_err(io_err(&segment::dead_path(&opts.dir)))?
                .len() as u64,
            ..Stats::default()
        };
        let first = segments.keys().next().copied().unwrap_or(next_seq);
        let state = State {
            next_seq,
            segments,
            used,
            claimed: HashSet::new(),
            written_end: next_seq,
            replay_from: first,
            failed: None,
            stats,
            labels,
            done_queue: Vec::new(),
        };
        let (tx, rx) = mpsc::channel();
        let journal = Arc::new(Journal {
            opts: opts.clone(),
            _lock: lock,
            state: Mutex::new(state),
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(None),
            stopped: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&journal);
        let handle = std::thread::Builder::new()
            .name("cutover-journal".into())
            .spawn(move || Writer::new(opts, weak).run(rx))
            .map_err(|e| JournalError::Failed(format!("cannot start its writer thread: {e}")))?;
        *journal.writer.lock() = Some(handle);
        Ok((journal, recovery))
    }

    pub fn dir(&self) -> &Path {
        &self.opts.dir
    }

    pub fn durability(&self) -> Durability {
        self.opts.durability
    }

    fn send(&self, cmd: Cmd) -> bool {
        match &*self.tx.lock() {
            Some(tx) => tx.send(cmd).is_ok(),
            None => false,
        }
    }

    /// Appends `record`, claimed by the caller (it sends it to the
    /// secondary itself, then calls [`Journal::done`] or
    /// [`Journal::release`]). Full or failed: nothing appended.
    pub fn append(&self, record: &Record) -> Result<Appending, JournalError> {
        let mut bytes = Vec::with_capacity(64 + record.body.len());
        record.encode(&mut bytes);
        let mut entry = Vec::with_capacity(bytes.len() + 16);
        let mut st = self.state.lock();
        if let Some(e) = &st.failed {
            return Err(JournalError::Failed(e.clone()));
        }
        let len = segment::entry_len(bytes.len());
        let header = segment::LOG_MAGIC.len() as u64;
        let roll = match st.segments.values().next_back() {
            Some(s) => {
                s.sealed || (!s.entries.is_empty() && s.bytes + len > self.opts.segment_bytes)
            }
            None => true,
        };
        let need = len + if roll { header } else { 0 };
        if st.used + need > self.opts.max_bytes {
            st.stats.full_total += 1;
            return Err(JournalError::Full {
                used: st.used,
                max: self.opts.max_bytes,
            });
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let label = st.label(&record.cluster, &record.table);
        st.labels[label as usize].pending += 1;
        st.labels[label as usize].appended += 1;
        if roll {
            if let Some(s) = st.segments.values_mut().next_back() {
                s.sealed = true;
            }
            st.segments.insert(seq, Seg::new(seq));
        }
        let seg = st.segments.values_mut().next_back().expect("a segment");
        let offset = seg.bytes;
        seg.entries.push((offset as u32, len as u32));
        seg.label.push(label);
        seg.bytes += len;
        let first = seg.first;
        st.used += need;
        st.claimed.insert(seq);
        st.stats.appended_total += 1;
        st.stats.pending_records += 1;
        st.stats.pending_bytes += len;
        if roll {
            // The segment just sealed goes now if its records were all
            // done while it was active.
            let before = st
                .segments
                .range(..seq)
                .next_back()
                .filter(|(_, s)| s.all_done())
                .map(|(f, _)| *f);
            if let Some(f) = before {
                self.drop_segment(&mut st, f);
            }
        }
        segment::put_entry(&mut entry, seq, &bytes);
        let (ack, rx) = oneshot::channel();
        // Sent under the lock: the writer sees entries in sequence order.
        if !self.send(Cmd::Append {
            segment: first,
            bytes: entry,
            end: seq + 1,
            ack,
        }) {
            return Err(JournalError::Failed("the journal is closed".into()));
        }
        Ok(Appending { seq, ack: rx })
    }

    /// The secondary acknowledged `seq`: it is never replayed again.
    pub fn done(&self, seq: u64) {
        let mut st = self.state.lock();
        st.claimed.remove(&seq);
        let Some((&first, seg)) = st.segments.range_mut(..=seq).next_back() else {
            return;
        };
        if seq >= seg.end() || !seg.set_done(seq) {
            return;
        }
        let len = seg.found(seq).len as u64;
        let label = seg.label[(seq - seg.first) as usize] as usize;
        let gone = seg.sealed && seg.all_done();
        st.labels[label].pending -= 1;
        st.labels[label].acknowledged += 1;
        st.stats.done_total += 1;
        st.stats.pending_records -= 1;
        st.stats.pending_bytes -= len;
        if gone {
            self.drop_segment(&mut st, first);
        } else {
            // Written by the writer at its next turn, many in one write: a
            // done mark lost in a crash costs one replay of a write that
            // replays to the same cells.
            st.done_queue.push((first, seq));
        }
    }

    /// The send of `seq` failed: it waits for replay.
    pub fn release(&self, seq: u64) {
        let mut st = self.state.lock();
        if st.claimed.remove(&seq) && seq < st.replay_from {
            st.replay_from = seq;
        }
    }

    fn drop_segment(&self, st: &mut State, first: u64) {
        if let Some(s) = st.segments.remove(&first) {
            st.used -= s.bytes;
            self.send(Cmd::Delete { segment: first });
        }
    }

    /// Up to `max` records to replay, oldest first, claimed for the caller
    /// (who then calls `done`, `release` or `dead_letter` for each).
    pub fn claim_for_replay(&self, max: usize) -> Vec<u64> {
        let mut st = self.state.lock();
        let mut out = Vec::new();
        let from = st.replay_from;
        let limit = st.written_end;
        let mut next_from = None;
        let State {
            segments, claimed, ..
        } = &mut *st;
        'segments: for seg in segments.values().filter(|s| s.end() > from) {
            let start = from.max(seg.first);
            for seq in start..seg.end().min(limit) {
                if seg.is_done(seq) || claimed.contains(&seq) {
                    continue;
                }
                if out.len() == max {
                    next_from = Some(seq);
                    break 'segments;
                }
                out.push(seq);
            }
        }
        for s in &out {
            claimed.insert(*s);
        }
        // Everything before `next_from` (or before `limit`) is done or
        // claimed; released records move `replay_from` back.
        st.replay_from = next_from.unwrap_or(limit);
        out
    }

    /// Records for `cluster` not acknowledged yet.
    pub fn pending_for(&self, cluster: &str) -> u64 {
        let st = self.state.lock();
        st.labels
            .iter()
            .filter(|l| l.cluster == cluster)
            .map(|l| l.pending)
            .sum()
    }

    /// Counts per cluster and `keyspace.table` (at most `MAX_TABLES`
    /// tables; the rest as `other`).
    pub fn by_table(&self) -> Vec<TableStats> {
        self.state.lock().labels.clone()
    }

    /// Each cluster with records not acknowledged yet, and how many.
    pub fn pending_by_cluster(&self) -> Vec<(String, u64)> {
        let st = self.state.lock();
        let mut out: Vec<(String, u64)> = Vec::new();
        for l in &st.labels {
            match out.iter_mut().find(|(c, _)| *c == l.cluster) {
                Some((_, n)) => *n += l.pending,
                None => out.push((l.cluster.clone(), l.pending)),
            }
        }
        out
    }

    /// Whether records wait for replay (not done, not being sent).
    pub fn has_backlog(&self) -> bool {
        let st = self.state.lock();
        st.stats.pending_records > st.claimed.len() as u64
    }

    /// Reads record `seq` back.
    pub fn read(&self, seq: u64) -> Result<Record, JournalError> {
        let (file, found, path) = {
            let mut st = self.state.lock();
            if seq >= st.written_end {
                return Err(JournalError::Unknown(seq));
            }
            let Some((_, seg)) = st.segments.range_mut(..=seq).next_back() else {
                return Err(JournalError::Unknown(seq));
            };
            if seq >= seg.end() {
                return Err(JournalError::Unknown(seq));
            }
            let path = segment::log_path(&self.opts.dir, seg.first);
            if seg.reader.is_none() {
                let f = File::open(&path).map_err(|source| JournalError::Io {
                    path: path.clone(),
                    source,
                })?;
                seg.reader = Some(Arc::new(f));
            }
            (seg.reader.clone().unwrap(), seg.found(seq), path)
        };
        let bytes = segment::read_entry(&file, found)
            .map_err(|source| JournalError::Io { path, source })?;
        Record::decode(&bytes).map_err(|source| JournalError::Record { seq, source })
    }

    /// Moves `seq` to the dead-letter file with `error` (it failed for good)
    /// and marks it done.
    pub fn dead_letter(&self, seq: u64, error: &str) -> Result<(), JournalError> {
        let record = self.read(seq)?;
        let mut rec = Vec::new();
        record.encode(&mut rec);
        let mut bytes = Vec::new();
        segment::put_dead(&mut bytes, seq, error, &rec);
        self.send(Cmd::Dead { bytes });
        self.state.lock().stats.dead_letters_total += 1;
        self.done(seq);
        Ok(())
    }

    /// The records in the dead-letter file: sequence number, error, record.
    pub fn dead_letters(&self) -> Result<Vec<(u64, String, Record)>, JournalError> {
        let path = segment::dead_path(&self.opts.dir);
        let found = segment::scan_dead(&path).map_err(|source| JournalError::Io {
            path: path.clone(),
            source,
        })?;
        found
            .into_iter()
            .map(|(seq, e, b)| {
                Record::decode(&b)
                    .map(|r| (seq, e, r))
                    .map_err(|source| JournalError::Record { seq, source })
            })
            .collect()
    }

    pub fn stats(&self) -> Stats {
        let st = self.state.lock();
        Stats {
            used_bytes: st.used,
            max_bytes: self.opts.max_bytes,
            segments: st.segments.len(),
            ..st.stats.clone()
        }
    }

    /// When the oldest record not acknowledged yet was journaled (Unix
    /// milliseconds).
    pub fn oldest_pending_ms(&self) -> Option<u64> {
        let seq = {
            let st = self.state.lock();
            st.segments
                .values()
                .find_map(|s| s.first_pending().filter(|q| *q < st.written_end))?
        };
        self.read(seq).ok().map(|r| r.written_at_ms)
    }

    /// How long ago the oldest record not acknowledged yet was journaled.
    pub fn oldest_pending_age(&self) -> Option<Duration> {
        self.oldest_pending_ms()
            .map(|ms| Duration::from_millis(unix_ms().saturating_sub(ms)))
    }

    /// Stops the writer after everything sent to it is written and synced.
    pub fn close(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(tx) = self.tx.lock().take() {
            let _ = tx.send(Cmd::Stop);
        }
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.lock().take() {
            let _ = tx.send(Cmd::Stop);
        }
    }
}

/// Scans `dir`: every segment with its done marks, tails cut, and the
/// clusters its records are for.
#[allow(clippy::type_complexity)]
fn recover(dir: &Path) -> Result<(BTreeMap<u64, Seg>, Recovery, Vec<TableStats>), JournalError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| JournalError::Io { path, source }
    };
    let mut firsts = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        if let Some(first) = e.file_name().to_str().and_then(segment::segment_first) {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    // Done marks whose segment is gone (deleted just before a crash).
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let name = e.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".done")) else {
            continue;
        };
        if segment::segment_first(&format!("{stem}.log")).is_some_and(|f| !firsts.contains(&f)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let mut rec = Recovery::default();
    let mut segments = BTreeMap::new();
    let mut last_end = None;
    let mut labels: Vec<TableStats> = Vec::new();
    for first in firsts {
        let path = segment::log_path(dir, first);
        let scan = segment::scan_log(&path).map_err(io_err(&path))?;
        if scan.bad_magic {
            if scan.file_len < segment::LOG_MAGIC.len() as u64 {
                // Cut while it was being created: nothing in it.
                rec.cut_bytes += scan.file_len;
                std::fs::remove_file(&path).map_err(io_err(&path))?;
                let _ = std::fs::remove_file(segment::done_path(dir, first));
            } else {
                let aside = path.with_extension("damaged");
                std::fs::rename(&path, &aside).map_err(io_err(&path))?;
                tracing::warn!(file = %aside.display(), "journal: a segment file without the journal's header was set aside");
                rec.damaged.push(aside);
            }
            continue;
        }
        // A segment's records must start where its name says, after the
        // previous segment's.
        let mut usable: Vec<Found> = match scan.entries.first() {
            Some(e) if e.seq == first && last_end.is_none_or(|end| first >= end) => scan.entries,
            _ => Vec::new(),
        };
        // Each entry must be a record (it is checksummed: one that does
        // not decode is of another format, damage too).
        let mut record_labels = Vec::with_capacity(usable.len());
        for e in &usable {
            let start = e.offset as usize + segment::ENTRY_HEADER + 8;
            let end = e.offset as usize + e.len as usize;
            match Record::decode(&scan.bytes[start..end]) {
                Ok(r) => record_labels.push(label_of(&mut labels, &r.cluster, &r.table)),
                // Whole and checksummed, but written by a newer cutover:
                // not damage, and not to be cut.
                Err(RecordError::Format(format)) => {
                    return Err(JournalError::NewerFormat {
                        path,
                        seq: e.seq,
                        format,
                    });
                }
                Err(_) => break,
            }
        }
        usable.truncate(record_labels.len());
        let valid_end = usable
            .last()
            .map(|e| e.offset + e.len as u64)
            .unwrap_or(segment::LOG_MAGIC.len() as u64);
        if valid_end < scan.file_len {
            rec.cut_bytes += scan.file_len - valid_end;
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            f.set_len(valid_end).map_err(io_err(&path))?;
            f.sync_all().map_err(io_err(&path))?;
            tracing::warn!(file = %path.display(), cut = scan.file_len - valid_end, "journal: cut a torn or damaged tail");
        }
        let mut seg = Seg::new(first);
        seg.sealed = true;
        seg.bytes = valid_end;
        seg.entries = usable.iter().map(|e| (e.offset as u32, e.len)).collect();
        seg.label = record_labels;
        let done = segment::done_path(dir, first);
        let (seqs, done_end, done_len) = segment::scan_done(&done).map_err(io_err(&done))?;
        if done_end < done_len {
            rec.cut_bytes += done_len - done_end;
            let f = OpenOptions::new()
                .write(true)
                .open(&done)
                .map_err(io_err(&done))?;
            f.set_len(done_end).map_err(io_err(&done))?;
        }
        for s in seqs {
            if s >= seg.first && s < seg.end() {
                seg.set_done(s);
            }
        }
        if seg.all_done() {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            let _ = std::fs::remove_file(&done);
            continue;
        }
        last_end = Some(seg.end());
        rec.pending += (seg.entries.len() - seg.done_count) as u64;
        segments.insert(first, seg);
    }
    rec.segments = segments.len();
    Ok((segments, rec, labels))
}

/// The writer thread: owns the files.
struct Writer {
    opts: Options,
    journal: std::sync::Weak<Journal>,
    /// The segment being appended to.
    active: Option<(u64, File)>,
    done_files: HashMap<u64, File>,
    dead: Option<File>,
    /// Acknowledgements waiting for the next sync (group commit).
    waiting: Vec<oneshot::Sender<Result<(), String>>>,
    next_sync: Instant,
    failed: Option<String>,
}

impl Writer {
    fn new(opts: Options, journal: std::sync::Weak<Journal>) -> Writer {
        Writer {
            opts,
            journal,
            active: None,
            done_files: HashMap::new(),
            dead: None,
            waiting: Vec::new(),
            next_sync: Instant::now(),
            failed: None,
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut stop = false;
        while !stop {
            let first = match (self.opts.durability, self.waiting.is_empty()) {
                (Durability::GroupCommit(_), false) => {
                    let wait = self.next_sync.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(wait) {
                        Ok(c) => Some(c),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => Some(Cmd::Stop),
                    }
                }
                // Woken now and then for the done marks queued meanwhile.
                _ => match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(c) => Some(c),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => Some(Cmd::Stop),
                },
            };
            let mut batch: Vec<Cmd> = first.into_iter().collect();
            while batch.len() < 4096 {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            // Done marks first: a segment deleted in this batch has them
            // before it goes.
            let marks = match self.journal.upgrade() {
                Some(j) => std::mem::take(&mut j.state.lock().done_queue),
                None => Vec::new(),
            };
            self.write_done(marks);
            let mut buf = Vec::new();
            let mut buf_segment = None;
            let mut end = None;
            let mut acks = Vec::new();
            for cmd in batch {
                match cmd {
                    Cmd::Append {
                        segment,
                        bytes,
                        end: e,
                        ack,
                    } => {
                        if buf_segment != Some(segment) {
                            self.write_active(&mut buf);
                            self.switch_to(segment);
                            buf_segment = Some(segment);
                        }
                        buf.extend_from_slice(&bytes);
                        end = Some(e);
                        acks.push(ack);
                    }
                    Cmd::Delete { segment } => {
                        // What is buffered for it is written first (it is
                        // done; a sync or an error answers its append).
                        self.write_active(&mut buf);
                        if buf_segment == Some(segment) {
                            buf_segment = None;
                        }
                        self.delete(segment)
                    }
                    Cmd::Dead { bytes } => self.write_dead(&bytes),
                    Cmd::Stop => stop = true,
                }
            }
            self.write_active(&mut buf);
            if let (Some(end), Some(j)) = (end, self.journal.upgrade()) {
                let mut st = j.state.lock();
                st.written_end = st.written_end.max(end);
                if let Some(e) = &self.failed {
                    st.failed.get_or_insert_with(|| e.clone());
                }
            }
            match self.opts.durability {
                Durability::PageCache => self.answer(acks),
                Durability::Fsync => {
                    if !acks.is_empty() {
                        self.sync();
                    }
                    self.answer(acks)
                }
                Durability::GroupCommit(every) => {
                    self.waiting.extend(acks);
                    if !self.waiting.is_empty() && (stop || Instant::now() >= self.next_sync) {
                        self.sync();
                        let w = std::mem::take(&mut self.waiting);
                        self.answer(w);
                        // The next sync is one period on; an append after
                        // a quiet period is synced at once.
                        self.next_sync = Instant::now() + every;
                    }
                }
            }
        }
        if !self.waiting.is_empty() {
            self.sync();
            let w = std::mem::take(&mut self.waiting);
            self.answer(w);
        }
        if let Some(j) = self.journal.upgrade() {
            let marks = std::mem::take(&mut j.state.lock().done_queue);
            self.write_done(marks);
        }
        self.sync();
    }

    fn answer(&self, acks: Vec<oneshot::Sender<Result<(), String>>>) {
        for a in acks {
            let _ = a.send(match &self.failed {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            });
        }
    }

    fn fail(&mut self, what: String) {
        tracing::error!(error = %what, "journal: cannot write");
        self.failed.get_or_insert(what);
    }

    fn sync(&mut self) {
        if self.opts.durability == Durability::PageCache {
            return;
        }
        if let Some((first, f)) = &self.active {
            if let Err(e) = f.sync_data() {
                let p = segment::log_path(&self.opts.dir, *first);
                self.fail(format!("syncing {}: {e}", p.display()));
            }
        }
    }

    /// Makes `segment` the file appended to (created with its header),
    /// syncing the one before.
    fn switch_to(&mut self, segment: u64) {
        if self.active.as_ref().is_some_and(|(s, _)| *s == segment) {
            return;
        }
        self.sync();
        let path = segment::log_path(&self.opts.dir, segment);
        let made = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(segment::LOG_MAGIC)?;
                Ok(f)
            });
        match made {
            Ok(f) => {
                if self.opts.durability != Durability::PageCache {
                    // The new file's name must survive a machine crash too.
                    if let Ok(d) = File::open(&self.opts.dir) {
                        let _ = d.sync_all();
                    }
                }
                self.active = Some((segment, f));
            }
            Err(e) => {
                self.fail(format!("creating {}: {e}", path.display()));
                self.active = None;
            }
        }
    }

    fn write_active(&mut self, buf: &mut Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        if self.failed.is_none() {
            let r = match &mut self.active {
                Some((_, f)) => f.write_all(buf),
                None => Err(io::Error::other("no segment file")),
            };
            if let Err(e) = r {
                let seg = self.active.as_ref().map(|(s, _)| *s).unwrap_or(0);
                let p = segment::log_path(&self.opts.dir, seg);
                self.fail(format!("appending to {}: {e}", p.display()));
            }
        }
        buf.clear();
    }

    /// Writes done marks, one write per segment.
    fn write_done(&mut self, mut marks: Vec<(u64, u64)>) {
        marks.sort_unstable();
        for group in marks.chunk_by(|a, b| a.0 == b.0) {
            let segment = group[0].0;
            let f = match self.done_files.entry(segment) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let path = segment::done_path(&self.opts.dir, segment);
                    let fresh = !path.exists();
                    let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&path) else {
                        // A lost done mark costs a replay of a write that
                        // replays to the same cells: never an error.
                        continue;
                    };
                    if fresh && f.write_all(segment::DONE_MAGIC).is_err() {
                        continue;
                    }
                    v.insert(f)
                }
            };
            let mut b = Vec::with_capacity(segment::DONE_ENTRY * group.len());
            for (_, seq) in group {
                segment::put_done(&mut b, *seq);
            }
            let _ = f.write_all(&b);
        }
    }

    fn delete(&mut self, segment: u64) {
        self.done_files.remove(&segment);
        if self.active.as_ref().is_some_and(|(s, _)| *s == segment) {
            self.active = None;
        }
        let _ = std::fs::remove_file(segment::log_path(&self.opts.dir, segment));
        let _ = std::fs::remove_file(segment::done_path(&self.opts.dir, segment));
    }

    fn write_dead(&mut self, bytes: &[u8]) {
        if self.dead.is_none() {
            let path = segment::dead_path(&self.opts.dir);
            let fresh = !path.exists();
            match OpenOptions::new().create(true).append(true).open(&path) {
                Ok(mut f) => {
                    if fresh && f.write_all(segment::DEAD_MAGIC).is_err() {
                        self.fail(format!("writing {}", path.display()));
                        return;
                    }
                    self.dead = Some(f);
                }
                Err(e) => {
                    self.fail(format!("opening {}: {e}", path.display()));
                    return;
                }
            }
        }
        let f = self.dead.as_mut().unwrap();
        if f.write_all(bytes).and_then(|_| f.sync_data()).is_err() {
            let p = segment::dead_path(&self.opts.dir);
            self.fail(format!("writing {}", p.display()));
        }
    }
}

#[cfg(test)]
mod tests;
mod ttl;
