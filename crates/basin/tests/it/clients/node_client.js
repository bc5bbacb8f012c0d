// node-postgres against `basin serve` as the analyst: SCRAM, masked rows, parameters, 42501.
const { Client } = require('pg');
const assert = require('assert');

(async () => {
  const c = new Client({ host: '127.0.0.1', port: Number(process.argv[2]), user: 'ana', password: 'analyst-pw', database: 'basin' });
  await c.connect();
  const r = await c.query('SELECT id, email FROM silver.customer ORDER BY id');
  assert.deepStrictEqual(r.rows.map(x => x.email), ['****@acme.com', '****@x.org', null]);
  const p = await c.query({ text: 'SELECT name FROM silver.customer WHERE id = $1', values: [2], name: 'by_id' });
  assert.strictEqual(p.rows[0].name, 'Bob');
  const again = await c.query({ text: 'SELECT name FROM silver.customer WHERE id = $1', values: [1], name: 'by_id' });
  assert.strictEqual(again.rows[0].name, 'Ann');
  await assert.rejects(c.query('SELECT * FROM silver.secret'), e => e.code === '42501');
  assert.strictEqual((await c.query('SELECT 3 AS n')).rows[0].n, '3');
  await c.end();
  console.log('ok');
})().catch(e => { console.error(e); process.exit(1); });
