// Process lifecycle: graceful SIGTERM, drain bound, startup failures, `cloudmux check`, --version,
// client disconnects.

import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startSim, waitUntil } from '../sim/openai-sim.mjs';
import { startGateway, runCloudmux, writeConfig, freePort, sanitizerReport } from './lib/gateway.mjs';
import { providerFor, envVarFor, postJSON, sdk, KEYS, CLIENT_KEY } from './lib/stack.mjs';
import { RawConn, request } from './lib/rawhttp.mjs';
import { readSSE } from '../sim/sse.mjs';

const T = { timeout: 30_000 };
let oa;
const gateways = [];

before(async () => {
  oa = await startSim({ flavor: 'openai', name: 'oa', apiKey: KEYS.openai, models: ['gpt-4o'] });
});
after(async () => {
  for (const gw of gateways) await gw.kill();
  await oa?.close();
  const reports = gateways.map((gw) => gw.sanitizerReport()).filter(Boolean);
  if (reports.length) throw new Error(`cloudmux reported memory/UB errors:\n${reports.join('\n----\n')}`);
});
beforeEach(() => oa?.reset());

function config(extra = {}) {
  return {
    providers: [providerFor(oa)],
    models: [{ name: 'gpt-4o', deployments: [{ provider: 'oa', model: 'gpt-4o', priority: 1 }] }],
    routing: { max_attempts: 1, timeout_s: 30 },
    ...extra,
  };
}

async function gateway(extra = {}, opts = {}) {
  const gw = await startGateway({ config: config(extra), env: { [envVarFor('oa')]: KEYS.openai }, ...opts });
  gateways.push(gw);
  return gw;
}

function connectResult(port, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const t = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e) => {
      clearTimeout(t);
      resolve(e.code);
    });
  });
}

// runCloudmux, failing on any sanitizer/allocator report
async function run(args, opts) {
  const res = await runCloudmux(args, opts);
  assert.equal(sanitizerReport(res.stderr), null, `cloudmux ${args.join(' ')} reported a memory/UB error`);
  return res;
}

const streamBody = (text = 'drain me') => ({ model: 'gpt-4o', messages: [{ role: 'user', content: text }], stream: true });

test('SIGTERM during a paced stream: the stream completes, exit code 0, then connections are refused', T, async () => {
  const gw = await gateway({ server: { drain_timeout_s: 10 } });
  oa.enqueue({ paceMs: 100, chunks: 15 });
  const r = await postJSON(gw.url, '/v1/chat/completions', streamBody());
  assert.equal(r.status, 200);
  const events = [];
  let signalled = false;
  for await (const ev of readSSE(r)) {
    events.push(ev);
    if (!signalled && ev.data !== '[DONE]' && JSON.parse(ev.data).choices?.[0]?.delta?.content) {
      signalled = true;
      gw.process.kill('SIGTERM');
    }
  }
  assert.ok(signalled);
  assert.equal(events.at(-1).data, '[DONE]', 'the stream ran to its end');
  const content = events.slice(0, -1).map((e) => JSON.parse(e.data).choices?.[0]?.delta?.content ?? '').join('');
  assert.equal(content, oa.lastRequest.answer.text);
  const code = await gw.waitExit(10_000);
  assert.equal(code, 0, `exit code ${code} signal ${gw.exitSignal}; stderr:\n${gw.stderr}`);
  assert.equal(await connectResult(gw.port), 'ECONNREFUSED');
  assert.deepEqual(oa.violations, []);
});

test('SIGTERM: the listener closes at once while in-flight requests drain', T, async () => {
  const gw = await gateway({ server: { drain_timeout_s: 10 } });
  oa.enqueue({ paceMs: 100, chunks: 20 });
  const r = await postJSON(gw.url, '/v1/chat/completions', streamBody());
  const it = readSSE(r);
  await it.next();
  await it.next();
  gw.process.kill('SIGTERM');
  await new Promise((res) => setTimeout(res, 300));
  const during = await connectResult(gw.port);
  let last;
  for await (const ev of it) last = ev;
  assert.equal(last.data, '[DONE]');
  assert.equal(await gw.waitExit(10_000), 0);
  assert.equal(during, 'ECONNREFUSED', `a new connection during the drain: ${during}`);
});

