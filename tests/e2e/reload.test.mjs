// Hot reload: SIGHUP (and POST /admin/v1/reload, and `cloudmux reload`) re-reads the config file;
// a valid config is swapped in atomically (requests in flight finish on the old snapshot, no
// request fails, no connection is dropped), an invalid one is logged and the old one stays, and a
// circuit's state survives when its deployment stays.

import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { startSim, waitUntil } from '../sim/openai-sim.mjs';
import { startGateway, runCloudmux, toYAML, sanitizerReport } from './lib/gateway.mjs';
import { providerFor, envVarFor, postJSON, sdk, KEYS } from './lib/stack.mjs';
import { deployment, deployments, pool, sleep, tally } from './lib/observe.mjs';
import { readSSE } from '../sim/sse.mjs';
import { RawConn, request } from './lib/rawhttp.mjs';

const T = { timeout: 30_000 };
const sims = {};
const gateways = [];
const msg = (text = 'reload me') => [{ role: 'user', content: text }];

before(async () => {
  for (const name of ['a', 'b']) {
    sims[name] = await startSim({ flavor: 'openai', name, apiKey: KEYS.openai, quirks: { delayMs: 10 } });
  }
});
after(async () => {
  for (const gw of gateways) await gw.kill();
  await Promise.all(Object.values(sims).map((s) => s.close()));
  const reports = gateways.map((gw) => gw.sanitizerReport()).filter(Boolean);
  if (reports.length) throw new Error(`cloudmux reported memory/UB errors:\n${reports.join('\n----\n')}`);
});
beforeEach(() => {
  for (const s of Object.values(sims)) s.reset();
});

/** A config whose model `m` is served by the given deployments. */
function config(deps, { routing = {}, extraModels = [] } = {}) {
  return {
    providers: Object.values(sims).map((s) => providerFor(s)),
    models: [{ name: 'm', deployments: deps }, ...extraModels],
    routing: { max_attempts: 2, timeout_s: 30, ...routing },
  };
}
const on = (provider, priority = 1, model = 'gpt-4o') => ({ provider, model, priority });

async function gateway(cfg) {
  const env = Object.fromEntries(Object.keys(sims).map((n) => [envVarFor(n), KEYS.openai]));
  const gw = await startGateway({ config: cfg, env });
  gateways.push(gw);
  return gw;
}

/** Rewrites the gateway's config file (an object, or raw text). */
const rewrite = (gw, cfg) => writeFile(gw.configFile, typeof cfg === 'string' ? cfg : toYAML(cfg));

/** Waits for a stderr line matching re that was printed after offset `from`. */
const waitStderr = (gw, from, re, timeoutMs = 5000) =>
  waitUntil(() => re.test(gw.stderr.slice(from)), timeoutMs, `stderr to match ${re}; it has:\n${gw.stderr.slice(from)}`, 10);

/** Waits until the admin API serves the deployments `want` (provider names) for model m. */
const waitDeployments = (gw, want) =>
  waitUntil(
    async () => {
      const list = await deployments(gw.url);
      const got = list.data.filter((d) => d.model === 'm').map((d) => d.provider).sort();
      return JSON.stringify(got) === JSON.stringify([...want].sort());
    },
    5000,
    `GET /admin/v1/deployments to show m on ${want}`,
    20,
  );

async function ask(client, text) {
  const { data, response } = await client.chat.completions.create({ model: 'm', messages: msg(text) }).withResponse();
  assert.equal(data.choices[0].message.content, `echo: ${text ?? 'reload me'}`);
  return response.headers.get('x-cloudmux-provider');
}

test('SIGHUP under load (8 concurrent clients, ~3 s): no request fails, traffic moves to the new deployment', T, async () => {
  const gw = await gateway(config([on('a')]));
  const client = sdk(gw);
  const results = [];
  const errors = [];
  const t0 = performance.now();
  let stop = false;
  const worker = async () => {
    while (!stop) {
      const start = performance.now();
      try {
        const provider = await ask(client);
        results.push({ start, end: performance.now(), provider });
      } catch (err) {
        errors.push(`${(start - t0).toFixed(0)} ms: ${err?.constructor?.name}: ${err?.message}`);
      }
    }
  };
  const loops = Array.from({ length: 8 }, worker);
  await sleep(1000);
  const from = gw.stderr.length;
  await rewrite(gw, config([on('b')]));
  const tSignal = performance.now();
  gw.process.kill('SIGHUP');
  await waitStderr(gw, from, /config reloaded/);
  const tReloaded = performance.now();
  await sleep(Math.max(0, 3000 - (performance.now() - t0)));
  stop = true;
  await Promise.all(loops);

  assert.deepEqual(errors, [], `${errors.length} of ${results.length + errors.length} requests failed`);
  assert.ok(results.length >= 50, `only ${results.length} requests in 3 s`);
  const before = results.filter((r) => r.end < tSignal);
  const afterSwap = results.filter((r) => r.start > tReloaded + 500);
  assert.ok(before.length > 0 && afterSwap.length > 0, `before ${before.length}, after ${afterSwap.length}`);
  assert.deepEqual(tally(before.map((r) => r.provider)), { a: before.length }, 'before the reload: the old deployment');
  assert.deepEqual(tally(afterSwap.map((r) => r.provider)), { b: afterSwap.length }, 'after the reload: only the new deployment');
  assert.ok(sims.b.requests.length > 0);
  assert.equal(sims.a.closedEarly.length, 0, 'no request to the old deployment was cut off');
  assert.ok(gw.running());
  assert.deepEqual([...sims.a.violations, ...sims.b.violations], []);
});

