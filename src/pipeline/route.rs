//! The pipeline's driver: QUERY, EXECUTE and BATCH through the stages
//! (`request`; what differs between them is in `request.rs`), system-table
//! reads answered from the topology, REGISTER, and the dispatch of every
//! request opcode (`handle`), where a request error becomes the client's
//! CQL ERROR.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::decide::plan;
use super::errors::{malformed, malformed_answer, unavailable, RequestError};
use super::join::join_counted as join;
use super::leg;
use super::leg::send_one;
use super::prepare::prepare;
use super::request::{One, Request};
use crate::config::WriteMode;
use crate::cql::StatementKind;
use crate::frame::{Frame, Opcode};
use crate::metrics::OpClass;
use crate::protocol::request::{read_register, Query};
use crate::protocol::response::ResultBody;
use crate::protocol::{consistency, ErrorFrame};
use crate::routing::decide::Statement;
use crate::routing::RoutePolicy;
use crate::session::{SessionState, Stamp};
use crate::topology::SystemTable;

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
        Opcode::Query | Opcode::Execute | Opcode::Batch => {
            request(state, &policy, op, frame, stamp).await
        }
        Opcode::Prepare => prepare(state, &policy, frame).await,
        Opcode::Register => register(state, &policy, frame).await,
        _ => Err(ErrorFrame::protocol("unexpected opcode").into()),
    };
    // The one place a request error becomes the client's CQL ERROR.
    r.unwrap_or_else(|e| {
        state.proxy.metrics().count_request_error(e.from.label());
        tracing::debug!(from = ?e.from, retry_safe = e.retry_safe, error = %e, cause = ?e.cause, "request refused");
        e.into_frame(state.version)
    })
}

/// One request through the stages: classify → resolve tenants and admit
/// → decide → rewrite → fan out → join → after (page pins, shadow
/// compare, USE). QUERY, EXECUTE and BATCH alike; what differs between
/// them is the `Request` classify makes.
async fn request(
    state: &Arc<SessionState>,
    policy: &RoutePolicy,
    op: Opcode,
    frame: Frame,
    stamp: &mut Stamp,
) -> Result<Frame, RequestError> {
    let mut r = Request::classify(state, op, &frame)?;
    let admitted = r.admit(state, stamp, &frame, policy)?;
    let class = stamp.op;
    let policy = admitted.policy(policy);
    let tenant = &admitted.tenant;
    if let Some((one, table)) = r.system_table() {
        return system_read(state, policy, one, tenant.as_deref(), table, frame).await;
    }
    let route = r.route(state, policy, tenant.as_deref(), &frame)?;
    let (template, retry) = r.rewrite(state, frame)?;
    let asynchronous = route.write_mode == WriteMode::AsyncSecondary && route.clusters.len() > 1;
    if asynchronous && r.kind() == StatementKind::Write {
        let journaled = super::mirror::write(
            state,
            &r,
            &route,
            &template,
            retry,
            class,
            tenant.as_deref(),
        )
        .await;
        if let Some(answer) = journaled {
            let answer = answer?;
            r.after(state, &route, &answer, None);
            return Ok(answer);
        }
    }
    let shadow = r.shadow(state, policy, &route, &template, tenant);
    let mut answers = futures::future::join_all(
        route
            .clusters
            .iter()
            .map(|cluster| leg::run(state, *cluster, r.leg(&template), retry, class)),
    )
    .await;
    if asynchronous && r.kind() == StatementKind::Use {
        // USE needs only the primary: a connection whose USE failed is
        // closed, and the next one opens in the session's keyspace.
        for (c, a) in route.clusters.iter().zip(&answers).skip(1) {
            if a.as_ref().map_or(true, |f| f.op() == Some(Opcode::Error)) {
                state.close_upstream(*c);
            }
        }
        answers.truncate(1);
        let answer = join(state, &route.clusters[..1], answers, r.kind())?;
        r.after(state, &route, &answer, shadow);
        return Ok(answer);
    }
    let answer = join(state, &route.clusters, answers, r.kind())?;
    r.after(state, &route, &answer, shadow);
    Ok(answer)
}

/// A read of a system table the proxy answers from its topology: the
/// primary's rows, rewritten.
async fn system_read(
    state: &Arc<SessionState>,
    policy: &RoutePolicy,
    one: &One,
    tenant: Option<&str>,
    table: SystemTable,
    frame: Frame,
) -> Result<Frame, RequestError> {
    let route = plan(
        state,
        policy,
        Statement {
            system_table: true,
            ..Statement::new(one.c.kind, tenant)
        },
    )?;
    let template = one.form.with_metadata(frame, state.version)?;
    let primary = route.primary();
    let answer = leg::run(state, primary, one.form.leg(&template), true, OpClass::Read).await;
    let answer = join(state, &[primary], vec![answer], StatementKind::Read)?;
    rewrite_system(state, policy, table, answer).await
}

/// The topology view of a system table read, from the primary's answer.
async fn rewrite_system(
    state: &Arc<SessionState>,
    policy: &RoutePolicy,
    table: SystemTable,
    answer: Frame,
) -> Result<Frame, RequestError> {
    // An ERROR (or another kind of RESULT) is the client's answer as is.
    if answer.op() != Some(Opcode::Result) {
        return Ok(answer);
    }
    let rows = match ResultBody::read(&answer.body, state.version) {
        Ok(ResultBody::Rows(rows)) => rows,
        Ok(_) => return Ok(answer),
        Err(e) => {
            let primary = state.proxy.routing().default_primary(policy);
            return Err(malformed_answer(state, primary, table.name(), e));
        }
    };
    let mut local = Vec::new();
    if table != SystemTable::Local && state.topology().instances.len() > 1 {
        let q = Query {
            text: "SELECT release_version, schema_version, cluster_name, partitioner FROM system.local WHERE key = 'local'"
                .into(),
            params: crate::protocol::request::QueryParams { consistency: consistency::ONE, ..Default::default() },
        };
        let f = Frame::request(state.version, 0, Opcode::Query, q.encode(state.version));
        if let Ok(a) = send_one(
            state,
            state.proxy.routing().default_primary(policy),
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
    let body = state.topology().rewrite(table, &rows, &local);
    Ok(Frame { body, ..answer })
}

async fn register(
    state: &Arc<SessionState>,
    policy: &RoutePolicy,
    frame: Frame,
) -> Result<Frame, RequestError> {
    let events = read_register(&frame.body).map_err(malformed)?;
    if events.iter().any(|e| e == "SCHEMA_CHANGE") {
        // Schema changes come from the primary; its topology and status
        // events are never passed on (drivers see only proxy instances).
        let primary = state.proxy.routing().default_primary(policy);
        let name = state.proxy.cluster(primary).name.as_str();
        let up = state
            .upstream(primary)
            .await
            .map_err(|e| unavailable(name, e))?;
        let mut body = BytesMut::new();
        crate::protocol::writer::put_string_list(&mut body, &["SCHEMA_CHANGE"]);
        let a = up
            .request_reserved(Opcode::Register, body.freeze(), Duration::from_secs(10))
            .await
            .map_err(|e| unavailable(name, e))?;
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
