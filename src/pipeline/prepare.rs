//! PREPARE on every cluster a phase may use, each cluster's own id kept
//! in the prepared map, and EXECUTE with that id: an UNPREPARED from a
//! cluster is answered by preparing again, so the client never sees it.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::decide::prepare_clusters;
use super::errors::{error_frame, malformed, malformed_answer, RequestError};
use super::leg::send_one;
use super::prepared::{PreparedEntry, PreparedMap};
use super::rewrite::replacing;
use crate::cql::StatementKind;
use crate::frame::{Frame, Opcode};
use crate::metrics::OpClass;
use crate::protocol::reader::BodyReader;
use crate::protocol::request::Prepare;
use crate::protocol::response::{result_kind, ResultBody};
use crate::protocol::writer::put_short_bytes;
use crate::protocol::ErrorFrame;
use crate::routing::keyed::prepared_keys;
use crate::routing::ClusterId;
use crate::routing::RoutePolicy;
use crate::session::SessionState;

pub(super) async fn prepare(
    state: &Arc<SessionState>,
    policy: &RoutePolicy,
    frame: Frame,
) -> Result<Frame, RequestError> {
    let p = Prepare::read(&frame.body, state.version).map_err(malformed)?;
    let keyspace = p.keyspace.clone().or_else(|| state.keyspace());
    let c = state
        .proxy
        .statements()
        .classifier()
        .classify(&p.text, keyspace.as_deref())
        .map_err(|e| ErrorFrame::syntax(e.to_string()))?;
    let client_id = PreparedMap::client_id(keyspace.as_deref(), &p.text);
    let (cluster_text, hidden) = if replacing(state, &c) && !c.named_markers {
        (
            c.replace_functions(&p.text, |_| "?".into()),
            c.hidden_markers(),
        )
    } else {
        (p.text.clone(), Vec::new())
    };
    let entry = state.proxy.statements().prepared().insert(
        client_id.clone(),
        &p.text,
        keyspace.as_deref(),
        c.clone(),
        cluster_text,
        hidden,
    );
    // Prepared on every cluster the tenant's phase may send it to; a
    // cluster it meets later (a phase or shard change) prepares it then.
    // A tenant bound at EXECUTE is not known yet: the default route's.
    let named =
        state
            .proxy
            .routing()
            .tenants()
            .resolve(&c, &c.tenant_keys, keyspace.as_deref(), None);
    let tenant = named.first.map(|t| t.name);
    let clusters = prepare_clusters(&state.proxy, policy, tenant.as_deref());
    let primary = clusters[0];
    // In async-secondary only the primary must prepare: the secondary
    // prepares when it first runs the statement.
    let primary_only =
        policy.for_tenant(tenant.as_deref()).write_mode == crate::config::WriteMode::AsyncSecondary;
    let clusters = if primary_only {
        for c in clusters.iter().skip(1).copied() {
            let (st, e, f) = (state.clone(), entry.clone(), frame.clone());
            tokio::spawn(async move {
                if let Err(err) = prepare_on(&st, &e, c, &f).await {
                    tracing::debug!(cluster = %st.proxy.cluster(c).name, error = %err, "PREPARE on the secondary failed; it prepares on first use");
                }
            });
        }
        vec![primary]
    } else {
        clusters
    };
    let answers = futures::future::join_all(
        clusters
            .iter()
            .map(|cluster| prepare_on(state, &entry, *cluster, &frame)),
    )
    .await;
    let mut primary_answer = None;
    for (cluster, a) in clusters.iter().zip(answers) {
        let a = a?;
        if a.op() == Some(Opcode::Error) {
            return Ok(a);
        }
        if *cluster == primary {
            primary_answer = Some(a);
        }
    }
    let a = primary_answer.expect("the primary is among the clusters");
    let body = if entry.hidden.is_empty() {
        with_prepared_id(&a.body, &client_id)?
    } else {
        without_hidden_markers(&a.body, &entry.hidden, &client_id, state.version)?
    };
    learn_tenant_markers(state, &entry, &body);
    Ok(Frame { body, ..a })
}

/// With tenants keyed by a column: the statement's tenant markers, checked
/// against the PREPARED metadata the client gets.
fn learn_tenant_markers(state: &SessionState, entry: &PreparedEntry, body: &Bytes) {
    let Some(column) = state.proxy.routing().tenants().column() else {
        return;
    };
    if entry.keys.get().is_some() {
        return;
    }
    let Ok(ResultBody::Prepared(p)) = ResultBody::read(body, state.version) else {
        return;
    };
    let (keys, keyed) = prepared_keys(&entry.classification, &p, column, entry.keyspace.as_deref());
    for (ks, table, typ) in keyed {
        state
            .proxy
            .routing()
            .tenants()
            .keyed
            .learn_prepared(&ks, &table, &typ);
    }
    let _ = entry.keys.set(keys);
}

