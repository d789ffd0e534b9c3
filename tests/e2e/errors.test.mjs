// Errors: the gateway's own (OpenAI shape, right status and code), upstream errors passed through,
// timeouts, unreachable upstreams, failures mid-stream, and basic failover.

import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startStack, postJSON, deadProvider, joinDeltas } from './lib/stack.mjs';
import { parseSSE } from '../sim/sse.mjs';
import { waitUntil } from '../sim/openai-sim.mjs';

const T = { timeout: 20_000 };

function assertErrorShape(j, { type, code } = {}) {
  assert.ok(j && typeof j.error === 'object', `error body: ${JSON.stringify(j)}`);
  for (const k of ['message', 'type', 'param', 'code']) assert.ok(Object.hasOwn(j.error, k), `error.${k} missing in ${JSON.stringify(j)}`);
  assert.equal(typeof j.error.message, 'string');
  assert.ok(j.error.message.length > 0);
  if (type !== undefined) assert.equal(j.error.type, type);
  if (code !== undefined) assert.equal(j.error.code, code);
}

describe('single attempt (routing.max_attempts: 1)', () => {
  let st;
  let dead;
  before(async () => {
    dead = await deadProvider('nowhere');
    st = await startStack({
      sims: {
        oa: { flavor: 'openai', models: ['gpt-4o-2024-08-06'] },
        az: { flavor: 'azure', apiVersion: '2024-10-21', deployments: ['gpt4o-prod'] },
      },
      extraProviders: [dead],
      models: [
        { name: 'gpt-4o', deployments: [{ provider: 'oa', model: 'gpt-4o-2024-08-06', priority: 1 }] },
        { name: 'gpt-4o-azure', deployments: [{ provider: 'az', model: 'gpt4o-prod', priority: 1 }] },
        { name: 'unreachable', deployments: [{ provider: 'nowhere', model: 'gpt-4o', priority: 1 }] },
      ],
      routing: { max_attempts: 1, timeout_s: 30, first_byte_timeout_ms: 300, idle_timeout_ms: 700, connect_timeout_ms: 1000 },
      server: { max_body_bytes: 4096 },
    });
  });
  after(() => st?.close());
  beforeEach(() => st?.reset());

  test('malformed JSON -> 400 invalid_request_error invalid_json', T, async () => {
    const r = await postJSON(st.url, '/v1/chat/completions', '{"model":"gpt-4o","messages":[');
    assert.equal(r.status, 400);
    assert.match(r.headers.get('content-type'), /^application\/json/);
    assertErrorShape(await r.json(), { type: 'invalid_request_error', code: 'invalid_json' });
    assert.ok(r.headers.get('x-request-id'));
    assert.equal(st.sims.oa.requests.length, 0);
  });

  test('missing model -> 404 model_not_found', T, async () => {
    const r = await postJSON(st.url, '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }] });
    assert.equal(r.status, 404);
    assertErrorShape(await r.json(), { code: 'model_not_found' });
  });

  test('unknown model -> 404 model_not_found (SDK NotFoundError)', T, async () => {
    await assert.rejects(
      st.client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
      (err) => {
        assert.ok(err instanceof OpenAI.NotFoundError, `${err}`);
        assert.equal(err.status, 404);
        assert.equal(err.code, 'model_not_found');
        return true;
      },
    );
    const r = await postJSON(st.url, '/v1/embeddings', { model: 'no-such-model', input: 'x' });
    assert.equal(r.status, 404);
    assertErrorShape(await r.json(), { code: 'model_not_found' });
    assert.equal(st.sims.oa.requests.length, 0);
  });

  test('body over server.max_body_bytes -> 413 request_too_large', T, async () => {
    const big = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x'.repeat(8000) }] });
    const r = await postJSON(st.url, '/v1/chat/completions', big, { 'x-request-id': 'too-big-1' });
    assert.equal(r.status, 413);
    assertErrorShape(await r.json(), { code: 'request_too_large' });
    // refused by the HTTP server itself, yet a request like any other: its id, an access-log
    // line, the request metrics
    assert.equal(r.headers.get('x-request-id'), 'too-big-1');
    const line = await st.gw.waitForLog((l) => l.request_id === 'too-big-1');
    assert.deepEqual([line.status, line.method, line.path, line.error], [413, 'POST', '/v1/chat/completions', 'request_too_large']);
    const metrics = await (await fetch(`${st.url}/metrics`)).text();
    assert.match(metrics, /cloudmux_requests_total\{[^}]*code="413"\} [1-9]/);
    // the same without Content-Length (chunked upload)
    const stream = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode(big.slice(0, 3000)));
        c.enqueue(new TextEncoder().encode(big.slice(3000)));
        c.close();
      },
    });
    const r2 = await postJSON(st.url, '/v1/chat/completions', undefined, {}, { body: stream, duplex: 'half' });
    assert.equal(r2.status, 413);
    assertErrorShape(await r2.json(), { code: 'request_too_large' });
    assert.equal(st.sims.oa.requests.length, 0);
  });

  test('unknown path -> 404 unknown_url', T, async () => {
    for (const [method, path] of [['GET', '/v1/nope'], ['POST', '/v2/chat/completions'], ['GET', '/']]) {
      const r = await fetch(`${st.url}${path}`, { method, body: method === 'POST' ? '{}' : undefined, headers: { 'content-type': 'application/json' } });
      assert.equal(r.status, 404, `${method} ${path}`);
      assertErrorShape(await r.json(), { code: 'unknown_url' });
    }
  });

  test('wrong method -> 405 method_not_allowed with Allow', T, async () => {
    let r = await fetch(`${st.url}/v1/chat/completions`);
    assert.equal(r.status, 405);
    assert.match(r.headers.get('allow') || '', /\bPOST\b/);
    assertErrorShape(await r.json(), { code: 'method_not_allowed' });
    r = await fetch(`${st.url}/v1/models`, { method: 'DELETE' });
    assert.equal(r.status, 405);
    assert.match(r.headers.get('allow') || '', /\bGET\b/);
    assertErrorShape(await r.json(), { code: 'method_not_allowed' });
    r = await fetch(`${st.url}/v1/embeddings`, { method: 'PUT', body: '{}' });
    assert.equal(r.status, 405);
    assert.match(r.headers.get('allow') || '', /\bPOST\b/);
  });

  test('upstream 400 -> same status and message, not retried', T, async () => {
    const message = "Invalid value for 'temperature': expected a number between 0 and 2.";
    st.sims.oa.enqueue({ status: 400, body: { error: { message, type: 'invalid_request_error', param: 'temperature', code: 'invalid_value' } } });
    await assert.rejects(
      st.client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }], temperature: 5 }),
      (err) => {
        assert.ok(err instanceof OpenAI.BadRequestError, `${err}`);
        assert.equal(err.status, 400);
        assert.equal(err.error?.message, message);
        return true;
      },
    );
    assert.equal(st.sims.oa.requests.length, 1);
  });

  test('upstream 429 with retry-after -> 429, message and retry-after passed through', T, async () => {
    st.sims.oa.enqueue({ status: 429, headers: { 'retry-after': '7', 'retry-after-ms': '7000' } });
    const r = await postJSON(st.url, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] });
    assert.equal(r.status, 429);
    assert.equal(r.headers.get('retry-after'), '7');
    const j = await r.json();
    assertErrorShape(j);
    assert.match(j.error.message, /^Rate limit reached for gpt-4o-2024-08-06/);

    // Azure's 429 (code "429", retry-after) through the SDK
    st.sims.az.enqueue({ status: 429, headers: { 'retry-after': '2', 'retry-after-ms': '2000' } });
    await assert.rejects(
      st.client.chat.completions.create({ model: 'gpt-4o-azure', messages: [{ role: 'user', content: 'x' }] }).withResponse(),
      (err) => {
        assert.ok(err instanceof OpenAI.RateLimitError, `${err}`);
        assert.equal(err.status, 429);
        assert.match(err.error?.message ?? '', /exceeded token rate limit/);
        assert.equal(err.headers?.get?.('retry-after') ?? err.headers?.['retry-after'], '2');
        return true;
      },
    );
    assert.equal(st.sims.oa.requests.length, 1);
    assert.equal(st.sims.az.requests.length, 1);
  });

  test('upstream 500 / 503 -> same status and message', T, async () => {
    for (const status of [500, 503]) {
      st.reset();
      st.sims.oa.enqueue({ status });
      const r = await postJSON(st.url, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] });
      assert.equal(r.status, status);
      const j = await r.json();
      assertErrorShape(j);
      assert.equal(j.error.message, JSON.parse(st.sims.oa.lastRequest.responseBody).error.message);
      assert.equal(st.sims.oa.requests.length, 1, 'max_attempts 1: no retry');
    }
  });

  test('nothing reachable -> 502 server_error upstream_unreachable', T, async () => {
    const t0 = performance.now();
    const r = await postJSON(st.url, '/v1/chat/completions', { model: 'unreachable', messages: [{ role: 'user', content: 'x' }] });
    assert.equal(r.status, 502);
    assertErrorShape(await r.json(), { type: 'server_error', code: 'upstream_unreachable' });
    assert.ok(performance.now() - t0 < 3000);
  });

  test('an upstream redirect -> 502 that says so, never the 3xx or its Location', T, async () => {
    st.sims.oa.enqueue({ status: 302, headers: { location: 'https://elsewhere.example/' } });
    const r = await postJSON(st.url, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] });
    assert.equal(r.status, 502);
    assert.equal(r.headers.get('location'), null);
    const j = await r.json();
    assertErrorShape(j, { type: 'server_error' });
    assert.match(j.error.message, /redirect \(check its base_url\)/);
    const metrics = await (await fetch(`${st.url}/metrics`)).text();
    assert.match(metrics, /cloudmux_upstream_attempts_total\{[^}]*provider="oa"[^}]*outcome="error"\} [1-9]/);
  });

  test('slow upstream, first_byte_timeout_ms 300 -> 504 upstream_timeout within ~1 s', T, async () => {
    st.sims.oa.enqueue({ delayMs: 5000 });
    const t0 = performance.now();
    const r = await postJSON(st.url, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'slow' }] });
    const elapsed = performance.now() - t0;
    assert.equal(r.status, 504);
    assertErrorShape(await r.json(), { code: 'upstream_timeout' });
    assert.ok(elapsed >= 250 && elapsed < 1300, `504 after ${elapsed.toFixed(0)} ms`);
    // and the upstream request was abandoned
    await waitUntil(() => st.sims.oa.closedEarly.length === 1, 1000, 'the upstream request to be cancelled');
  });

  test('slow streaming upstream -> 504 before any byte was sent', T, async () => {
    st.sims.oa.enqueue({ delayMs: 5000 });
    const r = await postJSON(st.url, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'slow' }], stream: true });
    assert.equal(r.status, 504);
    assertErrorShape(await r.json(), { code: 'upstream_timeout' });
  });

  test('connection reset after 3 chunks -> SDK gets the first content, then an APIError', T, async () => {
    st.sims.oa.enqueue({ resetAfterChunks: 3, paceMs: 50 });
    const stream = await st.client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hello there friend' }], stream: true });
    const chunks = [];
    await assert.rejects(
      (async () => {
        for await (const c of stream) chunks.push(c);
      })(),
      (err) => {
        assert.ok(err instanceof OpenAI.APIError, `expected APIError, got ${err?.constructor?.name}: ${err}`);
        assert.ok(err.message.length > 0);
        return true;
      },
    );
    assert.equal(joinDeltas(chunks), 'echo: hello', 'the chunks before the reset reached the client');
    assert.equal(st.sims.oa.requests.length, 1);
  });

  test('connection reset mid-stream, raw: in-band error event, then a clean end', T, async () => {
    st.sims.oa.enqueue({ resetAfterChunks: 3, paceMs: 50 });
    const r = await postJSON(st.url, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'hello there friend' }], stream: true });
    assert.equal(r.status, 200);
    const text = await r.text(); // must not throw: the gateway ends the response properly
    const events = parseSSE(text);
    const errs = events.filter((e) => e.data !== '[DONE]' && JSON.parse(e.data).error);
    assert.equal(errs.length, 1, text);
    const e = JSON.parse(errs[0].data).error;
    assert.equal(typeof e.message, 'string');
    // the error event is the last: no [DONE], which would tell a reader the answer completed
    assert.equal(events.at(-1), errs[0], text);
  });

  test('upstream in-band error event -> SDK APIError with its message', T, async () => {
    st.sims.oa.enqueue({ errorAfterChunks: 2, streamError: { error: { message: 'The model produced invalid content.', type: 'server_error', param: null, code: null } } });
    const stream = await st.client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x y' }], stream: true });
    const chunks = [];
    await assert.rejects(
      (async () => {
        for await (const c of stream) chunks.push(c);
      })(),
      (err) => {
        assert.ok(err instanceof OpenAI.APIError, `${err}`);
        assert.match(err.message, /The model produced invalid content\./);
        return true;
      },
    );
    assert.equal(joinDeltas(chunks), 'echo:');
  });

  test('upstream stalls mid-stream (routing.idle_timeout_ms 700) -> in-band error, stream ends', T, async () => {
    st.sims.oa.enqueue({ hangAfterChunks: 3 });
    const t0 = performance.now();
    const stream = await st.client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'a b c d' }], stream: true });
    const chunks = [];
    await assert.rejects(
      (async () => {
        for await (const c of stream) chunks.push(c);
      })(),
      (err) => err instanceof OpenAI.APIError,
    );
    const elapsed = performance.now() - t0;
    assert.ok(elapsed >= 600 && elapsed < 2500, `gave up after ${elapsed.toFixed(0)} ms`);
    assert.equal(joinDeltas(chunks), 'echo: a');
    await waitUntil(() => st.sims.oa.closedEarly.length === 1, 1000, 'the stalled upstream request to be closed');
  });

  test('no violations were seen by the simulators', T, () => {
    assert.deepEqual(st.allViolations(), []);
  });
});

