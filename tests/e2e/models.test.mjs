// GET /v1/models, GET /v1/models/{id}, /healthz, /readyz.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startStack } from './lib/stack.mjs';

const T = { timeout: 15_000 };
let st;
const NAMES = ['gpt-4o', 'gpt-4o-mini', 'ft:gpt-4o-mini:acme::abc123', 'meta-llama/Llama-3.1-8B-Instruct'];

before(async () => {
  st = await startStack({
    sims: { oa: { flavor: 'openai' }, local: { flavor: 'compatible' } },
    models: [
      { name: 'gpt-4o', deployments: [{ provider: 'oa', model: 'gpt-4o', priority: 1 }] },
      { name: 'gpt-4o-mini', deployments: [{ provider: 'oa', model: 'gpt-4o-mini', priority: 1 }] },
      { name: 'ft:gpt-4o-mini:acme::abc123', deployments: [{ provider: 'oa', model: 'ft:gpt-4o-mini:acme::abc123', priority: 1 }] },
      { name: 'meta-llama/Llama-3.1-8B-Instruct', deployments: [{ provider: 'local', model: 'meta-llama/Llama-3.1-8B-Instruct', priority: 1 }] },
    ],
  });
});
after(() => st?.close());

test('GET /v1/models lists the configured public names in OpenAI list shape', T, async () => {
  const r = await fetch(`${st.url}/v1/models`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  assert.ok(r.headers.get('x-request-id'));
  const j = await r.json();
  assert.equal(j.object, 'list');
  assert.deepEqual(j.data.map((m) => m.id).sort(), [...NAMES].sort());
  for (const m of j.data) {
    assert.equal(m.object, 'model');
    assert.ok(Number.isInteger(m.created), `created ${m.created}`);
    assert.equal(typeof m.owned_by, 'string');
  }
  // served locally
  assert.equal(st.sims.oa.requests.length + st.sims.local.requests.length, 0);
});

test('SDK models.list()', T, async () => {
  const ids = [];
  for await (const m of st.client.models.list()) ids.push(m.id);
  assert.deepEqual(ids.sort(), [...NAMES].sort());
});

test('SDK models.retrieve() for a configured name', T, async () => {
  const m = await st.client.models.retrieve('gpt-4o');
  assert.equal(m.id, 'gpt-4o');
  assert.equal(m.object, 'model');
  assert.ok(Number.isInteger(m.created));
  assert.equal(typeof m.owned_by, 'string');
});

test('retrieve ids with ":" and "/" (the SDK sends "/" as %2F)', T, async () => {
  const ft = await st.client.models.retrieve('ft:gpt-4o-mini:acme::abc123');
  assert.equal(ft.id, 'ft:gpt-4o-mini:acme::abc123');
  const hf = await st.client.models.retrieve('meta-llama/Llama-3.1-8B-Instruct');
  assert.equal(hf.id, 'meta-llama/Llama-3.1-8B-Instruct');
});

test('unknown model id -> 404 model_not_found', T, async () => {
  await assert.rejects(st.client.models.retrieve('gpt-5-imaginary'), (err) => {
    assert.ok(err instanceof OpenAI.NotFoundError, `${err}`);
    assert.equal(err.code, 'model_not_found');
    return true;
  });
  const r = await fetch(`${st.url}/v1/models/gpt-5-imaginary`);
  assert.equal(r.status, 404);
  const j = await r.json();
  assert.equal(j.error.code, 'model_not_found');
  for (const k of ['message', 'type', 'param', 'code']) assert.ok(Object.hasOwn(j.error, k));
});

test('GET /healthz and /readyz -> 200', T, async () => {
  for (const p of ['/healthz', '/readyz']) {
    const r = await fetch(`${st.url}${p}`);
    assert.equal(r.status, 200, p);
    await r.arrayBuffer();
  }
});

test('no violations', T, () => {
  assert.deepEqual(st.allViolations(), []);
});
