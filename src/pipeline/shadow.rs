//! Shadow reads: in the `shadow-reads` phase (and in `target-primary` with
//! `route.shadow_target_primary`) a read's first page also goes to the
//! secondary cluster. The client never waits for it: the comparison
//! runs on its own task once both answers are in, by value (columns and
//! rows; never stream ids, paging-state bytes, tracing ids or warnings).
//! At most `limits.max_shadow_reads_in_flight` run at once; beyond that a
//! shadow read is dropped and counted, never delaying the client.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::frame::{Frame, Opcode};
use crate::metrics::{Collector, Exposition, MetricType};
use crate::protocol::response::ResultBody;

/// Mismatch samples kept for `GET /v1/shadow` (the oldest go first).
const SAMPLES: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct MismatchSample {
    /// `keyspace.table`.
    pub table: String,
    pub tenant: Option<String>,
    /// The request's key: its bound values, or the query text.
    pub key: String,
    pub primary_rows: usize,
    pub secondary_rows: usize,
}

/// What a shadow read is about, for counting and logging a mismatch.
pub struct ShadowContext {
    pub table: String,
    pub tenant: Option<String>,
    pub key: String,
    pub version: u8,
}

#[derive(Default)]
struct Counts {
    by_table: BTreeMap<String, u64>,
    by_tenant: BTreeMap<String, u64>,
    samples: VecDeque<MismatchSample>,
}

pub struct ShadowReads {
    permits: Arc<Semaphore>,
    pub compared: AtomicU64,
    pub mismatched: AtomicU64,
    pub dropped: AtomicU64,
    /// The secondary failed (error, timeout, unreachable): nothing compared.
    pub failed: AtomicU64,
    counts: Mutex<Counts>,
}

#[derive(Serialize)]
pub struct ShadowReport {
    pub compared: u64,
    pub mismatched: u64,
    pub dropped: u64,
    pub failed: u64,
    pub mismatched_by_table: BTreeMap<String, u64>,
    pub mismatched_by_tenant: BTreeMap<String, u64>,
    pub samples: Vec<MismatchSample>,
}

impl ShadowReads {
    pub fn new(max_in_flight: usize) -> ShadowReads {
        ShadowReads {
            permits: Arc::new(Semaphore::new(max_in_flight)),
            compared: AtomicU64::new(0),
            mismatched: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            counts: Mutex::new(Counts::default()),
        }
    }

    /// A place for one more shadow read, or `None` (counted as dropped).
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        match self.permits.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Waits for the primary's answer (sent by the request) and the
    /// secondary's, then compares them.
    pub async fn compare(
        &self,
        cx: ShadowContext,
        primary: oneshot::Receiver<Frame>,
        secondary: impl std::future::Future<Output = Option<Frame>>,
    ) {
        let (primary, secondary) = tokio::join!(primary, secondary);
        let Ok(primary) = primary else { return };
        if primary.op() != Some(Opcode::Result) {
            return;
        }
        let Some(secondary) = secondary.filter(|f| f.op() == Some(Opcode::Result)) else {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (a, b) = (
            ResultBody::read(&primary.body, cx.version),
            ResultBody::read(&secondary.body, cx.version),
        );
        self.compared.fetch_add(1, Ordering::Relaxed);
        let (same, rows) = match (a, b) {
            (Ok(ResultBody::Rows(a)), Ok(ResultBody::Rows(b))) => {
                let names = |r: &crate::protocol::response::Rows| {
                    r.metadata
                        .columns
                        .iter()
                        .map(|c| c.name.clone())
                        .collect::<Vec<_>>()
                };
                let columns_agree =
                    a.metadata.no_metadata || b.metadata.no_metadata || names(&a) == names(&b);
                (
                    columns_agree && a.rows == b.rows,
                    (a.rows.len(), b.rows.len()),
                )
            }
            (Ok(a), Ok(b)) => (format!("{a:?}") == format!("{b:?}"), (0, 0)),
            _ => (false, (0, 0)),
        };
        if same {
            return;
        }
        self.mismatched.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            table = %cx.table,
            tenant = cx.tenant.as_deref().unwrap_or("-"),
            key = %cx.key,
            primary_rows = rows.0,
            secondary_rows = rows.1,
            "shadow read differs between the clusters"
        );
        let mut c = self.counts.lock();
        *c.by_table.entry(cx.table.clone()).or_default() += 1;
        if let Some(t) = &cx.tenant {
            *c.by_tenant.entry(t.clone()).or_default() += 1;
        }
        if c.samples.len() == SAMPLES {
            c.samples.pop_front();
        }
        c.samples.push_back(MismatchSample {
            table: cx.table,
            tenant: cx.tenant,
            key: cx.key,
            primary_rows: rows.0,
            secondary_rows: rows.1,
        });
    }

    pub fn report(&self) -> ShadowReport {
        let c = self.counts.lock();
        ShadowReport {
            compared: self.compared.load(Ordering::Relaxed),
            mismatched: self.mismatched.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            mismatched_by_table: c.by_table.clone(),
            mismatched_by_tenant: c.by_tenant.clone(),
            samples: c.samples.iter().cloned().collect(),
        }
    }
}

impl Collector for ShadowReads {
    fn collect(&self, out: &mut Exposition) {
        let r = self.report();
        for (name, help, v) in [
            (
                "cutover_shadow_reads_compared_total",
                "Shadow reads whose two answers were compared",
                r.compared,
            ),
            (
                "cutover_shadow_reads_dropped_total",
                "Shadow reads not sent: limits.max_shadow_reads_in_flight were under way",
                r.dropped,
            ),
            (
                "cutover_shadow_reads_failed_total",
                "Shadow reads the secondary answered with an error, or not at all",
                r.failed,
            ),
        ] {
            out.family(name, help, MetricType::Counter);
            out.sample(name, &[], v as f64);
        }
        out.family(
            "cutover_shadow_read_mismatches_total",
            "Shadow reads whose answers differ, by keyspace.table",
            MetricType::Counter,
        );
        for (t, n) in &r.mismatched_by_table {
            out.sample(
                "cutover_shadow_read_mismatches_total",
                &[("table", t)],
                *n as f64,
            );
        }
        out.family(
            "cutover_shadow_read_tenant_mismatches_total",
            "Shadow reads whose answers differ, by tenant",
            MetricType::Counter,
        );
        for (t, n) in &r.mismatched_by_tenant {
            out.sample(
                "cutover_shadow_read_tenant_mismatches_total",
                &[("tenant", t)],
                *n as f64,
            );
        }
    }
}

/// A readable rendering of bound values, for the mismatch log: ints and
/// printable text as themselves, anything else in hex.
pub fn render_values(values: &[crate::protocol::reader::RawValue]) -> String {
    use crate::protocol::reader::RawValue;
    let one = |v: &RawValue| match v {
        RawValue::Null => "null".to_string(),
        RawValue::Unset => "unset".to_string(),
        RawValue::Bytes(b) if b.len() == 4 => {
            i32::from_be_bytes([b[0], b[1], b[2], b[3]]).to_string()
        }
        RawValue::Bytes(b) if b.len() == 8 => {
            i64::from_be_bytes(b[..8].try_into().expect("8 bytes")).to_string()
        }
        RawValue::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) if s.chars().all(|c| !c.is_control()) => format!("'{s}'"),
            _ => format!(
                "0x{}",
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            ),
        },
    };
    format!(
        "[{}]",
        values.iter().map(one).collect::<Vec<_>>().join(", ")
    )
}
