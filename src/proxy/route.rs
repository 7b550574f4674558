//! What happens to one request: classify it (cached; EXECUTE inherits its
//! PREPARE's classification), pick the clusters, rewrite what each needs
//! (the proxy's write timestamp, server-side function values), and hand it
//! to `send` (and `prepare` for prepared ids): a write is answered when
//! every cluster has answered, and a failure on any of them is what the
//! client gets.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::batch::batch;
use super::context::{admit_statement, bound_values, continues, idempotent};
use super::decide::plan;
use super::paging::{continuation_side, pin_pages};
use super::prepare::{execute_on, prepare};
use super::rewrite::{bind_hidden, literal_for, now_micros, replacing, TimestampPlan};
use super::send::{
    error_frame, join, malformed, malformed_answer, send_one, send_raw, unavailable,
};
use super::session::{SessionState, Stamp};
use super::shadow::{shadowing, start_shadow};
use super::topology::SystemTable;
use crate::cql::{Classification, StatementKind};
use crate::frame::{Frame, Opcode};
use crate::metrics::OpClass;
use crate::protocol::bound::BoundValues;
use crate::protocol::request::{read_register, Execute, Query};
use crate::protocol::response::ResultBody;
use crate::protocol::{consistency, ErrorFrame};
use crate::routing::decide::{Route, Statement};
use crate::routing::RoutePolicy;

/// Handles one request; `stamp` learns what the request turned out to be
/// once that is known.
pub async fn handle(
    state: &Arc<SessionState>,
    op: Opcode,
    frame: Frame,
    stamp: &mut Stamp,
) -> Frame {
    // One snapshot for the whole request, whatever changes meanwhile.
    let policy = state.proxy.policy();
    let r = match op {
        Opcode::Query => query(state, &policy, frame, stamp).await,
        Opcode::Prepare => prepare(state, &policy, frame).await,
        Opcode::Execute => execute(state, &policy, frame, stamp).await,
        Opcode::Batch => batch(state, &policy, frame, stamp).await,
        Opcode::Register => register(state, &policy, frame).await,
        _ => Err(ErrorFrame::protocol("unexpected opcode")),
    };
    r.unwrap_or_else(|e| error_frame(state, e))
}

/// The route of a QUERY or EXECUTE, looked up once: a continuation page
/// goes to the cluster that issued its paging state (`paging_state`
/// decodes it, only for such pages); anything else by its tenant's route.
fn request_route(
    state: &SessionState,
    policy: &RoutePolicy,
    c: &Classification,
    tenant: Option<&str>,
    flags: u32,
    paging_state: impl FnOnce() -> Option<Bytes>,
) -> Result<Route, ErrorFrame> {
    let s = Statement {
        continues_on: continuation_side(state, c, continues(flags), paging_state),
        ..Statement::new(c.kind, tenant)
    };
    plan(state, policy, s)
}

async fn query(
    state: &Arc<SessionState>,
    policy: &RoutePolicy,
    frame: Frame,
    stamp: &mut Stamp,
) -> Result<Frame, ErrorFrame> {
    let text = Query::read_text(&frame.body).map_err(malformed)?;
    let session_ks = state.keyspace();
    let c = state
        .proxy
        .classifier
        .classify(text, session_ks.as_deref())
        .map_err(|e| ErrorFrame::syntax(e.to_string()))?;
    let bound = bound_values(state, &c.tenant_keys, &[], || {
        BoundValues::of_query(&frame.body, state.version)
    })?;
    let admitted = admit_statement(
        state,
        stamp,
        &c,
        &c.tenant_keys,
        session_ks.as_deref(),
        bound.as_ref(),
        policy,
    )?;
    let class = stamp.op;
    let policy = admitted.policy(policy);
    let tenant = &admitted.tenant;
    if let Some(table) = system_table(&c, session_ks.as_deref()) {
        return system_read(state, policy, table, &frame).await;
    }
    let flags = Query::read_flags(&frame.body, state.version).map_err(malformed)?;
    let route = request_route(state, policy, &c, tenant.as_deref(), flags, || {
        Query::read(&frame.body, state.version)
            .ok()?
            .params
            .paging_state
    })?;
    let plan = TimestampPlan::plan(state, &c, flags);
    let body = if plan.add || replacing(state, &c) {
        let mut q = Query::read(&frame.body, state.version).map_err(malformed)?;
        if plan.add {
            q.params.timestamp = Some(now_micros());
        }
        if replacing(state, &c) {
            q.text = c.replace_functions(&q.text, literal_for);
        }
        q.encode(state.version)
    } else {
        frame.body.clone()
    };
    let has_timestamp = plan.has_timestamp;
    let f = Frame { body, ..frame };
    let retry = idempotent(&c, has_timestamp);
    let shadow = shadowing(state, policy, &route, &c, continues(flags)).and_then(|secondary| {
        let key: String = Query::read_text(&f.body)
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        let (state2, f2) = (state.clone(), f.clone());
        start_shadow(
            state,
            &c,
            session_ks.as_deref(),
            tenant.clone(),
            key,
            async move {
                send_raw(&state2, secondary, f2, true, OpClass::Read)
                    .await
                    .ok()
            },
        )
    });
    let answers = futures::future::join_all(
        route
            .clusters
            .iter()
            .map(|cluster| send_raw(state, *cluster, f.clone(), retry, class)),
    )
    .await;
    let answer = join(state, &route.clusters, answers, c.kind)?;
    pin_pages(state, &c, route.primary(), &answer);
    if let Some(tx) = shadow {
        let _ = tx.send(answer.clone());
    }
    if c.kind == StatementKind::Use && answer.op() == Some(Opcode::Result) {
        if let Ok(ResultBody::SetKeyspace(ks)) = ResultBody::read(&answer.body, state.version) {
            state.set_keyspace(ks);
        }
    }
    Ok(answer)
}

