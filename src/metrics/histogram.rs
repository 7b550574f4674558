//! One latency series: wait-free recording into per-worker shards of atomic
//! buckets, merged in the background into an `hdrhistogram::Histogram`
//! (cumulative since start) and a ring of sparse slots (the recent window).
//!
//! The bucket layout is HdrHistogram's for 1 µs resolution and 3 significant
//! digits (2048 sub-buckets): values below 2048 µs are exact, above that a
//! bucket is 1/1024 of its power of two wide. The merge hands each bucket's
//! lowest value to `record_n`, so nothing is lost or moved between buckets
//! (a unit test cross-checks the layout against hdrhistogram's own).
//!
//! Recording never takes a lock: one `fetch_add` on a bucket, one on the
//! sum. Only the merge (the background task, or a reader wanting an exact
//! answer now) locks, and it never waits on a recorder.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// Sub-buckets in the first block; 3 significant digits.
const SUB_BUCKETS: u64 = 2048;
const HALF: usize = 1024;
/// Blocks after the first; the last covers up to 2^(BLOCKS+11) µs (~2.4 h).
const BLOCKS: usize = 22;
/// The largest value kept; anything longer is recorded as this.
pub const HIGHEST_MICROS: u64 = (1 << (BLOCKS as u64 + 11)) - 1;

/// Bucket index of a value in µs (clamped to `HIGHEST_MICROS`).
pub fn index_of(micros: u64) -> usize {
    let v = micros.min(HIGHEST_MICROS);
    if v < SUB_BUCKETS {
        return v as usize;
    }
    // v in [2^(m+10), 2^(m+11)) for m >= 1: 1024 buckets of width 2^m.
    let m = 63 - v.leading_zeros() as usize - 10;
    let sub = (v >> m) as usize;
    SUB_BUCKETS as usize + (m - 1) * HALF + (sub - HALF)
}

/// The lowest value in µs that lands in bucket `index`.
pub fn value_of(index: usize) -> u64 {
    if index < SUB_BUCKETS as usize {
        return index as u64;
    }
    let i = index - SUB_BUCKETS as usize;
    let m = i / HALF + 1;
    let sub = (i % HALF + HALF) as u64;
    sub << m
}

/// (block, offset) of a bucket index: block 0 has 2048 buckets, the others 1024.
fn block_of(index: usize) -> (usize, usize) {
    if index < SUB_BUCKETS as usize {
        (0, index)
    } else {
        let i = index - SUB_BUCKETS as usize;
        (i / HALF + 1, i % HALF)
    }
}

fn block_start(block: usize) -> usize {
    if block == 0 {
        0
    } else {
        SUB_BUCKETS as usize + (block - 1) * HALF
    }
}

/// One worker's buckets, allocated a block at a time on first use, so a
/// series costs memory only for the ranges its values fall into.
struct Shard {
    blocks: [OnceLock<Box<[AtomicU32]>>; BLOCKS + 1],
    sum_micros: AtomicU64,
}

