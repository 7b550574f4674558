//! `cutover copy`: copies a keyspace's tables from one cluster to others
//! with every cell's write time and remaining TTL kept, for moving a tenant
//! between shards (read-only first, so nothing changes under the copy).
//!
//! Each table is read by token range (`src/ranges.rs`: from the source's
//! `system.size_estimates`, else even splits), several ranges at once on
//! workers with connections of their own, each range in pages with
//! `WRITETIME` and `TTL` of every regular and static column; a finished
//! range goes to the checkpoint file, so a stopped copy resumes. Each row
//! is written back with one INSERT per
//! group of cells that share a write time and TTL (`USING TIMESTAMP ? AND
//! TTL ?`), values bound as the bytes the source returned: no value is
//! decoded, so every type copies as it is. What cannot be kept is said in
//! the report: non-frozen collections have no `WRITETIME` in Cassandra
//! before 5.0 and take their row's newest write time; rows with no regular
//! cell are written at the time of the copy; counter tables are skipped;
//! tombstones are not copied.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::client::Client;
use crate::frame::{Frame, Opcode};
use crate::protocol::reader::RawValue;
use crate::protocol::request::QueryParams;
use crate::protocol::response::{Prepared, ResultBody, Rows};
use crate::ranges::{Checkpoint, Range, RING};
use crate::scan::{
    bigint, cell, default_ttls, failed, int, progress_bar, quote, ranges_for, raw, run_workers,
    tables_of, tenant_restriction, Column, Endpoint, Pace,
};

/// What to copy, from where, to where.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    pub from: Endpoint,
    pub to: Vec<Endpoint>,
    pub keyspace: String,
    /// Tables to copy; empty: every table of the keyspace.
    pub tables: Vec<String>,
    pub page_size: i32,
    /// Only one tenant's rows, for tenants keyed by a column: (column,
    /// value). Tables without the column in their partition key are
    /// skipped.
    pub tenant: Option<(String, String)>,
    /// Token ranges copied at once, each worker on connections of its own.
    pub concurrency: usize,
    /// Ranges per table when the source has no `system.size_estimates`
    /// for it (else about `PARTITIONS_PER_RANGE` partitions a range).
    pub splits: usize,
    /// The file of finished ranges: a copy started again on it skips them.
    pub checkpoint: Option<std::path::PathBuf>,
    /// Rows read per second at most (0: no limit).
    pub rate: u64,
    /// Draw a progress bar (ranges, rows, rate, ETA) on stderr.
    pub progress: bool,
    /// `--split K/N`: only share K of N of the ranges, for N processes that
    /// together copy everything (each with its own checkpoint).
    pub split: Option<(usize, usize)>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            from: SocketAddr::from(([127, 0, 0, 1], 9042)).into(),
            to: Vec::new(),
            keyspace: String::new(),
            tables: Vec::new(),
            page_size: 1000,
            tenant: None,
            concurrency: 8,
            splits: 64,
            checkpoint: None,
            rate: 0,
            progress: false,
            split: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TableReport {
    pub table: String,
    pub rows: u64,
    /// INSERTs written to each destination.
    pub inserts: u64,
    /// Token ranges copied by this run, and ranges a checkpoint said an
    /// earlier run had finished (not copied again).
    pub ranges: u64,
    pub ranges_already_done: u64,
    /// Why the table was skipped, or what of it could not be kept exactly.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyReport {
    pub keyspace: String,
    pub tables: Vec<TableReport>,
}

/// One destination: its connection and the INSERTs prepared on it, by the
/// columns they write.
struct Destination {
    addr: SocketAddr,
    client: Client,
    /// The INSERTs prepared, by the columns they write and whether they
    /// carry a write time and TTL.
    prepared: HashMap<(Vec<String>, bool), Prepared>,
    /// EXECUTE bodies not sent yet: a page's rows go out pipelined.
    queued: Vec<Bytes>,
}

/// INSERTs in flight at once on one destination connection.
const WRITE_WINDOW: usize = 256;

