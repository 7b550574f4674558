//! The fan-out stage's one leg runner: a request to one cluster — connect
//! (the session's connection, opened on demand), forward, prepare again
//! when the cluster no longer knows a prepared statement, send once more
//! when the connection closed under an idempotent request, and record the
//! leg in that cluster's series.

use std::sync::Arc;

use super::errors::error_frame;
use super::join::join_counted;
use super::prepare::{reprepare, with_execute_id};
use super::prepared::PreparedEntry;
use crate::cql::StatementKind;
use crate::frame::{Frame, Opcode};
use crate::metrics::{OpClass, Outcome};
use crate::protocol::error::ErrorExtra;
use crate::protocol::request::{Batch, BatchStatement};
use crate::protocol::{ErrorCode, ErrorFrame};
use crate::routing::ClusterId;
use crate::session::SessionState;
use crate::upstream::UpstreamError;

/// What a leg sends.
#[derive(Clone, Copy)]
pub(super) enum Leg<'a> {
    /// These bytes, to whichever cluster.
    Raw(&'a Frame),
    /// An EXECUTE of a prepared statement: `template` with each cluster's
    /// own id of it.
    Prepared {
        entry: &'a Arc<PreparedEntry>,
        template: &'a Frame,
    },
    /// A BATCH: its prepared children (`entries`, in order) get each
    /// cluster's own ids.
    Batch {
        batch: &'a Batch,
        entries: &'a [Arc<PreparedEntry>],
        template: &'a Frame,
    },
}

/// A leg that owns what it sends: for a send that outlives its request
/// (an async-secondary write's secondary leg).
pub(super) enum OwnedLeg {
    Raw(Frame),
    Prepared {
        entry: Arc<PreparedEntry>,
        template: Frame,
    },
    Batch {
        batch: Batch,
        entries: Vec<Arc<PreparedEntry>>,
        template: Frame,
    },
}

impl OwnedLeg {
    pub(super) fn of(leg: Leg<'_>) -> OwnedLeg {
        match leg {
            Leg::Raw(f) => OwnedLeg::Raw(f.clone()),
            Leg::Prepared { entry, template } => OwnedLeg::Prepared {
                entry: entry.clone(),
                template: template.clone(),
            },
            Leg::Batch {
                batch,
                entries,
                template,
            } => OwnedLeg::Batch {
                batch: batch.clone(),
                entries: entries.to_vec(),
                template: template.clone(),
            },
        }
    }

    pub(super) fn leg(&self) -> Leg<'_> {
        match self {
            OwnedLeg::Raw(f) => Leg::Raw(f),
            OwnedLeg::Prepared { entry, template } => Leg::Prepared { entry, template },
            OwnedLeg::Batch {
                batch,
                entries,
                template,
            } => Leg::Batch {
                batch,
                entries,
                template,
            },
        }
    }
}

/// The prepared statement `leg` runs whose id on `cluster` an UNPREPARED
/// `answer` names (an EXECUTE's one; a BATCH's child).
fn unprepared<'a>(
    leg: &Leg<'a>,
    cluster: ClusterId,
    answer: &Frame,
) -> Option<&'a Arc<PreparedEntry>> {
    if answer.op() != Some(Opcode::Error) {
        return None;
    }
    let e = ErrorFrame::decode(&answer.body).ok()?;
    if e.code != ErrorCode::UNPREPARED {
        return None;
    }
    match *leg {
        Leg::Raw(_) => None,
        Leg::Prepared { entry, .. } => Some(entry),
        Leg::Batch { entries, .. } => {
            let ErrorExtra::Unprepared { id } = &e.extra else {
                return None;
            };
            entries
                .iter()
                .find(|p| p.id_on(cluster).as_ref() == Some(id))
        }
    }
}