test('an invalid config on SIGHUP is logged on stderr and the running config stays', T, async () => {
  const gw = await gateway(config([on('a')]));
  const client = sdk(gw);
  assert.equal(await ask(client), 'a');

  // a model pointing at a provider that does not exist
  let from = gw.stderr.length;
  const bad = config([on('b')]);
  bad.models[0].deployments[0].provider = 'ghost-provider';
  await rewrite(gw, bad);
  gw.process.kill('SIGHUP');
  await waitStderr(gw, from, /ghost-provider/);
  assert.match(gw.stderr.slice(from), /reload/i, 'the log line says that the reload failed');
  assert.doesNotMatch(gw.stderr.slice(from), /config reloaded/);
  await sleep(200);
  for (let i = 0; i < 5; i++) assert.equal(await ask(client), 'a');
  assert.ok(gw.running());

  // YAML that does not parse
  from = gw.stderr.length;
  await rewrite(gw, 'models: [\n  - name: m\n    deployments: {{{\n');
  gw.process.kill('SIGHUP');
  await waitStderr(gw, from, /reload/i);
  await sleep(200);
  assert.doesNotMatch(gw.stderr.slice(from), /config reloaded/);
  for (let i = 0; i < 5; i++) assert.equal(await ask(client), 'a');
  assert.deepEqual((await deployments(gw.url)).data.filter((d) => d.model === 'm').map((d) => d.provider), ['a']);

  // and a valid one afterwards still goes through
  from = gw.stderr.length;
  await rewrite(gw, config([on('b')]));
  gw.process.kill('SIGHUP');
  await waitStderr(gw, from, /config reloaded/);
  await waitDeployments(gw, ['b']);
  await sleep(300);
  const seen = await pool(12, 4, () => ask(client));
  assert.deepEqual(tally(seen), { b: 12 });
  assert.equal(sanitizerReport(gw.stderr), null);
});

test('POST /admin/v1/reload does the same as SIGHUP (202)', T, async () => {
  const gw = await gateway(config([on('a')], { extraModels: [{ name: 'gone', deployments: [on('a')] }] }));
  const client = sdk(gw);
  assert.equal(await ask(client), 'a');
  assert.equal((await client.chat.completions.create({ model: 'gone', messages: msg() })).choices[0].message.content, 'echo: reload me');
  await rewrite(gw, config([on('b', 1), on('a', 2)]));
  const from = gw.stderr.length;
  const r = await fetch(`${gw.url}/admin/v1/reload`, { method: 'POST', signal: AbortSignal.timeout(5000) });
  assert.equal(r.status, 202);
  assert.match(r.headers.get('content-type') || '', /^application\/json/);
  await r.json();
  await waitStderr(gw, from, /config reloaded/);
  await waitDeployments(gw, ['a', 'b']);
  await sleep(300);
  const seen = await pool(12, 4, () => ask(client));
  assert.deepEqual(tally(seen), { b: 12 });
  // a model the new config dropped is gone
  const r404 = await postJSON(gw.url, '/v1/chat/completions', { model: 'gone', messages: msg() });
  assert.equal(r404.status, 404);
  assert.equal((await r404.json()).error.code, 'model_not_found');
  // GET is not allowed
  const g = await fetch(`${gw.url}/admin/v1/reload`, { signal: AbortSignal.timeout(5000) });
  assert.equal(g.status, 405);
  await g.arrayBuffer();
});

test('`cloudmux reload --url` and `--pid` ask a running gateway to reload', T, async () => {
  const gw = await gateway(config([on('a')]));
  const client = sdk(gw);
  await rewrite(gw, config([on('b')]));
  let from = gw.stderr.length;
  let res = await runCloudmux(['reload', '--url', gw.url]);
  assert.equal(res.code, 0, `cloudmux reload --url: ${res.stderr}`);
  await waitStderr(gw, from, /config reloaded/);
  await waitDeployments(gw, ['b']);
  await sleep(300);
  assert.equal(await ask(client), 'b');

  await rewrite(gw, config([on('a')]));
  from = gw.stderr.length;
  res = await runCloudmux(['reload', '--pid', String(gw.process.pid)]);
  assert.equal(res.code, 0, `cloudmux reload --pid: ${res.stderr}`);
  await waitStderr(gw, from, /config reloaded/);
  await waitDeployments(gw, ['a']);
  await sleep(300);
  assert.equal(await ask(client), 'a');
});

