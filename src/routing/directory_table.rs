//! Directory entries polled from a CQL table (`[tenants.table]`): every
//! `poll_every` the table is read in full from the named cluster (at
//! LOCAL_QUORUM, in pages); a changed set of rows is validated like any
//! other entry and put in force with the same fence, an invalid one is
//! refused with its problems logged and the entries last read stay. A
//! cluster that cannot be read leaves the entries as they were.
//!
//! ```cql
//! CREATE TABLE cutover.directory (
//!     tenant text PRIMARY KEY, shard text, phase text, status text,
//!     write_mode text);
//! ```
//!
//! Columns are found by name; `write_mode` may be left out of the table.

use std::sync::Arc;

use serde::de::IntoDeserializer;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Routing;
use crate::client::Client;
use crate::config::{DirectoryTable, Phase, TenantEntry, TenantStatus, WriteMode};
use crate::protocol::consistency;
use crate::protocol::request::QueryParams;
use crate::protocol::response::ResultBody;
use crate::upstream::Cluster;

const PAGE: i32 = 5000;

/// Reads the table once from `cluster` (the one `table` names), before the
/// proxy takes clients, then polls until `stop`.
pub async fn start(
    routing: Arc<Routing>,
    cluster: Arc<Cluster>,
    table: DirectoryTable,
    tasks: &TaskTracker,
    stop: CancellationToken,
) {
    let mut conn: Option<Client> = None;
    let mut failing = false;
    once(&routing, &cluster, &table, &mut conn, &mut failing).await;
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(table.poll_every.0) => {}
            }
            once(&routing, &cluster, &table, &mut conn, &mut failing).await;
        }
    });
}

/// One poll. `failing` keeps a lasting failure to one log line.
async fn once(
    routing: &Arc<Routing>,
    cluster: &Cluster,
    table: &DirectoryTable,
    conn: &mut Option<Client>,
    failing: &mut bool,
) {
    let timeout = cluster.config.request_timeout.0;
    let outcome = tokio::time::timeout(timeout * 4, poll(cluster, table, conn)).await;
    let done = || {
        routing
            .directory_table()
            .polls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    };
    let status = routing.directory_table();
    let error = match outcome {
        Ok(Ok(entries)) if status.refused.lock().as_ref() == Some(&entries) => {
            done();
            return;
        }
        Ok(Ok(entries)) => match apply(routing, table, entries.clone()).await {
            Ok(()) => {
                *status.refused.lock() = None;
                *status.error.lock() = None;
                done();
                if *failing {
                    tracing::info!(table = %table.name, "the directory table is in force again");
                    *failing = false;
                }
                return;
            }
            Err(problems) => {
                *status.refused.lock() = Some(entries);
                format!(
                    "rows refused: {}",
                    crate::config::messages(&problems).join("; ")
                )
            }
        },
        Ok(Err(e)) => {
            *conn = None;
            e
        }
        Err(_) => {
            *conn = None;
            "timed out".to_string()
        }
    };
    *status.error.lock() = Some(error.clone());
    done();
    if !*failing {
        tracing::warn!(table = %table.name, cluster = %table.cluster, %error, "the directory table is not applied; the entries last read from it stay in force");
        *failing = true;
    }
}

async fn apply(
    routing: &Arc<Routing>,
    table: &DirectoryTable,
    entries: Vec<TenantEntry>,
) -> Result<(), Vec<crate::config::Problem>> {
    let before = routing.policy();
    let r = routing.clone();
    let (policy, changed) =
        tokio::task::spawn_blocking(move || r.store().set_table_entries(entries))
            .await
            .map_err(|e| vec![e.to_string().into()])??;
    if changed {
        tracing::info!(table = %table.name, version = policy.version, "the directory table changed the tenant entries");
        routing.fence_after(&before).await;
    }
    Ok(())
}

