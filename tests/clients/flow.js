// The client scenario of tests/test_server_clients.py, through node-postgres (`pg` from npm).
// Parameterised queries go through the extended protocol; one JSON object per line on stdout.
// Usage: node flow.js <collection> <docs.tsv>   (connection from PGHOST, PGPORT, PGUSER, ...)
const fs = require('fs');
const { Client } = require('pg');

const [coll, docsPath] = process.argv.slice(2);
const docs = fs.readFileSync(docsPath, 'utf8').trim().split('\n').map((line) => line.split('\t'));
const out = (step, value) => console.log(JSON.stringify({ step, ...value }));

(async () => {
  const c = new Client();
  await c.connect();
  await c.query(`DROP COLLECTION IF EXISTS ${coll}`);
  await c.query(`CREATE COLLECTION ${coll} (title text, year int) WITH (dense => 'none', dim => 3)`);
  for (const [id, title, year, metadata, vector] of docs) {
    await c.query(`INSERT INTO ${coll} (id, title, year, metadata, embedding) VALUES ($1, $2, $3, $4, $5)`,
      [id, title, Number(year), JSON.parse(metadata), vector]);
  }
  let r = await c.query(
    `SELECT id, score FROM ${coll} SEARCH HYBRID(SPARSE($1), DENSE($2)) WITH PRF DIVERSIFY BY COVERAGE(candidates => 10) WHERE year >= $3 LIMIT 3`,
    ['sparse retrieval', '[1,0,0]', 2020]);
  out('search', { rows: r.rows.map((row) => [row.id, row.score]) });
  r = await c.query(`EXPLAIN ANALYZE SELECT id, score FROM ${coll} SEARCH SPARSE('retrieval') LIMIT 3`);
  out('explain', { lines: r.rows.map((row) => row['QUERY PLAN']) });
  try {
    await c.query(`SELECT id FROM ${coll} SEARCH SPARSE('x') LIMT 5`);
  } catch (e) {
    out('syntax', { code: e.code, position: Number(e.position) });
  }
  await c.query('BEGIN');
  await c.query(`CREATE TABLE ${coll}_notes (id text PRIMARY KEY, note text)`);
  await c.query(`INSERT INTO ${coll}_notes VALUES ($1, $2), ($3, $4)`, ['d1', 'first note', 'tx', 'note on tx']);
  await c.query(`INSERT INTO ${coll} (id, title, year, embedding) VALUES ($1, $2, $3, $4)`, ['tx', 'zebra transaction', 2025, '[0,0,1]']);
  r = await c.query(`SELECT id FROM ${coll} SEARCH SPARSE($1) LIMIT 3`, ['zebra']);
  out('in_transaction', { rows: r.rows.map((row) => row.id) });
  r = await c.query(`SELECT n.id, n.note, d.title FROM ${coll}_notes n JOIN sparsesql."${coll}__docs" d ON d.id = n.id ORDER BY n.id`);
  out('join', { rows: r.rows.map((row) => [row.id, row.note, row.title]) });
  await c.query('ROLLBACK');
  r = await c.query(`SELECT id FROM ${coll} SEARCH SPARSE($1) LIMIT 3`, ['zebra']);
  const notes = await c.query('SELECT to_regclass($1) AS t', [`${coll}_notes`]);
  const count = await c.query(`SELECT count(*)::int AS n FROM sparsesql."${coll}__docs"`);
  out('after_rollback', { rows: r.rows.map((row) => row.id), notes: notes.rows[0].t, count: count.rows[0].n });
  await c.end();
})().catch((e) => { console.error(e); process.exit(1); });
