// Credentials, request ids, access log, secret redaction.

import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startStack, postJSON, KEYS, CLIENT_KEY, joinDeltas } from './lib/stack.mjs';
import { parseSSE } from '../sim/sse.mjs';

const T = { timeout: 15_000 };
let st;
const SIM_OF = { 'gpt-4o': 'oa', 'gpt-4o-azure': 'az', llama: 'local' };

before(async () => {
  st = await startStack({
    sims: {
      oa: { flavor: 'openai', models: ['gpt-4o-2024-08-06'] },
      az: { flavor: 'azure', apiVersion: '2024-10-21', deployments: ['gpt4o-prod'] },
      local: { flavor: 'compatible', models: ['llama-3.1-8b'] },
    },
    models: [
      { name: 'gpt-4o', deployments: [{ provider: 'oa', model: 'gpt-4o-2024-08-06', priority: 1 }] },
      { name: 'gpt-4o-azure', deployments: [{ provider: 'az', model: 'gpt4o-prod', priority: 1 }] },
      { name: 'llama', deployments: [{ provider: 'local', model: 'llama-3.1-8b', priority: 1 }] },
    ],
    routing: { max_attempts: 1 },
  });
});
after(() => st?.close());
beforeEach(() => st?.reset());

const ask = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'who am I' }], ...extra });

function assertNoSecrets(text, where) {
  for (const [name, key] of Object.entries({ ...KEYS, client: CLIENT_KEY })) {
    assert.ok(!text.includes(key), `${name} key appears in ${where}`);
  }
}

test("the client's Authorization and api-key are never forwarded; each provider gets its own", T, async () => {
  const client = st.sdk({ defaultHeaders: { 'api-key': CLIENT_KEY } });
  for (const model of Object.keys(SIM_OF)) {
    await client.chat.completions.create(ask(model));
    const chunks = [];
    for await (const c of await client.chat.completions.create(ask(model, { stream: true }))) chunks.push(c);
    assert.equal(joinDeltas(chunks), 'echo: who am I');
    await client.embeddings.create({ model, input: 'x' }).catch(() => {}); // whatever the answer, nothing may leak
  }
  const oa = st.sims.oa.requests.filter((r) => r.op === 'chat');
  const az = st.sims.az.requests.filter((r) => r.op === 'chat');
  const local = st.sims.local.requests.filter((r) => r.op === 'chat');
  assert.equal(oa.length, 2);
  assert.equal(az.length, 2);
  assert.equal(local.length, 2);
  for (const r of oa) {
    assert.equal(r.headers.authorization, `Bearer ${KEYS.openai}`);
    assert.equal(r.headers['api-key'], undefined);
  }
  for (const r of az) {
    assert.equal(r.headers['api-key'], KEYS.azure);
    assert.equal(r.headers.authorization, undefined);
  }
  for (const r of local) {
    assert.equal(r.headers.authorization, undefined);
    assert.equal(r.headers['api-key'], undefined);
  }
  for (const sim of Object.values(st.sims)) {
    for (const r of sim.requests) assertNoSecrets(JSON.stringify(r.headers).replace(sim.apiKey ?? '\0', ''), `${sim.name} request headers`);
  }
  assert.deepEqual(st.violations(), []);
});

test('x-request-id: echoed when sent, on success, stream and error', T, async () => {
  let r = await postJSON(st.url, '/v1/chat/completions', ask('gpt-4o'), { 'x-request-id': 'e2e-req-42' });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('x-request-id'), 'e2e-req-42');
  await r.arrayBuffer();
  r = await postJSON(st.url, '/v1/chat/completions', ask('gpt-4o-azure', { stream: true }), { 'x-request-id': 'e2e-req-43' });
  assert.equal(r.headers.get('x-request-id'), 'e2e-req-43');
  await r.arrayBuffer();
  r = await postJSON(st.url, '/v1/chat/completions', ask('nope'), { 'x-request-id': 'e2e-req-44' });
  assert.equal(r.status, 404);
  assert.equal(r.headers.get('x-request-id'), 'e2e-req-44');
  await r.arrayBuffer();
  r = await fetch(`${st.url}/v1/models`, { headers: { 'x-request-id': 'e2e-req-45' } });
  assert.equal(r.headers.get('x-request-id'), 'e2e-req-45');
  await r.arrayBuffer();
});