impl Destination {
    /// Queues one INSERT of `columns` (prepared on first use); `flush`
    /// sends what is queued.
    async fn insert(
        &mut self,
        table: &str,
        columns: Vec<String>,
        timed: bool,
        values: Vec<RawValue>,
    ) -> Result<(), String> {
        let key = (columns, timed);
        if !self.prepared.contains_key(&key) {
            let names: Vec<String> = key.0.iter().map(|c| quote(c)).collect();
            let marks = vec!["?"; names.len()].join(", ");
            let using = if timed {
                " USING TIMESTAMP ? AND TTL ?"
            } else {
                ""
            };
            let q = format!(
                "INSERT INTO {table} ({}) VALUES ({marks}){using}",
                names.join(", ")
            );
            let p = self
                .client
                .prepare(&q)
                .await
                .map_err(|e| failed(&format!("{}: cannot prepare {q}", self.addr), e))?;
            self.prepared.insert(key.clone(), p);
        }
        let body = self.client.execute_body(&self.prepared[&key], values);
        self.queued.push(body);
        Ok(())
    }

    /// Sends the queued INSERTs, `WRITE_WINDOW` in flight, and waits for
    /// every answer; the first refused one fails the copy.
    async fn flush(&mut self, table: &str) -> Result<(), String> {
        let bodies = std::mem::take(&mut self.queued);
        let (mut next, mut in_flight) = (0, 0);
        let version = self.client.version;
        let what = |e| failed(&format!("{}: an INSERT into {table} failed", self.addr), e);
        while next < bodies.len() || in_flight > 0 {
            while in_flight < WRITE_WINDOW && next < bodies.len() {
                let stream = self.client.stream();
                let f = Frame::request(version, stream, Opcode::Execute, bodies[next].clone());
                self.client.feed(f).await.map_err(what)?;
                next += 1;
                in_flight += 1;
            }
            self.client.flush().await.map_err(what)?;
            let answer = self.client.recv().await.map_err(what)?;
            in_flight -= 1;
            self.client.result(answer).map_err(what)?;
        }
        Ok(())
    }
}

/// What copying one table needs, shared by the workers.
struct TablePlan {
    name: String,
    /// Its entry in the report.
    report: usize,
    /// `"ks"."table"`.
    full: String,
    /// `SELECT <columns, WRITETIME and TTL of each cell> FROM <full>`.
    select: String,
    /// A tenant's ` WHERE ...`: the table is read whole, not by range.
    restriction: Option<String>,
    /// `token("a", "b")` of its partition key.
    token: String,
    keys: Vec<Column>,
    cells: Vec<Column>,
}

/// Counts of one table, added to by every worker.
#[derive(Default)]
struct Counts {
    rows: AtomicU64,
    inserts: AtomicU64,
    untimed: AtomicU64,
    ranges: AtomicU64,
}

/// A table's share of the work: one token range (None: the whole table,
/// for a tenant's rows).
type Job = (usize, Option<Range>);

