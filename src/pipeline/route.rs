//! QUERY and EXECUTE through the stages (`statement`), the answers the
//! proxy gives itself (system tables, USE), and the dispatch of every
//! request opcode (`handle`).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::after::{continuation_side, pin_pages, shadowing, start_shadow};
use super::batch::batch;
use super::context::{admit_statement, bound_values, continues, idempotent};
use super::decide::plan;
use super::errors::{malformed, malformed_answer, unavailable, RequestError};
use super::join::join_counted as join;
use super::leg::send_one;
use super::leg::{self, Leg};
use super::prepare::prepare;
use super::prepared::PreparedEntry;
use super::rewrite::{bind_hidden, literal_for, now_micros, replacing, TimestampPlan};
use crate::cql::{Classification, StatementKind};
use crate::frame::{Frame, Opcode};
use crate::metrics::OpClass;
use crate::protocol::bound::BoundValues;
use crate::protocol::request::{read_register, Execute, Query};
use crate::protocol::response::ResultBody;
use crate::protocol::{consistency, ErrorFrame};
use crate::routing::decide::{Route, Statement};
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
        Opcode::Query | Opcode::Execute => statement(state, &policy, op, frame, stamp).await,
        Opcode::Prepare => prepare(state, &policy, frame).await,
        Opcode::Batch => batch(state, &policy, frame, stamp).await,
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
) -> Result<Route, RequestError> {
    let s = Statement {
        continues_on: continuation_side(state, c, continues(flags), paging_state),
        ..Statement::new(c.kind, tenant)
    };
    plan(state, policy, s)
}

/// The form of a QUERY or EXECUTE: what differs between the two along
/// one pipeline.
#[derive(Clone)]
enum Form {
    Query,
    /// The prepared statement an EXECUTE runs.
    Execute(Arc<PreparedEntry>),
}

impl Form {
    fn flags(&self, body: &Bytes, version: u8) -> Result<u32, RequestError> {
        match self {
            Form::Query => Query::read_flags(body, version),
            Form::Execute(_) => Execute::read_flags(body, version),
        }
        .map_err(malformed)
    }

    fn paging_state(&self, body: &Bytes, version: u8) -> Option<Bytes> {
        match self {
            Form::Query => Query::read(body, version).ok()?.params.paging_state,
            Form::Execute(_) => Execute::read(body, version).ok()?.params.paging_state,
        }
    }

    /// The body every cluster is sent: the proxy's timestamp added, server
    /// functions replaced (in the text, or bound at hidden markers); the
    /// client's bytes when nothing changes.
    fn rewrite(
        &self,
        state: &SessionState,
        c: &Classification,
        flags: u32,
        body: &Bytes,
    ) -> Result<(Bytes, bool), RequestError> {
        let plan = TimestampPlan::plan(state, c, flags);
        let v = state.version;
        let body = match self {
            Form::Query if plan.add || replacing(state, c) => {
                let mut q = Query::read(body, v).map_err(malformed)?;
                if plan.add {
                    q.params.timestamp = Some(now_micros());
                }
                if replacing(state, c) {
                    q.text = c.replace_functions(&q.text, literal_for);
                }
                q.encode(v)
            }
            Form::Execute(entry) if plan.add || !entry.hidden.is_empty() => {
                let mut e = Execute::read(body, v).map_err(malformed)?;
                if plan.add {
                    e.params.timestamp = Some(now_micros());
                }
                bind_hidden(entry, &mut e.params.values, e.params.names.is_some())?;
                e.encode(v)
            }
            _ => body.clone(),
        };
        Ok((body, plan.has_timestamp))
    }

    /// A system table read's body: an EXECUTE asks for full metadata, as
    /// the topology rewrite needs column names (drivers prepare their
    /// topology queries too; the scylla crate does).
    fn with_metadata(&self, frame: Frame, version: u8) -> Result<Frame, RequestError> {
        match self {
            Form::Query => Ok(frame),
            Form::Execute(_) => {
                let mut e = Execute::read(&frame.body, version).map_err(malformed)?;
                e.params.flags &= !crate::protocol::request::query_flags::SKIP_METADATA;
                Ok(Frame {
                    body: e.encode(version),
                    ..frame
                })
            }
        }
    }

    /// What a shadow-read mismatch is logged with: the text, or the values.
    fn shadow_key(&self, body: &Bytes, version: u8) -> String {
        match self {
            Form::Query => Query::read_text(body)
                .unwrap_or("")
                .chars()
                .take(200)
                .collect(),
            Form::Execute(_) => Execute::read(body, version)
                .map(|e| super::shadow::render_values(&e.params.values))
                .unwrap_or_default(),
        }
    }

