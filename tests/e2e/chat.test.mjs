// Non-streaming chat through each upstream type: what the client gets, and what the upstream got.

import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, postJSON, rawFields, weatherTool, CLIENT_KEY } from './lib/stack.mjs';

const T = { timeout: 20_000 };
let st;

// public model name -> what the upstream must see
const ROUTES = {
  'gpt-4o': { sim: 'oa', model: 'gpt-4o-2024-08-06', path: '/v1/chat/completions' },
  'gpt-4o-azure': { sim: 'azc', model: 'gpt4o-prod', path: '/openai/deployments/gpt4o-prod/chat/completions', apiVersion: '2024-10-21' },
  'gpt-4o-azure-v1': { sim: 'azv1', model: 'gpt4o-v1', path: '/openai/v1/chat/completions' },
  llama: { sim: 'local', model: 'llama-3.1-8b', path: '/v1/chat/completions' },
};

before(async () => {
  st = await startStack({
    sims: {
      oa: { flavor: 'openai', models: ['gpt-4o-2024-08-06'] },
      azc: { flavor: 'azure', apiVersion: '2024-10-21', deployments: ['gpt4o-prod'] },
      azv1: { flavor: 'azure', v1: true, deployments: ['gpt4o-v1'] },
      local: { flavor: 'compatible', models: ['llama-3.1-8b'] },
    },
    models: Object.entries(ROUTES).map(([name, r]) => ({
      name,
      deployments: [{ provider: r.sim, model: r.model, priority: 1, price: { input_per_mtok: 2.5, output_per_mtok: 10 } }],
    })),
    routing: { max_attempts: 1, timeout_s: 30 },
  });
});
after(() => st?.close());
beforeEach(() => st?.reset());

// Compact JSON with values JavaScript cannot round-trip: a 64-bit seed and an out-of-range float.
function rawBody(model) {
  return (
    `{"model":${JSON.stringify(model)},` +
    `"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hello from the e2e suite"}],` +
    `"seed":9007199254740993,` +
    `"logit_bias":{"50256":1e400,"1734":-100,"12":0.000001},` +
    `"temperature":0.7,"top_p":0.95,"n":1,"max_completion_tokens":256,"stop":["\\n\\n","END"],` +
    `"presence_penalty":0.5,"frequency_penalty":-0.25,"logprobs":true,"top_logprobs":2,` +
    `"response_format":{"type":"json_schema","json_schema":{"name":"r","strict":true,"schema":{"type":"object","properties":{"a":{"type":"integer","maximum":18446744073709551615}}}}},` +
    `"user":"user-1234","metadata":{"tenant":"acme"},"service_tier":"auto","parallel_tool_calls":false}`
  );
}

for (const [publicName, route] of Object.entries(ROUTES)) {
  test(`non-stream chat via ${route.sim} (${publicName}): upstream request is exact`, T, async () => {
    const body = rawBody(publicName);
    const r = await postJSON(st.url, '/v1/chat/completions', body);
    const text = await r.text();
    assert.equal(r.status, 200, text);
    assert.match(r.headers.get('content-type'), /^application\/json/);
    assert.equal(r.headers.get('x-cloudmux-provider'), route.sim);
    assert.ok(r.headers.get('x-request-id'), 'x-request-id');
    const j = JSON.parse(text);
    assert.equal(j.object, 'chat.completion');
    assert.equal(j.choices[0].message.content, 'echo: hello from the e2e suite');
    assert.equal(j.choices[0].finish_reason, 'stop');

    const sim = st.sims[route.sim];
    assert.equal(sim.requests.length, 1);
    const rec = sim.requests[0];
    assert.equal(rec.method, 'POST');
    assert.equal(rec.path, route.path);
    if (route.apiVersion) assert.equal(rec.query['api-version'], route.apiVersion);
    assert.match(rec.headers['content-type'], /^application\/json/);

    // usage is the upstream's
    assert.equal(j.usage.prompt_tokens, rec.answer.usage.prompt_tokens);
    assert.equal(j.usage.completion_tokens, rec.answer.usage.completion_tokens);
    assert.equal(j.usage.total_tokens, rec.answer.usage.total_tokens);

    // the model is rewritten; every other field arrives byte for byte
    const sent = rawFields(body);
    const got = rawFields(rec.body);
    if (route.sim === 'azc') {
      assert.ok(!got.has('model') || got.get('model') === JSON.stringify(route.model), `classic Azure body model: ${got.get('model')}`);
    } else {
      assert.equal(got.get('model'), JSON.stringify(route.model));
    }
    for (const [k, v] of sent) {
      if (k === 'model') continue;
      assert.equal(got.get(k), v, `field ${k} changed on the way upstream`);
    }
    for (const k of got.keys()) {
      assert.ok(sent.has(k) || k === 'model', `field ${k} was added on the way upstream (${got.get(k)})`);
    }
    assert.ok(rec.body.includes('"seed":9007199254740993'), 'seed text intact');
    assert.ok(rec.body.includes('"50256":1e400'), 'logit_bias 1e400 text intact');
    assert.deepEqual(st.violations(), []);
  });
}