/// Copies the keyspace's tables by token range, `concurrency` ranges at a
/// time; the report says what was copied and what could not be kept
/// exactly. Stops at the first failed read or write: the ranges finished
/// before it are in the checkpoint, and a copy started again skips them.
pub async fn copy(o: &CopyOptions) -> Result<CopyReport, String> {
    if o.to.is_empty() {
        return Err("no destination: give at least one --to".into());
    }
    let mut source = o.from.connect().await?;
    let tables = tables_of(&mut source, o.from.addr, &o.keyspace, &o.tables).await?;
    // Every destination answers before any work starts.
    let origin_ttls = default_ttls(&mut source, &o.keyspace).await?;
    let mut destination_ttls = Vec::new();
    for to in &o.to {
        let mut c = to.connect().await?;
        destination_ttls.push((to.addr, default_ttls(&mut c, &o.keyspace).await?));
    }
    let checkpoint = match &o.checkpoint {
        Some(path) => Some(
            Checkpoint::open(path)
                .map_err(|e| format!("cannot read the checkpoint {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let mut report = CopyReport {
        keyspace: o.keyspace.clone(),
        tables: Vec::new(),
    };
    let mut plans = Vec::new();
    let mut jobs: VecDeque<Job> = VecDeque::new();
    for (name, columns) in &tables {
        if !o.tables.is_empty() && !o.tables.contains(name) {
            continue;
        }
        let mut r = TableReport {
            table: name.to_string(),
            ..Default::default()
        };
        let origin_ttl = origin_ttls.get(name).copied().unwrap_or(0);
        for (addr, ttls) in &destination_ttls {
            match ttls.get(name) {
                None => {
                    return Err(format!(
                        "table {}.{name} does not exist on {addr}: create it there first (cqlsh DESCRIBE TABLE on the origin gives its CREATE)",
                        o.keyspace
                    ))
                }
                Some(&ttl) if ttl != origin_ttl => r.notes.push(format!(
                    "default_time_to_live is {origin_ttl} s on the origin and {ttl} s on {addr}: every cell keeps the TTL it has left on the origin, but later writes there expire differently"
                )),
                Some(_) => {}
            }
        }
        let Some(plan) = plan_table(o, name, columns, report.tables.len(), &mut r)? else {
            report.tables.push(r);
            continue;
        };
        let ranges = ranges_for(
            &mut source,
            &o.keyspace,
            name,
            o.splits,
            o.split,
            plan.restriction.is_some(),
        )
        .await?;
        let key = format!("{}.{name}", o.keyspace);
        for range in ranges {
            if checkpoint
                .as_ref()
                .is_some_and(|c| c.is_done(&key, range.unwrap_or(RING)))
            {
                r.ranges_already_done += 1;
            } else {
                jobs.push_back((plans.len(), range));
            }
        }
        report.tables.push(r);
        plans.push(plan);
    }
    let counts: Arc<Vec<Counts>> = Arc::new(plans.iter().map(|_| Counts::default()).collect());
    let bar = progress_bar(o.progress, jobs.len() as u64);
    let shared = Arc::new(Shared {
        o: o.clone(),
        plans,
        jobs: parking_lot::Mutex::new(jobs),
        counts: counts.clone(),
        checkpoint: checkpoint.map(parking_lot::Mutex::new),
        pace: Pace::new(o.rate),
        stop: AtomicBool::new(false),
        bar: bar.clone(),
    });
    let r = run_workers(o.concurrency, "copy", || worker(shared.clone())).await;
    bar.finish_and_clear();
    r?;
    for (plan, c) in shared.plans.iter().zip(counts.iter()) {
        let r = &mut report.tables[plan.report];
        r.rows = c.rows.load(Ordering::Relaxed);
        r.inserts = c.inserts.load(Ordering::Relaxed);
        r.ranges = c.ranges.load(Ordering::Relaxed);
        let untimed = c.untimed.load(Ordering::Relaxed);
        if untimed > 0 {
            r.notes.push(format!(
                "{untimed} row(s) with no regular cell were written at the time of the copy (a primary key has no WRITETIME)"
            ));
        }
    }
    Ok(report)
}

/// What the workers share.
struct Shared {
    o: CopyOptions,
    plans: Vec<TablePlan>,
    jobs: parking_lot::Mutex<VecDeque<Job>>,
    counts: Arc<Vec<Counts>>,
    checkpoint: Option<parking_lot::Mutex<Checkpoint>>,
    pace: Pace,
    /// Set by the first failure: the others stop after their range.
    stop: AtomicBool,
    bar: indicatif::ProgressBar,
}

/// One worker: its own connections, ranges taken from the queue until it
/// is empty or another worker failed.
async fn worker(s: Arc<Shared>) -> Result<(), String> {
    let run = async {
        let mut source = s.o.from.connect().await?;
        let mut destinations = Vec::new();
        for to in &s.o.to {
            destinations.push(Destination {
                addr: to.addr,
                client: to.connect().await?,
                prepared: HashMap::new(),
                queued: Vec::new(),
            });
        }
        loop {
            if s.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let Some((t, range)) = s.jobs.lock().pop_front() else {
                return Ok(());
            };
            let plan = &s.plans[t];
            copy_range(
                &s,
                plan,
                &s.counts[t],
                range,
                &mut source,
                &mut destinations,
            )
            .await?;
            if let Some(c) = &s.checkpoint {
                let key = format!("{}.{}", s.o.keyspace, plan.name);
                c.lock()
                    .mark(&key, range.unwrap_or(RING))
                    .map_err(|e| format!("cannot write the checkpoint: {e}"))?;
            }
            s.counts[t].ranges.fetch_add(1, Ordering::Relaxed);
            s.bar.inc(1);
            let rows: u64 = s
                .counts
                .iter()
                .map(|c| c.rows.load(Ordering::Relaxed))
                .sum();
            s.bar
                .set_message(format!("{rows} rows  {:.0} rows/s", s.pace.per_second()));
        }
    };
    let r: Result<(), String> = run.await;
    if r.is_err() {
        s.stop.store(true, Ordering::Relaxed);
    }
    r
}

/// How `name` is read and written, or None (and why, in `r`) when it is
/// skipped.
fn plan_table(
    o: &CopyOptions,
    name: &str,
    columns: &[Column],
    report: usize,
    r: &mut TableReport,
) -> Result<Option<TablePlan>, String> {
    let full = format!("{}.{}", quote(&o.keyspace), quote(name));
    if columns.iter().any(|c| c.typ == "counter") {
        r.notes.push("skipped: counter tables cannot be written with INSERT; copy them with their own tool (e.g. by adding each count)".into());
        return Ok(None);
    }
    let keys: Vec<Column> = columns.iter().filter(|c| c.is_key()).cloned().collect();
    let cells: Vec<Column> = columns.iter().filter(|c| !c.is_key()).cloned().collect();
    let mut selectors: Vec<String> = columns.iter().map(|c| quote(&c.name)).collect();
    for c in cells.iter().filter(|c| !c.multi_cell()) {
        selectors.push(format!("WRITETIME({})", quote(&c.name)));
        selectors.push(format!("TTL({})", quote(&c.name)));
    }
    if cells.iter().any(|c| c.multi_cell()) {
        r.notes.push("non-frozen collections have no WRITETIME: they take their row's newest write time and no TTL".into());
    }
    let restriction = match &o.tenant {
        Some((column, value)) => match tenant_restriction(columns, column, value)? {
            Some(restriction) => Some(restriction),
            None => {
                r.notes.push(format!("skipped: {column} is not in its partition key, so its rows are not one tenant's (a shared table)"));
                return Ok(None);
            }
        },
        None => None,
    };
    let token = format!(
        "token({})",
        keys.iter()
            .filter(|k| k.kind == "partition_key")
            .map(|k| quote(&k.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Some(TablePlan {
        name: name.to_string(),
        report,
        select: format!("SELECT {} FROM {full}", selectors.join(", ")),
        full,
        restriction,
        token,
        keys,
        cells,
    }))
}

/// Copies one range of one table (or, with a tenant's restriction, the
/// tenant's rows of it), page by page.
async fn copy_range(
    s: &Shared,
    plan: &TablePlan,
    counts: &Counts,
    range: Option<Range>,
    source: &mut Client,
    destinations: &mut [Destination],
) -> Result<(), String> {
    let o = &s.o;
    let full = &plan.full;
    let (select, values) = match (range, &plan.restriction) {
        (Some(r), _) => (
            format!("{} WHERE {t} > ? AND {t} <= ?", plan.select, t = plan.token),
            vec![bigint(r.start), bigint(r.end)],
        ),
        (None, restriction) => (
            format!("{}{}", plan.select, restriction.as_deref().unwrap_or("")),
            Vec::new(),
        ),
    };
    let keys: Vec<&Column> = plan.keys.iter().collect();
    let cells: Vec<&Column> = plan.cells.iter().collect();
    let mut paging_state = None;
    // The write time of collections in rows without another cell.
    let copied_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    // Partitions whose static cells were written (they repeat on every
    // row; a partition lies in one range).
    let mut statics_done: std::collections::HashSet<Vec<Option<Bytes>>> = Default::default();
    loop {
        let page = source
            .query_with(
                &select,
                QueryParams {
                    consistency: source.consistency,
                    page_size: Some(o.page_size),
                    paging_state: paging_state.take(),
                    values: values.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| failed(&format!("reading {full} from {}", o.from.addr), e))?;
        let ResultBody::Rows(rows) = page else {
            return Err(format!("reading {full}: the source answered without rows"));
        };
        s.pace.read(rows.rows.len() as u64).await;
        for row in &rows.rows {
            counts.rows.fetch_add(1, Ordering::Relaxed);
            let groups = group_cells(&rows, row, &cells, copied_at);
            let partition: Vec<Option<Bytes>> = keys
                .iter()
                .filter(|k| k.kind == "partition_key")
                .map(|k| cell(&rows, row, &k.name).clone())
                .collect();
            let write_statics = statics_done.insert(partition);
            for ((timestamp, ttl), group) in groups {
                let group: Vec<&Column> = group
                    .into_iter()
                    .filter(|c| c.kind != "static" || write_statics)
                    .collect();
                if group.is_empty() {
                    continue;
                }
                let statics_only = group.iter().all(|c| c.kind == "static");
                let key_cols: Vec<&&Column> = keys
                    .iter()
                    .filter(|k| !statics_only || k.kind == "partition_key")
                    .collect();
                let mut names: Vec<String> = key_cols.iter().map(|k| k.name.clone()).collect();
                names.extend(group.iter().map(|c| c.name.clone()));
                let mut values: Vec<RawValue> =
                    names.iter().map(|n| raw(cell(&rows, row, n))).collect();
                values.push(bigint(timestamp));
                values.push(RawValue::Bytes(Bytes::copy_from_slice(&ttl.to_be_bytes())));
                for d in destinations.iter_mut() {
                    d.insert(full, names.clone(), true, values.clone()).await?;
                }
                counts.inserts.fetch_add(1, Ordering::Relaxed);
            }
            let whole_key = keys.iter().all(|k| cell(&rows, row, &k.name).is_some());
            let no_regular = cells
                .iter()
                .filter(|c| c.kind != "static")
                .all(|c| cell(&rows, row, &c.name).is_none());
            if whole_key && no_regular {
                // Only the primary key: its write time cannot be read.
                counts.untimed.fetch_add(1, Ordering::Relaxed);
                let names: Vec<String> = keys.iter().map(|k| k.name.clone()).collect();
                let values: Vec<RawValue> =
                    names.iter().map(|n| raw(cell(&rows, row, n))).collect();
                for d in destinations.iter_mut() {
                    d.insert(full, names.clone(), false, values.clone()).await?;
                }
                counts.inserts.fetch_add(1, Ordering::Relaxed);
            }
        }
        for d in destinations.iter_mut() {
            d.flush(full).await?;
        }
        match rows.metadata.paging_state {
            Some(p) => paging_state = Some(p),
            None => return Ok(()),
        }
    }
}

/// A row's non-null cells grouped by (write time, TTL); a non-frozen
/// collection joins its row's newest write time, without TTL.
fn group_cells<'c>(
    rows: &Rows,
    row: &[Option<Bytes>],
    cells: &[&'c Column],
    copied_at: i64,
) -> BTreeMap<(i64, i32), Vec<&'c Column>> {
    let mut groups: BTreeMap<(i64, i32), Vec<&Column>> = BTreeMap::new();
    let mut newest = None;
    for c in cells.iter().filter(|c| !c.multi_cell()) {
        if cell(rows, row, &c.name).is_none() {
            continue;
        }
        let wt = int(cell(rows, row, &format!("writetime({})", c.name)));
        let ttl = int(cell(rows, row, &format!("ttl({})", c.name))).unwrap_or(0) as i32;
        if let Some(wt) = wt {
            newest = newest.max(Some(wt));
            groups.entry((wt, ttl)).or_default().push(c);
        }
    }
    for c in cells.iter().filter(|c| c.multi_cell()) {
        if cell(rows, row, &c.name).is_some() {
            groups
                .entry((newest.unwrap_or(copied_at), 0))
                .or_default()
                .push(c);
        }
    }
    groups
}
