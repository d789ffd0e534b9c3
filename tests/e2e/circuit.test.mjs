// Circuit breaking per deployment (shared by all workers): opening after routing.circuit.failures
// consecutive retryable failures, skipping while open, one half-open probe after the cooldown,
// closing on its success and re-opening on its failure, opening on a 429/503 whose retry-after
// exceeds max_wait_s, and the last deployment left being used even when its circuit is open.
// The state shows in GET /admin/v1/deployments and in cloudmux_circuit_open.

import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, postJSON } from './lib/stack.mjs';
import { deployment, scrape, value, sleep, pool } from './lib/observe.mjs';
import { waitUntil } from '../sim/openai-sim.mjs';

const T = { timeout: 30_000 };
const COOLDOWN_MS = 1000;
const msg = [{ role: 'user', content: 'breaker' }];

describe('circuit breaker (failures: 3, cooldown_s: 1, max_wait_s: 1.5)', () => {
  let st;
  before(async () => {
    const two = (name, upstream = 'gpt-4o') => ({
      name,
      deployments: [{ provider: 'a', model: upstream, priority: 1 }, { provider: 'b', model: upstream, priority: 2 }],
    });
    st = await startStack({
      sims: { a: { flavor: 'openai' }, b: { flavor: 'openai' } },
      models: [
        two('open-close'),
        two('probe-fails'),
        two('counting'),
        two('rl-429'),
        two('rl-503'),
        two('half-open'),
        { name: 'solo', deployments: [{ provider: 'a', model: 'gpt-4o', priority: 1 }] },
        {
          name: 'all-open',
          deployments: [{ provider: 'a', model: 'gpt-4o-all', priority: 1 }, { provider: 'b', model: 'gpt-4o-all', priority: 2 }],
        },
      ],
      routing: { strategy: 'priority', max_attempts: 2, timeout_s: 30, circuit: { failures: 3, cooldown_s: COOLDOWN_MS / 1000, max_wait_s: 1.5 } },
    });
  });
  after(() => st?.close());
  beforeEach(() => st?.reset());

  const post = (model) => postJSON(st.url, '/v1/chat/completions', { model, messages: msg });
  async function ask(model) {
    const { data, response } = await st.client.chat.completions.create({ model, messages: msg }).withResponse();
    assert.equal(data.choices[0].message.content, 'echo: breaker');
    return { provider: response.headers.get('x-cloudmux-provider'), attempts: response.headers.get('x-cloudmux-attempts') };
  }
  const circuitMetric = async (model, provider) => {
    const m = await scrape(st.url);
    const s = m.samples.filter((x) => x.name === 'cloudmux_circuit_open' && x.labels.model === model && x.labels.provider === provider);
    assert.equal(s.length, 1, `one cloudmux_circuit_open series for ${model}/${provider}: ${s.map((x) => x.line)}`);
    return s[0].value;
  };
  /** Makes `failures` requests fail on a (each then served by b). */
  async function failOn(model, failures) {
    st.sims.a.enqueue({ status: 500, times: failures });
    for (let i = 0; i < failures; i++) {
      const r = await ask(model);
      assert.equal(r.provider, 'b');
      assert.equal(r.attempts, '2', `request ${i + 1}: a is still tried`);
    }
  }
  /** Waits until the deployment's open period is over (open_for_ms 0). */
  const waitCooldown = (model, provider = 'a') =>
    waitUntil(async () => (await deployment(st.url, model, provider)).open_for_ms === 0, COOLDOWN_MS * 5, `${model}/${provider} cooldown to pass`, 25);

  test('opens after 3 consecutive failures: skipped while open, shown in the admin API and the metric', T, async () => {
    let row = await deployment(st.url, 'open-close', 'a');
    assert.equal(row.state, 'closed');
    assert.equal(row.consecutive_failures, 0);
    assert.equal(await circuitMetric('open-close', 'a'), 0);

    await failOn('open-close', 2);
    row = await deployment(st.url, 'open-close', 'a');
    assert.equal(row.state, 'closed', 'two failures do not open it');
    assert.equal(row.consecutive_failures, 2);
    await failOn('open-close', 1);
    const t0 = performance.now();

    row = await deployment(st.url, 'open-close', 'a');
    assert.equal(row.state, 'open');
    assert.equal(row.consecutive_failures, 3);
    assert.ok(row.open_for_ms > 0 && row.open_for_ms <= COOLDOWN_MS, `open_for_ms ${row.open_for_ms}`);
    assert.equal(await circuitMetric('open-close', 'a'), 1);
    assert.equal(await circuitMetric('open-close', 'b'), 0);

    const before = st.sims.a.requests.length;
    for (let i = 0; i < 4; i++) {
      const r = await ask('open-close');
      assert.equal(r.provider, 'b');
      assert.equal(r.attempts, '1', 'an open deployment is skipped, not tried');
    }
    const stillOpen = (await deployment(st.url, 'open-close', 'a')).open_for_ms > 0;
    assert.ok(stillOpen, `the checks took ${(performance.now() - t0).toFixed(0)} ms, longer than the 1 s cooldown: the machine is too slow for this test`);
    assert.equal(st.sims.a.requests.length, before, 'no request reached the open deployment');
  });

  test('after the cooldown one request probes it; success closes the circuit', T, async () => {
    // (continues from the previous test's open circuit, or opens it)
    if ((await deployment(st.url, 'open-close', 'a')).state === 'closed') await failOn('open-close', 3);
    await waitCooldown('open-close');
    const r = await ask('open-close');
    assert.equal(r.provider, 'a', 'the probe goes to the recovered deployment');
    assert.equal(r.attempts, '1');
    const row = await deployment(st.url, 'open-close', 'a');
    assert.equal(row.state, 'closed');
    assert.equal(row.consecutive_failures, 0);
    assert.equal(row.open_for_ms, 0);
    assert.equal(await circuitMetric('open-close', 'a'), 0);
    for (let i = 0; i < 3; i++) assert.equal((await ask('open-close')).provider, 'a');
  });

  test('half-open: exactly one request is let through as the probe; concurrent requests skip it', T, async () => {
    await failOn('half-open', 3);
    assert.equal((await deployment(st.url, 'half-open', 'a')).state, 'open');
    await waitCooldown('half-open');
    st.sims.a.enqueue({ delayMs: 1500 }); // a slow, successful probe
    const nA = st.sims.a.requests.length;
    const probe = ask('half-open');
    await waitUntil(() => st.sims.a.requests.length === nA + 1, 3000, 'the probe to reach a');
    const row = await deployment(st.url, 'half-open', 'a');
    assert.equal(row.state, 'half_open');
    assert.equal(await circuitMetric('half-open', 'a'), 1);
    const others = await pool(6, 6, () => ask('half-open'));
    for (const r of others) {
      assert.equal(r.provider, 'b', 'a request during the probe goes elsewhere');
      assert.equal(r.attempts, '1');
    }
    assert.equal(st.sims.a.requests.length, nA + 1, 'only the probe reached a');
    const p = await probe;
    assert.equal(p.provider, 'a');
    assert.equal((await deployment(st.url, 'half-open', 'a')).state, 'closed');
    assert.equal((await ask('half-open')).provider, 'a');
  });

  test('a failed probe re-opens the circuit for another cooldown', T, async () => {
    await failOn('probe-fails', 3);
    await waitCooldown('probe-fails');
    st.sims.a.enqueue({ status: 503 });
    const nA = st.sims.a.requests.length;
    const r = await ask('probe-fails');
    assert.equal(r.provider, 'b', 'the failed probe fails over');
    assert.equal(r.attempts, '2');
    assert.equal(st.sims.a.requests.length, nA + 1);
    const row = await deployment(st.url, 'probe-fails', 'a');
    assert.equal(row.state, 'open');
    assert.ok(row.open_for_ms > 0 && row.open_for_ms <= COOLDOWN_MS, `open_for_ms ${row.open_for_ms}`);
    assert.equal(await circuitMetric('probe-fails', 'a'), 1);
    const r2 = await ask('probe-fails');
    assert.equal(r2.provider, 'b');
    assert.equal(r2.attempts, '1');
    assert.equal(st.sims.a.requests.length, nA + 1, 'nothing reaches a during the new cooldown');
    // and after it, a successful probe closes it
    await waitCooldown('probe-fails');
    assert.equal((await ask('probe-fails')).provider, 'a');
    assert.equal((await deployment(st.url, 'probe-fails', 'a')).state, 'closed');
  });

  test('a success resets the failure count; a non-retryable 4xx counts as a success', T, async () => {
    await failOn('counting', 2);
    assert.equal((await ask('counting')).provider, 'a'); // success
    assert.equal((await deployment(st.url, 'counting', 'a')).consecutive_failures, 0);
    await failOn('counting', 2);
    st.sims.a.enqueue({ status: 400 });
    const r = await post('counting');
    assert.equal(r.status, 400);
    await r.arrayBuffer();
    let row = await deployment(st.url, 'counting', 'a');
    assert.equal(row.state, 'closed');
    assert.equal(row.consecutive_failures, 0, 'a 400 is the client\'s fault, not the deployment\'s');
    await failOn('counting', 2);
    row = await deployment(st.url, 'counting', 'a');
    assert.equal(row.state, 'closed');
    assert.equal(row.consecutive_failures, 2);
    await failOn('counting', 1);
    assert.equal((await deployment(st.url, 'counting', 'a')).state, 'open');
  });

  test('a 429 whose retry-after-ms exceeds max_wait_s opens the circuit until that time', T, async () => {
    st.sims.a.enqueue({ status: 429, headers: { 'retry-after-ms': '2500' } });
    const t0 = performance.now(); // before the 429, so the circuit cannot reopen before t0 + 2.5 s
    const r = await ask('rl-429');
    assert.equal(r.provider, 'b');
    assert.equal(r.attempts, '2');
    const row = await deployment(st.url, 'rl-429', 'a');
    assert.equal(row.state, 'open', 'one long 429 is enough');
    assert.ok(row.open_for_ms > COOLDOWN_MS && row.open_for_ms <= 2500, `open for ${row.open_for_ms} ms: the retry-after, not the 1 s cooldown`);
    assert.equal(await circuitMetric('rl-429', 'a'), 1);
    // past the cooldown, still inside the retry-after: still skipped
    await sleep(Math.max(0, COOLDOWN_MS + 300 - (performance.now() - t0)));
    const nA = st.sims.a.requests.length;
    const r2 = await ask('rl-429');
    assert.equal(r2.provider, 'b');
    assert.equal(r2.attempts, '1');
    assert.equal(st.sims.a.requests.length, nA);
    // after the retry-after the probe goes through and closes it
    await waitCooldown('rl-429');
    assert.ok(performance.now() - t0 >= 2490, `the circuit reopened for traffic after ${(performance.now() - t0).toFixed(0)} ms`);
    assert.equal((await ask('rl-429')).provider, 'a');
    assert.equal((await deployment(st.url, 'rl-429', 'a')).state, 'closed');
  });

  test('a 503 with retry-after (seconds) beyond max_wait_s opens it too; a short one does not', T, async () => {
    st.sims.a.enqueue({ status: 503, headers: { 'retry-after': '1' } }); // 1 s <= max_wait_s 1.5: no
    assert.equal((await ask('rl-503')).provider, 'b');
    assert.equal((await deployment(st.url, 'rl-503', 'a')).state, 'closed');
    st.sims.a.enqueue({ status: 503, headers: { 'retry-after': '3' } }); // 3 s > 1.5 s: open
    assert.equal((await ask('rl-503')).provider, 'b');
    const row = await deployment(st.url, 'rl-503', 'a');
    assert.equal(row.state, 'open');
    assert.ok(row.open_for_ms > 1500 && row.open_for_ms <= 3000, `open_for_ms ${row.open_for_ms}`);
  });

  test('the only deployment is still used while its circuit is open', T, async () => {
    st.sims.a.enqueue({ status: 500, times: 4 });
    for (let i = 0; i < 2; i++) {
      const r = await post('solo');
      assert.equal(r.status, 500);
      await r.arrayBuffer();
    }
    const row = await deployment(st.url, 'solo', 'a');
    assert.equal(row.state, 'open');
    const nA = st.sims.a.requests.length;
    const r = await ask('solo');
    assert.equal(r.provider, 'a', 'served by the open deployment rather than failing outright');
    assert.equal(st.sims.a.requests.length, nA + 1);
  });

  test('when every deployment is open the request is still served', T, async () => {
    st.sims.a.enqueue({ status: 500, times: 3 });
    st.sims.b.enqueue({ status: 500, times: 3 });
    for (let i = 0; i < 3; i++) {
      const r = await post('all-open');
      assert.equal(r.status, 500);
      await r.arrayBuffer();
    }
    assert.equal((await deployment(st.url, 'all-open', 'a')).state, 'open');
    assert.equal((await deployment(st.url, 'all-open', 'b')).state, 'open');
    const r = await ask('all-open');
    assert.ok(['a', 'b'].includes(r.provider));
  });

  test('no violations were seen by the simulators', T, () => {
    assert.deepEqual(st.allViolations(), []);
  });
});
