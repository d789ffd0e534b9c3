// Anthropic Messages API through cloudmux with the official openai client: headers and body
// shape (checked by the simulator), plain / streamed / tool round trip / image, cache-token
// usage, 529 retried, a spend-limit 429 not retried, an in-band error after the 200.

import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startGateway } from './lib/gateway.mjs';
import { CLIENT_KEY, startSim, waitUntil } from '../sim/openai-sim.mjs';
import { deployment } from './lib/observe.mjs';
import { startAnthropicSim } from '../sim/anthropic-sim.mjs';
import { weatherTool, reassembleToolCalls, postJSON } from './lib/stack.mjs';

const T = { timeout: 30_000 };
const KEY = 'sk-ant-api03-SIMSECRET-abcdefghijklmnop';
let an, gw, client;

before(async () => {
  an = await startAnthropicSim({ name: 'anth', apiKey: KEY });
  gw = await startGateway({
    config: {
      providers: [{ name: 'anth', type: 'anthropic', cloud: 'anthropic', base_url: an.url, api_key: '${CMX_E2E_ANTH_KEY}', max_tokens_default: 256 }],
      models: [{ name: 'claude', deployments: [{ provider: 'anth', model: 'claude-sonnet-4-5' }] }],
      routing: { max_attempts: 2, timeout_s: 20 },
    },
    env: { CMX_E2E_ANTH_KEY: KEY },
  });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20_000 });
});

after(async () => {
  await gw?.kill();
  await an?.close();
  const report = gw?.sanitizerReport();
  if (report) throw new Error(report);
});

beforeEach(() => {
  assert.deepEqual(an.violations, []);
  an.reset();
});

test('plain chat: headers, system, max_tokens default, usage with cache tokens', T, async () => {
  const r = await client.chat.completions.create({ model: 'claude', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hello claude' }], temperature: 0.2, stop: ['END'] });
  assert.equal(r.choices[0].message.content, 'Claude echo: hello claude [system: Be brief.]');
  assert.equal(r.choices[0].finish_reason, 'stop');
  const req = an.requests[0];
  assert.equal(req.headers['x-api-key'], KEY);
  assert.equal(req.headers['anthropic-version'], '2023-06-01');
  assert.equal(req.body.max_tokens, 256);
  assert.equal(req.body.system, 'Be brief.');
  assert.deepEqual(req.body.stop_sequences, ['END']);
  const input = req.body.messages ? JSON.stringify(req.body.messages).trim().split(/\s+/).length : 0;
  assert.equal(r.usage.prompt_tokens, input + 3 + 5); // input + cache creation + cache read
  assert.equal(r.usage.prompt_tokens_details.cached_tokens, 5);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  const r2 = await client.chat.completions.create({ model: 'claude', max_tokens: 9, messages: [{ role: 'user', content: 'x' }] });
  assert.ok(r2.choices[0].message.content);
  assert.equal(an.requests[1].body.max_tokens, 9);
});

test('streamed chat: named events -> chunks, one usage chunk', T, async () => {
  an.enqueue({ paceMs: 5 });
  const s = await client.chat.completions.create({ model: 'claude', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'stream this please' }] });
  const chunks = [];
  for await (const c of s) chunks.push(c);
  assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), 'Claude echo: stream this please');
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const usage = chunks.filter((c) => c.usage);
  assert.equal(usage.length, 1);
  assert.equal(usage[0].usage.prompt_tokens_details.cached_tokens, 5);
  assert.equal(usage[0].usage.completion_tokens, 'Claude echo: stream this please'.split(/\s+/).length);
  assert.equal(an.requests[0].body.stream, true);
});

