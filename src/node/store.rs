//! In-memory table data with last-write-wins cells, TTLs and tombstones.
//!
//! A table is a map of partitions ordered by token (Murmur3, as Cassandra
//! orders them; then by key, for the rare tokens two keys share), each
//! with its static row and its clustered rows (ordered by clustering key,
//! honouring DESC columns). Cells carry their write timestamp; a write only wins over a
//! cell or tombstone with a lower timestamp, as in Cassandra.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::value::Value;

/// One part of a clustering key; DESC columns sort in reverse.
#[derive(Debug, Clone)]
pub struct KeyPart {
    pub value: Value,
    pub desc: bool,
}

impl PartialEq for KeyPart {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}
impl Eq for KeyPart {}
impl Ord for KeyPart {
    fn cmp(&self, other: &Self) -> Ordering {
        let o = self.value.cmp(&other.value);
        if self.desc {
            o.reverse()
        } else {
            o
        }
    }
}
impl PartialOrd for KeyPart {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

pub type ClusteringKey = Vec<KeyPart>;
pub type PartitionKey = Vec<Value>;

/// A partition key with its token: the order partitions are kept in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Keyed {
    pub token: i64,
    pub key: PartitionKey,
}

/// Timestamps are microseconds; i64::MIN means "never deleted".
pub const NO_DELETION: i64 = i64::MIN;

#[derive(Debug, Clone)]
pub struct Cell {
    /// `None` is a tombstone.
    pub value: Option<Value>,
    pub ts: i64,
    /// Unix seconds at which the cell expires.
    pub expires: Option<i64>,
}

impl Cell {
    pub fn live_value(&self, now_secs: i64) -> Option<&Value> {
        match self.expires {
            Some(e) if e <= now_secs => None,
            _ => self.value.as_ref(),
        }
    }

