use super::*;
use std::sync::Arc;

fn config() -> Config {
    Config::quick_start(
        "127.0.0.1:9042",
        "127.0.0.1:9043",
        "127.0.0.1:0".parse().unwrap(),
        None,
    )
    .unwrap()
}

/// A journal gate that answers as told.
struct Gate {
    open: Result<(), String>,
    backlog: u64,
}

impl JournalGate for Gate {
    fn open(&self) -> Result<(), String> {
        self.open.clone()
    }
    fn backlog(&self, cluster: &str) -> u64 {
        if cluster == "target" {
            self.backlog
        } else {
            0
        }
    }
}

#[test]
fn reads_do_not_move_to_a_cluster_with_journal_backlog_unless_forced() {
    let s = store();
    s.set_journal_gate(Arc::new(Gate {
        open: Ok(()),
        backlog: 7,
    }));
    // Writes may still change mode; reads stay on the origin.
    let e = s.apply(phase(Phase::TargetPrimary), "test").unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].key.as_deref(), Some("route.phase"));
    assert!(
        e[0].message.contains("7 journaled writes"),
        "{}",
        e[0].message
    );
    assert!(e[0].message.contains("force"), "{}", e[0].message);
    assert_eq!(s.snapshot().version, 1);
    // Shadow reads keep the origin answering: allowed.
    assert!(s.apply(phase(Phase::ShadowReads), "test").is_ok());
    let forced = PolicyPatch {
        force: true,
        ..phase(Phase::TargetPrimary)
    };
    let p = s.apply(forced, "test").unwrap().policy;
    assert_eq!(p.primary(), Side::Target);
}

fn store() -> PolicyStore {
    PolicyStore::new(&config(), None)
}

fn phase(p: Phase) -> PolicyPatch {
    PolicyPatch {
        route: Some(RoutePatch {
            phase: Some(p),
            ..Default::default()
        }),
        force: false,
    }
}

#[test]
fn a_valid_change_is_a_new_version_and_an_invalid_one_changes_nothing() {
    let s = store();
    let before = s.snapshot();
    assert_eq!((before.version, before.primary()), (1, Side::Origin));
    let p = s.apply(phase(Phase::TargetPrimary), "test").unwrap().policy;
    assert_eq!((p.version, p.primary()), (2, Side::Target));
    assert_eq!(p.write_sides(), vec![Side::Target, Side::Origin]);
    // The old snapshot is unchanged for the requests still holding it.
    assert_eq!(before.primary(), Side::Origin);
    let bad = PolicyPatch {
        route: Some(RoutePatch {
            shard: Some("elsewhere".into()),
            write_mode: Some(WriteMode::AsyncSecondary),
            ..Default::default()
        }),
        force: false,
    };
    // A journal that cannot be opened refuses async-secondary.
    s.set_journal_gate(Arc::new(Gate {
        open: Err("cannot create /nowhere/journal".into()),
        backlog: 0,
    }));
    let e = s.apply(bad, "test").unwrap_err();
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e.iter().any(|p| p.key.as_deref() == Some("journal.dir")
            && p.message.contains("cannot create /nowhere/journal")),
        "{e:?}"
    );
    assert_eq!(s.snapshot().version, 2);
    // The same route again is not a new version.
    assert_eq!(
        s.apply(phase(Phase::TargetPrimary), "test")
            .unwrap()
            .policy
            .version,
        2
    );
}

#[test]
fn phases_use_their_clusters() {
    let s = store();
    let only = s.apply(phase(Phase::OriginOnly), "test").unwrap().policy;
    assert_eq!(only.phase_sides(), vec![Side::Origin]);
    let target = s.apply(phase(Phase::TargetOnly), "test").unwrap().policy;
    assert_eq!(target.phase_sides(), vec![Side::Target]);
    let shadow = s.apply(phase(Phase::ShadowReads), "test").unwrap().policy;
    assert_eq!(shadow.primary(), Side::Origin);
    assert_eq!(shadow.phase_sides(), vec![Side::Origin, Side::Target]);
}

#[test]
fn a_tenant_without_its_own_phase_follows_the_default_route() {
    let mut c = config();
    c.tenants.entries = vec![
        TenantEntry {
            tenant: "ro".into(),
            shard: None,
            phase: None,
            status: TenantStatus::ReadOnly,
            write_mode: None,
        },
        TenantEntry {
            tenant: "tp".into(),
            shard: None,
            phase: Some(Phase::TargetPrimary),
            status: TenantStatus::ReadWrite,
            write_mode: None,
        },
    ];
    let s = PolicyStore::new(&c, None);
    let p = s.snapshot();
    assert_eq!(p.for_tenant(Some("ro")).status, TenantStatus::ReadOnly);
    assert_eq!(p.for_tenant(Some("ro")).phase, Phase::DualWrite);
    assert_eq!(p.for_tenant(Some("tp")).phase, Phase::TargetPrimary);
    assert_eq!(p.for_tenant(Some("other")).status, TenantStatus::ReadWrite);
    let p = s.apply(phase(Phase::OriginOnly), "test").unwrap().policy;
    assert_eq!(p.for_tenant(Some("ro")).phase, Phase::OriginOnly);
    assert_eq!(p.for_tenant(Some("tp")).phase, Phase::TargetPrimary);
    assert_eq!(p.for_tenant(None).phase, Phase::OriginOnly);
}

#[test]
fn routes_name_the_shards_the_proxy_started_with() {
    let mut c = config();
    c.shards.insert(
        "second".into(),
        crate::config::ShardConfig {
            origin: "target".into(),
            target: "origin".into(),
        },
    );
    let s = PolicyStore::new(&c, None);
    assert_eq!(s.snapshot().shard, ShardId(0), "default < second");
    let p = s
        .apply(
            PolicyPatch {
                route: Some(RoutePatch {
                    shard: Some("second".into()),
                    ..Default::default()
                }),
                force: false,
            },
            "test",
        )
        .unwrap()
        .policy;
    assert_eq!(p.shard, ShardId(1));
    assert_eq!(p.for_tenant(Some("anyone")).shard, ShardId(1));
    let e = directory(
        &s.shards,
        &[TenantEntry {
            tenant: "x".into(),
            shard: Some("third".into()),
            phase: None,
            status: TenantStatus::ReadWrite,
            write_mode: None,
        }],
    )
    .unwrap_err();
    assert!(
        e[0].message.contains("not one this proxy started with"),
        "{e:?}"
    );
}

#[test]
fn reload_needs_a_file() {
    let e = store().reload(Vec::new(), "test").unwrap_err();
    assert!(e[0].message.contains("without a config file"));
}
