//! What `validate` is asked to do: the clusters, the selection, the
//! tolerances, and what to do about differences.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::ranges::Range;
use crate::scan::Endpoint;

/// How far two cells may drift and still be the same.
#[derive(Debug, Clone, Default)]
pub struct Tolerance {
    /// Write times differing by at most this many microseconds are equal.
    pub writetime_us: i64,
    /// Remaining TTLs differing by at most this many seconds are equal
    /// (the two reads are not at the same instant).
    pub ttl_s: i64,
    /// `float` and `double` values within this of each other are equal.
    pub float_epsilon: f64,
    /// Columns not compared at all.
    pub ignore: Vec<String>,
}

/// What to compare, where, and what to do about differences.
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    pub from: Endpoint,
    pub to: Endpoint,
    pub keyspace: String,
    /// Tables to compare; empty: every table of the keyspace.
    pub tables: Vec<String>,
    /// Only one tenant's rows, for tenants keyed by a column.
    pub tenant: Option<(String, String)>,
    pub page_size: i32,
    pub concurrency: usize,
    pub splits: usize,
    pub checkpoint: Option<std::path::PathBuf>,
    /// Rows read per second at most, both sides together (0: no limit).
    pub rate: u64,
    pub progress: bool,
    pub split: Option<(usize, usize)>,
    pub tolerance: Tolerance,
    /// How long after a difference is first seen it is read again.
    pub recheck_after: Duration,
    pub repair: bool,
    pub delete_extra: bool,
    /// Only these ranges of each table (`--ranges-from REPORT`).
    pub only: Option<BTreeMap<String, Vec<Range>>>,
    /// Keys of each kind of difference kept per table in the report.
    pub samples: usize,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            from: SocketAddr::from(([127, 0, 0, 1], 9042)).into(),
            to: SocketAddr::from(([127, 0, 0, 1], 9043)).into(),
            keyspace: String::new(),
            tables: Vec::new(),
            tenant: None,
            page_size: 1000,
            concurrency: 8,
            splits: 64,
            checkpoint: None,
            rate: 0,
            progress: false,
            split: None,
            tolerance: Tolerance::default(),
            recheck_after: Duration::from_millis(500),
            repair: false,
            delete_extra: false,
            only: None,
            samples: 10,
        }
    }
}
