//! A difference read again by its key, and mended on the target: the
//! origin's cells written with their write times and TTLs, a cell the
//! origin lacks deleted at the target cell's own time, an extra row
//! deleted at its newest write time.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::plan::{Cell, Entry, Key, Plan};
use super::Side;
use crate::protocol::reader::RawValue;
use crate::protocol::response::ResultBody;
use crate::scan::{bigint, quote, raw};

/// A key read again on one side: its entry, or None when it is gone.
pub(super) async fn read_key(
    plan: &Plan,
    key: &Key,
    side: &mut Side,
) -> Result<Option<Entry>, String> {
    let (is_static, values) = (key.1, &key.2);
    let names = &plan.keys[..values.len()];
    let wheres: Vec<String> = names
        .iter()
        .map(|k| format!("{} = ?", quote(&k.name)))
        .collect();
    let q = format!(
        "{} WHERE {}{}",
        plan.select,
        wheres.join(" AND "),
        if is_static { " LIMIT 1" } else { "" }
    );
    let ResultBody::Rows(rows) = side.execute(&q, values.iter().map(raw).collect()).await? else {
        return Err(format!("{}: a SELECT answered without rows", side.name));
    };
    let mut entries = Vec::new();
    for row in &rows.rows {
        plan.entries(row, &mut entries);
    }
    Ok(entries
        .into_iter()
        .find(|(k, _)| k.1 == is_static && &k.2 == values)
        .map(|(_, e)| e))
}

pub(super) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// ` WHERE k1 = ? AND ...` of a key, with its values.
pub(super) fn key_where(plan: &Plan, key: &Key) -> (String, Vec<RawValue>) {
    let w: Vec<String> = plan.keys[..key.2.len()]
        .iter()
        .map(|k| format!("{} = ?", quote(&k.name)))
        .collect();
    (
        format!(" WHERE {}", w.join(" AND ")),
        key.2.iter().map(raw).collect(),
    )
}

/// Writes the origin's cells the target lacks or holds older, with the
/// origin's write times and TTLs; deletes, at the target cell's own write
/// time, a cell the origin lacks. Why not, when a cell could not be
/// written (the target's is newer) or there was nothing to write.
pub(super) async fn repair(
    plan: &Plan,
    key: &Key,
    origin: &Entry,
    target: Option<&Entry>,
    side: &mut Side,
) -> Result<Option<String>, String> {
    let empty = Cell::default();
    let newest = origin.iter().filter_map(|c| c.writetime).max();
    // (write time, TTL) -> the columns written together.
    let mut groups: BTreeMap<(i64, i64), Vec<usize>> = BTreeMap::new();
    let mut deletes = Vec::new();
    let mut newer_on_target = false;
    for (i, (c, a)) in plan.cells.iter().zip(origin).enumerate() {
        if (c.column.kind == "static") != key.1 {
            continue;
        }
        let b = target.map(|t| &t[i]).unwrap_or(&empty);
        if a == b {
            continue;
        }
        match (&a.value, &b.value) {
            (Some(_), _) => {
                if let (Some(wa), Some(wb)) = (a.writetime, b.writetime) {
                    if wb > wa {
                        newer_on_target = true;
                        continue;
                    }
                }
                let wt = a.writetime.or(newest).unwrap_or_else(now_micros);
                groups.entry((wt, a.ttl.unwrap_or(0))).or_default().push(i);
            }
            (None, Some(_)) => match b.writetime {
                Some(wb) => deletes.push((i, wb)),
                // A collection's cells carry no single write time.
                None => newer_on_target = true,
            },
            (None, None) => {}
        }
    }
    let key_names: Vec<String> = plan.keys[..key.2.len()]
        .iter()
        .map(|k| quote(&k.name))
        .collect();
    let mut wrote = false;
    if groups.is_empty() && deletes.is_empty() && target.is_none() {
        // A row holding only its key: its write time cannot be read.
        let q = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            plan.full,
            key_names.join(", "),
            vec!["?"; key_names.len()].join(", ")
        );
        side.execute(&q, key.2.iter().map(raw).collect()).await?;
        return Ok(None);
    }
    for ((wt, ttl), cols) in groups {
        let mut names = key_names.clone();
        names.extend(cols.iter().map(|&i| quote(&plan.cells[i].column.name)));
        let mut values: Vec<RawValue> = key.2.iter().map(raw).collect();
        values.extend(cols.iter().map(|&i| raw(&origin[i].value)));
        values.push(bigint(wt));
        values.push(RawValue::Bytes(Bytes::copy_from_slice(
            &(ttl as i32).to_be_bytes(),
        )));
        let q = format!(
            "INSERT INTO {} ({}) VALUES ({}) USING TIMESTAMP ? AND TTL ?",
            plan.full,
            names.join(", "),
            vec!["?"; names.len()].join(", ")
        );
        side.execute(&q, values).await?;
        wrote = true;
    }
    for (i, wt) in deletes {
        let (w, mut values) = key_where(plan, key);
        let q = format!(
            "DELETE {} FROM {} USING TIMESTAMP ?{w}",
            quote(&plan.cells[i].column.name),
            plan.full
        );
        values.insert(0, bigint(wt));
        side.execute(&q, values).await?;
        wrote = true;
    }
    Ok(match (wrote, newer_on_target) {
        (_, true) => Some("the target's cell is newer (repair never writes over it)".into()),
        (false, false) => Some("nothing to write".into()),
        (true, false) => None,
    })
}

/// Deletes a row (or a partition's static cells) only the target holds,
/// at the newest write time read in it: a later write survives.
pub(super) async fn delete_extra(
    plan: &Plan,
    key: &Key,
    target: &Entry,
    side: &mut Side,
) -> Result<(), String> {
    let at = target
        .iter()
        .filter_map(|c| c.writetime)
        .max()
        .unwrap_or_else(now_micros);
    let (w, mut values) = key_where(plan, key);
    values.insert(0, bigint(at));
    let what = if key.1 {
        plan.cells
            .iter()
            .filter(|c| c.column.kind == "static")
            .map(|c| quote(&c.column.name))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        String::new()
    };
    let q = format!("DELETE {what} FROM {} USING TIMESTAMP ?{w}", plan.full);
    side.execute(&q, values).await?;
    Ok(())
}