test('a stream in flight across a reload completes on the old config', T, async () => {
  const gw = await gateway(config([on('a')]));
  sims.a.enqueue({ paceMs: 100, chunks: 15 });
  const r = await postJSON(gw.url, '/v1/chat/completions', { model: 'm', messages: msg('stream across'), stream: true });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('x-cloudmux-provider'), 'a');
  const events = [];
  let reloaded = false;
  let from = 0;
  for await (const ev of readSSE(r)) {
    events.push(ev);
    if (!reloaded && ev.data !== '[DONE]' && JSON.parse(ev.data).choices?.[0]?.delta?.content) {
      reloaded = true;
      await rewrite(gw, config([on('b')]));
      from = gw.stderr.length;
      gw.process.kill('SIGHUP');
    }
  }
  assert.ok(reloaded);
  assert.equal(events.at(-1).data, '[DONE]', 'the stream ran to its end');
  const parsed = events.slice(0, -1).map((e) => JSON.parse(e.data));
  assert.ok(parsed.every((c) => !c.error), 'no error event');
  assert.equal(parsed.map((c) => c.choices?.[0]?.delta?.content ?? '').join(''), sims.a.lastRequest.answer.text);
  assert.equal(sims.a.closedEarly.length, 0);
  await waitStderr(gw, from, /config reloaded/);
  await waitDeployments(gw, ['b']);
  await sleep(300);
  assert.equal(await ask(sdk(gw)), 'b');
});

test('a circuit stays open across a reload that keeps its deployment; a changed deployment starts closed', T, async () => {
  const routing = { circuit: { failures: 2, cooldown_s: 30, max_wait_s: 10 } };
  const gw = await gateway(config([on('a', 1), on('b', 2)], { routing }));
  const client = sdk(gw);
  sims.a.enqueue({ status: 500, times: 2 });
  for (let i = 0; i < 2; i++) assert.equal(await ask(client), 'b');
  assert.equal((await deployment(gw.url, 'm', 'a')).state, 'open');

  // same (model, provider, upstream model) for a; b's priority changes, a model is added
  let from = gw.stderr.length;
  await rewrite(gw, config([on('a', 1), on('b', 5)], { routing, extraModels: [{ name: 'other', deployments: [on('b')] }] }));
  gw.process.kill('SIGHUP');
  await waitStderr(gw, from, /config reloaded/);
  await waitUntil(async () => (await deployments(gw.url)).data.some((d) => d.model === 'other'), 5000, 'the new config', 20);
  await sleep(300);
  const row = await deployment(gw.url, 'm', 'a');
  assert.equal(row.state, 'open', 'the circuit survived the reload');
  assert.ok(row.open_for_ms > 20_000, `open_for_ms ${row.open_for_ms}`);
  assert.equal((await deployment(gw.url, 'm', 'b')).priority, 5);
  const nA = sims.a.requests.length;
  for (let i = 0; i < 4; i++) assert.equal(await ask(client), 'b');
  assert.equal(sims.a.requests.length, nA, 'the open deployment is still skipped');

  // a's upstream model changes: a new deployment, with a fresh (closed) circuit
  from = gw.stderr.length;
  await rewrite(gw, config([on('a', 1, 'gpt-4o-mini'), on('b', 2)], { routing }));
  gw.process.kill('SIGHUP');
  await waitStderr(gw, from, /config reloaded/);
  await waitUntil(async () => (await deployment(gw.url, 'm', 'a')).upstream_model === 'gpt-4o-mini', 5000, 'the new upstream model', 20);
  await sleep(300);
  assert.equal((await deployment(gw.url, 'm', 'a')).state, 'closed');
  assert.equal(await ask(client), 'a');
  assert.equal(sims.a.lastRequest.json.model, 'gpt-4o-mini');
});

test('a keep-alive connection stays open across a reload and is served by the new config', T, async () => {
  const gw = await gateway(config([on('a')]));
  const conn = await RawConn.open(gw.port);
  try {
    const body = JSON.stringify({ model: 'm', messages: msg('same socket') });
    const headers = { 'content-type': 'application/json', authorization: 'Bearer sk-client-should-not-be-forwarded' };
    await conn.write(request('POST', '/v1/chat/completions', { headers, body }));
    let res = await conn.readResponse();
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-cloudmux-provider'], 'a');
    const from = gw.stderr.length;
    await rewrite(gw, config([on('b')]));
    gw.process.kill('SIGHUP');
    await waitStderr(gw, from, /config reloaded/);
    await waitDeployments(gw, ['b']);
    await sleep(300);
    assert.ok(!conn.ended, 'the gateway closed an idle keep-alive connection on reload');
    await conn.write(request('POST', '/v1/chat/completions', { headers, body }));
    res = await conn.readResponse();
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.text).choices[0].message.content, 'echo: same socket');
    assert.equal(res.headers['x-cloudmux-provider'], 'b', 'a new request on an old connection uses the new config');
  } finally {
    conn.close();
  }
});

test('a reload that keeps the listen address (given by --listen) does not warn that it changed', T, async () => {
  const gw = await gateway(config([on('a')]));
  const from = gw.stderr.length;
  await rewrite(gw, config([on('b')]));
  gw.process.kill('SIGHUP');
  await waitStderr(gw, from, /config reloaded/);
  assert.doesNotMatch(gw.stderr.slice(from), /listen address/, 'the config file has no listen key and --listen did not change');
});
