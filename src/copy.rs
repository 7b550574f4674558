//! `cutover copy`: copies a keyspace's tables from one cluster to others
//! with every cell's write time and remaining TTL kept, for moving a tenant
//! between shards (read-only first, so nothing changes under the copy).
//!
//! Each table is read in pages with `WRITETIME` and `TTL` of every regular
//! and static column, and each row is written back with one INSERT per
//! group of cells that share a write time and TTL (`USING TIMESTAMP ? AND
//! TTL ?`), values bound as the bytes the source returned: no value is
//! decoded, so every type copies as it is. What cannot be kept is said in
//! the report: non-frozen collections have no `WRITETIME` in Cassandra
//! before 5.0 and take their row's newest write time; rows with no regular
//! cell are written at the time of the copy; counter tables are skipped;
//! tombstones are not copied.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use bytes::Bytes;
use serde::Serialize;

use crate::client::{Client, ClientError};
use crate::protocol::consistency;
use crate::protocol::reader::RawValue;
use crate::protocol::request::QueryParams;
use crate::protocol::response::{Prepared, ResultBody, Rows};

/// What to copy, from where, to where.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    pub from: SocketAddr,
    pub to: Vec<SocketAddr>,
    pub keyspace: String,
    /// Tables to copy; empty: every table of the keyspace.
    pub tables: Vec<String>,
    pub credentials: Option<(String, String)>,
    pub page_size: i32,
    /// Only one tenant's rows, for tenants keyed by a column: (column,
    /// value). Tables without the column in their partition key are
    /// skipped.
    pub tenant: Option<(String, String)>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TableReport {
    pub table: String,
    pub rows: u64,
    /// INSERTs written to each destination.
    pub inserts: u64,
    /// Why the table was skipped, or what of it could not be kept exactly.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyReport {
    pub keyspace: String,
    pub tables: Vec<TableReport>,
}

/// A column as `system_schema.columns` describes it.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: String,
    position: i32,
    typ: String,
}

impl Column {
    fn is_key(&self) -> bool {
        self.kind == "partition_key" || self.kind == "clustering"
    }

    /// A non-frozen collection: no WRITETIME/TTL selector for it.
    fn multi_cell(&self) -> bool {
        ["list<", "set<", "map<"]
            .iter()
            .any(|p| self.typ.starts_with(p))
    }
}

/// A CQL identifier, quoted so that any name works.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn text(b: &Option<Bytes>) -> String {
    b.as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn cell<'a>(rows: &Rows, row: &'a [Option<Bytes>], name: &str) -> &'a Option<Bytes> {
    static NONE: Option<Bytes> = None;
    rows.metadata
        .columns
        .iter()
        .position(|c| c.name == name)
        .and_then(|i| row.get(i))
        .unwrap_or(&NONE)
}

fn failed(what: &str, e: ClientError) -> String {
    format!("{what}: {e}")
}

async fn connect(addr: SocketAddr, o: &CopyOptions) -> Result<Client, String> {
    let creds = o
        .credentials
        .as_ref()
        .map(|(u, p)| (u.as_str(), p.as_str()));
    Client::connect(addr, 4, None, creds)
        .await
        .map_err(|e| failed(&format!("cannot connect to {addr}"), e))
}

/// The keyspace's tables and their columns, keys first in key order.
async fn schema(c: &mut Client, keyspace: &str) -> Result<BTreeMap<String, Vec<Column>>, String> {
    let q = format!(
        "SELECT table_name, column_name, kind, position, type FROM system_schema.columns WHERE keyspace_name = '{}'",
        keyspace.replace('\'', "''")
    );
    let ResultBody::Rows(rows) = c
        .query(&q)
        .await
        .map_err(|e| failed("cannot read the source's schema", e))?
    else {
        return Err("the source answered its schema query without rows".into());
    };
    let mut tables: BTreeMap<String, Vec<Column>> = BTreeMap::new();
    for row in &rows.rows {
        let position = cell(&rows, row, "position")
            .as_ref()
            .and_then(|b| <[u8; 4]>::try_from(&b[..]).ok())
            .map(i32::from_be_bytes)
            .unwrap_or(-1);
        tables
            .entry(text(cell(&rows, row, "table_name")))
            .or_default()
            .push(Column {
                name: text(cell(&rows, row, "column_name")),
                kind: text(cell(&rows, row, "kind")),
                position,
                typ: text(cell(&rows, row, "type")),
            });
    }
    let rank = |k: &str| match k {
        "partition_key" => 0,
        "clustering" => 1,
        "static" => 2,
        _ => 3,
    };
    for cols in tables.values_mut() {
        cols.sort_by(|a, b| {
            (rank(&a.kind), a.position, &a.name).cmp(&(rank(&b.kind), b.position, &b.name))
        });
    }
    Ok(tables)
}

