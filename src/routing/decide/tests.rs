//! Every phase × tenant status × statement shape, for the `sync` write
//! mode, against expectations written out by hand (not derived from the
//! functions under test).

use std::collections::HashMap;

use super::*;
use crate::config::RouteConfig;
use crate::routing::TenantRoute;

/// Shard 0 is clusters 0 (origin) and 1 (target); shard 1 is 2 and 3.
fn map() -> ShardMap {
    ShardMap::new(
        vec![[ClusterId(0), ClusterId(1)], [ClusterId(2), ClusterId(3)]],
        4,
    )
}

/// The default route on shard 0 in `phase`; tenant "acme" on shard 1 in
/// `phase` with `status`.
fn policy(phase: Phase, status: TenantStatus) -> RoutePolicy {
    let mut tenants = HashMap::new();
    tenants.insert(
        "acme".to_string(),
        TenantRoute {
            shard: Some("s1".into()),
            shard_id: Some(ShardId(1)),
            phase: Some(phase),
            status,
            write_mode: None,
        },
    );
    RoutePolicy {
        version: 1,
        route: RouteConfig {
            phase,
            ..RouteConfig::default()
        },
        shard: ShardId(0),
        tenants,
    }
}

/// The statements a client sends, as the pipeline presents them to `decide`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Read,
    Write,
    /// `INSERT ... IF NOT EXISTS`: a write (the join never retries it).
    Lwt,
    /// `UPDATE ... SET c = c + 1`: a write.
    Counter,
    /// A BATCH: routed as one write by its first tenant (`one_route`
    /// checks the others).
    Batch,
    Ddl,
    Use,
    Truncate,
    SystemRead,
    ContinuationPage,
}

const SHAPES: [Shape; 10] = [
    Shape::Read,
    Shape::Write,
    Shape::Lwt,
    Shape::Counter,
    Shape::Batch,
    Shape::Ddl,
    Shape::Use,
    Shape::Truncate,
    Shape::SystemRead,
    Shape::ContinuationPage,
];

const PHASES: [Phase; 5] = [
    Phase::OriginOnly,
    Phase::DualWrite,
    Phase::ShadowReads,
    Phase::TargetPrimary,
    Phase::TargetOnly,
];

const STATUSES: [TenantStatus; 3] = [
    TenantStatus::ReadWrite,
    TenantStatus::ReadOnly,
    TenantStatus::NotReady,
];

/// The connected clusters a USE also reaches; the cluster a continuation
/// page's paging state came from.
const CONNECTED: [ClusterId; 2] = [ClusterId(1), ClusterId(3)];
const ISSUER: ClusterId = ClusterId(3);

fn statement(shape: Shape) -> Statement<'static> {
    let kind = match shape {
        Shape::Read | Shape::SystemRead | Shape::ContinuationPage => StatementKind::Read,
        Shape::Write | Shape::Lwt | Shape::Counter | Shape::Batch => StatementKind::Write,
        Shape::Ddl => StatementKind::Schema,
        Shape::Use => StatementKind::Use,
        Shape::Truncate => StatementKind::Truncate,
    };
    Statement {
        kind,
        tenant: Some("acme"),
        system_table: shape == Shape::SystemRead,
        continues_on: (shape == Shape::ContinuationPage).then_some(ISSUER),
    }
}

/// What a client sees, by hand: the clusters in order, or the refusal.
fn expected(shape: Shape, phase: Phase, status: TenantStatus) -> Result<Vec<usize>, &'static str> {
    use Phase::*;
    // The tenant's clusters on shard 1: origin 2, target 3.
    let (read, write): (&[usize], &[usize]) = match phase {
        OriginOnly => (&[2], &[2]),
        DualWrite | ShadowReads => (&[2], &[2, 3]),
        TargetPrimary => (&[3], &[3, 2]),
        TargetOnly => (&[3], &[3]),
    };
    // The default route's primary on shard 0.
    let default_primary = match phase {
        OriginOnly | DualWrite | ShadowReads => 0,
        TargetPrimary | TargetOnly => 1,
    };
    let is_write = matches!(
        shape,
        Shape::Write | Shape::Lwt | Shape::Counter | Shape::Batch | Shape::Truncate
    );
    match (status, shape) {
        (TenantStatus::ReadOnly, _) if is_write => return Err("read-only"),
        (TenantStatus::NotReady, Shape::Read) => return Err("not-ready"),
        (TenantStatus::NotReady, _) if is_write => return Err("not-ready"),
        _ => {}
    }
    Ok(match shape {
        Shape::Read => read.to_vec(),
        _ if is_write => write.to_vec(),
        Shape::Ddl => {
            let mut all = vec![default_primary];
            all.extend((0..4).filter(|c| *c != default_primary));
            all
        }
        Shape::Use => {
            let mut v = vec![default_primary];
            v.extend([1, 3].into_iter().filter(|c| *c != default_primary));
            v
        }
        Shape::SystemRead => vec![default_primary],
        Shape::ContinuationPage => vec![3],
        _ => unreachable!("every shape is listed"),
    })
}

