//! The session recorded into the scylla-rust-driver fixtures
//! (`proto-fixtures/capture.sh` runs it through the recording relay).
//!
//!     cargo run --example scylla_fixture_session -- 127.0.0.1:PORT

use scylla::client::session_builder::SessionBuilder;
use scylla::statement::batch::Batch;
use scylla::statement::unprepared::Statement;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .ok_or("usage: scylla_fixture_session HOST:PORT")?;
    let s = SessionBuilder::new().known_node(addr).build().await?;
    s.query_unpaged("CREATE KEYSPACE fxr WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}", ())
        .await?;
    s.query_unpaged(
        "CREATE TABLE fxr.t (p text, c int, v text, PRIMARY KEY (p, c))",
        (),
    )
    .await?;
    let ins = s
        .prepare("INSERT INTO fxr.t (p, c, v) VALUES (?, ?, ?)")
        .await?;
    for i in 0..5 {
        s.execute_unpaged(&ins, ("k", i, format!("v{i}"))).await?;
    }
    let mut b = Batch::default();
    b.append_statement(ins.clone());
    b.append_statement(Statement::new(
        "INSERT INTO fxr.t (p, c, v) VALUES ('k', 6, 'v6')",
    ));
    s.batch(&b, (("k", 5, "v5"), ())).await?;
    let mut sel = s.prepare("SELECT c, v FROM fxr.t WHERE p = ?").await?;
    sel.set_page_size(3);
    let (first, _) = s
        .execute_single_page(&sel, ("k",), scylla::response::PagingState::start())
        .await?;
    assert_eq!(first.into_rows_result()?.rows_num(), 3);
    let all = s
        .query_unpaged("SELECT c FROM fxr.t WHERE p = 'k'", ())
        .await?
        .into_rows_result()?
        .rows_num();
    assert_eq!(all, 7);
    Ok(())
}