test('SDK: non-stream chat through every provider type', T, async () => {
  for (const [publicName, route] of Object.entries(ROUTES)) {
    const { data, response } = await st.client.chat.completions
      .create({ model: publicName, messages: [{ role: 'user', content: `hi ${route.sim}` }] })
      .withResponse();
    assert.equal(data.choices[0].message.content, `echo: hi ${route.sim}`, publicName);
    assert.equal(data.choices[0].message.role, 'assistant');
    assert.equal(response.headers.get('x-cloudmux-provider'), route.sim);
    assert.equal(response.headers.get('x-cloudmux-attempts'), '1');
    assert.equal(data.usage.total_tokens, st.sims[route.sim].lastRequest.answer.usage.total_tokens);
  }
  assert.deepEqual(st.violations(), []);
});

test('string escapes and non-ASCII text pass through byte for byte', T, async () => {
  const content = '"caf\\u00e9 \\/ \\ud83d\\ude00 tab\\there\\u0001 \\"q\\" \\\\ ünï 😀"';
  const body = `{"model":"gpt-4o","messages":[{"role":"user","content":${content}}],"user":"\\u00e9"}`;
  JSON.parse(body); // the test's own input is valid JSON
  const r = await postJSON(st.url, '/v1/chat/completions', body);
  assert.equal(r.status, 200, await r.text());
  const got = rawFields(st.sims.oa.lastRequest.body);
  assert.equal(got.get('messages'), `[{"role":"user","content":${content}}]`);
  assert.equal(got.get('user'), '"\\u00e9"');
  assert.deepEqual(st.violations(), []);
});

test('every role and content-part type passes through unchanged', T, async () => {
  const messages = [
    { role: 'developer', content: [{ type: 'text', text: 'Developer rules.' }], name: 'dev' },
    { role: 'system', content: 'System prompt.' },
    {
      role: 'user',
      name: 'alice',
      content: [
        { type: 'text', text: 'Look at these.' },
        { type: 'image_url', image_url: { url: 'https://example.com/cat.png', detail: 'high' } },
        { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', detail: 'low' } },
        { type: 'input_audio', input_audio: { data: 'UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA=', format: 'wav' } },
        { type: 'file', file: { filename: 'doc.pdf', file_data: 'data:application/pdf;base64,JVBERi0xLjQK' } },
        { type: 'file', file: { file_id: 'file-abc123' } },
      ],
    },
    {
      role: 'assistant',
      content: [{ type: 'text', text: 'Calling a tool.' }],
      refusal: null,
      tool_calls: [{ id: 'call_prev', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } }],
    },
    { role: 'tool', tool_call_id: 'call_prev', content: [{ type: 'text', text: '{"temp":3}' }] },
    { role: 'assistant', content: 'It is 3 degrees.', audio: null },
    { role: 'user', content: [{ type: 'text', text: 'thanks' }] },
  ];
  for (const model of ['gpt-4o', 'gpt-4o-azure', 'llama']) {
    st.reset();
    const res = await st.client.chat.completions.create({ model, messages });
    assert.equal(res.choices[0].message.content, 'echo: thanks');
    const sim = st.sims[ROUTES[model].sim];
    assert.equal(rawFields(sim.lastRequest.body).get('messages'), JSON.stringify(messages), model);
  }
  assert.deepEqual(st.violations(), []);
});