#[test]
fn every_phase_status_and_statement_shape() {
    let facts = Facts {
        ddl: DdlMode::All,
        column_tenants: false,
        connected: &CONNECTED,
    };
    let mut checked = 0;
    for phase in PHASES {
        for status in STATUSES {
            let p = policy(phase, status);
            for shape in SHAPES {
                let got = decide(statement(shape), &p, &map(), facts)
                    .map(|r| r.clusters.iter().map(|c| c.0).collect::<Vec<_>>())
                    .map_err(|e| match e {
                        Refusal::Tenant { status, .. } => status.name(),
                        other => panic!("{other}"),
                    });
                assert_eq!(
                    got,
                    expected(shape, phase, status),
                    "{shape:?} in {phase:?} for a {} tenant",
                    status.name()
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 5 * 3 * 10);
}

#[test]
fn a_route_carries_the_tenants_shard_and_phase() {
    let mut p = policy(Phase::TargetPrimary, TenantStatus::ReadWrite);
    p.route.phase = Phase::DualWrite;
    let facts = Facts {
        ddl: DdlMode::All,
        column_tenants: false,
        connected: &[],
    };
    let r = decide(
        Statement::new(StatementKind::Write, Some("acme")),
        &p,
        &map(),
        facts,
    )
    .unwrap();
    assert_eq!((r.shard, r.phase), (ShardId(1), Phase::TargetPrimary));
    assert_eq!(r.primary(), ClusterId(3));
    // A statement without a tenant takes the default route.
    let r = decide(
        Statement::new(StatementKind::Write, None),
        &p,
        &map(),
        facts,
    )
    .unwrap();
    assert_eq!((r.shard, r.phase), (ShardId(0), Phase::DualWrite));
    assert_eq!(r.clusters, vec![ClusterId(0), ClusterId(1)]);
}

#[test]
fn ddl_modes_and_a_truncate_of_shared_tables() {
    let p = policy(Phase::DualWrite, TenantStatus::ReadWrite);
    let facts = |ddl, column_tenants| Facts {
        ddl,
        column_tenants,
        connected: &[],
    };
    let ddl = Statement::new(StatementKind::Schema, None);
    let ids = |r: Route| r.clusters.iter().map(|c| c.0).collect::<Vec<_>>();
    assert_eq!(
        ids(decide(ddl, &p, &map(), facts(DdlMode::PrimaryOnly, false)).unwrap()),
        vec![0]
    );
    let refused = decide(ddl, &p, &map(), facts(DdlMode::Refuse, false)).unwrap_err();
    assert_eq!(refused, Refusal::SchemaChange);
    assert!(refused.to_string().contains("ddl = \"refuse\""));
    // Column tenants share tables: a TRUNCATE without a tenant empties the
    // table on every shard; with key-space tenants it follows the default.
    let truncate = Statement::new(StatementKind::Truncate, None);
    assert_eq!(
        ids(decide(truncate, &p, &map(), facts(DdlMode::All, true)).unwrap()),
        vec![0, 1, 2, 3]
    );
    assert_eq!(
        ids(decide(truncate, &p, &map(), facts(DdlMode::All, false)).unwrap()),
        vec![0, 1]
    );
}

#[test]
fn tenants_of_one_statement_must_share_a_route() {
    let mut p = policy(Phase::DualWrite, TenantStatus::ReadWrite);
    p.tenants.insert(
        "wayne".into(),
        TenantRoute {
            shard: None,
            shard_id: None,
            phase: None,
            status: TenantStatus::ReadWrite,
            write_mode: None,
        },
    );
    let names = [Some("acme"), Some("wayne")];
    let e = one_route(
        &p,
        StatementKind::Write,
        names.iter().copied(),
        "BATCH mixes",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cutover: this BATCH mixes tenants on different routes (acme, wayne); send one BATCH per tenant"
    );
    // The same tenant twice, or one alone, is one route.
    let same = [Some("acme"), Some("acme")];
    assert!(one_route(
        &p,
        StatementKind::Write,
        same.iter().copied(),
        "statement names"
    )
    .is_ok());
    // A refused status among them refuses the whole statement.
    p.tenants.get_mut("wayne").unwrap().status = TenantStatus::ReadOnly;
    let e = one_route(
        &p,
        StatementKind::Write,
        names.iter().copied(),
        "statement names",
    )
    .unwrap_err();
    assert!(
        matches!(e, Refusal::Tenant { ref tenant, .. } if tenant == "wayne"),
        "{e}"
    );
    assert!(
        one_route(
            &p,
            StatementKind::Read,
            names.iter().copied(),
            "statement names"
        )
        .is_err(),
        "different shards"
    );
}

#[test]
fn a_prepare_reaches_every_cluster_of_the_tenants_phase() {
    let ids = |v: Vec<ClusterId>| v.iter().map(|c| c.0).collect::<Vec<_>>();
    let p = policy(Phase::TargetPrimary, TenantStatus::ReadWrite);
    assert_eq!(ids(prepare_clusters(&p, &map(), Some("acme"))), vec![3, 2]);
    let p = policy(Phase::OriginOnly, TenantStatus::ReadWrite);
    assert_eq!(ids(prepare_clusters(&p, &map(), Some("acme"))), vec![2]);
    assert_eq!(ids(prepare_clusters(&p, &map(), None)), vec![0]);
}