impl Shard {
    fn new() -> Shard {
        Shard {
            blocks: std::array::from_fn(|_| OnceLock::new()),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn record(&self, micros: u64) {
        let (b, off) = block_of(index_of(micros));
        let len = if b == 0 { SUB_BUCKETS as usize } else { HALF };
        let block = self.blocks[b].get_or_init(|| (0..len).map(|_| AtomicU32::new(0)).collect());
        block[off].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Takes every count recorded since the last drain.
    fn drain(&self, mut each: impl FnMut(usize, u64)) -> u64 {
        for (b, block) in self.blocks.iter().enumerate() {
            let Some(block) = block.get() else { continue };
            let start = block_start(b);
            for (off, c) in block.iter().enumerate() {
                if c.load(Ordering::Relaxed) != 0 {
                    let n = c.swap(0, Ordering::Relaxed);
                    if n != 0 {
                        each(start + off, n as u64);
                    }
                }
            }
        }
        self.sum_micros.swap(0, Ordering::Relaxed)
    }

    fn bytes(&self) -> usize {
        self.blocks
            .iter()
            .filter_map(|b| b.get())
            .map(|b| b.len() * 4)
            .sum()
    }
}

/// Which shard this thread records into: threads are spread round-robin,
/// so each runtime worker has its own cache lines.
fn shard_for_thread(shards: usize) -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static SLOT: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SLOT.with(|s| (*s as usize) % shards)
}

/// The recent window: `WINDOW_SLOTS` slots of `slot_len`, each the sparse
/// (bucket, count) pairs merged into it.
const WINDOW_SLOTS: usize = 12;

#[derive(Default)]
struct Slot {
    /// Which `slot_len` period since the series' start this slot holds.
    period: u64,
    counts: std::collections::BTreeMap<u32, u64>,
    sum_micros: u64,
}

struct Merged {
    cumulative: Histogram<u64>,
    sum_micros: u64,
    window: Vec<Slot>,
}

/// What a series looks like at one moment.
#[derive(Clone)]
pub struct Snapshot {
    pub histogram: Histogram<u64>,
    /// Exact sum of the recorded values, in µs.
    pub sum_micros: u64,
}

impl Snapshot {
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// A quantile in µs (HdrHistogram's: the highest value equivalent to the
    /// bucket the quantile falls into).
    pub fn quantile(&self, q: f64) -> u64 {
        self.histogram.value_at_quantile(q)
    }

    /// How many values were at most `micros`.
    pub fn count_at_most(&self, micros: u64) -> u64 {
        self.histogram
            .iter_recorded()
            .take_while(|v| v.value_iterated_to() <= micros)
            .map(|v| v.count_at_value())
            .sum()
    }
}

fn empty_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is a valid precision")
}

/// One latency series.
pub struct LatencySeries {
    shards: Box<[Shard]>,
    merged: Mutex<Merged>,
    started: std::time::Instant,
    slot_len: Duration,
}

impl LatencySeries {
    /// `window` is split into 12 slots; the recent window is the last 11 to
    /// 12 of them.
    pub fn new(shards: usize, window: Duration) -> LatencySeries {
        LatencySeries {
            shards: (0..shards.max(1)).map(|_| Shard::new()).collect(),
            merged: Mutex::new(Merged {
                cumulative: empty_histogram(),
                sum_micros: 0,
                window: (0..WINDOW_SLOTS).map(|_| Slot::default()).collect(),
            }),
            started: std::time::Instant::now(),
            slot_len: (window / WINDOW_SLOTS as u32).max(Duration::from_millis(10)),
        }
    }

    /// Wait-free: two relaxed atomic adds (plus a block allocation the first
    /// time a range is used).
    pub fn record(&self, latency: Duration) {
        let micros = latency.as_micros().min(HIGHEST_MICROS as u128) as u64;
        self.shards[shard_for_thread(self.shards.len())].record(micros);
    }

    fn period_now(&self) -> u64 {
        (self.started.elapsed().as_nanos() / self.slot_len.as_nanos().max(1)) as u64
    }

    /// Moves everything recorded so far into the merged views.
    pub fn merge(&self) {
        let period = self.period_now();
        let mut m = self.merged.lock();
        let Merged {
            cumulative,
            sum_micros,
            window,
        } = &mut *m;
        let slot = &mut window[(period % WINDOW_SLOTS as u64) as usize];
        if slot.period != period {
            *slot = Slot {
                period,
                ..Slot::default()
            };
        }
        for shard in self.shards.iter() {
            let sum = shard.drain(|index, n| {
                cumulative
                    .record_n(value_of(index), n)
                    .expect("auto-resizing histogram accepts any value");
                *slot.counts.entry(index as u32).or_default() += n;
            });
            *sum_micros += sum;
            slot.sum_micros += sum;
        }
    }

    /// Since the start (after merging what is pending).
    pub fn cumulative(&self) -> Snapshot {
        self.merge();
        let m = self.merged.lock();
        Snapshot {
            histogram: m.cumulative.clone(),
            sum_micros: m.sum_micros,
        }
    }

