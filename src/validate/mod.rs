//! `cutover validate`: compares a keyspace's tables on two clusters row by
//! row, by primary key, and with `--repair` writes what the target lacks.
//!
//! Both sides are read by the same token ranges (`src/ranges.rs`), each
//! range as two paged scans merged by token: a row is compared once both
//! scans have passed its token, so a worker holds about a page of each side,
//! not the range. Every regular and static cell is read with its value,
//! `WRITETIME` and `TTL` and compared within the tolerances. A difference is
//! read again on both sides by its primary key before it is reported (after
//! `recheck_after`), so a write in flight during live dual-writes, seen by
//! one scan and not yet by the other, is counted as `settled`, not as a
//! difference.
//!
//! What is compared, decided once:
//! - static cells once per partition, as a row of their own (its key is
//!   the partition key);
//! - non-frozen collections by value only: before Cassandra 5 their cells
//!   carry no single write time;
//! - a row holding only a primary key by its presence;
//! - counters by value; they are never repaired (a counter cannot be set,
//!   only added to).
//!
//! Repair (`--repair`) writes the origin's cells to the target with the
//! origin's write time and remaining TTL, so a newer cell on the target
//! wins by Cassandra's own rule (last write wins) and is never overwritten;
//! a difference where the target's cell is the newer one is reported and
//! left. A cell the origin lacks is deleted on the target at the target
//! cell's own write time: only that version goes, a later write survives.
//! Rows only on the target are reported, and deleted only with
//! `--delete-extra`, at the newest write time read in them (a row holding
//! only its key: at the time of the re-read).

mod options;
mod plan;
mod repair;
mod report;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::client::Client;
use crate::protocol::reader::RawValue;
use crate::protocol::request::QueryParams;
use crate::protocol::response::{Prepared, ResultBody, Rows};
use crate::ranges::{Checkpoint, Range, RING};
use crate::scan::{bigint, failed, progress_bar, ranges_for, run_workers, schema, tables_of, Pace};

pub use options::{Tolerance, ValidateOptions};
use plan::{Entry, Key, Kind, Plan};
use repair::{delete_extra, read_key, repair};
pub use report::{Found, Sample, TableDiff, ValidateReport};

/// One side's connection and the statements prepared on it.
struct Side {
    name: &'static str,
    addr: SocketAddr,
    client: Client,
    prepared: HashMap<String, Prepared>,
}

impl Side {
    async fn prepared(&mut self, q: &str) -> Result<Prepared, String> {
        if let Some(p) = self.prepared.get(q) {
            return Ok(p.clone());
        }
        let p = self
            .client
            .prepare(q)
            .await
            .map_err(|e| failed(&format!("{}: cannot prepare {q}", self.addr), e))?;
        self.prepared.insert(q.to_string(), p.clone());
        Ok(p)
    }

    async fn execute(&mut self, q: &str, values: Vec<RawValue>) -> Result<ResultBody, String> {
        let p = self.prepared(q).await?;
        self.client
            .execute(&p, values)
            .await
            .map_err(|e| failed(&format!("{} ({})", self.name, self.addr), e))
    }

