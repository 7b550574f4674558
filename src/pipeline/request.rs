//! The request context: what classification makes of a QUERY, EXECUTE or
//! BATCH frame (`Request`), and each stage's step where the three differ —
//! tenants and admission, the route, the rewritten body, the leg, what
//! follows the answer. The stages' order is `route::request`'s; a BATCH's
//! own steps are in `batch.rs`.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::after::{continuation_side, pin_pages, shadowing, start_shadow};
use super::batch::BatchRequest;
use super::context::{admit_statement, bound_values, continues, idempotent};
use super::decide::{plan, Admission};
use super::errors::{malformed, RequestError};
use super::leg::{self, Leg};
use super::prepared::PreparedEntry;
use super::rewrite::{bind_hidden, literal_for, now_micros, replacing, TimestampPlan};
use crate::cql::{Classification, StatementKind};
use crate::frame::{Frame, Opcode};
use crate::journal::{Record, Statement as Journaled};
use crate::metrics::OpClass;
use crate::protocol::bound::BoundValues;
use crate::protocol::request::{Execute, Query};
use crate::protocol::response::ResultBody;
use crate::protocol::ErrorFrame;
use crate::proxy::journal::KeptSync;
use crate::routing::decide::{Route, Statement};
use crate::routing::RoutePolicy;
use crate::session::{SessionState, Stamp};
use crate::topology::SystemTable;

/// A request once classified.
pub(super) enum Request {
    /// A QUERY or an EXECUTE: one statement.
    One(One),
    /// A BATCH: its children, each classified.
    Batch(Box<BatchRequest>),
}

/// One statement: its form, its classification, the keyspace it was
/// classified in (the session's for a QUERY, the prepared entry's for an
/// EXECUTE) and its flags.
pub(super) struct One {
    pub(super) form: Form,
    pub(super) c: Arc<Classification>,
    keyspace: Option<String>,
    flags: u32,
    /// The write time the proxy gave it (set by the rewrite).
    write_time: Option<i64>,
}

impl Request {
    /// Classify: a QUERY's text (cached; in the session's keyspace), an
    /// EXECUTE's prepared statement (its PREPARE's classification), a
    /// BATCH's children.
    pub(super) fn classify(
        state: &SessionState,
        op: Opcode,
        frame: &Frame,
    ) -> Result<Request, RequestError> {
        let v = state.version;
        match op {
            Opcode::Batch => Ok(Request::Batch(Box::new(BatchRequest::classify(
                state, frame,
            )?))),
            Opcode::Query => {
                let text = Query::read_text(&frame.body).map_err(malformed)?;
                let keyspace = state.keyspace();
                let c = state
                    .proxy
                    .statements()
                    .classifier()
                    .classify(text, keyspace.as_deref())
                    .map_err(|e| ErrorFrame::syntax(e.to_string()))?;
                let flags = Query::read_flags(&frame.body, v).map_err(malformed)?;
                Ok(Request::One(One {
                    form: Form::Query,
                    c,
                    keyspace,
                    flags,
                    write_time: None,
                }))
            }
            _ => {
                let client_id = Execute::read_id(&frame.body).map_err(malformed)?;
                let Some(entry) = state.proxy.statements().prepared().get(&client_id) else {
                    state
                        .proxy
                        .metrics()
                        .prepared_misses
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Err(ErrorFrame::unprepared(client_id).into());
                };
                let flags = Execute::read_flags(&frame.body, v).map_err(malformed)?;
                Ok(Request::One(One {
                    c: entry.classification.clone(),
                    keyspace: entry.keyspace.clone(),
                    form: Form::Execute(entry),
                    flags,
                    write_time: None,
                }))
            }
        }
    }

    /// What the join judges the answers as.
    pub(super) fn kind(&self) -> StatementKind {
        match self {
            Request::One(one) => one.c.kind,
            Request::Batch(_) => StatementKind::Write,
        }
    }