describe('failover (routing.max_attempts: 3)', () => {
  let st;
  let dead;
  before(async () => {
    dead = await deadProvider('nowhere');
    st = await startStack({
      sims: {
        // listed in the opposite order of their priority on purpose
        secondary: { flavor: 'compatible', apiKey: 'sk-secondary-SECRET-1234', models: ['gpt-4o'] },
        primary: { flavor: 'openai', models: ['gpt-4o-2024-08-06'] },
      },
      extraProviders: [dead],
      models: [
        {
          name: 'gpt-4o',
          deployments: [
            { provider: 'secondary', model: 'gpt-4o', priority: 2 },
            { provider: 'primary', model: 'gpt-4o-2024-08-06', priority: 1 },
          ],
        },
        {
          name: 'dead-first',
          deployments: [
            { provider: 'nowhere', model: 'gpt-4o', priority: 1 },
            { provider: 'secondary', model: 'gpt-4o', priority: 2 },
          ],
        },
      ],
      // these subtests fail the primary on purpose many times in a row: keep its circuit
      // closed so that each subtest sees the priority order (circuit.test.mjs covers opening)
      routing: {
        max_attempts: 3,
        timeout_s: 30,
        first_byte_timeout_ms: 300,
        connect_timeout_ms: 1000,
        circuit: { failures: 1000 },
      },
    });
  });
  after(() => st?.close());
  beforeEach(() => st?.reset());

  const ask = (model = 'gpt-4o') =>
    st.client.chat.completions.create({ model, messages: [{ role: 'user', content: 'fail over' }] }).withResponse();

  test('healthy: the priority-1 deployment serves', T, async () => {
    const { data, response } = await ask();
    assert.equal(data.choices[0].message.content, 'echo: fail over');
    assert.equal(response.headers.get('x-cloudmux-provider'), 'primary');
    assert.equal(response.headers.get('x-cloudmux-attempts'), '1');
    assert.equal(st.sims.secondary.requests.length, 0);
  });

  for (const status of [500, 429, 503, 408]) {
    test(`${status} on the first deployment -> served by the second, attempts 2`, T, async () => {
      st.sims.primary.enqueue({ status });
      const { data, response } = await ask();
      assert.equal(data.choices[0].message.content, 'echo: fail over');
      assert.equal(response.headers.get('x-cloudmux-provider'), 'secondary');
      assert.equal(response.headers.get('x-cloudmux-attempts'), '2');
      assert.equal(st.sims.primary.requests.length, 1);
      assert.equal(st.sims.secondary.requests.length, 1);
      assert.equal(st.sims.secondary.lastRequest.json.model, 'gpt-4o');
      assert.equal(st.sims.secondary.lastRequest.headers.authorization, 'Bearer sk-secondary-SECRET-1234');
    });
  }

  // answers that are neither a result nor an error: failed attempts (an API endpoint never
  // redirects, and a 2xx must carry a JSON answer), never relayed as they are
  for (const [what, b] of [
    ['a 307 redirect', { status: 307, headers: { location: 'https://elsewhere.example/v1/chat/completions' } }],
    ['a 301 redirect', { status: 301, headers: { location: 'https://elsewhere.example/' }, body: '' }],
    ['a 200 whose body is not JSON', { status: 200, body: 'not json at all' }],
    ['a 200 with an empty body', { status: 200, body: '' }],
  ]) {
    test(`${what} on the first deployment -> served by the second, attempts 2`, T, async () => {
      st.sims.primary.enqueue(b);
      const { data, response } = await ask();
      assert.equal(data.choices[0].message.content, 'echo: fail over');
      assert.equal(response.headers.get('x-cloudmux-provider'), 'secondary');
      assert.equal(response.headers.get('x-cloudmux-attempts'), '2');
      assert.equal(response.headers.get('location'), null);
    });
  }

  test('timeout before the first byte -> next deployment', T, async () => {
    st.sims.primary.enqueue({ delayMs: 3000 });
    const t0 = performance.now();
    const { response } = await ask();
    assert.equal(response.headers.get('x-cloudmux-provider'), 'secondary');
    assert.equal(response.headers.get('x-cloudmux-attempts'), '2');
    assert.ok(performance.now() - t0 < 1500);
  });

  test('connect failure -> next deployment', T, async () => {
    const { data, response } = await ask('dead-first');
    assert.equal(data.choices[0].message.content, 'echo: fail over');
    assert.equal(response.headers.get('x-cloudmux-provider'), 'secondary');
    assert.equal(response.headers.get('x-cloudmux-attempts'), '2');
  });

  test('the last deployment is retried while attempts remain; then its error is returned', T, async () => {
    st.sims.primary.enqueue({ status: 500 });
    st.sims.secondary.enqueue({ status: 500, times: 2 });
    const r = await postJSON(st.url, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] });
    assert.equal(r.status, 500);
    assert.equal(r.headers.get('x-cloudmux-attempts'), '3');
    assertErrorShape(await r.json());
    assert.equal(st.sims.primary.requests.length, 1);
    assert.equal(st.sims.secondary.requests.length, 2);
  });

  test('other 4xx are not retried', T, async () => {
    st.sims.primary.enqueue({ status: 400 });
    const r = await postJSON(st.url, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] });
    assert.equal(r.status, 400);
    assert.equal(st.sims.primary.requests.length, 1);
    assert.equal(st.sims.secondary.requests.length, 0);
  });

  test('never retried after the first byte reached the client', T, async () => {
    st.sims.primary.enqueue({ resetAfterChunks: 3, paceMs: 30 });
    const r = await postJSON(st.url, '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'a b c' }], stream: true });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-cloudmux-provider'), 'primary');
    const events = parseSSE(await r.text());
    assert.ok(events.some((e) => e.data !== '[DONE]' && JSON.parse(e.data).error), 'an in-band error');
    assert.equal(st.sims.secondary.requests.length, 0);
  });

  test('a stream fails over before its first byte too', T, async () => {
    st.sims.primary.enqueue({ status: 503 });
    const stream = await st.client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'streamed' }], stream: true });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(joinDeltas(chunks), 'echo: streamed');
    assert.equal(st.sims.secondary.requests.length, 1);
  });

  test('no violations were seen by the simulators', T, () => {
    assert.deepEqual(st.allViolations(), []);
  });
});