    /// The recent window: the slots of the last `window` (after merging).
    pub fn recent(&self) -> Snapshot {
        self.merge();
        let now = self.period_now();
        let m = self.merged.lock();
        let mut h = empty_histogram();
        let mut sum = 0;
        for slot in m
            .window
            .iter()
            .filter(|s| now - s.period < WINDOW_SLOTS as u64)
        {
            for (index, n) in &slot.counts {
                h.record_n(value_of(*index as usize), *n)
                    .expect("auto-resizing histogram accepts any value");
            }
            sum += slot.sum_micros;
        }
        Snapshot {
            histogram: h,
            sum_micros: sum,
        }
    }

    /// Heap bytes held, roughly (for the memory goal).
    pub fn bytes(&self) -> usize {
        let m = self.merged.lock();
        let window: usize = m.window.iter().map(|s| s.counts.len() * 48).sum();
        self.shards.iter().map(Shard::bytes).sum::<usize>()
            + m.cumulative.distinct_values() * 8
            + window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_layout_is_hdrhistograms() {
        let h = Histogram::<u64>::new_with_bounds(1, HIGHEST_MICROS, 3).unwrap();
        let mut v = 0u64;
        while v < HIGHEST_MICROS {
            let i = index_of(v);
            assert_eq!(value_of(i), h.lowest_equivalent(v), "value {v}");
            assert!(index_of(h.highest_equivalent(v)) == i, "value {v}");
            v = v * 17 / 16 + 1;
        }
        assert_eq!(index_of(u64::MAX), index_of(HIGHEST_MICROS));
    }

    #[test]
    fn merged_counts_and_quantiles_match_what_was_recorded() {
        let s = LatencySeries::new(4, Duration::from_secs(60));
        for us in 1..=10_000u64 {
            s.record(Duration::from_micros(us));
        }
        let c = s.cumulative();
        assert_eq!(c.count(), 10_000);
        assert_eq!(c.sum_micros, 10_000 * 10_001 / 2);
        // Exact below 2048 µs, within 0.1% above.
        assert_eq!(c.quantile(0.1), 1_000);
        let p99 = c.quantile(0.99) as f64;
        assert!((p99 - 9_900.0).abs() / 9_900.0 < 0.001, "p99 {p99}");
        assert_eq!(c.count_at_most(500), 500);
        // The window holds the same values; a second merge adds nothing.
        assert_eq!(s.recent().count(), 10_000);
        assert_eq!(s.cumulative().count(), 10_000);
    }

    #[test]
    fn recording_from_many_threads_loses_nothing() {
        let s = std::sync::Arc::new(LatencySeries::new(2, Duration::from_secs(60)));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..50_000u64 {
                        s.record(Duration::from_micros(100 + (i + t) % 3000));
                        if i % 10_000 == 0 {
                            s.merge();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.cumulative().count(), 200_000);
    }

    #[test]
    fn the_recent_window_forgets_old_slots() {
        let s = LatencySeries::new(1, Duration::from_millis(240));
        s.record(Duration::from_millis(5));
        assert_eq!(s.recent().count(), 1);
        std::thread::sleep(Duration::from_millis(300));
        s.record(Duration::from_millis(7));
        let r = s.recent();
        assert_eq!(r.count(), 1);
        assert_eq!(r.histogram.lowest_equivalent(r.histogram.max()), 7_000);
        assert_eq!(s.cumulative().count(), 2);
    }

    #[test]
    fn memory_follows_the_ranges_used() {
        let s = LatencySeries::new(4, Duration::from_secs(60));
        let empty = s.bytes();
        s.record(Duration::from_micros(300));
        // One 2048-bucket block in one shard; nothing for the other ranges.
        assert_eq!(s.shards.iter().map(Shard::bytes).sum::<usize>(), 8192);
        assert_eq!(s.bytes(), empty + 8192);
    }
}