/// PREPARE on one cluster, remembering that cluster's id.
pub(super) async fn prepare_on(
    state: &Arc<SessionState>,
    entry: &PreparedEntry,
    cluster: ClusterId,
    frame: &Frame,
) -> Result<Frame, RequestError> {
    let body = Prepare {
        text: entry.cluster_text.clone(),
        keyspace: if state.version >= 5 {
            entry.keyspace.clone()
        } else {
            None
        },
    }
    .encode(state.version);
    let f = Frame {
        body,
        ..frame.clone()
    };
    // Preparing twice is harmless, so it may be resent like a read.
    let a = send_one(state, cluster, f, StatementKind::Read, OpClass::Other).await?;
    if a.op() == Some(Opcode::Result) {
        // Read in full: its metadata reaches the client and the proxy (bind
        // markers, partition-key indexes), so it must hold together.
        match ResultBody::read(&a.body, state.version) {
            Ok(ResultBody::Prepared(p)) => entry.set_id(cluster, p.id),
            Ok(_) => {
                let e = "a RESULT that is not PREPARED";
                return Err(malformed_answer(state, cluster, "PREPARE", e));
            }
            Err(e) => return Err(malformed_answer(state, cluster, "PREPARE", e)),
        }
    }
    Ok(a)
}

/// Prepares `entry` on `cluster` again; its new id, or the error to answer.
pub(super) async fn reprepare(
    state: &Arc<SessionState>,
    entry: &PreparedEntry,
    cluster: ClusterId,
) -> Result<Bytes, Frame> {
    state
        .proxy
        .cluster(cluster)
        .metrics
        .reprepares
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let prep = Frame::request(state.version, 0, Opcode::Prepare, Bytes::new());
    match prepare_on(state, entry, cluster, &prep).await {
        Ok(a) if a.op() == Some(Opcode::Result) => {}
        Ok(a) => return Err(a),
        Err(e) => return Err(error_frame(state, e)),
    }
    entry.id_on(cluster).ok_or_else(|| {
        error_frame(
            state,
            ErrorFrame::server("cutover: could not prepare the statement again"),
        )
    })
}

/// A PREPARED body with its id replaced by the client-facing one.
fn with_prepared_id(body: &Bytes, id: &Bytes) -> Result<Bytes, RequestError> {
    let mut r = BodyReader::new(body);
    r.int().map_err(malformed)?;
    r.short_bytes().map_err(malformed)?;
    let rest = r.rest();
    let mut b = BytesMut::with_capacity(body.len() + id.len());
    b.put_i32(result_kind::PREPARED);
    put_short_bytes(&mut b, id);
    b.put_slice(&rest);
    Ok(b.freeze())
}

/// A PREPARED body as the client must see it: the hidden markers' bind
/// columns removed, partition-key indexes renumbered, the client's id.
fn without_hidden_markers(
    body: &Bytes,
    hidden: &[(usize, String)],
    id: &Bytes,
    version: u8,
) -> Result<Bytes, RequestError> {
    let Ok(ResultBody::Prepared(mut p)) = ResultBody::read(body, version) else {
        return Err(ErrorFrame::server(
            "cutover: a cluster answered PREPARE with something else than PREPARED",
        )
        .into());
    };
    let is_hidden = |i: usize| hidden.iter().any(|(h, _)| *h == i);
    p.bind.columns = p
        .bind
        .columns
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !is_hidden(*i))
        .map(|(_, c)| c)
        .collect();
    p.bind.column_count = p.bind.columns.len();
    if p.pk_indexes.iter().any(|i| is_hidden(*i as usize)) {
        // A partition key computed by the proxy: drivers cannot route by it.
        p.pk_indexes.clear();
    } else {
        for i in p.pk_indexes.iter_mut() {
            *i -= hidden.iter().filter(|(h, _)| *h < *i as usize).count() as u16;
        }
    }
    p.id = id.clone();
    Ok(crate::protocol::response::prepared(&p, version))
}

/// An EXECUTE body for another prepared id.
pub(super) fn with_execute_id(body: &Bytes, id: &Bytes) -> Result<Bytes, RequestError> {
    crate::protocol::request::Execute::with_id(body, id).map_err(malformed)
}
