// GET /metrics: Prometheus text that promtool accepts, and values that move as requests go by —
// requests by model/provider/cloud/code, upstream attempts by outcome, the three histograms, tokens,
// the in-flight gauge and the circuit gauge.

import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, postJSON, deadProvider } from './lib/stack.mjs';
import { scrape, value, series, promtoolCheck, findPromtool, pool, sleep, deployments, deployment } from './lib/observe.mjs';
import { waitUntil } from '../sim/openai-sim.mjs';
import { readSSE } from '../sim/sse.mjs';

const T = { timeout: 30_000 };
const msg = (text = 'count me') => [{ role: 'user', content: text }];
const ODD = 'odd"model\\name';

describe('metrics', () => {
  let st;
  before(async () => {
    const dead = await deadProvider('nowhere');
    st = await startStack({
      sims: {
        a: { flavor: 'openai' },
        b: { flavor: 'openai' },
        az: { flavor: 'azure', apiVersion: '2024-10-21', deployments: ['gpt4o-prod'] },
      },
      extraProviders: [dead],
      models: [
        { name: 'mm', deployments: [{ provider: 'a', model: 'gpt-4o', priority: 1 }, { provider: 'b', model: 'gpt-4o', priority: 2 }] },
        { name: 'mz', deployments: [{ provider: 'az', model: 'gpt4o-prod', priority: 1 }] },
        { name: 'mdead', deployments: [{ provider: 'nowhere', model: 'gpt-4o', priority: 1 }, { provider: 'b', model: 'gpt-4o', priority: 2 }] },
        { name: 'mslow', deployments: [{ provider: 'a', model: 'gpt-4o-slow', priority: 1, timeouts: { first_byte_ms: 250 } }, { provider: 'b', model: 'gpt-4o-slow', priority: 2 }] },
        { name: ODD, deployments: [{ provider: 'a', model: 'gpt-4o', priority: 1 }] },
      ],
      routing: { max_attempts: 2, timeout_s: 30, connect_timeout_ms: 1000, circuit: { failures: 1000, max_wait_s: 60 } },
    });
  });
  after(() => st?.close());
  beforeEach(() => st?.reset());

  const ask = (model, text) => st.client.chat.completions.create({ model, messages: msg(text) }).withResponse();
  const req = (labels) => ['cloudmux_requests_total', labels];

  test('promtool check metrics accepts the output (after traffic of every kind)', T, async () => {
    assert.ok(findPromtool(), 'promtool not found: install the Debian package "prometheus" (it provides /usr/bin/promtool) or set $PROMTOOL');
    // some traffic so that every family has series: success, failover, 4xx, stream, odd label values
    st.sims.a.enqueue({ status: 500 });
    await ask('mm');
    await ask('mm');
    await ask(ODD);
    await ask('mz');
    st.sims.a.enqueue({ status: 400 });
    await postJSON(st.url, '/v1/chat/completions', { model: 'mm', messages: msg() }).then((r) => r.arrayBuffer());
    const stream = await st.client.chat.completions.create({ model: 'mm', messages: msg('s t r'), stream: true });
    for await (const _ of stream) void _;
    const m = await scrape(st.url);
    assert.match(m.contentType || '', /^text\/plain/, 'Prometheus text exposition content type');
    assert.match(m.contentType || '', /version=0\.0\.4/);
    const res = await promtoolCheck(m.text);
    assert.equal(res.code, 0, `promtool check metrics failed (exit ${res.code}):\n${res.stdout}${res.stderr}\n--- metrics ---\n${m.text}`);
    // families and types
    for (const [name, type] of Object.entries({
      cloudmux_requests_total: 'counter',
      cloudmux_upstream_attempts_total: 'counter',
      cloudmux_request_duration_seconds: 'histogram',
      cloudmux_time_to_first_byte_seconds: 'histogram',
      cloudmux_upstream_duration_seconds: 'histogram',
      cloudmux_tokens_total: 'counter',
      cloudmux_inflight_requests: 'gauge',
      cloudmux_circuit_open: 'gauge',
    })) {
      assert.equal(m.types[name], type, `# TYPE ${name} ${type}`);
    }
    // a label value with a quote and a backslash is escaped (and parses back)
    assert.equal(value(m, 'cloudmux_requests_total', { model: ODD, provider: 'a', code: '200' }), 1, `the odd model name in:\n${m.samples.filter((s) => s.line.includes('odd')).map((s) => s.line).join('\n')}`);
  });

  test('cloudmux_requests_total{model,provider,cloud,code}: +3 after 3 requests, summed across workers', T, async () => {
    const labels = { model: 'mm', provider: 'a', cloud: 'openai', code: '200' };
    const before = value(await scrape(st.url), ...req(labels));
    // separate clients, so that the requests spread over connections (and workers)
    await Promise.all([0, 1, 2].map(() => st.sdk().chat.completions.create({ model: 'mm', messages: msg() })));
    const m = await scrape(st.url);
    assert.equal(value(m, ...req(labels)), before + 3);
    assert.equal(series(m, 'cloudmux_requests_total', labels).length, 1, 'one series, not one per worker');
    // the Azure deployment carries its cloud
    const zb = value(m, ...req({ model: 'mz', provider: 'az', cloud: 'azure', code: '200' }));
    await ask('mz');
    assert.equal(value(await scrape(st.url), ...req({ model: 'mz', provider: 'az', cloud: 'azure', code: '200' })), zb + 1);
  });

  test('more requests: the counter moves by exactly the number sent (40, concurrency 8)', T, async () => {
    const labels = { model: 'mm', provider: 'a', code: '200' };
    const before = value(await scrape(st.url), ...req(labels));
    await pool(40, 8, () => st.client.chat.completions.create({ model: 'mm', messages: msg() }));
    assert.equal(value(await scrape(st.url), ...req(labels)), before + 40);
  });

  test('failover: attempts outcome http_5xx on the first provider and success on the second; the request counts for the one that served', T, async () => {
    const m0 = await scrape(st.url);
    st.sims.a.enqueue({ status: 502 });
    const { response } = await ask('mm');
    assert.equal(response.headers.get('x-cloudmux-provider'), 'b');
    const m1 = await scrape(st.url);
    const d = (name, labels) => value(m1, name, labels) - value(m0, name, labels);
    assert.equal(d('cloudmux_upstream_attempts_total', { model: 'mm', provider: 'a', outcome: 'http_5xx' }), 1);
    assert.equal(d('cloudmux_upstream_attempts_total', { model: 'mm', provider: 'b', outcome: 'success' }), 1);
    assert.equal(d('cloudmux_upstream_attempts_total', { model: 'mm', provider: 'a', outcome: 'success' }), 0);
    assert.equal(d('cloudmux_requests_total', { model: 'mm', provider: 'b', code: '200' }), 1);
    assert.equal(d('cloudmux_requests_total', { model: 'mm', provider: 'a' }), 0, 'the failed attempt is not a request of a');
    assert.equal(d('cloudmux_upstream_duration_seconds_count', { model: 'mm', provider: 'a' }), 1);
    assert.equal(d('cloudmux_upstream_duration_seconds_count', { model: 'mm', provider: 'b' }), 1);
  });

  test('attempt outcomes: http_429, http_4xx, connect_error, timeout, reset, canceled', T, async () => {
    const m0 = await scrape(st.url);
    st.sims.a.enqueue({ status: 429 });
    await ask('mm'); // -> b
    st.sims.a.enqueue({ status: 404 });
    const r404 = await postJSON(st.url, '/v1/chat/completions', { model: 'mm', messages: msg() });
    assert.equal(r404.status, 404);
    await r404.arrayBuffer();
    await ask('mdead'); // nowhere: connect failure -> b
    st.sims.a.enqueue({ delayMs: 3000 });
    await ask('mslow'); // a: timeout before the first byte -> b
    st.sims.a.enqueue({ resetAfterChunks: 3, paceMs: 20 });
    const rr = await postJSON(st.url, '/v1/chat/completions', { model: 'mm', messages: msg('a b c d'), stream: true });
    await rr.text();
    // the client goes away in the middle of a stream
    st.sims.a.enqueue({ paceMs: 100, chunks: 20 });
    const ac = new AbortController();
    const rc = await postJSON(st.url, '/v1/chat/completions', { model: 'mm', messages: msg('cancel me'), stream: true }, {}, { signal: ac.signal });
    for await (const ev of readSSE(rc)) {
      if (ev.data !== '[DONE]' && JSON.parse(ev.data).choices?.[0]?.delta?.content) break;
    }
    ac.abort();
    await waitUntil(() => st.sims.a.closedEarly.length >= 1, 3000, 'the upstream stream to be cancelled');

    const want = {
      'mm/a/http_429': 1,
      'mm/a/http_4xx': 1,
      'mdead/nowhere/connect_error': 1,
      'mslow/a/timeout': 1,
      'mm/a/reset': 1,
      'mm/a/canceled': 1,
    };
    let last;
    await waitUntil(
      async () => {
        last = await scrape(st.url);
        return Object.entries(want).every(([k, n]) => {
          const [model, provider, outcome] = k.split('/');
          const l = { model, provider, outcome };
          return value(last, 'cloudmux_upstream_attempts_total', l) - value(m0, 'cloudmux_upstream_attempts_total', l) === n;
        });
      },
      3000,
      'the attempt counters',
      50,
    ).catch(() => {});
    for (const [k, n] of Object.entries(want)) {
      const [model, provider, outcome] = k.split('/');
      const l = { model, provider, outcome };
      const got = value(last, 'cloudmux_upstream_attempts_total', l) - value(m0, 'cloudmux_upstream_attempts_total', l);
      assert.equal(got, n, `cloudmux_upstream_attempts_total{model="${model}",provider="${provider}",outcome="${outcome}"} moved by ${got}; now:\n${series(last, 'cloudmux_upstream_attempts_total').map((s) => s.line).join('\n')}`);
    }
    // the non-retried 404 is a request answered 404 by a
    assert.equal(value(last, ...req({ model: 'mm', provider: 'a', code: '404' })) - value(m0, ...req({ model: 'mm', provider: 'a', code: '404' })), 1);
  });

  test('histograms: _count rises per request, buckets are cumulative and end at +Inf = _count, _sum grows', T, async () => {
    const m0 = await scrape(st.url);
    st.sims.a.enqueue({ delayMs: 120, times: 3 });
    for (let i = 0; i < 3; i++) await ask('mm');
    const m1 = await scrape(st.url);
    const labels = { model: 'mm', provider: 'a' };
    for (const h of ['cloudmux_request_duration_seconds', 'cloudmux_time_to_first_byte_seconds', 'cloudmux_upstream_duration_seconds']) {
      const c0 = value(m0, `${h}_count`, labels);
      const c1 = value(m1, `${h}_count`, labels);
      assert.equal(c1 - c0, 3, `${h}_count`);
      const s1 = value(m1, `${h}_sum`, labels);
      const s0 = value(m0, `${h}_sum`, labels);
      assert.ok(s1 - s0 >= 3 * 0.1, `${h}_sum rose by ${s1 - s0} s for three requests of >= 120 ms`);
      assert.ok(s1 - s0 < 30, `${h}_sum rose by ${s1 - s0} s`);
      const buckets = series(m1, `${h}_bucket`, labels)
        .map((s) => ({ le: s.labels.le === '+Inf' ? Infinity : Number(s.labels.le), v: s.value }))
        .sort((x, y) => x.le - y.le);
      assert.ok(buckets.length >= 5, `${h} has ${buckets.length} buckets`);
      assert.equal(buckets.at(-1).le, Infinity);
      assert.equal(buckets.at(-1).v, c1, `${h} +Inf bucket = _count`);
      for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].v >= buckets[i - 1].v, `${h} buckets are cumulative`);
      // the three slow requests are above 0.1 s
      const le01 = buckets.filter((b) => b.le <= 0.1).at(-1);
      const le01before = series(m0, `${h}_bucket`, labels).find((s) => Number(s.labels.le) === le01?.le);
      if (le01) assert.equal(le01.v - (le01before?.value ?? 0), 0, `${h}: none of the 120 ms requests is in le="${le01.le}"`);
    }
  });

  test('cloudmux_tokens_total{type}: rises by the usage the upstream reported', T, async () => {
    const m0 = await scrape(st.url);
    await ask('mm', 'one two three');
    await ask('mm', 'four five');
    const s = st.client.chat.completions.create({ model: 'mm', messages: msg('six seven eight nine'), stream: true });
    for await (const _ of await s) void _;
    const usage = st.sims.a.requests.map((r) => r.answer.usage);
    const prompt = usage.reduce((n, u) => n + u.prompt_tokens, 0);
    const completion = usage.reduce((n, u) => n + u.completion_tokens, 0);
    const m1 = await scrape(st.url);
    const d = (type) => value(m1, 'cloudmux_tokens_total', { model: 'mm', provider: 'a', type }) - value(m0, 'cloudmux_tokens_total', { model: 'mm', provider: 'a', type });
    assert.equal(d('prompt'), prompt);
    assert.equal(d('completion'), completion);
    assert.equal(d('cached'), 0);
  });

  test('cloudmux_inflight_requests: up while requests are in flight, back down after', T, async () => {
    const idle = value(await scrape(st.url), 'cloudmux_inflight_requests');
    assert.ok(idle >= 0 && idle <= 1, `idle in-flight ${idle} (at most the scrape itself)`);
    st.sims.a.enqueue({ delayMs: 1000, times: 3 });
    const pending = [0, 1, 2].map(() => st.sdk().chat.completions.create({ model: 'mm', messages: msg() }));
    await waitUntil(() => st.sims.a.requests.length === 3, 3000, 'three requests at the simulator');
    const during = value(await scrape(st.url), 'cloudmux_inflight_requests');
    assert.equal(during, idle + 3);
    await Promise.all(pending);
    await sleep(50);
    assert.equal(value(await scrape(st.url), 'cloudmux_inflight_requests'), idle);
  });

  test('cloudmux_circuit_open{model,provider}: a 0 series for every deployment while closed', T, async () => {
    const m = await scrape(st.url);
    for (const [model, provider] of [['mm', 'a'], ['mm', 'b'], ['mz', 'az'], ['mdead', 'nowhere']]) {
      const s = series(m, 'cloudmux_circuit_open', { model, provider });
      assert.equal(s.length, 1, `cloudmux_circuit_open{model="${model}",provider="${provider}"}`);
      assert.equal(s[0].value, 0);
    }
  });

  test('GET /admin/v1/deployments: every deployment with its health fields', T, async () => {
    await ask('mm');
    await ask('mdead'); // nowhere: a connect failure, then b
    const list = await deployments(st.url);
    assert.equal(list.object, 'list');
    assert.ok(Array.isArray(list.data));
    const keys = ['model', 'provider', 'type', 'cloud', 'region', 'upstream_model', 'strategy', 'priority', 'weight', 'state', 'consecutive_failures', 'open_for_ms', 'ewma_ttfb_ms', 'inflight', 'error_rate'];
    for (const d of list.data) {
      for (const k of keys) assert.ok(Object.hasOwn(d, k), `${d.model}/${d.provider} lacks ${k}: ${JSON.stringify(d)}`);
      assert.ok(['closed', 'open', 'half_open'].includes(d.state));
      for (const k of ['priority', 'weight', 'consecutive_failures', 'open_for_ms', 'inflight']) assert.ok(Number.isInteger(d[k]), `${k}: ${d[k]}`);
      assert.ok(d.ewma_ttfb_ms === null || (typeof d.ewma_ttfb_ms === 'number' && d.ewma_ttfb_ms >= 0));
      assert.ok(typeof d.error_rate === 'number' && d.error_rate >= 0 && d.error_rate <= 1, `error_rate ${d.error_rate}`);
    }
    const pairs = list.data.map((d) => `${d.model}/${d.provider}`);
    assert.deepEqual(pairs, ['mm/a', 'mm/b', 'mz/az', 'mdead/nowhere', 'mdead/b', 'mslow/a', 'mslow/b', `${ODD}/a`]);
    const row = (model, provider) => list.data.find((d) => d.model === model && d.provider === provider);
    assert.deepEqual(
      { ...row('mm', 'a'), ewma_ttfb_ms: typeof row('mm', 'a').ewma_ttfb_ms, error_rate: typeof row('mm', 'a').error_rate },
      { model: 'mm', provider: 'a', type: 'openai', cloud: 'openai', region: null, upstream_model: 'gpt-4o', strategy: 'priority', priority: 1, weight: 1, state: 'closed', consecutive_failures: 0, open_for_ms: 0, ewma_ttfb_ms: 'number', inflight: 0, error_rate: 'number' },
    );
    const az = row('mz', 'az');
    assert.equal(az.type, 'azure_openai');
    assert.equal(az.cloud, 'azure');
    assert.equal(az.region, 'eastus');
    assert.equal(az.upstream_model, 'gpt4o-prod');
    const dead = row('mdead', 'nowhere');
    assert.equal(dead.ewma_ttfb_ms, null, 'never answered: no latency');
    assert.ok(dead.consecutive_failures >= 1);
    assert.ok(dead.error_rate > 0, `error_rate after failures: ${dead.error_rate}`);
    // in-flight
    st.sims.a.enqueue({ delayMs: 800 });
    const pending = ask('mm');
    await waitUntil(() => st.sims.a.requests.length === 2, 3000, 'the slow request at the simulator');
    assert.equal((await deployment(st.url, 'mm', 'a')).inflight, 1);
    await pending;
    assert.equal((await deployment(st.url, 'mm', 'a')).inflight, 0);
  });

  test('no secrets in the metrics', T, async () => {
    const m = await scrape(st.url);
    assert.ok(!/SIMSECRET|sk-dead-provider-key|sk-client/.test(m.text));
  });

  test('no violations were seen by the simulators', T, () => {
    assert.deepEqual(st.allViolations(), []);
  });
});
