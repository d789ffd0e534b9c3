// The ledger on PostgreSQL: two gateways sharing one database never exceed a cap together, and a
// database that goes away mid-run loses nothing and counts nothing twice (spool + idempotent
// replay). The test starts its own server (initdb into a temp dir, pg_ctl on a free port).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, sdk } from './lib/stack.mjs';
import { startGateway } from './lib/gateway.mjs';
import { startPostgres } from './lib/pg.mjs';
import { NOW, PERIOD, PRICES, fmt, micros, revenueOf, shareOf, ledgerModels, ledgerPatch, ledgerJSON, pool, chat } from './lib/ledger.mjs';
import { waitUntil } from '../sim/openai-sim.mjs';

const T = { timeout: 180_000 };
const SIMS = {
  az: { flavor: 'azure', v1: true, deployments: ['gpt5-prod'] },
  oa: { flavor: 'openai', models: ['gpt-5'] },
};

let pg;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg?.close();
});

async function fresh(db) {
  await pg.psql(`DROP DATABASE IF EXISTS ${db}`);
  await pg.psql(`CREATE DATABASE ${db}`);
  return pg.url.replace(/\/postgres$/, `/${db}`);
}

async function q(db, sql) {
  const url = pg.url;
  pg.url = url.replace(/\/postgres$/, `/${db}`);
  try {
    return await pg.psql(sql);
  } finally {
    pg.url = url;
  }
}

test('two gateways, 64 concurrent clients, one capped term: the accrued total equals the cap exactly', T, async () => {
  const url = await fresh('caps');
  const CAP = '0.004';
  const st = await startStack({
    sims: SIMS,
    models: ledgerModels({ withLocal: false }),
    routing: { max_attempts: 1 },
    args: ['--now', NOW],
    configPatch: ledgerPatch({ cap: CAP, ledger: url }),
  });
  const gw2 = await startGateway({ config: st.config, env: st.env, args: ['--now', NOW] });
  try {
    const client2 = sdk(gw2);
    const N = 256;
    await pool(N, 64, (i) => chat(i % 2 ? st.client : client2, i % 3 ? 'gpt-5' : 'gpt-5-direct', { stream: i % 4 === 1, text: `pg ${i} ${'y '.repeat(i % 7)}` }));
    assert.deepEqual(st.violations(), []);
    let shares = 0n;
    for (const sim of ['az', 'oa']) for (const r of st.sims[sim].requests) shares += shareOf(revenueOf(r.answer.usage, PRICES[sim]), '0.2');
    assert.ok(shares > micros(CAP), 'the load must cross the cap');
    assert.equal(await st.gw.stop('SIGTERM'), 0);
    assert.equal(await gw2.stop('SIGTERM'), 0);

    const stmt = await ledgerJSON(st.gw.configFile, ['statement', '--payee', 'microsoft', '--period', PERIOD], st.env);
    assert.equal(stmt.totals.requests, N);
    assert.equal(stmt.totals.accrued, '0.004000');
    assert.equal(stmt.totals.share, fmt(shares));
    assert.equal(stmt.totals.over_cap, fmt(shares - micros(CAP)));
    assert.equal(stmt.lines[0].cap_remaining, '0.000000');
    const bad = await q('caps', "SELECT COUNT(*) FROM accruals WHERE payee = 'microsoft' AND (accrued_micros < 0 OR over_cap_micros < 0 OR accrued_micros + over_cap_micros <> amount_micros)");
    assert.equal(bad[0][0], '0');
    const split = await q('caps', "SELECT COUNT(*) FROM accruals WHERE payee = 'microsoft' AND accrued_micros > 0 AND over_cap_micros > 0");
    assert.ok(Number(split[0][0]) <= 1);
    assert.deepEqual(await q('caps', "SELECT cap_micros, accrued_micros FROM caps WHERE payee = 'microsoft'"), [['4000', '4000']]);
    // both gateways wrote: the providers' requests are split across them
    assert.equal((await q('caps', 'SELECT COUNT(*) FROM usage'))[0][0], String(N));
    assert.deepEqual(await q('caps', 'SELECT MAX(version) FROM ledger_schema'), [['4']]);
  } finally {
    await gw2.kill();
    await st.close();
  }
});

test('PostgreSQL stopped mid-run, then restarted: every record arrives exactly once', T, async () => {
  const url = await fresh('outage');
  const st = await startStack({
    sims: SIMS,
    models: ledgerModels({ withLocal: false }),
    routing: { max_attempts: 1 },
    args: ['--now', NOW],
    configPatch: ledgerPatch({ cap: '0.002', ledger: { url, durability: 'per_request' } }),
  });
  try {
    const ids = [];
    const phase = async (name, n) => {
      await pool(n, 8, async (i) => {
        const id = `${name}-${i}`;
        await chat(st.client, i % 2 ? 'gpt-5' : 'gpt-5-direct', { id, stream: i % 3 === 0, includeUsage: i % 2 === 0 });
        ids.push(id);
      });
    };
    await phase('before', 30);
    await pg.stop();
    await phase('down', 30); // answered while the database is away: spooled
    await pg.start();
    await phase('after', 30);
    // the writer retries every second and replays the spool
    await waitUntil(async () => Number((await q('outage', 'SELECT COUNT(*) FROM usage'))[0][0]) === ids.length, 30_000, 'the spool replayed', 200);
    assert.equal(await st.gw.stop('SIGTERM'), 0);
    const rows = await q('outage', 'SELECT request_id FROM usage ORDER BY request_id');
    assert.deepEqual(rows.map((r) => r[0]), [...ids].sort());
    // two terms over azure requests, one over openai ones: each accrued exactly once
    const acc = await q('outage', 'SELECT COUNT(*), COUNT(DISTINCT (request_id, agreement, term)) FROM accruals');
    const azure = ids.length / 2;
    assert.deepEqual(acc, [[String(ids.length + azure), String(ids.length + azure)]]);
    // the cap held across the outage
    let shares = 0n;
    for (const sim of ['az', 'oa']) for (const r of st.sims[sim].requests) shares += shareOf(revenueOf(r.answer.usage, PRICES[sim]), '0.2');
    const stmt = await ledgerJSON(st.gw.configFile, ['statement', '--payee', 'microsoft', '--period', PERIOD], st.env);
    assert.equal(stmt.totals.requests, ids.length);
    assert.equal(stmt.totals.share, fmt(shares));
    assert.equal(stmt.totals.accrued, shares > micros('0.002') ? '0.002000' : fmt(shares));
    assert.match(st.gw.stderr, /spooling/);
    assert.match(st.gw.stderr, /replayed \d+ spooled record/);
  } finally {
    await st.close();
  }
});
