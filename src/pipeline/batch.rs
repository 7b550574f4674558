//! BATCH: every child classified (or looked up by its prepared id), the
//! batch given one write time, refused when its children's tenants are on
//! different routes, and sent to each cluster with that cluster's ids.

use std::sync::Arc;

use super::context::note;
use super::decide::{admit, route_for};
use super::errors::{malformed, RequestError};
use super::join::join_counted as join;
use super::leg::{self, Leg};
use super::rewrite::{bind_hidden, literal_for, now_micros, replacing};
use crate::cql::StatementKind;
use crate::frame::Frame;
use crate::metrics::OpClass;
use crate::protocol::request::{Batch, BatchStatement};
use crate::protocol::ErrorFrame;
use crate::routing::tenant::{Bound, Values};
use crate::routing::RoutePolicy;
use crate::session::{SessionState, Stamp};

pub(super) async fn batch(
    state: &Arc<SessionState>,
    policy: &RoutePolicy,
    frame: Frame,
    stamp: &mut Stamp,
) -> Result<Frame, RequestError> {
    stamp.op = OpClass::Write;
    let mut b = Batch::read(&frame.body, state.version).map_err(malformed)?;
    let ks = b.keyspace.clone().or_else(|| state.keyspace());
    let mut entries = Vec::new();
    let mut replay_unsafe = false;
    // Every child's tenant: the batch takes their route, which must be one.
    let mut tenants: Vec<Option<Arc<str>>> = Vec::new();
    for child in b.children.iter_mut() {
        let mut child_ks = ks.clone();
        let mut prepared = None;
        let c = match &mut child.statement {
            BatchStatement::Query(t) => {
                let c = state
                    .proxy
                    .statements()
                    .classifier()
                    .classify(t, ks.as_deref())
                    .map_err(|e| ErrorFrame::syntax(e.to_string()))?;
                if replacing(state, &c) {
                    *t = c.replace_functions(t, literal_for);
                }
                c
            }
            BatchStatement::Prepared(id) => {
                let e = state.proxy.statements().prepared().get(id).ok_or_else(|| {
                    state
                        .proxy
                        .metrics()
                        .prepared_misses
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    ErrorFrame::unprepared(id.clone())
                })?;
                child_ks = e.keyspace.clone().or(child_ks);
                prepared = Some(e.clone());
                e.classification.clone()
            }
        };
        // The tenant, from the values as the client bound them.
        let (keys, types) = match &prepared {
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
        let metrics_tenant = stamp.tenant;
        let named = note(state, stamp, &c, keys, child_ks.as_deref(), Some(&bound))?;
        stamp.tenant = metrics_tenant.or(stamp.tenant);
        stamp.op = OpClass::Write;
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
        if let Some(e) = prepared {
            bind_hidden(&e, &mut child.values, false)?;
            entries.push(e);
        }
        replay_unsafe |= c.conditional || c.increments;
        if c.has_timestamp {
            // A child with its own write time: leave the batch's alone.
            replay_unsafe = true;
        }
    }
    if b.timestamp.is_none() && state.proxy.config().writes.add_timestamps && !replay_unsafe {
        b.timestamp = Some(now_micros());
    }
    let retry = b.timestamp.is_some() && !replay_unsafe;
    let admitted = admit(
        state,
        policy,
        StatementKind::Write,
        tenants.iter().flatten().next().cloned(),
        tenants.iter().map(|t| t.as_deref()),
        "BATCH mixes",
    )?;
    let policy = admitted.policy(policy);
    let tenant = admitted.tenant.as_deref();
    let clusters = route_for(state, policy, StatementKind::Write, tenant)?.clusters;
    let leg = Leg::Batch {
        batch: &b,
        entries: &entries,
        template: &frame,
    };
    let answers = futures::future::join_all(
        clusters
            .iter()
            .map(|cluster| leg::run(state, *cluster, leg, retry, OpClass::Write)),
    )
    .await;
    join(state, &clusters, answers, StatementKind::Write)
}