/// `system.local` / `system.peers(_v2)`: the primary answers, topology rewrites.
pub(super) async fn system_read(
    state: &Arc<SessionState>,
    policy: &RoutePolicy,
    table: SystemTable,
    frame: &Frame,
) -> Result<Frame, ErrorFrame> {
    let answer = send_one(
        state,
        state.proxy.default_primary(policy),
        frame.clone(),
        StatementKind::Read,
        OpClass::Read,
    )
    .await?;
    rewrite_system(state, policy, table, answer).await
}

/// The topology view of a system table read, from the primary's answer.
async fn rewrite_system(
    state: &Arc<SessionState>,
    policy: &RoutePolicy,
    table: SystemTable,
    answer: Frame,
) -> Result<Frame, ErrorFrame> {
    // An ERROR (or another kind of RESULT) is the client's answer as is.
    if answer.op() != Some(Opcode::Result) {
        return Ok(answer);
    }
    let rows = match ResultBody::read(&answer.body, state.version) {
        Ok(ResultBody::Rows(rows)) => rows,
        Ok(_) => return Ok(answer),
        Err(e) => {
            let primary = state.proxy.default_primary(policy);
            return Err(malformed_answer(state, primary, table.name(), e));
        }
    };
    let mut local = Vec::new();
    if table != SystemTable::Local && state.proxy.topology.instances.len() > 1 {
        let q = Query {
            text: "SELECT release_version, schema_version, cluster_name, partitioner FROM system.local WHERE key = 'local'"
                .into(),
            params: crate::protocol::request::QueryParams { consistency: consistency::ONE, ..Default::default() },
        };
        let f = Frame::request(state.version, 0, Opcode::Query, q.encode(state.version));
        if let Ok(a) = send_one(
            state,
            state.proxy.default_primary(policy),
            f,
            StatementKind::Read,
            OpClass::Read,
        )
        .await
        {
            if let Ok(ResultBody::Rows(r)) = ResultBody::read(&a.body, state.version) {
                if let Some(row) = r.rows.first() {
                    local = r
                        .metadata
                        .columns
                        .iter()
                        .map(|c| c.name.clone())
                        .zip(row.iter().cloned())
                        .collect();
                }
            }
        }
    }
    let body = state.proxy.topology.rewrite(table, &rows, &local);
    Ok(Frame { body, ..answer })
}

/// The system table a statement reads, when topology answers it.
fn system_table(c: &Classification, keyspace: Option<&str>) -> Option<SystemTable> {
    if c.kind != StatementKind::Read {
        return None;
    }
    let t = c.tables.first()?;
    SystemTable::of(t.keyspace.as_deref().or(keyspace), &t.table)
}

