//! What happens to one request: classify it (cached; EXECUTE inherits its
//! PREPARE's classification), pick the clusters, rewrite what each needs
//! (its own prepared id, the proxy's write timestamp), send, and join the
//! answers: a write is answered when every cluster has answered, and a
//! failure on any of them is what the client gets.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::prepared::{PreparedEntry, PreparedMap, Side};
use super::session::{SessionState, Stamp};
use super::topology::SystemTable;
use crate::config::DdlMode;
use crate::cql::functions::evaluate;
use crate::cql::{Classification, StatementKind};
use crate::frame::{Frame, Opcode};
use crate::metrics::{OpClass, Outcome};
use crate::protocol::reader::{BodyReader, RawValue};
use crate::protocol::request::{read_register, Batch, BatchStatement, Execute, Prepare, Query};
use crate::protocol::response::{read_result_kind, result_kind, ResultBody};
use crate::protocol::writer::put_short_bytes;
use crate::protocol::{consistency, ErrorCode, ErrorFrame};
use crate::upstream::UpstreamError;

fn error_frame(state: &SessionState, e: ErrorFrame) -> Frame {
    Frame::response(state.version, 0, Opcode::Error, e.encode())
}

/// The operation class of a statement, for the latency series.
pub fn op_class(kind: StatementKind) -> OpClass {
    match kind {
        StatementKind::Read => OpClass::Read,
        StatementKind::Write => OpClass::Write,
        _ => OpClass::Other,
    }
}

/// Notes on the request's stamp what it turned out to be: read, write or
/// other, and its tenant.
fn note(state: &SessionState, stamp: &mut Stamp, c: &Classification, keyspace: Option<&str>) {
    stamp.op = op_class(c.kind);
    let ks = c
        .tables
        .first()
        .and_then(|t| t.keyspace.as_deref())
        .or(c.keyspace.as_deref())
        .or(keyspace);
    stamp.tenant = state.proxy.tenants.of_keyspace(ks).and_then(|t| t.metrics);
}

/// Handles one request; `stamp` learns what the request turned out to be
/// once that is known.
pub async fn handle(
    state: &Arc<SessionState>,
    op: Opcode,
    frame: Frame,
    stamp: &mut Stamp,
) -> Frame {
    let r = match op {
        Opcode::Query => query(state, frame, stamp).await,
        Opcode::Prepare => prepare(state, frame).await,
        Opcode::Execute => execute(state, frame, stamp).await,
        Opcode::Batch => batch(state, frame, stamp).await,
        Opcode::Register => register(state, frame).await,
        _ => Err(ErrorFrame::protocol("unexpected opcode")),
    };
    r.unwrap_or_else(|e| error_frame(state, e))
}

fn malformed(e: impl std::fmt::Display) -> ErrorFrame {
    ErrorFrame::protocol(format!("malformed request body: {e}"))
}

/// The clusters a statement of this kind goes to, primary first.
fn sides_for(state: &SessionState, c: &Classification) -> Result<Vec<Side>, ErrorFrame> {
    let p = &state.proxy;
    Ok(match c.kind {
        StatementKind::Read => vec![p.primary()],
        StatementKind::Write | StatementKind::Truncate | StatementKind::Use | StatementKind::Access => p.write_sides(),
        StatementKind::Schema => match p.config.ddl {
            DdlMode::All => p.write_sides(),
            DdlMode::PrimaryOnly => vec![p.primary()],
            DdlMode::Refuse => {
                return Err(ErrorFrame::new(
                    ErrorCode::UNAUTHORIZED,
                    "cutover: schema changes are refused by this proxy (ddl = \"refuse\"); run them on the clusters directly",
                ))
            }
        },
    })
}

/// What a QUERY or EXECUTE needs about write timestamps, decided from its
/// flags alone: a body is decoded and re-encoded only when it must change.
struct TimestampPlan {
    /// The proxy adds its timestamp.
    add: bool,
    /// The request will carry a fixed write time (the client's or the proxy's).
    has_timestamp: bool,
}