test('SIGTERM: the drain is bounded by server.drain_timeout_s', T, async () => {
  const gw = await gateway({ server: { drain_timeout_s: 1 } });
  oa.enqueue({ hangAfterChunks: 2 });
  const r = await postJSON(gw.url, '/v1/chat/completions', streamBody('hang'));
  const it = readSSE(r);
  await it.next();
  const t0 = performance.now();
  gw.process.kill('SIGTERM');
  const code = await gw.waitExit(6000);
  const took = performance.now() - t0;
  assert.equal(code, 0, `exit code ${code} signal ${gw.exitSignal}`);
  assert.ok(took >= 800 && took < 3500, `exited ${took.toFixed(0)} ms after SIGTERM (drain_timeout_s 1)`);
  // the client's stream ends one way or another
  await (async () => {
    for await (const _ of it); // eslint-disable-line no-unused-vars
  })().catch(() => {});
});

test('SIGTERM with only idle keep-alive connections exits promptly', T, async () => {
  const gw = await gateway({ server: { drain_timeout_s: 10 } });
  const c = await RawConn.open(gw.port);
  await c.write(request('GET', '/healthz'));
  assert.equal((await c.readResponse()).status, 200);
  const t0 = performance.now();
  gw.process.kill('SIGTERM');
  const code = await gw.waitExit(8000);
  c.close();
  assert.equal(code, 0);
  assert.ok(performance.now() - t0 < 2000, `exit took ${(performance.now() - t0).toFixed(0)} ms with an idle connection open`);
});

test('client abort mid-stream cancels the upstream request within 1 s', T, async () => {
  const gw = await gateway();
  oa.enqueue({ paceMs: 100, chunks: 40 });
  const client = sdk(gw);
  const stream = await client.chat.completions.create(streamBody('cancel me'));
  let got = 0;
  for await (const c of stream) {
    if (c.choices?.[0]?.delta?.content) got++;
    if (got === 2) break; // the SDK aborts the HTTP request
  }
  const t0 = performance.now();
  await waitUntil(() => oa.closedEarly.length === 1, 1000, 'the upstream request to be closed early');
  assert.ok(performance.now() - t0 < 1000);
  assert.ok(oa.lastRequest.events.length < 30, 'the upstream did not run to the end');
  // the gateway is fine afterwards
  const res = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'still here' }] });
  assert.equal(res.choices[0].message.content, 'echo: still here');
  assert.deepEqual(oa.violations, []);
});

test('client disconnect during a non-stream wait cancels the upstream request', T, async () => {
  const gw = await gateway();
  oa.enqueue({ delayMs: 5000 });
  const ac = new AbortController();
  const p = postJSON(gw.url, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }, {}, { signal: ac.signal });
  await waitUntil(() => oa.requests.length === 1, 2000, 'the upstream request');
  ac.abort();
  await assert.rejects(p);
  await waitUntil(() => oa.closedEarly.length === 1, 1000, 'the upstream request to be closed early');
});

test('a missing ${VAR} makes serve exit non-zero, naming the variable', T, async () => {
  const { file } = await writeConfig({
    providers: [{ ...providerFor(oa), api_key: '${CMX_E2E_SURELY_MISSING_VAR}' }],
    models: [{ name: 'gpt-4o', deployments: [{ provider: 'oa', model: 'gpt-4o', priority: 1 }] }],
  });
  const port = await freePort();
  const res = await run(['serve', '--config', file, '--listen', `127.0.0.1:${port}`, '--workers', '1'], {
    env: { CMX_E2E_SURELY_MISSING_VAR: undefined },
    timeoutMs: 5000,
  });
  assert.equal(res.timedOut, false, 'serve kept running with a missing variable');
  assert.notEqual(res.code, 0);
  assert.match(res.stderr + res.stdout, /CMX_E2E_SURELY_MISSING_VAR/);
});

test('${VAR:-default} uses the default when VAR is unset', T, async () => {
  const sim = await startSim({ flavor: 'openai', name: 'dflt', apiKey: 'sk-default-from-config-123', models: ['gpt-4o'] });
  try {
    const gw = await startGateway({
      config: {
        providers: [{ ...providerFor(sim), api_key: '${CMX_E2E_UNSET_WITH_DEFAULT:-sk-default-from-config-123}' }],
        models: [{ name: 'gpt-4o', deployments: [{ provider: 'dflt', model: 'gpt-4o', priority: 1 }] }],
      },
      env: { CMX_E2E_UNSET_WITH_DEFAULT: undefined },
    });
    gateways.push(gw);
    const res = await sdk(gw).chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'default key' }] });
    assert.equal(res.choices[0].message.content, 'echo: default key');
    assert.deepEqual(sim.violations, []);
  } finally {
    await sim.close();
  }
});

