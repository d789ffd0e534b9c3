// Tenants on the request path, seen through the official openai client with virtual keys:
// cloud preference and failover within allowed clouds and regions, model globs, the 403 that
// explains an exclusion, rate limits with OpenAI's headers, budgets never overspent — on one
// gateway, and on two gateways sharing a real Redis (limits, budgets) and PostgreSQL (keys, ledger).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSim } from '../sim/openai-sim.mjs';
import { startGateway, runCloudmux, writeConfig } from './lib/gateway.mjs';
import { providerFor } from './lib/stack.mjs';
import { startRedis } from './lib/redis.mjs';
import { startPostgres } from './lib/pg.mjs';

const T = { timeout: 60_000 };
const sims = {};
let dir;

// price: $1.00 per 1M input tokens, $2.00 per 1M output tokens
const price = { input_per_mtok: '1.00', output_per_mtok: '2.00' };

function configWith({ ledger, limits, tenants }) {
  return {
    providers: [
      providerFor(sims.azure, { type: 'openai_compatible', cloud: 'azure', region: 'eastus' }),
      providerFor(sims.awsE, { cloud: 'aws', region: 'us-east-1' }),
      providerFor(sims.awsW, { cloud: 'aws', region: 'us-west-2' }),
      providerFor(sims.gcp, { cloud: 'gcp', region: 'us-east4' }),
    ],
    models: [
      {
        name: 'gpt-5',
        deployments: [
          { provider: 'azure', model: 'gpt-5', priority: 1, price },
          { provider: 'gcp', model: 'gpt-5', priority: 2, price },
          { provider: 'awsW', model: 'gpt-5', priority: 3, price },
          { provider: 'awsE', model: 'gpt-5', priority: 4, price },
        ],
      },
      { name: 'gpt-5-west', deployments: [{ provider: 'awsW', model: 'gpt-5', price }, { provider: 'gcp', model: 'gpt-5', price }] },
      { name: 'llama', deployments: [{ provider: 'gcp', model: 'llama', price }] },
    ],
    routing: { max_attempts: 4 },
    ledger,
    ...(limits ? { limits } : {}),
    tenants,
  };
}

const acme = {
  name: 'acme',
  preferred_clouds: ['aws'],
  allowed_clouds: ['aws', 'azure'],
  regions: ['us-east-1', 'eastus'],
  models: ['gpt-*'],
};

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cmx-tenants-'));
  for (const name of ['azure', 'awsE', 'awsW', 'gcp']) sims[name] = await startSim({ name, flavor: 'compatible' });
});

after(async () => {
  await Promise.all(Object.values(sims).map((s) => s.close()));
});

const reset = () => Object.values(sims).forEach((s) => s.reset());
const served = () => Object.fromEntries(Object.entries(sims).map(([k, s]) => [k, s.requests.length]));

/** `cloudmux keys create` through the CLI: { key, id }. */
async function createKey(file, tenant, extra = [], env = {}) {
  const r = await runCloudmux(['keys', 'create', '--config', file, '--tenant', tenant, ...extra], { env });
  assert.equal(r.code, 0, r.stderr);
  const key = r.stdout.split('\n')[0].trim();
  const id = /id: (\S+)/.exec(r.stdout)[1];
  assert.match(key, /^cmx-[0-9A-Za-z]{43}$/);
  return { key, id };
}

/** Runs fn(i) for i in [0, n) with at most width in flight; the settled results in order. */
async function pool(n, width, fn) {
  const out = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++;
        try {
          out[i] = { status: 'fulfilled', value: await fn(i) };
        } catch (reason) {
          out[i] = { status: 'rejected', reason };
        }
      }
    }),
  );
  return out;
}

const client = (gw, key) => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0, timeout: 15_000 });
const ask = (c, model = 'gpt-5', extra = {}) =>
  c.chat.completions.create({ model, messages: [{ role: 'user', content: 'hello there' }], max_tokens: 20, ...extra }).withResponse();

