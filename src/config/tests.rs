use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml(text, Vec::new())
}

const MINIMAL: &str = r#"
[clusters.origin]
contact_points = ["127.0.0.1:9042"]
[clusters.target]
contact_points = ["127.0.0.1:9043"]
"#;

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.listen, "127.0.0.1:9042".parse().unwrap());
    assert_eq!(c.route.phase, Phase::DualWrite);
    assert_eq!(c.route.write_mode, WriteMode::Sync);
    assert_eq!(c.ddl, DdlMode::All);
    assert_eq!(
        c.shards["default"],
        ShardConfig {
            origin: "origin".into(),
            target: "target".into()
        }
    );
    assert_eq!(c.topology.instances, vec![c.listen]);
    assert_eq!(c.limits.max_frame_bytes.0, 16 * 1024 * 1024);
    assert_eq!(
        c.clusters["origin"].request_timeout.0,
        std::time::Duration::from_secs(10)
    );
}

#[test]
fn the_example_config_in_the_repository_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/cutover.example.toml");
    let c = Config::load(&path, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    // One instance: a driver of a single-instance user sees no peer that is down.
    assert_eq!(c.topology.instances, vec![c.listen]);
}

#[test]
fn every_problem_is_listed_at_once() {
    let e = parse(
        r#"
listen = "127.0.0.1:9042"
colour = "blue"
[limits]
max_in_flight_per_connection = 0
[topology]
instances = ["127.0.0.1:9042"]
index = 3
[clusters.origin]
contact_points = ["nohost"]
password = "x"
[shards.default]
origin = "origin"
target = "elsewhere"
[route]
shard = "default"
write_mode = "async-secondary"
[writes]
add_timestamps = false
"#,
    )
    .unwrap_err();
    let all = e.to_string();
    for expected in [
        "unknown key `colour`",
        "`limits.max_in_flight_per_connection` must be at least 1",
        "`topology.index` is 3",
        "\"nohost\" needs a port",
        "`clusters.origin.password` is set but `clusters.origin.username` is not",
        "`shards.default.target` names cluster \"elsewhere\", which is not configured",
        "needs `writes.add_timestamps = true`",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert_eq!(e.0.len(), 7, "{all}");
}

#[test]
fn a_wrong_type_or_enum_value_names_the_key() {
    let e = parse(&format!("{MINIMAL}\n[route]\nphase = \"half-way\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("half-way") && e.contains("dual-write"), "{e}");
    let e = parse(&format!(
        "{MINIMAL}\n[limits]\nmax_frame_bytes = \"16 parsecs\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown size unit"), "{e}");
}

#[test]
fn environment_overrides_every_level() {
    let vars = vec![
        (
            "CUTOVER_CLUSTERS__ORIGIN__CONTACT_POINTS".to_string(),
            "10.0.0.1:9042, 10.0.0.2:9042".to_string(),
        ),
        (
            "CUTOVER_CLUSTERS__ORIGIN__USERNAME".to_string(),
            "cassandra".to_string(),
        ),
        (
            "CUTOVER_CLUSTERS__ORIGIN__PASSWORD".to_string(),
            "0123".to_string(),
        ),
        (
            "CUTOVER_ROUTE__PHASE".to_string(),
            "target-primary".to_string(),
        ),
        (
            "CUTOVER_LIMITS__MAX_CLIENT_CONNECTIONS".to_string(),
            "50".to_string(),
        ),
        ("CUTOVER_LISTEN".to_string(), "0.0.0.0:9999".to_string()),
        ("UNRELATED".to_string(), "x".to_string()),
    ];
    let c = Config::from_toml(MINIMAL, vars).unwrap();
    assert_eq!(
        c.clusters["origin"].contact_points,
        ["10.0.0.1:9042", "10.0.0.2:9042"]
    );
    assert_eq!(
        c.clusters["origin"].password.as_ref().map(|p| p.expose()),
        Some("0123"),
        "digits stay a string"
    );
    assert_eq!(c.route.phase, Phase::TargetPrimary);
    assert_eq!(c.limits.max_client_connections, 50);
    assert_eq!(c.listen, "0.0.0.0:9999".parse().unwrap());
}

#[test]
fn a_bad_override_is_reported_with_its_variable() {
    let vars = vec![(
        "CUTOVER_LIMITS__PREPARED_CACHE_ENTRIES".to_string(),
        "lots".to_string(),
    )];
    let e = Config::from_toml(MINIMAL, vars).unwrap_err().to_string();
    assert!(
        e.contains("CUTOVER_LIMITS__PREPARED_CACHE_ENTRIES")
            && e.contains("\"lots\" is not an integer"),
        "{e}"
    );
}

#[test]
fn quick_start_builds_a_dual_write_config() {
    let c = Config::quick_start(
        "127.0.0.1:9042",
        "127.0.0.1:9043",
        "127.0.0.1:19042".parse().unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(c.shards.len(), 1);
    assert_eq!(c.route.phase, Phase::DualWrite);
    let e = Config::quick_start(
        "nohost",
        "127.0.0.1:9043",
        "127.0.0.1:19042".parse().unwrap(),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("needs a port"));
}

#[test]
fn metrics_log_admin_and_tenant_keys_are_checked_together() {
    let text = format!(
        "admin = \"0.0.0.0:9180\"\n{MINIMAL}\n[metrics]\ntenants = [\"a\", \"b\", \"c\"]\nmax_tenants = 2\nwindow = \"0s\"\n[log]\nfilter = \"cutover=shouting\"\n[tenants]\nkey = {{ keyspace = \"t_(\" }}\n"
    );
    let e = parse(&text).unwrap_err().0;
    let all = crate::config::messages(&e).join("\n");
    for needle in [
        "set `admin_token`",
        "`metrics.tenants` lists 3 tenants but `metrics.max_tenants` is 2",
        "`metrics.window` must be at least 1s",
        "`log.filter` \"cutover=shouting\" is not a valid filter",
        "`tenants.key.keyspace` is not a valid regex",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    let ok = format!(
        "admin = \"0.0.0.0:9180\"\nadmin_token = \"t\"\n{MINIMAL}\n[log]\nformat = \"json\"\n[tenants]\nkey = {{ keyspace = \"^t_(.*)$\" }}\n"
    );
    let c = parse(&ok).unwrap();
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(
        c.tenants.key,
        TenantKey::Keyspace {
            keyspace: "^t_(.*)$".into()
        }
    );
    let column = format!("{MINIMAL}\n[tenants]\nkey = {{ column = \"tenant_id\" }}\n");
    assert_eq!(
        parse(&column).unwrap().tenants.key,
        TenantKey::Column {
            column: "tenant_id".into()
        }
    );
    let blank = format!("{MINIMAL}\n[tenants]\nkey = {{ column = \"\" }}\n");
    assert!(parse(&blank).unwrap_err().0[0]
        .message
        .contains("`tenants.key.column` is \"\""));
}

#[test]
fn tenant_entries_are_checked() {
    let text = format!(
        "{MINIMAL}\n[shards.default]\norigin = \"origin\"\ntarget = \"target\"\n[shards.other]\norigin = \"target\"\ntarget = \"origin\"\n[tenants]\nkey = {{ keyspace = \"^t_(.*)$\" }}\n[[tenants.entries]]\ntenant = \"a\"\n[[tenants.entries]]\ntenant = \"a\"\nshard = \"nowhere\"\n[[tenants.entries]]\ntenant = \"b\"\nshard = \"other\"\nstatus = \"read-only\"\n"
    );
    let all = crate::config::messages(&parse(&text).unwrap_err().0).join("\n");
    for needle in [
        "lists tenant \"a\" twice",
        "shard \"nowhere\" is not configured",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    // A tenant on a shard of its own is fine.
    assert!(!all.contains("\"b\""), "{all}");
    let keyless = format!("{MINIMAL}\n[[tenants.entries]]\ntenant = \"a\"\n");
    assert!(parse(&keyless).unwrap_err().0[0]
        .message
        .contains("`tenants.key` is \"none\""));
    let ok = format!("{MINIMAL}\n[tenants]\nkey = {{ keyspace = \"^t_(.*)$\" }}\n[[tenants.entries]]\ntenant = \"a\"\nstatus = \"not-ready\"\n");
    let c = parse(&ok).unwrap();
    assert_eq!(c.tenants.entries[0].status, TenantStatus::NotReady);
}

#[test]
fn a_directory_table_is_checked() {
    let text = format!(
        "{MINIMAL}\n[tenants]\nkey = {{ keyspace = \"^t_(.*)$\" }}\n[tenants.table]\ncluster = \"elsewhere\"\nname = \"directory\"\npoll_every = \"10ms\"\n"
    );
    let all = crate::config::messages(&parse(&text).unwrap_err().0).join("\n");
    for needle in [
        "`tenants.table.cluster` is \"elsewhere\"",
        "`tenants.table.name` is \"directory\": give it as keyspace.table",
        "`tenants.table.poll_every` must be at least 100ms",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    let ok = format!(
        "{MINIMAL}\n[tenants]\nkey = {{ keyspace = \"^t_(.*)$\" }}\n[tenants.table]\ncluster = \"origin\"\nname = \"cutover.directory\"\n"
    );
    let t = parse(&ok).unwrap().tenants.table.unwrap();
    assert_eq!(t.poll_every.0, std::time::Duration::from_secs(5));
    let keyless =
        format!("{MINIMAL}\n[tenants.table]\ncluster = \"origin\"\nname = \"cutover.directory\"\n");
    assert!(parse(&keyless).unwrap_err().0[0]
        .message
        .contains("`tenants.table` is set"));
}

#[test]
fn a_log_filter_with_multi_byte_text_is_refused_not_a_panic() {
    // Found by the config fuzz target: tracing-subscriber's parser slices
    // inside the character and panics on this one.
    let text = format!("{MINIMAL}\n[log]\nfilter = \"o, s\u{fffd}=\"\n");
    let e = crate::config::messages(&parse(&text).unwrap_err().0).join("\n");
    assert!(e.contains("`log.filter`") && e.contains("is ASCII"), "{e}");
    assert!(super::log_filter("info, caf\u{e9}=debug").is_err());
    assert!(super::log_filter("info,cutover::proxy=debug").is_ok());
}

#[test]
fn the_journal_section_is_read_and_checked() {
    let c = parse(&format!(
        "{MINIMAL}\n[route]\nwrite_mode = \"async-secondary\"\n[journal]\ndir = \"/var/lib/cutover/journal\"\nmax_bytes = \"256MiB\"\nsegment_bytes = \"16MiB\"\ndurability = \"fsync\"\nwhen_full = \"refuse\"\nreplay_rate = 1000\n"
    ))
    .unwrap();
    assert_eq!(c.route.write_mode, WriteMode::AsyncSecondary);
    assert_eq!(c.journal.max_bytes.0, 256 * 1024 * 1024);
    assert_eq!(
        c.journal.durability,
        crate::config::JournalDurability::Fsync
    );
    assert_eq!(c.journal.when_full, crate::config::WhenFull::Refuse);
    assert_eq!(c.journal.replay_rate, 1000);
    let e = parse(&format!(
        "{MINIMAL}\n[journal]\nmax_bytes = \"1MiB\"\nsegment_bytes = \"1MiB\"\ngroup_commit_interval = \"0ms\"\nreplay_concurrency = 0\nwal = true\n"
    ))
    .unwrap_err();
    let keys: Vec<_> = e.0.iter().filter_map(|p| p.key.clone()).collect();
    for k in [
        "journal.max_bytes",
        "journal.group_commit_interval",
        "journal.replay_concurrency",
        "journal.wal",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} missing in {keys:?}: {e}");
    }
}

#[test]
fn every_key_of_a_wrong_type_is_reported_at_once() {
    let text = format!(
        "listen = 5\nworker_threads = \"two\"\n{MINIMAL}\n[limits]\nmax_client_connections = \"many\"\n"
    );
    let e = parse(&text).unwrap_err();
    let all = e.to_string();
    for key in [
        "listen:",
        "worker_threads:",
        "limits.max_client_connections:",
    ] {
        assert!(all.contains(key), "{key} in {all}");
    }
    assert_eq!(e.0.len(), 3, "{all}");
}

#[test]
fn a_host_name_where_an_address_goes_says_what_to_write() {
    let e = parse(&format!("listen = \"localhost:9142\"\n{MINIMAL}")).unwrap_err();
    let all = e.to_string();
    assert!(
        all.contains("listen: invalid socket address syntax"),
        "{all}"
    );
    assert!(all.contains("such as 127.0.0.1:9142"), "{all}");
}