    /// A scan's page.
    async fn page(
        &mut self,
        q: &str,
        values: Vec<RawValue>,
        page_size: i32,
        paging_state: Option<Bytes>,
    ) -> Result<Rows, String> {
        let r = self
            .client
            .query_with(
                q,
                QueryParams {
                    consistency: self.client.consistency,
                    page_size: Some(page_size),
                    paging_state,
                    values,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| failed(&format!("reading {} ({})", self.name, self.addr), e))?;
        match r {
            ResultBody::Rows(rows) => Ok(rows),
            _ => Err(format!("{}: a SELECT answered without rows", self.name)),
        }
    }
}

/// What the workers share.
struct Shared {
    o: ValidateOptions,
    plans: Vec<Plan>,
    jobs: parking_lot::Mutex<VecDeque<(usize, Option<Range>)>>,
    found: parking_lot::Mutex<Vec<(Found, Vec<Range>, u64)>>,
    checkpoint: Option<parking_lot::Mutex<Checkpoint>>,
    pace: Pace,
    rows: AtomicU64,
    stop: AtomicBool,
    bar: indicatif::ProgressBar,
}

/// Compares the keyspace's tables range by range, `concurrency` ranges at
/// a time; with `repair`, mends the target as it goes. Stops at the first
/// failed read or write (finished ranges are in the checkpoint).
pub async fn validate(
    o: &ValidateOptions,
    warnings: Vec<String>,
) -> Result<ValidateReport, String> {
    let mut source = o.from.connect().await?;
    let tables = tables_of(&mut source, o.from.addr, &o.keyspace, &o.tables).await?;
    let mut target = o.to.connect().await?;
    let target_tables = schema(&mut target, &o.keyspace).await?;
    let mut checkpoint = match &o.checkpoint {
        Some(path) => Some(
            Checkpoint::open(path)
                .map_err(|e| format!("cannot read the checkpoint {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let mut report = ValidateReport {
        keyspace: o.keyspace.clone(),
        from: o.from.addr.to_string(),
        to: o.to.addr.to_string(),
        split: o.split.map(|(k, n)| format!("{k}/{n}")),
        warnings,
        tables: Vec::new(),
    };
    let mut plans = Vec::new();
    let mut jobs = VecDeque::new();
    for (name, columns) in &tables {
        if !o.tables.is_empty() && !o.tables.contains(name) {
            continue;
        }
        let mut t = TableDiff {
            table: name.clone(),
            ..Default::default()
        };
        if let Some(only) = &o.only {
            if !only.contains_key(name) {
                continue;
            }
        }
        if !target_tables.contains_key(name) {
            t.notes.push(format!(
                "not compared: the table does not exist on the target {}",
                o.to.addr
            ));
            t.found.missing = 1;
            report.tables.push(t);
            continue;
        }
        let Some(plan) = Plan::new(o, name, columns, report.tables.len(), &mut t.notes)? else {
            report.tables.push(t);
            continue;
        };
        let ranges = match &o.only {
            Some(only) => only[name].iter().copied().map(Some).collect(),
            None => {
                ranges_for(
                    &mut source,
                    &o.keyspace,
                    name,
                    o.splits,
                    o.split,
                    plan.restriction.is_some(),
                )
                .await?
            }
        };
        let key = format!("{}.{name}", o.keyspace);
        for range in ranges {
            let r = range.unwrap_or(RING);
            match checkpoint.as_mut().filter(|c| c.is_done(&key, r)) {
                Some(c) => {
                    t.ranges_already_done += 1;
                    if let Some(f) = c
                        .result(&key, r)
                        .and_then(|v| serde_json::from_value::<Found>(v.clone()).ok())
                    {
                        if f.remaining() > 0 {
                            t.differing_ranges.push(r);
                        }
                        t.found.add(&f, o.samples);
                    }
                }
                None => jobs.push_back((plans.len(), range)),
            }
        }
        report.tables.push(t);
        plans.push(plan);
    }
    let bar = progress_bar(o.progress, jobs.len() as u64);
    let shared = Arc::new(Shared {
        o: o.clone(),
        found: parking_lot::Mutex::new(plans.iter().map(|_| Default::default()).collect()),
        plans,
        jobs: parking_lot::Mutex::new(jobs),
        checkpoint: checkpoint.map(parking_lot::Mutex::new),
        pace: Pace::new(o.rate),
        rows: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        bar: bar.clone(),
    });
    let r = run_workers(o.concurrency, "validate", || worker(shared.clone())).await;
    bar.finish_and_clear();
    r?;
    for (plan, (found, differing, ranges)) in shared.plans.iter().zip(shared.found.lock().iter()) {
        let t = &mut report.tables[plan.report];
        t.found.add(found, o.samples);
        t.ranges += ranges;
        t.differing_ranges.extend(differing.iter().copied());
        t.differing_ranges.sort();
        if plan.counter && o.repair && found.differences() > 0 {
            t.notes.push(
                "counters differ and were not repaired: a counter can only be added to".into(),
            );
        }
        if o.repair && !o.delete_extra && found.extra > 0 {
            t.notes.push(format!(
                "{} extra row(s) left on the target: give --delete-extra to delete them",
                found.extra
            ));
        }
        let left = found.remaining();
        if o.repair && left > 0 {
            t.notes.push(format!(
                "{left} difference(s) not repaired: the samples say why for each"
            ));
        }
    }
    Ok(report)
}

async fn worker(s: Arc<Shared>) -> Result<(), String> {
    let run = async {
        let mut origin = Side {
            name: "the origin",
            addr: s.o.from.addr,
            client: s.o.from.connect().await?,
            prepared: HashMap::new(),
        };
        let mut target = Side {
            name: "the target",
            addr: s.o.to.addr,
            client: s.o.to.connect().await?,
            prepared: HashMap::new(),
        };
        loop {
            if s.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let Some((t, range)) = s.jobs.lock().pop_front() else {
                return Ok(());
            };
            let plan = &s.plans[t];
            let found = compare_range(&s, plan, range, &mut origin, &mut target).await?;
            if let Some(c) = &s.checkpoint {
                let key = format!("{}.{}", s.o.keyspace, plan.name);
                c.lock()
                    .mark_with(
                        &key,
                        range.unwrap_or(RING),
                        Some(serde_json::to_value(&found).expect("counts serialize")),
                    )
                    .map_err(|e| format!("cannot write the checkpoint: {e}"))?;
            }
            {
                let mut all = s.found.lock();
                let (f, differing, ranges) = &mut all[t];
                if found.remaining() > 0 {
                    differing.push(range.unwrap_or(RING));
                }
                f.add(&found, s.o.samples);
                *ranges += 1;
            }
            s.bar.inc(1);
            let rows =
                s.rows.fetch_add(found.rows_compared, Ordering::Relaxed) + found.rows_compared;
            s.bar.set_message(format!(
                "{rows} rows compared  {:.0} rows/s read",
                s.pace.per_second()
            ));
        }
    };
    let r: Result<(), String> = run.await;
    if r.is_err() {
        s.stop.store(true, Ordering::Relaxed);
    }
    r
}

/// Compares one range: both sides' scans merged by token, then each
/// difference read again by key and, with `--repair`, mended.
async fn compare_range(
    s: &Shared,
    plan: &Plan,
    range: Option<Range>,
    origin: &mut Side,
    target: &mut Side,
) -> Result<Found, String> {
    let o = &s.o;
    let (select, values) = match range {
        Some(r) => (
            format!("{} WHERE {t} > ? AND {t} <= ?", plan.select, t = plan.token),
            vec![bigint(r.start), bigint(r.end)],
        ),
        None => (
            format!(
                "{}{}",
                plan.select,
                plan.restriction.as_deref().unwrap_or("")
            ),
            Vec::new(),
        ),
    };
    let mut found = Found::default();
    let mut pending: BTreeMap<Key, [Option<Entry>; 2]> = BTreeMap::new();
    let mut paging: [Option<Bytes>; 2] = [None, None];
    let mut done = [false, false];
    let mut frontier = [i64::MIN; 2];
    let mut differences: Vec<(Key, Kind)> = Vec::new();
    let mut first_seen = None;
    let mut entries = Vec::new();
    loop {
        let side = match done {
            [true, false] => 1,
            [false, true] => 0,
            _ if frontier[1] < frontier[0] => 1,
            _ => 0,
        };
        let conn = if side == 0 {
            &mut *origin
        } else {
            &mut *target
        };
        let rows = conn
            .page(&select, values.clone(), o.page_size, paging[side].take())
            .await?;
        s.pace.read(rows.rows.len() as u64).await;
        for row in &rows.rows {
            if row.len() < plan.width {
                return Err(format!("{}: a row of {} is short", conn.name, plan.full));
            }
            entries.clear();
            plan.entries(row, &mut entries);
            for (key, e) in entries.drain(..) {
                frontier[side] = frontier[side].max(key.0);
                pending.entry(key).or_default()[side] = Some(e);
            }
        }
        match rows.metadata.paging_state {
            Some(p) => paging[side] = Some(p),
            None => done[side] = true,
        }
        // Rows of tokens both scans have passed are whole on both sides.
        let limit = (0..2).filter(|&i| !done[i]).map(|i| frontier[i]).min();
        let ready = match limit {
            Some(limit) => {
                let rest = pending.split_off(&(limit, false, Vec::new()));
                std::mem::replace(&mut pending, rest)
            }
            None => std::mem::take(&mut pending),
        };
        for (key, [a, b]) in ready {
            found.rows_compared += 1;
            let kind = match (&a, &b) {
                (Some(_), None) => Kind::Missing,
                (None, Some(_)) => Kind::Extra,
                (Some(a), Some(b)) if !plan.compare(&o.tolerance, a, b).is_empty() => {
                    Kind::Differing
                }
                _ => continue,
            };
            first_seen.get_or_insert_with(Instant::now);
            differences.push((key, kind));
        }
        // Memory stays bounded however much differs: a batch is settled
        // before the scan goes on (and what is left, at the end).
        let finished = done == [true, true];
        if differences.len() >= SETTLE_BATCH || (finished && !differences.is_empty()) {
            let seen = first_seen.take().unwrap_or_else(Instant::now);
            let batch = std::mem::take(&mut differences);
            settle(s, plan, batch, seen, origin, target, &mut found).await?;
        }
        if finished {
            return Ok(found);
        }
    }
}

/// Differences found by the scans held before they are read again.
const SETTLE_BATCH: usize = 1000;

/// Reads each difference again on both sides, once `recheck_after` has
/// passed since the first was seen; counts what remains (and mends it,
/// with `--repair`) and what settled.
async fn settle(
    s: &Shared,
    plan: &Plan,
    differences: Vec<(Key, Kind)>,
    seen: Instant,
    origin: &mut Side,
    target: &mut Side,
    found: &mut Found,
) -> Result<(), String> {
    let o = &s.o;
    if let Some(wait) = o.recheck_after.checked_sub(seen.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    for (key, _) in differences {
        let a = read_key(plan, &key, origin).await?;
        let b = read_key(plan, &key, target).await?;
        let (kind, detail) = match (&a, &b) {
            (Some(_), None) => (Kind::Missing, Vec::new()),
            (None, Some(_)) => (Kind::Extra, Vec::new()),
            (Some(x), Some(y)) => {
                let d = plan.compare(&o.tolerance, x, y);
                if d.is_empty() {
                    found.settled += 1;
                    continue;
                }
                (Kind::Differing, d)
            }
            (None, None) => {
                found.settled += 1;
                continue;
            }
        };
        match kind {
            Kind::Missing => found.missing += 1,
            Kind::Extra => found.extra += 1,
            Kind::Differing => found.differing += 1,
        }
        let mut detail = detail;
        match (kind, &a, &b) {
            _ if plan.counter && o.repair => {
                detail.push("not repaired: a counter can only be added to".into())
            }
            (Kind::Extra, None, Some(y)) if o.delete_extra => {
                delete_extra(plan, &key, y, target).await?;
                found.deleted += 1;
            }
            (Kind::Missing | Kind::Differing, Some(x), y) if o.repair => {
                match repair(plan, &key, x, y.as_ref(), target).await? {
                    Some(why) => detail.push(format!("not repaired: {why}")),
                    // Written: read back, since a deletion newer than the
                    // origin's cells (a tombstone cannot be read) wins
                    // over the origin's write times.
                    None => match read_key(plan, &key, target).await? {
                        Some(now) if plan.compare(&o.tolerance, x, &now).is_empty() => {
                            found.repaired += 1
                        }
                        _ => detail.push(
                            "not repaired: written with the origin's write times, the target still differs — most likely it holds a newer deletion of these cells (a tombstone, which no read shows), or a newer write arrived meanwhile"
                                .into(),
                        ),
                    },
                }
            }
            _ => {}
        }
        if found
            .samples
            .iter()
            .filter(|x| x.kind == kind.name())
            .count()
            < o.samples
        {
            found.samples.push(Sample {
                kind: kind.name().into(),
                key: plan.render_key(&key),
                detail,
            });
        }
    }
    Ok(())
}