/// Runs `leg` on `cluster`. An UNPREPARED from the cluster (it restarted,
/// or evicted the statement; for a BATCH, the child it names) is answered
/// by preparing again and retrying once,
/// so the client never sees it; a connection that closed under an
/// `idempotent` request is replaced and the request sent once more. The
/// leg's latency and outcome are recorded once, for the last attempt.
pub(super) async fn run(
    state: &Arc<SessionState>,
    cluster: ClusterId,
    leg: Leg<'_>,
    idempotent: bool,
    class: OpClass,
) -> Result<Frame, UpstreamError> {
    let timeout = state.proxy.cluster(cluster).config.request_timeout.0;
    let mut reprepared = false;
    let mut resent = false;
    loop {
        let with_id;
        let frame = match leg {
            Leg::Raw(f) => f,
            Leg::Prepared { entry, template } => {
                let id = match entry.id_on(cluster) {
                    Some(id) => id,
                    // Boxed: preparing is itself a leg (a rare one).
                    None => match Box::pin(reprepare(state, entry, cluster)).await {
                        Ok(id) => id,
                        Err(f) => return Ok(f),
                    },
                };
                with_id = match with_execute_id(&template.body, &id) {
                    Ok(body) => Frame {
                        body,
                        ..template.clone()
                    },
                    Err(e) => return Ok(error_frame(state, e)),
                };
                &with_id
            }
            Leg::Batch {
                batch,
                entries,
                template,
            } => {
                // Boxed, so that only a BATCH's leg carries its state.
                with_id = match Box::pin(batch_for(state, batch, entries, cluster)).await {
                    Ok(body) => Frame {
                        body,
                        ..template.clone()
                    },
                    Err(f) => return Ok(f),
                };
                &with_id
            }
        };
        let started = std::time::Instant::now();
        let sent = async { state.upstream(cluster).await?.forward(frame, timeout).await }.await;
        // A request never sent (its connection was being replaced) goes on
        // the new one; one that may have been sent, only when idempotent.
        let retrying = match &sent {
            Err(UpstreamError::Replaced { .. }) => !resent,
            Err(UpstreamError::Closed { .. }) => idempotent && !resent,
            _ => false,
        };
        if retrying {
            resent = true;
            continue;
        }
        record_leg(state, cluster, class, &sent, started);
        let a = sent?;
        let Some(entry) = unprepared(&leg, cluster, &a).filter(|_| !reprepared) else {
            return Ok(a);
        };
        reprepared = true;
        if let Err(f) = Box::pin(reprepare(state, entry, cluster)).await {
            return Ok(f);
        }
    }
}

/// A BATCH body with `cluster`'s ids of its prepared children (`entries`,
/// in order), prepared there first where missing; or the error to answer.
async fn batch_for(
    state: &Arc<SessionState>,
    batch: &Batch,
    entries: &[Arc<PreparedEntry>],
    cluster: ClusterId,
) -> Result<bytes::Bytes, Frame> {
    let mut b = batch.clone();
    let mut prepared = entries.iter();
    for child in b.children.iter_mut() {
        if let BatchStatement::Prepared(id) = &mut child.statement {
            let entry = prepared.next().expect("one entry per prepared child");
            *id = match entry.id_on(cluster) {
                Some(cluster_id) => cluster_id,
                None => reprepare(state, entry, cluster).await?,
            };
        }
    }
    Ok(b.encode(state.version))
}

/// One request to one cluster. `kind` decides whether it may be resent
/// after a closed connection (reads may) and how a timeout is reported.
pub(super) async fn send_one(
    state: &Arc<SessionState>,
    cluster: ClusterId,
    frame: Frame,
    kind: StatementKind,
    class: OpClass,
) -> Result<Frame, super::errors::RequestError> {
    let idempotent = kind == StatementKind::Read;
    let answers = vec![run(state, cluster, Leg::Raw(&frame), idempotent, class).await];
    join_counted(state, &[cluster], answers, kind)
}

/// Records one cluster leg: its latency and, when it failed, its error (a
/// timeout or an unreachable cluster counted as the error the client gets).
pub(super) fn record_leg(
    state: &SessionState,
    cluster: ClusterId,
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
        .cluster(cluster)
        .metrics
        .record(class, outcome, started.elapsed(), r.is_err());
}