test('one gateway: keys, tenant preference, failover within allowed clouds and regions, globs, 403, limits, budget', T, async () => {
  const config = configWith({
    ledger: `sqlite://${join(dir, 'one.db')}`,
    tenants: [
      { ...acme, limits: { rpm: 5 } },
      { name: 'thrifty', models: ['gpt-*'], budget: { amount: '0.000500', currency: 'USD', period: 'month' } },
    ],
  });
  const { file } = await writeConfig(config, 'one.yaml');
  const a = await createKey(file, 'acme');
  const th = await createKey(file, 'thrifty');
  const gw = await startGateway({ config });
  try {
    reset();
    // no key, a wrong key: 401 in OpenAI's shape, the key never echoed
    await assert.rejects(client(gw, 'sk-nope').models.list(), (e) => e.status === 401 && e.code === 'invalid_api_key');
    const r0 = await fetch(`${gw.url}/v1/models`);
    assert.equal(r0.status, 401);

    // acme prefers aws: the us-east-1 deployment although azure has the better priority
    const c = client(gw, a.key);
    let r = await ask(c);
    assert.equal(r.response.headers.get('x-cloudmux-provider'), 'awsE');
    assert.equal(r.response.headers.get('x-ratelimit-limit-requests'), '5');
    assert.equal(r.response.headers.get('x-ratelimit-remaining-requests'), '4');
    assert.match(r.response.headers.get('x-ratelimit-reset-requests'), /^\d+(\.\d+)?(ms|s)$/);
    // aws-east fails: failover to azure (allowed), never gcp (cloud) nor aws-west (region)
    for (let i = 0; i < 4; i++) sims.awsE.enqueue({ status: 503 });
    r = await ask(c);
    assert.equal(r.response.headers.get('x-cloudmux-provider'), 'azure');
    assert.equal(sims.gcp.requests.length + sims.awsW.requests.length, 0);
    // a model whose deployments the tenant may not reach: 403 naming the rules
    await assert.rejects(ask(c, 'gpt-5-west'), (e) => {
      assert.equal(e.status, 403);
      assert.equal(e.code, 'tenant_denied');
      assert.match(e.message, /tenant acme excludes awsW \(region us-west-2 is not in regions\), gcp \(cloud gcp is not in allowed_clouds\)/);
      return true;
    });
    // outside its globs: 404 as for an unknown model, and /v1/models lists only its own
    await assert.rejects(ask(c, 'llama'), (e) => e.status === 404 && e.code === 'model_not_found');
    const models = (await c.models.list()).data.map((m) => m.id).sort();
    assert.deepEqual(models, ['gpt-5', 'gpt-5-west']);
    // rpm 5: two used (the 403 and 404 never reached the limiter); 3 more pass, then 429
    for (let i = 0; i < 3; i++) await ask(c);
    await assert.rejects(ask(c), (e) => {
      assert.equal(e.status, 429);
      assert.equal(e.code, 'rate_limit_exceeded');
      // the tenant's bucket refused (the key has no rpm of its own): the message says so
      assert.match(e.message, /Rate limit reached for tenant acme\. Please try again/);
      assert.ok(Number(e.headers.get('retry-after')) >= 1);
      assert.equal(e.headers.get('x-ratelimit-remaining-requests'), '0');
      return true;
    });

    // thrifty's budget: $0.0005 = 500 micro-units. Each request reserves its worst case
    // (~ceil(len/3) prompt tokens x $1/M + 20 x $2/M) and costs what it metered; the total
    // metered never passes the budget, and the refusal is insufficient_quota.
    const t = client(gw, th.key);
    let ok = 0;
    let refused;
    for (let i = 0; i < 40 && !refused; i++) {
      try {
        await ask(t);
        ok++;
      } catch (e) {
        refused = e;
      }
    }
    assert.ok(refused, 'the budget ran out');
    assert.equal(refused.status, 429);
    assert.equal(refused.code, 'insufficient_quota');
    assert.ok(ok > 3, `${ok} requests fit in the budget`);

    // the keys never show: not in the metrics, the access log or the gateway's messages
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    assert.match(metrics, /cloudmux_limits_decisions_total\{result="denied"\} [1-9]/);
    for (const k of [a.key, th.key]) {
      assert.ok(!metrics.includes(k), 'a key in /metrics');
      assert.ok(!gw.stdoutText.includes(k), 'a key in the access log');
      assert.ok(!gw.stderr.includes(k), 'a key in the log');
      assert.ok(!gw.stdoutText.includes(k.slice(4, 20)), 'part of a key in the access log');
    }
    // the access log names tenant and key id
    const line = gw.accessLog().find((l) => l.tenant === 'thrifty');
    assert.equal(line.key_id, th.id);
  } finally {
    await gw.kill();
    assert.equal(gw.sanitizerReport(), null);
  }
  // the ledger: what thrifty was charged never exceeds its budget
  const u = await runCloudmux(['ledger', 'usage', '--config', file, '--by', 'tenant', '--format', 'json']);
  assert.equal(u.code, 0, u.stderr);
  const rows = JSON.parse(u.stdout).rows ?? JSON.parse(u.stdout).groups ?? JSON.parse(u.stdout);
  const thrifty = (Array.isArray(rows) ? rows : []).find((x) => x.key === 'thrifty' || x.tenant === 'thrifty');
  assert.ok(thrifty, u.stdout);
  const revenue = Math.round(Number(thrifty.revenue) * 1e6);
  assert.ok(revenue <= 500, `thrifty was charged ${revenue} micro-units of a 500 budget`);
  assert.ok(revenue > 0);
});

