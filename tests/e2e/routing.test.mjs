// Routing across deployments: strategies (priority with tie rotation, smooth weighted round-robin,
// least_latency, lowest_price, per-model override), x-cloudmux-route, and the retry rules
// (failover, retry-after / retry-after-ms / HTTP-date, the time budget, timeouts before the first
// byte, no retry after the first byte or on other 4xx, x-should-retry, the error listing every
// attempt).

import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startStack, postJSON, deadProvider, joinDeltas, KEYS } from './lib/stack.mjs';
import { deployments, pool, tally } from './lib/observe.mjs';
import { parseSSE } from '../sim/sse.mjs';
import { waitUntil } from '../sim/openai-sim.mjs';

const T = { timeout: 30_000 };
const msg = (text = 'route me') => [{ role: 'user', content: text }];

/** Records the order in which the simulators of a stack received requests. */
function arrivalLog(st) {
  const log = [];
  for (const sim of Object.values(st.sims)) {
    sim.on('request', (rec) => log.push({ sim: sim.name, at: performance.now(), wall: Date.now(), rec }));
  }
  return log;
}

/** One chat completion through the SDK: {data, response, provider, attempts}. */
async function ask(st, model, { headers, text, client } = {}) {
  const { data, response } = await (client || st.client).chat.completions
    .create({ model, messages: msg(text) }, headers ? { headers } : undefined)
    .withResponse();
  return { data, response, provider: response.headers.get('x-cloudmux-provider'), attempts: response.headers.get('x-cloudmux-attempts') };
}

/** The nginx smooth weighted round-robin sequence (reference implementation). */
function swrr(weights, n) {
  const cur = Object.fromEntries(Object.keys(weights).map((k) => [k, 0]));
  const total = Object.values(weights).reduce((a, b) => a + b, 0);
  const out = [];
  for (let i = 0; i < n; i++) {
    let best = null;
    for (const k of Object.keys(weights)) {
      cur[k] += weights[k];
      if (best === null || cur[k] > cur[best]) best = k;
    }
    cur[best] -= total;
    out.push(best);
  }
  return out;
}

