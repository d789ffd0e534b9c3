// Virtual keys across a fleet: two gateways sharing one PostgreSQL ledger (the test starts its own
// server). A key created through one is accepted by both; revoked through the CLI it stops working
// on both within one second; usage by key adds up across both; and a key's budget survives a
// restart, because the spent amount of the period is seeded from the ledger.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack } from './lib/stack.mjs';
import { startGateway, runCloudmux } from './lib/gateway.mjs';
import { startPostgres } from './lib/pg.mjs';
import { waitUntil } from '../sim/openai-sim.mjs';
import { ADMIN, SIMS, sha256, admin, keysCli, createKey, keyed, statusWith, until } from './lib/keys.mjs';

const T = { timeout: 120_000 };
// input free, output 0.001 a token: a request's worst case is exactly max_tokens x 0.001
const MILLI = { input_per_mtok: 0, output_per_mtok: 1000 };
const MODELS = [
  { name: 'gpt-5', deployments: [{ provider: 'oa', model: 'gpt-5', price: MILLI }] },
  { name: 'gpt-4o', deployments: [{ provider: 'oa', model: 'gpt-4o', price: MILLI }] },
];

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

const patch = (url) => (c) => {
  c.admin_key = ADMIN;
  c.ledger = url;
  c.tenants = [{ name: 'acme', models: ['gpt-*'] }];
};

test('two gateways, one PostgreSQL: a key revoked on one stops working on both within one second', T, async (t) => {
  const url = await fresh('keys_fleet');
  const st = await startStack({ sims: SIMS, models: MODELS, routing: { max_attempts: 1 }, configPatch: patch(url) });
  const gw2 = await startGateway({ config: st.config, env: st.env });
  try {
    const { key, id } = await createKey(st.gw.configFile, ['--tenant', 'acme', '--name', 'fleet'], st.env);
    await until(st.gw, key, 200, 3000);
    await until(gw2, key, 200, 3000);
    // a stored tenant defined through gw2 reaches gw1 too
    let r = await admin(gw2, 'POST', '/admin/v1/tenants', { name: 'zeta', models: ['gpt-4o'] });
    assert.equal(r.status, 201, r.text);
    r = await admin(st.gw, 'POST', '/admin/v1/keys', { tenant: 'zeta', name: 'z' });
    assert.equal(r.status, 201, r.text);
    const z = r.body;
    await until(gw2, z.key, 200, 3000, 'gpt-4o');
    assert.equal(await statusWith(gw2, z.key, 'gpt-5'), 404);
    for (let i = 0; i < 4; i++) assert.equal(await statusWith(i % 2 ? st.gw : gw2, key), 200);

    const rv = await keysCli(st.gw.configFile, ['revoke', id], st.env);
    assert.equal(rv.code, 0, rv.stderr);
    const [t1, t2] = await Promise.all([until(st.gw, key, 401, 1000), until(gw2, key, 401, 1000)]);
    assert.ok(t1 <= 1000 && t2 <= 1000, `revocation took ${t1} / ${t2} ms`);
    t.diagnostic(`revocation seen by gateway 1 after ${t1} ms, gateway 2 after ${t2} ms`);
    assert.equal(await statusWith(gw2, z.key, 'gpt-4o'), 200, 'other keys keep working');

    assert.equal(await st.gw.stop('SIGTERM'), 0);
    assert.equal(await gw2.stop('SIGTERM'), 0);
    const u = await runCloudmux(['ledger', 'usage', '--config', st.gw.configFile, '--by', 'key', '--format', 'json'], { env: st.env, timeoutMs: 30_000 });
    assert.equal(u.code, 0, u.stderr);
    const rows = Object.fromEntries(JSON.parse(u.stdout).rows.map((x) => [x.key, x.requests]));
    // every gpt-5 request that reached the provider ran with `key` (polls included), every gpt-4o
    // one with z's
    const served = (m) => st.sims.oa.requests.filter((x) => x.json?.model === m).length;
    assert.ok(served('gpt-5') >= 6);
    assert.equal(rows[id], served('gpt-5'), 'both gateways recorded the key on their usage rows');
    assert.equal(rows[z.id], served('gpt-4o'));
    const logs = st.gw.stdoutText + st.gw.stderr + gw2.stdoutText + gw2.stderr;
    for (const k of [key, z.key]) assert.ok(!logs.includes(k) && !logs.includes(sha256(k)), 'a key was logged');
  } finally {
    await gw2.kill();
    await st.close();
  }
});

test('a key\'s budget survives a restart: the period\'s spend is seeded from the ledger', T, async () => {
  const url = await fresh('keys_budget');
  const st = await startStack({ sims: SIMS, models: MODELS, routing: { max_attempts: 1 }, configPatch: patch(url) });
  let gw = st.gw;
  try {
    const { key, id } = await createKey(st.gw.configFile, ['--tenant', 'acme', '--budget', '10'], st.env);
    await until(gw, key, 200, 3000);
    const ask = (max) => keyed(gw, key).chat.completions.create({ model: 'gpt-5', max_tokens: max, messages: [{ role: 'user', content: 'spend some budget please' }] });
    await ask(200);
    await ask(200);
    const spentTokens = st.sims.oa.requests.reduce((s, r) => s + r.answer.usage.completion_tokens, 0);
    assert.ok(spentTokens >= 4, `the simulator answered only ${spentTokens} tokens`);
    assert.equal(await gw.stop('SIGTERM'), 0);

    gw = await startGateway({ config: st.config, env: st.env });
    // 10.000 budget = 10000 tokens; with what was spent remembered, this worst case does not fit
    const over = 10_000 - Math.floor(spentTokens / 2);
    await assert.rejects(ask(over), (err) => err.status === 429 && err.code === 'insufficient_quota');
    // and exactly what is left does
    const left = await ask(10_000 - spentTokens);
    assert.ok(left.choices.length > 0);
    const k = (await admin(gw, 'GET', '/admin/v1/keys')).body.data.find((x) => x.id === id);
    assert.equal(k.budget, '10.000000');
  } finally {
    await gw.kill();
    await st.close();
  }
});

test('database down: the last keys stay in force, the outage is logged once, changes resume when it returns', T, async () => {
  const url = await fresh('keys_down');
  const st = await startStack({ sims: SIMS, models: MODELS, routing: { max_attempts: 1 }, configPatch: patch(url) });
  try {
    const { key, id } = await createKey(st.gw.configFile, ['--tenant', 'acme'], st.env);
    await until(st.gw, key, 200, 3000);
    await pg.stop();
    try {
      await waitUntil(() => /ledger database is unreachable/.test(st.gw.stderr), 5000, 'the refresher to notice the outage', 50);
      for (let i = 0; i < 3; i++) assert.equal(await statusWith(st.gw, key), 200, 'the last snapshot stays in force');
      assert.equal(await statusWith(st.gw, `cmx-${'B'.repeat(43)}`), 401);
      // it keeps retrying (every second) without logging again
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(st.gw.stderr.match(/ledger database is unreachable/g).length, 1);
      const r = await admin(st.gw, 'GET', '/admin/v1/keys');
      assert.equal(r.status, 503);
      assert.equal(r.body.error.code, 'ledger_unavailable');
    } finally {
      await pg.start();
    }
    await waitUntil(() => /ledger database is reachable again/.test(st.gw.stderr), 5000, 'the refresher to reconnect', 50);
    const rv = await keysCli(st.gw.configFile, ['revoke', id], st.env);
    assert.equal(rv.code, 0, rv.stderr);
    await until(st.gw, key, 401, 1000);
  } finally {
    await st.close();
  }
});
