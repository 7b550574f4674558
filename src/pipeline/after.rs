//! The after stage: what the pipeline does with a request's answer
//! besides returning it — pinning the pages of a paged read to the cluster
//! that issued them, and starting the shadow read of a read in the
//! `shadow-reads` phase (compared in `shadow`). The page pins and the
//! shadow comparison themselves know no session.

use std::sync::Arc;

use bytes::Bytes;

use crate::cql::{Classification, StatementKind};
use crate::frame::{Frame, Opcode};
use crate::routing::ClusterId;
use crate::routing::RoutePolicy;
use crate::session::SessionState;

/// For a read that continues a paged result: the cluster that issued its
/// paging state (a continuation page stays there whatever the policy says
/// now). `paging_state` decodes it, only for such reads.
pub(super) fn continuation_side(
    state: &SessionState,
    c: &Classification,
    continues: bool,
    paging_state: impl FnOnce() -> Option<Bytes>,
) -> Option<ClusterId> {
    if c.kind != StatementKind::Read || !continues {
        return None;
    }
    state.proxy.statements().pages().pinned(&paging_state()?)
}

/// Remembers which cluster issued the paging state of a read's answer.
pub(super) fn pin_pages(
    state: &SessionState,
    c: &Classification,
    cluster: ClusterId,
    answer: &Frame,
) {
    if c.kind == StatementKind::Read && answer.op() == Some(Opcode::Result) {
        if let Some(p) = crate::protocol::response::read_paging_state(&answer.body) {
            state.proxy.statements().pages().pin(p, cluster);
        }
    }
}

/// The cluster a read is shadowed to: in `shadow-reads`, a read's first
/// page (no paging state) also goes to the secondary of its shard.
pub(super) fn shadowing(
    state: &SessionState,
    policy: &RoutePolicy,
    route: &crate::routing::decide::Route,
    c: &Classification,
    continues_a_page: bool,
) -> Option<ClusterId> {
    let shadowed = match route.phase {
        crate::config::Phase::ShadowReads => true,
        crate::config::Phase::TargetPrimary => policy.route.shadow_target_primary,
        _ => false,
    };
    if !shadowed || c.kind != StatementKind::Read || c.system || continues_a_page {
        return None;
    }
    Some(
        state
            .proxy
            .routing()
            .shards()
            .secondary(route.shard, route.phase),
    )
}

/// Starts a shadow read (`secondary`) and its comparison on its own task;
/// the returned sender takes the primary's answer. None when the shadow
/// queue is full (the read is dropped and counted).
pub(super) fn start_shadow(
    state: &Arc<SessionState>,
    c: &Classification,
    keyspace: Option<&str>,
    tenant: Option<Arc<str>>,
    key: String,
    secondary: impl std::future::Future<Output = Option<Frame>> + Send + 'static,
) -> Option<tokio::sync::oneshot::Sender<Frame>> {
    let shadow = state.proxy.statements().shadow().clone();
    let permit = shadow.admit()?;
    let table = c
        .tables
        .first()
        .map(|t| {
            format!(
                "{}.{}",
                t.keyspace.as_deref().or(keyspace).unwrap_or("?"),
                t.table
            )
        })
        .unwrap_or_else(|| "?".into());
    let tenant = tenant.map(|t| t.to_string());
    let cx = super::shadow::ShadowContext {
        table,
        tenant,
        key,
        version: state.version,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    state.tasks.spawn(async move {
        shadow.compare(cx, rx, secondary).await;
        drop(permit);
    });
    Some(tx)
}