/** A gateway on its own ledger (name.db) whose one tenant, thrifty, has a monthly budget of
 * amount dollars; th is a key of thrifty's. */
async function thriftyGateway(name, amount) {
  const config = configWith({
    ledger: `sqlite://${join(dir, `${name}.db`)}`,
    tenants: [{ name: 'thrifty', models: ['gpt-*'], budget: { amount, currency: 'USD', period: 'month' } }],
  });
  const { file } = await writeConfig(config, `${name}.yaml`);
  const th = await createKey(file, 'thrifty');
  return { file, th, gw: await startGateway({ config }) };
}

test('a budget counts what the ledger estimates when the upstream reports no usage', T, async () => {
  const { file, th, gw } = await thriftyGateway('nousage', '0.000500');
  let ok = 0;
  let refused;
  try {
    reset();
    // a server that never counts, and a client that leaves streams before their usage chunk:
    // both are billed what the ledger estimates, so the budget runs out as it does with usage
    sims.azure.enqueue({ noUsage: true, times: 80 });
    const t = client(gw, th.key);
    for (let i = 0; i < 80 && !refused; i++) {
      try {
        if (i % 2) {
          await ask(t);
        } else {
          const s = await t.chat.completions.create({ model: 'gpt-5', messages: [{ role: 'user', content: 'hello there' }], max_tokens: 20, stream: true });
          for await (const ch of s) if (ch.choices[0]?.finish_reason) break;
        }
        ok++;
      } catch (e) {
        refused = e;
      }
    }
    assert.ok(refused, `the budget ran out (${ok} requests)`);
    assert.equal(refused.status, 429);
    assert.equal(refused.code, 'insufficient_quota');
    assert.ok(ok > 3, `${ok} requests fit in the budget`);
  } finally {
    await gw.stop('SIGTERM');
  }
  const u = await runCloudmux(['ledger', 'usage', '--config', file, '--by', 'tenant', '--format', 'json']);
  assert.equal(u.code, 0, u.stderr);
  const row = JSON.parse(u.stdout).rows.find((x) => x.key === 'thrifty');
  assert.equal(row.requests, ok);
  assert.equal(row.estimated, ok, 'every record estimated');
  const revenue = Math.round(Number(row.revenue) * 1e6);
  assert.ok(revenue <= 500 && revenue > 0, `thrifty was charged ${revenue} micro-units of a 500 budget`);
});