/// Every row of the table, as entries; an unreadable row is an error that
/// names it.
async fn poll(
    cluster: &Cluster,
    table: &DirectoryTable,
    conn: &mut Option<Client>,
) -> Result<Vec<TenantEntry>, String> {
    if conn.is_none() {
        *conn = Some(connect(cluster).await?);
    }
    let c = conn.as_mut().expect("connected above");
    let text = format!("SELECT * FROM {}", table.name);
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    let mut paging_state = None;
    loop {
        let page = c
            .query_with(
                &text,
                QueryParams {
                    consistency: consistency::LOCAL_QUORUM,
                    page_size: Some(PAGE),
                    paging_state: paging_state.take(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        let ResultBody::Rows(rows) = page else {
            return Err(format!("{text} answered without rows"));
        };
        let column = |name: &str| rows.metadata.columns.iter().position(|c| c.name == name);
        let at = ["tenant", "shard", "phase", "status", "write_mode"].map(column);
        if at[0].is_none() {
            return Err(format!("{} has no column `tenant`", table.name));
        }
        for row in &rows.rows {
            let text_at = |i: Option<usize>| {
                row.get(i?)
                    .cloned()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            };
            let fields = at.map(text_at);
            match entry(fields) {
                Ok(e) => entries.push(e),
                Err(p) => problems.push(p),
            }
        }
        match rows.metadata.paging_state {
            Some(s) => paging_state = Some(s),
            None => break,
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems.join("; "))
    }
}

async fn connect(cluster: &Cluster) -> Result<Client, String> {
    let cfg = &cluster.config;
    let credentials = cfg.username.as_deref().map(|u| {
        (
            u,
            cfg.password
                .as_ref()
                .map(|p| p.expose())
                .unwrap_or_default(),
        )
    });
    let mut last = String::from("no node to connect to");
    for node in cluster.candidates() {
        match tokio::time::timeout(
            cfg.connect_timeout.0,
            Client::connect(node, 4, None, credentials),
        )
        .await
        {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(e)) => last = format!("{node}: {e}"),
            Err(_) => last = format!("{node}: connect timed out"),
        }
    }
    Err(last)
}

/// One row (tenant, shard, phase, status, write mode) as an entry: a null
/// shard, phase or write mode follows the default route, a null status is
/// read-write.
fn entry(
    [tenant, shard, phase, status, write_mode]: [Option<String>; 5],
) -> Result<TenantEntry, String> {
    let tenant = tenant.ok_or("a row without a tenant")?;
    let given = |v: Option<String>| v.filter(|s| !s.is_empty());
    let phase = match given(phase) {
        None => None,
        Some(p) => Some(Phase::deserialize(p.as_str().into_deserializer()).map_err(
            |e: serde::de::value::Error| format!("tenant \"{tenant}\": phase \"{p}\": {e}"),
        )?),
    };
    let status = match given(status) {
        None => TenantStatus::ReadWrite,
        Some(s) => TenantStatus::deserialize(s.as_str().into_deserializer()).map_err(
            |e: serde::de::value::Error| format!("tenant \"{tenant}\": status \"{s}\": {e}"),
        )?,
    };
    let write_mode = match given(write_mode) {
        None => None,
        Some(m) => Some(
            WriteMode::deserialize(m.as_str().into_deserializer()).map_err(
                |e: serde::de::value::Error| {
                    format!("tenant \"{tenant}\": write_mode \"{m}\": {e}")
                },
            )?,
        ),
    };
    Ok(TenantEntry {
        tenant,
        shard: given(shard),
        phase,
        status,
        write_mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn rows_become_entries_or_name_their_problem() {
        let e = entry([
            s("wayne"),
            s("dedicated"),
            s("target-primary"),
            s("read-only"),
            s("async-secondary"),
        ])
        .unwrap();
        assert_eq!(e.shard.as_deref(), Some("dedicated"));
        assert_eq!(e.phase, Some(Phase::TargetPrimary));
        assert_eq!(e.status, TenantStatus::ReadOnly);
        assert_eq!(e.write_mode, Some(WriteMode::AsyncSecondary));
        let e = entry([s("stark"), None, None, None, None]).unwrap();
        assert_eq!(
            (e.shard, e.phase, e.status, e.write_mode),
            (None, None, TenantStatus::ReadWrite, None)
        );
        let bad = entry([s("x"), None, s("sideways"), None, None]).unwrap_err();
        assert!(bad.contains("tenant \"x\": phase \"sideways\""), "{bad}");
        let bad = entry([s("x"), None, None, s("closed"), None]).unwrap_err();
        assert!(bad.contains("status \"closed\""), "{bad}");
        let bad = entry([s("x"), None, None, None, s("later")]).unwrap_err();
        assert!(bad.contains("write_mode \"later\""), "{bad}");
        assert!(entry([None, None, None, None, None]).is_err());
    }
}
