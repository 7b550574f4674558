//! The token ring split into ranges for range scans (`copy`, `validate`):
//! even splits, or splits sized from `system.size_estimates`; one share of
//! them for `--split K/N`; and the checkpoint file of finished ranges that
//! lets a stopped scan resume.
//!
//! A range is `(start, end]` in Murmur3 tokens, never wrapping: the ring is
//! `(MIN, MAX]` (no partition has the token `i64::MIN`), and a range is
//! scanned with `WHERE token(pk) > start AND token(pk) <= end`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `(start, end]` in tokens; `start < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Range {
    pub start: i64,
    pub end: i64,
}

/// The whole ring.
pub const RING: Range = Range {
    start: i64::MIN,
    end: i64::MAX,
};

impl Range {
    pub fn contains(&self, token: i64) -> bool {
        token > self.start && token <= self.end
    }

    /// This range cut into `n` pieces of (nearly) equal width.
    pub fn split(&self, n: usize) -> Vec<Range> {
        let n = n.max(1) as i128;
        let (s, e) = (self.start as i128, self.end as i128);
        let width = e - s;
        let n = n.min(width.max(1));
        (0..n)
            .map(|i| Range {
                start: (s + width * i / n) as i64,
                end: (s + width * (i + 1) / n) as i64,
            })
            .collect()
    }
}

/// The ring in `n` even ranges.
pub fn even(n: usize) -> Vec<Range> {
    RING.split(n)
}

/// One range of `system.size_estimates`: its bounds as the table stores
/// them (an end of `i64::MIN` is the ring's end) and its partitions.
#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    pub start: i64,
    pub end: i64,
    pub partitions: u64,
}

/// Ranges of about `per_range` partitions each, from the estimates of every
/// node (their ranges together should cover the ring; what they leave out
/// is split evenly, `fill` pieces over the ring's width), sorted.
pub fn from_estimates(estimates: &[Estimate], per_range: u64, fill: usize) -> Vec<Range> {
    let per_range = per_range.max(1);
    let mut known: Vec<(Range, u64)> = estimates
        .iter()
        .map(|e| {
            (
                Range {
                    start: e.start,
                    end: if e.end == i64::MIN { i64::MAX } else { e.end },
                },
                e.partitions,
            )
        })
        .filter(|(r, _)| r.start < r.end)
        .collect();
    known.sort();
    known.dedup_by_key(|(r, _)| *r);
    let mut out = Vec::new();
    let mut at = i64::MIN;
    let gap = |from: i64, to: i64, out: &mut Vec<Range>| {
        if from < to {
            let r = Range {
                start: from,
                end: to,
            };
            // The gap's share of `fill` ranges over the whole ring.
            let share = ((to as i128 - from as i128) * fill.max(1) as i128 / (u64::MAX as i128))
                .max(1) as usize;
            out.extend(r.split(share));
        }
    };
    for (r, partitions) in known {
        // Overlapping estimates (nodes that share ranges): keep what is new.
        let start = r.start.max(at);
        if start >= r.end {
            continue;
        }
        gap(at, start, &mut out);
        let pieces = partitions.div_ceil(per_range).max(1) as usize;
        out.extend(Range { start, end: r.end }.split(pieces));
        at = r.end;
    }
    gap(at, i64::MAX, &mut out);
    out
}

/// Share `k` of `n` (1-based, `--split K/N`): every n-th range starting at
/// the k-th, so the shares interleave over the ring and stay the same size.
pub fn share(ranges: &[Range], k: usize, n: usize) -> Vec<Range> {
    ranges
        .iter()
        .enumerate()
        .filter(|(i, _)| n > 0 && i % n == k.saturating_sub(1))
        .map(|(_, r)| *r)
        .collect()
}

/// One finished range of one table, as the checkpoint file holds it, with
/// what the scan found there (`validate` keeps its counts, so a resumed
/// run reports the whole table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    pub table: String,
    pub start: i64,
    pub end: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

/// A file of finished ranges, one JSON line each, appended (and synced)
/// as each range finishes; a torn last line (a crash mid-write) is
/// ignored, so that range is scanned again.
pub struct Checkpoint {
    path: PathBuf,
    done: BTreeMap<(String, Range), Option<serde_json::Value>>,
}