test('tool round trip via the SDK: tool call, tool result, final text', T, async () => {
  for (const model of ['gpt-4o', 'gpt-4o-azure']) {
    st.reset();
    const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
    const first = await st.client.chat.completions.create({ model, messages, tools: [weatherTool], tool_choice: 'auto' });
    const choice = first.choices[0];
    assert.equal(choice.finish_reason, 'tool_calls', model);
    assert.equal(choice.message.tool_calls.length, 1);
    const call = choice.message.tool_calls[0];
    assert.match(call.id, /^call_\d+$/);
    assert.equal(call.type, 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
    const sim = st.sims[ROUTES[model].sim];
    assert.equal(rawFields(sim.lastRequest.body).get('tools'), JSON.stringify([weatherTool]));
    assert.equal(rawFields(sim.lastRequest.body).get('tool_choice'), '"auto"');

    messages.push(choice.message, { role: 'tool', tool_call_id: call.id, content: '{"temperature":21,"sky":"clear"}' });
    const second = await st.client.chat.completions.create({ model, messages, tools: [weatherTool] });
    assert.equal(second.choices[0].finish_reason, 'stop');
    assert.match(second.choices[0].message.content, /\{"temperature":21,"sky":"clear"\}/);
    const sentMsgs = JSON.parse(rawFields(sim.lastRequest.body).get('messages'));
    assert.equal(sentMsgs[1].tool_calls[0].id, call.id);
    assert.equal(sentMsgs[2].tool_call_id, call.id);
  }
  assert.deepEqual(st.violations(), []);
});

test('named tool_choice reaches the upstream', T, async () => {
  const other = { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } };
  const res = await st.client.chat.completions.create({
    model: 'llama',
    messages: [{ role: 'user', content: 'time?' }],
    tools: [weatherTool, other],
    tool_choice: { type: 'function', function: { name: 'get_time' } },
  });
  assert.equal(res.choices[0].message.tool_calls[0].function.name, 'get_time');
  assert.equal(rawFields(st.sims.local.lastRequest.body).get('tool_choice'), '{"type":"function","function":{"name":"get_time"}}');
  assert.deepEqual(st.violations(), []);
});

test('the client key is not what the upstream sees', T, async () => {
  await st.client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] });
  const h = st.sims.oa.lastRequest.headers;
  assert.notEqual(h.authorization, `Bearer ${CLIENT_KEY}`);
  assert.equal(h.authorization, `Bearer ${st.sims.oa.apiKey}`);
  assert.deepEqual(st.violations(), []);
});

test('a 2 MiB request body passes through intact (under the default 10 MiB limit)', T, async () => {
  const big = 'lorem ipsum dolor sit amet '.repeat(80_000); // ~2.1 MB
  const body = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'system', content: big }, { role: 'user', content: 'big one' }] });
  const r = await postJSON(st.url, '/v1/chat/completions', body);
  assert.equal(r.status, 200, (await r.clone().text()).slice(0, 300));
  assert.equal((await r.json()).choices[0].message.content, 'echo: big one');
  const rec = st.sims.oa.lastRequest;
  assert.equal(rawFields(rec.body).get('messages'), JSON.stringify([{ role: 'system', content: big }, { role: 'user', content: 'big one' }]));
  assert.deepEqual(st.violations(), []);
});

test('20 concurrent non-stream requests over all providers', T, async () => {
  const names = Object.keys(ROUTES);
  await Promise.all(
    Array.from({ length: 20 }, async (_, i) => {
      const model = names[i % names.length];
      const res = await st.client.chat.completions.create({ model, messages: [{ role: 'user', content: `parallel ${i}` }] });
      assert.equal(res.choices[0].message.content, `echo: parallel ${i}`, model);
    }),
  );
  assert.deepEqual(st.violations(), []);
});
