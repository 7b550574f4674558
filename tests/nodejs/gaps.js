// The Node.js cassandra-driver against one CQL port (argv[2], its data
// center argv[3]): named bind
// values on unprepared queries, and several counter updates to one cell in
// one counter BATCH. Prints one JSON line of what it read back; exits
// non-zero (with the error) if a request fails.
'use strict';
const cassandra = require('cassandra-driver');

async function main() {
  const port = Number(process.argv[2]);
  const client = new cassandra.Client({
    contactPoints: [`127.0.0.1:${port}`],
    localDataCenter: process.argv[3] || 'datacenter1',
    protocolOptions: { maxVersion: 4 },
  });
  await client.connect();
  try {
    await client.execute(
      "CREATE KEYSPACE IF NOT EXISTS nj WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    await client.execute('CREATE TABLE IF NOT EXISTS nj.t (k int PRIMARY KEY, v text)');
    await client.execute('CREATE TABLE IF NOT EXISTS nj.c (k int PRIMARY KEY, n counter)');
    // Named markers and `?` markers, given values by name, unprepared: the
    // driver sends them as named values (the QUERY's 0x40 flag).
    // (A JS number goes as a double without a hint, as for any unprepared query.)
    await client.execute('INSERT INTO nj.t (k, v) VALUES (:k, :v)', { k: 1, v: 'one' }, { prepare: false, hints: { k: 'int', v: 'text' } });
    await client.execute('INSERT INTO nj.t (k, v) VALUES (?, ?)', { v: 'two', k: 2 }, { prepare: false, hints: { k: 'int', v: 'text' } });
    const named = await client.execute('SELECT v FROM nj.t WHERE k = :k', { k: 1 }, { prepare: false, hints: { k: 'int' } });
    const both = await client.execute('SELECT k, v FROM nj.t', [], { prepare: true });
    // Three updates of one counter cell in one counter batch: Cassandra adds
    // them all up (1 + 2 - 5 = -2).
    await client.batch([
      { query: 'UPDATE nj.c SET n = n + 1 WHERE k = 1' },
      { query: 'UPDATE nj.c SET n = n + 2 WHERE k = 1' },
      { query: 'UPDATE nj.c SET n = n - 5 WHERE k = 1' },
    ], { counter: true, prepare: false });
    await client.batch([
      { query: 'UPDATE nj.c SET n = n + ? WHERE k = ?', params: [cassandra.types.Long.fromNumber(10), 2] },
      { query: 'UPDATE nj.c SET n = n - ? WHERE k = ?', params: [cassandra.types.Long.fromNumber(3), 2] },
    ], { counter: true, prepare: true });
    const counters = await client.execute('SELECT k, n FROM nj.c', [], { prepare: true });
    console.log(JSON.stringify({
      named: named.rows.map((r) => r.v),
      rows: both.rows.map((r) => [r.k, r.v]).sort((a, b) => a[0] - b[0]),
      counters: counters.rows.map((r) => [r.k, r.n.toString()]).sort((a, b) => a[0] - b[0]),
    }));
  } finally {
    await client.shutdown();
  }
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