describe('routing across deployments (2 workers)', () => {
  let st;
  let arrivals;
  before(async () => {
    const dead = await deadProvider('nowhere');
    st = await startStack({
      sims: {
        a: { flavor: 'openai' },
        b: { flavor: 'openai' },
        c: { flavor: 'openai' },
        d: { flavor: 'compatible', apiKey: 'sk-d-SIMSECRET-5566' },
        slow: { flavor: 'openai', quirks: { delayMs: 150 } },
        fast: { flavor: 'openai' },
      },
      extraProviders: [dead],
      models: [
        { name: 'prio', deployments: [{ provider: 'c', model: 'gpt-4o', priority: 3 }, { provider: 'a', model: 'gpt-4o', priority: 1 }, { provider: 'b', model: 'gpt-4o', priority: 2 }] },
        { name: 'tie', deployments: [{ provider: 'a', model: 'gpt-4o', priority: 1 }, { provider: 'b', model: 'gpt-4o', priority: 1 }, { provider: 'c', model: 'gpt-4o', priority: 2 }] },
        {
          name: 'weighted',
          routing: { strategy: 'weighted' },
          deployments: [{ provider: 'a', model: 'gpt-4o', weight: 5 }, { provider: 'b', model: 'gpt-4o', weight: 3 }, { provider: 'c', model: 'gpt-4o', weight: 2 }],
        },
        {
          name: 'weighted-order',
          routing: { strategy: 'weighted' },
          deployments: [{ provider: 'a', model: 'gpt-4o', weight: 1 }, { provider: 'b', model: 'gpt-4o', weight: 3 }, { provider: 'c', model: 'gpt-4o', weight: 2 }],
        },
        {
          name: 'latency',
          routing: { strategy: 'least_latency' },
          deployments: [{ provider: 'fast', model: 'gpt-4o', priority: 1 }, { provider: 'slow', model: 'gpt-4o', priority: 2 }],
        },
        {
          name: 'cheap',
          routing: { strategy: 'lowest_price' },
          deployments: [
            { provider: 'a', model: 'gpt-4o', priority: 1, price: { input_per_mtok: 2.5, output_per_mtok: 10 } },
            { provider: 'b', model: 'gpt-4o', priority: 3, price: { input_per_mtok: 0.5, output_per_mtok: 1.5 } },
            { provider: 'c', model: 'gpt-4o', priority: 1 },
            { provider: 'd', model: 'gpt-4o', priority: 2, price: { input_per_mtok: 1.0, output_per_mtok: 1.0 } },
          ],
        },
        {
          name: 'override',
          routing: { strategy: 'lowest_price' },
          deployments: [
            { provider: 'a', model: 'gpt-4o', priority: 1, price: { input_per_mtok: 10, output_per_mtok: 30 } },
            { provider: 'b', model: 'gpt-4o', priority: 2, price: { input_per_mtok: 0.15, output_per_mtok: 0.6 } },
          ],
        },
        { name: 'fo', deployments: [{ provider: 'a', model: 'gpt-4o', priority: 1 }, { provider: 'b', model: 'gpt-4o', priority: 2 }] },
        { name: 'solo', deployments: [{ provider: 'a', model: 'gpt-4o-solo', priority: 1 }] },
        {
          name: 'fbt',
          deployments: [
            { provider: 'a', model: 'gpt-4o', priority: 1, timeouts: { first_byte_ms: 300, idle_ms: 500 } },
            { provider: 'b', model: 'gpt-4o', priority: 2 },
          ],
        },
        {
          name: 'alldown',
          deployments: [{ provider: 'a', model: 'gpt-4o', priority: 1 }, { provider: 'nowhere', model: 'gpt-4o', priority: 2 }, { provider: 'b', model: 'gpt-4o', priority: 3 }],
        },
        { name: 'alldown-transport', deployments: [{ provider: 'a', model: 'gpt-4o', priority: 1 }, { provider: 'nowhere', model: 'gpt-4o', priority: 2 }] },
        { name: 'alltimeout', deployments: [{ provider: 'a', model: 'gpt-4o-slow', priority: 1, timeouts: { first_byte_ms: 200 } }] },
      ],
      routing: {
        strategy: 'priority',
        max_attempts: 4,
        timeout_s: 30,
        connect_timeout_ms: 1000,
        first_byte_timeout_ms: 10_000,
        idle_timeout_ms: 5000,
        // these tests cause many failures on purpose: keep the breakers out of the way
        circuit: { failures: 1000, cooldown_s: 1, max_wait_s: 60 },
      },
    });
    arrivals = arrivalLog(st);
  });
  after(() => st?.close());
  beforeEach(() => {
    st?.reset();
    if (arrivals) arrivals.length = 0;
  });

  const counts = () => Object.fromEntries(Object.entries(st.sims).map(([n, s]) => [n, s.requests.length]));

  // ---- strategies -------------------------------------------------------------------------

  test('priority: the lowest priority serves every request; the others get nothing', T, async () => {
    for (let i = 0; i < 6; i++) {
      const r = await ask(st, 'prio');
      assert.equal(r.data.choices[0].message.content, 'echo: route me');
      assert.equal(r.provider, 'a');
      assert.equal(r.attempts, '1');
    }
    assert.deepEqual([st.sims.a.requests.length, st.sims.b.requests.length, st.sims.c.requests.length], [6, 0, 0]);
  });

  test('priority: equal priorities share the load round-robin; a higher priority gets nothing', T, async () => {
    const providers = [];
    for (let i = 0; i < 20; i++) providers.push((await ask(st, 'tie')).provider);
    const n = tally(providers);
    assert.equal(n.c, undefined, `the priority-2 deployment served: ${JSON.stringify(n)}`);
    assert.equal((n.a || 0) + (n.b || 0), 20);
    // each worker alternates exactly, so with 2 workers the split is off by at most 2
    assert.ok(Math.abs((n.a || 0) - (n.b || 0)) <= 2, `tied deployments split ${JSON.stringify(n)}`);
  });

  test('priority: a failing tie fails over to the other tie before the next priority', T, async () => {
    st.sims.a.enqueue({ status: 500, times: 2 });
    st.sims.b.enqueue({ status: 500, times: 2 });
    // whichever tie goes first fails, the other tie is tried next, then c
    const r = await ask(st, 'tie');
    assert.equal(r.provider, 'c');
    assert.equal(r.attempts, '3');
    assert.deepEqual(arrivals.map((x) => x.sim).slice(0, 2).sort(), ['a', 'b']);
    assert.equal(arrivals[2].sim, 'c');
  });

  test('weighted: 1,000 requests split within ±5 % of the weights (5:3:2)', { timeout: 60_000 }, async () => {
    const providers = await pool(1000, 16, async () => (await ask(st, 'weighted')).provider);
    const n = tally(providers);
    const expected = { a: 500, b: 300, c: 200 };
    for (const [p, want] of Object.entries(expected)) {
      const got = n[p] || 0;
      assert.ok(Math.abs(got - want) <= 50, `${p} served ${got} of 1000, want ${want} ± 50 (split ${JSON.stringify(n)})`);
      assert.equal(st.sims[p].requests.length, got, 'the response header names the simulator that answered');
    }
    assert.equal((n.a || 0) + (n.b || 0) + (n.c || 0), 1000);
  });

  test('weighted: the winner goes first, the others follow by weight for failover', T, async () => {
    // the first request of this model on a worker: the heaviest (b, weight 3) wins, then c (2), then a (1)
    // (max_attempts 4: the fourth attempt retries the last one, a, in place)
    st.sims.a.enqueue({ status: 500, times: 2 });
    st.sims.b.enqueue({ status: 500 });
    st.sims.c.enqueue({ status: 500 });
    const r = await postJSON(st.url, '/v1/chat/completions', { model: 'weighted-order', messages: msg() });
    const j = await r.json();
    assert.equal(r.status, 500, JSON.stringify(j));
    assert.deepEqual(arrivals.map((x) => x.sim), ['b', 'c', 'a', 'a'], `arrival order ${arrivals.map((x) => x.sim)}`);
    assert.deepEqual(j.error.attempts.map((x) => x.provider), ['b', 'c', 'a', 'a']);
  });

  test('least_latency: unmeasured deployments are tried first, then traffic moves to the faster one (with exploration)', { timeout: 60_000 }, async () => {
    // warm-up: the fast one (priority 1) goes first; then the never-measured slow one sorts first
    for (let i = 0; i < 4; i++) await ask(st, 'latency');
    assert.ok(st.sims.slow.requests.length >= 1, `the never-measured slow deployment was not tried in 4 requests: ${JSON.stringify(counts())}`);
    assert.ok(st.sims.fast.requests.length >= 1);
    st.reset();
    const providers = await pool(200, 4, async () => (await ask(st, 'latency')).provider);
    const n = tally(providers);
    assert.ok((n.fast || 0) >= 160, `fast served ${n.fast || 0} of 200 (want >= 80 %): ${JSON.stringify(n)}`);
    assert.ok((n.slow || 0) >= 1, `exploration sent nothing to the slow deployment in 200 requests: ${JSON.stringify(n)}`);
    assert.ok((n.slow || 0) <= 40, `slow served ${n.slow}`);
    const rows = (await deployments(st.url)).data.filter((d) => d.model === 'latency');
    const fast = rows.find((d) => d.provider === 'fast');
    const slow = rows.find((d) => d.provider === 'slow');
    assert.equal(typeof fast.ewma_ttfb_ms, 'number');
    assert.equal(typeof slow.ewma_ttfb_ms, 'number');
    assert.ok(slow.ewma_ttfb_ms >= 100, `slow ewma_ttfb_ms ${slow.ewma_ttfb_ms}`);
    assert.ok(fast.ewma_ttfb_ms < slow.ewma_ttfb_ms, `fast ${fast.ewma_ttfb_ms} ms vs slow ${slow.ewma_ttfb_ms} ms`);
    assert.equal(fast.strategy, 'least_latency');
  });

  test('lowest_price: cheapest input+output first, ties by priority, unpriced last', T, async () => {
    for (let i = 0; i < 5; i++) assert.equal((await ask(st, 'cheap')).provider, 'd');
    assert.equal(st.sims.d.requests.length, 5);
    st.reset();
    arrivals.length = 0;
    // failover order: d (2.0, priority 2), b (2.0, priority 3), a (12.5), c (no price)
    st.sims.d.enqueue({ status: 500 });
    st.sims.b.enqueue({ status: 500 });
    st.sims.a.enqueue({ status: 500 });
    const r = await ask(st, 'cheap');
    assert.equal(r.provider, 'c');
    assert.equal(r.attempts, '4');
    assert.deepEqual(arrivals.map((x) => x.sim), ['d', 'b', 'a', 'c']);
  });

  test('models[].routing.strategy overrides the global strategy', T, async () => {
    for (let i = 0; i < 3; i++) assert.equal((await ask(st, 'override')).provider, 'b', 'lowest_price picks the cheaper priority-2 deployment');
    assert.equal((await ask(st, 'fo')).provider, 'a', 'a model without an override uses the global priority strategy');
    const rows = (await deployments(st.url)).data;
    assert.ok(rows.filter((d) => d.model === 'override').every((d) => d.strategy === 'lowest_price'));
    assert.ok(rows.filter((d) => d.model === 'fo').every((d) => d.strategy === 'priority'));
    assert.ok(rows.filter((d) => d.model === 'weighted').every((d) => d.strategy === 'weighted'));
  });

  // ---- x-cloudmux-route -------------------------------------------------------------------

  test('x-cloudmux-route restricts and orders the providers for one request', T, async () => {
    let r = await ask(st, 'prio', { headers: { 'x-cloudmux-route': 'c' } });
    assert.equal(r.provider, 'c');
    assert.equal(r.attempts, '1');
    r = await ask(st, 'prio', { headers: { 'x-cloudmux-route': 'b, a' } });
    assert.equal(r.provider, 'b');
    // the order of the header, and only its providers
    st.sims.c.enqueue({ status: 500 });
    r = await ask(st, 'prio', { headers: { 'x-cloudmux-route': 'c,b' } });
    assert.equal(r.provider, 'b');
    assert.equal(r.attempts, '2');
    assert.equal(st.sims.a.requests.length, 0, 'a provider left out of the header (or after the one that served) gets nothing');
    // one provider: retried in place, never another one
    st.sims.b.enqueue({ status: 503 });
    r = await ask(st, 'prio', { headers: { 'x-cloudmux-route': 'b' } });
    assert.equal(r.provider, 'b');
    assert.equal(r.attempts, '2');
    assert.deepEqual(arrivals.map((x) => x.sim), ['c', 'b', 'c', 'b', 'b', 'b']);
  });

  test('x-cloudmux-route naming a provider that is not a deployment of the model -> 400 invalid_route', T, async () => {
    for (const route of ['zzz', 'a,zzz', 'slow']) {
      await assert.rejects(ask(st, 'prio', { headers: { 'x-cloudmux-route': route } }), (err) => {
        assert.ok(err instanceof OpenAI.BadRequestError, `${route}: ${err}`);
        assert.equal(err.status, 400);
        assert.equal(err.code, 'invalid_route');
        assert.equal(err.param, 'x-cloudmux-route');
        assert.equal(err.type, 'invalid_request_error');
        return true;
      });
    }
    assert.deepEqual(Object.values(counts()).reduce((a, b) => a + b, 0), 0, 'no simulator was asked');
  });

  // ---- retries and failover ---------------------------------------------------------------

  test('500 on the first deployment, success on the next (failover)', T, async () => {
    st.sims.a.enqueue({ status: 500 });
    const r = await ask(st, 'fo');
    assert.equal(r.data.choices[0].message.content, 'echo: route me');
    assert.equal(r.provider, 'b');
    assert.equal(r.attempts, '2');
    assert.deepEqual(arrivals.map((x) => x.sim), ['a', 'b']);
  });

  for (const status of [408, 409, 429, 500, 502, 503, 504, 529]) {
    test(`${status} is retried on the next deployment`, T, async () => {
      st.sims.a.enqueue({ status });
      const r = await ask(st, 'fo');
      assert.equal(r.provider, 'b');
      assert.equal(r.attempts, '2');
    });
  }

  for (const status of [400, 401, 403, 404, 422]) {
    test(`${status} is not retried: the client gets it as is`, T, async () => {
      st.sims.a.enqueue({ status });
      const r = await postJSON(st.url, '/v1/chat/completions', { model: 'fo', messages: msg() });
      assert.equal(r.status, status);
      assert.equal(r.headers.get('x-cloudmux-provider'), 'a');
      assert.equal(r.headers.get('x-cloudmux-attempts'), '1');
      const j = await r.json();
      const upstream = JSON.parse(st.sims.a.lastRequest.responseBody).error;
      assert.equal(j.error.message, upstream.message, 'a single attempt: the upstream message, no attempt list appended');
      assert.equal(st.sims.b.requests.length, 0);
    });
  }

  test('400 through the SDK: BadRequestError, no retry', T, async () => {
    st.sims.a.enqueue({ status: 400 });
    await assert.rejects(ask(st, 'fo'), (err) => {
      assert.ok(err instanceof OpenAI.BadRequestError, `${err}`);
      assert.equal(err.error?.param, 'temperature');
      return true;
    });
    assert.equal(st.sims.a.requests.length, 1);
    assert.equal(st.sims.b.requests.length, 0);
  });

  test('429 with retry-after-ms on the last deployment: retried in place after at least that wait', T, async () => {
    st.sims.a.enqueue({ status: 429, headers: { 'retry-after-ms': '400' } });
    const t0 = performance.now();
    const r = await ask(st, 'solo');
    assert.equal(r.provider, 'a');
    assert.equal(r.attempts, '2');
    assert.equal(arrivals.length, 2);
    const delay = arrivals[1].at - arrivals[0].at;
    assert.ok(delay >= 400, `the retry came ${delay.toFixed(1)} ms after the 429 (retry-after-ms: 400)`);
    assert.ok(performance.now() - t0 < 5000);
  });

  test('429 with retry-after in seconds on the last deployment: waits at least that long', T, async () => {
    st.sims.a.enqueue({ status: 429, headers: { 'retry-after': '1' } });
    const r = await ask(st, 'solo');
    assert.equal(r.attempts, '2');
    const delay = arrivals[1].at - arrivals[0].at;
    assert.ok(delay >= 1000, `the retry came ${delay.toFixed(1)} ms after the 429 (retry-after: 1)`);
    assert.ok(delay < 6000, `the retry came ${delay.toFixed(1)} ms after the 429`);
  });

  test('503 with retry-after as an HTTP-date on the last deployment: no retry before that date', T, async () => {
    const at = Math.ceil((Date.now() + 1500) / 1000) * 1000; // a whole second, 1.5..2.5 s ahead
    st.sims.a.enqueue({ status: 503, headers: { 'retry-after': new Date(at).toUTCString() } });
    const r = await ask(st, 'solo');
    assert.equal(r.attempts, '2');
    assert.ok(arrivals[1].wall >= at, `the retry arrived ${at - arrivals[1].wall} ms before the retry-after date`);
    assert.ok(arrivals[1].wall < at + 5000);
  });

  test('429 with a retry-after on a deployment that is not the last: the next one serves at once', T, async () => {
    st.sims.a.enqueue({ status: 429, headers: { 'retry-after-ms': '3000', 'retry-after': '3' } });
    const t0 = performance.now();
    const r = await ask(st, 'fo');
    const elapsed = performance.now() - t0;
    assert.equal(r.provider, 'b');
    assert.equal(r.attempts, '2');
    assert.ok(elapsed < 2000, `moving to another deployment waited: ${elapsed.toFixed(0)} ms`);
  });

  test('x-should-retry: false stops retries of a retryable status', T, async () => {
    st.sims.a.enqueue({ status: 500, headers: { 'x-should-retry': 'false' } });
    const r = await postJSON(st.url, '/v1/chat/completions', { model: 'fo', messages: msg() });
    assert.equal(r.status, 500);
    assert.equal(r.headers.get('x-cloudmux-attempts'), '1');
    await r.arrayBuffer();
    assert.equal(st.sims.b.requests.length, 0);
  });

  test('x-should-retry: true forces a retry of a status that is otherwise final', T, async () => {
    st.sims.a.enqueue({ status: 400, headers: { 'x-should-retry': 'true' } });
    const r = await ask(st, 'fo');
    assert.equal(r.provider, 'b');
    assert.equal(r.attempts, '2');
  });

  test('x-should-retry: true on the last deployment retries it in place', T, async () => {
    st.sims.a.enqueue({ status: 400, headers: { 'x-should-retry': 'true' } });
    const r = await ask(st, 'solo');
    assert.equal(r.provider, 'a');
    assert.equal(r.attempts, '2');
  });

  test('the last deployment is retried in place with a bounded backoff until max_attempts', T, async () => {
    st.sims.a.enqueue({ status: 500, times: 3 });
    const t0 = performance.now();
    const r = await ask(st, 'solo');
    const elapsed = performance.now() - t0;
    assert.equal(r.provider, 'a');
    assert.equal(r.attempts, '4');
    assert.equal(arrivals.length, 4);
    // full jitter with a 100 ms base: at most 100 + 200 + 400 ms of waiting (plus slack for slow machines)
    assert.ok(elapsed < 3000, `three in-place retries took ${elapsed.toFixed(0)} ms`);
    st.reset();
    arrivals.length = 0;
    st.sims.a.enqueue({ status: 500, times: 4 });
    const f = await postJSON(st.url, '/v1/chat/completions', { model: 'solo', messages: msg() });
    assert.equal(f.status, 500);
    assert.equal(f.headers.get('x-cloudmux-attempts'), '4');
    assert.equal((await f.json()).error.attempts.length, 4);
    await new Promise((res) => setTimeout(res, 200));
    assert.equal(arrivals.length, 4, 'max_attempts bounds the attempts');
  });

  test('timeout before the first byte (per-deployment timeouts.first_byte_ms 300) moves on', T, async () => {
    st.sims.a.enqueue({ delayMs: 4000 });
    const t0 = performance.now();
    const r = await ask(st, 'fbt');
    const elapsed = performance.now() - t0;
    assert.equal(r.provider, 'b');
    assert.equal(r.attempts, '2');
    assert.ok(elapsed >= 280, `moved on after ${elapsed.toFixed(0)} ms, before the 300 ms first-byte timeout`);
    assert.ok(elapsed < 3000, `moved on after ${elapsed.toFixed(0)} ms (the deployment's first_byte_ms is 300, the global one 10 s)`);
    await waitUntil(() => st.sims.a.closedEarly.length === 1, 2000, 'the timed-out upstream request to be cancelled');
  });

  test('a stream that times out before its first byte moves on too', T, async () => {
    st.sims.a.enqueue({ delayMs: 4000 });
    const stream = await st.client.chat.completions.create({ model: 'fbt', messages: msg('streamed here'), stream: true });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(joinDeltas(chunks), 'echo: streamed here');
    assert.equal(st.sims.b.requests.length, 1);
  });

  test('per-deployment timeouts.idle_ms ends a stalled stream in-band (no retry after the first byte)', T, async () => {
    st.sims.a.enqueue({ hangAfterChunks: 2 });
    const t0 = performance.now();
    const r = await postJSON(st.url, '/v1/chat/completions', { model: 'fbt', messages: msg('a b c d'), stream: true });
    assert.equal(r.status, 200);
    const events = parseSSE(await r.text());
    const elapsed = performance.now() - t0;
    assert.ok(events.some((e) => e.data !== '[DONE]' && JSON.parse(e.data).error), 'an in-band error event');
    assert.ok(elapsed >= 450 && elapsed < 4000, `gave up after ${elapsed.toFixed(0)} ms (idle_ms 500, global idle 5 s)`);
    assert.equal(st.sims.b.requests.length, 0);
  });

  test('reset after 3 stream chunks: the SDK gets the chunks, then an error; no retry', T, async () => {
    st.sims.a.enqueue({ resetAfterChunks: 3, paceMs: 30 });
    const { data: stream, response } = await st.client.chat.completions
      .create({ model: 'fo', messages: msg('hello there friend'), stream: true })
      .withResponse();
    assert.equal(response.headers.get('x-cloudmux-provider'), 'a');
    assert.equal(response.headers.get('x-cloudmux-attempts'), '1');
    const chunks = [];
    await assert.rejects(
      (async () => {
        for await (const c of stream) chunks.push(c);
      })(),
      (err) => {
        assert.ok(err instanceof OpenAI.APIError, `expected APIError, got ${err?.constructor?.name}: ${err}`);
        return true;
      },
    );
    assert.equal(joinDeltas(chunks), 'echo: hello');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(st.sims.b.requests.length, 0, 'the second deployment received nothing');
    assert.equal(st.sims.a.requests.length, 1);
  });

  test('reset after 3 stream chunks, raw: one in-band error event, then the stream ends', T, async () => {
    st.sims.a.enqueue({ resetAfterChunks: 3, paceMs: 30 });
    const r = await postJSON(st.url, '/v1/chat/completions', { model: 'fo', messages: msg('hello there friend'), stream: true });
    assert.equal(r.status, 200);
    const events = parseSSE(await r.text());
    const errs = events.filter((e) => e.data !== '[DONE]' && JSON.parse(e.data).error);
    assert.equal(errs.length, 1);
    assert.equal(typeof JSON.parse(errs[0].data).error.message, 'string');
    assert.ok(events.slice(events.indexOf(errs[0]) + 1).every((e) => e.data === '[DONE]'));
    assert.equal(st.sims.b.requests.length, 0);
  });

  test('all deployments down: the last status, and the error lists every attempt (message and error.attempts)', T, async () => {
    st.sims.a.enqueue({ status: 500 });
    st.sims.b.enqueue({ status: 503, times: 2 });
    const r = await postJSON(st.url, '/v1/chat/completions', { model: 'alldown', messages: msg() });
    const text = await r.text();
    assert.equal(r.status, 503, text);
    assert.equal(r.headers.get('x-cloudmux-provider'), 'b');
    assert.equal(r.headers.get('x-cloudmux-attempts'), '4');
    const j = JSON.parse(text);
    const upstream = JSON.parse(st.sims.b.lastRequest.responseBody).error.message;
    assert.equal(j.error.message, `${upstream} (attempts: a: HTTP 500; nowhere: could not connect to upstream; b: HTTP 503; b: HTTP 503)`);
    assert.deepEqual(j.error.attempts, [
      { provider: 'a', reason: 'HTTP 500' },
      { provider: 'nowhere', reason: 'could not connect to upstream' },
      { provider: 'b', reason: 'HTTP 503' },
      { provider: 'b', reason: 'HTTP 503' },
    ]);
    for (const k of ['message', 'type', 'param', 'code']) assert.ok(Object.hasOwn(j.error, k), `error.${k}`);
    for (const secret of [...Object.values(KEYS), 'sk-dead-provider-key', 'sk-d-SIMSECRET-5566', 'SIMSECRET']) {
      assert.ok(!text.includes(secret), `the error leaks ${secret}`);
      assert.ok(![...r.headers.values()].some((v) => v.includes(secret)), `a header leaks ${secret}`);
    }
    assert.deepEqual(arrivals.map((x) => x.sim), ['a', 'b', 'b']);
  });

  test('all deployments down, through the SDK: APIError with status and error.attempts', T, async () => {
    st.sims.a.enqueue({ status: 500 });
    st.sims.b.enqueue({ status: 503, times: 2 });
    await assert.rejects(ask(st, 'alldown'), (err) => {
      assert.ok(err instanceof OpenAI.InternalServerError, `${err}`);
      assert.equal(err.status, 503);
      assert.equal(err.error?.attempts?.length, 4);
      assert.match(err.message, /\(attempts: a: HTTP 500; nowhere: could not connect to upstream; b: HTTP 503; b: HTTP 503\)/);
      return true;
    });
  });

  test('all down, the last failure a connect failure -> 502 upstream_unreachable listing the attempts', T, async () => {
    st.sims.a.enqueue({ status: 500 });
    const r = await postJSON(st.url, '/v1/chat/completions', { model: 'alldown-transport', messages: msg() });
    const j = await r.json();
    assert.equal(r.status, 502, JSON.stringify(j));
    assert.equal(j.error.code, 'upstream_unreachable');
    assert.equal(j.error.type, 'server_error');
    assert.equal(r.headers.get('x-cloudmux-provider'), 'nowhere');
    assert.equal(r.headers.get('x-cloudmux-attempts'), '4');
    assert.match(j.error.message, / \(attempts: a: HTTP 500; nowhere: could not connect to upstream; nowhere: could not connect to upstream; nowhere: could not connect to upstream\)$/);
    assert.deepEqual(j.error.attempts.map((x) => x.provider), ['a', 'nowhere', 'nowhere', 'nowhere']);
    assert.ok(!JSON.stringify(j).includes('sk-dead-provider-key'));
  });

  test('all attempts time out before the first byte -> 504 upstream_timeout listing the attempts', T, async () => {
    st.sims.a.enqueue({ delayMs: 3000, times: 4 });
    const r = await postJSON(st.url, '/v1/chat/completions', { model: 'alltimeout', messages: msg() });
    const j = await r.json();
    assert.equal(r.status, 504, JSON.stringify(j));
    assert.equal(j.error.code, 'upstream_timeout');
    assert.equal(r.headers.get('x-cloudmux-attempts'), '4');
    assert.deepEqual(j.error.attempts, Array(4).fill({ provider: 'a', reason: 'upstream timed out' }));
    assert.match(j.error.message, /\(attempts: a: upstream timed out; a: upstream timed out; a: upstream timed out; a: upstream timed out\)$/);
  });

  test('no violations were seen by the simulators', T, () => {
    assert.deepEqual(st.allViolations(), []);
  });
});