impl Checkpoint {
    pub fn open(path: &Path) -> std::io::Result<Checkpoint> {
        let done = match std::fs::read_to_string(path) {
            Ok(text) => text
                .lines()
                .filter_map(|l| serde_json::from_str::<Done>(l).ok())
                .map(|d| {
                    let r = Range {
                        start: d.start,
                        end: d.end,
                    };
                    ((d.table, r), d.result)
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(Checkpoint {
            path: path.to_path_buf(),
            done,
        })
    }

    pub fn is_done(&self, table: &str, r: Range) -> bool {
        self.done.contains_key(&(table.to_string(), r))
    }

    /// What the scan that finished `r` of `table` found, if it said.
    pub fn result(&self, table: &str, r: Range) -> Option<&serde_json::Value> {
        self.done.get(&(table.to_string(), r))?.as_ref()
    }

    /// Ranges finished so far.
    pub fn len(&self) -> usize {
        self.done.len()
    }

    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// Records `r` of `table` as finished, durably, before it returns.
    pub fn mark(&mut self, table: &str, r: Range) -> std::io::Result<()> {
        self.mark_with(table, r, None)
    }

    /// `mark`, keeping what the scan of the range found.
    pub fn mark_with(
        &mut self,
        table: &str,
        r: Range,
        result: Option<serde_json::Value>,
    ) -> std::io::Result<()> {
        if self.is_done(table, r) {
            return Ok(());
        }
        let d = Done {
            table: table.to_string(),
            start: r.start,
            end: r.end,
            result,
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        // A line cut by a crash is skipped at the next open; start the next
        // one on a line of its own.
        let mut line = serde_json::to_string(&d).expect("a range serializes");
        line.insert(0, '\n');
        line.push('\n');
        f.write_all(line.as_bytes())?;
        f.sync_data()?;
        self.done.insert((d.table, r), d.result);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ranges that are sorted, adjacent and together the ring.
    fn covers_the_ring(rs: &[Range]) {
        assert_eq!(rs.first().unwrap().start, i64::MIN);
        assert_eq!(rs.last().unwrap().end, i64::MAX);
        for w in rs.windows(2) {
            assert_eq!(w[0].end, w[1].start, "{rs:?}");
        }
        assert!(rs.iter().all(|r| r.start < r.end));
    }

    #[test]
    fn even_splits_cover_the_ring_once() {
        for n in [1, 2, 3, 7, 256, 1000] {
            let rs = even(n);
            assert_eq!(rs.len(), n);
            covers_the_ring(&rs);
        }
        let tokens = [i64::MIN + 1, -1, 0, 1, i64::MAX];
        for t in tokens {
            assert_eq!(even(16).iter().filter(|r| r.contains(t)).count(), 1, "{t}");
        }
    }

    #[test]
    fn estimates_give_ranges_sized_by_partitions_and_gaps_are_filled() {
        // Two nodes' ranges, one of them the wrapping one split at MIN,
        // and a hole between -100 and 0 nobody reported.
        let est = [
            Estimate {
                start: 0,
                end: 1_000,
                partitions: 10,
            },
            Estimate {
                start: 1_000,
                end: i64::MIN,
                partitions: 1_000,
            },
            Estimate {
                start: i64::MIN,
                end: -100,
                partitions: 0,
            },
        ];
        let rs = from_estimates(&est, 100, 16);
        covers_the_ring(&rs);
        let within = |a: i64, b: i64| rs.iter().filter(|r| r.start >= a && r.end <= b).count();
        assert_eq!(
            within(1_000, i64::MAX),
            10,
            "1,000 partitions at 100 a range"
        );
        assert_eq!(within(0, 1_000), 1);
        assert!(
            rs.iter().any(|r| r.start == -100 && r.end <= 0),
            "the hole is scanned"
        );
    }

    #[test]
    fn shares_are_disjoint_and_together_everything() {
        let rs = even(100);
        let mut all: Vec<Range> = (1..=3).flat_map(|k| share(&rs, k, 3)).collect();
        assert_eq!(all.len(), 100);
        all.sort();
        all.dedup();
        assert_eq!(all, rs);
        assert_eq!(share(&rs, 1, 3).len(), 34);
    }

    #[test]
    fn a_checkpoint_resumes_and_a_torn_line_is_scanned_again() {
        let dir = std::env::temp_dir().join(format!("cutover-ranges-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("checkpoint.jsonl");
        let _ = std::fs::remove_file(&path);
        let rs = even(4);
        let mut c = Checkpoint::open(&path).unwrap();
        c.mark("ks.a", rs[0]).unwrap();
        c.mark("ks.a", rs[1]).unwrap();
        c.mark("ks.b", rs[0]).unwrap();
        // A crash in the middle of the next line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"\n{\"table\":\"ks.a\",\"sta").unwrap();
        drop(f);
        let mut c = Checkpoint::open(&path).unwrap();
        assert_eq!(c.len(), 3);
        assert!(c.is_done("ks.a", rs[1]) && c.is_done("ks.b", rs[0]));
        assert!(!c.is_done("ks.a", rs[2]) && !c.is_done("ks.b", rs[1]));
        // Appending after the torn line still reads back.
        c.mark("ks.a", rs[2]).unwrap();
        assert!(Checkpoint::open(&path).unwrap().is_done("ks.a", rs[2]));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
