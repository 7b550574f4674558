//! Node behaviour that drivers rely on implicitly, checked through our own
//! client: schema versions, key lookups, deletions, USE, TRUNCATE, DESCRIBE.

use bytes::Bytes;
use cutover::client::{Client, ClientError};
use cutover::node::{self, NodeConfig, RunningNode};
use cutover::protocol::reader::RawValue;
use cutover::protocol::response::{ResultBody, Rows};

async fn start() -> (RunningNode, Client) {
    let n = node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let mut c = Client::connect(n.addr, 4, None, None).await.unwrap();
    c.query("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
        .await
        .unwrap();
    c.query("CREATE TABLE ks.t (p int, c int, v text, PRIMARY KEY (p, c))")
        .await
        .unwrap();
    (n, c)
}

async fn rows(c: &mut Client, q: &str) -> Rows {
    match c.query(q).await.unwrap() {
        ResultBody::Rows(r) => r,
        other => panic!("{q}: {other:?}"),
    }
}

fn int(b: &Option<Bytes>) -> i32 {
    i32::from_be_bytes(b.as_deref().unwrap().try_into().unwrap())
}

fn text(b: &Option<Bytes>) -> String {
    String::from_utf8(b.as_deref().unwrap().to_vec()).unwrap()
}

async fn schema_version(c: &mut Client) -> Bytes {
    rows(
        c,
        "SELECT schema_version FROM system.local WHERE key = 'local'",
    )
    .await
    .rows[0][0]
        .clone()
        .unwrap()
}

#[tokio::test]
async fn schema_version_changes_with_every_schema_change_and_only_then() {
    let (n, mut c) = start().await;
    let v1 = schema_version(&mut c).await;
    c.query("INSERT INTO ks.t (p, c, v) VALUES (1, 1, 'x')")
        .await
        .unwrap();
    assert_eq!(
        schema_version(&mut c).await,
        v1,
        "data changes leave the schema version alone"
    );
    c.query("ALTER TABLE ks.t ADD w int").await.unwrap();
    let v2 = schema_version(&mut c).await;
    assert_ne!(v2, v1);
    c.query("CREATE TYPE ks.pt (x int)").await.unwrap();
    let v3 = schema_version(&mut c).await;
    assert_ne!(v3, v2);
    let cols = rows(&mut c, "SELECT column_name, kind FROM system_schema.columns WHERE keyspace_name = 'ks' AND table_name = 't'").await;
    let names: Vec<String> = cols.rows.iter().map(|r| text(&r[0])).collect();
    assert_eq!(
        names,
        ["c", "p", "v", "w"],
        "system_schema.columns follows ALTER TABLE"
    );
    n.shutdown().await;
}

#[tokio::test]
async fn in_on_the_partition_key_and_deletions() {
    let (n, mut c) = start().await;
    for p in 0..4 {
        for ck in 0..5 {
            c.query(&format!(
                "INSERT INTO ks.t (p, c, v) VALUES ({p}, {ck}, 'v{p}{ck}')"
            ))
            .await
            .unwrap();
        }
    }
    let r = rows(&mut c, "SELECT p, c FROM ks.t WHERE p IN (3, 1) AND c = 2").await;
    assert_eq!(
        r.rows
            .iter()
            .map(|r| (int(&r[0]), int(&r[1])))
            .collect::<Vec<_>>(),
        [(1, 2), (3, 2)]
    );
    // A clustering range delete, a row delete, a partition delete.
    c.query("DELETE FROM ks.t WHERE p = 0 AND c >= 3")
        .await
        .unwrap();
    c.query("DELETE FROM ks.t WHERE p = 1 AND c = 0")
        .await
        .unwrap();
    c.query("DELETE FROM ks.t WHERE p = 2").await.unwrap();
    let count = |r: Rows| i64::from_be_bytes(r.rows[0][0].as_deref().unwrap().try_into().unwrap());
    assert_eq!(
        count(rows(&mut c, "SELECT COUNT(*) FROM ks.t WHERE p = 0").await),
        3
    );
    assert_eq!(
        count(rows(&mut c, "SELECT COUNT(*) FROM ks.t WHERE p = 1").await),
        4
    );
    assert_eq!(
        count(rows(&mut c, "SELECT COUNT(*) FROM ks.t WHERE p = 2").await),
        0
    );
    assert_eq!(count(rows(&mut c, "SELECT COUNT(*) FROM ks.t").await), 12);
    // A write older than the partition tombstone stays deleted.
    c.query("INSERT INTO ks.t (p, c, v) VALUES (2, 9, 'old') USING TIMESTAMP 1")
        .await
        .unwrap();
    assert_eq!(
        count(rows(&mut c, "SELECT COUNT(*) FROM ks.t WHERE p = 2").await),
        0
    );
    n.shutdown().await;
}

#[tokio::test]
async fn use_truncate_and_describe() {
    let (n, mut c) = start().await;
    match c.query("USE ks").await.unwrap() {
        ResultBody::SetKeyspace(k) => assert_eq!(k, "ks"),
        other => panic!("{other:?}"),
    }
    c.query("INSERT INTO t (p, c, v) VALUES (1, 1, 'unqualified')")
        .await
        .unwrap();
    assert_eq!(
        text(&rows(&mut c, "SELECT v FROM t WHERE p = 1").await.rows[0][0]),
        "unqualified"
    );
    let d = rows(&mut c, "DESCRIBE KEYSPACE ks").await;
    let kinds: Vec<String> = d.rows.iter().map(|r| text(&r[1])).collect();
    assert_eq!(kinds, ["keyspace", "table"]);
    assert!(text(&d.rows[1][3]).starts_with(
        "CREATE TABLE ks.t (\n    p int,\n    c int,\n    v text,\n    PRIMARY KEY (p, c)\n)"
    ));
    c.query("TRUNCATE t").await.unwrap();
    assert!(rows(&mut c, "SELECT * FROM t").await.rows.is_empty());
    match c.query("USE nope").await {
        Err(ClientError::Server(e)) => assert_eq!(
            (e.code.0, e.message.as_str()),
            (0x2200, "Keyspace 'nope' does not exist")
        ),
        other => panic!("{other:?}"),
    }
    n.shutdown().await;
}

#[tokio::test]
async fn prepared_ids_are_cassandras_and_bind_errors_are_clear() {
    let (n, mut c) = start().await;
    let text = "SELECT v FROM ks.t WHERE p = ? AND c = ?";
    let p = c.prepare(text).await.unwrap();
    assert_eq!(&p.id[..], &cutover::protocol::prepared_id(None, text)[..]);
    assert_eq!(p.pk_indexes, vec![0]);
    assert_eq!(
        p.bind
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["p", "c"]
    );
    let one = RawValue::Bytes(Bytes::copy_from_slice(&1i32.to_be_bytes()));
    match c.execute(&p, vec![one]).await {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code.0, 0x2200);
            assert!(
                e.message
                    .contains("2 markers(?) in CQL but 1 bound variables"),
                "{}",
                e.message
            );
        }
        other => panic!("{other:?}"),
    }
    let bad = RawValue::Bytes(Bytes::from_static(b"abc"));
    match c.execute(&p, vec![bad.clone(), bad]).await {
        Err(ClientError::Server(e)) => assert!(
            e.message.contains("Expected 4 bytes for a int value"),
            "{}",
            e.message
        ),
        other => panic!("{other:?}"),
    }
    n.shutdown().await;
}
