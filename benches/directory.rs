//! What a directory lookup costs on the request path: `for_tenant` on a
//! policy snapshot holding 1,000,000 tenants, for tenants that are listed
//! and tenants that are not, against a plain `HashMap<String, u32>` lookup
//! of the same names in the same process (the baseline). With tenants
//! keyed by a column, also what finding the tenant costs first: finding the
//! tenant column's value in an EXECUTE body and reading it (`resolve`).
//!
//!     cargo bench --bench directory [-- --quick]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use std::sync::Arc;

use bytes::Bytes;
use cutover::config::{Phase, RouteConfig, TenantKey, TenantStatus};
use cutover::cql::classify_keyed;
use cutover::metrics::{Metrics, MetricsOptions};
use cutover::protocol::bound::BoundValues;
use cutover::protocol::reader::RawValue;
use cutover::protocol::request::{Execute, QueryParams};
use cutover::protocol::ColumnType;
use cutover::routing::tenant::{Bound, TenantResolver, Values};
use cutover::routing::{RoutePolicy, ShardId, TenantRoute};

const TENANTS: usize = 1_000_000;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let lookups = if quick { 2_000_000 } else { 20_000_000 };
    let names: Vec<String> = (0..TENANTS).map(|i| format!("tenant-{i:07}")).collect();
    let absent: Vec<String> = (0..10_000).map(|i| format!("stranger-{i:05}")).collect();
    let started = Instant::now();
    let policy = RoutePolicy {
        version: 1,
        route: RouteConfig::default(),
        shard: ShardId(0),
        tenants: names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.clone(),
                    TenantRoute {
                        shard: Some(format!("shard-{}", i % 4)),
                        shard_id: Some(ShardId(i % 4)),
                        phase: Some(if i % 2 == 0 {
                            Phase::DualWrite
                        } else {
                            Phase::TargetPrimary
                        }),
                        status: TenantStatus::ReadWrite,
                        write_mode: None,
                    },
                )
            })
            .collect(),
    };
    let build = started.elapsed();
    let plain: HashMap<String, u32> = names.iter().map(|n| (n.clone(), 1)).collect();
    // A pseudo-random walk over the names, the same for every measurement.
    let order: Vec<usize> = (0..lookups).map(|i| (i * 7_919 + 13) % TENANTS).collect();

    let time = |f: &dyn Fn(usize) -> u64| {
        let t = Instant::now();
        let mut acc = 0u64;
        for &i in &order {
            acc = acc.wrapping_add(f(i));
        }
        black_box(acc);
        t.elapsed().as_nanos() as f64 / order.len() as f64
    };
    let listed = time(&|i| policy.for_tenant(Some(black_box(&names[i]))).phase as u64);
    let unlisted = time(&|i| {
        policy
            .for_tenant(Some(black_box(&absent[i % absent.len()])))
            .phase as u64
    });
    let none = time(&|i| policy.for_tenant(black_box(None)).phase as u64 + i as u64);
    let baseline = time(&|i| *plain.get(black_box(&names[i])).unwrap_or(&0) as u64);
    println!(
        "directory lookup, {TENANTS} tenants, {lookups} lookups each (snapshot built in {build:?})"
    );
    println!(
        "  listed tenant          {listed:>6.1} ns/lookup   ({:.2}x the baseline)",
        listed / baseline
    );
    println!("  unlisted tenant        {unlisted:>6.1} ns/lookup");
    println!("  request without tenant {none:>6.1} ns/lookup");
    println!("  baseline HashMap<String, u32>::get  {baseline:>6.1} ns/lookup");
    // Within the resolver's cache of 10,000 names, and well beyond it.
    for distinct in [5_000, 100_000] {
        column_key(&policy, &names, &order, baseline, distinct);
    }
}

/// The tenant of a prepared INSERT's EXECUTE, keyed by a text column: the
/// values decoded from the body, the tenant read from its marker, then the
/// directory lookup.
fn column_key(
    policy: &RoutePolicy,
    names: &[String],
    order: &[usize],
    baseline: f64,
    distinct: usize,
) {
    let resolver = TenantResolver::new(
        &TenantKey::Column {
            column: "tenant_id".into(),
        },
        Arc::new(Metrics::new(MetricsOptions::default(), &[])),
    );
    let c = classify_keyed(
        "INSERT INTO app.orders (tenant_id, id, v) VALUES (?, ?, ?)",
        Some("app"),
        resolver.column(),
    )
    .unwrap();
    let types = [
        Some(ColumnType::Varchar),
        Some(ColumnType::Int),
        Some(ColumnType::Varchar),
    ];
    // One EXECUTE body per name, as a driver would send it.
    let bodies: Vec<Bytes> = names
        .iter()
        .take(distinct)
        .map(|n| {
            Execute {
                id: Bytes::from_static(&[7; 16]),
                result_metadata_id: None,
                params: QueryParams {
                    consistency: 1,
                    values: vec![
                        RawValue::Bytes(Bytes::copy_from_slice(n.as_bytes())),
                        RawValue::Bytes(Bytes::from_static(&[0, 0, 0, 1])),
                        RawValue::Bytes(Bytes::from_static(b"value")),
                    ],
                    ..Default::default()
                },
            }
            .encode(4)
        })
        .collect();
    let t = Instant::now();
    let mut acc = 0u64;
    for &i in order {
        let body = &bodies[i % bodies.len()];
        let bound = Bound {
            values: Values::InPlace(
                BoundValues::of_execute(black_box(body), 4)
                    .unwrap()
                    .unwrap(),
            ),
            types: &types,
        };
        let r = resolver.resolve(&c, &c.tenant_keys, Some("app"), Some(&bound));
        let name = r.first.map(|t| t.name);
        acc = acc.wrapping_add(policy.for_tenant(name.as_deref()).phase as u64);
    }
    black_box(acc);
    let per = t.elapsed().as_nanos() as f64 / order.len() as f64;
    println!(
        "  tenant column, {distinct:>6} tenants in turn: value found in the EXECUTE, read, looked up {per:>6.1} ns/request ({:.2}x the baseline)",
        per / baseline
    );
}