async fn execute(
    state: &Arc<SessionState>,
    policy: &RoutePolicy,
    frame: Frame,
    stamp: &mut Stamp,
) -> Result<Frame, ErrorFrame> {
    let client_id = Execute::read_id(&frame.body).map_err(malformed)?;
    let Some(entry) = state.proxy.prepared.get(&client_id) else {
        state
            .proxy
            .metrics
            .prepared_misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(ErrorFrame::unprepared(client_id));
    };
    let c = entry.classification.clone();
    let (keys, types) = entry.tenant_keys();
    let bound = bound_values(state, keys, types, || {
        BoundValues::of_execute(&frame.body, state.version)
    })?;
    let admitted = admit_statement(
        state,
        stamp,
        &c,
        keys,
        entry.keyspace.as_deref(),
        bound.as_ref(),
        policy,
    )?;
    let class = stamp.op;
    let policy = admitted.policy(policy);
    let tenant = &admitted.tenant;
    if let Some(table) = system_table(&c, entry.keyspace.as_deref()) {
        // Drivers prepare their topology queries too (the scylla crate does).
        // The rewrite needs column names, so full metadata is asked for.
        let mut e = Execute::read(&frame.body, state.version).map_err(malformed)?;
        e.params.flags &= !crate::protocol::request::query_flags::SKIP_METADATA;
        let template = Frame {
            body: e.encode(state.version),
            ..frame
        };
        let primary = state.proxy.default_primary(policy);
        let answer = execute_on(state, &entry, primary, &template, true, OpClass::Read).await;
        let answer = join(state, &[primary], vec![answer], StatementKind::Read)?;
        return rewrite_system(state, policy, table, answer).await;
    }
    let flags = Execute::read_flags(&frame.body, state.version).map_err(malformed)?;
    let route = request_route(state, policy, &c, tenant.as_deref(), flags, || {
        Execute::read(&frame.body, state.version)
            .ok()?
            .params
            .paging_state
    })?;
    let plan = TimestampPlan::plan(state, &c, flags);
    let body = if plan.add || !entry.hidden.is_empty() {
        let mut e = Execute::read(&frame.body, state.version).map_err(malformed)?;
        if plan.add {
            e.params.timestamp = Some(now_micros());
        }
        bind_hidden(&entry, &mut e.params.values, e.params.names.is_some())?;
        e.encode(state.version)
    } else {
        frame.body.clone()
    };
    let has_timestamp = plan.has_timestamp;
    let template = Frame { body, ..frame };
    let retry = idempotent(&c, has_timestamp);
    let shadow = shadowing(state, policy, &route, &c, continues(flags)).and_then(|secondary| {
        let key = Execute::read(&template.body, state.version)
            .map(|e| super::shadow::render_values(&e.params.values))
            .unwrap_or_default();
        let (state2, entry2, t2) = (state.clone(), entry.clone(), template.clone());
        start_shadow(
            state,
            &c,
            entry.keyspace.as_deref(),
            tenant.clone(),
            key,
            async move {
                execute_on(&state2, &entry2, secondary, &t2, true, OpClass::Read)
                    .await
                    .ok()
            },
        )
    });
    let answers = futures::future::join_all(
        route
            .clusters
            .iter()
            .map(|cluster| execute_on(state, &entry, *cluster, &template, retry, class)),
    )
    .await;
    let answer = join(state, &route.clusters, answers, c.kind)?;
    pin_pages(state, &c, route.primary(), &answer);
    if let Some(tx) = shadow {
        let _ = tx.send(answer.clone());
    }
    Ok(answer)
}

async fn register(
    state: &Arc<SessionState>,
    policy: &RoutePolicy,
    frame: Frame,
) -> Result<Frame, ErrorFrame> {
    let events = read_register(&frame.body).map_err(malformed)?;
    if events.iter().any(|e| e == "SCHEMA_CHANGE") {
        // Schema changes come from the primary; its topology and status
        // events are never passed on (drivers see only proxy instances).
        let up = state
            .upstream(state.proxy.default_primary(policy))
            .await
            .map_err(unavailable)?;
        let mut body = BytesMut::new();
        crate::protocol::writer::put_string_list(&mut body, &["SCHEMA_CHANGE"]);
        let a = up
            .request_reserved(Opcode::Register, body.freeze(), Duration::from_secs(10))
            .await
            .map_err(unavailable)?;
        if a.op() != Some(Opcode::Ready) {
            return Ok(a);
        }
        let mut rx = up.events();
        let out = state.out.clone();
        let close = state.close.clone();
        state.tasks.spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = close.cancelled() => return,
                    ev = rx.recv() => ev,
                };
                match ev {
                    Ok(f)
                        if crate::protocol::response::read_event_type(&f.body)
                            .is_ok_and(|t| t == "SCHEMA_CHANGE") =>
                    {
                        if out.send(f).is_err() {
                            return;
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
    Ok(Frame::response(
        state.version,
        frame.stream,
        Opcode::Ready,
        Bytes::new(),
    ))
}
