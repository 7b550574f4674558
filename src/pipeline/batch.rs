//! BATCH, a `Request` of its own: every child classified (or looked up by
//! its prepared id) and its tenants resolved, the batch refused when its
//! children's tenants are on different routes, given one write time, and
//! sent to each cluster with that cluster's ids.

use std::sync::Arc;

use super::context::note;
use super::decide::{admit, Admission};
use super::errors::{malformed, RequestError};
use super::leg::Leg;
use super::prepared::PreparedEntry;
use super::rewrite::{bind_hidden, literal_for, now_micros, replacing};
use crate::cql::{Classification, StatementKind};
use crate::frame::Frame;
use crate::journal::Statement;
use crate::metrics::OpClass;
use crate::protocol::request::{Batch, BatchStatement};
use crate::protocol::ErrorFrame;
use crate::proxy::journal::KeptSync;
use crate::routing::tenant::{Bound, Values};
use crate::routing::RoutePolicy;
use crate::session::{SessionState, Stamp};

/// One child of a BATCH, classified.
struct Child {
    c: Arc<Classification>,
    /// The keyspace it was classified in.
    keyspace: Option<String>,
    /// Its PREPARE, when it is sent by id.
    prepared: Option<Arc<PreparedEntry>>,
}

/// A BATCH, classified.
pub(super) struct BatchRequest {
    batch: Batch,
    /// The children, in the batch's order.
    children: Vec<Child>,
    /// The prepared children, in order (each cluster's ids are the leg's).
    entries: Vec<Arc<PreparedEntry>>,
}

impl BatchRequest {
    /// Reads the batch and classifies every child: a text in the batch's
    /// keyspace (or the session's), a prepared id by its PREPARE.
    pub(super) fn classify(
        state: &SessionState,
        frame: &Frame,
    ) -> Result<BatchRequest, RequestError> {
        let batch = Batch::read(&frame.body, state.version).map_err(malformed)?;
        let ks = batch.keyspace.clone().or_else(|| state.keyspace());
        let statements = state.proxy.statements();
        let mut children = Vec::with_capacity(batch.children.len());
        let mut entries = Vec::new();
        for child in &batch.children {
            match &child.statement {
                BatchStatement::Query(t) => {
                    let c = statements
                        .classifier()
                        .classify(t, ks.as_deref())
                        .map_err(|e| ErrorFrame::syntax(e.to_string()))?;
                    children.push(Child {
                        c,
                        keyspace: ks.clone(),
                        prepared: None,
                    });
                }
                BatchStatement::Prepared(id) => {
                    let e = statements.prepared().get(id).ok_or_else(|| {
                        state
                            .proxy
                            .metrics()
                            .prepared_misses
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        ErrorFrame::unprepared(id.clone())
                    })?;
                    let child_ks = e.keyspace.clone().or(ks.clone());
                    children.push(Child {
                        c: e.classification.clone(),
                        keyspace: child_ks,
                        prepared: Some(e.clone()),
                    });
                    entries.push(e);
                }
            }
        }
        Ok(BatchRequest {
            batch,
            children,
            entries,
        })
    }

    /// Every child's tenants (from the values as the client bound them);
    /// admitted when they share one route.
    pub(super) fn admit<'s>(
        &self,
        state: &'s SessionState,
        stamp: &mut Stamp,
        policy: &RoutePolicy,
    ) -> Result<Admission<'s>, RequestError> {
        let mut tenants: Vec<Option<Arc<str>>> = Vec::new();
        for (
            child,
            Child {
                c,
                keyspace: ks,
                prepared,
            },
        ) in self.batch.children.iter().zip(&self.children)
        {
            let (keys, types) = match prepared {
                Some(e) => e.tenant_keys(),
                None => (&c.tenant_keys[..], &[][..]),
            };
            let bound = Bound {
                values: Values::Decoded {
                    values: &child.values,
                    names: None,
                },
                types,
            };
            // The first child that names a tenant gives the series.
            let metrics_tenant = stamp.tenant;
            let named = note(state, stamp, c, keys, ks.as_deref(), Some(&bound))?;
            stamp.tenant = metrics_tenant.or(stamp.tenant);
            let mut child_tenants: Vec<Option<Arc<str>>> =
                named.tenants().map(|t| Some(t.name.clone())).collect();
            if child_tenants.is_empty() {
                child_tenants.push(None);
            }
            for t in child_tenants {
                if !tenants.contains(&t) {
                    tenants.push(t);
                }
            }
        }
        stamp.op = OpClass::Write;
        admit(
            state,
            policy,
            StatementKind::Write,
            tenants.iter().flatten().next().cloned(),
            tenants.iter().map(|t| t.as_deref()),
            "BATCH mixes",
        )
    }

    /// Server functions replaced in the children's texts, the prepared
    /// children's hidden values bound, and one write time for the batch
    /// unless a child is conditional, an increment or carries its own.
    /// Whether it may be sent again after a connection closed under it.
    pub(super) fn rewrite(&mut self, state: &SessionState) -> Result<bool, RequestError> {
        let mut replay_unsafe = false;
        for (child, Child { c, prepared, .. }) in self.batch.children.iter_mut().zip(&self.children)
        {
            match (&mut child.statement, prepared) {
                (BatchStatement::Query(t), _) if replacing(state, c) => {
                    *t = c.replace_functions(t, literal_for);
                }
                (BatchStatement::Prepared(_), Some(e)) => {
                    bind_hidden(e, &mut child.values, false)?;
                }
                _ => {}
            }
            // A child with its own write time: leave the batch's alone.
            replay_unsafe |= c.conditional || c.increments || c.has_timestamp;
        }
        let b = &mut self.batch;
        if b.timestamp.is_none() && state.proxy.config().writes.add_timestamps && !replay_unsafe {
            b.timestamp = Some(now_micros());
        }
        Ok(b.timestamp.is_some() && !replay_unsafe)
    }

    /// Whether the batch can be replayed to the same cells (`retry`: it
    /// carries a fixed write time); why not otherwise.
    pub(super) fn replayable(&self, state: &SessionState, retry: bool) -> Result<(), KeptSync> {
        for child in &self.children {
            super::request::replayable(state, &child.c, true)?;
        }
        if retry {
            Ok(())
        } else {
            Err(KeptSync::NoWriteTime)
        }
    }

    /// `keyspace.table` of the first table a child writes.
    pub(super) fn table(&self) -> String {
        self.children
            .iter()
            .find_map(|c| {
                c.c.tables
                    .first()
                    .map(|t| super::request::table_name(t, c.keyspace.as_deref()))
            })
            .unwrap_or_default()
    }

    /// A record's prepared statements (in order) and write time.
    pub(super) fn for_record(&self) -> (Vec<Statement>, Option<i64>) {
        (
            self.entries
                .iter()
                .map(|e| super::request::statement_of(e))
                .collect(),
            self.batch.timestamp,
        )
    }

    pub(super) fn leg<'a>(&'a self, template: &'a Frame) -> Leg<'a> {
        Leg::Batch {
            batch: &self.batch,
            entries: &self.entries,
            template,
        }
    }
}