    /// Resolve tenants and admit: the tenants the request names (from its
    /// keyspace, or its tenant column's values) and its admission under the
    /// policy it started with.
    pub(super) fn admit<'s>(
        &self,
        state: &'s SessionState,
        stamp: &mut Stamp,
        frame: &Frame,
        policy: &RoutePolicy,
    ) -> Result<Admission<'s>, RequestError> {
        let one = match self {
            Request::Batch(b) => return b.admit(state, stamp, policy),
            Request::One(one) => one,
        };
        let v = state.version;
        // The tenant keys and bind types: the text's, or the prepared entry's.
        let (keys, types) = match &one.form {
            Form::Query => (&one.c.tenant_keys[..], &[][..]),
            Form::Execute(entry) => entry.tenant_keys(),
        };
        let bound = bound_values(state, keys, types, || match &one.form {
            Form::Query => BoundValues::of_query(&frame.body, v),
            Form::Execute(_) => BoundValues::of_execute(&frame.body, v),
        })?;
        admit_statement(
            state,
            stamp,
            &one.c,
            keys,
            one.keyspace.as_deref(),
            bound.as_ref(),
            policy,
        )
    }

    /// The system table a statement reads, when topology answers it.
    pub(super) fn system_table(&self) -> Option<(&One, SystemTable)> {
        let Request::One(one) = self else {
            return None;
        };
        if one.c.kind != StatementKind::Read {
            return None;
        }
        let t = one.c.tables.first()?;
        SystemTable::of(t.keyspace.as_deref().or(one.keyspace.as_deref()), &t.table)
            .map(|table| (one, table))
    }

    /// Decide: the route, looked up once. A continuation page goes to the
    /// cluster that issued its paging state (decoded only for such pages);
    /// anything else by its tenant's route.
    pub(super) fn route(
        &self,
        state: &SessionState,
        policy: &RoutePolicy,
        tenant: Option<&str>,
        frame: &Frame,
    ) -> Result<Route, RequestError> {
        let s = match self {
            Request::Batch(_) => Statement::new(StatementKind::Write, tenant),
            Request::One(one) => Statement {
                continues_on: continuation_side(state, &one.c, continues(one.flags), || {
                    one.form.paging_state(&frame.body, state.version)
                }),
                ..Statement::new(one.c.kind, tenant)
            },
        };
        plan(state, policy, s)
    }

    /// Rewrite: the body every cluster is sent (the proxy's timestamp,
    /// server functions replaced; each cluster's prepared ids are the
    /// leg's), and whether the request may be sent again after a
    /// connection closed under it.
    pub(super) fn rewrite(
        &mut self,
        state: &SessionState,
        frame: Frame,
    ) -> Result<(Frame, bool), RequestError> {
        match self {
            Request::Batch(b) => {
                let retry = b.rewrite(state)?;
                Ok((frame, retry))
            }
            Request::One(one) => {
                let (body, has_timestamp, given) =
                    one.form.rewrite(state, &one.c, one.flags, &frame.body)?;
                one.write_time = given;
                Ok((Frame { body, ..frame }, idempotent(&one.c, has_timestamp)))
            }
        }
    }

    /// The shadow read of a read's first page, started now; the sender
    /// takes the primary's answer.
    pub(super) fn shadow(
        &self,
        state: &Arc<SessionState>,
        policy: &RoutePolicy,
        route: &Route,
        template: &Frame,
        tenant: &Option<Arc<str>>,
    ) -> Option<oneshot::Sender<Frame>> {
        let Request::One(one) = self else {
            return None;
        };
        let secondary = shadowing(state, policy, route, &one.c, continues(one.flags))?;
        let key = one.form.shadow_key(&template.body, state.version);
        let (state2, form2, t2) = (state.clone(), one.form.clone(), template.clone());
        start_shadow(
            state,
            &one.c,
            one.keyspace.as_deref(),
            tenant.clone(),
            key,
            async move {
                leg::run(&state2, secondary, form2.leg(&t2), true, OpClass::Read)
                    .await
                    .ok()
            },
        )
    }

    /// Whether the write can be journaled and replayed later to the same
    /// cells (`retry`: it carries a fixed write time); why not otherwise.
    pub(super) fn replayable(&self, state: &SessionState, retry: bool) -> Result<(), KeptSync> {
        let one = match self {
            Request::Batch(b) => return b.replayable(state, retry),
            Request::One(one) => one,
        };
        replayable(state, &one.c, retry)
    }

    /// `keyspace.table` of the (first) table this write names.
    pub(super) fn table(&self) -> String {
        match self {
            Request::Batch(b) => b.table(),
            Request::One(one) => one
                .c
                .tables
                .first()
                .map(|t| table_name(t, one.keyspace.as_deref()))
                .unwrap_or_default(),
        }
    }

    /// The journal record of this write, for `cluster`: what replay sends.
    pub(super) fn record(
        &self,
        state: &SessionState,
        template: &Frame,
        cluster: &str,
        tenant: Option<&str>,
    ) -> Record {
        let v = state.version;
        let (opcode, prepared, write_time) = match self {
            Request::Batch(b) => {
                let (prepared, write_time) = b.for_record();
                (Opcode::Batch, prepared, write_time)
            }
            Request::One(one) => {
                // The body is decoded again only for a client's write time
                // (the rewrite gave the proxy's).
                let client_time = one.write_time.is_none()
                    && one.flags & crate::protocol::request::query_flags::DEFAULT_TIMESTAMP != 0;
                let params = client_time
                    .then(|| match &one.form {
                        Form::Query => Query::read(&template.body, v).ok().map(|q| q.params),
                        Form::Execute(_) => Execute::read(&template.body, v).ok().map(|e| e.params),
                    })
                    .flatten();
                let write_time = one.write_time.or_else(|| params.and_then(|p| p.timestamp));
                match &one.form {
                    Form::Query => (Opcode::Query, Vec::new(), write_time),
                    Form::Execute(entry) => {
                        (Opcode::Execute, vec![statement_of(entry)], write_time)
                    }
                }
            }
        };
        Record {
            written_at_ms: crate::journal::unix_ms(),
            write_time: write_time.unwrap_or(0),
            cluster: cluster.to_string(),
            tenant: tenant.map(str::to_string),
            table: self.table(),
            keyspace: state.keyspace(),
            version: v,
            opcode: opcode as u8,
            prepared,
            body: template.body.clone(),
        }
    }

    /// What each cluster's leg sends.
    pub(super) fn leg<'a>(&'a self, template: &'a Frame) -> Leg<'a> {
        match self {
            Request::One(one) => one.form.leg(template),
            Request::Batch(b) => b.leg(template),
        }
    }

    /// After the join: page pins, the shadow compare, USE.
    pub(super) fn after(
        &self,
        state: &SessionState,
        route: &Route,
        answer: &Frame,
        shadow: Option<oneshot::Sender<Frame>>,
    ) {
        let Request::One(one) = self else {
            return;
        };
        pin_pages(state, &one.c, route.primary(), answer);
        if let Some(tx) = shadow {
            let _ = tx.send(answer.clone());
        }
        if one.c.kind == StatementKind::Use && answer.op() == Some(Opcode::Result) {
            if let Ok(ResultBody::SetKeyspace(ks)) = ResultBody::read(&answer.body, state.version) {
                state.set_keyspace(ks);
            }
        }
    }
}