describe('exact sequences (1 worker)', () => {
  let st;
  before(async () => {
    st = await startStack({
      sims: { x: { flavor: 'openai' }, y: { flavor: 'openai' }, z: { flavor: 'openai' } },
      workers: 1,
      models: [
        { name: 'tie', deployments: [{ provider: 'x', model: 'gpt-4o', priority: 1 }, { provider: 'y', model: 'gpt-4o', priority: 1 }, { provider: 'z', model: 'gpt-4o', priority: 1 }] },
        {
          name: 'swrr',
          routing: { strategy: 'weighted' },
          deployments: [{ provider: 'x', model: 'gpt-4o', weight: 5 }, { provider: 'y', model: 'gpt-4o', weight: 1 }, { provider: 'z', model: 'gpt-4o', weight: 1 }],
        },
      ],
      routing: { max_attempts: 3, timeout_s: 30 },
    });
  });
  after(() => st?.close());
  beforeEach(() => st?.reset());

  test('priority ties rotate exactly: x, y, z each serve every third request', T, async () => {
    const seq = [];
    for (let i = 0; i < 9; i++) seq.push((await ask(st, 'tie')).provider);
    for (let i = 3; i < 9; i++) assert.equal(seq[i], seq[i - 3], `not a rotation: ${seq}`);
    assert.deepEqual([...seq.slice(0, 3)].sort(), ['x', 'y', 'z'], `not a rotation: ${seq}`);
  });

  test('weighted is nginx smooth weighted round-robin (5:1:1 -> x x y x z x x)', T, async () => {
    const seq = [];
    for (let i = 0; i < 14; i++) seq.push((await ask(st, 'swrr')).provider);
    assert.deepEqual(seq, swrr({ x: 5, y: 1, z: 1 }, 14));
  });
});