test('tool round trip, streamed and not; parallel_tool_calls=false', T, async () => {
  const messages = [{ role: 'user', content: 'weather in Paris?' }];
  const r1 = await client.chat.completions.create({ model: 'claude', messages, tools: [weatherTool], parallel_tool_calls: false });
  const tc = r1.choices[0].message.tool_calls;
  assert.equal(r1.choices[0].finish_reason, 'tool_calls');
  assert.equal(r1.choices[0].message.content, 'Let me check.');
  assert.equal(tc[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(tc[0].function.arguments), { city: 'Paris' });
  assert.deepEqual(an.requests[0].body.tool_choice, { type: 'auto', disable_parallel_tool_use: true });
  assert.deepEqual(an.requests[0].body.tools[0].input_schema, weatherTool.function.parameters);
  messages.push(r1.choices[0].message, { role: 'tool', tool_call_id: tc[0].id, content: 'sunny' });
  const r2 = await client.chat.completions.create({ model: 'claude', messages, tools: [weatherTool], tool_choice: 'none' });
  assert.equal(r2.choices[0].message.content, 'The tool said sunny');
  const s = await client.chat.completions.create({ model: 'claude', stream: true, messages: [{ role: 'user', content: 'weather?' }], tools: [weatherTool], tool_choice: 'required' });
  const chunks = [];
  for await (const c of s) chunks.push(c);
  const calls = reassembleToolCalls(chunks);
  assert.equal(calls.length, 1);
  assert.match(calls[0].id, /^toolu_sim/);
  assert.equal(calls[0].name, 'get_weather');
  assert.deepEqual(JSON.parse(calls[0].arguments), { city: 'Paris' });
  assert.equal(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason, 'tool_calls');
  assert.equal(an.requests[2].body.tool_choice.type, 'any');
});

test('image content becomes an image block', T, async () => {
  const jpg = Buffer.from('ffd8ffe000104a464946', 'hex');
  const r = await client.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/jpeg;base64,${jpg.toString('base64')}` } }, { type: 'text', text: 'what?' }] }] });
  assert.equal(r.choices[0].message.content, `I see an image (image/jpeg, ${jpg.length} bytes)`);
});

test('529 overloaded is retried, a 429 after its retry-after; 429 enforced_spend_limit_reached is not', T, async () => {
  an.enqueue({ overloaded: true });
  const r = await client.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'again' }] }).withResponse();
  assert.equal(r.data.choices[0].message.content, 'Claude echo: again');
  assert.equal(r.response.headers.get('x-cloudmux-attempts'), '2');
  // a plain rate limit is retried after the retry-after it carries
  an.enqueue({ throttle: 1 });
  const t = await client.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'later' }] });
  assert.equal(t.choices[0].message.content, 'Claude echo: later');
  assert.ok(an.requests[3].at - an.requests[2].at >= 990, 'retry-after: 1 was honoured');
  an.enqueue({ spendLimit: true, times: 2 });
  const res = await postJSON(gw.url, '/v1/chat/completions', { model: 'claude', messages: [{ role: 'user', content: 'x' }] });
  assert.equal(res.status, 429);
  assert.equal(res.headers.get('x-cloudmux-attempts'), '1');
  const j = await res.json();
  assert.equal(j.error.code, 'enforced_spend_limit_reached');
  assert.equal(an.requests.length, 5);
  an.reset();
});

test('an error event after the 200 becomes an in-band OpenAI error', T, async () => {
  an.enqueue({ inbandErrorAfter: 4 });
  const s = await client.chat.completions.create({ model: 'claude', stream: true, messages: [{ role: 'user', content: 'one two three four' }] });
  const got = [];
  await assert.rejects(async () => {
    for await (const c of s) got.push(c);
  }, /Overloaded/);
  assert.ok(got.length >= 1);
  an.enqueue({ resetAfterEvents: 3, paceMs: 10 });
  const s2 = await client.chat.completions.create({ model: 'claude', stream: true, messages: [{ role: 'user', content: 'one two three four' }] });
  await assert.rejects(async () => {
    for await (const c of s2) void c;
  });
});

test('embeddings are refused with a clear 400; bad tool arguments too', T, async () => {
  const res = await postJSON(gw.url, '/v1/embeddings', { model: 'claude', input: 'x' });
  assert.equal(res.status, 400);
  assert.match((await res.json()).error.message, /embeddings/);
  const bad = await postJSON(gw.url, '/v1/chat/completions', { model: 'claude', messages: [{ role: 'user', content: 'x' }, { role: 'assistant', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '[not json' } }] }] });
  assert.equal(bad.status, 400);
  assert.equal(an.requests.length, 0);
  assert.ok(!gw.stdoutText.includes('SIMSECRET'));
});

test('a half-open probe whose request cannot be built for the provider is given back: the circuit does not stay half-open', T, async () => {
  const oa = await startSim({ name: 'oa', flavor: 'openai', apiKey: 'sk-oa-test' });
  const g = await startGateway({
    config: {
      providers: [
        { name: 'anth', type: 'anthropic', cloud: 'anthropic', base_url: an.url, api_key: '${CMX_E2E_ANTH_KEY}', max_tokens_default: 64 },
        { name: 'oa', type: 'openai', cloud: 'openai', base_url: oa.url, api_key: 'sk-oa-test' },
      ],
      models: [{ name: 'brk', deployments: [{ provider: 'anth', model: 'claude-sonnet-4-5', priority: 1 }, { provider: 'oa', model: 'gpt-4o', priority: 2 }] }],
      routing: { max_attempts: 2, timeout_s: 20, circuit: { failures: 2, cooldown_s: 1 } },
    },
    env: { CMX_E2E_ANTH_KEY: KEY },
  });
  try {
    const c = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20_000 });
    const ask = async (extra = {}) => (await c.chat.completions.create({ model: 'brk', messages: [{ role: 'user', content: 'probe me' }], ...extra }).withResponse()).response.headers.get('x-cloudmux-provider');
    an.enqueue({ status: 500, times: 2 });
    assert.equal(await ask(), 'oa');
    assert.equal(await ask(), 'oa');
    assert.equal((await deployment(g.url, 'brk', 'anth')).state, 'open');
    await waitUntil(async () => (await deployment(g.url, 'brk', 'anth')).open_for_ms === 0, 5000, 'the cooldown');
    // the probe's request cannot be built for Anthropic (n > 1): a 400, and the slot is freed
    await assert.rejects(ask({ n: 2 }), (e) => e.status === 400 && e.code === 'unsupported_parameter');
    // so the next request probes anth (healthy again) and closes the circuit
    assert.equal(await ask(), 'anth');
    assert.equal((await deployment(g.url, 'brk', 'anth')).state, 'closed');
  } finally {
    await g.kill();
    await oa.close();
  }
});