/// Whether a write classified as `c` can be replayed to the same cells.
pub(super) fn replayable(
    state: &SessionState,
    c: &Classification,
    retry: bool,
) -> Result<(), KeptSync> {
    if c.conditional {
        Err(KeptSync::Conditional)
    } else if c.increments {
        Err(KeptSync::Increment)
    } else if !c.server_functions.is_empty() && !replacing(state, c) {
        Err(KeptSync::ServerFunction)
    } else if !retry {
        Err(KeptSync::NoWriteTime)
    } else {
        Ok(())
    }
}

/// `keyspace.table` of a table a statement names.
pub(super) fn table_name(t: &crate::cql::TableRef, keyspace: Option<&str>) -> String {
    match t.keyspace.as_deref().or(keyspace) {
        Some(ks) => format!("{ks}.{}", t.table),
        None => t.table.clone(),
    }
}

/// A prepared statement as replay prepares it again: the text the
/// clusters prepared, in its keyspace.
pub(super) fn statement_of(entry: &PreparedEntry) -> Journaled {
    Journaled {
        text: entry.cluster_text.clone(),
        keyspace: entry.keyspace.clone(),
    }
}

/// The form of a QUERY or EXECUTE: what differs between the two along
/// one pipeline.
#[derive(Clone)]
pub(super) enum Form {
    Query,
    /// The prepared statement an EXECUTE runs.
    Execute(Arc<PreparedEntry>),
}

impl Form {
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
    ) -> Result<(Bytes, bool, Option<i64>), RequestError> {
        let plan = TimestampPlan::plan(state, c, flags);
        let v = state.version;
        let now = plan.add.then(now_micros);
        let ts = now.unwrap_or(0);
        let body = match self {
            // The common write: only a timestamp added, inserted in place.
            Form::Query if plan.add && !replacing(state, c) => {
                Query::with_timestamp(body, v, ts).map_err(malformed)?
            }
            Form::Execute(entry) if plan.add && entry.hidden.is_empty() => {
                Execute::with_timestamp(body, v, ts).map_err(malformed)?
            }
            Form::Query if plan.add || replacing(state, c) => {
                let mut q = Query::read(body, v).map_err(malformed)?;
                if plan.add {
                    q.params.timestamp = now;
                }
                if replacing(state, c) {
                    q.text = c.replace_functions(&q.text, literal_for);
                }
                q.encode(v)
            }
            Form::Execute(entry) if plan.add || !entry.hidden.is_empty() => {
                let mut e = Execute::read(body, v).map_err(malformed)?;
                if plan.add {
                    e.params.timestamp = now;
                }
                bind_hidden(entry, &mut e.params.values, e.params.names.is_some())?;
                e.encode(v)
            }
            _ => body.clone(),
        };
        Ok((body, plan.has_timestamp, now))
    }

    /// A system table read's body: an EXECUTE asks for full metadata, as
    /// the topology rewrite needs column names (drivers prepare their
    /// topology queries too; the scylla crate does).
    pub(super) fn with_metadata(&self, frame: Frame, version: u8) -> Result<Frame, RequestError> {
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

    pub(super) fn leg<'a>(&'a self, frame: &'a Frame) -> Leg<'a> {
        match self {
            Form::Query => Leg::Raw(frame),
            Form::Execute(entry) => Leg::Prepared {
                entry,
                template: frame,
            },
        }
    }
}