test("x-request-id: generated when absent, unique, and not the upstream's", T, async () => {
  const ids = new Set();
  for (const model of ['gpt-4o', 'gpt-4o', 'gpt-4o-azure']) {
    const r = await postJSON(st.url, '/v1/chat/completions', ask(model));
    await r.arrayBuffer();
    const id = r.headers.get('x-request-id');
    assert.ok(id && id.length >= 8, `generated id ${id}`);
    assert.ok(!id.includes(','), `one x-request-id header, got "${id}"`);
    const upstreamId = st.sims[SIM_OF[model]].lastRequest.responseHeaders['x-request-id'];
    assert.notEqual(id, upstreamId, "the upstream's x-request-id replaced ours");
    ids.add(id);
  }
  assert.equal(ids.size, 3);
  const r = await fetch(`${st.url}/v1/nope`);
  await r.arrayBuffer();
  assert.ok(r.headers.get('x-request-id'), 'errors get an id too');
});

test('access log: one JSON line per request with the documented fields', T, async () => {
  const rid = `log-${Date.now()}`;
  const r = await postJSON(st.url, '/v1/chat/completions', ask('gpt-4o'), { 'x-request-id': rid });
  assert.equal(r.status, 200);
  await r.arrayBuffer();
  const usage = st.sims.oa.lastRequest.answer.usage;
  const line = await st.gw.waitForLog((l) => l.request_id === rid);
  for (const k of ['time', 'request_id', 'method', 'path', 'model', 'provider', 'status', 'latency_ms', 'upstream_latency_ms', 'prompt_tokens', 'completion_tokens']) {
    assert.ok(Object.hasOwn(line, k), `access log lacks ${k}: ${JSON.stringify(line)}`);
  }
  assert.ok(!Number.isNaN(Date.parse(typeof line.time === 'number' ? new Date(line.time).toISOString() : line.time)), `time ${line.time}`);
  assert.match(line.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(Math.abs(Date.parse(line.time) - Date.now()) < 10_000, `time ${line.time} is now`);
  assert.equal(line.attempts, 1);
  assert.equal(line.stream, false);
  assert.equal(line.error, null);
  assert.equal(line.method, 'POST');
  assert.equal(line.path, '/v1/chat/completions');
  assert.equal(line.model, 'gpt-4o');
  assert.equal(line.provider, 'oa');
  assert.equal(line.status, 200);
  assert.equal(typeof line.latency_ms, 'number');
  assert.equal(typeof line.upstream_latency_ms, 'number');
  assert.ok(line.latency_ms >= 0 && line.upstream_latency_ms >= 0);
  assert.ok(line.upstream_latency_ms <= line.latency_ms + 1, 'upstream latency within total latency');
  assert.equal(line.prompt_tokens, usage.prompt_tokens);
  assert.equal(line.completion_tokens, usage.completion_tokens);
  assert.equal(st.gw.accessLog().filter((l) => l.request_id === rid).length, 1, 'exactly one line');
});

test('access log: a stream without include_usage is still metered with the upstream usage', T, async () => {
  const rid = `log-stream-${Date.now()}`;
  const r = await postJSON(st.url, '/v1/chat/completions', ask('gpt-4o-azure', { stream: true }), { 'x-request-id': rid });
  await r.text();
  const usage = st.sims.az.lastRequest.answer.usage;
  const line = await st.gw.waitForLog((l) => l.request_id === rid);
  assert.equal(line.status, 200);
  assert.equal(line.provider, 'az');
  assert.equal(line.prompt_tokens, usage.prompt_tokens);
  assert.equal(line.completion_tokens, usage.completion_tokens);
});

test('access log: errors are logged too; every stdout line is JSON', T, async () => {
  const rid = `log-err-${Date.now()}`;
  const r = await postJSON(st.url, '/v1/chat/completions', ask('nope'), { 'x-request-id': rid });
  await r.arrayBuffer();
  const line = await st.gw.waitForLog((l) => l.request_id === rid);
  assert.equal(line.status, 404);
  for (const l of st.gw.stdoutLines) {
    if (!l.trim()) continue;
    assert.doesNotThrow(() => JSON.parse(l), `stdout line is not JSON: ${l}`);
  }
});

test('an upstream error that echoes the provider key reaches the client redacted', T, async () => {
  st.sims.oa.enqueue({ echoKeyInError: true });
  await assert.rejects(st.client.chat.completions.create(ask('gpt-4o')), (err) => {
    assert.ok(err instanceof OpenAI.AuthenticationError, `${err}`);
    assert.equal(err.status, 401);
    assert.ok(!err.message.includes(KEYS.openai), `key in message: ${err.message}`);
    assert.match(err.message, /\[REDACTED\]/);
    assert.match(err.message, /^401 Incorrect API key provided: /);
    return true;
  });

  st.sims.az.enqueue({ echoKeyInError: true });
  const r = await postJSON(st.url, '/v1/chat/completions', ask('gpt-4o-azure'));
  const text = await r.text();
  assert.equal(r.status, 401);
  assertNoSecrets(text, 'the error body');
  assert.match(JSON.parse(text).error.message, /\[REDACTED\]/);
  for (const [k, v] of r.headers) assertNoSecrets(`${k}: ${v}`, 'response headers');
});

test('an in-band stream error that echoes the key is redacted too', T, async () => {
  st.sims.oa.enqueue({
    errorAfterChunks: 2,
    streamError: { error: { message: `upstream auth glitch for key ${KEYS.openai}`, type: 'server_error', param: null, code: null } },
  });
  const r = await postJSON(st.url, '/v1/chat/completions', ask('gpt-4o', { stream: true }));
  const text = await r.text();
  assertNoSecrets(text, 'the stream');
  const errEv = parseSSE(text).find((e) => e.data !== '[DONE]' && JSON.parse(e.data).error);
  assert.ok(errEv, text);
  assert.match(JSON.parse(errEv.data).error.message, /\[REDACTED\]/);
});

test('no key appears anywhere in the gateway stdout or stderr', T, async () => {
  // a few more requests that tend to get logged
  st.sims.oa.enqueue({ status: 500 });
  await (await postJSON(st.url, '/v1/chat/completions', ask('gpt-4o'))).arrayBuffer();
  await (await postJSON(st.url, '/v1/chat/completions', '{bad json', { 'api-key': CLIENT_KEY })).arrayBuffer();
  await new Promise((r) => setTimeout(r, 200));
  assertNoSecrets(st.gw.stdoutText, 'gateway stdout');
  assertNoSecrets(st.gw.stderr, 'gateway stderr');
});

test('no violations', T, () => {
  assert.deepEqual(st.allViolations(), []);
});

test('server.protect_probes puts /healthz, /readyz and /metrics behind the admin key', T, async () => {
  const { startGateway } = await import('./lib/gateway.mjs');
  const admin = 'adm-probe-7c1e0f2a9b';
  for (const protect of [true, false]) {
    const gw = await startGateway({
      config: { ...st.config, admin_key: '${CMX_E2E_PROBE_ADMIN}', server: { protect_probes: protect } },
      env: { ...st.env, CMX_E2E_PROBE_ADMIN: admin },
      readyHeaders: { authorization: `Bearer ${admin}` },
    });
    try {
      for (const path of ['/healthz', '/readyz', '/metrics']) {
        const open = await fetch(`${gw.url}${path}`);
        assert.equal(open.status, protect ? 401 : 200, `${path} without the key (protect_probes: ${protect})`);
        if (protect) assert.equal((await open.json()).error.code, 'invalid_admin_key');
        const keyed = await fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${admin}` } });
        assert.equal(keyed.status, 200, `${path} with the key`);
        await keyed.arrayBuffer();
      }
    } finally {
      await gw.kill();
    }
  }
});
