// POST /v1/embeddings through OpenAI and Azure: float and base64, batches, token input, dimensions.

import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, postJSON, rawFields } from './lib/stack.mjs';
import { embeddingFor, embeddingToBase64 } from '../sim/openai-sim.mjs';

const T = { timeout: 15_000 };
let st;

before(async () => {
  st = await startStack({
    sims: {
      oa: { flavor: 'openai', models: ['text-embedding-3-small'] },
      az: { flavor: 'azure', apiVersion: '2024-10-21', deployments: ['embed-prod'] },
      azv1: { flavor: 'azure', v1: true, deployments: ['embed-v1'] },
    },
    models: [
      { name: 'text-embedding-3-small', deployments: [{ provider: 'oa', model: 'text-embedding-3-small', priority: 1 }] },
      { name: 'embed-azure', deployments: [{ provider: 'az', model: 'embed-prod', priority: 1 }] },
      { name: 'embed-azure-v1', deployments: [{ provider: 'azv1', model: 'embed-v1', priority: 1 }] },
    ],
    routing: { max_attempts: 1 },
  });
});
after(() => st?.close());
beforeEach(() => st?.reset());

test('float embeddings (explicit encoding_format float)', T, async () => {
  const { data, response } = await st.client.embeddings
    .create({ model: 'text-embedding-3-small', input: 'hello world', encoding_format: 'float' })
    .withResponse();
  assert.equal(response.headers.get('x-cloudmux-provider'), 'oa');
  assert.equal(data.object, 'list');
  assert.equal(data.data.length, 1);
  assert.equal(data.data[0].object, 'embedding');
  assert.equal(data.data[0].index, 0);
  assert.deepEqual(data.data[0].embedding, embeddingFor('hello world'));
  assert.equal(data.usage.prompt_tokens, 2);
  assert.equal(data.usage.total_tokens, 2);
  const rec = st.sims.oa.lastRequest;
  assert.equal(rec.path, '/v1/embeddings');
  assert.equal(rec.json.model, 'text-embedding-3-small');
  assert.equal(rec.json.encoding_format, 'float');
  assert.deepEqual(st.violations(), []);
});

test('SDK default (asks for base64, decodes it) gives the exact float32 values', T, async () => {
  const res = await st.client.embeddings.create({ model: 'text-embedding-3-small', input: 'decode me' });
  assert.equal(st.sims.oa.lastRequest.json.encoding_format, 'base64');
  assert.deepEqual(res.data[0].embedding, embeddingFor('decode me'));
  assert.deepEqual(st.violations(), []);
});

test('explicit base64 is returned as the upstream sent it', T, async () => {
  const res = await st.client.embeddings.create({ model: 'text-embedding-3-small', input: 'b64', encoding_format: 'base64', dimensions: 16 });
  assert.equal(res.data[0].embedding, embeddingToBase64(embeddingFor('b64', 16)));
  assert.equal(st.sims.oa.lastRequest.json.dimensions, 16);
  assert.deepEqual(st.violations(), []);
});

test('batch input: string[], int[], int[][]', T, async () => {
  const batch = ['alpha', 'beta gamma', 'delta'];
  let res = await st.client.embeddings.create({ model: 'text-embedding-3-small', input: batch, encoding_format: 'float', dimensions: 4 });
  assert.equal(res.data.length, 3);
  res.data.forEach((d, i) => {
    assert.equal(d.index, i);
    assert.deepEqual(d.embedding, embeddingFor(batch[i], 4));
  });
  assert.equal(res.usage.prompt_tokens, 4);

  res = await st.client.embeddings.create({ model: 'text-embedding-3-small', input: [1734, 2, 9007], encoding_format: 'float' });
  assert.equal(res.data.length, 1);
  assert.deepEqual(res.data[0].embedding, embeddingFor([1734, 2, 9007]));

  res = await st.client.embeddings.create({ model: 'text-embedding-3-small', input: [[1, 2], [3, 4, 5]], encoding_format: 'float' });
  assert.equal(res.data.length, 2);
  assert.deepEqual(res.data[1].embedding, embeddingFor([3, 4, 5]));
  assert.equal(rawFields(st.sims.oa.lastRequest.body).get('input'), '[[1,2],[3,4,5]]');
  assert.deepEqual(st.violations(), []);
});

test('Azure classic embeddings: deployment URL, api-version, api-key', T, async () => {
  const res = await st.client.embeddings.create({ model: 'embed-azure', input: ['x', 'y'], encoding_format: 'float' });
  assert.equal(res.data.length, 2);
  assert.deepEqual(res.data[1].embedding, embeddingFor('y'));
  const rec = st.sims.az.lastRequest;
  assert.equal(rec.path, '/openai/deployments/embed-prod/embeddings');
  assert.equal(rec.query['api-version'], '2024-10-21');
  assert.deepEqual(st.violations(), []);
});

test('Azure v1 embeddings: /openai/v1/embeddings with the deployment as model', T, async () => {
  const res = await st.client.embeddings.create({ model: 'embed-azure-v1', input: 'z', encoding_format: 'float' });
  assert.deepEqual(res.data[0].embedding, embeddingFor('z'));
  const rec = st.sims.azv1.lastRequest;
  assert.equal(rec.path, '/openai/v1/embeddings');
  assert.equal(rec.json.model, 'embed-v1');
  assert.deepEqual(st.violations(), []);
});

test('other fields pass through byte for byte', T, async () => {
  const body = '{"model":"text-embedding-3-small","input":["a"],"encoding_format":"float","dimensions":8,"user":"u-1"}';
  const r = await postJSON(st.url, '/v1/embeddings', body);
  assert.equal(r.status, 200, await r.text());
  const got = rawFields(st.sims.oa.lastRequest.body);
  const sent = rawFields(body);
  for (const [k, v] of sent) if (k !== 'model') assert.equal(got.get(k), v, k);
  assert.deepEqual(st.violations(), []);
});

test('no violations', T, () => {
  assert.deepEqual(st.allViolations(), []);
});