/// One destination: its connection and the INSERTs prepared on it, by the
/// columns they write.
struct Destination {
    addr: SocketAddr,
    client: Client,
    prepared: HashMap<Vec<String>, Prepared>,
}

impl Destination {
    async fn insert(
        &mut self,
        table: &str,
        columns: Vec<String>,
        timed: bool,
        values: Vec<RawValue>,
    ) -> Result<(), String> {
        if !self.prepared.contains_key(&columns) {
            let names: Vec<String> = columns.iter().map(|c| quote(c)).collect();
            let marks = vec!["?"; columns.len()].join(", ");
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
            self.prepared.insert(columns.clone(), p);
        }
        let p = &self.prepared[&columns];
        self.client
            .execute(p, values)
            .await
            .map_err(|e| failed(&format!("{}: an INSERT into {table} failed", self.addr), e))?;
        Ok(())
    }
}

/// ` WHERE column = value` for a table partitioned by the tenant column
/// (with ALLOW FILTERING when the partition key has other columns too); None
/// for a table without it in its partition key.
fn tenant_restriction(
    columns: &[Column],
    column: &str,
    value: &str,
) -> Result<Option<String>, String> {
    let partition: Vec<&Column> = columns
        .iter()
        .filter(|c| c.kind == "partition_key")
        .collect();
    let Some(c) = partition.iter().find(|c| c.name == column) else {
        return Ok(None);
    };
    let literal = match c.typ.as_str() {
        "text" | "varchar" | "ascii" => format!("'{}'", value.replace('\'', "''")),
        "int" | "bigint" | "smallint" | "tinyint" | "varint"
            if value.parse::<i128>().is_ok() =>
        {
            value.to_string()
        }
        "uuid" | "timeuuid"
            if value.len() == 36
                && value
                    .chars()
                    .all(|ch| ch.is_ascii_hexdigit() || ch == '-') =>
        {
            value.to_string()
        }
        other => {
            return Err(format!(
                "--tenant {column}={value}: the column is {other}, and \"{value}\" is not a value of it the copy can write (text, an integer or a UUID)"
            ))
        }
    };
    let filtering = if partition.len() > 1 {
        " ALLOW FILTERING"
    } else {
        ""
    };
    Ok(Some(format!(
        " WHERE {} = {literal}{filtering}",
        quote(column)
    )))
}

/// Copies the keyspace's tables; the report says what was copied and what
/// could not be kept exactly. Stops at the first failed read or write.
pub async fn copy(o: &CopyOptions) -> Result<CopyReport, String> {
    if o.to.is_empty() {
        return Err("no destination: give at least one --to".into());
    }
    let mut source = connect(o.from, o).await?;
    let tables = schema(&mut source, &o.keyspace).await?;
    if tables.is_empty() {
        return Err(format!(
            "keyspace {} has no tables on {} (or does not exist there)",
            o.keyspace, o.from
        ));
    }
    for t in &o.tables {
        if !tables.contains_key(t) {
            return Err(format!(
                "table {}.{t} does not exist on {}",
                o.keyspace, o.from
            ));
        }
    }
    let mut destinations = Vec::new();
    for addr in &o.to {
        destinations.push(Destination {
            addr: *addr,
            client: connect(*addr, o).await?,
            prepared: HashMap::new(),
        });
    }
    let mut report = CopyReport {
        keyspace: o.keyspace.clone(),
        tables: Vec::new(),
    };
    for (name, columns) in &tables {
        if !o.tables.is_empty() && !o.tables.contains(name) {
            continue;
        }
        let r = copy_table(o, &mut source, &mut destinations, name, columns).await?;
        report.tables.push(r);
    }
    Ok(report)
}