test('a max_tokens of any size is reserved at that size: 10 digits or 1e9 never pass a small budget as the default would', T, async () => {
  const { th, gw } = await thriftyGateway('maxtok', '0.010000');
  try {
    reset();
    const raw = (maxTokens) =>
      fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${th.key}` },
        body: `{"model":"gpt-5","messages":[{"role":"user","content":"hello there"}],"max_tokens":${maxTokens}}`,
      });
    // $0.01 at $2/M output tokens: 5000 tokens; 20 fits, a billion in any spelling does not
    assert.equal((await raw('20')).status, 200);
    for (const big of ['1000000000', '1e9', '99999999999999999999999', '4000.5']) {
      const r = await raw(big);
      assert.equal(r.status, big === '4000.5' ? 200 : 429, big);
      if (r.status === 429) assert.equal((await r.json()).error.code, 'insufficient_quota', big);
    }
    assert.equal(sims.azure.requests.length, 2, 'only what fits reached the upstream');
  } finally {
    await gw.stop('SIGTERM');
  }
});

test('two gateways sharing Redis and PostgreSQL: 600 rpm across both, a budget under 64 clients', { timeout: 120_000 }, async () => {
  const redis = await startRedis();
  const pg = await startPostgres();
  const gws = [];
  try {
    const config = configWith({
      ledger: pg.url,
      limits: redis.url,
      tenants: [
        { ...acme, limits: { rpm: 600 } },
        { name: 'thrifty', models: ['gpt-*'], budget: { amount: '0.002000', period: 'day' } },
      ],
    });
    const { file } = await writeConfig(config, 'fleet.yaml');
    const a = await createKey(file, 'acme');
    const th = await createKey(file, 'thrifty');
    for (let i = 0; i < 2; i++) gws.push(await startGateway({ config, workers: 2 }));
    reset();

    // 720 requests as fast as two gateways take them: 600 (the burst) plus what refilled
    // while they ran (10 per second), never 1200
    const clients = gws.map((gw) => client(gw, a.key));
    const t0 = Date.now();
    const results = await pool(720, 64, (i) => ask(clients[i % 2]).then((r) => r.response.status));
    const secs = (Date.now() - t0) / 1000;
    const accepted = results.filter((x) => x.status === 'fulfilled').length;
    const limited = results.filter((x) => x.status === 'rejected' && x.reason.status === 429).length;
    const other = results.find((x) => x.status === 'rejected' && x.reason.status !== 429);
    assert.equal(accepted + limited, 720, `every request was either served or rate limited (${other?.reason}; gateways: ${gws.map((g) => `exit ${g.exitCode}/${g.exitSignal} ${g.stderr.slice(-1500)}`).join(' | ')})`);
    assert.ok(accepted >= 600, `${accepted} accepted`);
    assert.ok(accepted <= 600 + Math.ceil(secs * 10) + 1, `${accepted} accepted in ${secs.toFixed(2)} s: more than 600 + the refill`);

    // thrifty: $0.002 a day, hammered by 64 clients on both gateways
    const tc = gws.map((gw) => client(gw, th.key));
    const outcomes = await pool(64 * 3, 64, (i) => ask(tc[i % 2]).then(() => 'ok'));
    const quota = outcomes.filter((x) => x.status === 'rejected' && x.reason.code === 'insufficient_quota').length;
    assert.ok(quota > 0, 'reservations in flight ran into the budget');
    assert.equal(outcomes.filter((x) => x.status === 'rejected' && x.reason.code !== 'insufficient_quota').length, 0);
    // then one at a time, alternating gateways, until what is left cannot cover a worst case
    let refusedAt = -1;
    for (let i = 0; i < 400 && refusedAt < 0; i++) {
      try {
        await ask(tc[i % 2]);
      } catch (e) {
        assert.equal(e.code, 'insufficient_quota');
        refusedAt = i;
      }
    }
    assert.ok(refusedAt >= 0, 'the budget ran out');
    for (const gw of gws) await gw.stop('SIGTERM');
    const u = await runCloudmux(['ledger', 'usage', '--config', file, '--by', 'tenant', '--format', 'json']);
    assert.equal(u.code, 0, u.stderr);
    const body = JSON.parse(u.stdout);
    const rows = body.rows ?? body.groups ?? body;
    const row = rows.find((x) => x.key === 'thrifty' || x.tenant === 'thrifty');
    const revenue = Math.round(Number(row.revenue) * 1e6);
    assert.ok(revenue <= 2000, `thrifty was charged ${revenue} micro-units of a 2000 budget`);
    assert.ok(revenue > 1800, `the budget was used up to less than one worst case (${revenue})`);
  } finally {
    for (const gw of gws) await gw.kill().catch(() => {});
    await redis.close();
    await pg.close();
  }
});