    fn leg<'a>(&'a self, frame: &'a Frame) -> Leg<'a> {
        match self {
            Form::Query => Leg::Raw(frame),
            Form::Execute(entry) => Leg::Prepared {
                entry,
                template: frame,
            },
        }
    }
}

/// Classify: a QUERY's text (cached; with the session's keyspace, which
/// it was classified in), or an EXECUTE's prepared statement (its
/// PREPARE's classification; its keyspace is the entry's).
fn classify(
    state: &SessionState,
    op: Opcode,
    frame: &Frame,
) -> Result<(Form, Arc<Classification>, Option<String>), RequestError> {
    if op == Opcode::Query {
        let text = Query::read_text(&frame.body).map_err(malformed)?;
        let keyspace = state.keyspace();
        let c = state
            .proxy
            .statements()
            .classifier()
            .classify(text, keyspace.as_deref())
            .map_err(|e| ErrorFrame::syntax(e.to_string()))?;
        return Ok((Form::Query, c, keyspace));
    }
    let client_id = Execute::read_id(&frame.body).map_err(malformed)?;
    let Some(entry) = state.proxy.statements().prepared().get(&client_id) else {
        state
            .proxy
            .metrics()
            .prepared_misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(ErrorFrame::unprepared(client_id).into());
    };
    let c = entry.classification.clone();
    Ok((Form::Execute(entry), c, None))
}

/// A QUERY or an EXECUTE, through the stages: classify → resolve tenants
/// and admit → decide → rewrite → fan out → join → after (page pins,
/// shadow compare, USE).
async fn statement(
    state: &Arc<SessionState>,
    policy: &RoutePolicy,
    op: Opcode,
    frame: Frame,
    stamp: &mut Stamp,
) -> Result<Frame, RequestError> {
    let v = state.version;
    let (form, c, session_keyspace) = classify(state, op, &frame)?;
    let ks = match &form {
        Form::Query => session_keyspace.as_deref(),
        Form::Execute(entry) => entry.keyspace.as_deref(),
    };
    // The tenant keys and bind types: the text's, or the prepared entry's.
    let (keys, types) = match &form {
        Form::Query => (&c.tenant_keys[..], &[][..]),
        Form::Execute(entry) => entry.tenant_keys(),
    };
    let bound = bound_values(state, keys, types, || match &form {
        Form::Query => BoundValues::of_query(&frame.body, v),
        Form::Execute(_) => BoundValues::of_execute(&frame.body, v),
    })?;
    let admitted = admit_statement(state, stamp, &c, keys, ks, bound.as_ref(), policy)?;
    let class = stamp.op;
    let policy = admitted.policy(policy);
    let tenant = &admitted.tenant;
    if let Some(table) = system_table(&c, ks) {
        let route = plan(
            state,
            policy,
            Statement {
                system_table: true,
                ..Statement::new(c.kind, tenant.as_deref())
            },
        )?;
        let template = form.with_metadata(frame, v)?;
        let primary = route.primary();
        let answer = leg::run(state, primary, form.leg(&template), true, OpClass::Read).await;
        let answer = join(state, &[primary], vec![answer], StatementKind::Read)?;
        return rewrite_system(state, policy, table, answer).await;
    }
    let flags = form.flags(&frame.body, v)?;
    let route = request_route(state, policy, &c, tenant.as_deref(), flags, || {
        form.paging_state(&frame.body, v)
    })?;
    let (body, has_timestamp) = form.rewrite(state, &c, flags, &frame.body)?;
    let template = Frame { body, ..frame };
    let retry = idempotent(&c, has_timestamp);
    let shadow = shadowing(state, policy, &route, &c, continues(flags)).and_then(|secondary| {
        let key = form.shadow_key(&template.body, v);
        let (state2, form2, t2) = (state.clone(), form.clone(), template.clone());
        start_shadow(state, &c, ks, tenant.clone(), key, async move {
            leg::run(&state2, secondary, form2.leg(&t2), true, OpClass::Read)
                .await
                .ok()
        })
    });
    let answers = futures::future::join_all(
        route
            .clusters
            .iter()
            .map(|cluster| leg::run(state, *cluster, form.leg(&template), retry, class)),
    )
    .await;
    let answer = join(state, &route.clusters, answers, c.kind)?;
    pin_pages(state, &c, route.primary(), &answer);
    if let Some(tx) = shadow {
        let _ = tx.send(answer.clone());
    }
    if c.kind == StatementKind::Use && answer.op() == Some(Opcode::Result) {
        if let Ok(ResultBody::SetKeyspace(ks)) = ResultBody::read(&answer.body, v) {
            state.set_keyspace(ks);
        }
    }
    Ok(answer)
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
    if table != SystemTable::Local && state.proxy.topology().instances.len() > 1 {
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
    let body = state.proxy.topology().rewrite(table, &rows, &local);
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