impl TimestampPlan {
    fn plan(
        state: &SessionState,
        c: &Classification,
        flags: impl FnOnce() -> Result<u32, crate::protocol::BodyError>,
    ) -> Result<TimestampPlan, ErrorFrame> {
        if c.kind != StatementKind::Write {
            return Ok(TimestampPlan {
                add: false,
                has_timestamp: c.has_timestamp,
            });
        }
        let client = flags().map_err(malformed)?
            & crate::protocol::request::query_flags::DEFAULT_TIMESTAMP
            != 0;
        let add = !client && needs_timestamp(state, c);
        Ok(TimestampPlan {
            add,
            has_timestamp: add || client || c.has_timestamp,
        })
    }
}

/// Should the proxy give this write its own timestamp?
fn needs_timestamp(state: &SessionState, c: &Classification) -> bool {
    state.proxy.config.writes.add_timestamps
        && c.kind == StatementKind::Write
        && !c.conditional
        && !c.increments
        && !c.has_timestamp
}

/// Can this request be sent again after its connection closed under it,
/// without risk of applying twice? Reads, USE, and writes that carry a fixed
/// timestamp (the proxy's or the client's) and are neither conditional nor
/// increments: replaying them writes the same cells at the same time.
fn idempotent(c: &Classification, has_timestamp: bool) -> bool {
    match c.kind {
        StatementKind::Read | StatementKind::Use => true,
        StatementKind::Write => has_timestamp && !c.conditional && !c.increments,
        _ => false,
    }
}

/// Does this write get its server-side function calls replaced?
fn replacing(state: &SessionState, c: &Classification) -> bool {
    state.proxy.config.writes.replace_server_functions
        && c.kind == StatementKind::Write
        && !c.server_functions.is_empty()
}

/// A literal for a function call in query text (the call itself when unknown).
fn literal_for(name: &str) -> String {
    evaluate(name)
        .map(|v| v.literal)
        .unwrap_or_else(|| format!("{name}()"))
}

/// Binds the proxy's values at a prepared statement's hidden markers.
fn bind_hidden(
    entry: &PreparedEntry,
    values: &mut Vec<RawValue>,
    named: bool,
) -> Result<(), ErrorFrame> {
    if entry.hidden.is_empty() {
        return Ok(());
    }
    if named {
        return Err(ErrorFrame::invalid(
            "cutover: named bind values cannot be combined with server-side function replacement",
        ));
    }
    for (index, name) in &entry.hidden {
        let v = evaluate(name)
            .ok_or_else(|| ErrorFrame::server(format!("cutover: unknown function {name}()")))?;
        if *index > values.len() {
            return Err(ErrorFrame::invalid(
                "cutover: fewer bound values than the statement's markers",
            ));
        }
        values.insert(*index, RawValue::Bytes(v.bytes));
    }
    Ok(())
}

pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

async fn query(
    state: &Arc<SessionState>,
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
    note(state, stamp, &c, session_ks.as_deref());
    let class = stamp.op;
    if let Some(table) = system_table(&c, state.keyspace().as_deref()) {
        return system_read(state, table, &frame).await;
    }
    let sides = sides_for(state, &c)?;
    let plan = TimestampPlan::plan(state, &c, || Query::read_flags(&frame.body, state.version))?;
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
    let answers = futures::future::join_all(
        sides
            .iter()
            .map(|side| send_raw(state, *side, f.clone(), retry, class)),
    )
    .await;
    let answer = join(state, &sides, answers, c.kind)?;
    if c.kind == StatementKind::Use && answer.op() == Some(Opcode::Result) {
        if let Ok(ResultBody::SetKeyspace(ks)) = ResultBody::read(&answer.body, state.version) {
            state.set_keyspace(ks);
        }
    }
    Ok(answer)
}

