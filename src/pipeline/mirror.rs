//! The join stage for `async-secondary` writes: the write is appended to
//! the journal (write-ahead) and sent to both clusters at once with the
//! same write time; the client is answered once the primary has answered
//! and the record is durable. The secondary's send runs on in its own task:
//! its acknowledgement marks the record done, its failure leaves the
//! record to replay. The client never waits for the secondary.
//!
//! A write that cannot be replayed to the same cells (LWT, increments, no
//! fixed write time, server functions left to each cluster) is served as
//! in `sync`, and counted.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::errors::RequestError;
use super::join::join_counted;
use super::leg::{self, OwnedLeg};
use super::request::Request;
use crate::config::WhenFull;
use crate::cql::StatementKind;
use crate::frame::{Frame, Opcode};
use crate::journal::{Journal, JournalError};
use crate::metrics::OpClass;
use crate::protocol::ErrorFrame;
use crate::proxy::journal::KeptSync;
use crate::routing::decide::Route;
use crate::routing::ClusterId;
use crate::session::SessionState;
use crate::upstream::UpstreamError;

/// Settles a journaled write by the secondary's answer; a send that never
/// finished (its task dropped) leaves it to replay.
struct Settle {
    journal: Arc<Journal>,
    seq: u64,
    table: String,
    settled: bool,
}

impl Settle {
    fn settle(
        mut self,
        state: &SessionState,
        cluster: ClusterId,
        answer: &Result<Frame, UpstreamError>,
    ) {
        self.settled = true;
        match answer {
            Ok(f) if f.op() != Some(Opcode::Error) => self.journal.done(self.seq),
            _ => {
                let proxy = &state.proxy;
                proxy
                    .cluster(cluster)
                    .metrics
                    .mirror_write_failures
                    .fetch_add(1, Ordering::Relaxed);
                let slot = proxy.journal();
                slot.left_to_replay.fetch_add(1, Ordering::Relaxed);
                slot.count_mirror_failure(&proxy.cluster(cluster).name, &self.table);
                self.journal.release(self.seq);
            }
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if !self.settled {
            self.journal.release(self.seq);
        }
    }
}

/// Serves `r` (a write whose route is in `async-secondary`) through the
/// journal; None when it is to be served as in `sync` (not replayable, or
/// the journal full with `when_full = "sync"`).
pub(super) async fn write(
    state: &Arc<SessionState>,
    r: &Request,
    route: &Route,
    template: &Frame,
    retry: bool,
    class: OpClass,
    tenant: Option<&str>,
) -> Option<Result<Frame, RequestError>> {
    let slot = state.proxy.journal();
    let &[primary, secondary] = &route.clusters[..] else {
        return None;
    };
    let name = &state.proxy.cluster(secondary).name;
    if let Err(why) = r.replayable(state, retry) {
        slot.count_kept_sync(why, name, &r.table());
        return None;
    }
    let Some(journal) = slot.get() else {
        // Opened whenever async-secondary is put in force; not open only
        // if opening failed, which refused the change.
        slot.count_kept_sync(KeptSync::JournalFull, name, &r.table());
        return None;
    };
    let record = r.record(state, template, name, tenant);
    let appending = match journal.append(&record) {
        Ok(a) => {
            slot.note_appended();
            a
        }
        Err(e) => return full(state, e, name, &record.table),
    };
    let seq = appending.seq;
    // The secondary's send, now and on its own: the client never waits for it.
    let permit = state
        .proxy
        .cluster(secondary)
        .health
        .is_up()
        .then(|| slot.secondary_permits.clone().try_acquire_owned().ok())
        .flatten();
    let mut secondary_answer = None;
    let settle = Settle {
        journal: journal.clone(),
        seq,
        table: record.table,
        settled: false,
    };
    match permit {
        Some(permit) => {
            let owned = OwnedLeg::of(r.leg(template));
            let st = state.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            secondary_answer = Some(rx);
            tokio::spawn(async move {
                let _permit = permit;
                let a = leg::run(&st, secondary, owned.leg(), retry, class).await;
                settle.settle(&st, secondary, &a);
                let _ = tx.send(a);
            });
        }
        None => {
            slot.left_to_replay.fetch_add(1, Ordering::Relaxed);
            drop(settle);
        }
    }
    let (answer, durable) = tokio::join!(
        leg::run(state, primary, r.leg(template), retry, class),
        appending.durable()
    );
    if let Err(e) = durable {
        // Not in the journal: the write counts only once both clusters
        // have it, as in sync.
        tracing::error!(error = %e, "journal: a write could not be made durable; waiting for the secondary as in sync");
        let second = match secondary_answer {
            Some(rx) => rx.await.unwrap_or(Err(UpstreamError::Closed {
                addr: ([0, 0, 0, 0], 0).into(),
            })),
            None => {
                return Some(Err(ErrorFrame::new(
                    crate::protocol::ErrorCode::SERVER_ERROR,
                    format!("cutover: the write reached the {} cluster but could not be journaled for the {name} cluster: {e}", state.proxy.cluster(primary).name),
                )
                .into()))
            }
        };
        return Some(join_counted(
            state,
            &[primary, secondary],
            vec![answer, second],
            StatementKind::Write,
        ));
    }
    Some(join_counted(
        state,
        &[primary],
        vec![answer],
        StatementKind::Write,
    ))
}

/// A full (or failed) journal: served as in sync, or refused, per
/// `journal.when_full`.
fn full(
    state: &SessionState,
    e: JournalError,
    cluster: &str,
    table: &str,
) -> Option<Result<Frame, RequestError>> {
    let slot = state.proxy.journal();
    slot.note_full(&e);
    match slot.when_full {
        WhenFull::Sync => {
            slot.count_kept_sync(KeptSync::JournalFull, cluster, table);
            None
        }
        WhenFull::Refuse => {
            slot.refused_full.fetch_add(1, Ordering::Relaxed);
            Some(Err(ErrorFrame::new(
                crate::protocol::ErrorCode::OVERLOADED,
                format!("cutover: {e}; the write was not applied (journal.when_full = \"refuse\"): the secondary must catch up, or the journal be made larger"),
            )
            .into()))
        }
    }
}