async fn copy_table(
    o: &CopyOptions,
    source: &mut Client,
    destinations: &mut [Destination],
    name: &str,
    columns: &[Column],
) -> Result<TableReport, String> {
    let full = format!("{}.{}", quote(&o.keyspace), quote(name));
    let mut r = TableReport {
        table: name.to_string(),
        ..Default::default()
    };
    if columns.iter().any(|c| c.typ == "counter") {
        r.notes.push("skipped: counter tables cannot be written with INSERT; copy them with their own tool (e.g. by adding each count)".into());
        return Ok(r);
    }
    let keys: Vec<&Column> = columns.iter().filter(|c| c.is_key()).collect();
    let cells: Vec<&Column> = columns.iter().filter(|c| !c.is_key()).collect();
    let mut selectors: Vec<String> = columns.iter().map(|c| quote(&c.name)).collect();
    for c in cells.iter().filter(|c| !c.multi_cell()) {
        selectors.push(format!("WRITETIME({})", quote(&c.name)));
        selectors.push(format!("TTL({})", quote(&c.name)));
    }
    if cells.iter().any(|c| c.multi_cell()) {
        r.notes.push("non-frozen collections have no WRITETIME: they take their row's newest write time and no TTL".into());
    }
    let mut select = format!("SELECT {} FROM {full}", selectors.join(", "));
    if let Some((column, value)) = &o.tenant {
        match tenant_restriction(columns, column, value)? {
            Some(restriction) => select.push_str(&restriction),
            None => {
                r.notes.push(format!("skipped: {column} is not in its partition key, so its rows are not one tenant's (a shared table)"));
                return Ok(r);
            }
        }
    }
    let mut paging_state = None;
    let mut untimed_rows = 0u64;
    // The write time of collections in rows without another cell.
    let copied_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    // Partitions whose static cells were written (they repeat on every row).
    let mut statics_done: std::collections::HashSet<Vec<Option<Bytes>>> = Default::default();
    loop {
        let page = source
            .query_with(
                &select,
                QueryParams {
                    consistency: consistency::ONE,
                    page_size: Some(o.page_size),
                    paging_state: paging_state.take(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| failed(&format!("reading {full} from {}", o.from), e))?;
        let ResultBody::Rows(rows) = page else {
            return Err(format!("reading {full}: the source answered without rows"));
        };
        for row in &rows.rows {
            r.rows += 1;
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
                values.push(RawValue::Bytes(Bytes::copy_from_slice(
                    &timestamp.to_be_bytes(),
                )));
                values.push(RawValue::Bytes(Bytes::copy_from_slice(&ttl.to_be_bytes())));
                for d in destinations.iter_mut() {
                    d.insert(&full, names.clone(), true, values.clone()).await?;
                }
                r.inserts += 1;
            }
            let whole_key = keys.iter().all(|k| cell(&rows, row, &k.name).is_some());
            let no_regular = cells
                .iter()
                .filter(|c| c.kind != "static")
                .all(|c| cell(&rows, row, &c.name).is_none());
            if whole_key && no_regular {
                // Only the primary key: its write time cannot be read.
                untimed_rows += 1;
                let names: Vec<String> = keys.iter().map(|k| k.name.clone()).collect();
                let values: Vec<RawValue> =
                    names.iter().map(|n| raw(cell(&rows, row, n))).collect();
                for d in destinations.iter_mut() {
                    d.insert(&full, names.clone(), false, values.clone())
                        .await?;
                }
                r.inserts += 1;
            }
        }
        match rows.metadata.paging_state {
            Some(p) => paging_state = Some(p),
            None => break,
        }
    }
    if untimed_rows > 0 {
        r.notes.push(format!(
            "{untimed_rows} row(s) with no regular cell were written at the time of the copy (a primary key has no WRITETIME)"
        ));
    }
    Ok(r)
}

fn raw(b: &Option<Bytes>) -> RawValue {
    match b {
        Some(b) => RawValue::Bytes(b.clone()),
        None => RawValue::Null,
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
    let int = |b: &Option<Bytes>| -> Option<i64> {
        let b = b.as_ref()?;
        match b.len() {
            8 => Some(i64::from_be_bytes(<[u8; 8]>::try_from(&b[..]).ok()?)),
            4 => Some(i32::from_be_bytes(<[u8; 4]>::try_from(&b[..]).ok()?) as i64),
            _ => None,
        }
    };
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