describe('time budget (routing.timeout_s: 4)', () => {
  let st;
  before(async () => {
    st = await startStack({
      sims: { r: { flavor: 'openai' } },
      models: [{ name: 'budget', deployments: [{ provider: 'r', model: 'gpt-4o', priority: 1 }] }],
      routing: { max_attempts: 3, timeout_s: 4, circuit: { failures: 1000, max_wait_s: 60 } },
    });
  });
  after(() => st?.close());
  beforeEach(() => st?.reset());

  test('429 whose retry-after exceeds the remaining budget on the last deployment ends at once with the 429', T, async () => {
    st.sims.r.enqueue({ status: 429, headers: { 'retry-after': '8' } });
    const t0 = performance.now();
    const r = await postJSON(st.url, '/v1/chat/completions', { model: 'budget', messages: msg() });
    const elapsed = performance.now() - t0;
    const j = await r.json();
    assert.equal(r.status, 429);
    assert.equal(j.error.code, 'rate_limit_exceeded');
    assert.equal(r.headers.get('retry-after'), '8');
    assert.equal(r.headers.get('x-cloudmux-attempts'), '1');
    assert.ok(elapsed < 1500, `the 429 came after ${elapsed.toFixed(0)} ms; waiting is pointless with a 4 s budget`);
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(st.sims.r.requests.length, 1);
  });

  test('the same through the SDK: RateLimitError at once', T, async () => {
    st.sims.r.enqueue({ status: 429, headers: { 'retry-after-ms': '9000' } });
    const t0 = performance.now();
    await assert.rejects(ask(st, 'budget'), (err) => err instanceof OpenAI.RateLimitError);
    assert.ok(performance.now() - t0 < 1500);
    assert.equal(st.sims.r.requests.length, 1);
  });

  test('no violations were seen by the simulators', T, () => {
    assert.deepEqual(st.allViolations(), []);
  });
});