const VALID = `providers:
  - name: oa
    type: openai
    cloud: openai
    base_url: http://127.0.0.1:9/v1
    api_key: \${CMX_E2E_CHECK_KEY}
  - name: az
    type: azure_openai
    cloud: azure
    region: eastus
    base_url: http://127.0.0.1:9
    api_key: \${CMX_E2E_CHECK_AZ_KEY}
    api_version: 2024-10-21
  - name: local
    type: openai_compatible
    cloud: onprem
    base_url: http://127.0.0.1:9/v1
models:
  - name: gpt-4o
    deployments:
      - provider: az
        model: gpt4o-prod
        priority: 1
        price: { input_per_mtok: 2.50, output_per_mtok: 10.00 }
      - provider: oa
        model: gpt-4o
        priority: 2
  - name: llama
    deployments:
      - provider: local
        model: llama-3.1-8b
        priority: 1
routing:
  max_attempts: 3
  timeout_s: 600
`;

// line 8: unknown provider type; line 17: a deployment naming an unknown provider
const INVALID = `providers:
  - name: oa
    type: openai
    cloud: openai
    base_url: http://127.0.0.1:9/v1
    api_key: \${CMX_E2E_CHECK_KEY}
  - name: weird
    type: carrier_pigeon
    cloud: onprem
    base_url: http://127.0.0.1:9/v1
models:
  - name: gpt-4o
    deployments:
      - provider: oa
        model: gpt-4o
        priority: 1
      - provider: ghost
        model: gpt-4o
        priority: 2
`;

const CHECK_ENV = { CMX_E2E_CHECK_KEY: 'sk-check-SECRET-value-987', CMX_E2E_CHECK_AZ_KEY: 'az-check-SECRET-value-654' };

test('cloudmux check: a valid config exits 0 with a summary (and no secrets)', T, async () => {
  const { file } = await writeConfig(VALID);
  const res = await run(['check', '--config', file], { env: CHECK_ENV });
  assert.equal(res.code, 0, `stdout:\n${res.stdout}\nstderr:\n${res.stderr}`);
  assert.ok((res.stdout + res.stderr).trim().length > 0, 'prints a summary');
  for (const v of Object.values(CHECK_ENV)) assert.ok(!(res.stdout + res.stderr).includes(v), 'a secret in check output');
});

test('cloudmux check: an invalid config exits 1 with file:line for each error', T, async () => {
  const { file } = await writeConfig(INVALID);
  const res = await run(['check', '--config', file], { env: CHECK_ENV });
  const out = res.stdout + res.stderr;
  assert.equal(res.code, 1, out);
  const esc = file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  assert.match(out, new RegExp(`${esc}:8(?!\\d)`), `no ${file}:8 (unknown type) in:\n${out}`);
  assert.match(out, new RegExp(`${esc}:17(?!\\d)`), `no ${file}:17 (unknown provider) in:\n${out}`);
  assert.match(out, /carrier_pigeon/);
  assert.match(out, /ghost/);
});

test('cloudmux check: YAML syntax error exits 1 with file:line', T, async () => {
  const { file } = await writeConfig('providers:\n  - name: oa\n    type: [openai\nmodels: []\n');
  const res = await run(['check', '--config', file], { env: CHECK_ENV });
  assert.equal(res.code, 1, res.stdout + res.stderr);
  const esc = file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  assert.match(res.stdout + res.stderr, new RegExp(`${esc}:\\d+`));
});

test('serve refuses an invalid config', T, async () => {
  const { file } = await writeConfig(INVALID);
  const port = await freePort();
  const res = await run(['serve', '--config', file, '--listen', `127.0.0.1:${port}`], { env: CHECK_ENV, timeoutMs: 5000 });
  assert.equal(res.timedOut, false, 'serve kept running with an invalid config');
  assert.notEqual(res.code, 0);
});

test('cloudmux --version', T, async () => {
  const res = await run(['--version']);
  assert.equal(res.code, 0);
  assert.match(res.stdout, /cloudmux/i);
  assert.match(res.stdout, /\d+\.\d+\.\d+/);
});

test('the client key never reaches the upstream (lifecycle gateway)', T, async () => {
  const gw = await gateway();
  await sdk(gw).chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] });
  assert.equal(oa.lastRequest.headers.authorization, `Bearer ${KEYS.openai}`);
  assert.ok(!JSON.stringify(oa.lastRequest.headers).includes(CLIENT_KEY));
});