/// `system.local` / `system.peers(_v2)`: the primary answers, topology rewrites.
async fn system_read(
    state: &Arc<SessionState>,
    table: SystemTable,
    frame: &Frame,
) -> Result<Frame, ErrorFrame> {
    let answer = send_one(
        state,
        state.proxy.primary(),
        frame.clone(),
        StatementKind::Read,
        OpClass::Read,
    )
    .await?;
    Ok(rewrite_system(state, table, answer).await)
}

/// The topology view of a system table read, from the primary's answer.
async fn rewrite_system(state: &Arc<SessionState>, table: SystemTable, answer: Frame) -> Frame {
    let Ok(ResultBody::Rows(rows)) = ResultBody::read(&answer.body, state.version) else {
        return answer;
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
            state.proxy.primary(),
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
    Frame { body, ..answer }
}

/// The system table a statement reads, when topology answers it.
fn system_table(c: &Classification, keyspace: Option<&str>) -> Option<SystemTable> {
    if c.kind != StatementKind::Read {
        return None;
    }
    let t = c.tables.first()?;
    SystemTable::of(t.keyspace.as_deref().or(keyspace), &t.table)
}

async fn prepare(state: &Arc<SessionState>, frame: Frame) -> Result<Frame, ErrorFrame> {
    let p = Prepare::read(&frame.body, state.version).map_err(malformed)?;
    let keyspace = p.keyspace.clone().or_else(|| state.keyspace());
    let c = state
        .proxy
        .classifier
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
    let entry = state.proxy.prepared.insert(
        client_id.clone(),
        &p.text,
        keyspace.as_deref(),
        c.clone(),
        cluster_text,
        hidden,
    );
    // Prepared on every cluster a phase may send it to, so that a phase
    // change never meets an unknown statement.
    let sides = state.proxy.phase_sides();
    let primary = state.proxy.primary();
    let answers = futures::future::join_all(
        sides
            .iter()
            .map(|side| prepare_on(state, &entry, *side, &frame)),
    )
    .await;
    let mut primary_answer = None;
    for (side, a) in sides.iter().zip(answers) {
        let a = a?;
        if a.op() == Some(Opcode::Error) {
            return Ok(a);
        }
        if *side == primary {
            primary_answer = Some(a);
        }
    }
    let a = primary_answer.expect("the primary is among the sides");
    let body = if entry.hidden.is_empty() {
        with_prepared_id(&a.body, &client_id)?
    } else {
        without_hidden_markers(&a.body, &entry.hidden, &client_id, state.version)?
    };
    Ok(Frame { body, ..a })
}

/// PREPARE on one cluster, remembering that cluster's id.
async fn prepare_on(
    state: &Arc<SessionState>,
    entry: &PreparedEntry,
    side: Side,
    frame: &Frame,
) -> Result<Frame, ErrorFrame> {
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
    let a = send_one(state, side, f, StatementKind::Read, OpClass::Other).await?;
    if a.op() == Some(Opcode::Result) {
        if let Ok(id) = prepared_id_of(&a.body) {
            entry.set_id(side, id);
        }
    }
    Ok(a)
}

/// Prepares `entry` on `side` again; its new id, or the error to answer.
async fn reprepare(
    state: &Arc<SessionState>,
    entry: &PreparedEntry,
    side: Side,
) -> Result<Bytes, Frame> {
    state
        .proxy
        .cluster(side)
        .metrics
        .reprepares
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let prep = Frame::request(state.version, 0, Opcode::Prepare, Bytes::new());
    match prepare_on(state, entry, side, &prep).await {
        Ok(a) if a.op() == Some(Opcode::Result) => {}
        Ok(a) => return Err(a),
        Err(e) => return Err(error_frame(state, e)),
    }
    entry.id_on(side).ok_or_else(|| {
        error_frame(
            state,
            ErrorFrame::server("cutover: could not prepare the statement again"),
        )
    })
}

fn prepared_id_of(body: &Bytes) -> Result<Bytes, ErrorFrame> {
    let mut r = BodyReader::new(body);
    if r.int().map_err(malformed)? != result_kind::PREPARED {
        return Err(ErrorFrame::server(
            "cutover: a cluster answered PREPARE with something else than PREPARED",
        ));
    }
    r.short_bytes().map_err(malformed)
}

/// A PREPARED body with its id replaced by the client-facing one.
fn with_prepared_id(body: &Bytes, id: &Bytes) -> Result<Bytes, ErrorFrame> {
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
) -> Result<Bytes, ErrorFrame> {
    let Ok(ResultBody::Prepared(mut p)) = ResultBody::read(body, version) else {
        return Err(ErrorFrame::server(
            "cutover: a cluster answered PREPARE with something else than PREPARED",
        ));
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
fn with_execute_id(body: &Bytes, id: &Bytes) -> Result<Bytes, ErrorFrame> {
    let mut r = BodyReader::new(body);
    r.short_bytes().map_err(malformed)?;
    let rest = r.rest();
    let mut b = BytesMut::with_capacity(body.len() + id.len());
    put_short_bytes(&mut b, id);
    b.put_slice(&rest);
    Ok(b.freeze())
}

async fn execute(
    state: &Arc<SessionState>,
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
    note(state, stamp, &c, entry.keyspace.as_deref());
    let class = stamp.op;
    if let Some(table) = system_table(&c, entry.keyspace.as_deref()) {
        // Drivers prepare their topology queries too (the scylla crate does).
        // The rewrite needs column names, so full metadata is asked for.
        let mut e = Execute::read(&frame.body, state.version).map_err(malformed)?;
        e.params.flags &= !crate::protocol::request::query_flags::SKIP_METADATA;
        let template = Frame {
            body: e.encode(state.version),
            ..frame
        };
        let primary = state.proxy.primary();
        let answer = execute_on(state, &entry, primary, &template, true, OpClass::Read).await;
        let answer = join(state, &[primary], vec![answer], StatementKind::Read)?;
        return Ok(rewrite_system(state, table, answer).await);
    }
    let sides = sides_for(state, &c)?;
    let plan = TimestampPlan::plan(state, &c, || {
        Execute::read_flags(&frame.body, state.version)
    })?;
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
    let answers = futures::future::join_all(
        sides
            .iter()
            .map(|side| execute_on(state, &entry, *side, &template, retry, class)),
    )
    .await;
    join(state, &sides, answers, c.kind)
}

/// EXECUTE on one cluster with its own id. An UNPREPARED from the cluster
/// (it restarted, or evicted the statement) is answered by preparing again
/// and retrying, so the client never sees it; a connection that closed under
/// an idempotent request is replaced and the request sent once more.
async fn execute_on(
    state: &Arc<SessionState>,
    entry: &Arc<PreparedEntry>,
    side: Side,
    template: &Frame,
    idempotent: bool,
    class: OpClass,
) -> Result<Frame, UpstreamError> {
    let mut reprepared = false;
    let mut resent = false;
    loop {
        let id = match entry.id_on(side) {
            Some(id) => id,
            None => match reprepare(state, entry, side).await {
                Ok(id) => id,
                Err(f) => return Ok(f),
            },
        };
        let body = match with_execute_id(&template.body, &id) {
            Ok(b) => b,
            Err(e) => return Ok(error_frame(state, e)),
        };
        let started = std::time::Instant::now();
        let timeout = state.proxy.cluster(side).config.request_timeout.0;
        let sent = async {
            state
                .upstream(side)
                .await?
                .forward(
                    &Frame {
                        body,
                        ..template.clone()
                    },
                    timeout,
                )
                .await
        }
        .await;
        let retrying = matches!(sent, Err(UpstreamError::Closed { .. })) && idempotent && !resent;
        if !retrying {
            record_leg(state, side, class, &sent, started);
        }
        let a = match sent {
            Err(UpstreamError::Closed { .. }) if retrying => {
                resent = true;
                continue;
            }
            other => other?,
        };
        let unprepared = a.op() == Some(Opcode::Error)
            && ErrorFrame::decode(&a.body).is_ok_and(|e| e.code == ErrorCode::UNPREPARED);
        if !unprepared || reprepared {
            return Ok(a);
        }
        reprepared = true;
        if let Err(f) = reprepare(state, entry, side).await {
            return Ok(f);
        }
    }
}

async fn batch(
    state: &Arc<SessionState>,
    frame: Frame,
    stamp: &mut Stamp,
) -> Result<Frame, ErrorFrame> {
    stamp.op = OpClass::Write;
    let mut b = Batch::read(&frame.body, state.version).map_err(malformed)?;
    let ks = b.keyspace.clone().or_else(|| state.keyspace());
    let mut entries = Vec::new();
    let mut replay_unsafe = false;
    for child in b.children.iter_mut() {
        let c = match &mut child.statement {
            BatchStatement::Query(t) => {
                let c = state
                    .proxy
                    .classifier
                    .classify(t, ks.as_deref())
                    .map_err(|e| ErrorFrame::syntax(e.to_string()))?;
                if replacing(state, &c) {
                    *t = c.replace_functions(t, literal_for);
                }
                c
            }
            BatchStatement::Prepared(id) => {
                let e = state.proxy.prepared.get(id).ok_or_else(|| {
                    state
                        .proxy
                        .metrics
                        .prepared_misses
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    ErrorFrame::unprepared(id.clone())
                })?;
                let c = e.classification.clone();
                bind_hidden(&e, &mut child.values, false)?;
                entries.push(e);
                c
            }
        };
        if stamp.tenant.is_none() {
            note(state, stamp, &c, ks.as_deref());
            stamp.op = OpClass::Write;
        }
        replay_unsafe |= c.conditional || c.increments;
        if c.has_timestamp {
            // A child with its own write time: leave the batch's alone.
            replay_unsafe = true;
        }
    }
    if b.timestamp.is_none() && state.proxy.config.writes.add_timestamps && !replay_unsafe {
        b.timestamp = Some(now_micros());
    }
    let retry = b.timestamp.is_some() && !replay_unsafe;
    let sides = state.proxy.write_sides();
    let answers = futures::future::join_all(sides.iter().map(|side| {
        let mut b = b.clone();
        let template = frame.clone();
        let entries = entries.clone();
        async move {
            let mut prepared = entries.iter();
            for child in b.children.iter_mut() {
                if let BatchStatement::Prepared(id) = &mut child.statement {
                    let entry = prepared.next().expect("one entry per prepared child");
                    *id = match entry.id_on(*side) {
                        Some(cluster_id) => cluster_id,
                        None => match reprepare(state, entry, *side).await {
                            Ok(cluster_id) => cluster_id,
                            Err(f) => return Ok(f),
                        },
                    };
                }
            }
            let body = b.encode(state.version);
            send_raw(
                state,
                *side,
                Frame { body, ..template },
                retry,
                OpClass::Write,
            )
            .await
        }
    }))
    .await;
    join(state, &sides, answers, StatementKind::Write)
}

async fn register(state: &Arc<SessionState>, frame: Frame) -> Result<Frame, ErrorFrame> {
    let events = read_register(&frame.body).map_err(malformed)?;
    if events.iter().any(|e| e == "SCHEMA_CHANGE") {
        // Schema changes come from the primary; its topology and status
        // events are never passed on (drivers see only proxy instances).
        let up = state
            .upstream(state.proxy.primary())
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
                        if out.send((f, None)).is_err() {
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

fn unavailable(e: UpstreamError) -> ErrorFrame {
    ErrorFrame::unavailable(consistency::ONE, format!("cutover: {e}"))
}

/// One request to one cluster. `kind` decides whether it may be resent
/// after a closed connection (reads may) and how a timeout is reported.
async fn send_one(
    state: &Arc<SessionState>,
    side: Side,
    frame: Frame,
    kind: StatementKind,
    class: OpClass,
) -> Result<Frame, ErrorFrame> {
    let answers = vec![send_raw(state, side, frame, kind == StatementKind::Read, class).await];
    join(state, &[side], answers, kind)
}

/// Sends on the side's connection; when `idempotent`, a connection that
/// closed under the request is replaced and the request sent once more.
async fn send_raw(
    state: &Arc<SessionState>,
    side: Side,
    frame: Frame,
    idempotent: bool,
    class: OpClass,
) -> Result<Frame, UpstreamError> {
    let started = std::time::Instant::now();
    let timeout = state.proxy.cluster(side).config.request_timeout.0;
    let r = async {
        let up = state.upstream(side).await?;
        match up.forward(&frame, timeout).await {
            Err(UpstreamError::Closed { .. }) if idempotent => {
                state.upstream(side).await?.forward(&frame, timeout).await
            }
            other => other,
        }
    }
    .await;
    record_leg(state, side, class, &r, started);
    r
}

/// Records one cluster leg: its latency and, when it failed, its error (a
/// timeout or an unreachable cluster counted as the error the client gets).
fn record_leg(
    state: &SessionState,
    side: Side,
    class: OpClass,
    r: &Result<Frame, UpstreamError>,
    started: std::time::Instant,
) {
    let outcome = match r {
        Ok(f) => Outcome::of(f),
        Err(UpstreamError::Timeout { .. }) if class == OpClass::Read => {
            Outcome::error(ErrorCode::READ_TIMEOUT)
        }
        Err(UpstreamError::Timeout { .. }) => Outcome::error(ErrorCode::WRITE_TIMEOUT),
        Err(_) => Outcome::error(ErrorCode::UNAVAILABLE),
    };
    state
        .proxy
        .cluster(side)
        .metrics
        .record(class, outcome, started.elapsed());
}

/// The client's answer from every cluster's: the primary's when all
/// succeeded, else the first failure (the primary's first).
fn join(
    state: &SessionState,
    sides: &[Side],
    answers: Vec<Result<Frame, UpstreamError>>,
    kind: StatementKind,
) -> Result<Frame, ErrorFrame> {
    let mut primary = None;
    let mut failure = None;
    for (side, a) in sides.iter().zip(answers) {
        let cluster = &state.proxy.cluster(*side).name;
        let frame = match a {
            Ok(f) => f,
            Err(e @ UpstreamError::Timeout { .. }) => {
                let msg = format!("cutover: the {cluster} cluster did not answer: {e}");
                let ef = if kind == StatementKind::Read {
                    ErrorFrame::read_timeout(consistency::ONE, msg)
                } else {
                    ErrorFrame::write_timeout(consistency::ONE, "SIMPLE", msg)
                };
                error_frame(state, ef)
            }
            Err(e) => error_frame(
                state,
                ErrorFrame::unavailable(
                    consistency::ONE,
                    format!("cutover: the {cluster} cluster is unreachable: {e}"),
                ),
            ),
        };
        if frame.op() == Some(Opcode::Error) {
            if sides.len() > 1 && kind == StatementKind::Write {
                state
                    .proxy
                    .cluster(*side)
                    .metrics
                    .mirror_write_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if failure.is_none() {
                failure = Some(frame.clone());
            }
        }
        if primary.is_none() {
            primary = Some(frame);
        }
    }
    let chosen = failure
        .or(primary)
        .ok_or_else(|| ErrorFrame::server("cutover: no cluster to send to"))?;
    if chosen.op() == Some(Opcode::Result) {
        // Sanity: a result body must at least have its kind.
        read_result_kind(&chosen.body).map_err(malformed)?;
    }
    Ok(chosen)
}