    /// Does `self` win over `old` by Cassandra's reconciliation rules?
    fn supersedes(&self, old: &Cell) -> bool {
        match self.ts.cmp(&old.ts) {
            Ordering::Greater => true,
            Ordering::Less => false,
            // Equal timestamps: a tombstone wins, then the larger value.
            Ordering::Equal => match (&self.value, &old.value) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => a >= b,
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub ts: i64,
    pub expires: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Row {
    /// Set by INSERT: the row exists even with every column null.
    pub marker: Option<Liveness>,
    pub deleted_at: i64,
    /// Indexed by column slot.
    pub cells: Vec<Option<Cell>>,
}

impl Default for Row {
    fn default() -> Self {
        Row {
            marker: None,
            deleted_at: NO_DELETION,
            cells: Vec::new(),
        }
    }
}

impl Row {
    /// The live cell in `slot`, if any, given an enclosing deletion.
    pub fn cell(&self, slot: usize, outer_deleted_at: i64, now_secs: i64) -> Option<&Cell> {
        let c = self.cells.get(slot)?.as_ref()?;
        if c.ts <= self.deleted_at.max(outer_deleted_at) || c.live_value(now_secs).is_none() {
            return None;
        }
        Some(c)
    }

    pub fn value(&self, slot: usize, outer_deleted_at: i64, now_secs: i64) -> Option<&Value> {
        self.cell(slot, outer_deleted_at, now_secs)
            .and_then(|c| c.value.as_ref())
    }

    pub fn is_live(&self, outer_deleted_at: i64, now_secs: i64) -> bool {
        let shadow = self.deleted_at.max(outer_deleted_at);
        if let Some(m) = self.marker {
            if m.ts > shadow && m.expires.is_none_or(|e| e > now_secs) {
                return true;
            }
        }
        (0..self.cells.len()).any(|s| self.cell(s, outer_deleted_at, now_secs).is_some())
    }

    pub fn write(&mut self, slot: usize, cell: Cell, outer_deleted_at: i64) {
        if cell.ts <= self.deleted_at.max(outer_deleted_at) {
            return;
        }
        if self.cells.len() <= slot {
            self.cells.resize(slot + 1, None);
        }
        match &self.cells[slot] {
            Some(old) if !cell.supersedes(old) => {}
            _ => self.cells[slot] = Some(cell),
        }
    }

    /// A counter's new total: counters add up, they are not settled by
    /// write time, so it replaces the cell whatever its timestamp (two
    /// updates in one batch share one), unless a deletion shadows it.
    pub fn write_counter(&mut self, slot: usize, cell: Cell, outer_deleted_at: i64) {
        if cell.ts <= self.deleted_at.max(outer_deleted_at) {
            return;
        }
        if self.cells.len() <= slot {
            self.cells.resize(slot + 1, None);
        }
        self.cells[slot] = Some(cell);
    }

    pub fn mark(&mut self, l: Liveness) {
        match self.marker {
            Some(m) if m.ts > l.ts => {}
            _ => self.marker = Some(l),
        }
    }

    pub fn delete(&mut self, ts: i64) {
        if ts > self.deleted_at {
            self.deleted_at = ts;
            for c in self.cells.iter_mut() {
                if c.as_ref().is_some_and(|c| c.ts <= ts) {
                    *c = None;
                }
            }
            if self.marker.is_some_and(|m| m.ts <= ts) {
                self.marker = None;
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Partition {
    pub deleted_at: i64,
    pub statics: Row,
    pub rows: BTreeMap<ClusteringKey, Row>,
}

impl Default for Partition {
    fn default() -> Self {
        Partition {
            deleted_at: NO_DELETION,
            statics: Row::default(),
            rows: BTreeMap::new(),
        }
    }
}

impl Partition {
    pub fn delete(&mut self, ts: i64) {
        if ts > self.deleted_at {
            self.deleted_at = ts;
            self.statics.delete(ts);
            self.rows.retain(|_, r| {
                r.delete(ts);
                r.marker.is_some() || r.cells.iter().any(Option::is_some)
            });
        }
    }

    pub fn has_live_statics(&self, now_secs: i64) -> bool {
        (0..self.statics.cells.len())
            .any(|s| self.statics.cell(s, self.deleted_at, now_secs).is_some())
    }
}

#[derive(Debug, Clone, Default)]
pub struct TableData {
    pub partitions: BTreeMap<Keyed, Partition>,
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Microsecond write timestamps, strictly increasing within the process so
/// two server-side timestamps never tie.
pub fn now_micros() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering as AO};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let mut last = LAST.load(AO::Relaxed);
    loop {
        let next = if now > last { now } else { last + 1 };
        match LAST.compare_exchange(last, next, AO::Relaxed, AO::Relaxed) {
            Ok(_) => return next,
            Err(l) => last = l,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(v: i64, ts: i64) -> Cell {
        Cell {
            value: Some(Value::Int(v)),
            ts,
            expires: None,
        }
    }

    #[test]
    fn last_write_wins_by_timestamp_not_arrival() {
        let mut r = Row::default();
        r.write(0, cell(1, 20), NO_DELETION);
        r.write(0, cell(2, 10), NO_DELETION);
        assert_eq!(r.value(0, NO_DELETION, 0), Some(&Value::Int(1)));
        r.write(0, cell(3, 30), NO_DELETION);
        assert_eq!(r.value(0, NO_DELETION, 0), Some(&Value::Int(3)));
    }

    #[test]
    fn tombstones_shadow_older_writes_only() {
        let mut r = Row::default();
        r.write(0, cell(1, 10), NO_DELETION);
        r.delete(15);
        assert!(!r.is_live(NO_DELETION, 0));
        r.write(0, cell(2, 12), NO_DELETION);
        assert!(
            !r.is_live(NO_DELETION, 0),
            "a write older than the tombstone stays dead"
        );
        r.write(0, cell(3, 16), NO_DELETION);
        assert_eq!(r.value(0, NO_DELETION, 0), Some(&Value::Int(3)));
    }

    #[test]
    fn expired_cells_are_not_live() {
        let mut r = Row::default();
        r.write(
            0,
            Cell {
                value: Some(Value::Int(1)),
                ts: 1,
                expires: Some(100),
            },
            NO_DELETION,
        );
        assert!(r.is_live(NO_DELETION, 99));
        assert!(!r.is_live(NO_DELETION, 100));
    }
}
